//! `sinew topics`: list, echo, measure and publish bus traffic.

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Subcommand};
use serde_json::json;
use sinew_app::topics::{
    build_message, human_rate, kind_of, list_keys, list_ros_topics, publish_repeatedly, rate_stats,
    sample_kind, summarise, PubSpec,
};
use sinew_bus::keys::kind_for_key;
use sinew_bus::{Bus, BusConfig, RosInterop};

use crate::stop::Stop;

/// With `--ros rmw-zenoh`, keys are ROS topic names (`/so101/joint_states` or
/// `so101/joint_states`), `list` adds the publishers and subscribers ROS 2 nodes announce, and
/// `echo` decodes by the type each sample's key names.
#[derive(Debug, Subcommand)]
pub enum TopicsCommand {
    /// List the keys seen on the bus while listening (with --ros rmw-zenoh: the ROS topics,
    /// with their types, publishers and subscribers).
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

fn list(bus: &Bus, a: ListArgs, stop: &Stop) -> Result<()> {
    if let RosInterop::RmwZenoh { domain_id } = bus.ros() {
        return list_ros(bus, domain_id, a, stop);
    }
    let rows = list_keys(bus, &a.filter, seconds(a.duration, "--duration")?, &|| {
        stop.requested()
    })?;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{:<48} {:<36} {:>7} {:>10} {:>12}",
        "KEY", "TYPE", "MSGS", "RATE Hz", "BANDWIDTH"
    )?;
    for r in &rows {
        writeln!(
            out,
            "{:<48} {:<36} {:>7} {:>10.2} {:>12}",
            r.key,
            r.type_name.unwrap_or("?"),
            r.messages,
            r.rate_hz,
            human_rate(r.bandwidth_bytes_per_s)
        )?;
    }
    if rows.is_empty() {
        eprintln!("no traffic on {:?} in {} s", a.filter, a.duration);
    }
    Ok(())
}

fn list_ros(bus: &Bus, domain_id: u32, a: ListArgs, stop: &Stop) -> Result<()> {
    let filter = a.filter.trim_start_matches('/');
    let rows = list_ros_topics(
        bus,
        domain_id,
        filter,
        seconds(a.duration, "--duration")?,
        &|| stop.requested(),
    )?;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{:<40} {:<36} {:>4} {:>4} {:>7} {:>10} {:>12}",
        "TOPIC", "TYPE", "PUBS", "SUBS", "MSGS", "RATE Hz", "BANDWIDTH"
    )?;
    for r in &rows {
        let types = if r.types.is_empty() {
            "?".to_owned()
        } else {
            r.types.join(",")
        };
        writeln!(
            out,
            "{:<40} {:<36} {:>4} {:>4} {:>7} {:>10.2} {:>12}",
            r.topic,
            types,
            r.publishers,
            r.subscribers,
            r.messages,
            r.rate_hz,
            human_rate(r.bandwidth_bytes_per_s)
        )?;
    }
    if rows.is_empty() {
        eprintln!(
            "no ROS topic on {:?} (domain {domain_id}) in {} s",
            a.filter, a.duration
        );
    }
    Ok(())
}

fn echo(bus: &Bus, a: EchoArgs, stop: &Stop) -> Result<()> {
    let forced = a
        .msg_type
        .as_deref()
        .map(|t| kind_of(&a.key, Some(t)))
        .transpose()?;
    let wildcard = a.key.contains('*');
    // In rmw_zenoh mode every sample's key names its type.
    let rmw = matches!(bus.ros(), RosInterop::RmwZenoh { .. });
    let named = forced.or_else(|| kind_for_key(&a.key));
    if named.is_none() && !wildcard && !rmw {
        bail!(
            "cannot tell the message type of {:?} from its name; pass --type",
            a.key
        );
    }
    let sub = match named {
        // A subscription token for `ros2 topic info` (rmw_zenoh mode; plain subscribe_raw
        // otherwise).
        Some(kind) if rmw && !wildcard => bus.subscribe_raw_as(&a.key, kind.def(), 4096)?,
        _ => bus.subscribe_raw(&a.key, 4096)?,
    };
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
        let Some(s) = sub.recv_timeout(Duration::from_millis(100)) else {
            continue;
        };
        let Some(kind) = sample_kind(forced, &s) else {
            writeln!(
                out,
                "{}",
                json!({"key": s.key, "type": s.ros_type, "bytes": s.payload.len()})
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
        let wait = next_report
            .saturating_duration_since(now)
            .min(Duration::from_millis(100));
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

fn publish(bus: &Bus, a: PubArgs, stop: &Stop) -> Result<()> {
    let kind = kind_of(&a.key, a.msg_type.as_deref())?;
    let spec = PubSpec {
        message: a.message.clone(),
        names: a.names.clone(),
        positions: a.positions.clone(),
        velocities: a.velocities.clone(),
    };
    let msg = build_message(&spec, kind)?;
    let count = a
        .count
        .unwrap_or(if a.rate.is_some() { u64::MAX } else { 1 });
    let period = match a.rate {
        Some(r) if r > 0.0 && r.is_finite() => Some(Duration::from_secs_f64(1.0 / r)),
        Some(r) => bail!("--rate must be a positive number of Hz, got {r}"),
        None => None,
    };
    let wait = seconds(a.wait_subscribers, "--wait-subscribers")?;
    let (sent, found) =
        publish_repeatedly(bus, &a.key, &msg, count, period, wait, &|| stop.requested())?;
    if !found {
        eprintln!(
            "no subscriber on {} after {wait:?}; published anyway",
            a.key
        );
    }
    eprintln!("published {sent} {kind} on {}", a.key);
    Ok(())
}
