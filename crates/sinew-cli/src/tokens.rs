//! `sinew tokens fit|encode|decode`: action tokenizers from the command line, JSON in and out.

use std::io::Read;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use sinew_policy::tokens::{fit_fast, AnyTokenizer};

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

pub fn run(cmd: TokensCommand) -> Result<()> {
    match cmd {
        TokensCommand::Fit(a) => fit(a),
        TokensCommand::Encode(a) => {
            let v = read_input(&a.t.input)?;
            println!(
                "{}",
                AnyTokenizer::from_spec(&a.t.tokenizer)?.encode_json(&v)?
            );
            Ok(())
        }
        TokensCommand::Decode(a) => {
            let v = read_input(&a.t.input)?;
            let tok = AnyTokenizer::from_spec(&a.t.tokenizer)?;
            println!("{}", tok.decode_json(&v, a.horizon, a.dim, a.relaxed)?);
            Ok(())
        }
    }
}

fn fit(a: FitArgs) -> Result<()> {
    let text = std::fs::read_to_string(&a.chunks)
        .with_context(|| format!("reading {}", a.chunks.display()))?;
    let v: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("{} is not JSON", a.chunks.display()))?;
    let quantile = matches!(a.normalize, Normalize::Quantile);
    let what = a.chunks.display().to_string();
    let f = fit_fast(v, &what, a.scale, a.vocab_size, quantile, &a.out)?;
    println!(
        "fitted FAST on {} chunks of {} x {}: vocabulary {}, min_token {}, {:.1} tokens per chunk on average ({:.1}x compression); wrote {}",
        f.chunks,
        f.horizon,
        f.dim,
        f.vocab_size,
        f.min_token,
        f.mean_tokens,
        (f.horizon * f.dim) as f64 / f.mean_tokens,
        a.out.display()
    );
    Ok(())
}
