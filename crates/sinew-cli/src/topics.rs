//! `sinew topics`: list, echo, measure and publish bus traffic.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Subcommand};
use serde_json::{json, Value};
use sinew_bus::keys::kind_for_key;
use sinew_bus::{Bus, BusConfig, Qos};
use sinew_msgs::{
    AnyMessage, Header, JointState, JointTrajectory, JointTrajectoryPoint, MessageKind, StringMsg,
    Time,
};

use crate::stop::Stop;

/// Poll interval of loops that wait on the bus and on Ctrl-C.
const TICK: Duration = Duration::from_millis(100);

#[derive(Debug, Subcommand)]
pub enum TopicsCommand {
    /// List the keys seen on the bus while listening.
    List(ListArgs),
    /// Print each message on a key, decoded, one JSON line per message.
    Echo(EchoArgs),
    /// Measure the rate, jitter and bandwidth of a key.
    Hz(HzArgs),
    /// Publish a message (a joint state, a trajectory or a string) on a key.
    Pub(PubArgs),
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// How long to listen, in seconds.
    #[arg(long, default_value_t = 1.0)]
    duration: f64,
    /// Key expression to watch.
    #[arg(long, default_value = "**")]
    filter: String,
}

#[derive(Debug, Args)]
pub struct EchoArgs {
    /// Key or key expression (wildcards `*` and `**` allowed).
    key: String,
    /// Message type (e.g. sensor_msgs/msg/JointState); inferred from the key when omitted.
    #[arg(long = "type", value_name = "TYPE")]
    msg_type: Option<String>,
    /// Exit after this many messages.
    #[arg(long)]
    count: Option<u64>,
    /// Exit after this many seconds.
    #[arg(long)]
    duration: Option<f64>,
}

#[derive(Debug, Args)]
pub struct HzArgs {
    /// Key or key expression.
    key: String,
    /// Number of most recent messages the statistics are computed over.
    #[arg(long, default_value_t = 1000)]
    window: usize,
    /// Exit after this many seconds, printing a final summary.
    #[arg(long)]
    duration: Option<f64>,
    /// Print the summaries as JSON lines.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct PubArgs {
    /// Key to publish on, e.g. so101/joint_states.
    key: String,
    /// The message as JSON in the ROS field names (missing fields take defaults), or, for
    /// std_msgs/String, plain text.
    message: Option<String>,
    /// Message type; inferred from the key when omitted.
    #[arg(long = "type", value_name = "TYPE")]
    msg_type: Option<String>,
    /// Joint names, comma-separated (JointState or JointTrajectory).
    #[arg(long, value_delimiter = ',')]
    names: Vec<String>,
    /// Joint positions, comma-separated (rad or m).
    #[arg(long, value_delimiter = ',', allow_hyphen_values = true)]
    positions: Vec<f64>,
    /// Joint velocities, comma-separated (rad/s or m/s).
    #[arg(long, value_delimiter = ',', allow_hyphen_values = true)]
    velocities: Vec<f64>,
    /// Publish repeatedly at this rate (Hz) until --count or Ctrl-C; once when omitted.
    #[arg(long)]
    rate: Option<f64>,
    /// Number of messages to publish.
    #[arg(long)]
    count: Option<u64>,
    /// Seconds to wait for a subscriber before the first message.
    #[arg(long, default_value_t = 2.0)]
    wait_subscribers: f64,
}

pub fn run(cmd: TopicsCommand, bus: &BusConfig, stop: &Stop) -> Result<()> {
    let bus = Bus::open(bus).context("joining the bus")?;
    let res = match cmd {
        TopicsCommand::List(a) => list(&bus, a, stop),
        TopicsCommand::Echo(a) => echo(&bus, a, stop),
        TopicsCommand::Hz(a) => hz(&bus, a, stop),
        TopicsCommand::Pub(a) => publish(&bus, a, stop),
    };
    bus.close();
    res
}

fn seconds(s: f64, flag: &str) -> Result<Duration> {
    Duration::try_from_secs_f64(s)
        .map_err(|_| anyhow!("{flag} must be a non-negative number of seconds, got {s}"))
}

fn parse_kind(name: &str) -> Result<MessageKind> {
    MessageKind::from_type_name(name).ok_or_else(|| {
        let known: Vec<&str> = MessageKind::ALL.iter().map(|k| k.def().name).collect();
        anyhow!("unknown message type {name:?}; known: {}", known.join(", "))
    })
}

#[derive(Default)]
struct KeyStats {
    count: u64,
    bytes: u64,
    first: Option<Instant>,
    last: Option<Instant>,
}

fn list(bus: &Bus, a: ListArgs, stop: &Stop) -> Result<()> {
    let sub = bus.subscribe_raw(&a.filter, 65_536)?;
    let deadline = Instant::now() + seconds(a.duration, "--duration")?;
    let mut keys: BTreeMap<String, KeyStats> = BTreeMap::new();
    while !stop.requested() {
        let now = Instant::now();
        let Some(left) = deadline.checked_duration_since(now) else {
            break;
        };
        if let Some(s) = sub.recv_timeout(left.min(TICK)) {
            let k = keys.entry(s.key).or_default();
            k.count += 1;
            k.bytes += s.payload.len() as u64;
            k.first.get_or_insert(s.received_at);
            k.last = Some(s.received_at);
        }
    }
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{:<48} {:<36} {:>7} {:>10} {:>12}",
        "KEY", "TYPE", "MSGS", "RATE Hz", "BANDWIDTH"
    )?;
    for (key, k) in &keys {
        let span = match (k.first, k.last) {
            (Some(f), Some(l)) if k.count > 1 => (l - f).as_secs_f64(),
            _ => 0.0,
        };
        let rate = if span > 0.0 {
            (k.count - 1) as f64 / span
        } else {
            0.0
        };
        let bw = if span > 0.0 {
            k.bytes as f64 / span
        } else {
            0.0
        };
        let ty = kind_for_key(key).map(|t| t.def().name).unwrap_or("?");
        writeln!(
            out,
            "{key:<48} {ty:<36} {:>7} {rate:>10.2} {:>12}",
            k.count,
            human_rate(bw)
        )?;
    }
    if keys.is_empty() {
        eprintln!("no traffic on {:?} in {} s", a.filter, a.duration);
    }
    Ok(())
}

fn human_rate(bytes_per_s: f64) -> String {
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

fn echo(bus: &Bus, a: EchoArgs, stop: &Stop) -> Result<()> {
    let forced = a.msg_type.as_deref().map(parse_kind).transpose()?;
    let wildcard = a.key.contains('*');
    if forced.is_none() && !wildcard && kind_for_key(&a.key).is_none() {
        bail!(
            "cannot tell the message type of {:?} from its name; pass --type",
            a.key
        );
    }
    let sub = bus.subscribe_raw(&a.key, 4096)?;
    let deadline = a
        .duration
        .map(|d| seconds(d, "--duration"))
        .transpose()?
        .map(|d| Instant::now() + d);
    let mut printed = 0u64;
    let mut malformed = 0u64;
    let mut out = std::io::stdout().lock();
    while !stop.requested() && a.count.is_none_or(|c| printed < c) {
        if deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        let Some(s) = sub.recv_timeout(TICK) else {
            continue;
        };
        let Some(kind) = forced.or_else(|| kind_for_key(&s.key)) else {
            writeln!(
                out,
                "{}",
                json!({"key": s.key, "type": null, "bytes": s.payload.len()})
            )?;
            printed += 1;
            continue;
        };
        match kind.decode(&s.payload) {
            Ok(msg) => {
                let body = summarise(&msg);
                let line = if wildcard {
                    json!({"key": s.key, "msg": body})
                } else {
                    body
                };
                writeln!(out, "{line}")?;
                out.flush()?;
                printed += 1;
            }
            Err(e) => {
                malformed += 1;
                eprintln!("malformed {kind} on {}: {e}", s.key);
            }
        }
    }
    let st = sub.stats();
    if malformed > 0 || st.dropped > 0 {
        eprintln!(
            "echo: {printed} printed, {malformed} malformed, {} dropped (reader too slow)",
            st.dropped
        );
    }
    Ok(())
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

fn hz(bus: &Bus, a: HzArgs, stop: &Stop) -> Result<()> {
    if a.window < 2 {
        bail!("--window must be at least 2, got {}", a.window);
    }
    let sub = bus.subscribe_raw(&a.key, 65_536)?;
    let start = Instant::now();
    let deadline = a
        .duration
        .map(|d| seconds(d, "--duration"))
        .transpose()?
        .map(|d| start + d);
    let mut window: std::collections::VecDeque<(f64, usize)> = Default::default();
    let mut total = 0u64;
    let mut next_report = start + Duration::from_secs(1);
    let mut out = std::io::stdout().lock();
    let report = |window: &std::collections::VecDeque<(f64, usize)>,
                  total: u64,
                  out: &mut dyn Write|
     -> Result<()> {
        let arr: Vec<(f64, usize)> = window.iter().cloned().collect();
        match rate_stats(&arr, total) {
            Some(s) if a.json => writeln!(out, "{}", serde_json::to_string(&s)?)?,
            Some(s) => writeln!(
                out,
                "rate {:.2} Hz  period mean {:.3} ms min {:.3} max {:.3} jitter {:.3} ms  {}  ({} msgs)",
                s.rate_hz, s.period_mean_ms, s.period_min_ms, s.period_max_ms, s.jitter_ms,
                human_rate(s.bandwidth_bytes_per_s), s.messages
            )?,
            None => writeln!(out, "no rate yet ({total} msgs on {})", a.key)?,
        }
        out.flush()?;
        Ok(())
    };
    while !stop.requested() {
        let now = Instant::now();
        if deadline.is_some_and(|d| now >= d) {
            break;
        }
        if now >= next_report {
            report(&window, total, &mut out)?;
            next_report += Duration::from_secs(1);
        }
        let wait = next_report.saturating_duration_since(now).min(TICK);
        if let Some(s) = sub.recv_timeout(wait) {
            total += 1;
            window.push_back(((s.received_at - start).as_secs_f64(), s.payload.len()));
            if window.len() > a.window {
                window.pop_front();
            }
        }
    }
    report(&window, total, &mut out)
}

fn build_message(a: &PubArgs, kind: MessageKind) -> Result<AnyMessage> {
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

fn publish(bus: &Bus, a: PubArgs, stop: &Stop) -> Result<()> {
    let kind = match &a.msg_type {
        Some(t) => parse_kind(t)?,
        None => kind_for_key(&a.key).ok_or_else(|| {
            anyhow!(
                "cannot tell the message type of {:?} from its name; pass --type",
                a.key
            )
        })?,
    };
    let template = build_message(&a, kind)?;
    let stamp_each = template
        .header()
        .is_some_and(|h| h.stamp == Time::default());
    let count = a
        .count
        .unwrap_or(if a.rate.is_some() { u64::MAX } else { 1 });
    let period = match a.rate {
        Some(r) if r > 0.0 && r.is_finite() => Some(Duration::from_secs_f64(1.0 / r)),
        Some(r) => bail!("--rate must be a positive number of Hz, got {r}"),
        None => None,
    };
    let wait = seconds(a.wait_subscribers, "--wait-subscribers")?;
    macro_rules! go {
        ($t:ty, $unwrap:path) => {{
            let p = bus.publisher_with::<$t>(
                &a.key,
                Qos {
                    block_when_congested: true,
                    ..Qos::default()
                },
            )?;
            if !p.wait_for_subscribers(wait) {
                eprintln!(
                    "no subscriber on {} after {:?}; publishing anyway",
                    a.key, wait
                );
            }
            let mut next = Instant::now();
            let mut sent = 0u64;
            while sent < count && !stop.requested() {
                let mut msg = template.clone();
                if stamp_each {
                    stamp(&mut msg, Time::now());
                }
                if let $unwrap(m) = &msg {
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
            eprintln!("published {sent} {} on {}", kind, a.key);
        }};
    }
    match kind {
        MessageKind::String => go!(StringMsg, AnyMessage::String),
        MessageKind::JointState => go!(JointState, AnyMessage::JointState),
        MessageKind::JointTrajectory => go!(JointTrajectory, AnyMessage::JointTrajectory),
        MessageKind::Image | MessageKind::CompressedImage => {
            bail!("publishing {kind} from the command line is not supported")
        }
    }
    Ok(())
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
