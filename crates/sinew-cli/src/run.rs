//! `sinew run`: the closed loop on a robot's bus keys (a real robot, or `sinew sim serve`).
//!
//! Threads: this one is the control loop (fixed rate from robot.toml, never waits on inference
//! or the bus: it reads latest-value subscribers and hands observations to the inference
//! thread through a channel of one); `sinew-inference` owns the policy; zenoh runs its own.
//! Every command goes through the runtime's safety filter. Ctrl-C engages the hold, brakes to
//! a stop and exits, leaving the robot at its last safe position. Telemetry (JSON) goes to
//! `<ns>/sinew/telemetry` once per second and a summary to stderr at the end.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use serde_json::json;
use sinew_bus::keys::RobotKeys;
use sinew_bus::{Bus, BusConfig, Latest, SubscriberStats};
use sinew_core::{ActionChunk, ActionKind, Image, Observation, Policy, PolicyError, PolicySpec};
use sinew_msgs::{Header, JointState, JointTrajectory, JointTrajectoryPoint, StringMsg, Time};
use sinew_runtime::telemetry::LoopStats;
use sinew_runtime::worker::{InferenceWorker, Job, Outcome};
use sinew_runtime::{Runtime, RuntimeConfig, Sensors};

use crate::policy::DeviceArgs;
use crate::sim::{load_robot, project_path};
use crate::sim_run::ExecutionArgs;
use crate::stop::Stop;

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Robot folder or name under robots/.
    #[arg(long, default_value = "so101")]
    robot: String,
    /// A policy folder, or `expert` to follow `sinew sim serve`'s scripted expert through the
    /// bus (`<ns>/sim/expert_action`).
    #[arg(long)]
    policy: String,
    /// The instruction (one arriving on `<ns>/instruction` replaces it).
    #[arg(long, default_value = "")]
    instruction: String,
    /// Stop after this many seconds.
    #[arg(long)]
    duration: Option<f64>,
    /// How long to wait for the first joint state, s.
    #[arg(long, default_value_t = 10.0)]
    startup_timeout: f64,
    #[command(flatten)]
    exec: ExecutionArgs,
    #[command(flatten)]
    device: DeviceArgs,
    /// Record what the loop saw and did to DIR/run_<unix time>.mcap (and .rrd unless
    /// --no-rrd), indexed in DIR/episodes.jsonl. Recording never blocks the loop: what does
    /// not fit the recorder's queue is dropped and counted.
    #[arg(long)]
    record: Option<std::path::PathBuf>,
    #[command(flatten)]
    rerun: crate::viz::RerunArgs,
}

/// Follows the newest scripted-expert target published by `sinew sim serve`.
struct BusExpert {
    spec: PolicySpec,
    latest: Latest<JointTrajectory>,
    joints: Vec<String>,
}

impl Policy for BusExpert {
    fn spec(&self) -> &PolicySpec {
        &self.spec
    }

    fn infer(&mut self, obs: &Observation) -> Result<ActionChunk, PolicyError> {
        let m = self
            .latest
            .peek()
            .ok_or_else(|| PolicyError::Observation("no expert action received yet".into()))?;
        let point = m
            .msg
            .points
            .last()
            .ok_or_else(|| PolicyError::Observation("expert action without points".into()))?;
        let mut action = vec![f64::NAN; self.joints.len()];
        for (name, v) in m.msg.joint_names.iter().zip(&point.positions) {
            if let Some(i) = self.joints.iter().position(|j| j == name) {
                action[i] = *v;
            }
        }
        Ok(ActionChunk {
            kind: Some(ActionKind::JointPosition),
            actions: vec![action],
            observation_stamp_s: obs.stamp_s,
            ..Default::default()
        })
    }
}

fn secs_since(start: Instant, t: Instant) -> f64 {
    t.saturating_duration_since(start).as_secs_f64()
}

pub fn run(a: RunArgs, bus_cfg: &BusConfig, stop: &Stop) -> Result<()> {
    let robot = load_robot(&a.robot)?;
    let keys = RobotKeys::new(&robot.config.namespace)?;
    let bus = Bus::open(bus_cfg)?;
    let joint_names: Vec<String> = robot.config.joints.iter().map(|j| j.name.clone()).collect();
    let policy: Box<dyn Policy> = if a.policy == "expert" {
        Box::new(BusExpert {
            spec: PolicySpec {
                architecture: "expert (bus)".into(),
                cameras: vec![],
                image_size: (0, 0),
                uses_state: true,
                state_dim: joint_names.len(),
                action_kind: ActionKind::JointPosition,
                action_dim: joint_names.len(),
                chunk_length: 1,
                control_rate_hz: 10.0,
                action_tokenizer: "none".into(),
                n_action_steps: None,
            },
            latest: bus.latest::<JointTrajectory>(&keys.sim_expert_action())?,
            joints: joint_names.clone(),
        })
    } else {
        let dir = project_path(&a.policy, "policies");
        sinew_policy::folder::load_policy(&dir, &a.device.options()?)
            .with_context(|| format!("loading policy {}", dir.display()))?
    };
    let spec = policy.spec().clone();
    for cam in &spec.cameras {
        if !robot.config.cameras.iter().any(|c| &c.name == cam) {
            bail!(
                "the policy reads camera `{cam}`, which robot {} does not have",
                robot.config.name
            );
        }
    }
    let joint_states = bus.latest::<JointState>(&keys.joint_states())?;
    let cameras: Vec<(String, Latest<sinew_msgs::Image>)> = spec
        .cameras
        .iter()
        .map(|c| {
            Ok((
                c.clone(),
                bus.latest::<sinew_msgs::Image>(&keys.camera_image(c))?,
            ))
        })
        .collect::<Result<_>>()?;
    let instruction_sub = bus.latest::<StringMsg>(&keys.instruction())?;
    let estop = bus.subscribe::<StringMsg>(&keys.estop(), 16)?;
    let commands = bus.publisher::<JointTrajectory>(&keys.joint_commands())?;
    let telemetry = bus.publisher::<StringMsg>(&keys.telemetry())?;

    // Start from the measured positions.
    let first = joint_states
        .wait_new(Duration::from_secs_f64(a.startup_timeout))
        .with_context(|| {
            format!(
                "no joint state on {} within {} s",
                keys.joint_states(),
                a.startup_timeout
            )
        })?;
    let q_of = |m: &JointState| -> Option<Vec<f64>> {
        joint_names
            .iter()
            .map(|n| {
                m.name
                    .iter()
                    .position(|x| x == n)
                    .and_then(|i| m.position.get(i).copied())
            })
            .collect()
    };
    let q_start =
        q_of(&first.msg).context("the joint state does not name every joint of robot.toml")?;
    let mut cfg = RuntimeConfig::new(
        &robot,
        spec.control_rate_hz,
        spec.cameras.clone(),
        spec.action_kind,
        a.exec.execution(spec.chunk_length, spec.n_action_steps),
    );
    cfg.interpolation = a.exec.interpolation();
    let mut rt = Runtime::new(cfg, &robot, &q_start).context("starting the runtime")?;
    let mut worker = InferenceWorker::spawn(policy).context("starting the inference thread")?;
    // Recording and rerun threads (never waited on by the loop).
    let unix_ns = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
    };
    let run_name = format!("run_{}", unix_ns() / 1_000_000_000);
    let mut recorder = match &a.record {
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            let r = sinew_record::RecorderThread::spawn(4096)?;
            let mut meta = BTreeMap::new();
            meta.insert("robot".to_owned(), robot.config.name.clone());
            meta.insert("policy".to_owned(), a.policy.clone());
            meta.insert(
                "execution".to_owned(),
                serde_json::to_string(&a.exec).unwrap_or_default(),
            );
            meta.insert("source".to_owned(), "sinew run".to_owned());
            let mut r = r;
            r.send_control(sinew_record::RecordItem::NewFile {
                path: dir.join(format!("{run_name}.mcap")),
                metadata: meta,
            });
            Some(r)
        }
        None => None,
    };
    let mut viz = a.rerun.spawn(a.record.as_deref())?;
    if let Some(v) = &mut viz {
        let sink = match (&a.rerun.rerun_connect, &a.record) {
            (Some(addr), _) => sinew_viz::Sink::connect(addr),
            (None, Some(d)) => sinew_viz::Sink::File(d.join(format!("{run_name}.rrd"))),
            (None, None) => sinew_viz::Sink::File(format!("{run_name}.rrd").into()),
        };
        v.send_blocking(sinew_viz::VizItem::Open {
            robot: Box::new(robot.clone()),
            name: format!("{} {}", robot.config.name, run_name),
            sink,
        });
    }
    let streams = crate::viz::stream_map(&keys, &robot);
    let mut tap = (recorder.is_some() || viz.is_some()).then(|| crate::sim_run::EpisodeRecorder {
        recorder: recorder.as_mut(),
        viz: viz.as_mut(),
        keys: keys.clone(),
        streams,
        realtime: true,
    });
    let mut last_safety = sinew_runtime::SafetyStats::default();
    let mut last_step = None;
    let mut taped_instruction = None;
    eprintln!(
        "run: {} with {} ({}), commands at {} Hz, policy at {} Hz; keys under {}/",
        robot.config.name,
        a.policy,
        spec.architecture,
        robot.config.command_rate_hz,
        spec.control_rate_hz,
        keys.namespace()
    );

    let start = Instant::now();
    let period = Duration::from_secs_f64(1.0 / robot.config.command_rate_hz);
    let mut next_tick = start;
    let mut last_tick: Option<Instant> = None;
    let mut loop_stats = LoopStats::default();
    let mut next_telemetry = 1.0;
    let mut instruction = a.instruction.clone();
    let mut last_hold: Option<String> = None;
    let mut stopping_since: Option<f64> = None;
    let mut estop_events = 0u64;
    let mut js_cache = Some(first);
    // An e-stop message that woke the loop before its next tick.
    let mut woken_by: Option<sinew_bus::Received<StringMsg>> = None;
    let mut early = false;
    let mut estop_received: Option<Instant> = None;
    let mut estop_latency_ms: Vec<f64> = Vec::new();
    let mut frame_cache: Vec<Option<sinew_bus::Received<sinew_msgs::Image>>> =
        vec![None; cameras.len()];
    loop {
        let tick_start = Instant::now();
        if let Some(prev) = last_tick {
            loop_stats
                .period_ms
                .push((tick_start - prev).as_secs_f64() * 1e3);
        }
        last_tick = Some(tick_start);
        let now = secs_since(start, tick_start);

        // Stopping: Ctrl-C or the duration; hold, brake to a stop, then leave.
        if stopping_since.is_none() && (stop.requested() || a.duration.is_some_and(|d| now >= d)) {
            stopping_since = Some(now);
            rt.engage_estop();
        }
        if let Some(since) = stopping_since {
            let still = rt_still(&rt);
            if still || now - since > 3.0 {
                break;
            }
        }
        let mut estop_msgs: Vec<sinew_bus::Received<StringMsg>> =
            woken_by.take().into_iter().collect();
        while let Some(m) = estop.try_recv() {
            estop_msgs.push(m);
        }
        for m in estop_msgs {
            estop_events += 1;
            match m.msg.data.trim() {
                "engage" | "stop" | "1" | "true" => {
                    rt.engage_estop();
                    estop_received = Some(m.received_at);
                }
                "release" | "0" | "false" if stopping_since.is_none() => rt.release_estop(),
                other => {
                    tracing::warn!("e-stop key: unknown command {other:?} (engage or release)")
                }
            }
        }
        if let Some(m) = instruction_sub.take() {
            if m.msg.data != instruction {
                eprintln!("run: instruction {:?}", m.msg.data);
                instruction = m.msg.data;
            }
        }
        // The newest of each stream (take() counts frames that were overwritten unseen).
        if let Some(m) = joint_states.take() {
            if let Some(t) = tap.as_mut() {
                let k = t.keys.joint_states();
                t.put_ns(&k, &m.msg, unix_ns());
            }
            js_cache = Some(m);
        }
        for ((name, l), cache) in cameras.iter().zip(frame_cache.iter_mut()) {
            if let Some(m) = l.take() {
                if let Some(t) = tap.as_mut() {
                    let k = t.keys.camera_image(name);
                    t.put_ns(&k, &m.msg, unix_ns());
                }
                *cache = Some(m);
            }
        }
        if let Some(t) = tap.as_mut() {
            if taped_instruction.as_ref() != Some(&instruction) {
                let k = t.keys.instruction();
                t.put_ns(
                    &k,
                    &StringMsg {
                        data: instruction.clone(),
                    },
                    unix_ns(),
                );
                taped_instruction = Some(instruction.clone());
            }
            let step = rt.step_at(now);
            if last_step != Some(step) {
                t.event_ns(&sinew_core::events::Event::Step { step }, unix_ns());
                last_step = Some(step);
            }
        }
        let js = js_cache.clone();
        let frames: Vec<(String, Option<sinew_bus::Received<sinew_msgs::Image>>)> = cameras
            .iter()
            .zip(&frame_cache)
            .map(|((n, _), f)| (n.clone(), f.clone()))
            .collect();
        let sensors = Sensors {
            joint_state_stamp: js.as_ref().map(|m| secs_since(start, m.received_at)),
            camera_stamps: frames
                .iter()
                .map(|(n, f)| {
                    (
                        n.clone(),
                        f.as_ref().map(|m| secs_since(start, m.received_at)),
                    )
                })
                .collect(),
        };
        if let Some(req) = rt.poll(now, &sensors) {
            let q = js.as_ref().and_then(|m| q_of(&m.msg));
            if let Some(q) = q {
                let images: BTreeMap<String, Image> = frames
                    .iter()
                    .filter_map(|(n, f)| f.as_ref().map(|m| (n.clone(), m.msg.clone())))
                    .collect();
                let obs = Observation {
                    images,
                    joint_positions: q,
                    joint_velocities: Vec::new(),
                    instruction: instruction.clone(),
                    stamp_s: now,
                };
                if worker.submit(Job {
                    step: req.step,
                    observation: obs,
                }) {
                    rt.inference_started(req.step, now);
                }
            }
        }
        while let Some(o) = worker.poll() {
            match o {
                Outcome::Chunk {
                    step,
                    chunk,
                    wall_ms,
                    q_observed,
                } => {
                    loop_stats.inference_ms.push(wall_ms);
                    for w in &chunk.warnings {
                        tracing::warn!("policy: {w}");
                    }
                    if let Some(t) = tap.as_mut() {
                        let ns = unix_ns();
                        t.event_ns(
                            &sinew_core::events::Event::Inference {
                                step,
                                tokens: chunk.tokens.clone(),
                                timings: chunk.timings,
                                wall_ms,
                                warnings: chunk.warnings.clone(),
                            },
                            ns,
                        );
                        let k = t.keys.action_chunk();
                        t.put_ns(
                            &k,
                            &chunk_message(&chunk, &joint_names, spec.control_rate_hz),
                            ns,
                        );
                    }
                    rt.chunk_ready(secs_since(start, Instant::now()), step, &chunk, &q_observed);
                }
                Outcome::Error { error, .. } => {
                    tracing::warn!("inference failed: {error}");
                    rt.inference_failed(error, false);
                }
                Outcome::Dead { error } => {
                    eprintln!("run: {error}; holding");
                    rt.inference_failed(error, true);
                }
            }
        }
        let (q_cmd, _) = rt.command(now);
        let cmd_msg = JointTrajectory {
            header: Header::new(Time::now(), robot.config.base_link.clone()),
            joint_names: joint_names.clone(),
            points: vec![JointTrajectoryPoint {
                positions: q_cmd,
                ..Default::default()
            }],
        };
        commands.put(&cmd_msg)?;
        if let Some(t) = tap.as_mut() {
            let ns = unix_ns();
            let k = t.keys.joint_commands();
            t.put_ns(&k, &cmd_msg, ns);
            let kinds = crate::sim_run::safety_delta(&mut last_safety, &rt.stats().safety);
            if !kinds.is_empty() {
                t.event_ns(&sinew_core::events::Event::Intervention { kinds }, ns);
            }
        }
        if let Some(t) = estop_received.take() {
            // From the e-stop message's arrival to the first hold command on the bus.
            estop_latency_ms.push(t.elapsed().as_secs_f64() * 1e3);
        }
        let hold = rt.hold_reason().map(|h| h.to_string());
        if hold != last_hold {
            if let (Some(t), Some(h)) = (tap.as_mut(), &hold) {
                t.event_ns(
                    &sinew_core::events::Event::Hold { reason: h.clone() },
                    unix_ns(),
                );
            }
            match &hold {
                Some(h) => eprintln!("run: t = {now:.2} s: holding: {h}"),
                None => eprintln!("run: t = {now:.2} s: following the policy"),
            }
            last_hold = hold.clone();
        }
        loop_stats
            .work_ms
            .push(tick_start.elapsed().as_secs_f64() * 1e3);
        if now >= next_telemetry {
            next_telemetry += 1.0;
            let subs = subscriber_stats(&joint_states, &cameras, &instruction_sub, &estop);
            let t = telemetry_json(
                &rt,
                &loop_stats,
                &hold,
                &subs,
                estop_events,
                &estop_latency_ms,
            );
            telemetry.put(&StringMsg {
                data: t.to_string(),
            })?;
        }
        // Pace to the command rate (deadline-based, so the rate does not drift). The wait ends
        // early when an e-stop message arrives, so the hold goes out at once.
        if !early {
            next_tick += period;
        }
        let now_i = Instant::now();
        if now_i > next_tick + period * 10 {
            next_tick = now_i;
        }
        early = false;
        if next_tick > now_i {
            if let Ok(m) = estop.receiver().recv_deadline(next_tick) {
                woken_by = Some(m);
                early = true;
            }
        }
    }
    worker.shutdown();
    let hold = rt.hold_reason().map(|h| h.to_string());
    let subs = subscriber_stats(&joint_states, &cameras, &instruction_sub, &estop);
    let t = telemetry_json(
        &rt,
        &loop_stats,
        &hold,
        &subs,
        estop_events,
        &estop_latency_ms,
    );
    telemetry.put(&StringMsg {
        data: t.to_string(),
    })?;
    eprintln!("run: stopped, holding the last safe position; {}", t);
    drop(tap);
    let mut failed = None;
    if let Some(r) = recorder {
        let report = r.close();
        let mb: f64 = report.files.iter().map(|f| f.bytes as f64 / 1e6).sum();
        eprintln!(
            "run: recorded {:.1} MB to {}; {} item(s) dropped by a full queue",
            mb,
            a.record
                .as_ref()
                .map(|d| d.join(format!("{run_name}.mcap")).display().to_string())
                .unwrap_or_default(),
            report.dropped
        );
        if let Some(dir) = &a.record {
            use std::io::Write;
            let line = json!({
                "file": format!("{run_name}.mcap"), "robot": robot.config.name,
                "policy": a.policy, "instruction": instruction, "success": serde_json::Value::Null,
                "steps": rt.step_at(secs_since(start, Instant::now())),
            });
            let idx = dir.join("episodes.jsonl");
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&idx)
                .and_then(|mut f| writeln!(f, "{line}"))
                .with_context(|| format!("writing {}", idx.display()))?;
        }
        failed = report.error.map(|e| format!("recording stopped: {e}"));
    }
    if let Some(v) = viz {
        let report = v.close();
        let target = match (&a.rerun.rerun_connect, &a.record) {
            (Some(addr), _) => format!("the viewer at {addr}"),
            (None, Some(d)) => d.join(format!("{run_name}.rrd")).display().to_string(),
            (None, None) => format!("{run_name}.rrd"),
        };
        eprintln!(
            "run: rerun to {target}; {} item(s) dropped by a full queue",
            report.dropped
        );
        if let Some(e) = report.error {
            failed.get_or_insert(format!("rerun logging stopped: {e}"));
        }
    }
    bus.close();
    if let Some(e) = failed {
        bail!("{e} (the robot was controlled to the end; what was written stays readable)");
    }
    Ok(())
}

/// A chunk as `JointTrajectory`: one point per policy step, the action space in
/// `header.frame_id`, joint names when the actions are joint positions.
pub fn chunk_message(chunk: &ActionChunk, joint_names: &[String], rate_hz: f64) -> JointTrajectory {
    let dim = chunk.dim();
    let names = if chunk.kind == Some(ActionKind::JointPosition) && dim == joint_names.len() {
        joint_names.to_vec()
    } else {
        (0..dim).map(|i| format!("action_{i}")).collect()
    };
    JointTrajectory {
        header: Header::new(
            Time::from_nanos((chunk.observation_stamp_s * 1e9).round() as i64),
            chunk.kind.map_or("actions".to_owned(), |k| k.to_string()),
        ),
        joint_names: names,
        points: chunk
            .actions
            .iter()
            .enumerate()
            .map(|(i, a)| JointTrajectoryPoint {
                positions: a.clone(),
                time_from_start: sinew_msgs::Duration::from_nanos(
                    (i as f64 / rate_hz * 1e9) as i64,
                ),
                ..Default::default()
            })
            .collect(),
    }
}

fn rt_still(rt: &Runtime) -> bool {
    rt.hold_reason().is_some() && rt.stats().commands > 0 && rt_velocity_zero(rt)
}

fn rt_velocity_zero(rt: &Runtime) -> bool {
    rt.last_velocity().iter().all(|v| v.abs() < 1e-9)
}

fn subscriber_stats(
    js: &Latest<JointState>,
    cams: &[(String, Latest<sinew_msgs::Image>)],
    instr: &Latest<StringMsg>,
    estop: &sinew_bus::Subscriber<StringMsg>,
) -> BTreeMap<String, SubscriberStats> {
    let mut m = BTreeMap::new();
    m.insert(js.key().to_owned(), js.stats());
    for (_, c) in cams {
        m.insert(c.key().to_owned(), c.stats());
    }
    m.insert(instr.key().to_owned(), instr.stats());
    m.insert("estop".to_owned(), estop.stats());
    m
}

fn telemetry_json(
    rt: &Runtime,
    l: &LoopStats,
    hold: &Option<String>,
    subs: &BTreeMap<String, SubscriberStats>,
    estop_events: u64,
    estop_to_hold_ms: &[f64],
) -> serde_json::Value {
    let st = rt.stats();
    json!({
        "estop_to_hold_ms": estop_to_hold_ms,
        "loop_period_p50_ms": l.period_ms.quantile(0.5),
        "loop_period_p99_ms": l.period_ms.quantile(0.99),
        "loop_work_p50_ms": l.work_ms.quantile(0.5),
        "loop_work_p99_ms": l.work_ms.quantile(0.99),
        "inference_p50_ms": l.inference_ms.quantile(0.5),
        "inference_p99_ms": l.inference_ms.quantile(0.99),
        "holding": hold,
        "estop_latched": rt.estop_latched(),
        "estop_events": estop_events,
        "commands": st.commands,
        "hold_commands": st.hold_commands,
        "holds": st.holds,
        "chunks": st.chunks,
        "late_steps": st.late_steps,
        "inference_errors": st.inference_errors,
        "unsynced_observations": st.unsynced_observations,
        "undecodable_actions": st.undecodable_actions,
        "safety": st.safety,
        "subscribers": subs.iter().map(|(k, s)| (k.clone(), json!({"received": s.received, "dropped": s.dropped, "malformed": s.malformed}))).collect::<serde_json::Map<_, _>>(),
    })
}
