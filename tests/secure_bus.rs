//! A robot served over mutual TLS with the lab access profile (`--acl lab`): peers without a
//! certificate from the lab's CA cannot connect; an observer reads joint states but its
//! joint commands never reach the robot (the joint does not move, the robot's telemetry
//! counts them refused); a controller commands it. And a session listening off loopback
//! without TLS says so.

use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sinew_bus::keys::RobotKeys;
use sinew_bus::{Bus, BusConfig, Latest, Qos, Subscriber, TlsFiles};
use sinew_msgs::{JointState, JointTrajectory, JointTrajectoryPoint, StringMsg};

fn sinew(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_sinew"));
    c.args(args)
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."));
    c
}

struct Killed(Child);

/// Set when a [`Killed`] child had already died of a signal when it was to be stopped.
static CHILD_DIED_OF_SIGNAL: AtomicBool = AtomicBool::new(false);

impl Drop for Killed {
    fn drop(&mut self) {
        if let Ok(Some(status)) = self.0.try_wait() {
            eprintln!("the robot's process had ended: {status}");
            if status.signal().is_some() {
                CHILD_DIED_OF_SIGNAL.store(true, Ordering::SeqCst);
            }
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn tls(dir: &Path, name: &str) -> TlsFiles {
    TlsFiles {
        cert: dir.join(format!("{name}.pem")),
        key: dir.join(format!("{name}.key")),
        ca: dir.join("ca.pem"),
    }
}

fn peer(endpoint: &str, files: TlsFiles) -> Result<Bus, sinew_bus::BusError> {
    Bus::open(&BusConfig {
        connect: vec![endpoint.to_owned()],
        tls: Some(files),
        ..BusConfig::default()
    })
}

/// Waits until the robot's session confirms it processed everything `bus` sent so far
/// ([`Bus::flush`]). A TLS link can drop under two-way traffic and zenoh opens it again
/// (zenoh-link-tls 1.10 reads and writes one TLS stream from two tasks at once,
/// eclipse-zenoh/zenoh#2557); a flush in that gap finds no robot. A fresh joint state on
/// `states` (a subscription of `bus`) shows the link is back, and the flush is asked again.
fn flush_to_robot(bus: &Bus, states: &Latest<JointState>) {
    for _ in 0..5 {
        if bus.flush(Duration::from_secs(10)) >= 1 {
            return;
        }
        // The first may have arrived before the link dropped; the second arrives after.
        let _ = states.wait_new(Duration::from_secs(5));
        assert!(
            states.wait_new(Duration::from_secs(5)).is_some(),
            "no joint state after a flush found no robot"
        );
    }
    panic!("the robot did not confirm a flush");
}

/// The serving telemetry as the robot reports it after everything `bus` sent so far: waits
/// until the robot's session confirms it processed it ([`flush_to_robot`]), then takes the
/// second report after that (the first may have left before).
fn telemetry_after_flush(
    bus: &Bus,
    states: &Latest<JointState>,
    sub: &Subscriber<StringMsg>,
) -> serde_json::Value {
    flush_to_robot(bus, states);
    while sub.try_recv().is_some() {}
    let mut last = None;
    for _ in 0..2 {
        let m = sub
            .recv_timeout(Duration::from_secs(5))
            .expect("serving telemetry at 1 Hz");
        last = Some(m.msg.data);
    }
    serde_json::from_str(&last.unwrap_or_default()).expect("telemetry is JSON")
}

fn pan(states: &Latest<JointState>) -> f64 {
    states
        .wait_new(Duration::from_secs(5))
        .expect("a joint state")
        .msg
        .position[0]
}

fn step_command(target: f64) -> JointTrajectory {
    JointTrajectory {
        joint_names: vec!["shoulder_pan".into()],
        points: vec![JointTrajectoryPoint {
            positions: vec![target],
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// Publishes 50 step commands at 50 Hz (the serving side holds after 0.25 s without one),
/// never dropping one on congestion.
fn command_for_a_second(bus: &Bus, key: &str, target: f64) {
    let qos = Qos {
        block_when_congested: true,
        ..Qos::default()
    };
    let p = bus
        .publisher_with::<JointTrajectory>(key, qos)
        .expect("publisher");
    assert!(
        p.wait_for_subscribers(Duration::from_secs(10)),
        "nobody subscribes to {key}"
    );
    for _ in 0..50 {
        p.put(&step_command(target)).expect("put");
        // Pacing at the command rate, not synchronisation.
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// zenoh-link-tls 1.10 reads and writes one TLS stream from two tasks at once
/// (eclipse-zenoh/zenoh#2557), and now and then the robot's process dies of it (an illegal
/// instruction in zenoh's TX thread, about one run in 80 here). A run where the robot's process
/// died of a signal says so and the scenario runs once more; any other failure fails the test.
#[test]
fn only_the_controller_moves_the_robot_and_strangers_cannot_connect() {
    for attempt in 1..=2 {
        CHILD_DIED_OF_SIGNAL.store(false, Ordering::SeqCst);
        match std::panic::catch_unwind(lab_scenario) {
            Ok(()) => return,
            Err(_) if attempt == 1 && CHILD_DIED_OF_SIGNAL.load(Ordering::SeqCst) => {
                eprintln!("the robot's process died of a signal (zenoh#2557): once more");
            }
            Err(p) => std::panic::resume_unwind(p),
        }
    }
}

/// The robot served with `--acl lab`; strangers, an observer and the controller.
fn lab_scenario() {
    let root = std::env::temp_dir().join(format!("sinew-secure-bus-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let lab = root.join("lab");
    let out = sinew(&[
        "security",
        "certs",
        "--out",
        lab.to_str().expect("utf-8"),
        "--name",
        "robot",
        "--name",
        "controller",
        "--name",
        "observer",
    ])
    .output()
    .expect("sinew security certs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Another CA's "controller": the right name, the wrong signature.
    let other = root.join("other");
    sinew_bus::security::make_certificates(&other, &["controller".into()], &["127.0.0.1".into()])
        .expect("another CA");

    let port = sinew_bus::free_loopback_port().expect("port");
    let endpoint = format!("tls/127.0.0.1:{port}");
    let robot = tls(&lab, "robot");
    let path = |p: &PathBuf| p.to_str().expect("utf-8").to_owned();
    let mut serve = sinew(&[
        "--listen",
        &endpoint,
        "--tls-cert",
        &path(&robot.cert),
        "--tls-key",
        &path(&robot.key),
        "--tls-ca",
        &path(&robot.ca),
        "--acl",
        "lab",
        "sim",
        "serve",
        "--task",
        "reach",
        "--duration",
        "120",
    ])
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .spawn()
    .expect("sim serve starts");
    let stderr = BufReader::new(serve.stderr.take().expect("stderr"));
    let serve = Killed(serve);
    let mut lines = stderr.lines().map_while(Result::ok);
    assert!(
        lines.by_ref().any(|l| l.contains("keys under")),
        "sim serve did not start"
    );
    // Keep reading the robot's log so it never blocks on a full pipe.
    let log = std::thread::spawn(move || lines.collect::<Vec<_>>());

    // Strangers: a certificate from another CA, and none at all (the right CA to check the
    // robot, but nothing to show it). Both are turned away at the handshake.
    let stranger = {
        let (endpoint, files) = (endpoint.clone(), tls(&other, "controller"));
        std::thread::spawn(move || peer(&endpoint, files).map(Bus::close))
    };
    let anonymous = {
        let cfg = root.join("anonymous.json5");
        std::fs::write(
            &cfg,
            format!(
                r#"{{ mode: "peer", scouting: {{ multicast: {{ enabled: false }} }},
                  listen: {{ endpoints: [] }},
                  connect: {{ endpoints: ["{endpoint}"], exit_on_failure: true, timeout_ms: 5000 }},
                  transport: {{ link: {{ tls: {{ root_ca_certificate: "{}" }} }} }} }}"#,
                path(&robot.ca)
            ),
        )
        .expect("config");
        std::thread::spawn(move || {
            Bus::open(&BusConfig {
                config_file: Some(cfg),
                ..BusConfig::default()
            })
            .map(Bus::close)
        })
    };

    let keys = RobotKeys::new("so101").expect("keys");
    let observer = peer(&endpoint, tls(&lab, "observer")).expect("the observer connects");
    let states = observer
        .latest::<JointState>(&keys.joint_states())
        .expect("subscribe");
    let telemetry = observer
        .subscribe::<StringMsg>(&keys.serve_telemetry(), 64)
        .expect("subscribe");
    let pan_before = pan(&states);

    // The observer reads; its commands are refused at the robot's side.
    command_for_a_second(&observer, &keys.joint_commands(), pan_before + 1.0);
    let t = telemetry_after_flush(&observer, &states, &telemetry);
    assert_eq!(t["applied"], 0, "{t}");
    let refused = t["acl_refused"].as_u64().unwrap_or(0);
    assert!(
        refused >= 1,
        "the robot's telemetry does not show the refusals: {t}"
    );
    let pan_after = pan(&states);
    assert!(
        (pan_after - pan_before).abs() < 1e-3,
        "the observer moved the pan from {pan_before:.4} to {pan_after:.4}"
    );

    // The controller commands.
    let controller = peer(&endpoint, tls(&lab, "controller")).expect("the controller connects");
    let controller_states = controller
        .latest::<JointState>(&keys.joint_states())
        .expect("subscribe");
    command_for_a_second(&controller, &keys.joint_commands(), pan_before + 1.0);
    let t = telemetry_after_flush(&controller, &controller_states, &telemetry);
    assert!(t["applied"].as_u64() >= Some(40), "{t}");
    assert_eq!(t["acl_refused"].as_u64(), Some(refused), "{t}");
    let moved = pan(&states);
    assert!(
        moved - pan_before > 0.5,
        "the controller's commands moved the pan from {pan_before:.3} only to {moved:.3}"
    );

    let stranger = stranger.join().expect("thread");
    let anonymous = anonymous.join().expect("thread");
    controller.close();
    observer.close();
    drop(serve);
    let log = log.join().expect("log").join("\n");
    let _ = std::fs::remove_dir_all(&root);
    let e = stranger.expect_err("a certificate from another CA connects");
    assert!(e.to_string().contains("certificate"), "{e}");
    assert!(anonymous.is_err(), "a peer without a certificate connects");
    assert!(
        log.contains("access control refused") && log.contains("joint_commands"),
        "the robot's log does not mention the refusals:\n{log}"
    );
}

#[test]
fn listening_off_loopback_without_tls_is_announced_loudly() {
    let stderr_of = |listen: &str| {
        let out = sinew(&["--listen", listen, "topics", "list", "--duration", "0.1"])
            .output()
            .expect("sinew topics list");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let port = sinew_bus::free_loopback_port().expect("port");
    let open = stderr_of(&format!("tcp/0.0.0.0:{port}"));
    assert!(open.contains("LISTENING WITHOUT TLS"), "{open}");
    let port = sinew_bus::free_loopback_port().expect("port");
    let private = stderr_of(&format!("tcp/127.0.0.1:{port}"));
    assert!(!private.contains("WITHOUT TLS"), "{private}");
}
