//! Action and state normalisation: quantile bounds (q01/q99, OpenVLA's BOUNDS_Q99) and
//! mean/std, with masks for dimensions left as they are (the gripper). Reads OpenVLA's
//! `dataset_statistics.json` and LeRobot's `stats.json`.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use crate::PolicyError;

/// How a feature is normalised.
#[derive(Debug, Clone, PartialEq)]
pub enum Normalizer {
    /// `[q01, q99]` maps to `[-1, 1]` (clipped), where `mask` is true.
    Quantile {
        /// 1st percentile per dimension.
        q01: Vec<f64>,
        /// 99th percentile per dimension.
        q99: Vec<f64>,
        /// Dimensions that are normalised.
        mask: Vec<bool>,
    },
    /// `(x - mean) / std`, where `mask` is true.
    MeanStd {
        /// Mean per dimension.
        mean: Vec<f64>,
        /// Standard deviation per dimension.
        std: Vec<f64>,
        /// Dimensions that are normalised.
        mask: Vec<bool>,
    },
}

const EPS: f64 = 1e-8;

impl Normalizer {
    /// Number of dimensions.
    pub fn dim(&self) -> usize {
        match self {
            Normalizer::Quantile { q01, .. } => q01.len(),
            Normalizer::MeanStd { mean, .. } => mean.len(),
        }
    }

    fn check(&self, x: &[f64]) -> Result<(), PolicyError> {
        if x.len() != self.dim() {
            return Err(PolicyError::Shape(format!(
                "normaliser has {} dimensions, value has {}",
                self.dim(),
                x.len()
            )));
        }
        Ok(())
    }

    /// Raw to normalised.
    pub fn normalize(&self, x: &[f64]) -> Result<Vec<f64>, PolicyError> {
        self.check(x)?;
        Ok(match self {
            Normalizer::Quantile { q01, q99, mask } => x
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    if mask[i] {
                        (2.0 * (v - q01[i]) / (q99[i] - q01[i] + EPS) - 1.0).clamp(-1.0, 1.0)
                    } else {
                        *v
                    }
                })
                .collect(),
            Normalizer::MeanStd { mean, std, mask } => x
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    if mask[i] {
                        (v - mean[i]) / (std[i] + EPS)
                    } else {
                        *v
                    }
                })
                .collect(),
        })
    }

    /// Normalised to raw.
    pub fn unnormalize(&self, x: &[f64]) -> Result<Vec<f64>, PolicyError> {
        self.check(x)?;
        Ok(match self {
            Normalizer::Quantile { q01, q99, mask } => x
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    if mask[i] {
                        0.5 * (v + 1.0) * (q99[i] - q01[i]) + q01[i]
                    } else {
                        *v
                    }
                })
                .collect(),
            Normalizer::MeanStd { mean, std, mask } => x
                .iter()
                .enumerate()
                .map(|(i, v)| if mask[i] { v * std[i] + mean[i] } else { *v })
                .collect(),
        })
    }
}

#[derive(Debug, Deserialize)]
struct OpenVlaFeature {
    q01: Vec<f64>,
    q99: Vec<f64>,
    #[serde(default)]
    mask: Option<Vec<bool>>,
}

#[derive(Debug, Deserialize)]
struct OpenVlaEntry {
    action: OpenVlaFeature,
}

/// The action normaliser for `unnorm_key` from OpenVLA's `dataset_statistics.json`. With one
/// dataset in the file the key may be omitted.
pub fn openvla_action_stats(
    path: &Path,
    unnorm_key: Option<&str>,
) -> Result<Normalizer, PolicyError> {
    let text = std::fs::read_to_string(path).map_err(|e| PolicyError::Io(path.to_owned(), e))?;
    let all: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| PolicyError::Parse(path.to_owned(), e.to_string()))?;
    openvla_action_stats_from_value(&all, path, unnorm_key)
}

/// The keys (dataset names) of OpenVLA statistics.
pub fn openvla_stats_keys(all: &serde_json::Value) -> Vec<String> {
    all.as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

/// As [`openvla_action_stats`], from statistics already parsed (for example the `norm_stats` of
/// an OpenVLA `config.json`); `path` names their origin in errors.
pub fn openvla_action_stats_from_value(
    all: &serde_json::Value,
    path: &Path,
    unnorm_key: Option<&str>,
) -> Result<Normalizer, PolicyError> {
    let all: BTreeMap<String, OpenVlaEntry> = serde_json::from_value(all.clone())
        .map_err(|e| PolicyError::Parse(path.to_owned(), format!("statistics: {e}")))?;
    let key = match unnorm_key {
        Some(k) => k.to_owned(),
        None if all.len() == 1 => all.keys().next().cloned().unwrap_or_default(),
        None => {
            return Err(PolicyError::Parse(
                path.to_owned(),
                format!(
                    "several datasets ({}); pass unnorm_key",
                    all.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            ))
        }
    };
    let e = all.get(&key).ok_or_else(|| {
        PolicyError::Parse(
            path.to_owned(),
            format!(
                "no dataset {key:?} (have {})",
                all.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
        )
    })?;
    let n = e.action.q01.len();
    let mask = e.action.mask.clone().unwrap_or_else(|| vec![true; n]);
    if e.action.q99.len() != n || mask.len() != n {
        return Err(PolicyError::Parse(
            path.to_owned(),
            format!("{key}.action: q01, q99 and mask lengths differ"),
        ));
    }
    finite(path, &key, &e.action.q01)?;
    finite(path, &key, &e.action.q99)?;
    Ok(Normalizer::Quantile {
        q01: e.action.q01.clone(),
        q99: e.action.q99.clone(),
        mask,
    })
}

fn finite(path: &Path, what: &str, v: &[f64]) -> Result<(), PolicyError> {
    if v.iter().all(|x| x.is_finite()) {
        Ok(())
    } else {
        Err(PolicyError::Parse(
            path.to_owned(),
            format!("{what}: NaN or infinity in the statistics"),
        ))
    }
}

#[derive(Debug, Deserialize)]
struct LeRobotFeature {
    mean: Option<serde_json::Value>,
    std: Option<serde_json::Value>,
    q01: Option<serde_json::Value>,
    q99: Option<serde_json::Value>,
    min: Option<serde_json::Value>,
    max: Option<serde_json::Value>,
}

fn flat(v: &serde_json::Value, out: &mut Vec<f64>) -> bool {
    match v {
        serde_json::Value::Number(n) => n.as_f64().map(|x| out.push(x)).is_some(),
        serde_json::Value::Array(a) => a.iter().all(|x| flat(x, out)),
        _ => false,
    }
}

/// Which statistics a LeRobot normaliser uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeRobotMode {
    /// `mean`/`std`.
    MeanStd,
    /// `q01`/`q99`.
    Quantile,
    /// `min`/`max` (the quantile formula over the full range, so nothing seen is clipped).
    MinMax,
}

/// A normaliser for `feature` (e.g. `action`, `observation.state`) from LeRobot's `stats.json`;
/// `mask` (default: all) selects the normalised dimensions.
pub fn lerobot_stats(
    path: &Path,
    feature: &str,
    mode: LeRobotMode,
    mask: Option<Vec<bool>>,
) -> Result<Normalizer, PolicyError> {
    let text = std::fs::read_to_string(path).map_err(|e| PolicyError::Io(path.to_owned(), e))?;
    let all: BTreeMap<String, LeRobotFeature> = serde_json::from_str(&text)
        .map_err(|e| PolicyError::Parse(path.to_owned(), e.to_string()))?;
    let f = all
        .get(feature)
        .ok_or_else(|| PolicyError::Parse(path.to_owned(), format!("no feature {feature:?}")))?;
    let get = |name: &str, v: &Option<serde_json::Value>| -> Result<Vec<f64>, PolicyError> {
        let mut out = Vec::new();
        match v {
            Some(v) if flat(v, &mut out) => {
                finite(path, &format!("{feature}.{name}"), &out)?;
                Ok(out)
            }
            _ => Err(PolicyError::Parse(
                path.to_owned(),
                format!("{feature}.{name} missing or not numeric"),
            )),
        }
    };
    let (a, b) = match mode {
        LeRobotMode::MeanStd => (get("mean", &f.mean)?, get("std", &f.std)?),
        LeRobotMode::Quantile => (get("q01", &f.q01)?, get("q99", &f.q99)?),
        LeRobotMode::MinMax => (get("min", &f.min)?, get("max", &f.max)?),
    };
    let n = a.len();
    let mask = mask.unwrap_or_else(|| vec![true; n]);
    if b.len() != n || mask.len() != n {
        return Err(PolicyError::Shape(format!(
            "{feature}: statistics and mask lengths differ ({n}, {}, {})",
            b.len(),
            mask.len()
        )));
    }
    Ok(match mode {
        LeRobotMode::MeanStd => Normalizer::MeanStd {
            mean: a,
            std: b,
            mask,
        },
        LeRobotMode::Quantile | LeRobotMode::MinMax => Normalizer::Quantile {
            q01: a,
            q99: b,
            mask,
        },
    })
}
