//! openpi compatibility, both directions (`docs/openpi.md`):
//!
//! - [`OpenpiServer`] / [`serve_openpi`]: any Sinew policy behind openpi's WebSocket protocol
//!   (`sinew policy serve DIR --openpi PORT`), so openpi's `WebsocketClientPolicy` and the
//!   robot clients built on it can drive it. Several clients may be connected; their requests
//!   reach the policy one at a time (as in openpi's server). The policy is never reset: a
//!   Sinew policy that keeps state between calls shares it between clients.
//! - [`OpenpiPolicy`]: a [`Policy`] whose chunks come from an openpi server
//!   (`--policy openpi:HOST:PORT`), so Sinew's runtime drives a robot with pi0 or pi0.5. It
//!   reconnects after a failure: while the server is down every call returns an error (the
//!   runtime holds the robot) and the calls after it comes back succeed again.

use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use sinew_core::{ActionChunk, ActionKind, Observation, Policy, PolicyError, PolicySpec};
use sinew_openpi::mapping::{
    chunk_from_reply, metadata_from_spec, observation_from_request, reply_from_chunk,
    request_from_observation, spec_from_metadata, ObservationKeys, RequestKeys,
};
use sinew_openpi::ws::{Client, Handler, Server, WsConfig};
use sinew_openpi::{OpenpiError, Value};

/// The prefix of a `--policy` name that names an openpi server.
pub const PREFIX: &str = "openpi:";

/// A Sinew policy as an openpi [`Handler`].
struct PolicyHandler {
    policy: Box<dyn Policy>,
    keys: ObservationKeys,
}

impl Handler for PolicyHandler {
    fn metadata(&mut self) -> Value {
        metadata_from_spec(self.policy.spec())
    }

    fn infer(&mut self, request: &Value) -> Result<Value, String> {
        let cameras = self.policy.spec().cameras.clone();
        let obs = observation_from_request(request, &cameras, &self.keys)
            .map_err(|e| format!("observation: {e}"))?;
        let policy = &mut self.policy;
        let chunk = std::panic::catch_unwind(AssertUnwindSafe(|| policy.infer(&obs)))
            .map_err(|_| "the policy panicked".to_owned())?
            .map_err(|e| format!("policy: {e}"))?;
        reply_from_chunk(&chunk).map_err(|e| e.to_string())
    }
}

/// A Sinew policy served over openpi's protocol, bound to its port.
pub struct OpenpiServer {
    server: Server,
    handler: PolicyHandler,
}

impl std::fmt::Debug for OpenpiServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenpiServer")
            .field("server", &self.server)
            .field("policy", &self.handler.policy.spec().architecture)
            .finish()
    }
}

impl OpenpiServer {
    /// Binds `addr` (`0.0.0.0:8000`; port 0 picks a free one) for `policy`.
    pub fn bind(policy: Box<dyn Policy>, addr: &str) -> Result<Self> {
        let server = Server::bind(addr, WsConfig::default())
            .with_context(|| format!("listening on {addr}"))?;
        Ok(Self {
            server,
            handler: PolicyHandler {
                policy,
                keys: ObservationKeys::default(),
            },
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> Result<std::net::SocketAddr> {
        Ok(self.server.local_addr()?)
    }

    /// Serves until `stop` returns true.
    pub fn serve(mut self, stop: &(dyn Fn() -> bool + Sync)) -> Result<()> {
        self.server
            .serve(&mut self.handler, stop)
            .context("serving the openpi protocol")
    }
}

/// Serves `policy` over openpi's protocol on `addr` until `stop` returns true.
pub fn serve_openpi(
    policy: Box<dyn Policy>,
    addr: &str,
    stop: &(dyn Fn() -> bool + Sync),
) -> Result<()> {
    OpenpiServer::bind(policy, addr)?.serve(stop)
}

/// Where an openpi server is and what Sinew needs to know that its metadata may not say:
/// `openpi:HOST:PORT[?cameras=front,wrist&image_keys=observation/image,observation/wrist_image&action_kind=joint_position&rate_hz=10&chunk=50&steps=5&timeout_s=30]`
/// (`docs/openpi.md` lists the options).
#[derive(Debug, Clone, PartialEq)]
pub struct OpenpiTarget {
    /// `HOST:PORT`.
    pub addr: String,
    /// The cameras to send (the first also as `observation/image`).
    pub cameras: Option<Vec<String>>,
    /// The action space of the replies (default `joint_position`).
    pub action_kind: Option<ActionKind>,
    /// The rate the actions are meant for (default 10 Hz).
    pub rate_hz: Option<f64>,
    /// Steps per chunk (default 10).
    pub chunk: Option<usize>,
    /// Chunk entries to execute per inference.
    pub steps: Option<usize>,
    /// How long a reply may take (s, default 30).
    pub timeout_s: f64,
    /// Where the cameras go in a request, one key per camera (`image_keys=observation/image,observation/wrist_image`
    /// for a LIBERO server; `.` nests: `images.cam_high`).
    pub image_keys: Option<Vec<String>>,
    /// Where the joint state goes (default `observation/state`).
    pub state_key: Option<String>,
    /// Where the instruction goes (default `prompt`).
    pub prompt_key: Option<String>,
}

impl OpenpiTarget {
    /// Parses `openpi:HOST:PORT[?k=v&...]`; `None` when `name` does not start with `openpi:`.
    pub fn parse(name: &str) -> Option<Result<Self>> {
        let rest = name.strip_prefix(PREFIX)?;
        Some(Self::parse_rest(rest).with_context(|| {
            format!("--policy {name}: expected openpi:HOST:PORT[?cameras=a,b&image_keys=k1,k2&state_key=..&prompt_key=..&action_kind=..&rate_hz=..&chunk=..&steps=..&timeout_s=..]")
        }))
    }

    fn parse_rest(rest: &str) -> Result<Self> {
        let (addr, query) = rest.split_once('?').unwrap_or((rest, ""));
        let Some((host, port)) = addr.rsplit_once(':') else {
            bail!("no port");
        };
        if host.is_empty() {
            bail!("no host");
        }
        port.parse::<u16>()
            .with_context(|| format!("port {port:?} is not a number"))?;
        let mut t = Self {
            addr: addr.to_owned(),
            cameras: None,
            action_kind: None,
            rate_hz: None,
            chunk: None,
            steps: None,
            timeout_s: 30.0,
            image_keys: None,
            state_key: None,
            prompt_key: None,
        };
        for kv in query.split('&').filter(|s| !s.is_empty()) {
            let (k, v) = kv
                .split_once('=')
                .with_context(|| format!("option {kv:?}: expected KEY=VALUE"))?;
            let num = || {
                v.parse::<f64>()
                    .with_context(|| format!("{k}={v}: not a number"))
            };
            match k {
                "cameras" => {
                    t.cameras = Some(
                        v.split(',')
                            .filter(|c| !c.is_empty())
                            .map(str::to_owned)
                            .collect(),
                    );
                }
                "action_kind" => {
                    t.action_kind = Some(match v {
                        "joint_position" => ActionKind::JointPosition,
                        "joint_delta" => ActionKind::JointDelta,
                        "ee_delta" => ActionKind::EeDelta,
                        _ => bail!(
                            "action_kind={v}: expected joint_position, joint_delta or ee_delta"
                        ),
                    });
                }
                "rate_hz" => t.rate_hz = Some(num()?),
                "chunk" => t.chunk = Some(num()? as usize),
                "steps" => t.steps = Some(num()? as usize),
                "timeout_s" => t.timeout_s = num()?,
                "image_keys" => t.image_keys = Some(v.split(',').map(str::to_owned).collect()),
                "state_key" => t.state_key = Some(v.to_owned()),
                "prompt_key" => t.prompt_key = Some(v.to_owned()),
                _ => bail!("unknown option {k:?}"),
            }
        }
        Ok(t)
    }

    /// The spec before the server has said anything: the options, then defaults.
    fn base_spec(&self) -> PolicySpec {
        PolicySpec {
            architecture: "openpi".into(),
            cameras: self.cameras.clone().unwrap_or_default(),
            image_size: (224, 224),
            uses_state: true,
            state_dim: 0,
            action_kind: self.action_kind.unwrap_or(ActionKind::JointPosition),
            action_dim: 0,
            chunk_length: self.chunk.unwrap_or(10),
            control_rate_hz: self.rate_hz.unwrap_or(10.0),
            action_tokenizer: "none".into(),
            n_action_steps: self.steps,
        }
    }

    fn ws_config(&self) -> WsConfig {
        WsConfig {
            reply_timeout: Duration::from_secs_f64(self.timeout_s.max(0.1)),
            handshake_timeout: Duration::from_secs(5),
            ..WsConfig::default()
        }
    }
}

/// How long a failed connection waits before the next attempt.
const RECONNECT_AFTER: Duration = Duration::from_millis(500);

/// A policy served by an openpi server.
#[derive(Debug)]
pub struct OpenpiPolicy {
    target: OpenpiTarget,
    spec: PolicySpec,
    keys: RequestKeys,
    client: Option<Client>,
    next_attempt: Instant,
}

impl OpenpiPolicy {
    /// The policy at `target`, not yet connected; its spec is the target's options until a
    /// connection brings the server's metadata.
    pub fn new(target: OpenpiTarget) -> Self {
        let spec = target.base_spec();
        let mut keys = RequestKeys::default();
        keys.image_keys.clone_from(&target.image_keys);
        if let Some(k) = &target.state_key {
            keys.state.clone_from(k);
        }
        if let Some(k) = &target.prompt_key {
            keys.prompt.clone_from(k);
        }
        Self {
            target,
            spec,
            keys,
            client: None,
            next_attempt: Instant::now(),
        }
    }

    /// Connects once to read the server's metadata into the spec. The metadata's cameras,
    /// `action_horizon`, `action_dim`, ... override the defaults; the target's options
    /// override both.
    pub fn probe(&mut self) -> Result<(), PolicyError> {
        self.ensure_connected()
    }

    fn adopt_metadata(&mut self, meta: &Value) {
        let mut spec = spec_from_metadata(meta, self.target.base_spec());
        let t = &self.target;
        if let Some(c) = &t.cameras {
            spec.cameras = c.clone();
        }
        if let Some(k) = t.action_kind {
            spec.action_kind = k;
        }
        if let Some(r) = t.rate_hz {
            spec.control_rate_hz = r;
        }
        if let Some(c) = t.chunk {
            spec.chunk_length = c;
        }
        if t.steps.is_some() {
            spec.n_action_steps = t.steps;
        }
        if spec.action_dim == 0 {
            spec.action_dim = self.spec.action_dim;
        }
        self.spec = spec;
    }

    fn ensure_connected(&mut self) -> Result<(), PolicyError> {
        if self.client.is_some() {
            return Ok(());
        }
        let now = Instant::now();
        if now < self.next_attempt {
            return Err(PolicyError::Model(format!(
                "openpi server {} is unreachable; next attempt in {:.1} s",
                self.target.addr,
                (self.next_attempt - now).as_secs_f64()
            )));
        }
        match Client::connect(&self.target.addr, self.target.ws_config()) {
            Ok(c) => {
                let meta = c.metadata().clone();
                self.adopt_metadata(&meta);
                tracing::info!("connected to openpi server {}", self.target.addr);
                self.client = Some(c);
                Ok(())
            }
            Err(e) => {
                self.next_attempt = Instant::now() + RECONNECT_AFTER;
                Err(self.error(e))
            }
        }
    }

    fn error(&self, e: OpenpiError) -> PolicyError {
        match e {
            OpenpiError::NonFinite(m) => {
                PolicyError::NonFinite(format!("openpi server {}: {m}", self.target.addr))
            }
            e => PolicyError::Model(format!("openpi server {}: {e}", self.target.addr)),
        }
    }
}

impl Policy for OpenpiPolicy {
    fn spec(&self) -> &PolicySpec {
        &self.spec
    }

    fn infer(&mut self, observation: &Observation) -> Result<ActionChunk, PolicyError> {
        let t0 = Instant::now();
        let request = request_from_observation(observation, &self.spec.cameras, &self.keys)
            .map_err(|e| PolicyError::Observation(e.to_string()))?;
        self.ensure_connected()?;
        let t1 = Instant::now();
        let Some(client) = self.client.as_mut() else {
            return Err(PolicyError::Model("not connected".into()));
        };
        let reply = match client.infer(&request) {
            Ok(r) => r,
            Err(e) => {
                // Drop the connection: the next call reconnects.
                self.client = None;
                return Err(self.error(e));
            }
        };
        let t2 = Instant::now();
        let (mut chunk, timing) = chunk_from_reply(&reply).map_err(|e| self.error(e))?;
        if self.spec.action_dim == 0 {
            self.spec.action_dim = chunk.dim();
        } else if chunk.dim() != self.spec.action_dim {
            return Err(PolicyError::Shape(format!(
                "openpi server {}: actions of {} dimensions, the policy's spec says {}",
                self.target.addr,
                chunk.dim(),
                self.spec.action_dim
            )));
        }
        let t3 = Instant::now();
        let ms = |a: Instant, b: Instant| (b - a).as_secs_f64() * 1e3;
        let wait_ms = ms(t1, t2);
        let forward_ms = timing.infer_ms.map_or(wait_ms, |i| i.min(wait_ms));
        chunk.kind = Some(self.spec.action_kind);
        chunk.observation_stamp_s = observation.stamp_s;
        // preprocess: packing the request; forward: the model on the server (its
        // `server_timing.infer_ms`); decode: the network, the server's own work and unpacking.
        chunk.timings = sinew_core::Timings {
            preprocess_ms: ms(t0, t1),
            forward_ms,
            decode_ms: wait_ms - forward_ms + ms(t2, t3),
        };
        Ok(chunk)
    }
}

/// The policy `openpi:HOST:PORT[?options]`: connects once for the server's metadata. When the
/// server is not up yet the options must name the cameras; the policy then connects on its
/// first inference (the robot holds until then).
pub fn load_openpi_policy(name: &str) -> Result<Box<dyn Policy>> {
    let Some(target) = OpenpiTarget::parse(name) else {
        bail!("{name}: not an openpi:HOST:PORT policy");
    };
    let target = target?;
    let mut policy = OpenpiPolicy::new(target);
    if let Err(e) = policy.probe() {
        if policy.spec.cameras.is_empty() {
            return Err(anyhow::anyhow!("{e}")).context(format!(
                "{name}: the server's metadata is needed to know which cameras to send \
                 (or add ?cameras=NAME,NAME)"
            ));
        }
        tracing::warn!("{e}; connecting on the first inference");
    }
    if policy.spec.cameras.is_empty() {
        bail!(
            "{name}: the server's metadata names no cameras; say which to send with \
             ?cameras=NAME,NAME (the first is also sent as observation/image)"
        );
    }
    Ok(Box::new(policy))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_with_their_options_and_bad_ones_say_why() {
        assert!(OpenpiTarget::parse("sinew-tiny-so101").is_none());
        let t = OpenpiTarget::parse("openpi:gpu-box:8000")
            .expect("openpi")
            .expect("parses");
        assert_eq!(t.addr, "gpu-box:8000");
        assert_eq!(t.cameras, None);
        let t = OpenpiTarget::parse(
            "openpi:127.0.0.1:8000?cameras=front,wrist&image_keys=observation/image,observation/wrist_image&action_kind=joint_delta&rate_hz=15&chunk=50&steps=8&timeout_s=5",
        )
        .expect("openpi")
        .expect("parses");
        assert_eq!(
            t.cameras.as_deref(),
            Some(&["front".to_owned(), "wrist".to_owned()][..])
        );
        assert_eq!(t.action_kind, Some(ActionKind::JointDelta));
        assert_eq!(
            (t.rate_hz, t.chunk, t.steps),
            (Some(15.0), Some(50), Some(8))
        );
        let spec = OpenpiPolicy::new(t).spec().clone();
        assert_eq!(spec.chunk_length, 50);
        assert_eq!(spec.n_action_steps, Some(8));
        for (bad, why) in [
            ("openpi:8000", "no port"),
            ("openpi:host:port", "not a number"),
            ("openpi::8000", "no host"),
            ("openpi:h:1?colour=red", "unknown option"),
            ("openpi:h:1?action_kind=torque", "action_kind=torque"),
        ] {
            let e = OpenpiTarget::parse(bad).expect("openpi").expect_err(bad);
            assert!(format!("{e:#}").contains(why), "{bad}: {e:#}");
        }
    }

    #[test]
    fn a_server_that_is_not_there_is_an_error_unless_the_cameras_are_named() {
        // A port nothing listens on: bind one, then free it.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("port")
            .port();
        let Err(e) = load_openpi_policy(&format!("openpi:127.0.0.1:{port}")) else {
            panic!("no server, no cameras: an error");
        };
        assert!(format!("{e:#}").contains("cameras"), "{e:#}");
        let mut p = load_openpi_policy(&format!("openpi:127.0.0.1:{port}?cameras=front"))
            .expect("connects later");
        let obs = Observation::default();
        assert!(matches!(p.infer(&obs), Err(PolicyError::Observation(_))));
    }
}
