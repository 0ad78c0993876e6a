//! A real SO-101, emulated: STS3215 servo buses on pseudo-terminals stand in for the arms
//! (`sinew_feetech::emulator`), and the `sinew` binary runs as a user would run it against a
//! real arm: `robot calibrate`, `robot serve` with `sinew run` and the shipped policy driving
//! it, servo faults held through and recovered from, and `teleop` from a leader arm. No goal
//! written to the bus ever steps further than the velocity limit allows.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use sinew_feetech::calibration::{Calibration, JointUnits, MotorCalibration};
use sinew_feetech::emulator::{Emulator, EmulatorConfig, FaultKind, Hand};

const WAIT: Duration = Duration::from_secs(120);
const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

fn sinew(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_sinew"));
    c.args(args).current_dir(ROOT);
    c
}

fn spawn(args: &[&str]) -> Child {
    sinew(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sinew starts")
}

fn lines(stderr: ChildStderr) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

fn wait_for(rx: &mpsc::Receiver<String>, needle: &str, seen: &mut Vec<String>) {
    loop {
        match rx.recv_timeout(WAIT) {
            Ok(l) => {
                let hit = l.contains(needle);
                seen.push(l);
                if hit {
                    return;
                }
            }
            Err(_) => panic!("no line with {needle:?}; saw:\n{}", seen.join("\n")),
        }
    }
}

/// Polls `f` until it holds, failing after `WAIT`.
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < WAIT, "{what}: not within {WAIT:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn wait_exit(child: &mut Child, what: &str) {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            assert!(status.success(), "{what} failed: {status}");
            return;
        }
        if start.elapsed() > WAIT {
            let _ = child.kill();
            panic!("{what} did not end within {WAIT:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("sinew-so101-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

/// A calibration with every joint mid-range at 2047, ±1300 steps (the wrist roll a full
/// turn), written to `dir`.
fn calibration(dir: &Path, offsets: i32) -> (Calibration, PathBuf) {
    let motors = sinew_feetech::SO101_MOTORS
        .iter()
        .map(|(name, id)| {
            let (lo, hi) = if *name == "wrist_roll" {
                (0, 4095)
            } else {
                (747, 3347)
            };
            (
                (*name).to_owned(),
                MotorCalibration {
                    id: *id,
                    drive_mode: 0,
                    homing_offset: offsets + i32::from(*id) * 10,
                    range_min: lo,
                    range_max: hi,
                },
            )
        })
        .collect();
    let cal = Calibration { motors };
    let path = dir.join("calibration.json");
    cal.write(&path).expect("write calibration");
    (cal, path)
}

/// An emulated arm holding `cal` in its EEPROM, standing mid-range.
fn calibrated_arm(cal: &Calibration, hand: Hand) -> Emulator {
    let mut cfg = EmulatorConfig::so101();
    cfg.servos = cal
        .motors
        .iter()
        .map(|(_, m)| {
            (
                m.id,
                f64::from(m.homing_offset + (m.range_min + m.range_max) / 2),
            )
        })
        .collect();
    cfg.hand = hand;
    cfg.calibration = Some(cal.clone());
    Emulator::start(cfg).expect("emulator")
}

/// The largest goal step, in servo steps, that one command period at each joint's velocity
/// limit allows (robots/so101: 3.0 rad/s at `rate_hz`), plus one step of rounding.
fn step_limits(cal: &Calibration, rate_hz: f64) -> Vec<(u8, i32)> {
    cal.motors
        .iter()
        .map(|(name, m)| {
            let units = JointUnits {
                motor: *m,
                gripper_range_rad: (name == "gripper").then_some((-0.174533, 1.74533)),
            };
            let mid = units.to_rad((m.range_min + m.range_max) / 2);
            let step = (units.to_raw(mid + 3.0 / rate_hz) - units.to_raw(mid)).abs();
            (m.id, step + 1)
        })
        .collect()
}

fn assert_goal_steps_within_limits(emu: &Emulator, cal: &Calibration, rate_hz: f64) {
    let report = emu.report();
    for (id, limit) in step_limits(cal, rate_hz) {
        let s = report.servos.iter().find(|s| s.id == id).expect("servo");
        assert!(s.goal_writes > 0, "servo {id} was never commanded");
        assert!(
            s.max_goal_step <= limit,
            "servo {id}: a goal stepped {} steps; one period at the velocity limit is {limit}",
            s.max_goal_step
        );
    }
}

/// The ports and calibration files of a leader and a follower, as `teleop` and `dataset
/// record --teleop` take them.
fn arm_args(leader: &Emulator, follower: &Emulator, cal: &Path) -> Vec<String> {
    let path = |p: &Path| p.to_str().expect("path").to_owned();
    vec![
        "--leader-port".into(),
        path(leader.path()),
        "--leader-calibration".into(),
        path(cal),
        "--follower-port".into(),
        path(follower.path()),
        "--follower-calibration".into(),
        path(cal),
    ]
}

#[test]
fn calibrate_writes_a_lerobot_calibration_from_the_arm() {
    let dir = tmp("calibrate");
    let mut cfg = EmulatorConfig::so101();
    cfg.hand = Hand::Sweep {
        amplitude: 1000.0,
        period_s: 0.8,
    };
    let emu = Emulator::start(cfg).expect("emulator");
    let out = dir.join("follower.json");
    let o = sinew(&[
        "robot",
        "calibrate",
        "--port",
        emu.path().to_str().expect("path"),
        "--calibration",
        out.to_str().expect("path"),
        "--yes",
        "--range-seconds",
        "2.5",
    ])
    .output()
    .expect("calibrate runs");
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let cal = Calibration::read(&out).expect("a LeRobot calibration");
    let names: Vec<&str> = cal.motors.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "shoulder_pan",
            "shoulder_lift",
            "elbow_flex",
            "wrist_flex",
            "wrist_roll",
            "gripper"
        ]
    );
    let report = emu.report();
    for (name, m) in &cal.motors {
        let servo = report.servos.iter().find(|s| s.id == m.id).expect("servo");
        assert_eq!(
            servo.homing_offset, m.homing_offset,
            "{name}: the offset on the servo"
        );
        if name == "wrist_roll" {
            assert_eq!((m.range_min, m.range_max), (0, 4095));
        } else {
            // The hand swept ±1000 steps about the middle pose, which now reads 2047.
            let mid = (m.range_min + m.range_max) / 2;
            assert!((mid - 2047).abs() <= 30, "{name}: mid {mid}");
            let span = m.range_max - m.range_min;
            assert!((1900..=2001).contains(&span), "{name}: span {span}");
        }
    }
}

#[test]
fn a_policy_drives_the_emulated_arm_within_its_limits_and_faults_hold_it() {
    let dir = tmp("serve");
    let (cal, cal_path) = calibration(&dir, -400);
    let emu = calibrated_arm(&cal, Hand::Still);
    let report = dir.join("serve.json");
    let hub = sinew_bus::free_loopback_port().expect("port").to_string();
    let mut serve = spawn(&[
        "--hub-port",
        &hub,
        "robot",
        "serve",
        "--port",
        emu.path().to_str().expect("path"),
        "--calibration",
        cal_path.to_str().expect("path"),
        "--camera",
        "front=synthetic:224x224@15",
        "--camera",
        "wrist=synthetic:224x224@15",
        "--instruction",
        "put the red cube in the bowl",
        "--estop-torque-off",
        "--duration",
        "40",
        "--report",
        report.to_str().expect("path"),
    ]);
    let serve_err = lines(serve.stderr.take().expect("stderr"));
    let mut seen = Vec::new();
    wait_for(&serve_err, "keys under so101/", &mut seen);
    let mut run = spawn(&[
        "--hub-port",
        &hub,
        "run",
        "--policy",
        "policies/sinew-tiny-so101-v1",
        "--duration",
        "30",
    ]);
    let run_err = lines(run.stderr.take().expect("stderr"));
    let mut run_seen = Vec::new();
    wait_for(&run_err, "following the policy", &mut run_seen);
    let writes = |emu: &Emulator| emu.report().servos[0].goal_writes;
    let w0 = writes(&emu);
    eventually("the policy commands the arm", || writes(&emu) > w0 + 100);

    // A servo stops answering, then one corrupts its replies, then one overloads: each time
    // the serving side holds the arm and resumes by itself when the servo answers again.
    for (kind, id) in [
        (FaultKind::Silent, 3),
        (FaultKind::Corrupt, 5),
        (FaultKind::Overload, 2),
    ] {
        emu.inject(kind, id, 0.6);
        let w = writes(&emu);
        // 100 commands take a second at 100 Hz: longer than the fault, during which none go.
        eventually("commands resume after the fault", || writes(&emu) > w + 100);
    }

    // E-stop with --estop-torque-off: every servo goes limp; release arms them again.
    let bus = sinew_bus::Bus::open(&sinew_bus::BusConfig {
        hub_port: hub.parse().expect("port"),
        ..sinew_bus::BusConfig::default()
    })
    .expect("bus");
    let estop = bus
        .publisher::<sinew_msgs::StringMsg>("so101/estop")
        .expect("publisher");
    assert!(
        estop.wait_for_subscribers(WAIT),
        "the arm's server subscribes to the e-stop"
    );
    let say = |data: &str| {
        estop
            .put(&sinew_msgs::StringMsg { data: data.into() })
            .expect("put");
    };
    say("engage");
    eventually("the e-stop turns the torque off", || {
        emu.report().servos.iter().all(|s| !s.torque)
    });
    say("release");
    eventually("the release turns it back on", || {
        emu.report().servos.iter().all(|s| s.torque)
    });
    let w = writes(&emu);
    eventually("commands resume after the release", || {
        writes(&emu) > w + 100
    });
    wait_exit(&mut run, "sinew run");
    wait_exit(&mut serve, "sinew robot serve");

    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).expect("report")).expect("json");
    assert!(r["serve"]["applied"].as_u64() > Some(500), "{r}");
    assert!(r["arm"]["faults"].as_u64() >= Some(3), "{r}");
    assert!(r["arm"]["recoveries"].as_u64() >= Some(3), "{r}");
    assert!(r["serve"]["fault_ticks"].as_u64() > Some(0), "{r}");
    assert_eq!(
        r["arm"]["guarded_goals"].as_u64(),
        Some(0),
        "the serving side's limits held"
    );
    assert!(
        r["bus"]["servos"]["3"]["timeouts"].as_u64() > Some(0),
        "{r}"
    );
    assert!(
        r["bus"]["servos"]["5"]["bad_checksums"].as_u64() > Some(0),
        "{r}"
    );
    assert!(
        r["bus"]["servos"]["2"]["overloads"].as_u64() > Some(0),
        "{r}"
    );
    assert!(r["serve"]["estops"].as_u64() >= Some(1), "{r}");
    // The overloaded servo dropped its torque; recovery turned it back on.
    assert!(emu.report().servos.iter().all(|s| s.torque));
    assert_goal_steps_within_limits(&emu, &cal, 100.0);
}

#[test]
fn teleop_makes_the_follower_track_the_leader_within_its_limits() {
    let dir = tmp("teleop");
    let (cal, cal_path) = calibration(&dir, 150);
    let leader = calibrated_arm(
        &cal,
        Hand::Sweep {
            amplitude: 300.0,
            period_s: 2.0,
        },
    );
    let follower = calibrated_arm(&cal, Hand::Still);
    let report = dir.join("teleop.json");
    let arms = arm_args(&leader, &follower, &cal_path);
    let o = sinew(
        &[
            &["teleop"][..],
            &arms.iter().map(String::as_str).collect::<Vec<_>>(),
            &[
                "--rate",
                "100",
                "--duration",
                "4",
                "--report",
                report.to_str().expect("path"),
            ],
        ]
        .concat(),
    )
    .output()
    .expect("teleop runs");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).expect("report")).expect("json");
    assert!(r["steps"].as_u64() > Some(200), "{r}");
    let rms = r["tracking_rms_rad"].as_f64().expect("rms");
    assert!(
        rms < 0.1,
        "the follower tracks the leader: RMS error {rms} rad; {r}"
    );
    // The leader stayed limp; the follower's torque was on.
    assert!(leader
        .report()
        .servos
        .iter()
        .all(|s| !s.torque && s.goal_writes == 0));
    assert_goal_steps_within_limits(&follower, &cal, 100.0);
}

#[test]
fn dataset_record_teleop_writes_lerobot_episodes_and_rerecords_on_request() {
    use std::io::Write;
    let dir = tmp("dataset");
    let (cal, cal_path) = calibration(&dir, -90);
    let leader = calibrated_arm(
        &cal,
        Hand::Sweep {
            amplitude: 200.0,
            period_s: 1.5,
        },
    );
    let follower = calibrated_arm(&cal, Hand::Still);
    let out = dir.join("demos");
    let arms = arm_args(&leader, &follower, &cal_path);
    let mut child = sinew(
        &[
            &["dataset", "record", "--teleop"][..],
            &arms.iter().map(String::as_str).collect::<Vec<_>>(),
            &[
                "--camera",
                "front=synthetic:64x48@30",
                "--single-task",
                "wave the gripper",
                "--episodes",
                "2",
                "--episode-time",
                "1.5",
                "--reset-time",
                "0.3",
                "--fps",
                "10",
                "--image-size",
                "32",
                "--out",
                out.to_str().expect("path"),
            ],
        ]
        .concat(),
    )
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .expect("dataset record starts");
    // Re-record the first episode at once.
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"r\n")
        .expect("key");
    let o = child.wait_with_output().expect("dataset record ends");
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        stdout.contains("2 episodes") && stdout.contains("1 re-recorded"),
        "{stdout}"
    );
    let info = sinew(&["dataset", "info", out.to_str().expect("path"), "--json"])
        .output()
        .expect("dataset info");
    assert!(
        info.status.success(),
        "{}",
        String::from_utf8_lossy(&info.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&info.stdout).expect("json");
    assert_eq!(v["episodes"].as_u64(), Some(2), "{v}");
    assert_eq!(v["fps"].as_u64(), Some(10));
    assert_eq!(v["tasks"], serde_json::json!(["wave the gripper"]));
    // 1.5 s at 10 fps per episode.
    let frames = v["frames"].as_u64().expect("frames");
    assert!((26..=32).contains(&frames), "{frames} frames; {v}");
    assert_goal_steps_within_limits(&follower, &cal, 100.0);
}
