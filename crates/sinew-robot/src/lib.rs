//! Robot descriptions for Sinew: a URDF plus `robot.toml` become a kinematic tree with limits,
//! a gripper, cameras and an action space; forward kinematics, Jacobians and inverse
//! kinematics work on it.
//!
//! ```no_run
//! use sinew_robot::RobotDescription;
//! let robot = RobotDescription::load("robots/so101".as_ref())?;
//! let q = robot.home();
//! let base_from_ee = robot.ee_pose(&q)?;
//! println!("TCP at {} m", base_from_ee.translation.vector);
//! # Ok::<(), sinew_robot::RobotError>(())
//! ```
//!
//! `robot.toml` is the one place where limits live; the URDF supplies geometry and kinematics.
//! A bare URDF also loads: its movable joints become the variables, with the URDF's limits.
//!
//! Mesh filenames (`package://`, `file://`, paths) are resolved as ROS and pybullet resolve
//! them ([`mesh_paths`]); kinematics never need meshes, so a mesh that is not found is a
//! warning unless [`LoadOptions::require_meshes`] is set:
//!
//! ```no_run
//! use sinew_robot::{LoadOptions, RobotDescription};
//! let opts = LoadOptions {
//!     packages: vec![("franka_description".into(), "/opt/franka_description".into())],
//!     ..LoadOptions::default()
//! };
//! let robot = RobotDescription::load_with("panda.urdf".as_ref(), &opts)?;
//! for w in &robot.warnings {
//!     eprintln!("{w}");
//! }
//! # Ok::<(), sinew_robot::RobotError>(())
//! ```

pub mod actions;
pub mod config;
pub mod kinematics;
pub mod mesh_paths;

use std::path::{Path, PathBuf};

use nalgebra::{Isometry3, Point3, Translation3, UnitQuaternion, Vector3};
use sinew_core::files::{read_text, FileError};

pub use config::{ActionKind, CameraConfig, GripperConfig, JointConfig, RobotConfig, SafetyConfig};
pub use kinematics::{solve_ik, IkOptions, IkSolution, IkTarget, JointKind, KinematicTree};

/// Errors of robot descriptions and kinematics.
#[derive(Debug, thiserror::Error)]
pub enum RobotError {
    /// robot.toml or the URDF could not be read, or has a bad value.
    #[error(transparent)]
    File(#[from] FileError),
    /// A mesh file the URDF names was not found (only with [`LoadOptions::require_meshes`]).
    #[error("{}: link {link:?} uses mesh {filename:?}, which was not found; looked in: {}", urdf.display(), looked.join("; "))]
    MissingMesh {
        /// The URDF.
        urdf: PathBuf,
        /// The link.
        link: String,
        /// The filename as written.
        filename: String,
        /// Every place looked, in order, with the rule that proposed it.
        looked: Vec<String>,
    },
    /// A joint vector of the wrong length.
    #[error("expected {expected} joint values, got {got}")]
    JointCount {
        /// Number of variables.
        expected: usize,
        /// Values given.
        got: usize,
    },
    /// NaN or infinity where a number was needed.
    #[error("{what} is not a finite number")]
    NonFinite {
        /// What.
        what: String,
    },
    /// A link name that is not in the tree.
    #[error("no link named {0:?}")]
    UnknownLink(String),
    /// An action that does not fit the action space.
    #[error("action: {0}")]
    Action(String),
}

/// A mesh referenced by the URDF.
#[derive(Debug, Clone, PartialEq)]
pub struct MeshRef {
    /// Link using it.
    pub link: String,
    /// File as written in the URDF.
    pub filename: String,
    /// Resolved path (when not found: the first place looked).
    pub path: PathBuf,
    /// Whether the file was found.
    pub found: bool,
    /// Whether Sinew can read it: found and in a format it reads (STL, OBJ, DAE). The
    /// simulator uses the link's equivalent-inertia box for the others.
    pub readable: bool,
}

/// How [`RobotDescription::load_with`] finds meshes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LoadOptions {
    /// Package folders by name (`--package NAME=DIR`), tried first for `package://NAME/...`.
    pub packages: Vec<(String, PathBuf)>,
    /// Roots searched for packages; `None` reads `ROS_PACKAGE_PATH` when loading.
    pub ros_package_path: Option<Vec<PathBuf>>,
    /// A mesh that is not found is an error ([`RobotError::MissingMesh`]) instead of a
    /// warning. Kinematics never need meshes.
    pub require_meshes: bool,
}

/// A loaded robot: configuration, URDF and kinematic tree.
#[derive(Debug, Clone)]
pub struct RobotDescription {
    /// The robot folder (or the URDF's folder).
    pub dir: PathBuf,
    /// The URDF path.
    pub urdf_path: PathBuf,
    /// `robot.toml`, or one synthesised from a bare URDF's limits.
    pub config: RobotConfig,
    /// The parsed URDF.
    pub urdf: urdf_rs::Robot,
    /// Kinematic tree whose variables are `config.joints`, in order.
    pub tree: KinematicTree,
    /// Meshes the URDF uses.
    pub meshes: Vec<MeshRef>,
    /// Warnings found while loading (meshes not found, unreadable mesh formats ...).
    pub warnings: Vec<String>,
    ee_link: usize,
}

impl RobotDescription {
    /// Loads a robot folder (with `robot.toml`) or a bare `.urdf` file, with the default
    /// [`LoadOptions`] (`ROS_PACKAGE_PATH` from the environment; missing meshes are warnings).
    pub fn load(path: &Path) -> Result<Self, RobotError> {
        Self::load_with(path, &LoadOptions::default())
    }

    /// Loads a robot folder (with `robot.toml`) or a bare `.urdf` file.
    pub fn load_with(path: &Path, opts: &LoadOptions) -> Result<Self, RobotError> {
        if path.is_dir() {
            let toml_path = path.join("robot.toml");
            let config = RobotConfig::from_file(&toml_path)?;
            let urdf_path = path.join(&config.urdf);
            Self::from_parts(path.to_owned(), urdf_path, Some((config, toml_path)), opts)
        } else {
            let dir = match path.parent() {
                Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
                _ => PathBuf::from("."),
            };
            Self::from_parts(dir, path.to_owned(), None, opts)
        }
    }

    /// The meshes the URDF's links use, resolved; warnings for those not found or not
    /// readable.
    fn find_meshes(
        urdf: &urdf_rs::Robot,
        dir: &Path,
        urdf_path: &Path,
        opts: &LoadOptions,
    ) -> Result<(Vec<MeshRef>, Vec<String>), RobotError> {
        let ros_roots = opts
            .ros_package_path
            .clone()
            .unwrap_or_else(mesh_paths::ros_package_path_from_env);
        let mut resolver = mesh_paths::MeshResolver::new(urdf_path, dir, &opts.packages, ros_roots);
        let mut warnings = Vec::new();
        let mut meshes: Vec<MeshRef> = Vec::new();
        for link in &urdf.links {
            let geoms = link
                .visual
                .iter()
                .map(|v| &v.geometry)
                .chain(link.collision.iter().map(|c| &c.geometry));
            for g in geoms {
                let urdf_rs::Geometry::Mesh { filename, .. } = g else {
                    continue;
                };
                if meshes
                    .iter()
                    .any(|m| &m.filename == filename && m.link == link.name)
                {
                    continue;
                }
                let lookup = resolver.resolve(filename);
                let Some(p) = lookup.found else {
                    if opts.require_meshes {
                        return Err(RobotError::MissingMesh {
                            urdf: urdf_path.to_owned(),
                            link: link.name.clone(),
                            filename: filename.clone(),
                            looked: lookup.looked,
                        });
                    }
                    warnings.push(format!(
                        "link {:?}: mesh {filename:?} not found (kinematics do not need it; the simulator uses the link's equivalent-inertia box); looked in: {}",
                        link.name,
                        lookup.looked.join("; ")
                    ));
                    meshes.push(MeshRef {
                        link: link.name.clone(),
                        filename: filename.clone(),
                        path: lookup.first.unwrap_or_else(|| PathBuf::from(filename)),
                        found: false,
                        readable: false,
                    });
                    continue;
                };
                let ext = p
                    .extension()
                    .and_then(|e| e.to_str())
                    .unwrap_or("")
                    .to_ascii_lowercase();
                let readable = matches!(ext.as_str(), "stl" | "obj" | "dae");
                if !readable {
                    warnings.push(format!(
                        "link {:?}: mesh {filename:?} is in a format Sinew cannot read; the simulator uses the link's equivalent-inertia bounding box instead",
                        link.name
                    ));
                }
                meshes.push(MeshRef {
                    link: link.name.clone(),
                    filename: filename.clone(),
                    path: p,
                    found: true,
                    readable,
                });
            }
        }
        let missing = meshes.iter().filter(|m| !m.found).count();
        if missing > 0 {
            tracing::warn!(
                "{}: {missing} of {} meshes not found (kinematics do not need them; `sinew robot check` lists where it looked, `--package NAME=DIR` or ROS_PACKAGE_PATH point to them)",
                urdf_path.display(),
                meshes.len()
            );
        }
        for w in warnings.iter().filter(|w| w.contains("cannot read")) {
            tracing::warn!("{}: {w}", urdf_path.display());
        }
        Ok((meshes, warnings))
    }

    fn from_parts(
        dir: PathBuf,
        urdf_path: PathBuf,
        config: Option<(RobotConfig, PathBuf)>,
        opts: &LoadOptions,
    ) -> Result<Self, RobotError> {
        let text = read_text(&urdf_path)?;
        let urdf = urdf_rs::read_from_string(&text).map_err(|e| FileError::parse(&urdf_path, e))?;
        let (meshes, warnings) = Self::find_meshes(&urdf, &dir, &urdf_path, opts)?;
        let (config, cfg_file) = match config {
            Some((c, f)) => (c, f),
            None => (
                Self::config_from_urdf(&urdf, &urdf_path)?,
                urdf_path.clone(),
            ),
        };
        let names: Vec<String> = config.joints.iter().map(|j| j.name.clone()).collect();
        let tree =
            KinematicTree::from_urdf(&urdf, &cfg_file, Some(&config.base_link), Some(&names))
                .map_err(|e| match e {
                    // Errors about joints or the base refer to robot.toml; others to the URDF.
                    RobotError::File(FileError::Field { field, reason, .. })
                        if field.starts_with("joints[") || field == "base_link" =>
                    {
                        FileError::field(&cfg_file, field, reason).into()
                    }
                    RobotError::File(FileError::Field { field, reason, .. }) => {
                        FileError::field(&urdf_path, field, reason).into()
                    }
                    other => other,
                })?;
        let field = |field: String, reason: String| {
            RobotError::from(FileError::field(&cfg_file, field, reason))
        };
        let ee_link = tree.link_index(&config.ee_link).ok_or_else(|| {
            field(
                "ee_link".into(),
                format!(
                    "no link {:?} under {:?} in the URDF",
                    config.ee_link, config.base_link
                ),
            )
        })?;
        for (i, c) in config.cameras.iter().enumerate() {
            if tree.link_index(&c.mount_link).is_none() {
                return Err(field(
                    format!("cameras[{i}] ({}).mount_link", c.name),
                    format!("no link {:?} in the URDF", c.mount_link),
                ));
            }
        }
        if let Some(g) = &config.gripper {
            for m in &g.mimic {
                if !tree.joints.iter().any(|j| &j.name == m) {
                    return Err(field(
                        "gripper.mimic".into(),
                        format!("no joint {m:?} in the URDF"),
                    ));
                }
            }
        }
        // robot.toml limits must lie within the URDF's.
        for (i, (jc, &ji)) in config.joints.iter().zip(&tree.active).enumerate() {
            if let Some((lo, hi)) = tree.joints[ji].limits {
                if jc.position_min < lo - 1e-9 || jc.position_max > hi + 1e-9 {
                    return Err(field(
                        format!("joints[{i}] ({})", jc.name),
                        format!(
                            "limits [{}, {}] exceed the URDF's [{lo}, {hi}]",
                            jc.position_min, jc.position_max
                        ),
                    ));
                }
            }
        }
        Ok(Self {
            dir,
            urdf_path,
            config,
            urdf,
            tree,
            meshes,
            warnings,
            ee_link,
        })
    }

    /// A configuration for a bare URDF: its movable joints with the URDF's limits.
    fn config_from_urdf(urdf: &urdf_rs::Robot, path: &Path) -> Result<RobotConfig, RobotError> {
        let tree = KinematicTree::from_urdf(urdf, path, None, None)?;
        let joints = tree
            .active
            .iter()
            .map(|&ji| {
                let j = &tree.joints[ji];
                let (lo, hi) = j
                    .limits
                    .unwrap_or((-std::f64::consts::PI, std::f64::consts::PI));
                JointConfig {
                    name: j.name.clone(),
                    position_min: lo,
                    position_max: hi,
                    velocity_max: if j.velocity > 0.0 { j.velocity } else { 1.0 },
                    acceleration_max: 10.0,
                    effort_max: if j.effort > 0.0 { j.effort } else { 1.0 },
                    kp: 100.0,
                    kd: 10.0,
                }
            })
            .collect();
        // The end effector of a bare URDF: the last link of the tree (a leaf).
        let ee = tree.links.last().cloned().unwrap_or_default();
        Ok(RobotConfig {
            name: urdf.name.clone(),
            urdf: path.file_name().map(PathBuf::from).unwrap_or_default(),
            namespace: urdf.name.clone(),
            base_link: tree.links[0].clone(),
            ee_link: ee,
            command_rate_hz: 100.0,
            joints,
            home: None,
            gripper: None,
            cameras: Vec::new(),
            action_space: config::ActionSpaceConfig {
                kind: ActionKind::JointPosition,
            },
            safety: config::SafetyConfig::default(),
        })
    }

    /// Number of joint variables (`config.joints`).
    pub fn dof(&self) -> usize {
        self.tree.dof()
    }

    /// Joint limits from robot.toml, per variable.
    pub fn limits(&self) -> Vec<(f64, f64)> {
        self.config
            .joints
            .iter()
            .map(|j| (j.position_min, j.position_max))
            .collect()
    }

    /// The actuated joints' names, in robot.toml (command) order.
    pub fn joint_names(&self) -> Vec<String> {
        self.config.joints.iter().map(|j| j.name.clone()).collect()
    }

    /// The ready configuration: robot.toml's `home`, else zero clamped into the limits; the
    /// gripper open.
    pub fn home(&self) -> Vec<f64> {
        let mut q: Vec<f64> = match &self.config.home {
            Some(h) => h.clone(),
            None => self
                .limits()
                .iter()
                .map(|(lo, hi)| 0.0f64.clamp(*lo, *hi))
                .collect(),
        };
        if let (Some(g), Some(i)) = (&self.config.gripper, self.config.gripper_index()) {
            q[i] = g.open;
        }
        q
    }

    /// Index of the end-effector link in the tree.
    pub fn ee_link(&self) -> usize {
        self.ee_link
    }

    /// `base_from_ee`.
    pub fn ee_pose(&self, q: &[f64]) -> Result<Isometry3<f64>, RobotError> {
        self.tree.link_pose(q, self.ee_link)
    }

    /// The end effector's approach axis in its own frame: +z, the ROS convention for tool
    /// frames (both shipped robots follow it).
    pub fn approach_axis(&self) -> nalgebra::Unit<Vector3<f64>> {
        Vector3::z_axis()
    }

    /// IK for the end effector with robot.toml's limits; the gripper joint stays at its
    /// value in `q0`.
    pub fn ik(
        &self,
        target: IkTarget,
        q0: &[f64],
        opts: &IkOptions,
    ) -> Result<IkSolution, RobotError> {
        let mut opts = opts.clone();
        if opts.limits.is_none() {
            opts.limits = Some(self.limits());
        }
        if opts.free.is_none() {
            let g = self.config.gripper_index();
            opts.free = Some((0..self.dof()).map(|i| Some(i) != g).collect());
        }
        solve_ik(&self.tree, self.ee_link, target, q0, &opts)
    }

    /// `base_from_camera` of a camera for joint values `q`. The camera frame follows the ROS
    /// optical convention: z forward along the optical axis, x right, y down in the image.
    pub fn camera_pose(
        &self,
        camera: &CameraConfig,
        q: &[f64],
    ) -> Result<Isometry3<f64>, RobotError> {
        let link = self
            .tree
            .link_index(&camera.mount_link)
            .ok_or_else(|| RobotError::UnknownLink(camera.mount_link.clone()))?;
        let base_from_mount = self.tree.link_pose(q, link)?;
        Ok(base_from_mount * mount_from_camera(camera))
    }
}

/// The camera's optical frame in its mount link's frame (z forward, x right, y down).
pub fn mount_from_camera(camera: &CameraConfig) -> Isometry3<f64> {
    let eye = Point3::from(camera.xyz);
    let target = Point3::from(camera.look_at);
    let up = Vector3::from(camera.up);
    let z = (target - eye).normalize();
    let x = z.cross(&up).normalize(); // right = forward x up ... with y down
    let y = z.cross(&x);
    let rot = nalgebra::Rotation3::from_basis_unchecked(&[x, y, z]);
    Isometry3::from_parts(
        Translation3::from(eye.coords),
        UnitQuaternion::from_rotation_matrix(&rot),
    )
}
