//! The control loop's logic, the same in every mode (live on the bus, lockstep in the
//! simulator, replay): given the time and the freshness of the sensors, decide whether to ask
//! the policy for a chunk and which command to send. It never waits: inference runs elsewhere
//! and its chunks are handed in with [`Runtime::chunk_ready`].

use sinew_core::{ActionChunk, ActionKind};
use sinew_robot::actions::ActionDecoder;
use sinew_robot::RobotDescription;

use crate::chunks::{ChunkScheduler, Execution};
use crate::safety::{Interventions, SafetyError, SafetyFilter, SafetyStats};
use crate::telemetry::JerkMeter;

/// How targets between policy steps are turned into commands at the command rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Interpolation {
    /// The step's target from the start of the step (the safety filter shapes the motion).
    Hold,
    /// Linear from the previous step's target to this step's, over the step.
    Linear,
}

/// Why the robot is holding.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "reason")]
pub enum HoldReason {
    /// No chunk yet (start-up, or after a hold).
    WaitingForPolicy,
    /// The joint state is older than its deadline (or never came).
    JointStateStale {
        /// Its age, s (infinite: never received).
        age_s: f64,
    },
    /// A camera's newest frame is older than its deadline (or never came).
    CameraStale {
        /// The camera.
        camera: String,
        /// Its age, s.
        age_s: f64,
    },
    /// An inference has run longer than its deadline.
    InferenceStalled {
        /// How long it has run, s.
        running_s: f64,
    },
    /// Inferences keep failing (a policy server that is gone, an observation it refuses);
    /// requests go on, and the hold ends with the next chunk.
    InferenceFailing {
        /// Failures in a row.
        failures: u32,
        /// The last one.
        error: String,
    },
    /// The policy failed for good (it panicked, or its thread is gone).
    PolicyFailed {
        /// What happened.
        error: String,
    },
    /// The e-stop is latched.
    EStop,
}

impl std::fmt::Display for HoldReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HoldReason::WaitingForPolicy => write!(f, "waiting for the policy's first chunk"),
            HoldReason::JointStateStale { age_s } if age_s.is_infinite() => {
                write!(f, "no joint state received")
            }
            HoldReason::JointStateStale { age_s } => {
                write!(f, "joint state is {:.0} ms old", age_s * 1e3)
            }
            HoldReason::CameraStale { camera, age_s } if age_s.is_infinite() => {
                write!(f, "no frame received from camera `{camera}`")
            }
            HoldReason::CameraStale { camera, age_s } => {
                write!(f, "camera `{camera}` frame is {:.0} ms old", age_s * 1e3)
            }
            HoldReason::InferenceStalled { running_s } => {
                write!(f, "inference running for {running_s:.2} s")
            }
            HoldReason::InferenceFailing { failures, error } => {
                write!(
                    f,
                    "{failures} inferences failed in a row, the last: {error}"
                )
            }
            HoldReason::PolicyFailed { error } => write!(f, "policy failed: {error}"),
            HoldReason::EStop => write!(f, "e-stop latched"),
        }
    }
}

/// Settings of the loop.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RuntimeConfig {
    /// Commands per second (robot.toml).
    pub command_rate_hz: f64,
    /// Policy steps per second (the policy's).
    pub policy_rate_hz: f64,
    /// Sync or async chunk execution.
    pub execution: Execution,
    /// Targets to commands.
    pub interpolation: Interpolation,
    /// The policy's cameras (their freshness is checked).
    pub cameras: Vec<String>,
    /// Deadlines, s.
    pub joint_state_timeout_s: f64,
    /// Camera deadline, s.
    pub camera_timeout_s: f64,
    /// Inference deadline, s.
    pub inference_timeout_s: f64,
    /// Largest spread of the stamps of one observation, s.
    pub sync_tolerance_s: f64,
    /// The policy's action space.
    pub action_kind: ActionKind,
}

impl RuntimeConfig {
    /// Settings from robot.toml and a policy's rate, cameras and action space.
    pub fn new(
        robot: &RobotDescription,
        policy_rate_hz: f64,
        cameras: Vec<String>,
        action_kind: ActionKind,
        execution: Execution,
    ) -> Self {
        let s = &robot.config.safety;
        Self {
            command_rate_hz: robot.config.command_rate_hz,
            policy_rate_hz,
            execution,
            interpolation: Interpolation::Linear,
            cameras,
            joint_state_timeout_s: s.joint_state_timeout_s,
            camera_timeout_s: s.camera_timeout_s,
            inference_timeout_s: s.inference_timeout_s,
            sync_tolerance_s: s.sync_tolerance_s,
            action_kind,
        }
    }
}

/// What the sensors look like at a tick: stamps on the runtime's clock (s).
#[derive(Debug, Clone, Default)]
pub struct Sensors {
    /// Stamp of the newest joint state (`None`: never received).
    pub joint_state_stamp: Option<f64>,
    /// Stamp of the newest frame per camera.
    pub camera_stamps: Vec<(String, Option<f64>)>,
}

/// Counters kept by the loop.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct RuntimeStats {
    /// Commands sent.
    pub commands: u64,
    /// Commands sent while holding.
    pub hold_commands: u64,
    /// Times a hold started, by reason name.
    pub holds: std::collections::BTreeMap<String, u64>,
    /// Chunks received.
    pub chunks: u64,
    /// Chunk entries that arrived too late to be used.
    pub late_steps: u64,
    /// Inference errors (handled).
    pub inference_errors: u64,
    /// Observations skipped because their stamps were too far apart.
    pub unsynced_observations: u64,
    /// Chunk entries the action decoder could not use (wrong size, IK failure).
    pub undecodable_actions: u64,
    /// Safety filter counters.
    pub safety: SafetyStats,
}

/// An observation the harness should send to the policy.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Request {
    /// The policy step it is for.
    pub step: u64,
}

/// The loop.
pub struct Runtime {
    cfg: RuntimeConfig,
    robot: RobotDescription,
    safety: SafetyFilter,
    scheduler: ChunkScheduler,
    estop: bool,
    policy_failed: Option<String>,
    /// Inferences failed in a row since the last chunk, and the last error.
    failing: (u32, String),
    in_flight: Option<(u64, f64)>,
    hold: Option<HoldReason>,
    last_target: Option<Vec<f64>>,
    stats: RuntimeStats,
    jerk: JerkMeter,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("cfg", &self.cfg)
            .field("hold", &self.hold)
            .finish()
    }
}

/// Inferences that fail in a row before the robot holds (`HoldReason::InferenceFailing`).
pub const INFERENCE_FAILURES_TO_HOLD: u32 = 3;

/// The name of a hold reason, as counted in the telemetry and recorded in hold events.
pub fn hold_kind(r: &HoldReason) -> &'static str {
    match r {
        HoldReason::WaitingForPolicy => "waiting_for_policy",
        HoldReason::JointStateStale { .. } => "joint_state_stale",
        HoldReason::CameraStale { .. } => "camera_stale",
        HoldReason::InferenceStalled { .. } => "inference_stalled",
        HoldReason::InferenceFailing { .. } => "inference_failing",
        HoldReason::PolicyFailed { .. } => "policy_failed",
        HoldReason::EStop => "estop",
    }
}

impl Runtime {
    /// A loop for `robot` starting at rest at the measured positions `q_start`.
    pub fn new(
        cfg: RuntimeConfig,
        robot: &RobotDescription,
        q_start: &[f64],
    ) -> Result<Self, SafetyError> {
        let safety = SafetyFilter::for_robot(robot, q_start)?;
        Ok(Self {
            scheduler: ChunkScheduler::new(cfg.execution),
            jerk: JerkMeter::new(1.0 / cfg.command_rate_hz.max(1e-9)),
            cfg,
            robot: robot.clone(),
            safety,
            estop: false,
            policy_failed: None,
            failing: (0, String::new()),
            in_flight: None,
            hold: Some(HoldReason::WaitingForPolicy),
            last_target: None,
            stats: RuntimeStats::default(),
        })
    }

    /// The settings.
    pub fn config(&self) -> &RuntimeConfig {
        &self.cfg
    }

    /// The policy step at time `now_s`.
    pub fn step_at(&self, now_s: f64) -> u64 {
        (now_s * self.cfg.policy_rate_hz + 1e-9).floor().max(0.0) as u64
    }

    /// Why the robot holds now (`None`: it follows the policy).
    pub fn hold_reason(&self) -> Option<&HoldReason> {
        self.hold.as_ref()
    }

    /// Counters.
    pub fn stats(&self) -> RuntimeStats {
        let mut s = self.stats.clone();
        s.safety = self.safety.stats();
        s.late_steps = self.scheduler.late_steps;
        s
    }

    /// The safety filter's counters (cheaper than [`Runtime::stats`]: nothing is cloned).
    pub fn safety_stats(&self) -> SafetyStats {
        self.safety.stats()
    }

    /// Commands sent so far.
    pub fn commands_sent(&self) -> u64 {
        self.stats.commands
    }

    /// The last command sent.
    pub fn last_command(&self) -> &[f64] {
        self.safety.last_command()
    }

    /// The last command's velocity (rad/s or m/s).
    pub fn last_velocity(&self) -> &[f64] {
        self.safety.last_velocity()
    }

    /// Latches the e-stop: the robot holds until [`Runtime::release_estop`].
    pub fn engage_estop(&mut self) {
        self.estop = true;
    }

    /// Releases a latched e-stop; the policy is asked for a fresh chunk.
    pub fn release_estop(&mut self) {
        self.estop = false;
    }

    /// Whether the e-stop is latched.
    pub fn estop_latched(&self) -> bool {
        self.estop
    }

    /// Whether an inference is in flight.
    pub fn inference_in_flight(&self) -> bool {
        self.in_flight.is_some()
    }

    /// The watchdog: the reason to hold at `now_s`, if any.
    fn watchdog(&self, now_s: f64, sensors: &Sensors) -> Option<HoldReason> {
        if self.estop {
            return Some(HoldReason::EStop);
        }
        if let Some(e) = &self.policy_failed {
            return Some(HoldReason::PolicyFailed { error: e.clone() });
        }
        let age = |stamp: Option<f64>| stamp.map_or(f64::INFINITY, |s| (now_s - s).max(0.0));
        let js = age(sensors.joint_state_stamp);
        if js > self.cfg.joint_state_timeout_s {
            return Some(HoldReason::JointStateStale { age_s: js });
        }
        for cam in &self.cfg.cameras {
            let stamp = sensors
                .camera_stamps
                .iter()
                .find(|(n, _)| n == cam)
                .and_then(|(_, s)| *s);
            let a = age(stamp);
            if a > self.cfg.camera_timeout_s {
                return Some(HoldReason::CameraStale {
                    camera: cam.clone(),
                    age_s: a,
                });
            }
        }
        if let Some((_, since)) = self.in_flight {
            let running = now_s - since;
            if running > self.cfg.inference_timeout_s {
                return Some(HoldReason::InferenceStalled { running_s: running });
            }
        }
        if self.failing.0 >= INFERENCE_FAILURES_TO_HOLD {
            return Some(HoldReason::InferenceFailing {
                failures: self.failing.0,
                error: self.failing.1.clone(),
            });
        }
        None
    }

    fn set_hold(&mut self, reason: Option<HoldReason>) {
        if let Some(r) = &reason {
            let entering = match &self.hold {
                None => true,
                Some(old) => hold_kind(old) != hold_kind(r),
            };
            if entering {
                *self.stats.holds.entry(hold_kind(r).to_owned()).or_insert(0) += 1;
                if !matches!(r, HoldReason::WaitingForPolicy) {
                    // Chunks predicted before the fault are stale once it clears.
                    self.scheduler.clear();
                    self.last_target = None;
                }
            }
        }
        self.hold = reason;
    }

    /// First half of a tick: runs the watchdog and says whether the harness should send an
    /// observation to the policy now (for the returned policy step). The harness calls
    /// [`Runtime::inference_started`] when it does.
    pub fn poll(&mut self, now_s: f64, sensors: &Sensors) -> Option<Request> {
        let step = self.step_at(now_s);
        self.scheduler.prune(step);
        let fault = self.watchdog(now_s, sensors);
        // Failing inferences hold the robot but do not stop new requests: the next one may
        // succeed (the server is back).
        let retry = matches!(fault, Some(HoldReason::InferenceFailing { .. }));
        let faulted = fault.is_some();
        if faulted {
            self.set_hold(fault);
        } else if self
            .hold
            .as_ref()
            .is_some_and(|h| !matches!(h, HoldReason::WaitingForPolicy))
        {
            // The fault cleared: keep holding until a chunk from fresh data arrives.
            self.hold = Some(HoldReason::WaitingForPolicy);
        }
        // A stalled inference does not stop new requests from being refused: one at a time.
        if self.in_flight.is_some() || self.estop || self.policy_failed.is_some() {
            return None;
        }
        let data_ok = !faulted || retry;
        if !data_ok || !self.scheduler.wants_chunk(step) {
            return None;
        }
        // The observation's stamps must agree within the tolerance.
        let mut stamps: Vec<f64> = sensors.joint_state_stamp.into_iter().collect();
        for cam in &self.cfg.cameras {
            if let Some((_, Some(s))) = sensors.camera_stamps.iter().find(|(n, _)| n == cam) {
                stamps.push(*s);
            }
        }
        let spread = stamps.iter().cloned().fold(f64::NEG_INFINITY, f64::max)
            - stamps.iter().cloned().fold(f64::INFINITY, f64::min);
        if stamps.len() > 1 && spread > self.cfg.sync_tolerance_s {
            self.stats.unsynced_observations += 1;
            return None;
        }
        Some(Request { step })
    }

    /// The harness sent the observation of `step` to the policy at `now_s`.
    pub fn inference_started(&mut self, step: u64, now_s: f64) {
        self.in_flight = Some((step, now_s));
    }

    /// A chunk arrived for the observation of policy step `step`; `q_observed` are the joint
    /// positions in that observation (the reference of delta actions).
    pub fn chunk_ready(&mut self, now_s: f64, step: u64, chunk: &ActionChunk, q_observed: &[f64]) {
        self.in_flight = None;
        self.failing.0 = 0;
        self.stats.chunks += 1;
        let kind = chunk.kind.unwrap_or(self.cfg.action_kind);
        let decoder = ActionDecoder::new(&self.robot, kind);
        let mut reference = q_observed.to_vec();
        let mut targets = Vec::with_capacity(chunk.actions.len());
        for a in &chunk.actions {
            match decoder.decode(a, &reference) {
                Ok(t) => {
                    // Deltas accumulate along the chunk; absolute positions stand alone.
                    if kind != ActionKind::JointPosition {
                        reference = t.q.clone();
                    }
                    targets.push(t.q);
                }
                Err(_) => {
                    self.stats.undecodable_actions += 1;
                    break;
                }
            }
        }
        if targets.is_empty() {
            return;
        }
        let now_step = self.step_at(now_s);
        self.scheduler.insert(step, targets, now_step);
        if matches!(
            self.hold,
            Some(HoldReason::WaitingForPolicy) | Some(HoldReason::InferenceStalled { .. })
        ) {
            self.hold = None;
        }
    }

    /// The inference for the pending request failed. `fatal`: the policy cannot be used again
    /// (it panicked or its thread ended); the robot then holds for good.
    pub fn inference_failed(&mut self, error: String, fatal: bool) {
        self.in_flight = None;
        self.stats.inference_errors += 1;
        self.failing.0 = self.failing.0.saturating_add(1);
        self.failing.1.clone_from(&error);
        if fatal && self.policy_failed.is_none() {
            // The first cause is the one worth reporting.
            self.policy_failed = Some(error);
        }
    }

    /// Second half of a tick: the command to send at `now_s` (always within the limits).
    pub fn command(&mut self, now_s: f64) -> (Vec<f64>, Interventions) {
        let step = self.step_at(now_s);
        let target = if self
            .hold
            .as_ref()
            .is_some_and(|h| !matches!(h, HoldReason::WaitingForPolicy))
        {
            None
        } else {
            match self.scheduler.target(step) {
                Some(t) => {
                    if matches!(self.hold, Some(HoldReason::WaitingForPolicy)) {
                        self.hold = None;
                    }
                    let out = match (self.cfg.interpolation, &self.last_target) {
                        (Interpolation::Linear, Some(prev)) if prev.len() == t.len() => {
                            let prev_step_target = self
                                .scheduler
                                .target(step.saturating_sub(1))
                                .unwrap_or_else(|| prev.clone());
                            let frac =
                                (now_s * self.cfg.policy_rate_hz - step as f64).clamp(0.0, 1.0);
                            prev_step_target
                                .iter()
                                .zip(&t)
                                .map(|(a, b)| a + (b - a) * frac)
                                .collect()
                        }
                        _ => t.clone(),
                    };
                    self.last_target = Some(t);
                    Some(out)
                }
                None => {
                    // Between chunks (sync mode) or before the first: hold the last target.
                    if self.hold.is_none() && self.last_target.is_none() {
                        self.set_hold(Some(HoldReason::WaitingForPolicy));
                    }
                    self.last_target.clone()
                }
            }
        };
        if self.hold.is_some() {
            self.stats.hold_commands += 1;
        }
        self.stats.commands += 1;
        let out = self.safety.filter(target.as_deref());
        self.jerk.push(&out.0);
        out
    }

    /// RMS jerk of the commands sent so far (third difference at the command rate), the mean
    /// over joints, rad/s³ (m/s³ for prismatic joints).
    pub fn rms_jerk(&self) -> f64 {
        self.jerk.rms()
    }

    /// The targets the timeline holds for steps `from..to`, as far as it covers them: what the
    /// robot will execute meanwhile (for a request made at `from` whose chunk arrives at `to`,
    /// the prefix a real-time-chunking policy would be conditioned on).
    pub fn planned(&self, from: u64, to: u64) -> Vec<Vec<f64>> {
        (from..to).map_while(|s| self.scheduler.target(s)).collect()
    }
}
