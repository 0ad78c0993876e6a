//! Wiring between the bus keys and the rerun adapter: which key is which stream, and the
//! `--rerun-connect` / `--no-rrd` flags shared by `sim run`, `run` and `replay`.

use std::collections::HashMap;
use std::path::Path;

use anyhow::Result;
use clap::Args;
use sinew_bus::keys::RobotKeys;
use sinew_robot::RobotDescription;
use sinew_viz::{episode_rrd, Sink, Stream, VizThread};

/// Bus key to viewer stream.
pub type StreamMap = HashMap<String, Stream>;

/// The streams of a robot's keys.
pub fn stream_map(keys: &RobotKeys, robot: &RobotDescription) -> StreamMap {
    let mut m = StreamMap::new();
    m.insert(keys.joint_states(), Stream::JointStates);
    m.insert(keys.joint_commands(), Stream::JointCommands);
    m.insert(keys.instruction(), Stream::Instruction);
    m.insert(keys.action_chunk(), Stream::ActionChunk);
    m.insert(keys.events(), Stream::Events);
    m.insert(keys.sim_scene(), Stream::Scene);
    for c in &robot.config.cameras {
        m.insert(keys.camera_image(&c.name), Stream::Camera(c.name.clone()));
        m.insert(keys.camera_depth(&c.name), Stream::Depth(c.name.clone()));
    }
    m
}

/// Rerun output flags.
#[derive(Debug, Clone, Args)]
pub struct RerunArgs {
    /// Stream live to a rerun viewer at ADDR (`HOST:PORT`, default port of `rerun` is 9876, or a
    /// full `rerun+http://...` URL).
    #[arg(long, value_name = "ADDR")]
    pub rerun_connect: Option<String>,
    /// With `--record`: write only the MCAP files, no `.rrd` beside them.
    #[arg(long)]
    pub no_rrd: bool,
}

impl RerunArgs {
    /// Whether anything goes to rerun given the recording folder.
    pub fn enabled(&self, record: Option<&Path>) -> bool {
        self.rerun_connect.is_some() || (record.is_some() && !self.no_rrd)
    }

    /// The rerun thread, when enabled.
    pub fn spawn(&self, record: Option<&Path>) -> Result<Option<VizThread>> {
        Ok(if self.enabled(record) {
            Some(VizThread::spawn(1024)?)
        } else {
            None
        })
    }

    /// The sink of episode `seed`: the viewer when connecting, else `DIR/episode_<seed>.rrd`.
    pub fn sink(&self, record: Option<&Path>, seed: u64) -> Sink {
        match (&self.rerun_connect, record) {
            (Some(a), _) => Sink::connect(a),
            (None, Some(d)) => Sink::File(episode_rrd(d, seed)),
            (None, None) => Sink::File(episode_rrd(Path::new("."), seed)),
        }
    }

    /// Where the streams went, for the summary line.
    pub fn describe(&self, record: Option<&Path>) -> String {
        match (&self.rerun_connect, record) {
            (Some(a), _) => format!(" to the viewer at {a}"),
            (None, Some(d)) => format!(" to {}/episode_*.rrd", d.display()),
            _ => String::new(),
        }
    }
}
