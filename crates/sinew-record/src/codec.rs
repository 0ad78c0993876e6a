//! How camera images are stored in a recording, and the conversions both ways: colour as
//! `sensor_msgs/CompressedImage` (JPEG or PNG, the `format` string as ROS `image_transport`'s
//! compressed plugin writes it: `rgb8; jpeg compressed bgr8`) or raw, depth as `16UC1`
//! millimetres (0 = no reading, as ROS depth cameras publish it), `32FC1` metres, or not at
//! all.
//!
//! ```
//! use sinew_msgs::{Header, Image};
//! use sinew_record::codec::{decode_color, ColorEncoding, Stored};
//!
//! let im = Image::rgb8(Header::default(), 2, 1, vec![255, 0, 0, 0, 0, 255]);
//! let Stored::Compressed(c) = ColorEncoding::Png.store(&im)? else { unreachable!() };
//! assert_eq!(c.format, "rgb8; png compressed bgr8");
//! assert_eq!(decode_color(&c)?, im);
//! # Ok::<(), sinew_record::codec::CodecError>(())
//! ```

use sinew_msgs::{CompressedImage, Image};

/// Why an image could not be converted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// The image's layout does not match its size and encoding.
    #[error("{width}x{height} {encoding} image with step {step} and {len} bytes")]
    Layout {
        /// Columns.
        width: u32,
        /// Rows.
        height: u32,
        /// Pixel encoding.
        encoding: String,
        /// Bytes per row.
        step: u32,
        /// Bytes of data.
        len: usize,
    },
    /// An encoding this conversion does not take.
    #[error("{0} images are not converted here")]
    Unsupported(String),
    /// The JPEG/PNG encoder or decoder failed.
    #[error("{0}")]
    Image(String),
}

/// How colour images are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColorEncoding {
    /// `sensor_msgs/Image` as captured.
    Raw,
    /// JPEG at this quality (1-100) on `<topic>/compressed`.
    Jpeg {
        /// 1-100.
        quality: u8,
    },
    /// PNG (lossless) on `<topic>/compressed`.
    Png,
}

/// How depth images are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DepthEncoding {
    /// `32FC1` metres, as rendered.
    F32,
    /// `16UC1` millimetres, rounded; 0 where there is no reading (nothing hit, or beyond
    /// 65.535 m).
    Mm16,
    /// Not recorded.
    None,
}

/// How a recording stores camera images. The default is lossless and small for rendered
/// images: PNG colour and millimetre depth ([`Encodings::CAMERAS`] suits real cameras).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Encodings {
    /// Colour images.
    pub color: ColorEncoding,
    /// Depth images.
    pub depth: DepthEncoding,
}

impl Default for Encodings {
    fn default() -> Self {
        Self {
            color: ColorEncoding::Png,
            depth: DepthEncoding::Mm16,
        }
    }
}

impl Encodings {
    /// Images exactly as captured (`32FC1` depth): the files of Sinew before these options.
    pub const RAW: Self = Self {
        color: ColorEncoding::Raw,
        depth: DepthEncoding::F32,
    };

    /// For camera images, whose sensor noise PNG compresses poorly: JPEG at
    /// [`DEFAULT_JPEG_QUALITY`], millimetre depth.
    pub const CAMERAS: Self = Self {
        color: ColorEncoding::Jpeg {
            quality: DEFAULT_JPEG_QUALITY,
        },
        depth: DepthEncoding::Mm16,
    };
}

/// The JPEG quality used unless one is asked for.
pub const DEFAULT_JPEG_QUALITY: u8 = 90;

/// What an image becomes in a recording.
#[derive(Debug, Clone, PartialEq)]
pub enum Stored {
    /// An image (raw, or converted depth) on the image's own topic.
    Image(Image),
    /// A compressed image on `<topic>/compressed`.
    Compressed(CompressedImage),
    /// Left out.
    Dropped,
}

/// Rows without padding and the bytes per pixel; checks the layout.
fn packed(im: &Image) -> Result<(Vec<u8>, usize), CodecError> {
    let layout_err = || CodecError::Layout {
        width: im.width,
        height: im.height,
        encoding: im.encoding.clone(),
        step: im.step,
        len: im.data.len(),
    };
    let (bpp, _) = sinew_msgs::encoding_layout(&im.encoding)
        .ok_or_else(|| CodecError::Unsupported(im.encoding.clone()))?;
    let (w, h, step) = (im.width as usize, im.height as usize, im.step as usize);
    let row = w.checked_mul(bpp as usize).ok_or_else(layout_err)?;
    let need = step.checked_mul(h).ok_or_else(layout_err)?;
    if step < row || im.data.len() < need {
        return Err(layout_err());
    }
    let mut out = Vec::with_capacity(row * h);
    for r in 0..h {
        out.extend_from_slice(&im.data[r * step..r * step + row]);
    }
    Ok((out, bpp as usize))
}

impl ColorEncoding {
    /// `im` as stored: raw, or compressed (`rgb8`, `bgr8` and `mono8` images; others stay raw).
    pub fn store(&self, im: &Image) -> Result<Stored, CodecError> {
        let (container, quality) = match *self {
            ColorEncoding::Raw => return Ok(Stored::Image(im.clone())),
            ColorEncoding::Jpeg { quality } => ("jpeg", Some(quality.clamp(1, 100))),
            ColorEncoding::Png => ("png", None),
        };
        let (mut data, _) = packed(im)?;
        let (color, target) = match im.encoding.as_str() {
            "rgb8" => (image::ExtendedColorType::Rgb8, "bgr8"),
            "bgr8" => {
                for px in data.chunks_exact_mut(3) {
                    px.swap(0, 2);
                }
                (image::ExtendedColorType::Rgb8, "bgr8")
            }
            "mono8" => (image::ExtendedColorType::L8, "mono8"),
            _ => return Ok(Stored::Image(im.clone())),
        };
        let mut out = Vec::new();
        let written = match quality {
            Some(q) => image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, q)
                .encode(&data, im.width, im.height, color),
            None => image::ImageEncoder::write_image(
                image::codecs::png::PngEncoder::new(&mut out),
                &data,
                im.width,
                im.height,
                color,
            ),
        };
        written.map_err(|e| CodecError::Image(e.to_string()))?;
        Ok(Stored::Compressed(CompressedImage {
            header: im.header.clone(),
            format: format!("{}; {container} compressed {target}", im.encoding),
            data: out.into(),
        }))
    }
}

/// Millimetres of a depth in metres: rounded, 0 when there is no valid reading.
pub fn metres_to_mm(m: f32) -> u16 {
    let mm = (m as f64 * 1000.0).round();
    if m.is_finite() && mm >= 1.0 && mm <= u16::MAX as f64 {
        mm as u16
    } else {
        0
    }
}

/// Metres of a depth in millimetres; no reading (0) is infinitely far, as the simulator
/// renders it.
pub fn mm_to_metres(mm: u16) -> f32 {
    if mm == 0 {
        f32::INFINITY
    } else {
        mm as f32 / 1000.0
    }
}

fn depth_values(im: &Image) -> Result<Vec<f32>, CodecError> {
    let (data, bpp) = packed(im)?;
    let big = im.is_bigendian != 0;
    match (im.encoding.as_str(), bpp) {
        ("32FC1", 4) => Ok(data
            .chunks_exact(4)
            .map(|b| {
                let b = [b[0], b[1], b[2], b[3]];
                if big {
                    f32::from_be_bytes(b)
                } else {
                    f32::from_le_bytes(b)
                }
            })
            .collect()),
        ("16UC1" | "mono16", 2) => Ok(data
            .chunks_exact(2)
            .map(|b| {
                let b = [b[0], b[1]];
                mm_to_metres(if big {
                    u16::from_be_bytes(b)
                } else {
                    u16::from_le_bytes(b)
                })
            })
            .collect()),
        _ => Err(CodecError::Unsupported(im.encoding.clone())),
    }
}

impl DepthEncoding {
    /// `im` (`32FC1` metres or `16UC1` millimetres) as stored.
    pub fn store(&self, im: &Image) -> Result<Stored, CodecError> {
        match self {
            DepthEncoding::None => Ok(Stored::Dropped),
            DepthEncoding::F32 if im.encoding == "32FC1" => Ok(Stored::Image(im.clone())),
            DepthEncoding::F32 => Ok(Stored::Image(depth_to_metres(im)?)),
            DepthEncoding::Mm16 if im.encoding == "16UC1" => Ok(Stored::Image(im.clone())),
            DepthEncoding::Mm16 => Ok(Stored::Image(depth_to_mm16(im)?)),
        }
    }
}

/// A `32FC1` (metres) depth image as `16UC1` millimetres, little endian.
pub fn depth_to_mm16(im: &Image) -> Result<Image, CodecError> {
    let metres = depth_values(im)?;
    let mut data = Vec::with_capacity(metres.len() * 2);
    for m in metres {
        data.extend_from_slice(&metres_to_mm(m).to_le_bytes());
    }
    Ok(Image {
        header: im.header.clone(),
        height: im.height,
        width: im.width,
        encoding: "16UC1".into(),
        is_bigendian: 0,
        step: im.width * 2,
        data: data.into(),
    })
}

/// A `16UC1` (millimetres) or `32FC1` depth image as `32FC1` metres, little endian, the
/// layout the simulator renders (no reading = infinity).
pub fn depth_to_metres(im: &Image) -> Result<Image, CodecError> {
    if im.encoding == "32FC1" && im.is_bigendian == 0 {
        return Ok(im.clone());
    }
    let metres = depth_values(im)?;
    Ok(Image::depth_32fc1(
        im.header.clone(),
        im.width,
        im.height,
        &metres,
    ))
}

/// Whether a `CompressedImage` format names JPEG or PNG (`jpeg`, `png`, or image_transport's
/// `rgb8; jpeg compressed bgr8`); `None` for anything else (`compressedDepth`, video ...).
pub fn compressed_kind(format: &str) -> Option<&'static str> {
    let f = format.to_ascii_lowercase();
    if f.contains("compresseddepth") {
        return None;
    }
    if f.contains("jpeg") || f.contains("jpg") {
        Some("jpeg")
    } else if f.contains("png") {
        Some("png")
    } else {
        None
    }
}

/// A compressed colour image decoded to `rgb8` (or `mono8` when it is greyscale).
pub fn decode_color(c: &CompressedImage) -> Result<Image, CodecError> {
    let format = match compressed_kind(&c.format) {
        Some("jpeg") => image::ImageFormat::Jpeg,
        Some(_) => image::ImageFormat::Png,
        None => return Err(CodecError::Unsupported(c.format.clone())),
    };
    let img = image::load_from_memory_with_format(&c.data, format)
        .map_err(|e| CodecError::Image(e.to_string()))?;
    let (w, h) = (img.width(), img.height());
    Ok(match img {
        image::DynamicImage::ImageLuma8(g) => Image {
            header: c.header.clone(),
            height: h,
            width: w,
            encoding: "mono8".into(),
            is_bigendian: 0,
            step: w,
            data: g.into_raw().into(),
        },
        other => Image::rgb8(c.header.clone(), w, h, other.into_rgb8().into_raw()),
    })
}
