//! Decoding errors: which field, and what was wrong with it.

/// A payload that is not a valid encoding of the message type it was decoded as.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("field `{field}`: {kind}")]
pub struct DecodeError {
    /// The field being read when the defect was found, e.g. `header.frame_id` or `data`.
    pub field: &'static str,
    /// What was wrong.
    pub kind: DecodeErrorKind,
}

/// The defect found in a payload.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeErrorKind {
    /// The payload ends before the field does.
    #[error("payload truncated: needs {needed} more bytes, {available} left")]
    Truncated {
        /// Bytes the field needs.
        needed: usize,
        /// Bytes left in the payload.
        available: usize,
    },
    /// A sequence or string length larger than the rest of the payload could hold.
    #[error("length {count} cannot fit in the {available} bytes left in the payload")]
    LengthExceedsPayload {
        /// The length field's value.
        count: u64,
        /// Bytes left in the payload.
        available: usize,
    },
    /// The first two bytes are not a CDR encapsulation we read.
    #[error(
        "unknown CDR encapsulation {0:02x?} (expected 00 01 little endian or 00 00 big endian)"
    )]
    BadEncapsulation([u8; 2]),
    /// A string without its terminating NUL.
    #[error("string is not NUL-terminated")]
    MissingNul,
    /// A string that is not UTF-8.
    #[error("string is not valid UTF-8")]
    InvalidUtf8,
    /// More bytes after the last field than alignment padding explains.
    #[error("{0} unexpected bytes after the last field (wrong message type?)")]
    TrailingBytes(usize),
    /// An image encoding this crate does not know.
    #[error("unknown image encoding {0:?}")]
    UnknownEncoding(String),
    /// `step` smaller than one row of pixels.
    #[error("step {step} is smaller than width {width} x {bytes_per_pixel} bytes per pixel")]
    StepTooSmall {
        /// Declared row stride in bytes.
        step: u32,
        /// Image width in pixels.
        width: u32,
        /// Bytes per pixel of the encoding.
        bytes_per_pixel: u32,
    },
    /// `data` length different from `step * height`.
    #[error("data has {actual} bytes but step x height = {expected}")]
    DataSizeMismatch {
        /// `step * height`.
        expected: u64,
        /// Actual length of `data`.
        actual: u64,
    },
    /// `is_bigendian` neither 0 nor 1.
    #[error("is_bigendian is {0}, expected 0 or 1")]
    BadBool(u8),
    /// Fields that disagree with each other.
    #[error("{0}")]
    Inconsistent(String),
}
