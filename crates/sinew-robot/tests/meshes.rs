//! Mesh references: missing files are warnings (errors naming every place looked when meshes
//! are required); unreadable formats are warnings.

use std::path::PathBuf;

use sinew_robot::{LoadOptions, RobotDescription, RobotError};

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("sinew-robot-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(d.join("meshes")).expect("scratch dir");
    d
}

fn urdf(mesh: &str) -> String {
    format!(
        r#"<robot name="m">
  <link name="base"><visual><geometry><mesh filename="{mesh}"/></geometry></visual></link>
  <link name="l1"/>
  <joint name="j1" type="revolute"><parent link="base"/><child link="l1"/>
    <axis xyz="0 0 1"/><limit lower="-1" upper="1" velocity="1" effort="1"/></joint>
</robot>"#
    )
}

#[test]
fn a_missing_mesh_is_a_warning_unless_meshes_are_required() {
    let d = scratch("missing");
    let p = d.join("robot.urdf");
    std::fs::write(&p, urdf("package://m_description/meshes/base.stl")).expect("write");
    // Kinematics do not need meshes: the robot loads, the mesh is listed as not found.
    let r = RobotDescription::load(&p).expect("loads without its mesh");
    assert_eq!(r.tree.active_names(), vec!["j1"]);
    assert!(!r.meshes[0].found && !r.meshes[0].readable);
    assert!(
        r.warnings[0].contains("package://m_description/meshes/base.stl")
            && r.warnings[0].contains("not found"),
        "{:?}",
        r.warnings
    );

    let strict = LoadOptions {
        require_meshes: true,
        ros_package_path: Some(Vec::new()),
        ..LoadOptions::default()
    };
    let err = RobotDescription::load_with(&p, &strict).expect_err("missing mesh");
    assert!(matches!(err, RobotError::MissingMesh { .. }));
    let msg = err.to_string();
    assert!(
        msg.contains("package://m_description/meshes/base.stl")
            && msg.contains("\"base\"")
            && msg.contains(&p.display().to_string())
            && msg.contains(&d.join("meshes/base.stl").display().to_string()),
        "{msg}"
    );
}

#[test]
fn package_uris_resolve_and_unknown_formats_warn() {
    let d = scratch("formats");
    std::fs::write(d.join("meshes/base.stl"), b"solid x\nendsolid x\n").expect("write");
    let p = d.join("robot.urdf");
    std::fs::write(&p, urdf("package://m_description/meshes/base.stl")).expect("write");
    let r = RobotDescription::load(&p).expect("loads");
    assert_eq!(r.meshes.len(), 1);
    assert!(r.meshes[0].readable && r.meshes[0].found);
    assert_eq!(r.meshes[0].path, d.join("meshes/base.stl"));
    assert_eq!(r.tree.active_names(), vec!["j1"]);

    std::fs::write(d.join("meshes/base.ply"), b"ply\n").expect("write");
    std::fs::write(&p, urdf("meshes/base.ply")).expect("write");
    let r = RobotDescription::load(&p).expect("loads");
    assert!(!r.meshes[0].readable);
    assert!(r.warnings[0].contains("bounding box"), "{:?}", r.warnings);
}
