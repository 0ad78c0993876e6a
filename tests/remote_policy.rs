//! Remote inference over zenoh: `sinew policy serve` and `--policy zenoh:PREFIX`.
//! A served policy drives exactly the episodes the local folder drives; bad requests get error
//! replies naming their defect; a server that goes away makes requests fail (the robot holds)
//! and one that comes back is used again; batched forward passes give the chunks single ones
//! give.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sinew_app::remote::{serve_policy, PolicyServeSpec};
use sinew_app::resolve::DeviceSpec;
use sinew_bus::remote_policy::{infer_key, RemotePolicy};
use sinew_bus::{Bus, BusConfig};
use sinew_core::{Observation, Policy};
use sinew_msgs::{Image, JointState, Message, PolicyReply, PolicyRequest};

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

fn sinew(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_sinew"));
    c.args(args).current_dir(ROOT);
    c
}

/// `seed N success S steps` of each episode line.
fn episodes(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .filter(|l| l.starts_with("seed"))
        .map(|l| l.split_whitespace().take(5).collect::<Vec<_>>().join(" "))
        .collect()
}

#[test]
fn a_served_policy_drives_the_same_episodes_as_the_local_folder() {
    let hub = sinew_bus::free_loopback_port().expect("port").to_string();
    let mut server = sinew(&[
        "--hub-port",
        &hub,
        "policy",
        "serve",
        "sinew-tiny-so101-v1",
        "--prefix",
        "test/tiny",
        "--duration",
        "300",
    ])
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .spawn()
    .expect("policy serve starts");
    let mut err = BufReader::new(server.stderr.take().expect("stderr"));
    let mut line = String::new();
    while !line.contains("policy serve:") {
        line.clear();
        assert!(
            err.read_line(&mut line).expect("read") > 0,
            "policy serve exited"
        );
    }
    let run = |policy: &str| {
        let o = sinew(&[
            "--hub-port",
            &hub,
            "sim",
            "run",
            "--task",
            "pick-place",
            "--policy",
            policy,
            "--episodes",
            "2",
        ])
        .output()
        .expect("sim run");
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        assert!(
            o.status.success(),
            "{out}\n{}",
            String::from_utf8_lossy(&o.stderr)
        );
        out
    };
    let remote = run("zenoh:test/tiny");
    let local = run("policies/sinew-tiny-so101-v1");
    let _ = server.kill();
    let _ = server.wait();
    assert_eq!(episodes(&remote).len(), 2, "{remote}");
    assert_eq!(
        episodes(&remote),
        episodes(&local),
        "remote:\n{remote}\nlocal:\n{local}"
    );
}

fn observation(spec: &sinew_core::PolicySpec, shade: u8) -> Observation {
    sinew_app::remote::uniform_observation(spec, shade)
}

fn start_server(hub: u16, prefix: &str) -> (Arc<AtomicBool>, std::thread::JoinHandle<()>) {
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let spec = PolicyServeSpec {
        policy: "sinew-tiny-so101-v1".into(),
        device: DeviceSpec::default(),
        prefix: prefix.into(),
        max_batch: 8,
        batch_wait: Duration::from_millis(5),
        duration: None,
    };
    let t = std::thread::spawn(move || {
        let bus = Bus::open(&BusConfig {
            hub_port: hub,
            ..BusConfig::default()
        })
        .expect("bus");
        serve_policy(&spec, &bus, &mut |_| {}, &|| s.load(Ordering::Relaxed)).expect("serve");
        bus.close();
    });
    (stop, t)
}

#[test]
fn bad_requests_are_refused_and_a_server_that_returns_is_used_again() {
    let hub = sinew_bus::free_loopback_port().expect("port");
    let cfg = BusConfig {
        hub_port: hub,
        ..BusConfig::default()
    };
    let (stop, server) = start_server(hub, "test/refuse");
    let bus = Bus::open(&cfg).expect("bus");
    let mut policy = RemotePolicy::connect(
        Bus::open(&cfg).expect("bus"),
        "test/refuse",
        Duration::from_secs(60),
        Duration::from_secs(2),
    )
    .expect("connect");
    let spec = policy.spec().clone();
    let chunk = policy.infer(&observation(&spec, 128)).expect("a chunk");
    assert_eq!(chunk.actions.len(), spec.chunk_length);
    assert!(chunk.actions.iter().flatten().all(|v| v.is_finite()));

    let ask = |payload: Vec<u8>| {
        let bytes = bus
            .request(&infer_key("test/refuse"), payload, Duration::from_secs(5))
            .expect("a reply");
        PolicyReply::from_cdr(&bytes).expect("a PolicyReply")
    };
    let r = ask(vec![0, 1, 0, 0, 0xff, 0xff, 0xff, 0x7f]);
    assert!(
        r.error.contains("not a sinew_msgs/PolicyRequest"),
        "{}",
        r.error
    );
    assert!(r.actions.is_empty());
    let r = ask(PolicyRequest {
        instruction: "hello".into(),
        joint_state: JointState {
            position: vec![0.0; 6],
            ..Default::default()
        },
        ..Default::default()
    }
    .to_cdr());
    assert!(
        r.error
            .contains(&format!("no image for camera {:?}", spec.cameras[0])),
        "{}",
        r.error
    );
    let req = PolicyRequest {
        images: vec![Image {
            width: 5000,
            height: 1,
            encoding: "mono8".into(),
            step: 5000,
            data: vec![0u8; 5000].into(),
            header: sinew_msgs::Header::new(sinew_msgs::Time::default(), spec.cameras[0].clone()),
            ..Default::default()
        }],
        ..Default::default()
    };
    let r = ask(req.to_cdr());
    assert!(r.error.contains("5000x1"), "{}", r.error);

    // The server goes away: requests fail within their timeout (the runtime holds) ...
    stop.store(true, Ordering::Relaxed);
    server.join().expect("server");
    assert!(policy.infer(&observation(&spec, 128)).is_err());
    // ... and when it is back, the same client is served again.
    let (stop, server) = start_server(hub, "test/refuse");
    let mut served = false;
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while std::time::Instant::now() < deadline {
        if policy.infer(&observation(&spec, 128)).is_ok() {
            served = true;
            break;
        }
        // Polling until the new server has loaded its policy and declared its key.
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(served, "the client resumes with the returned server");
    stop.store(true, Ordering::Relaxed);
    server.join().expect("server");
}

#[test]
fn batched_forward_passes_give_the_chunks_single_ones_give() {
    let dir = std::path::Path::new(ROOT).join("policies/sinew-tiny-so101-v1");
    let opts = DeviceSpec::default().options().expect("cpu");
    let mut p = sinew_policy::folder::load_policy(&dir, &opts).expect("policy");
    let spec = p.spec().clone();
    let obs: Vec<Observation> = [20u8, 128, 240]
        .iter()
        .map(|s| observation(&spec, *s))
        .collect();
    let single: Vec<_> = obs.iter().map(|o| p.infer(o).expect("chunk")).collect();
    let refs: Vec<&Observation> = obs.iter().collect();
    let batched = p.infer_batch(&refs);
    assert_eq!(batched.len(), 3);
    for (s, b) in single.iter().zip(batched) {
        let b = b.expect("chunk");
        assert_eq!(s.tokens, b.tokens);
        // f32 sums in another order: equal to a few ulps.
        for (x, y) in s.actions.iter().flatten().zip(b.actions.iter().flatten()) {
            assert!((x - y).abs() < 1e-5, "{x} vs {y}");
        }
    }
    assert_ne!(
        single[0].tokens, single[2].tokens,
        "the observations differ"
    );
}
