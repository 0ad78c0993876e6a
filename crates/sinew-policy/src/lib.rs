//! Sinew's policy engine: action tokenizers (OpenVLA bins, FAST), normalisation statistics,
//! checkpoint loading, and VLA models in candle (OpenVLA, sinew-tiny) behind the
//! [`sinew_core::Policy`] trait. CPU by default; the `cuda` feature adds candle's CUDA backend.

pub mod bench;
pub mod bins;
pub mod device;
pub mod fast;
pub mod folder;
pub mod models;
pub mod normalize;
pub mod preprocess;
pub mod tokens;
pub mod weights;

pub use bins::BinTokenizer;
pub use normalize::Normalizer;
pub use sinew_core::PolicyError;

/// A candle error as a policy error.
pub(crate) fn model_err(e: candle_core::Error) -> PolicyError {
    PolicyError::Model(e.to_string())
}
