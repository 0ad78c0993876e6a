//! The one control loop (`Session`) gives the results of the loops it replaced.
//!
//! - `sinew sim run --json` on fixed seeds gives the successes and step counts that the
//!   binary before the change gave (`tests/fixtures/sim_run_before.json`, written by
//!   `tests/fixtures/sim_run_before.sh` with the binary of commit eef2c85).
//! - In-process, the `Session` sends bit for bit the commands the former lockstep loop
//!   (`sim_run.rs::run_episode` of eef2c85, kept below as the reference) sent, for the scripted
//!   expert and the shipped policy: this part does not depend on the machine's floating point.

use std::collections::BTreeMap;
use std::process::Command;

use sinew_app::episode::{run_policy_episode, EpisodeOptions};
use sinew_app::execution::ExecutionSpec;
use sinew_app::resolve::{load_policy_folder, load_robot, load_task, DeviceSpec};
use sinew_core::{ActionChunk, ActionKind, Observation, Policy};
use sinew_robot::RobotDescription;
use sinew_runtime::worker::{infer_inline, Outcome};
use sinew_runtime::{Record, Runtime, RuntimeConfig, Sensors, Tap};
use sinew_sim::expert::{success, Expert};
use sinew_sim::{ExpertPolicy, SimWorld, TaskSpec};

fn root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

const POLICY: &str = "sinew-tiny-so101-v1";

/// The former lockstep loop (eef2c85, `crates/sinew-cli/src/sim_run.rs::run_episode`, without
/// its recording): returns success, policy steps and every command sent.
fn old_loop(
    robot: &RobotDescription,
    task: &TaskSpec,
    seed: u64,
    model: Option<&mut Box<dyn Policy>>,
    exec: &ExecutionSpec,
) -> (bool, u64, Vec<Vec<f64>>) {
    let ep = task.sample(&robot.config.name, seed).expect("episode");
    let mut world = SimWorld::new(robot.clone(), Some(&ep), None).expect("world");
    let (q0, _) = world.joint_state();
    let mut expert = Expert::new(task.success);
    let mut model = model;
    let (rate, cameras, kind, chunk_len, n_action_steps) = match model.as_deref_mut() {
        None => (
            task.control_rate_hz,
            Vec::new(),
            ActionKind::JointPosition,
            1,
            None,
        ),
        Some(p) => {
            p.reset();
            let s = p.spec();
            let c = s.cameras.clone();
            (
                s.control_rate_hz,
                c,
                s.action_kind,
                s.chunk_length,
                s.n_action_steps,
            )
        }
    };
    let mut cfg = RuntimeConfig::new(
        robot,
        rate,
        cameras.clone(),
        kind,
        exec.execution(chunk_len, n_action_steps),
    );
    cfg.interpolation = exec.interpolation();
    let mut rt = Runtime::new(cfg, robot, &q0).expect("runtime");
    let dt = 1.0 / robot.config.command_rate_hz;
    let (mut succeeded, mut steps, mut tick) = (false, 0u64, 0u64);
    let mut commands = Vec::new();
    loop {
        let now = ((world.time_s * 1e9).round() as u64) as f64 / 1e9;
        let step = rt.step_at(now);
        if step != steps || now == 0.0 {
            steps = step;
            if success(&world, task.success, task.touch_distance_m).expect("check") {
                succeeded = true;
                break;
            }
            if step >= task.step_limit as u64 {
                break;
            }
        }
        let sensors = Sensors {
            joint_state_stamp: Some(now),
            camera_stamps: cameras.iter().map(|c| (c.clone(), Some(now))).collect(),
        };
        if let Some(req) = rt.poll(now, &sensors) {
            rt.inference_started(req.step, now);
            let (q, _) = world.joint_state();
            let outcome = match model.as_deref_mut() {
                None => Outcome::Chunk {
                    step: req.step,
                    chunk: ActionChunk {
                        kind: Some(ActionKind::JointPosition),
                        actions: vec![expert.act(&world, 1.0 / rate).expect("expert")],
                        observation_stamp_s: now,
                        ..Default::default()
                    },
                    wall_ms: 0.0,
                    q_observed: q,
                },
                Some(p) => {
                    let mut images = BTreeMap::new();
                    for cam in &cameras {
                        let f = world.render_camera(cam).expect("render");
                        let header = sinew_msgs::Header::new(
                            sinew_msgs::Time::from_nanos((now * 1e9) as i64),
                            format!("{cam}_optical"),
                        );
                        images.insert(
                            cam.clone(),
                            sinew_msgs::Image::rgb8(header, f.width, f.height, f.rgb),
                        );
                    }
                    let obs = Observation {
                        images,
                        joint_positions: q,
                        instruction: ep.instruction.clone(),
                        stamp_s: now,
                        ..Default::default()
                    };
                    infer_inline(p.as_mut(), req.step, &obs)
                }
            };
            match outcome {
                Outcome::Chunk {
                    step,
                    chunk,
                    q_observed,
                    ..
                } => rt.chunk_ready(now, step, &chunk, &q_observed),
                Outcome::Error { error, .. } => rt.inference_failed(error, false),
                Outcome::Dead { error } => rt.inference_failed(error, true),
            }
        }
        let (cmd, _) = rt.command(now);
        commands.push(cmd.clone());
        world.command(&cmd).expect("command");
        tick += 1;
        world.advance_to(tick as f64 * dt);
    }
    (succeeded, steps, commands)
}

/// Every command the session sends.
#[derive(Default)]
struct Commands(Vec<Vec<f64>>);

impl Tap for Commands {
    fn record(&mut self, _: u64, r: Record<'_>) {
        if let Record::Command(c) = r {
            self.0.push(c.points[0].positions.clone());
        }
    }
}

#[test]
fn the_session_commands_what_the_former_lockstep_loop_commanded() {
    let robot = load_robot("so101").expect("robot");
    let mut model = load_policy_folder(POLICY, &DeviceSpec::default()).expect("policy");
    let execs = [
        ExecutionSpec::default(),
        ExecutionSpec {
            execution: "async".parse().expect("mode"),
            merge: "ensemble".parse().expect("merge"),
            ..ExecutionSpec::default()
        },
    ];
    // The v1 tasks: the ones the old loops ran (their sampling and success are frozen).
    for (task_name, seeds) in [
        ("v1/reach", 0..2u64),
        ("v1/push", 0..1),
        ("v1/pick-place", 0..2),
    ] {
        let task = load_task(task_name).expect("task");
        for seed in seeds {
            for (use_model, exec) in [(false, &execs[0]), (true, &execs[0]), (true, &execs[1])] {
                let (ok, steps, old) =
                    old_loop(&robot, &task, seed, use_model.then_some(&mut model), exec);
                let ep = task.sample("so101", seed).expect("episode");
                let policy: Box<dyn Policy> = if use_model {
                    std::mem::replace(
                        &mut model,
                        Box::new(ExpertPolicy::new(&robot, &task, ep.clone())),
                    )
                } else {
                    Box::new(ExpertPolicy::new(&robot, &task, ep.clone()))
                };
                let opts = EpisodeOptions {
                    exec: exec.clone(),
                    record_cameras: false,
                };
                let mut tap = Commands::default();
                let (r, _, back) =
                    run_policy_episode(&robot, &task, seed, &ep, policy, &opts, &mut [&mut tap])
                        .expect("episode");
                if use_model {
                    model = back;
                }
                let what = format!("{task_name} seed {seed} model {use_model} {exec:?}");
                assert_eq!((r.success, r.steps), (ok, steps), "{what}");
                assert_eq!(tap.0.len(), old.len(), "{what}: commands sent");
                assert!(tap.0 == old, "{what}: the commands differ");
            }
        }
    }
}

/// Whether this CPU computes float kernels as the one that wrote the fixture did (candle's
/// matrix kernels are chosen by CPU features; FMA and AVX-512 change the last bits).
fn same_kernels_as_fixture(fixture_flags: &str) -> bool {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let flags = cpuinfo
        .lines()
        .find(|l| l.starts_with("flags"))
        .unwrap_or_default();
    let has = |f: &str| flags.split_whitespace().any(|x| x == f);
    let mine: Vec<&str> = ["avx2", "fma", "avx512f"]
        .into_iter()
        .filter(|f| has(f))
        .collect();
    mine.join(" ") == fixture_flags
}

#[test]
fn sim_run_gives_the_successes_and_steps_of_the_binary_before() {
    let fixture: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("tests/fixtures/sim_run_before.json"))
            .expect("fixture"),
    )
    .expect("json");
    let cpu = fixture["cpu_flags"].as_str().expect("flags");
    let dir = std::env::temp_dir().join(format!("sinew-before-after-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp");
    let mut compared = 0;
    for run in fixture["runs"].as_array().expect("runs") {
        let policy = run["policy"].as_str().expect("policy");
        if policy != "expert" && !same_kernels_as_fixture(cpu) {
            eprintln!("skipping {policy}: this CPU's float kernels differ from the fixture's ({cpu}); the in-process comparison covers it");
            continue;
        }
        let task = run["task"].as_str().expect("task");
        let seed = run["seed"].as_u64().expect("seed").to_string();
        let episodes = run["episodes"].as_u64().expect("n").to_string();
        let json = dir.join(format!("{task}-{}.json", policy.replace('/', "_")));
        let out = Command::new(env!("CARGO_BIN_EXE_sinew"))
            .args([
                "sim",
                "run",
                "--task",
                &format!("v1/{task}"),
                "--policy",
                policy,
                "--seed",
                &seed,
            ])
            .args(["--episodes", &episodes, "--quiet", "--json"])
            .arg(&json)
            .current_dir(root())
            .output()
            .expect("sinew runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let now: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&json).expect("json")).expect("parse");
        let pick = |v: &serde_json::Value| -> Vec<(u64, bool, u64)> {
            v.as_array()
                .expect("episodes")
                .iter()
                .map(|e| {
                    (
                        e["seed"].as_u64().expect("seed"),
                        e["success"].as_bool().expect("success"),
                        e["steps"].as_u64().expect("steps"),
                    )
                })
                .collect()
        };
        assert_eq!(pick(&now), pick(&run["results"]), "{task} with {policy}");
        compared += 1;
    }
    assert!(compared >= 3, "the expert runs are always compared");
    let _ = std::fs::remove_dir_all(&dir);
}
