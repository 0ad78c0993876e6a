//! MJPEG through the path every dequeued V4L2 buffer takes: passed through byte for byte as a
//! `jpeg` CompressedImage, or decoded to rgb8.

use sinew_camera::convert::encode_jpeg;
use sinew_camera::{payload_from_buffer, CaptureFormat, FramePayload, Output, RawFrame};
use sinew_msgs::{Header, Time};

/// A JPEG as a webcam would deliver it: a smooth 64x48 gradient.
fn jpeg_frame() -> (Vec<u8>, Vec<u8>) {
    let (w, h) = (64u32, 48u32);
    let mut rgb = Vec::new();
    for y in 0..h {
        for x in 0..w {
            rgb.extend([(x * 4) as u8, (y * 5) as u8, 128]);
        }
    }
    (encode_jpeg(w, h, &rgb, 95).expect("encodes"), rgb)
}

fn raw(data: &[u8]) -> RawFrame<'_> {
    RawFrame {
        data,
        format: CaptureFormat::Mjpeg,
        width: 64,
        height: 48,
        stride: 0,
    }
}

#[test]
fn mjpeg_passthrough_keeps_the_bytes() {
    let (jpeg, _) = jpeg_frame();
    // The driver's buffer is larger than the frame; the used part is what is handed over.
    let mut buffer = jpeg.clone();
    buffer.extend([0u8; 100]);
    let used = &buffer[..jpeg.len()];
    let header = Header::new(Time::from_nanos(1_700_000_000_000_000_000), "front_optical");
    let FramePayload::Compressed(c) =
        payload_from_buffer(&raw(used), Output::Passthrough, header.clone()).expect("passes")
    else {
        panic!("passthrough gives a CompressedImage");
    };
    assert_eq!(c.format, "jpeg");
    assert_eq!(&c.data[..], &jpeg[..], "the bytes are unchanged");
    assert_eq!(c.header, header);
}

#[test]
fn mjpeg_decodes_to_rgb8() {
    let (jpeg, rgb) = jpeg_frame();
    let FramePayload::Image(img) =
        payload_from_buffer(&raw(&jpeg), Output::Decoded, Header::default()).expect("decodes")
    else {
        panic!("decoding gives an Image");
    };
    assert_eq!(
        (img.width, img.height, img.encoding.as_str()),
        (64, 48, "rgb8")
    );
    img.validate().expect("valid");
    let mean_err = img
        .data
        .iter()
        .zip(&rgb)
        .map(|(a, b)| f64::from(a.abs_diff(*b)))
        .sum::<f64>()
        / rgb.len() as f64;
    assert!(mean_err < 3.0, "JPEG round trip mean error {mean_err}");
}

#[test]
fn a_corrupt_mjpeg_frame_is_an_error_when_decoding() {
    let (jpeg, _) = jpeg_frame();
    let cut = &jpeg[..jpeg.len() / 3];
    // Not decoded: passed through as is (the receiver sees what the camera sent).
    assert!(payload_from_buffer(&raw(cut), Output::Passthrough, Header::default()).is_ok());
    assert!(payload_from_buffer(&raw(&[0x12, 0x34]), Output::Decoded, Header::default()).is_err());
}
