//! ROS 2 wire types for Sinew and their CDR codec.
//!
//! This crate sits at the bottom of Sinew's crate graph: it knows nothing of zenoh, candle,
//! rapier or rerun. Each message type implements [`Message`]: its `.msg` definition text (for
//! MCAP `ros2msg` schemas) and a CDR encoding that is byte for byte what ROS 2 produces, so a
//! ROS 2 robot bridged onto zenoh (zenoh-bridge-ros2dds) talks to Sinew unchanged.
//!
//! ```
//! use sinew_msgs::{Header, JointState, Message, Time};
//! let js = JointState {
//!     header: Header::new(Time { sec: 1, nanosec: 5 }, "base_link"),
//!     name: vec!["shoulder_pan".into()],
//!     position: vec![0.25],
//!     ..Default::default()
//! };
//! let payload = js.to_cdr();
//! assert_eq!(&payload[..4], &[0, 1, 0, 0]);
//! assert_eq!(JointState::from_cdr_slice(&payload).unwrap(), js);
//! ```
//!
//! Decoding never panics and never sizes an allocation by an unchecked length: a malformed
//! payload gives a [`DecodeError`] naming the field and the defect. Decoding an [`Image`] from
//! [`bytes::Bytes`] copies no pixel data (the `data` field shares the payload's memory).

pub mod cdr;
mod error;
pub mod keys;
mod messages;
pub mod ros2;

pub use bytes::Bytes;
pub use error::{DecodeError, DecodeErrorKind};
pub use messages::{
    encoding_layout, CompressedImage, Duration, Header, Image, JointState, JointTrajectory,
    JointTrajectoryPoint, Message, MsgDef, PolicyReply, PolicyRequest, StringMsg, Time,
};

/// The message types Sinew carries on its bus, for code that picks a type at run time (the CLI,
/// the recorder).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageKind {
    /// `std_msgs/msg/String`
    String,
    /// `sensor_msgs/msg/Image`
    Image,
    /// `sensor_msgs/msg/CompressedImage`
    CompressedImage,
    /// `sensor_msgs/msg/JointState`
    JointState,
    /// `trajectory_msgs/msg/JointTrajectory`
    JointTrajectory,
}

impl MessageKind {
    /// Every kind.
    pub const ALL: [MessageKind; 5] = [
        MessageKind::String,
        MessageKind::Image,
        MessageKind::CompressedImage,
        MessageKind::JointState,
        MessageKind::JointTrajectory,
    ];

    /// The message definition.
    pub fn def(self) -> &'static MsgDef {
        match self {
            MessageKind::String => StringMsg::DEF,
            MessageKind::Image => Image::DEF,
            MessageKind::CompressedImage => CompressedImage::DEF,
            MessageKind::JointState => JointState::DEF,
            MessageKind::JointTrajectory => JointTrajectory::DEF,
        }
    }

    /// Parses `sensor_msgs/msg/Image`, `sensor_msgs/Image` or the bare `Image`.
    pub fn from_type_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| {
            let full = k.def().name;
            full == name || k.def().short_name() == name || full.rsplit('/').next() == Some(name)
        })
    }

    /// Decodes a payload of this kind.
    pub fn decode(self, payload: &Bytes) -> Result<AnyMessage, DecodeError> {
        Ok(match self {
            MessageKind::String => AnyMessage::String(StringMsg::from_cdr(payload)?),
            MessageKind::Image => AnyMessage::Image(Image::from_cdr(payload)?),
            MessageKind::CompressedImage => {
                AnyMessage::CompressedImage(CompressedImage::from_cdr(payload)?)
            }
            MessageKind::JointState => AnyMessage::JointState(JointState::from_cdr(payload)?),
            MessageKind::JointTrajectory => {
                AnyMessage::JointTrajectory(JointTrajectory::from_cdr(payload)?)
            }
        })
    }
}

impl std::fmt::Display for MessageKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.def().name)
    }
}

/// A decoded message of any [`MessageKind`].
#[derive(Debug, Clone, PartialEq)]
pub enum AnyMessage {
    /// `std_msgs/msg/String`
    String(StringMsg),
    /// `sensor_msgs/msg/Image`
    Image(Image),
    /// `sensor_msgs/msg/CompressedImage`
    CompressedImage(CompressedImage),
    /// `sensor_msgs/msg/JointState`
    JointState(JointState),
    /// `trajectory_msgs/msg/JointTrajectory`
    JointTrajectory(JointTrajectory),
}

macro_rules! any_from {
    ($($t:ident => $v:ident),*) => {$(
        impl From<$t> for AnyMessage {
            fn from(m: $t) -> Self {
                AnyMessage::$v(m)
            }
        }
    )*};
}

any_from!(StringMsg => String, Image => Image, CompressedImage => CompressedImage,
    JointState => JointState, JointTrajectory => JointTrajectory);

impl AnyMessage {
    /// The message's kind.
    pub fn kind(&self) -> MessageKind {
        match self {
            AnyMessage::String(_) => MessageKind::String,
            AnyMessage::Image(_) => MessageKind::Image,
            AnyMessage::CompressedImage(_) => MessageKind::CompressedImage,
            AnyMessage::JointState(_) => MessageKind::JointState,
            AnyMessage::JointTrajectory(_) => MessageKind::JointTrajectory,
        }
    }

    /// Encodes the message as CDR.
    pub fn to_cdr(&self) -> Vec<u8> {
        match self {
            AnyMessage::String(m) => m.to_cdr(),
            AnyMessage::Image(m) => m.to_cdr(),
            AnyMessage::CompressedImage(m) => m.to_cdr(),
            AnyMessage::JointState(m) => m.to_cdr(),
            AnyMessage::JointTrajectory(m) => m.to_cdr(),
        }
    }

    /// The header, for the kinds that have one.
    pub fn header(&self) -> Option<&Header> {
        match self {
            AnyMessage::String(_) => None,
            AnyMessage::Image(m) => Some(&m.header),
            AnyMessage::CompressedImage(m) => Some(&m.header),
            AnyMessage::JointState(m) => Some(&m.header),
            AnyMessage::JointTrajectory(m) => Some(&m.header),
        }
    }
}
