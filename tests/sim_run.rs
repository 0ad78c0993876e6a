//! `sinew sim run`: the runtime drives simulated episodes in lockstep.

use std::process::Command;

fn sinew(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sinew"))
        .args(args)
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
        .output()
        .expect("sinew runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_expert_succeeds_through_the_runtime_and_runs_are_reproducible() {
    let dir = std::env::temp_dir().join(format!("sinew-sim-run-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let runs: Vec<serde_json::Value> = (0..2)
        .map(|i| {
            let json = dir.join(format!("run{i}.json"));
            let (ok, out, err) = sinew(&[
                "sim",
                "run",
                "--task",
                "reach",
                "--episodes",
                "3",
                "--seed",
                "10",
                "--json",
                json.to_str().expect("utf8"),
            ]);
            assert!(ok, "{err}");
            assert!(out.contains("success 3/3"), "{out}");
            assert!(out.contains("commands 100 Hz, policy 10.0 Hz"), "{out}");
            serde_json::from_str(&std::fs::read_to_string(&json).expect("json")).expect("parse")
        })
        .collect();
    // Lockstep: the same seeds give the same episodes, step for step.
    for (a, b) in runs[0]
        .as_array()
        .expect("array")
        .iter()
        .zip(runs[1].as_array().expect("array"))
    {
        assert_eq!(a["steps"], b["steps"]);
        assert_eq!(a["commands"], b["commands"]);
        assert_eq!(a["success"], true);
    }
    // Async execution with ensembling also works (chunks of one step: the expert).
    let (ok, out, err) = sinew(&[
        "sim",
        "run",
        "--task",
        "push",
        "--episodes",
        "2",
        "--seed",
        "4",
        "--execution",
        "async",
        "--merge",
        "ensemble",
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("success 2/2"), "{out}");
}

#[test]
fn a_policy_folder_that_does_not_fit_the_robot_is_refused() {
    let (ok, _, err) = sinew(&[
        "sim",
        "run",
        "--task",
        "reach",
        "--episodes",
        "1",
        "--policy",
        "crates/sinew-policy/tests/fixtures/openvla-tiny",
        "--unnorm-key",
        "tiny_bridge",
    ]);
    // OpenVLA reads `front` (present) and emits 7-D end-effector deltas: it runs (badly) but runs.
    assert!(ok, "{err}");
    let (ok, _, err) = sinew(&[
        "sim",
        "run",
        "--task",
        "reach",
        "--episodes",
        "1",
        "--policy",
        "no/such/policy",
    ]);
    assert!(!ok && err.contains("no/such/policy"), "{err}");
}
