//! `package://` resolution in the order ROS and pybullet users expect: `--package`, then
//! `ROS_PACKAGE_PATH`, then walking up from the URDF, then pybullet's relative lookup, then the
//! robot folder as the package; `file://` and plain paths beside the URDF.

use std::path::{Path, PathBuf};

use sinew_robot::mesh_paths::{
    find_package_under, package_xml_name, parse_package_arg, MeshResolver,
};
use sinew_robot::{LoadOptions, RobotDescription, RobotError};

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("sinew-pkg-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("scratch dir");
    d
}

fn touch(path: &Path) -> PathBuf {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, b"solid x\nendsolid x\n").expect("write");
    path.to_path_buf()
}

fn package(dir: &Path, name: &str) -> PathBuf {
    std::fs::create_dir_all(dir).expect("mkdir");
    std::fs::write(
        dir.join("package.xml"),
        format!("<?xml version=\"1.0\"?>\n<!-- <name>not_this</name> -->\n<package format=\"3\">\n  <name> {name} </name>\n  <version>1.0.0</version>\n</package>\n"),
    )
    .expect("write package.xml");
    dir.to_path_buf()
}

fn resolve(
    urdf: &Path,
    packages: &[(String, PathBuf)],
    ros: Vec<PathBuf>,
    filename: &str,
) -> Option<PathBuf> {
    let dir = urdf.parent().expect("urdf dir");
    MeshResolver::new(urdf, dir, packages, ros)
        .resolve(filename)
        .found
}

const URI: &str = "package://robot_description/meshes/base.stl";

/// A URDF in `robot_description/urdf/` of a workspace, the mesh present in every place a
/// rule looks: `--package`, a ROS root, the package found walking up, pybullet's relative
/// place and the robot folder.
struct Everywhere {
    urdf: PathBuf,
    explicit: PathBuf,
    ros_root: PathBuf,
    ros: PathBuf,
    walked: PathBuf,
    pybullet: PathBuf,
    robot_folder: PathBuf,
}

fn everywhere(name: &str) -> Everywhere {
    let d = scratch(name);
    let pkg = package(&d.join("ws/src/robot_description"), "robot_description");
    let urdf = touch(&pkg.join("urdf/robot.urdf"));
    let explicit = d.join("elsewhere");
    touch(&explicit.join("meshes/base.stl"));
    let ros_root = d.join("opt/share");
    let ros_pkg = package(
        &ros_root.join("vendor/robot_description_v2"),
        "robot_description",
    );
    touch(&ros_pkg.join("meshes/base.stl"));
    Everywhere {
        walked: touch(&pkg.join("meshes/base.stl")),
        pybullet: touch(&pkg.join("urdf/robot_description/meshes/base.stl")),
        robot_folder: touch(&pkg.join("urdf/meshes/base.stl")),
        explicit,
        ros: ros_pkg.join("meshes/base.stl"),
        ros_root,
        urdf,
    }
}

#[test]
fn package_option_wins_over_ros_package_path_and_walking_up() {
    let e = everywhere("explicit");
    let packages = vec![("robot_description".to_owned(), e.explicit.clone())];
    let got = resolve(&e.urdf, &packages, vec![e.ros_root.clone()], URI);
    assert_eq!(got, Some(e.explicit.join("meshes/base.stl")));
    // A mapping for another package changes nothing.
    let other = vec![("other".to_owned(), e.explicit.clone())];
    let got = resolve(&e.urdf, &other, vec![e.ros_root.clone()], URI);
    assert_eq!(got, Some(e.ros.clone()));
}

#[test]
fn ros_package_path_finds_a_package_by_its_package_xml_before_walking_up() {
    let e = everywhere("ros");
    // The package's folder is named robot_description_v2; its package.xml names it.
    let missing = PathBuf::from("/nonexistent/sinew/root");
    let got = resolve(&e.urdf, &[], vec![missing, e.ros_root.clone()], URI);
    assert_eq!(got, Some(e.ros.clone()));
}

#[test]
fn walking_up_finds_the_package_the_urdf_is_in() {
    let e = everywhere("walk");
    assert_eq!(
        resolve(&e.urdf, &[], Vec::new(), URI),
        Some(e.walked.clone())
    );

    // By package.xml, when the folder has another name (a clone named after its repository).
    let d = scratch("walk-xml");
    let pkg = package(&d.join("robot_description-main"), "robot_description");
    let urdf = touch(&pkg.join("urdf/robot.urdf"));
    let mesh = touch(&pkg.join("meshes/base.stl"));
    assert_eq!(resolve(&urdf, &[], Vec::new(), URI), Some(mesh));
}

#[test]
fn pybullet_strips_package_and_resolves_relative_to_the_urdf() {
    // bullet3's franka_panda/panda.urdf: package://meshes/visual/link0.obj.
    let d = scratch("pybullet");
    let urdf = touch(&d.join("franka_panda/panda.urdf"));
    let mesh = touch(&d.join("franka_panda/meshes/visual/link0.obj"));
    let got = resolve(&urdf, &[], Vec::new(), "package://meshes/visual/link0.obj");
    assert_eq!(got, Some(mesh));

    // The URDF's folder has a meshes folder without the file; pybullet's rule goes on to the
    // URDF's parent folder.
    let d = scratch("pybullet-parent");
    let urdf = touch(&d.join("a/b/robot.urdf"));
    std::fs::create_dir_all(d.join("a/b/meshes")).expect("mkdir");
    let mesh = touch(&d.join("a/meshes/x.stl"));
    assert_eq!(
        resolve(&urdf, &[], Vec::new(), "package://meshes/x.stl"),
        Some(mesh)
    );

    // A sibling package beside the URDF's own (a bringup package naming a description one):
    // the URDF's grandparent holds it.
    let d = scratch("pybullet-sibling");
    let urdf = touch(&d.join("src/robot_bringup/urdf/robot.urdf"));
    let mesh = touch(&d.join("src/robot_description/meshes/base.stl"));
    assert_eq!(resolve(&urdf, &[], Vec::new(), URI), Some(mesh));
}

#[test]
fn pybullet_comes_before_the_robot_folder_as_the_package() {
    let e = everywhere("order-tail");
    std::fs::remove_file(&e.walked).expect("rm");
    assert_eq!(
        resolve(&e.urdf, &[], Vec::new(), URI),
        Some(e.pybullet.clone())
    );
    std::fs::remove_file(&e.pybullet).expect("rm");
    assert_eq!(
        resolve(&e.urdf, &[], Vec::new(), URI),
        Some(e.robot_folder.clone())
    );
    std::fs::remove_file(&e.robot_folder).expect("rm");
    assert_eq!(resolve(&e.urdf, &[], Vec::new(), URI), None);
}

#[test]
fn file_urls_and_plain_paths_resolve_beside_the_urdf() {
    let d = scratch("file");
    let urdf = touch(&d.join("robot/robot.urdf"));
    let mesh = touch(&d.join("robot/meshes/a.stl"));
    let abs = format!("file://{}", mesh.display());
    assert_eq!(resolve(&urdf, &[], Vec::new(), &abs), Some(mesh.clone()));
    assert_eq!(
        resolve(&urdf, &[], Vec::new(), mesh.to_str().expect("utf-8")),
        Some(mesh.clone())
    );
    assert_eq!(
        resolve(&urdf, &[], Vec::new(), "meshes/a.stl"),
        Some(mesh.clone())
    );
    assert_eq!(
        resolve(&urdf, &[], Vec::new(), "file://meshes/a.stl"),
        Some(mesh)
    );
    assert_eq!(resolve(&urdf, &[], Vec::new(), "meshes/b.stl"), None);
}

#[test]
fn the_ros_crawl_skips_hidden_ignored_and_nested_folders() {
    let d = scratch("crawl");
    // Hidden, ignored and inside another package: none of these count.
    package(&d.join(".cache/robot_description"), "robot_description");
    package(&d.join("ignored/robot_description"), "robot_description");
    std::fs::write(d.join("ignored/CATKIN_IGNORE"), b"").expect("write");
    let outer = package(&d.join("outer"), "outer");
    package(&outer.join("robot_description"), "robot_description");
    assert_eq!(find_package_under(&d, "robot_description"), None);

    // A folder merely named like the package is taken when no package.xml names it...
    let named = d.join("plain/robot_description");
    std::fs::create_dir_all(&named).expect("mkdir");
    assert_eq!(
        find_package_under(&d, "robot_description"),
        Some(named.clone())
    );
    // ... and a package.xml naming it wins, deeper or not.
    let real = package(&d.join("x/y/z/desc"), "robot_description");
    assert_eq!(find_package_under(&d, "robot_description"), Some(real));
    // The root itself can be the package.
    assert_eq!(find_package_under(&outer, "outer"), Some(outer.clone()));
    // Too deep is not found.
    let deep = scratch("crawl-deep");
    package(&deep.join("1/2/3/4/5/6/desc"), "deep_description");
    assert_eq!(find_package_under(&deep, "deep_description"), None);
}

#[test]
fn package_xml_name_ignores_comments() {
    let d = scratch("xml");
    package(&d, "my_robot");
    assert_eq!(package_xml_name(&d).as_deref(), Some("my_robot"));
    assert_eq!(package_xml_name(&d.join("absent")), None);
}

#[test]
fn the_package_option_parses_name_equals_dir() {
    assert_eq!(
        parse_package_arg("franka_description=/opt/franka"),
        Ok((
            "franka_description".to_owned(),
            PathBuf::from("/opt/franka")
        ))
    );
    for bad in ["franka_description", "=/opt", "x=", "a/b=/opt"] {
        assert!(parse_package_arg(bad).is_err(), "{bad}");
    }
}

#[test]
fn a_required_mesh_that_is_missing_names_the_urdf_link_filename_and_every_place_looked() {
    let d = scratch("miss");
    let urdf = d.join("desc/urdf/robot.urdf");
    std::fs::create_dir_all(urdf.parent().expect("parent")).expect("mkdir");
    std::fs::write(
        &urdf,
        format!(
            r#"<robot name="r">
  <link name="base"><collision><geometry><mesh filename="{URI}"/></geometry></collision></link>
</robot>"#
        ),
    )
    .expect("write");
    let ros_root = d.join("ros");
    std::fs::create_dir_all(&ros_root).expect("mkdir");
    let opts = LoadOptions {
        packages: vec![("robot_description".into(), d.join("mapped"))],
        ros_package_path: Some(vec![ros_root.clone()]),
        require_meshes: true,
    };
    let err = RobotDescription::load_with(&urdf, &opts).expect_err("missing");
    let RobotError::MissingMesh {
        urdf: u,
        link,
        filename,
        looked,
    } = &err
    else {
        panic!("{err}");
    };
    assert_eq!((u, link.as_str(), filename.as_str()), (&urdf, "base", URI));
    let msg = err.to_string();
    for place in [
        d.join("mapped/meshes/base.stl").display().to_string(),
        ros_root.display().to_string(),
        "walking up".into(),
        d.join("desc/urdf/robot_description/meshes/base.stl")
            .display()
            .to_string(),
        d.join("desc/urdf/meshes/base.stl").display().to_string(),
    ] {
        assert!(msg.contains(&place), "{place:?} not in {msg}");
    }
    assert!(looked.len() >= 5, "{looked:?}");
    assert!(msg.contains(&urdf.display().to_string()), "{msg}");

    // Without require_meshes the robot loads and the warning says the same.
    let r = RobotDescription::load_with(
        &urdf,
        &LoadOptions {
            require_meshes: false,
            ..opts
        },
    )
    .expect("loads");
    assert!(r.warnings[0].contains(&d.join("mapped/meshes/base.stl").display().to_string()));
}
