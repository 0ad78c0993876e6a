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
}
