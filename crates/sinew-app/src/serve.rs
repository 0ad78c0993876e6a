//! Serving a robot on the bus: one function for any [`RobotIo`] (the simulator today, a
//! hardware driver next). It publishes the robot's joint states, camera frames and
//! instruction on the robot's keys and executes `trajectory_msgs/JointTrajectory` commands
//! received on `<ns>/joint_commands`, through the robot's own limits.
//!
//! The serving side never trusts the network: every command passes through a
//! [`SafetyFilter`] with the position, velocity and acceleration limits of robot.toml (and its
//! workspace box), so a step command from `sinew topics pub`, a replayed recording or a
//! foreign client moves the robot no faster than its `velocity_max`. Commands that name an
//! unknown joint, have the wrong length or hold NaN are rejected and counted. In real time,
//! when commands stop arriving for longer than the command timeout, the robot brakes to a
//! hold; a new command resumes. Interventions are counted in the serving telemetry
//! (`<ns>/sinew/serve/telemetry`, 1 Hz).

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::Serialize;
use sinew_bus::{Bus, Publisher, Subscriber};
use sinew_core::robot_io::{joints_in_order, targets_by_name, RobotIo, Timing};
use sinew_msgs::keys::RobotKeys;
use sinew_msgs::{
    Header, Image, JointState, JointTrajectory, JointTrajectoryPoint, StringMsg, Time,
};
use sinew_robot::RobotDescription;
use sinew_runtime::safety::{SafetyFilter, SafetyStats};

/// How a robot is served.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Lockstep (driven robots): one control step of this many seconds per command received.
    pub lockstep_dt_s: Option<f64>,
    /// Real time: the robot holds when no command came for this long, s.
    pub command_timeout_s: f64,
    /// Stop after this long on the robot's clock, s.
    pub duration_s: Option<f64>,
    /// On e-stop, turn the motors' torque off instead of holding position with torque on.
    pub estop_torque_off: bool,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            lockstep_dt_s: None,
            command_timeout_s: 0.25,
            duration_s: None,
            estop_torque_off: false,
        }
    }
}

/// What the serving side did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ServeReport {
    /// Commands executed.
    pub applied: u64,
    /// Commands refused (unknown joint, wrong length, NaN).
    pub rejected: u64,
    /// Payloads that were not a JointTrajectory.
    pub malformed: u64,
    /// Commands the subscriber's queue dropped.
    pub dropped: u64,
    /// Times the command stream stopped for longer than the timeout (real time).
    pub command_timeouts: u64,
    /// Robot faults (a servo not answering, an overload) held through.
    pub robot_faults: u64,
    /// Control ticks spent holding in a robot fault.
    pub fault_ticks: u64,
    /// E-stops engaged on the robot's e-stop key.
    pub estops: u64,
    /// Whether an e-stop is engaged now.
    pub estopped: bool,
    /// How often the robot's limits changed what was commanded.
    pub limited: SafetyStats,
    /// Messages this process's access control refused (`--acl`): commands or e-stop
    /// releases from peers not allowed to send them. They never reached the robot.
    pub acl_refused: u64,
    /// The robot's clock at the end, s.
    pub robot_s: f64,
    /// Wall time, s.
    pub wall_s: f64,
}

/// The keys a served robot publishes on.
struct Outlets {
    joint_states: Publisher<JointState>,
    cameras: Vec<(String, Publisher<Image>, Option<Publisher<Image>>)>,
    instruction: Publisher<StringMsg>,
    telemetry: Publisher<StringMsg>,
    last_state: Option<f64>,
    last_frames: Vec<Option<f64>>,
}

impl Outlets {
    fn open(bus: &Bus, keys: &RobotKeys, robot: &RobotDescription) -> Result<Self> {
        let cameras = robot
            .config
            .cameras
            .iter()
            .map(|c| -> Result<_> {
                let depth = match c.depth {
                    true => Some(bus.publisher(&keys.camera_depth(&c.name))?),
                    false => None,
                };
                Ok((
                    c.name.clone(),
                    bus.publisher(&keys.camera_image(&c.name))?,
                    depth,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            joint_states: bus.publisher(&keys.joint_states())?,
            last_frames: vec![None; cameras.len()],
            cameras,
            instruction: bus.publisher(&keys.instruction())?,
            telemetry: bus.publisher(&keys.serve_telemetry())?,
            last_state: None,
        })
    }

    /// Publishes what is new (`all`: everything, new or not).
    fn publish(&mut self, robot: &mut dyn RobotIo, all: bool) -> Result<()> {
        if let Some(js) = robot.joint_state() {
            if all || self.last_state != Some(js.stamp_s) {
                self.last_state = Some(js.stamp_s);
                self.joint_states.put(&js.value)?;
            }
        }
        for (i, (name, color, depth)) in self.cameras.iter().enumerate() {
            let stamp = robot.frame_stamp(name);
            if stamp.is_some() && (all || stamp != self.last_frames[i]) {
                if let Some(f) = robot.frame(name)? {
                    self.last_frames[i] = Some(f.stamp_s);
                    color.put(&f.value.color)?;
                    if let (Some(p), Some(d)) = (depth, &f.value.depth) {
                        p.put(d)?;
                    }
                }
            }
        }
        Ok(())
    }

    fn publish_instruction(&self, robot: &dyn RobotIo) -> Result<()> {
        if let Some(i) = robot.instruction() {
            self.instruction.put(&StringMsg { data: i.to_owned() })?;
        }
        Ok(())
    }
}

/// The serving side's command path: validation, the robot's limits, the hold on timeout.
struct CommandPath {
    joints: Vec<String>,
    base_link: String,
    filter: SafetyFilter,
    target: Option<Vec<f64>>,
    last_command_s: f64,
    timed_out: bool,
    faulted: bool,
    report: ServeReport,
}

impl CommandPath {
    /// The full joint target a command asks for; joints it does not name keep their target.
    fn target_of(&self, msg: &JointTrajectory) -> Result<Vec<f64>, String> {
        let current = self
            .target
            .clone()
            .unwrap_or_else(|| self.filter.last_command().to_vec());
        targets_by_name(msg, &self.joints, &current)
    }

    /// Takes one received command.
    fn take(&mut self, msg: &JointTrajectory, now_s: f64) {
        match self.target_of(msg) {
            Ok(q) => {
                self.report.applied += 1;
                self.target = Some(q);
                self.last_command_s = now_s;
                self.timed_out = false;
            }
            Err(e) => {
                self.report.rejected += 1;
                let n = self.report.rejected;
                if n <= 5 || n.is_multiple_of(100) {
                    tracing::warn!(count = n, "joint command rejected: {e}");
                }
            }
        }
    }

    /// Takes one message of the e-stop key: engage holds where the robot is (or turns its
    /// torque off), release waits for the next command.
    fn operator<R: RobotIo>(&mut self, data: &str, robot: &mut R, torque_off: bool) -> Result<()> {
        match data.trim() {
            "engage" | "stop" | "1" | "true" => {
                if !self.report.estopped {
                    self.report.estops += 1;
                    self.report.estopped = true;
                    if torque_off && robot.set_torque(false)? {
                        tracing::warn!("e-stop: torque off");
                    } else {
                        // Hold with torque on: brake to a stop where the commands were.
                        self.target = Some(self.filter.last_command().to_vec());
                        tracing::warn!("e-stop: holding position");
                    }
                }
            }
            "release" | "0" | "false" => {
                if self.report.estopped {
                    self.report.estopped = false;
                    if let Some(js) = robot.joint_state() {
                        let (q, _) = joints_in_order(&js.value, &self.joints)?;
                        if torque_off {
                            robot.set_torque(true)?;
                        }
                        self.filter.reset(&q)?;
                        self.target = Some(q);
                    }
                    tracing::info!("e-stop released: waiting for commands");
                }
            }
            other => tracing::warn!("e-stop key: unknown command {other:?} (engage or release)"),
        }
        Ok(())
    }

    /// The next command for the robot, within its limits.
    fn command(&mut self, stamp: Time) -> JointTrajectory {
        let (q, _) = self.filter.filter(self.target.as_deref());
        self.report.limited = self.filter.stats();
        JointTrajectory {
            header: Header::new(stamp, self.base_link.clone()),
            joint_names: self.joints.clone(),
            points: vec![JointTrajectoryPoint {
                positions: q,
                ..Default::default()
            }],
        }
    }
}

/// Serves `robot` on the bus until `stop` returns true or the duration passes. `on_tick` runs
/// after each step (the simulator publishes its expert's target and checks its task there).
pub fn serve<R: RobotIo>(
    robot: &mut R,
    desc: &RobotDescription,
    bus: &Bus,
    opts: &ServeOptions,
    mut on_tick: impl FnMut(&mut R) -> Result<()>,
    stop: &dyn Fn() -> bool,
) -> Result<ServeReport> {
    let keys = RobotKeys::new(&desc.config.namespace)?;
    let mut out = Outlets::open(bus, &keys, desc)?;
    let commands: Subscriber<JointTrajectory> = bus.subscribe(&keys.joint_commands(), 64)?;
    let estop: Subscriber<StringMsg> = bus.subscribe(&keys.estop(), 16)?;
    robot.refresh()?;
    let joints = desc.joint_names();
    let q_start = match robot.joint_state() {
        Some(js) => joints_in_order(&js.value, &joints)?.0,
        None => desc.home(),
    };
    let dt_s = opts
        .lockstep_dt_s
        .unwrap_or(1.0 / desc.config.command_rate_hz);
    let mut limits = SafetyFilter::for_robot(desc, &q_start).context("the serving-side limits")?;
    if opts.lockstep_dt_s.is_some() {
        let l = limits.limits().to_vec();
        limits = SafetyFilter::new(l, dt_s, &q_start)?;
    }
    let mut path = CommandPath {
        joints,
        base_link: desc.config.base_link.clone(),
        filter: limits,
        target: None,
        last_command_s: 0.0,
        timed_out: false,
        faulted: false,
        report: ServeReport::default(),
    };
    let start = Instant::now();
    let robot_now = |r: &R| match r.timing() {
        Timing::Driven { now_s } => now_s,
        Timing::RealTime { epoch, .. } => epoch.elapsed().as_secs_f64(),
    };
    let stamp_of = |r: &R| match r.timing() {
        Timing::Driven { now_s } => Time::from_nanos((now_s * 1e9).round() as i64),
        Timing::RealTime { .. } => Time::now(),
    };
    let end_s = opts.duration_s.unwrap_or(f64::INFINITY);
    out.publish_instruction(robot)?;
    out.publish(robot, true)?;
    let mut next_telemetry = 0.0;
    let mut last_publish = Instant::now();
    let period = Duration::from_secs_f64(1.0 / desc.config.command_rate_hz);
    let mut next_tick = Instant::now();
    while !stop() && robot_now(robot) < end_s {
        if let Some(dt) = opts.lockstep_dt_s {
            // One control step per command; the observation is republished while none comes,
            // so late subscribers get one.
            match commands.recv_timeout(Duration::from_millis(100)) {
                Some(m) => {
                    path.take(&m.msg, robot_now(robot));
                    let cmd = path.command(stamp_of(robot));
                    robot.send(&cmd)?;
                    robot.advance(dt)?;
                    robot.refresh()?;
                    on_tick(robot)?;
                    out.publish(robot, false)?;
                    last_publish = Instant::now();
                }
                None if last_publish.elapsed() > Duration::from_millis(500) => {
                    out.publish_instruction(robot)?;
                    out.publish(robot, true)?;
                    last_publish = Instant::now();
                }
                None => {}
            }
        } else {
            robot.refresh()?;
            let now = robot_now(robot);
            while let Some(m) = estop.try_recv() {
                path.operator(&m.msg.data, robot, opts.estop_torque_off)?;
            }
            while let Some(m) = commands.try_recv() {
                if !path.report.estopped {
                    path.take(&m.msg, now);
                }
            }
            if let Some(why) = robot.fault() {
                // The robot cannot move now: send nothing, keep the limits where they were.
                if !path.faulted {
                    path.faulted = true;
                    path.report.robot_faults += 1;
                    tracing::warn!("robot fault, holding: {why}");
                }
                path.report.fault_ticks += 1;
            } else if path.faulted {
                // Recovered: start again from where the robot is, holding until a command.
                path.faulted = false;
                if let Some(js) = robot.joint_state() {
                    let (q, _) = joints_in_order(&js.value, &path.joints)?;
                    path.filter.reset(&q)?;
                    path.target = Some(q);
                }
                tracing::info!("robot fault cleared: resuming");
            } else if path.report.estopped {
                // Held where the robot stopped (torque on), or limp (torque off).
                if !opts.estop_torque_off && path.target.is_some() {
                    let cmd = path.command(stamp_of(robot));
                    robot.send(&cmd)?;
                }
            } else if path.target.is_some() {
                if !path.timed_out && now - path.last_command_s > opts.command_timeout_s {
                    path.timed_out = true;
                    path.report.command_timeouts += 1;
                    tracing::warn!(
                        "no joint command for {:.0} ms: holding",
                        (now - path.last_command_s) * 1e3
                    );
                }
                if path.timed_out {
                    // Brake to a stop where the robot is.
                    path.target = Some(path.filter.last_command().to_vec());
                }
                let cmd = path.command(stamp_of(robot));
                robot.send(&cmd)?;
            }
            on_tick(robot)?;
            out.publish(robot, false)?;
            if now >= next_telemetry {
                next_telemetry = now + 1.0;
                note_acl_refusals(&mut path.report);
                out.publish_instruction(robot)?;
                path.report.robot_s = now;
                path.report.wall_s = start.elapsed().as_secs_f64();
                let json = serde_json::to_string(&path.report).unwrap_or_default();
                out.telemetry.put(&StringMsg { data: json })?;
            }
            next_tick += period;
            let now_i = Instant::now();
            if now_i > next_tick {
                // Behind: start again from now rather than run the missed ticks back to back
                // (each tick moves the target one step of the limits; bursts of them would
                // move the robot faster than its velocity limit).
                next_tick = now_i;
            } else {
                // Pacing to the robot's command rate, not synchronisation.
                std::thread::sleep(next_tick - now_i);
            }
        }
    }
    let cs = commands.stats();
    let mut report = path.report;
    note_acl_refusals(&mut report);
    report.malformed = cs.malformed;
    report.dropped = cs.dropped;
    report.robot_s = robot_now(robot);
    report.wall_s = start.elapsed().as_secs_f64();
    Ok(report)
}

/// Brings the report's count of access-control refusals up to date, and logs new ones.
fn note_acl_refusals(report: &mut ServeReport) {
    let acl = sinew_bus::security::acl_refusals();
    if acl.count > report.acl_refused {
        tracing::warn!(
            "access control refused {} message(s) (last: {})",
            acl.count - report.acl_refused,
            acl.last.as_deref().unwrap_or("?")
        );
        report.acl_refused = acl.count;
    }
}

/// A simulated task served like a real robot (`sinew sim serve`).
#[derive(Debug, Clone)]
pub struct SimServeSpec {
    /// The robot.
    pub robot: RobotDescription,
    /// The task.
    pub task: sinew_sim::TaskSpec,
    /// The episode's seed.
    pub seed: u64,
    /// One control step per command instead of real time.
    pub lockstep: bool,
    /// Camera frame rate in real time, Hz.
    pub camera_hz: f64,
    /// Stop after this many simulated seconds.
    pub duration_s: Option<f64>,
    /// Hold when commands stop for this long (real time), s.
    pub command_timeout_s: f64,
}

/// Serves the simulated task; `log` gets the lines worth printing (the start, the task's
/// success). The scripted expert's next target is published on `<ns>/sim/expert_action` each
/// control step (the oracle `sinew run --policy expert` follows).
pub fn sim_serve(
    spec: &SimServeSpec,
    bus: &Bus,
    log: &mut dyn FnMut(String),
    stop: &dyn Fn() -> bool,
) -> Result<ServeReport> {
    use sinew_sim::expert::Expert;
    use sinew_sim::SuccessTracker;
    use sinew_sim::{SimRobot, SimWorld};
    let robot = &spec.robot;
    let task = &spec.task;
    let ep = task.sample(&robot.config.name, spec.seed)?;
    let world = SimWorld::new(robot.clone(), Some(&ep), None)?;
    let keys = RobotKeys::new(&robot.config.namespace)?;
    let mut sim = if spec.lockstep {
        SimRobot::lockstep(world, Some(task.clone()), task.control_rate_hz)
    } else {
        SimRobot::real_time(world, Some(task.clone()), spec.camera_hz)
    };
    let expert_pub: Publisher<JointTrajectory> = bus.publisher(&keys.sim_expert_action())?;
    log(format!(
        "sim serve: {} on task {} seed {} ({}), {} mode; keys under {}/",
        robot.config.name,
        task.name,
        spec.seed,
        ep.instruction,
        if spec.lockstep {
            "lockstep"
        } else {
            "real-time"
        },
        keys.namespace()
    ));
    let dt_control = 1.0 / task.control_rate_hz;
    let mut expert = Expert::for_task(task);
    let mut tracker = SuccessTracker::new(task);
    let mut next_expert = 0.0f64;
    let mut succeeded = false;
    let joints = robot.joint_names();
    let opts = ServeOptions {
        lockstep_dt_s: spec.lockstep.then_some(dt_control),
        command_timeout_s: spec.command_timeout_s,
        duration_s: spec.duration_s,
        estop_torque_off: false,
    };
    serve(
        &mut sim,
        robot,
        bus,
        &opts,
        |sim: &mut SimRobot| {
            let world = sim.world();
            if spec.lockstep || world.time_s >= next_expert {
                next_expert += dt_control;
                let q = expert.act(world, dt_control)?;
                let stamp = match sim.timing() {
                    Timing::Driven { now_s } => Time::from_nanos((now_s * 1e9).round() as i64),
                    Timing::RealTime { .. } => Time::now(),
                };
                expert_pub.put(&JointTrajectory {
                    header: Header::new(stamp, robot.config.base_link.clone()),
                    joint_names: joints.clone(),
                    points: vec![JointTrajectoryPoint {
                        positions: q,
                        time_from_start: sinew_msgs::Duration::from_nanos(
                            (dt_control * 1e9) as i64,
                        ),
                        ..Default::default()
                    }],
                })?;
            }
            if !succeeded && tracker.update(sim.world())? {
                succeeded = true;
                log(format!(
                    "sim serve: task succeeded at t = {:.2} s",
                    sim.world().time_s
                ));
            }
            Ok(())
        },
        stop,
    )
}
