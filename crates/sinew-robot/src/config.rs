//! `robot.toml`: the one place where a robot's joints, limits, gripper, cameras and action
//! space are written down.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
pub use sinew_core::ActionKind;

use sinew_core::files::{parse_toml, read_text, FileError};

use crate::RobotError;

/// A robot folder's `robot.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RobotConfig {
    /// Robot name (the folder's name).
    pub name: String,
    /// URDF file, relative to the folder.
    pub urdf: PathBuf,
    /// Topic namespace on the bus (`so101` gives `so101/joint_states`).
    pub namespace: String,
    /// Root link of the kinematic tree; poses are given in its frame.
    pub base_link: String,
    /// End-effector (tool centre point) link.
    pub ee_link: String,
    /// Rate at which the robot accepts joint commands, Hz.
    pub command_rate_hz: f64,
    /// Actuated joints in command order: the arm, then the gripper joint.
    pub joints: Vec<JointConfig>,
    /// The ready configuration (joint order as `joints`): where episodes start, gripper
    /// pointing down over the workspace. Zero clamped into the limits when omitted.
    #[serde(default)]
    pub home: Option<Vec<f64>>,
    /// The gripper, if any.
    #[serde(default)]
    pub gripper: Option<GripperConfig>,
    /// Cameras.
    #[serde(default)]
    pub cameras: Vec<CameraConfig>,
    /// The action space the robot accepts.
    pub action_space: ActionSpaceConfig,
    /// Deadlines and the workspace box of the runtime's safety layer.
    #[serde(default)]
    pub safety: SafetyConfig,
}

/// The `[safety]` section: what the runtime's watchdog and safety filter enforce beyond the
/// joint limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SafetyConfig {
    /// Hold when the newest joint state is older than this, s.
    #[serde(default = "d_joint_state_timeout")]
    pub joint_state_timeout_s: f64,
    /// Hold when a camera's newest frame is older than this, s.
    #[serde(default = "d_camera_timeout")]
    pub camera_timeout_s: f64,
    /// Hold when an inference runs longer than this, s.
    #[serde(default = "d_inference_timeout")]
    pub inference_timeout_s: f64,
    /// Frames and joint state further apart than this are not combined into one observation, s.
    #[serde(default = "d_sync_tolerance")]
    pub sync_tolerance_s: f64,
    /// Optional end-effector box in the base frame: `[x, y, z]` min corner, m.
    #[serde(default)]
    pub workspace_min: Option<[f64; 3]>,
    /// Optional end-effector box: max corner, m.
    #[serde(default)]
    pub workspace_max: Option<[f64; 3]>,
}

fn d_joint_state_timeout() -> f64 {
    0.1
}
fn d_camera_timeout() -> f64 {
    0.5
}
fn d_inference_timeout() -> f64 {
    2.0
}
fn d_sync_tolerance() -> f64 {
    0.1
}

impl Default for SafetyConfig {
    fn default() -> Self {
        Self {
            joint_state_timeout_s: d_joint_state_timeout(),
            camera_timeout_s: d_camera_timeout(),
            inference_timeout_s: d_inference_timeout(),
            sync_tolerance_s: d_sync_tolerance(),
            workspace_min: None,
            workspace_max: None,
        }
    }
}

/// Limits and gains of one actuated joint. Positions in rad (m for prismatic joints).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JointConfig {
    /// URDF joint name.
    pub name: String,
    /// Lowest position, rad or m.
    pub position_min: f64,
    /// Highest position, rad or m.
    pub position_max: f64,
    /// Largest speed, rad/s or m/s.
    pub velocity_max: f64,
    /// Largest acceleration, rad/s^2 or m/s^2.
    pub acceleration_max: f64,
    /// Largest effort, N m or N.
    pub effort_max: f64,
    /// PD stiffness of the simulator's position motor.
    pub kp: f64,
    /// PD damping of the simulator's position motor.
    pub kd: f64,
}

/// The gripper: one actuated joint, plus URDF joints that mimic it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GripperConfig {
    /// The actuated gripper joint (one of `joints`).
    pub joint: String,
    /// Its position when open.
    pub open: f64,
    /// Its position when closed.
    pub closed: f64,
    /// URDF joints that follow the gripper joint one to one.
    #[serde(default)]
    pub mimic: Vec<String>,
    /// Where to put the tool centre point when grasping, metres along the TCP's -y axis from
    /// the object's centre: one-jaw grippers keep clearance from the fixed jaw (0 for
    /// symmetric grippers).
    #[serde(default)]
    pub grasp_offset_m: f64,
}

/// A pinhole camera rigidly mounted on a link.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CameraConfig {
    /// Camera name, used in topic names (`<ns>/camera/<name>/image_raw`).
    pub name: String,
    /// Link the camera is mounted on.
    pub mount_link: String,
    /// Camera origin in the mount link's frame, m.
    pub xyz: [f64; 3],
    /// Point the optical axis passes through, in the mount link's frame, m.
    pub look_at: [f64; 3],
    /// Up direction of the image, in the mount link's frame.
    pub up: [f64; 3],
    /// Image width, pixels.
    pub width: u32,
    /// Image height, pixels.
    pub height: u32,
    /// Vertical field of view, degrees.
    pub fov_y_deg: f64,
    /// Whether a depth image is rendered too.
    #[serde(default)]
    pub depth: bool,
}

/// How actions map to joint targets.
/// The action space section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionSpaceConfig {
    /// The kind of action.
    pub kind: ActionKind,
}

fn field_err(file: &Path, field: String, reason: impl Into<String>) -> RobotError {
    FileError::field(file, field, reason).into()
}

fn finite(file: &Path, field: String, v: &[f64]) -> Result<(), RobotError> {
    if v.iter().all(|x| x.is_finite()) {
        Ok(())
    } else {
        Err(field_err(
            file,
            field,
            "must be a finite number (NaN or infinity found)",
        ))
    }
}

impl RobotConfig {
    /// Reads and checks the values that need no URDF (ranges, NaN, duplicates).
    pub fn from_file(path: &Path) -> Result<Self, RobotError> {
        Self::from_str_at(&read_text(path)?, path)
    }

    /// Parses `text` as if read from `path` (used in errors).
    pub fn from_str_at(text: &str, path: &Path) -> Result<Self, RobotError> {
        let cfg: RobotConfig = parse_toml(text, path)?;
        cfg.validate(path)?;
        Ok(cfg)
    }

    fn validate(&self, file: &Path) -> Result<(), RobotError> {
        self.validate_safety(file)?;
        self.validate_joints(file)?;
        self.validate_home_and_gripper(file)?;
        self.validate_cameras(file)
    }

    /// The `[safety]` section: positive deadlines, a well-formed workspace box.
    fn validate_safety(&self, file: &Path) -> Result<(), RobotError> {
        let sf = &self.safety;
        for (name, v) in [
            ("safety.joint_state_timeout_s", sf.joint_state_timeout_s),
            ("safety.camera_timeout_s", sf.camera_timeout_s),
            ("safety.inference_timeout_s", sf.inference_timeout_s),
            ("safety.sync_tolerance_s", sf.sync_tolerance_s),
        ] {
            if !(v.is_finite() && v > 0.0) {
                return Err(field_err(
                    file,
                    name.into(),
                    "must be a positive number of seconds",
                ));
            }
        }
        match (sf.workspace_min, sf.workspace_max) {
            (Some(lo), Some(hi)) => {
                if lo.iter().chain(hi.iter()).any(|v| !v.is_finite())
                    || (0..3).any(|i| lo[i] >= hi[i])
                {
                    return Err(field_err(
                        file,
                        "safety.workspace_min/max".into(),
                        "finite, and min below max on every axis",
                    ));
                }
            }
            (None, None) => {}
            _ => {
                return Err(field_err(
                    file,
                    "safety.workspace_min/max".into(),
                    "give both corners or neither",
                ));
            }
        }
        Ok(())
    }

    /// The command rate and every joint's limits and gains.
    fn validate_joints(&self, file: &Path) -> Result<(), RobotError> {
        if !(self.command_rate_hz.is_finite() && self.command_rate_hz > 0.0) {
            return Err(field_err(
                file,
                "command_rate_hz".into(),
                "must be a positive number",
            ));
        }
        if self.joints.is_empty() {
            return Err(field_err(
                file,
                "joints".into(),
                "at least one joint is needed",
            ));
        }
        for (i, j) in self.joints.iter().enumerate() {
            let f = |name: &str| format!("joints[{i}] ({}).{name}", j.name);
            finite(
                file,
                f("limits"),
                &[
                    j.position_min,
                    j.position_max,
                    j.velocity_max,
                    j.acceleration_max,
                    j.effort_max,
                    j.kp,
                    j.kd,
                ],
            )?;
            if j.position_min > j.position_max {
                return Err(field_err(
                    file,
                    f("position_min"),
                    format!(
                        "{} is above position_max {}",
                        j.position_min, j.position_max
                    ),
                ));
            }
            for (name, v) in [
                ("velocity_max", j.velocity_max),
                ("acceleration_max", j.acceleration_max),
                ("effort_max", j.effort_max),
            ] {
                if v <= 0.0 {
                    return Err(field_err(
                        file,
                        f(name),
                        format!("must be positive, got {v}"),
                    ));
                }
            }
            if j.kp < 0.0 || j.kd < 0.0 {
                return Err(field_err(file, f("kp"), "gains must not be negative"));
            }
            if self.joints[..i].iter().any(|o| o.name == j.name) {
                return Err(field_err(file, f("name"), "joint listed twice"));
            }
        }
        Ok(())
    }

    /// The home pose and the gripper, within the joints' limits.
    fn validate_home_and_gripper(&self, file: &Path) -> Result<(), RobotError> {
        if let Some(h) = &self.home {
            if h.len() != self.joints.len() {
                return Err(field_err(
                    file,
                    "home".into(),
                    format!("{} values for {} joints", h.len(), self.joints.len()),
                ));
            }
            finite(file, "home".into(), h)?;
            for (i, (v, j)) in h.iter().zip(&self.joints).enumerate() {
                if *v < j.position_min || *v > j.position_max {
                    return Err(field_err(
                        file,
                        format!("home[{i}] ({})", j.name),
                        format!("{v} is outside [{}, {}]", j.position_min, j.position_max),
                    ));
                }
            }
        }
        if let Some(g) = &self.gripper {
            finite(file, "gripper.open/closed".into(), &[g.open, g.closed])?;
            let Some(j) = self.joints.iter().find(|j| j.name == g.joint) else {
                return Err(field_err(
                    file,
                    "gripper.joint".into(),
                    format!("{:?} is not one of [[joints]]", g.joint),
                ));
            };
            for (name, v) in [("open", g.open), ("closed", g.closed)] {
                if v < j.position_min || v > j.position_max {
                    return Err(field_err(
                        file,
                        format!("gripper.{name}"),
                        format!(
                            "{v} is outside the joint's limits [{}, {}]",
                            j.position_min, j.position_max
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Every camera's pose, size and field of view.
    fn validate_cameras(&self, file: &Path) -> Result<(), RobotError> {
        for (i, c) in self.cameras.iter().enumerate() {
            let f = |name: &str| format!("cameras[{i}] ({}).{name}", c.name);
            finite(file, f("xyz"), &c.xyz)?;
            finite(file, f("look_at"), &c.look_at)?;
            finite(file, f("up"), &c.up)?;
            if c.width == 0 || c.height == 0 {
                return Err(field_err(
                    file,
                    f("width/height"),
                    "must be at least 1 pixel",
                ));
            }
            if !(c.fov_y_deg.is_finite() && c.fov_y_deg > 0.0 && c.fov_y_deg < 180.0) {
                return Err(field_err(
                    file,
                    f("fov_y_deg"),
                    format!("must be in (0, 180), got {}", c.fov_y_deg),
                ));
            }
            let fwd = [
                c.look_at[0] - c.xyz[0],
                c.look_at[1] - c.xyz[1],
                c.look_at[2] - c.xyz[2],
            ];
            let n = (fwd[0] * fwd[0] + fwd[1] * fwd[1] + fwd[2] * fwd[2]).sqrt();
            if n < 1e-9 {
                return Err(field_err(file, f("look_at"), "must differ from xyz"));
            }
            let cross = [
                fwd[1] * c.up[2] - fwd[2] * c.up[1],
                fwd[2] * c.up[0] - fwd[0] * c.up[2],
                fwd[0] * c.up[1] - fwd[1] * c.up[0],
            ];
            if (cross[0] * cross[0] + cross[1] * cross[1] + cross[2] * cross[2]).sqrt() < 1e-9 * n {
                return Err(field_err(
                    file,
                    f("up"),
                    "must not be parallel to the viewing direction",
                ));
            }
            if self.cameras[..i].iter().any(|o| o.name == c.name) {
                return Err(field_err(file, f("name"), "camera listed twice"));
            }
        }
        Ok(())
    }

    /// Index of the gripper joint in `joints`.
    pub fn gripper_index(&self) -> Option<usize> {
        let g = self.gripper.as_ref()?;
        self.joints.iter().position(|j| j.name == g.joint)
    }

    /// The arm joints (all but the gripper), as indices into `joints`.
    pub fn arm_indices(&self) -> Vec<usize> {
        let g = self.gripper_index();
        (0..self.joints.len()).filter(|i| Some(*i) != g).collect()
    }
}
