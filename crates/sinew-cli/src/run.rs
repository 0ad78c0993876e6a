//! `sinew run`: the closed loop on a robot's bus keys (a real robot, or `sinew sim serve`).
//! Ctrl-C engages the hold, brakes to a stop and exits, leaving the robot at its last safe
//! position; a summary with the loop's telemetry goes to stderr at the end.

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Args;
use sinew_app::live::{run_live, LiveSpec};
use sinew_app::resolve::load_robot;
use sinew_bus::{Bus, BusConfig};

use crate::args::{DeviceArgs, ExecutionArgs, RecordingArgs, RerunArgs};
use crate::stop::Stop;

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Robot folder or name under robots/.
    #[arg(long, default_value = "so101")]
    robot: String,
    /// A policy folder, or `expert` to follow `sinew sim serve`'s scripted expert through the
    /// bus (`<ns>/sim/expert_action`).
    #[arg(long)]
    policy: String,
    /// The instruction (one arriving on `<ns>/instruction` replaces it).
    #[arg(long, default_value = "")]
    instruction: String,
    /// Stop after this many seconds.
    #[arg(long)]
    duration: Option<f64>,
    /// How long to wait for the first joint state, s.
    #[arg(long, default_value_t = 10.0)]
    startup_timeout: f64,
    #[command(flatten)]
    exec: ExecutionArgs,
    #[command(flatten)]
    device: DeviceArgs,
    /// Record what the loop saw and did to DIR/run_<unix time>.mcap (and .rrd unless
    /// --no-rrd), indexed in DIR/episodes.jsonl. Recording never blocks the loop: what does
    /// not fit the recorder's queue is dropped and counted.
    #[arg(long)]
    record: Option<PathBuf>,
    #[command(flatten)]
    rerun: RerunArgs,
    #[command(flatten)]
    recording: RecordingArgs,
}

pub fn run(a: RunArgs, bus_cfg: &BusConfig, stop: &Stop) -> Result<()> {
    let spec = LiveSpec {
        robot: load_robot(&a.robot)?,
        policy: a.policy,
        instruction: a.instruction,
        duration_s: a.duration,
        startup_timeout_s: a.startup_timeout,
        exec: a.exec.spec(),
        device: a.device.spec(),
        record: a.record.clone(),
        rerun: a.rerun.spec(),
        encodings: a.recording.encodings(crate::args::ImageEncodingArg::Jpeg),
    };
    let bus = Bus::open(bus_cfg)?;
    let r = run_live(&spec, &bus, &mut |l| eprintln!("{l}"), &|| stop.requested())?;
    let t = serde_json::to_string(&r.telemetry)?;
    eprintln!("run: stopped, holding the last safe position; {t}");
    let mut failed = None;
    if let Some(o) = &r.outputs {
        if let Some(dir) = &a.record {
            eprintln!(
                "run: recorded {:.1} MB to {}; {} item(s) dropped by a full queue",
                o.bytes as f64 / 1e6,
                dir.join(format!("{}.mcap", r.name)).display(),
                o.recorder_dropped
            );
        }
        if o.streams > 0 {
            eprintln!(
                "run: rerun to {}; {} item(s) dropped by a full queue",
                spec.rerun.describe(a.record.as_deref()),
                o.viz_dropped
            );
        }
        failed.clone_from(&o.error);
    }
    bus.close();
    if let Some(e) = failed {
        bail!("{e} (the robot was controlled to the end; what was written stays readable)");
    }
    Ok(())
}
