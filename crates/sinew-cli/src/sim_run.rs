//! `sinew sim run`: the runtime drives the simulator in lockstep, episode after episode.
//!
//! Each command period the loop reads the simulated sensors, asks the runtime whether to call
//! the policy (called inline: simulated time stands still while it thinks, so results are
//! reproducible), sends the runtime's safe command to the simulated robot and advances one
//! command period. `--policy expert` uses the task's scripted expert as the policy.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use serde::Serialize;
use sinew_core::{ActionChunk, ActionKind, Image, Observation, Policy};
use sinew_msgs::Header;
use sinew_policy::folder::load_policy;
use sinew_robot::RobotDescription;
use sinew_runtime::worker::{infer_inline, Outcome};
use sinew_runtime::{Execution, Interpolation, Merge, Runtime, RuntimeConfig, Sensors};
use sinew_sim::expert::{success, Expert};
use sinew_sim::{SimWorld, TaskSpec};

use sinew_bus::keys::RobotKeys;
use sinew_core::events::Event;
use sinew_msgs::{JointState, JointTrajectory, JointTrajectoryPoint, StringMsg, Time};
use sinew_record::{RecordItem, RecorderThread};
use sinew_runtime::safety::SafetyStats;
use sinew_viz::{VizItem, VizThread};

use crate::policy::DeviceArgs;
use crate::sim::{load_robot, load_task};
use crate::stop::Stop;

#[derive(Debug, Clone, Copy, ValueEnum, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExecutionArg {
    /// Execute `--steps` entries of each chunk, then infer.
    Sync,
    /// Infer when `--threshold` steps remain; merge overlaps with `--merge`.
    Async,
}

#[derive(Debug, Clone, Copy, ValueEnum, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MergeArg {
    /// The newest chunk wins.
    Latest,
    /// 0.3 old + 0.7 new.
    Weighted,
    /// ACT temporal ensembling, exp(-0.01 i).
    Ensemble,
}

#[derive(Debug, Clone, Copy, ValueEnum, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InterpolationArg {
    /// Linear between policy steps.
    Linear,
    /// Each policy step's target from the start of the step.
    Hold,
}

/// How chunks are executed (shared by `sim run` and `run`; kept in recordings' metadata so
/// `replay --compare` runs the same way).
#[derive(Debug, Clone, Args, Serialize, serde::Deserialize)]
pub struct ExecutionArgs {
    /// Chunk execution.
    #[arg(long, value_enum, default_value_t = ExecutionArg::Sync)]
    pub execution: ExecutionArg,
    /// Sync: chunk entries executed before the next inference (default: the policy's
    /// `n_action_steps`, else half the chunk, at least 1).
    #[arg(long)]
    pub steps: Option<usize>,
    /// Async: remaining steps that trigger the next inference (default: half the chunk).
    #[arg(long)]
    pub threshold: Option<usize>,
    /// Async: how overlapping chunks are merged.
    #[arg(long, value_enum, default_value_t = MergeArg::Latest)]
    pub merge: MergeArg,
    /// Policy-rate targets to command-rate commands.
    #[arg(long, value_enum, default_value_t = InterpolationArg::Linear)]
    pub interpolation: InterpolationArg,
}

/// Chunk entries executed per inference in sync mode: the one asked for (flag or policy),
/// else half the chunk; always within the chunk.
pub(crate) fn sync_steps(chunk_length: usize, asked: Option<usize>) -> usize {
    asked
        .unwrap_or((chunk_length / 2).max(1))
        .clamp(1, chunk_length.max(1))
}

/// Fails, naming the camera, when the policy reads one the robot does not have.
pub(crate) fn check_cameras(robot: &RobotDescription, cameras: &[String]) -> Result<()> {
    for cam in cameras {
        if !robot.config.cameras.iter().any(|c| &c.name == cam) {
            bail!(
                "the policy reads camera `{cam}`, which robot {} does not have",
                robot.config.name
            );
        }
    }
    Ok(())
}

impl ExecutionArgs {
    /// The execution for a policy of `chunk_length` that asks for `n_action_steps` (sync).
    pub fn execution(&self, chunk_length: usize, n_action_steps: Option<usize>) -> Execution {
        let half = (chunk_length / 2).max(1);
        match self.execution {
            ExecutionArg::Sync => Execution::Sync {
                steps: sync_steps(chunk_length, self.steps.or(n_action_steps)),
            },
            ExecutionArg::Async => Execution::Async {
                threshold: self.threshold.unwrap_or(half),
                merge: match self.merge {
                    MergeArg::Latest => Merge::LatestOnly,
                    MergeArg::Weighted => Merge::WeightedAverage { old_weight: 0.3 },
                    MergeArg::Ensemble => Merge::TemporalEnsemble { m: 0.01 },
                },
            },
        }
    }

    pub fn interpolation(&self) -> Interpolation {
        match self.interpolation {
            InterpolationArg::Linear => Interpolation::Linear,
            InterpolationArg::Hold => Interpolation::Hold,
        }
    }
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
    #[command(flatten)]
    pub exec: ExecutionArgs,
    #[command(flatten)]
    pub device: DeviceArgs,
    /// Write per-episode results as JSON.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Print nothing per episode.
    #[arg(long)]
    pub quiet: bool,
    /// Record each episode to DIR/episode_<seed>.mcap (rosbag2 MCAP), with an index in
    /// DIR/episodes.jsonl (seed, task, instruction, outcome).
    #[arg(long)]
    pub record: Option<PathBuf>,
    #[command(flatten)]
    pub rerun: crate::viz::RerunArgs,
}

/// Where an episode's messages go: the MCAP recorder and/or the rerun thread. Lockstep: both
/// wait for room, nothing is dropped.
pub struct EpisodeRecorder<'a> {
    pub recorder: Option<&'a mut RecorderThread>,
    pub viz: Option<&'a mut VizThread>,
    pub keys: RobotKeys,
    pub streams: crate::viz::StreamMap,
    /// Real-time loops never wait: a full channel drops the item (counted by the thread's
    /// owner). Lockstep simulation waits, so nothing is lost.
    pub realtime: bool,
}

impl EpisodeRecorder<'_> {
    pub fn put<M: sinew_msgs::Message + Into<sinew_msgs::AnyMessage>>(
        &mut self,
        key: &str,
        msg: &M,
        t_s: f64,
    ) {
        self.put_ns(key, msg, (t_s * 1e9).round().max(0.0) as u64);
    }

    /// `put` at a time in nanoseconds (wall-clock times keep their precision).
    pub fn put_ns<M: sinew_msgs::Message + Into<sinew_msgs::AnyMessage>>(
        &mut self,
        key: &str,
        msg: &M,
        ns: u64,
    ) {
        if let Some(rec) = self.recorder.as_deref_mut() {
            let publish = msg.stamp().map_or(ns, |t| t.as_nanos().max(0) as u64);
            if let Some(kind) = sinew_msgs::MessageKind::from_type_name(M::DEF.name) {
                let item = RecordItem::Message {
                    key: key.to_owned(),
                    kind,
                    log_time_ns: ns,
                    publish_time_ns: publish,
                    cdr: msg.to_cdr().into(),
                };
                if self.realtime {
                    rec.send(item);
                } else {
                    rec.send_control(item);
                }
            }
        }
        if let (Some(viz), Some(stream)) = (self.viz.as_deref_mut(), self.streams.get(key)) {
            let item = VizItem::Message {
                stream: stream.clone(),
                time_ns: ns,
                msg: msg.clone().into(),
            };
            if self.realtime {
                viz.send(item);
            } else {
                viz.send_blocking(item);
            }
        }
    }

    pub fn event(&mut self, e: &Event, t_s: f64) {
        self.event_ns(e, (t_s * 1e9).round().max(0.0) as u64);
    }

    pub fn event_ns(&mut self, e: &Event, ns: u64) {
        let k = self.keys.events();
        self.put_ns(&k, &StringMsg { data: e.to_json() }, ns);
    }
}

/// One episode's result.
#[derive(Debug, Clone, Serialize)]
pub struct EpisodeResult {
    pub seed: u64,
    pub instruction: String,
    pub success: bool,
    /// Policy steps until success or the step limit.
    pub steps: u64,
    pub commands: u64,
    pub inferences: u64,
    pub mean_inference_ms: f64,
    pub holds: BTreeMap<String, u64>,
    pub safety_interventions: u64,
    pub sim_time_s: f64,
    pub wall_s: f64,
}

/// The policy driving an episode.
pub enum Driver {
    Expert(Expert),
    Model(Box<dyn Policy>),
}

impl Driver {
    fn rate_hz(&self, task: &TaskSpec) -> f64 {
        match self {
            Driver::Expert(_) => task.control_rate_hz,
            Driver::Model(p) => p.spec().control_rate_hz,
        }
    }
}

pub(crate) fn image_of(world: &SimWorld, camera: &str, stamp_s: f64) -> Result<Image> {
    Ok(frames_of(world, camera, stamp_s, false)?.0)
}

/// A camera's colour frame, and its depth frame (32FC1, metres) when `depth`.
fn frames_of(
    world: &SimWorld,
    camera: &str,
    stamp_s: f64,
    depth: bool,
) -> Result<(Image, Option<Image>)> {
    let f = world.render_camera(camera)?;
    let header = Header::new(
        sinew_msgs::Time::from_nanos((stamp_s * 1e9) as i64),
        format!("{camera}_optical"),
    );
    let d = depth.then(|| Image::depth_32fc1(header.clone(), f.width, f.height, &f.depth));
    Ok((Image::rgb8(header, f.width, f.height, f.rgb), d))
}

/// Runs one episode; `make_driver` gives the policy for it.
pub fn run_episode(
    robot: &RobotDescription,
    task: &TaskSpec,
    seed: u64,
    driver: &mut Driver,
    exec: &ExecutionArgs,
    mut rec: Option<&mut EpisodeRecorder<'_>>,
) -> Result<EpisodeResult> {
    let t0 = Instant::now();
    let ep = task.sample(&robot.config.name, seed)?;
    let mut world = SimWorld::new(robot.clone(), Some(&ep), None)?;
    let (q0, _) = world.joint_state();
    let policy_rate = driver.rate_hz(task);
    let (cameras, kind, chunk_len, n_action_steps) = match driver {
        Driver::Expert(_) => (Vec::new(), ActionKind::JointPosition, 1, None),
        Driver::Model(p) => {
            p.reset();
            let s = p.spec();
            (
                s.cameras.clone(),
                s.action_kind,
                s.chunk_length,
                s.n_action_steps,
            )
        }
    };
    check_cameras(robot, &cameras)?;
    let mut cfg = RuntimeConfig::new(
        robot,
        policy_rate,
        cameras.clone(),
        kind,
        exec.execution(chunk_len, n_action_steps),
    );
    cfg.interpolation = exec.interpolation();
    let mut rt = Runtime::new(cfg, robot, &q0).context("starting the runtime")?;
    let dt = 1.0 / robot.config.command_rate_hz;
    let mut inferences = 0u64;
    let mut inference_ms = 0.0;
    let mut succeeded = false;
    let mut steps = 0u64;
    let mut tick = 0u64;
    let joint_names: Vec<String> = robot.config.joints.iter().map(|j| j.name.clone()).collect();
    let stamp = |t: f64| Time::from_nanos((t * 1e9).round() as i64);
    let mut last_safety = SafetyStats::default();
    let mut last_holds = BTreeMap::new();
    if let Some(r) = rec.as_deref_mut() {
        let k = r.keys.instruction();
        r.put(
            &k,
            &StringMsg {
                data: ep.instruction.clone(),
            },
            0.0,
        );
    }
    loop {
        // The runtime's clock is the recorded one (whole nanoseconds), so a replay of the
        // recording sees exactly the times this loop saw.
        let now = ((world.time_s * 1e9).round() as u64) as f64 / 1e9;
        let step = rt.step_at(now);
        if let Some(r) = rec.as_deref_mut() {
            let (q, qd) = world.joint_state();
            let k = r.keys.joint_states();
            r.put(
                &k,
                &JointState {
                    header: Header::new(stamp(now), robot.config.base_link.clone()),
                    name: joint_names.clone(),
                    position: q,
                    velocity: qd,
                    effort: Vec::new(),
                },
                now,
            );
            if step != steps || now == 0.0 {
                r.event(&Event::Step { step }, now);
                let k = r.keys.sim_scene();
                r.put(
                    &k,
                    &StringMsg {
                        data: world.scene().to_json(),
                    },
                    now,
                );
                for cam in &robot.config.cameras {
                    let (rgb, depth) = frames_of(&world, &cam.name, now, cam.depth)?;
                    let k = r.keys.camera_image(&cam.name);
                    r.put(&k, &rgb, now);
                    if let Some(d) = depth {
                        let k = r.keys.camera_depth(&cam.name);
                        r.put(&k, &d, now);
                    }
                }
            }
        }
        if step != steps || now == 0.0 {
            steps = step;
            if success(&world, task.success, task.touch_distance_m)? {
                succeeded = true;
                break;
            }
            if step >= task.step_limit as u64 {
                break;
            }
        }
        let sensors = Sensors {
            joint_state_stamp: Some(now),
            camera_stamps: cameras.iter().map(|c| (c.clone(), Some(now))).collect(),
        };
        if let Some(req) = rt.poll(now, &sensors) {
            rt.inference_started(req.step, now);
            let (q, _) = world.joint_state();
            let outcome = match driver {
                Driver::Expert(e) => {
                    let t = Instant::now();
                    let target = e.act(&world, 1.0 / policy_rate)?;
                    Outcome::Chunk {
                        step: req.step,
                        chunk: ActionChunk {
                            kind: Some(ActionKind::JointPosition),
                            actions: vec![target],
                            observation_stamp_s: now,
                            ..Default::default()
                        },
                        wall_ms: t.elapsed().as_secs_f64() * 1e3,
                        q_observed: q,
                    }
                }
                Driver::Model(p) => {
                    let mut images = BTreeMap::new();
                    for cam in &cameras {
                        images.insert(cam.clone(), image_of(&world, cam, now)?);
                    }
                    let obs = Observation {
                        images,
                        joint_positions: q,
                        joint_velocities: Vec::new(),
                        instruction: ep.instruction.clone(),
                        stamp_s: now,
                    };
                    infer_inline(p.as_mut(), req.step, &obs)
                }
            };
            inferences += 1;
            match outcome {
                Outcome::Chunk {
                    step,
                    chunk,
                    wall_ms,
                    q_observed,
                } => {
                    inference_ms += wall_ms;
                    if let Some(r) = rec.as_deref_mut() {
                        r.event(
                            &Event::Inference {
                                step,
                                tokens: chunk.tokens.clone(),
                                timings: chunk.timings,
                                wall_ms,
                                warnings: chunk.warnings.clone(),
                            },
                            now,
                        );
                        // The chunk as the policy gave it (its own action space), one point per step.
                        let k = r.keys.action_chunk();
                        r.put(
                            &k,
                            &crate::run::chunk_message(&chunk, &joint_names, policy_rate),
                            now,
                        );
                    }
                    rt.chunk_ready(now, step, &chunk, &q_observed);
                }
                Outcome::Error { error, .. } => {
                    tracing::warn!("seed {seed}: inference failed: {error}");
                    rt.inference_failed(error, false);
                }
                Outcome::Dead { error } => {
                    tracing::error!("seed {seed}: {error}; holding");
                    rt.inference_failed(error, true);
                }
            }
        }
        let (cmd, _) = rt.command(now);
        if let Some(r) = rec.as_deref_mut() {
            let st = rt.stats();
            let kinds = safety_delta(&mut last_safety, &st.safety);
            if !kinds.is_empty() {
                r.event(&Event::Intervention { kinds }, now);
            }
            for (reason, n) in &st.holds {
                if last_holds.get(reason) != Some(n) {
                    r.event(
                        &Event::Hold {
                            reason: reason.clone(),
                        },
                        now,
                    );
                }
            }
            last_holds = st.holds;
            let k = r.keys.joint_commands();
            r.put(
                &k,
                &JointTrajectory {
                    header: Header::new(stamp(now), robot.config.base_link.clone()),
                    joint_names: joint_names.clone(),
                    points: vec![JointTrajectoryPoint {
                        positions: cmd.clone(),
                        ..Default::default()
                    }],
                },
                now,
            );
        }
        world.command(&cmd)?;
        tick += 1;
        world.advance_to(tick as f64 * dt);
    }
    if let Some(r) = rec {
        r.event(
            &Event::Outcome {
                success: succeeded,
                steps,
            },
            world.time_s,
        );
    }
    let st = rt.stats();
    let s = st.safety;
    Ok(EpisodeResult {
        seed,
        instruction: ep.instruction,
        success: succeeded,
        steps,
        commands: st.commands,
        inferences,
        mean_inference_ms: inference_ms / inferences.max(1) as f64,
        holds: st.holds,
        safety_interventions: s.position + s.velocity + s.acceleration + s.non_finite + s.workspace,
        sim_time_s: world.time_s,
        wall_s: t0.elapsed().as_secs_f64(),
    })
}

/// The metadata of an episode's recording: what `replay --compare` needs to run it again.
pub fn episode_metadata(
    robot: &RobotDescription,
    task: &TaskSpec,
    seed: u64,
    policy: &str,
    exec: &ExecutionArgs,
) -> BTreeMap<String, String> {
    let mut meta = BTreeMap::new();
    meta.insert("robot".to_owned(), robot.config.name.clone());
    meta.insert("task".to_owned(), task.name.clone());
    meta.insert("seed".to_owned(), seed.to_string());
    meta.insert("policy".to_owned(), policy.to_owned());
    meta.insert(
        "execution".to_owned(),
        serde_json::to_string(exec).unwrap_or_default(),
    );
    meta
}

/// New safety interventions since `last`, by kind; updates `last`.
pub(crate) fn safety_delta(last: &mut SafetyStats, now: &SafetyStats) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for (k, a, b) in [
        ("position", last.position, now.position),
        ("velocity", last.velocity, now.velocity),
        ("acceleration", last.acceleration, now.acceleration),
        ("non_finite", last.non_finite, now.non_finite),
        ("workspace", last.workspace, now.workspace),
    ] {
        if b > a {
            out.insert(k.to_owned(), b - a);
        }
    }
    *last = *now;
    out
}

/// The driver named by `--policy`.
pub fn driver(policy: &str, task: &TaskSpec, device: &DeviceArgs) -> Result<Driver> {
    if policy == "expert" {
        Ok(Driver::Expert(Expert::new(task.success)))
    } else {
        let dir = crate::sim::project_path(policy, "policies");
        Ok(Driver::Model(
            load_policy(&dir, &device.options()?)
                .with_context(|| format!("loading policy {}", dir.display()))?,
        ))
    }
}

pub fn sim_run(a: SimRunArgs, stop: &Stop) -> Result<()> {
    let robot = load_robot(&a.robot)?;
    let task = load_task(&a.task)?;
    let mut driver = driver(&a.policy, &task, &a.device)?;
    let start = Instant::now();
    let mut results = Vec::new();
    let mut recorder = match &a.record {
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            Some(RecorderThread::spawn(4096)?)
        }
        None => None,
    };
    let mut viz = a.rerun.spawn(a.record.as_deref())?;
    let keys = RobotKeys::new(&robot.config.namespace)?;
    let streams = crate::viz::stream_map(&keys, &robot);
    for seed in a.seed..a.seed + a.episodes {
        if stop.requested() {
            break;
        }
        if let Driver::Expert(_) = driver {
            driver = Driver::Expert(Expert::new(task.success));
        }
        let file = a
            .record
            .as_ref()
            .map(|d| d.join(format!("episode_{seed:06}.mcap")));
        if let (Some(r), Some(f)) = (&mut recorder, &file) {
            r.send_control(RecordItem::NewFile {
                path: f.clone(),
                metadata: episode_metadata(&robot, &task, seed, &a.policy, &a.exec),
            });
        }
        if let Some(v) = &mut viz {
            v.send_blocking(VizItem::Open {
                robot: Box::new(robot.clone()),
                name: format!("{} {} seed {seed}", robot.config.name, task.name),
                sink: a.rerun.sink(a.record.as_deref(), seed),
            });
        }
        let mut ep_rec = (recorder.is_some() || viz.is_some()).then(|| EpisodeRecorder {
            recorder: recorder.as_mut(),
            viz: viz.as_mut(),
            keys: keys.clone(),
            streams: streams.clone(),
            realtime: false,
        });
        let r = run_episode(&robot, &task, seed, &mut driver, &a.exec, ep_rec.as_mut())?;
        drop(ep_rec);
        if let Some(v) = &mut viz {
            v.send_blocking(VizItem::Close);
            if v.has_stopped() {
                bail!(
                    "rerun logging stopped; see the error above (what was logged stays readable)"
                );
            }
        }
        if let (Some(rec), Some(f), Some(dir)) = (&mut recorder, &file, &a.record) {
            rec.send_control(RecordItem::CloseFile);
            if rec.has_stopped() {
                bail!("the recorder stopped; see the error above (files written so far stay readable)");
            }
            let line = serde_json::json!({
                "file": f.file_name().map(|n| n.to_string_lossy().into_owned()),
                "seed": seed, "task": task.name, "robot": robot.config.name, "policy": a.policy,
                "instruction": r.instruction, "success": r.success, "steps": r.steps,
            });
            use std::io::Write;
            let idx = dir.join("episodes.jsonl");
            let mut fh = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&idx)
                .with_context(|| format!("opening {}", idx.display()))?;
            writeln!(fh, "{line}").with_context(|| format!("writing {}", idx.display()))?;
        }
        if !a.quiet {
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
        results.push(r);
    }
    let n = results.len().max(1) as f64;
    let ok = results.iter().filter(|r| r.success).count();
    let wall = start.elapsed().as_secs_f64();
    let sim_s: f64 = results.iter().map(|r| r.sim_time_s).sum();
    let commands: u64 = results.iter().map(|r| r.commands).sum();
    let inferences: u64 = results.iter().map(|r| r.inferences).sum();
    println!(
        "{} on {} with {}: success {ok}/{} = {:.1}%  mean length {:.1} steps  {:.2} episodes/s  {:.1}x real time  commands {:.0} Hz, policy {:.1} Hz (simulated time)",
        task.name,
        robot.config.name,
        a.policy,
        results.len(),
        100.0 * ok as f64 / n,
        results.iter().map(|r| r.steps as f64).sum::<f64>() / n,
        results.len() as f64 / wall,
        sim_s / wall,
        commands as f64 / sim_s.max(1e-9),
        inferences as f64 / sim_s.max(1e-9)
    );
    if let Some(p) = &a.json {
        std::fs::write(p, serde_json::to_string_pretty(&results)?)
            .with_context(|| format!("writing {}", p.display()))?;
    }
    if let Some(r) = recorder {
        let report = r.close();
        let mb: f64 = report.files.iter().map(|f| f.bytes as f64 / 1e6).sum();
        eprintln!(
            "sim run: recorded {} episode file(s), {:.1} MB of messages, to {}",
            report.files.len(),
            mb,
            a.record
                .as_ref()
                .map(|d| d.display().to_string())
                .unwrap_or_default()
        );
        if let Some(e) = report.error {
            bail!("recording failed: {e}");
        }
    }
    if let Some(v) = viz {
        let report = v.close();
        let skipped: u64 = report.streams.iter().map(|(_, s)| s.skipped).sum();
        eprintln!(
            "sim run: rerun: {} episode stream(s){}{}",
            report.streams.len(),
            if skipped > 0 {
                format!(", {skipped} message(s) not shown")
            } else {
                String::new()
            },
            a.rerun.describe(a.record.as_deref())
        );
        if let Some(e) = report.error {
            bail!("rerun logging failed: {e}");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sync_steps_come_from_the_flag_then_the_policy_then_half_the_chunk() {
        let mut a = ExecutionArgs {
            execution: ExecutionArg::Sync,
            steps: None,
            threshold: None,
            merge: MergeArg::Latest,
            interpolation: InterpolationArg::Linear,
        };
        assert_eq!(a.execution(10, None), Execution::Sync { steps: 5 });
        assert_eq!(a.execution(10, Some(7)), Execution::Sync { steps: 7 });
        a.steps = Some(3);
        assert_eq!(a.execution(10, Some(7)), Execution::Sync { steps: 3 });
        // Never more than the chunk holds.
        a.steps = Some(30);
        assert_eq!(a.execution(10, Some(7)), Execution::Sync { steps: 10 });
    }
}
