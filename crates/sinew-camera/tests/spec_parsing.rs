//! Camera specs: what parses, to what, and errors that name the defect.

use std::path::PathBuf;

use sinew_camera::{CameraSpec, CaptureFormat, Output, Source};

fn parse(s: &str) -> CameraSpec {
    s.parse()
        .unwrap_or_else(|e| panic!("{s:?} should parse: {e}"))
}

fn reason(s: &str) -> String {
    match s.parse::<CameraSpec>() {
        Ok(spec) => panic!("{s:?} should not parse, got {spec:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn v4l2_specs_parse_with_defaults() {
    let s = parse("front=v4l2:/dev/video0");
    assert_eq!(s.name, "front");
    assert_eq!(
        s.source,
        Source::V4l2 {
            device: PathBuf::from("/dev/video0"),
            format: None
        }
    );
    assert_eq!((s.width, s.height, s.fps), (640, 480, 30.0));
    assert_eq!(s.output, Output::Decoded);
    assert_eq!(s.frame_id(), "front_optical");

    let s = parse("front=v4l2:/dev/video2:1280x720@15:mjpeg");
    assert_eq!(
        s.source,
        Source::V4l2 {
            device: PathBuf::from("/dev/video2"),
            format: Some(CaptureFormat::Mjpeg)
        }
    );
    assert_eq!((s.width, s.height, s.fps), (1280, 720, 15.0));

    // A number is /dev/videoN; options in any order; format names in any case.
    let s = parse("wrist=v4l2:1:YUYV:320x240");
    assert_eq!(
        s.source,
        Source::V4l2 {
            device: PathBuf::from("/dev/video1"),
            format: Some(CaptureFormat::Yuyv)
        }
    );
    assert_eq!((s.width, s.height, s.fps), (320, 240, 30.0));
}

#[test]
fn file_and_synthetic_specs_parse() {
    let s = parse("wrist=file:path.png");
    assert_eq!(
        s.source,
        Source::File {
            path: PathBuf::from("path.png")
        }
    );
    assert_eq!((s.width, s.height, s.fps), (0, 0, 30.0));
    let s = parse("wrist=file:frames/@12.5");
    assert_eq!(
        s.source,
        Source::File {
            path: PathBuf::from("frames/")
        }
    );
    assert_eq!(s.fps, 12.5);
    // An '@' that is not followed by a rate belongs to the path.
    let s = parse("w=file:shots@home/a.png");
    assert_eq!(
        s.source,
        Source::File {
            path: PathBuf::from("shots@home/a.png")
        }
    );

    let s = parse("front=synthetic:224x224@30");
    assert_eq!(s.source, Source::Synthetic);
    assert_eq!((s.width, s.height, s.fps), (224, 224, 30.0));
    let s = parse("front=synthetic");
    assert_eq!((s.width, s.height, s.fps), (224, 224, 30.0));
    let s = parse("front=synthetic:@5");
    assert_eq!((s.width, s.height, s.fps), (224, 224, 5.0));
}

#[test]
fn specs_print_back_to_themselves() {
    for s in [
        "front=v4l2:/dev/video0:640x480@30:mjpeg",
        "wrist=file:frames@10",
        "top=synthetic:64x48@60",
    ] {
        let spec = parse(s);
        assert_eq!(parse(&spec.to_string()), spec, "{s}");
    }
}

#[test]
fn bad_specs_name_their_defect() {
    let cases = [
        ("front", "expected NAME=SOURCE"),
        ("=synthetic", "camera name"),
        ("fr ont=synthetic", "camera name \"fr ont\""),
        ("a/b=synthetic", "camera name"),
        ("front=usb:/dev/video0", "unknown source \"usb\""),
        ("front=v4l2:", "v4l2 needs a device"),
        (
            "front=v4l2:/dev/video0:h264",
            "unknown v4l2 option \"h264\"",
        ),
        ("front=v4l2:/dev/video0:640x480:320x240", "size given twice"),
        ("front=v4l2:/dev/video0:mjpeg:yuyv", "format given twice"),
        ("front=v4l2:/dev/video0:641x480:yuyv", "even width"),
        ("front=v4l2:/dev/video0:640by480", "not WxH"),
        ("front=v4l2:/dev/video0:0x480", "width 0"),
        ("front=v4l2:/dev/video0:640x48o", "height \"48o\""),
        ("front=v4l2:/dev/video0:640x480@0", "frame rate \"0\""),
        (
            "front=v4l2:/dev/video0:640x480@fast",
            "frame rate \"fast\" is not a number",
        ),
        ("front=synthetic:224x224@-1", "frame rate \"-1\""),
        ("front=file:", "file needs a path"),
    ];
    for (spec, expected) in cases {
        let r = reason(spec);
        assert!(
            r.contains(expected),
            "{spec:?}: {r:?} should mention {expected:?}"
        );
        assert!(
            r.contains(&format!("{spec:?}")),
            "{r:?} should quote the spec"
        );
    }
}

#[test]
fn yuyv_cannot_pass_through_compressed() {
    let spec = parse("front=v4l2:/dev/video0:yuyv").with_output(Output::Passthrough);
    let e = spec.validate().expect_err("yuyv passthrough is refused");
    assert!(
        e.to_string().contains("yuyv frames cannot pass through"),
        "{e}"
    );
    // Opening says the same before touching any device.
    let e = sinew_camera::CameraStream::open(&spec).expect_err("refused");
    assert!(
        e.to_string().contains("yuyv frames cannot pass through"),
        "{e}"
    );
    assert!(parse("front=v4l2:/dev/video0:mjpeg")
        .with_output(Output::Passthrough)
        .validate()
        .is_ok());
}

#[test]
fn a_missing_device_says_so() {
    let spec = parse("front=v4l2:/dev/sinew-no-such-camera");
    let e = sinew_camera::CameraStream::open(&spec).expect_err("no such device");
    let msg = e.to_string();
    assert!(msg.contains("/dev/sinew-no-such-camera"), "{msg}");
    if cfg!(target_os = "linux") {
        assert!(msg.contains("no such device"), "{msg}");
    }
}
