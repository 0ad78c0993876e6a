//! pybullet's own `franka_panda/panda.urdf` loads unchanged without its meshes, and its FK
//! matches an independent numpy implementation (`fixtures/pybullet_franka_panda/`).

use std::path::{Path, PathBuf};

use serde_json::Value;
use sinew_robot::{LoadOptions, RobotDescription};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pybullet_franka_panda")
}

fn isolated() -> LoadOptions {
    LoadOptions {
        ros_package_path: Some(Vec::new()),
        ..LoadOptions::default()
    }
}

fn reference() -> Value {
    let text = std::fs::read_to_string(fixture().join("fk_reference.json")).expect("reference");
    serde_json::from_str(&text).expect("json")
}

fn num(v: &Value) -> f64 {
    v.as_f64().expect("number")
}

#[test]
fn pybullet_panda_loads_without_its_meshes() {
    let urdf = fixture().join("panda.urdf");
    let r = RobotDescription::load_with(&urdf, &isolated()).expect("loads without meshes");
    assert_eq!(r.config.base_link, "panda_link0");
    assert_eq!(r.dof(), 8, "{:?}", r.tree.active_names());
    assert!(!r.meshes.is_empty());
    assert!(r.meshes.iter().all(|m| !m.found && !m.readable));
    let link0 = r
        .warnings
        .iter()
        .find(|w| w.contains("package://meshes/collision/link0.obj"))
        .expect("a warning for link0's mesh");
    // pybullet's place for it is among those looked.
    let pybullet = fixture().join("meshes/collision/link0.obj");
    assert!(link0.contains(&pybullet.display().to_string()), "{link0}");
    assert_eq!(r.warnings.len(), r.meshes.len());

    // The default load (ROS_PACKAGE_PATH from the environment) works too.
    RobotDescription::load(&urdf).expect("default load");
}

#[test]
fn pybullet_panda_meshes_resolve_beside_the_urdf_as_pybullet_does() {
    let d = std::env::temp_dir().join(format!("sinew-pybullet-panda-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    let dir = d.join("franka_panda");
    std::fs::create_dir_all(dir.join("meshes/visual")).expect("mkdir");
    std::fs::create_dir_all(dir.join("meshes/collision")).expect("mkdir");
    std::fs::copy(fixture().join("panda.urdf"), dir.join("panda.urdf")).expect("copy");
    let r = RobotDescription::load_with(&dir.join("panda.urdf"), &isolated()).expect("loads");
    for m in &r.meshes {
        let rest = m.filename.strip_prefix("package://").expect("package url");
        std::fs::write(dir.join(rest), b"# obj\n").expect("write mesh");
    }
    let r = RobotDescription::load_with(
        &dir.join("panda.urdf"),
        &LoadOptions {
            require_meshes: true,
            ..isolated()
        },
    )
    .expect("loads with meshes required");
    let link0 = r
        .meshes
        .iter()
        .find(|m| m.filename == "package://meshes/collision/link0.obj")
        .expect("link0 mesh");
    assert_eq!(link0.path, dir.join("meshes/collision/link0.obj"));
    assert!(r.meshes.iter().all(|m| m.found && m.readable));
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
}

#[test]
fn pybullet_panda_fk_matches_the_numpy_reference() {
    let r = RobotDescription::load_with(&fixture().join("panda.urdf"), &isolated()).expect("loads");
    let doc = reference();
    let cases = doc["cases"].as_array().expect("cases");
    assert!(!cases.is_empty());
    for (ci, case) in cases.iter().enumerate() {
        let named: Vec<(String, f64)> = case["joints"]
            .as_array()
            .expect("joints")
            .iter()
            .map(|p| (p[0].as_str().expect("name").to_owned(), num(&p[1])))
            .collect();
        let names: Vec<&str> = named.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(r.tree.active_names(), names, "variables in URDF order");
        let q: Vec<f64> = named.iter().map(|(_, v)| *v).collect();
        let poses = r.tree.forward(&q).expect("fk");
        let links = case["links"].as_object().expect("links");
        assert_eq!(links.len(), r.tree.links.len());
        for (name, pose) in r.tree.links.iter().zip(&poses) {
            let want = &links[name];
            let xyz = pose.translation.vector;
            for k in 0..3 {
                let w = num(&want["xyz"][k]);
                assert!(
                    (xyz[k] - w).abs() < 1e-9,
                    "case {ci} link {name} xyz[{k}]: {} vs {w}",
                    xyz[k]
                );
            }
            let rot = pose.rotation.to_rotation_matrix();
            for i in 0..3 {
                for j in 0..3 {
                    let w = num(&want["rotation"][i][j]);
                    assert!(
                        (rot[(i, j)] - w).abs() < 1e-9,
                        "case {ci} link {name} R[{i}][{j}]: {} vs {w}",
                        rot[(i, j)]
                    );
                }
            }
        }
    }
}
