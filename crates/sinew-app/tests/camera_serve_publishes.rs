//! `camera serve` with a synthetic camera publishes frames that a subscriber in another bus
//! session receives, on the keys a robot uses: rgb8 Images on `image_raw`, JPEG
//! CompressedImages on `image_raw/compressed` with `--passthrough`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use sinew_app::camera::{serve_cameras, CameraServeOptions, CameraServeReport};
use sinew_bus::{Bus, BusConfig, Received, Subscriber};
use sinew_camera::{CameraSpec, Output};
use sinew_msgs::keys::RobotKeys;
use sinew_msgs::{CompressedImage, Image, Message};

const DEADLINE: Duration = Duration::from_secs(30);

/// Two sessions joined over loopback TCP: (serving side, subscribing side).
fn pair() -> (Bus, Bus) {
    let ep = format!(
        "tcp/127.0.0.1:{}",
        sinew_bus::free_loopback_port().expect("a free port")
    );
    let a = Bus::open(&BusConfig {
        listen: vec![ep.clone()],
        ..BusConfig::default()
    })
    .expect("listening session");
    let b = Bus::open(&BusConfig {
        connect: vec![ep],
        ..BusConfig::default()
    })
    .expect("connecting session");
    (a, b)
}

/// Serves `specs` on a thread while `check` runs; stops it and returns its report.
fn serve_while(serving: &Bus, specs: Vec<CameraSpec>, check: impl FnOnce()) -> CameraServeReport {
    let stop = AtomicBool::new(false);
    let opts = CameraServeOptions {
        namespace: "so101".into(),
        duration_s: None,
        status_every_s: None,
    };
    std::thread::scope(|s| {
        let server = s.spawn(|| {
            serve_cameras(&specs, serving, &opts, &mut |_| {}, &|| {
                stop.load(Ordering::Relaxed)
            })
        });
        check();
        stop.store(true, Ordering::Relaxed);
        server.join().expect("no panic").expect("serves")
    })
}

/// The next `n` messages, with a deadline.
fn receive<M: Message + Send + 'static>(sub: &Subscriber<M>, n: usize) -> Vec<Received<M>> {
    let deadline = Instant::now() + DEADLINE;
    let mut out = Vec::new();
    while out.len() < n {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "{} of {n} frames by the deadline",
            out.len()
        );
        if let Some(m) = sub.recv_timeout(left) {
            out.push(m);
        }
    }
    out
}

#[test]
fn camera_serve_publishes_synthetic_frames_a_subscriber_receives() {
    let (serving, watching) = pair();
    let keys = RobotKeys::new("so101").expect("namespace");
    let sub: Subscriber<Image> = watching
        .subscribe(&keys.camera_image("front"), 64)
        .expect("subscribes");
    let spec: CameraSpec = "front=synthetic:64x48@100".parse().expect("spec");
    let mut got = Vec::new();
    let report = serve_while(&serving, vec![spec], || got = receive(&sub, 5));
    for r in &got {
        let img = &r.msg;
        assert_eq!(
            (img.width, img.height, img.encoding.as_str()),
            (64, 48, "rgb8")
        );
        assert_eq!(img.header.frame_id, "front_optical");
        img.validate().expect("a valid image");
    }
    for w in got.windows(2) {
        assert!(
            w[1].msg.header.stamp > w[0].msg.header.stamp,
            "stamps increase"
        );
    }
    let front = &report.cameras[0];
    assert_eq!(front.key, "so101/camera/front/image_raw");
    assert!(front.published >= 5, "{front:?}");
    assert_eq!(front.errors, 0, "{front:?}");
    serving.close();
    watching.close();
}

#[test]
fn passthrough_publishes_compressed_jpeg_on_the_compressed_key() {
    let (serving, watching) = pair();
    let keys = RobotKeys::new("so101").expect("namespace");
    let sub: Subscriber<CompressedImage> = watching
        .subscribe(&keys.camera_compressed("wrist"), 64)
        .expect("subscribes");
    let spec = "wrist=synthetic:32x32@100"
        .parse::<CameraSpec>()
        .expect("spec")
        .with_output(Output::Passthrough);
    let mut got = Vec::new();
    let report = serve_while(&serving, vec![spec], || got = receive(&sub, 3));
    for r in &got {
        assert_eq!(r.msg.format, "jpeg");
        assert_eq!(&r.msg.data[..2], &[0xFF, 0xD8]);
        assert_eq!(r.msg.header.frame_id, "wrist_optical");
    }
    assert_eq!(
        report.cameras[0].key,
        "so101/camera/wrist/image_raw/compressed"
    );
    serving.close();
    watching.close();
}

#[test]
fn camera_serve_refuses_what_it_cannot_open() {
    let bus = Bus::open(&BusConfig {
        hub_port: sinew_bus::free_loopback_port().expect("a free port"),
        ..BusConfig::default()
    })
    .expect("bus");
    let opts = CameraServeOptions {
        namespace: "so101".into(),
        duration_s: Some(0.1),
        status_every_s: None,
    };
    let run = |specs: &[&str]| {
        let specs: Vec<CameraSpec> = specs.iter().map(|s| s.parse().expect("spec")).collect();
        serve_cameras(&specs, &bus, &opts, &mut |_| {}, &|| false)
            .expect_err("refused")
            .to_string()
    };
    assert!(run(&[]).contains("no camera given"));
    assert!(run(&["a=synthetic", "a=synthetic"]).contains("given twice"));
    let e = run(&["front=synthetic", "wrist=v4l2:/dev/sinew-no-such-camera"]);
    assert!(
        e.contains("wrist") && e.contains("/dev/sinew-no-such-camera"),
        "{e}"
    );
    bus.close();
}
