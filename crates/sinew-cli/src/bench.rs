//! `sinew bench`: the bus between two processes, policies, recording and training; the
//! measurements live in `sinew_app::benches`, `sinew_policy::bench` and `sinew_train`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use clap::{Args, Subcommand};
use sinew_app::benches::{bench_record, run_pair, sink};
use sinew_bus::BusConfig;

use crate::stop::Stop;
use crate::BusArgs;

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Latency and throughput of the bus between two processes on loopback.
    Bus(BusBenchArgs),
    /// Per-chunk latency and tokens/s of a policy (a folder, or an architecture with random
    /// weights).
    Policy(crate::bench_policy::PolicyBenchArgs),
    /// Recorder and rerun throughput, the control loop's cost of recording, replay speed.
    Record(RecordBenchArgs),
    /// Training throughput of sinew-tiny on a dataset (steps/s, frames/s).
    Train(crate::bench_train::TrainBenchArgs),
    /// SYNC_READ round trip and the joint-state rate a Feetech servo bus allows (the
    /// emulator's, modelling a 1 Mbaud line, unless --port names a real one).
    ServoBus(ServoBusBenchArgs),
    /// A policy served on the local bus to 1, 4 and 8 concurrent robots, batching on and
    /// off: chunks per second and round-trip percentiles.
    Remote(RemoteBenchArgs),
    /// The receiving side of `bench bus` (started by it).
    #[command(hide = true)]
    BusSink,
}

/// `sinew bench remote`.
#[derive(Debug, Args)]
pub struct RemoteBenchArgs {
    /// The policy folder served.
    #[arg(long, default_value = "sinew-tiny-so101")]
    policy: String,
    /// Robot counts, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,4,8")]
    robots: Vec<usize>,
    /// Seconds per row.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    #[command(flatten)]
    device: crate::args::DeviceArgs,
}

/// `sinew bench servo-bus`.
#[derive(Debug, Args)]
pub struct ServoBusBenchArgs {
    /// A real servo bus (IDs 1-6, torque is not touched); the emulator when omitted.
    #[arg(long)]
    port: Option<String>,
    /// Seconds measured.
    #[arg(long, default_value_t = 4.0)]
    seconds: f64,
    /// Emulator: reply at once instead of after the bytes' time on the line.
    #[arg(long)]
    no_wire_time: bool,
}

/// One-way latency and throughput between two processes on loopback: this one publishes; a
/// child `sinew bench bus-sink` measures the delay from each message's header stamp to the
/// moment the decoded message reaches its reader thread (same machine, same clock).
#[derive(Debug, Args)]
pub struct BusBenchArgs {
    /// Seconds per measured phase.
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// Image width and height in pixels (rgb8).
    #[arg(long, default_value_t = 224)]
    image_size: u32,
    /// Also run every phase with shared memory off, to compare.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    compare_shm: bool,
    /// Also run every phase over mutual TLS (shared memory off, fresh certificates), to
    /// compare with plain TCP.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    compare_tls: bool,
    /// Write the results as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// In-process, on synthetic data shaped like a real robot's streams (100 Hz joint states and
/// commands, two 224x224 rgb8 cameras at 33 Hz): MCAP and rerun throughput, the cost to the
/// control loop of handing one tick's messages over, reading back and converting to `.rrd`.
#[derive(Debug, Args)]
pub struct RecordBenchArgs {
    /// Simulated seconds of robot data.
    #[arg(long, default_value_t = 20.0)]
    seconds: f64,
    /// Where the files go (deleted afterwards).
    #[arg(long)]
    dir: Option<PathBuf>,
}

pub fn run(cmd: BenchCommand, bus: &BusConfig, bus_args: &BusArgs, stop: &Stop) -> Result<()> {
    match cmd {
        BenchCommand::Bus(a) => bench_bus(a, bus_args, stop),
        BenchCommand::BusSink => {
            let out = sink(bus, &|| stop.requested())?;
            println!("{}", serde_json::to_string(&out)?);
            Ok(())
        }
        BenchCommand::Policy(a) => crate::bench_policy::run(a),
        BenchCommand::Record(a) => bench_record(a.seconds, a.dir, &mut |l| println!("{l}")),
        BenchCommand::Train(a) => crate::bench_train::run(a),
        BenchCommand::Remote(a) => {
            println!("| robots | batching | chunks/s | round trip p50 | p99 | requests per pass | failures |");
            println!("|---|---|---|---|---|---|---|");
            for &n in &a.robots {
                for max_batch in [1usize, 8] {
                    let r = sinew_app::remote::bench_remote(
                        &a.policy,
                        &a.device.spec(),
                        n.max(1),
                        max_batch,
                        a.seconds,
                        bus_args.hub_port,
                    )?;
                    println!(
                        "| {} | {} | {:.1} | {:.1} ms | {:.1} ms | {:.2} | {} |",
                        r.robots,
                        if max_batch > 1 { "up to 8" } else { "off" },
                        r.chunks_per_s,
                        r.rtt_p50_ms,
                        r.rtt_p99_ms,
                        r.mean_batch,
                        r.failures
                    );
                }
            }
            Ok(())
        }
        BenchCommand::ServoBus(a) => {
            let r = sinew_app::hardware::bench_servo_bus(
                a.port.as_deref(),
                a.seconds,
                !a.no_wire_time,
            )?;
            println!(
                "servo bus {}{}: SYNC_READ of 6 servos (position+velocity): p50 {:.0} µs, p99 {:.0} µs, {:.0} per second back to back; read + SYNC_WRITE of goals: p50 {:.0} µs, p99 {:.0} µs; {} failures",
                r.port,
                match r.emulated {
                    Some(true) => " (emulated, 1 Mbaud byte time modelled)",
                    Some(false) => " (emulated, no byte time)",
                    None => "",
                },
                r.sync_read_p50_us,
                r.sync_read_p99_us,
                r.sync_read_hz,
                r.tick_p50_us,
                r.tick_p99_us,
                r.failures
            );
            println!("{}", serde_json::to_string(&r)?);
            Ok(())
        }
    }
}

fn bench_bus(a: BusBenchArgs, bus_args: &BusArgs, stop: &Stop) -> Result<()> {
    let phase_len = Duration::try_from_secs_f64(a.seconds)
        .map_err(|_| anyhow!("--seconds must be a positive number, got {}", a.seconds))?;
    let exe = std::env::current_exe().context("locating the sinew binary")?;
    let mut modes = vec![(!bus_args.no_shm, false)];
    if a.compare_shm && !bus_args.no_shm {
        modes.push((false, false));
    }
    if a.compare_tls {
        modes.push((false, true));
    }
    let certs = std::env::temp_dir().join(format!("sinew-bench-bus-{}", std::process::id()));
    let mut results = Vec::new();
    for (shm, tls) in modes {
        let _ = std::fs::remove_dir_all(&certs);
        let r = run_pair(
            &exe,
            a.image_size,
            shm,
            tls.then_some(certs.as_path()),
            phase_len,
            &|| stop.requested(),
        );
        let _ = std::fs::remove_dir_all(&certs);
        results.extend(r?);
        if stop.requested() {
            break;
        }
    }
    println!(
        "{:<14} {:>5} {:>5} {:>8} {:>8} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "phase", "link", "shm", "sent", "recv", "p50 us", "p99 us", "max us", "rate Hz", "MB/s"
    );
    for r in &results {
        println!(
            "{:<14} {:>5} {:>5} {:>8} {:>8} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9.1}",
            r.phase,
            r.transport,
            r.shared_memory,
            r.sent,
            r.received,
            r.latency_p50_us,
            r.latency_p99_us,
            r.latency_max_us,
            r.rate_hz,
            r.throughput_mb_s
        );
    }
    if let Some(path) = &a.json {
        std::fs::write(path, serde_json::to_string_pretty(&results)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
