//! Robots, tasks and policies by name: `so101` is `robots/so101`, `push` is
//! `sim/tasks/push.toml`, `sinew-tiny-so101` is `policies/sinew-tiny-so101`, found from the
//! working directory up; a path that exists is taken as given.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use sinew_core::Policy;
use sinew_policy::device::{parse_device, parse_dtype};
use sinew_policy::folder::{load_policy, LoadOptions};
use sinew_robot::RobotDescription;
use sinew_sim::TaskSpec;

/// The project root (the folder with `robots/` and `sim/`), from the working directory up.
pub fn project_root() -> PathBuf {
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    cwd.ancestors()
        .find(|p| p.join("robots").is_dir() && p.join("sim").is_dir())
        .map(Path::to_path_buf)
        .unwrap_or(cwd)
}

/// `name` as given when it exists, otherwise under the project's `folder` (robots, policies).
pub fn project_path(name: &str, folder: &str) -> PathBuf {
    let p = Path::new(name);
    if p.exists() {
        p.to_path_buf()
    } else {
        project_root().join(folder).join(name)
    }
}

/// A robot folder (or URDF) by name or path.
pub fn load_robot(name: &str) -> Result<RobotDescription> {
    let path = project_path(name, "robots");
    RobotDescription::load(&path)
        .with_context(|| format!("loading robot {name:?} ({})", path.display()))
}

/// A task file by name or path.
pub fn load_task(name: &str) -> Result<TaskSpec> {
    let p = Path::new(name);
    let path = if p.is_file() {
        p.to_path_buf()
    } else {
        sinew_sim::task::task_path(&project_root(), name)
    };
    TaskSpec::from_file(&path)
        .with_context(|| format!("loading task {name:?} ({})", path.display()))
}

/// Where and how a model runs, by the names the command line uses.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DeviceSpec {
    /// `cpu`, `cuda` or `cuda:N`.
    pub device: String,
    /// `auto`, `f32`, `bf16` or `f16`.
    pub dtype: String,
    /// OpenVLA: the dataset whose statistics un-normalise actions.
    pub unnorm_key: Option<String>,
    /// OpenVLA: plain greedy decoding exactly as the release.
    pub unconstrained: bool,
}

impl Default for DeviceSpec {
    fn default() -> Self {
        Self {
            device: "cpu".into(),
            dtype: "auto".into(),
            unnorm_key: None,
            unconstrained: false,
        }
    }
}

impl DeviceSpec {
    /// candle's load options.
    pub fn options(&self) -> Result<LoadOptions> {
        let device = parse_device(&self.device)?;
        let dtype = parse_dtype(&self.dtype, &device)?;
        Ok(LoadOptions {
            device,
            dtype,
            unnorm_key: self.unnorm_key.clone(),
            unconstrained: self.unconstrained,
        })
    }
}

/// A policy folder by name or path; `openpi:HOST:PORT` is an openpi server instead
/// ([`crate::openpi`]), `zenoh:PREFIX` a policy served on the bus ([`crate::remote`]).
pub fn load_policy_folder(name: &str, device: &DeviceSpec) -> Result<Box<dyn Policy>> {
    if name.starts_with(crate::openpi::PREFIX) {
        return crate::openpi::load_openpi_policy(name);
    }
    if let Some(prefix) = name.strip_prefix("zenoh:") {
        // A policy served on the bus (`sinew policy serve --prefix PREFIX`).
        return crate::remote::connect(prefix);
    }
    let dir = project_path(name, "policies");
    load_policy(&dir, &device.options()?)
        .with_context(|| format!("loading policy {}", dir.display()))
}

/// Fails, naming the camera, when a policy reads one the robot does not have.
pub fn check_cameras(robot: &RobotDescription, cameras: &[String]) -> Result<()> {
    for cam in cameras {
        if !robot.config.cameras.iter().any(|c| &c.name == cam) {
            bail!(
                "the policy reads camera `{cam}`, which robot {} does not have",
                robot.config.name
            );
        }
    }
    Ok(())
}
