//! `sinew tokens fit|encode|decode`: action tokenizers from the command line, JSON in and out.

use std::io::Read;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use serde_json::json;
use sinew_policy::fast::{DecodeMode, FastTokenizer};
use sinew_policy::BinTokenizer;

#[derive(Debug, Subcommand)]
pub enum TokensCommand {
    /// Fit a FAST tokenizer (DCT + byte-level BPE) on action chunks and save it to a folder
    /// (processor_config.json + tokenizer.json, the layout of physical-intelligence/fast).
    Fit(FitArgs),
    /// Encode actions to tokens: a chunk `[[..], ..]` or one action `[..]` as JSON.
    Encode(EncodeArgs),
    /// Decode tokens (a JSON array of ids) to actions.
    Decode(DecodeArgs),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Normalize {
    /// The chunks are already normalised to [-1, 1].
    None,
    /// Map each dimension's 1st and 99th percentiles to -1 and 1 (clipped), as FAST expects;
    /// the statistics are written to `norm_stats.json`.
    Quantile,
}

#[derive(Debug, Args)]
pub struct FitArgs {
    /// JSON file of action chunks `[N][T][D]` (or `{"chunks": [...]}`).
    #[arg(long)]
    chunks: PathBuf,
    /// Output folder.
    #[arg(long)]
    out: PathBuf,
    /// DCT coefficient scale before rounding.
    #[arg(long, default_value_t = 10.0)]
    scale: f64,
    /// BPE vocabulary size.
    #[arg(long, default_value_t = 1024)]
    vocab_size: usize,
    /// How to normalise the chunks first.
    #[arg(long, value_enum, default_value_t = Normalize::None)]
    normalize: Normalize,
}

#[derive(Debug, Args)]
pub struct TokenizerArg {
    /// `bins` (OpenVLA: 256 bins, vocabulary 32000), `bins:VOCAB[:EDGES]`, or a FAST folder.
    #[arg(long, default_value = "bins")]
    tokenizer: String,
    /// Input JSON file (`-` or absent: standard input).
    #[arg(long)]
    input: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct EncodeArgs {
    #[command(flatten)]
    t: TokenizerArg,
}

#[derive(Debug, Args)]
pub struct DecodeArgs {
    #[command(flatten)]
    t: TokenizerArg,
    /// Steps per chunk (FAST).
    #[arg(long)]
    horizon: Option<usize>,
    /// Dimensions per action (FAST).
    #[arg(long)]
    dim: Option<usize>,
    /// FAST: pad or truncate a sequence of the wrong length instead of returning zeros.
    #[arg(long)]
    relaxed: bool,
}

enum Tok {
    Bins(BinTokenizer),
    Fast(Box<FastTokenizer>),
}

fn tokenizer(spec: &str) -> Result<Tok> {
    if spec == "bins" {
        return Ok(Tok::Bins(BinTokenizer::openvla()));
    }
    if let Some(rest) = spec.strip_prefix("bins:") {
        let mut parts = rest.split(':').map(|p| p.parse::<u32>());
        let vocab = parts
            .next()
            .transpose()?
            .context("bins:VOCAB needs a vocabulary size")?;
        let edges = parts.next().transpose()?.unwrap_or(256);
        return Ok(Tok::Bins(BinTokenizer::new(vocab, edges)?));
    }
    Ok(Tok::Fast(Box::new(FastTokenizer::load(
        std::path::Path::new(spec),
    )?)))
}

fn read_input(path: &Option<PathBuf>) -> Result<serde_json::Value> {
    let mut text = String::new();
    match path {
        Some(p) if p.as_os_str() != "-" => {
            text = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?
        }
        _ => {
            std::io::stdin()
                .read_to_string(&mut text)
                .context("reading standard input")?;
        }
    }
    serde_json::from_str(&text).context("input is not JSON")
}

fn as_chunk(v: &serde_json::Value) -> Result<Vec<Vec<f64>>> {
    let v = v.get("chunk").unwrap_or(v);
    if let Ok(row) = serde_json::from_value::<Vec<f64>>(v.clone()) {
        return Ok(vec![row]);
    }
    serde_json::from_value(v.clone())
        .context("expected an action [..] or a chunk [[..], ..] of numbers")
}

pub fn run(cmd: TokensCommand) -> Result<()> {
    match cmd {
        TokensCommand::Fit(a) => fit(a),
        TokensCommand::Encode(a) => {
            let chunk = as_chunk(&read_input(&a.t.input)?)?;
            let out = match tokenizer(&a.t.tokenizer)? {
                Tok::Bins(b) => {
                    let rows: Vec<Vec<u32>> = chunk
                        .iter()
                        .map(|r| b.encode(r))
                        .collect::<Result<_, _>>()?;
                    json!({"tokenizer": "bins", "tokens": rows})
                }
                Tok::Fast(f) => json!({"tokenizer": "fast", "tokens": f.encode(&chunk)?,
                                        "horizon": chunk.len(), "dim": chunk[0].len()}),
            };
            println!("{out}");
            Ok(())
        }
        TokensCommand::Decode(a) => {
            let v = read_input(&a.t.input)?;
            let v = v.get("tokens").cloned().unwrap_or(v);
            let out = match tokenizer(&a.t.tokenizer)? {
                Tok::Bins(b) => {
                    let rows: Vec<Vec<u32>> = match serde_json::from_value::<Vec<u32>>(v.clone()) {
                        Ok(r) => vec![r],
                        Err(_) => serde_json::from_value(v)
                            .context("expected token ids [..] or [[..], ..]")?,
                    };
                    let non_action: usize = rows
                        .iter()
                        .flatten()
                        .filter(|t| !b.is_action_token(**t))
                        .count();
                    json!({"actions": rows.iter().map(|r| b.decode(r)).collect::<Vec<_>>(), "non_action_tokens": non_action})
                }
                Tok::Fast(f) => {
                    let ids: Vec<u32> =
                        serde_json::from_value(v).context("expected token ids [..]")?;
                    let t = a
                        .horizon
                        .or(f.config.time_horizon)
                        .context("--horizon is needed for this tokenizer")?;
                    let d = a
                        .dim
                        .or(f.config.action_dim)
                        .context("--dim is needed for this tokenizer")?;
                    let mode = if a.relaxed {
                        DecodeMode::Relaxed
                    } else {
                        DecodeMode::Strict
                    };
                    let out = f.decode(&ids, t, d, mode);
                    json!({"actions": out.actions, "exact": out.exact, "coefficients": out.coefficients})
                }
            };
            println!("{out}");
            Ok(())
        }
    }
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    // numpy's default (linear interpolation between closest ranks).
    let pos = q * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

fn fit(a: FitArgs) -> Result<()> {
    let v: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(&a.chunks)
            .with_context(|| format!("reading {}", a.chunks.display()))?,
    )
    .with_context(|| format!("{} is not JSON", a.chunks.display()))?;
    let v = v.get("chunks").cloned().unwrap_or(v);
    let mut chunks: Vec<Vec<Vec<f64>>> = serde_json::from_value(v).with_context(|| {
        format!(
            "{}: expected chunks [N][T][D] of numbers",
            a.chunks.display()
        )
    })?;
    let (t, d) = match chunks.first() {
        Some(c) if !c.is_empty() && !c[0].is_empty() => (c.len(), c[0].len()),
        _ => bail!("{}: no chunks", a.chunks.display()),
    };
    for (i, c) in chunks.iter().enumerate() {
        if c.len() != t || c.iter().any(|r| r.len() != d) {
            bail!(
                "{}: chunk {i} is not {t} x {d} like chunk 0",
                a.chunks.display()
            );
        }
        if c.iter().flatten().any(|x| !x.is_finite()) {
            bail!("{}: chunk {i} has NaN or infinity", a.chunks.display());
        }
    }
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    if let Normalize::Quantile = a.normalize {
        let mut q01 = vec![0.0; d];
        let mut q99 = vec![0.0; d];
        for j in 0..d {
            let mut col: Vec<f64> = chunks.iter().flatten().map(|r| r[j]).collect();
            col.sort_by(f64::total_cmp);
            q01[j] = percentile(&col, 0.01);
            q99[j] = percentile(&col, 0.99);
        }
        let norm = sinew_policy::Normalizer::Quantile {
            q01: q01.clone(),
            q99: q99.clone(),
            mask: vec![true; d],
        };
        for c in &mut chunks {
            for r in c.iter_mut() {
                *r = norm.normalize(r)?;
            }
        }
        let p = a.out.join("norm_stats.json");
        std::fs::write(
            &p,
            serde_json::to_string_pretty(&json!({"action": {"q01": q01, "q99": q99}}))?,
        )?;
    }
    let tok = FastTokenizer::fit(&chunks, a.scale, a.vocab_size)?;
    tok.save(&a.out)?;
    let lens: Vec<usize> = chunks
        .iter()
        .take(1000)
        .map(|c| tok.encode(c).map(|v| v.len()))
        .collect::<Result<_, _>>()?;
    let mean = lens.iter().sum::<usize>() as f64 / lens.len() as f64;
    println!(
        "fitted FAST on {} chunks of {t} x {d}: vocabulary {}, min_token {}, {:.1} tokens per chunk on average ({:.1}x compression); wrote {}",
        chunks.len(),
        tok.vocab_size(),
        tok.config.min_token,
        mean,
        (t * d) as f64 / mean,
        a.out.display()
    );
    Ok(())
}
