//! A recording played back as a robot ([`RobotIo`]), so the control loop can run a policy on
//! exactly what a robot saw and compare its commands with the recorded ones.
//!
//! The loop's ticks are the recorded joint states that a command followed; at each tick the
//! robot shows that joint state, the newest recorded frame of each camera, the instruction and
//! (recordings of the simulator) the scene, with the joint targets the simulator tracked then:
//! the command recorded at the previous tick. Commands sent to it go nowhere.
//!
//! Frames come back as the simulator rendered them, whatever the recording stored: JPEG/PNG
//! colour (`<cam>/image_raw/compressed`) decoded to `rgb8`, `16UC1` millimetre depth to
//! `32FC1` metres (no reading = infinity).

use std::collections::BTreeMap;

use sinew_core::events::Scene;
use sinew_core::robot_io::{
    joints_in_order, CameraFrame, Privileged, RobotIo, RobotIoError, Stamped, Timing,
};
use sinew_msgs::keys::{key_of_topic, RobotKeys};
use sinew_msgs::{AnyMessage, Image, JointState, JointTrajectory};

use crate::codec::{decode_color, depth_to_metres};
use crate::Recording;

/// What could not be read back from a recording.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DecodeNotes {
    /// Payloads that did not decode (their first few errors are logged).
    pub malformed: u64,
    /// Messages of types Sinew does not decode, by schema.
    pub unknown: BTreeMap<String, u64>,
}

impl DecodeNotes {
    /// Counts a payload that decoded but whose image did not (logging the first few).
    fn undecodable(&mut self, key: &str, t_ns: u64, e: &dyn std::fmt::Display) {
        self.malformed += 1;
        if self.malformed <= 3 {
            tracing::warn!("{key} at {t_ns} ns: {e}");
        }
    }
}

/// The messages of a recording in log-time order (file order within one instant), decoded,
/// with their bus key.
pub fn decoded_messages(rec: &Recording) -> (Vec<(String, u64, AnyMessage)>, DecodeNotes) {
    let mut out = Vec::with_capacity(rec.messages.len());
    let mut notes = DecodeNotes::default();
    for m in &rec.messages {
        match m.decode() {
            Some(Ok(msg)) => out.push((key_of_topic(&m.topic), m.log_time_ns, msg)),
            Some(Err(e)) => {
                notes.malformed += 1;
                if notes.malformed <= 3 {
                    tracing::warn!("{} at {} ns: {e}", m.topic, m.log_time_ns);
                }
            }
            None => *notes.unknown.entry(m.schema.clone()).or_default() += 1,
        }
    }
    out.sort_by_key(|(_, t, _)| *t);
    (out, notes)
}

/// Why a recording cannot be played back as a robot.
#[derive(Debug, thiserror::Error)]
pub enum PlaybackError {
    /// It holds no joint state followed by a command.
    #[error("the recording holds no joint state followed by a command on {0}")]
    NoTicks(String),
    /// A joint state that does not fit the robot.
    #[error("joint state at {t_ns} ns: {source}")]
    JointState {
        /// Its log time.
        t_ns: u64,
        /// What is wrong.
        source: RobotIoError,
    },
    /// A scene that is not valid JSON.
    #[error("scene at {t_ns} ns: {reason}")]
    Scene {
        /// Its log time.
        t_ns: u64,
        /// The parser's message.
        reason: String,
    },
}

/// A recording as a robot.
#[derive(Debug)]
pub struct RecordedRobot {
    ticks: Vec<(u64, JointState)>,
    commands: BTreeMap<u64, Vec<f64>>,
    frames: BTreeMap<String, BTreeMap<u64, CameraFrame>>,
    scenes: BTreeMap<u64, Scene>,
    instructions: BTreeMap<u64, String>,
    home: Vec<f64>,
    index: usize,
    joint_state: Option<Stamped<JointState>>,
}

fn newest<T>(m: &BTreeMap<u64, T>, t_ns: u64) -> Option<(&u64, &T)> {
    m.range(..=t_ns).next_back()
}

impl RecordedRobot {
    /// Indexes `rec` for a robot with `joints` (robot.toml order), `cameras` and the keys of
    /// `keys`; `home` are the joint targets before the first command.
    pub fn new(
        rec: &Recording,
        keys: &RobotKeys,
        joints: &[String],
        cameras: &[String],
        home: Vec<f64>,
    ) -> Result<(Self, DecodeNotes), PlaybackError> {
        let (messages, mut notes) = decoded_messages(rec);
        let mut states = Vec::new();
        let mut commands = BTreeMap::new();
        let mut frames: BTreeMap<String, BTreeMap<u64, CameraFrame>> = BTreeMap::new();
        let mut depth: BTreeMap<(String, u64), Image> = BTreeMap::new();
        let mut scenes = BTreeMap::new();
        let mut instructions = BTreeMap::new();
        let (js_key, cmd_key) = (keys.joint_states(), keys.joint_commands());
        for (key, t, msg) in messages {
            match msg {
                AnyMessage::JointState(js) if key == js_key => states.push((t, js)),
                AnyMessage::JointTrajectory(jt) if key == cmd_key => {
                    if let Some(p) = jt.points.first() {
                        let by_name = JointState {
                            name: jt.joint_names.clone(),
                            position: p.positions.clone(),
                            ..Default::default()
                        };
                        let q = joints_in_order(&by_name, joints)
                            .map(|(q, _)| q)
                            .unwrap_or_else(|_| p.positions.clone());
                        commands.insert(t, q);
                    }
                }
                AnyMessage::Image(im) => {
                    for c in cameras {
                        if key == keys.camera_image(c) {
                            frames.entry(c.clone()).or_default().insert(
                                t,
                                CameraFrame {
                                    color: im.clone(),
                                    depth: None,
                                },
                            );
                        } else if key == keys.camera_depth(c) {
                            match depth_to_metres(&im) {
                                Ok(d) => {
                                    depth.insert((c.clone(), t), d);
                                }
                                Err(e) => notes.undecodable(&key, t, &e),
                            }
                        }
                    }
                }
                AnyMessage::CompressedImage(ci) => {
                    for c in cameras {
                        if key == keys.camera_compressed(c) {
                            match decode_color(&ci) {
                                Ok(color) => {
                                    frames
                                        .entry(c.clone())
                                        .or_default()
                                        .insert(t, CameraFrame { color, depth: None });
                                }
                                Err(e) => notes.undecodable(&key, t, &e),
                            }
                        }
                    }
                }
                AnyMessage::String(s) if key == keys.sim_scene() => {
                    let scene = Scene::from_json(&s.data).map_err(|e| PlaybackError::Scene {
                        t_ns: t,
                        reason: e.to_string(),
                    })?;
                    scenes.insert(t, scene);
                }
                AnyMessage::String(s) if key == keys.instruction() => {
                    instructions.insert(t, s.data);
                }
                _ => {}
            }
        }
        for ((cam, t), d) in depth {
            if let Some(f) = frames.get_mut(&cam).and_then(|m| m.get_mut(&t)) {
                f.depth = Some(d);
            }
        }
        // The loop's ticks: joint states a command followed (the last one of an episode has
        // none: it ended there).
        let mut ticks = Vec::new();
        for (t, js) in states {
            if commands.contains_key(&t) {
                joints_in_order(&js, joints)
                    .map_err(|source| PlaybackError::JointState { t_ns: t, source })?;
                ticks.push((t, js));
            }
        }
        if ticks.is_empty() {
            return Err(PlaybackError::NoTicks(cmd_key));
        }
        let robot = Self {
            ticks,
            commands,
            frames,
            scenes,
            instructions,
            home,
            index: 0,
            joint_state: None,
        };
        Ok((robot, notes))
    }

    /// The recorded commands by log time, ns (robot.toml order).
    pub fn recorded_commands(&self) -> &BTreeMap<u64, Vec<f64>> {
        &self.commands
    }

    /// Ticks in the recording.
    pub fn ticks(&self) -> usize {
        self.ticks.len()
    }

    fn t_ns(&self) -> u64 {
        self.ticks.get(self.index).map_or(0, |(t, _)| *t)
    }
}

impl RobotIo for RecordedRobot {
    fn timing(&self) -> Timing {
        Timing::Driven {
            now_s: self.t_ns() as f64 / 1e9,
        }
    }

    fn refresh(&mut self) -> Result<(), RobotIoError> {
        let t = self.t_ns();
        if self
            .joint_state
            .as_ref()
            .is_none_or(|s| s.stamp_s != t as f64 / 1e9)
        {
            if let Some((_, js)) = self.ticks.get(self.index) {
                self.joint_state = Some(Stamped {
                    stamp_s: t as f64 / 1e9,
                    value: js.clone(),
                });
            }
        }
        Ok(())
    }

    fn joint_state(&self) -> Option<&Stamped<JointState>> {
        self.joint_state.as_ref()
    }

    fn frame_stamp(&self, camera: &str) -> Option<f64> {
        let m = self.frames.get(camera)?;
        newest(m, self.t_ns()).map(|(t, _)| *t as f64 / 1e9)
    }

    fn frame(&mut self, camera: &str) -> Result<Option<Stamped<CameraFrame>>, RobotIoError> {
        let Some(m) = self.frames.get(camera) else {
            return Ok(None);
        };
        Ok(newest(m, self.t_ns()).map(|(t, f)| Stamped {
            stamp_s: *t as f64 / 1e9,
            value: f.clone(),
        }))
    }

    fn instruction(&self) -> Option<&str> {
        newest(&self.instructions, self.t_ns()).map(|(_, s)| s.as_str())
    }

    fn privileged(&mut self) -> Result<Option<Privileged>, RobotIoError> {
        let t = self.t_ns();
        let Some((_, scene)) = newest(&self.scenes, t) else {
            return Ok(None);
        };
        // The simulator's targets were the last command it was sent.
        let targets = self
            .commands
            .range(..t)
            .next_back()
            .map_or_else(|| self.home.clone(), |(_, q)| q.clone());
        Ok(Some(Privileged {
            scene: scene.clone(),
            joint_targets: targets,
        }))
    }

    fn send(&mut self, _command: &JointTrajectory) -> Result<(), RobotIoError> {
        Ok(())
    }

    fn advance(&mut self, _dt_s: f64) -> Result<bool, RobotIoError> {
        self.index += 1;
        Ok(self.index < self.ticks.len())
    }
}
