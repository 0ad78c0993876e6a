//! `sinew bench train`: training throughput of sinew-tiny (optimiser steps and frames per
//! second) on a dataset with a training configuration, through the same code path as
//! `sinew train`, without writing anything.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use serde_json::json;
use sinew_train::{TrainConfig, Trainer};

use crate::args::{DeviceArgs, WorkerArgs};

#[derive(Debug, Args)]
pub struct TrainBenchArgs {
    /// The dataset folder (LeRobotDataset v3.0).
    #[arg(long)]
    dataset: PathBuf,
    /// Training configuration (TOML; omitted fields keep their defaults).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Measured optimiser steps (after 2 warm-up steps).
    #[arg(long, default_value_t = 20)]
    steps: u64,
    #[command(flatten)]
    workers: WorkerArgs,
    #[command(flatten)]
    device: DeviceArgs,
    /// Write the results as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

impl TrainBenchArgs {
    /// `--workers`.
    pub fn workers(&self) -> usize {
        self.workers.workers
    }
}

pub fn run(a: TrainBenchArgs) -> Result<()> {
    if a.steps == 0 {
        bail!("--steps must be at least 1");
    }
    let mut cfg = match &a.config {
        Some(p) => TrainConfig::load(p)?,
        None => TrainConfig::default(),
    };
    // No validation or checkpoints inside the measured steps.
    cfg.steps = a.steps + 2;
    let batch = cfg.batch_size;
    let device = sinew_policy::device::parse_device(&a.device.device)?;
    let workers = a.workers.checked(device.is_cpu())?;
    let t0 = Instant::now();
    let mut trainer = Trainer::new(&a.dataset, cfg, &device)
        .with_context(|| format!("preparing {}", a.dataset.display()))?
        .with_workers(workers)?;
    let load_s = t0.elapsed().as_secs_f64();
    for _ in 0..2 {
        trainer.train_step()?;
    }
    let mut step_ms = Vec::with_capacity(a.steps as usize);
    for _ in 0..a.steps {
        let t = Instant::now();
        trainer.train_step()?;
        step_ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let mean = step_ms.iter().sum::<f64>() / step_ms.len() as f64;
    let mut sorted = step_ms.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted[sorted.len() / 2];
    let report = json!({
        "dataset": a.dataset.display().to_string(),
        "parameters": trainer.parameters(),
        "batch_size": batch,
        "device": a.device.device,
        "workers": workers,
        "load_s": load_s,
        "steps": a.steps,
        "mean_step_ms": mean,
        "median_step_ms": median,
        "steps_per_s": 1e3 / mean,
        "frames_per_s": 1e3 * batch as f64 / mean,
    });
    println!(
        "bench train: {} parameters, batch {batch}, {} worker(s): {mean:.1} ms per step (median {median:.1}), {:.2} steps/s, {:.1} frames/s (dataset loaded in {load_s:.1} s)",
        trainer.parameters(),
        trainer.workers(),
        1e3 / mean,
        1e3 * batch as f64 / mean
    );
    if let Some(p) = &a.json {
        std::fs::write(p, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("writing {}", p.display()))?;
    }
    Ok(())
}
