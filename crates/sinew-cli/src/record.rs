//! `sinew record`: every message on a robot's keys into a rosbag2-compatible MCAP file;
//! `sinew record info FILE`: what a recording holds. `sinew replay FILE --play`: the messages
//! back on the bus with their original timing (`replay.rs` has the other replay modes).

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use sinew_app::recording::record_bus;
use sinew_app::resolve::load_robot;
use sinew_bus::{Bus, BusConfig};
use sinew_record::read_recording;

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
    #[command(flatten)]
    recording: crate::args::RecordingArgs,
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
    let out = a.out.unwrap_or_else(|| {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        PathBuf::from(format!("recordings/{}-{t}.mcap", robot.config.name))
    });
    let bus = Bus::open(bus_cfg)?;
    eprintln!("record: {}/** -> {}", robot.config.namespace, out.display());
    let r = record_bus(
        &bus,
        &robot,
        &out,
        a.duration,
        a.recording.encodings(crate::args::ImageEncodingArg::Jpeg),
        &|| stop.requested(),
    )?;
    eprintln!(
        "record: {} messages ({:.1} MB) in {:.1} s to {}; skipped: {} on unknown keys, {} malformed; dropped by a full queue: {}",
        r.summary.messages,
        r.summary.bytes as f64 / 1e6,
        r.wall_s,
        out.display(),
        r.unknown,
        r.malformed,
        r.dropped
    );
    bus.close();
    if let Some(e) = r.error {
        bail!("recording stopped: {e} (what was written before stays readable)");
    }
    Ok(())
}
