//! `sinew run`: the loop on a robot's bus keys (a real robot, or `sinew sim serve`).
//!
//! Threads: the caller's is the control loop (fixed rate from robot.toml; it never waits on
//! inference or the bus); `sinew-inference` owns the policy; `sinew-recorder` and
//! `sinew-rerun` write what the loop saw and did, dropping (and counting) what does not fit
//! their queues; zenoh runs its own. A stop (Ctrl-C, or the duration) engages the hold, brakes
//! to rest and ends, leaving the robot at its last safe position. Telemetry (JSON) goes to
//! `<ns>/sinew/telemetry` once per second.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use sinew_bus::{Bus, BusOracle, BusRobot, Publisher};
use sinew_core::events::Event;
use sinew_core::robot_io::RobotIo;
use sinew_core::Policy;
use sinew_msgs::keys::RobotKeys;
use sinew_msgs::StringMsg;
use sinew_robot::RobotDescription;
use sinew_runtime::{Inference, Record, Session, SessionConfig, Tap, Telemetry};

use crate::execution::ExecutionSpec;
use crate::recording::{append_index, Outputs, OutputsReport, RerunSpec};
use crate::resolve::{check_cameras, load_policy_folder, DeviceSpec};

/// A live run.
#[derive(Debug, Clone)]
pub struct LiveSpec {
    /// The robot.
    pub robot: RobotDescription,
    /// A policy folder, or `expert` to follow `sinew sim serve`'s scripted expert through the
    /// bus.
    pub policy: String,
    /// The instruction until one arrives on `<ns>/instruction`.
    pub instruction: String,
    /// Stop after this many seconds.
    pub duration_s: Option<f64>,
    /// How long to wait for the first joint state, s.
    pub startup_timeout_s: f64,
    /// Chunk execution.
    pub exec: ExecutionSpec,
    /// Where the model runs.
    pub device: DeviceSpec,
    /// Record to `DIR/run_<unix time>.mcap` (and `.rrd`), indexed in `DIR/episodes.jsonl`.
    pub record: Option<PathBuf>,
    /// Rerun output.
    pub rerun: RerunSpec,
    /// How recordings (MCAP and `.rrd`) store camera images.
    pub encodings: sinew_record::Encodings,
}

/// What a live run did.
#[derive(Debug, Clone)]
pub struct LiveReport {
    /// Telemetry at the end.
    pub telemetry: Telemetry,
    /// The recording's name (`run_<unix time>`).
    pub name: String,
    /// What the recorders wrote.
    pub outputs: Option<OutputsReport>,
}

/// Prints what an operator needs to see: one line when a hold starts (its reason), one when
/// the robot follows the policy again (how long it held), and instruction changes.
struct ConsoleTap<'a> {
    epoch_unix_ns: u64,
    log: &'a mut dyn FnMut(String),
}

impl Tap for ConsoleTap<'_> {
    fn record(&mut self, ns: u64, record: Record<'_>) {
        let t = ns.saturating_sub(self.epoch_unix_ns) as f64 / 1e9;
        match record {
            Record::Event(Event::Hold { reason, .. }) => {
                (self.log)(format!("run: t = {t:.2} s: holding: {reason}"))
            }
            Record::Event(Event::HoldEnded { kind, duration_s }) => (self.log)(format!(
                "run: t = {t:.2} s: following the policy (held {duration_s:.2} s: {kind})"
            )),
            Record::Instruction(i) if !i.is_empty() => {
                (self.log)(format!("run: instruction {i:?}"))
            }
            _ => {}
        }
    }
}

/// Publishes the loop's telemetry on `<ns>/sinew/telemetry`.
struct TelemetryTap {
    publisher: Publisher<StringMsg>,
}

impl Tap for TelemetryTap {
    fn record(&mut self, _: u64, _: Record<'_>) {}

    fn telemetry(&mut self, t: &Telemetry) {
        let data = serde_json::to_string(t).unwrap_or_default();
        if let Err(e) = self.publisher.put(&StringMsg { data }) {
            tracing::warn!("telemetry: {e}");
        }
    }
}

/// Runs the loop on the robot's keys until `stop` or the duration; `log` gets the operator's
/// lines.
pub fn run_live(
    spec: &LiveSpec,
    bus: &Bus,
    log: &mut dyn FnMut(String),
    stop: &dyn Fn() -> bool,
) -> Result<LiveReport> {
    let robot = &spec.robot;
    let keys = RobotKeys::new(&robot.config.namespace)?;
    let joints = robot.joint_names();
    let policy: Box<dyn Policy> = if spec.policy == "expert" {
        Box::new(BusOracle::open(bus, &keys, &joints, 10.0)?)
    } else {
        load_policy_folder(&spec.policy, &spec.device)?
    };
    let p = policy.spec().clone();
    check_cameras(robot, &p.cameras)?;
    let mut bus_robot = BusRobot::open(bus, &keys, &p.cameras)?;
    if !bus_robot.wait_for_joint_state(Duration::from_secs_f64(spec.startup_timeout_s)) {
        anyhow::bail!(
            "no joint state on {} within {} s",
            keys.joint_states(),
            spec.startup_timeout_s
        );
    }
    let runtime = spec.exec.runtime_config(robot, &p);
    let mut cfg = SessionConfig::new(runtime);
    cfg.rtc = spec
        .exec
        .rtc_capacity(policy.as_ref())
        .map_err(anyhow::Error::msg)?;
    cfg.instruction = spec.instruction.clone();
    cfg.duration_s = spec.duration_s;
    let mut outputs = Outputs::start(robot, spec.record.as_deref(), &spec.rerun, spec.encodings)?;
    if outputs.is_some() {
        cfg.tap_cameras = p.cameras.clone();
    }
    let epoch_unix_ns = match bus_robot.timing() {
        sinew_core::robot_io::Timing::RealTime { epoch_unix_ns, .. } => epoch_unix_ns,
        sinew_core::robot_io::Timing::Driven { .. } => 0,
    };
    let name = format!("run_{}", epoch_unix_ns / 1_000_000_000);
    if let Some(o) = &mut outputs {
        let mut meta = BTreeMap::new();
        meta.insert("robot".to_owned(), robot.config.name.clone());
        meta.insert("policy".to_owned(), spec.policy.clone());
        meta.insert("execution".to_owned(), spec.exec.to_json());
        meta.insert("source".to_owned(), "sinew run".to_owned());
        o.open(&name, &format!("{} live", robot.config.name), meta)?;
    }
    let inference = Inference::threaded(policy).context("starting the inference thread")?;
    let mut session = Session::new(robot, cfg, inference, &mut bus_robot)?;
    let mut telemetry_tap = TelemetryTap {
        publisher: bus.publisher(&keys.telemetry())?,
    };
    let mut console = ConsoleTap { epoch_unix_ns, log };
    let report = match &mut outputs {
        Some(o) => {
            let mut rec = o.tap(&joints, p.control_rate_hz, true);
            session.run(
                &mut bus_robot,
                &mut [&mut console, &mut telemetry_tap, &mut rec],
                stop,
            )?
        }
        None => session.run(
            &mut bus_robot,
            &mut [&mut console, &mut telemetry_tap],
            stop,
        )?,
    };
    let outputs = match outputs {
        Some(mut o) => {
            // A writer that stopped is reported by `finish`; the index still gets its line.
            let _ = o.close_one();
            if let Some(dir) = spec.record.as_deref() {
                let line = serde_json::json!({
                    "file": format!("{name}.mcap"), "robot": robot.config.name,
                    "policy": spec.policy, "instruction": report.instruction,
                    "success": serde_json::Value::Null, "steps": report.steps,
                });
                append_index(dir, &line)?;
            }
            Some(o.finish())
        }
        None => None,
    };
    Ok(LiveReport {
        telemetry: report.telemetry,
        name,
        outputs,
    })
}
