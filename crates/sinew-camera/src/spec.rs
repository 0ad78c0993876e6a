//! Camera specs: what to open, at which size and rate, and what to publish.
//!
//! A spec is `NAME=SOURCE`:
//!
//! | source | example | notes |
//! |---|---|---|
//! | `v4l2:DEVICE[:WxH[@FPS]][:mjpeg\|yuyv]` | `front=v4l2:/dev/video0:640x480@30:mjpeg` | `DEVICE` is a path or a number (`0` is `/dev/video0`); default 640x480@30; without a format, decoded output prefers YUYV and passthrough needs MJPEG |
//! | `file:PATH[@FPS]` | `wrist=file:frames/@10` | one PNG/JPEG image, or a folder of them played in name order, looping; size from the images; default 30 fps |
//! | `synthetic[:WxH[@FPS]]` | `front=synthetic:224x224@30` | a moving test pattern; default 224x224@30 |

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// Where frames come from.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    /// A V4L2 capture device (a USB webcam through `uvcvideo`).
    V4l2 {
        /// The device node, e.g. `/dev/video0`.
        device: PathBuf,
        /// The pixel format to capture in; `None` picks one (see [`Output`]).
        format: Option<CaptureFormat>,
    },
    /// One PNG or JPEG image, or a folder of them played in name order, looping.
    File {
        /// The image or the folder.
        path: PathBuf,
    },
    /// A moving test pattern (colour bars that scroll one column per frame).
    Synthetic,
}

/// A pixel format a V4L2 device delivers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaptureFormat {
    /// Motion JPEG: each buffer is one JPEG image (fourcc `MJPG`).
    Mjpeg,
    /// YUV 4:2:2 packed as `Y0 U Y1 V` (fourcc `YUYV`).
    Yuyv,
}

impl CaptureFormat {
    /// The V4L2 fourcc.
    pub fn fourcc(self) -> [u8; 4] {
        match self {
            Self::Mjpeg => *b"MJPG",
            Self::Yuyv => *b"YUYV",
        }
    }

    /// The spec's name: `mjpeg` or `yuyv`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Mjpeg => "mjpeg",
            Self::Yuyv => "yuyv",
        }
    }
}

/// What a camera publishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Output {
    /// `sensor_msgs/Image`, `rgb8`: MJPEG is decoded and YUYV converted (BT.601) in the
    /// capture thread.
    #[default]
    Decoded,
    /// `sensor_msgs/CompressedImage` with the bytes as captured, never decoded: MJPEG frames
    /// and JPEG files as `jpeg`, PNG files as `png`; the synthetic pattern is encoded to JPEG
    /// (as an MJPEG webcam would give it). YUYV cannot pass through (a CompressedImage carries
    /// jpeg or png): opening a YUYV camera for passthrough is an error, not a silent encode.
    Passthrough,
}

/// One camera: its name (the `<name>` of `<ns>/camera/<name>/image_raw`), source, size,
/// rate and output.
#[derive(Debug, Clone, PartialEq)]
pub struct CameraSpec {
    /// The camera's name; also names its optical frame, `<name>_optical`.
    pub name: String,
    /// Where frames come from.
    pub source: Source,
    /// Requested width, pixels (the driver may pick the nearest it has; 0 for files: as the
    /// images are).
    pub width: u32,
    /// Requested height, pixels (0 for files).
    pub height: u32,
    /// Requested frames per second.
    pub fps: f64,
    /// What is published.
    pub output: Output,
}

/// A camera spec that does not parse; the message names the defect.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("camera spec {spec:?}: {reason}")]
pub struct SpecError {
    /// The spec as given.
    pub spec: String,
    /// What is wrong with it.
    pub reason: String,
}

const DEFAULT_V4L2: (u32, u32, f64) = (640, 480, 30.0);
const DEFAULT_SYNTHETIC: (u32, u32, f64) = (224, 224, 30.0);
const DEFAULT_FILE_FPS: f64 = 30.0;
const MAX_SIDE: u32 = 16384;
const MAX_FPS: f64 = 1000.0;

impl CameraSpec {
    /// The same camera with another output.
    pub fn with_output(mut self, output: Output) -> Self {
        self.output = output;
        self
    }

    /// The camera's optical frame, the `header.frame_id` of its images: `<name>_optical`
    /// (the simulator names its cameras' frames the same way).
    pub fn frame_id(&self) -> String {
        format!("{}_optical", self.name)
    }

    /// Checks what parsing cannot see alone: a YUYV camera asked to pass frames through.
    pub fn validate(&self) -> Result<(), SpecError> {
        if let Source::V4l2 {
            format: Some(CaptureFormat::Yuyv),
            ..
        } = self.source
        {
            if self.output == Output::Passthrough {
                return Err(SpecError {
                    spec: self.to_string(),
                    reason: "yuyv frames cannot pass through as a CompressedImage (it carries jpeg or png): capture mjpeg, or publish decoded images".into(),
                });
            }
        }
        Ok(())
    }
}

impl FromStr for CameraSpec {
    type Err = SpecError;

    fn from_str(spec: &str) -> Result<Self, SpecError> {
        let err = |reason: String| SpecError {
            spec: spec.to_owned(),
            reason,
        };
        let (name, source) = spec.split_once('=').ok_or_else(|| {
            err("expected NAME=SOURCE, e.g. front=v4l2:/dev/video0, wrist=file:frames/ or front=synthetic:224x224@30".into())
        })?;
        let name = name.trim();
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(err(format!(
                "camera name {name:?} must be letters, digits, '_' or '-' (it becomes a bus key chunk)"
            )));
        }
        let (kind, rest) = match source.split_once(':') {
            Some((k, r)) => (k, Some(r)),
            None => (source, None),
        };
        let parsed = match kind {
            "v4l2" => parse_v4l2(rest.unwrap_or("")),
            "file" => parse_file(rest.unwrap_or("")),
            "synthetic" => match rest {
                None => Ok((Source::Synthetic, DEFAULT_SYNTHETIC)),
                Some(mode) => parse_mode(mode, DEFAULT_SYNTHETIC).map(|m| (Source::Synthetic, m)),
            },
            other => Err(format!(
                "unknown source {other:?}: expected v4l2, file or synthetic"
            )),
        };
        let (source, (width, height, fps)) = parsed.map_err(err)?;
        Ok(Self {
            name: name.to_owned(),
            source,
            width,
            height,
            fps,
            output: Output::Decoded,
        })
    }
}

type Mode = (u32, u32, f64);

fn parse_v4l2(rest: &str) -> Result<(Source, Mode), String> {
    let mut parts = rest.split(':');
    let device = parts.next().unwrap_or("").trim();
    if device.is_empty() {
        return Err("v4l2 needs a device, e.g. v4l2:/dev/video0 (or v4l2:0)".into());
    }
    let device = match device.parse::<u32>() {
        Ok(n) => PathBuf::from(format!("/dev/video{n}")),
        Err(_) => PathBuf::from(device),
    };
    let mut mode = None;
    let mut format = None;
    for part in parts {
        let lower = part.trim().to_ascii_lowercase();
        let fmt = match lower.as_str() {
            "mjpeg" | "mjpg" => Some(CaptureFormat::Mjpeg),
            "yuyv" | "yuy2" => Some(CaptureFormat::Yuyv),
            _ => None,
        };
        if let Some(f) = fmt {
            if format.replace(f).is_some() {
                return Err(format!("v4l2 format given twice ({part:?})"));
            }
        } else if lower.starts_with(|c: char| c.is_ascii_digit()) {
            if mode.is_some() {
                return Err(format!("v4l2 size given twice ({part:?})"));
            }
            mode = Some(parse_mode(&lower, DEFAULT_V4L2)?);
        } else {
            return Err(format!(
                "unknown v4l2 option {part:?}: expected WxH[@FPS] (e.g. 640x480@30), mjpeg or yuyv"
            ));
        }
    }
    let mode = mode.unwrap_or(DEFAULT_V4L2);
    if format == Some(CaptureFormat::Yuyv) && !mode.0.is_multiple_of(2) {
        return Err(format!(
            "yuyv needs an even width (two pixels share one U and V), got {}",
            mode.0
        ));
    }
    Ok((Source::V4l2 { device, format }, mode))
}

fn parse_file(rest: &str) -> Result<(Source, Mode), String> {
    let (path, fps) = match rest.rsplit_once('@') {
        Some((p, f)) if f.trim().parse::<f64>().is_ok() => (p, parse_fps(f)?),
        _ => (rest, DEFAULT_FILE_FPS),
    };
    if path.trim().is_empty() {
        return Err(
            "file needs a path: file:image.png or file:folder/ (with @FPS to set the rate)".into(),
        );
    }
    Ok((
        Source::File {
            path: PathBuf::from(path),
        },
        (0, 0, fps),
    ))
}

/// `WxH`, `WxH@FPS` (or `@FPS` alone: the default size).
fn parse_mode(mode: &str, default: Mode) -> Result<Mode, String> {
    let (size, fps) = match mode.split_once('@') {
        Some((s, f)) => (s, parse_fps(f)?),
        None => (mode, default.2),
    };
    if size.is_empty() {
        return Ok((default.0, default.1, fps));
    }
    let (w, h) = size
        .split_once(['x', 'X'])
        .ok_or_else(|| format!("size {size:?} is not WxH (e.g. 640x480)"))?;
    let side = |s: &str, what: &str| -> Result<u32, String> {
        let v: u32 = s
            .trim()
            .parse()
            .map_err(|_| format!("{what} {s:?} in size {size:?} is not a whole number"))?;
        if v == 0 || v > MAX_SIDE {
            return Err(format!(
                "{what} {v} in size {size:?} is outside 1..={MAX_SIDE}"
            ));
        }
        Ok(v)
    };
    Ok((side(w, "width")?, side(h, "height")?, fps))
}

fn parse_fps(f: &str) -> Result<f64, String> {
    let fps: f64 = f
        .trim()
        .parse()
        .map_err(|_| format!("frame rate {f:?} is not a number"))?;
    if !(fps.is_finite() && fps > 0.0 && fps <= MAX_FPS) {
        return Err(format!(
            "frame rate {f:?} must be above 0 and at most {MAX_FPS}"
        ));
    }
    Ok(fps)
}

impl fmt::Display for CameraSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.source {
            Source::V4l2 { device, format } => {
                write!(
                    f,
                    "{}=v4l2:{}:{}x{}@{}",
                    self.name,
                    device.display(),
                    self.width,
                    self.height,
                    self.fps
                )?;
                if let Some(fm) = format {
                    write!(f, ":{}", fm.name())?;
                }
                Ok(())
            }
            Source::File { path } => {
                write!(f, "{}=file:{}@{}", self.name, path.display(), self.fps)
            }
            Source::Synthetic => write!(
                f,
                "{}=synthetic:{}x{}@{}",
                self.name, self.width, self.height, self.fps
            ),
        }
    }
}
