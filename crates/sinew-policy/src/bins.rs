//! Uniform binning of normalised actions into tokens at the end of a language model's
//! vocabulary, compatible with OpenVLA's `ActionTokenizer`
//! (`prismatic/vla/action_tokenizer.py`; see docs/references.md section 1).
//!
//! `n_bins` edges spaced evenly over [-1, 1] make `n_bins - 1` bins. A value is clipped to
//! [-1, 1], `d` is the number of edges at or below it (numpy's `digitize`), and its token is
//! `vocab_size - d`. Decoding maps a token back to the centre of bin `vocab_size - token - 1`
//! (clipped to the valid bins), so a round trip is within half a bin of the clipped value.

use crate::PolicyError;

/// The bin tokenizer.
#[derive(Debug, Clone, PartialEq)]
pub struct BinTokenizer {
    vocab_size: u32,
    edges: Vec<f64>,
    centres: Vec<f64>,
}

impl BinTokenizer {
    /// OpenVLA's: 256 edges, vocabulary 32000 (Llama 2 before padding).
    pub fn openvla() -> Self {
        Self::build(32000, 256)
    }

    /// A tokenizer with `n_edges` edges whose tokens end at `vocab_size - 1`.
    pub fn new(vocab_size: u32, n_edges: u32) -> Result<Self, PolicyError> {
        if n_edges < 2 || n_edges > vocab_size {
            return Err(PolicyError::Config(format!(
                "bin tokenizer: {n_edges} edges for a vocabulary of {vocab_size}"
            )));
        }
        Ok(Self::build(vocab_size, n_edges))
    }

    /// Builds without validating (callers guarantee 2 <= n_edges <= vocab_size).
    fn build(vocab_size: u32, n_edges: u32) -> Self {
        let n = n_edges as usize;
        let edges: Vec<f64> = (0..n)
            .map(|i| -1.0 + 2.0 * i as f64 / (n - 1) as f64)
            .collect();
        let centres = edges.windows(2).map(|w| (w[0] + w[1]) / 2.0).collect();
        Self {
            vocab_size,
            edges,
            centres,
        }
    }

    /// Number of bins (edges - 1).
    pub fn n_bins(&self) -> usize {
        self.centres.len()
    }

    /// Lowest and highest token this tokenizer emits.
    pub fn token_range(&self) -> (u32, u32) {
        (
            self.vocab_size - self.edges.len() as u32,
            self.vocab_size - 1,
        )
    }

    /// Whether `token` is an action token.
    pub fn is_action_token(&self, token: u32) -> bool {
        let (lo, hi) = self.token_range();
        (lo..=hi).contains(&token)
    }

    /// Width of one bin.
    pub fn bin_width(&self) -> f64 {
        2.0 / self.n_bins() as f64
    }

    /// Token of one normalised value. NaN is an error (`dim` names it).
    pub fn encode_value(&self, x: f64, dim: usize) -> Result<u32, PolicyError> {
        if x.is_nan() {
            return Err(PolicyError::NonFinite(format!(
                "action dimension {dim} is NaN"
            )));
        }
        let x = x.clamp(-1.0, 1.0);
        // Edges at or below x (digitize with right = false).
        let d = self.edges.partition_point(|e| *e <= x) as u32;
        Ok(self.vocab_size - d)
    }

    /// Tokens of a normalised action vector.
    pub fn encode(&self, action: &[f64]) -> Result<Vec<u32>, PolicyError> {
        action
            .iter()
            .enumerate()
            .map(|(i, x)| self.encode_value(*x, i))
            .collect()
    }

    /// The normalised value of one token (OpenVLA clips indices; tokens outside the action
    /// range thus decode to the nearest end bin).
    pub fn decode_token(&self, token: u32) -> f64 {
        let idx = self.vocab_size as i64 - token as i64 - 1;
        let idx = idx.clamp(0, self.n_bins() as i64 - 1) as usize;
        self.centres[idx]
    }

    /// Normalised values of tokens.
    pub fn decode(&self, tokens: &[u32]) -> Vec<f64> {
        tokens.iter().map(|t| self.decode_token(*t)).collect()
    }
}
