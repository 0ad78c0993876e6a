//! File and synthetic sources deliver frames with increasing stamps and sequence numbers,
//! through the same capture thread as a webcam.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use sinew_camera::{CameraSpec, CameraStream, CapturedFrame, FramePayload, Output};

const DEADLINE: Duration = Duration::from_secs(10);

/// The next `n` frames, each newer than the one before, waiting on the stream (no sleeps).
fn frames(cam: &CameraStream, n: usize) -> Vec<CapturedFrame> {
    let deadline = Instant::now() + DEADLINE;
    let mut out: Vec<CapturedFrame> = Vec::new();
    while out.len() < n {
        let left = deadline.saturating_duration_since(Instant::now());
        let f = cam
            .wait_newer(out.last().map(|f| f.sequence), left)
            .unwrap_or_else(|| {
                panic!(
                    "{}: {} frames by the deadline; {:?}",
                    cam.name(),
                    out.len(),
                    cam.stats()
                )
            });
        out.push(f);
    }
    out
}

fn assert_increasing(frames: &[CapturedFrame]) {
    for w in frames.windows(2) {
        assert!(w[1].sequence > w[0].sequence);
        assert!(w[1].captured > w[0].captured);
        assert!(w[1].captured_unix_ns > w[0].captured_unix_ns);
        assert!(w[1].payload.stamp_ns() > w[0].payload.stamp_ns());
    }
    for f in frames {
        assert_eq!(f.payload.stamp_ns() as u64, f.captured_unix_ns);
    }
}

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("sinew-camera-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

#[test]
fn synthetic_frames_are_stamped_and_numbered_in_order() {
    let spec: CameraSpec = "front=synthetic:32x24@200".parse().expect("spec");
    let cam = CameraStream::open(&spec).expect("opens");
    assert_eq!(cam.name(), "front");
    assert_eq!((cam.info().width, cam.info().height), (32, 24));
    let got = frames(&cam, 5);
    assert_increasing(&got);
    assert_eq!(got[0].sequence, 0, "the first frame is number 0");
    let FramePayload::Image(img) = &got[0].payload else {
        panic!("decoded output is an Image");
    };
    assert_eq!(
        (img.width, img.height, img.encoding.as_str()),
        (32, 24, "rgb8")
    );
    assert_eq!(img.header.frame_id, "front_optical");
    // The pattern moves: two frames differ.
    let FramePayload::Image(later) = &got[4].payload else {
        panic!()
    };
    assert_ne!(img.data, later.data);
    let stats = cam.stats();
    assert!(stats.captured >= 5);
    assert_eq!(stats.errors, 0, "{stats:?}");
}

#[test]
fn synthetic_passthrough_is_jpeg() {
    let spec = "front=synthetic:32x24@200"
        .parse::<CameraSpec>()
        .expect("spec")
        .with_output(Output::Passthrough);
    let cam = CameraStream::open(&spec).expect("opens");
    let got = frames(&cam, 2);
    let FramePayload::Compressed(c) = &got[1].payload else {
        panic!("passthrough is a CompressedImage");
    };
    assert_eq!(c.format, "jpeg");
    assert_eq!(&c.data[..3], &[0xFF, 0xD8, 0xFF]);
}

#[test]
fn a_folder_plays_in_name_order_and_loops() {
    let dir = temp_dir("folder");
    // Three 4x2 images, each one flat colour, written out of name order.
    for (name, value) in [("b.png", 20u8), ("a.png", 10), ("c.png", 30)] {
        image::RgbImage::from_pixel(4, 2, image::Rgb([value, value, value]))
            .save(dir.join(name))
            .expect("writes");
    }
    std::fs::write(dir.join("notes.txt"), "not an image").expect("writes");
    let spec: CameraSpec = format!("wrist=file:{}@200", dir.display())
        .parse()
        .expect("spec");
    let cam = CameraStream::open(&spec).expect("opens");
    assert!(cam.info().source.contains("3 images"), "{:?}", cam.info());
    let got = frames(&cam, 7);
    assert_increasing(&got);
    // Frame n shows image n mod 3 in name order (frames the reader missed advance it too).
    let values: Vec<u8> = got
        .iter()
        .map(|f| match &f.payload {
            FramePayload::Image(i) => i.data[0],
            FramePayload::Compressed(_) => panic!("decoded"),
        })
        .collect();
    for (f, v) in got.iter().zip(&values) {
        let expected = [10u8, 20, 30][(f.sequence % 3) as usize];
        assert_eq!(
            *v,
            expected,
            "frame {} plays image {}",
            f.sequence,
            f.sequence % 3
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_single_jpeg_passes_through_unchanged() {
    let dir = temp_dir("single");
    let path = dir.join("front.jpg");
    image::RgbImage::from_pixel(8, 8, image::Rgb([200, 100, 50]))
        .save(&path)
        .expect("writes");
    let bytes = std::fs::read(&path).expect("reads");
    let spec = format!("front=file:{}@200", path.display())
        .parse::<CameraSpec>()
        .expect("spec")
        .with_output(Output::Passthrough);
    let cam = CameraStream::open(&spec).expect("opens");
    let got = frames(&cam, 3);
    assert_increasing(&got);
    for f in &got {
        let FramePayload::Compressed(c) = &f.payload else {
            panic!("passthrough");
        };
        assert_eq!(c.format, "jpeg");
        assert_eq!(&c.data[..], &bytes[..]);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn file_sources_that_cannot_play_fail_to_open() {
    let dir = temp_dir("empty");
    let spec: CameraSpec = format!("w=file:{}", dir.display()).parse().expect("spec");
    let e = CameraStream::open(&spec).expect_err("no images");
    assert!(
        e.to_string().contains("no .png, .jpg or .jpeg images"),
        "{e}"
    );
    let spec: CameraSpec = format!("w=file:{}", dir.join("missing.png").display())
        .parse()
        .expect("spec");
    let e = CameraStream::open(&spec).expect_err("missing");
    assert!(e.to_string().contains("missing.png"), "{e}");
    std::fs::write(dir.join("broken.png"), b"not a png").expect("writes");
    let spec: CameraSpec = format!("w=file:{}", dir.join("broken.png").display())
        .parse()
        .expect("spec");
    assert!(CameraStream::open(&spec).is_err());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_reader_slower_than_the_camera_counts_drops() {
    let spec: CameraSpec = "front=synthetic:8x8@500".parse().expect("spec");
    let cam = CameraStream::open(&spec).expect("opens");
    let first = cam.wait_newer(None, DEADLINE).expect("a frame");
    // Wait until the camera is at least three frames further without reading them.
    let deadline = Instant::now() + DEADLINE;
    while cam.stats().captured < first.sequence + 4 {
        assert!(Instant::now() < deadline, "{:?}", cam.stats());
        std::thread::yield_now();
    }
    assert!(cam.stats().dropped >= 2, "{:?}", cam.stats());
    let latest = cam.latest().expect("a frame");
    assert!(latest.sequence > first.sequence);
}
