//! `sinew sim`: run the simulator's scripted experts, and measure the simulator.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use sinew_robot::RobotDescription;
use sinew_sim::{Intrinsics, SimWorld, TaskSpec};

use crate::stop::Stop;

#[derive(Debug, Subcommand)]
pub enum SimCommand {
    /// Run a task's scripted expert over seeded episodes and report its success rate.
    Expert(ExpertArgs),
    /// Measure physics steps/s and render frames/s.
    Bench(SimBenchArgs),
    /// Serve the simulated robot on the bus, on the keys a real robot uses.
    Serve(crate::sim_serve::ServeArgs),
    /// Drive simulated episodes with a policy through the runtime (lockstep, reproducible).
    Run(Box<crate::sim_run::SimRunArgs>),
}

#[derive(Debug, Args)]
pub struct ExpertArgs {
    /// Robot name (a folder under robots/) or path to a robot folder.
    #[arg(long, default_value = "so101")]
    robot: String,
    /// Task name (sim/tasks/<task>.toml) or path to a task file.
    #[arg(long, default_value = "reach")]
    task: String,
    /// Number of episodes.
    #[arg(long, default_value_t = 20)]
    episodes: u64,
    /// First seed; episodes use seed, seed+1, ...
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Print one line per episode.
    #[arg(long)]
    verbose_episodes: bool,
}

#[derive(Debug, Args)]
pub struct SimBenchArgs {
    /// Robot name or folder.
    #[arg(long, default_value = "so101")]
    robot: String,
    /// Task name or file.
    #[arg(long, default_value = "reach")]
    task: String,
    /// Seconds of simulated time to step.
    #[arg(long, default_value_t = 10.0)]
    sim_seconds: f64,
    /// Frames to render per resolution.
    #[arg(long, default_value_t = 200)]
    frames: u32,
}

/// Finds the project root (the folder with robots/ and sim/) from the working directory up.
pub fn project_root() -> PathBuf {
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    cwd.ancestors()
        .find(|p| p.join("robots").is_dir() && p.join("sim").is_dir())
        .map(Path::to_path_buf)
        .unwrap_or(cwd)
}

/// `name` as given when it exists, otherwise under the project's `folder` (robots, policies).
pub fn project_path(name: &str, folder: &str) -> PathBuf {
    let p = Path::new(name);
    if p.exists() {
        p.to_path_buf()
    } else {
        project_root().join(folder).join(name)
    }
}

pub fn load_robot(name: &str) -> Result<RobotDescription> {
    let p = Path::new(name);
    let path = if p.exists() {
        p.to_path_buf()
    } else {
        project_root().join("robots").join(name)
    };
    RobotDescription::load(&path)
        .with_context(|| format!("loading robot {name:?} ({})", path.display()))
}

pub fn load_task(name: &str) -> Result<TaskSpec> {
    let p = Path::new(name);
    let path = if p.is_file() {
        p.to_path_buf()
    } else {
        sinew_sim::task::task_path(&project_root(), name)
    };
    TaskSpec::from_file(&path)
        .with_context(|| format!("loading task {name:?} ({})", path.display()))
}

pub fn run(cmd: SimCommand, bus: &sinew_bus::BusConfig, stop: &Stop) -> Result<()> {
    match cmd {
        SimCommand::Expert(a) => expert(a, stop),
        SimCommand::Bench(a) => bench(a),
        SimCommand::Serve(a) => crate::sim_serve::serve(a, bus, stop),
        SimCommand::Run(a) => crate::sim_run::sim_run(*a, stop),
    }
}

fn expert(a: ExpertArgs, stop: &Stop) -> Result<()> {
    let robot = load_robot(&a.robot)?;
    let task = load_task(&a.task)?;
    let start = Instant::now();
    let mut ok = 0u64;
    let mut done = 0u64;
    let mut steps = 0u64;
    for seed in a.seed..a.seed + a.episodes {
        if stop.requested() {
            break;
        }
        let out = sinew_sim::expert::run_expert_episode(&robot, &task, seed)?;
        done += 1;
        steps += out.steps as u64;
        if out.success {
            ok += 1;
        }
        if a.verbose_episodes {
            println!(
                "seed {seed:>5}  {}  {:>3} steps  {}",
                if out.success { "success" } else { "FAIL   " },
                out.steps,
                out.instruction
            );
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{} on {}: expert success {ok}/{done} = {:.1}%  mean length {:.1} steps  {:.2} episodes/s",
        task.name,
        robot.config.name,
        100.0 * ok as f64 / done.max(1) as f64,
        steps as f64 / done.max(1) as f64,
        done as f64 / secs
    );
    Ok(())
}

fn bench(a: SimBenchArgs) -> Result<()> {
    let robot = load_robot(&a.robot)?;
    let task = load_task(&a.task)?;
    let ep = task.sample(&robot.config.name, 0)?;
    let mut world = SimWorld::new(robot.clone(), Some(&ep), None)?;
    let n = (a.sim_seconds * sinew_sim::PHYSICS_HZ) as u32;
    let t = Instant::now();
    world.step(n);
    let physics = n as f64 / t.elapsed().as_secs_f64();
    println!(
        "physics: {} on {} scene: {:.0} steps/s ({:.1}x real time at {} Hz)",
        robot.config.name,
        task.name,
        physics,
        physics / sinew_sim::PHYSICS_HZ,
        sinew_sim::PHYSICS_HZ
    );
    let cam = robot
        .config
        .cameras
        .first()
        .context("the robot has no camera")?;
    let world_from_camera = robot
        .camera_pose(cam, &world.joint_state().0)?
        .cast::<f32>();
    for (w, h) in [(224u32, 224u32), (640, 480)] {
        let k = Intrinsics {
            width: w,
            height: h,
            fov_y: cam.fov_y_deg.to_radians(),
        };
        let t = Instant::now();
        let mut checksum = 0u64;
        for _ in 0..a.frames {
            let f = world.render(&world_from_camera, &k);
            checksum = checksum.wrapping_add(f.rgb[f.rgb.len() / 2] as u64);
        }
        let fps = a.frames as f64 / t.elapsed().as_secs_f64();
        println!("render {w}x{h} rgb+depth: {fps:.0} frames/s on one core (checksum {checksum})");
    }
    Ok(())
}
