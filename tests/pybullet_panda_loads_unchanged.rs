//! `sinew robot fk` and `robot check` on pybullet's own `franka_panda/panda.urdf`, which names
//! its meshes `package://meshes/...` and ships here without them: kinematics work unchanged,
//! and `--package` and `ROS_PACKAGE_PATH` point at the meshes.

use std::path::{Path, PathBuf};
use std::process::Command;

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../sinew-robot/tests/fixtures/pybullet_franka_panda")
}

fn sinew(args: &[&str], ros_package_path: Option<&Path>) -> (bool, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sinew"));
    cmd.args(args).env_remove("ROS_PACKAGE_PATH");
    if let Some(p) = ros_package_path {
        cmd.env("ROS_PACKAGE_PATH", p);
    }
    let out = cmd.output().expect("sinew runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn robot_fk_and_check_work_on_pybullet_panda_without_meshes() {
    let urdf = fixture().join("panda.urdf");
    let urdf = urdf.to_str().expect("utf-8");
    let reference: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixture().join("fk_reference.json")).expect("reference"),
    )
    .expect("json");
    let case = &reference["cases"][2];
    let joints: Vec<String> = case["joints"]
        .as_array()
        .expect("joints")
        .iter()
        .map(|p| p[1].as_f64().expect("number").to_string())
        .collect();

    let (ok, out, err) = sinew(&["robot", "fk", urdf, "--joints", &joints.join(",")], None);
    assert!(ok, "{err}");
    let fk: serde_json::Value = serde_json::from_str(&out).expect("fk prints JSON");
    for link in [
        "panda_link7",
        "panda_hand",
        "panda_grasptarget",
        "panda_rightfinger",
    ] {
        for k in 0..3 {
            let got = fk["links"][link]["xyz"][k].as_f64().expect("xyz");
            let want = case["links"][link]["xyz"][k].as_f64().expect("xyz");
            assert!((got - want).abs() < 1e-9, "{link}[{k}]: {got} vs {want}");
        }
    }

    let (ok, out, err) = sinew(&["robot", "check", urdf], None);
    assert!(ok, "{err}");
    assert!(out.contains("panda_finger_joint1"), "{out}");
    assert!(
        out.contains("package://meshes/visual/link1.obj (not found: bounding box)"),
        "{out}"
    );
    assert!(out.contains("warning: link \"panda_link1\""), "{out}");
    assert!(out.trim_end().ends_with("ok"), "{out}");
}

#[test]
fn package_option_and_ros_package_path_point_robot_check_at_the_meshes() {
    let d = std::env::temp_dir().join(format!("sinew-cli-panda-meshes-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    // Two copies of pybullet's meshes folder: one as a ROS package named "meshes", one given
    // with --package.
    let ros_pkg = d.join("ros/franka_meshes");
    let mapped = d.join("mapped");
    for dir in [&ros_pkg, &mapped] {
        for sub in ["visual", "collision"] {
            std::fs::create_dir_all(dir.join(sub)).expect("mkdir");
        }
        for sub in ["visual", "collision"] {
            for f in [
                "link0", "link1", "link2", "link3", "link4", "link5", "link6", "link7",
            ] {
                std::fs::write(dir.join(format!("{sub}/{f}.obj")), b"# obj\n").expect("write");
            }
            for f in ["hand", "finger"] {
                std::fs::write(dir.join(format!("{sub}/{f}.obj")), b"# obj\n").expect("write");
            }
        }
    }
    std::fs::write(
        ros_pkg.join("package.xml"),
        b"<package format=\"3\"><name>meshes</name></package>\n",
    )
    .expect("package.xml");
    let urdf = fixture().join("panda.urdf");
    let urdf = urdf.to_str().expect("utf-8");

    let (ok, out, err) = sinew(&["robot", "check", urdf], Some(&d.join("ros")));
    assert!(ok, "{err}");
    assert!(!out.contains("not found"), "{out}");
    let want = ros_pkg.join("visual/link1.obj").display().to_string();
    assert!(out.contains(&want), "{want} not in {out}");

    let pkg = format!("meshes={}", mapped.display());
    let (ok, out, err) = sinew(
        &["robot", "check", urdf, "--package", &pkg],
        Some(&d.join("ros")),
    );
    assert!(ok, "{err}");
    let want = mapped.join("visual/link1.obj").display().to_string();
    assert!(out.contains(&want), "{want} not in {out}");

    let (ok, _, err) = sinew(&["robot", "check", urdf, "--package", "meshes"], None);
    assert!(!ok && err.contains("NAME=DIR"), "{err}");
}
