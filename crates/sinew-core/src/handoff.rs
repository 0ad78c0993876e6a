//! Work handed off to a named thread through a bounded channel, for everything that may be slow
//! and must never hold up a control loop: MCAP writing, rerun logging, inference.
//!
//! The loop's side never waits in [`Handoff::send`]: when the channel is full the item is
//! dropped and counted. Work that must not be lost (file boundaries, lockstep simulation,
//! where nothing is real time) uses [`Handoff::send_blocking`]. The thread's side is a
//! [`Consumer`]; its first error stops it (later items are drained unread, and counted as
//! dropped by the sender from then on) and is reported by [`Handoff::close`].
//!
//! ```
//! use sinew_core::handoff::{Consumer, Handoff};
//! struct Sum(u64);
//! impl Consumer for Sum {
//!     type Item = u64;
//!     type Report = u64;
//!     fn consume(&mut self, item: u64) -> Result<(), String> {
//!         self.0 += item;
//!         Ok(())
//!     }
//!     fn finish(self) -> u64 {
//!         self.0
//!     }
//! }
//! let mut h = Handoff::spawn("sum", 8, Sum(0)).unwrap();
//! for i in 1..=4 {
//!     h.send_blocking(i);
//! }
//! let closed = h.close();
//! assert_eq!((closed.report, closed.dropped, closed.error), (Some(10), 0, None));
//! ```

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{bounded, Sender, TrySendError};

/// The thread's side of a hand-off: what is done with each item, and the report at the end.
pub trait Consumer: Send + 'static {
    /// What is handed over.
    type Item: Send + 'static;
    /// What the thread reports when it ends.
    type Report: Send + 'static;
    /// Handles one item. An error stops the consumer for good; what it wrote so far must stay
    /// readable.
    fn consume(&mut self, item: Self::Item) -> Result<(), String>;
    /// Ends the work (closing files) once the channel is closed; an error is reported by
    /// [`Handoff::close`] unless an earlier one was.
    fn close(&mut self) -> Result<(), String> {
        Ok(())
    }
    /// The report.
    fn finish(self) -> Self::Report;
}

/// What a hand-off thread reports when it is closed.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Closed<R> {
    /// The consumer's report.
    pub report: R,
    /// Items the sender could not hand over (channel full, or the consumer stopped).
    pub dropped: u64,
    /// Why the consumer stopped early, if it did.
    pub error: Option<String>,
}

/// A consumer on its own named thread, fed through a bounded channel.
#[derive(Debug)]
pub struct Handoff<C: Consumer> {
    name: String,
    tx: Option<Sender<C::Item>>,
    handle: Option<JoinHandle<(C::Report, Option<String>)>>,
    dropped: u64,
    stopped: Arc<AtomicBool>,
}

impl<C: Consumer> Handoff<C> {
    /// Starts thread `name` running `consumer` over a channel of `capacity` items.
    pub fn spawn(name: &str, capacity: usize, mut consumer: C) -> std::io::Result<Self> {
        let (tx, rx) = bounded::<C::Item>(capacity.max(1));
        let stopped = Arc::new(AtomicBool::new(false));
        let flag = stopped.clone();
        let thread_name = name.to_owned();
        let handle = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                let mut error = None;
                for item in rx.iter() {
                    if error.is_some() {
                        continue; // drain: the consumer has stopped
                    }
                    if let Err(e) = consumer.consume(item) {
                        tracing::error!("{thread_name} stopped: {e}");
                        flag.store(true, Ordering::SeqCst);
                        error = Some(e);
                    }
                }
                if let Err(e) = consumer.close() {
                    tracing::error!("{thread_name}: {e}");
                    error.get_or_insert(e);
                }
                (consumer.finish(), error)
            })?;
        Ok(Self {
            name: name.to_owned(),
            tx: Some(tx),
            handle: Some(handle),
            dropped: 0,
            stopped,
        })
    }

    /// Hands an item over without waiting; `false` (and counted) when the channel is full or the
    /// consumer has stopped. For real-time loops.
    pub fn send(&mut self, item: C::Item) -> bool {
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

    /// Hands an item over, waiting for room: for what must not be lost (file boundaries) and
    /// for loops that are not real time (lockstep simulation). `false` when the thread is gone.
    pub fn send_blocking(&mut self, item: C::Item) -> bool {
        self.tx.as_ref().is_some_and(|tx| tx.send(item).is_ok())
    }

    /// Whether the consumer stopped on an error.
    pub fn has_stopped(&self) -> bool {
        self.stopped.load(Ordering::SeqCst)
    }

    /// Items dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// The thread's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Lets the consumer finish what it was handed, ends the thread and reports.
    pub fn close(mut self) -> Closed<Option<C::Report>> {
        self.join()
    }

    /// Stops handing work over without waiting for the thread: it ends after its current item
    /// (a stalled model is left running; the process does not wait for it). Its report is lost.
    pub fn detach(mut self) {
        self.tx = None;
        if let Some(h) = self.handle.take() {
            if h.is_finished() {
                let _ = h.join();
            }
        }
    }

    fn join(&mut self) -> Closed<Option<C::Report>> {
        self.tx = None;
        let (report, error) = match self.handle.take().map(JoinHandle::join) {
            Some(Ok((report, error))) => (Some(report), error),
            Some(Err(_)) => (None, Some(format!("the {} thread panicked", self.name))),
            None => (None, None),
        };
        Closed {
            report,
            dropped: self.dropped,
            error,
        }
    }
}

impl<C: Consumer> Drop for Handoff<C> {
    /// Dropped without `close` (an error path), the consumer still finishes, so its files
    /// stay readable.
    fn drop(&mut self) {
        if self.handle.is_some() {
            if let Some(e) = self.join().error {
                tracing::error!("{}: {e}", self.name);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Failing {
        seen: Vec<u32>,
    }

    impl Consumer for Failing {
        type Item = u32;
        type Report = Vec<u32>;
        fn consume(&mut self, item: u32) -> Result<(), String> {
            if item == 3 {
                return Err("three is refused".into());
            }
            self.seen.push(item);
            Ok(())
        }
        fn finish(self) -> Vec<u32> {
            self.seen
        }
    }

    #[test]
    fn the_first_error_stops_the_consumer_and_is_reported() {
        let mut h = Handoff::spawn("failing", 4, Failing { seen: vec![] }).expect("thread");
        for i in 1..=5 {
            assert!(h.send_blocking(i));
        }
        let closed = h.close();
        assert_eq!(closed.report, Some(vec![1, 2]));
        assert_eq!(closed.error.as_deref(), Some("three is refused"));
    }

    struct Gate(crossbeam_channel::Receiver<()>);

    impl Consumer for Gate {
        type Item = ();
        type Report = ();
        fn consume(&mut self, _: ()) -> Result<(), String> {
            self.0.recv().map_err(|e| e.to_string())
        }
        fn finish(self) {}
    }

    #[test]
    fn a_full_channel_drops_and_counts_instead_of_waiting() {
        let (open, gate) = bounded(16);
        let mut h = Handoff::spawn("gate", 1, Gate(gate)).expect("thread");
        // The consumer blocks on the first item; the channel holds one more.
        let accepted = (0..10).filter(|_| h.send(())).count() as u64;
        assert!(accepted <= 2, "accepted {accepted}");
        assert_eq!(h.dropped(), 10 - accepted);
        for _ in 0..accepted {
            open.send(()).expect("open");
        }
        let closed = h.close();
        assert_eq!(closed.dropped, 10 - accepted);
        assert_eq!(closed.error, None);
    }
}
