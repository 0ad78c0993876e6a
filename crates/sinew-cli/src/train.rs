//! `sinew train`: behaviour cloning of sinew-tiny on a LeRobotDataset v3.0, writing a complete
//! policy folder; resumes from `OUT/checkpoint/` when it exists.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;
use sinew_train::{TrainConfig, Trainer};

use crate::args::{DeviceArgs, WorkerArgs};
use crate::stop::Stop;

#[derive(Debug, Args)]
pub struct TrainArgs {
    /// The dataset folder (LeRobotDataset v3.0).
    #[arg(long)]
    dataset: PathBuf,
    /// Training configuration (TOML; omitted fields keep their defaults).
    #[arg(long)]
    config: Option<PathBuf>,
    /// The policy folder to write (and its checkpoint/ to resume from).
    #[arg(long)]
    out: PathBuf,
    /// Override the configuration's step count.
    #[arg(long)]
    steps: Option<u64>,
    /// Override the configuration's `n_action_steps`: how many chunk entries the written policy
    /// executes before its next inference. It sets how the policy is run, not how it is
    /// trained, so the weights are the same whatever it is.
    #[arg(long)]
    n_action_steps: Option<usize>,
    /// Start from this policy folder's weights (fine-tuning; same dataset vocabulary and
    /// architecture) instead of a fresh initialisation, keeping its normalisation statistics.
    /// Give it again when resuming (the weights then come from the checkpoint).
    #[arg(long)]
    init: Option<PathBuf>,
    /// Start over even if OUT holds a checkpoint.
    #[arg(long)]
    restart: bool,
    /// Validation frames evaluated each time (evenly spread over the held-out episodes).
    #[arg(long, default_value_t = 512)]
    val_frames: usize,
    #[command(flatten)]
    workers: WorkerArgs,
    #[command(flatten)]
    device: DeviceArgs,
}

impl TrainArgs {
    /// `--workers`.
    pub fn workers(&self) -> usize {
        self.workers.workers
    }
}

/// Data-parallel training (`--workers N`) needs candle's element-wise kernels to run on the
/// calling thread: candle shares one pool of kernel threads among all callers and serialises
/// them, so two workers would take turns (measured: slower than one). Call it while the
/// process has a single thread (first thing in `main`): it sets `CANDLE_NUM_THREADS=1` unless
/// the user set it.
pub fn kernels_on_calling_thread() {
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        std::env::set_var("CANDLE_NUM_THREADS", "1");
    }
}

pub fn run(a: TrainArgs, stop: &Stop) -> Result<()> {
    let mut cfg = match &a.config {
        Some(p) => TrainConfig::load(p)?,
        None => TrainConfig::default(),
    };
    if let Some(s) = a.steps {
        cfg.steps = s;
    }
    if let Some(n) = a.n_action_steps {
        cfg.n_action_steps = Some(n);
    }
    let device = sinew_policy::device::parse_device(&a.device.device)?;
    let workers = a.workers.checked(device.is_cpu())?;
    let t0 = Instant::now();
    // Fine-tuning keeps the policy's normalisation and word vocabulary.
    let mut trainer = match &a.init {
        Some(init) => Trainer::with_init(&a.dataset, cfg.clone(), &device, init),
        None => Trainer::new(&a.dataset, cfg.clone(), &device),
    }
    .with_context(|| format!("preparing {}", a.dataset.display()))?
    .with_workers(workers)?;
    let (n_train, n_val) = trainer.split();
    eprintln!(
        "train: sinew-tiny, {} parameters; {n_train} training and {n_val} validation frames from {} (loaded in {:.1} s)",
        trainer.parameters(),
        a.dataset.display(),
        t0.elapsed().as_secs_f64()
    );
    if Trainer::has_checkpoint(&a.out) && !a.restart {
        trainer
            .resume(&a.out)
            .with_context(|| format!("resuming from {}/checkpoint", a.out.display()))?;
        eprintln!("train: resuming at step {}", trainer.step());
    } else if let Some(init) = &a.init {
        let n = trainer
            .init_from(init)
            .with_context(|| format!("starting from {}", init.display()))?;
        eprintln!("train: {n} tensors from {}", init.display());
    }
    let bar = indicatif::ProgressBar::new(cfg.steps);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:30} {pos}/{len} steps  {msg}  {per_sec}  ETA {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.set_position(trainer.step());
    let start_step = trainer.step();
    let t_loop = Instant::now();
    let mut recent = Vec::new();
    let mut last_val = None;
    while trainer.step() < cfg.steps {
        if stop.requested() {
            bar.abandon_with_message("interrupted: checkpoint written");
            trainer.save(&a.out)?;
            eprintln!(
                "train: stopped at step {}; run the same command to resume",
                trainer.step()
            );
            return Ok(());
        }
        let r = trainer.train_step()?;
        if !r.loss.is_finite() {
            anyhow::bail!(
                "the loss became {} at step {}; lower lr in the configuration",
                r.loss,
                r.step
            );
        }
        recent.push(r.loss);
        let step = r.step;
        let val_now = step % cfg.val_every == 0 || step == cfg.steps;
        if val_now {
            last_val = trainer.validate(a.val_frames)?;
        }
        if step % 10 == 0 || val_now {
            let mean = recent.iter().sum::<f32>() / recent.len().max(1) as f32;
            bar.set_message(format!(
                "loss {mean:.3}  lr {:.1e}{}",
                r.lr,
                last_val.as_ref().map_or(String::new(), |v| format!(
                    "  val {:.3} acc {:.2}",
                    v.loss, v.accuracy
                ))
            ));
        }
        bar.set_position(step);
        if val_now {
            let mean = recent.iter().sum::<f32>() / recent.len().max(1) as f32;
            if bar.is_hidden() {
                // Not a terminal (a log file): a plain line per validation instead of the bar.
                let done = step - start_step;
                let rate = done as f64 / t_loop.elapsed().as_secs_f64().max(1e-9);
                eprintln!(
                    "train: step {step}/{}  loss {mean:.4}  lr {:.2e}  {}  {rate:.2} steps/s  ETA {:.0} min",
                    cfg.steps,
                    r.lr,
                    last_val.as_ref().map_or("no validation".into(), |v| format!(
                        "val loss {:.4} acc {:.3} first-action error {:.4} (argmax {:.4}, mode {:.4}, expectation {:.4}; per joint {}){}",
                        v.loss,
                        v.accuracy,
                        v.first_action_mae,
                        v.first_action_mae_by_decode[0],
                        v.first_action_mae_by_decode[1],
                        v.first_action_mae_by_decode[2],
                        v.first_action_mae_per_dim
                            .iter()
                            .map(|e| format!("{e:.3}"))
                            .collect::<Vec<_>>()
                            .join(" "),
                        v.aux_mae.map_or(String::new(), |e| format!("; goal error {e:.4}"))
                    )),
                    (cfg.steps - step) as f64 / rate.max(1e-9) / 60.0
                );
            }
            trainer.note(mean, last_val.as_ref().map(|v| v.loss));
            recent.clear();
        }
        if step % cfg.checkpoint_every == 0 || step == cfg.steps {
            trainer.save(&a.out)?;
        }
    }
    bar.finish();
    if trainer.step() == start_step {
        // Nothing left to train: write the policy folder again (the checkpoint is unchanged)
        // so that the run settings given now (`decode`, `n_action_steps`) apply to it. A
        // per-dimension decoding chosen for these weights stays unless `decode` changed.
        if trainer.keep_decode_by_dim(&a.out) {
            eprintln!(
                "train: keeping the per-dimension decoding of {}/config.json",
                a.out.display()
            );
        }
        trainer.write_policy(&a.out)?;
    }
    let wall = t_loop.elapsed().as_secs_f64();
    let done = trainer.step() - start_step;
    let v = trainer.validate(usize::MAX)?;
    println!(
        "train: {} steps in {:.1} min ({:.2} steps/s, {:.0} frames/s); final validation {}; policy in {}",
        done,
        wall / 60.0,
        done as f64 / wall.max(1e-9),
        done as f64 * cfg.batch_size as f64 / wall.max(1e-9),
        v.map_or("-".into(), |v| format!(
            "loss {:.3}, bin accuracy {:.3}, first-action error {:.4}",
            v.loss, v.accuracy, v.first_action_mae
        )),
        a.out.display()
    );
    Ok(())
}
