//! Benchmarks that need the whole stack: the bus between two processes (`sinew bench bus`)
//! and recording (`sinew bench record`). Figures are in `docs/benchmarks.md`.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};
use sinew_bus::{Bus, BusConfig, Qos};
use sinew_msgs::keys::RobotKeys;
use sinew_msgs::{
    Header, Image, JointState, JointTrajectory, JointTrajectoryPoint, Message, StringMsg, Time,
};
use sinew_record::{read_recording, spawn_recorder, RecordItem};
use sinew_runtime::telemetry::Window;
use sinew_runtime::{Record, Tap};
use sinew_viz::{Sink, Stream, Viz};

use crate::recording::{stream_map, Outputs, RerunSpec};
use crate::resolve::{load_robot, load_task};

const IMAGE_KEY: &str = "sinew_bench/camera/front/image_raw";
const JOINT_KEY: &str = "sinew_bench/joint_states";
const CONTROL_KEY: &str = "sinew_bench/control";

/// One phase's figures, as measured by the receiver.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PhaseResult {
    /// The phase (`image_30hz`, `joint_1khz`, `image_max`, `joint_max`).
    pub phase: String,
    /// `tcp` or `tls` (mutual TLS), both over loopback.
    #[serde(default)]
    pub transport: String,
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

fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free loopback port")?;
    Ok(l.local_addr()?.port())
}

/// Runs every phase against one child process (`exe bench bus-sink`), both with shared memory
/// `shm`; `image_size` is the side of the rgb8 frames. With `tls`, a folder for fresh
/// certificates, the two processes talk mutual TLS instead of plain TCP.
pub fn run_pair(
    exe: &Path,
    image_size: u32,
    shm: bool,
    tls: Option<&Path>,
    phase_len: Duration,
    stop: &dyn Fn() -> bool,
) -> Result<Vec<PhaseResult>> {
    let port = free_port()?;
    let transport = if tls.is_some() { "tls" } else { "tcp" };
    let endpoint = format!("{transport}/127.0.0.1:{port}");
    let certs = match tls {
        Some(dir) => Some(sinew_bus::security::make_certificates(
            dir,
            &["bench-pub".into(), "bench-sink".into()],
            &["127.0.0.1".into(), "localhost".into()],
        )?),
        None => None,
    };
    let files = |i: usize| {
        certs.as_ref().map(|c| sinew_bus::TlsFiles {
            cert: c.identities[i].1.clone(),
            key: c.identities[i].2.clone(),
            ca: c.ca_cert.clone(),
        })
    };
    let bus = Bus::open(&BusConfig {
        listen: vec![endpoint.clone()],
        shared_memory: shm,
        tls: files(0),
        ..BusConfig::default()
    })?;
    let mut cmd = Command::new(exe);
    cmd.args(["--connect", &endpoint]);
    if let Some(f) = files(1) {
        cmd.arg("--tls-cert").arg(&f.cert);
        cmd.arg("--tls-key").arg(&f.key);
        cmd.arg("--tls-ca").arg(&f.ca);
    }
    cmd.args(["bench", "bus-sink"]);
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

    let side = image_size;
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
        while start.elapsed() < phase_len && !stop() {
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
        r.transport = transport.to_owned();
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

/// The receiving side: measures each phase until the sender asks for the report, which the
/// caller prints as one JSON line on stdout for the sender to read.
pub fn sink(cfg: &BusConfig, stop: &dyn Fn() -> bool) -> Result<Vec<PhaseResult>> {
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
        if stop() {
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
            transport: String::new(),
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
    bus.close();
    Ok(out)
}

struct Tick {
    t_ns: u64,
    js: JointState,
    cmd: JointTrajectory,
    frames: Vec<(String, Image)>,
}

/// Frames rendered by the simulator with the arm at a few poses (so compression sees real
/// images), cycled through.
fn rendered_frames(robot: &sinew_robot::RobotDescription) -> Result<Vec<(String, Vec<u8>)>> {
    let task = load_task("pick-place")?;
    let ep = task.sample(&robot.config.name, 0)?;
    let mut out = Vec::new();
    for k in 0..8 {
        let mut q = robot.home();
        q[0] += 0.05 * k as f64;
        let world = sinew_sim::SimWorld::new(robot.clone(), Some(&ep), Some(&q))?;
        for c in ["front", "wrist"] {
            let f = world.render_camera(c)?;
            let mut px = f.rgb;
            px.resize(224 * 224 * 3, 0);
            out.push((c.to_string(), px));
        }
    }
    Ok(out)
}

fn ticks(
    robot: &sinew_robot::RobotDescription,
    seconds: f64,
    rendered: &[(String, Vec<u8>)],
) -> Vec<Tick> {
    let names: Vec<String> = robot.joint_names();
    let n = (seconds * 100.0) as u64;
    (0..n)
        .map(|i| {
            let t_ns = i * 10_000_000;
            let q: Vec<f64> = robot
                .home()
                .iter()
                .enumerate()
                .map(|(k, v)| v + 0.1 * ((i as f64) * 0.01 + k as f64).sin())
                .collect();
            let stamp = Time::from_nanos(t_ns as i64);
            let frames = if i % 3 == 0 {
                let k = (i as usize / 3) % (rendered.len() / 2);
                rendered[2 * k..2 * k + 2]
                    .iter()
                    .map(|(c, px)| {
                        // Sensor noise of a couple of levels, as a real camera has.
                        let mut seed = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
                        let noisy: Vec<u8> = px
                            .iter()
                            .map(|&v| {
                                seed ^= seed << 13;
                                seed ^= seed >> 7;
                                seed ^= seed << 17;
                                v.saturating_add((seed % 3) as u8)
                            })
                            .collect();
                        (
                            c.clone(),
                            Image::rgb8(Header::new(stamp, c.as_str()), 224, 224, noisy),
                        )
                    })
                    .collect()
            } else {
                Vec::new()
            };
            Tick {
                t_ns,
                js: JointState {
                    header: Header::new(stamp, "base_link"),
                    name: names.clone(),
                    position: q.clone(),
                    velocity: vec![0.0; q.len()],
                    effort: vec![],
                },
                cmd: JointTrajectory {
                    header: Header::new(stamp, "base_link"),
                    joint_names: names.clone(),
                    points: vec![JointTrajectoryPoint {
                        positions: q,
                        ..Default::default()
                    }],
                },
                frames,
            }
        })
        .collect()
}

/// Recorder and rerun throughput, what recording costs the control loop per tick, and replay
/// speed, on `seconds` of synthetic so101 streams; files go to `dir` (a temporary folder,
/// deleted afterwards, when `None`). Each result is handed to `out` as a line.
pub fn bench_record(seconds: f64, dir: Option<PathBuf>, out: &mut dyn FnMut(String)) -> Result<()> {
    let robot = load_robot("so101")?;
    let keys = RobotKeys::new(&robot.config.namespace)?;
    let keep = dir.is_some();
    let dir = dir.unwrap_or_else(|| {
        std::env::temp_dir().join(format!("sinew-bench-record-{}", std::process::id()))
    });
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let data = ticks(&robot, seconds, &rendered_frames(&robot)?);
    let payload: usize = data
        .iter()
        .map(|t| {
            t.js.to_cdr().len()
                + t.cmd.to_cdr().len()
                + t.frames
                    .iter()
                    .map(|(_, f)| f.to_cdr().len())
                    .sum::<usize>()
        })
        .sum();
    out(format!(
        "data: {:.0} s of so101 streams ({} ticks at 100 Hz, two 224x224 rgb8 cameras at 33 Hz), {:.1} MB of CDR",
        seconds,
        data.len(),
        payload as f64 / 1e6
    ));

    let ctx = Phase {
        robot: &robot,
        keys: &keys,
        dir: &dir,
        data: &data,
        seconds,
        payload,
    };
    let mcap = ctx.mcap_throughput(out)?;
    ctx.rerun_throughput(out)?;
    ctx.loop_hand_over(out)?;
    ctx.replay(&mcap, out)?;
    if !keep {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(())
}

/// One phase of `bench_record`, on shared data.
struct Phase<'a> {
    robot: &'a sinew_robot::RobotDescription,
    keys: &'a RobotKeys,
    dir: &'a Path,
    data: &'a [Tick],
    seconds: f64,
    payload: usize,
}

impl Phase<'_> {
    /// 1: the recorder thread with a blocking hand-over: its throughput.
    fn mcap_throughput(&self, out: &mut dyn FnMut(String)) -> Result<PathBuf> {
        let mcap = self.dir.join("bench.mcap");
        let mut rec = spawn_recorder(4096)?;
        let t0 = Instant::now();
        rec.send_blocking(RecordItem::NewFile {
            path: mcap.clone(),
            metadata: Default::default(),
        });
        let item = |key: String, kind, t_ns: u64, cdr: Vec<u8>| RecordItem::Message {
            key,
            kind,
            log_time_ns: t_ns,
            publish_time_ns: t_ns,
            cdr: cdr.into(),
        };
        for t in self.data {
            use sinew_msgs::MessageKind as K;
            rec.send_blocking(item(
                self.keys.joint_states(),
                K::JointState,
                t.t_ns,
                t.js.to_cdr(),
            ));
            rec.send_blocking(item(
                self.keys.joint_commands(),
                K::JointTrajectory,
                t.t_ns,
                t.cmd.to_cdr(),
            ));
            for (c, f) in &t.frames {
                rec.send_blocking(item(
                    self.keys.camera_image(c),
                    K::Image,
                    t.t_ns,
                    f.to_cdr(),
                ));
            }
        }
        let report = rec.close();
        let wall = t0.elapsed().as_secs_f64();
        let file_mb = std::fs::metadata(&mcap).map(|m| m.len()).unwrap_or(0) as f64 / 1e6;
        out(format!(
        "mcap recorder: {:.1} MB in {wall:.2} s = {:.0} MB/s of messages ({:.0}x real time); file {file_mb:.1} MB (zstd){}",
        self.payload as f64 / 1e6,
        self.payload as f64 / 1e6 / wall,
        self.seconds / wall,
        report.error.map(|e| format!("; ERROR {e}")).unwrap_or_default()
    ));

        Ok(mcap)
    }

    /// 2: rerun logging throughput.
    fn rerun_throughput(&self, out: &mut dyn FnMut(String)) -> Result<()> {
        let rrd = self.dir.join("bench.rrd");
        let t0 = Instant::now();
        let mut viz = Viz::new(self.robot.clone(), "bench", &Sink::File(rrd.clone()))?;
        let mut n = 0u64;
        for t in self.data {
            viz.log(&Stream::JointStates, t.t_ns, &t.js.clone().into())?;
            viz.log(&Stream::JointCommands, t.t_ns, &t.cmd.clone().into())?;
            n += 2;
            for (c, f) in &t.frames {
                viz.log(&Stream::Camera(c.clone()), t.t_ns, &f.clone().into())?;
                n += 1;
            }
        }
        viz.finish()?;
        let wall = t0.elapsed().as_secs_f64();
        out(format!(
        "rerun logging: {n} messages in {wall:.2} s = {:.0} messages/s, {:.0} MB/s ({:.1}x real time); file {:.1} MB",
        n as f64 / wall,
        self.payload as f64 / 1e6 / wall,
        self.seconds / wall,
        std::fs::metadata(&rrd).map(|m| m.len()).unwrap_or(0) as f64 / 1e6
    ));

        Ok(())
    }

    /// 3: what the control loop pays per tick to hand its messages over (never blocking).
    fn loop_hand_over(&self, out: &mut dyn FnMut(String)) -> Result<()> {
        let mut outputs = Outputs::start(
            self.robot,
            Some(&self.dir.join("loop")),
            &RerunSpec::default(),
            sinew_record::Encodings::default(),
        )?
        .context("recording outputs")?;
        outputs.open("loop", "loop", Default::default())?;
        let names: Vec<String> = self.robot.joint_names();
        let mut cost = Window::new(self.data.len());
        {
            let mut tap = outputs.tap(&names, 10.0, true);
            let start = Instant::now();
            for t in self.data {
                // Paced at 100 Hz like the loop, so the threads see a real-time load.
                let due = start + std::time::Duration::from_nanos(t.t_ns);
                let now = Instant::now();
                if due > now {
                    std::thread::sleep(due - now);
                }
                let t0 = Instant::now();
                tap.record(t.t_ns, Record::JointState(&t.js));
                for (c, f) in &t.frames {
                    let frame = sinew_core::robot_io::CameraFrame {
                        color: f.clone(),
                        depth: None,
                    };
                    tap.record(
                        t.t_ns,
                        Record::Frame {
                            camera: c,
                            frame: &frame,
                        },
                    );
                }
                tap.record(t.t_ns, Record::Command(&t.cmd));
                cost.push(t0.elapsed().as_secs_f64() * 1e3);
            }
        }
        outputs.close_one()?;
        let r = outputs.finish();
        out(format!(
        "loop hand-over per 100 Hz tick (MCAP + rerun): p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms; dropped {} (mcap) + {} (rerun)",
        cost.quantile(0.5),
        cost.quantile(0.99),
        cost.quantile(1.0),
        r.recorder_dropped,
        r.viz_dropped
    ));

        Ok(())
    }

    /// 4: reading back and converting to `.rrd`.
    fn replay(&self, mcap: &Path, out: &mut dyn FnMut(String)) -> Result<()> {
        let t0 = Instant::now();
        let back = read_recording(mcap)?;
        let read_s = t0.elapsed().as_secs_f64();
        let t0 = Instant::now();
        let map = stream_map(self.keys, self.robot);
        let mut viz = Viz::new(
            self.robot.clone(),
            "replay",
            &Sink::File(self.dir.join("replay.rrd")),
        )?;
        for m in &back.messages {
            let key = sinew_record::key_of_topic(&m.topic);
            if let (Some(s), Some(Ok(msg))) = (map.get(&key), m.decode()) {
                viz.log(s, m.log_time_ns, &msg)?;
            }
        }
        viz.finish()?;
        let conv_s = t0.elapsed().as_secs_f64();
        out(format!(
        "replay: read {} messages in {read_s:.2} s ({:.0} MB/s, {:.0}x real time); to .rrd in {conv_s:.2} s ({:.1}x real time)",
        back.messages.len(),
        self.payload as f64 / 1e6 / read_s,
        self.seconds / read_s,
        self.seconds / conv_s
    ));
        Ok(())
    }
}
