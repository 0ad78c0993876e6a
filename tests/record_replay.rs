//! Recording simulated episodes to MCAP, inspecting them, and playing them back on the bus.

// End-to-end tests read as one story, from start to finish.
#![allow(clippy::too_many_lines)]

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
    // (Inference events carry wall-clock timings, which differ; everything else is identical.)
    let wall_free = |m: &sinew_record::RecordedMessage| -> Vec<u8> {
        match m.decode() {
            Some(Ok(sinew_msgs::AnyMessage::String(s))) if m.topic == "/so101/sinew/events" => {
                let mut v: serde_json::Value = serde_json::from_str(&s.data).expect("event json");
                if let Some(o) = v.as_object_mut() {
                    o.remove("wall_ms");
                    o.remove("timings");
                }
                v.to_string().into_bytes()
            }
            _ => m.data.to_vec(),
        }
    };
    for (x, y) in ra.messages.iter().zip(&rb.messages) {
        assert_eq!(
            (&x.topic, x.log_time_ns, wall_free(x)),
            (&y.topic, y.log_time_ns, wall_free(y))
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
        (topic("/so101/camera/front/image_raw/compressed")["rate_hz"]
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

fn rrd_rows(s: &sinew_viz::RrdSummary, path: &str) -> u64 {
    s.rows(path)
}

#[test]
fn an_episode_is_viewable_in_rerun_and_replays_through_its_policy() {
    let base = std::env::temp_dir().join(format!("sinew-rrd-e2e-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let dir = base.join("rec");
    let mcap = record(&dir);
    let rrd = dir.join("episode_000003.rrd");
    let rec = read_recording(&mcap).expect("mcap");
    let count = |topic: &str| rec.messages.iter().filter(|m| m.topic == topic).count() as u64;
    let joint_states = count("/so101/joint_states");
    let commands = count("/so101/joint_commands");
    // The simulator's colour frames are stored as PNG (the default of sim run).
    let frames = count("/so101/camera/front/image_raw/compressed");
    assert!(joint_states > 100 && frames > 5, "{joint_states} {frames}");

    // The .rrd written live, read back from the file.
    let live = sinew_viz::read_rrd(&rrd).expect("rrd reads back");
    for link in ["gripper", "moving_jaw", "gripper_tcp"] {
        assert_eq!(
            rrd_rows(&live, &format!("world/robot/{link}")),
            joint_states,
            "link {link}: {:?}",
            live.entities.keys().collect::<Vec<_>>()
        );
    }
    // The base never moves: its pose is logged once, as static data.
    let base_link = live.entity("world/robot/base_link").expect("base_link");
    assert_eq!((base_link.rows, base_link.static_rows), (0, 1));
    // The file opens with the episode's layout.
    assert!(live.blueprint.contains_key("viewport"));
    assert_eq!(rrd_rows(&live, "world/cameras/front/rgb"), frames);
    assert_eq!(
        rrd_rows(&live, "world/cameras/wrist/rgb"),
        count("/so101/camera/wrist/image_raw/compressed")
    );
    assert!(live
        .entity("world/cameras/front/rgb")
        .is_some_and(|e| e.components.contains("EncodedImage:blob")));
    assert!(live
        .entity("world/cameras/front/depth")
        .is_some_and(|e| e.components.contains("DepthImage:meter")));
    assert_eq!(
        rrd_rows(&live, "joints/shoulder_pan/measured"),
        joint_states
    );
    assert_eq!(rrd_rows(&live, "joints/gripper/commanded"), commands);
    assert!(live
        .entity("world/scene/table")
        .is_some_and(|e| e.static_rows > 0));
    assert!(live
        .entities
        .keys()
        .any(|k| k.starts_with("world/scene/cube_")));
    assert!(live.entity("world/robot/base_link/visual_0").is_some());
    assert_eq!(rrd_rows(&live, "episode/success"), 1);
    assert!(rrd_rows(&live, "world/policy/chunk") > 5);
    assert!(rrd_rows(&live, "instruction") == 1);
    let timelines = &live
        .entity("joints/shoulder_pan/measured")
        .expect("joint")
        .timelines;
    assert!(
        timelines.contains("step") && timelines.contains("time"),
        "{timelines:?}"
    );

    // Converting the recording gives the same content as logging live.
    let converted = base.join("converted.rrd");
    let (ok, _, err) = sinew(&[
        "replay",
        mcap.to_str().expect("utf8"),
        "--rrd",
        converted.to_str().expect("utf8"),
    ]);
    assert!(ok, "{err}");
    let conv = sinew_viz::read_rrd(&converted).expect("converted reads back");
    let rows = |s: &sinew_viz::RrdSummary| {
        s.entities
            .iter()
            .map(|(k, e)| (k.clone(), e.rows, e.static_rows))
            .collect::<Vec<_>>()
    };
    assert_eq!(rows(&conv), rows(&live));

    // A file cut short by a crash still converts, up to its last complete chunk.
    let bytes = std::fs::read(&mcap).expect("mcap bytes");
    let cut = base.join("cut.mcap");
    std::fs::write(&cut, &bytes[..bytes.len() * 2 / 3]).expect("cut");
    let (ok, _, err) = sinew(&[
        "replay",
        cut.to_str().expect("utf8"),
        "--rrd",
        base.join("cut.rrd").to_str().expect("utf8"),
    ]);
    assert!(ok, "{err}");
    assert!(err.contains("cut short"), "{err}");
    let partial = sinew_viz::read_rrd(&base.join("cut.rrd")).expect("partial rrd reads");
    let n = rrd_rows(&partial, "joints/shoulder_pan/measured");
    assert!(n > 0 && n < joint_states, "{n} of {joint_states}");

    // The expert fed the recorded observations commands exactly what was recorded, and the
    // same log replayed twice gives identical reports.
    let reports: Vec<serde_json::Value> = (0..2)
        .map(|i| {
            let json = base.join(format!("compare{i}.json"));
            let (ok, out, err) = sinew(&[
                "replay",
                mcap.to_str().expect("utf8"),
                "--policy",
                "expert",
                "--compare",
                "--json",
                json.to_str().expect("utf8"),
            ]);
            assert!(ok, "{err}");
            assert!(out.contains("0 differ"), "{out}");
            serde_json::from_str(&std::fs::read_to_string(&json).expect("json")).expect("parse")
        })
        .collect();
    assert_eq!(reports[0], reports[1]);
    assert_eq!(reports[0]["max_abs_diff"], 0.0);
    assert_eq!(reports[0]["commands_compared"], commands);

    // A model policy: record an episode of the tiny OpenVLA checkpoint, replay it through the
    // same checkpoint: zero difference.
    let model_dir = base.join("model");
    let policy = "crates/sinew-policy/tests/fixtures/openvla-tiny";
    let (ok, _, err) = sinew(&[
        "sim",
        "run",
        "--task",
        "reach",
        "--episodes",
        "1",
        "--seed",
        "1",
        "--policy",
        policy,
        "--unnorm-key",
        "tiny_bridge",
        "--record",
        model_dir.to_str().expect("utf8"),
        "--no-rrd",
    ]);
    assert!(ok, "{err}");
    assert!(!model_dir.join("episode_000001.rrd").exists());
    let (ok, out, err) = sinew(&[
        "replay",
        model_dir
            .join("episode_000001.mcap")
            .to_str()
            .expect("utf8"),
        "--policy",
        policy,
        "--unnorm-key",
        "tiny_bridge",
        "--compare",
    ]);
    assert!(ok, "{err}");
    assert!(out.contains(" 0 differ"), "{out}");
    // A different policy on the same log differs.
    let (ok, out, err) = sinew(&[
        "replay",
        model_dir
            .join("episode_000001.mcap")
            .to_str()
            .expect("utf8"),
        "--policy",
        "expert",
        "--compare",
    ]);
    assert!(ok, "{err}");
    assert!(!out.contains(" 0 differ"), "{out}");
}

#[test]
fn recordings_with_raw_images_still_inspect_convert_and_replay() {
    // `--image-encoding raw --depth f32` writes the files Sinew wrote before it compressed
    // images: they read, convert to rerun and replay exactly as before.
    let base = std::env::temp_dir().join(format!("sinew-raw-e2e-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
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
        base.to_str().expect("utf8"),
        "--image-encoding",
        "raw",
        "--depth",
        "f32",
        "--no-rrd",
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("success 1/1"), "{out}");
    let mcap = base.join("episode_000003.mcap");
    let (ok, out, err) = sinew(&["record", "info", mcap.to_str().expect("utf8")]);
    assert!(ok, "{err}");
    assert!(out.contains("/so101/camera/front/image_raw "), "{out}");
    assert!(!out.contains("compressed"), "{out}");
    let rrd = base.join("raw.rrd");
    let (ok, _, err) = sinew(&[
        "replay",
        mcap.to_str().expect("utf8"),
        "--rrd",
        rrd.to_str().expect("utf8"),
    ]);
    assert!(ok, "{err}");
    let view = sinew_viz::read_rrd(&rrd).expect("rrd reads");
    assert!(view
        .entity("world/cameras/front/rgb")
        .is_some_and(|e| e.components.contains("Image:buffer")));
    let (ok, out, err) = sinew(&[
        "replay",
        mcap.to_str().expect("utf8"),
        "--policy",
        "expert",
        "--compare",
    ]);
    assert!(ok, "{err}");
    assert!(out.contains(" 0 differ"), "{out}");
}
