//! A robot whose links are STL and OBJ meshes loads into the simulator with mesh colliders.

use std::io::Write;
use std::path::PathBuf;

use sinew_robot::RobotDescription;
use sinew_sim::SimWorld;

/// Binary STL of an axis-aligned box with half extents `h`.
fn box_stl(h: [f32; 3]) -> Vec<u8> {
    let v = |i: usize| {
        [
            if i & 1 == 0 { -h[0] } else { h[0] },
            if i & 2 == 0 { -h[1] } else { h[1] },
            if i & 4 == 0 { -h[2] } else { h[2] },
        ]
    };
    let faces: [[usize; 3]; 12] = [
        [0, 2, 1],
        [1, 2, 3],
        [4, 5, 6],
        [5, 7, 6],
        [0, 1, 4],
        [1, 5, 4],
        [2, 6, 3],
        [3, 6, 7],
        [0, 4, 2],
        [2, 4, 6],
        [1, 3, 5],
        [3, 7, 5],
    ];
    let mut out = vec![0u8; 80];
    out.extend_from_slice(&(faces.len() as u32).to_le_bytes());
    for f in faces {
        out.extend_from_slice(&[0u8; 12]); // normal, recomputed by readers
        for i in f {
            for c in v(i) {
                out.extend_from_slice(&c.to_le_bytes());
            }
        }
        out.extend_from_slice(&[0, 0]);
    }
    out
}

fn obj_box(h: f32) -> String {
    let mut s = String::new();
    for i in 0..8 {
        let p = |b: usize| if i & b == 0 { -h } else { h };
        s += &format!("v {} {} {}\n", p(1), p(2), p(4));
    }
    for f in [
        [1, 3, 2],
        [2, 3, 4],
        [5, 6, 7],
        [6, 8, 7],
        [1, 2, 5],
        [2, 6, 5],
        [3, 7, 4],
        [4, 7, 8],
        [1, 5, 3],
        [3, 5, 7],
        [2, 4, 6],
        [4, 8, 6],
    ] {
        s += &format!("f {} {} {}\n", f[0], f[1], f[2]);
    }
    s
}

#[test]
fn stl_and_obj_meshes_become_mesh_colliders() {
    let dir = std::env::temp_dir().join(format!("sinew-sim-meshes-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("meshes")).expect("dir");
    std::fs::write(dir.join("meshes/base.stl"), box_stl([0.05, 0.05, 0.02])).expect("stl");
    std::fs::File::create(dir.join("meshes/arm.obj"))
        .and_then(|mut f| f.write_all(obj_box(0.02).as_bytes()))
        .expect("obj");
    let urdf = r#"<robot name="meshy">
  <link name="base"><inertial><mass value="1"/><inertia ixx="0.01" iyy="0.01" izz="0.01" ixy="0" ixz="0" iyz="0"/></inertial>
    <visual><geometry><mesh filename="package://meshy/meshes/base.stl"/></geometry></visual>
    <collision><geometry><mesh filename="package://meshy/meshes/base.stl"/></geometry></collision></link>
  <link name="arm"><inertial><mass value="0.2"/><inertia ixx="0.001" iyy="0.001" izz="0.001" ixy="0" ixz="0" iyz="0"/></inertial>
    <collision><geometry><mesh filename="meshes/arm.obj"/></geometry></collision></link>
  <link name="tip"/>
  <joint name="lift" type="revolute"><parent link="base"/><child link="arm"/><origin xyz="0 0 0.1"/>
    <axis xyz="0 1 0"/><limit lower="-1" upper="1" velocity="2" effort="10"/></joint>
  <joint name="tool" type="fixed"><parent link="arm"/><child link="tip"/><origin xyz="0 0 0.05"/></joint>
</robot>"#;
    std::fs::write(dir.join("robot.urdf"), urdf).expect("urdf");
    let path: PathBuf = dir.join("robot.urdf");
    let robot = RobotDescription::load(&path).expect("the robot description loads");
    assert_eq!(robot.meshes.len(), 2);
    let mut world =
        SimWorld::new(robot.clone(), None, Some(&[0.3])).expect("the simulator loads the meshes");
    let trimeshes = world
        .physics
        .colliders
        .iter()
        .filter(|(_, c)| c.shape().as_trimesh().is_some())
        .count();
    assert_eq!(trimeshes, 2, "both mesh files became mesh colliders");
    let fk = robot
        .tree
        .link_pose(&[0.3], robot.tree.link_index("arm").expect("arm"))
        .expect("fk");
    let sim = world.link_pose("arm").expect("arm body");
    assert!((fk.translation.vector - sim.translation.vector).norm() < 1e-5);
    world.command(&[-0.5]).expect("command");
    world.advance(1.0);
    let (q, _) = world.joint_state();
    assert!(q[0].is_finite());
}

#[test]
fn an_unreadable_mesh_format_becomes_its_links_inertia_box() {
    let dir = std::env::temp_dir().join(format!("sinew-sim-ply-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(dir.join("part.ply"), "ply\nformat ascii 1.0\nend_header\n").expect("ply");
    // A solid 0.1 x 0.2 x 0.3 m box of 6 kg: I = m (b^2 + c^2) / 12 ...
    let (m, a, b, c) = (6.0f64, 0.1f64, 0.2f64, 0.3f64);
    let (ixx, iyy, izz) = (
        m * (b * b + c * c) / 12.0,
        m * (a * a + c * c) / 12.0,
        m * (a * a + b * b) / 12.0,
    );
    let urdf = format!(
        r#"<robot name="ply"><link name="base"/>
  <link name="body"><inertial><origin xyz="0 0 0.2"/><mass value="{m}"/><inertia ixx="{ixx}" iyy="{iyy}" izz="{izz}" ixy="0" ixz="0" iyz="0"/></inertial>
    <collision><geometry><mesh filename="part.ply"/></geometry></collision></link>
  <joint name="yaw" type="revolute"><parent link="base"/><child link="body"/><axis xyz="0 0 1"/>
    <limit lower="-1" upper="1" velocity="1" effort="100"/></joint></robot>"#
    );
    std::fs::write(dir.join("robot.urdf"), urdf).expect("urdf");
    let robot = RobotDescription::load(&dir.join("robot.urdf")).expect("loads with a warning");
    assert!(
        robot
            .warnings
            .iter()
            .any(|w| w.contains("part.ply") && w.contains("bounding box")),
        "{:?}",
        robot.warnings
    );
    let world = SimWorld::new(robot, None, Some(&[0.0])).expect("simulates");
    let boxes: Vec<[f32; 3]> = world
        .physics
        .colliders
        .iter()
        .filter_map(|(_, co)| {
            co.shape()
                .as_cuboid()
                .map(|cb| [cb.half_extents.x, cb.half_extents.y, cb.half_extents.z])
        })
        .filter(|h| h[0] < 0.5) // not the table
        .collect();
    assert_eq!(boxes.len(), 1, "{boxes:?}");
    for (got, want) in boxes[0].iter().zip([a, b, c]) {
        assert!((*got as f64 - want / 2.0).abs() < 1e-4, "{boxes:?}");
    }
}

/// A minimal COLLADA 1.4 document with one triangle mesh: a box with half extents `h`.
fn box_dae(h: f32) -> String {
    let mut pos = String::new();
    for i in 0..8 {
        let p = |b: usize| if i & b == 0 { -h } else { h };
        pos += &format!("{} {} {} ", p(1), p(2), p(4));
    }
    let tris = "0 2 1 1 2 3 4 5 6 5 7 6 0 1 4 1 5 4 2 6 3 3 6 7 0 4 2 2 4 6 1 3 5 3 7 5";
    format!(
        r##"<?xml version="1.0" encoding="utf-8"?>
<COLLADA xmlns="http://www.collada.org/2005/11/COLLADASchema" version="1.4.1">
  <asset><unit name="meter" meter="1"/><up_axis>Z_UP</up_axis></asset>
  <library_geometries>
    <geometry id="box" name="box"><mesh>
      <source id="box-pos"><float_array id="box-pos-array" count="24">{pos}</float_array>
        <technique_common><accessor source="#box-pos-array" count="8" stride="3">
          <param name="X" type="float"/><param name="Y" type="float"/><param name="Z" type="float"/>
        </accessor></technique_common></source>
      <vertices id="box-vtx"><input semantic="POSITION" source="#box-pos"/></vertices>
      <triangles count="12"><input semantic="VERTEX" source="#box-vtx" offset="0"/><p>{tris}</p></triangles>
    </mesh></geometry>
  </library_geometries>
  <library_visual_scenes><visual_scene id="scene"><node id="n"><instance_geometry url="#box"/></node></visual_scene></library_visual_scenes>
  <scene><instance_visual_scene url="#scene"/></scene>
</COLLADA>"##
    )
}

#[test]
fn dae_meshes_become_mesh_colliders() {
    let dir = std::env::temp_dir().join(format!("sinew-sim-dae-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(dir.join("part.dae"), box_dae(0.03)).expect("dae");
    let urdf = r#"<robot name="dae"><link name="base"/>
  <link name="body"><inertial><mass value="0.5"/><inertia ixx="0.001" iyy="0.001" izz="0.001" ixy="0" ixz="0" iyz="0"/></inertial>
    <collision><geometry><mesh filename="part.dae"/></geometry></collision></link>
  <joint name="yaw" type="revolute"><parent link="base"/><child link="body"/><axis xyz="0 0 1"/>
    <limit lower="-1" upper="1" velocity="1" effort="10"/></joint></robot>"#;
    std::fs::write(dir.join("robot.urdf"), urdf).expect("urdf");
    let robot = RobotDescription::load(&dir.join("robot.urdf")).expect("loads");
    assert!(robot.warnings.is_empty(), "{:?}", robot.warnings);
    let world = SimWorld::new(robot, None, Some(&[0.0])).expect("simulates");
    let trimesh = world
        .physics
        .colliders
        .iter()
        .find_map(|(_, c)| c.shape().as_trimesh().map(|m| m.vertices().len()));
    assert!(trimesh.is_some_and(|n| n >= 8), "{trimesh:?}");
}
