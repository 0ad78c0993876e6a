//! The models, shaped like candle-transformers: a serde `Config`, `new(cfg, vb)` with the
//! checkpoint's tensor names, `forward`.

pub mod openvla;
pub mod sinew_tiny;
pub mod timm_vit;
