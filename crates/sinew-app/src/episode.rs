//! Simulated episodes: a seeded episode of a task, the simulator in lockstep behind the robot
//! interface, a policy (a folder's model, or the task's scripted expert), all through the one
//! control loop ([`Session`]).

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use serde::Serialize;
use sinew_core::Policy;
use sinew_robot::RobotDescription;
use sinew_runtime::{End, Inference, Session, SessionConfig, SessionReport, Tap};
use sinew_sim::{Episode, ExpertPolicy, SimRobot, SimWorld, TaskSpec};

use crate::execution::ExecutionSpec;
use crate::resolve::{check_cameras, load_policy_folder, DeviceSpec};

/// A policy as the command line names it: `expert` (the task's scripted expert) or a policy
/// folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyName {
    /// The task's scripted expert.
    Expert,
    /// A policy folder (a name under `policies/` or a path).
    Folder(String),
}

impl PolicyName {
    /// `expert`, or a folder.
    pub fn parse(s: &str) -> Self {
        if s == "expert" {
            PolicyName::Expert
        } else {
            PolicyName::Folder(s.to_owned())
        }
    }

    /// As given.
    pub fn as_str(&self) -> &str {
        match self {
            PolicyName::Expert => "expert",
            PolicyName::Folder(f) => f,
        }
    }
}

/// A worker's policy: a folder's model is loaded once and runs episode after episode; the
/// expert is made afresh for each episode (it reads the episode's objects).
pub struct Driver {
    name: PolicyName,
    model: Option<Box<dyn Policy>>,
}

impl std::fmt::Debug for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driver").field("name", &self.name).finish()
    }
}

impl Driver {
    /// Loads the policy `name` (a folder's weights go to `device`).
    pub fn new(name: &PolicyName, device: &DeviceSpec) -> Result<Self> {
        let model = match name {
            PolicyName::Expert => None,
            PolicyName::Folder(f) => Some(load_policy_folder(f, device)?),
        };
        Ok(Self {
            name: name.clone(),
            model,
        })
    }

    /// A driver around a policy already loaded.
    pub fn from_policy(name: &str, policy: Box<dyn Policy>) -> Self {
        Self {
            name: PolicyName::Folder(name.to_owned()),
            model: Some(policy),
        }
    }

    /// Fails, naming the camera, when the policy reads one the robot does not have.
    pub fn check_fits(&self, robot: &RobotDescription) -> Result<()> {
        match &self.model {
            Some(m) => check_cameras(robot, &m.spec().cameras),
            None => Ok(()),
        }
    }

    /// The rate the policy decides at (the expert's: the task's).
    pub fn rate_hz(&self, task: &TaskSpec) -> f64 {
        self.model
            .as_ref()
            .map_or(task.control_rate_hz, |m| m.spec().control_rate_hz)
    }

    /// The name it was made from.
    pub fn name(&self) -> &PolicyName {
        &self.name
    }

    /// The policy for one episode.
    pub fn take(
        &mut self,
        robot: &RobotDescription,
        task: &TaskSpec,
        episode: &Episode,
    ) -> Result<Box<dyn Policy>> {
        match self.model.take() {
            Some(m) => Ok(m),
            None => match &self.name {
                PolicyName::Expert => Ok(Box::new(ExpertPolicy::new(robot, task, episode.clone()))),
                PolicyName::Folder(f) => anyhow::bail!("policy {f} was lost after an error"),
            },
        }
    }

    /// Hands a folder's model back after an episode.
    pub fn give_back(&mut self, policy: Box<dyn Policy>) {
        if let PolicyName::Folder(_) = self.name {
            self.model = Some(policy);
        }
    }
}

/// One episode's result.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct EpisodeResult {
    /// Its seed.
    pub seed: u64,
    /// The instruction.
    pub instruction: String,
    /// Whether the task's success check passed before the step limit.
    pub success: bool,
    /// Policy steps until success or the step limit.
    pub steps: u64,
    /// Commands sent.
    pub commands: u64,
    /// Requests handed to the policy.
    pub inferences: u64,
    /// Mean inference wall time, ms.
    pub mean_inference_ms: f64,
    /// Times a hold reason started, by name.
    pub holds: BTreeMap<String, u64>,
    /// Commands the safety filter changed, all kinds.
    pub safety_interventions: u64,
    /// Simulated time, s.
    pub sim_time_s: f64,
    /// Wall time, s.
    pub wall_s: f64,
    /// RMS jerk of the commands sent (third difference at the command rate), mean over
    /// joints, rad/s³.
    pub rms_jerk: f64,
    /// Commands whose velocity the safety filter limited.
    pub velocity_interventions: u64,
    /// Commands whose acceleration the safety filter limited.
    pub acceleration_interventions: u64,
}

impl EpisodeResult {
    fn new(seed: u64, r: &SessionReport) -> Self {
        let s = r.stats.safety;
        Self {
            seed,
            instruction: r.instruction.clone(),
            success: r.end == End::Success,
            steps: r.steps,
            commands: r.stats.commands,
            inferences: r.inferences,
            mean_inference_ms: r.mean_inference_ms,
            holds: r.stats.holds.clone(),
            safety_interventions: s.position
                + s.velocity
                + s.acceleration
                + s.non_finite
                + s.workspace,
            sim_time_s: r.end_s,
            wall_s: r.wall_s,
            rms_jerk: r.rms_jerk,
            velocity_interventions: s.velocity,
            acceleration_interventions: s.acceleration,
        }
    }
}

/// How an episode is run.
#[derive(Debug, Clone, Default)]
pub struct EpisodeOptions {
    /// Chunk execution.
    pub exec: ExecutionSpec,
    /// Hand every camera's frames to the taps (recordings); datasets read frames themselves.
    pub record_cameras: bool,
}

/// The session settings of an episode of `task` driven by `policy`.
pub fn episode_config(
    robot: &RobotDescription,
    task: &TaskSpec,
    policy: &dyn Policy,
    opts: &EpisodeOptions,
) -> Result<SessionConfig> {
    let spec = policy.spec();
    check_cameras(robot, &spec.cameras)?;
    let runtime = opts.exec.runtime_config(robot, spec);
    let mut cfg = SessionConfig::new(runtime);
    cfg.rtc = opts.exec.rtc_capacity(policy).map_err(anyhow::Error::msg)?;
    cfg.step_limit = Some(task.step_limit as u64);
    cfg.stop_on_success = true;
    if opts.record_cameras {
        cfg.tap_cameras = robot
            .config
            .cameras
            .iter()
            .map(|c| c.name.clone())
            .collect();
    }
    Ok(cfg)
}

/// Runs `episode` (of `task`, drawn for `seed`) with `policy` in lockstep; returns its result
/// and the policy.
pub fn run_policy_episode(
    robot: &RobotDescription,
    task: &TaskSpec,
    seed: u64,
    episode: &Episode,
    mut policy: Box<dyn Policy>,
    opts: &EpisodeOptions,
    taps: &mut [&mut dyn Tap],
) -> Result<(EpisodeResult, SessionReport, Box<dyn Policy>)> {
    policy.reset();
    let mut cfg = episode_config(robot, task, policy.as_ref(), opts)?;
    cfg.latency = opts.exec.latency.as_ref().map(|m| m.sampler(seed));
    let camera_rate_hz = policy.spec().control_rate_hz;
    let world = SimWorld::new(robot.clone(), Some(episode), None)
        .with_context(|| format!("{} seed {seed}: building the world", task.name))?;
    let mut sim = SimRobot::lockstep(world, Some(task.clone()), camera_rate_hz);
    let mut session = Session::new(robot, cfg, Inference::inline(policy), &mut sim)?;
    let report = session
        .run(&mut sim, taps, &|| false)
        .with_context(|| format!("{} seed {seed}", task.name))?;
    let policy = session
        .into_inference()
        .into_policy()
        .context("an inline policy comes back")?;
    Ok((EpisodeResult::new(seed, &report), report, policy))
}

/// Runs `episode` (sampled from `task` at `seed`) with the driver's policy.
pub fn run_episode(
    robot: &RobotDescription,
    task: &TaskSpec,
    seed: u64,
    episode: &Episode,
    driver: &mut Driver,
    opts: &EpisodeOptions,
    taps: &mut [&mut dyn Tap],
) -> Result<EpisodeResult> {
    let policy = driver.take(robot, task, episode)?;
    let (result, _, policy) = run_policy_episode(robot, task, seed, episode, policy, opts, taps)?;
    driver.give_back(policy);
    Ok(result)
}
