//! End to end through the bus: `sinew sim serve` (real time) and `sinew run --policy expert`
//! as separate processes close the loop and succeed; meanwhile this test sends malformed
//! payloads on every key the runtime subscribes to and latches and releases the e-stop.

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStderr, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use sinew_bus::{Bus, BusConfig, Qos};
use sinew_msgs::{JointState, JointTrajectory, Message, StringMsg};

const WAIT: Duration = Duration::from_secs(60);

fn free_port() -> u16 {
    sinew_bus::free_loopback_port().expect("a free loopback port")
}

fn sinew(args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_sinew"))
        .args(args)
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sinew starts")
}

/// Lines of a child's stderr, as they come.
fn lines(stderr: ChildStderr) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Waits for a line containing `needle`; returns it and everything seen before it.
fn wait_for(rx: &mpsc::Receiver<String>, needle: &str, seen: &mut Vec<String>) -> String {
    loop {
        match rx.recv_timeout(WAIT) {
            Ok(l) => {
                seen.push(l.clone());
                if l.contains(needle) {
                    return l;
                }
            }
            Err(_) => panic!("no line with {needle:?}; saw:\n{}", seen.join("\n")),
        }
    }
}

#[test]
fn expert_closes_the_loop_through_the_bus_with_faults_injected() {
    let port = free_port().to_string();
    let mut serve = sinew(&[
        "sim",
        "serve",
        "--task",
        "reach",
        "--seed",
        "3",
        "--duration",
        "40",
        "--hub-port",
        &port,
    ]);
    let serve_rx = lines(serve.stderr.take().expect("stderr"));
    let mut seen_serve = Vec::new();
    wait_for(&serve_rx, "keys under", &mut seen_serve);
    let rec_dir = std::env::temp_dir().join(format!("sinew-run-rec-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&rec_dir);
    let mut run = sinew(&[
        "run",
        "--policy",
        "expert",
        "--duration",
        "60",
        "--hub-port",
        &port,
        "--record",
        rec_dir.to_str().expect("utf8"),
    ]);
    let run_rx = lines(run.stderr.take().expect("stderr"));
    let mut seen = Vec::new();
    wait_for(&run_rx, "following the policy", &mut seen);

    // The simulated task succeeds under the runtime's commands.
    wait_for(&serve_rx, "task succeeded", &mut seen_serve);

    let bus = Bus::open(&BusConfig {
        hub_port: port.parse().expect("port"),
        ..BusConfig::default()
    })
    .expect("bus");
    let estop = bus
        .publisher::<StringMsg>("so101/estop")
        .expect("publisher");
    assert!(
        estop.wait_for_subscribers(WAIT),
        "the runtime subscribes to the e-stop key"
    );
    // Garbage on every key the runtime reads: counted, ignored, the loop goes on. Each goes
    // through a declared publisher that has seen the runtime's subscriber, so none is sent
    // before the route to it is known (an undeclared put can be lost then).
    for (key, def) in [
        ("so101/joint_states", JointState::DEF),
        ("so101/instruction", StringMsg::DEF),
        ("so101/estop", StringMsg::DEF),
        ("so101/sim/expert_action", JointTrajectory::DEF),
    ] {
        // Blocking, as `put_raw` was: the default drops when the transport is congested, and
        // every one of these must arrive to be counted.
        let qos = Qos {
            block_when_congested: true,
            ..Qos::default()
        };
        let garbage = bus.raw_publisher(key, def, qos).expect("raw publisher");
        assert!(
            garbage.wait_for_subscribers(WAIT),
            "the runtime subscribes to {key}"
        );
        for _ in 0..3 {
            garbage
                .put(vec![0x00, 0x01, 0x00, 0x00, 0xff, 0xff, 0xff, 0x7f, 1, 2])
                .expect("put");
        }
    }
    estop
        .put(&StringMsg {
            data: "engage".into(),
        })
        .expect("engage");
    wait_for(&run_rx, "holding: e-stop latched", &mut seen);
    estop
        .put(&StringMsg {
            data: "release".into(),
        })
        .expect("release");
    wait_for(&run_rx, "following the policy", &mut seen);

    // Stop it as a user would (Ctrl-C / SIGTERM), rather than racing its --duration against
    // how long the task takes on a loaded machine.
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &run.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(killed.success());
    let last = wait_for(&run_rx, "run: stopped", &mut seen);
    let status = run.wait().expect("run exits");
    assert!(status.success(), "{}", seen.join("\n"));
    let json = last.split_once("; ").expect("telemetry after '; '").1;
    let t: serde_json::Value = serde_json::from_str(json).expect("telemetry JSON");
    assert_eq!(t["estop_events"], 2, "{t}");
    assert_eq!(
        t["holds"]["estop"], 2,
        "latched twice: once on the key, once on stopping: {t}"
    );
    for key in ["so101/joint_states", "so101/instruction", "estop"] {
        assert!(
            t["subscribers"][key]["malformed"].as_u64().expect("count") >= 3,
            "{key}: {t}"
        );
    }
    assert!(t["loop_period_p99_ms"].as_f64().expect("p99") < 50.0, "{t}");
    assert_eq!(t["safety"]["non_finite"], 0);

    // The run was recorded (MCAP and rerun) without holding the loop up.
    let recorded = wait_for(&run_rx, "run: recorded", &mut seen);
    assert!(recorded.contains("dropped"), "{recorded}");
    let mcap = std::fs::read_dir(&rec_dir)
        .expect("record dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "mcap"))
        .expect("an mcap file");
    let rec = sinew_record::read_recording(&mcap).expect("mcap reads");
    let count = |topic: &str| rec.messages.iter().filter(|m| m.topic == topic).count() as u64;
    let commands = count("/so101/joint_commands");
    assert!(
        commands as f64 > 0.8 * t["commands"].as_f64().expect("commands"),
        "{commands} {t}"
    );
    assert!(count("/so101/joint_states") > 100);
    assert!(count("/so101/sinew/events") > 10);
    let rrd = mcap.with_extension("rrd");
    let view = sinew_viz::read_rrd(&rrd).expect("rrd reads");
    assert!(view.rows("joints/shoulder_pan/commanded") > 100);
    assert!(view.rows("world/robot/gripper") > 100);
    let _ = serve.kill();
    let _ = serve.wait();
}
