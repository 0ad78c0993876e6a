//! `meta/stats.json`: per feature `min, max, mean, std, count, q01, q10, q50, q90, q99`.
//! Vectors are per dimension; images per channel with shape (3, 1, 1), on values / 255.

use serde::{Deserialize, Serialize};

/// Statistics of one feature (each field per dimension or channel, flattened).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct FeatureStats {
    /// Minimum.
    pub min: Vec<f64>,
    /// Maximum.
    pub max: Vec<f64>,
    /// Mean.
    pub mean: Vec<f64>,
    /// Standard deviation (population).
    pub std: Vec<f64>,
    /// Values counted (frames; pixels for images).
    pub count: Vec<u64>,
    /// Quantiles.
    pub q01: Vec<f64>,
    /// Quantiles.
    pub q10: Vec<f64>,
    /// Quantiles.
    pub q50: Vec<f64>,
    /// Quantiles.
    pub q90: Vec<f64>,
    /// Quantiles.
    pub q99: Vec<f64>,
}

const QS: [f64; 5] = [0.01, 0.10, 0.50, 0.90, 0.99];

/// Accumulates one feature: exact quantiles from all values for vectors, from a 256-level
/// histogram per channel for 8-bit images.
#[derive(Debug, Clone)]
pub enum StatsAccumulator {
    /// A float vector feature.
    Vector {
        /// Values per dimension.
        values: Vec<Vec<f64>>,
    },
    /// An RGB image feature.
    Image {
        /// Histogram per channel.
        hist: [Box<[u64; 256]>; 3],
    },
}

impl StatsAccumulator {
    /// For a vector of `dim` values.
    pub fn vector(dim: usize) -> Self {
        Self::Vector {
            values: vec![Vec::new(); dim],
        }
    }

    /// For an RGB image.
    pub fn image() -> Self {
        Self::Image {
            hist: [
                Box::new([0u64; 256]),
                Box::new([0u64; 256]),
                Box::new([0u64; 256]),
            ],
        }
    }

    /// Adds one vector.
    pub fn push_vector(&mut self, v: &[f32]) {
        if let Self::Vector { values } = self {
            for (d, x) in values.iter_mut().zip(v) {
                d.push(*x as f64);
            }
        }
    }

    /// Adds one RGB image.
    pub fn push_image(&mut self, rgb: &[u8]) {
        if let Self::Image { hist } = self {
            for px in rgb.chunks_exact(3) {
                for c in 0..3 {
                    hist[c][px[c] as usize] += 1;
                }
            }
        }
    }

    /// The statistics.
    pub fn finish(&self) -> FeatureStats {
        let mut s = FeatureStats::default();
        match self {
            Self::Vector { values } => {
                for d in values {
                    let mut v = d.clone();
                    v.sort_by(f64::total_cmp);
                    let n = v.len().max(1) as f64;
                    let mean = v.iter().sum::<f64>() / n;
                    let var = v.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n;
                    s.min.push(v.first().copied().unwrap_or(0.0));
                    s.max.push(v.last().copied().unwrap_or(0.0));
                    s.mean.push(mean);
                    s.std.push(var.sqrt());
                    s.count.push(v.len() as u64);
                    let q = |p: f64| -> f64 {
                        if v.is_empty() {
                            return 0.0;
                        }
                        // Linear interpolation between order statistics (numpy's default).
                        let pos = p * (v.len() - 1) as f64;
                        let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
                        v[lo] + (v[hi] - v[lo]) * (pos - lo as f64)
                    };
                    let qs: Vec<f64> = QS.iter().map(|p| q(*p)).collect();
                    s.q01.push(qs[0]);
                    s.q10.push(qs[1]);
                    s.q50.push(qs[2]);
                    s.q90.push(qs[3]);
                    s.q99.push(qs[4]);
                }
            }
            Self::Image { hist } => {
                for h in hist.iter() {
                    let n: u64 = h.iter().sum();
                    let nf = n.max(1) as f64;
                    let mean = h
                        .iter()
                        .enumerate()
                        .map(|(v, c)| v as f64 / 255.0 * *c as f64)
                        .sum::<f64>()
                        / nf;
                    let var = h
                        .iter()
                        .enumerate()
                        .map(|(v, c)| (v as f64 / 255.0 - mean).powi(2) * *c as f64)
                        .sum::<f64>()
                        / nf;
                    let min = h.iter().position(|c| *c > 0).unwrap_or(0) as f64 / 255.0;
                    let max = h.iter().rposition(|c| *c > 0).unwrap_or(0) as f64 / 255.0;
                    let q = |p: f64| -> f64 {
                        let target = (p * (n.saturating_sub(1)) as f64).floor() as u64;
                        let mut acc = 0u64;
                        for (v, c) in h.iter().enumerate() {
                            acc += c;
                            if acc > target {
                                return v as f64 / 255.0;
                            }
                        }
                        max
                    };
                    s.min.push(min);
                    s.max.push(max);
                    s.mean.push(mean);
                    s.std.push(var.sqrt());
                    s.count.push(n);
                    s.q01.push(q(0.01));
                    s.q10.push(q(0.10));
                    s.q50.push(q(0.50));
                    s.q90.push(q(0.90));
                    s.q99.push(q(0.99));
                }
            }
        }
        s
    }

    /// As stats.json JSON: vectors as lists, images as (3, 1, 1) nested lists.
    pub fn to_json(&self) -> serde_json::Value {
        let s = self.finish();
        let image = matches!(self, Self::Image { .. });
        let f = |v: &Vec<f64>| -> serde_json::Value {
            if image {
                serde_json::json!(v.iter().map(|x| vec![vec![*x]]).collect::<Vec<_>>())
            } else {
                serde_json::json!(v)
            }
        };
        let count = s.count.first().copied().unwrap_or(0);
        serde_json::json!({
            "min": f(&s.min), "max": f(&s.max), "mean": f(&s.mean), "std": f(&s.std),
            "count": [count],
            "q01": f(&s.q01), "q10": f(&s.q10), "q50": f(&s.q50), "q90": f(&s.q90), "q99": f(&s.q99),
        })
    }
}
