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
