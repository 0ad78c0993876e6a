//! The lab access profile in rmw_zenoh mode, in process: keys carry the domain, the type and
//! its hash, and the ROS graph lives under `@ros2_lv` (which `**` does not reach). An
//! observer still sees the robot's publishers in the graph, and its commands never reach the
//! robot's subscriber; the controller's do.

use std::path::Path;
use std::time::Duration;

use sinew_bus::security::make_certificates;
use sinew_bus::{Bus, BusConfig, Qos, RosInterop, TlsFiles};
use sinew_msgs::{JointState, JointTrajectory, JointTrajectoryPoint};

fn tls(dir: &Path, name: &str) -> TlsFiles {
    TlsFiles {
        cert: dir.join(format!("{name}.pem")),
        key: dir.join(format!("{name}.key")),
        ca: dir.join("ca.pem"),
    }
}

fn peer(endpoint: &str, files: TlsFiles) -> Bus {
    Bus::open(&BusConfig {
        connect: vec![endpoint.to_owned()],
        tls: Some(files),
        ros: RosInterop::RmwZenoh { domain_id: 0 },
        ..BusConfig::default()
    })
    .expect("a peer with a lab certificate connects")
}

fn command(bus: &Bus, pan: f64, n: usize) {
    let qos = Qos {
        block_when_congested: true,
        ..Qos::default()
    };
    let p = bus
        .publisher_with::<JointTrajectory>("so101/joint_commands", qos)
        .expect("publisher");
    assert!(p.wait_for_subscribers(Duration::from_secs(10)));
    for _ in 0..n {
        p.put(&JointTrajectory {
            joint_names: vec!["shoulder_pan".into()],
            points: vec![JointTrajectoryPoint {
                positions: vec![pan],
                ..Default::default()
            }],
            ..Default::default()
        })
        .expect("put");
    }
    // Everything sent so far reached the robot's session (or was refused there).
    assert!(
        bus.flush(Duration::from_secs(10)) >= 1,
        "the robot did not confirm"
    );
}

#[test]
fn in_rmw_mode_only_the_controller_commands_and_observers_see_the_graph() {
    let dir = std::env::temp_dir().join(format!("sinew-secure-rmw-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    make_certificates(
        &dir,
        &["robot".into(), "controller".into(), "observer".into()],
        &["127.0.0.1".into()],
    )
    .expect("certificates");
    let port = sinew_bus::free_loopback_port().expect("port");
    let endpoint = format!("tls/127.0.0.1:{port}");
    let robot = Bus::open(&BusConfig {
        listen: vec![endpoint.clone()],
        tls: Some(tls(&dir, "robot")),
        acl: Some("lab".into()),
        ros: RosInterop::RmwZenoh { domain_id: 0 },
        ..BusConfig::default()
    })
    .expect("the robot's session");
    let commands = robot
        .subscribe::<JointTrajectory>("so101/joint_commands", 256)
        .expect("subscribe");
    let _states = robot
        .publisher::<JointState>("so101/joint_states")
        .expect("publisher");

    let observer = peer(&endpoint, tls(&dir, "observer"));
    let graph = observer.ros_graph(0).expect("graph");
    assert!(
        graph.wait_until(Duration::from_secs(10), |es| es.iter().any(|e| e
            .topic
            .as_ref()
            .is_some_and(|t| t.name == "/so101/joint_states"))),
        "the observer does not see the robot's joint_states publisher: {:?}",
        graph.others()
    );
    command(&observer, 1.0, 20);
    let controller = peer(&endpoint, tls(&dir, "controller"));
    command(&controller, 2.0, 20);

    let mut got = Vec::new();
    while let Some(m) = commands.try_recv() {
        got.push(m.msg.points[0].positions[0]);
    }
    controller.close();
    observer.close();
    robot.close();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(got, vec![2.0; 20], "what reached the robot's subscriber");
}
