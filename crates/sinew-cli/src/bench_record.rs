//! `sinew bench record`: how fast recordings are written and read, and what recording costs
//! the control loop.
//!
//! Phases (all in-process, on synthetic data shaped like a real robot's streams: 100 Hz joint
//! states and commands, two 224x224 rgb8 cameras at 30 Hz):
//! 1. MCAP recorder throughput (MB/s of CDR payload written, zstd chunks, to a file);
//! 2. rerun logging throughput (messages/s and MB/s into an `.rrd`);
//! 3. the cost on the caller's thread of handing one tick's messages to both recorder threads
//!    (what `sinew run --record` adds to the loop), p50/p99;
//! 4. reading the MCAP back and converting it to `.rrd` (what `replay --rrd` does).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;
use sinew_bus::keys::RobotKeys;
use sinew_msgs::{Header, Image, JointState, JointTrajectory, JointTrajectoryPoint, Message, Time};
use sinew_record::{read_recording, RecordItem, RecorderThread};
use sinew_runtime::telemetry::Window;
use sinew_viz::{Sink, Stream, Viz, VizItem, VizThread};

use crate::sim::load_robot;

#[derive(Debug, Args)]
pub struct RecordBenchArgs {
    /// Simulated seconds of robot data.
    #[arg(long, default_value_t = 20.0)]
    seconds: f64,
    /// Where the files go (deleted afterwards).
    #[arg(long)]
    dir: Option<PathBuf>,
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
    let task = crate::sim::load_task("pick-place")?;
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
    let names: Vec<String> = robot.config.joints.iter().map(|j| j.name.clone()).collect();
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

pub fn run(a: RecordBenchArgs) -> Result<()> {
    let robot = load_robot("so101")?;
    let keys = RobotKeys::new(&robot.config.namespace)?;
    let streams = crate::viz::stream_map(&keys, &robot);
    let map_robot = robot.clone();
    let dir = a.dir.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("sinew-bench-record-{}", std::process::id()))
    });
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let data = ticks(&robot, a.seconds, &rendered_frames(&robot)?);
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
    println!(
        "data: {:.0} s of so101 streams ({} ticks at 100 Hz, two 224x224 rgb8 cameras at 33 Hz), {:.1} MB of CDR",
        a.seconds,
        data.len(),
        payload as f64 / 1e6
    );

    // 1 + 3: recorder thread, blocking hand-over (throughput), then timing the hand-over.
    let mcap = dir.join("bench.mcap");
    let mut rec = RecorderThread::spawn(4096)?;
    let t0 = Instant::now();
    rec.send_control(RecordItem::NewFile {
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
    for t in &data {
        use sinew_msgs::MessageKind as K;
        rec.send_control(item(
            keys.joint_states(),
            K::JointState,
            t.t_ns,
            t.js.to_cdr(),
        ));
        rec.send_control(item(
            keys.joint_commands(),
            K::JointTrajectory,
            t.t_ns,
            t.cmd.to_cdr(),
        ));
        for (c, f) in &t.frames {
            rec.send_control(item(keys.camera_image(c), K::Image, t.t_ns, f.to_cdr()));
        }
    }
    let report = rec.close();
    let wall = t0.elapsed().as_secs_f64();
    let file_mb = std::fs::metadata(&mcap).map(|m| m.len()).unwrap_or(0) as f64 / 1e6;
    println!(
        "mcap recorder: {:.1} MB in {wall:.2} s = {:.0} MB/s of messages ({:.0}x real time); file {file_mb:.1} MB (zstd){}",
        payload as f64 / 1e6,
        payload as f64 / 1e6 / wall,
        a.seconds / wall,
        report.error.map(|e| format!("; ERROR {e}")).unwrap_or_default()
    );

    // 2: rerun.
    let rrd = dir.join("bench.rrd");
    let t0 = Instant::now();
    let mut viz = Viz::new(robot.clone(), "bench", &Sink::File(rrd.clone()))?;
    let mut n = 0u64;
    for t in &data {
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
    println!(
        "rerun logging: {n} messages in {wall:.2} s = {:.0} messages/s, {:.0} MB/s ({:.1}x real time); file {:.1} MB",
        n as f64 / wall,
        payload as f64 / 1e6 / wall,
        a.seconds / wall,
        std::fs::metadata(&rrd).map(|m| m.len()).unwrap_or(0) as f64 / 1e6
    );

    // 3: what the control loop pays per tick to hand its messages over (never blocking).
    let mut rec = RecorderThread::spawn(4096)?;
    rec.send_control(RecordItem::NewFile {
        path: dir.join("loop.mcap"),
        metadata: Default::default(),
    });
    let mut vt = VizThread::spawn(1024)?;
    vt.send_blocking(VizItem::Open {
        robot: Box::new(robot.clone()),
        name: "loop".into(),
        sink: Sink::File(dir.join("loop.rrd")),
    });
    let mut tap = crate::sim_run::EpisodeRecorder {
        recorder: Some(&mut rec),
        viz: Some(&mut vt),
        keys: keys.clone(),
        streams,
        realtime: true,
    };
    let mut cost = Window::new(data.len());
    let start = Instant::now();
    for t in &data {
        // Paced at 100 Hz like the loop, so the threads see a real-time load.
        let due = start + std::time::Duration::from_nanos(t.t_ns);
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        let t0 = Instant::now();
        let jk = tap.keys.joint_states();
        tap.put_ns(&jk, &t.js, t.t_ns);
        for (c, f) in &t.frames {
            let k = tap.keys.camera_image(c);
            tap.put_ns(&k, f, t.t_ns);
        }
        let ck = tap.keys.joint_commands();
        tap.put_ns(&ck, &t.cmd, t.t_ns);
        cost.push(t0.elapsed().as_secs_f64() * 1e3);
    }
    drop(tap);
    let (r1, r2) = (rec.close(), vt.close());
    println!(
        "loop hand-over per 100 Hz tick (MCAP + rerun): p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms; dropped {} (mcap) + {} (rerun)",
        cost.quantile(0.5),
        cost.quantile(0.99),
        cost.quantile(1.0),
        r1.dropped,
        r2.dropped
    );

    // 4: reading back and converting.
    let t0 = Instant::now();
    let back = read_recording(&mcap)?;
    let read_s = t0.elapsed().as_secs_f64();
    let t0 = Instant::now();
    let map = crate::viz::stream_map(&keys, &map_robot);
    let mut viz = Viz::new(robot, "replay", &Sink::File(dir.join("replay.rrd")))?;
    for m in &back.messages {
        let key = sinew_record::key_of_topic(&m.topic);
        if let (Some(s), Some(Ok(msg))) = (map.get(&key), m.decode()) {
            viz.log(s, m.log_time_ns, &msg)?;
        }
    }
    viz.finish()?;
    let conv_s = t0.elapsed().as_secs_f64();
    println!(
        "replay: read {} messages in {read_s:.2} s ({:.0} MB/s, {:.0}x real time); to .rrd in {conv_s:.2} s ({:.1}x real time)",
        back.messages.len(),
        payload as f64 / 1e6 / read_s,
        a.seconds / read_s,
        a.seconds / conv_s
    );
    if a.dir.is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(())
}
