//! Simulated inference latency for driven loops (the simulator in lockstep, a recording played
//! back), where the policy runs inline and simulated time would otherwise wait for it.
//!
//! On a real robot a chunk arrives tens to hundreds of milliseconds after the observation it was
//! computed from, and the robot keeps moving meanwhile. With a [`LatencyModel`] the
//! [`Session`](crate::Session) of a driven robot draws a delay `d` for each request made at
//! simulated time `t` and holds the policy's answer until the first tick at or after `t + d`;
//! only then does the runtime see it (so a sync loop holds its last target meanwhile, an async
//! one keeps executing the chunks it has, and the entries for steps already passed are dropped
//! on arrival, as for any late chunk). Real-time loops ignore the model: their latency is real.
//!
//! The delay of a request is drawn when the request is made, so it is known before the policy
//! is called: a real-time-chunking mode can condition the next chunk on the targets the robot
//! will execute between `t` and `t + d` (the committed prefix, [`crate::Runtime::planned`]).
//!
//! Delays come from a [`SplitMix64`] seeded by the episode's seed, so a seed gives the same
//! delays, and the same episode, on every run.

use serde::{Deserialize, Serialize};
use sinew_core::rng::SplitMix64;

/// How long the policy takes to answer, in simulated time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum LatencyModel {
    /// `ms`, plus a uniform jitter in `[-jitter_ms, +jitter_ms]` (never below 0).
    Fixed {
        /// The mean delay, ms.
        ms: f64,
        /// Half-width of the uniform jitter, ms (0: always `ms`).
        jitter_ms: f64,
    },
    /// Delays drawn (uniformly, with replacement) from measured ones, such as the inference
    /// times of a live run's recording.
    Recorded {
        /// Where they were measured (a file name; informative).
        source: String,
        /// The measured delays, ms.
        samples_ms: Vec<f64>,
    },
}

/// Why a latency model cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LatencyError {
    /// A spec string that is not `MS` or `MS±JITTER`.
    #[error(
        "latency `{0}`: expected milliseconds, `MS±JITTER` or `MS+-JITTER` (e.g. 100, 100±30)"
    )]
    Syntax(String),
    /// A negative, infinite or NaN delay or jitter.
    #[error("latency `{0}`: delays and jitter must be finite and not negative")]
    Value(String),
    /// No delays to draw from.
    #[error("no inference times in {0}")]
    Empty(String),
}

fn usable(v: f64) -> bool {
    v.is_finite() && v >= 0.0
}

impl LatencyModel {
    /// A fixed delay with a uniform jitter.
    pub fn fixed(ms: f64, jitter_ms: f64) -> Result<Self, LatencyError> {
        if !usable(ms) || !usable(jitter_ms) {
            return Err(LatencyError::Value(format!("{ms}±{jitter_ms}")));
        }
        Ok(Self::Fixed { ms, jitter_ms })
    }

    /// Parses `100`, `100±30` or `100+-30` (ms); `jitter_ms` applies when the string has none.
    pub fn parse(s: &str, jitter_ms: f64) -> Result<Self, LatencyError> {
        let t = s.trim();
        let (ms, jitter) = match t.split_once('±').or_else(|| t.split_once("+-")) {
            Some((a, b)) => (a.trim(), Some(b.trim())),
            None => (t, None),
        };
        let num = |x: &str| {
            x.trim_end_matches("ms")
                .trim()
                .parse::<f64>()
                .map_err(|_| LatencyError::Syntax(s.to_owned()))
        };
        let ms = num(ms)?;
        let jitter = match jitter {
            Some(j) => num(j)?,
            None => jitter_ms,
        };
        Self::fixed(ms, jitter).map_err(|_| LatencyError::Value(s.to_owned()))
    }

    /// Measured delays (ms) from `source`; non-finite and negative ones are left out.
    pub fn recorded(source: &str, samples_ms: Vec<f64>) -> Result<Self, LatencyError> {
        let samples_ms: Vec<f64> = samples_ms.into_iter().filter(|v| usable(*v)).collect();
        if samples_ms.is_empty() {
            return Err(LatencyError::Empty(source.to_owned()));
        }
        Ok(Self::Recorded {
            source: source.to_owned(),
            samples_ms,
        })
    }

    /// The mean delay, ms.
    pub fn mean_ms(&self) -> f64 {
        match self {
            Self::Fixed { ms, jitter_ms } => {
                // Uniform on [ms - j, ms + j] clamped at 0.
                if *jitter_ms <= *ms {
                    *ms
                } else {
                    let (lo, hi) = (ms - jitter_ms, ms + jitter_ms);
                    (hi * hi / 2.0) / (hi - lo)
                }
            }
            Self::Recorded { samples_ms, .. } => {
                samples_ms.iter().sum::<f64>() / samples_ms.len().max(1) as f64
            }
        }
    }

    /// A short label: `100 ms`, `100±30 ms`, `recorded (412 inferences, mean 87 ms)`.
    pub fn label(&self) -> String {
        match self {
            Self::Fixed { ms, jitter_ms } if *jitter_ms == 0.0 => format!("{ms} ms"),
            Self::Fixed { ms, jitter_ms } => format!("{ms}±{jitter_ms} ms"),
            Self::Recorded { samples_ms, .. } => format!(
                "recorded ({} inferences, mean {:.0} ms)",
                samples_ms.len(),
                self.mean_ms()
            ),
        }
    }

    /// The delays of an episode, drawn from a generator seeded by its seed.
    pub fn sampler(&self, seed: u64) -> LatencySampler {
        LatencySampler {
            model: self.clone(),
            // Its own stream: not the one the task's scene is drawn from.
            rng: SplitMix64(seed ^ 0x6c61_7465_6e63_7921),
        }
    }
}

/// The delays of one episode.
#[derive(Debug, Clone)]
pub struct LatencySampler {
    model: LatencyModel,
    rng: SplitMix64,
}

impl LatencySampler {
    /// The model.
    pub fn model(&self) -> &LatencyModel {
        &self.model
    }

    /// The next request's delay, s.
    pub fn next_s(&mut self) -> f64 {
        let ms = match &self.model {
            LatencyModel::Fixed { ms, jitter_ms } if *jitter_ms == 0.0 => *ms,
            LatencyModel::Fixed { ms, jitter_ms } => {
                (ms + jitter_ms * (2.0 * self.rng.unit() - 1.0)).max(0.0)
            }
            LatencyModel::Recorded { samples_ms, .. } => {
                samples_ms[self.rng.below(samples_ms.len())]
            }
        };
        ms * 1e-3
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_and_samples_stay_within_the_jitter_and_repeat_for_a_seed() {
        assert_eq!(
            LatencyModel::parse("100", 0.0),
            Ok(LatencyModel::Fixed {
                ms: 100.0,
                jitter_ms: 0.0
            })
        );
        let m = LatencyModel::parse("100±30", 0.0).expect("spec");
        assert_eq!(m, LatencyModel::parse("100 +- 30", 5.0).expect("spec"));
        assert_eq!(
            LatencyModel::parse("50", 10.0).expect("spec").label(),
            "50±10 ms"
        );
        assert!(matches!(
            LatencyModel::parse("fast", 0.0),
            Err(LatencyError::Syntax(_))
        ));
        assert!(matches!(
            LatencyModel::parse("-5", 0.0),
            Err(LatencyError::Value(_))
        ));
        let draw = |seed| {
            let mut s = m.sampler(seed);
            (0..200).map(|_| s.next_s()).collect::<Vec<_>>()
        };
        let a = draw(7);
        assert_eq!(a, draw(7));
        assert_ne!(a, draw(8));
        assert!(a.iter().all(|d| (0.07..=0.13).contains(d)), "{a:?}");
        let mean = a.iter().sum::<f64>() / a.len() as f64;
        assert!((mean - 0.1).abs() < 0.005, "{mean}");
        let r = LatencyModel::recorded("x", vec![10.0, f64::NAN, 20.0]).expect("samples");
        let mut s = r.sampler(1);
        assert!((0..50).all(|_| [0.01, 0.02].contains(&s.next_s())));
        assert!(LatencyModel::recorded("y", vec![]).is_err());
    }
}
