//! Argument groups shared by several commands, and their conversion into the application's
//! settings.

use std::path::PathBuf;

use clap::Args;
use sinew_app::execution::LatencyModel;
use sinew_app::execution::{ExecutionMode, ExecutionSpec, InterpolationMode, MergeMode};
use sinew_app::recording::RerunSpec;
use sinew_app::resolve::DeviceSpec;

/// How chunks are executed (kept in recordings' metadata so `replay --compare` runs the same
/// way).
#[derive(Debug, Clone, Args)]
pub struct ExecutionArgs {
    /// Chunk execution: `sync` (execute `--steps` entries of each chunk, then infer), `async`
    /// (infer when `--threshold` steps remain; merge overlaps with `--merge`) or `rtc`
    /// (real-time chunking: async, each chunk conditioned on the actions executed while it is
    /// computed; needs a policy trained for it).
    #[arg(long, default_value = "sync")]
    pub execution: ExecutionMode,
    /// Sync: chunk entries executed before the next inference (default: the policy's
    /// `n_action_steps`, else half the chunk, at least 1).
    #[arg(long)]
    pub steps: Option<usize>,
    /// Async: remaining steps that trigger the next inference (default: half the chunk).
    #[arg(long)]
    pub threshold: Option<usize>,
    /// Async: how overlapping chunks are merged: `latest` (the newest chunk wins), `weighted`
    /// (0.3 old + 0.7 new) or `ensemble` (ACT temporal ensembling, exp(-0.01 i)).
    #[arg(long, default_value = "latest")]
    pub merge: MergeMode,
    /// Policy-rate targets to command-rate commands: `linear` between policy steps, or `hold`
    /// each step's target from the start of the step.
    #[arg(long, default_value = "linear")]
    pub interpolation: InterpolationMode,
}

impl ExecutionArgs {
    pub fn spec(&self) -> ExecutionSpec {
        ExecutionSpec {
            execution: self.execution,
            steps: self.steps,
            threshold: self.threshold,
            merge: self.merge,
            interpolation: self.interpolation,
            latency: None,
        }
    }
}

/// Simulated inference latency of lockstep runs (`sim run`, `eval`, `replay --compare`): the
/// chunk computed from the observation at simulated time t is used from t + delay on, while
/// the robot keeps executing. Real-time runs have latency of their own.
#[derive(Debug, Clone, Args)]
pub struct LatencyArgs {
    /// Simulated inference latency, ms: `100`, or `100±30` (also `100+-30`: uniform jitter of
    /// ±30 ms, never below 0), drawn per request from the episode's seed. `eval` takes a list
    /// (`0,100,200`) and then sweeps. Default: none (the policy answers at once).
    #[arg(long, value_delimiter = ',', value_name = "MS[±JITTER]")]
    pub latency: Vec<String>,
    /// Jitter (ms) for the `--latency` values that give none.
    #[arg(long, default_value_t = 0.0, value_name = "MS")]
    pub latency_jitter: f64,
    /// Draw the delays from the inference times (`inference` events, `wall_ms`) of a
    /// recording, such as one of `sinew run --record`.
    #[arg(long, value_name = "REC.mcap")]
    pub latency_from: Option<PathBuf>,
}

impl LatencyArgs {
    /// Every latency asked for, in order (`--latency-from` last); empty when none was.
    pub fn models(&self) -> anyhow::Result<Vec<LatencyModel>> {
        let mut out = Vec::new();
        for l in &self.latency {
            out.push(LatencyModel::parse(l, self.latency_jitter)?);
        }
        if let Some(f) = &self.latency_from {
            out.push(sinew_app::replay::latency_from_recording(f)?);
        }
        Ok(out)
    }

    /// The one latency asked for, if any (commands that take a single one).
    pub fn model(&self) -> anyhow::Result<Option<LatencyModel>> {
        let mut m = self.models()?;
        if m.len() > 1 {
            anyhow::bail!("one latency here (a list is for `sinew eval`, which sweeps)");
        }
        Ok(m.pop())
    }
}

/// Data-parallel training threads (`sinew train`, `sinew bench train`).
#[derive(Debug, Clone, Args)]
pub struct WorkerArgs {
    /// Data-parallel worker threads on the CPU: each step's batch is split over them, each
    /// share differentiated on its own thread, the gradients averaged. On a CPU with N cores,
    /// `--workers N` trains faster than candle's own threading (docs/training.md, "Training
    /// speed"); the result is the same training up to the order of floating-point sums.
    #[arg(long, default_value_t = 1)]
    pub workers: usize,
}

impl WorkerArgs {
    /// The worker count, refused when 0 or when more than 1 is asked of a GPU.
    pub fn checked(&self, on_cpu: bool) -> anyhow::Result<usize> {
        if self.workers == 0 || (self.workers > 1 && !on_cpu) {
            anyhow::bail!(
                "--workers {}: give 1 or more, and more than 1 only on the CPU",
                self.workers
            );
        }
        Ok(self.workers)
    }
}

/// Where and how a model runs.
#[derive(Debug, Clone, Args)]
pub struct DeviceArgs {
    /// `cpu`, `cuda` or `cuda:N` (CUDA needs a build with `--features cuda`).
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// `auto` (f32 on the CPU, bf16 on CUDA), `f32`, `bf16` or `f16`.
    #[arg(long, default_value = "auto")]
    pub dtype: String,
    /// OpenVLA: the dataset whose statistics un-normalise actions.
    #[arg(long)]
    pub unnorm_key: Option<String>,
    /// OpenVLA: plain greedy decoding exactly as the release (default: only action tokens).
    #[arg(long)]
    pub unconstrained: bool,
}

impl DeviceArgs {
    pub fn spec(&self) -> DeviceSpec {
        DeviceSpec {
            device: self.device.clone(),
            dtype: self.dtype.clone(),
            unnorm_key: self.unnorm_key.clone(),
            unconstrained: self.unconstrained,
        }
    }
}

/// Rerun output flags.
#[derive(Debug, Clone, Args)]
pub struct RerunArgs {
    /// Stream live to a rerun viewer at ADDR (`HOST:PORT`, default port of `rerun` is 9876, or a
    /// full `rerun+http://...` URL).
    #[arg(long, value_name = "ADDR")]
    pub rerun_connect: Option<String>,
    /// With `--record`: write only the MCAP files, no `.rrd` beside them.
    #[arg(long)]
    pub no_rrd: bool,
}

impl RerunArgs {
    pub fn spec(&self) -> RerunSpec {
        RerunSpec {
            connect: self.rerun_connect.clone(),
            no_rrd: self.no_rrd,
        }
    }
}

/// How colour images are stored in recordings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ImageEncodingArg {
    /// `sensor_msgs/Image` as captured.
    Raw,
    /// JPEG (`--jpeg-quality`) as `sensor_msgs/CompressedImage` on `<topic>/compressed`.
    Jpeg,
    /// PNG (lossless) as `sensor_msgs/CompressedImage` on `<topic>/compressed`.
    Png,
}

/// How depth images are stored in recordings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DepthArg {
    /// `32FC1` metres, as rendered.
    F32,
    /// `16UC1` millimetres (0 = no reading), as ROS depth cameras publish.
    Mm16,
    /// Not recorded.
    None,
}

/// How recordings (MCAP and `.rrd`) store camera images.
#[derive(Debug, Clone, Args)]
pub struct RecordingArgs {
    /// Colour images in recordings: `png` (lossless), `jpeg` (lossy) or `raw`. Default:
    /// `png` for the simulator's rendered images (sim run, eval: smaller than JPEG for them,
    /// and `replay --compare` stays exact), `jpeg` for cameras (run, record: sensor noise
    /// makes PNG several times larger).
    #[arg(long, value_enum)]
    pub image_encoding: Option<ImageEncodingArg>,
    /// JPEG quality, 1-100.
    #[arg(long, default_value_t = sinew_record::codec::DEFAULT_JPEG_QUALITY,
          value_parser = clap::value_parser!(u8).range(1..=100))]
    pub jpeg_quality: u8,
    /// Depth images in recordings: `mm16` (16-bit millimetres), `f32` (metres, 4 bytes a
    /// pixel) or `none`.
    #[arg(long, value_enum, default_value = "mm16")]
    pub depth: DepthArg,
}

impl RecordingArgs {
    /// The encodings asked for; colour as `default_color` unless `--image-encoding` says.
    pub fn encodings(&self, default_color: ImageEncodingArg) -> sinew_record::Encodings {
        use sinew_record::codec::{ColorEncoding, DepthEncoding};
        sinew_record::Encodings {
            color: match self.image_encoding.unwrap_or(default_color) {
                ImageEncodingArg::Raw => ColorEncoding::Raw,
                ImageEncodingArg::Jpeg => ColorEncoding::Jpeg {
                    quality: self.jpeg_quality,
                },
                ImageEncodingArg::Png => ColorEncoding::Png,
            },
            depth: match self.depth {
                DepthArg::F32 => DepthEncoding::F32,
                DepthArg::Mm16 => DepthEncoding::Mm16,
                DepthArg::None => DepthEncoding::None,
            },
        }
    }
}
