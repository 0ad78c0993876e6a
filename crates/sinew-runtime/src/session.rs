//! The one control loop: every mode of Sinew (a robot on the bus, the simulator in lockstep,
//! evaluation, replay through a policy, data collection) runs through [`Session`].
//!
//! Each tick the session reads the robot ([`RobotIo`]), hands what arrived to the taps,
//! asks the [`Runtime`] whether to call the policy, builds the observation, collects chunks
//! from the [`Inference`], sends the runtime's safe command back to the robot, and reports
//! holds and safety interventions as [`Event`]s. Between ticks it waits on the wall clock (a
//! real-time robot) or advances the robot by one command period (a driven one: the simulator
//! in lockstep, a recording).
//!
//! Taps ([`Tap`]) see everything the loop saw and did: the MCAP recorder, the rerun stream and
//! dataset writers are taps. On a real-time robot they must not block (hand work to a thread).

use std::collections::{BTreeMap, VecDeque};
use std::time::Instant;

use sinew_core::events::{Event, Scene};
use sinew_core::robot_io::{
    joints_in_order, seconds_since, CameraFrame, OperatorCommand, RobotIo, RobotIoError, Timing,
};
use sinew_core::{ActionChunk, ActionKind, Observation, Privileged};
use sinew_msgs::{Header, Image, JointState, JointTrajectory, JointTrajectoryPoint, Time};
use sinew_robot::RobotDescription;

use crate::control::{hold_kind, HoldReason, Runtime, RuntimeConfig, RuntimeStats, Sensors};
use crate::latency::LatencySampler;
use crate::safety::{SafetyError, SafetyStats};
use crate::telemetry::LoopStats;
use crate::worker::{Inference, Job, Outcome};

/// What the loop saw or did, handed to the taps.
#[derive(Debug, Clone, Copy)]
pub enum Record<'a> {
    /// A new joint state from the robot.
    JointState(&'a JointState),
    /// A new camera frame.
    Frame {
        /// The camera.
        camera: &'a str,
        /// Colour and depth.
        frame: &'a CameraFrame,
    },
    /// The instruction (at the start and whenever it changes).
    Instruction(&'a str),
    /// The privileged scene, once per policy step (simulators).
    Scene(&'a Scene),
    /// An event: policy steps, inferences, holds, safety interventions, the outcome.
    Event(&'a Event),
    /// A chunk as the policy returned it (its own action space).
    Chunk(&'a ActionChunk),
    /// The command sent to the robot.
    Command(&'a JointTrajectory),
}

/// One policy step, for taps that collect datasets: its observation (joint positions,
/// instruction, privileged state; images only when the policy was asked), the chunk computed
/// from it when the policy answered within the tick (always, inline), and the robot's cameras.
pub struct StepRecord<'a> {
    /// The observation.
    pub observation: &'a Observation,
    /// The chunk for this step, when the policy was asked and answered within the tick.
    pub chunk: Option<&'a ActionChunk>,
    /// The robot's cameras (a simulator renders on demand).
    pub frames: &'a mut dyn FrameSource,
}

impl std::fmt::Debug for StepRecord<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StepRecord")
            .field("step", &self.observation.step)
            .field("chunk", &self.chunk.is_some())
            .finish()
    }
}

/// Camera frames on demand.
pub trait FrameSource {
    /// The newest frame of `camera`.
    fn frame(&mut self, camera: &str) -> Result<Option<CameraFrame>, RobotIoError>;
}

struct RobotFrames<'a>(&'a mut dyn RobotIo);

impl FrameSource for RobotFrames<'_> {
    fn frame(&mut self, camera: &str) -> Result<Option<CameraFrame>, RobotIoError> {
        Ok(self.0.frame(camera)?.map(|f| f.value))
    }
}

/// Something that watches the loop: a recorder, a viewer, a dataset writer, a console.
pub trait Tap {
    /// What the loop saw or did, at `log_time_ns` (ns since the Unix epoch on a real-time
    /// robot, since the start on a driven one). Real-time loops call it on the control thread:
    /// it must not block.
    fn record(&mut self, log_time_ns: u64, record: Record<'_>);

    /// A policy step began (after the policy answered, inline). Errors end the session.
    fn step(&mut self, step: StepRecord<'_>) -> Result<(), String> {
        let _ = step;
        Ok(())
    }

    /// The loop's telemetry (real-time loops, periodically).
    fn telemetry(&mut self, telemetry: &Telemetry) {
        let _ = telemetry;
    }
}

/// Settings of a session beyond the runtime's.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// The runtime's settings (rates, execution, deadlines, the policy's cameras).
    pub runtime: RuntimeConfig,
    /// Cameras whose new frames are handed to the taps (besides being read by the policy).
    pub tap_cameras: Vec<String>,
    /// The instruction while the robot gives none.
    pub instruction: String,
    /// End at this policy step (an episode's step limit).
    pub step_limit: Option<u64>,
    /// End when the robot's task succeeds (checked at each policy step).
    pub stop_on_success: bool,
    /// End after this long, s on the loop's clock (a real-time robot is brought to rest first).
    pub duration_s: Option<f64>,
    /// Longest a real-time stop may take to bring the robot to rest, s.
    pub stop_timeout_s: f64,
    /// Telemetry period of real-time loops, s.
    pub telemetry_period_s: f64,
    /// Simulated inference latency (driven robots with an inline policy; ignored in real
    /// time, where latency is real): each answer is held back until its drawn delay has passed
    /// in simulated time.
    pub latency: Option<LatencySampler>,
    /// Real-time chunking: each chunk is asked for conditioned on the actions the robot will
    /// execute while it is computed (at most this many; the policy's `prefix_capacity`).
    /// `None`: chunks are asked for alone.
    pub rtc: Option<usize>,
}

impl SessionConfig {
    /// Defaults around the runtime's settings.
    pub fn new(runtime: RuntimeConfig) -> Self {
        Self {
            runtime,
            tap_cameras: Vec::new(),
            instruction: String::new(),
            step_limit: None,
            stop_on_success: false,
            duration_s: None,
            stop_timeout_s: 3.0,
            telemetry_period_s: 1.0,
            latency: None,
            rtc: None,
        }
    }
}

/// Why a session failed.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The robot could not be read or commanded.
    #[error(transparent)]
    Robot(#[from] RobotIoError),
    /// The runtime could not start (the robot is outside its limits, ...).
    #[error("starting the runtime: {0}")]
    Start(#[from] SafetyError),
    /// A tap failed.
    #[error("{0}")]
    Tap(String),
    /// The settings cannot work together.
    #[error("{0}")]
    Config(String),
}

/// How a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum End {
    /// The robot's task succeeded.
    Success,
    /// The step limit was reached.
    StepLimit,
    /// A stop was asked for (or the duration passed) and the robot came to rest.
    Stopped,
    /// A driven robot has nothing more (a recording's end).
    RobotEnded,
}

/// What a tick decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TickResult {
    /// The loop goes on.
    Continue,
    /// The session is over.
    End(End),
}

/// The loop's telemetry: timing, counters, holds, the robot's input streams.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Telemetry {
    /// From each e-stop message's arrival to the first hold command sent, ms.
    pub estop_to_hold_ms: Vec<f64>,
    /// Period between ticks, ms (p50).
    pub loop_period_p50_ms: f64,
    /// p99.
    pub loop_period_p99_ms: f64,
    /// The loop's own work per tick (observation in, command out; model excluded), ms (p50).
    pub loop_work_p50_ms: f64,
    /// p99.
    pub loop_work_p99_ms: f64,
    /// Inference wall time, ms (p50).
    pub inference_p50_ms: f64,
    /// p99.
    pub inference_p99_ms: f64,
    /// Why the robot holds now, if it does.
    pub holding: Option<String>,
    /// Whether the e-stop is latched.
    pub estop_latched: bool,
    /// E-stop messages received.
    pub estop_events: u64,
    /// Commands sent.
    pub commands: u64,
    /// Commands sent while holding.
    pub hold_commands: u64,
    /// Times a hold reason started, by name.
    pub holds: BTreeMap<String, u64>,
    /// Chunks received.
    pub chunks: u64,
    /// Chunk entries that arrived too late to be used.
    pub late_steps: u64,
    /// Inference errors.
    pub inference_errors: u64,
    /// Observations skipped because their stamps were too far apart.
    pub unsynced_observations: u64,
    /// Chunk entries the decoder could not use.
    pub undecodable_actions: u64,
    /// Joint states that did not name every joint of the robot.
    pub unusable_joint_states: u64,
    /// Safety filter counters.
    pub safety: SafetyStats,
    /// The robot's input streams.
    pub subscribers: BTreeMap<String, sinew_core::robot_io::LinkStats>,
}

/// What a finished session reports.
#[derive(Debug, Clone)]
pub struct SessionReport {
    /// How it ended.
    pub end: End,
    /// The last policy step.
    pub steps: u64,
    /// Whether the robot's task succeeded (`None`: the robot has no task).
    pub success: Option<bool>,
    /// The runtime's counters.
    pub stats: RuntimeStats,
    /// Requests handed to the policy.
    pub inferences: u64,
    /// Mean wall time of the inferences that returned, ms.
    pub mean_inference_ms: f64,
    /// The loop's clock at the end, s.
    pub end_s: f64,
    /// Wall time the session took, s.
    pub wall_s: f64,
    /// Telemetry at the end.
    pub telemetry: Telemetry,
    /// The instruction at the end.
    pub instruction: String,
    /// RMS jerk of the commands (third difference at the command rate), rad/s³ (m/s³ for
    /// prismatic joints), the mean over joints.
    pub rms_jerk: f64,
}

/// A hold under way: from the first tick the robot stops following the policy to the first
/// tick it follows it again. Its reason is the one it started with.
#[derive(Debug, Clone)]
struct Holding {
    kind: &'static str,
    since_s: f64,
}

/// The loop.
pub struct Session {
    cfg: SessionConfig,
    rt: Runtime,
    inference: Inference,
    joints: Vec<String>,
    base_link: String,
    period_s: f64,
    /// The time base of log times: the Unix time of the robot's epoch (real time).
    epoch_unix_ns: Option<u64>,
    start: Instant,
    last_step: Option<u64>,
    last_joint_stamp: Option<f64>,
    last_frame_stamps: Vec<Option<f64>>,
    tapped_instruction: Option<String>,
    instruction: String,
    holding: Option<Holding>,
    last_safety: SafetyStats,
    sensors: Sensors,
    loop_stats: LoopStats,
    last_tick: Option<Instant>,
    inferences: u64,
    inference_ms_sum: f64,
    inference_ms_n: u64,
    unusable_joint_states: u64,
    estop_events: u64,
    estop_pending: Option<Instant>,
    estop_to_hold_ms: Vec<f64>,
    stopping_since: Option<f64>,
    next_telemetry_s: f64,
    next_tick: Option<Instant>,
    woke_early: bool,
    last_now_s: f64,
    success: Option<bool>,
    /// Simulated latency (driven robots, inline policy).
    latency: Option<LatencySampler>,
    /// The in-flight request's simulated delay: when it was made and when its answer is due, s.
    delay: Option<(f64, f64)>,
    /// Answers held back: when each is due (s), its simulated delay (ms), the answer.
    delayed: VecDeque<(f64, Option<f64>, Outcome)>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("runtime", &self.rt)
            .field("last_step", &self.last_step)
            .finish()
    }
}

fn log_ns(epoch_unix_ns: Option<u64>, t_s: f64) -> u64 {
    let ns = (t_s * 1e9).round().max(0.0) as u64;
    epoch_unix_ns.map_or(ns, |e| e + ns)
}

fn emit(taps: &mut [&mut dyn Tap], ns: u64, r: Record<'_>) {
    for t in taps.iter_mut() {
        t.record(ns, r);
    }
}

/// New safety interventions since `last`, by kind; updates `last`.
pub fn safety_delta(last: &mut SafetyStats, now: &SafetyStats) -> BTreeMap<String, u64> {
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

impl Session {
    /// A session for `robot` (described by `desc`), starting at rest where the robot's newest
    /// joint state says it is (the caller waits for the first one on a real-time robot).
    pub fn new(
        desc: &RobotDescription,
        cfg: SessionConfig,
        inference: Inference,
        robot: &mut dyn RobotIo,
    ) -> Result<Self, SessionError> {
        robot.refresh()?;
        let joints: Vec<String> = desc.joint_names();
        let state = robot
            .joint_state()
            .ok_or_else(|| RobotIoError::JointState("no joint state received yet".into()))?;
        let (q_start, _) = joints_in_order(&state.value, &joints)?;
        let rt = Runtime::new(cfg.runtime.clone(), desc, &q_start)?;
        let epoch_unix_ns = match robot.timing() {
            Timing::RealTime { epoch_unix_ns, .. } => Some(epoch_unix_ns),
            Timing::Driven { .. } => None,
        };
        // Real-time loops and threaded policies have latency of their own.
        let latency = cfg
            .latency
            .clone()
            .filter(|_| epoch_unix_ns.is_none() && !inference.is_threaded());
        let sensors = Sensors {
            joint_state_stamp: None,
            camera_stamps: cfg
                .runtime
                .cameras
                .iter()
                .map(|c| (c.clone(), None))
                .collect(),
        };
        Ok(Self {
            period_s: 1.0 / cfg.runtime.command_rate_hz,
            last_frame_stamps: vec![None; cfg.tap_cameras.len()],
            instruction: cfg.instruction.clone(),
            cfg,
            rt,
            inference,
            joints,
            base_link: desc.config.base_link.clone(),
            epoch_unix_ns,
            start: Instant::now(),
            last_step: None,
            last_joint_stamp: None,
            tapped_instruction: None,
            holding: None,
            last_safety: SafetyStats::default(),
            sensors,
            loop_stats: LoopStats::default(),
            last_tick: None,
            inferences: 0,
            inference_ms_sum: 0.0,
            inference_ms_n: 0,
            unusable_joint_states: 0,
            estop_events: 0,
            estop_pending: None,
            estop_to_hold_ms: Vec::new(),
            stopping_since: None,
            next_telemetry_s: 0.0,
            next_tick: None,
            woke_early: false,
            last_now_s: 0.0,
            success: None,
            latency,
            delay: None,
            delayed: VecDeque::new(),
        })
    }

    /// The runtime (its counters, its hold reason).
    pub fn runtime(&self) -> &Runtime {
        &self.rt
    }

    /// Latches the e-stop: the robot holds until it is released.
    pub fn engage_estop(&mut self) {
        self.rt.engage_estop();
    }

    /// The instruction in use.
    pub fn instruction(&self) -> &str {
        &self.instruction
    }

    fn now_s(timing: &Timing) -> f64 {
        match timing {
            Timing::RealTime { epoch, .. } => seconds_since(*epoch, Instant::now()),
            Timing::Driven { now_s } => *now_s,
        }
    }

    /// Runs ticks until the session ends: the robot's task succeeds, the step limit or the
    /// duration is reached, the robot has nothing more, or `stop` returns true (a real-time
    /// robot is then brought to rest before the session ends).
    pub fn run(
        &mut self,
        robot: &mut dyn RobotIo,
        taps: &mut [&mut dyn Tap],
        stop: &dyn Fn() -> bool,
    ) -> Result<SessionReport, SessionError> {
        let end = loop {
            if stop() && self.stopping_since.is_none() {
                self.begin_stop(self.last_now_s);
            }
            if let TickResult::End(end) = self.tick(robot, taps)? {
                break end;
            }
            match robot.timing() {
                Timing::RealTime { epoch, .. } => self.pace(robot, epoch),
                Timing::Driven { .. } => {
                    if !robot.advance(self.period_s)? {
                        break End::RobotEnded;
                    }
                }
            }
        };
        Ok(self.finish(end, robot, taps))
    }

    /// Waits for the next tick on the wall clock (deadline-based, so the rate does not drift);
    /// an operator command ends the wait early so that a hold goes out at once.
    fn pace(&mut self, robot: &mut dyn RobotIo, epoch: Instant) {
        let period = std::time::Duration::from_secs_f64(self.period_s);
        let mut next = self.next_tick.unwrap_or(epoch);
        if !self.woke_early {
            next += period;
        }
        let now = Instant::now();
        if now > next + period * 10 {
            next = now; // far behind (the process was paused): start again from now
        }
        self.next_tick = Some(next);
        self.woke_early = next > now && robot.wait_until(next);
    }

    fn begin_stop(&mut self, now: f64) {
        self.stopping_since = Some(now);
        self.rt.engage_estop();
    }

    /// One control period: read the robot, decide, command it. Never waits on inference in
    /// real time; calls the policy inline when it is inline.
    pub fn tick(
        &mut self,
        robot: &mut dyn RobotIo,
        taps: &mut [&mut dyn Tap],
    ) -> Result<TickResult, SessionError> {
        let tick_start = Instant::now();
        if let Some(prev) = self.last_tick {
            self.loop_stats
                .period_ms
                .push((tick_start - prev).as_secs_f64() * 1e3);
        }
        self.last_tick = Some(tick_start);
        let timing = robot.timing();
        let now = Self::now_s(&timing);
        self.last_now_s = now;
        robot.refresh()?;
        if let Some(end) = self.stopping(&timing, now) {
            return Ok(end);
        }
        self.take_operator_input(robot);
        let step = self.rt.step_at(now);
        let new_step = self.last_step != Some(step);
        let mut privileged = self.tap_arrivals(robot, taps, now, step, new_step)?;
        if new_step {
            self.last_step = Some(step);
            if let Some(end) = self.episode_end(robot, taps, now, step)? {
                return Ok(end);
            }
        }
        let observation = self.request(robot, now, &mut privileged, !taps.is_empty())?;
        let answered = self.collect(&timing, now, step, taps);
        if new_step && !taps.is_empty() {
            let obs = match observation {
                Some(o) => o,
                None => self.bare_observation(robot, step, now, privileged)?,
            };
            let mut frames = RobotFrames(robot);
            for t in taps.iter_mut() {
                t.step(StepRecord {
                    observation: &obs,
                    chunk: answered.as_ref(),
                    frames: &mut frames,
                })
                .map_err(SessionError::Tap)?;
            }
        }
        self.send_command(robot, &timing, now, taps)?;
        self.track_hold(now, taps);
        self.loop_stats
            .work_ms
            .push(tick_start.elapsed().as_secs_f64() * 1e3);
        if let Timing::RealTime { .. } = timing {
            if now >= self.next_telemetry_s {
                self.next_telemetry_s = now + self.cfg.telemetry_period_s;
                let t = self.telemetry(robot);
                for tap in taps.iter_mut() {
                    tap.telemetry(&t);
                }
            }
        }
        Ok(TickResult::Continue)
    }

    /// Stopping: the duration, or a stop asked for; hold, brake to rest, then end (a driven
    /// robot ends at once).
    fn stopping(&mut self, timing: &Timing, now: f64) -> Option<TickResult> {
        if self.stopping_since.is_none() && self.cfg.duration_s.is_some_and(|d| now >= d) {
            if matches!(timing, Timing::Driven { .. }) {
                return Some(TickResult::End(End::Stopped));
            }
            self.begin_stop(now);
        }
        let since = self.stopping_since?;
        let at_rest = self.rt.hold_reason().is_some()
            && self.rt.commands_sent() > 0
            && self.rt.last_velocity().iter().all(|v| v.abs() < 1e-9);
        (at_rest || now - since > self.cfg.stop_timeout_s).then_some(TickResult::End(End::Stopped))
    }

    /// E-stop commands and the instruction.
    fn take_operator_input(&mut self, robot: &mut dyn RobotIo) {
        for c in robot.operator_commands() {
            self.estop_events += 1;
            match c {
                OperatorCommand::EngageEstop { received } => {
                    self.rt.engage_estop();
                    self.estop_pending = Some(received);
                }
                OperatorCommand::ReleaseEstop if self.stopping_since.is_none() => {
                    self.rt.release_estop()
                }
                OperatorCommand::ReleaseEstop => {}
            }
        }
        if let Some(i) = robot.instruction() {
            if i != self.instruction {
                self.instruction = i.to_owned();
            }
        }
    }

    /// Hands what arrived to the taps: a new joint state, the instruction when it changed, at
    /// a new policy step its event and the privileged scene (returned), new camera frames.
    fn tap_arrivals(
        &mut self,
        robot: &mut dyn RobotIo,
        taps: &mut [&mut dyn Tap],
        now: f64,
        step: u64,
        new_step: bool,
    ) -> Result<Option<Privileged>, SessionError> {
        let epoch = self.epoch_unix_ns;
        let ns = |t: f64| log_ns(epoch, t);
        if let Some(js) = robot.joint_state() {
            if self.last_joint_stamp != Some(js.stamp_s) {
                self.last_joint_stamp = Some(js.stamp_s);
                emit(taps, ns(js.stamp_s), Record::JointState(&js.value));
            }
        }
        if self.tapped_instruction.as_deref() != Some(self.instruction.as_str()) {
            emit(taps, ns(now), Record::Instruction(&self.instruction));
            self.tapped_instruction = Some(self.instruction.clone());
        }
        let mut privileged = None;
        // The scene is read for the taps only; a request reads it when it needs it.
        if new_step && !taps.is_empty() {
            emit(taps, ns(now), Record::Event(&Event::Step { step }));
            privileged = robot.privileged()?;
            if let Some(p) = &privileged {
                emit(taps, ns(now), Record::Scene(&p.scene));
            }
        }
        if !taps.is_empty() {
            for (i, cam) in self.cfg.tap_cameras.iter().enumerate() {
                let stamp = robot.frame_stamp(cam);
                if stamp.is_some() && stamp != self.last_frame_stamps[i] {
                    if let Some(f) = robot.frame(cam)? {
                        self.last_frame_stamps[i] = Some(f.stamp_s);
                        let frame = Record::Frame {
                            camera: cam,
                            frame: &f.value,
                        };
                        emit(taps, ns(f.stamp_s), frame);
                    }
                }
            }
        }
        Ok(privileged)
    }

    /// At a new policy step: the task's success and the step limit.
    fn episode_end(
        &mut self,
        robot: &mut dyn RobotIo,
        taps: &mut [&mut dyn Tap],
        now: f64,
        step: u64,
    ) -> Result<Option<TickResult>, SessionError> {
        if self.cfg.stop_on_success {
            if let Some(ok) = robot.task_success()? {
                self.success = Some(ok);
                if ok {
                    return Ok(Some(self.end_episode(End::Success, now, taps)));
                }
            }
        }
        if self.cfg.step_limit.is_some_and(|l| step >= l) {
            return Ok(Some(self.end_episode(End::StepLimit, now, taps)));
        }
        Ok(None)
    }

    /// Asks the policy for a chunk when the runtime wants one; inline, returns the observation
    /// it was asked with when the taps want it (`keep`).
    fn request(
        &mut self,
        robot: &mut dyn RobotIo,
        now: f64,
        privileged: &mut Option<Privileged>,
        keep: bool,
    ) -> Result<Option<Observation>, SessionError> {
        self.sensors.joint_state_stamp = robot.joint_state().map(|s| s.stamp_s);
        for (cam, stamp) in self.sensors.camera_stamps.iter_mut() {
            *stamp = robot.frame_stamp(cam);
        }
        let Some(req) = self.rt.poll(now, &self.sensors) else {
            return Ok(None);
        };
        if privileged.is_none() {
            *privileged = robot.privileged()?;
        }
        let Some(obs) = self.observation(robot, req.step, now, privileged.clone())? else {
            return Ok(None);
        };
        // Inline, the policy runs now; its observation is kept for the taps.
        let keep = (keep && !self.inference.is_threaded()).then(|| obs.clone());
        // Drawn before the policy runs: real-time chunking needs to know when the answer
        // will be in.
        let delay_s = self.latency.as_mut().map(|l| l.next_s());
        let committed = match self.cfg.rtc {
            Some(cap) if cap > 0 => self.committed(req.step, now, delay_s, cap, &obs)?,
            _ => Vec::new(),
        };
        let job = Job {
            step: req.step,
            observation: obs,
            committed,
        };
        if !self.inference.submit(job) {
            return Ok(None);
        }
        if let Some(d) = delay_s {
            self.delay = Some((now, now + d));
        }
        self.rt.inference_started(req.step, now);
        self.inferences += 1;
        Ok(keep)
    }

    /// Real-time chunking: the actions the robot executes from `step` until the chunk asked
    /// for now arrives (at most `cap`), in the policy's action space. The arrival is `now` plus
    /// the simulated delay, or in real time plus the median recent inference wall time.
    fn committed(
        &self,
        step: u64,
        now: f64,
        delay_s: Option<f64>,
        cap: usize,
        obs: &Observation,
    ) -> Result<Vec<Vec<f64>>, SessionError> {
        let expected_s = delay_s.unwrap_or_else(|| {
            // Real time: the median of the recent inferences' wall times.
            let p50 = self.loop_stats.inference_ms.quantile(0.5);
            if self.inference.is_threaded() && p50.is_finite() {
                p50 / 1e3
            } else {
                0.0
            }
        });
        let arrives = self.rt.step_at(now + expected_s);
        let k = (arrives.saturating_sub(step) as usize).min(cap);
        let targets = self.rt.planned(step, step + k as u64);
        match self.rt.config().action_kind {
            ActionKind::JointPosition => Ok(targets),
            ActionKind::JointDelta => {
                // Each action is the target minus the one before; the first, minus the
                // observed positions (as the chunk is decoded).
                let mut prev = obs.joint_positions.clone();
                Ok(targets
                    .into_iter()
                    .map(|t| {
                        let d = t.iter().zip(&prev).map(|(a, b)| a - b).collect();
                        prev = t;
                        d
                    })
                    .collect())
            }
            ActionKind::EeDelta => Err(SessionError::Config(
                "real-time chunking needs joint-space actions (joint_position or joint_delta)"
                    .into(),
            )),
        }
    }

    /// Takes what the policy returned; the chunk for `step` (answered within the tick) back.
    /// With simulated latency an answer is held until the first tick at or after its due time,
    /// and only then reaches the runtime (and the taps).
    fn collect(
        &mut self,
        timing: &Timing,
        now: f64,
        step: u64,
        taps: &mut [&mut dyn Tap],
    ) -> Option<ActionChunk> {
        while let Some(o) = self.inference.poll() {
            let (due, latency_ms) = match self.delay.take() {
                Some((asked, due)) => (due, Some((due - asked) * 1e3)),
                None => (f64::NEG_INFINITY, None),
            };
            self.delayed.push_back((due, latency_ms, o));
        }
        let mut answered = None;
        // 1 ns of slack: due times are sums of float seconds, ticks whole nanoseconds.
        while self.delayed.front().is_some_and(|d| d.0 <= now + 1e-9) {
            let Some((_, latency_ms, o)) = self.delayed.pop_front() else {
                break;
            };
            if let Some(c) = self.take_outcome(o, latency_ms, timing, now, step, taps) {
                answered = Some(c);
            }
        }
        answered
    }

    /// Hands one answer of the policy to the runtime and the taps; the chunk back when it is
    /// the one for `step`.
    fn take_outcome(
        &mut self,
        o: Outcome,
        latency_ms: Option<f64>,
        timing: &Timing,
        now: f64,
        step: u64,
        taps: &mut [&mut dyn Tap],
    ) -> Option<ActionChunk> {
        match o {
            Outcome::Chunk {
                step: s,
                chunk,
                wall_ms,
                q_observed,
            } => {
                self.loop_stats.inference_ms.push(wall_ms);
                self.inference_ms_sum += wall_ms;
                self.inference_ms_n += 1;
                for w in &chunk.warnings {
                    tracing::warn!("policy: {w}");
                }
                let arrival = match timing {
                    Timing::RealTime { epoch, .. } => seconds_since(*epoch, Instant::now()),
                    Timing::Driven { now_s } => *now_s,
                };
                let at = log_ns(self.epoch_unix_ns, now);
                let event = Event::Inference {
                    step: s,
                    tokens: chunk.tokens.clone(),
                    timings: chunk.timings,
                    wall_ms,
                    warnings: chunk.warnings.clone(),
                    latency_ms,
                };
                emit(taps, at, Record::Event(&event));
                emit(taps, at, Record::Chunk(&chunk));
                self.rt.chunk_ready(arrival, s, &chunk, &q_observed);
                (s == step).then_some(chunk)
            }
            Outcome::Error { step: s, error } => {
                // The first failures of a run of them, then one in a hundred.
                let n = self.rt.stats().inference_errors + 1;
                if n <= 3 || n.is_multiple_of(100) {
                    tracing::warn!("inference for step {s} failed ({n} so far): {error}");
                }
                self.rt.inference_failed(error, false);
                None
            }
            Outcome::Dead { error } => {
                tracing::error!("{error}; holding");
                self.rt.inference_failed(error, true);
                None
            }
        }
    }

    /// The runtime's command (always within the limits) to the robot and the taps, with the
    /// safety interventions it took.
    fn send_command(
        &mut self,
        robot: &mut dyn RobotIo,
        timing: &Timing,
        now: f64,
        taps: &mut [&mut dyn Tap],
    ) -> Result<(), SessionError> {
        let (q_cmd, _) = self.rt.command(now);
        let stamp = match timing {
            Timing::RealTime { .. } => Time::now(),
            Timing::Driven { now_s } => Time::from_nanos((now_s * 1e9).round() as i64),
        };
        let msg = JointTrajectory {
            header: Header::new(stamp, self.base_link.clone()),
            joint_names: self.joints.clone(),
            points: vec![JointTrajectoryPoint {
                positions: q_cmd,
                ..Default::default()
            }],
        };
        robot.send(&msg)?;
        let at = log_ns(self.epoch_unix_ns, now);
        emit(taps, at, Record::Command(&msg));
        let kinds = safety_delta(&mut self.last_safety, &self.rt.safety_stats());
        if !kinds.is_empty() {
            emit(taps, at, Record::Event(&Event::Intervention { kinds }));
        }
        if let Some(t) = self.estop_pending.take() {
            // From the e-stop message's arrival to the first hold command sent.
            self.estop_to_hold_ms.push(t.elapsed().as_secs_f64() * 1e3);
        }
        Ok(())
    }

    /// One event when a hold starts (with its reason) and one when it ends (with its
    /// duration): a hold is every tick from the first that does not follow the policy to the
    /// first that does again, whatever the reasons in between.
    fn track_hold(&mut self, now: f64, taps: &mut [&mut dyn Tap]) {
        let at = log_ns(self.epoch_unix_ns, now);
        match (self.rt.hold_reason(), &self.holding) {
            (Some(r), None) => {
                let kind = hold_kind(r);
                self.holding = Some(Holding { kind, since_s: now });
                let e = Event::Hold {
                    reason: r.to_string(),
                    kind: kind.to_owned(),
                };
                emit(taps, at, Record::Event(&e));
            }
            // Held for one reason, now for another (stale data, then an e-stop): the operator
            // and the recording see the new reason; the hold keeps its start. Waiting for the
            // policy after a fault clears is the tail of the same hold, not a new reason.
            (Some(r), Some(h))
                if hold_kind(r) != h.kind && !matches!(r, HoldReason::WaitingForPolicy) =>
            {
                let kind = hold_kind(r);
                self.holding = Some(Holding {
                    kind,
                    since_s: h.since_s,
                });
                let e = Event::Hold {
                    reason: r.to_string(),
                    kind: kind.to_owned(),
                };
                emit(taps, at, Record::Event(&e));
            }
            (None, Some(h)) => {
                let e = Event::HoldEnded {
                    kind: h.kind.to_owned(),
                    duration_s: now - h.since_s,
                };
                self.holding = None;
                emit(taps, at, Record::Event(&e));
            }
            _ => {}
        }
    }

    fn end_episode(&mut self, end: End, now: f64, taps: &mut [&mut dyn Tap]) -> TickResult {
        let e = Event::Outcome {
            success: end == End::Success,
            steps: self.last_step.unwrap_or(0),
        };
        emit(taps, log_ns(self.epoch_unix_ns, now), Record::Event(&e));
        TickResult::End(end)
    }

    /// The observation of a step without images (no request was made at it).
    fn bare_observation(
        &self,
        robot: &mut dyn RobotIo,
        step: u64,
        now: f64,
        privileged: Option<Privileged>,
    ) -> Result<Observation, SessionError> {
        let (q, qd) = match robot.joint_state() {
            Some(js) => joints_in_order(&js.value, &self.joints).unwrap_or_default(),
            None => Default::default(),
        };
        Ok(self.observation_of(BTreeMap::new(), (q, qd), now, step, privileged))
    }

    fn observation_of(
        &self,
        images: BTreeMap<String, Image>,
        (joint_positions, joint_velocities): (Vec<f64>, Vec<f64>),
        stamp_s: f64,
        step: u64,
        privileged: Option<Privileged>,
    ) -> Observation {
        Observation {
            images,
            joint_positions,
            joint_velocities,
            instruction: self.instruction.clone(),
            stamp_s,
            step,
            privileged,
        }
    }

    /// The observation for a request: the newest joint state and the policy's cameras. `None`
    /// (counted) when the joint state does not name every joint or a frame is missing.
    fn observation(
        &mut self,
        robot: &mut dyn RobotIo,
        step: u64,
        now: f64,
        privileged: Option<Privileged>,
    ) -> Result<Option<Observation>, SessionError> {
        let Some(js) = robot.joint_state() else {
            return Ok(None);
        };
        let joints = match joints_in_order(&js.value, &self.joints) {
            Ok(v) => v,
            Err(e) => {
                self.unusable_joint_states += 1;
                if self.unusable_joint_states == 1 {
                    tracing::warn!("{e}: the robot's joint state cannot be used");
                }
                return Ok(None);
            }
        };
        let mut images: BTreeMap<String, Image> = BTreeMap::new();
        for cam in &self.cfg.runtime.cameras {
            match robot.frame(cam)? {
                Some(f) => {
                    images.insert(cam.clone(), f.value.color);
                }
                None => return Ok(None),
            }
        }
        Ok(Some(
            self.observation_of(images, joints, now, step, privileged),
        ))
    }

    /// The loop's telemetry now.
    pub fn telemetry(&self, robot: &dyn RobotIo) -> Telemetry {
        let st = self.rt.stats();
        let l = &self.loop_stats;
        Telemetry {
            estop_to_hold_ms: self.estop_to_hold_ms.clone(),
            loop_period_p50_ms: l.period_ms.quantile(0.5),
            loop_period_p99_ms: l.period_ms.quantile(0.99),
            loop_work_p50_ms: l.work_ms.quantile(0.5),
            loop_work_p99_ms: l.work_ms.quantile(0.99),
            inference_p50_ms: l.inference_ms.quantile(0.5),
            inference_p99_ms: l.inference_ms.quantile(0.99),
            holding: self.rt.hold_reason().map(HoldReason::to_string),
            estop_latched: self.rt.estop_latched(),
            estop_events: self.estop_events,
            commands: st.commands,
            hold_commands: st.hold_commands,
            holds: st.holds,
            chunks: st.chunks,
            late_steps: st.late_steps,
            inference_errors: st.inference_errors,
            unsynced_observations: st.unsynced_observations,
            undecodable_actions: st.undecodable_actions,
            unusable_joint_states: self.unusable_joint_states,
            safety: st.safety,
            subscribers: robot.link_stats(),
        }
    }

    fn finish(
        &mut self,
        end: End,
        robot: &mut dyn RobotIo,
        taps: &mut [&mut dyn Tap],
    ) -> SessionReport {
        self.inference.shutdown();
        let telemetry = self.telemetry(robot);
        if let Timing::RealTime { .. } = robot.timing() {
            for tap in taps.iter_mut() {
                tap.telemetry(&telemetry);
            }
        }
        SessionReport {
            end,
            steps: self.last_step.unwrap_or(0),
            success: self.success,
            stats: self.rt.stats(),
            inferences: self.inferences,
            mean_inference_ms: self.inference_ms_sum / self.inference_ms_n.max(1) as f64,
            end_s: self.last_now_s,
            wall_s: self.start.elapsed().as_secs_f64(),
            telemetry,
            instruction: self.instruction.clone(),
            rms_jerk: self.rt.rms_jerk(),
        }
    }

    /// The inference back, to run the next episode with the same policy.
    pub fn into_inference(self) -> Inference {
        self.inference
    }
}
