//! timm's `VisionTransformer` as OpenVLA uses it: DINOv2 with registers and SigLIP, with the
//! tensor names of timm's state dict (`patch_embed.proj`, `blocks.N.attn.qkv`, ...) and the
//! LayerScale parameters under OpenVLA's name `lsN.scale_factor`.
//!
//! Only what OpenVLA reads is implemented: the patch tokens after a chosen block (timm's
//! `get_intermediate_layers(x, n=[i])`, no final norm, prefix tokens removed).

use candle_core::{Module, Tensor};
use candle_nn::{
    conv2d, layer_norm, linear, Activation, Conv2d, Conv2dConfig, LayerNorm, Linear, VarBuilder,
};
use serde::{Deserialize, Serialize};

/// Architecture of one timm ViT.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VitConfig {
    /// Input side (px); the image is square.
    pub img_size: usize,
    /// Patch side (px).
    pub patch_size: usize,
    /// Width.
    pub embed_dim: usize,
    /// Number of blocks.
    pub depth: usize,
    /// Attention heads.
    pub num_heads: usize,
    /// MLP ratio (hidden = floor(embed_dim * mlp_ratio)).
    pub mlp_ratio: f64,
    /// Whether a class token is prepended.
    pub class_token: bool,
    /// Register tokens after the class token.
    pub reg_tokens: usize,
    /// Position embeddings cover patches only (prefix tokens get none).
    pub no_embed_class: bool,
    /// LayerScale after attention and MLP.
    pub layer_scale: bool,
    /// LayerNorm epsilon.
    pub norm_eps: f64,
    /// MLP activation (`gelu` = exact erf GELU, timm's default; `gelu_tanh`).
    pub act: String,
}

impl VitConfig {
    /// The architecture behind a timm model id, as OpenVLA's config names it.
    pub fn from_timm_id(id: &str, img_size: usize) -> Option<Self> {
        let base = id.split('.').next().unwrap_or(id);
        let c = match base {
            "vit_large_patch14_reg4_dinov2" => Self {
                img_size,
                patch_size: 14,
                embed_dim: 1024,
                depth: 24,
                num_heads: 16,
                mlp_ratio: 4.0,
                class_token: true,
                reg_tokens: 4,
                no_embed_class: true,
                layer_scale: true,
                norm_eps: 1e-6,
                act: "gelu".into(),
            },
            "vit_so400m_patch14_siglip_224" | "vit_so400m_patch14_siglip_384" => Self {
                img_size,
                patch_size: 14,
                embed_dim: 1152,
                depth: 27,
                num_heads: 16,
                mlp_ratio: 3.7362,
                class_token: false,
                reg_tokens: 0,
                no_embed_class: false,
                layer_scale: false,
                norm_eps: 1e-6,
                act: "gelu".into(),
            },
            _ => return None,
        };
        Some(c)
    }

    /// Applies timm `create_model` keyword overrides (`embed_dim`, `depth`, `num_heads`,
    /// `mlp_ratio`, `reg_tokens`, `class_token`, `img_size`, `patch_size`).
    pub fn with_kwargs(
        mut self,
        kw: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<Self, String> {
        for (k, v) in kw {
            let as_usize = || {
                v.as_u64()
                    .map(|x| x as usize)
                    .ok_or(format!("`{k}` must be an integer"))
            };
            match k.as_str() {
                "embed_dim" => self.embed_dim = as_usize()?,
                "depth" => self.depth = as_usize()?,
                "num_heads" => self.num_heads = as_usize()?,
                "reg_tokens" => self.reg_tokens = as_usize()?,
                "img_size" => self.img_size = as_usize()?,
                "patch_size" => self.patch_size = as_usize()?,
                "mlp_ratio" => {
                    self.mlp_ratio = v.as_f64().ok_or(format!("`{k}` must be a number"))?
                }
                "class_token" => {
                    self.class_token = v.as_bool().ok_or(format!("`{k}` must be true or false"))?
                }
                other => return Err(format!("unsupported timm keyword `{other}`")),
            }
        }
        Ok(self)
    }

    /// MLP hidden width.
    pub fn mlp_hidden(&self) -> usize {
        (self.embed_dim as f64 * self.mlp_ratio) as usize
    }

    /// Patches per image.
    pub fn num_patches(&self) -> usize {
        (self.img_size / self.patch_size).pow(2)
    }

    /// Class and register tokens.
    pub fn num_prefix_tokens(&self) -> usize {
        usize::from(self.class_token) + self.reg_tokens
    }

    /// Checks the numbers fit together.
    pub fn validate(&self) -> Result<(), String> {
        if self.patch_size == 0 || !self.img_size.is_multiple_of(self.patch_size) {
            return Err(format!(
                "img_size {} is not a multiple of patch_size {}",
                self.img_size, self.patch_size
            ));
        }
        if self.num_heads == 0 || !self.embed_dim.is_multiple_of(self.num_heads) {
            return Err(format!(
                "embed_dim {} is not a multiple of num_heads {}",
                self.embed_dim, self.num_heads
            ));
        }
        if self.depth < 2 {
            return Err("depth must be at least 2 (OpenVLA reads the second-to-last block)".into());
        }
        Ok(())
    }

    fn activation(&self) -> Activation {
        if self.act == "gelu_tanh" {
            Activation::GeluPytorchTanh
        } else {
            Activation::Gelu
        }
    }
}

#[derive(Debug, Clone)]
struct Block {
    norm1: LayerNorm,
    qkv: Linear,
    proj: Linear,
    ls1: Option<Tensor>,
    norm2: LayerNorm,
    fc1: Linear,
    fc2: Linear,
    ls2: Option<Tensor>,
    num_heads: usize,
    act: Activation,
}

impl Block {
    fn new(cfg: &VitConfig, vb: VarBuilder) -> candle_core::Result<Self> {
        let d = cfg.embed_dim;
        let ls = |name: &str| -> candle_core::Result<Option<Tensor>> {
            if cfg.layer_scale {
                Ok(Some(vb.pp(name).get(d, "scale_factor")?))
            } else {
                Ok(None)
            }
        };
        Ok(Self {
            norm1: layer_norm(d, cfg.norm_eps, vb.pp("norm1"))?,
            qkv: linear(d, 3 * d, vb.pp("attn.qkv"))?,
            proj: linear(d, d, vb.pp("attn.proj"))?,
            ls1: ls("ls1")?,
            norm2: layer_norm(d, cfg.norm_eps, vb.pp("norm2"))?,
            fc1: linear(d, cfg.mlp_hidden(), vb.pp("mlp.fc1"))?,
            fc2: linear(cfg.mlp_hidden(), d, vb.pp("mlp.fc2"))?,
            ls2: ls("ls2")?,
            num_heads: cfg.num_heads,
            act: cfg.activation(),
        })
    }

    fn attention(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let (b, n, c) = x.dims3()?;
        let hd = c / self.num_heads;
        let qkv = self
            .qkv
            .forward(x)?
            .reshape((b, n, 3, self.num_heads, hd))?
            .permute((2, 0, 3, 1, 4))?;
        let q = (qkv.get(0)?.contiguous()? * (hd as f64).powf(-0.5))?;
        let k = qkv.get(1)?.contiguous()?;
        let v = qkv.get(2)?.contiguous()?;
        let attn = candle_nn::ops::softmax_last_dim(&q.matmul(&k.t()?)?)?;
        let y = attn.matmul(&v)?.transpose(1, 2)?.reshape((b, n, c))?;
        self.proj.forward(&y)
    }

    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let scale = |y: Tensor, ls: &Option<Tensor>| match ls {
            Some(g) => y.broadcast_mul(g),
            None => Ok(y),
        };
        let a = scale(self.attention(&self.norm1.forward(x)?)?, &self.ls1)?;
        let x = (x + a)?;
        let h = self.fc2.forward(
            &self
                .act
                .forward(&self.fc1.forward(&self.norm2.forward(&x)?)?)?,
        )?;
        let m = scale(h, &self.ls2)?;
        x + m
    }
}

/// A timm ViT trunk.
#[derive(Debug, Clone)]
pub struct TimmVit {
    cfg: VitConfig,
    patch_embed: Conv2d,
    cls_token: Option<Tensor>,
    reg_token: Option<Tensor>,
    pos_embed: Tensor,
    blocks: Vec<Block>,
}

impl TimmVit {
    /// Builds the trunk from `vb` (timm names: `cls_token`, `reg_token`, `pos_embed`,
    /// `patch_embed.proj`, `blocks.N.*`). The final `norm` and heads are not read.
    pub fn new(cfg: &VitConfig, vb: VarBuilder) -> candle_core::Result<Self> {
        let d = cfg.embed_dim;
        let patch_embed = conv2d(
            3,
            d,
            cfg.patch_size,
            Conv2dConfig {
                stride: cfg.patch_size,
                ..Default::default()
            },
            vb.pp("patch_embed.proj"),
        )?;
        let cls_token = if cfg.class_token {
            Some(vb.get((1, 1, d), "cls_token")?)
        } else {
            None
        };
        let reg_token = if cfg.reg_tokens > 0 {
            Some(vb.get((1, cfg.reg_tokens, d), "reg_token")?)
        } else {
            None
        };
        let pos_len = cfg.num_patches()
            + if cfg.no_embed_class {
                0
            } else {
                cfg.num_prefix_tokens()
            };
        let pos_embed = vb.get((1, pos_len, d), "pos_embed")?;
        let blocks = (0..cfg.depth)
            .map(|i| Block::new(cfg, vb.pp(format!("blocks.{i}"))))
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(Self {
            cfg: cfg.clone(),
            patch_embed,
            cls_token,
            reg_token,
            pos_embed,
            blocks,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &VitConfig {
        &self.cfg
    }

    /// Patch tokens `(B, num_patches, embed_dim)` after block `index` (0-based), without the
    /// final norm: timm's `get_intermediate_layers(x, n=[index])[0]`.
    pub fn patch_tokens_after(&self, pixels: &Tensor, index: usize) -> candle_core::Result<Tensor> {
        let x = self.patch_embed.forward(pixels)?; // (B, D, H/p, W/p)
        let (b, d, _, _) = x.dims4()?;
        let mut x = x.flatten_from(2)?.transpose(1, 2)?; // (B, N, D)
        let mut prefix = Vec::new();
        if let Some(c) = &self.cls_token {
            prefix.push(c.expand((b, 1, d))?);
        }
        if let Some(r) = &self.reg_token {
            prefix.push(r.expand((b, self.cfg.reg_tokens, d))?);
        }
        if self.cfg.no_embed_class {
            x = x.broadcast_add(&self.pos_embed)?;
            prefix.push(x);
            x = Tensor::cat(&prefix, 1)?;
        } else {
            prefix.push(x);
            x = Tensor::cat(&prefix, 1)?.broadcast_add(&self.pos_embed)?;
        }
        for block in self.blocks.iter().take(index + 1) {
            x = block.forward(&x)?;
        }
        let np = self.cfg.num_prefix_tokens();
        let n = x.dim(1)?;
        x.narrow(1, np, n - np)?.contiguous()
    }

    /// OpenVLA's features: the patch tokens of the second-to-last block.
    pub fn openvla_features(&self, pixels: &Tensor) -> candle_core::Result<Tensor> {
        self.patch_tokens_after(pixels, self.cfg.depth.saturating_sub(2))
    }
}
