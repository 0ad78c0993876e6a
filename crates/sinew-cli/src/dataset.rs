//! `sinew dataset record`: scripted-expert demonstrations in the simulator, written as a
//! LeRobotDataset v3.0. `sinew dataset info DIR`: what a dataset holds.
//!
//! Demonstrations run in lockstep through the runtime (the same safety filter and
//! interpolation as every other run), one frame per policy step: the cameras rendered at the
//! robot's resolution and resized to `--image-size` with the filter sinew-tiny uses at
//! inference, the measured joint positions as `observation.state`, and the expert's joint
//! targets for that step as `action`. Failed demonstrations are left out unless
//! `--keep-failures`.
//!
//! `--noise RAD` perturbs what is executed, not what is recorded (DART, Laskey et al. 2017):
//! the arm joints are sent the expert's targets plus Gaussian noise, and the expert, acting on
//! the perturbed robot, labels how to recover. A policy trained on such data has seen the
//! states its own small errors lead to.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use sinew_core::{ActionChunk, ActionKind};
use sinew_data::{Dataset, DatasetSpec, DatasetWriter, RgbImage};
use sinew_runtime::{Runtime, RuntimeConfig, Sensors};
use sinew_sim::expert::{success, Expert};
use sinew_sim::SimWorld;

use crate::sim::{load_robot, load_task};
use crate::stop::Stop;

#[derive(Debug, Subcommand)]
pub enum DatasetCommand {
    /// Record scripted-expert demonstrations as a LeRobotDataset v3.0.
    Record(RecordArgs),
    /// Summarise a LeRobotDataset v3.0 (Sinew's or LeRobot's) and check every frame.
    Info(InfoArgs),
}

#[derive(Debug, Args)]
pub struct RecordArgs {
    /// Robot name or folder.
    #[arg(long, default_value = "so101")]
    robot: String,
    /// Tasks, comma-separated (episodes are recorded for each).
    #[arg(long, default_value = "reach,push,pick-place", value_delimiter = ',')]
    task: Vec<String>,
    /// Episodes per task (successful ones, unless --keep-failures).
    #[arg(long, default_value_t = 10)]
    episodes: u64,
    /// First seed; episode seeds count up from it (failures skip a seed).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Output folder (must not hold a dataset).
    #[arg(long)]
    out: PathBuf,
    /// Square image side stored (px).
    #[arg(long, default_value_t = 96)]
    image_size: u32,
    /// Keep demonstrations that did not succeed.
    #[arg(long)]
    keep_failures: bool,
    /// Standard deviation (rad) of Gaussian noise added to the executed arm-joint targets
    /// (the recorded actions stay the expert's); 0 records clean demonstrations.
    #[arg(long, default_value_t = 0.0)]
    noise: f64,
}

#[derive(Debug, Args)]
pub struct InfoArgs {
    /// The dataset folder.
    dir: PathBuf,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(cmd: DatasetCommand, stop: &Stop) -> Result<()> {
    match cmd {
        DatasetCommand::Record(a) => record(a, stop),
        DatasetCommand::Info(a) => info(a),
    }
}

fn record(a: RecordArgs, stop: &Stop) -> Result<()> {
    let robot = load_robot(&a.robot)?;
    let names: Vec<String> = robot.config.joints.iter().map(|j| j.name.clone()).collect();
    let spec = DatasetSpec {
        robot_type: robot.config.name.clone(),
        fps: 10,
        state_names: names.clone(),
        action_names: names.clone(),
        cameras: robot
            .config
            .cameras
            .iter()
            .map(|c| (c.name.clone(), a.image_size, a.image_size))
            .collect(),
        data_files_size_in_mb: 100.0,
    };
    if !(a.noise.is_finite() && a.noise >= 0.0) {
        bail!(
            "--noise {} must be a non-negative number of radians",
            a.noise
        );
    }
    let mut w = DatasetWriter::create(&a.out, spec)?;
    let t0 = Instant::now();
    let mut summary: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for task_name in &a.task {
        let task = load_task(task_name)?;
        if (task.control_rate_hz - 10.0).abs() > 1e-9 {
            bail!(
                "task {} runs at {} Hz; datasets here are 10 fps",
                task.name,
                task.control_rate_hz
            );
        }
        let (mut kept, mut tried) = (0u64, 0u64);
        let mut seed = a.seed;
        while kept < a.episodes && !stop.requested() {
            tried += 1;
            let ep = task.sample(&robot.config.name, seed)?;
            let ok = demo(&robot, &task, &ep, &mut w, a.image_size, a.noise, seed)
                .with_context(|| format!("{} seed {seed}", task.name))?;
            if ok || a.keep_failures {
                w.end_episode(&ep.instruction)?;
                kept += 1;
            } else {
                w.discard_episode();
            }
            seed += 1;
            eprint!(
                "\rdataset: {} {kept}/{} episodes ({tried} tried)   ",
                task.name, a.episodes
            );
        }
        eprintln!();
        summary.insert(task.name.clone(), (kept, tried));
    }
    let info = w.finish()?;
    let bytes = dir_size(&a.out);
    println!(
        "dataset {}: {} episodes, {} frames, {} tasks, {:.1} MB, {:.1} s",
        a.out.display(),
        info.total_episodes,
        info.total_frames,
        info.total_tasks,
        bytes as f64 / 1e6,
        t0.elapsed().as_secs_f64()
    );
    for (t, (k, n)) in summary {
        println!("  {t}: {k} kept of {n} demonstrations (seeds {}..)", a.seed);
    }
    Ok(())
}

fn dir_size(p: &std::path::Path) -> u64 {
    let mut n = 0;
    if let Ok(rd) = std::fs::read_dir(p) {
        for e in rd.flatten() {
            let p = e.path();
            n += if p.is_dir() {
                dir_size(&p)
            } else {
                e.metadata().map(|m| m.len()).unwrap_or(0)
            };
        }
    }
    n
}

/// One demonstration; frames go to `w`. Returns whether it succeeded.
fn demo(
    robot: &sinew_robot::RobotDescription,
    task: &sinew_sim::TaskSpec,
    ep: &sinew_sim::Episode,
    w: &mut DatasetWriter,
    size: u32,
    noise_rad: f64,
    seed: u64,
) -> Result<bool> {
    let mut rng = sinew_core::rng::SplitMix64(seed ^ 0xDA27_0000_0000_0001);
    let gripper = robot.config.gripper_index();
    let mut world = SimWorld::new(robot.clone(), Some(ep), None)?;
    let mut expert = Expert::new(task.success);
    let (q0, _) = world.joint_state();
    let cfg = RuntimeConfig::new(
        robot,
        task.control_rate_hz,
        Vec::new(),
        ActionKind::JointPosition,
        sinew_runtime::Execution::Sync { steps: 1 },
    );
    let mut rt = Runtime::new(cfg, robot, &q0)?;
    let dt = 1.0 / robot.config.command_rate_hz;
    let mut tick = 0u64;
    let mut steps = 0u64;
    loop {
        let now = ((world.time_s * 1e9).round() as u64) as f64 / 1e9;
        let step = rt.step_at(now);
        if step != steps || now == 0.0 {
            steps = step;
            if success(&world, task.success, task.touch_distance_m)? {
                return Ok(true);
            }
            if step >= task.step_limit as u64 {
                return Ok(false);
            }
        }
        let sensors = Sensors {
            joint_state_stamp: Some(now),
            camera_stamps: Vec::new(),
        };
        if let Some(req) = rt.poll(now, &sensors) {
            rt.inference_started(req.step, now);
            let (q, _) = world.joint_state();
            let target = expert.act(&world, 1.0 / task.control_rate_hz)?;
            let mut images = Vec::new();
            for cam in &robot.config.cameras {
                let f = world.render_camera(&cam.name)?;
                let full = image::RgbImage::from_raw(f.width, f.height, f.rgb)
                    .context("rendered frame size")?;
                let small = sinew_policy::preprocess::resize_with(
                    full,
                    size,
                    size,
                    image::imageops::FilterType::Triangle,
                );
                images.push(RgbImage {
                    width: size,
                    height: size,
                    data: small.into_raw(),
                });
            }
            let state: Vec<f32> = q.iter().map(|v| *v as f32).collect();
            let action: Vec<f32> = target.iter().map(|v| *v as f32).collect();
            w.add_frame(&state, &action, &images)?;
            let mut executed = target;
            if noise_rad > 0.0 {
                for (i, v) in executed.iter_mut().enumerate() {
                    if Some(i) != gripper {
                        *v += noise_rad * rng.normal();
                    }
                }
            }
            let chunk = ActionChunk {
                kind: Some(ActionKind::JointPosition),
                actions: vec![executed],
                observation_stamp_s: now,
                ..Default::default()
            };
            rt.chunk_ready(now, req.step, &chunk, &q);
        }
        let (cmd, _) = rt.command(now);
        world.command(&cmd)?;
        tick += 1;
        world.advance_to(tick as f64 * dt);
    }
}

fn info(a: InfoArgs) -> Result<()> {
    let ds = Dataset::open(&a.dir)?;
    let frames = ds.read_frames()?;
    let sizes = ds.check_images(&frames)?;
    let mut per_task: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for e in &ds.episodes {
        let t = e.tasks.first().cloned().unwrap_or_default();
        let entry = per_task.entry(t).or_default();
        entry.0 += 1;
        entry.1 += e.length;
    }
    let lengths: Vec<u64> = ds.episodes.iter().map(|e| e.length).collect();
    let bytes = dir_size(&a.dir);
    if a.json {
        let v = serde_json::json!({
            "dir": a.dir, "codebase_version": ds.info.codebase_version,
            "robot_type": ds.info.robot_type, "fps": ds.info.fps,
            "episodes": ds.info.total_episodes, "frames": ds.info.total_frames,
            "tasks": ds.tasks, "cameras": ds.cameras,
            "image_sizes": sizes, "bytes": bytes,
            "episodes_per_task": per_task.iter().map(|(k, v)| (k.clone(), v.0)).collect::<BTreeMap<_, _>>(),
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    println!("dataset    {}", a.dir.display());
    println!(
        "format     LeRobotDataset {} ({:.1} MB)",
        ds.info.codebase_version,
        bytes as f64 / 1e6
    );
    println!(
        "robot      {}",
        ds.info.robot_type.clone().unwrap_or_default()
    );
    println!("fps        {}", ds.info.fps);
    println!(
        "episodes   {} ({} frames; length min {} / mean {:.1} / max {})",
        ds.info.total_episodes,
        ds.info.total_frames,
        lengths.iter().min().unwrap_or(&0),
        lengths.iter().sum::<u64>() as f64 / lengths.len().max(1) as f64,
        lengths.iter().max().unwrap_or(&0)
    );
    for (c, (w, h)) in ds.cameras.iter().zip(&sizes) {
        println!("camera     {c}: {w}x{h} (image, PNG in parquet)");
    }
    for f in ["observation.state", "action"] {
        if let Some(s) = ds.info.feature(f) {
            println!("feature    {f}: {} {:?}", s.dtype, s.shape);
        }
    }
    println!("tasks      {}", ds.tasks.len());
    for (t, (n, frames)) in &per_task {
        println!("  {n:>5} episodes {frames:>7} frames  {t}");
    }
    Ok(())
}
