//! openpi compatibility from the command line: `sinew policy serve DIR --openpi PORT` answers
//! `GET /healthz` and drives `sinew sim run --policy openpi:HOST:PORT` to the same episode
//! lengths as the local folder; killing the server mid-run makes the runtime hold, not crash.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

fn sinew(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_sinew"));
    c.args(args).current_dir(ROOT);
    c
}

/// Starts `policy serve sinew-tiny-so101-v1 --openpi 0` and returns it with its port.
fn serve() -> (Child, u16) {
    let mut server = sinew(&[
        "policy",
        "serve",
        "sinew-tiny-so101-v1",
        "--openpi",
        "0",
        "--duration",
        "300",
    ])
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .spawn()
    .expect("policy serve starts");
    let mut err = BufReader::new(server.stderr.take().expect("stderr"));
    let mut line = String::new();
    while !line.contains("ws://") {
        line.clear();
        assert!(err.read_line(&mut line).expect("read") > 0, "server exited");
    }
    let port = line
        .split("ws://")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|a| a.rsplit(':').next())
        .and_then(|p| p.parse().ok())
        .expect("a port");
    (server, port)
}

fn healthz(port: u16) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    out
}

/// `seed N PASS/FAIL S steps` of each episode line.
fn episodes(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .filter(|l| l.starts_with("seed"))
        .map(|l| l.split_whitespace().take(4).collect::<Vec<_>>().join(" "))
        .collect()
}

#[test]
fn sim_run_through_an_openpi_served_policy_matches_the_local_folder() {
    let (mut server, port) = serve();
    assert!(healthz(port).starts_with("HTTP/1.1 200 OK"));
    let policy = format!("openpi:127.0.0.1:{port}");
    let args = ["sim", "run", "--task", "reach", "--episodes", "2"];
    let remote = sinew(&args)
        .args(["--policy", &policy])
        .output()
        .expect("runs");
    let local = sinew(&args)
        .args(["--policy", "sinew-tiny-so101-v1"])
        .output()
        .expect("runs");
    let _ = server.kill();
    let _ = server.wait();
    let (r, l) = (
        String::from_utf8_lossy(&remote.stdout),
        String::from_utf8_lossy(&local.stdout),
    );
    assert!(
        remote.status.success(),
        "{r}{}",
        String::from_utf8_lossy(&remote.stderr)
    );
    assert_eq!(episodes(&r).len(), 2, "{r}");
    // float32 actions on the wire may move a step at the margin; the outcome is the same.
    let outcome = |v: Vec<String>| -> Vec<String> {
        v.iter()
            .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
            .collect()
    };
    assert_eq!(outcome(episodes(&r)), outcome(episodes(&l)), "{r}\n{l}");
}

#[test]
fn killing_the_openpi_server_mid_run_holds_the_robot_instead_of_crashing() {
    let (mut server, port) = serve();
    let policy = format!("openpi:127.0.0.1:{port}");
    let mut sim = sinew(&[
        "sim",
        "run",
        "--task",
        "v1/pick-place",
        "--episodes",
        "4",
        "--jobs",
        "2",
        "--policy",
        &policy,
    ])
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .expect("sim run starts");
    // Two workers, two clients at once; the server dies after the first episode's line.
    // Lines come in seed order; with this policy seed 0 runs to the 150-step limit while
    // seeds 1 and 2 succeed in about 70 steps each, so seed 3 starts before seed 0 ends and
    // still needs inferences once the server is gone. (On short episodes every episode could
    // finish before the kill, and nothing would fail.)
    let mut out = BufReader::new(sim.stdout.take().expect("stdout"));
    let mut lines = Vec::new();
    let mut line = String::new();
    while out.read_line(&mut line).expect("read") > 0 {
        let first = line.starts_with("seed");
        lines.push(std::mem::take(&mut line));
        if first {
            server.kill().expect("kill the server");
            let _ = server.wait();
            break;
        }
    }
    let mut rest = String::new();
    out.read_to_string(&mut rest).expect("read");
    let status = sim.wait().expect("sim run ends");
    let mut err = String::new();
    if let Some(mut e) = sim.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    let o = lines.concat() + &rest;
    assert!(status.success(), "{o}{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(episodes(&o).len(), 4, "{o}{err}");
    assert!(
        err.contains("failed"),
        "inference failures were reported: {err}"
    );
}
