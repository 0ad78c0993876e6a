//! `sinew bench bus`: one-way latency and throughput between two processes on loopback.
//!
//! The parent process publishes; a child `sinew bench bus-sink` subscribes and measures the
//! delay from each message's header stamp (wall clock at publish) to the moment the decoded
//! message reaches its reader thread. Both run on this machine, so they share the clock.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Subcommand};
use serde::{Deserialize, Serialize};
use sinew_bus::{Bus, BusConfig, Qos};
use sinew_msgs::{Header, Image, JointState, StringMsg, Time};

use crate::stop::Stop;
use crate::BusArgs;

const IMAGE_KEY: &str = "sinew_bench/camera/front/image_raw";
const JOINT_KEY: &str = "sinew_bench/joint_states";
const CONTROL_KEY: &str = "sinew_bench/control";

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Latency and throughput of the bus between two processes on loopback.
    Bus(BusBenchArgs),
    /// Per-chunk latency and tokens/s of a policy (a folder, or an architecture with random
    /// weights).
    Policy(crate::bench_policy::PolicyBenchArgs),
    /// Recorder and rerun throughput, the control loop's cost of recording, replay speed.
    Record(crate::bench_record::RecordBenchArgs),
    /// Training throughput of sinew-tiny on a dataset (steps/s, frames/s).
    Train(crate::bench_train::TrainBenchArgs),
    /// The receiving side of `bench bus` (started by it).
    #[command(hide = true)]
    BusSink,
}

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
    /// Write the results as JSON to this file.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
}

/// One phase's figures, as measured by the receiver.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PhaseResult {
    pub phase: String,
    pub shared_memory: bool,
    pub sent: u64,
    pub received: u64,
    pub payload_bytes: usize,
    pub latency_p50_us: f64,
    pub latency_p99_us: f64,
    pub latency_max_us: f64,
    pub rate_hz: f64,
    pub throughput_mb_s: f64,
}

pub fn run(cmd: BenchCommand, bus: &BusConfig, bus_args: &BusArgs, stop: &Stop) -> Result<()> {
    match cmd {
        BenchCommand::Bus(a) => bench_bus(a, bus_args, stop),
        BenchCommand::BusSink => sink(bus, stop),
        BenchCommand::Policy(a) => crate::bench_policy::run(a),
        BenchCommand::Record(a) => crate::bench_record::run(a),
        BenchCommand::Train(a) => crate::bench_train::run(a),
    }
}

fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free loopback port")?;
    Ok(l.local_addr()?.port())
}

fn bench_bus(a: BusBenchArgs, bus_args: &BusArgs, stop: &Stop) -> Result<()> {
    let phase_len = Duration::try_from_secs_f64(a.seconds)
        .map_err(|_| anyhow!("--seconds must be a positive number, got {}", a.seconds))?;
    let mut modes = vec![!bus_args.no_shm];
    if a.compare_shm && !bus_args.no_shm {
        modes.push(false);
    }
    let mut results = Vec::new();
    for shm in modes {
        results.extend(run_pair(&a, shm, phase_len, stop)?);
        if stop.requested() {
            break;
        }
    }
    println!(
        "{:<14} {:>5} {:>8} {:>8} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "phase", "shm", "sent", "recv", "p50 us", "p99 us", "max us", "rate Hz", "MB/s"
    );
    for r in &results {
        println!(
            "{:<14} {:>5} {:>8} {:>8} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9.1}",
            r.phase,
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

/// Runs every phase against one child process, both with shared memory `shm`.
fn run_pair(
    a: &BusBenchArgs,
    shm: bool,
    phase_len: Duration,
    stop: &Stop,
) -> Result<Vec<PhaseResult>> {
    let port = free_port()?;
    let endpoint = format!("tcp/127.0.0.1:{port}");
    let bus = Bus::open(&BusConfig {
        listen: vec![endpoint.clone()],
        shared_memory: shm,
        ..BusConfig::default()
    })?;
    let exe = std::env::current_exe().context("locating the sinew binary")?;
    let mut cmd = Command::new(exe);
    cmd.args(["--connect", &endpoint, "bench", "bus-sink"]);
    if !shm {
        cmd.arg("--no-shm");
    }
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("starting the bench-bus-sink process")?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| anyhow!("no child stdout"))?;

    let reliable = Qos {
        block_when_congested: true,
        ..Qos::default()
    };
    let images = bus.publisher_with::<Image>(IMAGE_KEY, reliable)?;
    let joints = bus.publisher_with::<JointState>(JOINT_KEY, reliable)?;
    let control = bus.publisher_with::<StringMsg>(CONTROL_KEY, reliable)?;
    for (key, ok) in [
        (
            IMAGE_KEY,
            images.wait_for_subscribers(Duration::from_secs(10)),
        ),
        (
            JOINT_KEY,
            joints.wait_for_subscribers(Duration::from_secs(10)),
        ),
        (
            CONTROL_KEY,
            control.wait_for_subscribers(Duration::from_secs(10)),
        ),
    ] {
        if !ok {
            let _ = child.kill();
            bail!("the sink process never subscribed to {key}");
        }
    }

    let side = a.image_size;
    let pixels: Vec<u8> = (0..side * side * 3).map(|i| (i % 253) as u8).collect();
    let pixels = sinew_msgs::Bytes::from(pixels);
    let mut sent: BTreeMap<&str, u64> = BTreeMap::new();

    let img =
        |phase: &str| Image::rgb8(Header::new(Time::now(), phase), side, side, pixels.clone());
    let names: Vec<String> = (0..7).map(|i| format!("joint_{i}")).collect();
    let js = |phase: &str, i: u64| JointState {
        header: Header::new(Time::now(), phase),
        name: names.clone(),
        position: (0..7).map(|j| (i + j) as f64 * 1e-3).collect(),
        velocity: vec![0.0; 7],
        effort: vec![],
    };

    // Paced phases publish at a fixed rate; `*_max` phases as fast as the transport takes them.
    for (phase, period) in [
        ("image_30hz", Some(Duration::from_secs_f64(1.0 / 30.0))),
        ("joint_1khz", Some(Duration::from_millis(1))),
        ("image_max", None),
        ("joint_max", None),
    ] {
        let start = Instant::now();
        let mut next = start;
        let mut n = 0u64;
        while start.elapsed() < phase_len && !stop.requested() {
            if phase.starts_with("image") {
                images.put(&img(phase))?;
            } else {
                joints.put(&js(phase, n))?;
            }
            n += 1;
            if let Some(period) = period {
                next += period;
                // Pacing the publish rate, not synchronisation.
                std::thread::sleep(next.saturating_duration_since(Instant::now()));
            }
        }
        sent.insert(phase, n);
    }
    control.put(&StringMsg {
        data: "report".into(),
    })?;

    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .context("reading the sink's report")?;
    let status = child.wait()?;
    bus.close();
    if !status.success() {
        bail!("the sink process failed: {status}");
    }
    let mut results: Vec<PhaseResult> = serde_json::from_str(line.trim())
        .with_context(|| format!("parsing the sink's report {line:?}"))?;
    for r in &mut results {
        r.sent = sent.get(r.phase.as_str()).copied().unwrap_or(0);
        r.shared_memory = shm;
    }
    Ok(results)
}

#[derive(Default)]
struct Acc {
    latencies_ns: Vec<i64>,
    bytes: usize,
    first: Option<Instant>,
    last: Option<Instant>,
}

fn percentile(sorted: &[i64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i] as f64 / 1e3
}

fn sink(cfg: &BusConfig, stop: &Stop) -> Result<()> {
    let bus = Bus::open(cfg)?;
    let images = bus.subscribe::<Image>(IMAGE_KEY, 1 << 16)?;
    let joints = bus.subscribe::<JointState>(JOINT_KEY, 1 << 20)?;
    let control = bus.subscribe::<StringMsg>(CONTROL_KEY, 16)?;
    let mut acc: BTreeMap<String, Acc> = BTreeMap::new();
    let mut record = |phase: &str, stamp: Time, bytes: usize| {
        let now = Instant::now();
        let lat = Time::now().as_nanos() - stamp.as_nanos();
        let a = acc.entry(phase.to_owned()).or_default();
        a.latencies_ns.push(lat);
        a.bytes += bytes;
        a.first.get_or_insert(now);
        a.last = Some(now);
    };
    loop {
        if stop.requested() {
            bail!("interrupted");
        }
        crossbeam_channel::select! {
            recv(images.receiver()) -> m => {
                let m = m?;
                record(&m.msg.header.frame_id, m.msg.header.stamp, m.msg.data.len());
            }
            recv(joints.receiver()) -> m => {
                let m = m?;
                record(&m.msg.header.frame_id, m.msg.header.stamp, m.msg.position.len() * 8);
            }
            recv(control.receiver()) -> _ => break,
            default(Duration::from_millis(200)) => {}
        }
    }
    // Drain what arrived before the report request.
    while let Some(m) = images.try_recv() {
        record(&m.msg.header.frame_id, m.msg.header.stamp, m.msg.data.len());
    }
    while let Some(m) = joints.try_recv() {
        record(
            &m.msg.header.frame_id,
            m.msg.header.stamp,
            m.msg.position.len() * 8,
        );
    }
    let mut out = Vec::new();
    for (phase, mut a) in acc {
        a.latencies_ns.sort_unstable();
        let n = a.latencies_ns.len();
        let span = match (a.first, a.last) {
            (Some(f), Some(l)) => (l - f).as_secs_f64(),
            _ => 0.0,
        };
        out.push(PhaseResult {
            phase,
            shared_memory: cfg.shared_memory,
            sent: 0,
            received: n as u64,
            payload_bytes: a.bytes.checked_div(n).unwrap_or(0),
            latency_p50_us: percentile(&a.latencies_ns, 0.5),
            latency_p99_us: percentile(&a.latencies_ns, 0.99),
            latency_max_us: percentile(&a.latencies_ns, 1.0),
            rate_hz: if span > 0.0 {
                (n - 1) as f64 / span
            } else {
                0.0
            },
            throughput_mb_s: if span > 0.0 {
                a.bytes as f64 / span / 1e6
            } else {
                0.0
            },
        });
    }
    println!("{}", serde_json::to_string(&out)?);
    bus.close();
    Ok(())
}
