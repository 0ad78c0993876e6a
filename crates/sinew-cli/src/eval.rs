//! `sinew eval`: closed-loop evaluation of a policy through the runtime in the simulator,
//! episodes in parallel, with a success table per task and per instruction template.
//!
//! Seeds default to 1,000,000 and up, disjoint from `dataset record`'s default of 0 and up, so
//! a policy trained on Sinew's demonstrations is evaluated on scenes it has not seen.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use serde::Serialize;
use sinew_bus::keys::RobotKeys;
use sinew_record::{RecordItem, RecorderThread};
use sinew_viz::{episode_rrd, Sink, VizItem, VizThread};

use crate::policy::DeviceArgs;
use crate::sim::{load_robot, load_task};
use crate::sim_run::{
    driver, episode_metadata, run_episode, EpisodeRecorder, EpisodeResult, ExecutionArgs,
};
use crate::stop::Stop;

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// `expert` or a policy folder (a name under policies/ or a path).
    #[arg(long)]
    policy: String,
    /// Robot name or folder.
    #[arg(long, default_value = "so101")]
    robot: String,
    /// Tasks, comma-separated.
    #[arg(long, default_value = "reach,push,pick-place", value_delimiter = ',')]
    tasks: Vec<String>,
    /// Episodes per task.
    #[arg(long, default_value_t = 100)]
    episodes: u64,
    /// First seed (episode i of every task uses seed + i).
    #[arg(long, default_value_t = 1_000_000)]
    seed: u64,
    /// Episodes run at once (each worker loads its own copy of the policy).
    #[arg(long, default_value_t = 2)]
    jobs: usize,
    /// Output folder: eval.json, eval.md (and episodes/ with --record).
    #[arg(long)]
    out: PathBuf,
    /// Record every episode (MCAP and .rrd) under OUT/episodes/<task>/.
    #[arg(long)]
    record: bool,
    #[command(flatten)]
    exec: ExecutionArgs,
    #[command(flatten)]
    device: DeviceArgs,
}

#[derive(Debug, Clone, Serialize)]
struct EpisodeRow {
    task: String,
    template: usize,
    #[serde(flatten)]
    result: EpisodeResult,
}

#[derive(Debug, Clone, Serialize)]
struct TemplateRow {
    template: usize,
    example: String,
    n_episodes: u64,
    pc_success: f64,
}

#[derive(Debug, Clone, Serialize)]
struct TaskRow {
    task: String,
    n_episodes: u64,
    pc_success: f64,
    mean_length: f64,
    mean_length_success: f64,
    policy_rate_hz: f64,
    mean_inference_ms: f64,
    by_instruction: Vec<TemplateRow>,
}

pub fn run(a: EvalArgs, stop: &Stop) -> Result<()> {
    if a.jobs == 0 {
        bail!("--jobs must be at least 1");
    }
    let robot = load_robot(&a.robot)?;
    let tasks = a
        .tasks
        .iter()
        .map(|t| load_task(t))
        .collect::<Result<Vec<_>>>()?;
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    // Fail early on a policy that does not load.
    if a.policy != "expert" {
        if let Some(t) = tasks.first() {
            driver(&a.policy, t, &a.device)?;
        }
    }
    let jobs: Vec<(usize, u64)> = (0..tasks.len())
        .flat_map(|t| (a.seed..a.seed + a.episodes).map(move |s| (t, s)))
        .collect();
    let total = jobs.len();
    let (job_tx, job_rx) = crossbeam_channel::unbounded();
    for j in jobs {
        let _ = job_tx.send(j);
    }
    drop(job_tx);
    let (res_tx, res_rx) = crossbeam_channel::unbounded::<Result<EpisodeRow, String>>();
    let t0 = Instant::now();
    let keys = RobotKeys::new(&robot.config.namespace)?;
    std::thread::scope(|s| -> Result<()> {
        for w in 0..a.jobs {
            let (job_rx, res_tx) = (job_rx.clone(), res_tx.clone());
            let (robot, tasks, a, keys) = (&robot, &tasks, &a, &keys);
            std::thread::Builder::new()
                .name(format!("sinew-eval-{w}"))
                .spawn_scoped(s, move || {
                    let mut model = None;
                    let mut recorder = a.record.then(|| RecorderThread::spawn(4096).ok()).flatten();
                    let mut viz = a.record.then(|| VizThread::spawn(1024).ok()).flatten();
                    for (ti, seed) in job_rx.iter() {
                        if stop.requested() {
                            break;
                        }
                        let task = &tasks[ti];
                        let result = (|| -> Result<EpisodeRow> {
                            let mut d = if a.policy == "expert" {
                                driver("expert", task, &a.device)?
                            } else {
                                match model.take() {
                                    Some(m) => m,
                                    None => driver(&a.policy, task, &a.device)?,
                                }
                            };
                            let template = task.sample(&robot.config.name, seed)?.template;
                            let mut rec = None;
                            if a.record {
                                let dir = a.out.join("episodes").join(&task.name);
                                std::fs::create_dir_all(&dir)?;
                                if let Some(r) = recorder.as_mut() {
                                    r.send_control(RecordItem::NewFile {
                                        path: dir.join(format!("episode_{seed:06}.mcap")),
                                        metadata: episode_metadata(
                                            robot, task, seed, &a.policy, &a.exec,
                                        ),
                                    });
                                }
                                if let Some(v) = viz.as_mut() {
                                    v.send_blocking(VizItem::Open {
                                        robot: Box::new(robot.clone()),
                                        name: format!("{} seed {seed}", task.name),
                                        sink: Sink::File(episode_rrd(&dir, seed)),
                                    });
                                }
                                rec = Some(EpisodeRecorder {
                                    recorder: recorder.as_mut(),
                                    viz: viz.as_mut(),
                                    keys: keys.clone(),
                                    streams: crate::viz::stream_map(keys, robot),
                                    realtime: false,
                                });
                            }
                            let r = run_episode(robot, task, seed, &mut d, &a.exec, rec.as_mut())?;
                            drop(rec);
                            if let Some(rc) = recorder.as_mut() {
                                rc.send_control(RecordItem::CloseFile);
                            }
                            if let Some(v) = viz.as_mut() {
                                v.send_blocking(VizItem::Close);
                            }
                            if a.policy != "expert" {
                                model = Some(d);
                            }
                            Ok(EpisodeRow {
                                task: task.name.clone(),
                                template,
                                result: r,
                            })
                        })();
                        let _ = res_tx
                            .send(result.map_err(|e| format!("{} seed {seed}: {e:#}", task.name)));
                    }
                    if let Some(r) = recorder {
                        let _ = r.close();
                    }
                    if let Some(v) = viz {
                        let _ = v.close();
                    }
                })?;
        }
        Ok(())
    })?;
    drop(res_tx);
    let mut rows = Vec::new();
    let mut errors = Vec::new();
    for r in res_rx.iter() {
        match r {
            Ok(row) => rows.push(row),
            Err(e) => errors.push(e),
        }
    }
    if let Some(e) = errors.first() {
        bail!(
            "{} of {total} episodes failed to run; the first: {e}",
            errors.len()
        );
    }
    let eval_s = t0.elapsed().as_secs_f64();
    rows.sort_by(|x, y| (x.task.as_str(), x.result.seed).cmp(&(y.task.as_str(), y.result.seed)));
    let mut per_task = Vec::new();
    for task in &tasks {
        let mine: Vec<&EpisodeRow> = rows.iter().filter(|r| r.task == task.name).collect();
        let n = mine.len().max(1) as f64;
        let ok: Vec<&&EpisodeRow> = mine.iter().filter(|r| r.result.success).collect();
        let sim_s: f64 = mine.iter().map(|r| r.result.sim_time_s).sum();
        let infer: u64 = mine.iter().map(|r| r.result.inferences).sum();
        let mut by: BTreeMap<usize, (String, u64, u64)> = BTreeMap::new();
        for r in &mine {
            let e = by
                .entry(r.template)
                .or_insert_with(|| (task.instructions[r.template].clone(), 0, 0));
            e.1 += 1;
            e.2 += r.result.success as u64;
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
            by_instruction: by
                .into_iter()
                .map(|(t, (ex, n, k))| TemplateRow {
                    template: t,
                    example: ex,
                    n_episodes: n,
                    pc_success: 100.0 * k as f64 / n.max(1) as f64,
                })
                .collect(),
        });
    }
    let n_all = rows.len().max(1) as f64;
    let ok_all = rows.iter().filter(|r| r.result.success).count() as f64;
    let report = serde_json::json!({
        "policy": a.policy,
        "robot": robot.config.name,
        "seeds": format!("{}..{}", a.seed, a.seed + a.episodes),
        "aggregated": {
            "pc_success": 100.0 * ok_all / n_all,
            "n_episodes": rows.len(),
            "eval_s": eval_s,
            "eval_ep_s": eval_s / n_all,
        },
        "per_task": per_task,
        "per_episode": rows,
    });
    let json_path = a.out.join("eval.json");
    std::fs::write(&json_path, serde_json::to_string_pretty(&report)?)
        .with_context(|| format!("writing {}", json_path.display()))?;
    let mut md = format!(
        "# Evaluation of `{}` on {}\n\nSeeds {}..{} per task, {} episodes, {:.0} s wall.\n\n| task | episodes | success | mean length (steps) | policy rate (Hz) | inference (ms) |\n|---|---|---|---|---|---|\n",
        a.policy,
        robot.config.name,
        a.seed,
        a.seed + a.episodes,
        rows.len(),
        eval_s
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
    md += &format!("| **all** | {} | **{:.1}%** | | | |\n\n## By instruction template\n\n| task | template | episodes | success |\n|---|---|---|---|\n", rows.len(), 100.0 * ok_all / n_all);
    for t in &per_task {
        for b in &t.by_instruction {
            md += &format!(
                "| {} | `{}` | {} | {:.1}% |\n",
                t.task, b.example, b.n_episodes, b.pc_success
            );
        }
    }
    let md_path = a.out.join("eval.md");
    std::fs::write(&md_path, &md).with_context(|| format!("writing {}", md_path.display()))?;
    print!("{md}");
    eprintln!("eval: {} and {}", json_path.display(), md_path.display());
    Ok(())
}
