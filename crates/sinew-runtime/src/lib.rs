//! Sinew's runtime: the closed loop from sensor streams to safe joint commands, written over
//! the `sinew-core` traits and the robot description only (no transport, simulator or model
//! framework). The harnesses (`sinew run` on the bus, `sinew sim run` in lockstep) live in the
//! CLI and feed it time, sensor freshness, chunks and e-stop events.
//!
//! - [`control::Runtime`]: watchdog, when to ask for a chunk, interpolation, the command.
//! - [`chunks::ChunkScheduler`]: chunks on a timeline of policy steps, sync or async
//!   execution, merging, latency compensation.
//! - [`safety::SafetyFilter`]: position, velocity and acceleration limits, NaN rejection,
//!   workspace box, holding.
//! - [`worker::InferenceWorker`]: the policy on its own named thread, panics and stalls
//!   reported instead of taking the process down.
//! - [`telemetry::LoopStats`]: loop period percentiles.

pub mod chunks;
pub mod control;
pub mod safety;
pub mod telemetry;
pub mod worker;

pub use chunks::{ChunkScheduler, Execution, Merge};
pub use control::{
    HoldReason, Interpolation, Request, Runtime, RuntimeConfig, RuntimeStats, Sensors,
};
pub use safety::{Interventions, JointLimits, SafetyError, SafetyFilter, SafetyStats};
