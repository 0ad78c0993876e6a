//! Sinew's zenoh adapter: the session, key names, typed publishers and subscribers.
//!
//! Payloads are ROS 2 CDR ([`sinew_msgs`]) on keys named like zenoh-bridge-ros2dds names them
//! ([`keys`]), so a ROS 2 robot behind that bridge and Sinew processes share one bus.
//!
//! ```no_run
//! use sinew_bus::{Bus, BusConfig, keys::RobotKeys};
//! use sinew_msgs::JointState;
//! # fn main() -> Result<(), sinew_bus::BusError> {
//! let bus = Bus::open(&BusConfig::default())?;          // finds the other local processes
//! let keys = RobotKeys::new("so101")?;
//! let state = bus.latest::<JointState>(&keys.joint_states())?;
//! if let Some(s) = state.wait_new(std::time::Duration::from_millis(100)) {
//!     println!("{:?} received {:?} after capture", s.msg.position, s.age_at_receipt());
//! }
//! bus.close();
//! # Ok(()) }
//! ```
//!
//! Malformed payloads never reach the caller: they are counted per subscriber
//! ([`SubscriberStats`]) and logged with the key and the defect.
//!
//! With [`BusConfig::ros`] set to [`RosInterop::RmwZenoh`], the same calls speak ROS 2's own
//! zenoh middleware instead (keys with the domain, type and type hash, liveliness tokens, the
//! per-sample attachment): see [`rmw`].

pub mod config;
/// Key names (defined in `sinew-msgs`, shared with the recorder).
pub use sinew_msgs::keys;
pub mod remote_policy;
pub mod rmw;
pub mod robot;
pub mod rpc;
pub mod security;

pub use rmw::RosGraph;
pub use robot::{BusOracle, BusRobot};

use std::borrow::Cow;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use sinew_msgs::ros2::rmw_zenoh::Attachment;
use sinew_msgs::{DecodeError, Message, MsgDef, Time};
use zenoh::qos::{CongestionControl, Priority};
use zenoh::sample::Sample;
use zenoh::shm::{GarbageCollect, PosixShmProviderBackend, ShmProvider, ShmProviderBuilder};
use zenoh::Wait;

pub use config::{BusConfig, RosInterop, SessionRole, TlsFiles, DEFAULT_HUB_PORT};

/// Payloads at least this large are published through shared memory when it is enabled.
pub const SHM_THRESHOLD_BYTES: usize = 16 * 1024;
/// Size of this process's shared-memory pool.
const SHM_POOL_BYTES: usize = 64 << 20;

/// Errors of the bus adapter.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// A configuration value was rejected.
    #[error("bus configuration: {what}: {reason}")]
    Config {
        /// The option or file.
        what: String,
        /// Why.
        reason: String,
    },
    /// The zenoh session could not be opened.
    #[error("could not open the zenoh session ({role:?}): {reason}")]
    Open {
        /// What the session tried to be.
        role: SessionRole,
        /// zenoh's error.
        reason: String,
    },
    /// A robot namespace is not valid.
    #[error(transparent)]
    Namespace(#[from] sinew_msgs::keys::InvalidNamespace),
    /// A declaration or a put failed.
    #[error("zenoh {op} on {key:?} failed: {reason}")]
    Zenoh {
        /// What was attempted.
        op: &'static str,
        /// The key.
        key: String,
        /// zenoh's error.
        reason: String,
    },
    /// A payload that is not a valid message of the key's type.
    #[error("malformed {type_name} on {key}: {source}")]
    Decode {
        /// The key it arrived on.
        key: String,
        /// The type it was decoded as.
        type_name: &'static str,
        /// The defect.
        #[source]
        source: DecodeError,
    },
    /// Something rmw_zenoh interoperability needs is missing (a type that cannot be hashed, a
    /// key whose type cannot be told).
    #[error("ROS 2 (rmw_zenoh): {0}")]
    Ros(String),
}

pub(crate) fn zerr(op: &'static str, key: &str, e: impl std::fmt::Display) -> BusError {
    BusError::Zenoh {
        op,
        key: key.to_owned(),
        reason: e.to_string(),
    }
}

/// A loopback TCP port that is free now, for a listener a test (or a tool) is about to open,
/// chosen below Linux's ephemeral range (32768 on). Binding port 0 hands out a port from that
/// range, and every outgoing connection on the machine takes its local port from the same
/// range: one of them can take it before the listener binds ("Address already in use").
/// Candidates start at a place drawn from the process id and advance on each call, so
/// concurrent callers in one process never get the same port. None when none is free.
pub fn free_loopback_port() -> Option<u16> {
    use std::sync::atomic::{AtomicU32, Ordering};
    const LOW: u32 = 20_000;
    const SPAN: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let start = std::process::id().wrapping_mul(7_919) % SPAN;
    (0..SPAN).find_map(|_| {
        let port = (LOW + (start + NEXT.fetch_add(1, Ordering::Relaxed)) % SPAN) as u16;
        std::net::TcpListener::bind(("127.0.0.1", port))
            .ok()
            .map(|_| port)
    })
}

/// Whether the key expression `expr` (wildcards allowed, e.g. `so101/**`) matches `key`.
/// Invalid expressions or keys match nothing.
pub fn key_expr_matches(expr: &str, key: &str) -> bool {
    use zenoh::key_expr::keyexpr;
    match (keyexpr::new(expr), keyexpr::new(key)) {
        (Ok(e), Ok(k)) => e.intersects(k),
        _ => false,
    }
}

/// A connection to the bus. Cheap to share by reference; close it with [`Bus::close`].
pub struct Bus {
    session: zenoh::Session,
    role: SessionRole,
    shm: Option<Arc<ShmProvider<PosixShmProviderBackend>>>,
    /// How ROS 2 peers see the topics.
    ros: RosInterop,
    /// The node token and entity ids in rmw_zenoh mode.
    rmw: Option<rmw::RmwNode>,
    /// Answers other sessions' [`Bus::flush`] queries.
    _flush_queryable: zenoh::query::Queryable<()>,
}

/// Key prefix of the queryables that answer [`Bus::flush`]; each session declares
/// `<prefix>/<zid>`.
pub const FLUSH_KEY_PREFIX: &str = "sinew/_bus/flush";
/// How long [`Bus::close`] waits for peers to confirm that they received everything.
pub const CLOSE_FLUSH_TIMEOUT: Duration = Duration::from_secs(2);

impl std::fmt::Debug for Bus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bus")
            .field("zid", &self.session.zid().to_string())
            .field("role", &self.role)
            .field("shared_memory", &self.shm.is_some())
            .field("ros", &self.ros)
            .finish()
    }
}

impl Bus {
    /// Opens a session as `config` says (see [`BusConfig`] for the default behaviour).
    pub fn open(config: &BusConfig) -> Result<Self, BusError> {
        config.check_security()?;
        let (session, role) = if config.is_explicit() {
            let cfg = config.explicit_config()?;
            warn_if_exposed(&cfg, config);
            let s = zenoh::open(cfg).wait().map_err(|e| BusError::Open {
                role: SessionRole::Configured,
                reason: if config.connect.iter().any(|c| c.starts_with("tls/")) {
                    format!(
                        "{e} (over TLS this also happens when a certificate is refused: both \
                         sides need certificates signed by the same --tls-ca, and the \
                         listener's must name the host connected to)"
                    )
                } else {
                    e.to_string()
                },
            })?;
            (s, SessionRole::Configured)
        } else {
            // Check the port first so that the usual case, a hub already running, does not
            // make zenoh log a failed listener. Another process may still take the port in
            // between; then opening as hub fails and we join it all the same.
            let port_free = std::net::TcpListener::bind(("127.0.0.1", config.hub_port)).is_ok();
            let as_hub = if port_free {
                zenoh::open(config.hub_config()?).wait()
            } else {
                Err(format!("port {} is taken", config.hub_port).into())
            };
            match as_hub {
                Ok(s) => (s, SessionRole::Hub),
                Err(hub_err) => {
                    tracing::debug!(
                        port = config.hub_port,
                        error = %hub_err,
                        "hub port taken, joining the existing hub"
                    );
                    let s = zenoh::open(config.hub_client_config()?)
                        .wait()
                        .map_err(|e| BusError::Open {
                            role: SessionRole::HubClient,
                            reason: format!("{e} (as hub: {hub_err})"),
                        })?;
                    (s, SessionRole::HubClient)
                }
            }
        };
        let shm = if config.shared_memory {
            match ShmProviderBuilder::default_backend(SHM_POOL_BYTES).wait() {
                Ok(p) => Some(Arc::new(p)),
                Err(e) => {
                    tracing::warn!(error = %e, "shared memory unavailable, using plain buffers");
                    None
                }
            }
        } else {
            None
        };
        let flush_key = format!("{FLUSH_KEY_PREFIX}/{}", session.zid());
        let reply_key = flush_key.clone();
        let flush_queryable = session
            .declare_queryable(flush_key.clone())
            .callback(move |query| {
                if let Err(e) = query.reply(reply_key.clone(), Vec::<u8>::new()).wait() {
                    tracing::debug!(error = %e, "answering a flush query");
                }
            })
            .wait()
            .map_err(|e| zerr("declare_queryable", &flush_key, e))?;
        tracing::debug!(zid = %session.zid(), ?role, "bus session open");
        let rmw = match config.ros {
            RosInterop::Bridge => None,
            RosInterop::RmwZenoh { domain_id } => Some(rmw::RmwNode::declare(&session, domain_id)?),
        };
        Ok(Self {
            session,
            role,
            shm,
            ros: config.ros,
            rmw,
            _flush_queryable: flush_queryable,
        })
    }

    /// How ROS 2 peers see this session's topics.
    pub fn ros(&self) -> RosInterop {
        self.ros
    }

    /// This session's ROS node name in rmw_zenoh mode (`sinew_<zenoh id prefix>`).
    pub fn ros_node_name(&self) -> Option<&str> {
        self.rmw.as_ref().map(|n| n.node_name())
    }

    /// Watches the ROS graph of `domain_id` (rmw_zenoh liveliness tokens: nodes, publishers,
    /// subscriptions, services, clients) until the returned value is dropped. Works in either
    /// mode; entities that existed before the call are included.
    pub fn ros_graph(&self, domain_id: u32) -> Result<RosGraph, BusError> {
        RosGraph::watch(&self.session, domain_id)
    }

    /// What this session became when it opened.
    pub fn role(&self) -> &SessionRole {
        &self.role
    }

    /// This session's zenoh id.
    pub fn id(&self) -> String {
        self.session.zid().to_string()
    }

    /// The underlying zenoh session, for what this crate does not wrap.
    pub fn session(&self) -> &zenoh::Session {
        &self.session
    }

    /// A publisher of `M` on `key` with [`Qos::default`].
    pub fn publisher<M: Message>(&self, key: &str) -> Result<Publisher<M>, BusError> {
        self.publisher_with(key, Qos::default())
    }

    /// A publisher of `M` on `key` with the given quality of service.
    pub fn publisher_with<M: Message>(
        &self,
        key: &str,
        qos: Qos,
    ) -> Result<Publisher<M>, BusError> {
        Ok(Publisher {
            raw: self.raw_publisher(key, M::DEF, qos)?,
            _m: PhantomData,
        })
    }

    /// A publisher of payloads already encoded as `def` (for tools that forward bytes, such as
    /// replay). In rmw_zenoh mode `def` names the type in the key and the token.
    pub fn raw_publisher(
        &self,
        key: &str,
        def: &'static MsgDef,
        qos: Qos,
    ) -> Result<RawPublisher, BusError> {
        let wire_key = match &self.rmw {
            Some(node) => node.publish_key(key, def)?,
            None => key.to_owned(),
        };
        let inner = self
            .session
            .declare_publisher(wire_key.clone())
            .congestion_control(if qos.block_when_congested {
                CongestionControl::Block
            } else {
                CongestionControl::Drop
            })
            .priority(qos.priority)
            .express(qos.express)
            .wait()
            .map_err(|e| zerr("declare_publisher", &wire_key, e))?;
        let rmw = match &self.rmw {
            Some(node) => {
                Some(node.publisher(&self.session, key, def, qos.block_when_congested)?)
            }
            None => None,
        };
        Ok(RawPublisher {
            inner,
            key: key.to_owned(),
            wire_key,
            shm: if qos.shared_memory {
                self.shm.clone()
            } else {
                None
            },
            sent: AtomicU64::new(0),
            rmw,
        })
    }

    /// The key expression a subscriber on `key` declares.
    fn subscription_key(&self, key: &str, def: Option<&'static MsgDef>) -> String {
        match &self.rmw {
            None => key.to_owned(),
            Some(node) => node.subscribe_key(key, def),
        }
    }

    /// A subscriber's liveliness token in rmw_zenoh mode, declared once the subscriber is (as
    /// rmw_zenoh does), so that a peer that sees the token can count on the subscriber.
    fn subscription_token(
        &self,
        key: &str,
        def: Option<&'static MsgDef>,
        depth: usize,
    ) -> Result<Option<zenoh::liveliness::LivelinessToken>, BusError> {
        match (&self.rmw, def) {
            (Some(node), Some(d)) => node.subscription_token(&self.session, key, d, depth),
            _ => Ok(None),
        }
    }

    /// A latest-value subscriber: keeps only the newest message, never a queue of stale ones.
    /// Use it for sensor streams.
    pub fn latest<M: Message + Send + 'static>(&self, key: &str) -> Result<Latest<M>, BusError> {
        let shared = Arc::new(LatestShared {
            slot: Mutex::new(Slot {
                value: None,
                fresh: false,
            }),
            cond: Condvar::new(),
            stats: Counters::default(),
        });
        let cb = shared.clone();
        let key_owned = key.to_owned();
        let wire_key = self.subscription_key(key, Some(M::DEF));
        let rmw = self.rmw.is_some();
        let sub = self
            .session
            .declare_subscriber(wire_key)
            .callback(move |sample| {
                if let Some(r) = decode_sample::<M>(&sample, &key_owned, &cb.stats, rmw) {
                    let mut slot = lock(&cb.slot);
                    if slot.fresh {
                        cb.stats.dropped.fetch_add(1, Ordering::Relaxed);
                    }
                    slot.value = Some(r);
                    slot.fresh = true;
                    drop(slot);
                    cb.cond.notify_all();
                }
            })
            .wait()
            .map_err(|e| zerr("declare_subscriber", key, e))?;
        let token = self.subscription_token(key, Some(M::DEF), 1)?;
        Ok(Latest {
            shared,
            _sub: sub,
            _token: token,
            key: key.to_owned(),
        })
    }

    /// A queueing subscriber holding at most `capacity` messages; when the reader falls behind,
    /// new messages are dropped and counted. Use it for commands and events.
    pub fn subscribe<M: Message + Send + 'static>(
        &self,
        key: &str,
        capacity: usize,
    ) -> Result<Subscriber<M>, BusError> {
        let (tx, rx) = crossbeam_channel::bounded(capacity.max(1));
        let stats = Arc::new(Counters::default());
        let cb_stats = stats.clone();
        let key_owned = key.to_owned();
        let wire_key = self.subscription_key(key, Some(M::DEF));
        let rmw = self.rmw.is_some();
        let sub = self
            .session
            .declare_subscriber(wire_key)
            .callback(move |sample| {
                if let Some(r) = decode_sample::<M>(&sample, &key_owned, &cb_stats, rmw) {
                    if tx.try_send(r).is_err() {
                        cb_stats.dropped.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
            .wait()
            .map_err(|e| zerr("declare_subscriber", key, e))?;
        let token = self.subscription_token(key, Some(M::DEF), capacity.max(1))?;
        Ok(Subscriber {
            rx,
            stats,
            _sub: sub,
            _token: token,
            key: key.to_owned(),
        })
    }

    /// Raw samples on a key expression (wildcards allowed), undecoded, for tools that inspect
    /// any traffic. At most `capacity` are queued; the rest are dropped and counted.
    ///
    /// In rmw_zenoh mode `key_expr` names topics (`so101/**`): every type on them is received,
    /// and each sample's [`RawSample::key`] is its topic without the leading slash, as in
    /// bridge mode. No liveliness token is declared ([`Bus::subscribe_raw_as`] declares one).
    pub fn subscribe_raw(
        &self,
        key_expr: &str,
        capacity: usize,
    ) -> Result<RawSubscriber, BusError> {
        self.raw_subscriber(key_expr, None, capacity)
    }

    /// [`Bus::subscribe_raw`] for payloads of type `def`: in rmw_zenoh mode only that type is
    /// received, and a subscription token announces the subscriber (for a plain topic). The
    /// same as [`Bus::subscribe_raw`] in bridge mode.
    pub fn subscribe_raw_as(
        &self,
        key_expr: &str,
        def: &'static MsgDef,
        capacity: usize,
    ) -> Result<RawSubscriber, BusError> {
        self.raw_subscriber(key_expr, Some(def), capacity)
    }

    fn raw_subscriber(
        &self,
        key_expr: &str,
        def: Option<&'static MsgDef>,
        capacity: usize,
    ) -> Result<RawSubscriber, BusError> {
        let (tx, rx) = crossbeam_channel::bounded(capacity.max(1));
        let stats = Arc::new(Counters::default());
        let cb_stats = stats.clone();
        let wire_key = self.subscription_key(key_expr, def);
        let rmw = self.rmw.is_some();
        let sub = self
            .session
            .declare_subscriber(wire_key)
            .callback(move |sample| {
                let raw = RawSample::from_sample(&sample, rmw);
                cb_stats.received.fetch_add(1, Ordering::Relaxed);
                if tx.try_send(raw).is_err() {
                    cb_stats.dropped.fetch_add(1, Ordering::Relaxed);
                }
            })
            .wait()
            .map_err(|e| zerr("declare_subscriber", key_expr, e))?;
        let token = self.subscription_token(key_expr, def, capacity.max(1))?;
        Ok(RawSubscriber {
            rx,
            stats,
            _sub: sub,
            _token: token,
        })
    }

    /// Publishes one raw payload on `key` (for tools and tests that need to send bytes that
    /// are not a valid message).
    /// It goes out with [`Qos::default`]'s priority, so it stays in order with typed messages.
    ///
    /// In rmw_zenoh mode the key needs a message type, told from the key's name
    /// ([`sinew_msgs::keys::kind_for_key`]); [`Bus::put_raw_as`] names it. The sample carries
    /// an attachment with this node's GID.
    pub fn put_raw(&self, key: &str, payload: Vec<u8>) -> Result<(), BusError> {
        self.put_raw_inner(key, None, payload)
    }

    /// [`Bus::put_raw`] for a payload of type `def` (only the rmw_zenoh key depends on it).
    pub fn put_raw_as(
        &self,
        key: &str,
        def: &'static MsgDef,
        payload: Vec<u8>,
    ) -> Result<(), BusError> {
        self.put_raw_inner(key, Some(def), payload)
    }

    fn put_raw_inner(
        &self,
        key: &str,
        def: Option<&'static MsgDef>,
        payload: Vec<u8>,
    ) -> Result<(), BusError> {
        let qos = Qos::default();
        let (wire_key, attachment) = match &self.rmw {
            Some(node) => {
                let (k, a) = node.raw_put(key, def)?;
                (k, Some(a.to_vec()))
            }
            None => (key.to_owned(), None),
        };
        self.session
            .put(wire_key.clone(), payload)
            .priority(qos.priority)
            .express(qos.express)
            .congestion_control(CongestionControl::Block)
            .attachment(attachment)
            .wait()
            .map_err(|e| zerr("put", &wire_key, e))
    }

    /// Waits until every connected Sinew session has received what this one published so far,
    /// or until `timeout`. Returns how many other sessions confirmed.
    ///
    /// zenoh's `put` returns once a message is queued, not once it is on the wire, and closing a
    /// session can lose the tail of that queue. This sends a query at the lowest priority on
    /// the same connections, so it leaves after everything queued before it; each Sinew session
    /// answers it once it has processed what came before. Non-Sinew subscribers (zenoh tools,
    /// bridges) do not answer and are not waited for.
    pub fn flush(&self, timeout: Duration) -> usize {
        let own = format!("{FLUSH_KEY_PREFIX}/{}", self.session.zid());
        let replies = match self
            .session
            .get(format!("{FLUSH_KEY_PREFIX}/*"))
            .target(zenoh::query::QueryTarget::All)
            .consolidation(zenoh::query::ConsolidationMode::None)
            .priority(Priority::Background)
            .congestion_control(CongestionControl::Block)
            .timeout(timeout)
            .wait()
        {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "flush query");
                return 0;
            }
        };
        let mut confirmed = 0;
        // The channel closes when every queryable answered or the timeout passed.
        while let Ok(reply) = replies.recv() {
            if let Ok(sample) = reply.result() {
                if sample.key_expr().as_str() != own {
                    confirmed += 1;
                }
            }
        }
        confirmed
    }

    /// Closes the session: first [flushes](Bus::flush) what was published (at most
    /// [`CLOSE_FLUSH_TIMEOUT`]), then undeclares everything and closes its connections.
    pub fn close(self) {
        let peers = self.flush(CLOSE_FLUSH_TIMEOUT);
        tracing::debug!(peers, "flushed before closing");
        if let Err(e) = self.session.close().wait() {
            tracing::warn!(error = %e, "closing the zenoh session");
        }
    }
}

/// Warns, loudly, when the session listens where other machines can reach it without TLS.
fn warn_if_exposed(cfg: &zenoh::Config, config: &BusConfig) {
    let mode = cfg
        .get_json("mode")
        .ok()
        .and_then(|j| serde_json::from_str::<String>(&j).ok())
        .unwrap_or_else(|| "peer".to_owned());
    let listen: Vec<String> = cfg
        .get_json("listen/endpoints")
        .ok()
        .and_then(|j| serde_json::from_str::<serde_json::Value>(&j).ok())
        .map(|v| endpoint_strings(&v, &mode))
        .unwrap_or_default();
    let exposed = security::plaintext_listeners(&listen);
    if !exposed.is_empty() {
        tracing::warn!(
            "LISTENING WITHOUT TLS on {}: any machine that can reach it can read every topic, \
             command the robot and release its e-stop{}. Use --listen tls/HOST:PORT with \
             --tls-cert/--tls-key/--tls-ca and --acl (docs/security.md), or listen on \
             127.0.0.1 only.",
            exposed.join(", "),
            if config.acl.is_some() {
                " (access control cannot tell peers apart without certificates)"
            } else {
                ""
            }
        );
    }
}

/// Endpoint strings in zenoh's `listen/endpoints` value: a list, or a map from mode to list
/// (then the list of `mode`).
fn endpoint_strings(v: &serde_json::Value, mode: &str) -> Vec<String> {
    match v {
        serde_json::Value::String(s) => vec![s.clone()],
        serde_json::Value::Array(a) => a.iter().flat_map(|e| endpoint_strings(e, mode)).collect(),
        serde_json::Value::Object(m) => m
            .get(mode)
            .map(|e| endpoint_strings(e, mode))
            .unwrap_or_default(),
        _ => Vec::new(),
    }
}

/// Quality of service of a publisher.
#[derive(Debug, Clone, Copy)]
pub struct Qos {
    /// Send at once instead of batching (lower latency, more packets).
    pub express: bool,
    /// zenoh priority.
    pub priority: Priority,
    /// Wait for the transport instead of dropping when it is congested.
    pub block_when_congested: bool,
    /// Use shared memory for payloads of at least [`SHM_THRESHOLD_BYTES`] when the session has it.
    pub shared_memory: bool,
}

impl Default for Qos {
    /// Low-latency sensor or command stream: express, `DataHigh`, drop when congested, shared
    /// memory for large payloads.
    fn default() -> Self {
        Self {
            express: true,
            priority: Priority::DataHigh,
            block_when_congested: false,
            shared_memory: true,
        }
    }
}

/// A publisher of encoded payloads; [`Publisher`] is its typed form.
pub struct RawPublisher {
    inner: zenoh::pubsub::Publisher<'static>,
    /// The key as the caller named it.
    key: String,
    /// The key on the wire (the same in bridge mode).
    wire_key: String,
    shm: Option<Arc<ShmProvider<PosixShmProviderBackend>>>,
    sent: AtomicU64,
    /// Token, GID and sequence numbers in rmw_zenoh mode.
    rmw: Option<rmw::RmwPublisher>,
}

impl std::fmt::Debug for RawPublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawPublisher")
            .field("key", &self.key)
            .field("wire_key", &self.wire_key)
            .finish()
    }
}

impl RawPublisher {
    /// The key published on, as given.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The zenoh key the samples go out on (in rmw_zenoh mode
    /// `<domain>/<topic>/<type>/<hash>`; otherwise [`RawPublisher::key`]).
    pub fn wire_key(&self) -> &str {
        &self.wire_key
    }

    /// Messages published so far.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Whether some subscriber on the bus currently matches this publisher's key.
    pub fn has_subscribers(&self) -> bool {
        self.inner
            .matching_status()
            .wait()
            .map(|s| s.matching())
            .unwrap_or(false)
    }

    /// Waits up to `timeout` until some subscriber matches this publisher's key (declarations
    /// take a moment to travel). Returns whether one does.
    pub fn wait_for_subscribers(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        // Declare the listener before checking, so a match in between is not missed.
        let listener = match self.inner.matching_listener().wait() {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(key = %self.key, error = %e, "matching listener");
                return self.has_subscribers();
            }
        };
        if self.has_subscribers() {
            return true;
        }
        while let Ok(Some(status)) = listener.recv_deadline(deadline) {
            if status.matching() {
                return true;
            }
        }
        self.has_subscribers()
    }

    /// Publishes an encoded payload as it is.
    pub fn put(&self, payload: Vec<u8>) -> Result<(), BusError> {
        self.put_bytes(payload)
    }

    /// Publishes, with rmw_zenoh's attachment in rmw_zenoh mode.
    fn put_bytes(&self, payload: impl Into<zenoh::bytes::ZBytes>) -> Result<(), BusError> {
        let attachment = self.rmw.as_ref().map(|r| r.next_attachment().to_vec());
        self.inner
            .put(payload)
            .attachment(attachment)
            .wait()
            .map_err(|e| zerr("put", &self.wire_key, e))?;
        self.sent.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// A typed publisher.
pub struct Publisher<M> {
    raw: RawPublisher,
    _m: PhantomData<fn(M)>,
}

impl<M> std::fmt::Debug for Publisher<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("key", &self.raw.key)
            .finish()
    }
}

impl<M: Message> Publisher<M> {
    /// The key published on.
    pub fn key(&self) -> &str {
        self.raw.key()
    }

    /// The zenoh key the samples go out on (see [`RawPublisher::wire_key`]).
    pub fn wire_key(&self) -> &str {
        self.raw.wire_key()
    }

    /// Messages published so far.
    pub fn sent(&self) -> u64 {
        self.raw.sent()
    }

    /// Whether some subscriber on the bus currently matches this publisher's key.
    pub fn has_subscribers(&self) -> bool {
        self.raw.has_subscribers()
    }

    /// Waits up to `timeout` until some subscriber matches this publisher's key (declarations
    /// take a moment to travel). Returns whether one does.
    pub fn wait_for_subscribers(&self, timeout: Duration) -> bool {
        self.raw.wait_for_subscribers(timeout)
    }

    /// Encodes and publishes `msg`. Large payloads are encoded straight into a shared-memory
    /// buffer when the session has one.
    pub fn put(&self, msg: &M) -> Result<(), BusError> {
        let len = msg.encoded_len();
        let shm_buf = match &self.raw.shm {
            Some(p) if len >= SHM_THRESHOLD_BYTES => {
                p.alloc(len).with_policy::<GarbageCollect>().wait().ok()
            }
            _ => None,
        };
        match shm_buf {
            Some(mut buf) => {
                if msg.write_cdr_into(&mut buf[..]) {
                    self.raw.put_bytes(buf)
                } else {
                    self.raw.put_bytes(encode_sized(msg, len))
                }
            }
            None => self.raw.put_bytes(encode_sized(msg, len)),
        }
    }
}

/// Encodes `msg` into a vector of its already known encoded length (`Message::to_cdr` would
/// measure it a second time).
fn encode_sized<M: Message>(msg: &M, len: usize) -> Vec<u8> {
    let mut w = sinew_msgs::cdr::Writer::new(Vec::with_capacity(len));
    msg.write_fields(&mut w);
    w.finish()
}

/// A decoded message with its receive time.
#[derive(Debug, Clone, PartialEq)]
pub struct Received<M> {
    /// The message.
    pub msg: M,
    /// The key it arrived on (in rmw_zenoh mode, its topic without the leading slash).
    pub key: String,
    /// Monotonic receive time (this process).
    pub received_at: Instant,
    /// Wall-clock receive time.
    pub received_time: Time,
    /// rmw_zenoh's attachment (publisher sequence number, publication time, GID), when the
    /// sample had a readable one (rmw_zenoh mode only).
    pub attachment: Option<Attachment>,
}

impl<M> Received<M> {
    /// Wall-clock delay from `stamp` (the sender's capture time) to receipt; negative delays
    /// (clock skew between machines) give `None`.
    pub fn latency_from(&self, stamp: Time) -> Option<Duration> {
        let ns = self.received_time.as_nanos() - stamp.as_nanos();
        u64::try_from(ns).ok().map(Duration::from_nanos)
    }
}

impl<M: Message> Received<M> {
    /// Wall-clock delay from the message's header stamp to receipt (`None` for types without
    /// a header, or a stamp in the future).
    pub fn age_at_receipt(&self) -> Option<Duration> {
        self.latency_from(self.msg.stamp()?)
    }
}

/// An undecoded sample.
#[derive(Debug, Clone)]
pub struct RawSample {
    /// The key it arrived on (in rmw_zenoh mode, its topic without the leading slash).
    pub key: String,
    /// The payload bytes.
    pub payload: Bytes,
    /// Monotonic receive time.
    pub received_at: Instant,
    /// Wall-clock receive time.
    pub received_time: Time,
    /// The ROS type named in the key (`sensor_msgs/msg/JointState`; rmw_zenoh mode only).
    pub ros_type: Option<String>,
    /// rmw_zenoh's attachment, when the sample had a readable one (rmw_zenoh mode only).
    pub attachment: Option<Attachment>,
}

impl RawSample {
    fn from_sample(sample: &Sample, rmw: bool) -> Self {
        let received_at = Instant::now();
        let received_time = Time::now();
        let (key, ros_type, attachment) = if rmw {
            let i = rmw::incoming(sample);
            (i.key, i.ros_type, i.attachment)
        } else {
            (sample.key_expr().as_str().to_owned(), None, None)
        };
        Self {
            key,
            payload: payload_bytes(sample),
            received_at,
            received_time,
            ros_type,
            attachment,
        }
    }
}

/// The payload as one contiguous buffer, copied exactly once whatever zenoh's fragmentation.
fn payload_bytes(sample: &Sample) -> Bytes {
    match sample.payload().to_bytes() {
        Cow::Borrowed(s) => Bytes::copy_from_slice(s),
        Cow::Owned(v) => Bytes::from(v),
    }
}

fn decode_sample<M: Message>(
    sample: &Sample,
    key: &str,
    stats: &Counters,
    rmw: bool,
) -> Option<Received<M>> {
    let received_at = Instant::now();
    let received_time = Time::now();
    stats.received.fetch_add(1, Ordering::Relaxed);
    let payload = payload_bytes(sample);
    let (actual_key, attachment) = if rmw {
        let i = rmw::incoming(sample);
        (i.key, i.attachment)
    } else {
        (sample.key_expr().as_str().to_owned(), None)
    };
    match M::from_cdr(&payload) {
        Ok(msg) => Some(Received {
            msg,
            key: actual_key,
            received_at,
            received_time,
            attachment,
        }),
        Err(source) => {
            let n = stats.malformed.fetch_add(1, Ordering::Relaxed) + 1;
            let err = BusError::Decode {
                key: actual_key,
                type_name: M::DEF.name,
                source,
            };
            // Log the first few, then every 100th, so a flood cannot drown the log.
            if n <= 5 || n.is_multiple_of(100) {
                tracing::warn!(subscription = key, count = n, "{err}");
            }
            *lock(&stats.last_error) = Some(err.to_string());
            None
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[derive(Debug, Default)]
struct Counters {
    received: AtomicU64,
    dropped: AtomicU64,
    malformed: AtomicU64,
    last_error: Mutex<Option<String>>,
}

impl Counters {
    fn snapshot(&self) -> SubscriberStats {
        SubscriberStats {
            received: self.received.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            malformed: self.malformed.load(Ordering::Relaxed),
            last_error: lock(&self.last_error).clone(),
        }
    }
}

/// What a subscriber has seen.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubscriberStats {
    /// Samples that arrived (valid or not).
    pub received: u64,
    /// Valid messages never handed out: overwritten by a newer one (latest-value) or refused by
    /// a full queue.
    pub dropped: u64,
    /// Payloads that did not decode.
    pub malformed: u64,
    /// The last decode error, naming the key and the defect.
    pub last_error: Option<String>,
}

struct Slot<M> {
    value: Option<Received<M>>,
    /// True while `value` has not been taken.
    fresh: bool,
}

struct LatestShared<M> {
    slot: Mutex<Slot<M>>,
    cond: Condvar,
    stats: Counters,
}

/// Latest-value subscriber: holds only the newest message. A message replaced before it was
/// taken counts as dropped; a message is handed out by `take`/`wait_new` at most once, so the
/// reader never sees a stale queued frame.
pub struct Latest<M> {
    shared: Arc<LatestShared<M>>,
    _sub: zenoh::pubsub::Subscriber<()>,
    /// The subscription's liveliness token in rmw_zenoh mode.
    _token: Option<zenoh::liveliness::LivelinessToken>,
    key: String,
}

impl<M> std::fmt::Debug for Latest<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Latest").field("key", &self.key).finish()
    }
}

impl<M: Clone> Latest<M> {
    /// The key expression subscribed to.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The newest message if it has not been taken yet.
    pub fn take(&self) -> Option<Received<M>> {
        let mut slot = lock(&self.shared.slot);
        if slot.fresh {
            slot.fresh = false;
            slot.value.clone()
        } else {
            None
        }
    }

    /// Waits up to `timeout` for a message not taken yet, and takes it.
    pub fn wait_new(&self, timeout: Duration) -> Option<Received<M>> {
        let deadline = Instant::now() + timeout;
        let mut slot = lock(&self.shared.slot);
        while !slot.fresh {
            let left = deadline.checked_duration_since(Instant::now())?;
            slot = self
                .shared
                .cond
                .wait_timeout(slot, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        slot.fresh = false;
        slot.value.clone()
    }

    /// The newest message, taken or not (for example to hold on to the last joint state).
    pub fn peek(&self) -> Option<Received<M>> {
        lock(&self.shared.slot).value.clone()
    }

    /// Counters.
    pub fn stats(&self) -> SubscriberStats {
        self.shared.stats.snapshot()
    }
}

/// Queueing subscriber with a bounded queue.
pub struct Subscriber<M> {
    rx: crossbeam_channel::Receiver<Received<M>>,
    stats: Arc<Counters>,
    _sub: zenoh::pubsub::Subscriber<()>,
    /// The subscription's liveliness token in rmw_zenoh mode.
    _token: Option<zenoh::liveliness::LivelinessToken>,
    key: String,
}

impl<M> std::fmt::Debug for Subscriber<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscriber")
            .field("key", &self.key)
            .finish()
    }
}

impl<M> Subscriber<M> {
    /// The next queued message, waiting up to `timeout`.
    pub fn recv_timeout(&self, timeout: Duration) -> Option<Received<M>> {
        self.rx.recv_timeout(timeout).ok()
    }

    /// The next queued message, if any.
    pub fn try_recv(&self) -> Option<Received<M>> {
        self.rx.try_recv().ok()
    }

    /// The channel, for `select!` with other sources.
    pub fn receiver(&self) -> &crossbeam_channel::Receiver<Received<M>> {
        &self.rx
    }

    /// Counters.
    pub fn stats(&self) -> SubscriberStats {
        self.stats.snapshot()
    }
}

/// Subscriber of undecoded samples.
pub struct RawSubscriber {
    rx: crossbeam_channel::Receiver<RawSample>,
    stats: Arc<Counters>,
    _sub: zenoh::pubsub::Subscriber<()>,
    /// The subscription's liveliness token in rmw_zenoh mode ([`Bus::subscribe_raw_as`]).
    _token: Option<zenoh::liveliness::LivelinessToken>,
}

impl std::fmt::Debug for RawSubscriber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawSubscriber").finish()
    }
}

impl RawSubscriber {
    /// The next sample, waiting up to `timeout`.
    pub fn recv_timeout(&self, timeout: Duration) -> Option<RawSample> {
        self.rx.recv_timeout(timeout).ok()
    }

    /// The channel, for `select!` with other sources.
    pub fn receiver(&self) -> &crossbeam_channel::Receiver<RawSample> {
        &self.rx
    }

    /// Counters (`malformed` is always 0: nothing is decoded here).
    pub fn stats(&self) -> SubscriberStats {
        self.stats.snapshot()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sinew_msgs::{Header, JointState, StringMsg};

    fn received<M>(msg: M, at_ns: i64) -> Received<M> {
        Received {
            msg,
            key: "k".into(),
            received_at: Instant::now(),
            received_time: Time::from_nanos(at_ns),
            attachment: None,
        }
    }

    #[test]
    fn age_at_receipt_uses_the_header_stamp() {
        let js = JointState {
            header: Header::new(Time::from_nanos(1_000_000_000), "base"),
            ..Default::default()
        };
        let r = received(js.clone(), 1_000_250_000);
        assert_eq!(r.age_at_receipt(), Some(Duration::from_micros(250)));
        // A stamp after the receive time (clock skew) has no meaningful age.
        assert_eq!(received(js, 999_000_000).age_at_receipt(), None);
        assert_eq!(received(StringMsg::default(), 5).age_at_receipt(), None);
    }
}
