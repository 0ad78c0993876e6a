//! Real arms: `sinew robot serve|calibrate|emulate` and `sinew teleop` (SO-101, Feetech
//! STS3215 servos; docs/so101.md walks through them step by step).

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use sinew_app::hardware::{serve_hardware, teleop, ArmSpec, HardwareServeSpec, TeleopSpec};
use sinew_app::resolve::load_robot;
use sinew_app::serve::ServeOptions;
use sinew_bus::{Bus, BusConfig};
use sinew_camera::{CameraSpec, Output};
use sinew_feetech::calibration::{lerobot_calibration_path, ArmRole, Calibration};
use sinew_feetech::emulator::{Emulator, EmulatorConfig, Fault, Hand};
use sinew_feetech::{calibrate, BusConfig as ServoBusConfig, CalibrationGuide, FeetechBus};

use crate::stop::Stop;

/// The servo driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Driver {
    /// Feetech STS/SCS serial-bus servos (SO-100, SO-101).
    Feetech,
}

/// One arm's serial port and calibration.
#[derive(Debug, Args)]
pub struct ArmArgs {
    /// Serial port of the arm's servo bus (e.g. /dev/ttyACM0).
    #[arg(long)]
    port: String,
    /// Line rate, baud.
    #[arg(long, default_value_t = 1_000_000)]
    baud: u32,
    /// The arm's id: its calibration is LeRobot's <calibration dir>/robots/so101_follower/<ID>.json
    /// (leaders: teleoperators/so101_leader/<ID>.json).
    #[arg(long, default_value = "sinew")]
    id: String,
    /// Calibration file (instead of LeRobot's folder and --id).
    #[arg(long, value_name = "FILE")]
    calibration: Option<PathBuf>,
}

impl ArmArgs {
    fn spec(&self, role: ArmRole) -> ArmSpec {
        ArmSpec {
            port: self.port.clone(),
            calibration: self
                .calibration
                .clone()
                .unwrap_or_else(|| lerobot_calibration_path(role, &self.id)),
            baud: self.baud,
        }
    }
}

/// Cameras of a real robot.
#[derive(Debug, Args)]
pub struct CameraArgs {
    /// A camera: NAME=v4l2:/dev/video0[:WxH@FPS][:mjpeg|yuyv], NAME=file:PATH, or
    /// NAME=synthetic:WxH@FPS. NAME is a camera of robot.toml (front, wrist). Repeatable.
    #[arg(long = "camera", value_name = "SPEC")]
    cameras: Vec<CameraSpec>,
    /// Publish frames as captured (sensor_msgs/CompressedImage on <key>/compressed), without
    /// decoding; MJPEG cameras only.
    #[arg(long)]
    passthrough: bool,
}

impl CameraArgs {
    fn specs(&self) -> Vec<CameraSpec> {
        self.cameras
            .iter()
            .map(|c| match self.passthrough {
                true => c.clone().with_output(Output::Passthrough),
                false => c.clone(),
            })
            .collect()
    }
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Robot name (a folder under robots/) or path to a robot folder.
    #[arg(long, default_value = "so101")]
    robot: String,
    /// Servo driver.
    #[arg(long, value_enum, default_value = "feetech")]
    driver: Driver,
    #[command(flatten)]
    arm: ArmArgs,
    #[command(flatten)]
    cameras: CameraArgs,
    /// Instruction published on <ns>/instruction.
    #[arg(long)]
    instruction: Option<String>,
    /// Joint-state and command rate, Hz (robot.toml's command_rate_hz by default).
    #[arg(long)]
    rate: Option<f64>,
    /// Hold the arm when no joint command came for this long, s.
    #[arg(long, default_value_t = 0.25)]
    command_timeout: f64,
    /// E-stop turns the servos' torque off (the arm goes limp and may fall) instead of
    /// holding position with torque on.
    #[arg(long)]
    estop_torque_off: bool,
    /// Stop after this many seconds.
    #[arg(long)]
    duration: Option<f64>,
    /// Write the serving report (rates, round trips, faults, bus counters) as JSON here.
    #[arg(long, value_name = "FILE")]
    report: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct CalibrateArgs {
    /// Robot name or folder (its joints name the motors).
    #[arg(long, default_value = "so101")]
    robot: String,
    #[command(flatten)]
    arm: ArmArgs,
    /// Calibrate a leader arm (written under LeRobot's teleoperators/so101_leader/).
    #[arg(long)]
    leader: bool,
    /// The arm already stands in the middle of its range: do not wait for ENTER.
    #[arg(long)]
    yes: bool,
    /// Record ranges for this many seconds instead of until ENTER.
    #[arg(long, value_name = "S")]
    range_seconds: Option<f64>,
}

#[derive(Debug, Args)]
pub struct EmulateArgs {
    /// Also make this path a link to the emulated bus's port.
    #[arg(long, value_name = "PATH")]
    link: Option<PathBuf>,
    /// Servo IDs 1..=N.
    #[arg(long, default_value_t = 6)]
    servos: u8,
    /// Start with this calibration in the servos' EEPROM (homing offsets and limits).
    #[arg(long, value_name = "FILE")]
    calibration: Option<PathBuf>,
    /// Torque-off motion as a hand would move the arm: sweep:AMPLITUDE_STEPS:PERIOD_S.
    #[arg(long, value_name = "MOTION")]
    hand: Option<String>,
    /// Inject a fault: KIND:ID:FROM_S:DURATION_S, KIND silent, corrupt or overload. Repeatable.
    #[arg(long = "fault", value_name = "FAULT")]
    faults: Vec<Fault>,
    /// Reply at once instead of after the bytes' time on a 1 Mbaud line.
    #[arg(long)]
    no_wire_time: bool,
    /// Stop after this many seconds.
    #[arg(long)]
    duration: Option<f64>,
    /// Write what the bus saw (goal writes, largest goal step per servo) as JSON here at exit.
    #[arg(long, value_name = "FILE")]
    report: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct TeleopArgs {
    /// Robot name or folder (both arms).
    #[arg(long, default_value = "so101")]
    robot: String,
    /// Leader arm's serial port.
    #[arg(long)]
    leader_port: String,
    /// Leader arm's id (LeRobot's teleoperators/so101_leader/<ID>.json).
    #[arg(long, default_value = "sinew")]
    leader_id: String,
    /// Leader calibration file (instead of --leader-id).
    #[arg(long, value_name = "FILE")]
    leader_calibration: Option<PathBuf>,
    /// Follower arm's serial port.
    #[arg(long)]
    follower_port: String,
    /// Follower arm's id (LeRobot's robots/so101_follower/<ID>.json).
    #[arg(long, default_value = "sinew")]
    follower_id: String,
    /// Follower calibration file (instead of --follower-id).
    #[arg(long, value_name = "FILE")]
    follower_calibration: Option<PathBuf>,
    /// Line rate of both buses, baud.
    #[arg(long, default_value_t = 1_000_000)]
    baud: u32,
    /// Loop rate, Hz.
    #[arg(long, default_value_t = 100.0)]
    rate: f64,
    /// Stop after this many seconds.
    #[arg(long)]
    duration: Option<f64>,
    /// Write the teleoperation report as JSON here.
    #[arg(long, value_name = "FILE")]
    report: Option<PathBuf>,
}

impl TeleopArgs {
    /// The teleoperation these arguments ask for.
    pub fn spec(&self) -> Result<TeleopSpec> {
        let arm = |port: &str, id: &str, file: &Option<PathBuf>, role| ArmSpec {
            port: port.to_owned(),
            calibration: file
                .clone()
                .unwrap_or_else(|| lerobot_calibration_path(role, id)),
            baud: self.baud,
        };
        Ok(TeleopSpec {
            robot: load_robot(&self.robot)?,
            leader: arm(
                &self.leader_port,
                &self.leader_id,
                &self.leader_calibration,
                ArmRole::Leader,
            ),
            follower: arm(
                &self.follower_port,
                &self.follower_id,
                &self.follower_calibration,
                ArmRole::Follower,
            ),
            rate_hz: self.rate,
            duration_s: self.duration,
        })
    }
}

fn write_json(path: &Option<PathBuf>, value: serde_json::Value) -> Result<()> {
    if let Some(p) = path {
        let text = serde_json::to_string_pretty(&value)?;
        std::fs::write(p, text + "\n").with_context(|| format!("writing {}", p.display()))?;
    }
    Ok(())
}

/// `sinew robot serve`.
pub fn serve(a: ServeArgs, bus_cfg: &BusConfig, stop: &Stop) -> Result<()> {
    let Driver::Feetech = a.driver;
    let spec = HardwareServeSpec {
        robot: load_robot(&a.robot)?,
        arm: a.arm.spec(ArmRole::Follower),
        cameras: a.cameras.specs(),
        instruction: a.instruction.clone(),
        rate_hz: a.rate,
        options: ServeOptions {
            lockstep_dt_s: None,
            command_timeout_s: a.command_timeout,
            duration_s: a.duration,
            estop_torque_off: a.estop_torque_off,
        },
    };
    let bus = Bus::open(bus_cfg)?;
    let r = serve_hardware(&spec, &bus, &mut |l| eprintln!("{l}"), &|| stop.requested())?;
    bus.close();
    let s = &r.serve;
    eprintln!(
        "robot serve: {:.1} s; joint states {:.1} Hz; SYNC_READ round trip p50 {:.0} µs, p99 {:.0} µs; commands applied {}, rejected {}; limited: velocity {}, acceleration {}, position {}; command timeouts {}; arm faults {} (recovered {}), held commands {}; e-stops {}",
        s.wall_s,
        r.joint_state_hz,
        r.sync_read_p50_us,
        r.sync_read_p99_us,
        s.applied,
        s.rejected,
        s.limited.velocity,
        s.limited.acceleration,
        s.limited.position,
        s.command_timeouts,
        r.arm.faults,
        r.arm.recoveries,
        r.arm.held_commands,
        s.estops,
    );
    write_json(&a.report, serde_json::to_value(&r)?)
}

/// Calibration prompts on the terminal (stdin lines).
struct TerminalGuide {
    enter: crossbeam_channel::Receiver<()>,
    skip_middle: bool,
    until: Option<Duration>,
    started: Option<Instant>,
    last_print: Option<Instant>,
}

impl CalibrationGuide for TerminalGuide {
    fn middle_pose(&mut self) {
        if self.skip_middle {
            println!("calibrate: the arm is taken to stand in the middle of its range (--yes)");
            return;
        }
        println!("calibrate: move the arm to the middle of its range of motion, then press ENTER");
        let _ = std::io::stdout().flush();
        let _ = self.enter.recv();
    }

    fn ranges(&mut self, rows: &[(String, i32, i32, i32)]) -> bool {
        let started = *self.started.get_or_insert_with(|| {
            match self.until {
                Some(d) => println!(
                    "calibrate: move every joint (but the wrist roll) through its whole range; recording for {:.1} s",
                    d.as_secs_f64()
                ),
                None => println!(
                    "calibrate: move every joint (but the wrist roll) through its whole range, then press ENTER"
                ),
            }
            Instant::now()
        });
        if self
            .last_print
            .is_none_or(|t| t.elapsed() > Duration::from_millis(500))
        {
            self.last_print = Some(Instant::now());
            let line: Vec<String> = rows
                .iter()
                .map(|(n, lo, now, hi)| format!("{n} {lo}..{now}..{hi}"))
                .collect();
            println!("  {}", line.join(" | "));
            let _ = std::io::stdout().flush();
        }
        match self.until {
            Some(d) => started.elapsed() >= d,
            None => self.enter.try_recv().is_ok(),
        }
    }
}

fn stdin_lines() -> crossbeam_channel::Receiver<()> {
    let (tx, rx) = crossbeam_channel::unbounded();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            if line.is_err() || tx.send(()).is_err() {
                break;
            }
        }
    });
    rx
}

/// `sinew robot calibrate`.
pub fn calibrate_arm(a: CalibrateArgs) -> Result<()> {
    let robot = load_robot(&a.robot)?;
    let role = if a.leader {
        ArmRole::Leader
    } else {
        ArmRole::Follower
    };
    let out = a.arm.spec(role).calibration;
    let mut bus = FeetechBus::open(
        &a.arm.port,
        ServoBusConfig {
            baud: a.arm.baud,
            ..ServoBusConfig::default()
        },
    )?;
    let motors: Vec<(String, u8)> = robot
        .joint_names()
        .into_iter()
        .map(|j| {
            sinew_feetech::SO101_MOTORS
                .iter()
                .find(|(n, _)| *n == j)
                .map(|(_, id)| (j.clone(), *id))
                .with_context(|| {
                    format!(
                        "joint {j:?} of {} is not an SO-101 motor",
                        robot.config.name
                    )
                })
        })
        .collect::<Result<_>>()?;
    let mut guide = TerminalGuide {
        enter: stdin_lines(),
        skip_middle: a.yes,
        until: a.range_seconds.map(Duration::from_secs_f64),
        started: None,
        last_print: None,
    };
    let cal = calibrate(
        &mut bus,
        &motors,
        &sinew_feetech::SO101_FULL_TURN,
        &mut guide,
    )?;
    cal.write(&out)?;
    println!("calibrate: wrote {}", out.display());
    for (n, m) in &cal.motors {
        println!(
            "  {n:<14} id {} homing_offset {:>5} range {:>4}..{:<4}",
            m.id, m.homing_offset, m.range_min, m.range_max
        );
    }
    Ok(())
}

fn parse_hand(s: &str) -> Result<Hand> {
    let parts: Vec<&str> = s.split(':').collect();
    match parts[..] {
        ["still"] => Ok(Hand::Still),
        ["sweep", a, p] => {
            let amplitude: f64 = a
                .parse()
                .ok()
                .filter(|x: &f64| x.is_finite() && *x >= 0.0)
                .with_context(|| format!("--hand {s}: amplitude {a:?} is not a number of steps"))?;
            let period_s: f64 = p
                .parse()
                .ok()
                .filter(|x: &f64| x.is_finite() && *x > 0.0)
                .with_context(|| {
                    format!("--hand {s}: period {p:?} is not a positive number of seconds")
                })?;
            Ok(Hand::Sweep {
                amplitude,
                period_s,
            })
        }
        _ => bail!("--hand {s}: expected still or sweep:AMPLITUDE_STEPS:PERIOD_S"),
    }
}

/// `sinew robot emulate`.
pub fn emulate(a: EmulateArgs, stop: &Stop) -> Result<()> {
    let mut cfg = EmulatorConfig::so101();
    cfg.servos = (1..=a.servos)
        .map(|id| (id, 2048.0 + 40.0 * f64::from(id)))
        .collect();
    cfg.wire_time = !a.no_wire_time;
    cfg.faults = a.faults.clone();
    if let Some(h) = &a.hand {
        cfg.hand = parse_hand(h)?;
    }
    if let Some(c) = &a.calibration {
        let cal = Calibration::read(c)?;
        // A calibrated arm stands somewhere inside its range: mid-range.
        for (id, at) in &mut cfg.servos {
            if let Some((_, m)) = cal.motors.iter().find(|(_, m)| m.id == *id) {
                *at = f64::from(m.homing_offset + (m.range_min + m.range_max) / 2);
            }
        }
        cfg.calibration = Some(cal);
    }
    let emu = Emulator::start(cfg)?;
    if let Some(link) = &a.link {
        let _ = std::fs::remove_file(link);
        std::os::unix::fs::symlink(emu.path(), link)
            .with_context(|| format!("linking {} to {}", link.display(), emu.path().display()))?;
    }
    println!(
        "emulate: {} STS3215 servo(s) on {}{}",
        a.servos,
        emu.path().display(),
        a.link
            .as_ref()
            .map(|l| format!(" (linked from {})", l.display()))
            .unwrap_or_default()
    );
    let _ = std::io::stdout().flush();
    let start = Instant::now();
    while !stop.requested() && a.duration.is_none_or(|d| start.elapsed().as_secs_f64() < d) {
        // Waiting for Ctrl-C; the emulator runs on its own thread.
        std::thread::sleep(Duration::from_millis(20));
    }
    let report = emu.report();
    write_json(&a.report, serde_json::to_value(&report)?)?;
    eprintln!(
        "emulate: {} instructions, {} replies, {} bad checksums received",
        report.instructions, report.replies, report.bad_checksums
    );
    if let Some(link) = &a.link {
        let _ = std::fs::remove_file(link);
    }
    Ok(())
}

/// `sinew teleop`.
pub fn run_teleop(a: TeleopArgs, stop: &Stop) -> Result<()> {
    let spec = a.spec()?;
    eprintln!(
        "teleop: leader on {} drives the follower on {} at {:.0} Hz (Ctrl-C stops)",
        spec.leader.port, spec.follower.port, spec.rate_hz
    );
    let r = teleop(&spec, &|| stop.requested(), &mut |_, _| Ok(true), &[])?;
    eprintln!(
        "teleop: {} steps in {:.1} s ({:.1} Hz; period p50 {:.2} ms, p99 {:.2} ms); leader unreadable {} steps; limited: velocity {}, acceleration {}, position {}",
        r.steps,
        r.wall_s,
        r.rate_hz,
        r.period_p50_ms,
        r.period_p99_ms,
        r.leader_faults,
        r.limited.velocity,
        r.limited.acceleration,
        r.limited.position
    );
    write_json(&a.report, serde_json::to_value(&r)?)
}
