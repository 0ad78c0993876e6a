//! Sinew's recordings: every message on a robot's keys, written as a rosbag2-compatible MCAP
//! file (profile `ros2`, one channel per topic, `ros2msg` schemas carrying the full message
//! definitions, `cdr` message encoding, log and publish times), so that `ros2 bag play`,
//! Foxglove and rerun open it; read back, tolerant of files cut short by a crash.
//!
//! - [`McapRecorder`]: the file writer (zstd chunks; each chunk is complete on disk before the
//!   next starts, so a crash loses at most the chunk being written).
//! - [`RecorderThread`]: the writer on its own thread behind a bounded channel; what a full
//!   channel drops is counted, and a write error (disk full) stops the recorder with the reason
//!   while the caller keeps going.
//! - [`RecordedRobot`]: a recording played back as a robot, for the control loop (replay
//!   through a policy, compared with what was commanded).
//! - [`read_recording`] / [`RecordingInfo`]: messages and per-topic statistics of a file.
//! - [`codec`]: how camera images are stored ([`Encodings`]: JPEG/PNG `CompressedImage` or raw
//!   colour; `16UC1` millimetre, `32FC1` or no depth), converted on the recorder thread.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
pub mod codec;
pub mod robot;

pub use codec::Encodings;
pub use robot::{decoded_messages, DecodeNotes, PlaybackError, RecordedRobot};

use mcap::records::MessageHeader;
use serde::Serialize;
use sinew_core::handoff::{Closed, Consumer, Handoff};
use sinew_msgs::{Image, Message, MessageKind, MsgDef};

use codec::Stored;

/// Errors of recordings.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// A file could not be created, written or read.
    #[error("{0}: {1}")]
    Io(PathBuf, std::io::Error),
    /// The MCAP layer failed.
    #[error("{0}: {1}")]
    Mcap(PathBuf, String),
    /// The recorder stopped earlier (the reason is inside).
    #[error("recorder stopped: {0}")]
    Stopped(String),
}

/// An error with its causes ("I/O error from writing: No space left on device (os error 28)").
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s = format!("{s}: {t}");
        }
        cur = c.source();
    }
    s
}

pub use sinew_msgs::keys::{key_of_topic, topic_of_key};

/// What was written.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RecordSummary {
    /// The file.
    pub path: PathBuf,
    /// Messages written.
    pub messages: u64,
    /// Payload bytes written (before compression).
    pub bytes: u64,
}

/// An MCAP file being written.
pub struct McapRecorder {
    writer: mcap::Writer<BufWriter<File>>,
    channels: HashMap<String, u16>,
    sequences: HashMap<u16, u32>,
    path: PathBuf,
    summary: RecordSummary,
    codec_warned: bool,
}

impl std::fmt::Debug for McapRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("McapRecorder")
            .field("path", &self.path)
            .field("summary", &self.summary)
            .finish()
    }
}

impl McapRecorder {
    /// Creates `path` (and its folder). `metadata` goes into a `sinew` metadata record (the
    /// episode: robot, task, seed, instruction, ...). `chunk_bytes` sets the chunk size (a
    /// crash loses at most one chunk; default 1 MiB).
    pub fn create(
        path: &Path,
        metadata: &BTreeMap<String, String>,
        chunk_bytes: Option<u64>,
    ) -> Result<Self, RecordError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| RecordError::Io(dir.to_owned(), e))?;
        }
        let file = File::create(path).map_err(|e| RecordError::Io(path.to_owned(), e))?;
        let mcap_err = |e: mcap::McapError| RecordError::Mcap(path.to_owned(), chain(&e));
        let mut writer = mcap::WriteOptions::new()
            .profile("ros2")
            .library(concat!("sinew ", env!("CARGO_PKG_VERSION")))
            .compression(Some(mcap::Compression::Zstd))
            .chunk_size(Some(chunk_bytes.unwrap_or(1 << 20)))
            .create(BufWriter::new(file))
            .map_err(mcap_err)?;
        if !metadata.is_empty() {
            writer
                .write_metadata(&mcap::records::Metadata {
                    name: "sinew".into(),
                    metadata: metadata.clone(),
                })
                .map_err(mcap_err)?;
        }
        Ok(Self {
            writer,
            channels: HashMap::new(),
            sequences: HashMap::new(),
            summary: RecordSummary {
                path: path.to_owned(),
                ..Default::default()
            },
            path: path.to_owned(),
            codec_warned: false,
        })
    }

    fn channel(&mut self, key: &str, def: &MsgDef) -> Result<u16, RecordError> {
        if let Some(id) = self.channels.get(key) {
            return Ok(*id);
        }
        let mcap_err = |e: mcap::McapError| RecordError::Mcap(self.path.clone(), chain(&e));
        let schema = self
            .writer
            .add_schema(def.name, "ros2msg", def.full_text().as_bytes())
            .map_err(mcap_err)?;
        let id = self
            .writer
            .add_channel(schema, &topic_of_key(key), "cdr", &BTreeMap::new())
            .map_err(|e| RecordError::Mcap(self.path.clone(), chain(&e)))?;
        self.channels.insert(key.to_owned(), id);
        Ok(id)
    }

    /// Writes one CDR payload on `key` with its type's definition.
    pub fn write_raw(
        &mut self,
        key: &str,
        def: &MsgDef,
        log_time_ns: u64,
        publish_time_ns: u64,
        cdr: &[u8],
    ) -> Result<(), RecordError> {
        let channel_id = self.channel(key, def)?;
        let seq = self.sequences.entry(channel_id).or_insert(0);
        *seq += 1;
        let sequence = *seq;
        self.writer
            .write_to_known_channel(
                &MessageHeader {
                    channel_id,
                    sequence,
                    log_time: log_time_ns,
                    publish_time: publish_time_ns,
                },
                cdr,
            )
            .map_err(|e| RecordError::Mcap(self.path.clone(), chain(&e)))?;
        self.summary.messages += 1;
        self.summary.bytes += cdr.len() as u64;
        Ok(())
    }

    /// Writes a message; its publish time is its header stamp when it has one.
    pub fn write<M: Message>(
        &mut self,
        key: &str,
        msg: &M,
        log_time_ns: u64,
    ) -> Result<(), RecordError> {
        let publish = msg
            .stamp()
            .map_or(log_time_ns, |t| t.as_nanos().max(0) as u64);
        self.write_raw(key, M::DEF, log_time_ns, publish, &msg.to_cdr())
    }

    /// Writes a camera image as `encodings` store it: on `key` (raw colour, depth), on
    /// `compressed_key` (JPEG/PNG colour) or not at all. An image the codec cannot convert
    /// is written as it came, with a warning.
    pub fn write_image(
        &mut self,
        key: &str,
        compressed_key: Option<&str>,
        image: &Image,
        stored: Result<Stored, codec::CodecError>,
        log_time_ns: u64,
    ) -> Result<(), RecordError> {
        match stored {
            Ok(Stored::Image(im)) => self.write(key, &im, log_time_ns),
            Ok(Stored::Compressed(c)) => match compressed_key {
                Some(ck) => self.write(ck, &c, log_time_ns),
                None => self.write(key, image, log_time_ns),
            },
            Ok(Stored::Dropped) => Ok(()),
            Err(e) => {
                if !self.codec_warned {
                    tracing::warn!("{key}: image written as it came ({e})");
                    self.codec_warned = true;
                }
                self.write(key, image, log_time_ns)
            }
        }
    }

    /// Ends the current chunk and flushes it to disk (readable after a crash from here on).
    pub fn flush(&mut self) -> Result<(), RecordError> {
        self.writer
            .flush()
            .map_err(|e| RecordError::Mcap(self.path.clone(), chain(&e)))
    }

    /// Writes the summary and closes the file.
    pub fn finish(mut self) -> Result<RecordSummary, RecordError> {
        self.writer
            .finish()
            .map_err(|e| RecordError::Mcap(self.path.clone(), chain(&e)))?;
        Ok(self.summary)
    }
}

/// One item for the recorder thread.
#[derive(Debug)]
pub enum RecordItem {
    /// A CDR payload on a key.
    Message {
        /// Bus key.
        key: String,
        /// The message type.
        kind: MessageKind,
        /// Receive/log time, ns since the Unix epoch (or simulated time).
        log_time_ns: u64,
        /// Publish time (header stamp), ns.
        publish_time_ns: u64,
        /// The payload.
        cdr: bytes::Bytes,
    },
    /// A camera's colour image, stored as the recorder's [`Encodings`] say (compressed on
    /// this thread, never on the caller's).
    Color {
        /// Bus key of the raw image (`<ns>/camera/<cam>/image_raw`).
        key: String,
        /// Bus key of the compressed image (`<ns>/camera/<cam>/image_raw/compressed`).
        compressed_key: String,
        /// Receive/log time, ns.
        log_time_ns: u64,
        /// The image as captured.
        image: Image,
    },
    /// A camera's depth image (`32FC1` metres), stored as the recorder's [`Encodings`] say.
    Depth {
        /// Bus key (`<ns>/camera/<cam>/depth/image_raw`).
        key: String,
        /// Receive/log time, ns.
        log_time_ns: u64,
        /// The image as rendered.
        image: Image,
    },
    /// Close the current file and start another.
    NewFile {
        /// The new file.
        path: PathBuf,
        /// Its metadata.
        metadata: BTreeMap<String, String>,
    },
    /// Close the current file (and report its summary).
    CloseFile,
}

/// The MCAP writer as the consumer of a hand-off thread: items switch files and write
/// messages (camera images converted as its [`Encodings`] say); a write error (disk full)
/// closes the file it was writing, so it stays readable, and stops the recorder.
#[derive(Debug, Default)]
pub struct McapConsumer {
    current: Option<McapRecorder>,
    files: Vec<RecordSummary>,
    encodings: Encodings,
}

impl McapConsumer {
    /// A consumer storing camera images as `encodings` say.
    pub fn new(encodings: Encodings) -> Self {
        Self {
            encodings,
            ..Self::default()
        }
    }

    fn write(&mut self, item: RecordItem) -> Result<(), RecordError> {
        let enc = self.encodings;
        let Some(r) = self.current.as_mut() else {
            return Ok(());
        };
        match item {
            RecordItem::Message {
                key,
                kind,
                log_time_ns,
                publish_time_ns,
                cdr,
            } => r.write_raw(&key, kind.def(), log_time_ns, publish_time_ns, &cdr),
            RecordItem::Color {
                key,
                compressed_key,
                log_time_ns,
                image,
            } => {
                let stored = enc.color.store(&image);
                r.write_image(&key, Some(&compressed_key), &image, stored, log_time_ns)
            }
            RecordItem::Depth {
                key,
                log_time_ns,
                image,
            } => {
                let stored = enc.depth.store(&image);
                r.write_image(&key, None, &image, stored, log_time_ns)
            }
            RecordItem::NewFile { .. } | RecordItem::CloseFile => Ok(()),
        }
    }

    fn close_current(&mut self) -> Result<(), String> {
        if let Some(r) = self.current.take() {
            self.files.push(r.finish().map_err(|e| chain(&e))?);
        }
        Ok(())
    }
}

impl Consumer for McapConsumer {
    type Item = RecordItem;
    type Report = Vec<RecordSummary>;

    fn consume(&mut self, item: RecordItem) -> Result<(), String> {
        match item {
            RecordItem::NewFile { path, metadata } => {
                self.close_current()?;
                self.current =
                    Some(McapRecorder::create(&path, &metadata, None).map_err(|e| chain(&e))?);
                Ok(())
            }
            RecordItem::CloseFile => self.close_current(),
            item => {
                if let Err(e) = self.write(item) {
                    // Close what was written so it stays readable.
                    let _ = self.close_current();
                    return Err(chain(&e));
                }
                Ok(())
            }
        }
    }

    fn close(&mut self) -> Result<(), String> {
        self.close_current()
    }

    fn finish(self) -> Vec<RecordSummary> {
        self.files
    }
}

/// An [`McapRecorder`] on the thread `sinew-recorder`: [`Handoff::send`] never waits (a full
/// channel drops and counts), [`Handoff::send_blocking`] does (file boundaries, lockstep).
pub type RecorderThread = Handoff<McapConsumer>;

/// Starts the recorder thread with a channel of `capacity` items, storing camera images as
/// [`Encodings::default`] says.
pub fn spawn_recorder(capacity: usize) -> std::io::Result<RecorderThread> {
    spawn_recorder_with(capacity, Encodings::default())
}

/// Starts the recorder thread with a channel of `capacity` items, storing camera images as
/// `encodings` say.
pub fn spawn_recorder_with(
    capacity: usize,
    encodings: Encodings,
) -> std::io::Result<RecorderThread> {
    Handoff::spawn("sinew-recorder", capacity, McapConsumer::new(encodings))
}

/// What the recorder thread reports when closed: the files closed, items dropped, the error
/// that stopped it.
pub type RecorderReport = Closed<Option<Vec<RecordSummary>>>;

/// One message read back.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedMessage {
    /// ROS topic name (`/so101/joint_states`).
    pub topic: String,
    /// Schema name (`sensor_msgs/msg/JointState`).
    pub schema: String,
    /// Log time, ns.
    pub log_time_ns: u64,
    /// Publish time, ns.
    pub publish_time_ns: u64,
    /// Sequence number within the channel.
    pub sequence: u32,
    /// CDR payload.
    pub data: bytes::Bytes,
}

impl RecordedMessage {
    /// The message decoded (known types only).
    pub fn decode(&self) -> Option<Result<sinew_msgs::AnyMessage, sinew_msgs::DecodeError>> {
        MessageKind::from_type_name(&self.schema).map(|k| k.decode(&self.data))
    }
}

/// A recording read back.
#[derive(Debug, Clone)]
pub struct Recording {
    /// Messages in file order.
    pub messages: Vec<RecordedMessage>,
    /// The `sinew` metadata record, if any.
    pub metadata: BTreeMap<String, String>,
    /// Set when the file ends early (a crash): what went wrong after the last complete part.
    pub truncated: Option<String>,
}

/// Reads every message of `path`. A file cut short yields the messages of its complete chunks
/// and says where it ends in `truncated`; a file that is not MCAP at all is an error.
pub fn read_recording(path: &Path) -> Result<Recording, RecordError> {
    let buf = std::fs::read(path).map_err(|e| RecordError::Io(path.to_owned(), e))?;
    let mcap_err = |e: mcap::McapError| RecordError::Mcap(path.to_owned(), chain(&e));
    if buf.len() < 8 || &buf[..8] != mcap::MAGIC {
        return Err(RecordError::Mcap(
            path.to_owned(),
            "not an MCAP file (no magic at the start)".into(),
        ));
    }
    let mut messages = Vec::new();
    let mut truncated = None;
    let stream =
        mcap::MessageStream::new_with_options(&buf, mcap::read::Options::IgnoreEndMagic.into())
            .map_err(mcap_err)?;
    for m in stream {
        match m {
            Ok(m) => messages.push(RecordedMessage {
                topic: m.channel.topic.clone(),
                schema: m
                    .channel
                    .schema
                    .as_ref()
                    .map(|s| s.name.clone())
                    .unwrap_or_default(),
                log_time_ns: m.log_time,
                publish_time_ns: m.publish_time,
                sequence: m.sequence,
                data: bytes::Bytes::copy_from_slice(&m.data),
            }),
            Err(e) => {
                truncated = Some(format!("after {} messages: {e}", messages.len()));
                break;
            }
        }
    }
    let mut metadata = BTreeMap::new();
    if let Ok(reader) =
        mcap::read::LinearReader::new_with_options(&buf, mcap::read::Options::IgnoreEndMagic.into())
    {
        for rec in reader {
            match rec {
                Ok(mcap::records::Record::Metadata(m)) if m.name == "sinew" => {
                    metadata = m.metadata
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
    }
    Ok(Recording {
        messages,
        metadata,
        truncated,
    })
}

/// Per-topic statistics.
#[derive(Debug, Clone, Serialize)]
pub struct TopicInfo {
    /// ROS topic.
    pub topic: String,
    /// Message type.
    pub schema: String,
    /// Messages.
    pub count: u64,
    /// Mean rate over the topic's own span, Hz.
    pub rate_hz: f64,
    /// Payload bytes.
    pub bytes: u64,
}

/// What a recording holds.
#[derive(Debug, Clone, Serialize)]
pub struct RecordingInfo {
    /// Topics, sorted by name.
    pub topics: Vec<TopicInfo>,
    /// Messages in all.
    pub messages: u64,
    /// From the first to the last log time, s.
    pub duration_s: f64,
    /// The `sinew` metadata.
    pub metadata: BTreeMap<String, String>,
    /// Set when the file was cut short.
    pub truncated: Option<String>,
}

impl Recording {
    /// Statistics per topic.
    pub fn info(&self) -> RecordingInfo {
        let mut by: BTreeMap<&str, (String, u64, u64, u64, u64)> = BTreeMap::new();
        for m in &self.messages {
            let e = by
                .entry(&m.topic)
                .or_insert_with(|| (m.schema.clone(), 0, u64::MAX, 0, 0));
            e.1 += 1;
            e.2 = e.2.min(m.log_time_ns);
            e.3 = e.3.max(m.log_time_ns);
            e.4 += m.data.len() as u64;
        }
        let first = self
            .messages
            .iter()
            .map(|m| m.log_time_ns)
            .min()
            .unwrap_or(0);
        let last = self
            .messages
            .iter()
            .map(|m| m.log_time_ns)
            .max()
            .unwrap_or(0);
        RecordingInfo {
            topics: by
                .into_iter()
                .map(|(t, (schema, count, lo, hi, bytes))| TopicInfo {
                    topic: t.to_owned(),
                    schema,
                    count,
                    rate_hz: if count > 1 && hi > lo {
                        (count - 1) as f64 / ((hi - lo) as f64 * 1e-9)
                    } else {
                        0.0
                    },
                    bytes,
                })
                .collect(),
            messages: self.messages.len() as u64,
            duration_s: (last - first) as f64 * 1e-9,
            metadata: self.metadata.clone(),
            truncated: self.truncated.clone(),
        }
    }
}
