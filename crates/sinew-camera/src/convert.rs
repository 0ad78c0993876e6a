//! From a captured buffer to a message: YUYV to RGB, MJPEG decoded or passed through.
//!
//! [`payload_from_buffer`] is the one path every V4L2 frame takes after it is dequeued (the
//! tests feed it buffers the same way).

use bytes::Bytes;
use sinew_msgs::{CompressedImage, Header, Image};

use crate::spec::{CaptureFormat, Output};
use crate::FramePayload;

/// A frame that could not be turned into a message (counted; the camera goes on).
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The driver marked the buffer as corrupt, or delivered no bytes.
    #[error("the driver delivered {0}")]
    BadBuffer(&'static str),
    /// A raw buffer shorter than its format and size need.
    #[error("{format} buffer of {got} bytes is too short for {width}x{height} (stride {stride}): {need} bytes needed")]
    Truncated {
        /// The format.
        format: &'static str,
        /// Bytes delivered.
        got: usize,
        /// Bytes needed.
        need: usize,
        /// Width, pixels.
        width: u32,
        /// Height, pixels.
        height: u32,
        /// Bytes per row.
        stride: u32,
    },
    /// YUYV needs an even width.
    #[error("yuyv width {0} is odd")]
    OddWidth(u32),
    /// A JPEG or PNG that does not decode (or a synthetic frame that does not encode).
    #[error("image: {0}")]
    Image(image::ImageError),
    /// YUYV cannot be passed through as a CompressedImage.
    #[error("yuyv frames cannot pass through as a CompressedImage (it carries jpeg or png)")]
    NotCompressed,
}

impl From<image::ImageError> for FrameError {
    fn from(e: image::ImageError) -> Self {
        Self::Image(e)
    }
}

/// A buffer as the device delivered it.
#[derive(Debug, Clone, Copy)]
pub struct RawFrame<'a> {
    /// The used bytes of the buffer.
    pub data: &'a [u8],
    /// The pixel format.
    pub format: CaptureFormat,
    /// Width the driver negotiated, pixels.
    pub width: u32,
    /// Height the driver negotiated, pixels.
    pub height: u32,
    /// Bytes per row for raw formats (`bytesperline`; at least `2 * width` for YUYV).
    pub stride: u32,
}

/// The message for one captured buffer: MJPEG passed through as a `jpeg` CompressedImage
/// (the bytes unchanged) or decoded to `rgb8`; YUYV converted to `rgb8`.
pub fn payload_from_buffer(
    raw: &RawFrame<'_>,
    output: Output,
    header: Header,
) -> Result<FramePayload, FrameError> {
    if raw.data.is_empty() {
        return Err(FrameError::BadBuffer("an empty buffer"));
    }
    match (raw.format, output) {
        (CaptureFormat::Mjpeg, Output::Passthrough) => {
            Ok(FramePayload::Compressed(CompressedImage {
                header,
                format: "jpeg".into(),
                data: Bytes::copy_from_slice(raw.data),
            }))
        }
        (CaptureFormat::Mjpeg, Output::Decoded) => {
            let rgb = image::load_from_memory_with_format(raw.data, image::ImageFormat::Jpeg)?
                .into_rgb8();
            let (w, h) = rgb.dimensions();
            Ok(FramePayload::Image(Image::rgb8(
                header,
                w,
                h,
                rgb.into_raw(),
            )))
        }
        (CaptureFormat::Yuyv, Output::Decoded) => {
            let rgb = yuyv_to_rgb8(raw.data, raw.width, raw.height, raw.stride)?;
            Ok(FramePayload::Image(Image::rgb8(
                header, raw.width, raw.height, rgb,
            )))
        }
        (CaptureFormat::Yuyv, Output::Passthrough) => Err(FrameError::NotCompressed),
    }
}

// BT.601, limited ("studio") range, the conversion V4L2 documents for webcams' default
// colorspace (SMPTE 170M) and ffmpeg's swscale applies to yuyv422 by default:
//   R = 255/219 (Y-16) + 1.402 * 255/224 (V-128)
//   G = 255/219 (Y-16) - 0.344136 * 255/224 (U-128) - 0.714136 * 255/224 (V-128)
//   B = 255/219 (Y-16) + 1.772 * 255/224 (U-128)
// in 16.16 fixed point, rounded to nearest (within one level of the exact formula; the test
// compares against tests/fixtures/yuyv_bt601_reference.py).
const FIX: i32 = 1 << 16;
const C_Y: i32 = 76_309; // 1.164383562 * 65536
const C_RV: i32 = 104_597; // 1.596026786 * 65536
const C_GU: i32 = 25_675; // 0.391762290 * 65536
const C_GV: i32 = 53_279; // 0.812967647 * 65536
const C_BU: i32 = 132_201; // 2.017232143 * 65536

#[inline]
fn clamp_u8(v: i32) -> u8 {
    ((v + FIX / 2) >> 16).clamp(0, 255) as u8
}

/// YUYV (`Y0 U Y1 V`, two pixels per four bytes, rows `stride` bytes apart) to packed `rgb8`
/// by BT.601 limited range.
pub fn yuyv_to_rgb8(
    data: &[u8],
    width: u32,
    height: u32,
    stride: u32,
) -> Result<Vec<u8>, FrameError> {
    if !width.is_multiple_of(2) {
        return Err(FrameError::OddWidth(width));
    }
    let (w, h) = (width as usize, height as usize);
    let stride = (stride as usize).max(2 * w);
    let need = match h {
        0 => 0,
        _ => stride * (h - 1) + 2 * w,
    };
    if data.len() < need {
        return Err(FrameError::Truncated {
            format: "yuyv",
            got: data.len(),
            need,
            width,
            height,
            stride: stride as u32,
        });
    }
    let mut out = vec![0u8; w * h * 3];
    for (row_in, row_out) in data.chunks(stride).take(h).zip(out.chunks_exact_mut(w * 3)) {
        for (px, rgb) in row_in[..2 * w]
            .chunks_exact(4)
            .zip(row_out.chunks_exact_mut(6))
        {
            let u = i32::from(px[1]) - 128;
            let v = i32::from(px[3]) - 128;
            let r = C_RV * v;
            let g = -C_GU * u - C_GV * v;
            let b = C_BU * u;
            for (k, y) in [px[0], px[2]].into_iter().enumerate() {
                let y = C_Y * (i32::from(y) - 16);
                rgb[3 * k] = clamp_u8(y + r);
                rgb[3 * k + 1] = clamp_u8(y + g);
                rgb[3 * k + 2] = clamp_u8(y + b);
            }
        }
    }
    Ok(out)
}

/// Decodes a PNG or JPEG (the format read from its first bytes) to `rgb8`: width, height,
/// pixels.
pub(crate) fn decode_rgb8(bytes: &[u8]) -> Result<(u32, u32, Vec<u8>), FrameError> {
    let rgb = image::load_from_memory(bytes)?.into_rgb8();
    let (w, h) = rgb.dimensions();
    Ok((w, h, rgb.into_raw()))
}

/// Encodes `rgb8` pixels as a JPEG.
pub fn encode_jpeg(
    width: u32,
    height: u32,
    rgb: &[u8],
    quality: u8,
) -> Result<Vec<u8>, FrameError> {
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, quality).encode(
        rgb,
        width,
        height,
        image::ExtendedColorType::Rgb8,
    )?;
    Ok(out)
}

/// The CompressedImage format of an encoded image, from its magic bytes: `jpeg`, `png`, or
/// `None`.
pub(crate) fn compressed_format(bytes: &[u8]) -> Option<&'static str> {
    match bytes {
        [0xFF, 0xD8, 0xFF, ..] => Some("jpeg"),
        [0x89, b'P', b'N', b'G', ..] => Some("png"),
        _ => None,
    }
}
