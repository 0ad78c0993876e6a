//! `sinew replay FILE.mcap`: a recording back on the bus (`--play`), converted to a rerun file
//! (`--rrd OUT`), or fed through a policy and compared with the recorded commands
//! (`--policy P --compare`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use serde::Serialize;
use sinew_bus::keys::RobotKeys;
use sinew_bus::{Bus, BusConfig};
use sinew_core::events::Scene;
use sinew_core::{ActionChunk, ActionKind, Observation};
use sinew_msgs::{AnyMessage, Image};
use sinew_record::{key_of_topic, read_recording, Recording};
use sinew_robot::RobotDescription;
use sinew_runtime::worker::{infer_inline, Outcome};
use sinew_runtime::{Runtime, RuntimeConfig, Sensors};
use sinew_sim::expert::{Expert, ExpertView};
use sinew_viz::{Sink, Viz};

use crate::policy::DeviceArgs;
use crate::sim::{load_robot, load_task};
use crate::sim_run::{Driver, ExecutionArgs};
use crate::stop::Stop;
use crate::viz::stream_map;

#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// The MCAP file.
    file: PathBuf,
    /// Publish the recorded messages on the bus with their original timing.
    #[arg(long)]
    play: bool,
    /// Playback speed (2 = twice as fast; 0 = as fast as possible).
    #[arg(long, default_value_t = 1.0)]
    speed: f64,
    /// Start again at the end.
    #[arg(long = "loop")]
    repeat: bool,
    /// Before playing, wait up to this many seconds for a subscriber on the recording's keys.
    #[arg(long, default_value_t = 0.0)]
    wait_for_subscribers: f64,
    /// Convert the recording to a rerun file (the same content as live logging).
    #[arg(long, value_name = "OUT.rrd")]
    rrd: Option<PathBuf>,
    /// Robot folder or name (default: the recording's `robot` metadata).
    #[arg(long)]
    robot: Option<String>,
    /// Feed the recorded observations to this policy (`expert` or a folder) ...
    #[arg(long)]
    policy: Option<String>,
    /// ... and report per-step differences from the recorded commands.
    #[arg(long)]
    compare: bool,
    /// With `--compare`: write the per-step report as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
    #[command(flatten)]
    device: DeviceArgs,
}

pub fn replay(a: ReplayArgs, bus_cfg: &BusConfig, stop: &Stop) -> Result<()> {
    if !a.play && a.rrd.is_none() && !a.compare {
        bail!("say what to do with the recording: --play, --rrd OUT.rrd, or --policy P --compare");
    }
    if a.policy.is_some() != a.compare {
        bail!("--policy and --compare go together: --policy P --compare");
    }
    let rec = read_recording(&a.file).with_context(|| format!("reading {}", a.file.display()))?;
    if let Some(t) = &rec.truncated {
        eprintln!(
            "replay: {} is cut short; using its complete part ({t})",
            a.file.display()
        );
    }
    if let Some(out) = &a.rrd {
        to_rrd(&rec, &a, out)?;
    }
    if let Some(p) = &a.policy {
        compare(&rec, &a, p)?;
    }
    if a.play {
        play(&rec, &a, bus_cfg, stop)?;
    }
    Ok(())
}

fn robot_of(rec: &Recording, a: &ReplayArgs) -> Result<RobotDescription> {
    let name = match (&a.robot, rec.metadata.get("robot")) {
        (Some(r), _) => r.clone(),
        (None, Some(r)) => r.clone(),
        (None, None) => bail!(
            "{} does not name its robot (no `robot` metadata): pass --robot",
            a.file.display()
        ),
    };
    load_robot(&name)
}

/// Messages in log-time order (stable: file order within one instant), decoded, with their key.
fn decoded(rec: &Recording) -> Vec<(String, u64, AnyMessage)> {
    let mut out = Vec::with_capacity(rec.messages.len());
    let mut bad = 0u64;
    let mut unknown: BTreeMap<String, u64> = BTreeMap::new();
    for m in &rec.messages {
        match m.decode() {
            Some(Ok(msg)) => out.push((key_of_topic(&m.topic), m.log_time_ns, msg)),
            Some(Err(e)) => {
                bad += 1;
                if bad <= 3 {
                    tracing::warn!("{} at {} ns: {e}", m.topic, m.log_time_ns);
                }
            }
            None => *unknown.entry(m.schema.clone()).or_default() += 1,
        }
    }
    if bad > 0 {
        eprintln!("replay: {bad} malformed message(s) skipped");
    }
    for (schema, n) in unknown {
        eprintln!("replay: {n} message(s) of type {schema} skipped (not a type Sinew decodes)");
    }
    out.sort_by_key(|(_, t, _)| *t);
    out
}

fn to_rrd(rec: &Recording, a: &ReplayArgs, out: &Path) -> Result<()> {
    let t0 = Instant::now();
    let robot = robot_of(rec, a)?;
    let keys = RobotKeys::new(&robot.config.namespace)?;
    let streams = stream_map(&keys, &robot);
    let name = a
        .file
        .file_stem()
        .map_or("replay".into(), |s| s.to_string_lossy().into_owned());
    let mut viz = Viz::new(robot, &name, &Sink::File(out.to_owned()))?;
    let mut n = 0u64;
    for (key, t, msg) in decoded(rec) {
        if let Some(s) = streams.get(&key) {
            viz.log(s, t, &msg)?;
            n += 1;
        }
    }
    let stats = viz.finish()?;
    let wall = t0.elapsed().as_secs_f64();
    eprintln!(
        "replay: {n} messages to {} in {wall:.2} s ({:.0} messages/s){}",
        out.display(),
        n as f64 / wall.max(1e-9),
        if stats.skipped > 0 {
            format!(", {} not shown", stats.skipped)
        } else {
            String::new()
        }
    );
    Ok(())
}

/// One compared command.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct StepDiff {
    /// Command time (s).
    pub time_s: f64,
    /// Policy step.
    pub step: u64,
    /// Largest absolute joint difference (rad or m).
    pub max_abs_diff: f64,
    /// Joint with the largest difference.
    pub joint: String,
}

/// The comparison.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CompareReport {
    pub file: String,
    pub policy: String,
    pub commands_compared: u64,
    pub inferences: u64,
    /// Commands whose difference is not exactly zero.
    pub commands_differing: u64,
    pub max_abs_diff: f64,
    pub mean_abs_diff: f64,
    /// Per policy step: the largest difference within the step.
    pub steps: Vec<StepDiff>,
}

fn compare(rec: &Recording, a: &ReplayArgs, policy: &str) -> Result<()> {
    let robot = robot_of(rec, a)?;
    let keys = RobotKeys::new(&robot.config.namespace)?;
    let joint_names: Vec<String> = robot.config.joints.iter().map(|j| j.name.clone()).collect();
    let task = match rec.metadata.get("task") {
        Some(t) => Some(load_task(t)?),
        None => None,
    };
    let exec: ExecutionArgs = match rec.metadata.get("execution") {
        Some(j) => serde_json::from_str(j)
            .with_context(|| format!("the recording's `execution` metadata {j:?}"))?,
        None => bail!(
            "{} has no `execution` metadata (it was not written by `sinew sim run`/`sinew run`)",
            a.file.display()
        ),
    };
    let mut driver = if policy == "expert" {
        let Some(task) = &task else {
            bail!("--policy expert needs the recording's `task` metadata");
        };
        Driver::Expert(Expert::new(task.success))
    } else {
        let dir = crate::sim::project_path(policy, "policies");
        Driver::Model(
            sinew_policy::folder::load_policy(&dir, &a.device.options()?)
                .with_context(|| format!("loading policy {}", dir.display()))?,
        )
    };
    let episode = match (&task, rec.metadata.get("seed"), &driver) {
        (Some(t), Some(s), Driver::Expert(_)) => {
            let seed: u64 = s.parse().with_context(|| format!("seed metadata {s:?}"))?;
            Some(t.sample(&robot.config.name, seed)?)
        }
        (_, _, Driver::Expert(_)) => bail!("--policy expert needs the recording's `seed` metadata"),
        _ => None,
    };

    // Index the recording by time.
    let mut joint_states = Vec::new();
    let mut commands: BTreeMap<u64, Vec<f64>> = BTreeMap::new();
    let mut images: BTreeMap<(String, u64), Image> = BTreeMap::new();
    let mut scenes: BTreeMap<u64, Scene> = BTreeMap::new();
    let mut instruction = String::new();
    for (key, t, msg) in decoded(rec) {
        match msg {
            AnyMessage::JointState(js) if key == keys.joint_states() => {
                let mut q = Vec::with_capacity(joint_names.len());
                for n in &joint_names {
                    let i = js
                        .name
                        .iter()
                        .position(|m| m == n)
                        .with_context(|| format!("joint state at {t} ns has no joint {n}"))?;
                    q.push(*js.position.get(i).with_context(|| {
                        format!("joint state at {t} ns has no position for {n}")
                    })?);
                }
                joint_states.push((t, q));
            }
            AnyMessage::JointTrajectory(jt) if key == keys.joint_commands() => {
                if let Some(p) = jt.points.first() {
                    commands.insert(t, p.positions.clone());
                }
            }
            AnyMessage::Image(im) => {
                if let Some(c) = robot
                    .config
                    .cameras
                    .iter()
                    .find(|c| key == keys.camera_image(&c.name))
                {
                    images.insert((c.name.clone(), t), im);
                }
            }
            AnyMessage::String(s) if key == keys.sim_scene() => {
                scenes.insert(
                    t,
                    Scene::from_json(&s.data).with_context(|| format!("scene at {t} ns"))?,
                );
            }
            AnyMessage::String(s) if key == keys.instruction() => instruction = s.data,
            _ => {}
        }
    }
    let Some((_, q0)) = joint_states.first().cloned() else {
        bail!("{} holds no joint states", a.file.display());
    };

    let (policy_rate, cameras, kind, chunk_len, n_action_steps) = match &mut driver {
        Driver::Expert(_) => (
            task.as_ref().map_or(10.0, |t| t.control_rate_hz),
            Vec::new(),
            ActionKind::JointPosition,
            1,
            None,
        ),
        Driver::Model(p) => {
            p.reset();
            let s = p.spec();
            (
                s.control_rate_hz,
                s.cameras.clone(),
                s.action_kind,
                s.chunk_length,
                s.n_action_steps,
            )
        }
    };
    let mut cfg = RuntimeConfig::new(
        &robot,
        policy_rate,
        cameras.clone(),
        kind,
        exec.execution(chunk_len, n_action_steps),
    );
    cfg.interpolation = exec.interpolation();
    let mut rt = Runtime::new(cfg, &robot, &q0).context("starting the runtime")?;
    let mut targets = robot.home();
    let mut report = CompareReport {
        file: a.file.display().to_string(),
        policy: policy.to_owned(),
        commands_compared: 0,
        inferences: 0,
        commands_differing: 0,
        max_abs_diff: 0.0,
        mean_abs_diff: 0.0,
        steps: Vec::new(),
    };
    let mut sum = 0.0;
    for (t_ns, q) in &joint_states {
        let Some(recorded) = commands.get(t_ns) else {
            continue; // the episode ended at this joint state: no command followed it
        };
        let now = *t_ns as f64 / 1e9;
        let step = rt.step_at(now);
        let sensors = Sensors {
            joint_state_stamp: Some(now),
            camera_stamps: cameras.iter().map(|c| (c.clone(), Some(now))).collect(),
        };
        if let Some(req) = rt.poll(now, &sensors) {
            rt.inference_started(req.step, now);
            let outcome = match &mut driver {
                Driver::Expert(e) => {
                    let ep = episode.as_ref();
                    let scene = scenes.range(..=*t_ns).next_back().map(|(_, s)| s);
                    let target = ep.and_then(|ep| {
                        let name = &ep.objects.first()?.name;
                        scene?.items.iter().find(|i| &i.name == name)
                    });
                    let target_pose = target.map(|i| {
                        let p = i.world_from_item;
                        nalgebra::Isometry3::from_parts(
                            nalgebra::Translation3::new(p[0], p[1], p[2]),
                            nalgebra::UnitQuaternion::new_unchecked(nalgebra::Quaternion::new(
                                p[6], p[3], p[4], p[5],
                            )),
                        )
                    });
                    let view = ExpertView {
                        robot: &robot,
                        episode: ep,
                        q: q.clone(),
                        targets: targets.clone(),
                        target_pose,
                        target_size: ep.and_then(|e| e.objects.first()).map_or(0.0, |o| o.size),
                    };
                    let action = e.act_on(&view, 1.0 / policy_rate)?;
                    Outcome::Chunk {
                        step: req.step,
                        chunk: ActionChunk {
                            kind: Some(ActionKind::JointPosition),
                            actions: vec![action],
                            observation_stamp_s: now,
                            ..Default::default()
                        },
                        wall_ms: 0.0,
                        q_observed: q.clone(),
                    }
                }
                Driver::Model(p) => {
                    let mut ims = BTreeMap::new();
                    for c in &cameras {
                        let im = images
                            .range((c.clone(), 0)..=(c.clone(), *t_ns))
                            .next_back()
                            .map(|(_, im)| im.clone())
                            .with_context(|| format!("no frame of camera {c} by {now:.3} s"))?;
                        ims.insert(c.clone(), im);
                    }
                    let obs = Observation {
                        images: ims,
                        joint_positions: q.clone(),
                        joint_velocities: Vec::new(),
                        instruction: instruction.clone(),
                        stamp_s: now,
                    };
                    infer_inline(p.as_mut(), req.step, &obs)
                }
            };
            report.inferences += 1;
            match outcome {
                Outcome::Chunk {
                    step,
                    chunk,
                    q_observed,
                    ..
                } => rt.chunk_ready(now, step, &chunk, &q_observed),
                Outcome::Error { error, .. } => rt.inference_failed(error, false),
                Outcome::Dead { error } => rt.inference_failed(error, true),
            }
        }
        let (cmd, _) = rt.command(now);
        let (mut worst, mut joint) = (0.0f64, 0usize);
        for (i, (x, y)) in cmd.iter().zip(recorded).enumerate() {
            let d = (x - y).abs();
            if d > worst || d.is_nan() {
                worst = d;
                joint = i;
            }
        }
        if cmd.len() != recorded.len() {
            worst = f64::INFINITY;
        }
        report.commands_compared += 1;
        if worst != 0.0 {
            report.commands_differing += 1;
        }
        sum += worst;
        report.max_abs_diff = report.max_abs_diff.max(worst);
        match report.steps.last_mut() {
            Some(s) if s.step == step => {
                if worst > s.max_abs_diff {
                    s.max_abs_diff = worst;
                    s.joint = joint_names.get(joint).cloned().unwrap_or_default();
                }
            }
            _ => report.steps.push(StepDiff {
                time_s: now,
                step,
                max_abs_diff: worst,
                joint: joint_names.get(joint).cloned().unwrap_or_default(),
            }),
        }
        // The simulator's targets are the commands it was sent (the recorded ones).
        targets.clone_from(recorded);
    }
    report.mean_abs_diff = sum / report.commands_compared.max(1) as f64;
    println!(
        "replay {} through {policy}: {} commands over {} steps, {} inferences; {} differ; max |diff| {:.3e}, mean {:.3e}",
        a.file.display(),
        report.commands_compared,
        report.steps.len(),
        report.inferences,
        report.commands_differing,
        report.max_abs_diff,
        report.mean_abs_diff
    );
    let worst: Vec<&StepDiff> = report
        .steps
        .iter()
        .filter(|s| s.max_abs_diff > 0.0)
        .collect();
    for s in worst.iter().take(10) {
        println!(
            "  step {:>4} ({:.2} s): {:.3e} on {}",
            s.step, s.time_s, s.max_abs_diff, s.joint
        );
    }
    if let Some(p) = &a.json {
        std::fs::write(p, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("writing {}", p.display()))?;
    }
    Ok(())
}

fn play(rec: &Recording, a: &ReplayArgs, bus_cfg: &BusConfig, stop: &Stop) -> Result<()> {
    if !(a.speed.is_finite() && a.speed >= 0.0) {
        bail!(
            "--speed must be 0 (as fast as possible) or positive, got {}",
            a.speed
        );
    }
    let bus = Bus::open(bus_cfg)?;
    if a.wait_for_subscribers > 0.0 {
        if let Some(m) = rec.messages.first() {
            // Matching only looks at the key; the message type is irrelevant here.
            let probe = bus.publisher::<sinew_msgs::StringMsg>(&key_of_topic(&m.topic))?;
            if !probe.wait_for_subscribers(Duration::from_secs_f64(a.wait_for_subscribers)) {
                eprintln!(
                    "replay: no subscriber after {} s; playing anyway",
                    a.wait_for_subscribers
                );
            }
        }
    }
    let first = rec
        .messages
        .iter()
        .map(|m| m.log_time_ns)
        .min()
        .unwrap_or(0);
    let mut loops = 0u64;
    let t0 = Instant::now();
    let mut sent = 0u64;
    'outer: loop {
        let start = Instant::now();
        for m in &rec.messages {
            if stop.requested() {
                break 'outer;
            }
            if a.speed > 0.0 {
                let due = Duration::from_secs_f64(
                    m.log_time_ns.saturating_sub(first) as f64 * 1e-9 / a.speed,
                );
                let elapsed = start.elapsed();
                if due > elapsed {
                    // Pacing to the recording's clock, not synchronisation.
                    std::thread::sleep(due - elapsed);
                }
            }
            bus.put_raw(&key_of_topic(&m.topic), m.data.to_vec())?;
            sent += 1;
        }
        loops += 1;
        if !a.repeat {
            break;
        }
    }
    let wall = t0.elapsed().as_secs_f64();
    eprintln!(
        "replay: {sent} messages in {wall:.2} s ({loops} pass(es), {:.0} messages/s, {:.1}x the recorded duration of {:.2} s)",
        sent as f64 / wall.max(1e-9),
        rec.info().duration_s * loops as f64 / wall.max(1e-9),
        rec.info().duration_s
    );
    bus.close();
    Ok(())
}
