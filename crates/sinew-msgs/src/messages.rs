//! The ROS 2 message types Sinew speaks, each with its `.msg` definition and CDR layout.
//!
//! The layout of each message is written once, in its [`Message`] impl.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::cdr::{CountingSink, Reader, Sink, SliceSink, Writer};
use crate::error::{DecodeError, DecodeErrorKind};

/// A ROS message definition: its full name, its `.msg` text (as rosbag2 stores it, without
/// comments) and the message types it uses.
#[derive(Debug)]
pub struct MsgDef {
    /// `pkg/msg/Name`.
    pub name: &'static str,
    /// The `.msg` text, one field per line, ending with a newline.
    pub text: &'static str,
    /// Message types this one refers to, in order of first use.
    pub deps: &'static [&'static MsgDef],
}

impl MsgDef {
    /// `pkg/Name`, the form used inside concatenated definitions.
    pub fn short_name(&self) -> String {
        self.name.replacen("/msg/", "/", 1)
    }

    /// The definition with every dependency appended, depth first, each once, separated by
    /// `=` lines and `MSG: pkg/Name` headers: the `ros2msg` schema text of rosbag2 and MCAP.
    pub fn full_text(&self) -> String {
        let mut seen: Vec<&'static str> = vec![self.name];
        let mut out = self.text.to_owned();
        fn walk(d: &MsgDef, seen: &mut Vec<&'static str>, out: &mut String) {
            for dep in d.deps {
                if seen.contains(&dep.name) {
                    continue;
                }
                seen.push(dep.name);
                out.push_str(&"=".repeat(80));
                out.push_str("\nMSG: ");
                out.push_str(&dep.short_name());
                out.push('\n');
                out.push_str(dep.text);
                walk(dep, seen, out);
            }
        }
        walk(self, &mut seen, &mut out);
        out
    }

    /// The DDS type name, e.g. `sensor_msgs::msg::dds_::Image_` (used by ROS 2 over DDS and by
    /// zenoh-bridge-ros2dds and rmw_zenoh).
    pub fn dds_type_name(&self) -> String {
        let mut parts = self.name.split('/');
        let (pkg, _msg, name) = (
            parts.next().unwrap_or_default(),
            parts.next().unwrap_or_default(),
            parts.next().unwrap_or_default(),
        );
        format!("{pkg}::msg::dds_::{name}_")
    }
}

/// A ROS 2 message with a CDR encoding.
pub trait Message: Sized + Clone + std::fmt::Debug + PartialEq {
    /// The message's definition.
    const DEF: &'static MsgDef;

    /// Writes the fields (after the encapsulation header).
    fn write_fields<S: Sink>(&self, w: &mut Writer<S>);

    /// Reads the fields (after the encapsulation header) and validates them.
    fn read_fields(r: &mut Reader<'_>) -> Result<Self, DecodeError>;

    /// The header's capture time, for message types with a `std_msgs/Header`.
    fn stamp(&self) -> Option<Time> {
        None
    }

    /// Encodes the message as a CDR payload, header included.
    fn to_cdr(&self) -> Vec<u8> {
        let mut w = Writer::new(Vec::with_capacity(self.encoded_len()));
        self.write_fields(&mut w);
        w.finish()
    }

    /// The exact length of [`Message::to_cdr`]'s output, in bytes.
    fn encoded_len(&self) -> usize {
        let mut w = Writer::new(CountingSink::default());
        self.write_fields(&mut w);
        w.finish().0
    }

    /// Encodes into `buf`, which must be exactly [`Message::encoded_len`] bytes long (for
    /// example a shared-memory buffer). Returns false, leaving `buf` partly written, otherwise.
    fn write_cdr_into(&self, buf: &mut [u8]) -> bool {
        let len = buf.len();
        let mut w = Writer::new(SliceSink::new(buf));
        self.write_fields(&mut w);
        let sink = w.finish();
        !sink.overflowed() && sink.written() == len
    }

    /// Decodes a CDR payload. Byte sequences (`uint8[]`) in the result share `payload`'s memory.
    fn from_cdr(payload: &Bytes) -> Result<Self, DecodeError> {
        let mut r = Reader::new(payload)?;
        let m = Self::read_fields(&mut r)?;
        r.finish()?;
        Ok(m)
    }

    /// Decodes a CDR payload from a borrowed slice: the payload is copied once.
    fn from_cdr_slice(payload: &[u8]) -> Result<Self, DecodeError> {
        Self::from_cdr(&Bytes::copy_from_slice(payload))
    }
}

// ---------------------------------------------------------------- builtin_interfaces

/// `builtin_interfaces/msg/Time`: seconds and nanoseconds since the Unix epoch (or since the
/// start of simulated time).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(default)]
pub struct Time {
    /// Whole seconds.
    pub sec: i32,
    /// Nanoseconds, 0..1e9.
    pub nanosec: u32,
}

/// `builtin_interfaces/msg/Duration`.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(default)]
pub struct Duration {
    /// Whole seconds.
    pub sec: i32,
    /// Nanoseconds, 0..1e9.
    pub nanosec: u32,
}

pub(crate) static TIME_DEF: MsgDef = MsgDef {
    name: "builtin_interfaces/msg/Time",
    text: "int32 sec\nuint32 nanosec\n",
    deps: &[],
};
pub(crate) static DURATION_DEF: MsgDef = MsgDef {
    name: "builtin_interfaces/msg/Duration",
    text: "int32 sec\nuint32 nanosec\n",
    deps: &[],
};

fn split_nanos(total_ns: i64) -> (i32, u32) {
    let sec = total_ns.div_euclid(1_000_000_000);
    let ns = total_ns.rem_euclid(1_000_000_000) as u32;
    (sec.clamp(i32::MIN as i64, i32::MAX as i64) as i32, ns)
}

impl Time {
    /// From nanoseconds since the epoch (saturating at the `i32` seconds range).
    pub fn from_nanos(ns: i64) -> Self {
        let (sec, nanosec) = split_nanos(ns);
        Self { sec, nanosec }
    }
    /// Nanoseconds since the epoch.
    pub fn as_nanos(&self) -> i64 {
        self.sec as i64 * 1_000_000_000 + self.nanosec as i64
    }
    /// The wall clock now.
    pub fn now() -> Self {
        Self::from_system_time(std::time::SystemTime::now())
    }
    /// From a `SystemTime`; times before the epoch become negative.
    pub fn from_system_time(t: std::time::SystemTime) -> Self {
        let ns = match t.duration_since(std::time::UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
            Err(e) => -i64::try_from(e.duration().as_nanos()).unwrap_or(i64::MAX),
        };
        Self::from_nanos(ns)
    }
    fn write<S: Sink>(&self, w: &mut Writer<S>) {
        w.write_i32(self.sec);
        w.write_u32(self.nanosec);
    }
    fn read(r: &mut Reader<'_>, sec: &'static str, ns: &'static str) -> Result<Self, DecodeError> {
        Ok(Self {
            sec: r.read_i32(sec)?,
            nanosec: r.read_u32(ns)?,
        })
    }
}

impl Duration {
    /// From nanoseconds.
    pub fn from_nanos(ns: i64) -> Self {
        let (sec, nanosec) = split_nanos(ns);
        Self { sec, nanosec }
    }
    /// From seconds.
    pub fn from_secs_f64(s: f64) -> Self {
        Self::from_nanos((s * 1e9).round() as i64)
    }
    /// In seconds.
    pub fn as_secs_f64(&self) -> f64 {
        self.sec as f64 + self.nanosec as f64 * 1e-9
    }
    fn write<S: Sink>(&self, w: &mut Writer<S>) {
        w.write_i32(self.sec);
        w.write_u32(self.nanosec);
    }
}

impl Message for Time {
    const DEF: &'static MsgDef = &TIME_DEF;
    fn write_fields<S: Sink>(&self, w: &mut Writer<S>) {
        self.write(w);
    }
    fn read_fields(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Self::read(r, "sec", "nanosec")
    }
}

impl Message for Duration {
    const DEF: &'static MsgDef = &DURATION_DEF;
    fn write_fields<S: Sink>(&self, w: &mut Writer<S>) {
        self.write(w);
    }
    fn read_fields(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            sec: r.read_i32("sec")?,
            nanosec: r.read_u32("nanosec")?,
        })
    }
}

// ---------------------------------------------------------------- std_msgs

/// `std_msgs/msg/Header`: when the data was captured and in which coordinate frame.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Header {
    /// Capture time.
    pub stamp: Time,
    /// Coordinate frame of the data (a link name).
    pub frame_id: String,
}

pub(crate) static HEADER_DEF: MsgDef = MsgDef {
    name: "std_msgs/msg/Header",
    text: "builtin_interfaces/Time stamp\nstring frame_id\n",
    deps: &[&TIME_DEF],
};

impl Header {
    /// A header stamped `stamp` in frame `frame_id`.
    pub fn new(stamp: Time, frame_id: impl Into<String>) -> Self {
        Self {
            stamp,
            frame_id: frame_id.into(),
        }
    }
    fn write<S: Sink>(&self, w: &mut Writer<S>) {
        self.stamp.write(w);
        w.write_string(&self.frame_id);
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            stamp: Time::read(r, "header.stamp.sec", "header.stamp.nanosec")?,
            frame_id: r.read_string("header.frame_id")?,
        })
    }
}

impl Message for Header {
    const DEF: &'static MsgDef = &HEADER_DEF;
    fn write_fields<S: Sink>(&self, w: &mut Writer<S>) {
        self.write(w);
    }
    fn read_fields(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Self::read(r)
    }
}

/// `std_msgs/msg/String` (named `StringMsg` to keep `String` for Rust's).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct StringMsg {
    /// The text.
    pub data: String,
}

pub(crate) static STRING_DEF: MsgDef = MsgDef {
    name: "std_msgs/msg/String",
    text: "string data\n",
    deps: &[],
};

impl Message for StringMsg {
    const DEF: &'static MsgDef = &STRING_DEF;
    fn write_fields<S: Sink>(&self, w: &mut Writer<S>) {
        w.write_string(&self.data);
    }
    fn read_fields(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            data: r.read_string("data")?,
        })
    }
}

// ---------------------------------------------------------------- sensor_msgs

/// `sensor_msgs/msg/Image`: an uncompressed image. `data` holds `height` rows of `step` bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Image {
    /// Capture time and camera optical frame.
    pub header: Header,
    /// Rows, in pixels.
    pub height: u32,
    /// Columns, in pixels.
    pub width: u32,
    /// Pixel encoding (`rgb8`, `bgr8`, `mono8`, `16UC1`, `32FC1`, ...).
    pub encoding: String,
    /// 1 when multi-byte pixel values are big endian.
    pub is_bigendian: u8,
    /// Bytes per row.
    pub step: u32,
    /// Pixel data, `step * height` bytes.
    pub data: Bytes,
}

pub(crate) static IMAGE_DEF: MsgDef = MsgDef {
    name: "sensor_msgs/msg/Image",
    text: "std_msgs/Header header\nuint32 height\nuint32 width\nstring encoding\nuint8 is_bigendian\nuint32 step\nuint8[] data\n",
    deps: &[&HEADER_DEF],
};

/// Bytes per pixel and channel count of a ROS image encoding
/// (`sensor_msgs/image_encodings.hpp`), or `None` when it is unknown.
pub fn encoding_layout(encoding: &str) -> Option<(u32, u32)> {
    let named = match encoding {
        "rgb8" | "bgr8" => Some((3, 3)),
        "rgba8" | "bgra8" => Some((4, 4)),
        "rgb16" | "bgr16" => Some((6, 3)),
        "rgba16" | "bgra16" => Some((8, 4)),
        "mono8" => Some((1, 1)),
        "mono16" => Some((2, 1)),
        "bayer_rggb8" | "bayer_bggr8" | "bayer_gbrg8" | "bayer_grbg8" => Some((1, 1)),
        "bayer_rggb16" | "bayer_bggr16" | "bayer_gbrg16" | "bayer_grbg16" => Some((2, 1)),
        "yuv422" | "UYVY" | "YUYV" | "yuv422_yuy2" => Some((2, 2)),
        _ => None,
    };
    if named.is_some() {
        return named;
    }
    // Generic OpenCV-style encodings: 8UC3, 16SC1, 32FC1, 64FC2 ...
    let (depth, rest) = ["8U", "8S", "16U", "16S", "32S", "32F", "64F"]
        .iter()
        .find_map(|d| encoding.strip_prefix(d).map(|r| (*d, r)))?;
    let channels: u32 = match rest.strip_prefix('C')? {
        "" => 1,
        n => n.parse().ok().filter(|c| (1..=4).contains(c))?,
    };
    let bytes: u32 = depth
        .trim_end_matches(['U', 'S', 'F'])
        .parse::<u32>()
        .ok()?
        / 8;
    Some((bytes * channels, channels))
}

impl Image {
    /// The pixels as packed RGB (3 bytes a pixel, rows without padding), from any 8-bit colour
    /// or grey encoding (`rgb8`, `bgr8`, `rgba8`, `bgra8`, `mono8`); `Err` names what is wrong
    /// (another encoding, sizes that disagree with the data).
    pub fn to_packed_rgb(&self) -> Result<Vec<u8>, String> {
        let (w, h, step) = (
            self.width as usize,
            self.height as usize,
            self.step as usize,
        );
        let bpp = match self.encoding.as_str() {
            "rgb8" | "bgr8" => 3,
            "rgba8" | "bgra8" => 4,
            "mono8" | "8UC1" => 1,
            other => {
                return Err(format!(
                    "encoding `{other}` is not supported (rgb8, bgr8, rgba8, bgra8, mono8 are)"
                ))
            }
        };
        if w == 0 || h == 0 || step < w * bpp || self.data.len() < step * h {
            return Err(format!(
                "{w}x{h} {} image with step {step} and {} data bytes is inconsistent",
                self.encoding,
                self.data.len()
            ));
        }
        let bgr = self.encoding.starts_with("bgr");
        let mut out = Vec::with_capacity(w * h * 3);
        for row in self.data.chunks_exact(step).take(h) {
            for px in row[..w * bpp].chunks_exact(bpp) {
                match bpp {
                    1 => out.extend_from_slice(&[px[0], px[0], px[0]]),
                    _ if bgr => out.extend_from_slice(&[px[2], px[1], px[0]]),
                    _ => out.extend_from_slice(&px[..3]),
                }
            }
        }
        Ok(out)
    }

    /// An `rgb8` image of `width` x `height` with tightly packed rows.
    pub fn rgb8(header: Header, width: u32, height: u32, data: impl Into<Bytes>) -> Self {
        Self {
            header,
            height,
            width,
            encoding: "rgb8".into(),
            is_bigendian: 0,
            step: width * 3,
            data: data.into(),
        }
    }

    /// A `32FC1` depth image (metres) with tightly packed little-endian rows.
    pub fn depth_32fc1(header: Header, width: u32, height: u32, metres: &[f32]) -> Self {
        let mut data = Vec::with_capacity(metres.len() * 4);
        for m in metres {
            data.extend_from_slice(&m.to_le_bytes());
        }
        Self {
            header,
            height,
            width,
            encoding: "32FC1".into(),
            is_bigendian: 0,
            step: width * 4,
            data: data.into(),
        }
    }

    /// Checks the encoding is known, the step covers a row and `data` is `step * height` bytes.
    pub fn validate(&self) -> Result<(), DecodeError> {
        let (bpp, _) = encoding_layout(&self.encoding).ok_or_else(|| DecodeError {
            field: "encoding",
            kind: DecodeErrorKind::UnknownEncoding(self.encoding.clone()),
        })?;
        if self.is_bigendian > 1 {
            return Err(DecodeError {
                field: "is_bigendian",
                kind: DecodeErrorKind::BadBool(self.is_bigendian),
            });
        }
        if (self.step as u64) < self.width as u64 * bpp as u64 {
            return Err(DecodeError {
                field: "step",
                kind: DecodeErrorKind::StepTooSmall {
                    step: self.step,
                    width: self.width,
                    bytes_per_pixel: bpp,
                },
            });
        }
        let expected = self.step as u64 * self.height as u64;
        if self.data.len() as u64 != expected {
            return Err(DecodeError {
                field: "data",
                kind: DecodeErrorKind::DataSizeMismatch {
                    expected,
                    actual: self.data.len() as u64,
                },
            });
        }
        Ok(())
    }

    /// Mean of each channel over all pixels, in the encoding's units (0-255 for 8-bit
    /// encodings, metres for `32FC1` depth). NaN and infinite float values are skipped.
    /// `None` for encodings without a plain per-pixel layout (bayer, yuv) or invalid images.
    pub fn channel_means(&self) -> Option<Vec<f64>> {
        self.validate().ok()?;
        let (bpp, channels) = encoding_layout(&self.encoding)?;
        if self.encoding.starts_with("bayer")
            || matches!(
                self.encoding.as_str(),
                "yuv422" | "UYVY" | "YUYV" | "yuv422_yuy2"
            )
        {
            return None;
        }
        let elem = (bpp / channels) as usize;
        let float = self.encoding.contains('F');
        let signed = self.encoding.contains('S') && !float;
        let big = self.is_bigendian == 1;
        let mut sums = vec![0f64; channels as usize];
        let mut counts = vec![0u64; channels as usize];
        let row_bytes = (self.width * bpp) as usize;
        for row in self.data.chunks_exact(self.step as usize) {
            for (i, v) in row[..row_bytes].chunks_exact(elem).enumerate() {
                let x = decode_element(v, float, signed, big);
                if x.is_finite() {
                    let c = i % channels as usize;
                    sums[c] += x;
                    counts[c] += 1;
                }
            }
        }
        Some(
            sums.iter()
                .zip(&counts)
                .map(|(s, &n)| if n == 0 { f64::NAN } else { s / n as f64 })
                .collect(),
        )
    }
}

fn decode_element(v: &[u8], float: bool, signed: bool, big: bool) -> f64 {
    macro_rules! num {
        ($t:ty) => {{
            let mut a = [0u8; std::mem::size_of::<$t>()];
            a.copy_from_slice(v);
            (if big {
                <$t>::from_be_bytes(a)
            } else {
                <$t>::from_le_bytes(a)
            }) as f64
        }};
    }
    match (v.len(), float, signed) {
        (1, _, false) => v[0] as f64,
        (1, _, true) => v[0] as i8 as f64,
        (2, _, false) => num!(u16),
        (2, _, true) => num!(i16),
        (4, true, _) => num!(f32),
        (4, false, _) => num!(i32),
        (8, _, _) => num!(f64),
        _ => f64::NAN,
    }
}

impl Message for Image {
    const DEF: &'static MsgDef = &IMAGE_DEF;
    fn stamp(&self) -> Option<Time> {
        Some(self.header.stamp)
    }
    fn write_fields<S: Sink>(&self, w: &mut Writer<S>) {
        self.header.write(w);
        w.write_u32(self.height);
        w.write_u32(self.width);
        w.write_string(&self.encoding);
        w.write_u8(self.is_bigendian);
        w.write_u32(self.step);
        w.write_byte_seq(&self.data);
    }
    fn read_fields(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let m = Self {
            header: Header::read(r)?,
            height: r.read_u32("height")?,
            width: r.read_u32("width")?,
            encoding: r.read_string("encoding")?,
            is_bigendian: r.read_u8("is_bigendian")?,
            step: r.read_u32("step")?,
            data: r.read_byte_seq("data")?,
        };
        m.validate()?;
        Ok(m)
    }
}

/// `sensor_msgs/msg/CompressedImage`: a JPEG or PNG image.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CompressedImage {
    /// Capture time and camera optical frame.
    pub header: Header,
    /// `jpeg` or `png` (optionally with a pixel-format prefix, as image_transport writes).
    pub format: String,
    /// The compressed bytes.
    pub data: Bytes,
}

pub(crate) static COMPRESSED_IMAGE_DEF: MsgDef = MsgDef {
    name: "sensor_msgs/msg/CompressedImage",
    text: "std_msgs/Header header\nstring format\nuint8[] data\n",
    deps: &[&HEADER_DEF],
};

impl Message for CompressedImage {
    const DEF: &'static MsgDef = &COMPRESSED_IMAGE_DEF;
    fn stamp(&self) -> Option<Time> {
        Some(self.header.stamp)
    }
    fn write_fields<S: Sink>(&self, w: &mut Writer<S>) {
        self.header.write(w);
        w.write_string(&self.format);
        w.write_byte_seq(&self.data);
    }
    fn read_fields(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            header: Header::read(r)?,
            format: r.read_string("format")?,
            data: r.read_byte_seq("data")?,
        })
    }
}

/// `sensor_msgs/msg/JointState`: measured joint positions (rad or m), velocities (rad/s or
/// m/s) and efforts (N m or N). Any array may be empty; non-empty ones match `name`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct JointState {
    /// Time of measurement.
    pub header: Header,
    /// Joint names.
    pub name: Vec<String>,
    /// Positions, rad or m.
    pub position: Vec<f64>,
    /// Velocities, rad/s or m/s.
    pub velocity: Vec<f64>,
    /// Efforts, N m or N.
    pub effort: Vec<f64>,
}

pub(crate) static JOINT_STATE_DEF: MsgDef = MsgDef {
    name: "sensor_msgs/msg/JointState",
    text: "std_msgs/Header header\nstring[] name\nfloat64[] position\nfloat64[] velocity\nfloat64[] effort\n",
    deps: &[&HEADER_DEF],
};

impl Message for JointState {
    const DEF: &'static MsgDef = &JOINT_STATE_DEF;
    fn stamp(&self) -> Option<Time> {
        Some(self.header.stamp)
    }
    fn write_fields<S: Sink>(&self, w: &mut Writer<S>) {
        self.header.write(w);
        w.write_string_seq(&self.name);
        w.write_f64_seq(&self.position);
        w.write_f64_seq(&self.velocity);
        w.write_f64_seq(&self.effort);
    }
    fn read_fields(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            header: Header::read(r)?,
            name: r.read_string_seq("name")?,
            position: r.read_f64_seq("position")?,
            velocity: r.read_f64_seq("velocity")?,
            effort: r.read_f64_seq("effort")?,
        })
    }
}

// ---------------------------------------------------------------- trajectory_msgs

/// `trajectory_msgs/msg/JointTrajectoryPoint`: one waypoint, reached `time_from_start` after
/// the trajectory's header stamp.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct JointTrajectoryPoint {
    /// Target positions, rad or m.
    pub positions: Vec<f64>,
    /// Target velocities, rad/s or m/s.
    pub velocities: Vec<f64>,
    /// Target accelerations, rad/s^2 or m/s^2.
    pub accelerations: Vec<f64>,
    /// Feed-forward efforts.
    pub effort: Vec<f64>,
    /// When to reach this point, relative to the header stamp.
    pub time_from_start: Duration,
}

/// `trajectory_msgs/msg/JointTrajectory`: the joint command Sinew publishes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct JointTrajectory {
    /// Start time of the trajectory.
    pub header: Header,
    /// Joint names, in the order of every point's arrays.
    pub joint_names: Vec<String>,
    /// Waypoints.
    pub points: Vec<JointTrajectoryPoint>,
}

pub(crate) static JOINT_TRAJECTORY_POINT_DEF: MsgDef = MsgDef {
    name: "trajectory_msgs/msg/JointTrajectoryPoint",
    text: "float64[] positions\nfloat64[] velocities\nfloat64[] accelerations\nfloat64[] effort\nbuiltin_interfaces/Duration time_from_start\n",
    deps: &[&DURATION_DEF],
};

pub(crate) static JOINT_TRAJECTORY_DEF: MsgDef = MsgDef {
    name: "trajectory_msgs/msg/JointTrajectory",
    text: "std_msgs/Header header\nstring[] joint_names\ntrajectory_msgs/JointTrajectoryPoint[] points\n",
    deps: &[&HEADER_DEF, &JOINT_TRAJECTORY_POINT_DEF],
};

impl JointTrajectoryPoint {
    fn write<S: Sink>(&self, w: &mut Writer<S>) {
        w.write_f64_seq(&self.positions);
        w.write_f64_seq(&self.velocities);
        w.write_f64_seq(&self.accelerations);
        w.write_f64_seq(&self.effort);
        self.time_from_start.write(w);
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            positions: r.read_f64_seq("points[].positions")?,
            velocities: r.read_f64_seq("points[].velocities")?,
            accelerations: r.read_f64_seq("points[].accelerations")?,
            effort: r.read_f64_seq("points[].effort")?,
            time_from_start: Duration {
                sec: r.read_i32("points[].time_from_start.sec")?,
                nanosec: r.read_u32("points[].time_from_start.nanosec")?,
            },
        })
    }
}

impl Message for JointTrajectoryPoint {
    const DEF: &'static MsgDef = &JOINT_TRAJECTORY_POINT_DEF;
    fn write_fields<S: Sink>(&self, w: &mut Writer<S>) {
        self.write(w);
    }
    fn read_fields(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Self::read(r)
    }
}

impl Message for JointTrajectory {
    const DEF: &'static MsgDef = &JOINT_TRAJECTORY_DEF;
    fn stamp(&self) -> Option<Time> {
        Some(self.header.stamp)
    }
    fn write_fields<S: Sink>(&self, w: &mut Writer<S>) {
        self.header.write(w);
        w.write_string_seq(&self.joint_names);
        w.write_len(self.points.len());
        for p in &self.points {
            p.write(w);
        }
    }
    fn read_fields(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let header = Header::read(r)?;
        let joint_names = r.read_string_seq("joint_names")?;
        // A point is at least 4 sequence counts and a duration: 24 bytes.
        let n = r.read_count("points", 24)?;
        let mut points = Vec::with_capacity(n);
        for _ in 0..n {
            points.push(JointTrajectoryPoint::read(r)?);
        }
        Ok(Self {
            header,
            joint_names,
            points,
        })
    }
}

// ---------------------------------------------------------------- sinew_msgs (remote inference)

/// `sinew_msgs/msg/PolicyRequest`: one observation for a policy server (`sinew policy serve`).
/// Images carry their camera's name in `header.frame_id`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PolicyRequest {
    /// When the observation was taken.
    pub header: Header,
    /// The policy step it was taken for.
    pub step: u64,
    /// The language instruction.
    pub instruction: String,
    /// Measured joints (robot.toml order).
    pub joint_state: JointState,
    /// Raw camera frames.
    pub images: Vec<Image>,
    /// Compressed camera frames (JPEG or PNG).
    pub compressed_images: Vec<CompressedImage>,
}

pub(crate) static POLICY_REQUEST_DEF: MsgDef = MsgDef {
    name: "sinew_msgs/msg/PolicyRequest",
    text: "std_msgs/Header header\nuint64 step\nstring instruction\nsensor_msgs/JointState joint_state\nsensor_msgs/Image[] images\nsensor_msgs/CompressedImage[] compressed_images\n",
    deps: &[
        &HEADER_DEF,
        &JOINT_STATE_DEF,
        &IMAGE_DEF,
        &COMPRESSED_IMAGE_DEF,
    ],
};

impl Message for PolicyRequest {
    const DEF: &'static MsgDef = &POLICY_REQUEST_DEF;
    fn stamp(&self) -> Option<Time> {
        Some(self.header.stamp)
    }
    fn write_fields<S: Sink>(&self, w: &mut Writer<S>) {
        self.header.write(w);
        w.write_u64(self.step);
        w.write_string(&self.instruction);
        self.joint_state.write_fields(w);
        w.write_len(self.images.len());
        for i in &self.images {
            i.write_fields(w);
        }
        w.write_len(self.compressed_images.len());
        for c in &self.compressed_images {
            c.write_fields(w);
        }
    }
    fn read_fields(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let header = Header::read(r)?;
        let step = r.read_u64("step")?;
        let instruction = r.read_string("instruction")?;
        let joint_state = JointState::read_fields(r)?;
        // An image is at least a header, sizes, an encoding and a data count: 36 bytes.
        let n = r.read_count("images", 36)?;
        let mut images = Vec::with_capacity(n);
        for _ in 0..n {
            images.push(Image::read_fields(r)?);
        }
        let n = r.read_count("compressed_images", 20)?;
        let mut compressed_images = Vec::with_capacity(n);
        for _ in 0..n {
            compressed_images.push(CompressedImage::read_fields(r)?);
        }
        Ok(Self {
            header,
            step,
            instruction,
            joint_state,
            images,
            compressed_images,
        })
    }
}

/// `sinew_msgs/msg/PolicyReply`: a policy server's answer. `error` is empty on success;
/// otherwise it names what was wrong with the request and the rest is empty.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PolicyReply {
    /// The request's stamp.
    pub header: Header,
    /// Empty on success; what was wrong otherwise.
    pub error: String,
    /// The policy's id (its folder name) and version (its weights' digest).
    pub policy_id: String,
    /// Version.
    pub policy_version: String,
    /// `joint_position`, `joint_delta`, `ee_delta`, ...
    pub action_kind: String,
    /// Steps `T` of the chunk.
    pub steps: u32,
    /// Dimensions `D` per step.
    pub dims: u32,
    /// `T * D` actions, row-major, in the robot's units.
    pub actions: Vec<f64>,
    /// The tokens the model emitted.
    pub tokens: Vec<u32>,
    /// Time spent on the server, ms: waiting for a batch, preprocessing, the network, decoding.
    pub queue_ms: f64,
    /// Preprocessing, ms.
    pub preprocess_ms: f64,
    /// The network, ms.
    pub forward_ms: f64,
    /// Decoding, ms.
    pub decode_ms: f64,
    /// How many requests shared the forward pass.
    pub batch_size: u32,
}

pub(crate) static POLICY_REPLY_DEF: MsgDef = MsgDef {
    name: "sinew_msgs/msg/PolicyReply",
    text: "std_msgs/Header header\nstring error\nstring policy_id\nstring policy_version\nstring action_kind\nuint32 steps\nuint32 dims\nfloat64[] actions\nuint32[] tokens\nfloat64 queue_ms\nfloat64 preprocess_ms\nfloat64 forward_ms\nfloat64 decode_ms\nuint32 batch_size\n",
    deps: &[&HEADER_DEF],
};

impl Message for PolicyReply {
    const DEF: &'static MsgDef = &POLICY_REPLY_DEF;
    fn stamp(&self) -> Option<Time> {
        Some(self.header.stamp)
    }
    fn write_fields<S: Sink>(&self, w: &mut Writer<S>) {
        self.header.write(w);
        w.write_string(&self.error);
        w.write_string(&self.policy_id);
        w.write_string(&self.policy_version);
        w.write_string(&self.action_kind);
        w.write_u32(self.steps);
        w.write_u32(self.dims);
        w.write_f64_seq(&self.actions);
        w.write_u32_seq(&self.tokens);
        w.write_f64(self.queue_ms);
        w.write_f64(self.preprocess_ms);
        w.write_f64(self.forward_ms);
        w.write_f64(self.decode_ms);
        w.write_u32(self.batch_size);
    }
    fn read_fields(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let m = Self {
            header: Header::read(r)?,
            error: r.read_string("error")?,
            policy_id: r.read_string("policy_id")?,
            policy_version: r.read_string("policy_version")?,
            action_kind: r.read_string("action_kind")?,
            steps: r.read_u32("steps")?,
            dims: r.read_u32("dims")?,
            actions: r.read_f64_seq("actions")?,
            tokens: r.read_u32_seq("tokens")?,
            queue_ms: r.read_f64("queue_ms")?,
            preprocess_ms: r.read_f64("preprocess_ms")?,
            forward_ms: r.read_f64("forward_ms")?,
            decode_ms: r.read_f64("decode_ms")?,
            batch_size: r.read_u32("batch_size")?,
        };
        if u64::from(m.steps) * u64::from(m.dims) != m.actions.len() as u64 {
            return Err(DecodeError {
                field: "actions",
                kind: DecodeErrorKind::Inconsistent(format!(
                    "{} values for {} steps of {} dimensions",
                    m.actions.len(),
                    m.steps,
                    m.dims
                )),
            });
        }
        Ok(m)
    }
}
