//! Action tokenizers by name, with JSON in and out, and fitting FAST on chunks: what
//! `sinew tokens` runs.

use std::path::Path;

use serde_json::{json, Value};

use crate::fast::{DecodeMode, FastTokenizer};
use crate::{BinTokenizer, Normalizer, PolicyError};

fn cfg(e: impl std::fmt::Display) -> PolicyError {
    PolicyError::Config(e.to_string())
}

/// A tokenizer named on the command line.
#[derive(Debug)]
pub enum AnyTokenizer {
    /// OpenVLA-style bins.
    Bins(BinTokenizer),
    /// FAST (DCT + BPE).
    Fast(Box<FastTokenizer>),
}

impl AnyTokenizer {
    /// `bins` (OpenVLA: 256 bins, vocabulary 32000), `bins:VOCAB[:EDGES]`, or a FAST folder.
    pub fn from_spec(spec: &str) -> Result<Self, PolicyError> {
        if spec == "bins" {
            return Ok(Self::Bins(BinTokenizer::openvla()));
        }
        if let Some(rest) = spec.strip_prefix("bins:") {
            let mut parts = rest.split(':').map(|p| p.parse::<u32>());
            let vocab = parts
                .next()
                .transpose()
                .map_err(cfg)?
                .ok_or_else(|| cfg("bins:VOCAB needs a vocabulary size"))?;
            let edges = parts.next().transpose().map_err(cfg)?.unwrap_or(256);
            return Ok(Self::Bins(BinTokenizer::new(vocab, edges)?));
        }
        Ok(Self::Fast(Box::new(FastTokenizer::load(Path::new(spec))?)))
    }

    /// Tokens of an action `[..]` or a chunk `[[..], ..]` (optionally under `"chunk"`).
    pub fn encode_json(&self, v: &Value) -> Result<Value, PolicyError> {
        let v = v.get("chunk").unwrap_or(v);
        let chunk: Vec<Vec<f64>> = match serde_json::from_value::<Vec<f64>>(v.clone()) {
            Ok(row) => vec![row],
            Err(_) => serde_json::from_value(v.clone())
                .map_err(|_| cfg("expected an action [..] or a chunk [[..], ..] of numbers"))?,
        };
        Ok(match self {
            Self::Bins(b) => {
                let rows: Vec<Vec<u32>> = chunk
                    .iter()
                    .map(|r| b.encode(r))
                    .collect::<Result<_, _>>()?;
                json!({"tokenizer": "bins", "tokens": rows})
            }
            Self::Fast(f) => json!({"tokenizer": "fast", "tokens": f.encode(&chunk)?,
                                    "horizon": chunk.len(), "dim": chunk.first().map_or(0, Vec::len)}),
        })
    }

    /// Actions of token ids `[..]` or `[[..], ..]` (optionally under `"tokens"`); FAST needs
    /// the chunk's `horizon` and `dim` unless its configuration has them, and decodes a
    /// sequence of the wrong length in `relaxed` mode instead of returning zeros.
    pub fn decode_json(
        &self,
        v: &Value,
        horizon: Option<usize>,
        dim: Option<usize>,
        relaxed: bool,
    ) -> Result<Value, PolicyError> {
        let v = v.get("tokens").cloned().unwrap_or_else(|| v.clone());
        Ok(match self {
            Self::Bins(b) => {
                let rows: Vec<Vec<u32>> = match serde_json::from_value::<Vec<u32>>(v.clone()) {
                    Ok(r) => vec![r],
                    Err(_) => serde_json::from_value(v)
                        .map_err(|_| cfg("expected token ids [..] or [[..], ..]"))?,
                };
                let non_action = rows
                    .iter()
                    .flatten()
                    .filter(|t| !b.is_action_token(**t))
                    .count();
                json!({"actions": rows.iter().map(|r| b.decode(r)).collect::<Vec<_>>(), "non_action_tokens": non_action})
            }
            Self::Fast(f) => {
                let ids: Vec<u32> =
                    serde_json::from_value(v).map_err(|_| cfg("expected token ids [..]"))?;
                let t = horizon
                    .or(f.config.time_horizon)
                    .ok_or_else(|| cfg("--horizon is needed for this tokenizer"))?;
                let d = dim
                    .or(f.config.action_dim)
                    .ok_or_else(|| cfg("--dim is needed for this tokenizer"))?;
                let mode = if relaxed {
                    DecodeMode::Relaxed
                } else {
                    DecodeMode::Strict
                };
                let out = f.decode(&ids, t, d, mode);
                json!({"actions": out.actions, "exact": out.exact, "coefficients": out.coefficients})
            }
        })
    }
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    // numpy's default (linear interpolation between closest ranks).
    let pos = q * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

/// What fitting wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct FitSummary {
    /// Chunks fitted on.
    pub chunks: usize,
    /// Steps per chunk.
    pub horizon: usize,
    /// Dimensions per action.
    pub dim: usize,
    /// The BPE vocabulary.
    pub vocab_size: usize,
    /// The first BPE token id.
    pub min_token: i64,
    /// Mean tokens per chunk (over the first 1000).
    pub mean_tokens: f64,
}

/// Fits FAST on `[N][T][D]` chunks (the JSON `v`, optionally under `"chunks"`) and saves it to
/// `out`; with `quantile`, each dimension's 1st and 99th percentiles are mapped to -1 and 1
/// first and written to `norm_stats.json`. `what` names the input in errors.
pub fn fit_fast(
    v: Value,
    what: &str,
    scale: f64,
    vocab_size: usize,
    quantile: bool,
    out: &Path,
) -> Result<FitSummary, PolicyError> {
    let bad = |m: String| PolicyError::Config(format!("{what}: {m}"));
    let v = v.get("chunks").cloned().unwrap_or(v);
    let mut chunks: Vec<Vec<Vec<f64>>> = serde_json::from_value(v)
        .map_err(|_| bad("expected chunks [N][T][D] of numbers".into()))?;
    let (t, d) = match chunks.first() {
        Some(c) if !c.is_empty() && !c[0].is_empty() => (c.len(), c[0].len()),
        _ => return Err(bad("no chunks".into())),
    };
    for (i, c) in chunks.iter().enumerate() {
        if c.len() != t || c.iter().any(|r| r.len() != d) {
            return Err(bad(format!("chunk {i} is not {t} x {d} like chunk 0")));
        }
        if c.iter().flatten().any(|x| !x.is_finite()) {
            return Err(bad(format!("chunk {i} has NaN or infinity")));
        }
    }
    std::fs::create_dir_all(out).map_err(|e| PolicyError::Io(out.to_owned(), e))?;
    if quantile {
        let mut q01 = vec![0.0; d];
        let mut q99 = vec![0.0; d];
        for j in 0..d {
            let mut col: Vec<f64> = chunks.iter().flatten().map(|r| r[j]).collect();
            col.sort_by(f64::total_cmp);
            q01[j] = percentile(&col, 0.01);
            q99[j] = percentile(&col, 0.99);
        }
        let norm = Normalizer::Quantile {
            q01: q01.clone(),
            q99: q99.clone(),
            mask: vec![true; d],
        };
        for c in &mut chunks {
            for r in c.iter_mut() {
                *r = norm.normalize(r)?;
            }
        }
        let p = out.join("norm_stats.json");
        let text = serde_json::to_string_pretty(&json!({"action": {"q01": q01, "q99": q99}}))
            .map_err(cfg)?;
        std::fs::write(&p, text).map_err(|e| PolicyError::Io(p.clone(), e))?;
    }
    let tok = FastTokenizer::fit(&chunks, scale, vocab_size)?;
    tok.save(out)?;
    let lens: Vec<usize> = chunks
        .iter()
        .take(1000)
        .map(|c| tok.encode(c).map(|v| v.len()))
        .collect::<Result<_, _>>()?;
    Ok(FitSummary {
        chunks: chunks.len(),
        horizon: t,
        dim: d,
        vocab_size: tok.vocab_size(),
        min_token: tok.config.min_token as i64,
        mean_tokens: lens.iter().sum::<usize>() as f64 / lens.len().max(1) as f64,
    })
}
