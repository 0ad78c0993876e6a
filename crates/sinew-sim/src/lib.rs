//! Sinew's simulator: a rapier3d world with the robot (from its URDF, as a multibody with PD
//! position motors), a table and the objects of a language task, rendered by CPU cameras.
//!
//! The world is data ([`SimWorld`]); [`SimWorld::command`] sets joint targets and
//! [`SimWorld::step`] advances fixed 1/240 s physics steps, so the same seed and commands give
//! the same trajectory.

pub mod expert;
pub mod render;
pub mod task;
pub mod world;

use std::path::PathBuf;

pub use render::{Frame, Intrinsics, Mesh};
pub use task::{Episode, ObjectSpec, SuccessKind, TaskSpec};
pub use world::{SimObject, SimWorld, PHYSICS_HZ};

/// Errors of the simulator.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// A file could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A file is not valid TOML for its schema.
    #[error("{}: {reason}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        reason: String,
    },
    /// A field with a bad value.
    #[error("{}: {field}: {reason}", file.display())]
    Field {
        /// The file.
        file: PathBuf,
        /// The field.
        field: String,
        /// What is wrong.
        reason: String,
    },
    /// Objects could not be placed without overlap.
    #[error("task {task}: could not place the objects for seed {seed}")]
    Placement {
        /// Task.
        task: String,
        /// Seed.
        seed: u64,
    },
    /// The robot could not be simulated as described.
    #[error("robot: {0}")]
    Robot(String),
    /// A command was rejected.
    #[error("command rejected: {0}")]
    Command(String),
}
