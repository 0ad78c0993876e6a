//! ROS 2 interoperability through rmw_zenoh (`--ros rmw-zenoh[:DOMAIN]`).
//!
//! With [`RosInterop::RmwZenoh`](crate::RosInterop), a [`Bus`](crate::Bus) still takes the
//! keys Sinew names everywhere (`so101/joint_states`, the ROS topic without its leading slash)
//! and puts them on the wire as rmw_zenoh does, so that ROS 2 nodes running on rmw_zenoh and
//! Sinew see each other's topics:
//!
//! - data keys `<domain>/<topic>/<dds type>/<RIHS01 hash>`: publishers use their type's exact
//!   hash; subscribers match `<domain>/<topic>/<dds type>/*`, so a peer whose type has another
//!   hash (another ROS distribution) still reaches them when the type name matches;
//! - one node liveliness token per bus (`NN`, node `sinew_<first 8 hex digits of the zenoh id>`
//!   in namespace `/`), one `MP` token per publisher and one `MS` token per subscriber on a
//!   plain topic (none for wildcard subscriptions), each undeclared when its owner is dropped;
//! - on every published sample, rmw_zenoh's attachment (sequence number from 1, publication
//!   time, the publisher's GID); on receipt it is parsed when present and never required.
//!
//! Sinew's QoS maps onto rmw_zenoh's as rmw_zenoh maps its own onto zenoh: a publisher that
//! blocks when congested is `KEEP_ALL`, one that drops is `KEEP_LAST` 1 (it keeps nothing); a
//! latest-value subscriber is `KEEP_LAST` 1, a queueing one `KEEP_LAST` of its capacity; all
//! reliable and volatile. Keys that are not ROS topics (`sinew/_bus/flush/...`, the remote
//! policy queryables) stay as they are.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use sinew_msgs::keys::kind_for_key;
use sinew_msgs::ros2::rmw_zenoh::{
    liveliness_subscription, ros_topic_name, Attachment, Entity, EntityKind, EntityTopic, Qos,
    TopicKey, GID_LEN,
};
use sinew_msgs::ros2::type_hash;
use sinew_msgs::{MsgDef, Time};
use zenoh::liveliness::LivelinessToken;
use zenoh::sample::SampleKind;
use zenoh::Wait;

use crate::{lock, zerr, BusError};

/// This session's node in the ROS graph.
pub(crate) struct RmwNode {
    domain_id: u32,
    zid: String,
    node_name: String,
    gid: [u8; GID_LEN],
    next_entity: AtomicU64,
    /// Sequence numbers of [`crate::Bus::put_raw`]'s one-off samples.
    raw_sequence: AtomicI64,
    _token: LivelinessToken,
}

/// What a publisher needs to write rmw_zenoh's attachment.
pub(crate) struct RmwPublisher {
    gid: [u8; GID_LEN],
    sequence: AtomicI64,
    _token: LivelinessToken,
}

impl RmwPublisher {
    /// The next sample's attachment.
    pub(crate) fn next_attachment(&self) -> [u8; Attachment::LEN] {
        Attachment {
            sequence_number: self.sequence.fetch_add(1, Ordering::Relaxed),
            source_timestamp: Time::now().as_nanos(),
            source_gid: self.gid,
        }
        .to_bytes()
    }
}

fn ros_err(e: impl std::fmt::Display) -> BusError {
    BusError::Ros(e.to_string())
}

impl RmwNode {
    /// Declares the node's token.
    pub(crate) fn declare(session: &zenoh::Session, domain_id: u32) -> Result<Self, BusError> {
        let zid = session.zid().to_string();
        let node_name = format!("sinew_{}", zid.get(..8).unwrap_or(&zid));
        let node = Entity {
            domain_id,
            zid: zid.clone(),
            node_id: "0".into(),
            entity_id: "0".into(),
            kind: EntityKind::Node,
            enclave: "/".into(),
            namespace: "/".into(),
            node_name: node_name.clone(),
            topic: None,
        };
        let token = declare_token(session, &node)?;
        tracing::debug!(token = %node.keyexpr(), "rmw_zenoh node declared");
        Ok(Self {
            domain_id,
            zid,
            node_name,
            gid: node.gid(),
            next_entity: AtomicU64::new(1),
            raw_sequence: AtomicI64::new(1),
            _token: token,
        })
    }

    /// The ROS node name.
    pub(crate) fn node_name(&self) -> &str {
        &self.node_name
    }

    /// The data key a publisher of `def` on `key` puts on.
    pub(crate) fn publish_key(&self, key: &str, def: &MsgDef) -> Result<String, BusError> {
        let hash = type_hash(def).map_err(ros_err)?;
        Ok(sinew_msgs::ros2::rmw_zenoh::topic_key(
            self.domain_id,
            key,
            &def.dds_type_name(),
            &hash.to_string(),
        ))
    }

    /// The key expression a subscriber on `key` (wildcards allowed) declares: any hash, and
    /// any type when `def` is `None`.
    pub(crate) fn subscribe_key(&self, key: &str, def: Option<&MsgDef>) -> String {
        let ty = def.map_or_else(|| "*".to_owned(), MsgDef::dds_type_name);
        let raw = format!("{}/{}/{ty}/*", self.domain_id, key.trim_matches('/'));
        // `so101/**/*/*` is written `so101/*/*/**` in canonical form; a key that cannot be made
        // canonical is left for zenoh to refuse with its own message.
        zenoh::key_expr::OwnedKeyExpr::autocanonize(raw.clone()).map_or(raw, |k| k.to_string())
    }

    fn entity(
        &self,
        kind: EntityKind,
        key: &str,
        def: &MsgDef,
        qos: Qos,
    ) -> Result<Entity, BusError> {
        let hash = type_hash(def).map_err(ros_err)?;
        Ok(Entity {
            domain_id: self.domain_id,
            zid: self.zid.clone(),
            node_id: "0".into(),
            entity_id: self.next_entity.fetch_add(1, Ordering::Relaxed).to_string(),
            kind,
            enclave: "/".into(),
            namespace: "/".into(),
            node_name: self.node_name.clone(),
            topic: Some(EntityTopic {
                name: ros_topic_name(key),
                dds_type: def.dds_type_name(),
                type_hash: hash.to_string(),
                qos,
            }),
        })
    }

    /// A publisher's token and attachment state.
    pub(crate) fn publisher(
        &self,
        session: &zenoh::Session,
        key: &str,
        def: &MsgDef,
        blocks: bool,
    ) -> Result<RmwPublisher, BusError> {
        let qos = if blocks {
            Qos::keep_all()
        } else {
            Qos::keep_last(1)
        };
        let e = self.entity(EntityKind::Publisher, key, def, qos)?;
        Ok(RmwPublisher {
            gid: e.gid(),
            sequence: AtomicI64::new(1),
            _token: declare_token(session, &e)?,
        })
    }

    /// A subscription's token, for a plain topic (`None` for a key expression with wildcards,
    /// which names no ROS topic).
    pub(crate) fn subscription_token(
        &self,
        session: &zenoh::Session,
        key: &str,
        def: &MsgDef,
        depth: usize,
    ) -> Result<Option<LivelinessToken>, BusError> {
        if key.contains('*') {
            return Ok(None);
        }
        let e = self.entity(
            EntityKind::Subscription,
            key,
            def,
            Qos::keep_last(depth as u64),
        )?;
        declare_token(session, &e).map(Some)
    }

    /// Key and attachment of a one-off [`crate::Bus::put_raw`] sample of `def` (or of the type
    /// `key`'s name implies). The attachment carries the node's GID.
    pub(crate) fn raw_put(
        &self,
        key: &str,
        def: Option<&MsgDef>,
    ) -> Result<(String, [u8; Attachment::LEN]), BusError> {
        let def = match def {
            Some(d) => d,
            None => kind_for_key(key).map(|k| k.def()).ok_or_else(|| {
                BusError::Ros(format!(
                    "{key:?}: the message type is needed for an rmw_zenoh key and cannot be told from the name"
                ))
            })?,
        };
        let attachment = Attachment {
            sequence_number: self.raw_sequence.fetch_add(1, Ordering::Relaxed),
            source_timestamp: Time::now().as_nanos(),
            source_gid: self.gid,
        };
        Ok((self.publish_key(key, def)?, attachment.to_bytes()))
    }
}

fn declare_token(session: &zenoh::Session, e: &Entity) -> Result<LivelinessToken, BusError> {
    let key = e.keyexpr();
    session
        .liveliness()
        .declare_token(key.clone())
        .wait()
        .map_err(|err| zerr("declare_token", &key, err))
}

/// What rmw mode reads off a received sample: the Sinew key (the topic without its leading
/// slash), the ROS type and the attachment.
pub(crate) struct Incoming {
    pub key: String,
    pub ros_type: Option<String>,
    pub attachment: Option<Attachment>,
}

/// Takes an rmw_zenoh sample apart; samples on other keys keep their key.
pub(crate) fn incoming(sample: &zenoh::sample::Sample) -> Incoming {
    let wire = sample.key_expr().as_str();
    let attachment = sample.attachment().and_then(|a| {
        let bytes = a.to_bytes();
        match Attachment::parse(&bytes) {
            Ok(a) => Some(a),
            Err(e) => {
                tracing::debug!(key = wire, error = %e, "attachment not read");
                None
            }
        }
    });
    match TopicKey::parse(wire) {
        Some(t) => Incoming {
            key: t.topic.trim_start_matches('/').to_owned(),
            ros_type: t.ros_type_name(),
            attachment,
        },
        None => Incoming {
            key: wire.to_owned(),
            ros_type: None,
            attachment,
        },
    }
}

/// The ROS graph of one domain as rmw_zenoh's liveliness tokens describe it, kept up to date
/// while this value lives (entities appear with their token and go with it).
pub struct RosGraph {
    own_zid: String,
    shared: Arc<GraphShared>,
    _sub: zenoh::pubsub::Subscriber<()>,
}

#[derive(Default)]
struct GraphShared {
    /// Live entities by token key.
    entities: Mutex<BTreeMap<String, Entity>>,
    changed: Condvar,
    malformed: AtomicU64,
}

impl std::fmt::Debug for RosGraph {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RosGraph")
            .field("entities", &lock(&self.shared.entities).len())
            .finish()
    }
}

impl RosGraph {
    pub(crate) fn watch(session: &zenoh::Session, domain_id: u32) -> Result<Self, BusError> {
        let shared = Arc::new(GraphShared::default());
        let cb = shared.clone();
        let key = liveliness_subscription(domain_id);
        let sub = session
            .liveliness()
            .declare_subscriber(key.clone())
            .history(true)
            .callback(move |sample| {
                let token = sample.key_expr().as_str();
                match sample.kind() {
                    SampleKind::Put => match Entity::parse(token) {
                        Ok(e) => {
                            lock(&cb.entities).insert(token.to_owned(), e);
                        }
                        Err(e) => {
                            cb.malformed.fetch_add(1, Ordering::Relaxed);
                            tracing::debug!("{e}");
                        }
                    },
                    SampleKind::Delete => {
                        lock(&cb.entities).remove(token);
                    }
                }
                cb.changed.notify_all();
            })
            .wait()
            .map_err(|e| zerr("declare_subscriber (liveliness)", &key, e))?;
        Ok(Self {
            own_zid: session.zid().to_string(),
            shared,
            _sub: sub,
        })
    }

    /// Every entity alive now, this session's own included.
    pub fn entities(&self) -> Vec<Entity> {
        lock(&self.shared.entities).values().cloned().collect()
    }

    /// Every entity alive now that belongs to another session.
    pub fn others(&self) -> Vec<Entity> {
        lock(&self.shared.entities)
            .values()
            .filter(|e| e.zid != self.own_zid)
            .cloned()
            .collect()
    }

    /// Waits up to `timeout` until `done` holds for the live entities (checked now and on
    /// every change). Returns whether it did.
    pub fn wait_until(&self, timeout: Duration, mut done: impl FnMut(&[Entity]) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        let mut map = lock(&self.shared.entities);
        loop {
            let now: Vec<Entity> = map.values().cloned().collect();
            if done(&now) {
                return true;
            }
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                return false;
            };
            map = self
                .shared
                .changed
                .wait_timeout(map, left)
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
        }
    }

    /// Tokens under `@ros2_lv/<domain>` that did not parse.
    pub fn malformed(&self) -> u64 {
        self.shared.malformed.load(Ordering::Relaxed)
    }
}
