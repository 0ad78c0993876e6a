//! V4L2 capture through `linuxvideo` (Linux only): listing devices, negotiating a format,
//! dequeuing buffers.
//!
//! Each buffer is stamped the moment `VIDIOC_DQBUF` returns it (see the crate docs for how
//! that relates to the driver's own timestamp), copied out (or, passing MJPEG through, copied
//! straight into the message) so the driver has it back at once, then converted by
//! [`crate::payload_from_buffer`] outside the dequeue.

use std::path::PathBuf;

use crate::spec::CaptureFormat;

/// A V4L2 capture device and what it offers.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceInfo {
    /// The device node.
    pub path: PathBuf,
    /// The card's name (e.g. `HD Pro Webcam C920`).
    pub card: String,
    /// The driver (e.g. `uvcvideo`).
    pub driver: String,
    /// Where it is attached (e.g. `usb-0000:00:14.0-1`).
    pub bus: String,
    /// Its pixel formats.
    pub formats: Vec<FormatInfo>,
}

/// One pixel format of a device.
#[derive(Debug, Clone, PartialEq)]
pub struct FormatInfo {
    /// The fourcc, e.g. `MJPG`.
    pub fourcc: String,
    /// The driver's description.
    pub description: String,
    /// The spec's name for it when Sinew can capture it (`mjpeg`, `yuyv`).
    pub capture: Option<CaptureFormat>,
    /// Its frame sizes.
    pub sizes: FrameSizes,
}

/// The frame sizes of a format.
#[derive(Debug, Clone, PartialEq)]
pub enum FrameSizes {
    /// A list of sizes, each with its frame rates (frames per second).
    Discrete(Vec<(u32, u32, Vec<f64>)>),
    /// Any size in a range, as the driver describes it.
    Range(String),
    /// The driver did not say.
    Unknown(String),
}

#[cfg(target_os = "linux")]
pub use linux::list_devices;
#[cfg(target_os = "linux")]
pub(crate) use linux::open;

/// The V4L2 capture devices (none: V4L2 is Linux's).
#[cfg(not(target_os = "linux"))]
pub fn list_devices() -> Result<Vec<DeviceInfo>, crate::CameraError> {
    Ok(Vec::new())
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn open(
    spec: &crate::CameraSpec,
    _device: &std::path::Path,
    _format: Option<CaptureFormat>,
) -> Result<Box<dyn crate::stream::Capture>, crate::CameraError> {
    Err(crate::CameraError::Unsupported {
        camera: spec.name.clone(),
        reason: "V4L2 cameras need Linux; use a file: or synthetic: source".into(),
    })
}

fn capture_format(fourcc: [u8; 4]) -> Option<CaptureFormat> {
    match &fourcc {
        b"MJPG" => Some(CaptureFormat::Mjpeg),
        b"YUYV" => Some(CaptureFormat::Yuyv),
        _ => None,
    }
}

fn fourcc_str(fourcc: [u8; 4]) -> String {
    String::from_utf8_lossy(&fourcc).trim_end().to_owned()
}

#[cfg(target_os = "linux")]
mod linux {
    use std::io;
    use std::panic::{catch_unwind, AssertUnwindSafe};
    use std::path::{Path, PathBuf};
    use std::time::Duration;

    use linuxvideo::format::{FrameIntervals, FrameSizes as LvSizes, PixFormat};
    use linuxvideo::stream::ReadStream;
    use linuxvideo::{BufType, CapabilityFlags, Device, Fract};
    use rustix::event::{poll, PollFd, PollFlags, Timespec};
    use sinew_msgs::Header;

    use super::{capture_format, fourcc_str, DeviceInfo, FormatInfo, FrameSizes};
    use crate::convert::{payload_from_buffer, FrameError, RawFrame};
    use crate::spec::{CameraSpec, CaptureFormat, Output};
    use crate::stream::{stamp_now, Capture, CaptureError, Grab, Next, StreamInfo};
    use crate::{CameraError, FramePayload};

    /// How long one wait for a frame lasts before the thread looks for a stop.
    const POLL: Timespec = Timespec {
        tv_sec: 0,
        tv_nsec: 100_000_000,
    };

    /// The V4L2 capture devices on this machine (video capture nodes only: a UVC camera's
    /// metadata node is left out). Devices that cannot be opened or queried are logged and
    /// skipped.
    pub fn list_devices() -> Result<Vec<DeviceInfo>, CameraError> {
        let devices = linuxvideo::list().map_err(|error| CameraError::File {
            camera: "list".into(),
            path: "/dev".into(),
            error,
        })?;
        let mut out = Vec::new();
        for dev in devices {
            let info = dev.and_then(|d| {
                catch_unwind(AssertUnwindSafe(|| describe(&d))).unwrap_or_else(|_| {
                    Err(io::Error::other("the V4L2 crate panicked querying it"))
                })
            });
            match info {
                Ok(Some(i)) => out.push(i),
                Ok(None) => {}
                Err(e) => tracing::warn!("skipping a V4L2 device: {e}"),
            }
        }
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    fn describe(d: &Device) -> io::Result<Option<DeviceInfo>> {
        let caps = d.capabilities()?;
        if !caps
            .device_capabilities()
            .contains(CapabilityFlags::VIDEO_CAPTURE)
        {
            return Ok(None);
        }
        let mut formats = Vec::new();
        for f in d.formats(BufType::VIDEO_CAPTURE) {
            let f = f?;
            let pf = f.pixel_format();
            let sizes = match d.frame_sizes(pf) {
                Ok(LvSizes::Discrete(list)) => FrameSizes::Discrete(
                    list.iter()
                        .map(|s| {
                            let fps = d
                                .frame_intervals(pf, s.width(), s.height())
                                .map(|iv| rates(&iv))
                                .unwrap_or_default();
                            (s.width(), s.height(), fps)
                        })
                        .collect(),
                ),
                Ok(LvSizes::Stepwise(s) | LvSizes::Continuous(s)) => FrameSizes::Range(format!(
                    "{}x{} to {}x{} in steps of {}x{}",
                    s.min_width(),
                    s.min_height(),
                    s.max_width(),
                    s.max_height(),
                    s.step_width(),
                    s.step_height()
                )),
                Err(e) => FrameSizes::Unknown(e.to_string()),
            };
            formats.push(FormatInfo {
                fourcc: fourcc_str(pf.as_fourcc()),
                description: f.description().to_owned(),
                capture: capture_format(pf.as_fourcc()),
                sizes,
            });
        }
        Ok(Some(DeviceInfo {
            path: d.path()?,
            card: caps.card().to_owned(),
            driver: caps.driver().to_owned(),
            bus: caps.bus_info().to_owned(),
            formats,
        }))
    }

    fn fps_of(interval: &Fract) -> f64 {
        match interval.numerator() {
            0 => 0.0,
            n => f64::from(interval.denominator()) / f64::from(n),
        }
    }

    fn rates(iv: &FrameIntervals) -> Vec<f64> {
        match iv {
            FrameIntervals::Discrete(list) => list.iter().map(|i| fps_of(i.fract())).collect(),
            FrameIntervals::Stepwise(s) | FrameIntervals::Continuous(s) => {
                vec![fps_of(s.min()), fps_of(s.max())]
            }
        }
    }

    /// What a capture was negotiated to.
    #[derive(Clone, Copy)]
    struct Negotiated {
        format: CaptureFormat,
        width: u32,
        height: u32,
        stride: u32,
        fps: f64,
    }

    pub(crate) struct V4l2Source {
        camera: String,
        frame_id: String,
        device: PathBuf,
        want: Option<CaptureFormat>,
        spec: CameraSpec,
        stream: Option<ReadStream>,
        neg: Negotiated,
    }

    pub(crate) fn open(
        spec: &CameraSpec,
        device: &Path,
        format: Option<CaptureFormat>,
    ) -> Result<Box<dyn Capture>, CameraError> {
        let (stream, neg) = catch_unwind(AssertUnwindSafe(|| start(spec, device, format)))
            .unwrap_or_else(|_| {
                Err(CameraError::Unsupported {
                    camera: spec.name.clone(),
                    reason: format!(
                        "the V4L2 crate panicked opening {} (see the message above)",
                        device.display()
                    ),
                })
            })?;
        Ok(Box::new(V4l2Source {
            camera: spec.name.clone(),
            frame_id: spec.frame_id(),
            device: device.to_owned(),
            want: format,
            spec: spec.clone(),
            stream: Some(stream),
            neg,
        }))
    }

    /// Opens `device`, picks and sets the format, size and rate, and starts streaming.
    fn start(
        spec: &CameraSpec,
        device: &Path,
        want: Option<CaptureFormat>,
    ) -> Result<(ReadStream, Negotiated), CameraError> {
        let camera = spec.name.clone();
        let dev_err = |what: &str| {
            let what = what.to_owned();
            let camera = camera.clone();
            move |error: io::Error| CameraError::Device {
                camera,
                device: device.to_owned(),
                what,
                error,
            }
        };
        let unsupported = |reason: String| CameraError::Unsupported {
            camera: camera.clone(),
            reason,
        };
        let d = Device::open(device).map_err(|e| {
            let what = match e.kind() {
                io::ErrorKind::NotFound => {
                    "opening (no such device: is the camera plugged in? `sinew camera list` shows what exists)"
                }
                io::ErrorKind::PermissionDenied => {
                    "opening (permission denied: is this user in the `video` group?)"
                }
                _ if rustix::io::Errno::from_io_error(&e) == Some(rustix::io::Errno::NOTTY) => {
                    "opening (not a V4L2 device)"
                }
                _ => "opening",
            };
            dev_err(what)(e)
        })?;
        let caps = d.capabilities().map_err(dev_err("querying capabilities"))?;
        if !caps
            .device_capabilities()
            .contains(CapabilityFlags::VIDEO_CAPTURE)
        {
            return Err(unsupported(format!(
                "{} ({}) is not a video capture device (a UVC camera's second node carries metadata; try the other /dev/video*)",
                device.display(),
                caps.card()
            )));
        }
        let offered = d
            .formats(BufType::VIDEO_CAPTURE)
            .collect::<io::Result<Vec<_>>>()
            .map_err(dev_err("listing formats"))?;
        let names: Vec<String> = offered
            .iter()
            .map(|f| fourcc_str(f.pixel_format().as_fourcc()))
            .collect();
        let find = |cf: CaptureFormat| {
            offered
                .iter()
                .map(|f| f.pixel_format())
                .find(|p| p.as_fourcc() == cf.fourcc())
        };
        let order: &[CaptureFormat] = match (want, spec.output) {
            (Some(f), _) => &[f][..],
            (None, Output::Passthrough) => &[CaptureFormat::Mjpeg],
            (None, Output::Decoded) => &[CaptureFormat::Yuyv, CaptureFormat::Mjpeg],
        };
        let (format, pf) = order
            .iter()
            .find_map(|&f| find(f).map(|p| (f, p)))
            .ok_or_else(|| {
                let asked: Vec<&str> = order.iter().map(|f| f.name()).collect();
                unsupported(format!(
                    "{} offers {} but not {}",
                    device.display(),
                    names.join(", "),
                    asked.join(" or ")
                ))
            })?;
        let capture = d
            .video_capture(PixFormat::new(spec.width, spec.height, pf))
            .map_err(dev_err("setting the format"))?;
        let got = capture.format();
        let (got_fourcc, got_w, got_h, got_stride) = (
            got.pixel_format().as_fourcc(),
            got.width(),
            got.height(),
            got.bytes_per_line(),
        );
        if got_fourcc != format.fourcc() {
            return Err(unsupported(format!(
                "asked {} for {}, the driver chose {}",
                device.display(),
                format.name(),
                fourcc_str(got_fourcc)
            )));
        }
        if (got_w, got_h) != (spec.width, spec.height) {
            tracing::warn!(
                camera,
                "asked for {}x{}, the driver chose {}x{}",
                spec.width,
                spec.height,
                got_w,
                got_h
            );
        }
        let den = (spec.fps * 1000.0).round().max(1.0) as u32;
        let fps = match capture.set_frame_interval(Fract::new(1000, den)) {
            Ok(iv) if iv.numerator() > 0 => fps_of(&iv),
            Ok(_) => spec.fps,
            Err(e) => {
                tracing::warn!(camera, "the driver did not take {} fps: {e}", spec.fps);
                spec.fps
            }
        };
        let neg = Negotiated {
            format,
            width: got_w,
            height: got_h,
            stride: got_stride,
            fps,
        };
        let stream = capture
            .into_stream()
            .map_err(dev_err("starting the stream"))?;
        Ok((stream, neg))
    }

    /// What one dequeue gave: the message already made (passthrough), or the bytes to
    /// convert once the buffer is back with the driver.
    enum Dequeued {
        Done(FramePayload),
        Copied(Vec<u8>, Header),
    }

    impl Capture for V4l2Source {
        fn next(&mut self) -> Result<Next, CaptureError> {
            let stream = self
                .stream
                .as_mut()
                .ok_or_else(|| CaptureError::Source("the stream is closed".into()))?;
            let mut fds = [PollFd::new(&*stream, PollFlags::IN)];
            let ready = poll(&mut fds, Some(&POLL))
                .map_err(|e| CaptureError::Source(format!("waiting for a frame: {e}")))?;
            let revents = fds[0].revents();
            if ready == 0 {
                return Ok(Next::Wait(Duration::ZERO));
            }
            if revents.intersects(PollFlags::ERR | PollFlags::HUP | PollFlags::NVAL)
                && !revents.contains(PollFlags::IN)
            {
                self.stream = None;
                return Err(CaptureError::Source(format!(
                    "{} stopped delivering frames (poll: {revents:?}; unplugged?)",
                    self.device.display()
                )));
            }
            let neg = self.neg;
            let output = self.spec.output;
            let frame_id = &self.frame_id;
            let dequeued = stream.dequeue(|view| {
                // The stamp: the buffer was just handed back by the driver.
                let (captured, unix_ns, header) = stamp_now(frame_id);
                if view.is_error() {
                    return Ok((
                        captured,
                        unix_ns,
                        Err(FrameError::BadBuffer("a buffer flagged as corrupt")),
                    ));
                }
                let d = match (neg.format, output) {
                    (CaptureFormat::Mjpeg, Output::Passthrough) => {
                        let raw = RawFrame {
                            data: &view,
                            format: neg.format,
                            width: neg.width,
                            height: neg.height,
                            stride: neg.stride,
                        };
                        payload_from_buffer(&raw, output, header).map(Dequeued::Done)
                    }
                    _ => Ok(Dequeued::Copied(view.to_vec(), header)),
                };
                Ok((captured, unix_ns, d))
            });
            let (captured, captured_unix_ns, d) = match dequeued {
                Ok(x) => x,
                Err(e) => {
                    self.stream = None;
                    return Err(CaptureError::Source(format!(
                        "dequeuing a frame from {}: {e}",
                        self.device.display()
                    )));
                }
            };
            let payload = match d.map_err(CaptureError::Frame)? {
                Dequeued::Done(p) => p,
                Dequeued::Copied(bytes, header) => {
                    let raw = RawFrame {
                        data: &bytes,
                        format: neg.format,
                        width: neg.width,
                        height: neg.height,
                        stride: neg.stride,
                    };
                    payload_from_buffer(&raw, output, header).map_err(CaptureError::Frame)?
                }
            };
            Ok(Next::Frame(Grab {
                payload,
                captured,
                captured_unix_ns,
            }))
        }

        fn reopen(&mut self) -> Result<(), String> {
            self.stream = None;
            let (stream, neg) =
                start(&self.spec, &self.device, self.want).map_err(|e| e.to_string())?;
            if (neg.width, neg.height, neg.format)
                != (self.neg.width, self.neg.height, self.neg.format)
            {
                tracing::warn!(
                    camera = self.camera,
                    "reopened as {}x{} {}",
                    neg.width,
                    neg.height,
                    neg.format.name()
                );
            }
            self.stream = Some(stream);
            self.neg = neg;
            Ok(())
        }

        fn info(&self) -> StreamInfo {
            StreamInfo {
                width: self.neg.width,
                height: self.neg.height,
                fps: self.neg.fps,
                source: format!(
                    "v4l2 {} {}",
                    self.device.display(),
                    fourcc_str(self.neg.format.fourcc())
                ),
            }
        }
    }
}
