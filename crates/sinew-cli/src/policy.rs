//! `sinew policy info|run`: what a policy folder expects and produces, and one inference on
//! an image file.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use sinew_core::Observation;
use sinew_policy::folder::{inspect, load_policy};
use sinew_policy::preprocess::read_image_file;

use crate::args::DeviceArgs;

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Print what a policy folder expects (cameras, image size, state) and produces (action
    /// space, chunk length, tokenizer), without loading its weights.
    Info(InfoArgs),
    /// Run one inference on image files and print the action chunk as JSON.
    Run(RunArgs),
    /// Serve a policy to robots on the network: zenoh queries on PREFIX/infer (typed
    /// sinew_msgs/PolicyRequest and PolicyReply, metadata on PREFIX/info), concurrent requests
    /// batched into one forward pass. Robots use it with `--policy zenoh:PREFIX`. With
    /// `--openpi PORT`, openpi's WebSocket protocol instead, for openpi clients.
    Serve(ServeArgs),
    /// Set how a sinew-tiny policy decodes its action bins (config.json's `decode`, or
    /// `decode_by_dim` given one per action dimension) and print the result. The weights are
    /// untouched; train-sinew-tiny.sh chooses it per joint on the validation seeds.
    Decode(DecodeArgs),
}

#[derive(Debug, Args)]
pub struct DecodeArgs {
    /// The policy folder.
    dir: PathBuf,
    /// `argmax`, `mode` or `expectation`: one for every dimension, or comma-separated, one per
    /// action dimension in action order.
    #[arg(long, value_delimiter = ',', required = true)]
    set: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The policy folder (a name under policies/ or a path).
    pub dir: String,
    /// Key prefix the policy is served under.
    #[arg(long, default_value = "sinew/policy")]
    pub prefix: String,
    /// Most requests run in one forward pass (1: no batching).
    #[arg(long, default_value_t = 8)]
    pub max_batch: usize,
    /// How long the first request of a batch waits for others, ms.
    #[arg(long, default_value_t = 5.0)]
    pub batch_wait_ms: f64,
    /// Stop after this many seconds.
    #[arg(long)]
    pub duration: Option<f64>,
    /// Serve over openpi's WebSocket protocol on this port (all interfaces) instead of zenoh,
    /// for openpi clients (`WebsocketClientPolicy`); `GET /healthz` answers 200. Clients'
    /// requests run one at a time (no batching); 0 picks a free port.
    #[arg(long, value_name = "PORT")]
    pub openpi: Option<u16>,
    #[command(flatten)]
    pub device: DeviceArgs,
}

#[derive(Debug, Args)]
pub struct InfoArgs {
    /// The policy folder (config.json, *.safetensors, statistics, tokenizer).
    dir: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The policy folder.
    dir: PathBuf,
    /// Camera images as NAME=FILE.png (any format the `image` crate reads: PNG).
    #[arg(long = "image", value_name = "NAME=FILE", required = true)]
    images: Vec<String>,
    /// The instruction.
    #[arg(long)]
    instruction: String,
    /// Joint positions (rad), comma-separated, for policies that read the state.
    #[arg(long, value_delimiter = ',', allow_hyphen_values = true)]
    state: Vec<f64>,
    #[command(flatten)]
    device: DeviceArgs,
}

pub fn run(cmd: PolicyCommand, bus: &sinew_bus::BusConfig, stop: &crate::stop::Stop) -> Result<()> {
    match cmd {
        PolicyCommand::Info(a) => info(a),
        PolicyCommand::Run(a) => run_once(a),
        PolicyCommand::Serve(a) => serve(a, bus, stop),
        PolicyCommand::Decode(a) => set_decode(a),
    }
}

fn set_decode(a: DecodeArgs) -> Result<()> {
    use sinew_policy::models::sinew_tiny::Decode;
    let decode = a
        .set
        .iter()
        .map(|s| {
            Decode::from_name(s.trim()).ok_or_else(|| {
                let names: Vec<&str> = Decode::ALL.iter().map(|d| d.as_str()).collect();
                anyhow::anyhow!("--set {s}: expected one of {}", names.join(", "))
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let cfg = sinew_policy::models::sinew_tiny::set_decode(&a.dir, &decode)?;
    let names: Vec<&str> = (0..cfg.action_dim)
        .map(|k| cfg.decode_of(k).as_str())
        .collect();
    println!("{}: decode {}", a.dir.display(), names.join(","));
    Ok(())
}

fn serve(a: ServeArgs, bus_cfg: &sinew_bus::BusConfig, stop: &crate::stop::Stop) -> Result<()> {
    if let Some(port) = a.openpi {
        return serve_openpi(&a, port, stop);
    }
    use sinew_app::remote::{serve_policy, PolicyServeSpec};
    if !(a.batch_wait_ms.is_finite() && a.batch_wait_ms >= 0.0) {
        bail!(
            "--batch-wait-ms {}: expected a non-negative number",
            a.batch_wait_ms
        );
    }
    let spec = PolicyServeSpec {
        policy: a.dir.clone(),
        device: a.device.spec(),
        prefix: a.prefix.clone(),
        max_batch: a.max_batch.max(1),
        batch_wait: std::time::Duration::from_secs_f64(a.batch_wait_ms / 1e3),
        duration: a.duration.map(std::time::Duration::from_secs_f64),
    };
    let bus = sinew_bus::Bus::open(bus_cfg)?;
    let r = serve_policy(&spec, &bus, &mut |l| eprintln!("{l}"), &|| stop.requested())?;
    bus.close();
    eprintln!(
        "policy serve: {} chunks, {} errors in {:.1} s; {} forward passes, {:.2} requests each on average",
        r.replies, r.errors, r.wall_s, r.batches, r.mean_batch
    );
    Ok(())
}

/// `policy serve DIR --openpi PORT`: the policy behind openpi's WebSocket protocol.
fn serve_openpi(a: &ServeArgs, port: u16, stop: &crate::stop::Stop) -> Result<()> {
    let policy = sinew_app::resolve::load_policy_folder(&a.dir, &a.device.spec())?;
    let server = sinew_app::openpi::OpenpiServer::bind(policy, &format!("0.0.0.0:{port}"))?;
    eprintln!(
        "policy serve: {} over openpi's protocol on ws://{} (GET /healthz)",
        a.dir,
        server.local_addr()?
    );
    let start = std::time::Instant::now();
    let duration = a.duration.map(std::time::Duration::from_secs_f64);
    server.serve(&|| stop.requested() || duration.is_some_and(|d| start.elapsed() >= d))
}

fn info(a: InfoArgs) -> Result<()> {
    let i = inspect(&a.dir)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&i)?);
        return Ok(());
    }
    let s = &i.spec;
    println!("policy        {}", i.dir.display());
    println!("architecture  {}", s.architecture);
    println!("reads");
    println!(
        "  cameras     {} at {}x{} px (resized if different)",
        s.cameras.join(", "),
        s.image_size.0,
        s.image_size.1
    );
    if s.uses_state {
        println!("  state       {} joint positions", s.state_dim);
    } else {
        println!("  state       not used");
    }
    println!("  instruction yes");
    println!("produces");
    println!(
        "  actions     {} x {} ({}), {} step(s) per chunk at {} Hz",
        s.chunk_length, s.action_dim, s.action_kind, s.chunk_length, s.control_rate_hz
    );
    if let Some(n) = s.n_action_steps {
        println!("  executes    {n} action(s) per inference (n_action_steps)");
    }
    println!("  tokens      {}", s.action_tokenizer);
    println!("weights");
    println!(
        "  parameters  {} ({:.1} M)",
        i.parameters,
        i.parameters as f64 / 1e6
    );
    let dtypes: Vec<String> = i.dtypes.iter().map(|(k, v)| format!("{k} x{v}")).collect();
    println!("  dtypes      {}", dtypes.join(", "));
    for f in &i.weight_files {
        println!("  file        {}", f.display());
    }
    println!("statistics    {}", i.statistics.join(", "));
    for (k, v) in &i.details {
        println!("{k:<13} {v}");
    }
    Ok(())
}

fn run_once(a: RunArgs) -> Result<()> {
    let mut images = BTreeMap::new();
    for spec in &a.images {
        let Some((name, file)) = spec.split_once('=') else {
            bail!("--image {spec}: expected NAME=FILE, for example front=frame.png");
        };
        images.insert(
            name.to_owned(),
            read_image_file(std::path::Path::new(file))
                .with_context(|| format!("reading image {file}"))?,
        );
    }
    let mut policy = load_policy(&a.dir, &a.device.spec().options()?)?;
    let obs = Observation {
        images,
        joint_positions: a.state,
        instruction: a.instruction,
        ..Default::default()
    };
    let chunk = policy.infer(&obs)?;
    println!("{}", serde_json::to_string_pretty(&chunk)?);
    Ok(())
}
