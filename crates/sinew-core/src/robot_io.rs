//! A robot as the control loop sees it: the newest joint state, camera frames and instruction,
//! each stamped on the loop's clock; what an operator asked (e-stop); for simulators, the
//! privileged scene that scripted experts read; and a sink for joint commands.
//!
//! One trait for every robot, so one loop drives them all: a robot on the bus (`sinew-bus`),
//! the simulator in-process (`sinew-sim`) and a recording played back (`sinew-record`); a
//! hardware driver implements it too. A robot either runs in real time by itself
//! ([`Timing::RealTime`]: the loop paces itself on the wall clock) or is driven by the loop
//! ([`Timing::Driven`]: a simulator in lockstep advances one command period per tick, a
//! recording moves to its next recorded tick).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use sinew_msgs::{Image, JointState, JointTrajectory};

use crate::events::Scene;

/// A value with the time it was taken, seconds on the loop's clock.
#[derive(Debug, Clone, PartialEq)]
pub struct Stamped<T> {
    /// When, s.
    pub stamp_s: f64,
    /// What.
    pub value: T,
}

/// One camera frame: colour, and depth when the camera has it.
#[derive(Debug, Clone, PartialEq)]
pub struct CameraFrame {
    /// `rgb8` (or any encoding the policy's preprocessing reads).
    pub color: Image,
    /// `32FC1`, metres along the optical axis.
    pub depth: Option<Image>,
}

/// What a simulator knows beyond its sensors. Scripted experts read it; learned policies
/// never see it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Privileged {
    /// Every object and fixture with its current pose.
    pub scene: Scene,
    /// The joint targets the robot's motors track now (the last command applied), robot.toml
    /// order.
    pub joint_targets: Vec<f64>,
}

/// How a robot's time advances.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Timing {
    /// The robot runs by itself in real time. Stamps are seconds since `epoch`; `epoch_unix_ns`
    /// is the same instant on the system clock (recordings are stamped with it).
    RealTime {
        /// The instant stamps count from.
        epoch: Instant,
        /// That instant, ns since the Unix epoch.
        epoch_unix_ns: u64,
    },
    /// The robot's time moves only when the loop calls [`RobotIo::advance`].
    Driven {
        /// The robot's time now, s.
        now_s: f64,
    },
}

impl Timing {
    /// Real time starting now.
    pub fn real_time_from_now() -> Self {
        Timing::RealTime {
            epoch: Instant::now(),
            epoch_unix_ns: sinew_msgs::Time::now().as_nanos().max(0) as u64,
        }
    }
}

/// What an operator asked for, on the robot's e-stop key.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum OperatorCommand {
    /// Latch a hold.
    EngageEstop {
        /// When it arrived (for the e-stop-to-hold latency).
        received: Instant,
    },
    /// Lift the hold.
    ReleaseEstop,
}

/// Counters of one input stream of a robot (a bus subscription).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct LinkStats {
    /// Messages delivered.
    pub received: u64,
    /// Messages replaced by a newer one before they were read.
    pub dropped: u64,
    /// Payloads that did not decode.
    pub malformed: u64,
}

/// Why a robot could not be read or commanded.
#[derive(Debug, thiserror::Error)]
pub enum RobotIoError {
    /// The transport failed (the bus, a serial port).
    #[error("transport: {0}")]
    Transport(String),
    /// The robot (or simulator) refused or failed.
    #[error("{0}")]
    Robot(String),
    /// A joint state that does not fit the robot.
    #[error("joint state: {0}")]
    JointState(String),
}

/// A robot: sensors in, commands out. Methods that read are cheap except
/// [`RobotIo::frame`], which a simulator answers by rendering.
pub trait RobotIo {
    /// How the robot's time advances.
    fn timing(&self) -> Timing;

    /// Takes what arrived since the last call (a robot on the bus), or reads the robot's state
    /// now (a simulator, a recording). The loop calls it once per tick, before any read.
    fn refresh(&mut self) -> Result<(), RobotIoError>;

    /// The newest joint state, stamped; `None` before the first.
    fn joint_state(&self) -> Option<&Stamped<JointState>>;

    /// When the newest frame of `camera` was taken; `None` before the first.
    fn frame_stamp(&self, camera: &str) -> Option<f64>;

    /// The newest frame of `camera` (a simulator renders it on the first call after it is
    /// taken).
    fn frame(&mut self, camera: &str) -> Result<Option<Stamped<CameraFrame>>, RobotIoError>;

    /// The instruction the robot was given (a task's, or the last one received).
    fn instruction(&self) -> Option<&str>;

    /// The privileged state, for robots that have it (simulators and their recordings).
    fn privileged(&mut self) -> Result<Option<Privileged>, RobotIoError> {
        Ok(None)
    }

    /// Operator commands that arrived since the last call.
    fn operator_commands(&mut self) -> Vec<OperatorCommand> {
        Vec::new()
    }

    /// Whether the robot's task has succeeded (simulators); `None` when it has no task.
    fn task_success(&mut self) -> Result<Option<bool>, RobotIoError> {
        Ok(None)
    }

    /// Sends one joint command (positions by joint name, already within the limits).
    fn send(&mut self, command: &JointTrajectory) -> Result<(), RobotIoError>;

    /// Real-time robots: waits until `deadline`; `true` when it returned early because an
    /// operator command arrived.
    fn wait_until(&mut self, deadline: Instant) -> bool {
        let now = Instant::now();
        if deadline > now {
            // Pacing to the command rate, not synchronisation.
            std::thread::sleep(deadline - now);
        }
        false
    }

    /// Driven robots: advances by `dt_s` (a simulator steps its physics; a recording moves to
    /// its next tick). `false` when there is nothing more (the recording ended).
    fn advance(&mut self, dt_s: f64) -> Result<bool, RobotIoError> {
        let _ = dt_s;
        Ok(true)
    }

    /// Why the robot cannot take commands now (a servo does not answer, reports an overload);
    /// `None` when it can. The serving side holds while a fault lasts and starts again from
    /// where the robot is when it ends.
    fn fault(&self) -> Option<String> {
        None
    }

    /// Turns the motors' torque on or off; `Ok(false)` when the robot cannot (simulators,
    /// robots on the bus).
    fn set_torque(&mut self, enabled: bool) -> Result<bool, RobotIoError> {
        let _ = enabled;
        Ok(false)
    }

    /// Counters of the robot's input streams, by name.
    fn link_stats(&self) -> BTreeMap<String, LinkStats> {
        BTreeMap::new()
    }
}

/// Joint positions (and velocities, when every joint has one) of `state`, in the order of
/// `joints`. Fails naming the first joint that is missing or has no position.
pub fn joints_in_order(
    state: &JointState,
    joints: &[String],
) -> Result<(Vec<f64>, Vec<f64>), RobotIoError> {
    let mut q = Vec::with_capacity(joints.len());
    let mut qd = Vec::with_capacity(joints.len());
    let mut velocities = state.velocity.len() == state.name.len();
    for (k, name) in joints.iter().enumerate() {
        // Fast path: a state in the robot's own order.
        let i = if state.name.get(k) == Some(name) {
            k
        } else {
            state
                .name
                .iter()
                .position(|n| n == name)
                .ok_or_else(|| RobotIoError::JointState(format!("no joint {name:?}")))?
        };
        let p = *state
            .position
            .get(i)
            .ok_or_else(|| RobotIoError::JointState(format!("no position for {name:?}")))?;
        q.push(p);
        if velocities {
            match state.velocity.get(i) {
                Some(v) => qd.push(*v),
                None => velocities = false,
            }
        }
    }
    if !velocities {
        qd.clear();
    }
    Ok((q, qd))
}

/// The joint targets a `JointTrajectory` command asks for, in the order of `joints`: its last
/// point's positions by joint name; joints it does not name keep their value in `current`.
/// Fails, saying why, on a trajectory without points, lengths that disagree, an unknown joint
/// or a value that is not finite.
pub fn targets_by_name(
    msg: &JointTrajectory,
    joints: &[String],
    current: &[f64],
) -> Result<Vec<f64>, String> {
    let point = msg.points.last().ok_or("trajectory without points")?;
    if point.positions.len() != msg.joint_names.len() {
        return Err(format!(
            "{} positions for {} joint names",
            point.positions.len(),
            msg.joint_names.len()
        ));
    }
    let mut q = current.to_vec();
    for (name, v) in msg.joint_names.iter().zip(&point.positions) {
        let i = joints
            .iter()
            .position(|j| j == name)
            .ok_or_else(|| format!("unknown joint {name:?}"))?;
        if !v.is_finite() {
            return Err(format!("joint {name:?} is {v}"));
        }
        if let Some(t) = q.get_mut(i) {
            *t = *v;
        }
    }
    Ok(q)
}

/// How long ago `stamp_s` was at `now_s` (infinite when there is none).
pub fn age_s(now_s: f64, stamp_s: Option<f64>) -> f64 {
    stamp_s.map_or(f64::INFINITY, |s| (now_s - s).max(0.0))
}

/// A real-time robot's stamp of an instant.
pub fn seconds_since(epoch: Instant, t: Instant) -> f64 {
    t.saturating_duration_since(epoch).as_secs_f64()
}

/// The instant `t_s` seconds after `epoch`.
pub fn instant_at(epoch: Instant, t_s: f64) -> Instant {
    epoch + Duration::from_secs_f64(t_s.max(0.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joint_states_are_read_by_name_in_the_robots_order() {
        let js = JointState {
            name: vec!["b".into(), "a".into()],
            position: vec![2.0, 1.0],
            velocity: vec![0.2, 0.1],
            ..Default::default()
        };
        let joints = ["a".to_owned(), "b".to_owned()];
        let (q, qd) = joints_in_order(&js, &joints).expect("both named");
        assert_eq!((q, qd), (vec![1.0, 2.0], vec![0.1, 0.2]));
        let e = joints_in_order(&js, &["c".to_owned()]).expect_err("c is missing");
        assert_eq!(e.to_string(), "joint state: no joint \"c\"");
        let short = JointState {
            name: vec!["a".into()],
            position: vec![],
            ..Default::default()
        };
        let e = joints_in_order(&short, &["a".to_owned()]).expect_err("no position");
        assert!(e.to_string().contains("no position for \"a\""), "{e}");
    }
}
