//! Cameras for Sinew: Linux webcams over V4L2 (MJPEG and YUYV), image files and a synthetic
//! pattern, each captured on its own named thread and handed over as a `sensor_msgs/Image`
//! (`rgb8`) or, passed through without decoding, a `sensor_msgs/CompressedImage`.
//!
//! ```no_run
//! use sinew_camera::{CameraSpec, CameraStream};
//!
//! let spec: CameraSpec = "front=v4l2:/dev/video0:640x480@30:mjpeg".parse()?;
//! let camera = CameraStream::open(&spec)?;
//! if let Some(frame) = camera.latest() {
//!     println!("frame {} captured {:?} ago", frame.sequence, frame.captured.elapsed());
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Specs (`NAME=SOURCE`) are described in [`spec`]. When no device exists, `file:` (a PNG or
//! JPEG, or a folder of them played in name order, looping) and `synthetic:` stand in.
//!
//! **V4L2** goes through the [`linuxvideo`](https://docs.rs/linuxvideo) crate: pure Rust over
//! libc ioctls, so it builds with no system library and no libclang (the `v4l` crate's
//! bindings run bindgen at build time). It is compiled on Linux only.
//!
//! **Stamps** are taken at capture: [`CapturedFrame::captured`] (an [`Instant`],
//! `CLOCK_MONOTONIC` on Linux) and [`CapturedFrame::captured_unix_ns`] (wall clock, also the
//! message's `header.stamp`, as ROS stamps are) are read together, once per frame. For V4L2
//! that is the moment `VIDIOC_DQBUF` returns the filled buffer, before any copy or decode:
//! linuxvideo 0.3 does not expose the driver's own buffer timestamp (`v4l2_buffer.timestamp`,
//! also `CLOCK_MONOTONIC`), so our stamp lags it by the time from the driver completing the
//! buffer to the capture thread waking (typically well under a millisecond on an idle core;
//! `uvcvideo` stamps at the start of the frame's transfer, so add the USB transfer time of
//! one frame). For files and the synthetic pattern, the moment the frame is due at the
//! requested rate.
//!
//! **Failures** never end the capture thread: a frame that does not decode is counted and
//! skipped; a device that disappears (or a panic inside the V4L2 crate) is counted, reported
//! in [`CameraStats::last_error`], and the device is reopened with back-off until it returns
//! or the stream is dropped.

use std::time::Instant;

use sinew_msgs::{CompressedImage, Image};

pub mod convert;
mod sources;
pub mod spec;
mod stream;
mod v4l2;

pub use convert::{payload_from_buffer, yuyv_to_rgb8, FrameError, RawFrame};
pub use spec::{CameraSpec, CaptureFormat, Output, Source, SpecError};
pub use stream::{CameraStats, CameraStream, StreamInfo};
pub use v4l2::{list_devices, DeviceInfo, FormatInfo, FrameSizes};

/// A frame's message.
#[derive(Debug, Clone, PartialEq)]
pub enum FramePayload {
    /// Decoded, `rgb8`.
    Image(Image),
    /// As captured (`jpeg` or `png`).
    Compressed(CompressedImage),
}

impl FramePayload {
    /// The message's header stamp, ns since the Unix epoch.
    pub fn stamp_ns(&self) -> i64 {
        match self {
            Self::Image(i) => i.header.stamp.as_nanos(),
            Self::Compressed(c) => c.header.stamp.as_nanos(),
        }
    }
}

/// One frame, stamped at capture.
#[derive(Debug, Clone, PartialEq)]
pub struct CapturedFrame {
    /// The message.
    pub payload: FramePayload,
    /// When it was captured, on the monotonic clock.
    pub captured: Instant,
    /// When it was captured, ns since the Unix epoch (the message's `header.stamp`).
    pub captured_unix_ns: u64,
    /// 0 for the first frame of the stream, then one more per frame delivered.
    pub sequence: u64,
}

/// A camera that cannot be opened. Each message is whole (the OS or image error is part of
/// it, not a separate `source`, so a chain printer does not repeat it).
#[derive(Debug, thiserror::Error)]
pub enum CameraError {
    /// The spec is inconsistent (e.g. YUYV with passthrough).
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// A V4L2 device that cannot be opened or configured.
    #[error("camera {camera}: V4L2 device {}: {what}: {error}", device.display())]
    Device {
        /// The camera's name.
        camera: String,
        /// The device node.
        device: std::path::PathBuf,
        /// What was being done.
        what: String,
        /// The OS error.
        error: std::io::Error,
    },
    /// A device or file that does not offer what the spec asks for.
    #[error("camera {camera}: {reason}")]
    Unsupported {
        /// The camera's name.
        camera: String,
        /// What is missing.
        reason: String,
    },
    /// An image file or folder that cannot be read.
    #[error("camera {camera}: {}: {error}", path.display())]
    File {
        /// The camera's name.
        camera: String,
        /// The file or folder.
        path: std::path::PathBuf,
        /// The OS error.
        error: std::io::Error,
    },
    /// The first frame of a file or synthetic source does not turn into a message.
    #[error("camera {camera}: {error}")]
    Frame {
        /// The camera's name.
        camera: String,
        /// Why.
        error: FrameError,
    },
    /// The capture thread could not be started.
    #[error("camera {camera}: starting the capture thread: {error}")]
    Thread {
        /// The camera's name.
        camera: String,
        /// The OS error.
        error: std::io::Error,
    },
}
