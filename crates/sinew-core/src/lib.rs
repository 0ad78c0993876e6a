//! Sinew's domain types and contracts, shared by every adapter: what a policy sees
//! ([`Observation`]), what it returns ([`ActionChunk`]), the action spaces ([`ActionKind`]),
//! the [`Policy`] trait, a robot as the loop sees it ([`robot_io::RobotIo`]), the recorded
//! [`events`], the error of description files ([`files::FileError`]) and the bounded hand-off
//! thread every slow consumer runs on ([`handoff::Handoff`]).
//!
//! This crate knows no model framework, transport or simulator; it sits just above the wire
//! types of `sinew-msgs` (camera frames are kept as `sensor_msgs/Image` so that a frame received
//! from the bus reaches a policy without a copy).

pub mod events;
pub mod files;
pub mod handoff;
pub mod rng;
pub mod robot_io;

pub use robot_io::{Privileged, RobotIo};

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
pub use sinew_msgs::Image;

/// The kind of action a policy emits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    /// Absolute joint positions (rad or m), one per robot joint, gripper joint included.
    JointPosition,
    /// Joint position deltas from the current measured position (rad or m).
    JointDelta,
    /// End-effector deltas in the robot's base frame: dx, dy, dz (m), droll, dpitch, dyaw
    /// (rad, applied in the base frame), then the gripper opening in [0, 1] (1 = open).
    EeDelta,
}

impl ActionKind {
    /// The name used in configuration files.
    pub fn as_str(self) -> &'static str {
        match self {
            ActionKind::JointPosition => "joint_position",
            ActionKind::JointDelta => "joint_delta",
            ActionKind::EeDelta => "ee_delta",
        }
    }
}

impl std::fmt::Display for ActionKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Everything a policy sees at one instant.
#[derive(Debug, Clone, Default)]
pub struct Observation {
    /// Camera frames by camera name (as named in robot.toml).
    pub images: BTreeMap<String, Image>,
    /// Measured joint positions (rad or m), in the order of robot.toml's joints.
    pub joint_positions: Vec<f64>,
    /// Measured joint velocities (rad/s or m/s); empty when unknown.
    pub joint_velocities: Vec<f64>,
    /// The language instruction.
    pub instruction: String,
    /// When the observation was taken (s, on the runtime's clock).
    pub stamp_s: f64,
    /// The policy step it was taken for (counted from 0 at the episode's start).
    pub step: u64,
    /// What a simulator knows beyond the sensors, when the robot is one: for scripted experts.
    pub privileged: Option<Privileged>,
}

/// Where the time of one inference went (ms).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Timings {
    /// Image resizing and normalisation, prompt tokenisation.
    pub preprocess_ms: f64,
    /// The network (all decoding steps for autoregressive models).
    pub forward_ms: f64,
    /// Tokens to actions: detokenisation and un-normalisation.
    pub decode_ms: f64,
}

impl Timings {
    /// From four instants: start, preprocessing done, forward done, decoding done.
    pub fn from_marks(marks: [std::time::Instant; 4]) -> Self {
        let ms = |a: std::time::Instant, b: std::time::Instant| (b - a).as_secs_f64() * 1e3;
        Self {
            preprocess_ms: ms(marks[0], marks[1]),
            forward_ms: ms(marks[1], marks[2]),
            decode_ms: ms(marks[2], marks[3]),
        }
    }

    /// The sum of the three parts.
    pub fn total_ms(&self) -> f64 {
        self.preprocess_ms + self.forward_ms + self.decode_ms
    }
}

/// A policy's answer to one observation: `T` actions of `D` dimensions each, in the policy's
/// action space and the robot's units (already un-normalised).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ActionChunk {
    /// The action space of `actions`.
    pub kind: Option<ActionKind>,
    /// `[T][D]` actions; `actions[0]` applies at the observation's time step.
    pub actions: Vec<Vec<f64>>,
    /// The raw tokens the model emitted (empty for models that do not emit tokens).
    pub tokens: Vec<u32>,
    /// Time spent, by stage.
    pub timings: Timings,
    /// The observation's stamp (s) this chunk was predicted from.
    pub observation_stamp_s: f64,
    /// Things that went wrong and were handled (a non-action token replaced, a FAST sequence
    /// decoded in relaxed mode, ...). Empty in the normal case.
    pub warnings: Vec<String>,
    /// What a demonstrator commands for this observation, when the chunk comes from one (a
    /// scripted expert): its own action before any exploration noise was added to `actions`.
    /// Datasets record it as the frame's `action`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<Vec<f64>>,
}

impl ActionChunk {
    /// Number of steps `T`.
    pub fn len(&self) -> usize {
        self.actions.len()
    }

    /// Whether the chunk holds no step.
    pub fn is_empty(&self) -> bool {
        self.actions.is_empty()
    }

    /// Dimensions per step `D` (0 when empty).
    pub fn dim(&self) -> usize {
        self.actions.first().map_or(0, Vec::len)
    }
}

/// What a policy expects and produces.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicySpec {
    /// Architecture name (`openvla`, `sinew-tiny`, `expert`, ...).
    pub architecture: String,
    /// Cameras read, by robot.toml name, in the order the model takes them.
    pub cameras: Vec<String>,
    /// Image size the model takes (width, height); other sizes are resized.
    pub image_size: (u32, u32),
    /// Whether the model reads the joint state.
    pub uses_state: bool,
    /// State dimensions the model expects (0 when it reads none).
    pub state_dim: usize,
    /// Action space of the chunks.
    pub action_kind: ActionKind,
    /// Dimensions per action `D`.
    pub action_dim: usize,
    /// Steps per chunk `T`.
    pub chunk_length: usize,
    /// Rate the actions are meant for (Hz).
    pub control_rate_hz: f64,
    /// How actions become tokens (`bins`, `fast`, or `none`).
    pub action_tokenizer: String,
    /// Chunk entries the policy is meant to execute before the next inference (LeRobot's
    /// `n_action_steps`), when its folder says; the runtime's default for sync execution.
    pub n_action_steps: Option<usize>,
}

/// Errors of policies.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// A file could not be read.
    #[error("{0}: {1}")]
    Io(PathBuf, std::io::Error),
    /// A file has the wrong content.
    #[error("{0}: {1}")]
    Parse(PathBuf, String),
    /// A configuration value is invalid.
    #[error("configuration: {0}")]
    Config(String),
    /// Weights that do not fit the configuration.
    #[error("weights: {0}")]
    Weights(String),
    /// Lengths or sizes that do not match.
    #[error("shape: {0}")]
    Shape(String),
    /// An observation the policy cannot use (missing camera, wrong encoding, ...).
    #[error("observation: {0}")]
    Observation(String),
    /// NaN or infinity where a number is needed.
    #[error("{0}")]
    NonFinite(String),
    /// The model framework failed.
    #[error("model: {0}")]
    Model(String),
}

/// A policy: observations in, action chunks out. Implementations own their model and device;
/// the runtime calls them from one inference thread.
pub trait Policy: Send {
    /// What the policy expects and produces.
    fn spec(&self) -> &PolicySpec;

    /// Forget any state kept between calls (start of an episode).
    fn reset(&mut self) {}

    /// One action chunk for one observation.
    fn infer(&mut self, observation: &Observation) -> Result<ActionChunk, PolicyError>;

    /// One chunk per observation, in order. Models that can run several observations in one
    /// forward pass (a policy server batching robots' requests) override it; the default runs
    /// them one by one.
    fn infer_batch(
        &mut self,
        observations: &[&Observation],
    ) -> Vec<Result<ActionChunk, PolicyError>> {
        observations.iter().map(|o| self.infer(o)).collect()
    }

    /// Real-time chunking: how many committed actions this policy can condition its next chunk
    /// on (0: it cannot).
    fn prefix_capacity(&self) -> usize {
        0
    }

    /// Real-time chunking: one chunk for `observation` whose first `prefix.len()` actions are
    /// `prefix` (the actions the robot executes while this chunk is being computed, in the
    /// policy's action space, un-normalised, as `ActionChunk::actions`) and whose rest is
    /// predicted knowing them, so the chunk joins what the robot does without a jump. An empty
    /// prefix is [`Policy::infer`]. Policies that cannot condition on actions refuse a
    /// non-empty one.
    fn infer_with_prefix(
        &mut self,
        observation: &Observation,
        prefix: &[Vec<f64>],
    ) -> Result<ActionChunk, PolicyError> {
        if prefix.is_empty() {
            return self.infer(observation);
        }
        Err(PolicyError::Config(format!(
            "{} cannot condition a chunk on committed actions (real-time chunking)",
            self.spec().architecture
        )))
    }
}
