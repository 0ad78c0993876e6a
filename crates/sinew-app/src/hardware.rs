//! Real arms: an SO-101 of Feetech servos with webcams, served on the bus like the simulator
//! (`sinew robot serve`), calibrated as LeRobot calibrates it (`sinew robot calibrate`),
//! teleoperated from a leader arm (`sinew teleop`) and recorded as LeRobotDataset episodes
//! (`sinew dataset record --teleop`).
//!
//! [`HardwareRobot`] puts an arm ([`FeetechArm`]) and its cameras ([`CameraStream`]) behind
//! one `RobotIo`, so the serving loop of [`crate::serve`] drives it exactly as it drives the
//! simulator: the same keys, the same serving-side limits, the same command timeout.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::Serialize;
use sinew_bus::{Bus, Publisher};
use sinew_camera::{CameraSpec, CameraStream, FramePayload, Output};
use sinew_core::robot_io::{
    seconds_since, CameraFrame, LinkStats, RobotIo, RobotIoError, Stamped, Timing,
};
use sinew_feetech::calibration::ArmRole;
use sinew_feetech::{
    ArmConfig, ArmStats, BusConfig, BusStats, Calibration, FeetechArm, FeetechBus,
};
use sinew_msgs::keys::RobotKeys;
use sinew_msgs::{CompressedImage, JointState, JointTrajectory};
use sinew_robot::RobotDescription;
use sinew_runtime::safety::{SafetyFilter, SafetyStats};

use crate::serve::{serve, ServeOptions, ServeReport};

/// One arm on a serial port.
#[derive(Debug, Clone)]
pub struct ArmSpec {
    /// Serial port (`/dev/ttyACM0`, or an emulator's `/dev/pts/N`).
    pub port: String,
    /// LeRobot calibration file.
    pub calibration: PathBuf,
    /// Line rate, baud.
    pub baud: u32,
}

/// Opens the arm on `spec` for `robot` (its joints and gripper range from robot.toml).
pub fn open_arm(robot: &RobotDescription, spec: &ArmSpec, role: ArmRole) -> Result<FeetechArm> {
    let calibration = Calibration::read(&spec.calibration).with_context(|| {
        format!(
            "the arm's calibration (make one with `sinew robot calibrate --port {}{}`)",
            spec.port,
            if role == ArmRole::Leader {
                " --leader"
            } else {
                ""
            }
        )
    })?;
    let bus = FeetechBus::open(
        &spec.port,
        BusConfig {
            baud: spec.baud,
            ..BusConfig::default()
        },
    )?;
    let joints = robot.joint_names();
    let gripper = robot.config.gripper.as_ref().and_then(|g| {
        robot
            .config
            .joints
            .iter()
            .find(|j| j.name == g.joint)
            .map(|j| (g.joint.clone(), j.position_min, j.position_max))
    });
    // The guard under the serving side's limits: one command period at velocity_max, with
    // headroom for the period's jitter.
    let max_step = robot
        .config
        .joints
        .iter()
        .map(|j| 1.5 * j.velocity_max / robot.config.command_rate_hz)
        .collect();
    let arm = FeetechArm::connect(
        bus,
        ArmConfig {
            joints,
            gripper,
            calibration,
            calibration_path: spec.calibration.clone(),
            torque: role == ArmRole::Follower,
            max_goal_step_rad: Some(max_step),
            base_link: robot.config.base_link.clone(),
        },
    )
    .with_context(|| format!("the arm on {}", spec.port))?;
    Ok(arm)
}

/// An arm and its cameras as one robot.
pub struct HardwareRobot {
    /// The arm.
    pub arm: FeetechArm,
    cameras: Vec<CameraStream>,
}

impl HardwareRobot {
    /// The arm with `cameras` opened.
    pub fn new(arm: FeetechArm, cameras: &[CameraSpec]) -> Result<Self> {
        let cameras = cameras
            .iter()
            .map(|c| CameraStream::open(c).with_context(|| format!("camera {}", c.name)))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { arm, cameras })
    }

    fn camera(&self, name: &str) -> Option<&CameraStream> {
        self.cameras.iter().find(|c| c.name() == name)
    }

    fn epoch(&self) -> Instant {
        match self.arm.timing() {
            Timing::RealTime { epoch, .. } => epoch,
            Timing::Driven { .. } => Instant::now(),
        }
    }

    /// The newest passed-through (compressed) frame of each camera that has one.
    pub fn compressed(&self) -> Vec<(String, u64, CompressedImage)> {
        self.cameras
            .iter()
            .filter_map(|c| match c.latest() {
                Some(f) => match f.payload {
                    FramePayload::Compressed(img) => Some((c.name().to_owned(), f.sequence, img)),
                    FramePayload::Image(_) => None,
                },
                None => None,
            })
            .collect()
    }

    /// The cameras' counters.
    pub fn camera_stats(&self) -> BTreeMap<String, sinew_camera::CameraStats> {
        self.cameras
            .iter()
            .map(|c| (c.name().to_owned(), c.stats()))
            .collect()
    }
}

impl RobotIo for HardwareRobot {
    fn timing(&self) -> Timing {
        self.arm.timing()
    }

    fn refresh(&mut self) -> Result<(), RobotIoError> {
        self.arm.refresh()
    }

    fn joint_state(&self) -> Option<&Stamped<JointState>> {
        self.arm.joint_state()
    }

    fn frame_stamp(&self, camera: &str) -> Option<f64> {
        let f = self.camera(camera)?.latest()?;
        match f.payload {
            FramePayload::Image(_) => Some(seconds_since(self.epoch(), f.captured)),
            FramePayload::Compressed(_) => None,
        }
    }

    fn frame(&mut self, camera: &str) -> Result<Option<Stamped<CameraFrame>>, RobotIoError> {
        let epoch = self.epoch();
        let Some(f) = self.camera(camera).and_then(CameraStream::latest) else {
            return Ok(None);
        };
        Ok(match f.payload {
            FramePayload::Image(color) => Some(Stamped {
                stamp_s: seconds_since(epoch, f.captured),
                value: CameraFrame { color, depth: None },
            }),
            FramePayload::Compressed(_) => None,
        })
    }

    fn instruction(&self) -> Option<&str> {
        self.arm.instruction()
    }

    fn send(&mut self, command: &JointTrajectory) -> Result<(), RobotIoError> {
        self.arm.send(command)
    }

    fn fault(&self) -> Option<String> {
        self.arm.fault()
    }

    fn set_torque(&mut self, enabled: bool) -> Result<bool, RobotIoError> {
        self.arm.set_torque(enabled)
    }

    fn link_stats(&self) -> BTreeMap<String, LinkStats> {
        let mut m = self.arm.link_stats();
        for c in &self.cameras {
            let s = c.stats();
            m.insert(
                format!("camera/{}", c.name()),
                LinkStats {
                    received: s.captured,
                    dropped: s.dropped,
                    malformed: s.errors,
                },
            );
        }
        m
    }
}

/// A real arm served on the bus.
#[derive(Debug, Clone)]
pub struct HardwareServeSpec {
    /// The robot (robots/so101).
    pub robot: RobotDescription,
    /// The arm.
    pub arm: ArmSpec,
    /// Its cameras.
    pub cameras: Vec<CameraSpec>,
    /// The instruction published on `<ns>/instruction`.
    pub instruction: Option<String>,
    /// Joint states published and commands executed at this rate, Hz (robot.toml's
    /// `command_rate_hz` when `None`).
    pub rate_hz: Option<f64>,
    /// Serving options (command timeout, duration, e-stop torque).
    pub options: ServeOptions,
}

/// What serving a real arm did.
#[derive(Debug, Clone, Serialize)]
pub struct HardwareServeReport {
    /// The serving loop.
    pub serve: ServeReport,
    /// Joint states published per second of wall time.
    pub joint_state_hz: f64,
    /// SYNC_READ of every servo's position and velocity: round trip p50, µs.
    pub sync_read_p50_us: f64,
    /// p99, µs.
    pub sync_read_p99_us: f64,
    /// The arm.
    pub arm: ArmStats,
    /// The servo bus.
    pub bus: BusStats,
}

/// Percentile `p` (0..1) of `v`.
pub fn percentile(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s[((s.len() - 1) as f64 * p).round() as usize]
}

/// Serves a real arm on `bus` until `stop` or the duration.
pub fn serve_hardware(
    spec: &HardwareServeSpec,
    bus: &Bus,
    log: &mut dyn FnMut(String),
    stop: &dyn Fn() -> bool,
) -> Result<HardwareServeReport> {
    let mut robot = spec.robot.clone();
    if let Some(hz) = spec.rate_hz {
        if !(hz.is_finite() && hz > 0.0 && hz <= 1000.0) {
            bail!("--rate {hz}: expected 0 < rate <= 1000 Hz");
        }
        robot.config.command_rate_hz = hz;
    }
    for c in &spec.cameras {
        if !robot.config.cameras.iter().any(|rc| rc.name == c.name) && c.output == Output::Decoded {
            tracing::warn!(
                "camera {:?} is not in {}'s robot.toml (cameras: {}); it is published only as a compressed stream if passed through",
                c.name,
                robot.config.name,
                robot.config.cameras.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", ")
            );
        }
    }
    let mut arm = open_arm(&robot, &spec.arm, ArmRole::Follower)?;
    arm.set_instruction(spec.instruction.clone());
    let mut hw = HardwareRobot::new(arm, &spec.cameras)?;
    let keys = RobotKeys::new(&robot.config.namespace)?;
    let mut compressed: BTreeMap<String, (Publisher<CompressedImage>, Option<u64>)> =
        BTreeMap::new();
    for c in spec
        .cameras
        .iter()
        .filter(|c| c.output == Output::Passthrough)
    {
        compressed.insert(
            c.name.clone(),
            (bus.publisher(&keys.camera_compressed(&c.name))?, None),
        );
    }
    log(format!(
        "robot serve: {} on {} at {:.0} Hz, {} camera(s); keys under {}/",
        robot.config.name,
        spec.arm.port,
        robot.config.command_rate_hz,
        spec.cameras.len(),
        keys.namespace()
    ));
    let start = Instant::now();
    let report = serve(
        &mut hw,
        &robot,
        bus,
        &spec.options,
        |hw: &mut HardwareRobot| {
            for (name, seq, img) in hw.compressed() {
                if let Some((p, last)) = compressed.get_mut(&name) {
                    if *last != Some(seq) {
                        *last = Some(seq);
                        p.put(&img)?;
                    }
                }
            }
            Ok(())
        },
        stop,
    )?;
    let wall = start.elapsed().as_secs_f64();
    let stats = hw.arm.stats().clone();
    let rtts: Vec<f64> = stats.read_rtt_us.iter().copied().collect();
    Ok(HardwareServeReport {
        serve: report,
        joint_state_hz: stats.states as f64 / wall.max(1e-9),
        sync_read_p50_us: percentile(&rtts, 0.5),
        sync_read_p99_us: percentile(&rtts, 0.99),
        bus: hw.arm.bus_stats().clone(),
        arm: stats,
    })
}

/// A leader arm driving a follower.
#[derive(Debug, Clone)]
pub struct TeleopSpec {
    /// The robot (both arms are this robot).
    pub robot: RobotDescription,
    /// The arm a person moves (torque off).
    pub leader: ArmSpec,
    /// The arm that follows.
    pub follower: ArmSpec,
    /// Loop rate, Hz.
    pub rate_hz: f64,
    /// Stop after this long, s.
    pub duration_s: Option<f64>,
}

/// One step of teleoperation.
#[derive(Debug, Clone)]
pub struct TeleopStep {
    /// Since the start, s.
    pub t_s: f64,
    /// The leader's joints, rad (`None` while it is in a fault).
    pub leader: Option<Vec<f64>>,
    /// The command sent to the follower, within its limits, rad.
    pub command: Vec<f64>,
    /// The follower's measured joints, rad (`None` while it is in a fault).
    pub follower: Option<Vec<f64>>,
}

/// What teleoperation did.
#[derive(Debug, Clone, Serialize)]
pub struct TeleopReport {
    /// Loop steps.
    pub steps: u64,
    /// Wall time, s.
    pub wall_s: f64,
    /// Steps per second.
    pub rate_hz: f64,
    /// Loop period p50, ms.
    pub period_p50_ms: f64,
    /// Loop period p99, ms.
    pub period_p99_ms: f64,
    /// Steps the leader could not be read (the follower held).
    pub leader_faults: u64,
    /// How closely the follower tracked the leader after the first second: RMS over steps
    /// and joints of (follower measured − leader), rad.
    pub tracking_rms_rad: f64,
    /// The largest |follower − leader| after the first second, rad.
    pub tracking_max_rad: f64,
    /// The follower's limits.
    pub limited: SafetyStats,
    /// The follower arm.
    pub follower: ArmStats,
    /// The leader arm.
    pub leader: ArmStats,
}

/// Runs a leader arm driving a follower through the follower's limits. `on_step` sees every
/// step and returns `false` to stop.
pub fn teleop(
    spec: &TeleopSpec,
    stop: &dyn Fn() -> bool,
    on_step: &mut dyn FnMut(&TeleopStep, &mut HardwareRobot) -> Result<bool>,
    cameras: &[CameraSpec],
) -> Result<TeleopReport> {
    if !(spec.rate_hz.is_finite() && spec.rate_hz > 0.0 && spec.rate_hz <= 1000.0) {
        bail!("--rate {}: expected 0 < rate <= 1000 Hz", spec.rate_hz);
    }
    let mut robot = spec.robot.clone();
    robot.config.command_rate_hz = spec.rate_hz;
    let mut leader = open_arm(&robot, &spec.leader, ArmRole::Leader).context("the leader arm")?;
    let follower =
        open_arm(&robot, &spec.follower, ArmRole::Follower).context("the follower arm")?;
    let mut hw = HardwareRobot::new(follower, cameras)?;
    let q0 = hw
        .arm
        .positions()
        .context("the follower arm does not answer")?;
    let mut filter = SafetyFilter::for_robot(&robot, &q0).context("the follower's limits")?;
    let period = Duration::from_secs_f64(1.0 / spec.rate_hz);
    let start = Instant::now();
    let mut next = start;
    let mut last_tick = start;
    let mut periods = Vec::new();
    let (mut steps, mut leader_faults) = (0u64, 0u64);
    let mut target: Option<Vec<f64>> = None;
    let mut follower_was_faulted = false;
    let (mut err_sq, mut err_n, mut err_max) = (0.0f64, 0u64, 0.0f64);
    while !stop()
        && spec
            .duration_s
            .is_none_or(|d| start.elapsed().as_secs_f64() < d)
    {
        let leader_q = leader.positions();
        match &leader_q {
            Some(q) => target = Some(q.clone()),
            None => leader_faults += 1,
        }
        hw.arm.refresh()?;
        let follower_q = match hw.arm.fault() {
            Some(_) => {
                follower_was_faulted = true;
                None
            }
            None => hw.arm.joint_state().map(|s| s.value.position.clone()),
        };
        if follower_was_faulted {
            if let Some(q) = &follower_q {
                // Recovered: the limits start again from where the follower is.
                filter.reset(q)?;
                follower_was_faulted = false;
            }
        }
        let (command, _) = filter.filter(target.as_deref());
        if follower_q.is_some() {
            hw.arm.write_goals(&command)?;
        }
        steps += 1;
        if let (Some(l), Some(f)) = (&leader_q, &follower_q) {
            if start.elapsed() > Duration::from_secs(1) {
                for (a, b) in l.iter().zip(f) {
                    err_sq += (a - b).powi(2);
                    err_n += 1;
                    err_max = err_max.max((a - b).abs());
                }
            }
        }
        let step = TeleopStep {
            t_s: start.elapsed().as_secs_f64(),
            leader: leader_q,
            command,
            follower: follower_q,
        };
        if !on_step(&step, &mut hw)? {
            break;
        }
        let now = Instant::now();
        periods.push((now - last_tick).as_secs_f64() * 1e3);
        last_tick = now;
        next += period;
        if now > next {
            next = now;
        } else {
            // Pacing to the loop rate, not synchronisation.
            std::thread::sleep(next - now);
        }
    }
    let wall_s = start.elapsed().as_secs_f64();
    Ok(TeleopReport {
        steps,
        wall_s,
        rate_hz: steps as f64 / wall_s.max(1e-9),
        period_p50_ms: percentile(&periods, 0.5),
        period_p99_ms: percentile(&periods, 0.99),
        leader_faults,
        tracking_rms_rad: (err_sq / err_n.max(1) as f64).sqrt(),
        tracking_max_rad: err_max,
        limited: filter.stats(),
        follower: hw.arm.stats().clone(),
        leader: leader.stats().clone(),
    })
}

/// A key the person recording pressed (a line typed on the terminal: n, r or q).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordKey {
    /// End this episode now and keep it (LeRobot: right arrow).
    Next,
    /// Drop this episode and record it again after the reset (LeRobot: left arrow).
    Rerecord,
    /// Keep this episode and stop (LeRobot: escape).
    Stop,
}

/// Demonstrations by teleoperation, written as a LeRobotDataset v3.0.
#[derive(Debug, Clone)]
pub struct TeleopDatasetSpec {
    /// The arms.
    pub teleop: TeleopSpec,
    /// Cameras recorded (rgb8 frames, resized to `image_size`).
    pub cameras: Vec<CameraSpec>,
    /// Output folder (must not hold a dataset).
    pub out: PathBuf,
    /// The task text of every episode.
    pub task: String,
    /// Episodes to keep.
    pub episodes: u64,
    /// Recording time per episode, s.
    pub episode_s: f64,
    /// Time between episodes to reset the scene (teleoperation goes on, nothing is recorded), s.
    pub reset_s: f64,
    /// Frames per second stored.
    pub fps: u32,
    /// Square image side stored, px.
    pub image_size: u32,
}

/// Where recording stands, for a progress display.
#[derive(Debug, Clone)]
pub struct RecordProgress {
    /// Episodes kept so far.
    pub kept: u64,
    /// Episodes asked for.
    pub episodes: u64,
    /// Recording (or resetting).
    pub recording: bool,
    /// Seconds into the phase.
    pub phase_s: f64,
    /// The phase's length, s.
    pub phase_len_s: f64,
    /// Frames in the current episode.
    pub frames: u64,
}

/// What teleoperated recording did.
#[derive(Debug, Clone, Serialize)]
pub struct TeleopDatasetReport {
    /// Episodes written.
    pub episodes: u64,
    /// Frames written.
    pub frames: u64,
    /// Episodes dropped by re-record.
    pub rerecorded: u64,
    /// Frames skipped because the follower or a camera had nothing new to give.
    pub skipped_frames: u64,
    /// The teleoperation underneath.
    pub teleop: TeleopReport,
}

/// Records teleoperated episodes: `keys` brings what the person typed; `progress` is called
/// every step.
pub fn record_teleop_dataset(
    spec: &TeleopDatasetSpec,
    keys: &crossbeam_channel::Receiver<RecordKey>,
    progress: &mut dyn FnMut(&RecordProgress),
    stop: &dyn Fn() -> bool,
) -> Result<TeleopDatasetReport> {
    use sinew_data::{DatasetSpec, DatasetWriter, RgbImage};
    if spec.fps == 0 || spec.episode_s <= 0.0 || spec.reset_s < 0.0 || spec.image_size == 0 {
        bail!("--fps, --episode-time and --image-size must be positive, --reset-time not negative");
    }
    if spec.cameras.iter().any(|c| c.output != Output::Decoded) {
        bail!("recording a dataset decodes the cameras: do not pass --passthrough");
    }
    let robot = &spec.teleop.robot;
    let names = robot.joint_names();
    let side = spec.image_size;
    let mut w = DatasetWriter::create(
        &spec.out,
        DatasetSpec {
            robot_type: robot.config.name.clone(),
            fps: spec.fps,
            state_names: names.clone(),
            action_names: names,
            cameras: spec
                .cameras
                .iter()
                .map(|c| (c.name.clone(), side, side))
                .collect(),
            crops: Default::default(),
            data_files_size_in_mb: 100.0,
        },
    )?;
    let frame_dt = 1.0 / f64::from(spec.fps);
    let (mut kept, mut frames, mut rerecorded, mut skipped) = (0u64, 0u64, 0u64, 0u64);
    let mut in_episode = 0u64;
    let mut recording = true;
    let mut phase_start = 0.0f64;
    let mut next_frame = 0.0f64;
    let mut error: Option<anyhow::Error> = None;
    let report = teleop(
        &spec.teleop,
        stop,
        &mut |step, hw| {
            let t = step.t_s;
            let mut end_episode = recording && t - phase_start >= spec.episode_s;
            let mut stop_after = false;
            while let Ok(k) = keys.try_recv() {
                match k {
                    RecordKey::Next => end_episode |= recording,
                    RecordKey::Stop => {
                        stop_after = true;
                        end_episode |= recording;
                    }
                    RecordKey::Rerecord if recording => {
                        w.discard_episode();
                        in_episode = 0;
                        rerecorded += 1;
                        recording = false;
                        phase_start = t;
                    }
                    RecordKey::Rerecord => {}
                }
            }
            if end_episode {
                if in_episode > 0 {
                    if let Err(e) = w.end_episode(&spec.task) {
                        error = Some(e.into());
                        return Ok(false);
                    }
                    kept += 1;
                    frames += in_episode;
                }
                in_episode = 0;
                recording = false;
                phase_start = t;
                if kept >= spec.episodes || stop_after {
                    return Ok(false);
                }
            } else if stop_after {
                return Ok(false);
            }
            if !recording && t - phase_start >= spec.reset_s && kept < spec.episodes {
                recording = true;
                phase_start = t;
                next_frame = t;
            }
            if recording && t >= next_frame {
                next_frame += frame_dt;
                if next_frame < t {
                    next_frame = t + frame_dt;
                }
                match frame_of(step, hw, &spec.cameras, side) {
                    Some((state, images)) => {
                        let action: Vec<f32> = step.command.iter().map(|x| *x as f32).collect();
                        let images: Vec<RgbImage> = images
                            .into_iter()
                            .map(|data| RgbImage {
                                width: side,
                                height: side,
                                data,
                            })
                            .collect();
                        if let Err(e) = w.add_frame(&state, &action, &images) {
                            error = Some(e.into());
                            return Ok(false);
                        }
                        in_episode += 1;
                    }
                    None => skipped += 1,
                }
            }
            progress(&RecordProgress {
                kept,
                episodes: spec.episodes,
                recording,
                phase_s: t - phase_start,
                phase_len_s: if recording {
                    spec.episode_s
                } else {
                    spec.reset_s
                },
                frames: in_episode,
            });
            Ok(true)
        },
        &spec.cameras,
    );
    // Whatever happened, what was recorded is kept: the episode under way is closed and the
    // metadata written.
    if in_episode > 0 && error.is_none() && w.end_episode(&spec.task).is_ok() {
        kept += 1;
        frames += in_episode;
    }
    w.finish()?;
    if let Some(e) = error {
        return Err(e.context(format!("recording {}", spec.out.display())));
    }
    let teleop = report?;
    Ok(TeleopDatasetReport {
        episodes: kept,
        frames,
        rerecorded,
        skipped_frames: skipped,
        teleop,
    })
}

/// The follower's state and each camera's newest frame, resized; `None` when the follower is
/// in a fault or a camera has no frame.
fn frame_of(
    step: &TeleopStep,
    hw: &mut HardwareRobot,
    cameras: &[CameraSpec],
    side: u32,
) -> Option<(Vec<f32>, Vec<Vec<u8>>)> {
    let state: Vec<f32> = step.follower.as_ref()?.iter().map(|x| *x as f32).collect();
    let mut images = Vec::with_capacity(cameras.len());
    for c in cameras {
        let f = hw.camera(&c.name)?.latest()?;
        let FramePayload::Image(img) = f.payload else {
            return None;
        };
        images.push(sinew_policy::preprocess::resized_rgb(&img, &c.name, side, side, None).ok()?);
    }
    Some((state, images))
}

/// What `sinew bench servo-bus` measured.
#[derive(Debug, Clone, Serialize)]
pub struct ServoBusBench {
    /// The port measured (an emulator's when none was given).
    pub port: String,
    /// Whether it was the emulator, and whether it modelled the 1 Mbaud line's byte time.
    pub emulated: Option<bool>,
    /// SYNC_READ of six servos' position and velocity (4 bytes each), back to back.
    pub sync_reads: u64,
    /// Round trip p50, µs.
    pub sync_read_p50_us: f64,
    /// p99, µs.
    pub sync_read_p99_us: f64,
    /// SYNC_READs per second, back to back: the ceiling on the joint-state rate.
    pub sync_read_hz: f64,
    /// One SYNC_READ plus one SYNC_WRITE of the goals (a control tick's bus work), p50, µs.
    pub tick_p50_us: f64,
    /// p99, µs.
    pub tick_p99_us: f64,
    /// Failed transactions.
    pub failures: u64,
}

/// Measures a servo bus (IDs 1-6): the emulator's when `port` is `None`.
pub fn bench_servo_bus(port: Option<&str>, seconds: f64, wire_time: bool) -> Result<ServoBusBench> {
    use sinew_feetech::emulator::{Emulator, EmulatorConfig};
    use sinew_feetech::registers as reg;
    let emu = match port {
        Some(_) => None,
        None => {
            let mut cfg = EmulatorConfig::so101();
            cfg.wire_time = wire_time;
            Some(Emulator::start(cfg)?)
        }
    };
    let path = match (&emu, port) {
        (Some(e), _) => e.path().display().to_string(),
        (None, Some(p)) => p.to_owned(),
        (None, None) => bail!("no port"),
    };
    let mut bus = FeetechBus::open(&path, BusConfig::default())?;
    let ids = [1u8, 2, 3, 4, 5, 6];
    let mut reads = Vec::new();
    let start = Instant::now();
    while start.elapsed().as_secs_f64() < seconds / 2.0 {
        let t = Instant::now();
        bus.sync_read(reg::PRESENT_POSITION.address, 4, &ids)?;
        reads.push(t.elapsed().as_secs_f64() * 1e6);
    }
    let read_wall = start.elapsed().as_secs_f64();
    let goals: Vec<(u8, i32)> = bus
        .sync_read_register(reg::PRESENT_POSITION, &ids)?
        .into_iter()
        .zip(ids)
        .map(|(r, id)| Ok((id, r?)))
        .collect::<Result<_>>()?;
    let mut ticks = Vec::new();
    let start = Instant::now();
    while start.elapsed().as_secs_f64() < seconds / 2.0 {
        let t = Instant::now();
        bus.sync_read(reg::PRESENT_POSITION.address, 4, &ids)?;
        // Torque stays off: the goals are written, nothing moves.
        bus.sync_write(reg::GOAL_POSITION, &goals)?;
        ticks.push(t.elapsed().as_secs_f64() * 1e6);
    }
    Ok(ServoBusBench {
        port: path,
        emulated: emu.as_ref().map(|_| wire_time),
        sync_reads: reads.len() as u64,
        sync_read_p50_us: percentile(&reads, 0.5),
        sync_read_p99_us: percentile(&reads, 0.99),
        sync_read_hz: reads.len() as f64 / read_wall.max(1e-9),
        tick_p50_us: percentile(&ticks, 0.5),
        tick_p99_us: percentile(&ticks, 0.99),
        failures: bus.stats().failures,
    })
}
