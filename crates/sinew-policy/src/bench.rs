//! Per-chunk latency and tokens per second of a policy: a folder, or an architecture with
//! random weights (sinew-tiny; OpenVLA at a reduced size or at full 7B shapes), on the CPU or
//! a CUDA device (`sinew bench policy`).

use std::path::PathBuf;
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use serde::Serialize;
use serde_json::json;
use sinew_core::{Image, Observation, Policy, PolicyError, Timings};

use crate::folder::{load_policy, LoadOptions};
use crate::models::{openvla, sinew_tiny};

fn model_err(e: impl std::fmt::Display) -> PolicyError {
    PolicyError::Model(e.to_string())
}

/// One measured inference: tokens emitted and where the time went.
type InferFn = Box<dyn FnMut(u32) -> Result<(usize, Timings), PolicyError>>;

/// What is measured.
#[derive(Debug, Clone, PartialEq)]
pub enum BenchTarget {
    /// A policy folder.
    Folder(PathBuf),
    /// sinew-tiny at its default size (two cameras, width 128, 4 blocks, chunks of 10).
    SinewTiny,
    /// OpenVLA's architecture at a reduced size (ViTs 6 x 256/288, Llama 4 x 512, real
    /// vocabulary).
    OpenvlaSmall,
    /// OpenVLA-7B's shapes (DINOv2-L + SigLIP-SO400M + Llama-2 7B): for GPUs.
    Openvla7b,
}

/// The measurement.
#[derive(Debug, Clone, Serialize)]
pub struct PolicyBench {
    /// What was measured.
    pub model: String,
    /// Chunks measured.
    pub chunks: usize,
    /// Latency per chunk, ms.
    pub latency_p50_ms: f64,
    /// p99.
    pub latency_p99_ms: f64,
    /// Largest.
    pub latency_max_ms: f64,
    /// Tokens per chunk.
    pub tokens_per_chunk: usize,
    /// Tokens per second.
    pub tokens_per_s: f64,
    /// Chunks per second.
    pub chunks_per_s: f64,
    /// Mean time per stage, ms.
    pub mean: Timings,
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

fn tiny_random(device: &Device, dtype: DType) -> Result<Box<dyn Policy>, PolicyError> {
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
    let model = sinew_tiny::SinewTiny::new(&cfg, VarBuilder::from_varmap(&vm, dtype, device))
        .map_err(model_err)?;
    let norm = |r: f64| crate::Normalizer::Quantile {
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

fn openvla_config(small: bool) -> Result<openvla::Config, PolicyError> {
    let (kw, text) = if small {
        (
            json!([{"embed_dim": 256, "depth": 6, "num_heads": 4}, {"embed_dim": 288, "depth": 6, "num_heads": 4}]),
            json!({"hidden_size": 512, "intermediate_size": 1376, "num_hidden_layers": 4, "num_attention_heads": 8, "vocab_size": 32064}),
        )
    } else {
        (json!([]), json!({"vocab_size": 32064}))
    };
    serde_json::from_value(json!({
        "model_type": "openvla",
        "timm_model_ids": ["vit_large_patch14_reg4_dinov2.lvd142m", "vit_so400m_patch14_siglip_224"],
        "timm_model_kwargs": kw,
        "image_sizes": [224, 224],
        "arch_specifier": "no-align+fused-gelu-mlp",
        "text_config": text,
    }))
    .map_err(model_err)
}

/// Measures `iterations` chunks (after 3 warm-up chunks) of `target`, with camera images of
/// `image_size` px (the policy resizes them to its own size).
pub fn bench_policy(
    target: &BenchTarget,
    iterations: usize,
    image_size: u32,
    opts: &LoadOptions,
) -> Result<PolicyBench, PolicyError> {
    if iterations == 0 {
        return Err(PolicyError::Config(
            "--iterations must be at least 1".into(),
        ));
    }
    let mut obs = Observation {
        joint_positions: vec![0.0; 6],
        instruction: "put the red cube in the bowl".into(),
        ..Default::default()
    };
    let (name, mut infer): (String, InferFn) = match target {
        BenchTarget::Folder(dir) => {
            let mut p = load_policy(dir, opts)?;
            for cam in &p.spec().cameras {
                obs.images.insert(cam.clone(), image(image_size, 0));
            }
            obs.joint_positions = vec![0.0; p.spec().state_dim.max(6)];
            (
                dir.display().to_string(),
                Box::new(move |i| {
                    let mut o = obs.clone();
                    for (k, img) in o.images.iter_mut() {
                        *img = image(image_size, i + k.len() as u32);
                    }
                    let c = p.infer(&o)?;
                    Ok((c.tokens.len(), c.timings))
                }),
            )
        }
        BenchTarget::SinewTiny => {
            let mut p = tiny_random(&opts.device, opts.dtype)?;
            (
                "sinew-tiny (random weights)".into(),
                Box::new(move |i| {
                    let mut o = obs.clone();
                    o.images.insert("front".into(), image(image_size, i));
                    o.images.insert("wrist".into(), image(image_size, i + 1));
                    let c = p.infer(&o)?;
                    Ok((c.tokens.len(), c.timings))
                }),
            )
        }
        BenchTarget::OpenvlaSmall | BenchTarget::Openvla7b => {
            let small = matches!(target, BenchTarget::OpenvlaSmall);
            let cfg = openvla_config(small)?;
            if !small && !opts.device.is_cuda() {
                tracing::warn!(
                    "OpenVLA-7B shapes on the CPU need about 30 GB of memory and minutes per chunk"
                );
            }
            let vm = VarMap::new();
            let model =
                openvla::OpenVla::new(&cfg, VarBuilder::from_varmap(&vm, opts.dtype, &opts.device))
                    .map_err(model_err)?;
            let ids: Vec<u32> = (0..24).map(|i| 1 + (i * 977) % 31000).collect();
            let (lo, hi) = (cfg.vocab_size() as u32 - 256, cfg.vocab_size() as u32 - 1);
            let (device, dtype) = (opts.device.clone(), opts.dtype);
            (
                format!(
                    "openvla {} (random weights)",
                    if small { "small" } else { "7B shapes" }
                ),
                Box::new(move |i| {
                    let px = (Tensor::rand(-1f32, 1f32, (1, 6, 224, 224), &device)
                        .map_err(model_err)?
                        + i as f64 * 1e-3)
                        .and_then(|t| t.to_dtype(dtype))
                        .map_err(model_err)?;
                    let t0 = Instant::now();
                    let (tokens, _) = model
                        .generate(&px, &ids, 7, Some((lo, hi)), dtype)
                        .map_err(model_err)?;
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
    let mut ms = Vec::with_capacity(iterations);
    let mut tokens = 0;
    let mut mean = Timings::default();
    for i in 0..iterations {
        let t0 = Instant::now();
        let (n, t) = infer(i as u32)?;
        tokens += n;
        mean.preprocess_ms += t.preprocess_ms / iterations as f64;
        mean.forward_ms += t.forward_ms / iterations as f64;
        mean.decode_ms += t.decode_ms / iterations as f64;
        ms.push(t0.elapsed().as_secs_f64() * 1e3);
    }
    let total_s: f64 = ms.iter().sum::<f64>() / 1e3;
    ms.sort_by(f64::total_cmp);
    Ok(PolicyBench {
        model: name,
        chunks: iterations,
        latency_p50_ms: percentile(&ms, 0.5),
        latency_p99_ms: percentile(&ms, 0.99),
        latency_max_ms: ms[ms.len() - 1],
        tokens_per_chunk: tokens / iterations,
        tokens_per_s: tokens as f64 / total_s,
        chunks_per_s: iterations as f64 / total_s,
        mean,
    })
}

/// The measurement as JSON (with the device, dtype and thread count it ran with).
pub fn bench_json(b: &PolicyBench, device: &str, dtype: DType) -> serde_json::Value {
    let mut v = json!(b);
    if let Some(m) = v.as_object_mut() {
        m.remove("mean");
    }
    v["mean_preprocess_ms"] = json!(b.mean.preprocess_ms);
    v["mean_forward_ms"] = json!(b.mean.forward_ms);
    v["mean_decode_ms"] = json!(b.mean.decode_ms);
    v["device"] = json!(device);
    v["dtype"] = json!(format!("{dtype:?}"));
    v["rayon_threads"] =
        json!(std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "default".into()));
    v
}
