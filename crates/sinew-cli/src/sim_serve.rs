//! `sinew sim serve`: the simulator behind the same bus keys a real robot uses.
//!
//! Publishes `<ns>/joint_states`, `<ns>/camera/<cam>/image_raw` (and `.../depth/image_raw`) and
//! `<ns>/instruction`; executes `trajectory_msgs/JointTrajectory` received on
//! `<ns>/joint_commands` (the last point's positions, by joint name). Real time by default; with
//! `--lockstep`, simulated time advances one control step per command received, so a client's
//! run is reproducible.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Args;
use sinew_bus::keys::RobotKeys;
use sinew_bus::{Bus, BusConfig, Publisher};
use sinew_msgs::{Header, Image, JointState, JointTrajectory, StringMsg, Time};
use sinew_sim::SimWorld;

use crate::sim::{load_robot, load_task};
use crate::stop::Stop;

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Robot name (a folder under robots/) or path.
    #[arg(long, default_value = "so101")]
    robot: String,
    /// Task name or file.
    #[arg(long, default_value = "reach")]
    task: String,
    /// Episode seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Advance one control step per command instead of running in real time.
    #[arg(long)]
    lockstep: bool,
    /// Camera frame rate in real-time mode, Hz.
    #[arg(long, default_value_t = 15.0)]
    camera_hz: f64,
    /// Stop after this many seconds of simulated time.
    #[arg(long)]
    duration: Option<f64>,
}

struct Io {
    joint_states: Publisher<JointState>,
    images: Vec<(String, Publisher<Image>, Option<Publisher<Image>>)>,
    instruction: Publisher<StringMsg>,
    expert: Publisher<JointTrajectory>,
}

/// Publishes the scripted expert's next target (the oracle that `sinew run --policy expert`
/// follows through the bus).
fn publish_expert(
    world: &SimWorld,
    io: &Io,
    expert: &mut sinew_sim::expert::Expert,
    dt_s: f64,
    stamp: Time,
) -> Result<()> {
    let q = expert.act(world, dt_s)?;
    io.expert.put(&JointTrajectory {
        header: Header::new(stamp, world.robot.config.base_link.clone()),
        joint_names: world
            .robot
            .config
            .joints
            .iter()
            .map(|j| j.name.clone())
            .collect(),
        points: vec![sinew_msgs::JointTrajectoryPoint {
            positions: q,
            time_from_start: sinew_msgs::Duration::from_nanos((dt_s * 1e9) as i64),
            ..Default::default()
        }],
    })?;
    Ok(())
}

/// Counters of what arrived on the command key.
#[derive(Debug, Default)]
struct CommandStats {
    applied: u64,
    rejected: u64,
}

fn publish_state(world: &SimWorld, io: &Io, stamp: Time) -> Result<()> {
    let (q, qd) = world.joint_state();
    io.joint_states.put(&JointState {
        header: Header::new(stamp, world.robot.config.base_link.clone()),
        name: world
            .robot
            .config
            .joints
            .iter()
            .map(|j| j.name.clone())
            .collect(),
        position: q,
        velocity: qd,
        effort: vec![],
    })?;
    Ok(())
}

fn publish_cameras(world: &SimWorld, io: &Io, stamp: Time) -> Result<()> {
    for (name, rgb_pub, depth_pub) in &io.images {
        let f = world.render_camera(name)?;
        let frame_id = format!("{name}_optical");
        rgb_pub.put(&Image::rgb8(
            Header::new(stamp, frame_id.clone()),
            f.width,
            f.height,
            f.rgb,
        ))?;
        if let Some(dp) = depth_pub {
            dp.put(&Image::depth_32fc1(
                Header::new(stamp, frame_id),
                f.width,
                f.height,
                &f.depth,
            ))?;
        }
    }
    Ok(())
}

/// Maps a trajectory's last point onto joint targets in robot.toml order; joints the message
/// does not name keep their current targets.
fn targets_from(world: &SimWorld, msg: &JointTrajectory) -> Result<Vec<f64>, String> {
    let point = msg.points.last().ok_or("trajectory without points")?;
    if point.positions.len() != msg.joint_names.len() {
        return Err(format!(
            "{} positions for {} joint names",
            point.positions.len(),
            msg.joint_names.len()
        ));
    }
    let mut q = world.targets().to_vec();
    for (name, v) in msg.joint_names.iter().zip(&point.positions) {
        let i = world
            .robot
            .config
            .joints
            .iter()
            .position(|j| &j.name == name)
            .ok_or_else(|| format!("unknown joint {name:?}"))?;
        q[i] = *v;
    }
    Ok(q)
}

fn apply(world: &mut SimWorld, msg: &JointTrajectory, stats: &mut CommandStats) {
    match targets_from(world, msg).and_then(|q| world.command(&q).map_err(|e| e.to_string())) {
        Ok(()) => stats.applied += 1,
        Err(e) => {
            stats.rejected += 1;
            if stats.rejected <= 5 || stats.rejected.is_multiple_of(100) {
                tracing::warn!(count = stats.rejected, "joint command rejected: {e}");
            }
        }
    }
}

pub fn serve(a: ServeArgs, bus_cfg: &BusConfig, stop: &Stop) -> Result<()> {
    let robot = load_robot(&a.robot)?;
    let task = load_task(&a.task)?;
    let ep = task.sample(&robot.config.name, a.seed)?;
    let mut world = SimWorld::new(robot.clone(), Some(&ep), None)?;
    let keys = RobotKeys::new(&robot.config.namespace)?;
    let bus = Bus::open(bus_cfg).context("joining the bus")?;
    let io = Io {
        joint_states: bus.publisher(&keys.joint_states())?,
        images: robot
            .config
            .cameras
            .iter()
            .map(|c| -> Result<_> {
                let depth = if c.depth {
                    Some(bus.publisher(&keys.camera_depth(&c.name))?)
                } else {
                    None
                };
                Ok((
                    c.name.clone(),
                    bus.publisher(&keys.camera_image(&c.name))?,
                    depth,
                ))
            })
            .collect::<Result<_>>()?,
        instruction: bus.publisher(&keys.instruction())?,
        expert: bus.publisher(&keys.sim_expert_action())?,
    };
    let mut expert = sinew_sim::expert::Expert::new(task.success);
    let commands = bus.subscribe::<JointTrajectory>(&keys.joint_commands(), 64)?;
    let instruction = StringMsg {
        data: ep.instruction.clone(),
    };
    eprintln!(
        "sim serve: {} on task {} seed {} ({}), {} mode; keys under {}/",
        robot.config.name,
        task.name,
        a.seed,
        ep.instruction,
        if a.lockstep { "lockstep" } else { "real-time" },
        keys.namespace()
    );
    let mut stats = CommandStats::default();
    let dt_control = 1.0 / task.control_rate_hz;
    let end_sim = a.duration.unwrap_or(f64::INFINITY);
    let start = Instant::now();
    let sim_stamp = |w: &SimWorld| Time::from_nanos((w.time_s * 1e9) as i64);
    let mut reported_success = false;
    if a.lockstep {
        // Observation, then wait for a command, step one control period, repeat. While no command
        // comes, the observation is republished every 0.5 s so late subscribers get one.
        let mut last_pub = Instant::now();
        io.instruction.put(&instruction)?;
        publish_state(&world, &io, sim_stamp(&world))?;
        publish_cameras(&world, &io, sim_stamp(&world))?;
        while !stop.requested() && world.time_s < end_sim {
            match commands.recv_timeout(Duration::from_millis(100)) {
                Some(m) => {
                    apply(&mut world, &m.msg, &mut stats);
                    world.advance(dt_control);
                    publish_expert(&world, &io, &mut expert, dt_control, sim_stamp(&world))?;
                    publish_state(&world, &io, sim_stamp(&world))?;
                    publish_cameras(&world, &io, sim_stamp(&world))?;
                    last_pub = Instant::now();
                }
                None if last_pub.elapsed() > Duration::from_millis(500) => {
                    io.instruction.put(&instruction)?;
                    publish_state(&world, &io, sim_stamp(&world))?;
                    publish_cameras(&world, &io, sim_stamp(&world))?;
                    last_pub = Instant::now();
                }
                None => {}
            }
            check_success(&world, &task, &mut reported_success)?;
        }
    } else {
        let state_period = 1.0 / robot.config.command_rate_hz;
        let camera_period = 1.0 / a.camera_hz.max(0.1);
        let (mut next_state, mut next_camera, mut next_instruction) = (0.0f64, 0.0f64, 0.0f64);
        let mut next_expert = 0.0f64;
        while !stop.requested() && world.time_s < end_sim {
            while let Some(m) = commands.try_recv() {
                apply(&mut world, &m.msg, &mut stats);
            }
            // Keep simulated time level with the wall clock.
            let wall = start.elapsed().as_secs_f64();
            while world.time_s < wall {
                world.step(1);
            }
            let now = Time::now();
            if world.time_s >= next_state {
                publish_state(&world, &io, now)?;
                next_state += state_period;
            }
            if world.time_s >= next_camera {
                publish_cameras(&world, &io, now)?;
                next_camera += camera_period;
            }
            if world.time_s >= next_instruction {
                io.instruction.put(&instruction)?;
                next_instruction += 1.0;
            }
            if world.time_s >= next_expert {
                publish_expert(&world, &io, &mut expert, dt_control, now)?;
                next_expert += dt_control;
            }
            check_success(&world, &task, &mut reported_success)?;
            let next = next_state.min(next_camera) - start.elapsed().as_secs_f64();
            if next > 0.0 {
                // Pacing to real time, not synchronisation.
                std::thread::sleep(Duration::from_secs_f64(next.min(0.01)));
            }
        }
    }
    let wall = start.elapsed().as_secs_f64();
    let cs = commands.stats();
    eprintln!(
        "sim serve: {:.2} s simulated in {:.2} s wall (real-time factor {:.2}); commands applied {}, rejected {}, clamped values {}, malformed {}, dropped {}",
        world.time_s,
        wall,
        world.time_s / wall.max(1e-9),
        stats.applied,
        stats.rejected,
        world.clamped_values,
        cs.malformed,
        cs.dropped
    );
    bus.close();
    Ok(())
}

fn check_success(world: &SimWorld, task: &sinew_sim::TaskSpec, reported: &mut bool) -> Result<()> {
    if !*reported && sinew_sim::expert::success(world, task.success, task.touch_distance_m)? {
        *reported = true;
        eprintln!("sim serve: task succeeded at t = {:.2} s", world.time_s);
    }
    Ok(())
}
