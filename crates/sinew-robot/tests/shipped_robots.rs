//! The shipped robot folders load, and IK reaches poses that FK says are reachable.

use std::path::Path;

use sinew_robot::{IkOptions, IkTarget, RobotDescription};

fn load(name: &str) -> RobotDescription {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../robots")
        .join(name);
    RobotDescription::load(&dir).expect("robot folder loads")
}

/// SplitMix64, for reproducible configurations.
fn next(state: &mut u64) -> f64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
}

#[test]
fn ik_reaches_poses_fk_produced_on_both_robots() {
    for (name, full_pose) in [("so101", false), ("panda", true)] {
        let r = load(name);
        let mut s = 42u64;
        let mut converged = 0;
        let n = 20;
        for _ in 0..n {
            // Configurations in the middle 80% of each range.
            let q: Vec<f64> = r
                .limits()
                .iter()
                .map(|(lo, hi)| lo + (hi - lo) * (0.1 + 0.8 * next(&mut s)))
                .collect();
            let pose = r.ee_pose(&q).expect("fk");
            let target = if full_pose {
                IkTarget::Pose(pose)
            } else {
                IkTarget::Position(pose.translation.vector)
            };
            let sol = r.ik(target, &r.home(), &IkOptions::default()).expect("ik");
            for (v, (lo, hi)) in sol.q.iter().zip(r.limits()) {
                assert!(*v >= lo && *v <= hi, "{name}: IK left the limits");
            }
            if sol.converged {
                converged += 1;
                let got = r.ee_pose(&sol.q).expect("fk");
                assert!((got.translation.vector - pose.translation.vector).norm() < 1e-3);
            }
        }
        assert!(
            converged >= n - 1,
            "{name}: IK converged on {converged}/{n} reachable targets"
        );
    }
}

#[test]
fn shipped_robots_have_the_declared_structure() {
    let so = load("so101");
    assert_eq!(so.dof(), 6);
    assert_eq!(so.config.arm_indices().len(), 5);
    let panda = load("panda");
    assert_eq!(panda.dof(), 8);
    assert_eq!(
        panda.config.gripper.as_ref().map(|g| g.mimic.clone()),
        Some(vec!["panda_finger_joint2".to_owned()])
    );
    for r in [&so, &panda] {
        assert!(r.config.cameras.iter().any(|c| c.name == "front"));
        assert!(r.config.cameras.iter().any(|c| c.name == "wrist"));
        assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    }
}
