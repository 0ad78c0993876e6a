//! Reading OpenVLA's dataset_statistics.json and LeRobot's stats.json.

use sinew_policy::normalize::{lerobot_stats, openvla_action_stats, LeRobotMode};
use sinew_policy::Normalizer;

fn write(name: &str, text: &str) -> std::path::PathBuf {
    let p = std::env::temp_dir().join(format!("sinew-policy-{}-{name}", std::process::id()));
    std::fs::write(&p, text).expect("write");
    p
}

#[test]
fn openvla_statistics_pick_the_dataset_and_keep_the_mask() {
    let p = write(
        "dataset_statistics.json",
        r#"{"bridge_orig": {"action": {"mean": [0,0], "std": [1,1], "max": [1,1], "min": [-1,-1],
              "q01": [-0.5, 0.0], "q99": [0.5, 1.0], "mask": [true, false]},
            "proprio": {"mean": [0], "std": [1]}, "num_transitions": 10, "num_trajectories": 2},
            "other": {"action": {"q01": [0, 0], "q99": [1, 1]}}}"#,
    );
    let n = openvla_action_stats(&p, Some("bridge_orig")).expect("stats");
    assert_eq!(
        n,
        Normalizer::Quantile {
            q01: vec![-0.5, 0.0],
            q99: vec![0.5, 1.0],
            mask: vec![true, false]
        }
    );
    assert_eq!(
        n.unnormalize(&[1.0, 0.25]).expect("unnorm"),
        vec![0.5, 0.25]
    );
    let err = openvla_action_stats(&p, None)
        .expect_err("ambiguous")
        .to_string();
    assert!(
        err.contains("unnorm_key") && err.contains("bridge_orig"),
        "{err}"
    );
    let err = openvla_action_stats(&p, Some("nope"))
        .expect_err("missing")
        .to_string();
    assert!(err.contains("\"nope\""), "{err}");
}

#[test]
fn lerobot_statistics_in_both_modes() {
    let p = write(
        "stats.json",
        r#"{"action": {"min": [0, 0], "max": [1, 1], "mean": [0.5, 0.2], "std": [0.1, 0.2],
             "count": [100], "q01": [0.1, 0.0], "q99": [0.9, 0.4]},
            "observation.images.front": {"mean": [[[0.5]], [[0.5]], [[0.5]]], "std": [[[0.2]], [[0.2]], [[0.2]]]}}"#,
    );
    let ms = lerobot_stats(&p, "action", LeRobotMode::MeanStd, None).expect("stats");
    assert_eq!(
        ms.normalize(&[0.6, 0.2])
            .expect("norm")
            .iter()
            .map(|v| (v * 1e6).round() / 1e6)
            .collect::<Vec<_>>(),
        vec![1.0, 0.0]
    );
    let q =
        lerobot_stats(&p, "action", LeRobotMode::Quantile, Some(vec![true, false])).expect("stats");
    assert_eq!(q.unnormalize(&[-1.0, 0.3]).expect("unnorm"), vec![0.1, 0.3]);
    let img = lerobot_stats(&p, "observation.images.front", LeRobotMode::MeanStd, None)
        .expect("image stats");
    assert_eq!(img.dim(), 3);
    let err = lerobot_stats(&p, "observation.state", LeRobotMode::MeanStd, None)
        .expect_err("missing")
        .to_string();
    assert!(err.contains("observation.state"), "{err}");
}
