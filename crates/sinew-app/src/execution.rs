//! How chunks are executed, as the command line names it; kept in recordings' metadata so that
//! `replay --compare` runs a recording exactly as it was run. The simulated inference latency
//! of lockstep runs is part of it.

use serde::{Deserialize, Serialize};
use sinew_core::PolicySpec;
use sinew_robot::RobotDescription;
use sinew_runtime::{Execution, Interpolation, Merge, RuntimeConfig};

pub use sinew_runtime::LatencyModel;

/// Sync or async chunk execution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExecutionMode {
    /// Execute `steps` entries of each chunk, then infer.
    Sync,
    /// Infer when `threshold` steps remain; merge overlaps.
    Async,
    /// Real-time chunking: async, each chunk conditioned on the actions the robot executes
    /// while it is computed (they begin it), so chunks join without a jump; the newest chunk
    /// wins. Needs a policy trained for it (`prefix_max`).
    Rtc,
}

/// How overlapping chunks are merged in async execution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MergeMode {
    /// The newest chunk wins.
    Latest,
    /// 0.3 old + 0.7 new.
    Weighted,
    /// ACT temporal ensembling, exp(-0.01 i).
    Ensemble,
}

/// Policy-rate targets to command-rate commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InterpolationMode {
    /// Linear between policy steps.
    Linear,
    /// Each policy step's target from the start of the step.
    Hold,
}

fn parse<T: for<'de> Deserialize<'de>>(s: &str, what: &str, allowed: &str) -> Result<T, String> {
    serde_json::from_value(serde_json::Value::String(s.to_owned()))
        .map_err(|_| format!("{what} `{s}`: expected one of {allowed}"))
}

impl std::str::FromStr for ExecutionMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        parse(s, "execution", "sync, async, rtc")
    }
}

impl std::str::FromStr for MergeMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        parse(s, "merge", "latest, weighted, ensemble")
    }
}

impl std::str::FromStr for InterpolationMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        parse(s, "interpolation", "linear, hold")
    }
}

/// Chunk execution as asked for on the command line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecutionSpec {
    /// Sync or async.
    pub execution: ExecutionMode,
    /// Sync: entries executed per chunk (default: the policy's `n_action_steps`, else half the
    /// chunk).
    pub steps: Option<usize>,
    /// Async: remaining steps that trigger the next inference (default: half the chunk).
    pub threshold: Option<usize>,
    /// Async: how overlapping chunks are merged.
    pub merge: MergeMode,
    /// Policy-rate targets to command-rate commands.
    pub interpolation: InterpolationMode,
    /// Simulated inference latency of lockstep runs (`None`: the policy answers at once, in
    /// simulated time). Absent from the metadata when `None`, as before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency: Option<LatencyModel>,
}

impl Default for ExecutionSpec {
    fn default() -> Self {
        Self {
            execution: ExecutionMode::Sync,
            steps: None,
            threshold: None,
            merge: MergeMode::Latest,
            interpolation: InterpolationMode::Linear,
            latency: None,
        }
    }
}

/// Chunk entries executed per inference in sync mode: the one asked for (flag or policy),
/// else half the chunk; always within the chunk.
pub fn sync_steps(chunk_length: usize, asked: Option<usize>) -> usize {
    asked
        .unwrap_or((chunk_length / 2).max(1))
        .clamp(1, chunk_length.max(1))
}

impl ExecutionSpec {
    /// The execution for a policy of `chunk_length` that asks for `n_action_steps` (sync).
    pub fn execution(&self, chunk_length: usize, n_action_steps: Option<usize>) -> Execution {
        let half = (chunk_length / 2).max(1);
        match self.execution {
            ExecutionMode::Sync => Execution::Sync {
                steps: sync_steps(chunk_length, self.steps.or(n_action_steps)),
            },
            ExecutionMode::Rtc => Execution::Async {
                threshold: self.threshold.unwrap_or(half),
                merge: Merge::LatestOnly,
            },
            ExecutionMode::Async => Execution::Async {
                threshold: self.threshold.unwrap_or(half),
                merge: match self.merge {
                    MergeMode::Latest => Merge::LatestOnly,
                    MergeMode::Weighted => Merge::WeightedAverage { old_weight: 0.3 },
                    MergeMode::Ensemble => Merge::TemporalEnsemble { m: 0.01 },
                },
            },
        }
    }

    /// The interpolation.
    pub fn interpolation(&self) -> Interpolation {
        match self.interpolation {
            InterpolationMode::Linear => Interpolation::Linear,
            InterpolationMode::Hold => Interpolation::Hold,
        }
    }

    /// The runtime's settings for `robot` driven by a policy of `spec`, executed this way.
    pub fn runtime_config(&self, robot: &RobotDescription, spec: &PolicySpec) -> RuntimeConfig {
        let mut cfg = RuntimeConfig::new(
            robot,
            spec.control_rate_hz,
            spec.cameras.clone(),
            spec.action_kind,
            self.execution(spec.chunk_length, spec.n_action_steps),
        );
        cfg.interpolation = self.interpolation();
        cfg
    }

    /// The execution mode's short name: `sync`, `async-latest`, `async-weighted`,
    /// `async-ensemble`.
    pub fn mode_name(&self) -> String {
        match self.execution {
            ExecutionMode::Sync => "sync".into(),
            ExecutionMode::Rtc => "rtc".into(),
            ExecutionMode::Async => format!(
                "async-{}",
                match self.merge {
                    MergeMode::Latest => "latest",
                    MergeMode::Weighted => "weighted",
                    MergeMode::Ensemble => "ensemble",
                }
            ),
        }
    }

    /// This spec in the mode named `name` (see [`ExecutionSpec::mode_name`]); steps,
    /// threshold, interpolation and latency are kept.
    pub fn with_mode(&self, name: &str) -> Result<Self, String> {
        let mut out = self.clone();
        match name.split_once('-') {
            None if name == "sync" => out.execution = ExecutionMode::Sync,
            None if name == "rtc" => {
                out.execution = ExecutionMode::Rtc;
                out.merge = MergeMode::Latest;
            }
            Some(("async", merge)) => {
                out.execution = ExecutionMode::Async;
                out.merge = merge.parse()?;
            }
            _ => {
                return Err(format!(
                "mode `{name}`: expected sync, async-latest, async-weighted, async-ensemble or rtc"
            ))
            }
        }
        Ok(out)
    }

    /// How many committed actions a session gives `policy` with each request: `None` unless
    /// the mode is real-time chunking, which needs a policy trained for it.
    pub fn rtc_capacity(&self, policy: &dyn sinew_core::Policy) -> Result<Option<usize>, String> {
        if self.execution != ExecutionMode::Rtc {
            return Ok(None);
        }
        let spec = policy.spec();
        match (policy.prefix_capacity(), spec.action_kind) {
            (0, _) => Err(format!(
                "--execution rtc: this {} policy was not trained with committed actions (sinew-tiny's prefix_max)",
                spec.architecture
            )),
            (_, sinew_core::ActionKind::EeDelta) => Err(
                "--execution rtc needs joint-space actions (joint_position or joint_delta)".into(),
            ),
            (n, _) => Ok(Some(n)),
        }
    }

    /// As recorded in a recording's metadata.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sync_steps_come_from_the_flag_then_the_policy_then_half_the_chunk() {
        let mut a = ExecutionSpec::default();
        assert_eq!(a.execution(10, None), Execution::Sync { steps: 5 });
        assert_eq!(a.execution(10, Some(7)), Execution::Sync { steps: 7 });
        a.steps = Some(3);
        assert_eq!(a.execution(10, Some(7)), Execution::Sync { steps: 3 });
        // Never more than the chunk holds.
        a.steps = Some(30);
        assert_eq!(a.execution(10, Some(7)), Execution::Sync { steps: 10 });
    }

    #[test]
    fn recordings_metadata_written_before_reads_back() {
        // The JSON `sinew sim run` wrote into recordings before this module existed.
        let old = r#"{"execution":"async","steps":null,"threshold":3,"merge":"ensemble","interpolation":"hold"}"#;
        let e: ExecutionSpec = serde_json::from_str(old).expect("reads");
        assert_eq!(e.execution, ExecutionMode::Async);
        assert_eq!(e.to_json(), old);
        assert_eq!("weighted".parse::<MergeMode>(), Ok(MergeMode::Weighted));
        let err = "fast".parse::<ExecutionMode>().expect_err("not a mode");
        assert_eq!(err, "execution `fast`: expected one of sync, async, rtc");
        // A latency model rides along, and reads back.
        let mut l = ExecutionSpec::default()
            .with_mode("async-ensemble")
            .expect("mode");
        assert_eq!(l.mode_name(), "async-ensemble");
        l.latency = Some(LatencyModel::parse("100±30", 0.0).expect("latency"));
        let back: ExecutionSpec = serde_json::from_str(&l.to_json()).expect("reads");
        assert_eq!(back, l);
        assert!(ExecutionSpec::default().with_mode("async").is_err());
    }
}
