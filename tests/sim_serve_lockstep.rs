//! End to end: `sinew sim serve --lockstep` looks like a robot on the bus. A client in another
//! process reads joint states and camera images on the robot's keys and drives the joints with
//! `JointTrajectory` commands; simulated time advances one control step per command.

// End-to-end tests read as one story, from start to finish.
#![allow(clippy::too_many_lines)]

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sinew_bus::keys::RobotKeys;
use sinew_bus::{Bus, BusConfig};
use sinew_msgs::{
    Header, Image, JointState, JointTrajectory, JointTrajectoryPoint, StringMsg, Time,
};

const WAIT: Duration = Duration::from_secs(60);

#[test]
fn a_client_drives_the_simulated_robot_over_the_bus() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port");
    let ep = format!("tcp/127.0.0.1:{port}");
    let mut child = Command::new(env!("CARGO_BIN_EXE_sinew"))
        .args([
            "--listen",
            &ep,
            "sim",
            "serve",
            "--robot",
            "so101",
            "--task",
            "reach",
            "--seed",
            "1",
            "--lockstep",
            "--duration",
            "2.0",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sim serve starts");
    let bus = Bus::open(&BusConfig {
        connect: vec![ep],
        ..BusConfig::default()
    })
    .expect("bus");
    let keys = RobotKeys::new("so101").expect("keys");
    let states = bus.latest::<JointState>(&keys.joint_states()).expect("sub");
    let images = bus
        .latest::<Image>(&keys.camera_image("front"))
        .expect("sub");
    let instruction = bus.latest::<StringMsg>(&keys.instruction()).expect("sub");
    let commands = bus
        .publisher::<JointTrajectory>(&keys.joint_commands())
        .expect("pub");
    assert!(
        commands.wait_for_subscribers(WAIT),
        "sim serve subscribes to joint commands"
    );

    let first = states.wait_new(WAIT).expect("a first joint state");
    let names = first.msg.name.clone();
    assert_eq!(names.len(), 6);
    let img = images.wait_new(WAIT).expect("a camera image").msg;
    assert_eq!(
        (img.width, img.height, img.encoding.as_str()),
        (224, 224, "rgb8")
    );
    let text = instruction
        .wait_new(WAIT)
        .expect("the instruction")
        .msg
        .data;
    assert!(text.contains("cube"), "{text}");

    // Bad input first: an unknown joint, a NaN (rejected and counted, but each still takes its
    // control step in lockstep) and a payload that is not a JointTrajectory (counted, ignored).
    let bad = |names: Vec<String>, v: f64| JointTrajectory {
        header: Header::new(Time::now(), "base_link"),
        joint_names: names,
        points: vec![JointTrajectoryPoint {
            positions: vec![v],
            ..Default::default()
        }],
    };
    commands
        .put(&bad(vec!["elbow_twist".into()], 0.1))
        .expect("put");
    states.wait_new(WAIT).expect("a step per command");
    commands
        .put(&bad(vec![names[0].clone()], f64::NAN))
        .expect("put");
    states.wait_new(WAIT).expect("a step per command");
    bus.put_raw(&keys.joint_commands(), vec![0, 1, 0, 0, 9, 9])
        .expect("put");

    // Command the shoulder pan to 0.4 rad, one command per observation, until the server
    // finishes its 2 s of simulated time.
    let mut target = first.msg.position.clone();
    target[0] = 0.4;
    let deadline = Instant::now() + WAIT;
    let mut last = first.msg;
    let mut sent = 0;
    while child.try_wait().expect("wait").is_none() && Instant::now() < deadline {
        let cmd = JointTrajectory {
            header: Header::new(Time::now(), "base_link"),
            joint_names: names.clone(),
            points: vec![JointTrajectoryPoint {
                positions: target.clone(),
                ..Default::default()
            }],
        };
        commands.put(&cmd).expect("put");
        sent += 1;
        if let Some(s) = states.wait_new(Duration::from_secs(2)) {
            assert!(
                s.msg.header.stamp >= last.header.stamp,
                "simulated time never goes back"
            );
            last = s.msg;
        }
    }
    let status = child.wait().expect("exit");
    let mut err = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut err)
        .expect("read");
    assert!(status.success(), "{err}");
    assert!(
        sent >= 18,
        "2 s at 10 Hz takes 20 commands, sent {sent} + 2 bad ones"
    );
    // Lockstep: simulated time is exactly the number of control steps executed.
    assert_eq!(last.header.stamp.sec, 2, "{:?}", last.header.stamp);
    assert!(
        (last.position[0] - 0.4).abs() < 0.05,
        "pan reached {}",
        last.position[0]
    );
    assert!(err.contains("commands applied 18, rejected 2"), "{err}");
    assert!(err.contains("malformed 1"), "{err}");
    assert!(err.contains("unknown joint \"elbow_twist\""), "{err}");
    bus.close();
}
