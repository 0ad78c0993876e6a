//! Recordings played back: through a policy and compared with what was commanded
//! (`replay --compare`, the one control loop over the recording as a robot), converted to a
//! rerun file, or published on the bus with their original timing.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::Serialize;
use sinew_bus::Bus;
use sinew_core::events::Event;
use sinew_core::Policy;
use sinew_msgs::keys::{key_of_topic, RobotKeys};
use sinew_record::{decoded_messages, DecodeNotes, RecordedRobot, Recording};
use sinew_robot::RobotDescription;
use sinew_runtime::{Inference, LatencyModel, Record, Session, SessionConfig, Tap};
use sinew_sim::ExpertPolicy;
use sinew_viz::{Sink, Viz};

use crate::execution::ExecutionSpec;
use crate::recording::stream_map;
use crate::resolve::{check_cameras, load_policy_folder, load_task, DeviceSpec};

/// One compared policy step.
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

/// A recording's commands against a policy's.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CompareReport {
    /// The recording.
    pub file: String,
    /// The policy.
    pub policy: String,
    /// Commands compared.
    pub commands_compared: u64,
    /// Requests handed to the policy.
    pub inferences: u64,
    /// Commands whose difference is not exactly zero.
    pub commands_differing: u64,
    /// Largest difference (rad or m).
    pub max_abs_diff: f64,
    /// Mean of the per-command largest differences.
    pub mean_abs_diff: f64,
    /// Per policy step: the largest difference within the step.
    pub steps: Vec<StepDiff>,
}

/// Compares each command the loop sends with the one recorded at the same time.
struct CompareTap<'a> {
    recorded: &'a std::collections::BTreeMap<u64, Vec<f64>>,
    joints: &'a [String],
    step: u64,
    sum: f64,
    report: CompareReport,
}

impl Tap for CompareTap<'_> {
    fn record(&mut self, ns: u64, record: Record<'_>) {
        match record {
            Record::Event(Event::Step { step }) => self.step = *step,
            Record::Command(cmd) => {
                let Some(recorded) = self.recorded.get(&ns) else {
                    return;
                };
                let q = cmd.points.first().map_or(&[][..], |p| &p.positions[..]);
                let (mut worst, mut joint) = (0.0f64, 0usize);
                for (i, (x, y)) in q.iter().zip(recorded).enumerate() {
                    let d = (x - y).abs();
                    if d > worst || d.is_nan() {
                        worst = d;
                        joint = i;
                    }
                }
                if q.len() != recorded.len() {
                    worst = f64::INFINITY;
                }
                let r = &mut self.report;
                r.commands_compared += 1;
                if worst != 0.0 {
                    r.commands_differing += 1;
                }
                self.sum += worst;
                r.max_abs_diff = r.max_abs_diff.max(worst);
                let name = self.joints.get(joint).cloned().unwrap_or_default();
                match r.steps.last_mut() {
                    Some(s) if s.step == self.step => {
                        if worst > s.max_abs_diff {
                            s.max_abs_diff = worst;
                            s.joint = name;
                        }
                    }
                    _ => r.steps.push(StepDiff {
                        time_s: ns as f64 / 1e9,
                        step: self.step,
                        max_abs_diff: worst,
                        joint: name,
                    }),
                }
            }
            _ => {}
        }
    }
}

/// The robot a recording was made on: `robot` if given, else its `robot` metadata.
pub fn recording_robot(
    rec: &Recording,
    robot: Option<&str>,
    file: &Path,
) -> Result<RobotDescription> {
    let name = match (robot, rec.metadata.get("robot")) {
        (Some(r), _) => r.to_owned(),
        (None, Some(r)) => r.clone(),
        (None, None) => bail!(
            "{} does not name its robot (no `robot` metadata): pass --robot",
            file.display()
        ),
    };
    crate::resolve::load_robot(&name)
}

/// The inference times (`wall_ms` of its `inference` events) of a recording, as a latency
/// model: a live run's measured latency, to simulate in lockstep (`--latency-from`).
pub fn latency_from_recording(file: &Path) -> Result<LatencyModel> {
    let rec = sinew_record::read_recording(file)
        .with_context(|| format!("reading {}", file.display()))?;
    let mut samples = Vec::new();
    for m in rec
        .messages
        .iter()
        .filter(|m| m.topic.ends_with("/sinew/events"))
    {
        if let Some(Ok(sinew_msgs::AnyMessage::String(s))) = m.decode() {
            if let Ok(Event::Inference { wall_ms, .. }) = Event::from_json(&s.data) {
                samples.push(wall_ms);
            }
        }
    }
    let name = file.file_name().map_or_else(
        || file.display().to_string(),
        |n| n.to_string_lossy().into(),
    );
    Ok(LatencyModel::recorded(&name, samples)?)
}

/// Runs the recording `rec` (made on `robot`) through `policy` (`expert` or a folder), as it
/// was run (its `execution` metadata, simulated latency included), and compares every command
/// with the recorded one.
pub fn compare(
    rec: &Recording,
    file: &Path,
    robot: &RobotDescription,
    policy: &str,
    device: &DeviceSpec,
) -> Result<(CompareReport, DecodeNotes)> {
    compare_with(rec, file, robot, policy, device, None)
}

/// [`compare`], with the simulated latency `latency` instead of the recorded one when given
/// (what the policy would have commanded had it answered that late).
pub fn compare_with(
    rec: &Recording,
    file: &Path,
    robot: &RobotDescription,
    policy: &str,
    device: &DeviceSpec,
    latency: Option<LatencyModel>,
) -> Result<(CompareReport, DecodeNotes)> {
    let keys = RobotKeys::new(&robot.config.namespace)?;
    let joints = robot.joint_names();
    let mut exec: ExecutionSpec = match rec.metadata.get("execution") {
        Some(j) => serde_json::from_str(j)
            .with_context(|| format!("the recording's `execution` metadata {j:?}"))?,
        None => bail!(
            "{} has no `execution` metadata (it was not written by `sinew sim run`/`sinew run`)",
            file.display()
        ),
    };
    if latency.is_some() {
        exec.latency = latency;
    }
    // The delays are drawn from the episode's seed, as when it was recorded.
    let seed: Option<u64> = match rec.metadata.get("seed") {
        Some(s) => Some(s.parse().with_context(|| format!("seed metadata {s:?}"))?),
        None => None,
    };
    let policy_box: Box<dyn Policy> = if policy == "expert" {
        let task = match rec.metadata.get("task") {
            Some(t) => load_task(t)?,
            None => bail!("--policy expert needs the recording's `task` metadata"),
        };
        let Some(seed) = seed else {
            bail!("--policy expert needs the recording's `seed` metadata");
        };
        let ep = task.sample(&robot.config.name, seed)?;
        Box::new(ExpertPolicy::new(robot, &task, ep))
    } else {
        load_policy_folder(policy, device)?
    };
    let spec = policy_box.spec().clone();
    check_cameras(robot, &spec.cameras)?;
    let cameras: Vec<String> = robot
        .config
        .cameras
        .iter()
        .map(|c| c.name.clone())
        .collect();
    let (mut played, notes) = RecordedRobot::new(rec, &keys, &joints, &cameras, robot.home())
        .with_context(|| format!("playing back {}", file.display()))?;
    let runtime = exec.runtime_config(robot, &spec);
    let mut cfg = SessionConfig::new(runtime);
    cfg.rtc = exec
        .rtc_capacity(policy_box.as_ref())
        .map_err(anyhow::Error::msg)?;
    cfg.latency = exec.latency.as_ref().map(|m| m.sampler(seed.unwrap_or(0)));
    let mut policy_box = policy_box;
    policy_box.reset();
    let mut session = Session::new(robot, cfg, Inference::inline(policy_box), &mut played)?;
    let recorded = played.recorded_commands().clone();
    let mut tap = CompareTap {
        recorded: &recorded,
        joints: &joints,
        step: 0,
        sum: 0.0,
        report: CompareReport {
            file: file.display().to_string(),
            policy: policy.to_owned(),
            commands_compared: 0,
            inferences: 0,
            commands_differing: 0,
            max_abs_diff: 0.0,
            mean_abs_diff: 0.0,
            steps: Vec::new(),
        },
    };
    let report = session.run(&mut played, &mut [&mut tap], &|| false)?;
    let mut out = tap.report;
    out.inferences = report.inferences;
    out.mean_abs_diff = tap.sum / out.commands_compared.max(1) as f64;
    Ok((out, notes))
}

/// What a conversion to rerun wrote.
#[derive(Debug, Clone)]
pub struct RrdReport {
    /// Messages logged.
    pub messages: u64,
    /// Messages the viewer could not show.
    pub skipped: u64,
    /// Wall time, s.
    pub wall_s: f64,
    /// What could not be decoded.
    pub notes: DecodeNotes,
}

/// Writes the recording as a rerun file (the same content as live logging).
pub fn to_rrd(
    rec: &Recording,
    robot: RobotDescription,
    name: &str,
    out: &Path,
) -> Result<RrdReport> {
    let t0 = Instant::now();
    let keys = RobotKeys::new(&robot.config.namespace)?;
    let streams = stream_map(&keys, &robot);
    let mut viz = Viz::new(robot, name, &Sink::File(out.to_owned()))?;
    let (messages, notes) = decoded_messages(rec);
    let mut n = 0u64;
    for (key, t, msg) in messages {
        if let Some(s) = streams.get(&key) {
            viz.log(s, t, &msg)?;
            n += 1;
        }
    }
    let stats = viz.finish()?;
    Ok(RrdReport {
        messages: n,
        skipped: stats.skipped,
        wall_s: t0.elapsed().as_secs_f64(),
        notes,
    })
}

/// What a playback sent.
#[derive(Debug, Clone)]
pub struct PlayReport {
    /// Messages published.
    pub sent: u64,
    /// Passes over the recording.
    pub passes: u64,
    /// Wall time, s.
    pub wall_s: f64,
    /// Whether a subscriber was there before playing (when waiting for one was asked).
    pub subscriber_found: bool,
}

/// The message definition of a recorded schema name, when Sinew knows the type.
fn schema_def(schema: &str) -> Option<&'static sinew_msgs::MsgDef> {
    sinew_msgs::MessageKind::from_type_name(schema).map(|k| k.def())
}

/// Publishes the recording's messages on the bus with their original timing (`speed` times
/// faster; 0: as fast as possible), `repeat` passes until `stop`.
pub fn play(
    rec: &Recording,
    bus: &Bus,
    speed: f64,
    repeat: bool,
    wait_for_subscribers_s: f64,
    stop: &dyn Fn() -> bool,
) -> Result<PlayReport> {
    if !(speed.is_finite() && speed >= 0.0) {
        bail!("--speed must be 0 (as fast as possible) or positive, got {speed}");
    }
    let mut subscriber_found = true;
    if wait_for_subscribers_s > 0.0 {
        if let Some(m) = rec.messages.first() {
            // In bridge mode matching only looks at the key; in rmw_zenoh mode the key holds
            // the type, so the probe has the recorded one.
            let def = schema_def(&m.schema)
                .unwrap_or(<sinew_msgs::StringMsg as sinew_msgs::Message>::DEF);
            let probe =
                bus.raw_publisher(&key_of_topic(&m.topic), def, sinew_bus::Qos::default())?;
            subscriber_found =
                probe.wait_for_subscribers(Duration::from_secs_f64(wait_for_subscribers_s));
        }
    }
    let first = rec
        .messages
        .iter()
        .map(|m| m.log_time_ns)
        .min()
        .unwrap_or(0);
    let mut passes = 0u64;
    let t0 = Instant::now();
    let mut sent = 0u64;
    'outer: loop {
        let start = Instant::now();
        for m in &rec.messages {
            if stop() {
                break 'outer;
            }
            if speed > 0.0 {
                let due = Duration::from_secs_f64(
                    m.log_time_ns.saturating_sub(first) as f64 * 1e-9 / speed,
                );
                let elapsed = start.elapsed();
                if due > elapsed {
                    // Pacing to the recording's clock, not synchronisation.
                    std::thread::sleep(due - elapsed);
                }
            }
            let key = key_of_topic(&m.topic);
            match schema_def(&m.schema) {
                Some(def) => bus.put_raw_as(&key, def, m.data.to_vec())?,
                None => bus.put_raw(&key, m.data.to_vec())?,
            }
            sent += 1;
        }
        passes += 1;
        if !repeat {
            break;
        }
    }
    Ok(PlayReport {
        sent,
        passes,
        wall_s: t0.elapsed().as_secs_f64(),
        subscriber_found,
    })
}
