//! Recording simulated episodes to MCAP, inspecting them, and playing them back on the bus.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use sinew_bus::{Bus, BusConfig};
use sinew_record::read_recording;

fn sinew(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sinew"))
        .args(args)
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
        .output()
        .expect("sinew runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn record(dir: &Path) -> PathBuf {
    let (ok, out, err) = sinew(&[
        "sim",
        "run",
        "--task",
        "reach",
        "--episodes",
        "1",
        "--seed",
        "3",
        "--record",
        dir.to_str().expect("utf8"),
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("success 1/1"), "{out}");
    dir.join("episode_000003.mcap")
}

#[test]
fn an_episode_is_recorded_identically_twice_and_inspected() {
    let base = std::env::temp_dir().join(format!("sinew-rec-e2e-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let (a, b) = (record(&base.join("a")), record(&base.join("b")));
    let index = std::fs::read_to_string(base.join("a/episodes.jsonl")).expect("index");
    let line: serde_json::Value =
        serde_json::from_str(index.lines().next().expect("a line")).expect("json");
    assert_eq!(line["seed"], 3);
    assert_eq!(line["success"], true);
    assert_eq!(line["task"], "reach");
    // The same seed in lockstep gives the same recording, message for message.
    let (ra, rb) = (
        read_recording(&a).expect("a"),
        read_recording(&b).expect("b"),
    );
    assert!(ra.truncated.is_none());
    assert_eq!(ra.messages.len(), rb.messages.len());
    for (x, y) in ra.messages.iter().zip(&rb.messages) {
        assert_eq!(
            (&x.topic, x.log_time_ns, &x.data),
            (&y.topic, y.log_time_ns, &y.data)
        );
    }
    assert_eq!(ra.metadata.get("seed").map(String::as_str), Some("3"));
    // Every message decodes; commands and joint states at 100 Hz, cameras at the policy rate.
    assert!(ra
        .messages
        .iter()
        .all(|m| m.decode().is_some_and(|d| d.is_ok())));
    let (ok, out, err) = sinew(&["record", "info", a.to_str().expect("utf8"), "--json"]);
    assert!(ok, "{err}");
    let info: serde_json::Value = serde_json::from_str(&out).expect("json");
    let topic = |t: &str| {
        info["topics"]
            .as_array()
            .expect("topics")
            .iter()
            .find(|x| x["topic"] == t)
            .cloned()
            .expect(t)
    };
    assert!(
        (topic("/so101/joint_states")["rate_hz"]
            .as_f64()
            .expect("rate")
            - 100.0)
            .abs()
            < 1.0
    );
    assert!(
        (topic("/so101/camera/front/image_raw")["rate_hz"]
            .as_f64()
            .expect("rate")
            - 10.0)
            .abs()
            < 0.5
    );
    assert_eq!(
        topic("/so101/joint_commands")["count"],
        topic("/so101/joint_states")["count"].as_u64().expect("n") - 1
    );
    assert_eq!(
        topic("/so101/sinew/action_chunk")["schema"],
        "trajectory_msgs/msg/JointTrajectory"
    );
}

#[test]
fn replay_plays_every_message_back_on_the_bus() {
    let base = std::env::temp_dir().join(format!("sinew-replay-e2e-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let file = record(&base);
    let n = read_recording(&file).expect("read").messages.len();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port");
    let bus = Bus::open(&BusConfig {
        listen: vec![format!("tcp/127.0.0.1:{port}")],
        ..BusConfig::default()
    })
    .expect("bus");
    let sub = bus.subscribe_raw("so101/**", 100_000).expect("subscribe");
    let (ok, _, err) = sinew(&[
        "replay",
        file.to_str().expect("utf8"),
        "--play",
        "--speed",
        "0",
        "--wait-for-subscribers",
        "20",
        "--connect",
        &format!("tcp/127.0.0.1:{port}"),
    ]);
    assert!(ok, "{err}");
    let mut got = 0;
    while sub.recv_timeout(Duration::from_secs(5)).is_some() {
        got += 1;
        if got == n {
            break;
        }
    }
    assert_eq!(got, n, "{err}");
    assert_eq!(sub.stats().malformed, 0);
}
