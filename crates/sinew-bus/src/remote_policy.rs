//! A policy served on the network (`sinew policy serve`), as a [`Policy`]: each observation
//! goes out as a `sinew_msgs/PolicyRequest` query on `<prefix>/infer` and the chunk comes back
//! as a `PolicyReply`. `<prefix>/info` answers with the policy's [`PolicyInfo`] (JSON).
//!
//! A server that is gone or stalled makes `infer` fail after the request timeout; the runtime
//! holds meanwhile (its inference watchdog) and the next request goes out as usual, so the
//! loop resumes by itself when the server is back.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sinew_core::{ActionChunk, ActionKind, Observation, Policy, PolicyError, PolicySpec, Timings};
use sinew_msgs::{CompressedImage, Header, JointState, Message, PolicyReply, PolicyRequest, Time};

use crate::Bus;

/// What a policy server serves (its `<prefix>/info` reply).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyInfo {
    /// The policy's id (its folder's name).
    pub id: String,
    /// Its version (a digest of its weights and configuration).
    pub version: String,
    /// What it reads and produces.
    pub spec: PolicySpec,
    /// Largest batch the server runs in one forward pass (1: no batching).
    pub max_batch: usize,
}

/// The keys of a policy server under `prefix`.
pub fn infer_key(prefix: &str) -> String {
    format!("{prefix}/infer")
}

/// The metadata key.
pub fn info_key(prefix: &str) -> String {
    format!("{prefix}/info")
}

/// Round trips of a remote policy.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RemoteStats {
    /// Requests sent.
    pub requests: u64,
    /// Requests that failed (timeout, error reply, bad reply).
    pub failures: u64,
    /// Round trips, ms (the last 4096).
    pub rtt_ms: std::collections::VecDeque<f64>,
}

/// A policy behind `<prefix>/infer`.
pub struct RemotePolicy {
    bus: Bus,
    prefix: String,
    info: PolicyInfo,
    timeout: Duration,
    stats: RemoteStats,
    last_failure: Option<Instant>,
}

/// While requests fail, at most one every this long (a server that is gone answers at once).
pub const RETRY_PERIOD: Duration = Duration::from_millis(250);

impl RemotePolicy {
    /// Asks `<prefix>/info` until a server answers or `wait` passes; requests then time out
    /// after `timeout`.
    pub fn connect(
        bus: Bus,
        prefix: &str,
        wait: Duration,
        timeout: Duration,
    ) -> Result<Self, PolicyError> {
        let start = Instant::now();
        let info = loop {
            match bus.request(&info_key(prefix), Vec::new(), Duration::from_millis(500)) {
                Ok(bytes) => {
                    break serde_json::from_slice::<PolicyInfo>(&bytes).map_err(|e| {
                        PolicyError::Config(format!("{}: not a policy server's info: {e}", info_key(prefix)))
                    })?
                }
                Err(e) if start.elapsed() >= wait => {
                    return Err(PolicyError::Config(format!(
                        "no policy server answered on {} within {:.1} s (is `sinew policy serve --prefix {prefix}` running, and reachable with --connect?): {e}",
                        info_key(prefix),
                        wait.as_secs_f64()
                    )))
                }
                Err(_) => {
                    // Declarations take a moment to reach a new session; ask again.
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        };
        Ok(Self {
            bus,
            prefix: prefix.to_owned(),
            info,
            timeout,
            stats: RemoteStats::default(),
            last_failure: None,
        })
    }

    /// What the server said it serves.
    pub fn info(&self) -> &PolicyInfo {
        &self.info
    }

    /// The round trips so far.
    pub fn stats(&self) -> &RemoteStats {
        &self.stats
    }

    fn request_of(&self, obs: &Observation) -> PolicyRequest {
        let stamp = Time::from_nanos((obs.stamp_s * 1e9).round() as i64);
        let images = self
            .info
            .spec
            .cameras
            .iter()
            .filter_map(|c| obs.images.get(c).map(|img| (c, img)))
            .map(|(c, img)| {
                let mut img = img.clone();
                img.header.frame_id = c.clone();
                img
            })
            .collect();
        PolicyRequest {
            header: Header::new(stamp, String::new()),
            step: obs.step,
            instruction: obs.instruction.clone(),
            joint_state: JointState {
                position: obs.joint_positions.clone(),
                velocity: obs.joint_velocities.clone(),
                ..Default::default()
            },
            images,
            compressed_images: Vec::<CompressedImage>::new(),
        }
    }
}

impl Policy for RemotePolicy {
    fn spec(&self) -> &PolicySpec {
        &self.info.spec
    }

    fn infer(&mut self, obs: &Observation) -> Result<ActionChunk, PolicyError> {
        if let Some(t) = self.last_failure {
            // Pacing retries to a server that fails, not synchronisation.
            std::thread::sleep(RETRY_PERIOD.saturating_sub(t.elapsed()));
        }
        let r = self.infer_once(obs);
        self.last_failure = match &r {
            Ok(_) => None,
            Err(_) => Some(Instant::now()),
        };
        r
    }
}

impl RemotePolicy {
    fn infer_once(&mut self, obs: &Observation) -> Result<ActionChunk, PolicyError> {
        let req = self.request_of(obs).to_cdr();
        self.stats.requests += 1;
        let t0 = Instant::now();
        let reply = self
            .bus
            .request(&infer_key(&self.prefix), req, self.timeout)
            .map_err(|e| {
                self.stats.failures += 1;
                PolicyError::Model(format!("remote policy {}: {e}", self.prefix))
            })?;
        let rtt = t0.elapsed().as_secs_f64() * 1e3;
        if self.stats.rtt_ms.len() >= 4096 {
            self.stats.rtt_ms.pop_front();
        }
        self.stats.rtt_ms.push_back(rtt);
        let r = PolicyReply::from_cdr(&reply).map_err(|e| {
            self.stats.failures += 1;
            PolicyError::Model(format!("remote policy {}: bad reply: {e}", self.prefix))
        })?;
        if !r.error.is_empty() {
            self.stats.failures += 1;
            return Err(PolicyError::Observation(format!(
                "remote policy {} refused the request: {}",
                self.prefix, r.error
            )));
        }
        let dims = r.dims as usize;
        let actions: Vec<Vec<f64>> = match dims {
            0 => Vec::new(),
            d => r.actions.chunks(d).map(<[f64]>::to_vec).collect(),
        };
        let kind = [
            ActionKind::JointPosition,
            ActionKind::JointDelta,
            ActionKind::EeDelta,
        ]
        .into_iter()
        .find(|k| k.as_str() == r.action_kind);
        let server_ms = r.queue_ms + r.preprocess_ms + r.forward_ms + r.decode_ms;
        Ok(ActionChunk {
            kind,
            actions,
            tokens: r.tokens,
            // The network and the server's queue count as preprocessing: time before the model.
            timings: Timings {
                preprocess_ms: r.preprocess_ms + r.queue_ms + (rtt - server_ms).max(0.0),
                forward_ms: r.forward_ms,
                decode_ms: r.decode_ms,
            },
            observation_stamp_s: obs.stamp_s,
            warnings: Vec::new(),
            label: None,
        })
    }
}
