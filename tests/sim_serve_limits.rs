//! The serving side enforces the robot's own limits: a step command published with
//! `sinew topics pub` to `sinew sim serve` moves the joint no faster than robot.toml's
//! `velocity_max`, all the way to the commanded position.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use sinew_bus::keys::RobotKeys;
use sinew_bus::{Bus, BusConfig};
use sinew_msgs::JointState;

fn sinew(args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_sinew"))
        .args(args)
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sinew starts")
}

#[test]
fn a_step_command_from_topics_pub_moves_the_joint_no_faster_than_its_velocity_limit() {
    let port = sinew_bus::free_loopback_port().expect("port").to_string();
    let mut serve = sinew(&[
        "sim",
        "serve",
        "--task",
        "reach",
        "--duration",
        "30",
        "--hub-port",
        &port,
    ]);
    let stderr = BufReader::new(serve.stderr.take().expect("stderr"));
    let mut lines = stderr.lines().map_while(Result::ok);
    assert!(
        lines.by_ref().any(|l| l.contains("keys under")),
        "sim serve did not start"
    );
    let bus = Bus::open(&BusConfig {
        hub_port: port.parse().expect("port"),
        ..BusConfig::default()
    })
    .expect("bus");
    let keys = RobotKeys::new("so101").expect("keys");
    let states = bus
        .subscribe::<JointState>(&keys.joint_states(), 4096)
        .expect("subscribe");
    let first = states
        .recv_timeout(Duration::from_secs(30))
        .expect("a joint state");
    let start = first.msg.position[0];
    let target = 1.2;
    // 3 s of the same step target at 50 Hz: the shoulder pan is told to jump 1.2 rad at once.
    let status = sinew(&[
        "topics",
        "pub",
        "so101/joint_commands",
        "--names",
        "shoulder_pan",
        "--positions",
        "1.2",
        "--rate",
        "50",
        "--count",
        "150",
        "--hub-port",
        &port,
    ])
    .wait()
    .expect("topics pub runs");
    assert!(status.success());
    let mut samples: Vec<(f64, f64, f64)> = Vec::new();
    while let Some(m) = states.try_recv() {
        let t = m.msg.header.stamp.as_nanos() as f64 / 1e9;
        samples.push((t, m.msg.position[0], m.msg.velocity[0]));
    }
    let _ = serve.kill();
    let _ = serve.wait();
    bus.close();
    assert!(samples.len() > 100, "{} joint states", samples.len());
    let reached = samples
        .iter()
        .map(|s| s.1)
        .fold(f64::NEG_INFINITY, f64::max);
    assert!(
        (reached - target).abs() < 0.05,
        "the pan went from {start:.3} to {reached:.3}, not to {target}"
    );
    let velocity_max = 3.0; // robots/so101/robot.toml, shoulder_pan
    let fastest = samples.iter().map(|s| s.2.abs()).fold(0.0f64, f64::max);
    // Finite differences over 10 ms: the measured motion, whatever the velocity field says.
    let fastest_fd = samples
        .windows(2)
        .filter(|w| w[1].0 - w[0].0 > 0.005)
        .map(|w| ((w[1].1 - w[0].1) / (w[1].0 - w[0].0)).abs())
        .fold(0.0f64, f64::max);
    assert!(
        fastest <= velocity_max * 1.1 && fastest_fd <= velocity_max * 1.1,
        "the pan moved at {fastest:.2} rad/s (finite differences {fastest_fd:.2}); its limit is {velocity_max}"
    );
}
