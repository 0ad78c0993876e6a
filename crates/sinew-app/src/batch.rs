//! Batches of simulated episodes: `sinew sim run` (one task, recorded if asked) and
//! `sinew eval` (several tasks, a success table per task and instruction template), both on
//! the one worker pool.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Instant;

use anyhow::Result;
use serde::Serialize;
use sinew_robot::RobotDescription;
use sinew_sim::{Phrasing, SuccessKind, TaskSpec};

use crate::approach::{
    named_end_from_goal_mm, named_stall, named_to_goal_mm, ApproachTap, Failure, Stall,
};
use crate::episode::{run_episode, Driver, EpisodeOptions, EpisodeResult, PolicyName};
use crate::execution::ExecutionSpec;
use crate::pool::{ordered_pool, Flow, Workers};
use crate::recording::{
    append_index, episode_metadata, episode_stem, Outputs, OutputsReport, RerunSpec,
};
use crate::resolve::DeviceSpec;
use sinew_runtime::Tap;

/// A batch of episodes.
#[derive(Debug, Clone)]
pub struct BatchSpec {
    /// The robot.
    pub robot: RobotDescription,
    /// The tasks.
    pub tasks: Vec<TaskSpec>,
    /// The policy.
    pub policy: PolicyName,
    /// Episodes per task.
    pub episodes: u64,
    /// Seed of the first (episode i of every task uses seed + i).
    pub seed: u64,
    /// Chunk execution.
    pub exec: ExecutionSpec,
    /// Where models run.
    pub device: DeviceSpec,
    /// Record each episode under this folder (MCAP, `.rrd` unless `rerun.no_rrd`, and the
    /// `episodes.jsonl` index).
    pub record: Option<PathBuf>,
    /// Record each task's episodes in a folder of its own (`<record>/<task>/`).
    pub task_folders: bool,
    /// Rerun output.
    pub rerun: RerunSpec,
    /// How recordings (MCAP and `.rrd`) store camera images.
    pub encodings: sinew_record::Encodings,
    /// Episodes simulated at once (each worker loads its own copy of the policy).
    pub jobs: usize,
    /// The instruction phrasings each seed is run with (the same scene once per phrasing);
    /// `None`: every phrasing the task file has (training, and held-out when it lists
    /// held-out templates).
    pub phrasings: Option<Vec<Phrasing>>,
    /// Also run every seed with the instruction naming a distractor instead of the target
    /// (the instruction swap: the same scene, the same training template), once more; seeds
    /// whose scene has no distractor are left out of it.
    pub swap: bool,
}

impl BatchSpec {
    /// The phrasings `task`'s seeds are run with.
    pub fn phrasings_of(&self, task: &TaskSpec) -> Vec<Phrasing> {
        match &self.phrasings {
            Some(p) => p.clone(),
            None if task.held_out_instructions.is_empty() => vec![Phrasing::Training],
            None => vec![Phrasing::Training, Phrasing::HeldOut],
        }
    }
}

/// One episode of a batch.
#[derive(Debug, Clone, Serialize)]
pub struct EpisodeRow {
    /// Its task.
    pub task: String,
    /// Whether the instruction came from the training or the held-out templates.
    pub phrasing: Phrasing,
    /// Whether the instruction names the scene's first distractor instead of its target (the
    /// instruction swap).
    pub swapped: bool,
    /// The colour of the cube the instruction names.
    pub named: String,
    /// The colour of the first cube the arm acted on (the tool within 1 cm of its surface, or
    /// the cube moved by over 1 cm), if any.
    pub first_approached: Option<String>,
    /// The closest the tool centre point came to the named cube's surface, mm.
    pub closest_to_named_mm: Option<f64>,
    /// Why it failed (`None` for a success).
    pub failure: Option<Failure>,
    /// The named cube's distance across the table to its goal (the goal zone's or the bowl's
    /// centre), mm, where it started and where it ended (`None` for a reach).
    pub named_to_goal_mm: Option<[f64; 2]>,
    /// Where the named cube ended relative to its goal's centre, base-frame x and y, mm
    /// (`None` for a reach).
    pub named_end_from_goal_mm: Option<[f64; 2]>,
    /// A failed push or pick-and-place: the steps after the named cube last moved, and what the
    /// tool did in them (`None` for a success or a reach).
    pub named_stall: Option<Stall>,
    /// The instruction template the seed drew (its index in that list).
    pub template: usize,
    /// The template.
    pub template_text: String,
    /// The result.
    #[serde(flatten)]
    pub result: EpisodeResult,
}

/// What a batch did.
#[derive(Debug, Clone)]
pub struct BatchReport {
    /// Every episode, in task then seed order.
    pub rows: Vec<EpisodeRow>,
    /// Wall time, s.
    pub wall_s: f64,
    /// What the recorders wrote.
    pub outputs: Option<OutputsReport>,
}

struct Worker {
    driver: Driver,
    outputs: Option<Outputs>,
}

/// The batch's episodes: (task index, how the scene is instructed, seed), in report order.
fn batch_jobs(spec: &BatchSpec) -> Vec<(usize, Variant, u64)> {
    spec.tasks
        .iter()
        .enumerate()
        .flat_map(|(t, task)| {
            let mut variants: Vec<Variant> = spec
                .phrasings_of(task)
                .into_iter()
                .map(|phrasing| Variant {
                    phrasing,
                    swapped: false,
                })
                .collect();
            if spec.swap {
                variants.push(Variant {
                    phrasing: Phrasing::Training,
                    swapped: true,
                });
            }
            let robot = &spec.robot.config.name;
            variants.into_iter().flat_map(move |v| {
                // A swap needs a distractor to name (a version-1 scene may have none).
                (spec.seed..spec.seed + spec.episodes)
                    .filter(move |&s| {
                        !v.swapped || task.sample(robot, s).is_ok_and(|e| e.objects.len() > 1)
                    })
                    .map(move |s| (t, v, s))
            })
        })
        .collect()
}

/// Runs the batch; `on_episode` sees each episode as it finishes, in order.
pub fn run_batch(
    spec: &BatchSpec,
    mut on_episode: impl FnMut(&EpisodeRow),
    stop: &(dyn Fn() -> bool + Sync),
) -> Result<BatchReport> {
    let t0 = Instant::now();
    // Fail early, once, on a policy that does not load or fit the robot.
    Driver::new(&spec.policy, &spec.device)?.check_fits(&spec.robot)?;
    let several = spec.task_folders;
    let reports = Mutex::new(Vec::new());
    let jobs = batch_jobs(spec);
    let joints = spec.robot.joint_names();
    let opts = EpisodeOptions {
        exec: spec.exec.clone(),
        record_cameras: spec.record.is_some() || spec.rerun.connect.is_some(),
    };
    let init = |_k: usize| -> Result<Worker> {
        Ok(Worker {
            driver: Driver::new(&spec.policy, &spec.device)?,
            outputs: Outputs::start(
                &spec.robot,
                spec.record.as_deref(),
                &spec.rerun,
                spec.encodings,
            )?,
        })
    };
    let work = |w: &mut Worker, job: &(usize, Variant, u64)| -> Result<EpisodeRow> {
        let (ti, variant, seed) = *job;
        let task = &spec.tasks[ti];
        let mut episode = task.sample_phrased(&spec.robot.config.name, seed, variant.phrasing)?;
        if variant.swapped {
            episode = episode.retarget(1)?;
        }
        let mut approach = ApproachTap::new(&spec.robot);
        let rate_hz = w.driver.rate_hz(task);
        let mut recorder = match &mut w.outputs {
            Some(out) => {
                let stem = stem_of(several, &task.name, variant, seed);
                let title = format!("{} {} seed {seed}", spec.robot.config.name, task.name);
                let meta = episode_metadata(
                    &spec.robot,
                    &task.name,
                    seed,
                    spec.policy.as_str(),
                    &spec.exec,
                );
                out.open(&stem, &title, meta)?;
                Some(out.tap(&joints, rate_hz, false))
            }
            None => None,
        };
        let mut taps: Vec<&mut dyn Tap> = vec![&mut approach];
        if let Some(t) = recorder.as_mut() {
            taps.push(t);
        }
        let result = run_episode(
            &spec.robot,
            task,
            seed,
            &episode,
            &mut w.driver,
            &opts,
            &mut taps,
        )?;
        drop(taps);
        drop(recorder);
        if let Some(out) = &mut w.outputs {
            out.close_one()?;
        }
        Ok(EpisodeRow {
            task: task.name.clone(),
            phrasing: variant.phrasing,
            swapped: variant.swapped,
            named: episode.objects[0].color.clone(),
            // Success acts on the named cube: an episode that ends on it before the tap saw
            // any cube acted on (a reach ends at the touch) went to it first.
            first_approached: approach
                .first()
                .map(str::to_owned)
                .or_else(|| result.success.then(|| episode.objects[0].color.clone())),
            closest_to_named_mm: approach
                .closest(&episode.objects[0].color)
                .filter(|d| d.is_finite())
                .map(|d| d * 1e3),
            named_to_goal_mm: named_to_goal_mm(&episode, &approach),
            named_end_from_goal_mm: named_end_from_goal_mm(&episode, &approach),
            named_stall: (!result.success && task.success != SuccessKind::Touch)
                .then(|| named_stall(&episode, &approach))
                .flatten(),
            failure: (!result.success)
                .then(|| Failure::of(task.success, &episode, &approach))
                .flatten(),
            template: episode.template,
            template_text: episode.template_text,
            result,
        })
    };
    let end = |w: Worker| {
        if let Some(o) = w.outputs {
            if let Ok(mut r) = reports.lock() {
                r.push(o.finish());
            }
        }
    };
    let workers = Workers {
        name: "sinew-episode",
        count: spec.jobs,
        init: &init,
        work: &work,
        end: &end,
    };
    let mut rows = Vec::new();
    ordered_pool(
        jobs.into_iter(),
        &workers,
        |(ti, variant, seed), row: EpisodeRow| {
            if let Some(dir) = &spec.record {
                let task = &spec.tasks[ti];
                let file = format!("{}.mcap", stem_of(several, &task.name, variant, seed));
                let line = serde_json::json!({
                    "file": file, "seed": seed, "task": task.name,
                    "phrasing": variant.phrasing, "swapped": variant.swapped,
                    "robot": spec.robot.config.name, "policy": spec.policy.as_str(),
                    "instruction": row.result.instruction, "success": row.result.success,
                    "steps": row.result.steps,
                });
                append_index(dir, &line)?;
            }
            on_episode(&row);
            rows.push(row);
            Ok(Flow::Continue)
        },
        stop,
    )?;
    let outputs = reports
        .into_inner()
        .ok()
        .filter(|r| !r.is_empty())
        .map(OutputsReport::merge);
    Ok(BatchReport {
        rows,
        wall_s: t0.elapsed().as_secs_f64(),
        outputs,
    })
}

/// How a seed's scene is instructed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Variant {
    phrasing: Phrasing,
    swapped: bool,
}

/// A recording's name within the batch folder: `[<task>/]episode_<seed>`, with `-held-out`
/// for the held-out phrasing of the same scene and `-swap` for the instruction swap.
fn stem_of(task_folders: bool, task: &str, v: Variant, seed: u64) -> String {
    let mut stem = episode_stem(seed);
    if v.phrasing == Phrasing::HeldOut {
        stem += "-held-out";
    }
    if v.swapped {
        stem += "-swap";
    }
    if task_folders {
        format!("{task}/{stem}")
    } else {
        stem
    }
}

/// Success of one instruction template.
#[derive(Debug, Clone, Serialize)]
pub struct TemplateRow {
    /// Training or held-out.
    pub phrasing: Phrasing,
    /// The template's index in its list of the task file.
    pub template: usize,
    /// The template.
    pub example: String,
    /// Episodes drawn with it.
    pub n_episodes: u64,
    /// Their success, %.
    pub pc_success: f64,
}

/// Success of one task.
#[derive(Debug, Clone, Serialize)]
pub struct TaskRow {
    /// The task.
    pub task: String,
    /// Episodes.
    pub n_episodes: u64,
    /// Success, %.
    pub pc_success: f64,
    /// Mean policy steps.
    pub mean_length: f64,
    /// Mean policy steps of the successes.
    pub mean_length_success: f64,
    /// Inferences per simulated second.
    pub policy_rate_hz: f64,
    /// Mean inference wall time, ms.
    pub mean_inference_ms: f64,
    /// By phrasing: the training templates and the held-out ones, each on the same seeds.
    pub by_phrasing: Vec<PhrasingRow>,
    /// The instruction swap (`BatchSpec::swap`); its episodes count in no other row.
    pub swap: Option<SwapRow>,
    /// By instruction template.
    pub by_instruction: Vec<TemplateRow>,
    /// Why the episodes that failed did (swaps not counted), most common first.
    pub failures: Vec<FailureRow>,
}

/// How many of a task's episodes failed one way.
#[derive(Debug, Clone, Serialize)]
pub struct FailureRow {
    /// The way.
    pub failure: Failure,
    /// Episodes.
    pub n_episodes: u64,
    /// Share of the task's episodes, %.
    pub pc_of_episodes: f64,
}

/// Success of one phrasing of a task.
#[derive(Debug, Clone, Serialize)]
pub struct PhrasingRow {
    /// Training or held-out.
    pub phrasing: Phrasing,
    /// Episodes.
    pub n_episodes: u64,
    /// Success, %.
    pub pc_success: f64,
    /// Episodes whose arm went to the named cube before any other, %.
    pub pc_went_to_named: f64,
    /// The median over episodes of the closest the tool came to the named cube's surface, mm.
    pub median_closest_to_named_mm: Option<f64>,
}

/// The instruction swap of one task: each seed's scene once more, the instruction naming a
/// distractor instead of the target.
#[derive(Debug, Clone, Serialize)]
pub struct SwapRow {
    /// Episodes (one per seed).
    pub n_episodes: u64,
    /// Episodes whose arm went first to the newly named cube, %.
    pub pc_went_to_named: f64,
    /// Episodes whose arm went first to another cube (mostly the one the original instruction
    /// named), %.
    pub pc_went_to_original: f64,
    /// Episodes that did the task with the newly named cube, %.
    pub pc_success: f64,
}

impl EpisodeRow {
    /// Whether the first cube the arm went to is the one the instruction names.
    pub fn went_to_named(&self) -> bool {
        self.first_approached.as_deref() == Some(self.named.as_str())
    }
}

/// The median of `v` (the mean of the middle two of an even count); `None` when empty.
pub(crate) fn median(mut v: Vec<f64>) -> Option<f64> {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(v[n / 2]),
        _ => Some(0.5 * (v[n / 2 - 1] + v[n / 2])),
    }
}

/// The "Where the named cube stopped" table: for each task and way of failing (swaps not
/// counted), medians over the episodes of how long the named cube lay still at the end and
/// where the tool was meanwhile ([`Stall`]); empty when no failure has a stall.
fn stall_table(rows: &[&EpisodeRow]) -> String {
    let mut groups: BTreeMap<(&str, Failure), Vec<Stall>> = BTreeMap::new();
    for r in rows {
        if let (Some(f), Some(st)) = (r.failure, r.named_stall) {
            groups.entry((r.task.as_str(), f)).or_default().push(st);
        }
    }
    if groups.is_empty() {
        return String::new();
    }
    let mut md = "\n## Where the named cube stopped\n\nFailed episodes (swaps not counted), by way of failing: medians over the episodes of the policy steps the named cube lay still at the end (within 2 mm of where it ended), and of where the tool centre point was meanwhile: its height above the cube's centre, its distance across the table from it, and how far it travelled. \"Tool still\": the episodes whose tool travelled under 50 mm while the cube lay still for 20 steps or more.\n\n| task | what happened | episodes | still for (steps) | tool above the cube (mm) | tool from the cube (mm) | tool travel (mm) | tool still |\n|---|---|---|---|---|---|---|---|\n".to_owned();
    for ((task, f), st) in &groups {
        let med = |g: fn(&Stall) -> f64| median(st.iter().map(g).collect()).unwrap_or(f64::NAN);
        let still = st
            .iter()
            .filter(|x| x.steps >= 20 && x.tool_travel_mm < 50.0)
            .count();
        md += &format!(
            "| {task} | {} | {} | {:.0} | {:.0} | {:.0} | {:.0} | {still} |\n",
            f.describe(),
            st.len(),
            med(|x| x.steps as f64),
            med(|x| x.tool_above_cube_mm),
            med(|x| x.tool_from_cube_mm),
            med(|x| x.tool_travel_mm),
        );
    }
    md
}

/// Per-task tables of a batch.
pub fn task_rows(tasks: &[TaskSpec], rows: &[EpisodeRow]) -> Vec<TaskRow> {
    let mut per_task = Vec::new();
    for task in tasks {
        let mine: Vec<&EpisodeRow> = rows
            .iter()
            .filter(|r| r.task == task.name && !r.swapped)
            .collect();
        let swaps: Vec<&EpisodeRow> = rows
            .iter()
            .filter(|r| r.task == task.name && r.swapped)
            .collect();
        let n = mine.len().max(1) as f64;
        let ok: Vec<&&EpisodeRow> = mine.iter().filter(|r| r.result.success).collect();
        let sim_s: f64 = mine.iter().map(|r| r.result.sim_time_s).sum();
        let infer: u64 = mine.iter().map(|r| r.result.inferences).sum();
        let mut by: BTreeMap<(Phrasing, usize), (String, u64, u64)> = BTreeMap::new();
        let mut by_phrasing: BTreeMap<Phrasing, (u64, u64, u64, Vec<f64>)> = BTreeMap::new();
        let mut failures: BTreeMap<Failure, u64> = BTreeMap::new();
        for r in &mine {
            if let Some(f) = r.failure {
                *failures.entry(f).or_default() += 1;
            }
            let e = by
                .entry((r.phrasing, r.template))
                .or_insert_with(|| (r.template_text.clone(), 0, 0));
            e.1 += 1;
            e.2 += r.result.success as u64;
            let p = by_phrasing.entry(r.phrasing).or_default();
            p.0 += 1;
            p.1 += r.result.success as u64;
            p.2 += r.went_to_named() as u64;
            p.3.extend(r.closest_to_named_mm);
        }
        per_task.push(TaskRow {
            task: task.name.clone(),
            n_episodes: mine.len() as u64,
            pc_success: 100.0 * ok.len() as f64 / n,
            mean_length: mine.iter().map(|r| r.result.steps as f64).sum::<f64>() / n,
            mean_length_success: ok.iter().map(|r| r.result.steps as f64).sum::<f64>()
                / ok.len().max(1) as f64,
            policy_rate_hz: infer as f64 / sim_s.max(1e-9),
            mean_inference_ms: mine.iter().map(|r| r.result.mean_inference_ms).sum::<f64>() / n,
            by_phrasing: by_phrasing
                .into_iter()
                .map(|(phrasing, (n, k, named, closest))| PhrasingRow {
                    phrasing,
                    n_episodes: n,
                    pc_success: 100.0 * k as f64 / n.max(1) as f64,
                    pc_went_to_named: 100.0 * named as f64 / n.max(1) as f64,
                    median_closest_to_named_mm: median(closest),
                })
                .collect(),
            swap: (!swaps.is_empty()).then(|| {
                let n = swaps.len() as u64;
                let pc = |k: usize| 100.0 * k as f64 / n as f64;
                SwapRow {
                    n_episodes: n,
                    pc_went_to_named: pc(swaps.iter().filter(|r| r.went_to_named()).count()),
                    pc_went_to_original: pc(swaps
                        .iter()
                        .filter(|r| r.first_approached.is_some() && !r.went_to_named())
                        .count()),
                    pc_success: pc(swaps.iter().filter(|r| r.result.success).count()),
                }
            }),
            by_instruction: by
                .into_iter()
                .map(|((phrasing, t), (ex, n, k))| TemplateRow {
                    phrasing,
                    template: t,
                    example: ex,
                    n_episodes: n,
                    pc_success: 100.0 * k as f64 / n.max(1) as f64,
                })
                .collect(),
            failures: {
                let mut f: Vec<FailureRow> = failures
                    .into_iter()
                    .map(|(failure, k)| FailureRow {
                        failure,
                        n_episodes: k,
                        pc_of_episodes: 100.0 * k as f64 / n,
                    })
                    .collect();
                // Most common first; ties in the enum's order (stable sort).
                f.sort_by_key(|r| std::cmp::Reverse(r.n_episodes));
                f
            },
        });
    }
    per_task
}

/// An evaluation: its JSON report and its Markdown table.
#[derive(Debug, Clone)]
pub struct EvalReport {
    /// `eval.json`.
    pub json: serde_json::Value,
    /// `eval.md`.
    pub markdown: String,
}

/// The report of an evaluation batch.
pub fn eval_report(spec: &BatchSpec, report: &BatchReport) -> EvalReport {
    let rows = &report.rows;
    let per_task = task_rows(&spec.tasks, rows);
    let scored: Vec<&EpisodeRow> = rows.iter().filter(|r| !r.swapped).collect();
    let n_all = scored.len().max(1) as f64;
    let ok_all = scored.iter().filter(|r| r.result.success).count() as f64;
    let json = serde_json::json!({
        "policy": spec.policy.as_str(),
        "robot": spec.robot.config.name,
        "seeds": format!("{}..{}", spec.seed, spec.seed + spec.episodes),
        "aggregated": {
            "pc_success": 100.0 * ok_all / n_all,
            "n_episodes": scored.len(),
            "eval_s": report.wall_s,
            "eval_ep_s": report.wall_s / rows.len().max(1) as f64,
        },
        "per_task": per_task,
        "per_episode": rows,
    });
    let mut md = format!(
        "# Evaluation of `{}` on {}\n\nSeeds {}..{} per task, {} episodes, {:.0} s wall.\n\n| task | episodes | success | mean length (steps) | policy rate (Hz) | inference (ms) |\n|---|---|---|---|---|---|\n",
        spec.policy.as_str(),
        spec.robot.config.name,
        spec.seed,
        spec.seed + spec.episodes,
        rows.len(),
        report.wall_s
    );
    for t in &per_task {
        md += &format!(
            "| {} | {} | {:.1}% | {:.1} | {:.1} | {:.1} |\n",
            t.task,
            t.n_episodes,
            t.pc_success,
            t.mean_length,
            t.policy_rate_hz,
            t.mean_inference_ms
        );
    }
    md += &format!(
        "| **all** | {} | **{:.1}%** | | | |\n",
        scored.len(),
        100.0 * ok_all / n_all
    );
    if per_task.iter().any(|t| t.by_phrasing.len() > 1) {
        md += "\n## By phrasing\n\nThe same seeds, instructed with the templates training data uses and with the held-out ones. \"Went to the named cube\": the first cube the arm acted on (the tool within 1 cm of it, or the cube moved by over 1 cm) is the one named. \"Closest approach\": the median over episodes of the closest the tool centre point came to the named cube's surface.\n\n| task | phrasing | episodes | success | went to the named cube | closest approach (mm) |\n|---|---|---|---|---|---|\n";
        for t in &per_task {
            for p in &t.by_phrasing {
                md += &format!(
                    "| {} | {} | {} | {:.1}% | {:.1}% | {} |\n",
                    t.task,
                    p.phrasing,
                    p.n_episodes,
                    p.pc_success,
                    p.pc_went_to_named,
                    p.median_closest_to_named_mm
                        .map_or("-".into(), |d| format!("{d:.1}"))
                );
            }
        }
    }
    if per_task.iter().any(|t| t.swap.is_some()) {
        md += "\n## Instruction swap\n\nEach seed's scene once more, the instruction (a training template) naming a distractor instead of the target.\n\n| task | episodes | went to the newly named cube | went to another cube first | did the task with it |\n|---|---|---|---|---|\n";
        for t in &per_task {
            if let Some(w) = &t.swap {
                md += &format!(
                    "| {} | {} | **{:.1}%** | {:.1}% | {:.1}% |\n",
                    t.task, w.n_episodes, w.pc_went_to_named, w.pc_went_to_original, w.pc_success
                );
            }
        }
    }
    if per_task.iter().any(|t| !t.failures.is_empty()) {
        md += "\n## Why episodes failed\n\nWhere the named cube went in the episodes that did not succeed (swaps not counted), as a share of the task's episodes.\n\n| task | what happened | episodes | share |\n|---|---|---|---|\n";
        for t in &per_task {
            for f in &t.failures {
                md += &format!(
                    "| {} | {} | {} | {:.1}% |\n",
                    t.task,
                    f.failure.describe(),
                    f.n_episodes,
                    f.pc_of_episodes
                );
            }
        }
    }
    md += &stall_table(&scored);
    md += "\n## By instruction template\n\n| task | phrasing | template | episodes | success |\n|---|---|---|---|---|\n";
    for t in &per_task {
        for b in &t.by_instruction {
            md += &format!(
                "| {} | {} | `{}` | {} | {:.1}% |\n",
                t.task, b.phrasing, b.example, b.n_episodes, b.pc_success
            );
        }
    }
    EvalReport { json, markdown: md }
}
