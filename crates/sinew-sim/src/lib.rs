//! Sinew's simulator: a rapier3d world with the robot (from its URDF, as a multibody with PD
//! position motors), a table and the objects of a language task, rendered by CPU cameras.
//!
//! The world is data ([`SimWorld`]); [`SimWorld::command`] sets joint targets and
//! [`SimWorld::step`] advances fixed 1/240 s physics steps, so the same seed and commands give
//! the same trajectory. [`SimRobot`] puts a world behind Sinew's robot interface (the loop
//! drives it like any robot) and [`ExpertPolicy`] puts a task's scripted expert behind the
//! policy interface (it reads the privileged scene from the observation).

pub mod expert;
pub mod policies;
pub mod render;
pub mod robot_io;
pub mod success;
mod swap;
pub mod task;
pub mod world;

pub use policies::ExpertPolicy;
pub use render::{Frame, Intrinsics, Mesh};
pub use robot_io::SimRobot;
pub use success::{SuccessRule, SuccessTracker};
pub use task::{Episode, ObjectSpec, Phrasing, SuccessKind, TaskSpec};
pub use world::{SimObject, SimWorld, PHYSICS_HZ};

/// Errors of the simulator.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// A task file could not be read, or has a bad value.
    #[error(transparent)]
    File(#[from] sinew_core::files::FileError),
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
