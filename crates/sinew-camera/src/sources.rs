//! The stand-ins for a webcam: image files and a synthetic pattern, paced at the spec's rate.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use sinew_msgs::{CompressedImage, Header, Image};

use crate::convert::{compressed_format, decode_rgb8, encode_jpeg, FrameError};
use crate::spec::{CameraSpec, Output};
use crate::stream::{stamp_now, Capture, CaptureError, Grab, Next, StreamInfo};
use crate::{CameraError, FramePayload};

/// Frames due every `period`, the first at once; a source that fell more than a period
/// behind starts counting again from now rather than bursting to catch up.
struct Pacer {
    period: Duration,
    due: Option<Instant>,
}

impl Pacer {
    fn new(fps: f64) -> Self {
        Self {
            period: Duration::from_secs_f64(1.0 / fps),
            due: None,
        }
    }

    /// `None` when a frame is due now (and the next one is scheduled), else the wait.
    fn wait(&mut self) -> Option<Duration> {
        let now = Instant::now();
        match self.due {
            Some(due) if now < due => Some(due - now),
            Some(due) if now - due < self.period => {
                self.due = Some(due + self.period);
                None
            }
            _ => {
                self.due = Some(now + self.period);
                None
            }
        }
    }
}

/// Scrolling colour bars over a vertical ramp; one column further each frame.
pub(crate) struct Synthetic {
    frame_id: String,
    width: u32,
    height: u32,
    fps: f64,
    output: Output,
    pacer: Pacer,
    frame: u64,
}

const BARS: [[u8; 3]; 8] = [
    [235, 235, 235],
    [235, 235, 16],
    [16, 235, 235],
    [16, 235, 16],
    [235, 16, 235],
    [235, 16, 16],
    [16, 16, 235],
    [16, 16, 16],
];

/// The synthetic pattern's pixels for frame number `frame` (`rgb8`).
pub(crate) fn synthetic_rgb(width: u32, height: u32, frame: u64) -> Vec<u8> {
    let (w, h) = (width as usize, height as usize);
    let shift = (frame % w.max(1) as u64) as usize;
    let mut out = Vec::with_capacity(w * h * 3);
    for y in 0..h {
        let ramp = (y * 255 / h.max(1)) as u16;
        for x in 0..w {
            let bar = BARS[((x + shift) % w) * BARS.len() / w];
            for c in bar {
                out.push(((u16::from(c) + ramp) / 2) as u8);
            }
        }
    }
    out
}

impl Synthetic {
    pub(crate) fn new(spec: &CameraSpec) -> Result<Self, CameraError> {
        if spec.width == 0 || spec.height == 0 {
            return Err(CameraError::Unsupported {
                camera: spec.name.clone(),
                reason: format!("synthetic size {}x{} is empty", spec.width, spec.height),
            });
        }
        Ok(Self {
            frame_id: spec.frame_id(),
            width: spec.width,
            height: spec.height,
            fps: spec.fps,
            output: spec.output,
            pacer: Pacer::new(spec.fps),
            frame: 0,
        })
    }
}

impl Capture for Synthetic {
    fn next(&mut self) -> Result<Next, CaptureError> {
        if let Some(d) = self.pacer.wait() {
            return Ok(Next::Wait(d));
        }
        let (captured, captured_unix_ns, header) = stamp_now(&self.frame_id);
        let rgb = synthetic_rgb(self.width, self.height, self.frame);
        self.frame += 1;
        let payload = match self.output {
            Output::Decoded => {
                FramePayload::Image(Image::rgb8(header, self.width, self.height, rgb))
            }
            Output::Passthrough => FramePayload::Compressed(CompressedImage {
                header,
                format: "jpeg".into(),
                data: encode_jpeg(self.width, self.height, &rgb, 90)
                    .map_err(CaptureError::Frame)?
                    .into(),
            }),
        };
        Ok(Next::Frame(Grab {
            payload,
            captured,
            captured_unix_ns,
        }))
    }

    fn reopen(&mut self) -> Result<(), String> {
        Ok(())
    }

    fn info(&self) -> StreamInfo {
        StreamInfo {
            width: self.width,
            height: self.height,
            fps: self.fps,
            source: "synthetic".into(),
        }
    }
}

/// A frame ready to be stamped: decoded pixels or encoded bytes.
#[derive(Clone)]
enum Pixels {
    Rgb8 {
        width: u32,
        height: u32,
        data: Bytes,
    },
    Encoded {
        format: &'static str,
        data: Bytes,
    },
}

impl Pixels {
    fn load(path: &Path, output: Output) -> Result<Self, CaptureError> {
        let bytes = std::fs::read(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => {
                CaptureError::Source(format!("{} is gone", path.display()))
            }
            _ => CaptureError::Frame(FrameError::Image(image::ImageError::IoError(e))),
        })?;
        Self::from_bytes(bytes, output).map_err(CaptureError::Frame)
    }

    fn from_bytes(bytes: Vec<u8>, output: Output) -> Result<Self, FrameError> {
        match output {
            Output::Decoded => {
                let (width, height, data) = decode_rgb8(&bytes)?;
                Ok(Self::Rgb8 {
                    width,
                    height,
                    data: data.into(),
                })
            }
            Output::Passthrough => match compressed_format(&bytes) {
                Some(format) => Ok(Self::Encoded {
                    format,
                    data: bytes.into(),
                }),
                None => Err(FrameError::Image(image::ImageError::Unsupported(
                    image::error::UnsupportedError::from_format_and_kind(
                        image::error::ImageFormatHint::Unknown,
                        image::error::UnsupportedErrorKind::GenericFeature(
                            "passthrough of a file that is neither jpeg nor png".into(),
                        ),
                    ),
                ))),
            },
        }
    }

    fn payload(&self, header: Header) -> FramePayload {
        match self {
            Self::Rgb8 {
                width,
                height,
                data,
            } => FramePayload::Image(Image::rgb8(header, *width, *height, data.clone())),
            Self::Encoded { format, data } => FramePayload::Compressed(CompressedImage {
                header,
                format: (*format).into(),
                data: data.clone(),
            }),
        }
    }

    fn size(&self) -> Option<(u32, u32)> {
        match self {
            Self::Rgb8 { width, height, .. } => Some((*width, *height)),
            Self::Encoded { data, .. } => image::load_from_memory(data)
                .ok()
                .map(|i| (i.width(), i.height())),
        }
    }
}

/// One image, or a folder of images played in name order, looping.
pub(crate) struct FileSource {
    camera: String,
    frame_id: String,
    path: PathBuf,
    fps: f64,
    output: Output,
    files: Vec<PathBuf>,
    /// A single image is read and decoded once.
    single: Option<Pixels>,
    next: usize,
    pacer: Pacer,
    size: (u32, u32),
}

fn is_image(p: &Path) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "png" | "jpg" | "jpeg"))
}

/// The images of `path`: itself, or a folder's PNG and JPEG files in name order.
fn scan(path: &Path) -> std::io::Result<Vec<PathBuf>> {
    if !path.is_dir() {
        std::fs::metadata(path)?;
        return Ok(vec![path.to_owned()]);
    }
    let mut files = Vec::new();
    for entry in std::fs::read_dir(path)? {
        let p = entry?.path();
        if p.is_file() && is_image(&p) {
            files.push(p);
        }
    }
    files.sort();
    Ok(files)
}

impl FileSource {
    pub(crate) fn open(spec: &CameraSpec, path: &Path) -> Result<Self, CameraError> {
        let camera = spec.name.clone();
        let files = scan(path).map_err(|error| CameraError::File {
            camera: camera.clone(),
            path: path.to_owned(),
            error,
        })?;
        let first = files.first().ok_or_else(|| CameraError::Unsupported {
            camera: camera.clone(),
            reason: format!("no .png, .jpg or .jpeg images in {}", path.display()),
        })?;
        let bytes = std::fs::read(first).map_err(|error| CameraError::File {
            camera: camera.clone(),
            path: first.clone(),
            error,
        })?;
        let pixels =
            Pixels::from_bytes(bytes, spec.output).map_err(|error| CameraError::Frame {
                camera: format!("{camera} ({})", first.display()),
                error,
            })?;
        let size = pixels.size().unwrap_or((0, 0));
        Ok(Self {
            camera,
            frame_id: spec.frame_id(),
            path: path.to_owned(),
            fps: spec.fps,
            output: spec.output,
            single: (files.len() == 1 && !path.is_dir()).then_some(pixels),
            files,
            next: 0,
            pacer: Pacer::new(spec.fps),
            size,
        })
    }
}

impl Capture for FileSource {
    fn next(&mut self) -> Result<Next, CaptureError> {
        if let Some(d) = self.pacer.wait() {
            return Ok(Next::Wait(d));
        }
        let (captured, captured_unix_ns, header) = stamp_now(&self.frame_id);
        let pixels = match &self.single {
            Some(p) => p.clone(),
            None => {
                if self.files.is_empty() {
                    return Err(CaptureError::Source(format!(
                        "no images left in {}",
                        self.path.display()
                    )));
                }
                let i = self.next % self.files.len();
                self.next = (i + 1) % self.files.len();
                Pixels::load(&self.files[i], self.output)?
            }
        };
        Ok(Next::Frame(Grab {
            payload: pixels.payload(header),
            captured,
            captured_unix_ns,
        }))
    }

    fn reopen(&mut self) -> Result<(), String> {
        let files = scan(&self.path).map_err(|e| format!("{}: {e}", self.path.display()))?;
        if files.is_empty() {
            return Err(format!("no images in {}", self.path.display()));
        }
        if self.single.is_none() {
            self.files = files;
            self.next = 0;
        }
        tracing::debug!(camera = self.camera, "images rescanned");
        Ok(())
    }

    fn info(&self) -> StreamInfo {
        StreamInfo {
            width: self.size.0,
            height: self.size.1,
            fps: self.fps,
            source: match self.files.len() {
                1 => format!("file {}", self.path.display()),
                n => format!("folder {} ({n} images, looping)", self.path.display()),
            },
        }
    }
}
