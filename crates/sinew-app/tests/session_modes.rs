//! The one `Session` driven in every mode, in-process: the simulator in lockstep (recorded),
//! the recording played back through the same policy, and robots on the bus over loopback
//! (the simulator served in real time, and a robot whose cameras stall).

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sinew_app::batch::{run_batch, BatchSpec};
use sinew_app::episode::PolicyName;
use sinew_app::execution::ExecutionSpec;
use sinew_app::live::{run_live, LiveSpec};
use sinew_app::recording::RerunSpec;
use sinew_app::replay::compare;
use sinew_app::resolve::{load_robot, load_task, DeviceSpec};
use sinew_app::serve::{sim_serve, SimServeSpec};
use sinew_bus::keys::RobotKeys;
use sinew_bus::{Bus, BusConfig};
use sinew_core::events::Event;
use sinew_msgs::{AnyMessage, Header, Image, JointState, Time};

/// The real-time tests measure deadlines of a few hundred milliseconds: they run one at a time,
/// and not beside the CPU-heavy lockstep batch, so that a starved thread is not read as a
/// stalled sensor.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn tmp(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("sinew-modes-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn bus() -> Bus {
    Bus::open(&BusConfig {
        hub_port: sinew_bus::free_loopback_port().expect("a free port"),
        ..BusConfig::default()
    })
    .expect("bus")
}

fn live_spec(policy: &str, record: Option<std::path::PathBuf>) -> LiveSpec {
    LiveSpec {
        robot: load_robot("so101").expect("robot"),
        policy: policy.into(),
        instruction: "touch the red cube".into(),
        duration_s: Some(60.0),
        startup_timeout_s: 30.0,
        exec: ExecutionSpec::default(),
        device: DeviceSpec::default(),
        record,
        rerun: RerunSpec {
            connect: None,
            no_rrd: true,
        },
        encodings: sinew_record::Encodings::default(),
    }
}

/// Events recorded in an MCAP file.
fn events(path: &std::path::Path) -> Vec<Event> {
    let rec = sinew_record::read_recording(path).expect("recording");
    rec.messages
        .iter()
        .filter(|m| m.topic == "/so101/sinew/events")
        .filter_map(|m| match m.decode() {
            Some(Ok(AnyMessage::String(s))) => Event::from_json(&s.data).ok(),
            _ => None,
        })
        .collect()
}

#[test]
fn lockstep_episodes_are_recorded_and_replay_through_the_same_loop_exactly() {
    let _serial = serial();
    let dir = tmp("lockstep");
    let spec = BatchSpec {
        robot: load_robot("so101").expect("robot"),
        tasks: vec![load_task("reach").expect("task")],
        policy: PolicyName::Expert,
        episodes: 2,
        seed: 5,
        exec: ExecutionSpec::default(),
        device: DeviceSpec::default(),
        record: Some(dir.clone()),
        task_folders: false,
        rerun: RerunSpec {
            connect: None,
            no_rrd: true,
        },
        encodings: sinew_record::Encodings::default(),
        jobs: 2,
        phrasings: Some(vec![sinew_sim::Phrasing::Training]),
        swap: false,
    };
    let report = run_batch(&spec, |_| {}, &|| false).expect("batch");
    assert_eq!(report.rows.len(), 2);
    assert!(
        report.rows.iter().all(|r| r.result.success),
        "{:?}",
        report.rows
    );
    let outputs = report.outputs.expect("recorded");
    assert_eq!((outputs.files, outputs.error), (2, None));
    let index = std::fs::read_to_string(dir.join("episodes.jsonl")).expect("index");
    assert_eq!(index.lines().count(), 2, "{index}");

    let file = dir.join("episode_000005.mcap");
    let ev = events(&file);
    let holds: Vec<&Event> = ev
        .iter()
        .filter(|e| matches!(e, Event::Hold { .. }))
        .collect();
    // Inline, the first chunk arrives on the first tick: the robot never holds.
    assert!(holds.is_empty(), "{holds:?}");
    assert!(
        matches!(ev.last(), Some(Event::Outcome { success: true, .. })),
        "{:?}",
        ev.last()
    );

    // The recording as a robot: the same policy through the same loop commands exactly what
    // was recorded.
    let rec = sinew_record::read_recording(&file).expect("read");
    let (r, notes) =
        compare(&rec, &file, &spec.robot, "expert", &DeviceSpec::default()).expect("compare");
    assert_eq!(notes.malformed, 0);
    assert!(r.commands_compared > 100, "{r:?}");
    assert!(r.inferences > 10, "{r:?}");
    assert_eq!(r.commands_differing, 0, "{r:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_simulator_served_on_the_bus_is_driven_to_success_by_the_live_loop() {
    let _serial = serial();
    let bus = bus();
    let serve_stop = Arc::new(AtomicBool::new(false));
    let succeeded = Arc::new(AtomicBool::new(false));
    let spec = SimServeSpec {
        robot: load_robot("so101").expect("robot"),
        task: load_task("reach").expect("task"),
        seed: 3,
        lockstep: false,
        camera_hz: 15.0,
        duration_s: Some(60.0),
        command_timeout_s: 0.25,
    };
    let report = std::thread::scope(|s| {
        let server = s.spawn(|| {
            let ok = succeeded.clone();
            sim_serve(
                &spec,
                &bus,
                &mut |l| {
                    if l.contains("task succeeded") {
                        ok.store(true, Ordering::SeqCst);
                    }
                },
                &|| serve_stop.load(Ordering::SeqCst),
            )
        });
        let live = run_live(&live_spec("expert", None), &bus, &mut |_| {}, &|| {
            succeeded.load(Ordering::SeqCst)
        });
        serve_stop.store(true, Ordering::SeqCst);
        let served = server.join().expect("server thread").expect("serves");
        (live.expect("live run"), served)
    });
    let (live, served) = report;
    assert!(succeeded.load(Ordering::SeqCst), "the task succeeded");
    assert!(served.applied > 50, "{served:?}");
    assert_eq!(served.rejected, 0, "{served:?}");
    let t = &live.telemetry;
    assert!(t.commands > 50, "{t:?}");
    assert!(t.chunks > 5, "{t:?}");
    assert_eq!(t.safety.non_finite, 0);
    bus.close();
}

/// A robot on the bus whose cameras stop for a while: joint states at 100 Hz, both cameras
/// at 20 Hz except while `stall` is set.
fn fake_robot(bus: &Bus, stall: &AtomicBool, done: &AtomicBool) {
    let keys = RobotKeys::new("so101").expect("keys");
    let robot = load_robot("so101").expect("robot");
    let js = bus
        .publisher::<JointState>(&keys.joint_states())
        .expect("pub");
    let cams: Vec<_> = ["front", "wrist"]
        .iter()
        .map(|c| bus.publisher::<Image>(&keys.camera_image(c)).expect("pub"))
        .collect();
    let names: Vec<String> = robot.joint_names();
    let pixels = sinew_msgs::Bytes::from(vec![90u8; 224 * 224 * 3]);
    let start = Instant::now();
    let mut tick = 0u64;
    while !done.load(Ordering::SeqCst) {
        js.put(&JointState {
            header: Header::new(Time::now(), "base_link"),
            name: names.clone(),
            position: robot.home(),
            velocity: vec![0.0; names.len()],
            effort: vec![],
        })
        .expect("put");
        if tick.is_multiple_of(5) && !stall.load(Ordering::SeqCst) {
            for c in &cams {
                c.put(&Image::rgb8(
                    Header::new(Time::now(), "cam"),
                    224,
                    224,
                    pixels.clone(),
                ))
                .expect("put");
            }
        }
        tick += 1;
        // A robot's own 100 Hz rate: pacing, not synchronisation.
        let due = start + Duration::from_millis(10 * tick);
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
    }
}

#[test]
fn a_stalled_camera_is_one_hold_one_line_and_one_event() {
    let _serial = serial();
    let bus = bus();
    let dir = tmp("stale");
    let stall = AtomicBool::new(false);
    let done = AtomicBool::new(false);
    let following = AtomicU32::new(0);
    let lines = Mutex::new(Vec::new());
    let live = std::thread::scope(|s| {
        s.spawn(|| fake_robot(&bus, &stall, &done));
        // The cameras stall once the loop follows the policy, for 1.5 s (three times the
        // camera deadline); the run ends when it follows the policy again.
        let stall_for = |stall: &AtomicBool| {
            std::thread::sleep(Duration::from_millis(1500));
            stall.store(false, Ordering::SeqCst);
        };
        let r = std::thread::scope(|inner| {
            run_live(
                &live_spec("sinew-tiny-so101-v1", Some(dir.clone())),
                &bus,
                &mut |l| {
                    if l.contains("following the policy")
                        && following.fetch_add(1, Ordering::SeqCst) == 0
                    {
                        stall.store(true, Ordering::SeqCst);
                        inner.spawn(|| stall_for(&stall));
                    }
                    lines.lock().expect("lines").push(l);
                },
                &|| following.load(Ordering::SeqCst) >= 2,
            )
        });
        done.store(true, Ordering::SeqCst);
        r
    })
    .expect("live run");
    let lines = lines.into_inner().expect("lines");
    let stale: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("holding: camera"))
        .collect();
    assert_eq!(
        stale.len(),
        1,
        "one line for the stall:\n{}",
        lines.join("\n")
    );
    assert!(
        following.load(Ordering::SeqCst) >= 2,
        "{}",
        lines.join("\n")
    );
    // (The telemetry counts each reason a hold went through; the start may wait for the
    // first frames as well as for the first chunk.)
    assert!(
        live.telemetry.holds.contains_key("camera_stale"),
        "{:?}",
        live.telemetry
    );
    let file = dir.join(format!("{}.mcap", live.name));
    let ev = events(&file);
    // After the start-up hold (waiting for the first frames and chunk) has ended.
    let started = ev
        .iter()
        .position(|e| matches!(e, Event::HoldEnded { .. }))
        .expect("the start-up hold ends");
    let ev = &ev[started + 1..];
    let holds: Vec<&Event> = ev
        .iter()
        .filter(|e| matches!(e, Event::Hold { kind, .. } if kind == "camera_stale"))
        .collect();
    assert_eq!(holds.len(), 1, "{ev:?}");
    let ended = ev.iter().find_map(|e| match e {
        Event::HoldEnded { kind, duration_s } if kind == "camera_stale" => Some(*duration_s),
        _ => None,
    });
    let held = ended.expect("the hold ends with its duration");
    assert!(
        (0.5..10.0).contains(&held),
        "held {held} s for a 1.5 s stall"
    );
    let _ = std::fs::remove_dir_all(&dir);
    bus.close();
}

#[test]
fn simulated_latency_is_recorded_and_replayed_exactly_and_zero_latency_changes_nothing() {
    use sinew_app::execution::LatencyModel;
    let _serial = serial();
    let batch = |exec: ExecutionSpec, record: Option<std::path::PathBuf>| BatchSpec {
        robot: load_robot("so101").expect("robot"),
        tasks: vec![load_task("reach").expect("task")],
        policy: PolicyName::Expert,
        episodes: 2,
        seed: 11,
        exec,
        device: DeviceSpec::default(),
        record,
        task_folders: false,
        rerun: RerunSpec {
            connect: None,
            no_rrd: true,
        },
        encodings: sinew_record::Encodings::default(),
        jobs: 2,
        phrasings: Some(vec![sinew_sim::Phrasing::Training]),
        swap: false,
    };
    // What an episode did, without its wall times.
    let outcome = |spec: &BatchSpec| -> Vec<_> {
        run_batch(spec, |_| {}, &|| false)
            .expect("batch")
            .rows
            .into_iter()
            .map(|r| {
                let e = r.result;
                let f = (e.success, e.steps, e.commands, e.inferences, e.holds);
                (f, e.rms_jerk, e.sim_time_s, e.velocity_interventions)
            })
            .collect()
    };
    for mode in ["sync", "async-latest", "async-ensemble"] {
        let exec = ExecutionSpec::default().with_mode(mode).expect("mode");
        let mut zero = exec.clone();
        zero.latency = Some(LatencyModel::fixed(0.0, 0.0).expect("model"));
        let today = outcome(&batch(exec, None));
        assert_eq!(outcome(&batch(zero, None)), today, "{mode}");
        assert!(today.iter().all(|o| o.0 .0), "{mode}: {today:?}");
    }

    // With jitter, the delays are in the recording's metadata and the replay draws the same
    // ones: the replayed loop commands exactly what was recorded.
    let dir = tmp("latency");
    let exec = ExecutionSpec {
        latency: Some(LatencyModel::parse("50±40", 0.0).expect("model")),
        ..ExecutionSpec::default()
    };
    let spec = batch(exec, Some(dir.clone()));
    let report = run_batch(&spec, |_| {}, &|| false).expect("batch");
    let file = dir.join("episode_000011.mcap");
    let delays: Vec<f64> = events(&file)
        .iter()
        .filter_map(|e| match e {
            Event::Inference { latency_ms, .. } => *latency_ms,
            _ => None,
        })
        .collect();
    assert_eq!(delays.len() as u64, report.rows[0].result.inferences);
    assert!(
        delays.iter().all(|d| (10.0..=90.0).contains(d)),
        "{delays:?}"
    );
    let rec = sinew_record::read_recording(&file).expect("read");
    let (r, _) =
        compare(&rec, &file, &spec.robot, "expert", &DeviceSpec::default()).expect("compare");
    assert!(r.commands_compared > 100, "{r:?}");
    assert_eq!(r.commands_differing, 0, "{r:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
