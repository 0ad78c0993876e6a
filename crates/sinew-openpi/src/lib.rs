//! openpi's policy server protocol (Physical-Intelligence/openpi, `openpi-client`), so that
//! openpi clients can drive a Sinew-served policy and Sinew can drive a robot with a model an
//! openpi server serves (pi0, pi0.5).
//!
//! - [`codec`]: msgpack with numpy arrays, byte for byte as `openpi_client.msgpack_numpy`
//!   packs it, into [`Value`]s; bounded and checked, nothing in a message runs code.
//! - [`mapping`]: openpi observations and replies to and from Sinew's `Observation`,
//!   `ActionChunk` and `PolicySpec` (configurable keys, LIBERO/DROID and ALOHA styles).
//! - [`ws`]: a blocking WebSocket [`ws::Server`] (metadata on connect, request → reply with
//!   `server_timing`, `GET /healthz` → 200, errors as a text frame then close 1011) and
//!   [`ws::Client`].
//!
//! The smallest use, a client:
//!
//! ```no_run
//! use sinew_openpi::{ws::{Client, WsConfig}, Value};
//! let mut client = Client::connect("127.0.0.1:8000", WsConfig::default())?;
//! let reply = client.infer(&Value::map([("prompt", Value::str("pick up the cube"))]))?;
//! println!("{:?}", reply.get("actions"));
//! # Ok::<(), sinew_openpi::OpenpiError>(())
//! ```

pub mod codec;
pub mod mapping;
pub mod value;
pub mod ws;

pub use value::{DKind, DType, NdArray, NpScalar, Value};

/// Errors of the openpi protocol.
#[derive(Debug, thiserror::Error)]
pub enum OpenpiError {
    /// Bytes that are not a valid message.
    #[error("msgpack: {0}")]
    Decode(String),
    /// A value that cannot be packed.
    #[error("packing: {0}")]
    Encode(String),
    /// A numpy array whose dtype, shape and data disagree.
    #[error("array: {0}")]
    Array(String),
    /// A message without what it must have (a camera, `actions`, ...).
    #[error("{0}")]
    Message(String),
    /// NaN or infinity where a number is needed.
    #[error("{0}")]
    NonFinite(String),
    /// No connection could be made.
    #[error("connecting to {0}")]
    Connect(String),
    /// The WebSocket failed.
    #[error("websocket: {0}")]
    WebSocket(String),
    /// The server answered with an error text.
    #[error("the policy server failed: {0}")]
    Server(String),
    /// The server closed the connection.
    #[error("the policy server closed the connection: {0}")]
    Closed(String),
    /// Socket I/O.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}
