//! [`Viz`] on its own thread (`sinew-rerun`), fed through a bounded channel.

use sinew_core::handoff::{Closed, Consumer, Handoff};
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

/// What the rerun thread does to each message before logging it (compress a colour image,
/// convert depth), on that thread: the caller's thread only hands messages over. `None`
/// leaves the message out.
pub type Prepare = Box<dyn FnMut(&Stream, AnyMessage) -> Option<AnyMessage> + Send>;

/// The rerun logger as the consumer of a hand-off thread: one stream at a time; a logging
/// error finishes the stream (what was logged stays readable) and stops the consumer.
#[derive(Default)]
pub struct VizConsumer {
    current: Option<(String, Viz)>,
    streams: Vec<(String, VizStats)>,
    prepare: Option<Prepare>,
}

impl std::fmt::Debug for VizConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VizConsumer")
            .field("current", &self.current)
            .field("streams", &self.streams)
            .field("prepare", &self.prepare.is_some())
            .finish()
    }
}

impl VizConsumer {
    /// A consumer that passes each message through `prepare` before logging it.
    pub fn with_prepare(prepare: Prepare) -> Self {
        Self {
            prepare: Some(prepare),
            ..Self::default()
        }
    }

    fn close_current(&mut self) -> Result<(), String> {
        if let Some((name, v)) = self.current.take() {
            let stats = v.finish().map_err(|e| e.to_string())?;
            self.streams.push((name, stats));
        }
        Ok(())
    }
}

impl Consumer for VizConsumer {
    type Item = VizItem;
    type Report = Vec<(String, VizStats)>;

    fn consume(&mut self, item: VizItem) -> Result<(), String> {
        match item {
            VizItem::Open { robot, name, sink } => {
                self.close_current()?;
                let v = Viz::new(*robot, &name, &sink).map_err(|e| e.to_string())?;
                self.current = Some((name, v));
                Ok(())
            }
            VizItem::Message {
                stream,
                time_ns,
                msg,
            } => {
                let Some((_, v)) = self.current.as_mut() else {
                    return Ok(());
                };
                let msg = match self.prepare.as_mut() {
                    Some(p) => match p(&stream, msg) {
                        Some(m) => m,
                        None => return Ok(()),
                    },
                    None => msg,
                };
                if let Err(e) = v.log(&stream, time_ns, &msg) {
                    // Keep what was logged: finish the stream.
                    if let Some((_, v)) = self.current.take() {
                        let _ = v.finish();
                    }
                    return Err(e.to_string());
                }
                Ok(())
            }
            VizItem::Close => self.close_current(),
        }
    }

    fn close(&mut self) -> Result<(), String> {
        self.close_current()
    }

    fn finish(self) -> Vec<(String, VizStats)> {
        self.streams
    }
}

/// The rerun logger on the thread `sinew-rerun`, fed through a bounded channel.
pub type VizThread = Handoff<VizConsumer>;

/// Starts the rerun thread with a channel of `capacity` items; messages are logged as they
/// come.
pub fn spawn_viz(capacity: usize) -> std::io::Result<VizThread> {
    Handoff::spawn("sinew-rerun", capacity, VizConsumer::default())
}

/// Starts the rerun thread with a channel of `capacity` items; each message goes through
/// `prepare` on that thread first.
pub fn spawn_viz_with(capacity: usize, prepare: Prepare) -> std::io::Result<VizThread> {
    Handoff::spawn("sinew-rerun", capacity, VizConsumer::with_prepare(prepare))
}

/// What the rerun thread reports when closed: the streams closed with their counters, items
/// dropped, the error that stopped it.
pub type VizReport = Closed<Option<Vec<(String, VizStats)>>>;
