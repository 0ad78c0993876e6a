//! openpi's WebSocket exchange, blocking: a [`Server`] (a thread per connection, requests
//! reaching the policy one at a time; metadata on connect, then request → reply;
//! `GET /healthz` → 200) and a [`Client`].
//!
//! As openpi's `websocket_policy_server.py`: the server sends the metadata as one binary
//! msgpack frame when a client connects, adds `server_timing` (`infer_ms`, and from the second
//! request `prev_total_ms`) to every reply, and answers a request it cannot serve with the
//! error as a text frame followed by close code 1011.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tungstenite::{Message, WebSocket};

use crate::codec::{decode, encode};
use crate::value::Value;
use crate::OpenpiError;

/// The largest HTTP request head read before the upgrade (bytes).
const MAX_HEAD: usize = 16 * 1024;

/// What a [`Server`] serves (called from the connections' threads, one call at a time).
pub trait Handler {
    /// The map sent to every client on connect.
    fn metadata(&mut self) -> Value;
    /// The reply to one decoded request (a map with `actions`); an `Err` is sent to the
    /// client as the error text.
    fn infer(&mut self, request: &Value) -> Result<Value, String>;
}

/// Bounds and timeouts of the server and the client.
#[derive(Debug, Clone, Copy)]
pub struct WsConfig {
    /// The largest message accepted (bytes).
    pub max_message_bytes: usize,
    /// How long a peer may take to send its HTTP request or answer the handshake.
    pub handshake_timeout: Duration,
    /// The server: how often a waiting connection checks the stop flag.
    pub poll: Duration,
    /// The client: how long it waits for a reply.
    pub reply_timeout: Duration,
    /// The server: most connections served at once.
    pub max_connections: usize,
}

impl Default for WsConfig {
    fn default() -> Self {
        Self {
            max_message_bytes: 256 << 20,
            handshake_timeout: Duration::from_secs(10),
            poll: Duration::from_millis(100),
            reply_timeout: Duration::from_secs(30),
            max_connections: 32,
        }
    }
}

impl WsConfig {
    fn websocket(&self) -> WebSocketConfig {
        WebSocketConfig::default()
            .max_message_size(Some(self.max_message_bytes))
            .max_frame_size(Some(self.max_message_bytes))
    }
}

fn ws_err(e: tungstenite::Error) -> OpenpiError {
    OpenpiError::WebSocket(e.to_string())
}

fn is_timeout(e: &tungstenite::Error) -> bool {
    matches!(e, tungstenite::Error::Io(io)
        if matches!(io.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut))
}

/// An openpi policy server on a TCP port.
#[derive(Debug)]
pub struct Server {
    listener: TcpListener,
    config: WsConfig,
}

/// What a finished connection did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConnectionReport {
    /// Replies sent.
    pub replies: u64,
    /// Whether it ended on an error sent to the client.
    pub error: Option<String>,
}

impl Server {
    /// Listens on `addr` (`0.0.0.0:8000`; port 0 picks a free port).
    pub fn bind(addr: impl ToSocketAddrs, config: WsConfig) -> Result<Self, OpenpiError> {
        let listener = TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        Ok(Self { listener, config })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> Result<SocketAddr, OpenpiError> {
        Ok(self.listener.local_addr()?)
    }

    /// Serves until `stop` returns true. Each connection gets its own thread
    /// (`openpi-conn-N`, at most `config.max_connections`; more are answered 503); requests
    /// from all of them reach `handler` one at a time, as in openpi's server, where inference
    /// blocks the event loop. `GET /healthz` is answered at once, even while inference runs.
    /// A connection that fails is logged and closed; the server goes on.
    pub fn serve(
        &self,
        handler: &mut (dyn Handler + Send),
        stop: &(dyn Fn() -> bool + Sync),
    ) -> Result<(), OpenpiError> {
        let handler = Mutex::new(handler);
        let done = AtomicBool::new(false);
        let active = AtomicUsize::new(0);
        let mut n = 0u64;
        std::thread::scope(|scope| {
            let result = loop {
                if stop() {
                    break Ok(());
                }
                let (stream, peer) = match self.listener.accept() {
                    Ok(c) => c,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(10));
                        continue;
                    }
                    Err(e) => break Err(OpenpiError::Io(e)),
                };
                if active.load(Ordering::SeqCst) >= self.config.max_connections {
                    let mut stream = stream;
                    let _ = stream.set_nonblocking(false);
                    let _ = respond(
                        &mut stream,
                        "503 Service Unavailable",
                        "busy: too many clients\n",
                    );
                    continue;
                }
                active.fetch_add(1, Ordering::SeqCst);
                n += 1;
                let (handler, done, active) = (&handler, &done, &active);
                let spawned = std::thread::Builder::new()
                    .name(format!("openpi-conn-{n}"))
                    .spawn_scoped(scope, move || {
                        self.connection(stream, peer, handler, &|| {
                            done.load(Ordering::SeqCst) || stop()
                        });
                        active.fetch_sub(1, Ordering::SeqCst);
                    });
                if let Err(e) = spawned {
                    active.fetch_sub(1, Ordering::SeqCst);
                    tracing::warn!("{peer}: no thread for the connection: {e}");
                }
            };
            // Connections see `done` within `config.poll` and close.
            done.store(true, Ordering::SeqCst);
            result
        })
    }

    /// One accepted connection: a plain HTTP request is answered, a WebSocket served.
    fn connection(
        &self,
        stream: TcpStream,
        peer: SocketAddr,
        handler: &Mutex<&mut (dyn Handler + Send)>,
        done: &dyn Fn() -> bool,
    ) {
        match triage(stream, self.config) {
            Ok(Some(ws)) => match self.websocket(ws, handler, done) {
                Ok(r) => tracing::info!(
                    "{peer}: closed after {} replies{}",
                    r.replies,
                    r.error
                        .map(|e| format!(" (error: {e})"))
                        .unwrap_or_default()
                ),
                Err(e) => tracing::warn!("{peer}: {e}"),
            },
            Ok(None) => tracing::debug!("{peer}: HTTP request answered"),
            Err(e) => tracing::warn!("{peer}: {e}"),
        }
    }

    /// Serves one WebSocket connection (its upgrade request not yet read) to its end.
    fn websocket(
        &self,
        stream: TcpStream,
        handler: &Mutex<&mut (dyn Handler + Send)>,
        done: &dyn Fn() -> bool,
    ) -> Result<ConnectionReport, OpenpiError> {
        let lock = || {
            handler
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        };
        let mut ws = tungstenite::accept_with_config(stream, Some(self.config.websocket()))
            .map_err(|e| OpenpiError::WebSocket(format!("handshake: {e}")))?;
        let metadata = lock().metadata();
        ws.send(Message::binary(encode(&metadata)?))
            .map_err(ws_err)?;
        ws.get_mut().set_read_timeout(Some(self.config.poll))?;
        let mut report = ConnectionReport::default();
        let mut prev_total_ms: Option<f64> = None;
        loop {
            if done() {
                let _ = ws.close(None);
                let _ = ws.flush();
                return Ok(report);
            }
            let msg = match ws.read() {
                Ok(m) => m,
                Err(e) if is_timeout(&e) => continue,
                Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => {
                    return Ok(report)
                }
                Err(e @ tungstenite::Error::Capacity(_)) => {
                    let why = format!("the request is too large: {e}");
                    fail(&mut ws, &why);
                    report.error = Some(why);
                    return Ok(report);
                }
                Err(e) => return Err(ws_err(e)),
            };
            let start = Instant::now();
            let reply = match msg {
                Message::Binary(b) => decode(&b)
                    .map_err(|e| format!("the request is not openpi msgpack: {e}"))
                    .and_then(|req| {
                        let mut h = lock();
                        let t = Instant::now();
                        let reply = h.infer(&req);
                        reply.map(|r| (r, t.elapsed().as_secs_f64() * 1e3))
                    }),
                Message::Text(_) => Err("expected a binary msgpack frame, got a text frame".into()),
                Message::Close(_) => continue,
                Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => continue,
            };
            match reply.and_then(|(mut r, infer_ms)| {
                let mut timing = vec![("infer_ms", Value::Float(infer_ms))];
                if let Some(p) = prev_total_ms {
                    timing.push(("prev_total_ms", Value::Float(p)));
                }
                r.insert("server_timing", Value::map(timing));
                encode(&r).map_err(|e| e.to_string())
            }) {
                Ok(bytes) => {
                    ws.send(Message::binary(bytes)).map_err(ws_err)?;
                    report.replies += 1;
                    prev_total_ms = Some(start.elapsed().as_secs_f64() * 1e3);
                }
                Err(why) => {
                    fail(&mut ws, &why);
                    report.error = Some(why);
                    return Ok(report);
                }
            }
        }
    }
}

/// Reads a new connection's request head: a WebSocket upgrade comes back (unread) for the
/// serving thread; anything else is answered here (`/healthz` 200 as openpi's
/// `process_request` hook does, other paths 426).
fn triage(stream: TcpStream, config: WsConfig) -> Result<Option<TcpStream>, OpenpiError> {
    stream.set_nonblocking(false)?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(config.handshake_timeout))?;
    stream.set_write_timeout(Some(config.handshake_timeout))?;
    let head = peek_head(&stream, config.handshake_timeout)?;
    let (path, upgrade) = parse_head(&head)?;
    if upgrade && path != "/healthz" {
        return Ok(Some(stream));
    }
    let mut stream = stream;
    let mut consumed = vec![0u8; head.len()];
    stream.read_exact(&mut consumed)?;
    if path == "/healthz" {
        respond(&mut stream, "200 OK", "OK\n")?;
    } else {
        respond(
            &mut stream,
            "426 Upgrade Required",
            &format!("{path}: this is an openpi policy server; connect with a WebSocket (or GET /healthz)\n"),
        )?;
    }
    Ok(None)
}

fn respond(stream: &mut TcpStream, status: &str, body: &str) -> Result<(), OpenpiError> {
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()?;
    let _ = stream.shutdown(std::net::Shutdown::Write);
    Ok(())
}

/// openpi's error path: the message as a text frame, then close with 1011.
fn fail(ws: &mut WebSocket<TcpStream>, why: &str) {
    let _ = ws.send(Message::text(format!(
        "Error in the Sinew policy server: {why}"
    )));
    let _ = ws.close(Some(CloseFrame {
        code: CloseCode::Error,
        reason: "Internal server error. Error message included in previous frame.".into(),
    }));
    // Drain until the client answers the close (or the timeout), so it reads both frames.
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        match ws.read() {
            Ok(_) => {}
            Err(e) if is_timeout(&e) => {}
            Err(_) => break,
        }
    }
}

/// The HTTP request head (up to and including the blank line), peeked: not consumed.
fn peek_head(stream: &TcpStream, timeout: Duration) -> Result<Vec<u8>, OpenpiError> {
    let deadline = Instant::now() + timeout;
    let mut buf = vec![0u8; MAX_HEAD];
    loop {
        let n = match stream.peek(&mut buf) {
            Ok(0) => {
                return Err(OpenpiError::Message(
                    "the peer closed without a request".into(),
                ))
            }
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                0
            }
            Err(e) => return Err(e.into()),
        };
        if let Some(end) = buf[..n].windows(4).position(|w| w == b"\r\n\r\n") {
            buf.truncate(end + 4);
            return Ok(buf);
        }
        if n == MAX_HEAD {
            return Err(OpenpiError::Message(format!(
                "an HTTP request head longer than {MAX_HEAD} bytes"
            )));
        }
        if Instant::now() > deadline {
            return Err(OpenpiError::Message(
                "the peer sent no complete HTTP request in time".into(),
            ));
        }
        // peek returns at once while a partial head waits for its rest.
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// The path of a `GET` request head and whether it asks for a WebSocket upgrade.
fn parse_head(head: &[u8]) -> Result<(String, bool), OpenpiError> {
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split("\r\n");
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split(' ');
    let (method, target) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    if method != "GET" || target.is_empty() {
        return Err(OpenpiError::Message(format!(
            "expected an HTTP GET request, got {:?}",
            request_line.chars().take(80).collect::<String>()
        )));
    }
    let path = target.split('?').next().unwrap_or_default().to_owned();
    let upgrade = lines.any(|l| {
        l.split_once(':').is_some_and(|(k, v)| {
            k.trim().eq_ignore_ascii_case("upgrade") && v.trim().eq_ignore_ascii_case("websocket")
        })
    });
    Ok((path, upgrade))
}

/// A connection to an openpi policy server.
#[derive(Debug)]
pub struct Client {
    ws: WebSocket<TcpStream>,
    metadata: Value,
}

impl Client {
    /// Connects to `addr` (`host:port`), completes the WebSocket handshake and reads the
    /// metadata frame, within `config.handshake_timeout`.
    pub fn connect(addr: &str, config: WsConfig) -> Result<Self, OpenpiError> {
        let targets: Vec<SocketAddr> = addr
            .to_socket_addrs()
            .map_err(|e| OpenpiError::Connect(format!("{addr}: {e}")))?
            .collect();
        let mut last = OpenpiError::Connect(format!("{addr}: no address"));
        let mut stream = None;
        for t in targets {
            match TcpStream::connect_timeout(&t, config.handshake_timeout) {
                Ok(s) => {
                    stream = Some(s);
                    break;
                }
                Err(e) => last = OpenpiError::Connect(format!("{addr}: {e}")),
            }
        }
        let stream = stream.ok_or(last)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(config.handshake_timeout))?;
        stream.set_write_timeout(Some(config.handshake_timeout))?;
        let (mut ws, _) = tungstenite::client::client_with_config(
            format!("ws://{addr}/"),
            stream,
            Some(config.websocket()),
        )
        .map_err(|e| OpenpiError::WebSocket(format!("handshake with {addr}: {e}")))?;
        let metadata = decode(&read_binary(&mut ws)?)?;
        ws.get_mut().set_read_timeout(Some(config.reply_timeout))?;
        Ok(Self { ws, metadata })
    }

    /// The metadata the server sent on connect.
    pub fn metadata(&self) -> &Value {
        &self.metadata
    }

    /// Sends one request and waits for its reply.
    pub fn infer(&mut self, request: &Value) -> Result<Value, OpenpiError> {
        decode(&self.exchange(encode(request)?)?)
    }

    /// Sends one packed request as it is and returns the packed reply (a text frame, the
    /// server's error, is [`OpenpiError::Server`]).
    pub fn exchange(&mut self, request: Vec<u8>) -> Result<Vec<u8>, OpenpiError> {
        self.ws.send(Message::binary(request)).map_err(ws_err)?;
        read_binary(&mut self.ws)
    }

    /// Closes the connection politely.
    pub fn close(mut self) {
        let _ = self.ws.close(None);
        let _ = self.ws.flush();
    }
}

/// The next binary frame; a text frame is the server's error, a close frame the end.
fn read_binary(ws: &mut WebSocket<TcpStream>) -> Result<Vec<u8>, OpenpiError> {
    loop {
        match ws.read() {
            Ok(Message::Binary(b)) => return Ok(b.to_vec()),
            Ok(Message::Text(t)) => return Err(OpenpiError::Server(t.to_string())),
            Ok(Message::Close(f)) => {
                return Err(OpenpiError::Closed(
                    f.map(|f| format!("{} {}", u16::from(f.code), f.reason))
                        .unwrap_or_else(|| "without a reason".into()),
                ))
            }
            Ok(_) => {}
            Err(e) if is_timeout(&e) => {
                return Err(OpenpiError::WebSocket(
                    "no reply from the server in time".into(),
                ))
            }
            Err(e) => return Err(ws_err(e)),
        }
    }
}
