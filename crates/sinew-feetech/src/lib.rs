//! Feetech serial-bus servos (STS3215, as in the SO-101 arm) for Sinew.
//!
//! - [`protocol`]: the packet format (checksums, status error bits, SYNC_READ/SYNC_WRITE).
//! - [`registers`]: the STS3215 control table and its sign-magnitude encodings.
//! - [`bus`]: transactions over a serial port with timeouts, bounded retries and counters.
//! - [`emulator`]: emulated servos on a pseudo-terminal, with injected faults, for tests and
//!   for `sinew robot emulate`.
//! - [`calibration`]: LeRobot's calibration files and the units of a joint.
//! - [`arm`]: an arm of such servos as a `RobotIo`, and LeRobot's calibration procedure.

pub mod arm;
pub mod bus;
pub mod calibration;
pub mod emulator;
pub mod protocol;
pub mod registers;

pub use arm::{calibrate, ArmConfig, ArmError, ArmStats, CalibrationGuide, FeetechArm};
pub use bus::{BusConfig, BusError, BusStats, FeetechBus};
pub use calibration::{ArmRole, Calibration, MotorCalibration};
pub use emulator::{Emulator, EmulatorConfig, Fault, FaultKind, Hand};

/// The SO-101's motors: name (as LeRobot and robots/so101 call the joints) and servo ID.
pub const SO101_MOTORS: [(&str, u8); 6] = [
    ("shoulder_pan", 1),
    ("shoulder_lift", 2),
    ("elbow_flex", 3),
    ("wrist_flex", 4),
    ("wrist_roll", 5),
    ("gripper", 6),
];

/// Joints calibrated over the whole turn (LeRobot: the wrist roll).
pub const SO101_FULL_TURN: [&str; 1] = ["wrist_roll"];
