//! What happened during an episode, as recorded next to the sensor streams.
//!
//! These travel as JSON inside `std_msgs/String` messages (`<ns>/sinew/events` and
//! `<ns>/sim/scene`, see `docs/wire-format.md`), so an MCAP recording holds everything the rerun
//! view shows and `sinew replay --rrd` can rebuild it without the process that wrote it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::Timings;

/// One event of the control loop.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A policy step began (`step` counts policy steps from 0).
    Step {
        /// Policy step.
        step: u64,
    },
    /// An inference finished: what the policy emitted besides the chunk itself.
    Inference {
        /// Policy step of the observation.
        step: u64,
        /// Raw tokens.
        tokens: Vec<u32>,
        /// Time spent, by stage (ms).
        timings: Timings,
        /// Wall time of the whole call (ms).
        wall_ms: f64,
        /// Handled problems reported by the policy.
        warnings: Vec<String>,
        /// The simulated delay before the chunk was used (lockstep runs with a latency
        /// model), ms; absent otherwise.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        latency_ms: Option<f64>,
    },
    /// The safety filter changed commands since the last event, by kind (`position`,
    /// `velocity`, `acceleration`, `non_finite`, `workspace`).
    Intervention {
        /// New interventions by kind.
        kinds: BTreeMap<String, u64>,
    },
    /// The robot started holding: one event per hold, however long it lasts.
    Hold {
        /// Why, in words (`camera `front` frame is 512 ms old`).
        reason: String,
        /// The reason's name (`camera_stale`, `estop`, ...; see the runtime's `HoldReason`).
        #[serde(default)]
        kind: String,
    },
    /// The robot follows the policy again after a hold.
    HoldEnded {
        /// The name of the reason the hold started with.
        kind: String,
        /// How long it held, s.
        duration_s: f64,
    },
    /// The episode ended.
    Outcome {
        /// Whether the task's success check passed.
        success: bool,
        /// Policy steps taken.
        steps: u64,
    },
}

impl Event {
    /// As JSON text.
    pub fn to_json(&self) -> String {
        // Serialising these plain structs cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// From JSON text.
    pub fn from_json(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }
}

/// Geometry of a scene item, in its own frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "shape", rename_all = "snake_case")]
pub enum Shape {
    /// A box centred on the frame origin.
    Box {
        /// Half extents along x, y, z (m).
        half_extents_m: [f64; 3],
    },
}

/// One object of the world around the robot (table, cubes, zones, bowl walls).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SceneItem {
    /// Name (`cube_red`, `zone_blue`, `table` ...).
    pub name: String,
    /// Geometry.
    #[serde(flatten)]
    pub shape: Shape,
    /// Colour, linear RGB 0-1.
    pub rgb: [f32; 3],
    /// `world_from_item`: translation x, y, z (m) then quaternion x, y, z, w.
    pub world_from_item: [f64; 7],
    /// Whether it moves (objects) or not (table, zones, bowl).
    #[serde(default)]
    pub movable: bool,
}

/// The scene at one instant.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Scene {
    /// Items.
    pub items: Vec<SceneItem>,
}

impl Scene {
    /// As JSON text.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// From JSON text.
    pub fn from_json(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }
}
