//! Actions of each space decoded into joint targets.

use std::path::Path;

use nalgebra::{UnitQuaternion, Vector3};
use sinew_core::ActionKind;
use sinew_robot::actions::ActionDecoder;
use sinew_robot::RobotDescription;

fn so101() -> RobotDescription {
    RobotDescription::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../robots/so101"))
        .expect("so101")
}

#[test]
fn joint_position_and_delta() {
    let r = so101();
    let q0 = r.home();
    let a: Vec<f64> = (0..6).map(|i| 0.1 * i as f64).collect();
    let abs = ActionDecoder::new(&r, ActionKind::JointPosition)
        .decode(&a, &q0)
        .expect("abs");
    assert_eq!(abs.q, a);
    let rel = ActionDecoder::new(&r, ActionKind::JointDelta)
        .decode(&a, &q0)
        .expect("delta");
    for i in 0..6 {
        assert!((rel.q[i] - (q0[i] + a[i])).abs() < 1e-12);
    }
    let e = ActionDecoder::new(&r, ActionKind::JointPosition)
        .decode(&a[..4], &q0)
        .expect_err("short");
    assert!(e.to_string().contains("4 values"), "{e}");
    let mut nan = a.clone();
    nan[2] = f64::NAN;
    assert!(ActionDecoder::new(&r, ActionKind::JointDelta)
        .decode(&nan, &q0)
        .is_err());
}

#[test]
fn ee_delta_moves_the_tool_by_the_delta() {
    let r = so101();
    // The ready pose of robots/so101/robot.toml: tool 3 cm above the table, pointing down.
    let q0 = vec![0.0, 0.248, 0.058, 1.264, 0.0, 1.2];
    let before = r.ee_pose(&q0).expect("fk");
    let dec = ActionDecoder::new(&r, ActionKind::EeDelta);
    // 2 cm forward, 1 cm up, a small yaw, gripper half open.
    let out = dec
        .decode(&[0.02, 0.01, 0.01, 0.0, 0.0, 0.05, 0.5], &q0)
        .expect("ee");
    let (pos_err, _) = out.ik_error.expect("ik error reported");
    assert!(pos_err < 1e-3, "reachable target: {pos_err}");
    let after = r.ee_pose(&out.q).expect("fk");
    let moved = after.translation.vector - before.translation.vector;
    assert!(
        (moved - Vector3::new(0.02, 0.01, 0.01)).norm() < 2e-3,
        "moved {moved:?}"
    );
    let yaw = UnitQuaternion::from_euler_angles(0.0, 0.0, 0.05) * before.rotation;
    // The so101 arm has 5 joints: position and approach axis are met, and the yaw about the
    // vertical approach axis is free, so the tool still points straight down.
    let axis = r.approach_axis();
    assert!(((after.rotation * axis.into_inner()) - (yaw * axis.into_inner())).norm() < 1e-2);
    let g = r.config.gripper.as_ref().expect("gripper");
    let gi = r.config.gripper_index().expect("index");
    assert!((out.q[gi] - (g.closed + 0.5 * (g.open - g.closed))).abs() < 1e-12);
    // Six values keep the gripper.
    let keep = dec.decode(&[0.0; 6], &q0).expect("six");
    assert_eq!(keep.q[gi], q0[gi]);
    // Far out of reach: best effort, error reported, never NaN.
    let far = dec
        .decode(&[2.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0], &q0)
        .expect("far");
    assert!(far.ik_error.expect("err").0 > 0.5);
    assert!(far.q.iter().all(|v| v.is_finite()));
}

#[test]
fn ee_delta_on_a_seven_joint_arm_meets_the_full_pose() {
    let r =
        RobotDescription::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../robots/panda"))
            .expect("panda");
    let q0 = r.home();
    let before = r.ee_pose(&q0).expect("fk");
    let out = ActionDecoder::new(&r, ActionKind::EeDelta)
        .decode(&[0.03, -0.02, 0.02, 0.05, -0.05, 0.1, 1.0], &q0)
        .expect("ee");
    let after = r.ee_pose(&out.q).expect("fk");
    let want = UnitQuaternion::from_euler_angles(0.05, -0.05, 0.1) * before.rotation;
    assert!(
        after.rotation.angle_to(&want) < 2e-3,
        "orientation {}",
        after.rotation.angle_to(&want)
    );
    let moved = after.translation.vector - before.translation.vector;
    assert!(
        (moved - Vector3::new(0.03, -0.02, 0.02)).norm() < 1e-3,
        "moved {moved:?}"
    );
}
