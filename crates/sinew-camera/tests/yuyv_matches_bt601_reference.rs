//! YUYV to RGB against an independent BT.601 implementation (numpy, floating point):
//! tests/fixtures/yuyv_bt601_reference.py wrote the fixture and the reference.

use sinew_camera::{
    payload_from_buffer, yuyv_to_rgb8, CaptureFormat, FramePayload, Output, RawFrame,
};
use sinew_msgs::{Header, Time};

const W: u32 = 32;
const H: u32 = 8;

fn fixture(name: &str) -> Vec<u8> {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Largest difference of one channel, and how many channels differ at all.
fn compare(got: &[u8], want: &[u8]) -> (u8, usize) {
    assert_eq!(got.len(), want.len());
    got.iter()
        .zip(want)
        .map(|(a, b)| a.abs_diff(*b))
        .fold((0, 0), |(max, n), d| (max.max(d), n + usize::from(d > 0)))
}

#[test]
fn yuyv_matches_the_numpy_bt601_reference() {
    let yuyv = fixture("yuyv_32x8.yuyv");
    let want = fixture("yuyv_32x8.rgb");
    let got = yuyv_to_rgb8(&yuyv, W, H, 2 * W).expect("converts");
    let (max, n) = compare(&got, &want);
    // Fixed point against floating point: at most one level apart, and rarely at all.
    assert!(max <= 1, "max difference {max}");
    assert!(n * 20 < want.len(), "{n} of {} channels differ", want.len());
    // Studio black and white are exact.
    assert_eq!(&got[..6], &[0, 0, 0, 0, 0, 0]);
    assert_eq!(&got[6..12], &[255; 6]);
}

#[test]
fn padded_rows_convert_like_packed_ones() {
    let yuyv = fixture("yuyv_32x8.yuyv");
    let stride = 2 * W as usize + 16;
    let mut padded = vec![0xAB; stride * H as usize];
    for (row, src) in padded.chunks_mut(stride).zip(yuyv.chunks(2 * W as usize)) {
        row[..src.len()].copy_from_slice(src);
    }
    let packed = yuyv_to_rgb8(&yuyv, W, H, 2 * W).expect("packed");
    let strided = yuyv_to_rgb8(&padded, W, H, stride as u32).expect("padded");
    assert_eq!(packed, strided);
}

#[test]
fn the_capture_path_publishes_yuyv_as_rgb8() {
    let yuyv = fixture("yuyv_32x8.yuyv");
    let raw = RawFrame {
        data: &yuyv,
        format: CaptureFormat::Yuyv,
        width: W,
        height: H,
        stride: 2 * W,
    };
    let header = Header::new(Time::from_nanos(42), "front_optical");
    let FramePayload::Image(img) =
        payload_from_buffer(&raw, Output::Decoded, header.clone()).expect("converts")
    else {
        panic!("a decoded frame is an Image");
    };
    assert_eq!((img.width, img.height, img.step), (W, H, 3 * W));
    assert_eq!(img.encoding, "rgb8");
    assert_eq!(img.header, header);
    img.validate().expect("a valid image");
    let (max, _) = compare(&img.data, &fixture("yuyv_32x8.rgb"));
    assert!(max <= 1);
}

#[test]
fn short_or_odd_yuyv_buffers_are_errors_not_panics() {
    let e = yuyv_to_rgb8(&[0; 10], 4, 2, 8).expect_err("too short");
    assert!(e.to_string().contains("too short"), "{e}");
    let e = yuyv_to_rgb8(&[0; 64], 3, 2, 6).expect_err("odd");
    assert!(e.to_string().contains("odd"), "{e}");
    let raw = RawFrame {
        data: &[],
        format: CaptureFormat::Yuyv,
        width: 4,
        height: 2,
        stride: 8,
    };
    assert!(payload_from_buffer(&raw, Output::Decoded, Header::default()).is_err());
}
