//! The wire formats of ROS 2's zenoh middleware, rmw_zenoh: data keys, liveliness tokens, the
//! QoS string and the attachment on each sample. Pure formats; the session that uses them is in
//! `sinew-bus` (`rmw` module).
//!
//! Reference: ros2/rmw_zenoh `docs/design.md` and `rmw_zenoh_cpp/src/detail/`
//! (`liveliness_utils.cpp`, `attachment_helpers.cpp`, `qos.cpp`) of the zenoh-cpp releases
//! (Jazzy 0.2.4 and later, Kilted, Rolling).
//!
//! ```
//! use sinew_msgs::ros2::rmw_zenoh::{topic_key, TopicKey};
//! let key = topic_key(0, "/chatter", "std_msgs::msg::dds_::String_",
//!     "RIHS01_df668c740482bbd48fb39d76a70dfd4bd59db1288021743503259e948f6b1a18");
//! assert_eq!(key, "0/chatter/std_msgs::msg::dds_::String_/\
//!     RIHS01_df668c740482bbd48fb39d76a70dfd4bd59db1288021743503259e948f6b1a18");
//! let parsed = TopicKey::parse(&key).unwrap();
//! assert_eq!(parsed.topic, "/chatter");
//! assert_eq!(parsed.ros_type_name().as_deref(), Some("std_msgs/msg/String"));
//! ```

use std::fmt::Write as _;

/// The liveliness tokens' admin space (a zenoh hermetic chunk: `*` and `**` never match it).
pub const ADMIN_SPACE: &str = "@ros2_lv";
/// What replaces `/` inside one chunk of a token (namespaces, topic names, enclaves).
pub const SLASH_REPLACEMENT: char = '%';
/// Bytes of a publisher, subscription, client or service GID (`RMW_GID_STORAGE_SIZE`, Jazzy on).
pub const GID_LEN: usize = 16;

/// A topic name as ROS writes it: one leading `/`, none trailing (`so101/joint_states` and
/// `/so101/joint_states/` are both `/so101/joint_states`).
pub fn ros_topic_name(name: &str) -> String {
    format!("/{}", name.trim_matches('/'))
}

/// `/` -> `%` (how names are put in one chunk of a token).
pub fn mangle(name: &str) -> String {
    name.replace('/', "%")
}

/// `%` -> `/`.
pub fn demangle(chunk: &str) -> String {
    chunk.replace(SLASH_REPLACEMENT, "/")
}

/// `sensor_msgs/msg/JointState` -> `sensor_msgs::msg::dds_::JointState_` (services: `srv`).
pub fn dds_type_name(ros_type: &str) -> Option<String> {
    let mut parts = ros_type.split('/');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(pkg), Some(kind), Some(name), None)
            if !pkg.is_empty() && !kind.is_empty() && !name.is_empty() =>
        {
            Some(format!("{pkg}::{kind}::dds_::{name}_"))
        }
        _ => None,
    }
}

/// `sensor_msgs::msg::dds_::JointState_` -> `sensor_msgs/msg/JointState`.
pub fn ros_type_name(dds_type: &str) -> Option<String> {
    let mut parts = dds_type.split("::");
    match (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) {
        (Some(pkg), Some(kind), Some("dds_"), Some(name), None)
            if !pkg.is_empty() && !kind.is_empty() =>
        {
            let name = name.strip_suffix('_').filter(|n| !n.is_empty())?;
            Some(format!("{pkg}/{kind}/{name}"))
        }
        _ => None,
    }
}

/// The data key of a topic: `<domain_id>/<topic without its slashes>/<dds type>/<type hash>`.
pub fn topic_key(domain_id: u32, topic: &str, dds_type: &str, type_hash: &str) -> String {
    format!(
        "{domain_id}/{}/{dds_type}/{type_hash}",
        topic.trim_matches('/')
    )
}

/// A data key taken apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicKey {
    /// `ROS_DOMAIN_ID`.
    pub domain_id: u32,
    /// The topic, with its leading `/`.
    pub topic: String,
    /// `pkg::msg::dds_::Name_`.
    pub dds_type: String,
    /// `RIHS01_...` (or whatever the publisher wrote there).
    pub type_hash: String,
}

impl TopicKey {
    /// Parses `<domain>/<topic...>/<dds type>/<hash>`; `None` when `key` is not such a key
    /// (the topic must have at least one chunk and the type must be a DDS type name).
    pub fn parse(key: &str) -> Option<Self> {
        let (domain, rest) = key.split_once('/')?;
        let domain_id = parse_domain(domain)?;
        let (rest, type_hash) = rest.rsplit_once('/')?;
        let (topic, dds_type) = rest.rsplit_once('/')?;
        if topic.is_empty() || type_hash.is_empty() || ros_type_name(dds_type).is_none() {
            return None;
        }
        Some(Self {
            domain_id,
            topic: ros_topic_name(topic),
            dds_type: dds_type.to_owned(),
            type_hash: type_hash.to_owned(),
        })
    }

    /// The key again.
    pub fn key(&self) -> String {
        topic_key(self.domain_id, &self.topic, &self.dds_type, &self.type_hash)
    }

    /// `pkg/msg/Name`.
    pub fn ros_type_name(&self) -> Option<String> {
        ros_type_name(&self.dds_type)
    }
}

fn parse_domain(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

// ------------------------------------------------------------------------------------ QoS

/// `rmw_qos_reliability_policy_e`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reliability {
    /// The middleware's default (rmw_zenoh: reliable).
    SystemDefault = 0,
    /// Delivered over a reliable transport.
    Reliable = 1,
    /// May be dropped.
    BestEffort = 2,
    /// Not known.
    Unknown = 3,
    /// Matches the publishers.
    BestAvailable = 4,
}

/// `rmw_qos_durability_policy_e`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// The middleware's default (volatile).
    SystemDefault = 0,
    /// Late joiners get the publisher's cached samples.
    TransientLocal = 1,
    /// Only samples published while subscribed.
    Volatile = 2,
    /// Not known.
    Unknown = 3,
    /// Matches the publishers.
    BestAvailable = 4,
}

/// `rmw_qos_history_policy_e`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum History {
    /// The middleware's default (keep last).
    SystemDefault = 0,
    /// Keep the last `depth` samples.
    KeepLast = 1,
    /// Keep everything (rmw_zenoh publishers block when congested).
    KeepAll = 2,
    /// Not known.
    Unknown = 3,
}

/// `rmw_time_t`: seconds and nanoseconds, both unsigned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RmwDuration {
    /// Seconds.
    pub sec: u64,
    /// Nanoseconds.
    pub nsec: u64,
}

/// `RMW_DURATION_INFINITE`.
pub const DURATION_INFINITE: RmwDuration = RmwDuration {
    sec: 9_223_372_036,
    nsec: 854_775_807,
};

/// `RMW_QOS_POLICY_LIVELINESS_AUTOMATIC` (the only liveliness rmw_zenoh supports).
pub const LIVELINESS_AUTOMATIC: u8 = 1;

/// A QoS profile as rmw_zenoh puts it in a liveliness token. [`Qos::default`] is rmw_zenoh's
/// own default (`qos.cpp`): reliable, volatile, keep last 42, infinite deadline, lifespan and
/// lease, automatic liveliness; the token writes only what differs from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Qos {
    /// Reliability.
    pub reliability: Reliability,
    /// Durability.
    pub durability: Durability,
    /// History kind.
    pub history: History,
    /// History depth.
    pub depth: u64,
    /// Deadline.
    pub deadline: RmwDuration,
    /// Lifespan.
    pub lifespan: RmwDuration,
    /// `rmw_qos_liveliness_policy_e` value (1 = automatic).
    pub liveliness: u8,
    /// Liveliness lease.
    pub liveliness_lease: RmwDuration,
}

impl Default for Qos {
    fn default() -> Self {
        Self {
            reliability: Reliability::Reliable,
            durability: Durability::Volatile,
            history: History::KeepLast,
            depth: 42,
            deadline: DURATION_INFINITE,
            lifespan: DURATION_INFINITE,
            liveliness: LIVELINESS_AUTOMATIC,
            liveliness_lease: DURATION_INFINITE,
        }
    }
}

impl Qos {
    /// Reliable, volatile, keep last `depth`.
    pub fn keep_last(depth: u64) -> Self {
        Self {
            depth,
            ..Self::default()
        }
    }

    /// Reliable, volatile, keep all (rmw_zenoh: block when congested).
    pub fn keep_all() -> Self {
        Self {
            history: History::KeepAll,
            ..Self::default()
        }
    }

    /// The compact form in tokens (`qos_to_keyexpr`): `R:D:H,depth:dl_s,dl_ns:ls_s,ls_ns:L,lease_s,lease_ns`,
    /// each field empty when it equals the default. A keep-last-7 publisher is `::,7:,:,:,,`.
    pub fn to_keyexpr(&self) -> String {
        let d = Self::default();
        let mut s = String::new();
        let field = |s: &mut String, differs: bool, value: u64| {
            if differs {
                let _ = write!(s, "{value}");
            }
        };
        field(
            &mut s,
            self.reliability != d.reliability,
            self.reliability as u64,
        );
        s.push(':');
        field(
            &mut s,
            self.durability != d.durability,
            self.durability as u64,
        );
        s.push(':');
        field(&mut s, self.history != d.history, self.history as u64);
        s.push(',');
        field(&mut s, self.depth != d.depth, self.depth);
        s.push(':');
        field(
            &mut s,
            self.deadline.sec != d.deadline.sec,
            self.deadline.sec,
        );
        s.push(',');
        field(
            &mut s,
            self.deadline.nsec != d.deadline.nsec,
            self.deadline.nsec,
        );
        s.push(':');
        field(
            &mut s,
            self.lifespan.sec != d.lifespan.sec,
            self.lifespan.sec,
        );
        s.push(',');
        field(
            &mut s,
            self.lifespan.nsec != d.lifespan.nsec,
            self.lifespan.nsec,
        );
        s.push(':');
        field(
            &mut s,
            self.liveliness != d.liveliness,
            u64::from(self.liveliness),
        );
        s.push(',');
        field(
            &mut s,
            self.liveliness_lease.sec != d.liveliness_lease.sec,
            self.liveliness_lease.sec,
        );
        s.push(',');
        field(
            &mut s,
            self.liveliness_lease.nsec != d.liveliness_lease.nsec,
            self.liveliness_lease.nsec,
        );
        s
    }

    /// Parses [`Qos::to_keyexpr`]'s form (`keyexpr_to_qos`).
    pub fn parse(s: &str) -> Result<Self, String> {
        let bad = |why: &str| format!("QoS {s:?}: {why}");
        let parts: Vec<&str> = s.split(':').collect();
        if parts.len() != 6 {
            return Err(bad("expected 6 ':'-separated fields"));
        }
        let sub = |i: usize, n: usize| -> Result<Vec<&str>, String> {
            let v: Vec<&str> = parts[i].split(',').collect();
            if v.len() == n {
                Ok(v)
            } else {
                Err(bad(&format!("field {i} needs {n} ','-separated values")))
            }
        };
        let num = |v: &str, default: u64| -> Result<u64, String> {
            if v.is_empty() {
                Ok(default)
            } else {
                v.parse::<u64>()
                    .map_err(|_| bad(&format!("{v:?} is not a number")))
            }
        };
        let d = Self::default();
        let history = sub(2, 2)?;
        let deadline = sub(3, 2)?;
        let lifespan = sub(4, 2)?;
        let live = sub(5, 3)?;
        let reliability = match num(parts[0], d.reliability as u64)? {
            0 => Reliability::SystemDefault,
            1 => Reliability::Reliable,
            2 => Reliability::BestEffort,
            3 => Reliability::Unknown,
            4 => Reliability::BestAvailable,
            n => return Err(bad(&format!("reliability {n}"))),
        };
        let durability = match num(parts[1], d.durability as u64)? {
            0 => Durability::SystemDefault,
            1 => Durability::TransientLocal,
            2 => Durability::Volatile,
            3 => Durability::Unknown,
            4 => Durability::BestAvailable,
            n => return Err(bad(&format!("durability {n}"))),
        };
        let history_kind = match num(history[0], d.history as u64)? {
            0 => History::SystemDefault,
            1 => History::KeepLast,
            2 => History::KeepAll,
            3 => History::Unknown,
            n => return Err(bad(&format!("history {n}"))),
        };
        let liveliness = u8::try_from(num(live[0], u64::from(d.liveliness))?)
            .map_err(|_| bad("liveliness out of range"))?;
        Ok(Self {
            reliability,
            durability,
            history: history_kind,
            depth: num(history[1], d.depth)?,
            deadline: RmwDuration {
                sec: num(deadline[0], d.deadline.sec)?,
                nsec: num(deadline[1], d.deadline.nsec)?,
            },
            lifespan: RmwDuration {
                sec: num(lifespan[0], d.lifespan.sec)?,
                nsec: num(lifespan[1], d.lifespan.nsec)?,
            },
            liveliness,
            liveliness_lease: RmwDuration {
                sec: num(live[1], d.liveliness_lease.sec)?,
                nsec: num(live[2], d.liveliness_lease.nsec)?,
            },
        })
    }
}

// ------------------------------------------------------------------------ liveliness tokens

/// What an entity is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EntityKind {
    /// `NN`: a node.
    Node,
    /// `MP`: a message publisher.
    Publisher,
    /// `MS`: a message subscription.
    Subscription,
    /// `SS`: a service server.
    Service,
    /// `SC`: a service client.
    Client,
}

impl EntityKind {
    /// The token's code.
    pub fn code(self) -> &'static str {
        match self {
            EntityKind::Node => "NN",
            EntityKind::Publisher => "MP",
            EntityKind::Subscription => "MS",
            EntityKind::Service => "SS",
            EntityKind::Client => "SC",
        }
    }

    /// Parses a token's code.
    pub fn from_code(code: &str) -> Option<Self> {
        Some(match code {
            "NN" => EntityKind::Node,
            "MP" => EntityKind::Publisher,
            "MS" => EntityKind::Subscription,
            "SS" => EntityKind::Service,
            "SC" => EntityKind::Client,
            _ => return None,
        })
    }
}

/// The topic (or service) part of a publisher, subscription, service or client token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntityTopic {
    /// Fully qualified name, with its leading `/`.
    pub name: String,
    /// `pkg::msg::dds_::Name_`.
    pub dds_type: String,
    /// `RIHS01_...`.
    pub type_hash: String,
    /// Its QoS.
    pub qos: Qos,
}

/// A node, publisher, subscription, service or client as its liveliness token describes it:
/// `@ros2_lv/<domain>/<zid>/<node id>/<entity id>/<kind>/<enclave>/<namespace>/<node name>`,
/// followed for all but nodes by `/<topic>/<dds type>/<type hash>/<qos>`; names with `/`
/// mangled to `%` (an empty namespace or enclave, `/`, is `%`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entity {
    /// `ROS_DOMAIN_ID`.
    pub domain_id: u32,
    /// The zenoh session id, as zenoh prints it.
    pub zid: String,
    /// The node's id within its session.
    pub node_id: String,
    /// The entity's id (a node's is its node id).
    pub entity_id: String,
    /// What it is.
    pub kind: EntityKind,
    /// SROS enclave (`/` when none).
    pub enclave: String,
    /// Node namespace (`/` when none).
    pub namespace: String,
    /// Node name.
    pub node_name: String,
    /// Topic, type and QoS (all but nodes).
    pub topic: Option<EntityTopic>,
}

/// A liveliness token that is not an rmw_zenoh entity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("liveliness token {key:?}: {reason}")]
pub struct TokenError {
    /// The token.
    pub key: String,
    /// What is wrong with it.
    pub reason: String,
}

impl Entity {
    /// The token's key expression.
    pub fn keyexpr(&self) -> String {
        let mut s = format!(
            "{ADMIN_SPACE}/{}/{}/{}/{}/{}/{}/{}/{}",
            self.domain_id,
            self.zid,
            self.node_id,
            self.entity_id,
            self.kind.code(),
            mangle(&self.enclave),
            mangle(&self.namespace),
            mangle(&self.node_name),
        );
        if let Some(t) = &self.topic {
            let _ = write!(
                s,
                "/{}/{}/{}/{}",
                mangle(&t.name),
                mangle(&t.dds_type),
                mangle(&t.type_hash),
                t.qos.to_keyexpr()
            );
        }
        s
    }

    /// The entity's GID: the XXH3 128-bit hash of its token's key expression, low 64 bits
    /// first, each little endian (rmw_zenoh `Entity::Entity`). rmw_zenoh peers compute it from
    /// the token; publishers put it in every sample's attachment.
    pub fn gid(&self) -> [u8; GID_LEN] {
        gid_of_keyexpr(&self.keyexpr())
    }

    /// Parses a token's key expression.
    pub fn parse(key: &str) -> Result<Self, TokenError> {
        let err = |reason: &str| TokenError {
            key: key.to_owned(),
            reason: reason.to_owned(),
        };
        let parts: Vec<&str> = key.split('/').collect();
        if parts.len() < 9 {
            return Err(err("fewer than 9 chunks"));
        }
        if parts.iter().any(|p| p.is_empty()) {
            return Err(err("an empty chunk"));
        }
        if parts[0] != ADMIN_SPACE {
            return Err(err("not under @ros2_lv"));
        }
        let domain_id = parse_domain(parts[1]).ok_or_else(|| err("bad domain id"))?;
        let kind = EntityKind::from_code(parts[5]).ok_or_else(|| err("unknown entity kind"))?;
        let topic = match (kind, parts.len()) {
            (EntityKind::Node, 9) => None,
            (EntityKind::Node, _) => return Err(err("a node token with extra chunks")),
            (_, 13) => Some(EntityTopic {
                name: demangle(parts[9]),
                dds_type: demangle(parts[10]),
                type_hash: demangle(parts[11]),
                qos: Qos::parse(parts[12]).map_err(|e| err(&e))?,
            }),
            _ => return Err(err("an entity token needs 13 chunks")),
        };
        Ok(Self {
            domain_id,
            zid: parts[2].to_owned(),
            node_id: parts[3].to_owned(),
            entity_id: parts[4].to_owned(),
            kind,
            enclave: demangle(parts[6]),
            namespace: demangle(parts[7]),
            node_name: demangle(parts[8]),
            topic,
        })
    }

    /// The data key this entity publishes or subscribes on (`None` for nodes).
    pub fn topic_key(&self) -> Option<String> {
        self.topic
            .as_ref()
            .map(|t| topic_key(self.domain_id, &t.name, &t.dds_type, &t.type_hash))
    }
}

/// The key expression matching every token of `domain_id`: `@ros2_lv/<domain>/**`.
pub fn liveliness_subscription(domain_id: u32) -> String {
    format!("{ADMIN_SPACE}/{domain_id}/**")
}

/// The GID rmw_zenoh derives from a token's key expression (see [`Entity::gid`]).
pub fn gid_of_keyexpr(keyexpr: &str) -> [u8; GID_LEN] {
    xxhash_rust::xxh3::xxh3_128(keyexpr.as_bytes()).to_le_bytes()
}

// ------------------------------------------------------------------------------ attachment

/// What rmw_zenoh attaches to every published sample: the publisher's sequence number (from 1),
/// the publication time (ns since the Unix epoch) and the publisher's GID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attachment {
    /// Per-publisher sequence number, 1 for the first sample.
    pub sequence_number: i64,
    /// Wall-clock publication time, ns since the Unix epoch.
    pub source_timestamp: i64,
    /// The publisher's GID.
    pub source_gid: [u8; GID_LEN],
}

/// An attachment that is neither of rmw_zenoh's layouts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("rmw_zenoh attachment of {len} bytes: {reason}")]
pub struct AttachmentError {
    /// Its length.
    pub len: usize,
    /// What is wrong.
    pub reason: &'static str,
}

impl Attachment {
    /// Length of the encoded attachment.
    pub const LEN: usize = 8 + 8 + 1 + GID_LEN;

    /// The encoding of rmw_zenoh Jazzy 0.2.4+, Kilted and Rolling (zenoh-ext serialization of
    /// `(int64, int64, uint8[16])`): the sequence number and the timestamp as 8-byte little
    /// endian, the GID's length (one LEB128 byte, 16), the GID.
    pub fn to_bytes(&self) -> [u8; Self::LEN] {
        let mut out = [0u8; Self::LEN];
        out[..8].copy_from_slice(&self.sequence_number.to_le_bytes());
        out[8..16].copy_from_slice(&self.source_timestamp.to_le_bytes());
        out[16] = GID_LEN as u8;
        out[17..].copy_from_slice(&self.source_gid);
        out
    }

    /// Reads [`Attachment::to_bytes`]' layout, or the labelled one of rmw_zenoh Jazzy up to
    /// 0.2.3 (each value preceded by its name as a zenoh-ext string: `"sequence_number"`,
    /// `"source_timestamp"`, `"source_gid"`).
    pub fn parse(bytes: &[u8]) -> Result<Self, AttachmentError> {
        let err = |reason| AttachmentError {
            len: bytes.len(),
            reason,
        };
        let mut r = ExtReader { bytes, pos: 0 };
        let labelled = bytes.first() == Some(&15) && bytes.get(1..16) == Some(b"sequence_number");
        let (sequence_number, source_timestamp, gid) = if labelled {
            let seq = r.label("sequence_number").and_then(|()| r.i64());
            let ts = r.label("source_timestamp").and_then(|()| r.i64());
            let gid = r.label("source_gid").and_then(|()| r.bytes());
            (seq, ts, gid)
        } else {
            (r.i64(), r.i64(), r.bytes())
        };
        let (Some(sequence_number), Some(source_timestamp), Some(gid)) =
            (sequence_number, source_timestamp, gid)
        else {
            return Err(err("truncated"));
        };
        if r.pos != bytes.len() {
            return Err(err("bytes after the GID"));
        }
        let source_gid: [u8; GID_LEN] = gid
            .try_into()
            .map_err(|_| err("a GID that is not 16 bytes"))?;
        Ok(Self {
            sequence_number,
            source_timestamp,
            source_gid,
        })
    }
}

/// A reader of zenoh-ext serialization (little-endian integers, LEB128 lengths).
struct ExtReader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> ExtReader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let s = self.bytes.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }

    fn i64(&mut self) -> Option<i64> {
        Some(i64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }

    fn len(&mut self) -> Option<usize> {
        let mut value: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = *self.take(1)?.first()?;
            value |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return usize::try_from(value).ok();
            }
        }
        None
    }

    fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = self.len()?;
        self.take(n)
    }

    fn label(&mut self, name: &str) -> Option<()> {
        (self.bytes()? == name.as_bytes()).then_some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_types() {
        assert_eq!(ros_topic_name("so101/joint_states"), "/so101/joint_states");
        assert_eq!(
            ros_topic_name("/so101/joint_states/"),
            "/so101/joint_states"
        );
        assert_eq!(mangle("/robot1/chatter"), "%robot1%chatter");
        assert_eq!(demangle("%robot1%chatter"), "/robot1/chatter");
        assert_eq!(
            dds_type_name("sensor_msgs/msg/JointState").as_deref(),
            Some("sensor_msgs::msg::dds_::JointState_")
        );
        assert_eq!(
            ros_type_name("example_interfaces::srv::dds_::AddTwoInts_").as_deref(),
            Some("example_interfaces/srv/AddTwoInts")
        );
        assert_eq!(ros_type_name("sensor_msgs::msg::JointState"), None);
        assert_eq!(ros_type_name("a::msg::dds_::_"), None);
        assert_eq!(dds_type_name("JointState"), None);
        assert_eq!(TopicKey::parse("sinew/_bus/flush/abc"), None);
        assert_eq!(TopicKey::parse("0/T_/H"), None);
    }

    #[test]
    fn qos_strings() {
        assert_eq!(Qos::default().to_keyexpr(), "::,:,:,:,,");
        assert_eq!(Qos::keep_last(7).to_keyexpr(), "::,7:,:,:,,");
        assert_eq!(Qos::keep_all().to_keyexpr(), "::2,:,:,:,,");
        let odd = Qos {
            reliability: Reliability::BestEffort,
            durability: Durability::TransientLocal,
            depth: 5,
            deadline: RmwDuration { sec: 1, nsec: 5 },
            ..Qos::default()
        };
        assert_eq!(odd.to_keyexpr(), "2:1:,5:1,5:,:,,");
        for q in [Qos::default(), Qos::keep_last(7), Qos::keep_all(), odd] {
            assert_eq!(Qos::parse(&q.to_keyexpr()), Ok(q));
        }
        for bad in ["", "::,:,:,:,", "x::,:,:,:,,", "9::,:,:,:,,", "::,:,:,:,,:"] {
            assert!(Qos::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn attachment_layouts() {
        let a = Attachment {
            sequence_number: 1,
            source_timestamp: 1_700_000_000_123_456_789,
            source_gid: [7; 16],
        };
        let b = a.to_bytes();
        assert_eq!(b.len(), 33);
        assert_eq!(&b[..8], &[1, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(b[16], 16);
        assert_eq!(Attachment::parse(&b), Ok(a));
        // Jazzy <= 0.2.3: labelled.
        let mut old = Vec::new();
        for (label, value) in [
            ("sequence_number", a.sequence_number.to_le_bytes().to_vec()),
            (
                "source_timestamp",
                a.source_timestamp.to_le_bytes().to_vec(),
            ),
        ] {
            old.push(label.len() as u8);
            old.extend_from_slice(label.as_bytes());
            old.extend(value);
        }
        old.push(10);
        old.extend_from_slice(b"source_gid");
        old.push(16);
        old.extend_from_slice(&[7; 16]);
        assert_eq!(Attachment::parse(&old), Ok(a));
        assert!(Attachment::parse(&b[..32]).is_err());
        let mut long = b.to_vec();
        long.push(0);
        assert!(Attachment::parse(&long).is_err());
        let mut short_gid = b[..17].to_vec();
        short_gid[16] = 3;
        short_gid.extend_from_slice(&[1, 2, 3]);
        assert!(Attachment::parse(&short_gid).is_err());
        assert!(Attachment::parse(&[0xff; 40]).is_err());
        assert!(Attachment::parse(&[]).is_err());
    }
}
