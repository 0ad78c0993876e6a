//! OpenVLA (Prismatic) in candle, loading the Hugging Face layout of `openvla/openvla-7b`:
//! `config.json`, sharded safetensors with `model.safetensors.index.json`, `tokenizer.json`,
//! `preprocessor_config.json` and the normalisation statistics (`norm_stats` in config.json or
//! `dataset_statistics.json`).
//!
//! The model: two timm ViTs (`vision_backbone.featurizer` = DINOv2 with registers,
//! `vision_backbone.fused_featurizer` = SigLIP), each giving the patch tokens of its
//! second-to-last block, concatenated per patch; the projector `projector.fc1/fc2/fc3` with
//! exact GELUs; and candle-transformers' Llama under `language_model.` (its names fit the
//! checkpoint unchanged). The projected patches are inserted right after the BOS token.
//! Decoding is greedy for `action_dim` tokens, optionally constrained to the 256 action
//! tokens; see docs/references.md section 1.
//!
//! Sinew extensions of config.json, all optional: `timm_model_kwargs` (timm keyword overrides
//! per backbone, used by the tiny test checkpoints) and a `sinew` object (`cameras`,
//! `action_kind`, `control_rate_hz`, `unnorm_key`, `decoding`).

use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{DType, Device, IndexOp, Module, Tensor};
use candle_nn::{linear, Linear, VarBuilder};
use candle_transformers::models::llama;
use serde::Deserialize;
use sinew_core::{ActionChunk, ActionKind, Observation, Policy, PolicyError, PolicySpec, Timings};

use super::timm_vit::{TimmVit, VitConfig};
use crate::bins::BinTokenizer;
use crate::normalize::{openvla_action_stats_from_value, Normalizer};
use crate::weights::{load_checked, load_tokenizer, RecordingBackend};
use crate::{model_err, preprocess};

fn d_usize<const N: usize>() -> usize {
    N
}
fn d_eps() -> f64 {
    1e-6
}
fn d_theta() -> f32 {
    10000.0
}
fn d_true() -> bool {
    true
}

/// The Llama part of config.json (`text_config`); missing fields take Hugging Face's
/// `LlamaConfig` defaults, which is what OpenVLA's released config relies on.
#[derive(Debug, Clone, Deserialize)]
pub struct TextConfig {
    /// Hidden width.
    #[serde(default = "d_usize::<4096>")]
    pub hidden_size: usize,
    /// MLP width.
    #[serde(default = "d_usize::<11008>")]
    pub intermediate_size: usize,
    /// Decoder layers.
    #[serde(default = "d_usize::<32>")]
    pub num_hidden_layers: usize,
    /// Attention heads.
    #[serde(default = "d_usize::<32>")]
    pub num_attention_heads: usize,
    /// Key/value heads (default: as many as attention heads).
    #[serde(default)]
    pub num_key_value_heads: Option<usize>,
    /// Padded vocabulary (rows of `embed_tokens`).
    #[serde(default = "d_usize::<32000>")]
    pub vocab_size: usize,
    /// RMSNorm epsilon (HF's default 1e-6; OpenVLA's released config relies on it).
    #[serde(default = "d_eps")]
    pub rms_norm_eps: f64,
    /// RoPE base.
    #[serde(default = "d_theta")]
    pub rope_theta: f32,
    /// Context length.
    #[serde(default = "d_usize::<2048>")]
    pub max_position_embeddings: usize,
    /// Whether `lm_head` shares `embed_tokens`.
    #[serde(default)]
    pub tie_word_embeddings: bool,
}

/// Sinew's optional block of config.json.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct SinewExtras {
    /// Camera to read (robot.toml name); default `front`.
    #[serde(default)]
    pub cameras: Vec<String>,
    /// Action space of the un-normalised actions; default `ee_delta`.
    #[serde(default)]
    pub action_kind: Option<ActionKind>,
    /// Rate the actions are meant for (Hz); default 5 (BridgeData).
    #[serde(default)]
    pub control_rate_hz: Option<f64>,
    /// Statistics to un-normalise with.
    #[serde(default)]
    pub unnorm_key: Option<String>,
    /// `constrained` (default: only action tokens) or `unconstrained` (exactly OpenVLA).
    #[serde(default)]
    pub decoding: Option<String>,
}

/// OpenVLA's `config.json`.
#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    /// `openvla`.
    pub model_type: String,
    /// Two backbones (DINOv2 + SigLIP) or one.
    #[serde(default = "d_true")]
    pub use_fused_vision_backbone: bool,
    /// timm model ids of the backbones.
    pub timm_model_ids: Vec<String>,
    /// Sinew extension: timm keyword overrides per backbone.
    #[serde(default)]
    pub timm_model_kwargs: Vec<serde_json::Map<String, serde_json::Value>>,
    /// Activation overrides per backbone (OpenVLA: none).
    #[serde(default)]
    pub timm_override_act_layers: Vec<Option<String>>,
    /// Input side per backbone (px).
    pub image_sizes: Vec<usize>,
    /// `...+fused-gelu-mlp` or `...+gelu-mlp`.
    pub arch_specifier: String,
    /// The Llama.
    pub text_config: TextConfig,
    /// The vocabulary was padded to a multiple of this.
    #[serde(default = "d_usize::<64>")]
    pub pad_to_multiple_of: usize,
    /// Action bins (256).
    #[serde(default = "d_usize::<256>")]
    pub n_action_bins: usize,
    /// Normalisation statistics by dataset.
    #[serde(default)]
    pub norm_stats: Option<serde_json::Value>,
    /// Longest prompt plus image tokens plus actions.
    #[serde(default = "d_usize::<2048>")]
    pub llm_max_length: usize,
    /// Sinew's extensions.
    #[serde(default)]
    pub sinew: SinewExtras,
}

impl Config {
    /// Reads `dir/config.json`.
    pub fn load(dir: &Path) -> Result<Self, PolicyError> {
        let path = dir.join("config.json");
        let text = std::fs::read_to_string(&path).map_err(|e| PolicyError::Io(path.clone(), e))?;
        let cfg: Config = serde_json::from_str(&text)
            .map_err(|e| PolicyError::Parse(path.clone(), e.to_string()))?;
        if cfg.model_type != "openvla" && cfg.model_type != "prismatic" {
            return Err(PolicyError::Parse(
                path,
                format!("model_type `{}` is not openvla", cfg.model_type),
            ));
        }
        cfg.vision_configs()
            .map_err(|m| PolicyError::Parse(path.clone(), m))?;
        let t = &cfg.text_config;
        if t.num_attention_heads == 0 || !t.hidden_size.is_multiple_of(t.num_attention_heads) {
            return Err(PolicyError::Parse(
                path,
                "text_config: hidden_size is not a multiple of num_attention_heads".into(),
            ));
        }
        if cfg.vocab_size() < cfg.n_action_bins {
            return Err(PolicyError::Parse(
                path,
                "text_config.vocab_size - pad_to_multiple_of is smaller than n_action_bins".into(),
            ));
        }
        Ok(cfg)
    }

    /// The backbones' architectures.
    pub fn vision_configs(&self) -> Result<Vec<VitConfig>, String> {
        let n = if self.use_fused_vision_backbone { 2 } else { 1 };
        if self.timm_model_ids.len() < n || self.image_sizes.is_empty() {
            return Err(format!(
                "timm_model_ids needs {n} entries and image_sizes at least one"
            ));
        }
        (0..n)
            .map(|i| {
                let id = &self.timm_model_ids[i];
                let size = *self.image_sizes.get(i).unwrap_or(&self.image_sizes[0]);
                let mut c = VitConfig::from_timm_id(id, size)
                    .ok_or_else(|| format!("timm_model_ids[{i}]: unsupported backbone `{id}`"))?;
                if let Some(kw) = self.timm_model_kwargs.get(i) {
                    c = c
                        .with_kwargs(kw)
                        .map_err(|m| format!("timm_model_kwargs[{i}]: {m}"))?;
                }
                if let Some(Some(act)) = self.timm_override_act_layers.get(i) {
                    c.act = act.clone();
                }
                c.validate()
                    .map_err(|m| format!("backbone {i} ({id}): {m}"))?;
                Ok(c)
            })
            .collect()
    }

    /// The text vocabulary before padding: action tokens end here.
    pub fn vocab_size(&self) -> usize {
        self.text_config
            .vocab_size
            .saturating_sub(self.pad_to_multiple_of)
    }

    /// candle-transformers' Llama configuration.
    pub fn llama_config(&self) -> llama::Config {
        let t = &self.text_config;
        llama::Config {
            hidden_size: t.hidden_size,
            intermediate_size: t.intermediate_size,
            vocab_size: t.vocab_size,
            num_hidden_layers: t.num_hidden_layers,
            num_attention_heads: t.num_attention_heads,
            num_key_value_heads: t.num_key_value_heads.unwrap_or(t.num_attention_heads),
            use_flash_attn: false,
            rms_norm_eps: t.rms_norm_eps,
            rope_theta: t.rope_theta,
            bos_token_id: None,
            eos_token_id: None,
            rope_scaling: None,
            max_position_embeddings: t.max_position_embeddings,
            tie_word_embeddings: t.tie_word_embeddings,
        }
    }
}

#[derive(Debug, Clone)]
struct Projector {
    fc1: Linear,
    fc2: Linear,
    fc3: Option<Linear>,
}

impl Projector {
    fn new(
        fused: bool,
        vision_dim: usize,
        llm_dim: usize,
        vb: VarBuilder,
    ) -> candle_core::Result<Self> {
        if fused {
            Ok(Self {
                fc1: linear(vision_dim, 4 * vision_dim, vb.pp("fc1"))?,
                fc2: linear(4 * vision_dim, llm_dim, vb.pp("fc2"))?,
                fc3: Some(linear(llm_dim, llm_dim, vb.pp("fc3"))?),
            })
        } else {
            Ok(Self {
                fc1: linear(vision_dim, llm_dim, vb.pp("fc1"))?,
                fc2: linear(llm_dim, llm_dim, vb.pp("fc2"))?,
                fc3: None,
            })
        }
    }

    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let h = self.fc1.forward(x)?.gelu_erf()?;
        let h = self.fc2.forward(&h)?;
        match &self.fc3 {
            Some(fc3) => fc3.forward(&h.gelu_erf()?),
            None => Ok(h),
        }
    }
}

/// The Prismatic model.
#[derive(Debug, Clone)]
pub struct OpenVla {
    featurizer: TimmVit,
    fused_featurizer: Option<TimmVit>,
    projector: Projector,
    llm: llama::Llama,
    llama_cfg: llama::Config,
    device: Device,
}

impl OpenVla {
    /// Builds the model from checkpoint names.
    pub fn new(cfg: &Config, vb: VarBuilder) -> candle_core::Result<Self> {
        let vis = cfg.vision_configs().map_err(candle_core::Error::msg)?;
        let featurizer = TimmVit::new(&vis[0], vb.pp("vision_backbone.featurizer"))?;
        let fused_featurizer = match vis.get(1) {
            Some(c) => Some(TimmVit::new(c, vb.pp("vision_backbone.fused_featurizer"))?),
            None => None,
        };
        let vision_dim: usize = vis.iter().map(|c| c.embed_dim).sum();
        let llama_cfg = cfg.llama_config();
        let projector = Projector::new(
            cfg.use_fused_vision_backbone,
            vision_dim,
            llama_cfg.hidden_size,
            vb.pp("projector"),
        )?;
        let device = vb.device().clone();
        let llm = llama::Llama::load(vb.pp("language_model"), &llama_cfg)?;
        Ok(Self {
            featurizer,
            fused_featurizer,
            projector,
            llm,
            llama_cfg,
            device,
        })
    }

    /// Projected patch embeddings `(B, N, llm_dim)` of `pixel_values` `(B, 3 or 6, H, W)`.
    pub fn project_patches(&self, pixel_values: &Tensor) -> candle_core::Result<Tensor> {
        let feats = match &self.fused_featurizer {
            Some(fused) => {
                let a = self
                    .featurizer
                    .openvla_features(&pixel_values.narrow(1, 0, 3)?)?;
                let b = fused.openvla_features(&pixel_values.narrow(1, 3, 3)?)?;
                Tensor::cat(&[a, b], 2)?
            }
            None => self.featurizer.openvla_features(pixel_values)?,
        };
        self.projector.forward(&feats)
    }

    /// Raw backbone features (for tests): `(featurizer, fused_featurizer)`.
    pub fn backbone_features(
        &self,
        pixel_values: &Tensor,
    ) -> candle_core::Result<(Tensor, Option<Tensor>)> {
        match &self.fused_featurizer {
            Some(fused) => Ok((
                self.featurizer
                    .openvla_features(&pixel_values.narrow(1, 0, 3)?)?,
                Some(fused.openvla_features(&pixel_values.narrow(1, 3, 3)?)?),
            )),
            None => Ok((self.featurizer.openvla_features(pixel_values)?, None)),
        }
    }

    /// A fresh KV cache.
    pub fn new_cache(&self, dtype: DType, device: &Device) -> candle_core::Result<llama::Cache> {
        llama::Cache::new(true, dtype, &self.llama_cfg, device)
    }

    /// Last-position logits `(B, vocab)` of the prompt `input_ids` `(B, L)` with `patches`
    /// inserted after the first token; fills `cache`.
    pub fn forward(
        &self,
        input_ids: &Tensor,
        patches: &Tensor,
        cache: &mut llama::Cache,
    ) -> candle_core::Result<Tensor> {
        let emb = self.llm.embed(input_ids)?;
        let l = emb.dim(1)?;
        let x = Tensor::cat(
            &[
                emb.narrow(1, 0, 1)?,
                patches.to_dtype(emb.dtype())?,
                emb.narrow(1, 1, l - 1)?,
            ],
            1,
        )?;
        self.llm.forward_input_embed(&x, 0, cache)
    }

    /// Logits after appending one token at position `index_pos` (KV cache).
    pub fn step(
        &self,
        token: u32,
        index_pos: usize,
        cache: &mut llama::Cache,
    ) -> candle_core::Result<Tensor> {
        let ids = Tensor::new(&[[token]], self.llm_device())?;
        let emb = self.llm.embed(&ids)?;
        self.llm.forward_input_embed(&emb, index_pos, cache)
    }

    fn llm_device(&self) -> &Device {
        &self.device
    }

    /// Greedy decoding of `n` tokens after the prompt. With `allowed = Some((lo, hi))` only
    /// tokens in `lo..=hi` can be chosen. Returns the tokens and each step's logits.
    pub fn generate(
        &self,
        pixel_values: &Tensor,
        input_ids: &[u32],
        n: usize,
        allowed: Option<(u32, u32)>,
        cache_dtype: DType,
    ) -> candle_core::Result<(Vec<u32>, Vec<Vec<f32>>)> {
        let dev = self.llm_device().clone();
        let patches = self.project_patches(pixel_values)?;
        let n_patches = patches.dim(1)?;
        let mut cache = self.new_cache(cache_dtype, &dev)?;
        let ids = Tensor::new(input_ids, &dev)?.unsqueeze(0)?;
        let mut logits = self.forward(&ids, &patches, &mut cache)?;
        let mut pos = input_ids.len() + n_patches;
        let mut tokens = Vec::with_capacity(n);
        let mut all = Vec::with_capacity(n);
        for i in 0..n {
            let row: Vec<f32> = logits.i(0)?.to_dtype(DType::F32)?.to_vec1()?;
            let tok = argmax(&row, allowed);
            all.push(row);
            tokens.push(tok);
            if i + 1 < n {
                logits = self.step(tok, pos, &mut cache)?;
                pos += 1;
            }
        }
        Ok((tokens, all))
    }
}

/// Index of the largest finite logit, within `allowed` when given.
fn argmax(row: &[f32], allowed: Option<(u32, u32)>) -> u32 {
    let (lo, hi) = allowed.map_or((0, row.len().saturating_sub(1)), |(a, b)| {
        (a as usize, b as usize)
    });
    let mut best = (lo, f32::NEG_INFINITY);
    for (i, v) in row.iter().enumerate().take(hi + 1).skip(lo) {
        if *v > best.1 {
            best = (i, *v);
        }
    }
    best.0 as u32
}

/// How to pick action tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decoding {
    /// Only the action tokens can be chosen.
    Constrained,
    /// Plain greedy, exactly as OpenVLA's `predict_action`.
    Unconstrained,
}

/// Image normalisation per backbone (`preprocessor_config.json`).
#[derive(Debug, Clone, Deserialize)]
struct Preprocessor {
    means: Vec<[f32; 3]>,
    stds: Vec<[f32; 3]>,
}

/// OpenVLA as a Sinew [`Policy`].
pub struct OpenVlaPolicy {
    model: OpenVla,
    tokenizer: tokenizers::Tokenizer,
    bins: BinTokenizer,
    unnorm: Normalizer,
    spec: PolicySpec,
    pre: Preprocessor,
    image_side: usize,
    device: Device,
    dtype: DType,
    space_token: Option<u32>,
    max_len: usize,
    n_patches: usize,
    /// How action tokens are chosen.
    pub decoding: Decoding,
    dir: PathBuf,
}

impl std::fmt::Debug for OpenVlaPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenVlaPolicy")
            .field("dir", &self.dir)
            .field("spec", &self.spec)
            .finish()
    }
}

/// The normalisation statistics of a checkpoint: `norm_stats` of config.json, otherwise
/// `dataset_statistics.json`.
pub fn statistics(cfg: &Config, dir: &Path) -> Result<serde_json::Value, PolicyError> {
    match &cfg.norm_stats {
        Some(v) => Ok(v.clone()),
        None => {
            let p = dir.join("dataset_statistics.json");
            let text = std::fs::read_to_string(&p).map_err(|e| PolicyError::Io(p.clone(), e))?;
            serde_json::from_str(&text).map_err(|e| PolicyError::Parse(p, e.to_string()))
        }
    }
}

/// What an OpenVLA checkpoint expects and produces.
pub fn spec_of(cfg: &Config, image_side: usize, action_dim: usize) -> PolicySpec {
    PolicySpec {
        architecture: "openvla".into(),
        cameras: if cfg.sinew.cameras.is_empty() {
            vec!["front".to_owned()]
        } else {
            cfg.sinew.cameras.clone()
        },
        image_size: (image_side as u32, image_side as u32),
        uses_state: false,
        state_dim: 0,
        action_kind: cfg.sinew.action_kind.unwrap_or(ActionKind::EeDelta),
        action_dim,
        chunk_length: 1,
        control_rate_hz: cfg.sinew.control_rate_hz.unwrap_or(5.0),
        action_tokenizer: "bins".into(),
        n_action_steps: None,
    }
}

/// The tensors `cfg` needs, with their shapes.
pub fn required_tensors(cfg: &Config) -> Result<Vec<(String, Vec<usize>)>, PolicyError> {
    let (vb, rec) = RecordingBackend::var_builder(DType::F32);
    OpenVla::new(cfg, vb).map_err(model_err)?;
    Ok(rec.requested())
}

impl OpenVlaPolicy {
    /// Loads the policy folder `dir` onto `device` in `dtype`. `unnorm_key` overrides the
    /// config's choice of statistics.
    pub fn load(
        dir: &Path,
        device: &Device,
        dtype: DType,
        unnorm_key: Option<&str>,
    ) -> Result<Self, PolicyError> {
        let cfg = Config::load(dir)?;
        let model = load_checked(dir, dtype, device, &required_tensors(&cfg)?, |vb| {
            OpenVla::new(&cfg, vb)
        })?;
        let tokenizer = load_tokenizer(dir)?;
        let vocab = cfg.vocab_size();
        let bins = BinTokenizer::new(vocab as u32, cfg.n_action_bins as u32)?;

        let key = unnorm_key
            .map(str::to_owned)
            .or(cfg.sinew.unnorm_key.clone());
        let stats = statistics(&cfg, dir)?;
        let origin = if cfg.norm_stats.is_some() {
            dir.join("config.json")
        } else {
            dir.join("dataset_statistics.json")
        };
        let unnorm = openvla_action_stats_from_value(&stats, &origin, key.as_deref())?;

        let pre_path = dir.join("preprocessor_config.json");
        let vis = cfg
            .vision_configs()
            .map_err(|m| PolicyError::Parse(dir.join("config.json"), m))?;
        let pre = if pre_path.exists() {
            let text = std::fs::read_to_string(&pre_path)
                .map_err(|e| PolicyError::Io(pre_path.clone(), e))?;
            let p: Preprocessor = serde_json::from_str(&text)
                .map_err(|e| PolicyError::Parse(pre_path.clone(), e.to_string()))?;
            if p.means.len() < vis.len()
                || p.stds.len() < vis.len()
                || p.stds.iter().flatten().any(|s| *s <= 0.0)
            {
                return Err(PolicyError::Parse(
                    pre_path,
                    "means/stds: one positive triple per backbone needed".into(),
                ));
            }
            p
        } else {
            Preprocessor {
                means: vec![[0.485, 0.456, 0.406], [0.5, 0.5, 0.5]],
                stds: vec![[0.229, 0.224, 0.225], [0.5, 0.5, 0.5]],
            }
        };
        let image_side = vis[0].img_size;
        if vis.iter().any(|v| v.img_size != image_side) {
            return Err(PolicyError::Config(
                "backbones with different image sizes are not supported".into(),
            ));
        }
        let decoding = match cfg.sinew.decoding.as_deref() {
            None | Some("constrained") => Decoding::Constrained,
            Some("unconstrained") => Decoding::Unconstrained,
            Some(o) => {
                return Err(PolicyError::Parse(
                    dir.join("config.json"),
                    format!("sinew.decoding `{o}`: constrained or unconstrained"),
                ))
            }
        };
        let spec = spec_of(&cfg, image_side, unnorm.dim());
        Ok(Self {
            space_token: tokenizer.token_to_id("▁"),
            model,
            tokenizer,
            bins,
            unnorm,
            spec,
            pre,
            image_side,
            device: device.clone(),
            dtype,
            max_len: cfg
                .llm_max_length
                .min(cfg.text_config.max_position_embeddings),
            n_patches: vis[0].num_patches(),
            decoding,
            dir: dir.to_owned(),
        })
    }

    /// The model.
    pub fn model(&self) -> &OpenVla {
        &self.model
    }

    /// OpenVLA's prompt token ids for `instruction` (BOS first, the SentencePiece space token
    /// appended as `predict_action` does).
    pub fn prompt_ids(&self, instruction: &str) -> Result<Vec<u32>, PolicyError> {
        let prompt = format!(
            "In: What action should the robot take to {}?\nOut:",
            instruction.to_lowercase()
        );
        let enc = self
            .tokenizer
            .encode(prompt, true)
            .map_err(|e| PolicyError::Model(format!("tokenizer: {e}")))?;
        let mut ids = enc.get_ids().to_vec();
        if let Some(space) = self.space_token {
            if ids.last() != Some(&space) {
                ids.push(space);
            }
        }
        let total = ids.len() + self.n_patches + self.spec.action_dim;
        if total > self.max_len {
            return Err(PolicyError::Observation(format!(
                "instruction too long: {} prompt tokens + {} image tokens + {} action tokens exceed the context of {}",
                ids.len(),
                self.n_patches,
                self.spec.action_dim,
                self.max_len
            )));
        }
        Ok(ids)
    }

    /// The 6-channel (or 3-channel) pixel tensor for an observation's camera.
    pub fn pixel_values(&self, obs: &Observation) -> Result<Tensor, PolicyError> {
        let cam = &self.spec.cameras[0];
        let img = preprocess::camera_frame(obs, cam)?;
        let rgb = preprocess::resize(
            preprocess::to_rgb(img, cam)?,
            self.image_side as u32,
            self.image_side as u32,
        );
        let n = if self.model.fused_featurizer.is_some() {
            2
        } else {
            1
        };
        let parts = (0..n)
            .map(|i| preprocess::normalize(&rgb, self.pre.means[i], self.pre.stds[i], &self.device))
            .collect::<Result<Vec<_>, _>>()?;
        Tensor::cat(&parts, 1)
            .and_then(|t| t.to_dtype(self.dtype))
            .map_err(model_err)
    }
}

impl Policy for OpenVlaPolicy {
    fn spec(&self) -> &PolicySpec {
        &self.spec
    }

    fn infer(&mut self, obs: &Observation) -> Result<ActionChunk, PolicyError> {
        let t0 = Instant::now();
        let pixels = self.pixel_values(obs)?;
        let ids = self.prompt_ids(&obs.instruction)?;
        let t1 = Instant::now();
        let allowed = match self.decoding {
            Decoding::Constrained => Some(self.bins.token_range()),
            Decoding::Unconstrained => None,
        };
        let (tokens, _) = self
            .model
            .generate(&pixels, &ids, self.spec.action_dim, allowed, self.dtype)
            .map_err(model_err)?;
        let t2 = Instant::now();
        let mut warnings = Vec::new();
        for (i, t) in tokens.iter().enumerate() {
            if !self.bins.is_action_token(*t) {
                warnings.push(format!(
                    "token {t} at action dimension {i} is not an action token; decoded to the nearest bin as OpenVLA does"
                ));
            }
        }
        let normalized = self.bins.decode(&tokens);
        let action = self.unnorm.unnormalize(&normalized)?;
        let t3 = Instant::now();
        Ok(ActionChunk {
            kind: Some(self.spec.action_kind),
            actions: vec![action],
            tokens,
            timings: Timings::from_marks([t0, t1, t2, t3]),
            observation_stamp_s: obs.stamp_s,
            warnings,
            label: None,
        })
    }
}
