//! The control loop's own work per tick: the robot read, the runtime's decision, the
//! observation built, the chunk taken, the command sent (the model excluded: the policy
//! returns a chunk it already has). An in-memory SO-101 with two 224x224 cameras at 30 Hz
//! and a sinew-tiny-shaped policy (2 cameras, chunks of 10 at 10 Hz, 9 executed), with and
//! without the recorder tap (MCAP + rerun threads). Before criterion's estimates it prints the
//! p50/p99/max of 200,000 single ticks (20,000 recorded). `cargo bench -p sinew-app --bench session_tick`.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use criterion::Criterion;
use sinew_app::recording::{Outputs, RerunSpec};
use sinew_core::robot_io::{CameraFrame, RobotIo, RobotIoError, Stamped, Timing};
use sinew_core::{ActionChunk, ActionKind, Observation, Policy, PolicyError, PolicySpec};
use sinew_msgs::{Header, Image, JointState, JointTrajectory, Time};
use sinew_robot::RobotDescription;
use sinew_runtime::{Inference, RuntimeConfig, Session, SessionConfig, Tap};

struct MemoryRobot {
    t_s: f64,
    joint_state: Stamped<JointState>,
    frames: Vec<(String, Stamped<CameraFrame>)>,
}

impl MemoryRobot {
    fn new(robot: &RobotDescription) -> Self {
        let names = robot.joint_names();
        let pixels = sinew_msgs::Bytes::from(vec![120u8; 224 * 224 * 3]);
        let frame = |c: &str| {
            let color = Image::rgb8(Header::new(Time::default(), c), 224, 224, pixels.clone());
            Stamped {
                stamp_s: 0.0,
                value: CameraFrame { color, depth: None },
            }
        };
        Self {
            t_s: 0.0,
            joint_state: Stamped {
                stamp_s: 0.0,
                value: JointState {
                    header: Header::new(Time::default(), "base_link"),
                    name: names,
                    position: robot.home(),
                    velocity: vec![0.0; robot.home().len()],
                    effort: vec![],
                },
            },
            frames: vec![
                ("front".into(), frame("front")),
                ("wrist".into(), frame("wrist")),
            ],
        }
    }
}

impl RobotIo for MemoryRobot {
    fn timing(&self) -> Timing {
        Timing::Driven { now_s: self.t_s }
    }
    fn refresh(&mut self) -> Result<(), RobotIoError> {
        self.joint_state.stamp_s = self.t_s;
        let frame_t = (self.t_s * 30.0).floor() / 30.0;
        for (_, f) in &mut self.frames {
            f.stamp_s = frame_t;
        }
        Ok(())
    }
    fn joint_state(&self) -> Option<&Stamped<JointState>> {
        Some(&self.joint_state)
    }
    fn frame_stamp(&self, camera: &str) -> Option<f64> {
        self.frames
            .iter()
            .find(|(c, _)| c == camera)
            .map(|(_, f)| f.stamp_s)
    }
    fn frame(&mut self, camera: &str) -> Result<Option<Stamped<CameraFrame>>, RobotIoError> {
        Ok(self
            .frames
            .iter()
            .find(|(c, _)| c == camera)
            .map(|(_, f)| f.clone()))
    }
    fn instruction(&self) -> Option<&str> {
        Some("put the red cube in the bowl")
    }
    fn send(&mut self, command: &JointTrajectory) -> Result<(), RobotIoError> {
        self.joint_state
            .value
            .position
            .clone_from(&command.points[0].positions);
        Ok(())
    }
    fn advance(&mut self, dt_s: f64) -> Result<bool, RobotIoError> {
        self.t_s += dt_s;
        Ok(true)
    }
}

/// A chunk it already has: the model's cost is not the loop's.
struct CannedPolicy {
    spec: PolicySpec,
    chunk: ActionChunk,
}

impl Policy for CannedPolicy {
    fn spec(&self) -> &PolicySpec {
        &self.spec
    }
    fn infer(&mut self, obs: &Observation) -> Result<ActionChunk, PolicyError> {
        let mut c = self.chunk.clone();
        c.observation_stamp_s = obs.stamp_s;
        Ok(c)
    }
}

fn session(robot: &RobotDescription, io: &mut MemoryRobot) -> Session {
    let home = robot.home();
    let chunk = ActionChunk {
        kind: Some(ActionKind::JointPosition),
        actions: (0..10)
            .map(|i| home.iter().map(|v| v + 0.002 * i as f64).collect())
            .collect(),
        ..Default::default()
    };
    let spec = PolicySpec {
        architecture: "canned".into(),
        cameras: vec!["front".into(), "wrist".into()],
        image_size: (96, 96),
        uses_state: false,
        state_dim: 0,
        action_kind: ActionKind::JointPosition,
        action_dim: 6,
        chunk_length: 10,
        control_rate_hz: 10.0,
        action_tokenizer: "bins".into(),
        n_action_steps: Some(9),
    };
    let runtime = RuntimeConfig::new(
        robot,
        10.0,
        spec.cameras.clone(),
        ActionKind::JointPosition,
        sinew_runtime::Execution::Sync { steps: 9 },
    );
    let mut cfg = SessionConfig::new(runtime);
    cfg.tap_cameras = spec.cameras.clone();
    let policy = Box::new(CannedPolicy { spec, chunk });
    Session::new(robot, cfg, Inference::inline(policy), io).expect("session")
}

fn percentiles(name: &str, n: usize, robot: &RobotDescription, taps: &mut [&mut dyn Tap]) {
    let mut io = MemoryRobot::new(robot);
    let mut s = session(robot, &mut io);
    let mut us = Vec::with_capacity(n);
    for i in 0..n + 1000 {
        let t0 = Instant::now();
        s.tick(&mut io, taps).expect("tick");
        let dt = t0.elapsed().as_secs_f64() * 1e6;
        if i >= 1000 {
            us.push(dt);
        }
        io.advance(0.01).expect("advance");
    }
    us.sort_by(f64::total_cmp);
    let q = |p: f64| us[((us.len() - 1) as f64 * p).round() as usize];
    println!(
        "{name}: {n} ticks, work per tick p50 {:.2} us, p99 {:.2} us, max {:.1} us",
        q(0.5),
        q(0.99),
        q(1.0)
    );
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let robot = RobotDescription::load(&root.join("robots/so101")).expect("robot");
    let names: Vec<String> = robot.joint_names();
    percentiles("session tick", 200_000, &robot, &mut []);
    let dir = std::env::temp_dir().join(format!("sinew-bench-tick-{}", std::process::id()));
    {
        let mut out = Outputs::start(
            &robot,
            Some(&dir),
            &RerunSpec::default(),
            sinew_record::Encodings::default(),
        )
        .expect("outputs")
        .expect("some");
        out.open("bench", "bench", BTreeMap::new()).expect("open");
        {
            let mut tap = out.tap(&names, 10.0, true);
            percentiles(
                "session tick, recorded (MCAP + rerun, never blocking)",
                20_000,
                &robot,
                &mut [&mut tap],
            );
        }
        let r = out.finish();
        println!(
            "  recorder dropped {} item(s), rerun dropped {} (the loop never waits for them)",
            r.recorder_dropped, r.viz_dropped
        );
    }
    let _ = std::fs::remove_dir_all(&dir);

    let mut c = Criterion::default().configure_from_args();
    let mut io = MemoryRobot::new(&robot);
    let mut s = session(&robot, &mut io);
    c.bench_function("session_tick", |b| {
        b.iter(|| {
            s.tick(&mut io, &mut []).expect("tick");
            io.advance(0.01).expect("advance")
        })
    });
    c.final_summary();
}
