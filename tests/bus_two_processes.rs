//! End to end: the `sinew` binary and this test talk over zenoh as separate OS processes.

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sinew_bus::{Bus, BusConfig};
use sinew_msgs::{Header, JointState, JointTrajectory, Message, StringMsg, Time};

const WAIT: Duration = Duration::from_secs(30);

fn free_port() -> u16 {
    sinew_bus::free_loopback_port().expect("a free loopback port")
}

fn sinew(args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_sinew"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sinew starts")
}

/// Waits for `child` to exit, killing it after `WAIT`; returns (success, stdout, stderr).
fn finish(mut child: Child) -> (bool, String, String) {
    let deadline = Instant::now() + WAIT;
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break Some(s);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20)); // polling the exit status
    };
    let mut out = String::new();
    let mut err = String::new();
    if let Some(mut o) = child.stdout.take() {
        o.read_to_string(&mut out).expect("stdout");
    }
    if let Some(mut e) = child.stderr.take() {
        e.read_to_string(&mut err).expect("stderr");
    }
    (status.is_some_and(|s| s.success()), out, err)
}

fn listening_bus(port: u16) -> Bus {
    Bus::open(&BusConfig {
        listen: vec![format!("tcp/127.0.0.1:{port}")],
        ..BusConfig::default()
    })
    .expect("bus")
}

fn state(i: u32) -> JointState {
    JointState {
        header: Header::new(
            Time {
                sec: 10,
                nanosec: i,
            },
            "base_link",
        ),
        name: vec!["shoulder_pan".into(), "gripper".into()],
        position: vec![i as f64 * 0.5, -0.25],
        velocity: vec![],
        effort: vec![],
    }
}

#[test]
fn echo_prints_joint_states_from_another_process_and_reports_malformed_ones() {
    let port = free_port();
    let bus = listening_bus(port);
    let key = "so101/joint_states";
    let ep = format!("tcp/127.0.0.1:{port}");
    let child = sinew(&["--connect", &ep, "topics", "echo", key, "--count", "3"]);
    let publisher = bus.publisher::<JointState>(key).expect("publisher");
    assert!(publisher.wait_for_subscribers(WAIT), "echo subscribed");

    publisher.put(&state(1)).expect("put");
    let good = state(2).to_cdr();
    bus.put_raw(key, good[..good.len() - 6].to_vec())
        .expect("put");
    let mut huge = good.clone();
    huge[4 + 8 + 4 + 12..4 + 8 + 4 + 12 + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    bus.put_raw(key, huge).expect("put");
    publisher.put(&state(2)).expect("put");
    publisher.put(&state(3)).expect("put");

    let (ok, out, err) = finish(child);
    assert!(ok, "echo failed: {err}");
    let lines: Vec<JointState> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON message per line"))
        .collect();
    assert_eq!(lines, vec![state(1), state(2), state(3)]);
    assert!(
        err.contains("malformed sensor_msgs/msg/JointState on so101/joint_states"),
        "{err}"
    );
    assert!(err.contains("truncated"), "{err}");
    assert!(
        err.contains("field `name`") && err.contains("4294967295"),
        "{err}"
    );
    assert!(err.contains("2 malformed"), "{err}");
    bus.close();
}

#[test]
fn pub_from_the_cli_reaches_a_subscriber_in_another_process() {
    let port = free_port();
    let bus = listening_bus(port);
    let key = "so101/joint_commands";
    let sub = bus
        .subscribe::<JointTrajectory>(key, 16)
        .expect("subscriber");
    let ep = format!("tcp/127.0.0.1:{port}");
    let child = sinew(&[
        "--connect",
        &ep,
        "topics",
        "pub",
        key,
        "--names",
        "a,b",
        "--positions",
        "0.5,-1.5",
        "--count",
        "3",
        "--rate",
        "50",
    ]);
    let mut got = Vec::new();
    while got.len() < 3 {
        let m = sub.recv_timeout(WAIT).expect("a trajectory from the CLI");
        got.push(m.msg);
    }
    let (ok, _, err) = finish(child);
    assert!(ok, "pub failed: {err}");
    for m in &got {
        assert_eq!(m.joint_names, vec!["a", "b"]);
        assert_eq!(m.points.len(), 1);
        assert_eq!(m.points[0].positions, vec![0.5, -1.5]);
        assert!(m.header.stamp.sec > 0, "stamped with the wall clock");
    }
    bus.close();
}

#[test]
fn default_sessions_find_each_other_through_the_loopback_hub() {
    // No endpoints anywhere: every process uses the default session on a private hub port.
    let hub = free_port().to_string();
    let key = "so101/instruction";
    let children: Vec<Child> = (0..2)
        .map(|_| sinew(&["--hub-port", &hub, "topics", "echo", key, "--count", "1"]))
        .collect();
    let bus = Bus::open(&BusConfig {
        hub_port: hub.parse().expect("port"),
        ..BusConfig::default()
    })
    .expect("bus");
    let publisher = bus.publisher::<StringMsg>(key).expect("publisher");
    let msg = StringMsg {
        data: "put the red cube in the bowl".into(),
    };
    // Publish until both echo processes have received one message and exited: the condition
    // waited for is their exit, with a deadline.
    let deadline = Instant::now() + WAIT;
    let mut children = children;
    let mut results = Vec::new();
    while !children.is_empty() && Instant::now() < deadline {
        publisher.put(&msg).expect("put");
        let mut still = Vec::new();
        for mut c in children {
            match c.try_wait().expect("wait") {
                Some(_) => results.push(finish(c)),
                None => still.push(c),
            }
        }
        children = still;
        std::thread::sleep(Duration::from_millis(50)); // publishing period
    }
    for c in children {
        results.push(finish(c));
    }
    assert_eq!(results.len(), 2);
    for (ok, out, err) in results {
        assert!(ok, "echo failed: {err}");
        let m: StringMsg = serde_json::from_str(out.trim()).expect("JSON");
        assert_eq!(m, msg);
    }
    bus.close();
}

#[test]
fn list_shows_live_keys_with_their_types() {
    let port = free_port();
    let bus = listening_bus(port);
    let ep = format!("tcp/127.0.0.1:{port}");
    let child = sinew(&["--connect", &ep, "topics", "list", "--duration", "1.5"]);
    let js = bus
        .publisher::<JointState>("so101/joint_states")
        .expect("publisher");
    let instr = bus
        .publisher::<StringMsg>("so101/instruction")
        .expect("publisher");
    assert!(js.wait_for_subscribers(WAIT));
    let mut child = Some(child);
    let mut result = None;
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        js.put(&state(1)).expect("put");
        instr.put(&StringMsg { data: "x".into() }).expect("put");
        if let Some(mut c) = child.take() {
            if c.try_wait().expect("wait").is_some() {
                result = Some(finish(c));
                break;
            }
            child = Some(c);
        }
        std::thread::sleep(Duration::from_millis(20)); // publishing period
    }
    let (ok, out, err) = result.expect("list exits after its duration");
    assert!(ok, "{err}");
    let row = |key: &str| out.lines().find(|l| l.starts_with(key)).map(str::to_owned);
    let js_row = row("so101/joint_states").expect("joint_states listed");
    assert!(js_row.contains("sensor_msgs/msg/JointState"), "{js_row}");
    let i_row = row("so101/instruction").expect("instruction listed");
    assert!(i_row.contains("std_msgs/msg/String"), "{i_row}");
    bus.close();
}
