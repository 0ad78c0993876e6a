//! Round trips, zero-copy image decoding and malformed payloads.

use proptest::prelude::*;
use sinew_msgs::{
    Bytes, CompressedImage, DecodeErrorKind, Duration, Header, Image, JointState, JointTrajectory,
    JointTrajectoryPoint, Message, MessageKind, StringMsg, Time,
};

fn header() -> Header {
    Header::new(Time { sec: 3, nanosec: 7 }, "cam")
}

fn rgb(w: u32, h: u32) -> Image {
    let data: Vec<u8> = (0..w * h * 3).map(|i| (i % 251) as u8).collect();
    Image::rgb8(header(), w, h, data)
}

#[test]
fn image_decode_shares_the_payload_buffer() {
    let img = rgb(224, 224);
    let payload = Bytes::from(img.to_cdr());
    let back = Image::from_cdr(&payload).expect("decodes");
    assert_eq!(back, img);
    // The pixel data is a view into the payload, not a copy.
    let p = payload.as_ptr() as usize;
    let d = back.data.as_ptr() as usize;
    assert!(d >= p && d + back.data.len() <= p + payload.len());
}

#[test]
fn nan_and_infinities_survive_a_round_trip() {
    let js = JointState {
        header: header(),
        name: vec!["a".into(), "b".into(), "c".into()],
        position: vec![f64::NAN, f64::INFINITY, f64::NEG_INFINITY],
        ..Default::default()
    };
    let back = JointState::from_cdr_slice(&js.to_cdr()).expect("decodes");
    assert!(back.position[0].is_nan());
    assert_eq!(back.position[1..], js.position[1..]);
}

#[test]
fn truncated_payloads_name_the_field() {
    let js = JointState {
        header: header(),
        name: vec!["shoulder".into()],
        position: vec![1.0],
        velocity: vec![2.0],
        effort: vec![],
    };
    let full = js.to_cdr();
    for cut in 0..full.len() {
        let err = JointState::from_cdr_slice(&full[..cut]).expect_err("truncated must fail");
        assert!(
            matches!(
                err.kind,
                DecodeErrorKind::Truncated { .. } | DecodeErrorKind::LengthExceedsPayload { .. }
            ),
            "cut at {cut}: {err}"
        );
        assert!(!err.field.is_empty());
    }
}

#[test]
fn a_four_billion_count_is_rejected_before_allocating() {
    // header: stamp (8) + frame_id "" (len 1 + NUL, padded) then name count = u32::MAX.
    let mut p = vec![0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0];
    p.extend_from_slice(&u32::MAX.to_le_bytes());
    let err = JointState::from_cdr_slice(&p).expect_err("must fail");
    assert_eq!(err.field, "name");
    assert!(matches!(
        err.kind,
        DecodeErrorKind::LengthExceedsPayload {
            count: 4294967295,
            ..
        }
    ));
    let msg = err.to_string();
    assert!(msg.contains("name") && msg.contains("4294967295"), "{msg}");
}

#[test]
fn unknown_image_encoding_is_rejected() {
    let mut img = rgb(2, 2);
    img.encoding = "rgb9".into();
    let err = Image::from_cdr_slice(&img.to_cdr()).expect_err("must fail");
    assert_eq!(err.field, "encoding");
    assert_eq!(err.kind, DecodeErrorKind::UnknownEncoding("rgb9".into()));
}

#[test]
fn image_data_length_must_equal_step_times_height() {
    let mut img = rgb(4, 4);
    img.data = img.data.slice(..47);
    let err = Image::from_cdr_slice(&img.to_cdr()).expect_err("must fail");
    assert_eq!(err.field, "data");
    assert_eq!(
        err.kind,
        DecodeErrorKind::DataSizeMismatch {
            expected: 48,
            actual: 47
        }
    );
    let mut img = rgb(4, 4);
    img.step = 11;
    let err = Image::from_cdr_slice(&img.to_cdr()).expect_err("must fail");
    assert_eq!(err.field, "step");
}

#[test]
fn bad_encapsulation_and_trailing_garbage_are_rejected() {
    let s = StringMsg { data: "hi".into() }.to_cdr();
    let mut bad = s.clone();
    bad[1] = 0x07;
    let err = StringMsg::from_cdr_slice(&bad).expect_err("must fail");
    assert!(matches!(err.kind, DecodeErrorKind::BadEncapsulation(_)));
    let mut long = s.clone();
    long.extend_from_slice(&[0; 3]);
    assert!(
        StringMsg::from_cdr_slice(&long).is_ok(),
        "up to 3 padding bytes are fine"
    );
    long.extend_from_slice(&[0; 5]);
    let err = StringMsg::from_cdr_slice(&long).expect_err("must fail");
    assert!(matches!(err.kind, DecodeErrorKind::TrailingBytes(8)));
}

#[test]
fn big_endian_payloads_decode() {
    // std_msgs/String "ok" in big-endian CDR.
    let p = [0, 0, 0, 0, 0, 0, 0, 3, b'o', b'k', 0];
    assert_eq!(StringMsg::from_cdr_slice(&p).expect("decodes").data, "ok");
}

#[test]
fn channel_means_of_rgb_and_depth() {
    let data: Vec<u8> = [10u8, 20, 30].repeat(6);
    let img = Image::rgb8(header(), 3, 2, data);
    assert_eq!(img.channel_means(), Some(vec![10.0, 20.0, 30.0]));
    let d = Image::depth_32fc1(header(), 2, 1, &[1.0, f32::NAN]);
    assert_eq!(d.channel_means(), Some(vec![1.0]));
}

#[test]
fn message_kind_parses_type_names() {
    for k in MessageKind::ALL {
        assert_eq!(MessageKind::from_type_name(k.def().name), Some(k));
        assert_eq!(MessageKind::from_type_name(&k.def().short_name()), Some(k));
    }
    assert_eq!(
        MessageKind::from_type_name("JointState"),
        Some(MessageKind::JointState)
    );
    assert_eq!(MessageKind::from_type_name("geometry_msgs/msg/Pose"), None);
}

fn finite() -> impl Strategy<Value = f64> {
    prop::num::f64::NORMAL | prop::num::f64::ZERO | prop::num::f64::SUBNORMAL
}

fn arb_header() -> impl Strategy<Value = Header> {
    (any::<i32>(), 0u32..1_000_000_000, ".{0,12}").prop_map(|(sec, nanosec, frame_id)| Header {
        stamp: Time { sec, nanosec },
        frame_id,
    })
}

fn arb_joint_state() -> impl Strategy<Value = JointState> {
    (
        arb_header(),
        prop::collection::vec("[a-z_]{0,10}", 0..8),
        prop::collection::vec(finite(), 0..8),
        prop::collection::vec(finite(), 0..8),
        prop::collection::vec(finite(), 0..8),
    )
        .prop_map(|(header, name, position, velocity, effort)| JointState {
            header,
            name,
            position,
            velocity,
            effort,
        })
}

fn arb_trajectory() -> impl Strategy<Value = JointTrajectory> {
    let point = (
        prop::collection::vec(finite(), 0..4),
        prop::collection::vec(finite(), 0..4),
        prop::collection::vec(finite(), 0..4),
        prop::collection::vec(finite(), 0..4),
        any::<i32>(),
        0u32..1_000_000_000,
    )
        .prop_map(
            |(positions, velocities, accelerations, effort, sec, nanosec)| JointTrajectoryPoint {
                positions,
                velocities,
                accelerations,
                effort,
                time_from_start: Duration { sec, nanosec },
            },
        );
    (
        arb_header(),
        prop::collection::vec("[a-z]{1,6}", 0..4),
        prop::collection::vec(point, 0..4),
    )
        .prop_map(|(header, joint_names, points)| JointTrajectory {
            header,
            joint_names,
            points,
        })
}

fn arb_image() -> impl Strategy<Value = Image> {
    (
        arb_header(),
        0u32..6,
        0u32..6,
        prop::sample::select(vec!["rgb8", "mono8", "16UC1", "32FC1", "bgra8", "64FC3"]),
        0u32..3,
    )
        .prop_map(|(header, w, h, enc, pad)| {
            let (bpp, _) = sinew_msgs::encoding_layout(enc).expect("known");
            let step = w * bpp + pad;
            let data: Vec<u8> = (0..step * h).map(|i| i as u8).collect();
            Image {
                header,
                height: h,
                width: w,
                encoding: enc.into(),
                is_bigendian: 0,
                step,
                data: data.into(),
            }
        })
}

proptest! {
    #[test]
    fn joint_states_round_trip(m in arb_joint_state()) {
        prop_assert_eq!(JointState::from_cdr_slice(&m.to_cdr()).expect("decodes"), m);
    }

    #[test]
    fn trajectories_round_trip(m in arb_trajectory()) {
        prop_assert_eq!(JointTrajectory::from_cdr_slice(&m.to_cdr()).expect("decodes"), m);
    }

    #[test]
    fn images_round_trip(m in arb_image()) {
        prop_assert_eq!(Image::from_cdr_slice(&m.to_cdr()).expect("decodes"), m);
    }

    #[test]
    fn strings_and_compressed_images_round_trip(s in ".{0,40}", data in prop::collection::vec(any::<u8>(), 0..64)) {
        let m = StringMsg { data: s };
        prop_assert_eq!(StringMsg::from_cdr_slice(&m.to_cdr()).expect("decodes"), m);
        let c = CompressedImage { header: header(), format: "jpeg".into(), data: data.into() };
        prop_assert_eq!(CompressedImage::from_cdr_slice(&c.to_cdr()).expect("decodes"), c);
    }

    /// Bounded fuzzing in the test suite: arbitrary bytes and mutations of valid payloads
    /// never panic any decoder (the cargo-fuzz target in fuzz/ runs the same property longer).
    #[test]
    fn decoders_never_panic_on_garbage(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let b = Bytes::from(bytes);
        for k in MessageKind::ALL {
            let _ = k.decode(&b);
        }
    }

    #[test]
    fn decoders_never_panic_on_mutated_payloads(
        m in arb_trajectory(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut p = m.to_cdr();
        for (i, v) in flips {
            let i = i.index(p.len());
            p[i] = v;
        }
        let n = cut.index(p.len() + 1);
        p.truncate(n);
        let b = Bytes::from(p);
        for k in MessageKind::ALL {
            let _ = k.decode(&b);
        }
    }
}
