//! The capture thread of one camera and the latest-frame slot it fills.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sinew_msgs::{Header, Time};

use crate::convert::FrameError;
use crate::spec::{CameraSpec, Source};
use crate::{sources, v4l2, CameraError, CapturedFrame, FramePayload};

/// A frame a source produced, before it is numbered.
pub(crate) struct Grab {
    pub payload: FramePayload,
    pub captured: Instant,
    pub captured_unix_ns: u64,
}

/// The clocks read together at capture, and the header stamped with them.
pub(crate) fn stamp_now(frame_id: &str) -> (Instant, u64, Header) {
    let captured = Instant::now();
    let unix_ns = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    let stamp = Time::from_nanos(i64::try_from(unix_ns).unwrap_or(i64::MAX));
    (captured, unix_ns, Header::new(stamp, frame_id))
}

/// What a source's `next` did.
pub(crate) enum Next {
    /// A frame.
    Frame(Grab),
    /// Nothing yet: the next frame is due in this long (zero: ask again now, the source has
    /// already waited).
    Wait(Duration),
}

/// Why a source's `next` gave no frame.
pub(crate) enum CaptureError {
    /// This frame is lost; the source goes on.
    Frame(FrameError),
    /// The source is gone (device unplugged, folder emptied): reopen it.
    Source(String),
}

/// A camera source, driven by the capture thread.
pub(crate) trait Capture: Send {
    /// The next frame, or how long until one is due.
    fn next(&mut self) -> Result<Next, CaptureError>;
    /// Opens the source again after [`CaptureError::Source`].
    fn reopen(&mut self) -> Result<(), String>;
    /// What was negotiated.
    fn info(&self) -> StreamInfo;
}

/// What a camera delivers, as negotiated when it opened.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamInfo {
    /// Width, pixels (0: varies, a folder of images of different sizes).
    pub width: u32,
    /// Height, pixels.
    pub height: u32,
    /// Frames per second asked for (V4L2: as the driver accepted it, when it says).
    pub fps: f64,
    /// How frames are captured, e.g. `v4l2 MJPG`, `synthetic`, `file (12 images)`.
    pub source: String,
}

/// What a camera's capture thread has done so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CameraStats {
    /// Frames delivered to the latest-frame slot.
    pub captured: u64,
    /// Frames lost (corrupt buffers, undecodable images) and source failures.
    pub errors: u64,
    /// Frames replaced in the slot before any reader took them (the reader is slower than
    /// the camera; drops in the driver itself are not visible through linuxvideo).
    pub dropped: u64,
    /// Times the source was reopened after it failed.
    pub reopened: u64,
    /// The most recent error, if any.
    pub last_error: Option<String>,
}

struct Slot {
    frame: Option<CapturedFrame>,
    taken: bool,
}

struct Shared {
    slot: Mutex<Slot>,
    fresh: Condvar,
    stop: Mutex<bool>,
    stop_cv: Condvar,
    captured: AtomicU64,
    errors: AtomicU64,
    dropped: AtomicU64,
    reopened: AtomicU64,
    last_error: Mutex<Option<String>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing panics while holding these locks; if something did, the data is still whole.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    fn stopped(&self) -> bool {
        *lock(&self.stop)
    }

    /// Waits `d` unless a stop comes first; true when stopped.
    fn wait_stop(&self, d: Duration) -> bool {
        let guard = lock(&self.stop);
        let (guard, _) = self
            .stop_cv
            .wait_timeout_while(guard, d, |stop| !*stop)
            .unwrap_or_else(PoisonError::into_inner);
        *guard
    }

    fn store(&self, grab: Grab) {
        let mut slot = lock(&self.slot);
        // The drop is counted before the capture is published (release), and `stats` reads
        // `captured` first (acquire): whoever sees N frames captured sees every drop among them.
        if slot.frame.is_some() && !slot.taken {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
        let sequence = self.captured.fetch_add(1, Ordering::Release);
        slot.frame = Some(CapturedFrame {
            payload: grab.payload,
            captured: grab.captured,
            captured_unix_ns: grab.captured_unix_ns,
            sequence,
        });
        slot.taken = false;
        drop(slot);
        self.fresh.notify_all();
    }

    fn error(&self, camera: &str, msg: String) {
        let n = self.errors.fetch_add(1, Ordering::Relaxed) + 1;
        if n <= 5 || n.is_multiple_of(100) {
            tracing::warn!(camera, count = n, "{msg}");
        }
        *lock(&self.last_error) = Some(msg);
    }
}

/// One camera, captured on its own thread (`camera-<name>`). Dropping it stops the thread.
pub struct CameraStream {
    name: String,
    info: StreamInfo,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for CameraStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CameraStream")
            .field("name", &self.name)
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

impl CameraStream {
    /// Opens the camera (errors here are the spec's or the device's: missing, busy, no such
    /// format) and starts its capture thread.
    pub fn open(spec: &CameraSpec) -> Result<Self, CameraError> {
        spec.validate()?;
        let source: Box<dyn Capture> = match &spec.source {
            Source::V4l2 { device, format } => v4l2::open(spec, device, *format)?,
            Source::File { path } => Box::new(sources::FileSource::open(spec, path)?),
            Source::Synthetic => Box::new(sources::Synthetic::new(spec)?),
        };
        Self::start(&spec.name, source)
    }

    fn start(name: &str, mut source: Box<dyn Capture>) -> Result<Self, CameraError> {
        let info = source.info();
        let shared = Arc::new(Shared {
            slot: Mutex::new(Slot {
                frame: None,
                taken: false,
            }),
            fresh: Condvar::new(),
            stop: Mutex::new(false),
            stop_cv: Condvar::new(),
            captured: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            reopened: AtomicU64::new(0),
            last_error: Mutex::new(None),
        });
        let thread_shared = shared.clone();
        let camera = name.to_owned();
        let thread = std::thread::Builder::new()
            .name(format!("camera-{name}"))
            .spawn(move || capture_loop(&camera, source.as_mut(), &thread_shared))
            .map_err(|error| CameraError::Thread {
                camera: name.to_owned(),
                error,
            })?;
        Ok(Self {
            name: name.to_owned(),
            info,
            shared,
            thread: Some(thread),
        })
    }

    /// The newest frame (a clone: the pixels are shared, not copied), or `None` before the
    /// first.
    pub fn latest(&self) -> Option<CapturedFrame> {
        let mut slot = lock(&self.shared.slot);
        slot.taken = true;
        slot.frame.clone()
    }

    /// The newest frame once it is newer than `after` (a sequence number; `None`: any frame),
    /// waiting up to `timeout`; `None` when none came in time.
    pub fn wait_newer(&self, after: Option<u64>, timeout: Duration) -> Option<CapturedFrame> {
        let is_new = |slot: &Slot| match (&slot.frame, after) {
            (Some(f), Some(a)) => f.sequence > a,
            (Some(_), None) => true,
            (None, _) => false,
        };
        let slot = lock(&self.shared.slot);
        let (mut slot, _) = self
            .shared
            .fresh
            .wait_timeout_while(slot, timeout, |s| !is_new(s))
            .unwrap_or_else(PoisonError::into_inner);
        if !is_new(&slot) {
            return None;
        }
        slot.taken = true;
        slot.frame.clone()
    }

    /// Frames captured, errors, drops and reopens so far.
    pub fn stats(&self) -> CameraStats {
        let s = &self.shared;
        // `captured` before the others: see `Shared::store`.
        let captured = s.captured.load(Ordering::Acquire);
        CameraStats {
            captured,
            errors: s.errors.load(Ordering::Relaxed),
            dropped: s.dropped.load(Ordering::Relaxed),
            reopened: s.reopened.load(Ordering::Relaxed),
            last_error: lock(&s.last_error).clone(),
        }
    }

    /// The camera's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// What was negotiated when the camera opened.
    pub fn info(&self) -> &StreamInfo {
        &self.info
    }
}

impl Drop for CameraStream {
    fn drop(&mut self) {
        *lock(&self.shared.stop) = true;
        self.shared.stop_cv.notify_all();
        if let Some(t) = self.thread.take() {
            // The thread sees the stop within one poll (100 ms) or one frame's work.
            let _ = t.join();
        }
    }
}

const REOPEN_FIRST: Duration = Duration::from_millis(250);
const REOPEN_MAX: Duration = Duration::from_secs(5);

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| p.downcast_ref::<&str>().copied())
        .unwrap_or("(no message)")
        .to_owned()
}

/// The capture thread: frames into the slot until stopped; it never panics (a panic in the
/// source is caught, counted and treated as the source failing).
fn capture_loop(camera: &str, source: &mut dyn Capture, shared: &Shared) {
    while !shared.stopped() {
        let step = catch_unwind(AssertUnwindSafe(|| source.next())).unwrap_or_else(|p| {
            Err(CaptureError::Source(format!(
                "panicked: {}",
                panic_message(&*p)
            )))
        });
        match step {
            Ok(Next::Frame(grab)) => shared.store(grab),
            Ok(Next::Wait(d)) => {
                if !d.is_zero() && shared.wait_stop(d) {
                    return;
                }
            }
            Err(CaptureError::Frame(e)) => shared.error(camera, format!("frame lost: {e}")),
            Err(CaptureError::Source(e)) => {
                shared.error(camera, format!("source failed: {e}; reopening"));
                let mut backoff = REOPEN_FIRST;
                loop {
                    if shared.wait_stop(backoff) {
                        return;
                    }
                    let r = catch_unwind(AssertUnwindSafe(|| source.reopen()))
                        .unwrap_or_else(|p| Err(format!("panicked: {}", panic_message(&*p))));
                    match r {
                        Ok(()) => {
                            shared.reopened.fetch_add(1, Ordering::Relaxed);
                            tracing::info!(camera, "reopened");
                            break;
                        }
                        Err(e) => {
                            shared.error(camera, format!("reopening failed: {e}"));
                            backoff = (backoff * 2).min(REOPEN_MAX);
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sinew_msgs::Image;

    /// A source that fails on schedule: frame 1 is lost, frame 2 panics, frame 3 loses the
    /// device, and the first reopen fails.
    struct Flaky {
        calls: u32,
        reopens: u32,
    }

    impl Capture for Flaky {
        fn next(&mut self) -> Result<Next, CaptureError> {
            self.calls += 1;
            match self.calls {
                2 => Err(CaptureError::Frame(FrameError::BadBuffer("a test frame"))),
                3 => panic!("a bug in the V4L2 crate"),
                4 => Err(CaptureError::Source("unplugged".into())),
                _ => {
                    let (captured, captured_unix_ns, header) = stamp_now("test_optical");
                    Ok(Next::Frame(Grab {
                        payload: FramePayload::Image(Image::rgb8(header, 1, 1, vec![0, 0, 0])),
                        captured,
                        captured_unix_ns,
                    }))
                }
            }
        }

        fn reopen(&mut self) -> Result<(), String> {
            self.reopens += 1;
            match self.reopens {
                1 => Err("still unplugged".into()),
                _ => Ok(()),
            }
        }

        fn info(&self) -> StreamInfo {
            StreamInfo {
                width: 1,
                height: 1,
                fps: 0.0,
                source: "flaky".into(),
            }
        }
    }

    #[test]
    fn a_failing_source_is_counted_reopened_and_never_ends_the_thread() {
        let cam = CameraStream::start(
            "flaky",
            Box::new(Flaky {
                calls: 0,
                reopens: 0,
            }),
        )
        .expect("starts");
        // Frames keep coming after the lost frame, the panic (reopened after one failed
        // reopen: back-off 250 ms then 500 ms) and the unplug (reopened).
        let mut last = None;
        let deadline = Instant::now() + Duration::from_secs(20);
        while cam.stats().reopened < 2 || last.is_none_or(|s| s < 3) {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "{:?}", cam.stats());
            if let Some(f) = cam.wait_newer(last, left) {
                last = Some(f.sequence);
            }
        }
        let s = cam.stats();
        // The lost frame, the panic, the failed reopen, the unplug.
        assert_eq!(s.errors, 4, "{s:?}");
        assert_eq!(s.reopened, 2, "{s:?}");
        assert!(s.last_error.is_some());
        drop(cam); // joins the thread: it is still alive and sees the stop
    }
}
