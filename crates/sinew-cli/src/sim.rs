//! `sinew sim`: scripted experts, the simulator's speed, the simulated robot served on the bus,
//! and episodes driven by a policy through the runtime (lockstep, reproducible).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use sinew_app::batch::{run_batch, BatchSpec};
use sinew_app::episode::PolicyName;
use sinew_app::resolve::{load_robot, load_task};
use sinew_app::serve::{sim_serve, SimServeSpec};
use sinew_bus::{Bus, BusConfig};
use sinew_sim::SimWorld;

use crate::args::{DeviceArgs, ExecutionArgs, LatencyArgs, RecordingArgs, RerunArgs};
use crate::stop::Stop;

#[derive(Debug, Subcommand)]
pub enum SimCommand {
    /// Run a task's scripted expert over seeded episodes and report its success rate.
    Expert(ExpertArgs),
    /// Measure physics steps/s and render frames/s.
    Bench(SimBenchArgs),
    /// Serve the simulated robot on the bus, on the keys a real robot uses.
    Serve(ServeArgs),
    /// Drive simulated episodes with a policy through the runtime (lockstep, reproducible).
    Run(Box<SimRunArgs>),
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

/// `sim serve`: publishes `<ns>/joint_states`, `<ns>/camera/<cam>/image_raw` (and
/// `.../depth/image_raw`) and `<ns>/instruction`; executes `trajectory_msgs/JointTrajectory`
/// received on `<ns>/joint_commands` through the robot's position, velocity and acceleration
/// limits. Real time by default; with `--lockstep`, simulated time advances one control step
/// per command received, so a client's run is reproducible.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Robot name (a folder under robots/) or path.
    #[arg(long, default_value = "so101")]
    robot: String,
    /// Task name or file.
    #[arg(long, default_value = "reach")]
    task: String,
    /// Episode seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Advance one control step per command instead of running in real time.
    #[arg(long)]
    lockstep: bool,
    /// Camera frame rate in real-time mode, Hz.
    #[arg(long, default_value_t = 15.0)]
    camera_hz: f64,
    /// Stop after this many seconds of simulated time.
    #[arg(long)]
    duration: Option<f64>,
    /// Real time: hold (brake to a stop) when no command came for this long, s.
    #[arg(long, default_value_t = 0.25)]
    command_timeout: f64,
}

#[derive(Debug, Args)]
pub struct SimRunArgs {
    /// Robot name (a folder under robots/) or path.
    #[arg(long, default_value = "so101")]
    pub robot: String,
    /// Task name or file.
    #[arg(long, default_value = "pick-place")]
    pub task: String,
    /// `expert` (the task's scripted expert) or a policy folder.
    #[arg(long, default_value = "expert")]
    pub policy: String,
    /// Episodes to run.
    #[arg(long, default_value_t = 10)]
    pub episodes: u64,
    /// Seed of the first episode (episode i uses seed + i).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Instruct with the task's training templates or its held-out ones (never in training
    /// data); the scene of a seed is the same either way.
    #[arg(long, default_value = "training")]
    pub phrasing: sinew_sim::Phrasing,
    /// Episodes simulated at once (each worker loads its own copy of the policy); the results
    /// do not depend on it.
    #[arg(long, default_value_t = 1)]
    pub jobs: usize,
    #[command(flatten)]
    pub exec: ExecutionArgs,
    #[command(flatten)]
    pub latency: LatencyArgs,
    #[command(flatten)]
    pub device: DeviceArgs,
    /// Write per-episode results as JSON.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Print nothing per episode.
    #[arg(long)]
    pub quiet: bool,
    /// Record each episode to DIR/episode_<seed>.mcap (rosbag2 MCAP) and .rrd, with an index
    /// in DIR/episodes.jsonl (seed, task, instruction, outcome).
    #[arg(long)]
    pub record: Option<PathBuf>,
    #[command(flatten)]
    pub rerun: RerunArgs,
    #[command(flatten)]
    pub recording: RecordingArgs,
}

pub fn run(cmd: SimCommand, bus: &BusConfig, stop: &Stop) -> Result<()> {
    match cmd {
        SimCommand::Expert(a) => expert(a, stop),
        SimCommand::Bench(a) => bench(a),
        SimCommand::Serve(a) => serve(a, bus, stop),
        SimCommand::Run(a) => sim_run(*a, stop),
    }
}

fn expert(a: ExpertArgs, stop: &Stop) -> Result<()> {
    let robot = load_robot(&a.robot)?;
    let task = load_task(&a.task)?;
    let start = Instant::now();
    let (mut ok, mut done, mut steps) = (0u64, 0u64, 0u64);
    // Pushes started again (lift-offs or low re-seats): episodes with any, and in all.
    let (mut restarted, mut restarts) = (0u64, 0u64);
    // Episodes whose targets came within NEAR_LIMIT (rad, or m for prismatic joints) of an arm
    // joint's position limit.
    const NEAR_LIMIT: f64 = 0.1;
    let mut near_limit = 0u64;
    for seed in a.seed..a.seed + a.episodes {
        if stop.requested() {
            break;
        }
        let out = sinew_sim::expert::run_expert_episode(&robot, &task, seed)?;
        done += 1;
        steps += out.steps as u64;
        ok += u64::from(out.success);
        restarted += u64::from(out.push_restarts > 0);
        restarts += u64::from(out.push_restarts);
        if let Some(t) = out.tightest_limit {
            near_limit += u64::from(t.margin < NEAR_LIMIT);
        }
        if a.verbose_episodes {
            let limit = out.tightest_limit.map_or(String::new(), |t| {
                format!(
                    "joint {} {:.3} from its {} limit  ",
                    t.joint + 1,
                    t.margin,
                    if t.upper { "upper" } else { "lower" }
                )
            });
            println!(
                "seed {seed:>5}  {}  {:>3} steps  {} restarts  {limit}{}",
                if out.success { "success" } else { "FAIL   " },
                out.steps,
                out.push_restarts,
                out.instruction
            );
        }
    }
    if restarts > 0 {
        println!("push started again in {restarted}/{done} episodes, {restarts} times in all");
    }
    println!(
        "an arm joint's target within {NEAR_LIMIT} of its limit in {near_limit}/{done} episodes"
    );
    println!(
        "{} on {}: expert success {ok}/{done} = {:.1}%  mean length {:.1} steps  {:.2} episodes/s",
        task.name,
        robot.config.name,
        100.0 * ok as f64 / done.max(1) as f64,
        steps as f64 / done.max(1) as f64,
        done as f64 / start.elapsed().as_secs_f64()
    );
    Ok(())
}

fn bench(a: SimBenchArgs) -> Result<()> {
    let robot = load_robot(&a.robot)?;
    let task = load_task(&a.task)?;
    let ep = task.sample(&robot.config.name, 0)?;
    let mut world = SimWorld::new(robot.clone(), Some(&ep), None)?;
    let b = world.bench(a.sim_seconds, a.frames)?;
    println!(
        "physics: {} on {} scene: {:.0} steps/s ({:.1}x real time at {} Hz)",
        robot.config.name,
        task.name,
        b.physics_steps_per_s,
        b.physics_steps_per_s / sinew_sim::PHYSICS_HZ,
        sinew_sim::PHYSICS_HZ
    );
    for (w, h, fps) in b.render_frames_per_s {
        println!(
            "render {w}x{h} rgb+depth: {fps:.0} frames/s on one core (checksum {})",
            b.checksum
        );
    }
    Ok(())
}

fn serve(a: ServeArgs, bus_cfg: &BusConfig, stop: &Stop) -> Result<()> {
    let spec = SimServeSpec {
        robot: load_robot(&a.robot)?,
        task: load_task(&a.task)?,
        seed: a.seed,
        lockstep: a.lockstep,
        camera_hz: a.camera_hz.max(0.1),
        duration_s: a.duration,
        command_timeout_s: a.command_timeout,
    };
    let bus = Bus::open(bus_cfg)?;
    let r = sim_serve(&spec, &bus, &mut |l| eprintln!("{l}"), &|| stop.requested())?;
    let l = r.limited;
    eprintln!(
        "sim serve: {:.2} s simulated in {:.2} s wall (real-time factor {:.2}); commands applied {}, rejected {}, malformed {}, dropped {}; limited by the robot: position {}, velocity {}, acceleration {}, workspace {}; command timeouts {}",
        r.robot_s,
        r.wall_s,
        r.robot_s / r.wall_s.max(1e-9),
        r.applied,
        r.rejected,
        r.malformed,
        r.dropped,
        l.position,
        l.velocity,
        l.acceleration,
        l.workspace,
        r.command_timeouts
    );
    bus.close();
    Ok(())
}

fn sim_run(a: SimRunArgs, stop: &Stop) -> Result<()> {
    if a.jobs == 0 {
        bail!("--jobs must be at least 1");
    }
    let mut exec = a.exec.spec();
    exec.latency = a.latency.model()?;
    if let Some(l) = &exec.latency {
        eprintln!("sim run: simulated inference latency {}", l.label());
    }
    let spec = BatchSpec {
        robot: load_robot(&a.robot)?,
        tasks: vec![load_task(&a.task)?],
        policy: PolicyName::parse(&a.policy),
        episodes: a.episodes,
        seed: a.seed,
        exec,
        device: a.device.spec(),
        record: a.record.clone(),
        task_folders: false,
        rerun: a.rerun.spec(),
        encodings: a.recording.encodings(crate::args::ImageEncodingArg::Png),
        jobs: a.jobs,
        phrasings: Some(vec![a.phrasing]),
        swap: false,
    };
    let quiet = a.quiet;
    let report = run_batch(
        &spec,
        |row| {
            let r = &row.result;
            if !quiet {
                println!(
                    "seed {:>5}  {}  {:>3} steps  {:>3} inferences ({:.1} ms)  {}",
                    r.seed,
                    if r.success { "success" } else { "FAIL   " },
                    r.steps,
                    r.inferences,
                    r.mean_inference_ms,
                    r.instruction
                );
            }
        },
        &|| stop.requested(),
    )?;
    let results: Vec<_> = report.rows.iter().map(|r| &r.result).collect();
    let n = results.len().max(1) as f64;
    let ok = results.iter().filter(|r| r.success).count();
    let sim_s: f64 = results.iter().map(|r| r.sim_time_s).sum();
    let commands: u64 = results.iter().map(|r| r.commands).sum();
    let inferences: u64 = results.iter().map(|r| r.inferences).sum();
    println!(
        "{} on {} with {}: success {ok}/{} = {:.1}%  mean length {:.1} steps  {:.2} episodes/s  {:.1}x real time  commands {:.0} Hz, policy {:.1} Hz (simulated time)",
        spec.tasks[0].name,
        spec.robot.config.name,
        a.policy,
        results.len(),
        100.0 * ok as f64 / n,
        results.iter().map(|r| r.steps as f64).sum::<f64>() / n,
        results.len() as f64 / report.wall_s,
        sim_s / report.wall_s,
        commands as f64 / sim_s.max(1e-9),
        inferences as f64 / sim_s.max(1e-9)
    );
    if let Some(p) = &a.json {
        std::fs::write(p, serde_json::to_string_pretty(&results)?)
            .map_err(|e| anyhow::anyhow!("writing {}: {e}", p.display()))?;
    }
    if let Some(o) = &report.outputs {
        if a.record.is_some() {
            eprintln!(
                "sim run: recorded {} episode file(s), {:.1} MB of messages, to {}",
                o.files,
                o.bytes as f64 / 1e6,
                a.record
                    .as_ref()
                    .map(|d| d.display().to_string())
                    .unwrap_or_default()
            );
        }
        if o.streams > 0 {
            eprintln!(
                "sim run: rerun: {} episode stream(s){} to {}",
                o.streams,
                if o.skipped > 0 {
                    format!(", {} message(s) not shown", o.skipped)
                } else {
                    String::new()
                },
                spec.rerun.describe(a.record.as_deref())
            );
        }
        if let Some(e) = &o.error {
            bail!("{e} (what was written stays readable)");
        }
    }
    Ok(())
}
