//! Cameras on the bus (`sinew camera serve`): each camera of `sinew-camera` published on the
//! keys a robot uses, `<ns>/camera/<name>/image_raw` (`sensor_msgs/Image`, rgb8) or, passed
//! through without decoding, `<ns>/camera/<name>/image_raw/compressed`
//! (`sensor_msgs/CompressedImage`).
//!
//! Each camera captures on its own thread (`camera-<name>`) and is published from another
//! (`camera-pub-<name>`) that wakes on each new frame, so a slow publish never holds up
//! capture and one camera never waits for another. [`CameraOutlet`] is the piece a robot's
//! serving side can reuse: a camera and its publisher.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::Serialize;
use sinew_bus::{Bus, Publisher};
use sinew_camera::{CameraSpec, CameraStats, CameraStream, FramePayload, Output};
use sinew_msgs::keys::RobotKeys;
use sinew_msgs::{CompressedImage, Image};

/// How cameras are served.
#[derive(Debug, Clone)]
pub struct CameraServeOptions {
    /// The robot namespace the keys are under (e.g. `so101`).
    pub namespace: String,
    /// Stop after this long, s (`None`: until stopped).
    pub duration_s: Option<f64>,
    /// A status line this often, s (`None`: only at the start and the end).
    pub status_every_s: Option<f64>,
}

/// What one camera did.
#[derive(Debug, Clone, Serialize)]
pub struct CameraReport {
    /// The camera's name.
    pub name: String,
    /// The key it was published on.
    pub key: String,
    /// Frames published.
    pub published: u64,
    /// Frames captured.
    pub captured: u64,
    /// Frames the publisher never saw (it was slower than the camera).
    pub dropped: u64,
    /// Frames lost and source failures.
    pub errors: u64,
    /// Times the source was reopened.
    pub reopened: u64,
    /// The last error.
    pub last_error: Option<String>,
}

/// What `camera serve` did.
#[derive(Debug, Clone, Serialize)]
pub struct CameraServeReport {
    /// One entry per camera, in the order given.
    pub cameras: Vec<CameraReport>,
    /// Wall time, s.
    pub wall_s: f64,
}

enum Sink {
    Image(Publisher<Image>),
    Compressed(Publisher<CompressedImage>),
}

/// A camera and the publisher of its frames on a robot's keys.
pub struct CameraOutlet {
    stream: CameraStream,
    sink: Sink,
    key: String,
    last: Mutex<Option<u64>>,
    published: AtomicU64,
}

impl std::fmt::Debug for CameraOutlet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CameraOutlet")
            .field("key", &self.key)
            .field("published", &self.published())
            .finish_non_exhaustive()
    }
}

impl CameraOutlet {
    /// Opens the camera and its publisher: `keys.camera_image(name)` for decoded frames,
    /// `keys.camera_compressed(name)` for passthrough.
    pub fn open(spec: &CameraSpec, bus: &Bus, keys: &RobotKeys) -> Result<Self> {
        let stream = CameraStream::open(spec)?;
        let (key, sink) = match spec.output {
            Output::Decoded => {
                let key = keys.camera_image(&spec.name);
                let p = bus.publisher(&key)?;
                (key, Sink::Image(p))
            }
            Output::Passthrough => {
                let key = keys.camera_compressed(&spec.name);
                let p = bus.publisher(&key)?;
                (key, Sink::Compressed(p))
            }
        };
        Ok(Self {
            stream,
            sink,
            key,
            last: Mutex::new(None),
            published: AtomicU64::new(0),
        })
    }

    /// The camera.
    pub fn stream(&self) -> &CameraStream {
        &self.stream
    }

    /// The key frames go out on.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Publishes the newest frame once one newer than the last published arrives, waiting up
    /// to `timeout`; true when one was published. Meant for one publishing thread per
    /// camera (two would each publish every frame).
    pub fn publish_next(&self, timeout: Duration) -> Result<bool> {
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(frame) = self.stream.wait_newer(*last, timeout) else {
            return Ok(false);
        };
        *last = Some(frame.sequence);
        drop(last);
        match (&self.sink, &frame.payload) {
            (Sink::Image(p), FramePayload::Image(m)) => p.put(m)?,
            (Sink::Compressed(p), FramePayload::Compressed(m)) => p.put(m)?,
            // The camera was opened with the output its publisher was made for.
            _ => anyhow::bail!("camera {}: frame of the wrong kind", self.stream.name()),
        }
        self.published.fetch_add(1, Ordering::Relaxed);
        Ok(true)
    }

    /// Frames published so far.
    pub fn published(&self) -> u64 {
        self.published.load(Ordering::Relaxed)
    }

    fn report(&self) -> CameraReport {
        let CameraStats {
            captured,
            errors,
            dropped,
            reopened,
            last_error,
        } = self.stream.stats();
        CameraReport {
            name: self.stream.name().to_owned(),
            key: self.key.clone(),
            published: self.published(),
            captured,
            dropped,
            errors,
            reopened,
            last_error,
        }
    }
}

/// How long a publishing thread waits for a frame before it looks for a stop.
const WAKE: Duration = Duration::from_millis(100);

/// Publishes every camera of `specs` on `opts.namespace`'s keys until `stop` returns true or
/// the duration passes. All cameras are opened before any is published: one that cannot be
/// opened is an error naming it.
pub fn serve_cameras(
    specs: &[CameraSpec],
    bus: &Bus,
    opts: &CameraServeOptions,
    on_line: &mut dyn FnMut(String),
    stop: &dyn Fn() -> bool,
) -> Result<CameraServeReport> {
    anyhow::ensure!(!specs.is_empty(), "no camera given (--camera NAME=SOURCE)");
    let keys = RobotKeys::new(&opts.namespace)?;
    let mut names = std::collections::HashSet::new();
    for s in specs {
        anyhow::ensure!(names.insert(&s.name), "camera {:?} given twice", s.name);
    }
    let outlets = specs
        .iter()
        .map(|s| CameraOutlet::open(s, bus, &keys).with_context(|| format!("opening {s}")))
        .collect::<Result<Vec<_>>>()?;
    for o in &outlets {
        let i = o.stream.info();
        on_line(format!(
            "camera {}: {} {}x{} @ {} fps -> {}",
            o.stream.name(),
            i.source,
            i.width,
            i.height,
            i.fps,
            o.key
        ));
    }
    let start = Instant::now();
    let done = AtomicBool::new(false);
    let failure = std::thread::scope(|scope| -> Result<()> {
        let mut handles = Vec::new();
        for o in &outlets {
            let done = &done;
            let name = format!("camera-pub-{}", o.stream.name());
            let h = std::thread::Builder::new()
                .name(name)
                .spawn_scoped(scope, move || -> Result<()> {
                    while !done.load(Ordering::Relaxed) {
                        o.publish_next(WAKE)?;
                    }
                    Ok(())
                })
                .context("starting a camera's publishing thread")?;
            handles.push(h);
        }
        let every = opts.status_every_s.map(Duration::from_secs_f64);
        let mut next_status = every;
        let end = opts.duration_s.map(Duration::from_secs_f64);
        while !stop()
            && end.is_none_or(|e| start.elapsed() < e)
            && !handles.iter().any(|h| h.is_finished())
        {
            // The stop flag (Ctrl-C) is a flag to poll; the cameras do not wait on this.
            std::thread::sleep(Duration::from_millis(20));
            if let (Some(due), Some(every)) = (next_status, every) {
                if start.elapsed() >= due {
                    next_status = Some(due + every);
                    on_line(status_line(&outlets, start.elapsed().as_secs_f64()));
                }
            }
        }
        done.store(true, Ordering::Relaxed);
        for h in handles {
            match h.join() {
                Ok(r) => r?,
                Err(_) => anyhow::bail!("a camera's publishing thread panicked"),
            }
        }
        Ok(())
    });
    let report = CameraServeReport {
        cameras: outlets.iter().map(CameraOutlet::report).collect(),
        wall_s: start.elapsed().as_secs_f64(),
    };
    failure?;
    Ok(report)
}

/// `camera serve: 10 s; front 300 published (30.0/s), 0 dropped, 0 errors; ...`
fn status_line(outlets: &[CameraOutlet], elapsed_s: f64) -> String {
    let mut line = format!("camera serve: {elapsed_s:.0} s");
    for o in outlets {
        let r = o.report();
        line.push_str(&format!(
            "; {} {} published ({:.1}/s), {} dropped, {} errors",
            r.name,
            r.published,
            r.published as f64 / elapsed_s.max(1e-9),
            r.dropped,
            r.errors
        ));
        if let Some(e) = r.last_error.filter(|_| r.errors > 0) {
            line.push_str(&format!(" (last: {e})"));
        }
    }
    line
}
