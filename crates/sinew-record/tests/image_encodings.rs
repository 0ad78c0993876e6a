//! Camera images written with each encoding come back through `RecordedRobot` as the simulator
//! rendered them: PNG and raw colour exactly, JPEG colour within a few levels, millimetre
//! depth within a millimetre (no reading stays no reading), no depth when it was left out.

use std::collections::BTreeMap;
use std::path::PathBuf;

use sinew_core::robot_io::RobotIo;
use sinew_msgs::keys::RobotKeys;
use sinew_msgs::{
    Header, Image, JointState, JointTrajectory, JointTrajectoryPoint, MessageKind, Time,
};
use sinew_record::codec::{ColorEncoding, DepthEncoding};
use sinew_record::{read_recording, spawn_recorder_with, Encodings, RecordItem, RecordedRobot};

const W: u32 = 64;
const H: u32 = 48;

fn tmp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!(
        "sinew-encodings-{}-{name}.mcap",
        std::process::id()
    ))
}

/// A smooth colour gradient with a sharp-edged square, like a rendered scene.
fn color(i: u64) -> Image {
    let mut px = Vec::with_capacity((W * H * 3) as usize);
    for y in 0..H {
        for x in 0..W {
            let edge = (20..36).contains(&x) && (10..26).contains(&y);
            px.extend_from_slice(&if edge {
                [200, 30, 30]
            } else {
                [(x * 3) as u8, (y * 4) as u8, (100 + i) as u8]
            });
        }
    }
    Image::rgb8(
        Header::new(Time::from_nanos(i as i64), "front_optical"),
        W,
        H,
        px,
    )
}

/// Depths from 0.2 to about 1.4 m, with the top row hitting nothing (infinity).
fn depth(i: u64) -> Vec<f32> {
    (0..W * H)
        .map(|k| {
            if k < W {
                f32::INFINITY
            } else {
                0.2 + k as f32 * 0.000_4 + i as f32 * 0.000_123
            }
        })
        .collect()
}

fn joint_state(t: u64) -> JointState {
    JointState {
        header: Header::new(Time::from_nanos(t as i64), "base_link"),
        name: vec!["a".into()],
        position: vec![t as f64 * 1e-9],
        ..Default::default()
    }
}

fn command(t: u64) -> JointTrajectory {
    JointTrajectory {
        header: Header::new(Time::from_nanos(t as i64), "base_link"),
        joint_names: vec!["a".into()],
        points: vec![JointTrajectoryPoint {
            positions: vec![0.5],
            ..Default::default()
        }],
    }
}

fn msg<M: sinew_msgs::Message>(key: String, m: &M, t: u64) -> RecordItem {
    RecordItem::Message {
        key,
        kind: MessageKind::from_type_name(M::DEF.name).expect("known type"),
        log_time_ns: t,
        publish_time_ns: t,
        cdr: m.to_cdr().into(),
    }
}

/// Records three ticks of one camera through the recorder thread with `enc`; plays them back.
fn round_trip(name: &str, enc: Encodings) -> (Vec<(Image, Option<Image>)>, PathBuf) {
    let keys = RobotKeys::new("so101").expect("keys");
    let path = tmp(name);
    let mut rec = spawn_recorder_with(64, enc).expect("recorder");
    rec.send_blocking(RecordItem::NewFile {
        path: path.clone(),
        metadata: BTreeMap::new(),
    });
    for i in 0..3u64 {
        let t = 1_000_000_000 + i * 100_000_000;
        rec.send_blocking(msg(keys.joint_states(), &joint_state(t), t));
        rec.send_blocking(RecordItem::Color {
            key: keys.camera_image("front"),
            compressed_key: keys.camera_compressed("front"),
            log_time_ns: t,
            image: color(i),
        });
        rec.send_blocking(RecordItem::Depth {
            key: keys.camera_depth("front"),
            log_time_ns: t,
            image: Image::depth_32fc1(Header::default(), W, H, &depth(i)),
        });
        rec.send_blocking(msg(keys.joint_commands(), &command(t), t));
    }
    rec.send_blocking(RecordItem::CloseFile);
    let closed = rec.close();
    assert!(closed.error.is_none(), "{:?}", closed.error);
    let recording = read_recording(&path).expect("reads");
    let (mut robot, notes) = RecordedRobot::new(
        &recording,
        &keys,
        &["a".to_owned()],
        &["front".to_owned()],
        vec![0.0],
    )
    .expect("plays back");
    assert_eq!(notes.malformed, 0);
    let mut frames = Vec::new();
    loop {
        robot.refresh().expect("refresh");
        let f = robot.frame("front").expect("frame").expect("a frame");
        frames.push((f.value.color, f.value.depth));
        if !robot.advance(0.1).expect("advance") {
            break;
        }
    }
    assert_eq!(frames.len(), 3);
    (frames, path)
}

fn topics(path: &std::path::Path) -> BTreeMap<String, String> {
    read_recording(path)
        .expect("reads")
        .info()
        .topics
        .into_iter()
        .map(|t| (t.topic, t.schema))
        .collect()
}

fn assert_depth_within_a_millimetre(i: u64, d: &Image) {
    assert_eq!(d.encoding, "32FC1");
    let back: Vec<f32> = d
        .data
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    for (k, (a, b)) in depth(i).iter().zip(&back).enumerate() {
        if a.is_finite() {
            assert!((a - b).abs() <= 0.000_5 + 1e-6, "pixel {k}: {a} -> {b}");
        } else {
            assert!(b.is_infinite(), "pixel {k}: no reading stays no reading");
        }
    }
}

#[test]
fn png_colour_is_exact_and_millimetre_depth_within_a_millimetre() {
    let enc = Encodings {
        color: ColorEncoding::Png,
        depth: DepthEncoding::Mm16,
    };
    let (frames, path) = round_trip("png", enc);
    for (i, (c, d)) in frames.iter().enumerate() {
        assert_eq!(c, &color(i as u64));
        assert_depth_within_a_millimetre(i as u64, d.as_ref().expect("depth"));
    }
    let t = topics(&path);
    assert_eq!(
        t["/so101/camera/front/image_raw/compressed"],
        "sensor_msgs/msg/CompressedImage"
    );
    assert!(!t.contains_key("/so101/camera/front/image_raw"));
    let rec = read_recording(&path).expect("reads");
    let depth_msg = rec
        .messages
        .iter()
        .find(|m| m.topic == "/so101/camera/front/depth/image_raw")
        .expect("depth");
    match depth_msg.decode() {
        Some(Ok(sinew_msgs::AnyMessage::Image(im))) => {
            assert_eq!((im.encoding.as_str(), im.step), ("16UC1", W * 2));
            // The top row hit nothing: 0, as ROS depth images mark it.
            assert_eq!(&im.data[..4], &[0, 0, 0, 0]);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn jpeg_colour_comes_back_within_a_few_levels() {
    let enc = Encodings::CAMERAS;
    let (frames, path) = round_trip("jpeg", enc);
    for (i, (c, _)) in frames.iter().enumerate() {
        let orig = color(i as u64);
        assert_eq!((c.encoding.as_str(), c.width, c.height), ("rgb8", W, H));
        let diffs: Vec<i32> = orig
            .data
            .iter()
            .zip(c.data.iter())
            .map(|(a, b)| (*a as i32 - *b as i32).abs())
            .collect();
        let mean = diffs.iter().sum::<i32>() as f64 / diffs.len() as f64;
        assert!(mean < 3.0, "mean |diff| {mean}");
    }
    let rec = read_recording(&path).expect("reads");
    let c = rec
        .messages
        .iter()
        .find(|m| m.topic == "/so101/camera/front/image_raw/compressed")
        .expect("compressed");
    match c.decode() {
        Some(Ok(sinew_msgs::AnyMessage::CompressedImage(ci))) => {
            assert_eq!(ci.format, "rgb8; jpeg compressed bgr8");
            assert_eq!(&ci.data[..2], &[0xff, 0xd8]); // JPEG SOI
            assert_eq!(ci.header.frame_id, "front_optical");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn raw_colour_and_float_depth_are_exact() {
    let (frames, path) = round_trip("raw", Encodings::RAW);
    for (i, (c, d)) in frames.iter().enumerate() {
        assert_eq!(c, &color(i as u64));
        let d = d.as_ref().expect("depth");
        assert_eq!(
            d,
            &Image::depth_32fc1(Header::default(), W, H, &depth(i as u64))
        );
    }
    let t = topics(&path);
    assert_eq!(t["/so101/camera/front/image_raw"], "sensor_msgs/msg/Image");
}

#[test]
fn depth_left_out_plays_back_as_colour_only() {
    let enc = Encodings {
        color: ColorEncoding::Png,
        depth: DepthEncoding::None,
    };
    let (frames, path) = round_trip("nodepth", enc);
    assert!(frames.iter().all(|(_, d)| d.is_none()));
    assert!(!topics(&path).contains_key("/so101/camera/front/depth/image_raw"));
}
