//! `sinew bench policy`: per-chunk latency and tokens per second of a policy folder or of a
//! randomly initialised architecture, on the CPU or a CUDA device.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, ValueEnum};
use sinew_policy::bench::{bench_json, bench_policy, BenchTarget};

use crate::args::DeviceArgs;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Arch {
    /// sinew-tiny at its default size (two 96 px cameras, width 128, 4 blocks, chunks of 10).
    SinewTiny,
    /// OpenVLA's architecture at a reduced size (ViTs 6 x 256/288, Llama 4 x 512, real vocabulary).
    OpenvlaSmall,
    /// OpenVLA-7B's shapes (DINOv2-L + SigLIP-SO400M + Llama-2 7B): for GPUs.
    Openvla7b,
}

#[derive(Debug, Args)]
pub struct PolicyBenchArgs {
    /// A policy folder to measure (otherwise `--arch` with random weights).
    #[arg(long)]
    policy: Option<PathBuf>,
    /// The architecture to measure with random weights.
    #[arg(long, value_enum, default_value_t = Arch::SinewTiny)]
    arch: Arch,
    /// Measured chunks (after 3 warm-up chunks).
    #[arg(long, default_value_t = 50)]
    iterations: usize,
    /// Camera image side given to the policy (px); it resizes to its own size.
    #[arg(long, default_value_t = 224)]
    image_size: u32,
    #[command(flatten)]
    device: DeviceArgs,
    /// Write the results as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

pub fn run(a: PolicyBenchArgs) -> Result<()> {
    let opts = a.device.spec().options()?;
    let target = match (&a.policy, a.arch) {
        (Some(dir), _) => BenchTarget::Folder(dir.clone()),
        (None, Arch::SinewTiny) => BenchTarget::SinewTiny,
        (None, Arch::OpenvlaSmall) => BenchTarget::OpenvlaSmall,
        (None, Arch::Openvla7b) => BenchTarget::Openvla7b,
    };
    let b = bench_policy(&target, a.iterations, a.image_size, &opts)?;
    println!(
        "{} on {} ({:?}): {} chunks, latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; {} tokens per chunk, {:.0} tokens/s, {:.1} chunks/s",
        b.model,
        a.device.device,
        opts.dtype,
        b.chunks,
        b.latency_p50_ms,
        b.latency_p99_ms,
        b.latency_max_ms,
        b.tokens_per_chunk,
        b.tokens_per_s,
        b.chunks_per_s
    );
    println!(
        "  mean per chunk: preprocess {:.2} ms, forward {:.2} ms, decode {:.2} ms",
        b.mean.preprocess_ms, b.mean.forward_ms, b.mean.decode_ms
    );
    if let Some(p) = &a.json {
        let v = bench_json(&b, &a.device.device, opts.dtype);
        std::fs::write(p, serde_json::to_string_pretty(&v)?)?;
    }
    Ok(())
}
