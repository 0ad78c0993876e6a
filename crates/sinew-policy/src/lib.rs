//! Sinew's policy engine. So far: the OpenVLA-compatible bin action tokenizer, FAST's DCT
//! quantiser, and the normalisation statistics of OpenVLA and LeRobot. The `Policy` trait,
//! FAST's BPE and the candle models (OpenVLA, sinew-tiny) are the rest of the policy-engine
//! issue.

pub mod bins;
pub mod fast;
pub mod normalize;

use std::path::PathBuf;

pub use bins::BinTokenizer;
pub use normalize::Normalizer;

/// Errors of the policy engine.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// A file could not be read.
    #[error("{0}: {1}")]
    Io(PathBuf, std::io::Error),
    /// A file has the wrong content.
    #[error("{0}: {1}")]
    Parse(PathBuf, String),
    /// A configuration value is invalid.
    #[error("configuration: {0}")]
    Config(String),
    /// Lengths that do not match.
    #[error("shape: {0}")]
    Shape(String),
    /// NaN or infinity where a number is needed.
    #[error("{0}")]
    NonFinite(String),
}
