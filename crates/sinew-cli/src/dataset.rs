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
//!
//! `--policy P` records DAgger data (Ross et al. 2011): the policy drives the robot, executing
//! its chunks exactly as `sinew sim run` does in sync mode, and the expert, following along,
//! labels every frame with what it would command there. `--expert-fraction F` lets the expert
//! drive that fraction of the episodes instead (DAgger's mixture). Policy-driven episodes are
//! kept whether or not they succeed: their labels are the expert's either way, and the states
//! of failures are the ones the policy most needs labelled.
//!
//! `--jobs J` simulates J episodes at once. Seeds are handed out and written in order, so the
//! dataset is the same for any J.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
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
    Record(Box<RecordArgs>),
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
    /// (the recorded actions stay the expert's); 0 records clean demonstrations. Applies to
    /// expert-driven episodes only.
    #[arg(long, default_value_t = 0.0)]
    noise: f64,
    /// A policy folder to drive the episodes while the expert labels them (DAgger).
    #[arg(long)]
    policy: Option<String>,
    /// With --policy: the fraction of episodes the expert drives instead (chosen per seed).
    #[arg(long, default_value_t = 0.0)]
    expert_fraction: f64,
    /// With --policy: the policy drives up to a random step within this fraction of the task's
    /// step limit, unrecorded; then the expert takes over from that state and only its part
    /// is recorded, kept when it succeeds (e.g. 0.4).
    #[arg(long, value_name = "FRACTION")]
    takeover: Option<f64>,
    /// With --takeover: the tasks it applies to (default all); the expert alone drives the
    /// others' episodes.
    #[arg(long, value_delimiter = ',')]
    takeover_tasks: Vec<String>,
    /// Episodes simulated at once (with --policy, each worker loads its own copy). The
    /// dataset does not depend on it.
    #[arg(long, default_value_t = 1)]
    jobs: usize,
    #[command(flatten)]
    device: crate::policy::DeviceArgs,
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
        DatasetCommand::Record(a) => record(*a, stop),
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
    if !(0.0..=1.0).contains(&a.expert_fraction) {
        bail!(
            "--expert-fraction {} must be between 0 and 1",
            a.expert_fraction
        );
    }
    if let Some(f) = a.takeover {
        if !(f > 0.0 && f <= 1.0) {
            bail!("--takeover {f} must be a fraction of the step limit in (0, 1]");
        }
    }
    if a.policy.is_none() && a.takeover.is_some() {
        bail!("--takeover needs --policy (the expert takes over from it)");
    }
    if a.policy.is_none() && a.expert_fraction != 0.0 {
        bail!("--expert-fraction needs --policy (without one the expert drives every episode)");
    }
    if a.jobs == 0 {
        bail!("--jobs must be at least 1");
    }
    if let Some(p) = &a.policy {
        // Fail before any worker starts (each loads its own copy).
        Learner::load(p, &robot, &a.device)?;
    }
    let mut w = DatasetWriter::create(&a.out, spec)?;
    let t0 = Instant::now();
    let mut summary: BTreeMap<String, (u64, u64, u64, u64)> = BTreeMap::new();
    for task_name in &a.task {
        let task = load_task(task_name)?;
        if (task.control_rate_hz - 10.0).abs() > 1e-9 {
            bail!(
                "task {} runs at {} Hz; datasets here are 10 fps",
                task.name,
                task.control_rate_hz
            );
        }
        let counts = record_task(&a, &robot, &task, &mut w, stop)?;
        eprintln!();
        summary.insert(task.name.clone(), counts);
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
    for (t, (k, n, ok, driven)) in summary {
        print!("  {t}: {k} kept of {n} demonstrations (seeds {}..)", a.seed);
        if driven > 0 {
            print!(
                "; the policy drove {driven} and succeeded in {ok} ({:.0}%)",
                100.0 * ok as f64 / driven as f64
            );
        }
        println!();
    }
    Ok(())
}

/// One frame of a demonstration, held until its episode is written.
struct RecordedFrame {
    state: Vec<f32>,
    action: Vec<f32>,
    images: Vec<RgbImage>,
}

/// One seed's episode, as a worker hands it back.
struct SeedEpisode {
    succeeded: bool,
    policy_driven: bool,
    instruction: String,
    frames: Vec<RecordedFrame>,
}

type SeedResult = Result<SeedEpisode, String>;

/// Records `task`'s episodes into `w` with `--jobs` workers. Seeds are handed out in order and
/// their episodes written in seed order, so the dataset is the same for any number of workers:
/// the first `--episodes` kept seeds from `--seed` on. Returns (kept, tried, policy successes,
/// policy-driven episodes).
fn record_task(
    a: &RecordArgs,
    robot: &sinew_robot::RobotDescription,
    task: &sinew_sim::TaskSpec,
    w: &mut DatasetWriter,
    stop: &Stop,
) -> Result<(u64, u64, u64, u64)> {
    let (mut kept, mut tried, mut succeeded, mut driven) = (0u64, 0u64, 0u64, 0u64);
    if a.episodes == 0 {
        return Ok((kept, tried, succeeded, driven));
    }
    let next_seed = AtomicU64::new(a.seed);
    let done = AtomicBool::new(false);
    let (tx, rx) = crossbeam_channel::unbounded::<(u64, SeedResult)>();
    std::thread::scope(|s| -> Result<()> {
        for k in 0..a.jobs {
            let tx = tx.clone();
            let (next_seed, done) = (&next_seed, &done);
            std::thread::Builder::new()
                .name(format!("sinew-record-{k}"))
                .spawn_scoped(s, move || {
                    let mut learner = None;
                    while !done.load(Ordering::Relaxed) && !stop.requested() {
                        let seed = next_seed.fetch_add(1, Ordering::Relaxed);
                        let r = record_seed(a, robot, task, seed, &mut learner)
                            .map_err(|e| format!("{} seed {seed}: {e:#}", task.name));
                        if tx.send((seed, r)).is_err() {
                            break;
                        }
                    }
                })?;
        }
        drop(tx);
        // Results arrive in any order; they are written in seed order.
        let mut pending: BTreeMap<u64, SeedResult> = BTreeMap::new();
        let mut want = a.seed;
        let written = (|| -> Result<()> {
            for (seed, r) in rx.iter() {
                pending.insert(seed, r);
                while let Some(r) = pending.remove(&want) {
                    let e = r.map_err(|e| anyhow::anyhow!(e))?;
                    tried += 1;
                    // Policy-driven DAgger episodes are kept whether they succeed or not.
                    let dagger = e.policy_driven && a.takeover.is_none();
                    if dagger {
                        driven += 1;
                        succeeded += u64::from(e.succeeded);
                    }
                    if e.succeeded || a.keep_failures || dagger {
                        for f in &e.frames {
                            w.add_frame(&f.state, &f.action, &f.images)?;
                        }
                        w.end_episode(&e.instruction)?;
                        kept += 1;
                    }
                    want += 1;
                    eprint!(
                        "\rdataset: {} {kept}/{} episodes ({tried} tried)   ",
                        task.name, a.episodes
                    );
                    if kept >= a.episodes {
                        return Ok(());
                    }
                }
            }
            Ok(())
        })();
        // Stops the workers, whether this task is complete, interrupted or failed.
        done.store(true, Ordering::Relaxed);
        written
    })?;
    Ok((kept, tried, succeeded, driven))
}

/// Runs one seed's episode: the expert drives, or the policy (`--policy`, loaded into
/// `learner` on first use) drives or hands over to the expert, as the arguments ask.
fn record_seed(
    a: &RecordArgs,
    robot: &sinew_robot::RobotDescription,
    task: &sinew_sim::TaskSpec,
    seed: u64,
    learner: &mut Option<Learner>,
) -> Result<SeedEpisode> {
    let ep = task.sample(&robot.config.name, seed)?;
    // The mixture is drawn per seed, so a rerun drives the same episodes the same way.
    let skip_takeover = a.takeover.is_some()
        && !a.takeover_tasks.is_empty()
        && !a.takeover_tasks.iter().any(|t| t == &task.name);
    let expert_drives = a.policy.is_none()
        || skip_takeover
        || sinew_core::rng::SplitMix64(seed ^ 0xBE7A_0000_0000_0002).unit() < a.expert_fraction;
    let driver = match (&a.policy, expert_drives) {
        (Some(p), false) => {
            if learner.is_none() {
                *learner = Some(Learner::load(p, robot, &a.device)?);
            }
            learner.as_mut()
        }
        _ => None,
    };
    let policy_driven = driver.is_some();
    let mut frames = Vec::new();
    let succeeded = demo(
        robot,
        task,
        &ep,
        &mut frames,
        a.image_size,
        a.noise,
        seed,
        driver,
        a.takeover,
    )?;
    Ok(SeedEpisode {
        succeeded,
        policy_driven,
        instruction: ep.instruction,
        frames,
    })
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

/// A policy driving DAgger episodes, and how many entries of each chunk it executes.
struct Learner {
    policy: Box<dyn sinew_core::Policy>,
    cameras: Vec<String>,
    n_exec: usize,
}

impl Learner {
    fn load(
        name: &str,
        robot: &sinew_robot::RobotDescription,
        device: &crate::policy::DeviceArgs,
    ) -> Result<Self> {
        let dir = crate::sim::project_path(name, "policies");
        let policy = sinew_policy::folder::load_policy(&dir, &device.options()?)
            .with_context(|| format!("loading policy {}", dir.display()))?;
        let s = policy.spec();
        if s.action_kind != ActionKind::JointPosition {
            bail!(
                "policy {} emits {:?} actions; DAgger recording needs absolute joint positions",
                dir.display(),
                s.action_kind
            );
        }
        if (s.control_rate_hz - 10.0).abs() > 1e-9 {
            bail!(
                "policy {} runs at {} Hz; datasets here are 10 fps",
                dir.display(),
                s.control_rate_hz
            );
        }
        crate::sim_run::check_cameras(robot, &s.cameras)
            .with_context(|| format!("policy {}", dir.display()))?;
        let n_exec = crate::sim_run::sync_steps(s.chunk_length, s.n_action_steps);
        Ok(Self {
            cameras: s.cameras.clone(),
            policy,
            n_exec,
        })
    }

    /// The policy's chunk for the current observation.
    fn infer(&mut self, world: &SimWorld, instruction: &str, now: f64) -> Result<Vec<Vec<f64>>> {
        let mut images = BTreeMap::new();
        for cam in &self.cameras {
            images.insert(cam.clone(), crate::sim_run::image_of(world, cam, now)?);
        }
        let (q, _) = world.joint_state();
        let obs = sinew_core::Observation {
            images,
            joint_positions: q,
            joint_velocities: Vec::new(),
            instruction: instruction.to_owned(),
            stamp_s: now,
        };
        let chunk = self
            .policy
            .infer(&obs)
            .map_err(|e| anyhow::anyhow!("policy inference at t = {now:.2} s: {e}"))?;
        if chunk.actions.is_empty() {
            bail!("the policy returned an empty chunk at t = {now:.2} s");
        }
        let joints = world.robot.config.joints.len();
        if let Some(a) = chunk.actions.iter().find(|a| a.len() != joints) {
            bail!(
                "the policy returned a {}-joint action at t = {now:.2} s; the robot has {joints}",
                a.len()
            );
        }
        Ok(chunk.actions)
    }
}

/// One demonstration; its frames are pushed onto `frames`. The expert drives, or `learner` drives while the
/// expert labels. Returns whether it succeeded.
#[allow(clippy::too_many_arguments)]
fn demo(
    robot: &sinew_robot::RobotDescription,
    task: &sinew_sim::TaskSpec,
    ep: &sinew_sim::Episode,
    frames: &mut Vec<RecordedFrame>,
    size: u32,
    noise_rad: f64,
    seed: u64,
    mut learner: Option<&mut Learner>,
    takeover: Option<f64>,
) -> Result<bool> {
    if let Some(l) = learner.as_deref_mut() {
        l.policy.reset();
    }
    // Takeover: the policy drives up to this step, unrecorded; then a fresh expert drives
    // and records. Otherwise (u64::MAX) the policy, if any, drives throughout.
    let switch_step = match takeover {
        Some(within) if learner.is_some() => {
            let u = sinew_core::rng::SplitMix64(seed ^ 0x7A6E_0000_0000_0003).unit();
            (u * within * task.step_limit as f64) as u64
        }
        _ => u64::MAX,
    };
    let mut taken = false;
    // The learner's current chunk and the next entry to execute.
    let mut plan: Vec<Vec<f64>> = Vec::new();
    let mut next = 0usize;
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
                // A policy that succeeds before the takeover leaves nothing recorded.
                return Ok(switch_step == u64::MAX || taken);
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
            if req.step >= switch_step && !taken {
                // It reads its phase from wherever the policy left the robot and the cube.
                expert = Expert::taking_over(
                    task.success,
                    &sinew_sim::expert::ExpertView::of_world(&world),
                )?;
                taken = true;
            }
            let before_takeover = switch_step != u64::MAX && !taken;
            let (q, _) = world.joint_state();
            // Before a takeover nothing is labelled, so the expert need not solve its IK.
            let target = if before_takeover {
                Vec::new()
            } else {
                expert.act(&world, 1.0 / task.control_rate_hz)?
            };
            let mut images = Vec::new();
            // Frames before a takeover are not recorded: no need to render them.
            if !before_takeover {
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
            }
            let state: Vec<f32> = q.iter().map(|v| *v as f32).collect();
            let action: Vec<f32> = target.iter().map(|v| *v as f32).collect();
            if !before_takeover {
                frames.push(RecordedFrame {
                    state,
                    action,
                    images,
                });
            }
            let expert_drives = learner.is_none() || taken;
            let mut executed = match learner.as_deref_mut() {
                Some(l) if !expert_drives => {
                    if next >= plan.len().min(l.n_exec) {
                        plan = l.infer(&world, &ep.instruction, now)?;
                        next = 0;
                    }
                    next += 1;
                    plan[next - 1].clone()
                }
                _ => target,
            };
            if noise_rad > 0.0 && expert_drives {
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
