//! `sinew robot`: validate a robot description and compute forward kinematics; serve,
//! calibrate and emulate real arms (in `arm.rs`).

use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use serde_json::{json, Map, Value};
use sinew_robot::{mesh_paths, LoadOptions, RobotDescription};

#[derive(Debug, Subcommand)]
pub enum RobotCommand {
    /// Validate a robot folder (robot.toml + URDF) or a bare URDF; print its tree, limits and
    /// cameras.
    Check(CheckArgs),
    /// Print the pose of every link in the base frame as JSON (metres; quaternion x y z w).
    Fk(FkArgs),
    /// Serve a real arm (SO-101, Feetech servos) on the bus, on the keys `sim serve` uses.
    Serve(Box<crate::arm::ServeArgs>),
    /// Calibrate an SO-101 arm as LeRobot does; writes LeRobot's calibration JSON.
    Calibrate(crate::arm::CalibrateArgs),
    /// Emulate a bus of STS3215 servos on a pseudo-terminal (no arm needed).
    Emulate(crate::arm::EmulateArgs),
}

/// Where `package://` meshes are (kinematics never need them; a mesh not found is a warning).
#[derive(Debug, Args)]
pub struct PackageArgs {
    /// A package's folder, for `package://NAME/...` mesh paths; repeatable. Tried before
    /// ROS_PACKAGE_PATH, walking up from the URDF, and paths relative to the URDF (pybullet).
    #[arg(long = "package", value_name = "NAME=DIR", value_parser = mesh_paths::parse_package_arg)]
    packages: Vec<(String, PathBuf)>,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Robot folder or .urdf file.
    path: PathBuf,
    #[command(flatten)]
    packages: PackageArgs,
}

#[derive(Debug, Args)]
pub struct FkArgs {
    /// Robot folder or .urdf file.
    path: PathBuf,
    #[command(flatten)]
    packages: PackageArgs,
    /// Joint values in robot.toml order (rad or m), comma-separated; home when omitted.
    #[arg(long, value_delimiter = ',', allow_hyphen_values = true)]
    joints: Vec<f64>,
}

pub fn run(cmd: RobotCommand, bus: &sinew_bus::BusConfig, stop: &crate::stop::Stop) -> Result<()> {
    match cmd {
        RobotCommand::Check(a) => check(a),
        RobotCommand::Fk(a) => fk(a),
        RobotCommand::Serve(a) => crate::arm::serve(*a, bus, stop),
        RobotCommand::Calibrate(a) => crate::arm::calibrate_arm(a),
        RobotCommand::Emulate(a) => crate::arm::emulate(a, stop),
    }
}

fn load(path: &std::path::Path, packages: &PackageArgs) -> Result<RobotDescription> {
    let opts = LoadOptions {
        packages: packages.packages.clone(),
        ..LoadOptions::default()
    };
    RobotDescription::load_with(path, &opts)
        .with_context(|| format!("loading the robot at {}", path.display()))
}

fn check(a: CheckArgs) -> Result<()> {
    let r = load(&a.path, &a.packages)?;
    let c = &r.config;
    let t = &r.tree;
    let mut out = std::io::stdout().lock();
    writeln!(out, "robot {} ({})", c.name, r.urdf_path.display())?;
    writeln!(
        out,
        "  namespace {}  base {}  end effector {}  command rate {} Hz  action space {:?}",
        c.namespace, c.base_link, c.ee_link, c.command_rate_hz, c.action_space.kind
    )?;
    writeln!(
        out,
        "\nkinematic tree ({} links, {} joints, {} variables):",
        t.links.len(),
        t.joints.len(),
        t.dof()
    )?;
    for line in t.drawing() {
        writeln!(out, "{line}")?;
    }
    writeln!(
        out,
        "\njoints (robot.toml; rad, rad/s, rad/s^2, N m; m for prismatic):"
    )?;
    writeln!(
        out,
        "  {:<22} {:>9} {:>9} {:>8} {:>8} {:>8} {:>8} {:>7}",
        "name", "min", "max", "vel", "acc", "effort", "kp", "kd"
    )?;
    for j in &c.joints {
        writeln!(
            out,
            "  {:<22} {:>9.4} {:>9.4} {:>8.3} {:>8.3} {:>8.3} {:>8.1} {:>7.1}",
            j.name,
            j.position_min,
            j.position_max,
            j.velocity_max,
            j.acceleration_max,
            j.effort_max,
            j.kp,
            j.kd
        )?;
    }
    if let Some(g) = &c.gripper {
        writeln!(
            out,
            "\ngripper: joint {} open {} closed {} mimic {:?}",
            g.joint, g.open, g.closed, g.mimic
        )?;
    }
    if !c.cameras.is_empty() {
        writeln!(out, "\ncameras:")?;
        let home = r.home();
        for cam in &c.cameras {
            let p = r.camera_pose(cam, &home)?;
            let v = p.translation.vector;
            writeln!(
                out,
                "  {:<8} on {:<16} {}x{} fov_y {} deg depth {}  at home: ({:.3}, {:.3}, {:.3}) m",
                cam.name,
                cam.mount_link,
                cam.width,
                cam.height,
                cam.fov_y_deg,
                cam.depth,
                v.x,
                v.y,
                v.z
            )?;
        }
    }
    if !r.meshes.is_empty() {
        writeln!(out, "\nmeshes:")?;
        for m in &r.meshes {
            let note = match (m.found, m.readable) {
                (false, _) => "(not found: bounding box)",
                (true, false) => "(bounding box)",
                (true, true) => "",
            };
            let shown = if m.found {
                m.path.display().to_string()
            } else {
                m.filename.clone()
            };
            writeln!(out, "  {:<16} {shown} {note}", m.link)?;
        }
    }
    for w in &r.warnings {
        writeln!(out, "warning: {w}")?;
    }
    writeln!(out, "\nok")?;
    Ok(())
}

fn fk(a: FkArgs) -> Result<()> {
    let r = load(&a.path, &a.packages)?;
    let q = if a.joints.is_empty() {
        r.home()
    } else {
        a.joints.clone()
    };
    if q.len() != r.dof() {
        let names: Vec<&str> = r.tree.active_names();
        bail!(
            "--joints has {} values; {} expects {} ({})",
            q.len(),
            r.config.name,
            r.dof(),
            names.join(",")
        );
    }
    for (i, (v, j)) in q.iter().zip(&r.config.joints).enumerate() {
        if *v < j.position_min || *v > j.position_max {
            eprintln!(
                "warning: joint {i} ({}) = {v} is outside [{}, {}]",
                j.name, j.position_min, j.position_max
            );
        }
    }
    let poses = r.tree.forward(&q)?;
    let mut links = Map::new();
    for (name, p) in r.tree.links.iter().zip(&poses) {
        let t = p.translation.vector;
        let qv = p.rotation.coords; // x, y, z, w
        links.insert(
            name.clone(),
            json!({"xyz": [t.x, t.y, t.z], "quat_xyzw": [qv.x, qv.y, qv.z, qv.w]}),
        );
    }
    let joints: Map<String, Value> = r
        .config
        .joints
        .iter()
        .zip(&q)
        .map(|(j, v)| (j.name.clone(), json!(v)))
        .collect();
    let doc = json!({"robot": r.config.name, "base_link": r.config.base_link, "joints": joints, "links": links});
    println!("{}", serde_json::to_string_pretty(&doc)?);
    Ok(())
}
