//! Recordings: written, read back message for message; a file cut short still yields its
//! complete chunks; the recorder thread reports a write failure and keeps what it wrote.

use std::collections::BTreeMap;
use std::path::PathBuf;

use sinew_msgs::{
    Header, Image, JointState, JointTrajectory, JointTrajectoryPoint, Message, StringMsg, Time,
};
use sinew_record::{read_recording, spawn_recorder, McapRecorder, RecordItem};

fn tmp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("sinew-record-{}-{name}", std::process::id()))
}

fn state(i: u64) -> JointState {
    JointState {
        header: Header::new(
            Time::from_nanos(1_000_000_000 + i as i64 * 10_000_000),
            "base_link",
        ),
        name: vec!["a".into(), "b".into()],
        position: vec![i as f64 * 0.01, -(i as f64)],
        velocity: vec![0.5, 0.25],
        effort: vec![],
    }
}

fn image(i: u64) -> Image {
    let data: Vec<u8> = (0..32 * 24 * 3).map(|k| (k as u64 * 7 + i) as u8).collect();
    Image::rgb8(
        Header::new(Time::from_nanos(2_000_000_000 + i as i64), "front_optical"),
        32,
        24,
        data,
    )
}

/// Writes a mixed recording; returns (key, type, log time, cdr) of every message in order.
fn write_sample(
    path: &std::path::Path,
    n: u64,
    chunk: Option<u64>,
) -> Vec<(String, &'static str, u64, Vec<u8>)> {
    let mut meta = BTreeMap::new();
    meta.insert("task".to_owned(), "reach".to_owned());
    meta.insert("seed".to_owned(), "7".to_owned());
    let mut r = McapRecorder::create(path, &meta, chunk).expect("create");
    let mut written = Vec::new();
    for i in 0..n {
        let t = 5_000_000_000 + i * 10_000_000;
        let s = state(i);
        r.write("so101/joint_states", &s, t).expect("write");
        written.push((
            "/so101/joint_states".to_owned(),
            JointState::DEF.name,
            t,
            s.to_cdr(),
        ));
        if i % 3 == 0 {
            let img = image(i);
            r.write("so101/camera/front/image_raw", &img, t + 1)
                .expect("write");
            written.push((
                "/so101/camera/front/image_raw".to_owned(),
                Image::DEF.name,
                t + 1,
                img.to_cdr(),
            ));
        }
        if i % 10 == 0 {
            let cmd = JointTrajectory {
                header: Header::new(Time::from_nanos(t as i64), "base_link"),
                joint_names: vec!["a".into(), "b".into()],
                points: vec![JointTrajectoryPoint {
                    positions: vec![0.1, 0.2],
                    ..Default::default()
                }],
            };
            r.write("so101/joint_commands", &cmd, t + 2).expect("write");
            written.push((
                "/so101/joint_commands".to_owned(),
                JointTrajectory::DEF.name,
                t + 2,
                cmd.to_cdr(),
            ));
        }
    }
    let s = StringMsg {
        data: "touch the red cube".into(),
    };
    r.write("so101/instruction", &s, 9_000_000_000)
        .expect("write");
    written.push((
        "/so101/instruction".to_owned(),
        StringMsg::DEF.name,
        9_000_000_000,
        s.to_cdr(),
    ));
    let summary = r.finish().expect("finish");
    assert_eq!(summary.messages as usize, written.len());
    written
}

#[test]
fn every_message_reads_back_identical() {
    let path = tmp("roundtrip.mcap");
    let written = write_sample(&path, 200, None);
    let rec = read_recording(&path).expect("read");
    assert!(rec.truncated.is_none());
    assert_eq!(rec.metadata.get("seed").map(String::as_str), Some("7"));
    assert_eq!(rec.messages.len(), written.len());
    for (m, (topic, schema, t, cdr)) in rec.messages.iter().zip(&written) {
        assert_eq!(&m.topic, topic);
        assert_eq!(m.schema, *schema);
        assert_eq!(m.log_time_ns, *t);
        assert_eq!(&m.data[..], &cdr[..]);
        // Publish time is the header stamp; the payload decodes.
        let decoded = m.decode().expect("known type").expect("decodes");
        assert_eq!(decoded.to_cdr(), *cdr);
    }
    let info = rec.info();
    let js = info
        .topics
        .iter()
        .find(|t| t.topic == "/so101/joint_states")
        .expect("topic");
    assert_eq!(js.count, 200);
    assert!((js.rate_hz - 100.0).abs() < 1e-6, "{}", js.rate_hz);
    assert_eq!(info.topics.len(), 4);
}

#[test]
fn a_file_cut_short_yields_its_complete_chunks() {
    let path = tmp("full.mcap");
    let written = write_sample(&path, 600, Some(16 * 1024));
    let bytes = std::fs::read(&path).expect("read");
    let cut = tmp("cut.mcap");
    std::fs::write(&cut, &bytes[..bytes.len() * 6 / 10]).expect("write");
    let rec = read_recording(&cut).expect("a truncated file is still read");
    assert!(rec.truncated.is_some(), "the cut is reported");
    assert!(
        rec.messages.len() > written.len() / 3,
        "{} of {}",
        rec.messages.len(),
        written.len()
    );
    assert!(rec.messages.len() < written.len());
    for (m, (topic, _, t, cdr)) in rec.messages.iter().zip(&written) {
        assert_eq!(
            (&m.topic, m.log_time_ns, &m.data[..]),
            (topic, *t, &cdr[..])
        );
    }
    // Not MCAP at all: an error naming the file.
    let junk = tmp("junk.mcap");
    std::fs::write(&junk, b"hello world, not a recording").expect("write");
    let e = read_recording(&junk).expect_err("junk").to_string();
    assert!(
        e.contains("junk.mcap") && e.contains("not an MCAP file"),
        "{e}"
    );
}

#[test]
fn recorder_thread_splits_files_and_reports_a_failure() {
    let mut r = spawn_recorder(1024).expect("thread");
    let a = tmp("ep0.mcap");
    let b = tmp("ep1.mcap");
    for (path, n) in [(&a, 10u64), (&b, 20)] {
        assert!(r.send_blocking(RecordItem::NewFile {
            path: path.clone(),
            metadata: BTreeMap::new()
        }));
        for i in 0..n {
            let s = state(i);
            assert!(r.send(RecordItem::Message {
                key: "so101/joint_states".into(),
                kind: sinew_msgs::MessageKind::JointState,
                log_time_ns: i,
                publish_time_ns: i,
                cdr: s.to_cdr().into(),
            }));
        }
    }
    // A file in a folder that cannot be created: the recorder stops and says why.
    let bad = PathBuf::from("/proc/sinew-cannot-write-here/ep2.mcap");
    r.send_blocking(RecordItem::NewFile {
        path: bad,
        metadata: BTreeMap::new(),
    });
    let report = r.close();
    let files = report.report.clone().expect("the thread reports");
    assert_eq!(files.len(), 2);
    assert_eq!(files[0].messages, 10);
    assert_eq!(files[1].messages, 20);
    assert!(
        report
            .error
            .as_deref()
            .is_some_and(|e| e.contains("sinew-cannot-write-here")),
        "{report:?}"
    );
    assert_eq!(read_recording(&b).expect("read").messages.len(), 20);
}

#[test]
fn reads_a_recording_written_by_the_python_reference() {
    // fixtures/gen_mcap_fixture.py: Foxglove's Python mcap + mcap-ros2-support writer.
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let rec = read_recording(&dir.join("ros2_python.mcap")).expect("read");
    let want: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(dir.join("ros2_python.json")).expect("json"))
            .expect("parse");
    assert!(rec.truncated.is_none());
    assert_eq!(rec.messages.len(), want.len());
    for (m, w) in rec.messages.iter().zip(&want) {
        assert_eq!(m.topic, w["topic"].as_str().expect("topic"));
        assert_eq!(m.log_time_ns, w["log_time"].as_u64().expect("t"));
        match m.decode().expect("known").expect("decodes") {
            sinew_msgs::AnyMessage::JointState(js) => {
                let p: Vec<f64> = serde_json::from_value(w["position"].clone()).expect("p");
                assert_eq!(js.position, p);
                assert_eq!(js.effort, vec![1.5]);
                assert_eq!(js.header.stamp.as_nanos() as u64, m.log_time_ns);
            }
            sinew_msgs::AnyMessage::String(s) => {
                assert_eq!(s.data, w["data"].as_str().expect("data"))
            }
            other => panic!("unexpected {:?}", other.kind()),
        }
    }
}

#[test]
fn a_full_disk_stops_the_recorder_with_the_reason() {
    // /dev/full accepts the open and fails every write with ENOSPC, as a full disk does.
    if !std::path::Path::new("/dev/full").exists() {
        return;
    }
    let mut r = spawn_recorder(64).expect("thread");
    let good = tmp("before-full.mcap");
    r.send_blocking(RecordItem::NewFile {
        path: good.clone(),
        metadata: BTreeMap::new(),
    });
    for i in 0..5 {
        r.send_blocking(RecordItem::Message {
            key: "so101/joint_states".into(),
            kind: sinew_msgs::MessageKind::JointState,
            log_time_ns: i,
            publish_time_ns: i,
            cdr: state(i).to_cdr().into(),
        });
    }
    r.send_blocking(RecordItem::NewFile {
        path: PathBuf::from("/dev/full"),
        metadata: BTreeMap::new(),
    });
    // Enough data to force writes past any buffering.
    for i in 0..2000 {
        let img = image(i);
        r.send_blocking(RecordItem::Message {
            key: "so101/camera/front/image_raw".into(),
            kind: sinew_msgs::MessageKind::Image,
            log_time_ns: i,
            publish_time_ns: i,
            cdr: img.to_cdr().into(),
        });
        if r.has_stopped() {
            break;
        }
    }
    let report = r.close();
    let e = report.error.expect("the recorder reports the failure");
    assert!(e.to_lowercase().contains("no space"), "{e}");
    // What was written before stays readable.
    assert_eq!(read_recording(&good).expect("readable").messages.len(), 5);
}
