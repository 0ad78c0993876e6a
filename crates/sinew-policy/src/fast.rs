//! The numeric half of the FAST action tokenizer ("FAST: Efficient Action Tokenization for
//! Vision-Language-Action Models", Pertsch et al., 2025; ../shared/REFERENCES.md section 3):
//! an action chunk `[T, D]` is transformed by an orthonormal DCT-II along time, scaled,
//! rounded, flattened frequency-major (all D dimensions of frequency 0 first) and mapped to
//! character codes `max(q - min_token, 0)`. The BPE over those characters is the remaining part.
//!
//! Decoding takes the codes back to integers, reshapes to `(-1, D)` and, when that is not
//! `(T, D)`, either gives up (strict: zeros, as the release does) or pads/truncates (relaxed),
//! then applies the inverse DCT to `q / scale`.

use rustdct::DctPlanner;

use crate::PolicyError;

/// DCT quantiser parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FastQuantizer {
    /// Multiplier before rounding (10 in the release).
    pub scale: f64,
    /// Offset of the character mapping (-354 in the release).
    pub min_token: i64,
}

impl Default for FastQuantizer {
    fn default() -> Self {
        Self {
            scale: 10.0,
            min_token: -354,
        }
    }
}

/// How to treat a code sequence whose length is not `T * D`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeMode {
    /// Return `None` (the caller holds or uses zeros).
    Strict,
    /// Pad with zero coefficients or drop the excess.
    Relaxed,
}

fn dct2_ortho(planner: &mut DctPlanner<f64>, x: &mut [f64]) {
    let n = x.len();
    planner.plan_dct2(n).process_dct2(x);
    let (s0, s) = ((1.0 / n as f64).sqrt(), (2.0 / n as f64).sqrt());
    for (k, v) in x.iter_mut().enumerate() {
        *v *= if k == 0 { s0 } else { s };
    }
}

fn dct3_ortho(planner: &mut DctPlanner<f64>, x: &mut [f64]) {
    // rustdct's DCT-III is x_n = X_0 / 2 + sum_k X_k cos(..): rescale to the orthonormal inverse.
    let n = x.len();
    let (s0, s) = ((1.0 / n as f64).sqrt(), (2.0 / n as f64).sqrt());
    for (k, v) in x.iter_mut().enumerate() {
        *v *= if k == 0 { 2.0 * s0 } else { s };
    }
    planner.plan_dct3(n).process_dct3(x);
}

impl FastQuantizer {
    /// Integer coefficients of a chunk given row-major as `[T][D]`, flattened frequency-major.
    pub fn quantize(&self, chunk: &[Vec<f64>]) -> Result<Vec<i64>, PolicyError> {
        let t = chunk.len();
        let d = chunk.first().map_or(0, Vec::len);
        if t == 0 || d == 0 || chunk.iter().any(|r| r.len() != d) {
            return Err(PolicyError::Shape(format!(
                "action chunk must be [T, D] with T, D > 0 (got {t} rows)"
            )));
        }
        if chunk.iter().flatten().any(|v| !v.is_finite()) {
            return Err(PolicyError::NonFinite(
                "action chunk has NaN or infinity".into(),
            ));
        }
        let mut planner = DctPlanner::new();
        let mut out = vec![0i64; t * d];
        let mut col = vec![0.0; t];
        for j in 0..d {
            for (i, c) in col.iter_mut().enumerate() {
                *c = chunk[i][j];
            }
            dct2_ortho(&mut planner, &mut col);
            for (i, c) in col.iter().enumerate() {
                out[i * d + j] = (c * self.scale).round() as i64;
            }
        }
        Ok(out)
    }

    /// Character codes of quantised coefficients.
    pub fn to_codes(&self, q: &[i64]) -> Vec<u32> {
        q.iter()
            .map(|v| (v - self.min_token).max(0) as u32)
            .collect()
    }

    /// Coefficients back from character codes.
    pub fn from_codes(&self, codes: &[u32]) -> Vec<i64> {
        codes.iter().map(|c| *c as i64 + self.min_token).collect()
    }

    /// The chunk `[T][D]` of quantised coefficients; `None` in strict mode when the length is
    /// not `T * D`.
    pub fn dequantize(
        &self,
        q: &[i64],
        t: usize,
        d: usize,
        mode: DecodeMode,
    ) -> Option<Vec<Vec<f64>>> {
        if t == 0 || d == 0 {
            return None;
        }
        if q.len() != t * d && mode == DecodeMode::Strict {
            return None;
        }
        let mut planner = DctPlanner::new();
        let mut out = vec![vec![0.0; d]; t];
        let mut col = vec![0.0; t];
        for j in 0..d {
            for (i, c) in col.iter_mut().enumerate() {
                *c = q.get(i * d + j).map_or(0.0, |v| *v as f64 / self.scale);
            }
            dct3_ortho(&mut planner, &mut col);
            for (row, c) in out.iter_mut().zip(&col) {
                row[j] = *c;
            }
        }
        Some(out)
    }
}
