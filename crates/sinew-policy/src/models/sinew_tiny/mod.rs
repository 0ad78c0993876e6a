//! `sinew-tiny`: a small VLA built to run in real time on a CPU.
//!
//! Tokens, in order: the image patches of each camera (a small strided CNN with ReLUs, one token per 16x16
//! pixels, with learned position and camera embeddings), the instruction's word tokens, one
//! proprioception token (normalised joint positions), then `chunk_length` learned action
//! queries. A pre-norm transformer runs over them with a prefix-LM mask (the prefix attends
//! within itself, the action queries attend to everything, padded words are masked), and a
//! head turns each action query into the logits of `action_dim` bin tokens. All tokens of a
//! chunk are decoded in one forward pass (parallel decoding, as OpenVLA-OFT does), which is
//! what keeps a chunk within a few milliseconds on two cores.
//!
//! Tensor names (`vision.conv.N`, `blocks.N.attn.qkv`, `head`, ...) are the ones `sinew train`
//! writes to `model.safetensors`.
//!
//! This file is the model (its `Config`, `new`, `forward`); [`folder`] loads a policy folder
//! into a [`SinewTinyPolicy`] (tokenizer, normalisation, decoding into actions).

mod folder;

pub use folder::{
    build_text_tokenizer, load_config, required_tensors, set_decode, spec_of, SinewTinyPolicy,
};

use candle_core::{DType, Device, Module, Tensor, D};
use candle_nn::{
    conv2d, embedding, layer_norm, linear, Conv2d, Conv2dConfig, Embedding, LayerNorm, Linear,
    VarBuilder,
};
use serde::{Deserialize, Serialize};
use sinew_core::ActionKind;

fn d_text_len() -> usize {
    16
}

/// The architecture and the interface of a sinew-tiny policy (`config.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Always `sinew-tiny`.
    pub model_type: String,
    /// Cameras read, in order (robot.toml names).
    pub cameras: Vec<String>,
    /// Square input side (px), a multiple of 16.
    pub image_size: usize,
    /// CNN channels per stage: a 4x4 stride-4 stem, then 3x3 stride-2 stages (three stages
    /// in all, so one token per 16x16 pixels).
    pub cnn_channels: Vec<usize>,
    /// Transformer width.
    pub d_model: usize,
    /// Transformer blocks.
    pub n_layers: usize,
    /// Attention heads.
    pub n_heads: usize,
    /// MLP width.
    pub mlp_dim: usize,
    /// Word vocabulary size (rows of the text embedding).
    pub text_vocab_size: usize,
    /// Longest instruction in words (longer ones are cut, with a warning).
    #[serde(default = "d_text_len")]
    pub max_text_len: usize,
    /// Joint-state dimensions read.
    pub state_dim: usize,
    /// Dimensions per action.
    pub action_dim: usize,
    /// Steps per chunk.
    pub chunk_length: usize,
    /// Bin tokens per action dimension (edges of the bin tokenizer).
    pub n_bins: usize,
    /// Action space of the un-normalised actions.
    pub action_kind: ActionKind,
    /// Rate the actions are meant for (Hz).
    pub control_rate_hz: f64,
    /// Robot the policy was trained for (informational).
    #[serde(default)]
    pub robot: Option<String>,
    /// Adds to each action dimension's bin logits a discretised Gaussian,
    /// `-(c_k - mu)^2 / (2 sigma^2)` over the bin centres `c_k`, with `mu` and `sigma` from a
    /// second head (`head_gauss`). A linear head on layer-normed features cannot make the very
    /// large logits a sharp peak over hundreds of bins needs; this one can, while the free
    /// logits keep the head able to express other shapes.
    #[serde(default)]
    pub gaussian_head: bool,
    /// How a dimension's bin distribution becomes its action value.
    #[serde(default)]
    pub decode: Decode,
    /// How each action dimension decodes, in action order, when it differs by dimension (the
    /// Panda's joints by `mode`, its gripper by `expectation`); empty: every dimension by
    /// `decode`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub decode_by_dim: Vec<Decode>,
    /// Conditions the CNN on the instruction (FiLM, Perez et al. 2018): after each stage's
    /// convolution, channels are scaled by `1 + gamma` and shifted by `beta`, both linear in the
    /// mean word embedding (`vision.film.N`, zero at initialisation). The image features can
    /// then single out what the instruction names (the red cube) before any attention.
    #[serde(default)]
    pub film: bool,
    /// Normalises the image encoder: each CNN stage's convolution output is group-normalised
    /// (8 groups, `vision.norm.N`) before FiLM and the ReLU, and the image tokens are
    /// layer-normed (`vision.ln`) before the position embeddings are added. Without it nothing
    /// bounds the CNN's activations: in training, FiLM scales grew past 100 at every stage, the
    /// features reached 1e12 and, after the first layer norm, every image looked the same (the
    /// policy went blind); and position embeddings of the usual size vanish next to them.
    #[serde(default)]
    pub cnn_norm: bool,
    /// Appends two channels to every image before the stem: each pixel's column and row,
    /// scaled to -1..1 (CoordConv, Liu et al. 2018). Image tokens then carry where in the
    /// picture they are, which reaching for a small cube depends on.
    #[serde(default)]
    pub coords: bool,
    /// Spatial-softmax keypoints (Levine et al. 2016), 0 for none: a 1x1 convolution turns the
    /// second CNN stage's map (stride 8) into this many heat maps, a softmax over each map's
    /// pixels gives its expected image position, and each keypoint becomes one image token:
    /// a linear map of its (x, y) plus a learned embedding of which keypoint it is
    /// (`vision.kp.conv`, `vision.kp.proj`, `vision.kp.embed`). It hands the transformer where
    /// things are (with FiLM: the named cube) as numbers, not as which patch lit up.
    #[serde(default)]
    pub keypoints: usize,
    /// Image tokens from the patches of the last CNN stage (one per 16 x 16 pixels). Off, the
    /// keypoint tokens are the only image tokens and the last stage is not built.
    #[serde(default = "yes")]
    pub patch_tokens: bool,
    /// All keypoints of a camera make one token: a linear map of their concatenated (x, y)
    /// (`vision.kp.proj`, 2K inputs; no `vision.kp.embed`), as robomimic's spatial-softmax
    /// encoders do. Off, each keypoint is a token of its own. Pooled, the transformer's
    /// sequence drops from about 90 to about 30 tokens and a training step takes half the
    /// time, and every keypoint still reaches the action tokens through the first layer.
    #[serde(default)]
    pub pool_keypoints: bool,
    /// Multiplies the keypoint heat maps before their softmax (an inverse temperature). At 1,
    /// freshly initialised maps are nearly flat over the 144 cells, every keypoint sits near
    /// the image centre whatever the scene, and in practice they never learned to follow the
    /// cubes (tokens of different scenes differed by 0.05 after 3,500 steps). A gain of 5
    /// tripled that difference at step 250, but it fell back by step 1,000, and validation
    /// error matched the gain-1 run (docs/training.md): not yet a fix.
    #[serde(default = "one")]
    pub keypoint_gain: f64,
    /// Outputs of an auxiliary head (`aux_head`, 0 for none) on the mean of the action
    /// queries' final features. Training uses it to predict where the episode is going (the
    /// normalised joint targets at its key frames, `sinew-train`), which only the named cube's
    /// and target's places in the image tell at the first frame; acting does not read it.
    #[serde(default)]
    pub aux_dim: usize,
    /// Per camera, the part of each frame the model reads, cropped before the resize to
    /// `image_size`: `[x0, y0, x1, y1]` as fractions of the frame's width and height (left,
    /// top, right, bottom). A crop on the workspace makes small objects cover more of the
    /// model's pixels. Set from the training dataset, which was recorded with the same crop
    /// (`sinew dataset record --crop`); cameras not listed are read whole.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub crops: std::collections::BTreeMap<String, [f64; 4]>,
    /// Chunk entries to execute before the next inference (LeRobot's `n_action_steps`): the
    /// runtime's default for sync execution, which `--steps` overrides. Unset, the runtime
    /// executes half the chunk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n_action_steps: Option<usize>,
    /// Real-time chunking: the most committed actions a chunk can be conditioned on (0: the
    /// policy cannot). Action query `i < k` of a chunk asked with `k` committed actions gets
    /// `action.prefix.proj(a_i) + action.prefix.flag` added (`a_i` normalised like the
    /// targets), so the whole chunk is predicted knowing what the robot does while it is
    /// computed. Both are zero at initialisation: fine-tuning starts from the policy without
    /// them, and with `k = 0` the network is exactly that policy.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub prefix_max: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

fn one() -> f64 {
    1.0
}

fn yes() -> bool {
    true
}

/// How sinew-tiny turns each dimension's logits into a value (the token reported is always
/// the bin of that value).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decode {
    /// The most likely bin's centre.
    #[default]
    Argmax,
    /// The mean over the most likely bin and its neighbours (`n_bins / 32`, at least 2, on
    /// each side), weighted by their probabilities: the precision of an expectation without
    /// averaging across separate modes (an open and a closed gripper).
    Mode,
    /// The mean over all bins.
    Expectation,
}

impl Decode {
    /// Every decoding, in the order of their names.
    pub const ALL: [Decode; 3] = [Decode::Argmax, Decode::Mode, Decode::Expectation];

    /// The name in `config.json`.
    pub fn as_str(self) -> &'static str {
        match self {
            Decode::Argmax => "argmax",
            Decode::Mode => "mode",
            Decode::Expectation => "expectation",
        }
    }

    /// The decoding named `name` (as in `config.json`).
    pub fn from_name(name: &str) -> Option<Decode> {
        Decode::ALL.into_iter().find(|d| d.as_str() == name)
    }
}

/// The bin centre of token `k` of a `BinTokenizer::new(n, n)`: token `k >= 1` is bin
/// `n - 1 - k`, token 0 (exactly +1) is decoded like token 1 (as `BinTokenizer::decode_token`).
pub fn token_centre(n: usize, k: usize) -> f64 {
    let w = 2.0 / (n as f64 - 1.0);
    -1.0 + ((n - 1 - k.clamp(1, n - 1)) as f64 + 0.5) * w
}

/// The normalised value of one dimension's `logits` (one per token of a
/// `BinTokenizer::new(n, n)`, `n = logits.len()`) under `decode`.
pub fn decode_logits(logits: &[f32], decode: Decode) -> f64 {
    let n = logits.len();
    if n < 2 {
        return 0.0;
    }
    let centre = |k: usize| token_centre(n, k);
    let best = logits
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map_or(1, |(k, _)| k);
    let range = match decode {
        Decode::Argmax => return centre(best),
        Decode::Mode => {
            let half = (n / 32).max(2);
            best.saturating_sub(half)..(best + half + 1).min(n)
        }
        Decode::Expectation => 0..n,
    };
    let top = logits[best] as f64;
    let (mut num, mut den) = (0.0, 0.0);
    for k in range {
        let p = (logits[k] as f64 - top).exp();
        num += p * centre(k);
        den += p;
    }
    if den > 0.0 {
        num / den
    } else {
        centre(best)
    }
}

impl Config {
    /// How action dimension `k` decodes.
    pub fn decode_of(&self, k: usize) -> Decode {
        self.decode_by_dim.get(k).copied().unwrap_or(self.decode)
    }

    /// A small default: two 96 px cameras, width 128, 4 blocks with MLPs of 256, chunks of
    /// 10, 256 bins (about 10 ms per chunk on two cores).
    pub fn small(
        cameras: Vec<String>,
        state_dim: usize,
        action_dim: usize,
        text_vocab_size: usize,
    ) -> Self {
        Self {
            model_type: "sinew-tiny".into(),
            cameras,
            image_size: 96,
            cnn_channels: vec![32, 64, 128],
            d_model: 128,
            n_layers: 4,
            n_heads: 4,
            mlp_dim: 256,
            text_vocab_size,
            max_text_len: 16,
            state_dim,
            action_dim,
            chunk_length: 10,
            n_bins: 256,
            action_kind: ActionKind::JointPosition,
            control_rate_hz: 10.0,
            robot: None,
            gaussian_head: false,
            decode: Decode::Argmax,
            decode_by_dim: Vec::new(),
            film: false,
            cnn_norm: false,
            coords: false,
            keypoints: 0,
            patch_tokens: true,
            pool_keypoints: false,
            keypoint_gain: 1.0,
            aux_dim: 0,
            crops: Default::default(),
            n_action_steps: None,
            prefix_max: 0,
        }
    }

    /// Checks that the numbers fit together.
    pub fn validate(&self) -> Result<(), String> {
        if self.model_type != "sinew-tiny" {
            return Err(format!(
                "model_type `{}` is not sinew-tiny",
                self.model_type
            ));
        }
        if self.cameras.is_empty() {
            return Err("cameras: at least one camera is needed".into());
        }
        if self.image_size == 0 || !self.image_size.is_multiple_of(16) {
            return Err(format!(
                "image_size {} is not a positive multiple of 16",
                self.image_size
            ));
        }
        if self.cnn_channels.len() != 3 || self.cnn_channels.contains(&0) {
            return Err("cnn_channels: three positive stage widths are needed".into());
        }
        if !self.patch_tokens && self.keypoints == 0 {
            return Err(
                "patch_tokens = false needs keypoints: there would be no image tokens".into(),
            );
        }
        if !self.decode_by_dim.is_empty() && self.decode_by_dim.len() != self.action_dim {
            return Err(format!(
                "decode_by_dim has {} entries for {} action dimensions",
                self.decode_by_dim.len(),
                self.action_dim
            ));
        }
        if !(self.keypoint_gain.is_finite() && self.keypoint_gain > 0.0) {
            return Err(format!(
                "keypoint_gain {} is not a positive number",
                self.keypoint_gain
            ));
        }
        if self.pool_keypoints && self.keypoints == 0 {
            return Err("pool_keypoints needs keypoints: there are none to pool".into());
        }
        for (cam, c) in &self.crops {
            if !self.cameras.contains(cam) {
                return Err(format!(
                    "crops: `{cam}` is not one of the cameras ({})",
                    self.cameras.join(", ")
                ));
            }
            crate::preprocess::check_crop(c).map_err(|e| format!("crops.{cam}: {e}"))?;
        }
        if self.cnn_norm {
            if let Some(c) = self
                .cnn_channels
                .iter()
                .find(|c| !c.is_multiple_of(CNN_GROUPS))
            {
                return Err(format!(
                    "cnn_channels: {c} is not a multiple of the {CNN_GROUPS} groups cnn_norm uses"
                ));
            }
        }
        if self.n_heads == 0 || !self.d_model.is_multiple_of(self.n_heads) {
            return Err(format!(
                "d_model {} is not a multiple of n_heads {}",
                self.d_model, self.n_heads
            ));
        }
        for (name, v) in [
            ("n_layers", self.n_layers),
            ("mlp_dim", self.mlp_dim),
            ("text_vocab_size", self.text_vocab_size),
            ("max_text_len", self.max_text_len),
            ("action_dim", self.action_dim),
            ("chunk_length", self.chunk_length),
        ] {
            if v == 0 {
                return Err(format!("{name} must be positive"));
            }
        }
        if let Some(n) = self.n_action_steps {
            if n == 0 || n > self.chunk_length {
                return Err(format!(
                    "n_action_steps {n} is not between 1 and chunk_length {}",
                    self.chunk_length
                ));
            }
        }
        if self.prefix_max >= self.chunk_length && self.prefix_max > 0 {
            return Err(format!(
                "prefix_max {} must be below chunk_length {}",
                self.prefix_max, self.chunk_length
            ));
        }
        if self.n_bins < 2 {
            return Err("n_bins must be at least 2".into());
        }
        if !(self.control_rate_hz.is_finite() && self.control_rate_hz > 0.0) {
            return Err("control_rate_hz must be a positive number".into());
        }
        Ok(())
    }

    /// Patch tokens per camera.
    pub fn patches_per_camera(&self) -> usize {
        (self.image_size / 16).pow(2)
    }

    /// Image tokens per camera: the patches (with `patch_tokens`), then the keypoints.
    pub fn tokens_per_camera(&self) -> usize {
        let keypoint_tokens = match (self.keypoints, self.pool_keypoints) {
            (0, _) => 0,
            (_, true) => 1,
            (k, false) => k,
        };
        if self.patch_tokens {
            self.patches_per_camera() + keypoint_tokens
        } else {
            keypoint_tokens
        }
    }

    /// Tokens before the action queries.
    pub fn prefix_len(&self) -> usize {
        self.cameras.len() * self.tokens_per_camera()
            + self.max_text_len
            + usize::from(self.state_dim > 0)
    }

    /// All tokens.
    pub fn seq_len(&self) -> usize {
        self.prefix_len() + self.chunk_length
    }
}

/// Groups of `Config::cnn_norm`.
const CNN_GROUPS: usize = 8;

#[derive(Debug, Clone)]
struct Cnn {
    convs: Vec<Conv2d>,
    /// Each stage's group-norm scale and shift `(C,)` (`Config::cnn_norm`).
    norms: Vec<(Tensor, Tensor)>,
    film: Vec<Linear>,
    /// Patch tokens (`Config::patch_tokens`).
    proj: Option<Linear>,
    /// Keypoint heat maps (1x1 convolution as a linear map over channels), the map of a
    /// keypoint's (x, y) to its token (of all 2K coordinates to the camera's one token with
    /// `Config::pool_keypoints`), and the `(1, K, d_model)` keypoint embeddings (not pooled).
    kp: Option<(Linear, Linear, Option<Tensor>)>,
    /// `Config::keypoint_gain`.
    kp_gain: f64,
    ln: Option<LayerNorm>,
    /// `(1, 2, S, S)` pixel columns and rows in -1..1 (`Config::coords`).
    coords: Option<Tensor>,
}

impl Cnn {
    fn new(cfg: &Config, vb: VarBuilder) -> candle_core::Result<Self> {
        let mut convs = Vec::new();
        let mut norms = Vec::new();
        let mut film = Vec::new();
        let mut c_in = if cfg.coords { 5 } else { 3 };
        let stages = if cfg.patch_tokens { 3 } else { 2 };
        for (i, c) in cfg.cnn_channels.iter().enumerate().take(stages) {
            // A 4x4 stride-4 stem, then 3x3 stride-2 stages: 16 px per token.
            let (k, conv_cfg) = if i == 0 {
                (
                    4,
                    Conv2dConfig {
                        stride: 4,
                        padding: 0,
                        ..Default::default()
                    },
                )
            } else {
                (
                    3,
                    Conv2dConfig {
                        stride: 2,
                        padding: 1,
                        ..Default::default()
                    },
                )
            };
            convs.push(conv2d(c_in, *c, k, conv_cfg, vb.pp(format!("conv.{i}")))?);
            if cfg.cnn_norm {
                let vn = vb.pp(format!("norm.{i}"));
                norms.push((
                    vn.get_with_hints(*c, "weight", candle_nn::Init::Const(1.0))?,
                    vn.get_with_hints(*c, "bias", candle_nn::Init::Const(0.0))?,
                ));
            }
            if cfg.film {
                let zero = candle_nn::Init::Const(0.0);
                let vf = vb.pp(format!("film.{i}"));
                film.push(Linear::new(
                    vf.get_with_hints((2 * c, cfg.d_model), "weight", zero)?,
                    Some(vf.get_with_hints(2 * c, "bias", zero)?),
                ));
            }
            c_in = *c;
        }
        let proj = if cfg.patch_tokens {
            Some(linear(c_in, cfg.d_model, vb.pp("proj"))?)
        } else {
            None
        };
        let kp = if cfg.keypoints > 0 {
            let k = cfg.keypoints;
            let init = candle_nn::Init::Randn {
                mean: 0.0,
                stdev: 0.02,
            };
            let conv = linear(cfg.cnn_channels[1], k, vb.pp("kp.conv"))?;
            if cfg.pool_keypoints {
                Some((conv, linear(2 * k, cfg.d_model, vb.pp("kp.proj"))?, None))
            } else {
                Some((
                    conv,
                    linear(2, cfg.d_model, vb.pp("kp.proj"))?,
                    Some(vb.get_with_hints((1, k, cfg.d_model), "kp.embed", init)?),
                ))
            }
        } else {
            None
        };
        let ln = if cfg.cnn_norm {
            Some(layer_norm(cfg.d_model, 1e-5, vb.pp("ln"))?)
        } else {
            None
        };
        let coords = if cfg.coords {
            let n = cfg.image_size;
            let step = |i: usize| 2.0 * (i as f32 + 0.5) / n as f32 - 1.0;
            let mut v = Vec::with_capacity(2 * n * n);
            v.extend((0..n * n).map(|k| step(k % n)));
            v.extend((0..n * n).map(|k| step(k / n)));
            Some(Tensor::from_vec(v, (1, 2, n, n), vb.device())?.to_dtype(vb.dtype())?)
        } else {
            None
        };
        Ok(Self {
            convs,
            norms,
            film,
            proj,
            kp,
            kp_gain: cfg.keypoint_gain,
            ln,
            coords,
        })
    }

    /// `(B, 3, S, S)` in [-1, 1] to `(B, tokens_per_camera, d_model)`; `cond` `(B, d_model)`
    /// drives the FiLM layers when there are any.
    fn forward(&self, x: &Tensor, cond: Option<&Tensor>) -> candle_core::Result<Tensor> {
        let mut x = match &self.coords {
            Some(c) => {
                let (b, _, h, w) = x.dims4()?;
                Tensor::cat(&[x, &c.expand((b, 2, h, w))?], 1)?
            }
            None => x.clone(),
        };
        let mut kp_tokens = None;
        for (i, conv) in self.convs.iter().enumerate() {
            x = if i == 0 {
                stem(&x, conv.weight())?
            } else {
                conv3x3_stride2(&x, conv.weight())?
            };
            let (b, ch, _, _) = x.dims4()?;
            // Per-sample, per-channel (B, C) maps, applied as (B, C, 1, 1) broadcasts: candle
            // sums a broadcast's gradient fast only over trailing dimensions, and a (1, C, 1, 1)
            // one (a bias, a norm's scale) over batch and pixels element by element, which
            // made those few additions a tenth of a training step.
            let per_sample = |v: &Tensor| v.unsqueeze(0)?.broadcast_as((b, ch));
            if let Some(bias) = conv.bias() {
                x = x.broadcast_add(&per_sample(bias)?.reshape((b, ch, 1, 1))?)?;
            }
            // The stage's group norm and FiLM, one affine map: (x̂ w + b)(1 + γ) + β.
            let (mut scale, mut shift) = (None, None);
            if let Some((w, bias)) = self.norms.get(i) {
                x = normalise_groups(&x, CNN_GROUPS, 1e-5)?;
                scale = Some(per_sample(w)?);
                shift = Some(per_sample(bias)?);
            }
            if let (Some(f), Some(c)) = (self.film.get(i), cond) {
                let gb = lin(f, c)?;
                let gamma = (gb.narrow(1, 0, ch)? + 1.0)?;
                let beta = gb.narrow(1, ch, ch)?;
                shift = Some(match shift {
                    Some(t) => ((t * &gamma)? + beta)?,
                    None => beta,
                });
                scale = Some(match scale {
                    Some(w) => (w * gamma)?,
                    None => gamma,
                });
            }
            if let Some(w) = scale {
                x = x.broadcast_mul(&w.reshape((b, ch, 1, 1))?)?;
            }
            if let Some(t) = shift {
                x = x.broadcast_add(&t.reshape((b, ch, 1, 1))?)?;
            }
            x = x.relu()?;
            if i == 1 {
                if let Some((conv, proj, embed)) = &self.kp {
                    let xy = spatial_softmax(&x, conv, self.kp_gain)?; // (B, 2K)
                    kp_tokens = Some(match embed {
                        Some(embed) => {
                            let (b, k) = (x.dim(0)?, embed.dim(1)?);
                            lin(proj, &xy.reshape((b, k, 2))?)?.broadcast_add(embed)?
                        }
                        None => lin(proj, &xy)?.unsqueeze(1)?,
                    });
                }
            }
        }
        let patches = match &self.proj {
            Some(p) => Some(lin(p, &patch_rows(&x)?)?),
            None => None,
        };
        let x = match (patches, kp_tokens) {
            (Some(p), Some(k)) => Tensor::cat(&[&p, &k], 1)?,
            (Some(p), None) => p,
            (None, Some(k)) => k,
            (None, None) => candle_core::bail!("no image tokens (patch_tokens off, no keypoints)"),
        };
        match &self.ln {
            Some(ln) => norm(ln, &x),
            None => Ok(x),
        }
    }
}

/// The 4x4 stride-4 stem convolution (no padding, no bias) of `x` `(B, C, H, W)` with
/// `weight` `(O, C, 4, 4)`, as one matrix product over the image's patches: the same numbers
/// as `conv2d`, at a third of its training cost. The input needs no gradient (it is the
/// image), and candle's convolution backward pass computes one anyway, pixel by pixel.
pub fn stem(x: &Tensor, weight: &Tensor) -> candle_core::Result<Tensor> {
    let (b, c, h, w) = x.dims4()?;
    let (o, wc, kh, kw) = weight.dims4()?;
    if (wc, kh, kw) != (c, 4, 4) || h % 4 != 0 || w % 4 != 0 {
        candle_core::bail!(
            "stem: a (O, {c}, 4, 4) kernel over sides divisible by 4 expected, got {:?} over {h}x{w}",
            weight.dims()
        );
    }
    let (gh, gw) = (h / 4, w / 4);
    let patches = x
        .reshape((b, c, gh, 4, gw, 4))?
        .permute((0, 2, 4, 1, 3, 5))?
        .contiguous()?
        .reshape((b * gh * gw, c * 16))?;
    let y = patches.matmul(&weight.reshape((o, c * 16))?.t()?)?;
    map_of_rows(&y, b, gh, gw)
}

/// Pixel rows `(B * H * W, C)` back to a feature map `(B, C, H, W)`, contiguous: the inverse
/// of [`patch_rows`].
fn map_of_rows(y: &Tensor, b: usize, h: usize, w: usize) -> candle_core::Result<Tensor> {
    let c = y.dim(1)?;
    y.reshape((b, h * w, c))?
        .transpose(1, 2)?
        .contiguous()?
        .reshape((b, c, h, w))
}

/// A 3x3 stride-2 convolution with one pixel of zero padding (no bias) of `x` `(B, C, H, W)`
/// with `weight` `(O, C, 3, 3)`, as a gather of the 9 taps of every output pixel and one
/// matrix product: the same numbers as `conv2d`, a quarter faster to train through.
fn conv3x3_stride2(x: &Tensor, weight: &Tensor) -> candle_core::Result<Tensor> {
    let (b, c, h, w) = x.dims4()?;
    let (o, wc, kh, kw) = weight.dims4()?;
    if (wc, kh, kw) != (c, 3, 3) || h % 2 != 0 || w % 2 != 0 {
        candle_core::bail!(
            "conv3x3_stride2: a (O, {c}, 3, 3) kernel over even sides expected, got {:?} over {h}x{w}",
            weight.dims()
        );
    }
    let (oh, ow, pw) = (h / 2, w / 2, w + 2);
    let mut taps = Vec::with_capacity(oh * ow * 9);
    for i in 0..oh {
        for j in 0..ow {
            for dy in 0..3 {
                for dx in 0..3 {
                    taps.push(((2 * i + dy) * pw + 2 * j + dx) as u32);
                }
            }
        }
    }
    let taps = Tensor::from_vec(taps, oh * ow * 9, x.device())?;
    let cols = x
        .permute((0, 2, 3, 1))?
        .contiguous()?
        .pad_with_zeros(1, 1, 1)?
        .pad_with_zeros(2, 1, 1)?
        .reshape((b, (h + 2) * pw, c))?
        .index_select(&taps, 1)?
        .reshape((b * oh * ow, 9 * c))?;
    let kernel = weight.permute((2, 3, 1, 0))?.reshape((9 * c, o))?;
    map_of_rows(&cols.matmul(&kernel)?, b, oh, ow)
}

/// Group normalisation without the affine map: each sample's `groups` groups of channels of
/// `x` `(B, C, H, W)` to zero mean and unit variance (biased, plus `eps`), as candle-nn's
/// `GroupNorm` computes them.
fn normalise_groups(x: &Tensor, groups: usize, eps: f64) -> candle_core::Result<Tensor> {
    let dims = x.dims4()?;
    let n = dims.1 / groups * dims.2 * dims.3;
    let g = x.reshape((dims.0, groups, n))?;
    let mean = (g.sum_keepdim(2)? / n as f64)?;
    let g = g.broadcast_sub(&mean)?;
    let var = (g.sqr()?.sum_keepdim(2)? / n as f64)?;
    g.broadcast_div(&(var + eps)?.sqrt()?)?.reshape(dims)
}

/// A feature map `(B, C, H, W)` as rows of pixels `(B, HW, C)`, contiguous. The copy
/// matters: candle 0.11's backward pass of a linear layer on the transposed view (without it)
/// is wrong, for the weights and the input alike. Every CNN gradient of the first sinew-tiny
/// trainings was corrupted that way, which is why their image encoders learned only noise.
fn patch_rows(x: &Tensor) -> candle_core::Result<Tensor> {
    x.flatten_from(2)?.transpose(1, 2)?.contiguous()
}

/// Expected image coordinates `(B, 2K)` (x then y of each map, -1..1) of the `K` heat maps
/// `conv` makes from the feature map `x` `(B, C, H, W)`, scaled by `gain` before the softmax.
pub fn spatial_softmax(x: &Tensor, conv: &Linear, gain: f64) -> candle_core::Result<Tensor> {
    let (b, _, h, w) = x.dims4()?;
    // Contiguous first: candle 0.11 gives wrong gradients for a linear layer whose 3-D input
    // is a transposed view (see `patch_rows`).
    let maps = lin(conv, &patch_rows(x)?)?; // (B, HW, K)
    let maps = if gain == 1.0 { maps } else { (maps * gain)? };
    let p = softmax(&maps.transpose(1, 2)?.contiguous()?)?; // (B, K, HW)
    let at = |i: usize, n: usize| 2.0 * (i as f32 + 0.5) / n as f32 - 1.0;
    let mut grid = Vec::with_capacity(2 * h * w);
    grid.extend((0..h * w).map(|k| at(k % w, w)));
    grid.extend((0..h * w).map(|k| at(k / w, h)));
    let grid = Tensor::from_vec(grid, (2, h * w), x.device())?
        .to_dtype(x.dtype())?
        .t()?; // (HW, 2)
    let k = p.dim(1)?;
    p.reshape((b * k, h * w))?
        .matmul(&grid)?
        .reshape((b, 2 * k))
}

/// Softmax over the last dimension that gradients pass through. candle-nn's
/// `softmax_last_dim` is a fused kernel without a backward pass: in attention it silently left
/// the query and key projections untrained (only the value path learned, so every attention
/// pattern stayed as initialised and no query could learn to look at the named cube).
/// Tensors that track gradients take the composed path; inference keeps the kernel.
fn softmax(x: &Tensor) -> candle_core::Result<Tensor> {
    if x.track_op() {
        candle_nn::ops::softmax(x, D::Minus1)
    } else {
        candle_nn::ops::softmax_last_dim(x)
    }
}

/// Layer normalisation that gradients pass through. candle-nn's `LayerNorm` takes a fused
/// kernel for contiguous inputs, and that kernel has no backward pass: training through it
/// silently cuts every gradient at the norm (the CNN, the word and state embeddings would never
/// learn). Tensors that track gradients take the composed path; inference keeps the kernel.
fn norm(ln: &LayerNorm, x: &Tensor) -> candle_core::Result<Tensor> {
    if !x.track_op() {
        return ln.forward(x);
    }
    let mean = x.mean_keepdim(D::Minus1)?;
    let xc = x.broadcast_sub(&mean)?;
    let var = xc.sqr()?.mean_keepdim(D::Minus1)?;
    let xn = xc.broadcast_div(&(var + ln.eps())?.sqrt()?)?;
    let y = (xn * rows(ln.weight(), x.shape())?)?;
    match ln.bias() {
        Some(b) => y + rows(b, x.shape())?,
        None => Ok(y),
    }
}

/// `v` `(N,)` repeated into every row of `shape` `(..., N)`, by a product with a column of
/// ones. A plain broadcast would do, but candle sums a broadcast's gradient over leading
/// dimensions element by element; through the product it is one matrix product.
fn rows(v: &Tensor, shape: &candle_core::Shape) -> candle_core::Result<Tensor> {
    let n = v.elem_count();
    let m = shape.elem_count() / n.max(1);
    Tensor::ones((m, 1), v.dtype(), v.device())?
        .matmul(&v.reshape((1, n))?)?
        .reshape(shape)
}

/// A linear layer on `x` `(..., K)`. In training (the weights track gradients) it is one
/// matrix product over all rows, with the bias added by [`rows`]: candle-nn's forward pass
/// broadcasts the weights over a 3-D input's batch, and summing that broadcast's gradient
/// (and the bias's) element by element cost more than the products themselves. Inference
/// keeps candle-nn's path.
fn lin(l: &Linear, x: &Tensor) -> candle_core::Result<Tensor> {
    if !l.weight().track_op() {
        return l.forward(x);
    }
    let (n, k) = l.weight().dims2()?;
    let mut dims = x.dims().to_vec();
    let m = x.elem_count() / k.max(1);
    let y = x.reshape((m, k))?.matmul(&l.weight().t()?)?;
    let y = match l.bias() {
        Some(b) => (y + rows(b, &(m, n).into())?)?,
        None => y,
    };
    if let Some(last) = dims.last_mut() {
        *last = n;
    }
    y.reshape(dims)
}

#[derive(Debug, Clone)]
struct Block {
    ln1: LayerNorm,
    qkv: Linear,
    proj: Linear,
    ln2: LayerNorm,
    fc1: Linear,
    fc2: Linear,
    n_heads: usize,
}

impl Block {
    fn new(cfg: &Config, vb: VarBuilder) -> candle_core::Result<Self> {
        let d = cfg.d_model;
        Ok(Self {
            ln1: layer_norm(d, 1e-5, vb.pp("ln1"))?,
            qkv: linear(d, 3 * d, vb.pp("attn.qkv"))?,
            proj: linear(d, d, vb.pp("attn.proj"))?,
            ln2: layer_norm(d, 1e-5, vb.pp("ln2"))?,
            fc1: linear(d, cfg.mlp_dim, vb.pp("mlp.fc1"))?,
            fc2: linear(cfg.mlp_dim, d, vb.pp("mlp.fc2"))?,
            n_heads: cfg.n_heads,
        })
    }

    fn forward(&self, x: &Tensor, mask: &Tensor) -> candle_core::Result<Tensor> {
        let (b, n, c) = x.dims3()?;
        let hd = c / self.n_heads;
        let qkv = lin(&self.qkv, &norm(&self.ln1, x)?)?
            .reshape((b, n, 3, self.n_heads, hd))?
            .permute((2, 0, 3, 1, 4))?;
        let q = (qkv.get(0)?.contiguous()? * (hd as f64).powf(-0.5))?;
        let k = qkv.get(1)?.contiguous()?;
        let v = qkv.get(2)?.contiguous()?;
        let scores = q.matmul(&k.t()?)?.broadcast_add(mask)?;
        let attn = softmax(&scores)?;
        let y = attn.matmul(&v)?.transpose(1, 2)?.reshape((b, n, c))?;
        let x = (x + lin(&self.proj, &y)?)?;
        let h = lin(
            &self.fc2,
            &lin(&self.fc1, &norm(&self.ln2, &x)?)?.gelu_erf()?,
        )?;
        x + h
    }
}

/// The sinew-tiny network.
#[derive(Debug, Clone)]
pub struct SinewTiny {
    cfg: Config,
    cnn: Cnn,
    vision_pos: Tensor,
    text_embed: Embedding,
    text_pos: Tensor,
    state_proj: Option<Linear>,
    queries: Tensor,
    blocks: Vec<Block>,
    ln_f: LayerNorm,
    head: Linear,
    head_gauss: Option<Linear>,
    aux_head: Option<Linear>,
    /// Real-time chunking: the committed actions' projection and the "committed" flag.
    prefix: Option<(Linear, Tensor)>,
    /// Bin centres per token `(1, 1, 1, n_bins)` (token 0, exactly +1, far outside).
    centres: Tensor,
}

/// One batch of model inputs.
#[derive(Debug, Clone)]
pub struct TinyInputs {
    /// `(B, n_cameras, 3, S, S)` f32 images scaled to [-1, 1].
    pub images: Tensor,
    /// `(B, max_text_len)` u32 word ids (padding: 0).
    pub text_ids: Tensor,
    /// `(B, max_text_len)` f32: 1 for words, 0 for padding.
    pub text_mask: Tensor,
    /// `(B, state_dim)` f32 normalised joint state.
    pub state: Tensor,
    /// Real-time chunking: `(B, chunk_length, action_dim)` committed actions, normalised, and
    /// `(B, chunk_length, 1)` 1 where an action is committed (the first `k` of each row), 0
    /// after. `None`: nothing committed.
    pub prefix: Option<(Tensor, Tensor)>,
}

impl SinewTiny {
    /// Builds the network from `vb`.
    pub fn new(cfg: &Config, vb: VarBuilder) -> candle_core::Result<Self> {
        cfg.validate().map_err(candle_core::Error::msg)?;
        let d = cfg.d_model;
        let n_vis = cfg.cameras.len() * cfg.tokens_per_camera();
        let init = candle_nn::Init::Randn {
            mean: 0.0,
            stdev: 0.02,
        };
        let state_proj = if cfg.state_dim > 0 {
            Some(linear(cfg.state_dim, d, vb.pp("state.proj"))?)
        } else {
            None
        };
        Ok(Self {
            cnn: Cnn::new(cfg, vb.pp("vision"))?,
            vision_pos: vb.get_with_hints((1, n_vis, d), "vision.pos", init)?,
            text_embed: embedding(cfg.text_vocab_size, d, vb.pp("text.embed"))?,
            text_pos: vb.get_with_hints((1, cfg.max_text_len, d), "text.pos", init)?,
            state_proj,
            queries: vb.get_with_hints((1, cfg.chunk_length, d), "action.queries", init)?,
            blocks: (0..cfg.n_layers)
                .map(|i| Block::new(cfg, vb.pp(format!("blocks.{i}"))))
                .collect::<candle_core::Result<Vec<_>>>()?,
            ln_f: layer_norm(d, 1e-5, vb.pp("ln_f"))?,
            head: linear(d, cfg.action_dim * cfg.n_bins, vb.pp("head"))?,
            head_gauss: if cfg.gaussian_head {
                Some(linear(d, 2 * cfg.action_dim, vb.pp("head_gauss"))?)
            } else {
                None
            },
            aux_head: if cfg.aux_dim > 0 {
                Some(linear(d, cfg.aux_dim, vb.pp("aux_head"))?)
            } else {
                None
            },
            prefix: if cfg.prefix_max > 0 {
                let zero = candle_nn::Init::Const(0.0);
                let vp = vb.pp("action.prefix");
                let w = vp.get_with_hints((d, cfg.action_dim), "proj.weight", zero)?;
                let b = vp.get_with_hints(d, "proj.bias", zero)?;
                let flag = vp.get_with_hints((1, 1, d), "flag", zero)?;
                Some((Linear::new(w, Some(b)), flag))
            } else {
                None
            },
            centres: bin_centres(cfg.n_bins, vb.device())?,
            cfg: cfg.clone(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// The additive attention mask `(B, 1, N, N)` in `dtype` over a sequence of `n` tokens
    /// whose first `p` are the prefix: prefix-LM structure plus padded words.
    fn mask(
        &self,
        text_mask: &Tensor,
        (n, p): (usize, usize),
        device: &Device,
        dtype: DType,
    ) -> candle_core::Result<Tensor> {
        let cfg = &self.cfg;
        let mut m = vec![0f32; n * n];
        for i in 0..p {
            for j in p..n {
                m[i * n + j] = f32::NEG_INFINITY;
            }
        }
        let structure = Tensor::from_vec(m, (1, 1, n, n), device)?.to_dtype(dtype)?;
        // Key padding: text positions with mask 0 get -inf for every query.
        let (b, n_text) = text_mask.dims2()?;
        let n_vis = cfg.cameras.len() * cfg.tokens_per_camera();
        let pad = ((text_mask.to_dtype(dtype)? - 1.0)? * 1e9)?; // 0 or -1e9
        let left = Tensor::zeros((b, n_vis), dtype, device)?;
        let right = Tensor::zeros((b, n - n_vis - n_text), dtype, device)?;
        let keys = Tensor::cat(&[&left, &pad, &right], 1)?.reshape((b, 1, 1, n))?;
        structure.broadcast_add(&keys)
    }

    /// The image tokens `(B, n_cameras * patches, d_model)` of the CNN, before the position
    /// embeddings (FiLM-conditioned on the words when `film` is set). For diagnostics: a
    /// healthy encoder gives features of moderate size that differ between scenes.
    pub fn image_tokens(&self, x: &TinyInputs) -> candle_core::Result<Tensor> {
        let words = self.text_embed.forward(&x.text_ids)?;
        self.vision_features(x, &words)
    }

    fn vision_features(&self, x: &TinyInputs, words: &Tensor) -> candle_core::Result<Tensor> {
        let cfg = &self.cfg;
        let (b, n_cam, _, s, _) = x.images.dims5()?;
        if n_cam != cfg.cameras.len() || s != cfg.image_size {
            candle_core::bail!(
                "images: expected {} cameras of {}px, got {n_cam} of {s}px",
                cfg.cameras.len(),
                cfg.image_size
            );
        }
        let flat = x.images.reshape((b * n_cam, 3, s, s))?;
        let cond = if cfg.film {
            // Mean embedding of the words (padding left out), once per camera image.
            let m = x.text_mask.to_dtype(words.dtype())?.unsqueeze(2)?;
            let sum = words.broadcast_mul(&m)?.sum(1)?;
            let n = (m.sum(1)? + 1e-6)?;
            let mean = sum.broadcast_div(&n)?;
            Some(
                mean.unsqueeze(1)?
                    .expand((b, n_cam, cfg.d_model))?
                    .reshape((b * n_cam, cfg.d_model))?,
            )
        } else {
            None
        };
        self.cnn.forward(&flat, cond.as_ref())?.reshape((
            b,
            n_cam * cfg.tokens_per_camera(),
            cfg.d_model,
        ))
    }

    /// Logits `(B, chunk_length, action_dim, n_bins)`.
    pub fn forward(&self, x: &TinyInputs) -> candle_core::Result<Tensor> {
        Ok(self.run(x, false)?.0)
    }

    /// The logits, and the auxiliary head's outputs `(B, aux_dim)` when `aux_dim > 0`.
    pub fn forward_with_aux(
        &self,
        x: &TinyInputs,
    ) -> candle_core::Result<(Tensor, Option<Tensor>)> {
        self.run(x, true)
    }

    /// The logits, and the auxiliary outputs when asked for and built (acting skips them).
    fn run(&self, x: &TinyInputs, aux: bool) -> candle_core::Result<(Tensor, Option<Tensor>)> {
        let cfg = &self.cfg;
        let dev = x.images.device();
        let b = x.images.dim(0)?;
        // Word positions past the batch's longest instruction are padding in every row: no
        // token attends to them and they feed nothing, so they are left out of the sequence
        // (the same outputs, at a fraction of the cost: instructions are mostly under half of
        // `max_text_len`).
        let n_text = used_text_len(&x.text_mask)?;
        let x = &TinyInputs {
            text_ids: x.text_ids.narrow(1, 0, n_text)?,
            text_mask: x.text_mask.narrow(1, 0, n_text)?,
            ..x.clone()
        };
        let words = self.text_embed.forward(&x.text_ids)?;
        let vis = self
            .vision_features(x, &words)?
            .broadcast_add(&self.vision_pos)?;
        let text = words.broadcast_add(&self.text_pos.narrow(1, 0, n_text)?)?;
        let mut parts = vec![vis, text];
        if let Some(sp) = &self.state_proj {
            parts.push(lin(sp, &x.state)?.unsqueeze(1)?);
        }
        let mut queries = self.queries.expand((b, cfg.chunk_length, cfg.d_model))?;
        match (&self.prefix, &x.prefix) {
            (Some((proj, flag)), Some((actions, committed))) => {
                let dt = queries.dtype();
                let add = lin(proj, &actions.to_dtype(dt)?)?
                    .broadcast_add(flag)?
                    .broadcast_mul(&committed.to_dtype(dt)?)?;
                queries = (queries + add)?;
            }
            (None, Some(_)) => {
                candle_core::bail!("this sinew-tiny was not trained with committed actions")
            }
            _ => {}
        }
        parts.push(queries);
        let mut h = Tensor::cat(&parts, 1)?;
        let n = h.dim(1)?;
        let p = n - cfg.chunk_length;
        let mask = self.mask(&x.text_mask, (n, p), dev, h.dtype())?;
        for block in &self.blocks {
            h = block.forward(&h, &mask)?;
        }
        let q = h.narrow(1, p, cfg.chunk_length)?;
        let q = norm(&self.ln_f, &q)?;
        let aux = match &self.aux_head {
            Some(h) if aux => Some(lin(h, &q.mean(1)?)?),
            _ => None,
        };
        let logits =
            lin(&self.head, &q)?.reshape((b, cfg.chunk_length, cfg.action_dim, cfg.n_bins))?;
        let Some(hg) = &self.head_gauss else {
            return Ok((logits, aux));
        };
        let g = lin(hg, &q)?;
        let mu = g
            .narrow(2, 0, cfg.action_dim)?
            .unsqueeze(3)?
            .to_dtype(DType::F32)?;
        // sigma = half a bin + 0.1 softplus(raw): never below the resolution, about 10 bins
        // wide at initialisation.
        let raw = g
            .narrow(2, cfg.action_dim, cfg.action_dim)?
            .unsqueeze(3)?
            .to_dtype(DType::F32)?;
        let half_bin = 1.0 / (cfg.n_bins as f64 - 1.0);
        let sigma = (((raw.exp()? + 1.0)?.log()? * 0.1)? + half_bin)?;
        let z = self.centres.broadcast_sub(&mu)?.broadcast_div(&sigma)?;
        let gauss = (z.sqr()? * -0.5)?.to_dtype(logits.dtype())?;
        Ok(((logits + gauss)?, aux))
    }

    /// Greedy bin tokens `(B, T, D)` (u32) of `logits`.
    pub fn greedy(logits: &Tensor) -> candle_core::Result<Tensor> {
        logits.argmax(D::Minus1)
    }
}

/// Word positions in use: one past the last column of `text_mask` `(B, L)` that is set in any
/// row (at least 1, so an empty instruction keeps one padded, masked word). The mask is read
/// to the host (B x L floats).
fn used_text_len(text_mask: &Tensor) -> candle_core::Result<usize> {
    let (_, l) = text_mask.dims2()?;
    let any = text_mask
        .to_dtype(DType::F32)?
        .max(0)?
        .to_device(&Device::Cpu)?
        .to_vec1::<f32>()?;
    let used = any.iter().rposition(|&m| m > 0.0).map_or(1, |i| i + 1);
    Ok(used.clamp(1, l.max(1)))
}

/// The centre of each token's bin for a `BinTokenizer::new(n, n)`: token `k >= 1` is bin
/// `n - 1 - k`; token 0 (exactly +1, decoded like token 1) is put far outside so the Gaussian
/// never picks it.
fn bin_centres(n: usize, device: &Device) -> candle_core::Result<Tensor> {
    let c: Vec<f32> = (0..n)
        .map(|k| {
            if k == 0 {
                100.0
            } else {
                token_centre(n, k) as f32
            }
        })
        .collect();
    Tensor::from_vec(c, (1, 1, 1, n), device)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The gathered 3x3 stride-2 product is candle's padded convolution.
    #[test]
    fn the_gathered_3x3_stride_2_product_is_conv2d() -> candle_core::Result<()> {
        let d = Device::Cpu;
        let x = Tensor::randn(0f32, 1.0, (2, 6, 8, 10), &d)?;
        let w = Tensor::randn(0f32, 0.3, (5, 6, 3, 3), &d)?;
        let want = x.conv2d(&w, 1, 2, 1, 1)?;
        let got = conv3x3_stride2(&x, &w)?;
        assert_eq!(got.dims(), want.dims());
        let err: f32 = (got - want)?.abs()?.max_all()?.to_scalar()?;
        assert!(err < 1e-4, "{err}");
        assert!(conv3x3_stride2(&x, &Tensor::zeros((5, 6, 4, 4), DType::F32, &d)?).is_err());
        Ok(())
    }

    /// A linear layer in training (weights that track gradients) gives candle-nn's numbers.
    #[test]
    fn the_training_linear_path_is_candle_nn_linear() -> candle_core::Result<()> {
        let d = Device::Cpu;
        let w = candle_core::Var::randn(0f32, 0.3, (7, 5), &d)?;
        let b = candle_core::Var::randn(0f32, 0.3, 7, &d)?;
        let l = Linear::new(w.as_tensor().clone(), Some(b.as_tensor().clone()));
        for shape in [vec![4, 5], vec![3, 4, 5]] {
            let x = Tensor::randn(0f32, 1.0, shape, &d)?;
            let want =
                Linear::new(w.as_tensor().detach(), Some(b.as_tensor().detach())).forward(&x)?;
            let got = lin(&l, &x)?;
            assert_eq!(got.dims(), want.dims());
            let err: f32 = (got - want)?.abs()?.max_all()?.to_scalar()?;
            assert!(err < 1e-5, "{err}");
        }
        Ok(())
    }

    /// Normalising the groups, then scaling and shifting per channel, is candle-nn's
    /// `GroupNorm` (which the first policies were trained with).
    #[test]
    fn normalised_groups_with_an_affine_map_are_candle_nn_group_norm() -> candle_core::Result<()> {
        let d = Device::Cpu;
        let x = Tensor::randn(0f32, 2.0, (3, 16, 5, 7), &d)?;
        let w = Tensor::randn(0f32, 1.0, 16, &d)?;
        let b = Tensor::randn(0f32, 1.0, 16, &d)?;
        let gn = candle_nn::GroupNorm::new(w.clone(), b.clone(), 16, CNN_GROUPS, 1e-5)?;
        let want = gn.forward(&x)?;
        let got = normalise_groups(&x, CNN_GROUPS, 1e-5)?
            .broadcast_mul(&w.reshape((1, 16, 1, 1))?)?
            .broadcast_add(&b.reshape((1, 16, 1, 1))?)?;
        let err: f32 = (got - want)?.abs()?.max_all()?.to_scalar()?;
        assert!(err < 1e-5, "{err}");
        Ok(())
    }
}
