//! Policy folders under `policies/`: which architecture a folder holds, what it expects and
//! produces (read from its files without loading the weights), and loading it as a
//! [`Policy`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device};
use serde::Serialize;
use sinew_core::{Policy, PolicyError, PolicySpec};

use crate::models::{openvla, sinew_tiny};
use crate::weights::Checkpoint;

/// The architectures Sinew loads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Architecture {
    /// OpenVLA (Prismatic) in the Hugging Face layout.
    OpenVla,
    /// Sinew's small real-time VLA.
    SinewTiny,
}

/// Options for loading.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Where the model runs.
    pub device: Device,
    /// Weights and activations dtype.
    pub dtype: DType,
    /// OpenVLA: which dataset's statistics un-normalise actions.
    pub unnorm_key: Option<String>,
    /// OpenVLA: plain greedy decoding exactly as the release (default: constrained).
    pub unconstrained: bool,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            device: Device::Cpu,
            dtype: DType::F32,
            unnorm_key: None,
            unconstrained: false,
        }
    }
}

/// The architecture of the policy folder `dir`, from `config.json`'s `model_type`.
pub fn architecture(dir: &Path) -> Result<Architecture, PolicyError> {
    let path = dir.join("config.json");
    if !dir.is_dir() {
        return Err(PolicyError::Config(format!(
            "{}: not a policy folder",
            dir.display()
        )));
    }
    let text = std::fs::read_to_string(&path).map_err(|e| PolicyError::Io(path.clone(), e))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| PolicyError::Parse(path.clone(), e.to_string()))?;
    match v.get("model_type").and_then(|m| m.as_str()) {
        Some("openvla") | Some("prismatic") => Ok(Architecture::OpenVla),
        Some("sinew-tiny") => Ok(Architecture::SinewTiny),
        Some(other) => Err(PolicyError::Parse(
            path,
            format!("model_type `{other}` is not supported (openvla, sinew-tiny)"),
        )),
        None => Err(PolicyError::Parse(path, "no model_type".into())),
    }
}

/// Loads the policy folder `dir`.
pub fn load_policy(dir: &Path, opts: &LoadOptions) -> Result<Box<dyn Policy>, PolicyError> {
    Ok(match architecture(dir)? {
        Architecture::OpenVla => {
            let mut p = openvla::OpenVlaPolicy::load(
                dir,
                &opts.device,
                opts.dtype,
                opts.unnorm_key.as_deref(),
            )?;
            if opts.unconstrained {
                p.decoding = openvla::Decoding::Unconstrained;
            }
            Box::new(p)
        }
        Architecture::SinewTiny => Box::new(sinew_tiny::SinewTinyPolicy::load(
            dir,
            &opts.device,
            opts.dtype,
        )?),
    })
}

/// What a policy folder holds, read without loading weights.
#[derive(Debug, Clone, Serialize)]
pub struct PolicyInfo {
    /// The folder.
    pub dir: PathBuf,
    /// The architecture.
    pub architecture: Architecture,
    /// Inputs and outputs.
    pub spec: PolicySpec,
    /// Weight files.
    pub weight_files: Vec<PathBuf>,
    /// Parameters in the weight files.
    pub parameters: u64,
    /// Tensors per stored dtype.
    pub dtypes: BTreeMap<String, usize>,
    /// Normalisation statistics available (OpenVLA: dataset keys).
    pub statistics: Vec<String>,
    /// Architecture details, as (name, value).
    pub details: Vec<(String, String)>,
}

/// How a sinew-tiny policy decodes its bins, in words: one name, or one per action dimension
/// (1-based) where they differ.
fn decoding_of(cfg: &sinew_tiny::Config) -> String {
    if cfg.decode_by_dim.is_empty() {
        return cfg.decode.as_str().to_owned();
    }
    let per_dim: Vec<String> = cfg
        .decode_by_dim
        .iter()
        .enumerate()
        .map(|(k, d)| format!("{}: {}", k + 1, d.as_str()))
        .collect();
    format!("per dimension ({})", per_dim.join(", "))
}

/// Reads what the folder `dir` expects and produces.
pub fn inspect(dir: &Path) -> Result<PolicyInfo, PolicyError> {
    let arch = architecture(dir)?;
    let ckpt = Checkpoint::open(dir)?;
    let mut dtypes = BTreeMap::new();
    for t in ckpt.tensors.values() {
        *dtypes.entry(t.dtype.clone()).or_insert(0) += 1;
    }
    let (spec, statistics, details) = match arch {
        Architecture::OpenVla => {
            let cfg = openvla::Config::load(dir)?;
            let stats = openvla::statistics(&cfg, dir)?;
            let keys: Vec<String> = stats
                .as_object()
                .map(|m| m.keys().cloned().collect())
                .unwrap_or_default();
            let dim = stats
                .as_object()
                .and_then(|m| m.values().next())
                .and_then(|e| e.pointer("/action/q01"))
                .and_then(|q| q.as_array())
                .map_or(7, Vec::len);
            let vis = cfg
                .vision_configs()
                .map_err(|m| PolicyError::Parse(dir.join("config.json"), m))?;
            let t = &cfg.text_config;
            let mut details = vec![
                ("vision".to_owned(), cfg.timm_model_ids.join(" + ")),
                (
                    "vision sizes".to_owned(),
                    vis.iter()
                        .map(|v| {
                            format!(
                                "{}x{} d{} ({} patches)",
                                v.depth,
                                v.num_heads,
                                v.embed_dim,
                                v.num_patches()
                            )
                        })
                        .collect::<Vec<_>>()
                        .join(", "),
                ),
                (
                    "language model".to_owned(),
                    format!(
                        "Llama {} layers, width {}, {} heads, vocabulary {} (padded {})",
                        t.num_hidden_layers,
                        t.hidden_size,
                        t.num_attention_heads,
                        cfg.vocab_size(),
                        t.vocab_size
                    ),
                ),
                (
                    "action tokens".to_owned(),
                    format!(
                        "{} bins, ids {}..{}",
                        cfg.n_action_bins,
                        cfg.vocab_size() - cfg.n_action_bins,
                        cfg.vocab_size() - 1
                    ),
                ),
                (
                    "context".to_owned(),
                    format!("{} tokens", cfg.llm_max_length),
                ),
            ];
            if let Some(d) = &cfg.sinew.decoding {
                details.push(("decoding".to_owned(), d.clone()));
            }
            (openvla::spec_of(&cfg, vis[0].img_size, dim), keys, details)
        }
        Architecture::SinewTiny => {
            let cfg = sinew_tiny::load_config(dir)?;
            let details = vec![
                (
                    "vision".to_owned(),
                    format!(
                        "CNN {:?} over {} px, {} tokens per camera",
                        cfg.cnn_channels,
                        cfg.image_size,
                        cfg.patches_per_camera()
                    ),
                ),
                (
                    "transformer".to_owned(),
                    format!(
                        "{} layers, width {}, {} heads, MLP {}",
                        cfg.n_layers, cfg.d_model, cfg.n_heads, cfg.mlp_dim
                    ),
                ),
                (
                    "sequence".to_owned(),
                    format!(
                        "{} tokens ({} prefix + {} action queries)",
                        cfg.seq_len(),
                        cfg.prefix_len(),
                        cfg.chunk_length
                    ),
                ),
                (
                    "text".to_owned(),
                    format!(
                        "{} words max, vocabulary {}",
                        cfg.max_text_len, cfg.text_vocab_size
                    ),
                ),
                (
                    "robot".to_owned(),
                    cfg.robot.clone().unwrap_or_else(|| "-".into()),
                ),
                ("decoding".to_owned(), decoding_of(&cfg)),
            ];
            (
                sinew_tiny::spec_of(&cfg),
                vec!["stats.json (min/max)".to_owned()],
                details,
            )
        }
    };
    Ok(PolicyInfo {
        dir: dir.to_owned(),
        architecture: arch,
        spec,
        parameters: ckpt.parameter_count(),
        weight_files: ckpt.files.clone(),
        dtypes,
        statistics,
        details,
    })
}
