//! sinew-msgs against CDR bytes and definitions produced by an independent implementation
//! (rosbags, see fixtures/gen_cdr_fixtures.py).

use serde::de::DeserializeOwned;
use serde_json::Value;
use sinew_msgs::{
    CompressedImage, Duration, Header, Image, JointState, JointTrajectory, JointTrajectoryPoint,
    Message, MessageKind, StringMsg, Time,
};

fn fixtures() -> Value {
    let text = include_str!("fixtures/cdr_fixtures.json");
    serde_json::from_str(text).expect("fixture file is JSON")
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

fn check<M: Message + DeserializeOwned>(case: &Value) {
    let name = case["name"].as_str().expect("name");
    let msg: M = serde_json::from_value(case["json"].clone()).expect("fixture json fits the type");
    let want = hex(case["cdr_hex"].as_str().expect("hex"));
    assert_eq!(
        msg.to_cdr(),
        want,
        "{name}: encoding differs from the reference"
    );
    assert_eq!(msg.encoded_len(), want.len(), "{name}: encoded_len");
    let mut buf = vec![0u8; want.len()];
    assert!(msg.write_cdr_into(&mut buf), "{name}: write_cdr_into");
    assert_eq!(buf, want, "{name}: write_cdr_into differs");
    let back = M::from_cdr_slice(&want).unwrap_or_else(|e| panic!("{name}: decode: {e}"));
    assert_eq!(back, msg, "{name}: decoded message differs");
}

#[test]
fn every_fixture_encodes_and_decodes_like_the_reference() {
    let f = fixtures();
    let cases = f["cases"].as_array().expect("cases");
    assert!(cases.len() >= 19);
    for case in cases {
        match case["type"].as_str().expect("type") {
            "builtin_interfaces/msg/Time" => check::<Time>(case),
            "builtin_interfaces/msg/Duration" => check::<Duration>(case),
            "std_msgs/msg/String" => check::<StringMsg>(case),
            "std_msgs/msg/Header" => check::<Header>(case),
            "sensor_msgs/msg/Image" => check::<Image>(case),
            "sensor_msgs/msg/CompressedImage" => check::<CompressedImage>(case),
            "sensor_msgs/msg/JointState" => check::<JointState>(case),
            "trajectory_msgs/msg/JointTrajectory" => check::<JointTrajectory>(case),
            other => panic!("fixture type {other} not covered"),
        }
    }
}

#[test]
fn definitions_match_the_reference_text() {
    let f = fixtures();
    let defs = f["definitions"].as_object().expect("definitions");
    let ours = [
        Time::DEF,
        Duration::DEF,
        StringMsg::DEF,
        Header::DEF,
        Image::DEF,
        CompressedImage::DEF,
        JointState::DEF,
        JointTrajectory::DEF,
        JointTrajectoryPoint::DEF,
    ];
    for def in ours {
        let want = defs[def.name].as_str().expect("definition text");
        assert_eq!(def.full_text(), want, "{}", def.name);
    }
    for kind in MessageKind::ALL {
        assert!(
            defs.contains_key(kind.def().name),
            "{kind} has a reference definition"
        );
    }
}

#[test]
fn dds_type_names_follow_ros2() {
    assert_eq!(Image::DEF.dds_type_name(), "sensor_msgs::msg::dds_::Image_");
    assert_eq!(
        JointTrajectory::DEF.dds_type_name(),
        "trajectory_msgs::msg::dds_::JointTrajectory_"
    );
}
