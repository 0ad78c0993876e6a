//! The rerun adapter, checked by reading the written files back.

use std::path::{Path, PathBuf};

use sinew_core::events::{Event, Scene, SceneItem, Shape};
use sinew_msgs::{
    AnyMessage, Header, Image, JointState, JointTrajectory, JointTrajectoryPoint, StringMsg, Time,
};
use sinew_robot::RobotDescription;
use sinew_viz::{read_rrd, spawn_viz, Sink, Stream, Viz, VizItem};

fn robot() -> RobotDescription {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../robots/so101");
    RobotDescription::load(&p).expect("so101 loads")
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("sinew-viz-{}", std::process::id()));
    std::fs::create_dir_all(&d).expect("dir");
    d.join(name)
}

fn state(robot: &RobotDescription, i: u64) -> AnyMessage {
    let names: Vec<String> = robot.joint_names();
    let mut q = robot.home();
    q[0] = i as f64 * 0.01;
    AnyMessage::JointState(JointState {
        header: Header::new(Time::from_nanos(i as i64), "base_link"),
        name: names,
        position: q,
        velocity: vec![],
        effort: vec![],
    })
}

fn text(s: String) -> AnyMessage {
    AnyMessage::String(StringMsg { data: s })
}

#[test]
fn an_episode_stream_holds_the_expected_entities() {
    let robot = robot();
    let names: Vec<String> = robot.joint_names();
    let path = tmp("episode.rrd");
    let mut viz = Viz::new(robot.clone(), "test", &Sink::File(path.clone())).expect("open");
    let ms = 1_000_000u64;
    viz.log(&Stream::Instruction, 0, &text("touch the red cube".into()))
        .expect("log");
    let scene = Scene {
        items: vec![
            SceneItem {
                name: "table".into(),
                shape: Shape::Box {
                    half_extents_m: [0.8, 0.8, 0.025],
                },
                rgb: [0.6, 0.5, 0.4],
                world_from_item: [0.3, 0.0, -0.025, 0.0, 0.0, 0.0, 1.0],
                movable: false,
            },
            SceneItem {
                name: "cube_red".into(),
                shape: Shape::Box {
                    half_extents_m: [0.015; 3],
                },
                rgb: [1.0, 0.0, 0.0],
                world_from_item: [0.2, 0.0, 0.015, 0.0, 0.0, 0.0, 1.0],
                movable: true,
            },
        ],
    };
    for i in 0..20u64 {
        let t = i * 10 * ms;
        if i % 5 == 0 {
            let step = i / 5;
            viz.log(&Stream::Events, t, &text(Event::Step { step }.to_json()))
                .expect("step");
            viz.log(&Stream::Scene, t, &text(scene.to_json()))
                .expect("scene");
            let px = vec![128u8; 8 * 6 * 3];
            let im = Image::rgb8(Header::default(), 8, 6, px);
            viz.log(&Stream::Camera("front".into()), t, &AnyMessage::Image(im))
                .expect("image");
            let depth = Image::depth_32fc1(Header::default(), 8, 6, &[0.5f32; 48]);
            viz.log(&Stream::Depth("front".into()), t, &AnyMessage::Image(depth))
                .expect("depth");
            // An encoding the viewer is not given is skipped and counted, never fatal.
            let mut odd = Image::rgb8(Header::default(), 2, 2, vec![0u8; 12]);
            odd.encoding = "yuv422".into();
            viz.log(&Stream::Camera("front".into()), t, &AnyMessage::Image(odd))
                .expect("skipped");
        }
        viz.log(&Stream::JointStates, t, &state(&robot, i))
            .expect("state");
        let cmd = JointTrajectory {
            header: Header::default(),
            joint_names: names.clone(),
            points: vec![JointTrajectoryPoint {
                positions: robot.home(),
                ..Default::default()
            }],
        };
        viz.log(&Stream::JointCommands, t, &AnyMessage::JointTrajectory(cmd))
            .expect("cmd");
    }
    let chunk = JointTrajectory {
        header: Header::new(Time::default(), "joint_position"),
        joint_names: names.clone(),
        points: (0..5)
            .map(|_| JointTrajectoryPoint {
                positions: robot.home(),
                ..Default::default()
            })
            .collect(),
    };
    viz.log(&Stream::ActionChunk, 0, &AnyMessage::JointTrajectory(chunk))
        .expect("chunk");
    viz.log(
        &Stream::Events,
        200 * ms,
        &text(
            Event::Outcome {
                success: true,
                steps: 4,
            }
            .to_json(),
        ),
    )
    .expect("outcome");
    viz.log(&Stream::Events, 200 * ms, &text("{not json".into()))
        .expect("bad json is skipped");
    let stats = viz.finish().expect("finish");
    assert_eq!(stats.skipped, 5, "{stats:?}");

    let s = read_rrd(&path).expect("reads back");
    let moving = sinew_viz::moving_links(&robot.tree);
    for (link, moves) in robot.tree.links.iter().zip(moving) {
        // Links fixed to the base are posed once, as static data.
        let expected = if moves { 20 } else { 0 };
        assert_eq!(s.rows(&format!("world/robot/{link}")), expected, "{link}");
    }
    assert_eq!(s.rows("joints/shoulder_pan/measured"), 20);
    assert_eq!(s.rows("joints/gripper/commanded"), 20);
    assert_eq!(s.rows("world/cameras/front/rgb"), 4);
    assert_eq!(s.rows("world/cameras/front/depth"), 4);
    assert_eq!(s.rows("world/cameras/front"), 0); // mounted on the base: a static pose
    assert_eq!(s.rows("world/cameras/wrist"), 20); // pose follows the arm
    assert!(s
        .entity("world/cameras/front")
        .is_some_and(|e| e.static_rows > 0)); // pinhole and pose
    assert_eq!(s.rows("world/scene/cube_red"), 4);
    assert_eq!(s.rows("world/scene/table"), 0);
    assert!(s
        .entity("world/scene/table")
        .is_some_and(|e| e.static_rows > 0));
    assert_eq!(s.rows("world/policy/chunk"), 1);
    assert_eq!(s.rows("episode/success"), 1);
    assert_eq!(s.rows("instruction"), 1);
    assert!(s.entity("world/robot/base_link/visual_0").is_some());
    let tl = &s
        .entity("joints/shoulder_pan/measured")
        .expect("joint")
        .timelines;
    assert!(tl.contains("step") && tl.contains("time"), "{tl:?}");
}

#[test]
fn the_thread_counts_every_item_it_could_not_take() {
    let robot = robot();
    let path = tmp("thread.rrd");
    let mut t = spawn_viz(4).expect("thread");
    assert!(t.send_blocking(VizItem::Open {
        robot: Box::new(robot.clone()),
        name: "thread".into(),
        sink: Sink::File(path.clone()),
    }));
    let mut accepted = 0u64;
    let mut refused = 0u64;
    for i in 0..2000u64 {
        let ok = t.send(VizItem::Message {
            stream: Stream::JointStates,
            time_ns: i,
            msg: state(&robot, i),
        });
        if ok {
            accepted += 1;
        } else {
            refused += 1;
        }
    }
    let report = t.close();
    assert_eq!(report.dropped, refused);
    assert!(report.error.is_none(), "{report:?}");
    let streams = report.report.clone().expect("the thread reports");
    assert_eq!(streams.len(), 1);
    assert_eq!(streams[0].1.logged, accepted);
    // What was accepted is in the file, and nothing else.
    let s = read_rrd(&path).expect("reads back");
    assert_eq!(s.rows("joints/shoulder_pan/measured"), accepted);
}

#[test]
fn an_unwritable_file_is_an_error_naming_it() {
    let e = Viz::new(
        robot(),
        "x",
        &Sink::File(PathBuf::from("/proc/sinew-no/x.rrd")),
    )
    .expect_err("cannot write");
    assert!(e.to_string().contains("/proc/sinew-no"), "{e}");
    let e = read_rrd(Path::new("/nonexistent/file.rrd")).expect_err("no file");
    assert!(e.to_string().contains("/nonexistent/file.rrd"), "{e}");
}

#[test]
fn fixed_transforms_are_logged_once_as_static() {
    let robot = robot();
    let path = tmp("static.rrd");
    let mut viz = Viz::new(robot.clone(), "static", &Sink::File(path.clone())).expect("open");
    for i in 0..10u64 {
        viz.log(&Stream::JointStates, i * 10_000_000, &state(&robot, i))
            .expect("state");
    }
    viz.finish().expect("finish");
    let s = read_rrd(&path).expect("reads back");
    let moving = sinew_viz::moving_links(&robot.tree);
    assert!(moving.iter().any(|m| !m) && moving.iter().any(|m| *m));
    for (link, moves) in robot.tree.links.iter().zip(moving) {
        let e = s
            .entity(&format!("world/robot/{link}"))
            .unwrap_or_else(|| panic!("{link} logged"));
        if moves {
            assert_eq!((e.rows, e.static_rows), (10, 0), "{link}");
        } else {
            assert_eq!((e.rows, e.static_rows), (0, 1), "{link} once, static");
        }
    }
    // The base camera's pose is static (with its pinhole); the wrist camera's follows the arm.
    let front = s.entity("world/cameras/front").expect("front");
    assert_eq!((front.rows, front.static_rows), (0, 2));
    assert_eq!(s.rows("world/cameras/wrist"), 10);
}

#[test]
fn encoded_colour_and_millimetre_depth_are_logged_as_rerun_images() {
    let robot = robot();
    let path = tmp("encoded.rrd");
    let mut viz = Viz::new(robot.clone(), "encoded", &Sink::File(path.clone())).expect("open");
    // PNG bytes, named as image_transport names them; the logger passes them through
    // undecoded (the viewer decodes them).
    let png: Vec<u8> = vec![
        0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 0x0d, 0x49, 0x48, 0x44, 0x52, 0,
        0, 0, 1, 0, 0, 0, 1, 8, 2, 0, 0, 0, 0x90, 0x77, 0x53, 0xde, 0, 0, 0, 0x0c, 0x49, 0x44,
        0x41, 0x54, 0x08, 0xd7, 0x63, 0xf8, 0xcf, 0xc0, 0, 0, 0x03, 0x01, 0x01, 0, 0x18, 0xdd,
        0x8d, 0xb0, 0, 0, 0, 0, 0x49, 0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82,
    ];
    let c = sinew_msgs::CompressedImage {
        header: Header::default(),
        format: "rgb8; png compressed bgr8".into(),
        data: png.into(),
    };
    viz.log(
        &Stream::Camera("front".into()),
        0,
        &AnyMessage::CompressedImage(c),
    )
    .expect("compressed");
    let mut depth = Image::rgb8(Header::default(), 2, 2, vec![0u8; 8]);
    depth.encoding = "16UC1".into();
    depth.step = 4;
    viz.log(&Stream::Depth("front".into()), 0, &AnyMessage::Image(depth))
        .expect("depth");
    let stats = viz.finish().expect("finish");
    assert_eq!(stats.skipped, 0, "{stats:?}");
    let s = read_rrd(&path).expect("reads back");
    let rgb = s.entity("world/cameras/front/rgb").expect("rgb");
    assert!(rgb.components.contains("EncodedImage:blob"), "{rgb:?}");
    assert!(
        rgb.components.contains("EncodedImage:media_type"),
        "{rgb:?}"
    );
    let d = s.entity("world/cameras/front/depth").expect("depth");
    assert!(d.components.contains("DepthImage:meter"), "{d:?}");
}

#[test]
fn each_stream_carries_the_episode_blueprint() {
    let robot = robot();
    let path = tmp("blueprint.rrd");
    let viz = Viz::new(robot.clone(), "bp", &Sink::File(path.clone())).expect("open");
    viz.finish().expect("finish");
    let s = read_rrd(&path).expect("reads back");
    assert!(
        s.blueprint.contains_key("viewport"),
        "{:?}",
        s.blueprint.keys()
    );
    // Blueprint entities never leak into the recording's.
    assert!(!s.entities.keys().any(|k| k.starts_with("view/")));
    let layout = sinew_viz::blueprint::episode_layout(&robot);
    let views = layout.views();
    let count = |class: &str| views.iter().filter(|v| v.class == class).count();
    assert_eq!(count("3D"), 1);
    // Colour and depth of each camera in views of their own.
    let cams = robot.config.cameras.len();
    let depths = robot.config.cameras.iter().filter(|c| c.depth).count();
    assert_eq!(count("2D"), cams + depths);
    // One plot per joint, holding both its series; policy timings in one more.
    assert_eq!(count("TimeSeries"), robot.joint_names().len() + 1);
    assert!(views
        .iter()
        .any(|v| v.origin == "joints/shoulder_pan" && v.contents == ["$origin/**"]));
    let log = views
        .iter()
        .find(|v| v.class == "TextLog")
        .expect("text log");
    assert_eq!(log.levels, ["INFO", "WARN", "ERROR", "CRITICAL"]);
    let view_entities = s
        .blueprint
        .iter()
        .filter(|(k, e)| {
            k.starts_with("view/")
                && e.components
                    .iter()
                    .any(|c| c == "ViewBlueprint:class_identifier")
        })
        .count();
    assert_eq!(view_entities, views.len());
    assert!(s.blueprint.iter().any(|(k, e)| k.ends_with("/TextLogRows")
        && e.components.contains("TextLogRows:filter_by_log_level")));
}
