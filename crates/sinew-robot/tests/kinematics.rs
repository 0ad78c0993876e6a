//! FK, Jacobian and IK on a small arm whose kinematics are known in closed form, and errors
//! for broken descriptions.

use std::path::Path;

use nalgebra::{Isometry3, UnitQuaternion, Vector3};
use proptest::prelude::*;
use sinew_robot::{solve_ik, IkOptions, IkTarget, KinematicTree, RobotConfig, RobotError};

/// A planar 2-link arm (links 0.3 m and 0.2 m, rotating about z) on a base yaw joint about z
/// at height 0.1 m, with a prismatic finger mimicked by a second one.
const ARM: &str = r#"<robot name="arm">
  <link name="base"/>
  <link name="l1"/><link name="l2"/><link name="l3"/><link name="tip"/>
  <link name="f1"/><link name="f2"/>
  <joint name="yaw" type="revolute"><parent link="base"/><child link="l1"/>
    <origin xyz="0 0 0.1"/><axis xyz="0 0 1"/><limit lower="-3" upper="3" velocity="1" effort="1"/></joint>
  <joint name="shoulder" type="revolute"><parent link="l1"/><child link="l2"/>
    <origin xyz="0 0 0" rpy="1.5707963267948966 0 0"/><axis xyz="0 0 1"/><limit lower="-3" upper="3" velocity="1" effort="1"/></joint>
  <joint name="elbow" type="revolute"><parent link="l2"/><child link="l3"/>
    <origin xyz="0.3 0 0"/><axis xyz="0 0 1"/><limit lower="-2.5" upper="2.5" velocity="1" effort="1"/></joint>
  <joint name="tool" type="fixed"><parent link="l3"/><child link="tip"/><origin xyz="0.2 0 0"/></joint>
  <joint name="finger" type="prismatic"><parent link="tip"/><child link="f1"/>
    <axis xyz="0 1 0"/><limit lower="0" upper="0.04" velocity="0.1" effort="5"/></joint>
  <joint name="finger2" type="prismatic"><parent link="tip"/><child link="f2"/>
    <axis xyz="0 -1 0"/><limit lower="0" upper="0.04" velocity="0.1" effort="5"/><mimic joint="finger"/></joint>
</robot>"#;

fn tree() -> KinematicTree {
    let urdf = urdf_rs::read_from_string(ARM).expect("urdf");
    KinematicTree::from_urdf(&urdf, Path::new("arm.urdf"), None, None).expect("tree")
}

/// Closed form of the tip position.
fn tip(q: &[f64]) -> Vector3<f64> {
    let (yaw, s, e) = (q[0], q[1], q[2]);
    let r = 0.3 * s.cos() + 0.2 * (s + e).cos();
    let z = 0.1 + 0.3 * s.sin() + 0.2 * (s + e).sin();
    Vector3::new(r * yaw.cos(), r * yaw.sin(), z)
}

#[test]
fn variables_are_the_movable_non_mimic_joints() {
    let t = tree();
    assert_eq!(t.active_names(), vec!["yaw", "shoulder", "elbow", "finger"]);
}

#[test]
fn mimic_joints_follow_their_source() {
    let t = tree();
    let poses = t.forward(&[0.0, 0.0, 0.0, 0.03]).expect("fk");
    let tip = poses[t.link_index("tip").expect("tip")];
    let f1 = poses[t.link_index("f1").expect("f1")];
    let f2 = poses[t.link_index("f2").expect("f2")];
    let d1 = tip.inverse() * f1;
    let d2 = tip.inverse() * f2;
    assert!((d1.translation.vector - Vector3::new(0.0, 0.03, 0.0)).norm() < 1e-12);
    assert!((d2.translation.vector - Vector3::new(0.0, -0.03, 0.0)).norm() < 1e-12);
}

fn q_strategy() -> impl Strategy<Value = Vec<f64>> {
    (-3.0..3.0f64, -3.0..3.0f64, -2.5..2.5f64, 0.0..0.04f64)
        .prop_map(|(a, b, c, d)| vec![a, b, c, d])
}

proptest! {
    #[test]
    fn fk_matches_the_closed_form(q in q_strategy()) {
        let t = tree();
        let p = t.link_pose(&q, t.link_index("tip").expect("tip")).expect("fk").translation.vector;
        prop_assert!((p - tip(&q)).norm() < 1e-12, "{p} vs {}", tip(&q));
    }

    #[test]
    fn jacobian_matches_finite_differences(q in q_strategy()) {
        let t = tree();
        let link = t.link_index("f2").expect("f2");
        let jac = t.jacobian(&q, link).expect("jacobian");
        let h = 1e-6;
        let pose = |q: &[f64]| t.link_pose(q, link).expect("fk");
        for k in 0..q.len() {
            let mut qp = q.clone();
            let mut qm = q.clone();
            qp[k] += h;
            qm[k] -= h;
            let (a, b) = (pose(&qp), pose(&qm));
            let dp = (a.translation.vector - b.translation.vector) / (2.0 * h);
            let dr = (a.rotation * b.rotation.inverse()).scaled_axis() / (2.0 * h);
            for r in 0..3 {
                prop_assert!((jac[(r, k)] - dp[r]).abs() < 1e-6, "linear row {r} col {k}");
                prop_assert!((jac[(3 + r, k)] - dr[r]).abs() < 1e-6, "angular row {r} col {k}");
            }
        }
    }

    #[test]
    fn ik_reaches_reachable_positions_within_limits(q in q_strategy()) {
        let t = tree();
        let link = t.link_index("tip").expect("tip");
        let target = t.link_pose(&q, link).expect("fk");
        let sol = solve_ik(&t, link, IkTarget::Position(target.translation.vector), &[0.0, 0.5, 0.5, 0.0], &IkOptions::default())
            .expect("ik");
        prop_assert!(sol.converged, "{sol:?}");
        prop_assert!(sol.position_error < 1e-4);
        for (v, (lo, hi)) in sol.q.iter().zip(t.active_limits()) {
            prop_assert!(*v >= lo && *v <= hi);
        }
    }
}

#[test]
fn ik_matches_full_poses() {
    let t = tree();
    let link = t.link_index("tip").expect("tip");
    let q = [0.4, 0.3, -0.9, 0.0];
    let target = t.link_pose(&q, link).expect("fk");
    let sol = solve_ik(
        &t,
        link,
        IkTarget::Pose(target),
        &[0.0, 0.0, 0.2, 0.0],
        &IkOptions::default(),
    )
    .expect("ik");
    assert!(sol.converged, "{sol:?}");
    let got = t.link_pose(&sol.q, link).expect("fk");
    assert!((got.translation.vector - target.translation.vector).norm() < 1e-4);
    assert!(got.rotation.angle_to(&target.rotation) < 1e-3);
}

#[test]
fn unreachable_targets_stay_within_limits_and_report_it() {
    let t = tree();
    let link = t.link_index("tip").expect("tip");
    let target = Isometry3::from_parts(
        Vector3::new(2.0, 0.0, 0.1).into(),
        UnitQuaternion::identity(),
    );
    let sol = solve_ik(
        &t,
        link,
        IkTarget::Position(target.translation.vector),
        &[0.0; 4],
        &IkOptions::default(),
    )
    .expect("ik");
    assert!(!sol.converged);
    // The closest point of the 0.5 m reach sphere is 1.5 m away.
    assert!(
        (sol.position_error - 1.5).abs() < 1e-3,
        "{}",
        sol.position_error
    );
}

#[test]
fn wrong_joint_counts_and_nan_are_errors() {
    let t = tree();
    assert!(matches!(
        t.forward(&[0.0; 3]),
        Err(RobotError::JointCount {
            expected: 4,
            got: 3
        })
    ));
    let err = t.forward(&[0.0, f64::NAN, 0.0, 0.0]).expect_err("nan");
    assert!(err.to_string().contains("shoulder"), "{err}");
}

#[test]
fn broken_urdfs_name_the_problem() {
    let cases = [
        (
            ARM.replace(r#"<child link="l2"/>"#, r#"<child link="nowhere"/>"#),
            "no link named \"nowhere\"",
        ),
        (
            ARM.replace(r#"lower="-2.5" upper="2.5""#, r#"lower="2.5" upper="-2.5""#),
            "lower 2.5 is above upper -2.5",
        ),
        (
            ARM.replace(r#"<origin xyz="0.3 0 0"/>"#, r#"<origin xyz="0.3 NaN 0"/>"#),
            "NaN",
        ),
        (
            ARM.replace(
                r#"<link name="tip"/>"#,
                r#"<link name="tip"/><link name="orphan"/>"#,
            ),
            "have no parent",
        ),
    ];
    for (text, want) in cases {
        let urdf = urdf_rs::read_from_string(&text).expect("parses as XML");
        let err =
            KinematicTree::from_urdf(&urdf, Path::new("arm.urdf"), None, None).expect_err(want);
        let msg = err.to_string();
        assert!(msg.contains(want) && msg.contains("arm.urdf"), "{msg}");
    }
}

const GOOD_TOML: &str = r#"
name = "arm"
urdf = "robot.urdf"
namespace = "arm"
base_link = "base"
ee_link = "tip"
command_rate_hz = 100.0
[[joints]]
name = "yaw"
position_min = -3.0
position_max = 3.0
velocity_max = 1.0
acceleration_max = 5.0
effort_max = 1.0
kp = 100.0
kd = 10.0
[gripper]
joint = "yaw"
open = 1.0
closed = 0.0
[[cameras]]
name = "front"
mount_link = "base"
xyz = [1.0, 0.0, 1.0]
look_at = [0.0, 0.0, 0.0]
up = [0.0, 0.0, 1.0]
width = 64
height = 48
fov_y_deg = 60.0
[action_space]
kind = "joint_position"
"#;

#[test]
fn robot_toml_errors_name_the_field() {
    let p = Path::new("robots/arm/robot.toml");
    assert!(RobotConfig::from_str_at(GOOD_TOML, p).is_ok());
    let cases = [
        (
            GOOD_TOML.replace("position_min = -3.0", "position_min = 4.0"),
            "joints[0] (yaw).position_min",
        ),
        (
            GOOD_TOML.replace("position_max = 3.0", "position_max = nan"),
            "joints[0] (yaw).limits",
        ),
        (
            GOOD_TOML.replace("velocity_max = 1.0", "velocity_max = 0.0"),
            "velocity_max",
        ),
        (
            GOOD_TOML.replace("joint = \"yaw\"", "joint = \"elbow\""),
            "gripper.joint",
        ),
        (
            GOOD_TOML.replace("open = 1.0", "open = 9.0"),
            "gripper.open",
        ),
        (
            GOOD_TOML.replace("fov_y_deg = 60.0", "fov_y_deg = 200.0"),
            "cameras[0] (front).fov_y_deg",
        ),
        (
            GOOD_TOML.replace("look_at = [0.0, 0.0, 0.0]", "look_at = [1.0, 0.0, 1.0]"),
            "look_at",
        ),
        (
            GOOD_TOML.replace("kind = \"joint_position\"", "kind = \"torque\""),
            "torque",
        ),
        (
            GOOD_TOML.replace("kp = 100.0", "kp = 100.0\nstiffness = 3"),
            "stiffness",
        ),
    ];
    for (text, want) in cases {
        let err = RobotConfig::from_str_at(&text, p).expect_err(want);
        let msg = err.to_string();
        assert!(
            msg.contains(want) && msg.contains("robots/arm/robot.toml"),
            "{want}: {msg}"
        );
    }
}
