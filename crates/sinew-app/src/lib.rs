//! Sinew's application layer: what the `sinew` commands do, as a library the binary (and the
//! end-to-end tests) call. It is the one crate that knows every adapter and wires them into
//! the one control loop of `sinew-runtime`:
//!
//! - [`resolve`]: robots, tasks and policy folders by name, devices.
//! - [`episode`]: a simulated episode through the loop; [`batch`]: `sim run` and `eval` on
//!   the one worker pool ([`pool`]); [`dataset`]: demonstrations, DAgger and takeover data.
//! - [`live`]: `sinew run` on a robot's bus keys; [`serve`]: a robot served on the bus
//!   behind its own limits (`sim serve`, hardware drivers); [`replay`]: recordings through a
//!   policy, to rerun, back on the bus.
//! - [`hardware`]: real arms (Feetech servos, webcams): serving, teleoperation, recording.
//! - [`remote`]: a policy served on the bus (`policy serve`) and `--policy zenoh:PREFIX`.
//! - [`recording`]: the recorder and rerun taps and the recording schema.
//! - [`camera`]: cameras (webcams, image files, a synthetic pattern) published on a robot's
//!   camera keys (`camera serve`).
//! - [`openpi`]: openpi's policy server protocol both ways: a policy served to openpi
//!   clients, and `openpi:HOST:PORT` as a policy.
//!
//! Errors are `anyhow` with context: this is the application, and every error ends up in
//! front of a user.

pub mod approach;
pub mod batch;
pub mod benches;
pub mod camera;
pub mod dataset;
pub mod episode;
pub mod execution;
pub mod hardware;
pub mod live;
pub mod openpi;
pub mod pool;
pub mod recording;
pub mod remote;
pub mod replay;
pub mod resolve;
pub mod serve;
pub mod sweep;
pub mod topics;

pub use execution::ExecutionSpec;
