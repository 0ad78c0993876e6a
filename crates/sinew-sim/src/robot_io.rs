//! The simulated robot behind Sinew's one robot interface ([`RobotIo`]): the control loop
//! drives it exactly as it drives a robot on the bus or a recording.
//!
//! Driven ([`SimRobot::lockstep`]), simulated time advances one command period per tick of the
//! loop, so a run is reproducible bit for bit; in real time ([`SimRobot::real_time`], for
//! `sinew sim serve`), each refresh steps the physics up to the wall clock. Cameras expose
//! frames at `camera_rate_hz`; a frame is rendered when it is first read, so cameras nobody
//! reads cost nothing.

use std::collections::BTreeMap;
use std::time::Instant;

use sinew_core::robot_io::{
    seconds_since, targets_by_name, CameraFrame, Privileged, RobotIo, RobotIoError, Stamped, Timing,
};
use sinew_msgs::{Header, Image, JointState, JointTrajectory, Time};

use crate::success::SuccessTracker;
use crate::task::TaskSpec;
use crate::{SimError, SimWorld};

fn sim_err(e: SimError) -> RobotIoError {
    RobotIoError::Robot(e.to_string())
}

/// A [`SimWorld`] as a robot.
pub struct SimRobot {
    world: SimWorld,
    /// The task's success over time, checked at each [`RobotIo::task_success`].
    tracker: Option<SuccessTracker>,
    joints: Vec<String>,
    timing: Timing,
    /// Control ticks taken (driven).
    tick: u64,
    joint_state: Option<Stamped<JointState>>,
    camera_rate_hz: f64,
    frame_index: Option<u64>,
    frame_time_s: f64,
    rendered: BTreeMap<String, Stamped<CameraFrame>>,
    instruction: Option<String>,
}

impl std::fmt::Debug for SimRobot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimRobot")
            .field("robot", &self.world.robot.config.name)
            .field("time_s", &self.world.time_s)
            .field("timing", &self.timing)
            .finish()
    }
}

/// A time as whole nanoseconds, back in seconds: the loop's clock and the recordings agree on
/// every instant exactly.
fn whole_ns(t_s: f64) -> f64 {
    ((t_s * 1e9).round() as u64) as f64 / 1e9
}

impl SimRobot {
    fn new(world: SimWorld, task: Option<TaskSpec>, camera_rate_hz: f64, timing: Timing) -> Self {
        let joints = world.robot.joint_names();
        let instruction = world.episode.as_ref().map(|e| e.instruction.clone());
        Self {
            world,
            tracker: task.as_ref().map(SuccessTracker::new),
            joints,
            timing,
            tick: 0,
            joint_state: None,
            camera_rate_hz: camera_rate_hz.max(1e-3),
            frame_index: None,
            frame_time_s: 0.0,
            rendered: BTreeMap::new(),
            instruction,
        }
    }

    /// A simulator the loop drives: one command period of simulated time per tick. Cameras
    /// take a frame every `1 / camera_rate_hz` simulated seconds; `task` (if any) is checked
    /// for success.
    pub fn lockstep(world: SimWorld, task: Option<TaskSpec>, camera_rate_hz: f64) -> Self {
        let now_s = whole_ns(world.time_s);
        Self::new(world, task, camera_rate_hz, Timing::Driven { now_s })
    }

    /// A simulator that keeps level with the wall clock (each refresh steps the physics up to
    /// now).
    pub fn real_time(world: SimWorld, task: Option<TaskSpec>, camera_rate_hz: f64) -> Self {
        Self::new(world, task, camera_rate_hz, Timing::real_time_from_now())
    }

    /// The world.
    pub fn world(&self) -> &SimWorld {
        &self.world
    }

    /// The world, to change it (tests inject faults this way).
    pub fn world_mut(&mut self) -> &mut SimWorld {
        &mut self.world
    }

    /// The robot's time now, s: the simulated time (in real time, the physics is kept level
    /// with the wall clock, so its time is when the state was measured).
    fn now_s(&self) -> f64 {
        whole_ns(self.world.time_s)
    }

    fn header_stamp(&self, t_s: f64) -> Time {
        let ns = (t_s * 1e9).round() as i64;
        match self.timing {
            Timing::Driven { .. } => Time::from_nanos(ns),
            Timing::RealTime { epoch_unix_ns, .. } => Time::from_nanos(epoch_unix_ns as i64 + ns),
        }
    }

    /// Joint targets from a trajectory's last point, by joint name; joints it does not name
    /// keep their targets.
    fn targets_from(&self, msg: &JointTrajectory) -> Result<Vec<f64>, String> {
        match msg.points.last() {
            // The loop's own commands name every joint in order.
            Some(p) if msg.joint_names == self.joints && p.positions.len() == self.joints.len() => {
                Ok(p.positions.clone())
            }
            _ => targets_by_name(msg, &self.joints, self.world.targets()),
        }
    }

    /// Advances the physics to simulated time `t_s` (whole physics steps).
    pub fn advance_to(&mut self, t_s: f64) {
        self.world.advance_to(t_s);
    }
}

impl RobotIo for SimRobot {
    fn timing(&self) -> Timing {
        match self.timing {
            Timing::Driven { .. } => Timing::Driven {
                now_s: self.now_s(),
            },
            t => t,
        }
    }

    fn refresh(&mut self) -> Result<(), RobotIoError> {
        if let Timing::RealTime { epoch, .. } = self.timing {
            let wall = seconds_since(epoch, Instant::now());
            while self.world.time_s < wall {
                self.world.step(1);
            }
        }
        let now = self.now_s();
        if self.joint_state.as_ref().is_none_or(|s| s.stamp_s != now) {
            let (q, qd) = self.world.joint_state();
            let msg = JointState {
                header: Header::new(
                    self.header_stamp(now),
                    self.world.robot.config.base_link.clone(),
                ),
                name: self.joints.clone(),
                position: q,
                velocity: qd,
                effort: Vec::new(),
            };
            self.joint_state = Some(Stamped {
                stamp_s: now,
                value: msg,
            });
        }
        let index = (now * self.camera_rate_hz + 1e-9).floor().max(0.0) as u64;
        if self.frame_index != Some(index) {
            self.frame_index = Some(index);
            self.frame_time_s = now;
            self.rendered.clear();
        }
        Ok(())
    }

    fn joint_state(&self) -> Option<&Stamped<JointState>> {
        self.joint_state.as_ref()
    }

    fn frame_stamp(&self, camera: &str) -> Option<f64> {
        if !self
            .world
            .robot
            .config
            .cameras
            .iter()
            .any(|c| c.name == camera)
        {
            return None;
        }
        self.frame_index?;
        Some(
            self.rendered
                .get(camera)
                .map_or(self.frame_time_s, |f| f.stamp_s),
        )
    }

    fn frame(&mut self, camera: &str) -> Result<Option<Stamped<CameraFrame>>, RobotIoError> {
        if let Some(f) = self.rendered.get(camera) {
            return Ok(Some(f.clone()));
        }
        let Some(cam) = self
            .world
            .robot
            .config
            .cameras
            .iter()
            .find(|c| c.name == camera)
        else {
            return Ok(None);
        };
        let depth = cam.depth;
        // Rendered now: at the frame's time unless the loop asks later within the frame period.
        let stamp_s = self.now_s();
        let f = self.world.render_camera(camera).map_err(sim_err)?;
        let header = Header::new(self.header_stamp(stamp_s), format!("{camera}_optical"));
        let frame = CameraFrame {
            depth: depth.then(|| Image::depth_32fc1(header.clone(), f.width, f.height, &f.depth)),
            color: Image::rgb8(header, f.width, f.height, f.rgb),
        };
        let stamped = Stamped {
            stamp_s,
            value: frame,
        };
        self.rendered.insert(camera.to_owned(), stamped.clone());
        Ok(Some(stamped))
    }

    fn instruction(&self) -> Option<&str> {
        self.instruction.as_deref()
    }

    fn privileged(&mut self) -> Result<Option<Privileged>, RobotIoError> {
        Ok(Some(Privileged {
            scene: self.world.scene(),
            joint_targets: self.world.targets().to_vec(),
        }))
    }

    fn task_success(&mut self) -> Result<Option<bool>, RobotIoError> {
        match &mut self.tracker {
            Some(t) => t.update(&self.world).map(Some).map_err(sim_err),
            None => Ok(None),
        }
    }

    fn send(&mut self, command: &JointTrajectory) -> Result<(), RobotIoError> {
        let q = self.targets_from(command).map_err(RobotIoError::Robot)?;
        self.world.command(&q).map_err(sim_err)
    }

    fn advance(&mut self, dt_s: f64) -> Result<bool, RobotIoError> {
        if let Timing::Driven { .. } = self.timing {
            self.tick += 1;
            self.world.advance_to(self.tick as f64 * dt_s);
        }
        Ok(true)
    }
}
