//! An SO-101 arm (or any arm of STS3215 servos, one per joint) as a [`RobotIo`]: joint states
//! from one SYNC_READ of Present_Position and Present_Velocity, commands as one SYNC_WRITE of
//! Goal_Position, in radians through the LeRobot calibration ([`crate::calibration`]).
//!
//! A servo that stops answering, answers with bad checksums or reports a status error (an
//! overload) puts the arm in a fault: no joint state is published and no goal is written, so
//! every servo holds its last goal (one that dropped its torque stays limp). When every servo
//! answers cleanly again the arm recovers by itself: each goal is set to where the servo is,
//! then torque is enabled again, so nothing jumps.
//!
//! As a last line of defence under the serving side's limits, no goal ever moves further from
//! the previous one than `max_goal_step_rad` allows.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use serde::Serialize;
use sinew_core::robot_io::{
    seconds_since, targets_by_name, CameraFrame, LinkStats, RobotIo, RobotIoError, Stamped, Timing,
};
use sinew_msgs::{Header, JointState, JointTrajectory, Time};

use crate::bus::{BusError, BusStats, FeetechBus};
use crate::calibration::{Calibration, JointUnits, MotorCalibration};
use crate::registers::{self as reg, STS3215_MODEL};

/// How to drive an arm.
#[derive(Debug, Clone)]
pub struct ArmConfig {
    /// Joint names (robot.toml order); each is a motor in the calibration.
    pub joints: Vec<String>,
    /// The gripper joint and its range in radians (LeRobot's 0..100 maps onto it).
    pub gripper: Option<(String, f64, f64)>,
    /// The calibration, and where it came from (for messages).
    pub calibration: Calibration,
    /// Its file.
    pub calibration_path: PathBuf,
    /// Follower: torque on and commands accepted. Leader: torque off, read only.
    pub torque: bool,
    /// Largest goal change between two writes per joint, rad (`None`: no guard).
    pub max_goal_step_rad: Option<Vec<f64>>,
    /// The frame joint states are stamped in.
    pub base_link: String,
}

/// Why an arm could not be brought up.
#[derive(Debug, thiserror::Error)]
pub enum ArmError {
    /// A bus transaction failed.
    #[error("{context}: {source}")]
    Bus {
        /// What was being done.
        context: String,
        /// The failure.
        source: BusError,
    },
    /// The calibration does not fit.
    #[error(transparent)]
    Calibration(#[from] crate::calibration::CalibrationError),
    /// A servo is not what it should be.
    #[error("{0}")]
    Servo(String),
}

fn bus_err(context: impl Into<String>) -> impl FnOnce(BusError) -> ArmError {
    let context = context.into();
    move |source| ArmError::Bus { context, source }
}

/// Counters of an arm.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ArmStats {
    /// Joint states read.
    pub states: u64,
    /// Reads that failed (some servo missing or in error).
    pub failed_reads: u64,
    /// Goal writes.
    pub commands: u64,
    /// Commands not written because the arm was in a fault.
    pub held_commands: u64,
    /// Goals the step guard shortened (the serving side's limits should make this 0).
    pub guarded_goals: u64,
    /// Faults entered.
    pub faults: u64,
    /// Recoveries.
    pub recoveries: u64,
    /// SYNC_READ round trips, µs (the last 4096).
    #[serde(skip)]
    pub read_rtt_us: std::collections::VecDeque<f64>,
}

/// A Feetech arm.
pub struct FeetechArm {
    bus: FeetechBus,
    ids: Vec<u8>,
    units: Vec<JointUnits>,
    config: ArmConfig,
    epoch: Instant,
    epoch_unix_ns: u64,
    state: Option<Stamped<JointState>>,
    fault: Option<String>,
    last_goal: Option<Vec<i32>>,
    torque_on: bool,
    stats: ArmStats,
    instruction: Option<String>,
}

impl FeetechArm {
    /// Brings the arm up: every servo must answer and be an STS3215; the calibration is written
    /// to servos whose EEPROM differs from it; a follower's goals are set to where it stands and
    /// its torque enabled, a leader's torque disabled.
    pub fn connect(mut bus: FeetechBus, config: ArmConfig) -> Result<Self, ArmError> {
        let motors = config
            .calibration
            .for_joints(&config.joints, &config.calibration_path)?;
        let ids: Vec<u8> = motors.iter().map(|m| m.id).collect();
        for (j, m) in config.joints.iter().zip(&motors) {
            let model = bus
                .read(m.id, reg::MODEL_NUMBER)
                .map_err(bus_err(format!("servo {} ({j})", m.id)))?;
            if model != STS3215_MODEL {
                return Err(ArmError::Servo(format!(
                    "servo {} ({j}) is model {model}, not an STS3215 ({STS3215_MODEL})",
                    m.id
                )));
            }
        }
        for (j, m) in config.joints.iter().zip(&motors) {
            write_calibration(&mut bus, j, m)?;
        }
        let units = config
            .joints
            .iter()
            .zip(&motors)
            .map(|(j, m)| JointUnits {
                motor: *m,
                gripper_range_rad: config
                    .gripper
                    .as_ref()
                    .filter(|(g, _, _)| g == j)
                    .map(|(_, lo, hi)| (*lo, *hi)),
            })
            .collect();
        let now = Instant::now();
        let mut arm = Self {
            bus,
            ids,
            units,
            epoch: now,
            epoch_unix_ns: Time::now().as_nanos().max(0) as u64,
            state: None,
            fault: None,
            last_goal: None,
            torque_on: false,
            stats: ArmStats::default(),
            instruction: None,
            config,
        };
        if arm.config.torque {
            arm.arm_in_place().map_err(bus_err("enabling torque"))?;
        } else {
            arm.torque_off().map_err(bus_err("disabling torque"))?;
        }
        arm.refresh_state();
        Ok(arm)
    }

    /// Sets every goal to where its servo is, then enables torque: the arm holds still.
    fn arm_in_place(&mut self) -> Result<(), BusError> {
        let raw = self.read_raw()?;
        let goals: Vec<(u8, i32)> = self.ids.iter().copied().zip(raw.iter().copied()).collect();
        self.bus.sync_write(reg::GOAL_POSITION, &goals)?;
        let on: Vec<(u8, i32)> = self.ids.iter().map(|id| (*id, 1)).collect();
        self.bus.sync_write(reg::TORQUE_ENABLE, &on)?;
        self.last_goal = Some(raw);
        self.torque_on = true;
        Ok(())
    }

    fn torque_off(&mut self) -> Result<(), BusError> {
        let off: Vec<(u8, i32)> = self.ids.iter().map(|id| (*id, 0)).collect();
        self.bus.sync_write(reg::TORQUE_ENABLE, &off)?;
        self.torque_on = false;
        self.last_goal = None;
        Ok(())
    }

    /// Present positions, steps; fails on the first servo that did not answer cleanly.
    fn read_raw(&mut self) -> Result<Vec<i32>, BusError> {
        let ids = self.ids.clone();
        self.bus
            .sync_read_register(reg::PRESENT_POSITION, &ids)?
            .into_iter()
            .collect()
    }

    /// One SYNC_READ of position and velocity. Updates the state, or enters a fault.
    fn refresh_state(&mut self) {
        let t0 = Instant::now();
        let ids = self.ids.clone();
        let replies = self.bus.sync_read(reg::PRESENT_POSITION.address, 4, &ids);
        let t1 = Instant::now();
        if self.stats.read_rtt_us.len() >= 4096 {
            self.stats.read_rtt_us.pop_front();
        }
        self.stats
            .read_rtt_us
            .push_back((t1 - t0).as_secs_f64() * 1e6);
        let mut problem = None;
        let mut q = Vec::with_capacity(ids.len());
        let mut qd = Vec::with_capacity(ids.len());
        match replies {
            Err(e) => problem = Some(e.to_string()),
            Ok(replies) => {
                for (k, r) in replies.into_iter().enumerate() {
                    let joint = &self.config.joints[k];
                    match r {
                        Ok((b, status)) if status.is_ok() => {
                            let raw = reg::PRESENT_POSITION.decode(&b).unwrap_or(0);
                            let vel = reg::PRESENT_VELOCITY.decode(&b[2..]).unwrap_or(0);
                            let u = &self.units[k];
                            q.push(u.to_rad(raw));
                            // Steps/s to rad/s through the same map (its slope).
                            qd.push(u.to_rad(raw + vel) - u.to_rad(raw));
                        }
                        Ok((_, status)) => {
                            problem.get_or_insert(format!(
                                "servo {} ({joint}) reports {status}",
                                ids[k]
                            ));
                        }
                        Err(e) => {
                            problem.get_or_insert(format!("{joint}: {e}"));
                        }
                    }
                }
            }
        }
        match problem {
            Some(p) => {
                self.stats.failed_reads += 1;
                if self.fault.is_none() {
                    self.stats.faults += 1;
                    tracing::warn!("arm fault, holding: {p}");
                }
                self.fault = Some(p);
            }
            None => {
                if let Some(was) = self.fault.take() {
                    // Recover: hold where the arm is now, torque back on (a servo that
                    // dropped it after an overload).
                    if self.config.torque {
                        if let Err(e) = self.arm_in_place() {
                            self.fault = Some(format!("re-arming after \"{was}\": {e}"));
                            return;
                        }
                    }
                    self.stats.recoveries += 1;
                    tracing::info!("arm recovered from: {was}");
                }
                self.stats.states += 1;
                let stamp_s = seconds_since(self.epoch, t1);
                self.state = Some(Stamped {
                    stamp_s,
                    value: JointState {
                        header: Header::new(Time::now(), self.config.base_link.clone()),
                        name: self.config.joints.clone(),
                        position: q,
                        velocity: qd,
                        effort: Vec::new(),
                    },
                });
            }
        }
    }

    /// Writes goals for joint positions `q_rad` (robot.toml order).
    pub fn write_goals(&mut self, q_rad: &[f64]) -> Result<(), BusError> {
        let mut goals: Vec<i32> = self
            .units
            .iter()
            .zip(q_rad)
            .map(|(u, q)| u.to_raw(*q))
            .collect();
        if let (Some(last), Some(max)) = (&self.last_goal, &self.config.max_goal_step_rad) {
            for (k, g) in goals.iter_mut().enumerate() {
                let u = &self.units[k];
                let step = (u.to_raw(u.to_rad(last[k]) + max[k]) - last[k])
                    .abs()
                    .max(1);
                let clamped = (*g).clamp(last[k] - step, last[k] + step);
                if clamped != *g {
                    self.stats.guarded_goals += 1;
                    *g = clamped;
                }
            }
        }
        let pairs: Vec<(u8, i32)> = self
            .ids
            .iter()
            .copied()
            .zip(goals.iter().copied())
            .collect();
        self.bus.sync_write(reg::GOAL_POSITION, &pairs)?;
        self.last_goal = Some(goals);
        self.stats.commands += 1;
        Ok(())
    }

    /// The bus's counters.
    pub fn bus_stats(&self) -> &BusStats {
        self.bus.stats()
    }

    /// The arm's counters.
    pub fn stats(&self) -> &ArmStats {
        &self.stats
    }

    /// The joint positions now, rad, reading the bus (for a leader arm).
    pub fn positions(&mut self) -> Option<Vec<f64>> {
        self.refresh_state();
        match self.fault {
            Some(_) => None,
            None => self.state.as_ref().map(|s| s.value.position.clone()),
        }
    }

    /// Sets the instruction the arm's users are given (published with its state).
    pub fn set_instruction(&mut self, instruction: Option<String>) {
        self.instruction = instruction;
    }

    /// The joint names.
    pub fn joints(&self) -> &[String] {
        &self.config.joints
    }
}

/// Writes a motor's calibration to its EEPROM when it differs (unlock, write, lock).
fn write_calibration(
    bus: &mut FeetechBus,
    joint: &str,
    m: &MotorCalibration,
) -> Result<(), ArmError> {
    let ctx = || format!("servo {} ({joint}): calibration", m.id);
    let have = [
        bus.read(m.id, reg::HOMING_OFFSET).map_err(bus_err(ctx()))?,
        bus.read(m.id, reg::MIN_POSITION_LIMIT)
            .map_err(bus_err(ctx()))?,
        bus.read(m.id, reg::MAX_POSITION_LIMIT)
            .map_err(bus_err(ctx()))?,
    ];
    if have == [m.homing_offset, m.range_min, m.range_max] {
        return Ok(());
    }
    tracing::info!(
        "servo {} ({joint}): writing calibration (offset {}, range {}..{}; it had {:?})",
        m.id,
        m.homing_offset,
        m.range_min,
        m.range_max,
        have
    );
    let steps = [
        (reg::TORQUE_ENABLE, 0),
        (reg::LOCK, 0),
        (reg::HOMING_OFFSET, m.homing_offset),
        (reg::MIN_POSITION_LIMIT, m.range_min),
        (reg::MAX_POSITION_LIMIT, m.range_max),
        (reg::LOCK, 1),
    ];
    for (r, v) in steps {
        bus.write(m.id, r, v).map_err(bus_err(ctx()))?;
    }
    let check = bus.read(m.id, reg::HOMING_OFFSET).map_err(bus_err(ctx()))?;
    if check != m.homing_offset {
        return Err(ArmError::Servo(format!(
            "servo {} ({joint}): Homing_Offset reads {check} after writing {}",
            m.id, m.homing_offset
        )));
    }
    Ok(())
}

impl RobotIo for FeetechArm {
    fn timing(&self) -> Timing {
        Timing::RealTime {
            epoch: self.epoch,
            epoch_unix_ns: self.epoch_unix_ns,
        }
    }

    fn refresh(&mut self) -> Result<(), RobotIoError> {
        self.refresh_state();
        Ok(())
    }

    fn joint_state(&self) -> Option<&Stamped<JointState>> {
        self.state.as_ref()
    }

    fn frame_stamp(&self, _camera: &str) -> Option<f64> {
        None
    }

    fn frame(&mut self, _camera: &str) -> Result<Option<Stamped<CameraFrame>>, RobotIoError> {
        Ok(None)
    }

    fn instruction(&self) -> Option<&str> {
        self.instruction.as_deref()
    }

    fn send(&mut self, command: &JointTrajectory) -> Result<(), RobotIoError> {
        if !self.config.torque {
            return Err(RobotIoError::Robot(
                "a leader arm (torque off) takes no commands".into(),
            ));
        }
        if self.fault.is_some() || !self.torque_on {
            self.stats.held_commands += 1;
            return Ok(());
        }
        let current = self
            .state
            .as_ref()
            .map(|s| s.value.position.clone())
            .unwrap_or_default();
        let q =
            targets_by_name(command, &self.config.joints, &current).map_err(RobotIoError::Robot)?;
        self.write_goals(&q)
            .map_err(|e| RobotIoError::Transport(e.to_string()))
    }

    fn fault(&self) -> Option<String> {
        self.fault.clone()
    }

    fn set_torque(&mut self, enabled: bool) -> Result<bool, RobotIoError> {
        let r = if enabled {
            self.arm_in_place()
        } else {
            self.torque_off()
        };
        r.map_err(|e| RobotIoError::Transport(e.to_string()))?;
        Ok(true)
    }

    fn link_stats(&self) -> BTreeMap<String, LinkStats> {
        let mut m = BTreeMap::new();
        m.insert(
            "servo_bus".to_owned(),
            LinkStats {
                received: self.stats.states,
                dropped: self.stats.failed_reads,
                malformed: self
                    .bus
                    .stats()
                    .servos
                    .values()
                    .map(|s| s.bad_checksums)
                    .sum(),
            },
        );
        m
    }
}

/// What a person does during calibration; the terminal in `sinew robot calibrate`.
pub trait CalibrationGuide {
    /// Waits until the arm is in the middle of its range.
    fn middle_pose(&mut self);
    /// Shows the ranges so far (name, min, now, max); `true` to stop recording.
    fn ranges(&mut self, rows: &[(String, i32, i32, i32)]) -> bool;
}

/// LeRobot's SO-101 calibration: torque off, the arm placed mid-range, Homing_Offset set so
/// that pose reads 2047 (half a turn), then every joint moved through its range while the
/// extremes are recorded. `full_turn` joints (the wrist roll) get the whole turn 0..4095.
/// The result is written to the servos (limits and offsets) and returned.
pub fn calibrate(
    bus: &mut FeetechBus,
    motors: &[(String, u8)],
    full_turn: &[&str],
    guide: &mut dyn CalibrationGuide,
) -> Result<Calibration, ArmError> {
    let ids: Vec<u8> = motors.iter().map(|(_, id)| *id).collect();
    for (name, id) in motors {
        let ctx = format!("servo {id} ({name})");
        bus.write(*id, reg::TORQUE_ENABLE, 0)
            .map_err(bus_err(ctx.clone()))?;
        bus.write(*id, reg::LOCK, 0).map_err(bus_err(ctx.clone()))?;
        bus.write(*id, reg::OPERATING_MODE, 0)
            .map_err(bus_err(ctx))?;
    }
    guide.middle_pose();
    let mut offsets = Vec::with_capacity(ids.len());
    for (name, id) in motors {
        let ctx = format!("servo {id} ({name}): homing");
        bus.write(*id, reg::HOMING_OFFSET, 0)
            .map_err(bus_err(ctx.clone()))?;
        bus.write(*id, reg::MIN_POSITION_LIMIT, 0)
            .map_err(bus_err(ctx.clone()))?;
        bus.write(*id, reg::MAX_POSITION_LIMIT, 4095)
            .map_err(bus_err(ctx.clone()))?;
        let actual = bus
            .read(*id, reg::PRESENT_POSITION)
            .map_err(bus_err(ctx.clone()))?;
        let offset = actual - (reg::STS3215_RESOLUTION - 1) / 2;
        bus.write(*id, reg::HOMING_OFFSET, offset)
            .map_err(bus_err(ctx))?;
        offsets.push(offset);
    }
    let mut mins = vec![i32::MAX; ids.len()];
    let mut maxs = vec![i32::MIN; ids.len()];
    loop {
        let now: Vec<i32> = bus
            .sync_read_register(reg::PRESENT_POSITION, &ids)
            .map_err(bus_err("recording ranges"))?
            .into_iter()
            .enumerate()
            .map(|(k, r)| r.map_err(bus_err(format!("recording the range of {}", motors[k].0))))
            .collect::<Result<_, _>>()?;
        for k in 0..ids.len() {
            mins[k] = mins[k].min(now[k]);
            maxs[k] = maxs[k].max(now[k]);
        }
        let rows: Vec<(String, i32, i32, i32)> = (0..ids.len())
            .map(|k| (motors[k].0.clone(), mins[k], now[k], maxs[k]))
            .collect();
        if guide.ranges(&rows) {
            break;
        }
    }
    let mut cal = Calibration { motors: Vec::new() };
    for (k, (name, id)) in motors.iter().enumerate() {
        let (lo, hi) = if full_turn.contains(&name.as_str()) {
            (0, reg::STS3215_RESOLUTION - 1)
        } else {
            (mins[k], maxs[k])
        };
        if lo >= hi {
            return Err(ArmError::Servo(format!(
                "{name} (servo {id}) did not move while ranges were recorded (stayed at {lo}): move every joint through its whole range"
            )));
        }
        let ctx = format!("servo {id} ({name}): limits");
        bus.write(*id, reg::MIN_POSITION_LIMIT, lo)
            .map_err(bus_err(ctx.clone()))?;
        bus.write(*id, reg::MAX_POSITION_LIMIT, hi)
            .map_err(bus_err(ctx.clone()))?;
        bus.write(*id, reg::LOCK, 1).map_err(bus_err(ctx))?;
        cal.motors.push((
            name.clone(),
            MotorCalibration {
                id: *id,
                drive_mode: 0,
                homing_offset: offsets[k],
                range_min: lo,
                range_max: hi,
            },
        ));
    }
    Ok(cal)
}
