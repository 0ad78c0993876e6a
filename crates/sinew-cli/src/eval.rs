//! `sinew eval`: closed-loop evaluation of a policy through the runtime in the simulator,
//! episodes in parallel, with a success table per task and per instruction template.
//!
//! Seeds default to 1,000,000 and up, disjoint from `dataset record`'s default of 0 and up, so
//! a policy trained on Sinew's demonstrations is evaluated on scenes it has not seen.
//!
//! With several latencies (`--latency 0,100,200`) or `--modes`, a latency sweep: every (mode,
//! latency) cell on the same seeds, a table of success and smoothness, and `sweep.svg`.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use sinew_app::batch::{eval_report, run_batch, BatchSpec};
use sinew_app::episode::PolicyName;
use sinew_app::recording::RerunSpec;
use sinew_app::resolve::{load_robot, load_task};
use sinew_app::sweep::{run_sweep, sweep_json, sweep_markdown, sweep_svg, SweepSpec};

use crate::args::{DeviceArgs, ExecutionArgs, LatencyArgs};
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
    /// Instruction phrasings, comma-separated (`training`, `held-out`): each seed's scene is
    /// run once per phrasing and the report gives each its own rows. Default: both, for tasks
    /// whose file lists held-out templates (a latency sweep: training only).
    #[arg(long, value_delimiter = ',')]
    phrasings: Vec<sinew_sim::Phrasing>,
    /// The instruction swap: also run each seed's scene with the instruction naming a
    /// distractor instead of the target, and report how often the arm goes to the newly
    /// named cube first (and does the task with it).
    #[arg(long)]
    swap: bool,
    /// Output folder: eval.json, eval.md (and episodes/ with --record).
    #[arg(long)]
    out: PathBuf,
    /// Record every episode (MCAP and .rrd) under OUT/episodes/<task>/.
    #[arg(long)]
    record: bool,
    #[command(flatten)]
    recording: crate::args::RecordingArgs,
    #[command(flatten)]
    exec: ExecutionArgs,
    #[command(flatten)]
    latency: LatencyArgs,
    /// Sweep these execution modes (`sync`, `async-latest`, `async-weighted`,
    /// `async-ensemble`; default with several latencies: sync,async-latest,async-ensemble),
    /// each at every `--latency`.
    #[arg(long, value_delimiter = ',')]
    modes: Vec<String>,
    #[command(flatten)]
    device: DeviceArgs,
}

pub fn run(a: EvalArgs, stop: &Stop) -> Result<()> {
    if a.jobs == 0 {
        bail!("--jobs must be at least 1");
    }
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let latencies = a.latency.models()?;
    let sweep = latencies.len() > 1 || !a.modes.is_empty();
    let mut exec = a.exec.spec();
    if !sweep {
        exec.latency = latencies.first().cloned();
    }
    let spec = BatchSpec {
        robot: load_robot(&a.robot)?,
        tasks: a
            .tasks
            .iter()
            .map(|t| load_task(t))
            .collect::<Result<_>>()?,
        policy: PolicyName::parse(&a.policy),
        episodes: a.episodes,
        seed: a.seed,
        exec,
        device: a.device.spec(),
        record: a.record.then(|| a.out.join("episodes")),
        task_folders: true,
        rerun: RerunSpec::default(),
        encodings: a.recording.encodings(crate::args::ImageEncodingArg::Png),
        jobs: a.jobs,
        phrasings: if !a.phrasings.is_empty() {
            Some(a.phrasings.clone())
        } else if sweep {
            Some(vec![sinew_sim::Phrasing::Training])
        } else {
            None
        },
        swap: a.swap,
    };
    if sweep {
        return run_latency_sweep(&a, spec, latencies, stop);
    }
    let report = run_batch(&spec, |_| {}, &|| stop.requested())?;
    if let Some(e) = report.outputs.as_ref().and_then(|o| o.error.as_ref()) {
        bail!("{e} (what was written stays readable)");
    }
    let mut r = eval_report(&spec, &report);
    if let Some(l) = &spec.exec.latency {
        r.markdown += &format!("\nSimulated inference latency: {}.\n", l.label());
        if let Some(o) = r.json.as_object_mut() {
            o.insert("latency".into(), serde_json::to_value(l)?);
        }
    }
    let json_path = a.out.join("eval.json");
    std::fs::write(&json_path, serde_json::to_string_pretty(&r.json)?)
        .with_context(|| format!("writing {}", json_path.display()))?;
    let md_path = a.out.join("eval.md");
    std::fs::write(&md_path, &r.markdown)
        .with_context(|| format!("writing {}", md_path.display()))?;
    print!("{}", r.markdown);
    eprintln!("eval: {} and {}", json_path.display(), md_path.display());
    Ok(())
}

fn run_latency_sweep(
    a: &EvalArgs,
    batch: BatchSpec,
    latencies: Vec<sinew_app::execution::LatencyModel>,
    stop: &Stop,
) -> Result<()> {
    if a.record {
        bail!("--record records one evaluation, not a sweep: leave it out, or sweep fewer cells");
    }
    let modes = if a.modes.is_empty() {
        vec![
            "sync".into(),
            "async-latest".into(),
            "async-ensemble".into(),
        ]
    } else {
        a.modes.clone()
    };
    for m in &modes {
        batch.exec.with_mode(m).map_err(anyhow::Error::msg)?;
    }
    let latencies = if latencies.is_empty() {
        vec![None]
    } else {
        latencies.into_iter().map(Some).collect()
    };
    let spec = SweepSpec {
        batch,
        modes,
        latencies,
    };
    let cells = spec.modes.len() * spec.latencies.len();
    let mut done = 0;
    let report = run_sweep(
        &spec,
        |c| {
            done += 1;
            eprintln!(
                "eval: [{done}/{cells}] {} at {}: {:.1}% success, RMS jerk {:.1} rad/s³ ({:.0} s)",
                c.mode, c.latency, c.pc_success, c.rms_jerk, c.wall_s
            );
        },
        &|| stop.requested(),
    )?;
    if report.cells.len() < cells {
        eprintln!(
            "eval: stopped after {} of {cells} cells; the report has those",
            report.cells.len()
        );
    }
    let md = sweep_markdown(&spec, &report);
    let json_path = a.out.join("eval.json");
    std::fs::write(
        &json_path,
        serde_json::to_string_pretty(&sweep_json(&spec, &report))?,
    )
    .with_context(|| format!("writing {}", json_path.display()))?;
    let md_path = a.out.join("eval.md");
    std::fs::write(&md_path, &md).with_context(|| format!("writing {}", md_path.display()))?;
    let svg_path = a.out.join("sweep.svg");
    std::fs::write(&svg_path, sweep_svg(&spec, &report))
        .with_context(|| format!("writing {}", svg_path.display()))?;
    print!("{md}");
    eprintln!(
        "eval: {}, {} and {}",
        json_path.display(),
        md_path.display(),
        svg_path.display()
    );
    Ok(())
}
