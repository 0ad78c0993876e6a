//! [`Viz`] on its own thread (`sinew-rerun`), fed through a bounded channel.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{bounded, Sender, TrySendError};
use sinew_msgs::AnyMessage;
use sinew_robot::RobotDescription;

use crate::{Sink, Stream, Viz, VizStats};

/// One item for the rerun thread.
#[derive(Debug)]
pub enum VizItem {
    /// Close the current stream (if any) and open another.
    Open {
        /// The robot whose links and cameras are drawn.
        robot: Box<RobotDescription>,
        /// Recording name shown in the viewer.
        name: String,
        /// File or viewer.
        sink: Sink,
    },
    /// A message of one of the robot's streams.
    Message {
        /// What it is.
        stream: Stream,
        /// Receive (or simulated) time, ns.
        time_ns: u64,
        /// The message.
        msg: AnyMessage,
    },
    /// Close the current stream (the `.rrd` is complete once the thread has handled this).
    Close,
}

/// What the rerun thread did, as reported by [`VizThread::close`].
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct VizReport {
    /// Streams closed: name and counters.
    pub streams: Vec<(String, VizStats)>,
    /// Items the caller could not hand over because the channel was full.
    pub dropped: u64,
    /// Why the thread stopped logging, if it did.
    pub error: Option<String>,
}

/// The rerun logger thread.
#[derive(Debug)]
pub struct VizThread {
    tx: Option<Sender<VizItem>>,
    handle: Option<JoinHandle<VizReport>>,
    dropped: u64,
    stopped: Arc<AtomicBool>,
}

impl VizThread {
    /// Starts the thread `sinew-rerun` with a channel of `capacity` items.
    pub fn spawn(capacity: usize) -> std::io::Result<Self> {
        let (tx, rx) = bounded::<VizItem>(capacity.max(1));
        let stopped = Arc::new(AtomicBool::new(false));
        let flag = stopped.clone();
        let handle = std::thread::Builder::new()
            .name("sinew-rerun".into())
            .spawn(move || {
                let mut report = VizReport::default();
                let mut current: Option<(String, Viz)> = None;
                let close = |report: &mut VizReport, cur: &mut Option<(String, Viz)>| {
                    if let Some((name, v)) = cur.take() {
                        match v.finish() {
                            Ok(s) => report.streams.push((name, s)),
                            Err(e) => report.error = Some(e.to_string()),
                        }
                    }
                };
                for item in rx.iter() {
                    if report.error.is_some() {
                        continue; // drain
                    }
                    match item {
                        VizItem::Open { robot, name, sink } => {
                            close(&mut report, &mut current);
                            match Viz::new(*robot, &name, &sink) {
                                Ok(v) => current = Some((name, v)),
                                Err(e) => report.error = Some(e.to_string()),
                            }
                        }
                        VizItem::Message {
                            stream,
                            time_ns,
                            msg,
                        } => {
                            if let Some((_, v)) = current.as_mut() {
                                if let Err(e) = v.log(&stream, time_ns, &msg) {
                                    report.error = Some(e.to_string());
                                }
                            }
                        }
                        VizItem::Close => close(&mut report, &mut current),
                    }
                    if let Some(e) = &report.error {
                        tracing::error!("rerun logging stopped: {e}");
                        flag.store(true, Ordering::SeqCst);
                        // Keep what was logged: finish the stream.
                        if let Some((_, v)) = current.take() {
                            let _ = v.finish();
                        }
                    }
                }
                close(&mut report, &mut current);
                report
            })?;
        Ok(Self {
            tx: Some(tx),
            handle: Some(handle),
            dropped: 0,
            stopped,
        })
    }

    /// Hands an item over without waiting; `false` (and counted) when the channel is full or the
    /// thread has stopped. For real-time loops.
    pub fn send(&mut self, item: VizItem) -> bool {
        let Some(tx) = &self.tx else { return false };
        if self.has_stopped() {
            self.dropped += 1;
            return false;
        }
        match tx.try_send(item) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.dropped += 1;
                false
            }
        }
    }

    /// Hands an item over, waiting for room (stream boundaries, and lockstep simulation where
    /// nothing may be dropped).
    pub fn send_blocking(&mut self, item: VizItem) -> bool {
        self.tx.as_ref().is_some_and(|tx| tx.send(item).is_ok())
    }

    /// Whether logging stopped on an error.
    pub fn has_stopped(&self) -> bool {
        self.stopped.load(Ordering::SeqCst)
    }

    /// Items dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Finishes the open stream and ends the thread.
    pub fn close(mut self) -> VizReport {
        self.finish_thread()
    }

    fn finish_thread(&mut self) -> VizReport {
        self.tx = None;
        let mut report = self
            .handle
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_else(|| VizReport {
                error: Some("the rerun thread panicked".into()),
                ..Default::default()
            });
        report.dropped = self.dropped;
        report
    }
}

impl Drop for VizThread {
    /// Dropped without `close` (an error path), the thread still finishes its file.
    fn drop(&mut self) {
        if self.handle.is_some() {
            let report = self.finish_thread();
            if let Some(e) = report.error {
                tracing::error!("rerun: {e}");
            }
        }
    }
}
