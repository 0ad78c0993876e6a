//! `sinew replay FILE.mcap`: a recording back on the bus (`--play`), converted to a rerun file
//! (`--rrd OUT`), or fed through a policy and compared with the recorded commands
//! (`--policy P --compare`).

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use sinew_app::replay::{compare_with, play, recording_robot, to_rrd};
use sinew_bus::{Bus, BusConfig};
use sinew_record::{read_recording, DecodeNotes};

use crate::args::{DeviceArgs, LatencyArgs};
use crate::stop::Stop;

#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// The MCAP file.
    file: PathBuf,
    /// Publish the recorded messages on the bus with their original timing.
    #[arg(long)]
    play: bool,
    /// Playback speed (2 = twice as fast; 0 = as fast as possible).
    #[arg(long, default_value_t = 1.0)]
    speed: f64,
    /// Start again at the end.
    #[arg(long = "loop")]
    repeat: bool,
    /// Before playing, wait up to this many seconds for a subscriber on the recording's keys.
    #[arg(long, default_value_t = 0.0)]
    wait_for_subscribers: f64,
    /// Convert the recording to a rerun file (the same content as live logging).
    #[arg(long, value_name = "OUT.rrd")]
    rrd: Option<PathBuf>,
    /// Robot folder or name (default: the recording's `robot` metadata).
    #[arg(long)]
    robot: Option<String>,
    /// Feed the recorded observations to this policy (`expert` or a folder) ...
    #[arg(long)]
    policy: Option<String>,
    /// ... and report per-step differences from the recorded commands.
    #[arg(long)]
    compare: bool,
    /// With `--compare`: write the per-step report as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
    /// With `--compare`: the simulated latency instead of the recording's own (its
    /// `execution` metadata; none unless it was recorded with one).
    #[command(flatten)]
    latency: LatencyArgs,
    #[command(flatten)]
    device: DeviceArgs,
}

fn report_notes(notes: &DecodeNotes) {
    if notes.malformed > 0 {
        eprintln!("replay: {} malformed message(s) skipped", notes.malformed);
    }
    for (schema, n) in &notes.unknown {
        eprintln!("replay: {n} message(s) of type {schema} skipped (not a type Sinew decodes)");
    }
}

pub fn replay(a: ReplayArgs, bus_cfg: &BusConfig, stop: &Stop) -> Result<()> {
    if !a.play && a.rrd.is_none() && !a.compare {
        bail!("say what to do with the recording: --play, --rrd OUT.rrd, or --policy P --compare");
    }
    if a.policy.is_some() != a.compare {
        bail!("--policy and --compare go together: --policy P --compare");
    }
    let rec = read_recording(&a.file).with_context(|| format!("reading {}", a.file.display()))?;
    if let Some(t) = &rec.truncated {
        eprintln!(
            "replay: {} is cut short; using its complete part ({t})",
            a.file.display()
        );
    }
    if let Some(out) = &a.rrd {
        let robot = recording_robot(&rec, a.robot.as_deref(), &a.file)?;
        let name = a
            .file
            .file_stem()
            .map_or("replay".into(), |s| s.to_string_lossy().into_owned());
        let r = to_rrd(&rec, robot, &name, out)?;
        report_notes(&r.notes);
        eprintln!(
            "replay: {} messages to {} in {:.2} s ({:.0} messages/s){}",
            r.messages,
            out.display(),
            r.wall_s,
            r.messages as f64 / r.wall_s.max(1e-9),
            if r.skipped > 0 {
                format!(", {} not shown", r.skipped)
            } else {
                String::new()
            }
        );
    }
    if let Some(p) = &a.policy {
        let robot = recording_robot(&rec, a.robot.as_deref(), &a.file)?;
        let (r, notes) = compare_with(
            &rec,
            &a.file,
            &robot,
            p,
            &a.device.spec(),
            a.latency.model()?,
        )?;
        report_notes(&notes);
        println!(
            "replay {} through {p}: {} commands over {} steps, {} inferences; {} differ; max |diff| {:.3e}, mean {:.3e}",
            a.file.display(),
            r.commands_compared,
            r.steps.len(),
            r.inferences,
            r.commands_differing,
            r.max_abs_diff,
            r.mean_abs_diff
        );
        for s in r.steps.iter().filter(|s| s.max_abs_diff > 0.0).take(10) {
            println!(
                "  step {:>4} ({:.2} s): {:.3e} on {}",
                s.step, s.time_s, s.max_abs_diff, s.joint
            );
        }
        if let Some(path) = &a.json {
            std::fs::write(path, serde_json::to_string_pretty(&r)?)
                .with_context(|| format!("writing {}", path.display()))?;
        }
    }
    if a.play {
        let bus = Bus::open(bus_cfg)?;
        let r = play(
            &rec,
            &bus,
            a.speed,
            a.repeat,
            a.wait_for_subscribers,
            &|| stop.requested(),
        )?;
        if !r.subscriber_found {
            eprintln!(
                "replay: no subscriber after {} s; played anyway",
                a.wait_for_subscribers
            );
        }
        let d = rec.info().duration_s;
        eprintln!(
            "replay: {} messages in {:.2} s ({} pass(es), {:.0} messages/s, {:.1}x the recorded duration of {:.2} s)",
            r.sent,
            r.wall_s,
            r.passes,
            r.sent as f64 / r.wall_s.max(1e-9),
            d * r.passes as f64 / r.wall_s.max(1e-9),
            d
        );
        bus.close();
    }
    Ok(())
}
