//! The loop under faults: stale sensors, a policy that panics, stalls or emits garbage, the
//! e-stop. The robot is the SO-101 description; time is simulated by the test.

use std::path::Path;
use std::sync::{Arc, Mutex};

use crossbeam_channel::{bounded, Receiver};
use sinew_core::{ActionChunk, ActionKind, Observation, Policy, PolicyError, PolicySpec};
use sinew_robot::RobotDescription;
use sinew_runtime::worker::{InferenceWorker, Job, Outcome};
use sinew_runtime::{Execution, HoldReason, Merge, Runtime, RuntimeConfig, Sensors};

fn so101() -> RobotDescription {
    RobotDescription::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../robots/so101"))
        .expect("so101")
}

const READY: [f64; 6] = [0.0, 0.248, 0.058, 1.264, 0.0, 1.2];

fn runtime(robot: &RobotDescription, cameras: Vec<String>, execution: Execution) -> Runtime {
    let cfg = RuntimeConfig::new(robot, 10.0, cameras, ActionKind::JointPosition, execution);
    Runtime::new(cfg, robot, &READY).expect("runtime")
}

fn chunk(actions: Vec<Vec<f64>>) -> ActionChunk {
    ActionChunk {
        kind: Some(ActionKind::JointPosition),
        actions,
        ..Default::default()
    }
}

fn fresh(now: f64) -> Sensors {
    Sensors {
        joint_state_stamp: Some(now),
        camera_stamps: vec![("front".into(), Some(now))],
    }
}

fn within_limits(robot: &RobotDescription, q: &[f64]) -> bool {
    robot
        .config
        .joints
        .iter()
        .zip(q)
        .all(|(j, v)| v.is_finite() && *v >= j.position_min - 1e-9 && *v <= j.position_max + 1e-9)
}

/// Runs the loop at 100 Hz from `t0` for `n` ticks with sensors given by `sensors(now)`,
/// answering every request at once with `answer(step)`. Returns the commands.
fn drive(
    rt: &mut Runtime,
    t0: f64,
    n: usize,
    sensors: impl Fn(f64) -> Sensors,
    mut answer: impl FnMut(u64) -> Option<ActionChunk>,
) -> Vec<Vec<f64>> {
    let mut out = Vec::new();
    for k in 0..n {
        let now = t0 + k as f64 * 0.01;
        if let Some(req) = rt.poll(now, &sensors(now)) {
            rt.inference_started(req.step, now);
            if let Some(c) = answer(req.step) {
                rt.chunk_ready(now, req.step, &c, &READY);
            }
        }
        out.push(rt.command(now).0);
    }
    out
}

#[test]
fn stale_camera_then_stale_joint_state_hold_within_one_deadline_and_resume() {
    let robot = so101();
    let mut rt = runtime(&robot, vec!["front".into()], Execution::Sync { steps: 1 });
    let mut target = READY.to_vec();
    target[0] = 0.5;
    let good = |_| Some(chunk(vec![target.clone()]));
    drive(&mut rt, 0.0, 100, fresh, good);
    assert!(rt.hold_reason().is_none(), "{:?}", rt.hold_reason());
    // The camera stops at t = 1.0; its deadline is 0.5 s.
    let cam_dead = |now: f64| Sensors {
        joint_state_stamp: Some(now),
        camera_stamps: vec![("front".into(), Some(1.0))],
    };
    let deadline = robot.config.safety.camera_timeout_s;
    let mut held_at = None;
    for k in 0..100 {
        let now = 1.0 + k as f64 * 0.01;
        rt.poll(now, &cam_dead(now));
        rt.command(now);
        if held_at.is_none() && matches!(rt.hold_reason(), Some(HoldReason::CameraStale { .. })) {
            held_at = Some(now);
        }
    }
    let held_at = held_at.expect("holds when the camera stops");
    assert!(
        held_at - 1.0 <= deadline + 0.011,
        "held {:.3} s after the last frame",
        held_at - 1.0
    );
    // Joint states stop too (camera back): hold for that reason within its deadline.
    let js_dead = |now: f64| Sensors {
        joint_state_stamp: Some(2.0),
        camera_stamps: vec![("front".into(), Some(now))],
    };
    let mut js_held = None;
    for k in 0..50 {
        let now = 2.0 + k as f64 * 0.01;
        rt.poll(now, &js_dead(now));
        rt.command(now);
        if js_held.is_none() && matches!(rt.hold_reason(), Some(HoldReason::JointStateStale { .. }))
        {
            js_held = Some(now);
        }
    }
    assert!(js_held.expect("holds") - 2.0 <= robot.config.safety.joint_state_timeout_s + 0.011);
    // Data returns: a new chunk is requested and followed.
    target[0] = -0.3;
    drive(&mut rt, 3.0, 200, fresh, |_| {
        Some(chunk(vec![target.clone()]))
    });
    assert!(rt.hold_reason().is_none());
    assert!(
        (rt.last_command()[0] + 0.3).abs() < 1e-3,
        "follows again: {}",
        rt.last_command()[0]
    );
    let st = rt.stats();
    assert_eq!(st.holds.get("camera_stale"), Some(&1));
    assert_eq!(st.holds.get("joint_state_stale"), Some(&1));
}

#[test]
fn estop_latches_until_released() {
    let robot = so101();
    let mut rt = runtime(&robot, vec![], Execution::Sync { steps: 1 });
    let mut target = READY.to_vec();
    let mut answer = move |step: u64| {
        target[0] = (step as f64 * 0.05).sin();
        Some(chunk(vec![target.clone()]))
    };
    drive(&mut rt, 0.0, 100, fresh, &mut answer);
    rt.engage_estop();
    let cmds = drive(&mut rt, 1.0, 300, fresh, &mut answer);
    assert_eq!(rt.hold_reason(), Some(&HoldReason::EStop));
    // Stopped: the last 100 commands are identical.
    let tail = &cmds[200..];
    assert!(tail.windows(2).all(|w| w[0] == w[1]), "the robot stopped");
    // Fresh data and a willing policy do not release it; only the release does.
    drive(&mut rt, 4.0, 50, fresh, &mut answer);
    assert!(rt.estop_latched());
    rt.release_estop();
    drive(&mut rt, 4.5, 50, fresh, &mut answer);
    assert!(rt.hold_reason().is_none());
}

#[test]
fn adversarial_policies_never_push_a_command_out_of_the_limits() {
    let robot = so101();
    let mut seed = 12345u64;
    let mut rnd = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % 10_000) as f64 / 10_000.0
    };
    for (name, execution) in [
        ("sync", Execution::Sync { steps: 3 }),
        (
            "async ensemble",
            Execution::Async {
                threshold: 3,
                merge: Merge::TemporalEnsemble { m: 0.01 },
            },
        ),
    ] {
        let mut rt = runtime(&robot, vec![], execution);
        let cmds = drive(&mut rt, 0.0, 3000, fresh, |step| {
            let mode = step % 5;
            let acts = (0..6)
                .map(|_| {
                    (0..6)
                        .map(|_| match mode {
                            0 => f64::NAN,
                            1 => 1e9 * (rnd() - 0.5),
                            2 => 10.0 * (rnd() - 0.5),
                            3 => f64::INFINITY,
                            _ => 3.5 * (rnd() - 0.5),
                        })
                        .collect()
                })
                .collect();
            Some(chunk(acts))
        });
        let dt = 0.01;
        let mut prev = READY.to_vec();
        let mut v_prev = [0.0; 6];
        for (k, q) in cmds.iter().enumerate() {
            assert!(within_limits(&robot, q), "{name} step {k}: {q:?}");
            for (i, j) in robot.config.joints.iter().enumerate() {
                let v = (q[i] - prev[i]) / dt;
                assert!(
                    v.abs() <= j.velocity_max + 1e-6,
                    "{name} step {k} joint {i}: v {v}"
                );
                assert!(
                    (v - v_prev[i]).abs() <= j.acceleration_max * dt + 1e-6,
                    "{name} step {k} joint {i}: a {}",
                    (v - v_prev[i]) / dt
                );
                v_prev[i] = v;
            }
            prev = q.clone();
        }
        // NaN and infinite actions are refused by the decoder (counted), huge ones clamped.
        let st = rt.stats();
        assert!(
            st.undecodable_actions > 0 && st.safety.position > 0,
            "{st:?}"
        );
    }
}

/// A policy for the worker tests.
struct Scripted {
    spec: PolicySpec,
    behaviour: Arc<Mutex<&'static str>>,
    gate: Receiver<()>,
}

impl Policy for Scripted {
    fn spec(&self) -> &PolicySpec {
        &self.spec
    }
    fn infer(&mut self, obs: &Observation) -> Result<ActionChunk, PolicyError> {
        let b = *self.behaviour.lock().expect("lock");
        match b {
            "panic" => panic!("model exploded"),
            "stall" => {
                let _ = self.gate.recv();
                Ok(chunk(vec![obs.joint_positions.clone()]))
            }
            "error" => Err(PolicyError::Observation("no camera".into())),
            _ => Ok(chunk(vec![obs.joint_positions.clone()])),
        }
    }
}

fn scripted() -> (
    Box<dyn Policy>,
    Arc<Mutex<&'static str>>,
    crossbeam_channel::Sender<()>,
) {
    let (tx, rx) = bounded(1);
    let b = Arc::new(Mutex::new("ok"));
    let spec = PolicySpec {
        architecture: "scripted".into(),
        cameras: vec![],
        image_size: (1, 1),
        uses_state: true,
        state_dim: 6,
        action_kind: ActionKind::JointPosition,
        action_dim: 6,
        chunk_length: 1,
        control_rate_hz: 10.0,
        action_tokenizer: "none".into(),
        n_action_steps: None,
    };
    (
        Box::new(Scripted {
            spec,
            behaviour: b.clone(),
            gate: rx,
        }),
        b,
        tx,
    )
}

/// Runs the loop with the worker thread for `n` ticks of simulated time; waits for each
/// outcome only when `wait` says so (a stalled policy is not waited for).
fn drive_worker(rt: &mut Runtime, w: &mut InferenceWorker, t0: f64, n: usize, wait: bool) {
    for k in 0..n {
        let now = t0 + k as f64 * 0.01;
        if let Some(req) = rt.poll(now, &fresh(now)) {
            let obs = Observation {
                joint_positions: READY.to_vec(),
                ..Default::default()
            };
            if w.submit(Job {
                step: req.step,
                observation: obs,
                committed: Vec::new(),
            }) {
                rt.inference_started(req.step, now);
            }
        }
        let outcome = if wait && rt.inference_in_flight() {
            w.recv()
        } else {
            w.poll()
        };
        match outcome {
            Some(Outcome::Chunk {
                step,
                chunk,
                q_observed,
                ..
            }) => rt.chunk_ready(now, step, &chunk, &q_observed),
            Some(Outcome::Error { error, .. }) => rt.inference_failed(error, false),
            Some(Outcome::Dead { error }) => rt.inference_failed(error, true),
            None => {}
        }
        let q = rt.command(now).0;
        assert!(q.iter().all(|v| v.is_finite()));
    }
}

#[test]
fn a_panicking_policy_leaves_the_robot_holding_and_the_process_up() {
    let robot = so101();
    let mut rt = runtime(&robot, vec![], Execution::Sync { steps: 1 });
    let (policy, behaviour, _gate) = scripted();
    let mut w = InferenceWorker::spawn(policy).expect("thread");
    drive_worker(&mut rt, &mut w, 0.0, 50, true);
    assert!(rt.hold_reason().is_none());
    *behaviour.lock().expect("lock") = "error";
    drive_worker(&mut rt, &mut w, 0.5, 30, true);
    assert!(
        rt.stats().inference_errors > 0,
        "errors are counted, the policy stays in use"
    );
    *behaviour.lock().expect("lock") = "panic";
    drive_worker(&mut rt, &mut w, 0.8, 50, true);
    match rt.hold_reason() {
        Some(HoldReason::PolicyFailed { error }) => {
            assert!(error.contains("model exploded"), "{error}")
        }
        other => panic!("expected a policy failure hold, got {other:?}"),
    }
    assert!(w.is_dead());
    // The loop keeps commanding a hold.
    drive_worker(&mut rt, &mut w, 1.3, 50, false);
    assert!(matches!(
        rt.hold_reason(),
        Some(HoldReason::PolicyFailed { .. })
    ));
}

#[test]
fn a_stalled_policy_is_held_against_after_its_deadline_and_resumes() {
    let robot = so101();
    let mut rt = runtime(&robot, vec![], Execution::Sync { steps: 1 });
    let (policy, behaviour, gate) = scripted();
    let mut w = InferenceWorker::spawn(policy).expect("thread");
    drive_worker(&mut rt, &mut w, 0.0, 20, true);
    *behaviour.lock().expect("lock") = "stall";
    let deadline = robot.config.safety.inference_timeout_s;
    let ticks = ((deadline + 0.2) / 0.01) as usize;
    drive_worker(&mut rt, &mut w, 0.2, ticks, false);
    assert!(
        matches!(rt.hold_reason(), Some(HoldReason::InferenceStalled { .. })),
        "{:?}",
        rt.hold_reason()
    );
    *behaviour.lock().expect("lock") = "ok";
    gate.send(()).expect("release the stalled call");
    drive_worker(&mut rt, &mut w, 0.2 + deadline + 0.3, 100, true);
    assert!(rt.hold_reason().is_none(), "{:?}", rt.hold_reason());
    assert_eq!(rt.stats().holds.get("inference_stalled"), Some(&1));
}

/// A policy whose inferences keep failing (a policy server that is gone) holds the robot
/// after a few failures; requests go on, and the first chunk after it returns ends the hold.
#[test]
fn inferences_failing_in_a_row_hold_and_the_next_chunk_resumes() {
    let robot = so101();
    let mut rt = runtime(&robot, vec!["front".into()], Execution::Sync { steps: 1 });
    let mut target = READY.to_vec();
    target[0] = 0.3;
    let good = |_| Some(chunk(vec![target.clone()]));
    drive(&mut rt, 0.0, 50, fresh, good);
    assert!(rt.hold_reason().is_none(), "{:?}", rt.hold_reason());
    // The server goes away: every request fails.
    let mut asked = 0;
    for k in 0..50 {
        let now = 0.5 + k as f64 * 0.01;
        if let Some(req) = rt.poll(now, &fresh(now)) {
            rt.inference_started(req.step, now);
            rt.inference_failed("remote policy: no reply".into(), false);
            asked += 1;
        }
        rt.command(now);
    }
    assert!(asked > 3, "requests go on while failing ({asked})");
    assert!(
        matches!(rt.hold_reason(), Some(HoldReason::InferenceFailing { failures, .. }) if *failures >= 3),
        "{:?}",
        rt.hold_reason()
    );
    // It is back: the next chunk ends the hold.
    let mut back = READY.to_vec();
    back[0] = 0.2;
    let cmds = drive(&mut rt, 1.0, 50, fresh, |_| Some(chunk(vec![back.clone()])));
    assert!(rt.hold_reason().is_none(), "{:?}", rt.hold_reason());
    assert!(cmds.iter().all(|q| within_limits(&robot, q)));
    assert_eq!(rt.stats().holds.get("inference_failing"), Some(&1));
}

/// A driven robot that is wherever it was last commanded (no physics, no cameras).
struct EchoRobot {
    t_s: f64,
    state: sinew_core::robot_io::Stamped<sinew_msgs::JointState>,
}

impl EchoRobot {
    fn new(robot: &RobotDescription) -> Self {
        Self {
            t_s: 0.0,
            state: sinew_core::robot_io::Stamped {
                stamp_s: 0.0,
                value: sinew_msgs::JointState {
                    header: sinew_msgs::Header::new(sinew_msgs::Time::default(), "base_link"),
                    name: robot.joint_names(),
                    position: READY.to_vec(),
                    velocity: vec![0.0; 6],
                    effort: vec![],
                },
            },
        }
    }
}

impl sinew_core::RobotIo for EchoRobot {
    fn timing(&self) -> sinew_core::robot_io::Timing {
        sinew_core::robot_io::Timing::Driven { now_s: self.t_s }
    }
    fn refresh(&mut self) -> Result<(), sinew_core::robot_io::RobotIoError> {
        self.state.stamp_s = self.t_s;
        Ok(())
    }
    fn joint_state(&self) -> Option<&sinew_core::robot_io::Stamped<sinew_msgs::JointState>> {
        Some(&self.state)
    }
    fn frame_stamp(&self, _: &str) -> Option<f64> {
        None
    }
    fn frame(
        &mut self,
        _: &str,
    ) -> Result<
        Option<sinew_core::robot_io::Stamped<sinew_core::robot_io::CameraFrame>>,
        sinew_core::robot_io::RobotIoError,
    > {
        Ok(None)
    }
    fn instruction(&self) -> Option<&str> {
        None
    }
    fn send(
        &mut self,
        cmd: &sinew_msgs::JointTrajectory,
    ) -> Result<(), sinew_core::robot_io::RobotIoError> {
        self.state
            .value
            .position
            .clone_from(&cmd.points[0].positions);
        Ok(())
    }
    fn advance(&mut self, dt_s: f64) -> Result<bool, sinew_core::robot_io::RobotIoError> {
        // Whole nanoseconds, as the simulator's clock.
        self.t_s = ((self.t_s + dt_s) * 1e9).round() / 1e9;
        Ok(true)
    }
}

/// The spec of a 10 Hz policy of 10-step joint-position chunks (the test policies below).
fn joint_chunks_of_ten(architecture: &str) -> PolicySpec {
    PolicySpec {
        architecture: architecture.into(),
        cameras: vec![],
        image_size: (1, 1),
        uses_state: true,
        state_dim: 6,
        action_kind: ActionKind::JointPosition,
        action_dim: 6,
        chunk_length: 10,
        control_rate_hz: 10.0,
        action_tokenizer: "none".into(),
        n_action_steps: None,
    }
}

/// Chunks that say where they come from: entry `i` of the chunk for step `s` moves the
/// shoulder pan to `READY + 0.001 (100 s + i)`.
struct Marked(PolicySpec);

impl Policy for Marked {
    fn spec(&self) -> &PolicySpec {
        &self.0
    }
    fn infer(&mut self, obs: &Observation) -> Result<ActionChunk, PolicyError> {
        Ok(chunk(
            (0..10)
                .map(|i| {
                    let mut q = READY.to_vec();
                    q[0] += 0.001 * (100 * obs.step + i) as f64;
                    q
                })
                .collect(),
        ))
    }
}

/// Which chunk (its request step) and entry a timeline target is.
fn mark(q: &[f64]) -> (u64, u64) {
    let v = ((q[0] - READY[0]) / 0.001).round() as u64;
    (v / 100, v % 100)
}

/// Per tick of a lockstep session (4 s): the tick's time, the timeline's target (chunk and
/// entry) for the tick's step, and the command.
type Trace = Vec<(f64, Option<(u64, u64)>, Vec<f64>)>;

fn lockstep(
    execution: Execution,
    latency: Option<sinew_runtime::LatencyModel>,
    seed: u64,
) -> Trace {
    use sinew_runtime::{Inference, Session, SessionConfig};
    let robot = so101();
    let mut io = EchoRobot::new(&robot);
    let spec = joint_chunks_of_ten("marked");
    let rt = RuntimeConfig::new(&robot, 10.0, vec![], ActionKind::JointPosition, execution);
    let mut cfg = SessionConfig::new(rt);
    cfg.latency = latency.map(|m| m.sampler(seed));
    let policy = Box::new(Marked(spec));
    let mut s = Session::new(&robot, cfg, Inference::inline(policy), &mut io).expect("session");
    let mut out = Vec::new();
    for _ in 0..400 {
        s.tick(&mut io, &mut []).expect("tick");
        let step = s.runtime().step_at(io.t_s);
        let target = s.runtime().planned(step, step + 1).first().map(|q| mark(q));
        out.push((io.t_s, target, io.state.value.position.clone()));
        sinew_core::RobotIo::advance(&mut io, 0.01).expect("advance");
    }
    out
}

#[test]
fn simulated_latency_delays_every_chunk_and_zero_latency_changes_nothing() {
    use sinew_runtime::LatencyModel;
    let sync = Execution::Sync { steps: 5 };
    let ensemble = Execution::Async {
        threshold: 5,
        merge: Merge::TemporalEnsemble { m: 0.01 },
    };

    // 250 ms: the chunk asked for at step s (t = s / 10) is first used at t = s / 10 + 0.25,
    // from its entry for the step reached then (2: the entries of steps s and s + 1 are late);
    // until then the robot holds (at the start) or keeps the previous chunk's last target.
    let fixed = LatencyModel::fixed(250.0, 0.0).expect("model");
    let trace = lockstep(sync, Some(fixed), 1);
    let mut first_use = std::collections::BTreeMap::new();
    for (t, target, _) in &trace {
        if let Some((s, i)) = target {
            first_use.entry(*s).or_insert((*t, *i));
        }
    }
    for (s, (t, i)) in &first_use {
        assert!(
            (t - (*s as f64 * 0.1 + 0.25)).abs() < 1e-9,
            "chunk {s} at {t}"
        );
        assert_eq!(*i, 2, "chunk {s}");
    }
    assert_eq!(
        first_use.keys().copied().collect::<Vec<_>>(),
        (0..8).map(|k| 5 * k).collect::<Vec<_>>()
    );
    // Before the first chunk the robot is held exactly where it started.
    assert!(trace[..25]
        .iter()
        .all(|(_, g, q)| g.is_none() && q == &READY.to_vec()));
    assert_ne!(trace[26].2, READY.to_vec());

    // Jitter: never used before it is due; the same seed, the same run; another seed differs.
    let jitter = LatencyModel::parse("150±100", 0.0).expect("model");
    for exec in [sync, ensemble] {
        let a = lockstep(exec, Some(jitter.clone()), 7);
        for (t, target, _) in &a {
            if let Some((s, _)) = target {
                assert!(*t >= *s as f64 * 0.1 + 0.05 - 1e-9, "chunk {s} used at {t}");
            }
        }
        assert_eq!(a, lockstep(exec, Some(jitter.clone()), 7));
        assert_ne!(a, lockstep(exec, Some(jitter.clone()), 8));
        // Zero latency is no latency, command for command.
        let zero = LatencyModel::fixed(0.0, 0.0).expect("model");
        assert_eq!(lockstep(exec, Some(zero), 3), lockstep(exec, None, 3));
    }
}

/// Each request's step and the actions committed with it.
type Asked = Arc<Mutex<Vec<(u64, Vec<Vec<f64>>)>>>;

/// Marked chunks that begin with the committed actions they are given, and remember them.
struct Committing {
    spec: PolicySpec,
    asked: Asked,
}

impl Policy for Committing {
    fn spec(&self) -> &PolicySpec {
        &self.spec
    }
    fn prefix_capacity(&self) -> usize {
        4
    }
    fn infer(&mut self, obs: &Observation) -> Result<ActionChunk, PolicyError> {
        self.infer_with_prefix(obs, &[])
    }
    fn infer_with_prefix(
        &mut self,
        obs: &Observation,
        prefix: &[Vec<f64>],
    ) -> Result<ActionChunk, PolicyError> {
        self.asked
            .lock()
            .expect("log")
            .push((obs.step, prefix.to_vec()));
        let mut c = Marked(self.spec.clone()).infer(obs)?;
        for (slot, a) in c.actions.iter_mut().zip(prefix) {
            slot.clone_from(a);
        }
        Ok(c)
    }
}

#[test]
fn real_time_chunking_commits_what_the_robot_executes_during_the_delay() {
    use sinew_runtime::{Inference, LatencyModel, Session, SessionConfig};
    let robot = so101();
    let mut io = EchoRobot::new(&robot);
    let spec = joint_chunks_of_ten("committing");
    let execution = Execution::Async {
        threshold: 5,
        merge: Merge::LatestOnly,
    };
    let rt = RuntimeConfig::new(&robot, 10.0, vec![], ActionKind::JointPosition, execution);
    let mut cfg = SessionConfig::new(rt);
    // 250 ms at 10 Hz: the chunk asked at step s arrives during step s + 2, so steps s and
    // s + 1 run from the previous chunk: those two targets are committed.
    cfg.latency = Some(LatencyModel::fixed(250.0, 0.0).expect("model").sampler(0));
    cfg.rtc = Some(4);
    let asked: Asked = Arc::new(Mutex::new(Vec::new()));
    let policy = Box::new(Committing {
        spec,
        asked: asked.clone(),
    });
    let mut s = Session::new(&robot, cfg, Inference::inline(policy), &mut io).expect("session");
    // The timeline's target at each step, as the robot executed it.
    let mut executed: std::collections::BTreeMap<u64, Vec<f64>> = Default::default();
    for _ in 0..400 {
        s.tick(&mut io, &mut []).expect("tick");
        let step = s.runtime().step_at(io.t_s);
        if let Some(q) = s.runtime().planned(step, step + 1).first() {
            executed.entry(step).or_insert_with(|| q.clone());
        }
        sinew_core::RobotIo::advance(&mut io, 0.01).expect("advance");
    }
    let asked = asked.lock().expect("log").clone();
    assert!(asked.len() >= 6, "{} requests", asked.len());
    // The first request has nothing planned to commit.
    assert!(asked[0].1.is_empty());
    for (step, prefix) in &asked[1..] {
        assert_eq!(prefix.len(), 2, "request at step {step}");
        for (i, a) in prefix.iter().enumerate() {
            assert_eq!(
                Some(a),
                executed.get(&(step + i as u64)),
                "committed action {i} of the request at step {step} is not what the robot ran"
            );
        }
    }
}
