//! LeRobot-compatible calibration, and the units of a joint.
//!
//! LeRobot keeps one JSON file per arm, `<calibration dir>/robots/so101_follower/<id>.json`
//! (leader arms: `teleoperators/so101_leader/<id>.json`), a map from motor name to
//! `{"id", "drive_mode", "homing_offset", "range_min", "range_max"}`. The calibration
//! directory is `$HF_LEROBOT_CALIBRATION`, else `$HF_LEROBOT_HOME/calibration`, else
//! `$HF_HOME/lerobot/calibration`, else `~/.cache/huggingface/lerobot/calibration`. Sinew reads
//! and writes the same files, so an arm calibrated by either works with both.
//!
//! Units (`raw` is Present_Position, steps, after the servo subtracts Homing_Offset;
//! `mid = (range_min + range_max) / 2`):
//!
//! | unit | arm joints | gripper |
//! |---|---|---|
//! | LeRobot `DEGREES` (`use_degrees=True`) | `(raw − mid) · 360 / 4095` | same |
//! | LeRobot `RANGE_M100_100` | `((clamp(raw) − min) / (max − min)) · 200 − 100`, negated when `drive_mode` = 1 | — |
//! | LeRobot `RANGE_0_100` | — | `((clamp(raw) − min) / (max − min)) · 100`, `100 − x` when `drive_mode` = 1 |
//! | Sinew radians | `(raw − mid) · 2π / 4095`, negated when `drive_mode` = 1 (LeRobot's degrees in radians: the zero of so101_new_calib.urdf) | `RANGE_0_100` mapped linearly onto robot.toml's `[position_min, position_max]` |

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::registers::STS3215_RESOLUTION;

/// Steps per turn minus one, as LeRobot divides by.
const MAX_RES: f64 = (STS3215_RESOLUTION - 1) as f64;

/// One motor's calibration, as LeRobot writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MotorCalibration {
    /// Servo ID on the bus.
    pub id: u8,
    /// 1: the joint turns the other way.
    pub drive_mode: u8,
    /// Homing_Offset, steps (actual − 2047 at the middle pose).
    pub homing_offset: i32,
    /// Lowest Present_Position seen while calibrating, steps.
    pub range_min: i32,
    /// Highest, steps.
    pub range_max: i32,
}

/// Why a calibration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum CalibrationError {
    /// The file could not be read or written.
    #[error("{path}: {why}")]
    Io {
        /// File.
        path: PathBuf,
        /// Why.
        why: String,
    },
    /// The file is not a LeRobot calibration.
    #[error("{path}: not a LeRobot calibration: {why}")]
    Format {
        /// File.
        path: PathBuf,
        /// Why.
        why: String,
    },
    /// A joint of the robot has no motor in the calibration.
    #[error("{path}: no calibration for joint {joint:?} (motors: {motors})")]
    MissingJoint {
        /// File.
        path: PathBuf,
        /// Joint.
        joint: String,
        /// Motors in the file.
        motors: String,
    },
    /// A motor's values cannot be right.
    #[error("{path}: motor {motor:?}: {why}")]
    Invalid {
        /// File.
        path: PathBuf,
        /// Motor.
        motor: String,
        /// Why.
        why: String,
    },
}

/// An arm's calibration: motors by name, in the file's order.
#[derive(Debug, Clone, PartialEq)]
pub struct Calibration {
    /// Motor name and calibration.
    pub motors: Vec<(String, MotorCalibration)>,
}

impl Calibration {
    /// Parses LeRobot's JSON; `path` names the source in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self, CalibrationError> {
        let fmt = |why: String| CalibrationError::Format {
            path: path.to_owned(),
            why,
        };
        let v: serde_json::Value = serde_json::from_str(text).map_err(|e| fmt(e.to_string()))?;
        let obj = v
            .as_object()
            .ok_or_else(|| fmt("expected an object of motors".into()))?;
        let mut motors = Vec::with_capacity(obj.len());
        for (name, m) in obj {
            let cal: MotorCalibration = serde_json::from_value(m.clone())
                .map_err(|e| fmt(format!("motor {name:?}: {e}")))?;
            motors.push((name.clone(), cal));
        }
        let c = Self { motors };
        c.validate(path)?;
        Ok(c)
    }

    /// Reads a calibration file.
    pub fn read(path: &Path) -> Result<Self, CalibrationError> {
        let text = std::fs::read_to_string(path).map_err(|e| CalibrationError::Io {
            path: path.to_owned(),
            why: e.to_string(),
        })?;
        Self::parse(&text, path)
    }

    /// Writes it as LeRobot does (indented JSON), creating the folder.
    pub fn write(&self, path: &Path) -> Result<(), CalibrationError> {
        let io = |e: std::io::Error| CalibrationError::Io {
            path: path.to_owned(),
            why: e.to_string(),
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let mut map = serde_json::Map::new();
        for (name, m) in &self.motors {
            map.insert(
                name.clone(),
                serde_json::to_value(m).map_err(|e| CalibrationError::Format {
                    path: path.to_owned(),
                    why: e.to_string(),
                })?,
            );
        }
        let text = serde_json::to_string_pretty(&serde_json::Value::Object(map)).map_err(|e| {
            CalibrationError::Format {
                path: path.to_owned(),
                why: e.to_string(),
            }
        })?;
        std::fs::write(path, text + "\n").map_err(io)
    }

    fn validate(&self, path: &Path) -> Result<(), CalibrationError> {
        for (name, m) in &self.motors {
            let bad = |why: String| CalibrationError::Invalid {
                path: path.to_owned(),
                motor: name.clone(),
                why,
            };
            if m.range_min >= m.range_max {
                return Err(bad(format!(
                    "range_min {} is not below range_max {}",
                    m.range_min, m.range_max
                )));
            }
            if m.range_min < 0 || m.range_max >= STS3215_RESOLUTION {
                return Err(bad(format!(
                    "range {}..{} is outside 0..4095",
                    m.range_min, m.range_max
                )));
            }
            if m.homing_offset.abs() > 2047 {
                return Err(bad(format!(
                    "homing_offset {} is outside ±2047",
                    m.homing_offset
                )));
            }
            if m.drive_mode > 1 {
                return Err(bad(format!("drive_mode {} is not 0 or 1", m.drive_mode)));
            }
        }
        Ok(())
    }

    /// The motor called `name`.
    pub fn motor(&self, name: &str) -> Option<&MotorCalibration> {
        self.motors.iter().find(|(n, _)| n == name).map(|(_, m)| m)
    }

    /// The motors of `joints`, in that order; fails naming the first joint that has none.
    pub fn for_joints(
        &self,
        joints: &[String],
        path: &Path,
    ) -> Result<Vec<MotorCalibration>, CalibrationError> {
        joints
            .iter()
            .map(|j| {
                self.motor(j)
                    .copied()
                    .ok_or_else(|| CalibrationError::MissingJoint {
                        path: path.to_owned(),
                        joint: j.clone(),
                        motors: self
                            .motors
                            .iter()
                            .map(|(n, _)| n.as_str())
                            .collect::<Vec<_>>()
                            .join(", "),
                    })
            })
            .collect()
    }
}

/// What kind of SO-101 arm a calibration is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArmRole {
    /// The arm the policy (or a leader) drives.
    Follower,
    /// The arm a person moves (torque off).
    Leader,
}

/// LeRobot's calibration folder (see the module docs for the order of the variables).
pub fn lerobot_calibration_dir() -> PathBuf {
    let var = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(d) = var("HF_LEROBOT_CALIBRATION") {
        return d;
    }
    if let Some(d) = var("HF_LEROBOT_HOME") {
        return d.join("calibration");
    }
    let hf_home = var("HF_HOME").unwrap_or_else(|| {
        var("XDG_CACHE_HOME")
            .or_else(|| var("HOME").map(|h| h.join(".cache")))
            .unwrap_or_else(|| PathBuf::from(".cache"))
            .join("huggingface")
    });
    hf_home.join("lerobot").join("calibration")
}

/// The file LeRobot keeps an SO-101's calibration in, for arm `id`.
pub fn lerobot_calibration_path(role: ArmRole, id: &str) -> PathBuf {
    let sub = match role {
        ArmRole::Follower => "robots/so101_follower",
        ArmRole::Leader => "teleoperators/so101_leader",
    };
    lerobot_calibration_dir()
        .join(sub)
        .join(format!("{id}.json"))
}

/// LeRobot's `DEGREES` unit of a raw position.
pub fn raw_to_degrees(raw: i32, m: &MotorCalibration) -> f64 {
    let mid = f64::from(m.range_min + m.range_max) / 2.0;
    (f64::from(raw) - mid) * 360.0 / MAX_RES
}

/// LeRobot's `RANGE_M100_100` unit.
pub fn raw_to_m100_100(raw: i32, m: &MotorCalibration) -> f64 {
    let b = raw.clamp(m.range_min, m.range_max);
    let n = f64::from(b - m.range_min) / f64::from(m.range_max - m.range_min) * 200.0 - 100.0;
    if m.drive_mode == 1 {
        -n
    } else {
        n
    }
}

/// LeRobot's `RANGE_0_100` unit.
pub fn raw_to_0_100(raw: i32, m: &MotorCalibration) -> f64 {
    let b = raw.clamp(m.range_min, m.range_max);
    let n = f64::from(b - m.range_min) / f64::from(m.range_max - m.range_min) * 100.0;
    if m.drive_mode == 1 {
        100.0 - n
    } else {
        n
    }
}

/// How one joint's radians map to its servo's steps.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct JointUnits {
    /// The motor.
    pub motor: MotorCalibration,
    /// A gripper: LeRobot's 0..100 onto `[lo, hi]` rad; otherwise an angle about mid-range.
    pub gripper_range_rad: Option<(f64, f64)>,
}

impl JointUnits {
    /// Radians of a raw position.
    pub fn to_rad(&self, raw: i32) -> f64 {
        let m = &self.motor;
        match self.gripper_range_rad {
            Some((lo, hi)) => lo + raw_to_0_100(raw, m) / 100.0 * (hi - lo),
            None => {
                let a = raw_to_degrees(raw, m).to_radians();
                if m.drive_mode == 1 {
                    -a
                } else {
                    a
                }
            }
        }
    }

    /// The raw goal for `rad`, within the calibrated range.
    pub fn to_raw(&self, rad: f64) -> i32 {
        let m = &self.motor;
        let raw = match self.gripper_range_rad {
            Some((lo, hi)) => {
                let mut n = ((rad - lo) / (hi - lo)).clamp(0.0, 1.0);
                if m.drive_mode == 1 {
                    n = 1.0 - n;
                }
                f64::from(m.range_min) + n * f64::from(m.range_max - m.range_min)
            }
            None => {
                let a = if m.drive_mode == 1 { -rad } else { rad };
                let mid = f64::from(m.range_min + m.range_max) / 2.0;
                mid + a.to_degrees() * MAX_RES / 360.0
            }
        };
        if raw.is_finite() {
            (raw.round() as i32).clamp(m.range_min, m.range_max)
        } else {
            (m.range_min + m.range_max) / 2
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn motor(drive_mode: u8) -> MotorCalibration {
        MotorCalibration {
            id: 1,
            drive_mode,
            homing_offset: -12,
            range_min: 1000,
            range_max: 3000,
        }
    }

    #[test]
    fn lerobot_units_follow_lerobot_formulas() {
        let m = motor(0);
        assert!((raw_to_degrees(2000, &m)).abs() < 1e-12);
        assert!((raw_to_degrees(3000, &m) - 1000.0 * 360.0 / 4095.0).abs() < 1e-9);
        assert!((raw_to_m100_100(3000, &m) - 100.0).abs() < 1e-12);
        assert!((raw_to_m100_100(500, &m) + 100.0).abs() < 1e-12);
        assert!((raw_to_m100_100(3000, &motor(1)) + 100.0).abs() < 1e-12);
        assert!((raw_to_0_100(1500, &m) - 25.0).abs() < 1e-12);
        assert!((raw_to_0_100(1500, &motor(1)) - 75.0).abs() < 1e-12);
    }

    #[test]
    fn radians_round_trip_within_half_a_step() {
        for dm in [0, 1] {
            let arm = JointUnits {
                motor: motor(dm),
                gripper_range_rad: None,
            };
            let grip = JointUnits {
                motor: motor(dm),
                gripper_range_rad: Some((-0.17, 1.75)),
            };
            for raw in (1000..=3000).step_by(37) {
                assert_eq!(arm.to_raw(arm.to_rad(raw)), raw);
                assert_eq!(grip.to_raw(grip.to_rad(raw)), raw);
            }
            assert_eq!(arm.to_raw(100.0), if dm == 0 { 3000 } else { 1000 });
            assert_eq!(arm.to_raw(f64::NAN), 2000);
        }
        let arm = JointUnits {
            motor: motor(0),
            gripper_range_rad: None,
        };
        assert!((arm.to_rad(2000 + 4095 / 4) - std::f64::consts::FRAC_PI_2).abs() < 2e-3);
    }

    #[test]
    fn bad_files_are_named() {
        let p = Path::new("arm.json");
        let e = Calibration::parse("[1]", p).err().map(|e| e.to_string());
        assert!(e.is_some_and(|e| e.contains("arm.json")));
        let e = Calibration::parse(
            r#"{"gripper": {"id": 6, "drive_mode": 0, "homing_offset": 0, "range_min": 3000, "range_max": 2000}}"#,
            p,
        )
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
        assert!(e.contains("gripper") && e.contains("range_min"), "{e}");
        let ok = Calibration::parse(
            r#"{"shoulder_pan": {"id": 1, "drive_mode": 0, "homing_offset": 5, "range_min": 700, "range_max": 3300}}"#,
            p,
        );
        let ok = ok.ok();
        assert!(ok.is_some());
        let missing = ok
            .as_ref()
            .and_then(|c| c.for_joints(&["gripper".to_owned()], p).err())
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            missing.contains("gripper") && missing.contains("shoulder_pan"),
            "{missing}"
        );
    }
}
