//! Remote inference over zenoh: `sinew policy serve DIR --prefix P` answers
//! `sinew_msgs/PolicyRequest` queries on `P/infer` with `PolicyReply`s (and `P/info` with the
//! policy's metadata), batching concurrent requests into one forward pass; `--policy zenoh:P`
//! anywhere a policy is taken drives the robot with it ([`sinew_bus::remote_policy`]).
//!
//! Nothing in a request is executed: it is CDR with every length checked against the payload
//! before anything is allocated, images are checked against the policy's cameras and a size
//! limit, and a bad request gets an error reply naming its defect.

use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::Serialize;
use sinew_bus::remote_policy::{infer_key, info_key, PolicyInfo, RemotePolicy};
use sinew_bus::rpc::Request;
use sinew_bus::{Bus, BusConfig};
use sinew_core::{ActionChunk, Observation, Policy, PolicyError};
use sinew_msgs::{Header, Image, Message, PolicyReply, PolicyRequest};

use crate::resolve::{load_policy_folder, project_path, DeviceSpec};

static REMOTE_BUS: OnceLock<BusConfig> = OnceLock::new();

/// How `zenoh:` policies join the bus (the command line's `--connect`/`--listen`); set once at
/// start-up. Unset, they join the local loopback hub.
pub fn set_bus_config(config: BusConfig) {
    let _ = REMOTE_BUS.set(config);
}

/// How long a remote request may take before the robot holds, s.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// The policy served under `prefix`.
pub fn connect(prefix: &str) -> Result<Box<dyn Policy>> {
    if prefix.is_empty() || prefix.contains(['*', '$', '?', '#']) {
        anyhow::bail!("zenoh:{prefix}: the prefix must be a plain key (no wildcards)");
    }
    let cfg = REMOTE_BUS.get().cloned().unwrap_or_default();
    let bus = Bus::open(&cfg).context("joining the bus for the remote policy")?;
    let p = RemotePolicy::connect(bus, prefix, Duration::from_secs(10), REQUEST_TIMEOUT)?;
    tracing::info!(
        "remote policy {} ({} {}) on {prefix}",
        p.info().id,
        p.info().spec.architecture,
        p.info().version
    );
    Ok(Box::new(p))
}

/// A policy served on the bus.
#[derive(Debug, Clone)]
pub struct PolicyServeSpec {
    /// Policy folder (a name under policies/ or a path).
    pub policy: String,
    /// Where it runs.
    pub device: DeviceSpec,
    /// Key prefix.
    pub prefix: String,
    /// Most requests in one forward pass (1: no batching).
    pub max_batch: usize,
    /// How long the first request of a batch waits for others (only while several robots are
    /// asking: a lone robot's request runs at once).
    pub batch_wait: Duration,
    /// Stop after this long.
    pub duration: Option<Duration>,
}

/// What a policy server did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PolicyServeReport {
    /// Requests answered with a chunk.
    pub replies: u64,
    /// Requests answered with an error.
    pub errors: u64,
    /// Forward passes.
    pub batches: u64,
    /// Requests per forward pass, on average.
    pub mean_batch: f64,
    /// Wall time, s.
    pub wall_s: f64,
}

/// The largest image side a request may carry, px.
pub const MAX_IMAGE_SIDE: u32 = 4096;

/// A cheap digest of a policy folder's configuration and weights (its version).
fn folder_version(dir: &std::path::Path) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut feed = |b: &[u8]| {
        for x in b {
            h ^= u64::from(*x);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    };
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    names.sort();
    for p in names.iter().filter(|p| p.is_file()) {
        feed(
            p.file_name()
                .map(|n| n.as_encoded_bytes())
                .unwrap_or_default(),
        );
        let len = p.metadata().map(|m| m.len()).unwrap_or(0);
        feed(&len.to_le_bytes());
        if len <= 1 << 20 {
            feed(&std::fs::read(p).unwrap_or_default());
        }
    }
    format!("{h:016x}")
}

/// An observation from a request, or what is wrong with it.
fn observation_of(req: &PolicyRequest, info: &PolicyInfo) -> Result<Observation, String> {
    let mut images: BTreeMap<String, Image> = BTreeMap::new();
    for img in &req.images {
        check_size(&img.header.frame_id, img.width, img.height)?;
        images.insert(img.header.frame_id.clone(), img.clone());
    }
    for c in &req.compressed_images {
        let img = sinew_record::codec::decode_color(c)
            .map_err(|e| format!("compressed image {:?}: {e}", c.header.frame_id))?;
        check_size(&c.header.frame_id, img.width, img.height)?;
        images.insert(c.header.frame_id.clone(), img);
    }
    for cam in &info.spec.cameras {
        if !images.contains_key(cam) {
            return Err(format!(
                "no image for camera {cam:?} (the policy reads {}; images carry their camera in header.frame_id)",
                info.spec.cameras.join(", ")
            ));
        }
    }
    let q = &req.joint_state.position;
    if info.spec.uses_state && q.len() < info.spec.state_dim {
        return Err(format!(
            "joint_state has {} positions, the policy reads {}",
            q.len(),
            info.spec.state_dim
        ));
    }
    if q.iter().any(|v| !v.is_finite()) {
        return Err("joint_state has NaN or infinity".into());
    }
    Ok(Observation {
        images,
        joint_positions: q.clone(),
        joint_velocities: req.joint_state.velocity.clone(),
        instruction: req.instruction.clone(),
        stamp_s: req.header.stamp.as_nanos() as f64 * 1e-9,
        step: req.step,
        privileged: None,
    })
}

fn check_size(camera: &str, w: u32, h: u32) -> Result<(), String> {
    if w == 0 || h == 0 || w > MAX_IMAGE_SIDE || h > MAX_IMAGE_SIDE {
        return Err(format!(
            "image {camera:?} is {w}x{h}; sides must be 1..={MAX_IMAGE_SIDE}"
        ));
    }
    Ok(())
}

fn reply_of(
    header: &Header,
    info: &PolicyInfo,
    r: Result<ActionChunk, String>,
    queue_ms: f64,
    batch: usize,
) -> PolicyReply {
    let mut reply = PolicyReply {
        header: header.clone(),
        policy_id: info.id.clone(),
        policy_version: info.version.clone(),
        batch_size: batch as u32,
        queue_ms,
        ..Default::default()
    };
    match r {
        Ok(c) => {
            reply.action_kind = c.kind.map(|k| k.as_str().to_owned()).unwrap_or_default();
            reply.steps = c.actions.len() as u32;
            reply.dims = c.dim() as u32;
            reply.actions = c.actions.into_iter().flatten().collect();
            reply.tokens = c.tokens;
            reply.preprocess_ms = c.timings.preprocess_ms;
            reply.forward_ms = c.timings.forward_ms;
            reply.decode_ms = c.timings.decode_ms;
            if reply.actions.len() != reply.steps as usize * reply.dims as usize {
                reply = PolicyReply {
                    header: header.clone(),
                    error: "the policy produced a ragged chunk".into(),
                    ..Default::default()
                };
            }
        }
        Err(e) => reply.error = e,
    }
    reply
}

fn answer(q: Request, reply: &PolicyReply) {
    if let Err(e) = q.reply(reply.to_cdr()) {
        tracing::warn!("policy server: reply lost: {e}");
    }
}

/// Serves a policy on `bus` until `stop` or the duration.
pub fn serve_policy(
    spec: &PolicyServeSpec,
    bus: &Bus,
    log: &mut dyn FnMut(String),
    stop: &dyn Fn() -> bool,
) -> Result<PolicyServeReport> {
    let mut policy = load_policy_folder(&spec.policy, &spec.device)?;
    let dir = project_path(&spec.policy, "policies");
    let info = PolicyInfo {
        id: dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| spec.policy.clone()),
        version: folder_version(&dir),
        spec: policy.spec().clone(),
        max_batch: spec.max_batch.max(1),
    };
    let info_json = serde_json::to_vec(&info)?;
    let infer = bus.responder(&infer_key(&spec.prefix), 256)?;
    let meta = bus.responder(&info_key(&spec.prefix), 16)?;
    log(format!(
        "policy serve: {} ({} {}, {} camera(s), chunks of {}x{}) on {}/infer, batches of up to {} within {} ms",
        info.id,
        info.spec.architecture,
        info.version,
        info.spec.cameras.len(),
        info.spec.chunk_length,
        info.spec.action_dim,
        spec.prefix,
        info.max_batch,
        spec.batch_wait.as_millis()
    ));
    let start = Instant::now();
    let mut report = PolicyServeReport::default();
    let mut batched = 0u64;
    let mut last_batch = 1usize;
    while !stop() && spec.duration.is_none_or(|d| start.elapsed() < d) {
        while let Some(q) = meta.try_recv() {
            if let Err(e) = q.reply(info_json.clone()) {
                tracing::warn!("policy server: info reply lost: {e}");
            }
        }
        let Some(first) = infer.recv_timeout(Duration::from_millis(50)) else {
            continue;
        };
        let opened = Instant::now();
        let mut batch = vec![(first, opened)];
        while batch.len() < info.max_batch {
            match infer.try_recv() {
                Some(q) => batch.push((q, Instant::now())),
                None => break,
            }
        }
        // Wait for more only when robots are many (this batch or the last had company): a
        // lone robot never waits.
        if batch.len() > 1 || last_batch > 1 {
            while batch.len() < info.max_batch {
                let left = spec.batch_wait.saturating_sub(opened.elapsed());
                if left.is_zero() {
                    break;
                }
                match infer.recv_timeout(left) {
                    Some(q) => batch.push((q, Instant::now())),
                    None => break,
                }
            }
        }
        last_batch = batch.len();
        // Decode and check every request; bad ones are answered at once.
        let mut ready: Vec<(Request, Instant, Header, Observation)> =
            Vec::with_capacity(batch.len());
        for (q, arrived) in batch {
            match PolicyRequest::from_cdr(q.payload()) {
                Err(e) => {
                    report.errors += 1;
                    let r = reply_of(
                        &Header::default(),
                        &info,
                        Err(format!("not a sinew_msgs/PolicyRequest: {e}")),
                        0.0,
                        0,
                    );
                    answer(q, &r);
                }
                Ok(req) => match observation_of(&req, &info) {
                    Ok(o) => ready.push((q, arrived, req.header, o)),
                    Err(e) => {
                        report.errors += 1;
                        answer(q, &reply_of(&req.header, &info, Err(e), 0.0, 0));
                    }
                },
            }
        }
        if ready.is_empty() {
            continue;
        }
        let obs: Vec<&Observation> = ready.iter().map(|(_, _, _, o)| o).collect();
        let t_forward = Instant::now();
        let results = policy.infer_batch(&obs);
        let n = ready.len();
        report.batches += 1;
        batched += n as u64;
        for ((q, arrived, header, _), r) in ready.into_iter().zip(results) {
            let queue_ms = (t_forward - arrived).as_secs_f64() * 1e3;
            let r: Result<ActionChunk, String> = r.map_err(|e: PolicyError| e.to_string());
            match &r {
                Ok(_) => report.replies += 1,
                Err(_) => report.errors += 1,
            }
            answer(q, &reply_of(&header, &info, r, queue_ms, n));
        }
    }
    report.mean_batch = batched as f64 / report.batches.max(1) as f64;
    report.wall_s = start.elapsed().as_secs_f64();
    Ok(report)
}

/// An observation of uniform grey frames of `shade` for every camera `spec` reads, at its image
/// size, and joints at `shade / 2550` rad (for benchmarks and tests of a served policy).
pub fn uniform_observation(spec: &sinew_core::PolicySpec, shade: u8) -> Observation {
    let (w, h) = spec.image_size;
    let frame = Image {
        width: w,
        height: h,
        encoding: "rgb8".into(),
        step: 3 * w,
        data: vec![shade; (3 * w * h) as usize].into(),
        ..Default::default()
    };
    Observation {
        images: spec
            .cameras
            .iter()
            .map(|c| (c.clone(), frame.clone()))
            .collect(),
        joint_positions: vec![0.1 * f64::from(shade) / 255.0; spec.state_dim.max(6)],
        instruction: "put the red cube in the bowl".into(),
        ..Default::default()
    }
}

/// One row of `sinew bench remote`.
#[derive(Debug, Clone, Serialize)]
pub struct RemoteBenchRow {
    /// Robots (client threads) sending requests back to back.
    pub robots: usize,
    /// Largest batch the server ran.
    pub max_batch: usize,
    /// Chunks per second, all robots together.
    pub chunks_per_s: f64,
    /// Round trip seen by a robot, p50, ms.
    pub rtt_p50_ms: f64,
    /// p99, ms.
    pub rtt_p99_ms: f64,
    /// Requests per forward pass, on average.
    pub mean_batch: f64,
    /// Failed requests.
    pub failures: u64,
}

/// Measures a policy served on the local bus to `robots` concurrent clients, with batches of
/// up to `max_batch`, for `seconds`. Each client sends the same observation (the policy's
/// cameras as mid-grey frames, zero joints) back to back.
pub fn bench_remote(
    policy: &str,
    device: &DeviceSpec,
    robots: usize,
    max_batch: usize,
    seconds: f64,
    hub_port: u16,
) -> Result<RemoteBenchRow> {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let prefix = format!("sinew/bench/remote/{}", std::process::id());
    let cfg = BusConfig {
        hub_port,
        ..BusConfig::default()
    };
    let stop = Arc::new(AtomicBool::new(false));
    let spec = PolicyServeSpec {
        policy: policy.to_owned(),
        device: device.clone(),
        prefix: prefix.clone(),
        max_batch,
        batch_wait: Duration::from_millis(5),
        duration: None,
    };
    let server = {
        let stop = stop.clone();
        let cfg = cfg.clone();
        std::thread::spawn(move || -> Result<PolicyServeReport> {
            let bus = Bus::open(&cfg)?;
            let r = serve_policy(&spec, &bus, &mut |_| {}, &|| stop.load(Ordering::Relaxed));
            bus.close();
            r
        })
    };
    let clients: Vec<_> = (0..robots)
        .map(|_| {
            let cfg = cfg.clone();
            let prefix = prefix.clone();
            std::thread::spawn(move || -> Result<(u64, u64, Vec<f64>)> {
                let bus = Bus::open(&cfg)?;
                let mut p =
                    RemotePolicy::connect(bus, &prefix, Duration::from_secs(60), REQUEST_TIMEOUT)?;
                let obs = uniform_observation(p.spec(), 128);
                // One request to warm up, then the measured ones.
                let _ = p.infer(&obs);
                let start = Instant::now();
                let (mut ok, mut failed, mut rtts) = (0u64, 0u64, Vec::new());
                while start.elapsed().as_secs_f64() < seconds {
                    let t = Instant::now();
                    match p.infer(&obs) {
                        Ok(_) => {
                            ok += 1;
                            rtts.push(t.elapsed().as_secs_f64() * 1e3);
                        }
                        Err(_) => failed += 1,
                    }
                }
                Ok((ok, failed, rtts))
            })
        })
        .collect();
    let mut all = Vec::new();
    let (mut ok, mut failed) = (0u64, 0u64);
    for c in clients {
        let (o, f, r) = c
            .join()
            .map_err(|_| anyhow::anyhow!("a bench client panicked"))??;
        ok += o;
        failed += f;
        all.extend(r);
    }
    stop.store(true, Ordering::Relaxed);
    let report = server
        .join()
        .map_err(|_| anyhow::anyhow!("the bench server panicked"))??;
    let pct = |p: f64| crate::hardware::percentile(&all, p);
    Ok(RemoteBenchRow {
        robots,
        max_batch,
        chunks_per_s: ok as f64 / seconds,
        rtt_p50_ms: pct(0.5),
        rtt_p99_ms: pct(0.99),
        mean_batch: report.mean_batch,
        failures: failed,
    })
}
