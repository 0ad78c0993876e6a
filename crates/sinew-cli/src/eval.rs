//! `sinew eval`: closed-loop evaluation of a policy through the runtime in the simulator,
//! episodes in parallel, with a success table per task and per instruction template.
//!
//! Seeds default to 1,000,000 and up, disjoint from `dataset record`'s default of 0 and up, so
//! a policy trained on Sinew's demonstrations is evaluated on scenes it has not seen.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use sinew_app::batch::{eval_report, run_batch, BatchSpec};
use sinew_app::episode::PolicyName;
use sinew_app::recording::RerunSpec;
use sinew_app::resolve::{load_robot, load_task};

use crate::args::{DeviceArgs, ExecutionArgs};
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
    recording: crate::args::RecordingArgs,
    #[command(flatten)]
    exec: ExecutionArgs,
    #[command(flatten)]
    device: DeviceArgs,
}

pub fn run(a: EvalArgs, stop: &Stop) -> Result<()> {
    if a.jobs == 0 {
        bail!("--jobs must be at least 1");
    }
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
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
        exec: a.exec.spec(),
        device: a.device.spec(),
        record: a.record.then(|| a.out.join("episodes")),
        task_folders: true,
        rerun: RerunSpec::default(),
        encodings: a.recording.encodings(crate::args::ImageEncodingArg::Png),
        jobs: a.jobs,
    };
    let report = run_batch(&spec, |_| {}, &|| stop.requested())?;
    if let Some(e) = report.outputs.as_ref().and_then(|o| o.error.as_ref()) {
        bail!("{e} (what was written stays readable)");
    }
    let r = eval_report(&spec, &report);
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
