//! Request and reply over zenoh queries: a server declares a [`Responder`] on a key and
//! answers each [`Request`] (from any thread, in any order); a client sends one payload with
//! [`Bus::request`] and gets the first reply or a timeout. The remote policy server
//! (`sinew policy serve`) and its clients (`--policy zenoh:PREFIX`) use it.

use std::time::Duration;

use bytes::Bytes;
use zenoh::query::{ConsolidationMode, Query, QueryTarget};
use zenoh::Wait;

use crate::{zerr, Bus, BusError};

/// One query received by a [`Responder`].
pub struct Request {
    query: Query,
    payload: Bytes,
}

impl Request {
    /// The request's payload (empty when it had none).
    pub fn payload(&self) -> &Bytes {
        &self.payload
    }

    /// Answers it.
    pub fn reply(self, payload: Vec<u8>) -> Result<(), BusError> {
        let key = self.query.key_expr().clone();
        self.query
            .reply(key.clone(), payload)
            .wait()
            .map_err(|e| zerr("reply", key.as_str(), e))
    }
}

/// Queries arriving on a key, queued for a server thread.
pub struct Responder {
    rx: crossbeam_channel::Receiver<Request>,
    _queryable: zenoh::query::Queryable<()>,
    key: String,
}

impl Responder {
    /// The key it answers on.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The next request, waiting at most `timeout`.
    pub fn recv_timeout(&self, timeout: Duration) -> Option<Request> {
        self.rx.recv_timeout(timeout).ok()
    }

    /// The next request, if one is waiting.
    pub fn try_recv(&self) -> Option<Request> {
        self.rx.try_recv().ok()
    }
}

impl Bus {
    /// Answers queries on `key`; at most `capacity` wait unanswered (the rest get no reply,
    /// so their clients time out).
    pub fn responder(&self, key: &str, capacity: usize) -> Result<Responder, BusError> {
        let (tx, rx) = crossbeam_channel::bounded(capacity.max(1));
        let queryable = self
            .session
            .declare_queryable(key.to_owned())
            .complete(true)
            .callback(move |query: Query| {
                let payload = query
                    .payload()
                    .map(|p| Bytes::from(p.to_bytes().into_owned()))
                    .unwrap_or_default();
                let _ = tx.try_send(Request { query, payload });
            })
            .wait()
            .map_err(|e| zerr("declare_queryable", key, e))?;
        Ok(Responder {
            rx,
            _queryable: queryable,
            key: key.to_owned(),
        })
    }

    /// Sends `payload` to the queryable on `key` and returns the first reply's payload.
    /// `Err` when nothing answered within `timeout` or the answer was an error.
    pub fn request(
        &self,
        key: &str,
        payload: Vec<u8>,
        timeout: Duration,
    ) -> Result<Bytes, BusError> {
        let replies = self
            .session
            .get(key.to_owned())
            .payload(payload)
            .target(QueryTarget::BestMatching)
            .consolidation(ConsolidationMode::None)
            .timeout(timeout)
            .wait()
            .map_err(|e| zerr("get", key, e))?;
        match replies.recv() {
            Ok(reply) => match reply.result() {
                Ok(sample) => Ok(Bytes::from(sample.payload().to_bytes().into_owned())),
                Err(e) => Err(BusError::Zenoh {
                    op: "get",
                    key: key.to_owned(),
                    reason: format!(
                        "error reply: {}",
                        String::from_utf8_lossy(&e.payload().to_bytes())
                    ),
                }),
            },
            Err(_) => Err(BusError::Zenoh {
                op: "get",
                key: key.to_owned(),
                reason: format!(
                    "no reply within {} ms (no server, or it is stalled)",
                    timeout.as_millis()
                ),
            }),
        }
    }
}
