//! Sinew both ends of openpi's protocol: `OpenpiPolicy` drives the simulator through a Rust
//! `OpenpiServer` serving sinew-tiny; when the server goes away the calls fail (the runtime
//! holds the robot) without a panic, and they succeed again once it is back.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sinew_app::episode::{run_policy_episode, EpisodeOptions};
use sinew_app::openpi::{load_openpi_policy, OpenpiServer};
use sinew_app::resolve::{load_policy_folder, load_robot, load_task, DeviceSpec};
use sinew_core::{ActionChunk, Image, Observation, Policy, PolicyError, PolicySpec};

/// Sets `stop` once it has answered `after` requests.
struct StopAfter {
    inner: Box<dyn Policy>,
    count: Arc<AtomicUsize>,
    after: usize,
    stop: Arc<AtomicBool>,
}

impl Policy for StopAfter {
    fn spec(&self) -> &PolicySpec {
        self.inner.spec()
    }
    fn infer(&mut self, o: &Observation) -> Result<ActionChunk, PolicyError> {
        let r = self.inner.infer(o);
        if self.count.fetch_add(1, Ordering::SeqCst) + 1 >= self.after {
            self.stop.store(true, Ordering::SeqCst);
        }
        r
    }
}

struct Served {
    addr: std::net::SocketAddr,
    stop: Arc<AtomicBool>,
    count: Arc<AtomicUsize>,
    thread: std::thread::JoinHandle<anyhow::Result<()>>,
}

fn serve(addr: &str, after: usize) -> Served {
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicUsize::new(0));
    let inner = load_policy_folder("sinew-tiny-so101-v1", &DeviceSpec::default()).expect("policy");
    let policy = StopAfter {
        inner,
        count: count.clone(),
        after,
        stop: stop.clone(),
    };
    let server = OpenpiServer::bind(Box::new(policy), addr).expect("bind");
    let addr = server.local_addr().expect("addr");
    let s = stop.clone();
    let thread = std::thread::Builder::new()
        .name("openpi-serve".into())
        .spawn(move || server.serve(&|| s.load(Ordering::SeqCst)))
        .expect("spawn");
    Served {
        addr,
        stop,
        count,
        thread,
    }
}

fn frame() -> Image {
    Image {
        width: 64,
        height: 48,
        encoding: "rgb8".into(),
        step: 64 * 3,
        data: (0..64 * 48 * 3)
            .map(|i| (i % 251) as u8)
            .collect::<Vec<u8>>()
            .into(),
        ..Default::default()
    }
}

#[test]
fn openpi_policy_fails_while_the_server_is_gone_and_resumes_when_it_returns() {
    let first = serve("127.0.0.1:0", usize::MAX);
    let addr = first.addr;
    let mut remote = load_openpi_policy(&format!("openpi:{addr}")).expect("connects");
    // The spec comes from the Sinew server's metadata.
    let local = load_policy_folder("sinew-tiny-so101-v1", &DeviceSpec::default()).expect("policy");
    let (r, l) = (remote.spec(), local.spec());
    assert_eq!(r.cameras, l.cameras);
    assert_eq!(
        (r.action_dim, r.chunk_length),
        (l.action_dim, l.chunk_length)
    );
    assert_eq!(r.n_action_steps, l.n_action_steps);
    assert_eq!(r.control_rate_hz, l.control_rate_hz);

    let obs = Observation {
        images: [("front".into(), frame()), ("wrist".into(), frame())].into(),
        joint_positions: vec![0.0; 6],
        instruction: "reach for the yellow cube".into(),
        ..Default::default()
    };
    let mut local = local;
    let want = local.infer(&obs).expect("in process");
    let got = remote.infer(&obs).expect("over openpi");
    assert_eq!((got.len(), got.dim()), (want.len(), want.dim()));
    for (a, b) in got
        .actions
        .iter()
        .flatten()
        .zip(want.actions.iter().flatten())
    {
        // float32 on the wire
        assert!((a - b).abs() < 1e-5 * b.abs().max(1.0), "{a} vs {b}");
    }

    first.stop.store(true, Ordering::SeqCst);
    first.thread.join().expect("join").expect("served");
    for _ in 0..3 {
        let e = remote.infer(&obs).expect_err("the server is gone");
        assert!(e.to_string().contains(&addr.to_string()), "{e}");
        std::thread::sleep(Duration::from_millis(300));
    }

    let second = serve(&addr.to_string(), usize::MAX);
    let mut resumed = None;
    for _ in 0..20 {
        match remote.infer(&obs) {
            Ok(c) => {
                resumed = Some(c);
                break;
            }
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
    let resumed = resumed.expect("resumes once the server is back");
    assert_eq!(resumed.actions, got.actions);
    second.stop.store(true, Ordering::SeqCst);
    second.thread.join().expect("join").expect("served");
}

#[test]
fn a_sim_episode_through_openpi_completes_and_holds_when_the_server_dies_mid_run() {
    let robot = load_robot("so101").expect("robot");
    let task = load_task("reach").expect("task");
    let episode = task.sample(&robot.config.name, 0).expect("episode");
    let opts = EpisodeOptions::default();

    // The whole episode through the server.
    let up = serve("127.0.0.1:0", usize::MAX);
    let policy = load_openpi_policy(&format!("openpi:{}", up.addr)).expect("connects");
    let (result, report, _) =
        run_policy_episode(&robot, &task, 0, &episode, policy, &opts, &mut []).expect("runs");
    assert!(result.steps > 0 && report.inferences > 0);
    assert_eq!(report.stats.inference_errors, 0);
    let served = up.count.load(Ordering::SeqCst);
    assert_eq!(served as u64, report.inferences);
    up.stop.store(true, Ordering::SeqCst);
    up.thread.join().expect("join").expect("served");

    // The server stops after its first chunk (sinew-tiny reaches in two): the episode still
    // runs to its step limit, holding the robot.
    let dies = serve("127.0.0.1:0", 1);
    let policy = load_openpi_policy(&format!("openpi:{}", dies.addr)).expect("connects");
    let (cut, cut_report, _) =
        run_policy_episode(&robot, &task, 0, &episode, policy, &opts, &mut []).expect("runs");
    dies.thread.join().expect("join").expect("served");
    assert_eq!(dies.count.load(Ordering::SeqCst), 1);
    assert!(!cut.success);
    assert_eq!(cut.steps, task.step_limit as u64);
    assert!(
        cut_report.stats.inference_errors > 0,
        "{:?}",
        cut_report.stats
    );
    assert!(!cut.holds.is_empty(), "the robot held: {:?}", cut.holds);
}

#[test]
fn two_openpi_clients_connected_at_once_are_both_served() {
    let up = serve("127.0.0.1:0", usize::MAX);
    let name = format!("openpi:{}", up.addr);
    let mut a = load_openpi_policy(&name).expect("first client");
    let mut b = load_openpi_policy(&name).expect("second client, while the first is connected");
    let obs = Observation {
        images: [("front".into(), frame()), ("wrist".into(), frame())].into(),
        joint_positions: vec![0.0; 6],
        instruction: "reach for the yellow cube".into(),
        ..Default::default()
    };
    for _ in 0..3 {
        let (x, y) = (a.infer(&obs).expect("a"), b.infer(&obs).expect("b"));
        assert_eq!(x.actions, y.actions);
    }
    assert_eq!(up.count.load(Ordering::SeqCst), 6);
    up.stop.store(true, Ordering::SeqCst);
    up.thread.join().expect("join").expect("served");
}
