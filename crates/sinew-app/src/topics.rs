//! Bus traffic from the command line: what `sinew topics` lists, echoes, measures and
//! publishes (the loops that print live in the binary).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};
use sinew_bus::keys::kind_for_key;
use sinew_bus::{Bus, Qos, RawSample};
use sinew_msgs::ros2::rmw_zenoh::{ros_type_name, EntityKind};
use sinew_msgs::{
    AnyMessage, Header, JointState, JointTrajectory, JointTrajectoryPoint, MessageKind, StringMsg,
    Time,
};

/// The message type named `name` (`sensor_msgs/msg/JointState`).
pub fn parse_kind(name: &str) -> Result<MessageKind> {
    MessageKind::from_type_name(name).ok_or_else(|| {
        let known: Vec<&str> = MessageKind::ALL.iter().map(|k| k.def().name).collect();
        anyhow!("unknown message type {name:?}; known: {}", known.join(", "))
    })
}

/// The message type of `key`: `forced` when given, else inferred from the key's name.
pub fn kind_of(key: &str, forced: Option<&str>) -> Result<MessageKind> {
    match forced {
        Some(t) => parse_kind(t),
        None => kind_for_key(key).ok_or_else(|| {
            anyhow!("cannot tell the message type of {key:?} from its name; pass --type")
        }),
    }
}

/// The type to decode a sample as: `forced` when given, else the type its rmw_zenoh key names,
/// else (bridge mode) the type its key's name implies. A type the key names but Sinew does
/// not know is not guessed from the name.
pub fn sample_kind(forced: Option<MessageKind>, s: &RawSample) -> Option<MessageKind> {
    forced.or_else(|| match &s.ros_type {
        Some(t) => MessageKind::from_type_name(t),
        None => kind_for_key(&s.key),
    })
}

/// A rate and bandwidth in words (`1.20 MB/s`).
pub fn human_rate(bytes_per_s: f64) -> String {
    if bytes_per_s >= 1e6 {
        format!("{:.2} MB/s", bytes_per_s / 1e6)
    } else if bytes_per_s >= 1e3 {
        format!("{:.2} KB/s", bytes_per_s / 1e3)
    } else {
        format!("{bytes_per_s:.0} B/s")
    }
}

/// The JSON line `echo` prints: the message, with images summarised.
pub fn summarise(msg: &AnyMessage) -> Value {
    match msg {
        AnyMessage::Image(img) => json!({
            "header": img.header,
            "height": img.height,
            "width": img.width,
            "encoding": img.encoding,
            "step": img.step,
            "bytes": img.data.len(),
            "mean": img.channel_means(),
        }),
        AnyMessage::CompressedImage(c) => json!({
            "header": c.header,
            "format": c.format,
            "bytes": c.data.len(),
        }),
        AnyMessage::String(m) => json!(m),
        AnyMessage::JointState(m) => json!(m),
        AnyMessage::JointTrajectory(m) => json!(m),
    }
}

/// Rate statistics over a window of arrival times and sizes.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RateStats {
    pub messages: u64,
    pub rate_hz: f64,
    pub period_mean_ms: f64,
    pub period_min_ms: f64,
    pub period_max_ms: f64,
    /// Standard deviation of the period.
    pub jitter_ms: f64,
    pub bandwidth_bytes_per_s: f64,
}

/// Statistics over arrivals `(seconds, bytes)`, oldest first; `None` with fewer than two.
pub fn rate_stats(arrivals: &[(f64, usize)], total: u64) -> Option<RateStats> {
    if arrivals.len() < 2 {
        return None;
    }
    let periods: Vec<f64> = arrivals.windows(2).map(|w| w[1].0 - w[0].0).collect();
    let n = periods.len() as f64;
    let mean = periods.iter().sum::<f64>() / n;
    let var = periods.iter().map(|p| (p - mean).powi(2)).sum::<f64>() / n;
    let span = arrivals[arrivals.len() - 1].0 - arrivals[0].0;
    let bytes: usize = arrivals[1..].iter().map(|a| a.1).sum();
    Some(RateStats {
        messages: total,
        rate_hz: if mean > 0.0 {
            1.0 / mean
        } else {
            f64::INFINITY
        },
        period_mean_ms: mean * 1e3,
        period_min_ms: periods.iter().cloned().fold(f64::INFINITY, f64::min) * 1e3,
        period_max_ms: periods.iter().cloned().fold(0.0, f64::max) * 1e3,
        jitter_ms: var.sqrt() * 1e3,
        bandwidth_bytes_per_s: if span > 0.0 { bytes as f64 / span } else { 0.0 },
    })
}

/// One key seen on the bus while listening.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyRow {
    /// The key.
    pub key: String,
    /// Its message type, inferred from its name.
    pub type_name: Option<&'static str>,
    /// Messages received.
    pub messages: u64,
    /// Their rate, Hz.
    pub rate_hz: f64,
    /// Bandwidth, bytes/s.
    pub bandwidth_bytes_per_s: f64,
}

#[derive(Default)]
struct KeyStats {
    count: u64,
    bytes: u64,
    first: Option<Instant>,
    last: Option<Instant>,
    ros_type: Option<String>,
}

/// Every key matching `filter` that carries traffic within `duration`.
pub fn list_keys(
    bus: &Bus,
    filter: &str,
    duration: Duration,
    stop: &dyn Fn() -> bool,
) -> Result<Vec<KeyRow>> {
    Ok(list_keys_with_types(bus, filter, duration, stop)?
        .into_iter()
        .map(|(_, _, row)| row)
        .collect())
}

/// [`list_keys`], with the ROS type each key's samples named (rmw_zenoh mode).
fn list_keys_with_types(
    bus: &Bus,
    filter: &str,
    duration: Duration,
    stop: &dyn Fn() -> bool,
) -> Result<Vec<(String, Option<String>, KeyRow)>> {
    let sub = bus.subscribe_raw(filter, 65_536)?;
    let deadline = Instant::now() + duration;
    let mut keys: BTreeMap<String, KeyStats> = BTreeMap::new();
    while !stop() {
        let now = Instant::now();
        let Some(left) = deadline.checked_duration_since(now) else {
            break;
        };
        if let Some(s) = sub.recv_timeout(left.min(Duration::from_millis(100))) {
            let k = keys.entry(s.key).or_default();
            k.count += 1;
            k.bytes += s.payload.len() as u64;
            k.first.get_or_insert(s.received_at);
            k.last = Some(s.received_at);
            if k.ros_type.is_none() {
                k.ros_type = s.ros_type;
            }
        }
    }
    Ok(keys
        .into_iter()
        .map(|(key, k)| {
            let span = match (k.first, k.last) {
                (Some(f), Some(l)) if k.count > 1 => (l - f).as_secs_f64(),
                _ => 0.0,
            };
            let row = KeyRow {
                type_name: kind_for_key(&key).map(|t| t.def().name),
                key: key.clone(),
                messages: k.count,
                rate_hz: if span > 0.0 {
                    (k.count - 1) as f64 / span
                } else {
                    0.0
                },
                bandwidth_bytes_per_s: if span > 0.0 {
                    k.bytes as f64 / span
                } else {
                    0.0
                },
            };
            (key, k.ros_type, row)
        })
        .collect())
}

/// One ROS topic seen in rmw_zenoh mode: by its traffic, by its publishers' and subscribers'
/// liveliness tokens, or both.
#[derive(Debug, Clone, PartialEq)]
pub struct TopicRow {
    /// The topic, with its leading slash.
    pub topic: String,
    /// Its ROS type(s), from the keys and tokens (several when peers disagree).
    pub types: Vec<String>,
    /// Publishers announced by other sessions.
    pub publishers: usize,
    /// Subscriptions announced by other sessions.
    pub subscribers: usize,
    /// Messages received.
    pub messages: u64,
    /// Their rate, Hz.
    pub rate_hz: f64,
    /// Bandwidth, bytes/s.
    pub bandwidth_bytes_per_s: f64,
}

/// Every ROS topic of `domain_id` matching `filter` (a key expression over topics without
/// their leading slash) that carries traffic within `duration` or has a publisher or
/// subscriber announced by an rmw_zenoh liveliness token (ROS 2 nodes, other Sinew
/// processes). Needs a bus in rmw_zenoh mode for the traffic.
pub fn list_ros_topics(
    bus: &Bus,
    domain_id: u32,
    filter: &str,
    duration: Duration,
    stop: &dyn Fn() -> bool,
) -> Result<Vec<TopicRow>> {
    let graph = bus.ros_graph(domain_id)?;
    let traffic = list_keys_with_types(bus, filter, duration, stop)?;
    let mut rows: BTreeMap<String, TopicRow> = BTreeMap::new();
    let add_type = |r: &mut TopicRow, t: String| {
        if !r.types.contains(&t) {
            r.types.push(t);
        }
    };
    for (key, ros_type, k) in traffic {
        let topic = format!("/{key}");
        let r = rows
            .entry(topic.clone())
            .or_insert_with(|| empty_row(topic));
        if let Some(t) = ros_type {
            add_type(r, t);
        }
        r.messages = k.messages;
        r.rate_hz = k.rate_hz;
        r.bandwidth_bytes_per_s = k.bandwidth_bytes_per_s;
    }
    for e in graph.others() {
        let Some(t) = &e.topic else { continue };
        let is_pub = e.kind == EntityKind::Publisher;
        if !is_pub && e.kind != EntityKind::Subscription {
            continue;
        }
        if !sinew_bus::key_expr_matches(filter, t.name.trim_start_matches('/')) {
            continue;
        }
        let r = rows
            .entry(t.name.clone())
            .or_insert_with(|| empty_row(t.name.clone()));
        if let Some(ty) = ros_type_name(&t.dds_type) {
            add_type(r, ty);
        }
        if is_pub {
            r.publishers += 1;
        } else {
            r.subscribers += 1;
        }
    }
    Ok(rows.into_values().collect())
}

fn empty_row(topic: String) -> TopicRow {
    TopicRow {
        topic,
        types: Vec::new(),
        publishers: 0,
        subscribers: 0,
        messages: 0,
        rate_hz: 0.0,
        bandwidth_bytes_per_s: 0.0,
    }
}

/// A message to publish, as given on the command line.
#[derive(Debug, Clone, Default)]
pub struct PubSpec {
    /// JSON in the ROS field names (missing fields take defaults), or plain text for strings.
    pub message: Option<String>,
    /// Joint names (JointState, JointTrajectory).
    pub names: Vec<String>,
    /// Positions.
    pub positions: Vec<f64>,
    /// Velocities.
    pub velocities: Vec<f64>,
}

/// The message of type `kind` that `a` describes.
pub fn build_message(a: &PubSpec, kind: MessageKind) -> Result<AnyMessage> {
    let from_json = |text: &str| -> Result<Value> {
        serde_json::from_str(text)
            .with_context(|| format!("the message argument is not valid JSON: {text}"))
    };
    let msg = match kind {
        MessageKind::String => {
            let text = a.message.clone().unwrap_or_default();
            match serde_json::from_str::<StringMsg>(&text) {
                Ok(m) if text.trim_start().starts_with('{') => AnyMessage::String(m),
                _ => AnyMessage::String(StringMsg { data: text }),
            }
        }
        MessageKind::JointState => {
            let mut m: JointState = match &a.message {
                Some(t) => serde_json::from_value(from_json(t)?)
                    .context("reading a sensor_msgs/msg/JointState")?,
                None => JointState::default(),
            };
            if !a.names.is_empty() {
                m.name = a.names.clone();
            }
            if !a.positions.is_empty() {
                m.position = a.positions.clone();
            }
            if !a.velocities.is_empty() {
                m.velocity = a.velocities.clone();
            }
            check_lengths(
                &m.name,
                &[
                    ("positions", &m.position),
                    ("velocities", &m.velocity),
                    ("efforts", &m.effort),
                ],
            )?;
            AnyMessage::JointState(m)
        }
        MessageKind::JointTrajectory => {
            let mut m: JointTrajectory = match &a.message {
                Some(t) => serde_json::from_value(from_json(t)?)
                    .context("reading a trajectory_msgs/msg/JointTrajectory")?,
                None => JointTrajectory::default(),
            };
            if !a.names.is_empty() {
                m.joint_names = a.names.clone();
            }
            if !a.positions.is_empty() || !a.velocities.is_empty() {
                m.points = vec![JointTrajectoryPoint {
                    positions: a.positions.clone(),
                    velocities: a.velocities.clone(),
                    ..Default::default()
                }];
            }
            for (i, p) in m.points.iter().enumerate() {
                check_lengths(
                    &m.joint_names,
                    &[("positions", &p.positions), ("velocities", &p.velocities)],
                )
                .with_context(|| format!("point {i}"))?;
            }
            AnyMessage::JointTrajectory(m)
        }
        MessageKind::Image | MessageKind::CompressedImage => {
            bail!("publishing {kind} from the command line is not supported; use the library")
        }
    };
    Ok(msg)
}

fn check_lengths(names: &[String], arrays: &[(&str, &Vec<f64>)]) -> Result<()> {
    for (what, v) in arrays {
        if !v.is_empty() && v.len() != names.len() {
            bail!("{} {what} for {} joint names", v.len(), names.len());
        }
    }
    Ok(())
}

fn stamp(msg: &mut AnyMessage, now: Time) {
    let h: Option<&mut Header> = match msg {
        AnyMessage::JointState(m) => Some(&mut m.header),
        AnyMessage::JointTrajectory(m) => Some(&mut m.header),
        _ => None,
    };
    if let Some(h) = h {
        h.stamp = now;
    }
}

/// Publishes `msg` on `key` `count` times, every `period` (once when `None`), stamping headers
/// left at zero with the time of each send; waits up to `wait` for a subscriber first. Returns
/// how many were sent and whether a subscriber was there.
pub fn publish_repeatedly(
    bus: &Bus,
    key: &str,
    msg: &AnyMessage,
    count: u64,
    period: Option<Duration>,
    wait: Duration,
    stop: &dyn Fn() -> bool,
) -> Result<(u64, bool)> {
    let stamp_each = msg.header().is_some_and(|h| h.stamp == Time::default());
    let qos = Qos {
        block_when_congested: true,
        ..Qos::default()
    };
    macro_rules! go {
        ($t:ty, $unwrap:path) => {{
            let p = bus.publisher_with::<$t>(key, qos)?;
            let found = p.wait_for_subscribers(wait);
            let mut next = Instant::now();
            let mut sent = 0u64;
            while sent < count && !stop() {
                let mut m = msg.clone();
                if stamp_each {
                    stamp(&mut m, Time::now());
                }
                if let $unwrap(m) = &m {
                    p.put(m)?;
                }
                sent += 1;
                if let Some(period) = period {
                    next += period;
                    if sent < count {
                        // Pacing the publish rate, not synchronisation.
                        std::thread::sleep(next.saturating_duration_since(Instant::now()));
                    }
                }
            }
            Ok((sent, found))
        }};
    }
    match msg {
        AnyMessage::String(_) => go!(StringMsg, AnyMessage::String),
        AnyMessage::JointState(_) => go!(JointState, AnyMessage::JointState),
        AnyMessage::JointTrajectory(_) => go!(JointTrajectory, AnyMessage::JointTrajectory),
        other => bail!(
            "publishing {} from the command line is not supported",
            other.kind()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_are_summarised_not_dumped() {
        let data: Vec<u8> = [200u8, 10, 0].repeat(4 * 2);
        let img = sinew_msgs::Image::rgb8(Header::default(), 4, 2, data);
        let v = summarise(&AnyMessage::Image(img));
        assert_eq!(v["width"], 4);
        assert_eq!(v["height"], 2);
        assert_eq!(v["encoding"], "rgb8");
        assert_eq!(v["bytes"], 24);
        assert_eq!(v["mean"], json!([200.0, 10.0, 0.0]));
        assert!(v.get("data").is_none());
    }

    #[test]
    fn rate_stats_of_a_regular_stream() {
        let arr: Vec<(f64, usize)> = (0..11).map(|i| (i as f64 * 0.01, 100)).collect();
        let s = rate_stats(&arr, 11).expect("stats");
        assert!((s.rate_hz - 100.0).abs() < 1e-6);
        assert!(s.jitter_ms < 1e-9);
        assert!((s.bandwidth_bytes_per_s - 10_000.0).abs() < 1e-6);
        assert!(rate_stats(&arr[..1], 1).is_none());
    }

    #[test]
    fn rate_stats_jitter_is_the_period_standard_deviation() {
        let arr = [(0.0, 1), (0.01, 1), (0.03, 1)];
        let s = rate_stats(&arr, 3).expect("stats");
        assert!((s.jitter_ms - 5.0).abs() < 1e-9, "{}", s.jitter_ms);
        assert!((s.period_min_ms - 10.0).abs() < 1e-9);
        assert!((s.period_max_ms - 20.0).abs() < 1e-9);
    }
}
