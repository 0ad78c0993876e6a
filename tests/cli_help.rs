//! Every subcommand of `sinew` documents itself with `--help`, and bad flags are named.

use std::process::Command;

fn run(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sinew"))
        .args(args)
        .output()
        .expect("sinew runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn every_subcommand_has_help() {
    for cmd in [
        vec![],
        vec!["topics"],
        vec!["topics", "list"],
        vec!["topics", "echo"],
        vec!["topics", "hz"],
        vec!["topics", "pub"],
        vec!["bench"],
        vec!["bench", "bus"],
        vec!["robot"],
        vec!["robot", "check"],
        vec!["robot", "fk"],
        vec!["robot", "serve"],
        vec!["robot", "calibrate"],
        vec!["robot", "emulate"],
        vec!["teleop"],
        vec!["camera"],
        vec!["camera", "list"],
        vec!["camera", "serve"],
        vec!["bench", "servo-bus"],
        vec!["bench", "remote"],
        vec!["policy", "serve"],
        vec!["sim"],
        vec!["sim", "expert"],
        vec!["sim", "serve"],
        vec!["sim", "bench"],
        vec!["bench", "policy"],
        vec!["bench", "record"],
        vec!["bench", "train"],
        vec!["policy"],
        vec!["policy", "info"],
        vec!["policy", "run"],
        vec!["tokens"],
        vec!["tokens", "fit"],
        vec!["tokens", "encode"],
        vec!["tokens", "decode"],
    ] {
        let mut args = cmd.clone();
        args.push("--help");
        let (ok, out, _) = run(&args);
        assert!(ok, "{args:?}");
        assert!(out.contains("Usage: sinew"), "{args:?}: {out}");
        assert!(
            out.contains("--connect"),
            "bus options are global: {args:?}"
        );
    }
}

#[test]
fn bad_arguments_get_clear_errors() {
    let (ok, _, err) = run(&["--connect", "nonsense", "topics", "list", "--duration", "0"]);
    assert!(!ok);
    assert!(err.contains("--connect nonsense"), "{err}");
    let (ok, _, err) = run(&["--connect", "tcp/127.0.0.1:9", "topics", "echo", "some/key"]);
    assert!(!ok);
    assert!(err.contains("pass --type"), "{err}");
    let (ok, _, err) = run(&[
        "--connect",
        "tcp/127.0.0.1:9",
        "topics",
        "pub",
        "so101/joint_states",
        "--names",
        "a,b",
        "--positions",
        "1",
        "--wait-subscribers",
        "0",
    ]);
    assert!(!ok);
    assert!(err.contains("1 positions for 2 joint names"), "{err}");
    // Real arms: a missing calibration says how to make one; a bad fault names its defect.
    let (ok, _, err) = run(&[
        "robot",
        "serve",
        "--port",
        "/dev/sinew-no-such-port",
        "--calibration",
        "/nonexistent/so101.json",
    ]);
    assert!(!ok);
    assert!(
        err.contains("/nonexistent/so101.json") && err.contains("sinew robot calibrate"),
        "{err}"
    );
    let (ok, _, err) = run(&["robot", "emulate", "--fault", "melt:1:0:1"]);
    assert!(!ok);
    assert!(err.contains("unknown kind \"melt\""), "{err}");
    let (ok, _, err) = run(&[
        "teleop",
        "--leader-port",
        "/dev/sinew-no-such-port",
        "--leader-calibration",
        "/nonexistent/leader.json",
        "--follower-port",
        "/dev/sinew-no-such-port",
    ]);
    assert!(!ok);
    assert!(
        err.contains("leader arm") && err.contains("/nonexistent/leader.json"),
        "{err}"
    );
}

/// A reader that stops early (`sinew robot fk ... | head`) ends the output quietly: no panic
/// report, success.
#[test]
fn a_closed_output_pipe_is_not_a_panic() {
    use std::process::Stdio;
    let mut child = Command::new(env!("CARGO_BIN_EXE_sinew"))
        .args(["robot", "fk", &robot_dir("panda")])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sinew runs");
    // Close the reading end before the program writes (it parses the URDF first).
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("sinew ends");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert!(out.status.success(), "{:?}: {err}", out.status);
}

fn robot_dir(name: &str) -> String {
    format!("{}/../../robots/{name}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn robot_check_prints_the_tree_limits_and_cameras() {
    for name in ["so101", "panda"] {
        let (ok, out, err) = run(&["robot", "check", &robot_dir(name)]);
        assert!(ok, "{err}");
        assert!(
            out.contains("kinematic tree")
                && out.contains("cameras:")
                && out.trim_end().ends_with("ok"),
            "{out}"
        );
    }
    let (ok, _, err) = run(&["robot", "check", "/nonexistent/robot"]);
    assert!(!ok);
    assert!(err.contains("/nonexistent/robot"), "{err}");
}

#[test]
fn robot_fk_matches_frankas_published_zero_pose() {
    // Franka's documentation: at q = 0 the flange is at (0.088, 0, 0.926) m, so the hand's TCP
    // (0.1034 m further along the flange axis, which points down there) is at z = 0.8226 m.
    let (ok, out, err) = run(&[
        "robot",
        "fk",
        &robot_dir("panda"),
        "--joints",
        "0,0,0,0,0,0,0,0",
    ]);
    assert!(ok, "{err}");
    let doc: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    let tcp = &doc["links"]["panda_hand_tcp"]["xyz"];
    let want = [0.088, 0.0, 0.8226];
    for (i, w) in want.iter().enumerate() {
        let got = tcp[i].as_f64().expect("number");
        assert!((got - w).abs() < 1e-4, "axis {i}: {got} vs {w}");
    }
    let q = &doc["links"]["panda_hand_tcp"]["quat_xyzw"];
    assert_eq!(q.as_array().map(Vec::len), Some(4));
    let (ok, _, err) = run(&["robot", "fk", &robot_dir("panda"), "--joints", "0,0"]);
    assert!(!ok);
    assert!(err.contains("expects 8"), "{err}");
}
