//! A robot on the bus behind Sinew's one robot interface ([`RobotIo`]): whatever publishes
//! the robot's keys (a ROS 2 robot behind zenoh-bridge-ros2dds, `sinew sim serve`, a hardware
//! driver's `sinew robot serve`), driven by the same loop as the simulator in-process.
//!
//! It reads latest-value subscribers (a slow reader gets the newest frame, never a queued
//! stale one), stamps every sample with its receive time on the loop's clock, and takes
//! e-stop messages from a queue so none is lost; waiting for the next tick ends early when one
//! arrives. Commands go out as `trajectory_msgs/JointTrajectory` on `<ns>/joint_commands`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use sinew_core::robot_io::{
    seconds_since, CameraFrame, LinkStats, OperatorCommand, RobotIo, RobotIoError, Stamped, Timing,
};
use sinew_core::{ActionChunk, ActionKind, Observation, Policy, PolicyError, PolicySpec};
use sinew_msgs::keys::RobotKeys;
use sinew_msgs::{Image, JointState, JointTrajectory, StringMsg};

use crate::{Bus, BusError, Latest, Publisher, Received, Subscriber, SubscriberStats};

fn link(s: SubscriberStats) -> LinkStats {
    LinkStats {
        received: s.received,
        dropped: s.dropped,
        malformed: s.malformed,
    }
}

/// A robot whose keys are on the bus.
pub struct BusRobot {
    timing: Timing,
    epoch: Instant,
    joint_states: Latest<JointState>,
    cameras: Vec<(String, Latest<Image>, Option<Stamped<CameraFrame>>)>,
    instruction_sub: Latest<StringMsg>,
    estop: Subscriber<StringMsg>,
    commands: Publisher<JointTrajectory>,
    joint_state: Option<Stamped<JointState>>,
    instruction: Option<String>,
    operator: Vec<OperatorCommand>,
}

impl std::fmt::Debug for BusRobot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BusRobot")
            .field("joint_states", &self.joint_states.key())
            .finish()
    }
}

impl BusRobot {
    /// Subscribes to the robot's joint states, instruction, e-stop and the `cameras` named,
    /// and declares its command publisher. Stamps count from now.
    pub fn open(bus: &Bus, keys: &RobotKeys, cameras: &[String]) -> Result<Self, BusError> {
        let epoch = Instant::now();
        let timing = Timing::RealTime {
            epoch,
            epoch_unix_ns: sinew_msgs::Time::now().as_nanos().max(0) as u64,
        };
        Ok(Self {
            timing,
            epoch,
            joint_states: bus.latest(&keys.joint_states())?,
            cameras: cameras
                .iter()
                .map(|c| Ok((c.clone(), bus.latest(&keys.camera_image(c))?, None)))
                .collect::<Result<_, BusError>>()?,
            instruction_sub: bus.latest(&keys.instruction())?,
            estop: bus.subscribe(&keys.estop(), 16)?,
            commands: bus.publisher(&keys.joint_commands())?,
            joint_state: None,
            instruction: None,
            operator: Vec::new(),
        })
    }

    /// Waits up to `timeout` for the robot's first joint state.
    pub fn wait_for_joint_state(&mut self, timeout: Duration) -> bool {
        match self.joint_states.wait_new(timeout) {
            Some(m) => {
                self.joint_state = Some(self.stamped(m));
                true
            }
            None => false,
        }
    }

    /// The joint-state key, for messages.
    pub fn joint_state_key(&self) -> &str {
        self.joint_states.key()
    }

    fn stamped<M>(&self, m: Received<M>) -> Stamped<M> {
        Stamped {
            stamp_s: seconds_since(self.epoch, m.received_at),
            value: m.msg,
        }
    }

    fn operator_command(&mut self, m: Received<StringMsg>) {
        match m.msg.data.trim() {
            "engage" | "stop" | "1" | "true" => self.operator.push(OperatorCommand::EngageEstop {
                received: m.received_at,
            }),
            "release" | "0" | "false" => self.operator.push(OperatorCommand::ReleaseEstop),
            other => tracing::warn!("e-stop key: unknown command {other:?} (engage or release)"),
        }
    }
}

impl RobotIo for BusRobot {
    fn timing(&self) -> Timing {
        self.timing
    }

    fn refresh(&mut self) -> Result<(), RobotIoError> {
        if let Some(m) = self.joint_states.take() {
            self.joint_state = Some(self.stamped(m));
        }
        let epoch = self.epoch;
        for (_, latest, cache) in self.cameras.iter_mut() {
            if let Some(m) = latest.take() {
                *cache = Some(Stamped {
                    stamp_s: seconds_since(epoch, m.received_at),
                    value: CameraFrame {
                        color: m.msg,
                        depth: None,
                    },
                });
            }
        }
        if let Some(m) = self.instruction_sub.take() {
            self.instruction = Some(m.msg.data);
        }
        while let Some(m) = self.estop.try_recv() {
            self.operator_command(m);
        }
        Ok(())
    }

    fn joint_state(&self) -> Option<&Stamped<JointState>> {
        self.joint_state.as_ref()
    }

    fn frame_stamp(&self, camera: &str) -> Option<f64> {
        self.cameras
            .iter()
            .find(|(n, _, _)| n == camera)
            .and_then(|(_, _, f)| f.as_ref().map(|f| f.stamp_s))
    }

    fn frame(&mut self, camera: &str) -> Result<Option<Stamped<CameraFrame>>, RobotIoError> {
        Ok(self
            .cameras
            .iter()
            .find(|(n, _, _)| n == camera)
            .and_then(|(_, _, f)| f.clone()))
    }

    fn instruction(&self) -> Option<&str> {
        self.instruction.as_deref()
    }

    fn operator_commands(&mut self) -> Vec<OperatorCommand> {
        std::mem::take(&mut self.operator)
    }

    fn send(&mut self, command: &JointTrajectory) -> Result<(), RobotIoError> {
        self.commands
            .put(command)
            .map_err(|e| RobotIoError::Transport(e.to_string()))
    }

    fn wait_until(&mut self, deadline: Instant) -> bool {
        match self.estop.receiver().recv_deadline(deadline) {
            Ok(m) => {
                self.operator_command(m);
                true
            }
            Err(_) => false,
        }
    }

    fn link_stats(&self) -> BTreeMap<String, LinkStats> {
        let mut m = BTreeMap::new();
        m.insert(
            self.joint_states.key().to_owned(),
            link(self.joint_states.stats()),
        );
        for (_, c, _) in &self.cameras {
            m.insert(c.key().to_owned(), link(c.stats()));
        }
        m.insert(
            self.instruction_sub.key().to_owned(),
            link(self.instruction_sub.stats()),
        );
        m.insert("estop".to_owned(), link(self.estop.stats()));
        m
    }
}

/// Follows the newest target of the simulator's scripted expert, published by
/// `sinew sim serve` on `<ns>/sim/expert_action`: an oracle for testing the loop through the
/// bus without a model.
pub struct BusOracle {
    spec: PolicySpec,
    latest: Latest<JointTrajectory>,
    joints: Vec<String>,
}

impl std::fmt::Debug for BusOracle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BusOracle")
            .field("key", &self.latest.key())
            .finish()
    }
}

impl BusOracle {
    /// Subscribes to the expert's key for a robot with `joints` (robot.toml order), deciding at
    /// `rate_hz`.
    pub fn open(
        bus: &Bus,
        keys: &RobotKeys,
        joints: &[String],
        rate_hz: f64,
    ) -> Result<Self, BusError> {
        Ok(Self {
            spec: PolicySpec {
                architecture: "expert (bus)".into(),
                cameras: vec![],
                image_size: (0, 0),
                uses_state: true,
                state_dim: joints.len(),
                action_kind: ActionKind::JointPosition,
                action_dim: joints.len(),
                chunk_length: 1,
                control_rate_hz: rate_hz,
                action_tokenizer: "none".into(),
                n_action_steps: None,
            },
            latest: bus.latest(&keys.sim_expert_action())?,
            joints: joints.to_vec(),
        })
    }
}

impl Policy for BusOracle {
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
