//! `sinew record`: every message on a robot's keys into a rosbag2-compatible MCAP file;
//! `sinew record info FILE`: what a recording holds. `sinew replay FILE --play`: the messages
//! back on the bus with their original timing (`replay.rs` has the other replay modes).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use sinew_bus::keys::{kind_for_key, RobotKeys};
use sinew_bus::{Bus, BusConfig};
use sinew_record::{read_recording, McapRecorder};

use sinew_app::resolve::load_robot;
use crate::stop::Stop;

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct RecordArgs {
    #[command(subcommand)]
    command: Option<RecordCommand>,
    #[command(flatten)]
    live: LiveArgs,
}

#[derive(Debug, Subcommand)]
pub enum RecordCommand {
    /// Topics, message counts, duration and rates of a recording.
    Info(InfoArgs),
}

#[derive(Debug, Args)]
pub struct LiveArgs {
    /// Robot folder or name: its namespace's keys are recorded.
    #[arg(long, default_value = "so101")]
    robot: String,
    /// Output file (default: recordings/<robot>-<unix time>.mcap).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Stop after this many seconds (default: Ctrl-C).
    #[arg(long)]
    duration: Option<f64>,
}

#[derive(Debug, Args)]
pub struct InfoArgs {
    /// The MCAP file.
    file: PathBuf,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(a: RecordArgs, bus_cfg: &BusConfig, stop: &Stop) -> Result<()> {
    match a.command {
        Some(RecordCommand::Info(i)) => info(i),
        None => live(a.live, bus_cfg, stop),
    }
}

fn info(a: InfoArgs) -> Result<()> {
    let rec = read_recording(&a.file)?;
    let i = rec.info();
    if a.json {
        println!("{}", serde_json::to_string_pretty(&i)?);
        return Ok(());
    }
    println!("file       {}", a.file.display());
    println!("messages   {}", i.messages);
    println!("duration   {:.3} s", i.duration_s);
    if let Some(t) = &i.truncated {
        println!("truncated  yes: read up to the last complete chunk ({t})");
    }
    for (k, v) in &i.metadata {
        println!("{k:<10} {v}");
    }
    println!(
        "{:<44} {:<36} {:>8} {:>9} {:>10}",
        "topic", "type", "count", "rate Hz", "MB"
    );
    for t in &i.topics {
        println!(
            "{:<44} {:<36} {:>8} {:>9.2} {:>10.2}",
            t.topic,
            t.schema,
            t.count,
            t.rate_hz,
            t.bytes as f64 / 1e6
        );
    }
    Ok(())
}

fn live(a: LiveArgs, bus_cfg: &BusConfig, stop: &Stop) -> Result<()> {
    let robot = load_robot(&a.robot)?;
    let keys = RobotKeys::new(&robot.config.namespace)?;
    let out = a.out.unwrap_or_else(|| {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        PathBuf::from(format!("recordings/{}-{t}.mcap", robot.config.name))
    });
    let bus = Bus::open(bus_cfg)?;
    let sub = bus.subscribe_raw(&keys.all(), 4096)?;
    let mut meta = BTreeMap::new();
    meta.insert("robot".to_owned(), robot.config.name.clone());
    meta.insert("source".to_owned(), "sinew record (live bus)".to_owned());
    let mut rec = McapRecorder::create(&out, &meta, None)?;
    eprintln!("record: {}/** -> {}", keys.namespace(), out.display());
    let start = Instant::now();
    let (mut unknown, mut malformed) = (0u64, 0u64);
    let mut last_flush = Instant::now();
    let mut error = None;
    while !stop.requested() && a.duration.is_none_or(|d| start.elapsed().as_secs_f64() < d) {
        let Some(s) = sub.recv_timeout(Duration::from_millis(100)) else {
            continue;
        };
        let Some(kind) = kind_for_key(&s.key) else {
            unknown += 1;
            continue;
        };
        let log = s.received_time.as_nanos().max(0) as u64;
        let publish = match kind.decode(&s.payload) {
            Ok(m) => m.header().map_or(log, |h| h.stamp.as_nanos().max(0) as u64),
            Err(e) => {
                malformed += 1;
                tracing::warn!("{}: malformed {} not recorded: {e}", s.key, kind.def().name);
                continue;
            }
        };
        if let Err(e) = rec.write_raw(&s.key, kind.def(), log, publish, &s.payload) {
            error = Some(e.to_string());
            break;
        }
        // A chunk at least every second, so a crash loses at most about a second.
        if last_flush.elapsed() > Duration::from_secs(1) {
            if let Err(e) = rec.flush() {
                error = Some(e.to_string());
                break;
            }
            last_flush = Instant::now();
        }
    }
    let dropped = sub.stats().dropped;
    let summary = rec.finish()?;
    eprintln!(
        "record: {} messages ({:.1} MB) in {:.1} s to {}; skipped: {unknown} on unknown keys, {malformed} malformed; dropped by a full queue: {dropped}",
        summary.messages,
        summary.bytes as f64 / 1e6,
        start.elapsed().as_secs_f64(),
        out.display()
    );
    bus.close();
    if let Some(e) = error {
        bail!("recording stopped: {e} (what was written before stays readable)");
    }
    Ok(())
}
