//! Recordings: the tap that turns what the loop saw and did into MCAP messages and rerun
//! streams, the threads that write them, and the recording schema (each file's metadata, the
//! `episodes.jsonl` index beside the files).
//!
//! Camera images leave the control thread as they were captured; the recorder thread and the
//! rerun thread each store them as the recording's [`Encodings`] say (JPEG/PNG or raw colour,
//! millimetre, metre or no depth).

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use sinew_core::{ActionChunk, ActionKind};
use sinew_msgs::keys::RobotKeys;
use sinew_msgs::{
    AnyMessage, Header, JointTrajectory, JointTrajectoryPoint, Message, MessageKind, StringMsg,
    Time,
};
use sinew_record::codec::Stored;
use sinew_record::{spawn_recorder_with, Encodings, RecordItem, RecorderThread};
use sinew_robot::RobotDescription;
use sinew_runtime::{Record, Tap};
use sinew_viz::{spawn_viz_with, Prepare, Sink, Stream, VizItem, VizThread};

use crate::execution::ExecutionSpec;

/// Bus key to viewer stream.
pub type StreamMap = HashMap<String, Stream>;

/// The viewer streams of a robot's keys.
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
        m.insert(
            keys.camera_compressed(&c.name),
            Stream::Camera(c.name.clone()),
        );
        m.insert(keys.camera_depth(&c.name), Stream::Depth(c.name.clone()));
    }
    m
}

/// A chunk as `JointTrajectory`: one point per policy step, the action space in
/// `header.frame_id`, joint names when the actions are joint positions.
pub fn chunk_message(chunk: &ActionChunk, joint_names: &[String], rate_hz: f64) -> JointTrajectory {
    let dim = chunk.dim();
    let names = if chunk.kind == Some(ActionKind::JointPosition) && dim == joint_names.len() {
        joint_names.to_vec()
    } else {
        (0..dim).map(|i| format!("action_{i}")).collect()
    };
    JointTrajectory {
        header: Header::new(
            Time::from_nanos((chunk.observation_stamp_s * 1e9).round() as i64),
            chunk.kind.map_or("actions".to_owned(), |k| k.to_string()),
        ),
        joint_names: names,
        points: chunk
            .actions
            .iter()
            .enumerate()
            .map(|(i, a)| JointTrajectoryPoint {
                positions: a.clone(),
                time_from_start: sinew_msgs::Duration::from_nanos(
                    (i as f64 / rate_hz * 1e9) as i64,
                ),
                ..Default::default()
            })
            .collect(),
    }
}

/// Where rerun output goes besides the MCAP files.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RerunSpec {
    /// Stream live to a viewer at this address (`HOST:PORT` or a `rerun+http://` URL).
    pub connect: Option<String>,
    /// With a recording folder: no `.rrd` beside the MCAP files.
    pub no_rrd: bool,
}

impl RerunSpec {
    /// Whether anything goes to rerun, given the recording folder.
    pub fn enabled(&self, record: Option<&Path>) -> bool {
        self.connect.is_some() || (record.is_some() && !self.no_rrd)
    }

    /// The sink of the recording named `stem`: the viewer, else `DIR/<stem>.rrd`.
    pub fn sink(&self, record: Option<&Path>, stem: &str) -> Sink {
        match (&self.connect, record) {
            (Some(a), _) => Sink::connect(a),
            (None, Some(d)) => Sink::File(d.join(format!("{stem}.rrd"))),
            (None, None) => Sink::File(PathBuf::from(format!("{stem}.rrd"))),
        }
    }

    /// Where the streams went, for summary lines.
    pub fn describe(&self, record: Option<&Path>) -> String {
        match (&self.connect, record) {
            (Some(a), _) => format!("the viewer at {a}"),
            (None, Some(d)) => format!("{}/*.rrd", d.display()),
            _ => "nowhere".into(),
        }
    }
}

/// What the rerun thread does to camera images before logging them: colour compressed and
/// depth converted as `enc` says (an image the codec cannot convert is logged as it came).
pub fn viz_prepare(enc: Encodings) -> Prepare {
    Box::new(move |stream, msg| {
        let stored = match (stream, &msg) {
            (Stream::Camera(_), AnyMessage::Image(im)) => enc.color.store(im),
            (Stream::Depth(_), AnyMessage::Image(im)) => enc.depth.store(im),
            _ => return Some(msg),
        };
        match stored {
            Ok(Stored::Image(im)) => Some(AnyMessage::Image(im)),
            Ok(Stored::Compressed(c)) => Some(AnyMessage::CompressedImage(c)),
            Ok(Stored::Dropped) => None,
            Err(_) => Some(msg),
        }
    })
}

/// The metadata of a simulated episode's recording: what `replay --compare` needs to run it
/// again.
pub fn episode_metadata(
    robot: &RobotDescription,
    task: &str,
    seed: u64,
    policy: &str,
    exec: &ExecutionSpec,
) -> BTreeMap<String, String> {
    let mut meta = BTreeMap::new();
    meta.insert("robot".to_owned(), robot.config.name.clone());
    meta.insert("task".to_owned(), task.to_owned());
    meta.insert("seed".to_owned(), seed.to_string());
    meta.insert("policy".to_owned(), policy.to_owned());
    meta.insert("execution".to_owned(), exec.to_json());
    meta
}

/// Appends one line to `DIR/episodes.jsonl`, the index of a recording folder.
pub fn append_index(dir: &Path, line: &serde_json::Value) -> Result<()> {
    let idx = dir.join("episodes.jsonl");
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&idx)
        .and_then(|mut f| writeln!(f, "{line}"))
        .with_context(|| format!("writing {}", idx.display()))
}

/// The `episode_<seed>` stem of an episode's files.
pub fn episode_stem(seed: u64) -> String {
    format!("episode_{seed:06}")
}

/// The recorder and rerun threads of a run, one file (or viewer stream) per episode.
#[derive(Debug)]
pub struct Outputs {
    dir: Option<PathBuf>,
    rerun: RerunSpec,
    recorder: Option<RecorderThread>,
    viz: Option<VizThread>,
    keys: RobotKeys,
    streams: StreamMap,
    robot: RobotDescription,
    encodings: Encodings,
}

/// What the outputs wrote.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OutputsReport {
    /// MCAP files closed.
    pub files: usize,
    /// Their payload bytes.
    pub bytes: u64,
    /// Items the real-time loop could not hand to the recorder.
    pub recorder_dropped: u64,
    /// Rerun streams closed.
    pub streams: usize,
    /// Messages the viewer could not show.
    pub skipped: u64,
    /// Items the real-time loop could not hand to the rerun thread.
    pub viz_dropped: u64,
    /// The first error that stopped a writer (what was written stays readable).
    pub error: Option<String>,
}

impl OutputsReport {
    /// What several workers' outputs wrote, together.
    pub fn merge(reports: Vec<OutputsReport>) -> OutputsReport {
        let mut out = OutputsReport::default();
        for r in reports {
            out.files += r.files;
            out.bytes += r.bytes;
            out.recorder_dropped += r.recorder_dropped;
            out.streams += r.streams;
            out.skipped += r.skipped;
            out.viz_dropped += r.viz_dropped;
            if out.error.is_none() {
                out.error = r.error;
            }
        }
        out
    }
}

impl Outputs {
    /// Threads for recording under `dir` (MCAP, and `.rrd` unless `rerun.no_rrd`) and/or
    /// streaming to a viewer, camera images stored as `encodings` say. `None` when nothing is
    /// asked for.
    pub fn start(
        robot: &RobotDescription,
        dir: Option<&Path>,
        rerun: &RerunSpec,
        encodings: Encodings,
    ) -> Result<Option<Self>> {
        if dir.is_none() && rerun.connect.is_none() {
            return Ok(None);
        }
        if let Some(d) = dir {
            std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
        }
        let keys = RobotKeys::new(&robot.config.namespace)?;
        Ok(Some(Self {
            dir: dir.map(Path::to_path_buf),
            rerun: rerun.clone(),
            recorder: match dir {
                Some(_) => Some(spawn_recorder_with(4096, encodings)?),
                None => None,
            },
            viz: if rerun.enabled(dir) {
                Some(spawn_viz_with(1024, viz_prepare(encodings))?)
            } else {
                None
            },
            streams: stream_map(&keys, robot),
            keys,
            robot: robot.clone(),
            encodings,
        }))
    }

    /// The recording folder.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// Starts the files of one recording: `DIR/<stem>.mcap` (with `metadata`; `stem` may name
    /// a subfolder) and its rerun stream named `title`.
    pub fn open(
        &mut self,
        stem: &str,
        title: &str,
        metadata: BTreeMap<String, String>,
    ) -> Result<()> {
        if let Some(d) = &self.dir {
            let path = d.join(format!("{stem}.mcap"));
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("creating {}", parent.display()))?;
            }
            if let Some(r) = &mut self.recorder {
                r.send_blocking(RecordItem::NewFile { path, metadata });
            }
        }
        if let Some(v) = &mut self.viz {
            v.send_blocking(VizItem::Open {
                robot: Box::new(self.robot.clone()),
                name: title.to_owned(),
                sink: self.rerun.sink(self.dir.as_deref(), stem),
            });
        }
        Ok(())
    }

    /// Ends the current recording; fails when a writer has stopped on an error.
    pub fn close_one(&mut self) -> Result<()> {
        if let Some(r) = &mut self.recorder {
            r.send_blocking(RecordItem::CloseFile);
            if r.has_stopped() {
                bail!("the recorder stopped; see the error above (files written so far stay readable)");
            }
        }
        if let Some(v) = &mut self.viz {
            v.send_blocking(VizItem::Close);
            if v.has_stopped() {
                bail!(
                    "rerun logging stopped; see the error above (what was logged stays readable)"
                );
            }
        }
        Ok(())
    }

    /// The tap feeding the current recording. `realtime`: never wait for the writers (drop
    /// and count instead); otherwise wait, so nothing is lost.
    pub fn tap(&mut self, joints: &[String], policy_rate_hz: f64, realtime: bool) -> RecordTap<'_> {
        RecordTap {
            recorder: self.recorder.as_mut(),
            viz: self.viz.as_mut(),
            keys: &self.keys,
            streams: &self.streams,
            joints: joints.to_vec(),
            policy_rate_hz,
            realtime,
            encodings: self.encodings,
        }
    }

    /// Closes the threads and reports what they wrote.
    pub fn finish(self) -> OutputsReport {
        let mut out = OutputsReport::default();
        if let Some(r) = self.recorder {
            let closed = r.close();
            let files = closed.report.unwrap_or_default();
            out.files = files.len();
            out.bytes = files.iter().map(|f| f.bytes).sum();
            out.recorder_dropped = closed.dropped;
            out.error = closed.error.map(|e| format!("recording stopped: {e}"));
        }
        if let Some(v) = self.viz {
            let closed = v.close();
            let streams = closed.report.unwrap_or_default();
            out.streams = streams.len();
            out.skipped = streams.iter().map(|(_, s)| s.skipped).sum();
            out.viz_dropped = closed.dropped;
            if let Some(e) = closed.error {
                out.error
                    .get_or_insert(format!("rerun logging stopped: {e}"));
            }
        }
        out
    }
}

/// The tap writing what the loop saw and did to the recorder and the rerun thread.
#[derive(Debug)]
pub struct RecordTap<'a> {
    recorder: Option<&'a mut RecorderThread>,
    viz: Option<&'a mut VizThread>,
    keys: &'a RobotKeys,
    streams: &'a StreamMap,
    joints: Vec<String>,
    policy_rate_hz: f64,
    realtime: bool,
    encodings: Encodings,
}

impl RecordTap<'_> {
    fn send_recorder(&mut self, item: RecordItem) {
        if let Some(rec) = self.recorder.as_deref_mut() {
            if self.realtime {
                rec.send(item);
            } else {
                rec.send_blocking(item);
            }
        }
    }

    fn send_viz(&mut self, key: &str, msg: AnyMessage, ns: u64) {
        if let (Some(viz), Some(stream)) = (self.viz.as_deref_mut(), self.streams.get(key)) {
            let item = VizItem::Message {
                stream: stream.clone(),
                time_ns: ns,
                msg,
            };
            if self.realtime {
                viz.send(item);
            } else {
                viz.send_blocking(item);
            }
        }
    }

    /// A camera frame: handed over as captured (the image data is shared, not copied); the
    /// recorder and rerun threads convert it.
    fn frame(&mut self, camera: &str, frame: &sinew_core::robot_io::CameraFrame, ns: u64) {
        let keys = self.keys;
        let key = keys.camera_image(camera);
        if self.recorder.is_some() {
            self.send_recorder(RecordItem::Color {
                key: key.clone(),
                compressed_key: keys.camera_compressed(camera),
                log_time_ns: ns,
                image: frame.color.clone(),
            });
        }
        self.send_viz(&key, frame.color.clone().into(), ns);
        let Some(d) = &frame.depth else {
            return;
        };
        if self.encodings.depth == sinew_record::codec::DepthEncoding::None {
            return;
        }
        let key = keys.camera_depth(camera);
        if self.recorder.is_some() {
            self.send_recorder(RecordItem::Depth {
                key: key.clone(),
                log_time_ns: ns,
                image: d.clone(),
            });
        }
        self.send_viz(&key, d.clone().into(), ns);
    }

    fn put<M: Message + Into<AnyMessage>>(&mut self, key: &str, msg: &M, ns: u64) {
        if self.recorder.is_some() {
            let publish = msg.stamp().map_or(ns, |t| t.as_nanos().max(0) as u64);
            if let Some(kind) = MessageKind::from_type_name(M::DEF.name) {
                self.send_recorder(RecordItem::Message {
                    key: key.to_owned(),
                    kind,
                    log_time_ns: ns,
                    publish_time_ns: publish,
                    cdr: msg.to_cdr().into(),
                });
            }
        }
        if self.viz.is_some() && self.streams.contains_key(key) {
            self.send_viz(key, msg.clone().into(), ns);
        }
    }
}

impl Tap for RecordTap<'_> {
    fn record(&mut self, ns: u64, record: Record<'_>) {
        let keys = self.keys;
        match record {
            Record::JointState(js) => self.put(&keys.joint_states(), js, ns),
            Record::Frame { camera, frame } => self.frame(camera, frame, ns),
            Record::Instruction(s) => {
                self.put(&keys.instruction(), &StringMsg { data: s.to_owned() }, ns)
            }
            Record::Scene(s) => self.put(&keys.sim_scene(), &StringMsg { data: s.to_json() }, ns),
            Record::Event(e) => self.put(&keys.events(), &StringMsg { data: e.to_json() }, ns),
            Record::Chunk(c) => {
                let msg = chunk_message(c, &self.joints, self.policy_rate_hz);
                self.put(&keys.action_chunk(), &msg, ns);
            }
            Record::Command(msg) => self.put(&keys.joint_commands(), msg, ns),
        }
    }
}

/// What a recording of the bus wrote.
#[derive(Debug, Clone)]
pub struct BusRecordReport {
    /// The file.
    pub summary: sinew_record::RecordSummary,
    /// Samples on keys whose type is not known from their name.
    pub unknown: u64,
    /// Payloads that did not decode (not recorded).
    pub malformed: u64,
    /// Samples a full queue dropped.
    pub dropped: u64,
    /// Wall time, s.
    pub wall_s: f64,
    /// The write error that stopped it, if one did (what was written before stays readable).
    pub error: Option<String>,
}

/// Records everything on `robot`'s keys (`<ns>/**`) to the MCAP file `out` until `stop` or
/// `duration_s`, flushing a chunk at least every second (a crash loses at most about one).
/// Raw images of the robot's cameras are stored as `encodings` say; everything else (and
/// images already compressed) as it came.
pub fn record_bus(
    bus: &sinew_bus::Bus,
    robot: &RobotDescription,
    out: &Path,
    duration_s: Option<f64>,
    encodings: Encodings,
    stop: &dyn Fn() -> bool,
) -> Result<BusRecordReport> {
    use std::time::{Duration, Instant};
    let keys = RobotKeys::new(&robot.config.namespace)?;
    // Camera keys: colour (with its compressed key) or depth.
    let mut cameras: HashMap<String, Option<String>> = HashMap::new();
    for c in &robot.config.cameras {
        cameras.insert(
            keys.camera_image(&c.name),
            Some(keys.camera_compressed(&c.name)),
        );
        cameras.insert(keys.camera_depth(&c.name), None);
    }
    let sub = bus.subscribe_raw(&keys.all(), 4096)?;
    let mut meta = BTreeMap::new();
    meta.insert("robot".to_owned(), robot.config.name.clone());
    meta.insert("source".to_owned(), "sinew record (live bus)".to_owned());
    let mut rec = sinew_record::McapRecorder::create(out, &meta, None)?;
    let start = Instant::now();
    let (mut unknown, mut malformed) = (0u64, 0u64);
    let mut last_flush = Instant::now();
    let mut error = None;
    while !stop() && duration_s.is_none_or(|d| start.elapsed().as_secs_f64() < d) {
        let Some(s) = sub.recv_timeout(Duration::from_millis(100)) else {
            continue;
        };
        let Some(kind) = sinew_msgs::keys::kind_for_key(&s.key) else {
            unknown += 1;
            continue;
        };
        let log = s.received_time.as_nanos().max(0) as u64;
        let msg = match kind.decode(&s.payload) {
            Ok(m) => m,
            Err(e) => {
                malformed += 1;
                tracing::warn!("{}: malformed {} not recorded: {e}", s.key, kind.def().name);
                continue;
            }
        };
        let publish = msg
            .header()
            .map_or(log, |h| h.stamp.as_nanos().max(0) as u64);
        let written = match (msg, cameras.get(&s.key)) {
            (AnyMessage::Image(im), Some(Some(compressed))) => {
                let stored = encodings.color.store(&im);
                rec.write_image(&s.key, Some(compressed), &im, stored, log)
            }
            (AnyMessage::Image(im), Some(None)) => {
                let stored = encodings.depth.store(&im);
                rec.write_image(&s.key, None, &im, stored, log)
            }
            _ => rec.write_raw(&s.key, kind.def(), log, publish, &s.payload),
        };
        if let Err(e) = written {
            error = Some(e.to_string());
            break;
        }
        if last_flush.elapsed() > Duration::from_secs(1) {
            if let Err(e) = rec.flush() {
                error = Some(e.to_string());
                break;
            }
            last_flush = Instant::now();
        }
    }
    Ok(BusRecordReport {
        dropped: sub.stats().dropped,
        summary: rec.finish()?,
        unknown,
        malformed,
        wall_s: start.elapsed().as_secs_f64(),
        error,
    })
}
