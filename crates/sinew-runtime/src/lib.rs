//! Sinew's runtime: the closed loop from sensor streams to safe joint commands, written over
//! the `sinew-core` traits and the robot description only (no transport, simulator or model
//! framework).
//!
//! - [`session::Session`]: the one control loop, over any [`sinew_core::RobotIo`] (a robot on
//!   the bus, the simulator in lockstep, a recording), with inference threaded or inline and
//!   taps (recorders, viewers, datasets) watching.
//! - [`control::Runtime`]: watchdog, when to ask for a chunk, interpolation, the command.
//! - [`chunks::ChunkScheduler`]: chunks on a timeline of policy steps, sync or async
//!   execution, merging, latency compensation.
//! - [`safety::SafetyFilter`]: position, velocity and acceleration limits, NaN rejection,
//!   workspace box, holding.
//! - [`worker::Inference`]: the policy on its own named thread or inline, panics reported
//!   instead of taking the process down.
//! - [`latency`]: simulated inference latency for driven (lockstep, replay) loops.
//! - [`policies`]: policies made of other policies (exploration noise).
//! - [`telemetry::LoopStats`]: loop period percentiles.

pub mod chunks;
pub mod control;
pub mod latency;
pub mod policies;
pub mod safety;
pub mod session;
pub mod telemetry;
pub mod worker;

pub use chunks::{ChunkScheduler, Execution, Merge};
pub use control::{
    hold_kind, HoldReason, Interpolation, Request, Runtime, RuntimeConfig, RuntimeStats, Sensors,
};
pub use latency::{LatencyError, LatencyModel, LatencySampler};
pub use safety::{Interventions, JointLimits, SafetyError, SafetyFilter, SafetyStats};
pub use session::{
    End, Record, Session, SessionConfig, SessionError, SessionReport, StepRecord, Tap, Telemetry,
    TickResult,
};
pub use worker::Inference;
