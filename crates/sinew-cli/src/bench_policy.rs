//! `sinew bench policy`: per-chunk latency and tokens per second of a policy folder or of a
//! randomly initialised architecture (sinew-tiny, OpenVLA at a reduced size or at full 7B
//! shapes), on the CPU or a CUDA device.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Result};
use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use clap::{Args, ValueEnum};
use serde_json::json;
use sinew_core::{Image, Observation, Policy, Timings};
use sinew_policy::folder::load_policy;
use sinew_policy::models::{openvla, sinew_tiny};

use crate::policy::DeviceArgs;

/// One measured inference: tokens emitted and where the time went.
type InferFn = Box<dyn FnMut(u32) -> Result<(usize, Timings)>>;

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

fn image(side: u32, seed: u32) -> Image {
    let data: Vec<u8> = (0..side * side * 3)
        .map(|i| (i.wrapping_mul(2654435761).wrapping_add(seed) >> 13) as u8)
        .collect();
    Image {
        width: side,
        height: side,
        encoding: "rgb8".into(),
        step: 3 * side,
        data: data.into(),
        ..Default::default()
    }
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i]
}

fn tiny_random(device: &Device, dtype: DType) -> Result<Box<dyn Policy>> {
    let instructions = [
        "put the red cube in the bowl",
        "push the blue cube into the green zone",
        "touch the yellow cube",
    ];
    let tok = sinew_tiny::build_text_tokenizer(&instructions)?;
    let cfg = sinew_tiny::Config::small(
        vec!["front".into(), "wrist".into()],
        6,
        6,
        tok.get_vocab_size(true),
    );
    let vm = VarMap::new();
    let model = sinew_tiny::SinewTiny::new(&cfg, VarBuilder::from_varmap(&vm, dtype, device))?;
    let norm = |r: f64| sinew_policy::Normalizer::Quantile {
        q01: vec![-r; 6],
        q99: vec![r; 6],
        mask: vec![true; 6],
    };
    Ok(Box::new(sinew_tiny::SinewTinyPolicy::from_parts(
        model,
        tok,
        Some(norm(2.0)),
        norm(2.0),
        device,
    )?))
}

fn openvla_config(small: bool) -> Result<openvla::Config> {
    let (kw, text) = if small {
        (
            json!([{"embed_dim": 256, "depth": 6, "num_heads": 4}, {"embed_dim": 288, "depth": 6, "num_heads": 4}]),
            json!({"hidden_size": 512, "intermediate_size": 1376, "num_hidden_layers": 4, "num_attention_heads": 8, "vocab_size": 32064}),
        )
    } else {
        (json!([]), json!({"vocab_size": 32064}))
    };
    Ok(serde_json::from_value(json!({
        "model_type": "openvla",
        "timm_model_ids": ["vit_large_patch14_reg4_dinov2.lvd142m", "vit_so400m_patch14_siglip_224"],
        "timm_model_kwargs": kw,
        "image_sizes": [224, 224],
        "arch_specifier": "no-align+fused-gelu-mlp",
        "text_config": text,
    }))?)
}

pub fn run(a: PolicyBenchArgs) -> Result<()> {
    if a.iterations == 0 {
        bail!("--iterations must be at least 1");
    }
    let opts = a.device.options()?;
    let mut obs = Observation {
        joint_positions: vec![0.0; 6],
        instruction: "put the red cube in the bowl".into(),
        ..Default::default()
    };
    let (name, mut infer): (String, InferFn) = match (&a.policy, a.arch) {
        (Some(dir), _) => {
            let mut p = load_policy(dir, &opts)?;
            for cam in &p.spec().cameras {
                obs.images.insert(cam.clone(), image(a.image_size, 0));
            }
            obs.joint_positions = vec![0.0; p.spec().state_dim.max(6)];
            (
                dir.display().to_string(),
                Box::new(move |i| {
                    let mut o = obs.clone();
                    for (k, img) in o.images.iter_mut() {
                        *img = image(a.image_size, i + k.len() as u32);
                    }
                    {
                        let c = p.infer(&o)?;
                        Ok((c.tokens.len(), c.timings))
                    }
                }),
            )
        }
        (None, Arch::SinewTiny) => {
            let mut p = tiny_random(&opts.device, opts.dtype)?;
            (
                "sinew-tiny (random weights)".into(),
                Box::new(move |i| {
                    let mut o = obs.clone();
                    o.images.insert("front".into(), image(a.image_size, i));
                    o.images.insert("wrist".into(), image(a.image_size, i + 1));
                    {
                        let c = p.infer(&o)?;
                        Ok((c.tokens.len(), c.timings))
                    }
                }),
            )
        }
        (None, arch) => {
            let small = matches!(arch, Arch::OpenvlaSmall);
            let cfg = openvla_config(small)?;
            if !small && !opts.device.is_cuda() {
                eprintln!("warning: OpenVLA-7B shapes on the CPU need about 30 GB of memory and minutes per chunk");
            }
            let vm = VarMap::new();
            let model = openvla::OpenVla::new(
                &cfg,
                VarBuilder::from_varmap(&vm, opts.dtype, &opts.device),
            )?;
            let ids: Vec<u32> = (0..24).map(|i| 1 + (i * 977) % 31000).collect();
            let (lo, hi) = (cfg.vocab_size() as u32 - 256, cfg.vocab_size() as u32 - 1);
            let (device, dtype) = (opts.device.clone(), opts.dtype);
            (
                format!(
                    "openvla {} (random weights)",
                    if small { "small" } else { "7B shapes" }
                ),
                Box::new(move |i| {
                    let px = (Tensor::rand(-1f32, 1f32, (1, 6, 224, 224), &device)?
                        + i as f64 * 1e-3)?
                        .to_dtype(dtype)?;
                    let t0 = Instant::now();
                    let (tokens, _) = model.generate(&px, &ids, 7, Some((lo, hi)), dtype)?;
                    let forward_ms = t0.elapsed().as_secs_f64() * 1e3;
                    Ok((
                        tokens.len(),
                        Timings {
                            forward_ms,
                            ..Default::default()
                        },
                    ))
                }),
            )
        }
    };
    for i in 0..3 {
        infer(1000 + i)?;
    }
    let mut ms = Vec::with_capacity(a.iterations);
    let mut tokens = 0;
    let mut parts = Timings::default();
    for i in 0..a.iterations {
        let t0 = Instant::now();
        let (n, t) = infer(i as u32)?;
        tokens += n;
        parts.preprocess_ms += t.preprocess_ms / a.iterations as f64;
        parts.forward_ms += t.forward_ms / a.iterations as f64;
        parts.decode_ms += t.decode_ms / a.iterations as f64;
        ms.push(t0.elapsed().as_secs_f64() * 1e3);
    }
    let total_s: f64 = ms.iter().sum::<f64>() / 1e3;
    ms.sort_by(f64::total_cmp);
    let threads = std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "default".into());
    let mut out = BTreeMap::new();
    out.insert("model", json!(name));
    out.insert("device", json!(a.device.device));
    out.insert("dtype", json!(format!("{:?}", opts.dtype)));
    out.insert("chunks", json!(a.iterations));
    out.insert("latency_p50_ms", json!(percentile(&ms, 0.5)));
    out.insert("latency_p99_ms", json!(percentile(&ms, 0.99)));
    out.insert("latency_max_ms", json!(ms[ms.len() - 1]));
    out.insert("tokens_per_chunk", json!(tokens / a.iterations));
    out.insert("tokens_per_s", json!(tokens as f64 / total_s));
    out.insert("chunks_per_s", json!(a.iterations as f64 / total_s));
    out.insert("rayon_threads", json!(threads));
    out.insert("mean_preprocess_ms", json!(parts.preprocess_ms));
    out.insert("mean_forward_ms", json!(parts.forward_ms));
    out.insert("mean_decode_ms", json!(parts.decode_ms));
    println!(
        "{name} on {} ({:?}): {} chunks, latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; {} tokens per chunk, {:.0} tokens/s, {:.1} chunks/s",
        a.device.device,
        opts.dtype,
        a.iterations,
        percentile(&ms, 0.5),
        percentile(&ms, 0.99),
        ms[ms.len() - 1],
        tokens / a.iterations,
        tokens as f64 / total_s,
        a.iterations as f64 / total_s
    );
    println!(
        "  mean per chunk: preprocess {:.2} ms, forward {:.2} ms, decode {:.2} ms",
        parts.preprocess_ms, parts.forward_ms, parts.decode_ms
    );
    if let Some(p) = &a.json {
        std::fs::write(p, serde_json::to_string_pretty(&out)?)?;
    }
    Ok(())
}
