//! `sinew camera`: list V4L2 webcams; publish cameras on a robot's camera keys.

use anyhow::Result;
use clap::{Args, Subcommand};
use sinew_app::camera::{serve_cameras, CameraServeOptions};
use sinew_bus::{Bus, BusConfig};
use sinew_camera::{CameraSpec, FrameSizes, Output};

use crate::stop::Stop;

#[derive(Debug, Subcommand)]
pub enum CameraCommand {
    /// List V4L2 capture devices with their formats, frame sizes and rates.
    List,
    /// Publish cameras on a robot's keys: <NS>/camera/<NAME>/image_raw (rgb8), or
    /// .../image_raw/compressed with --passthrough.
    Serve(ServeArgs),
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// A camera, NAME=SOURCE (repeatable): front=v4l2:/dev/video0[:640x480@30][:mjpeg|yuyv],
    /// wrist=file:IMAGE_OR_FOLDER[@FPS] (a folder plays its images in name order, looping),
    /// front=synthetic[:224x224@30].
    #[arg(long = "camera", value_name = "SPEC", required = true)]
    cameras: Vec<CameraSpec>,
    /// The robot namespace the keys are under.
    #[arg(long, default_value = "so101")]
    namespace: String,
    /// Publish frames as captured (sensor_msgs/CompressedImage, MJPEG as jpeg) without
    /// decoding; YUYV cameras cannot pass through.
    #[arg(long)]
    passthrough: bool,
    /// Stop after this many seconds.
    #[arg(long, value_name = "S")]
    duration: Option<f64>,
    /// A status line every this many seconds (0: none).
    #[arg(long, value_name = "S", default_value_t = 5.0)]
    status_every: f64,
}

pub fn run(cmd: CameraCommand, bus: &BusConfig, stop: &Stop) -> Result<()> {
    match cmd {
        CameraCommand::List => list(),
        CameraCommand::Serve(a) => serve(a, bus, stop),
    }
}

fn list() -> Result<()> {
    let devices = sinew_camera::list_devices()?;
    if devices.is_empty() {
        println!(
            "no V4L2 capture devices (no /dev/video* that captures video{}); file: and synthetic: sources work without one",
            if cfg!(target_os = "linux") { "" } else { ": V4L2 is Linux's" }
        );
        return Ok(());
    }
    for d in devices {
        println!(
            "{}  {}  (driver {}, {})",
            d.path.display(),
            d.card,
            d.driver,
            d.bus
        );
        for f in &d.formats {
            let usable = match f.capture {
                Some(c) => format!("spec :{}", c.name()),
                None => "not supported by sinew".into(),
            };
            println!("  {} {} [{usable}]", f.fourcc, f.description);
            match &f.sizes {
                FrameSizes::Discrete(sizes) => {
                    for (w, h, fps) in sizes {
                        let rates: Vec<String> = fps.iter().map(|r| format!("{r:.0}")).collect();
                        println!("    {w}x{h} @ {} fps", rates.join(", "));
                    }
                }
                FrameSizes::Range(r) => println!("    {r}"),
                FrameSizes::Unknown(e) => println!("    sizes unknown: {e}"),
            }
        }
    }
    Ok(())
}

fn serve(a: ServeArgs, bus_cfg: &BusConfig, stop: &Stop) -> Result<()> {
    let output = match a.passthrough {
        true => Output::Passthrough,
        false => Output::Decoded,
    };
    let specs: Vec<CameraSpec> = a
        .cameras
        .into_iter()
        .map(|s| s.with_output(output))
        .collect();
    let opts = CameraServeOptions {
        namespace: a.namespace,
        duration_s: a.duration,
        status_every_s: (a.status_every > 0.0).then_some(a.status_every),
    };
    let bus = Bus::open(bus_cfg)?;
    let r = serve_cameras(&specs, &bus, &opts, &mut |l| eprintln!("{l}"), &|| {
        stop.requested()
    });
    bus.close();
    let r = r?;
    for c in &r.cameras {
        eprintln!(
            "camera {}: {} published on {} in {:.1} s; captured {}, dropped {}, errors {}, reopened {}{}",
            c.name,
            c.published,
            c.key,
            r.wall_s,
            c.captured,
            c.dropped,
            c.errors,
            c.reopened,
            c.last_error
                .as_ref()
                .map(|e| format!(" (last error: {e})"))
                .unwrap_or_default()
        );
    }
    Ok(())
}
