//! `sinew dataset record`: demonstrations in the simulator, written as a LeRobotDataset v3.0.
//!
//! Every episode runs through the one control loop, like `sim run` and `eval`; only the
//! policy differs, and a dataset tap takes one frame per policy step: the cameras resized to
//! the stored size with the filter sinew-tiny uses at inference, the measured joint positions
//! as `observation.state`, and a demonstrator's action as `action`.
//!
//! - The expert drives: the scripted expert, with exploration noise when asked (DART, Laskey
//!   et al. 2017: the robot executes the noisy command, the label is the expert's own).
//! - DAgger (Ross et al. 2011): a policy drives, executing its chunks as `sim run` does, and
//!   the expert, following along as a teacher, labels every frame. These episodes are kept
//!   whether or not they succeed.
//! - Takeover: a policy drives, unrecorded, up to a random step; then the expert takes over
//!   from wherever it left the robot and only its part is recorded, kept when it succeeds.
//!
//! Seeds are handed out and written in order, so the dataset is the same for any `--jobs`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use sinew_core::rng::SplitMix64;
use sinew_core::{ActionKind, Policy};
use sinew_data::{DatasetSpec, DatasetWriter, RgbImage};
use sinew_policy::preprocess::resized_rgb;
use sinew_robot::RobotDescription;
use sinew_runtime::policies::{ActionNoise, Handover, SharedPolicy};
use sinew_runtime::{End, StepRecord, Tap};
use sinew_sim::{Episode, ExpertPolicy, TaskSpec};

use crate::episode::{run_policy_episode, EpisodeOptions};
use crate::execution::ExecutionSpec;
use crate::pool::{ordered_pool, Flow, Workers};
use crate::resolve::{check_cameras, load_policy_folder, DeviceSpec};

/// A dataset recording.
#[derive(Debug, Clone)]
pub struct RecordSpec {
    /// The robot.
    pub robot: RobotDescription,
    /// Tasks, recorded one after the other.
    pub tasks: Vec<TaskSpec>,
    /// Episodes kept per task.
    pub episodes: u64,
    /// Tasks kept with another number of episodes than `episodes`: task name to episodes.
    pub task_episodes: BTreeMap<String, u64>,
    /// First seed.
    pub seed: u64,
    /// Output folder (must not hold a dataset).
    pub out: PathBuf,
    /// Square image side stored, px.
    pub image_size: u32,
    /// Per camera, the part of each frame stored (cropped, then resized): `[x0, y0, x1, y1]`,
    /// fractions of the frame. Written into the dataset; a policy trained on it reads its
    /// cameras the same way.
    pub crops: BTreeMap<String, [f64; 4]>,
    /// Keep episodes that did not succeed.
    pub keep_failures: bool,
    /// Standard deviation of the exploration noise on the expert's arm joints, rad.
    pub noise: f64,
    /// A policy folder driving while the expert labels (DAgger) or takes over.
    pub policy: Option<String>,
    /// With a policy: the fraction of episodes the expert drives instead.
    pub expert_fraction: f64,
    /// With a policy: it drives up to a random step within this fraction of the step limit,
    /// then the expert takes over.
    pub takeover: Option<f64>,
    /// With takeover: the tasks it applies to (empty: all), each `NAME` or `NAME:FRACTION`
    /// (that task's own window instead of `takeover`'s).
    pub takeover_tasks: Vec<String>,
    /// With takeover: the expert gets the task's whole step limit after the handover (the
    /// episode runs to the handover step plus the step limit) instead of the steps left. A late
    /// handover to a stalled push otherwise leaves the expert too few steps to finish it, and the
    /// recovery is never kept (docs/training.md, "Late handovers leave the expert no time").
    pub takeover_full_limit: bool,
    /// Episodes simulated at once.
    pub jobs: usize,
    /// Where the policy runs.
    pub device: DeviceSpec,
}

impl RecordSpec {
    /// The episodes kept of the task named `task`: its own number in `task_episodes`, else
    /// `episodes`.
    pub fn episodes_of(&self, task: &str) -> u64 {
        self.task_episodes
            .get(task)
            .copied()
            .unwrap_or(self.episodes)
    }
}

/// Per task: episodes kept, tried, policy successes, policy-driven episodes.
pub type TaskCounts = (u64, u64, u64, u64);

/// What a recording wrote.
#[derive(Debug, Clone)]
pub struct RecordReport {
    /// Episodes in the dataset.
    pub episodes: u64,
    /// Frames in the dataset.
    pub frames: u64,
    /// Tasks in the dataset.
    pub tasks: u64,
    /// Wall time, s.
    pub wall_s: f64,
    /// Per task.
    pub per_task: BTreeMap<String, TaskCounts>,
}

/// One frame of a demonstration, held until its episode is written.
struct Frame {
    state: Vec<f32>,
    action: Vec<f32>,
    images: Vec<RgbImage>,
}

/// Takes a frame at each policy step that has a demonstrator's action: the teacher's, when
/// there is one (DAgger), else the label of the chunk the step's observation got.
struct DatasetTap {
    teacher: Option<Box<dyn Policy>>,
    cameras: Vec<String>,
    size: u32,
    crops: BTreeMap<String, [f64; 4]>,
    frames: Vec<Frame>,
}

impl Tap for DatasetTap {
    fn record(&mut self, _: u64, _: sinew_runtime::Record<'_>) {}

    fn step(&mut self, step: StepRecord<'_>) -> Result<(), String> {
        let obs = step.observation;
        let label = match self.teacher.as_mut() {
            Some(t) => {
                let c = t
                    .infer(obs)
                    .map_err(|e| format!("the teacher at step {}: {e}", obs.step))?;
                c.label.or_else(|| c.actions.into_iter().next())
            }
            None => step.chunk.and_then(|c| c.label.clone()),
        };
        let Some(label) = label else { return Ok(()) };
        let mut images = Vec::with_capacity(self.cameras.len());
        for cam in &self.cameras {
            let f = step
                .frames
                .frame(cam)
                .map_err(|e| e.to_string())?
                .ok_or_else(|| format!("no frame from camera {cam}"))?;
            let data = resized_rgb(&f.color, cam, self.size, self.size, self.crops.get(cam))
                .map_err(|e| e.to_string())?;
            images.push(RgbImage {
                width: self.size,
                height: self.size,
                data,
            });
        }
        self.frames.push(Frame {
            state: obs.joint_positions.iter().map(|v| *v as f32).collect(),
            action: label.iter().map(|v| *v as f32).collect(),
            images,
        });
        Ok(())
    }
}

/// One seed's episode, as a worker hands it back.
struct SeedEpisode {
    succeeded: bool,
    policy_driven: bool,
    instruction: String,
    frames: Vec<Frame>,
}

/// Loads the policy that drives DAgger and takeover episodes, checked against the dataset.
fn load_learner(name: &str, robot: &RobotDescription, device: &DeviceSpec) -> Result<SharedPolicy> {
    let policy = load_policy_folder(name, device)?;
    let s = policy.spec();
    if s.action_kind != ActionKind::JointPosition {
        bail!(
            "policy {name} emits {:?} actions; DAgger recording needs absolute joint positions",
            s.action_kind
        );
    }
    if (s.control_rate_hz - 10.0).abs() > 1e-9 {
        bail!(
            "policy {name} runs at {} Hz; datasets here are 10 fps",
            s.control_rate_hz
        );
    }
    check_cameras(robot, &s.cameras).with_context(|| format!("policy {name}"))?;
    Ok(SharedPolicy::new(policy))
}

fn validate(spec: &RecordSpec) -> Result<()> {
    if !(spec.noise.is_finite() && spec.noise >= 0.0) {
        bail!(
            "--noise {} must be a non-negative number of radians",
            spec.noise
        );
    }
    if !(0.0..=1.0).contains(&spec.expert_fraction) {
        bail!(
            "--expert-fraction {} must be between 0 and 1",
            spec.expert_fraction
        );
    }
    if let Some(f) = spec.takeover {
        if !(f > 0.0 && f <= 1.0) {
            bail!("--takeover {f} must be a fraction of the step limit in (0, 1]");
        }
    }
    for t in &spec.takeover_tasks {
        parse_takeover_task(t)?;
    }
    if spec.policy.is_none() && spec.takeover.is_some() {
        bail!("--takeover needs --policy (the expert takes over from it)");
    }
    if spec.policy.is_none() && spec.expert_fraction != 0.0 {
        bail!("--expert-fraction needs --policy (without one the expert drives every episode)");
    }
    if spec.jobs == 0 {
        bail!("--jobs must be at least 1");
    }
    for name in spec.task_episodes.keys() {
        if !spec.tasks.iter().any(|t| &t.name == name) {
            let recorded: Vec<&str> = spec.tasks.iter().map(|t| t.name.as_str()).collect();
            bail!(
                "--task-episodes names task `{name}`, which is not recorded (--task: {})",
                recorded.join(", ")
            );
        }
    }
    for (cam, c) in &spec.crops {
        if !spec.robot.config.cameras.iter().any(|rc| &rc.name == cam) {
            bail!(
                "--crop {cam}=...: robot {} has no camera `{cam}` (it has: {})",
                spec.robot.config.name,
                spec.robot
                    .config
                    .cameras
                    .iter()
                    .map(|c| c.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        sinew_policy::preprocess::check_crop(c)
            .map_err(|e| anyhow::anyhow!("--crop {cam}: {e}"))?;
    }
    for t in &spec.tasks {
        if (t.control_rate_hz - 10.0).abs() > 1e-9 {
            bail!(
                "task {} runs at {} Hz; datasets here are 10 fps",
                t.name,
                t.control_rate_hz
            );
        }
    }
    Ok(())
}

/// Records the dataset; `progress` sees (task, kept, tried) after each episode written.
pub fn record_dataset(
    spec: &RecordSpec,
    mut progress: impl FnMut(&str, u64, u64),
    stop: &(dyn Fn() -> bool + Sync),
) -> Result<RecordReport> {
    validate(spec)?;
    let robot = &spec.robot;
    if let Some(p) = &spec.policy {
        // Fail before any worker starts (each loads its own copy).
        load_learner(p, robot, &spec.device)?;
    }
    let names = robot.joint_names();
    let ds = DatasetSpec {
        robot_type: robot.config.name.clone(),
        fps: 10,
        state_names: names.clone(),
        action_names: names,
        cameras: robot
            .config
            .cameras
            .iter()
            .map(|c| (c.name.clone(), spec.image_size, spec.image_size))
            .collect(),
        crops: spec.crops.clone(),
        data_files_size_in_mb: 100.0,
    };
    let mut w = DatasetWriter::create(&spec.out, ds)?;
    let t0 = Instant::now();
    let mut per_task = BTreeMap::new();
    for task in &spec.tasks {
        let counts = record_task(spec, task, &mut w, &mut progress, stop)?;
        per_task.insert(task.name.clone(), counts);
    }
    let info = w.finish()?;
    Ok(RecordReport {
        episodes: info.total_episodes,
        frames: info.total_frames,
        tasks: info.total_tasks,
        wall_s: t0.elapsed().as_secs_f64(),
        per_task,
    })
}

fn record_task(
    spec: &RecordSpec,
    task: &TaskSpec,
    w: &mut DatasetWriter,
    progress: &mut impl FnMut(&str, u64, u64),
    stop: &(dyn Fn() -> bool + Sync),
) -> Result<TaskCounts> {
    let (mut kept, mut tried, mut succeeded, mut driven) = (0u64, 0u64, 0u64, 0u64);
    let episodes = spec.episodes_of(&task.name);
    if episodes == 0 {
        return Ok((kept, tried, succeeded, driven));
    }
    let init = |_k: usize| -> Result<Option<SharedPolicy>> { Ok(None) };
    let work =
        |learner: &mut Option<SharedPolicy>, seed: &u64| record_seed(spec, task, *seed, learner);
    let workers = Workers {
        name: "sinew-record",
        count: spec.jobs,
        init: &init,
        work: &work,
        end: &|_| {},
    };
    ordered_pool(
        spec.seed..,
        &workers,
        |_seed, e: SeedEpisode| {
            tried += 1;
            // Policy-driven DAgger episodes are kept whether they succeed or not.
            let dagger = e.policy_driven && spec.takeover.is_none();
            if dagger {
                driven += 1;
                succeeded += u64::from(e.succeeded);
            }
            if e.succeeded || spec.keep_failures || dagger {
                for f in &e.frames {
                    w.add_frame(&f.state, &f.action, &f.images)?;
                }
                w.end_episode(&e.instruction)?;
                kept += 1;
            }
            progress(&task.name, kept, tried);
            Ok(if kept >= episodes {
                Flow::Stop
            } else {
                Flow::Continue
            })
        },
        stop,
    )?;
    Ok((kept, tried, succeeded, driven))
}

/// An expert with exploration noise of `sigma` rad on every joint but the gripper, drawn
/// from the seed's own stream.
fn noisy_expert(
    expert: ExpertPolicy,
    sigma: f64,
    gripper: Option<usize>,
    seed: u64,
) -> Box<dyn Policy> {
    let rng = SplitMix64(seed ^ 0xDA27_0000_0000_0001);
    Box::new(ActionNoise::new(Box::new(expert), sigma, gripper, rng))
}

/// One `--takeover-tasks` entry, `NAME` or `NAME:FRACTION`: the task's name and its own
/// takeover window, if it gives one.
fn parse_takeover_task(entry: &str) -> Result<(&str, Option<f64>)> {
    let Some((name, frac)) = entry.split_once(':') else {
        return Ok((entry, None));
    };
    let f: f64 = frac.trim().parse().map_err(|_| {
        anyhow::anyhow!("--takeover-tasks {entry}: `{frac}` is not a number (NAME:FRACTION)")
    })?;
    if !(f > 0.0 && f <= 1.0) {
        bail!("--takeover-tasks {entry}: {f} must be a fraction of the step limit in (0, 1]");
    }
    Ok((name, Some(f)))
}

/// The takeover window of `task` (a fraction of its step limit), or `None` where the expert
/// drives alone: `--takeover`, or the task's own `NAME:FRACTION` in `--takeover-tasks`; tasks
/// not in a non-empty `--takeover-tasks` have none.
fn takeover_window(spec: &RecordSpec, task: &str) -> Result<Option<f64>> {
    let Some(default) = spec.takeover else {
        return Ok(None);
    };
    if spec.takeover_tasks.is_empty() {
        return Ok(Some(default));
    }
    for entry in &spec.takeover_tasks {
        let (name, own) = parse_takeover_task(entry)?;
        if name == task {
            return Ok(Some(own.unwrap_or(default)));
        }
    }
    Ok(None)
}

/// The task an episode handed over at `switch_step` runs under: with `full_limit`, its step
/// limit grows by the handover step, so the expert has the whole limit after the handover;
/// otherwise (or without a handover) the task as it is.
fn task_after_handover(
    task: &TaskSpec,
    switch_step: Option<u64>,
    full_limit: bool,
) -> std::borrow::Cow<'_, TaskSpec> {
    match switch_step {
        Some(at) if full_limit => {
            let mut t = task.clone();
            t.step_limit = t
                .step_limit
                .saturating_add(u32::try_from(at).unwrap_or(u32::MAX));
            std::borrow::Cow::Owned(t)
        }
        _ => std::borrow::Cow::Borrowed(task),
    }
}

/// Runs one seed's episode: the expert drives, or the policy (loaded into `learner` on first
/// use) drives while the expert labels or takes over, as the spec asks.
fn record_seed(
    spec: &RecordSpec,
    task: &TaskSpec,
    seed: u64,
    learner: &mut Option<SharedPolicy>,
) -> Result<SeedEpisode> {
    let robot = &spec.robot;
    let ep: Episode = task.sample(&robot.config.name, seed)?;
    // The mixture is drawn per seed, so a rerun drives the same episodes the same way.
    let window = takeover_window(spec, &task.name)?;
    let skip_takeover = spec.takeover.is_some() && window.is_none();
    let expert_drives = spec.policy.is_none()
        || skip_takeover
        || SplitMix64(seed ^ 0xBE7A_0000_0000_0002).unit() < spec.expert_fraction;
    let mut teacher: Option<Box<dyn Policy>> = None;
    let mut switch_step = None;
    let policy: Box<dyn Policy> = match (&spec.policy, expert_drives) {
        (Some(p), false) => {
            if learner.is_none() {
                *learner = Some(load_learner(p, robot, &spec.device)?);
            }
            let l = learner.clone().context("the learner is loaded")?;
            match window {
                Some(within) => {
                    let u = SplitMix64(seed ^ 0x7A6E_0000_0000_0003).unit();
                    let at = (u * within * task.step_limit as f64) as u64;
                    switch_step = Some(at);
                    let (robot, task, ep) = (robot.clone(), task.clone(), ep.clone());
                    let sigma = spec.noise;
                    Box::new(Handover::new(
                        Box::new(l),
                        at,
                        Box::new(move |obs| {
                            let e = ExpertPolicy::taking_over(&robot, &task, ep.clone(), obs)?;
                            Ok(noisy_expert(e, sigma, robot.config.gripper_index(), seed))
                        }),
                    ))
                }
                None => {
                    teacher = Some(Box::new(ExpertPolicy::new(robot, task, ep.clone())));
                    Box::new(l)
                }
            }
        }
        _ => noisy_expert(
            ExpertPolicy::new(robot, task, ep.clone()),
            spec.noise,
            robot.config.gripper_index(),
            seed,
        ),
    };
    let policy_driven = !expert_drives;
    let mut tap = DatasetTap {
        teacher,
        cameras: robot
            .config
            .cameras
            .iter()
            .map(|c| c.name.clone())
            .collect(),
        size: spec.image_size,
        crops: spec.crops.clone(),
        frames: Vec::new(),
    };
    let opts = EpisodeOptions {
        exec: ExecutionSpec::default(),
        record_cameras: false,
    };
    let run_task = task_after_handover(task, switch_step, spec.takeover_full_limit);
    let (_, report, _) =
        run_policy_episode(robot, &run_task, seed, &ep, policy, &opts, &mut [&mut tap])?;
    let mut succeeded = report.end == End::Success;
    if switch_step.is_some() && tap.frames.is_empty() {
        // The policy succeeded before the expert took over: nothing was recorded.
        succeeded = false;
    }
    Ok(SeedEpisode {
        succeeded,
        policy_driven,
        instruction: ep.instruction,
        frames: tap.frames,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(takeover: Option<f64>, tasks: &[&str]) -> RecordSpec {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        RecordSpec {
            robot: RobotDescription::load(&root.join("robots/so101")).expect("robot"),
            tasks: Vec::new(),
            episodes: 1,
            task_episodes: BTreeMap::new(),
            seed: 0,
            out: PathBuf::from("unused"),
            image_size: 96,
            crops: BTreeMap::new(),
            keep_failures: false,
            noise: 0.0,
            policy: Some("unused".into()),
            expert_fraction: 0.0,
            takeover,
            takeover_tasks: tasks.iter().map(|t| t.to_string()).collect(),
            takeover_full_limit: false,
            jobs: 1,
            device: DeviceSpec::default(),
        }
    }

    #[test]
    fn a_task_can_have_its_own_takeover_window() {
        let s = spec(Some(0.4), &["reach", "pick-place:0.15"]);
        assert_eq!(takeover_window(&s, "reach").expect("reach"), Some(0.4));
        assert_eq!(takeover_window(&s, "pick-place").expect("pick"), Some(0.15));
        // Not listed: the expert drives alone.
        assert_eq!(takeover_window(&s, "push").expect("push"), None);
        // No list: every task, the common window; no --takeover: none.
        assert_eq!(
            takeover_window(&spec(Some(0.4), &[]), "push").expect("push"),
            Some(0.4)
        );
        assert_eq!(
            takeover_window(&spec(None, &["reach:0.2"]), "reach").expect("reach"),
            None
        );
    }

    #[test]
    fn a_full_limit_handover_gives_the_expert_the_whole_step_limit() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let push = TaskSpec::load_named(&root, "push").expect("push task");
        let limit = push.step_limit;
        // Handed over at step 120: the expert has the whole limit after it, or only what is left.
        let full = task_after_handover(&push, Some(120), true);
        assert_eq!(full.step_limit, limit + 120);
        assert_eq!(
            task_after_handover(&push, Some(120), false).step_limit,
            limit
        );
        // No handover (the expert or the policy drives alone): the task as it is.
        assert_eq!(task_after_handover(&push, None, true).step_limit, limit);
        // Nothing else changes.
        assert_eq!(full.name, push.name);
        assert_eq!(full.control_rate_hz, push.control_rate_hz);
    }

    #[test]
    fn a_bad_takeover_window_is_named_in_the_error() {
        for (entry, says) in [
            ("pick-place:abc", "`abc` is not a number"),
            ("pick-place:0", "must be a fraction"),
            ("pick-place:1.5", "must be a fraction"),
        ] {
            let e = validate(&spec(Some(0.4), &[entry]))
                .expect_err(entry)
                .to_string();
            assert!(e.contains(entry) && e.contains(says), "{entry}: {e}");
        }
    }
}
