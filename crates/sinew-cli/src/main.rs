//! `sinew`: the command-line tool of the Sinew embodied-agent runtime.
//!
//! Argument parsing and printing only: what each command does lives in `sinew-app` (the
//! loops, episodes, serving, replay, datasets) and in the adapter crates.

/// mimalloc keeps freed pages for reuse. With glibc's malloc, every large tensor candle
/// frees goes back to the kernel and the next one is page-faulted in again: a training step
/// of sinew-tiny spent 13% of its samples in page faults; mimalloc took `sinew bench train`
/// from 1.32 to 1.46 steps/s.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod args;
mod arm;
mod bench;
mod bench_policy;
mod bench_train;
mod camera;
mod dataset;
mod eval;
mod policy;
mod record;
mod replay;
mod robot;
mod run;
mod security;
mod sim;
mod stop;
mod tokens;
mod topics;
mod train;

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};
use sinew_bus::{BusConfig, RosInterop, TlsFiles, DEFAULT_HUB_PORT};

/// Sinew: a runtime for vision-language-action robot control.
#[derive(Debug, Parser)]
#[command(name = "sinew", version, about, long_about = None, propagate_version = true)]
struct Cli {
    /// More log output (-v info, -vv debug, -vvv trace). RUST_LOG overrides it.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,

    #[command(flatten)]
    bus: BusArgs,

    #[command(subcommand)]
    command: Command,
}

/// How to join the bus. With none of these, Sinew processes on this machine find each other
/// through a loopback hub and nothing outside the machine can reach them.
#[derive(Debug, Args)]
struct BusArgs {
    /// Connect to a zenoh endpoint, e.g. tcp/192.168.1.20:7447 (repeatable).
    #[arg(long, value_name = "ENDPOINT", global = true)]
    connect: Vec<String>,
    /// Listen on a zenoh endpoint, e.g. tcp/0.0.0.0:7447 (repeatable).
    #[arg(long, value_name = "ENDPOINT", global = true)]
    listen: Vec<String>,
    /// A zenoh JSON5 configuration file (--connect/--listen are added to it).
    #[arg(long, value_name = "FILE", global = true)]
    zenoh_config: Option<PathBuf>,
    /// Loopback port of the default local hub.
    #[arg(long, value_name = "PORT", default_value_t = DEFAULT_HUB_PORT, global = true)]
    hub_port: u16,
    /// Do not use zenoh's shared-memory transport for large payloads.
    #[arg(long, global = true)]
    no_shm: bool,
    /// How ROS 2 peers see the topics: `bridge` (zenoh-bridge-ros2dds names) or
    /// `rmw-zenoh[:DOMAIN]` (ROS 2's own zenoh middleware, domain 0 by default).
    #[arg(long, value_name = "MODE", default_value = "bridge", global = true)]
    ros: RosInterop,
    /// This process's TLS certificate (PEM); its common name is its identity in access
    /// control. With --tls-key and --tls-ca, `tls/` endpoints are mutually authenticated.
    #[arg(long, value_name = "PEM", global = true, requires_all = ["tls_key", "tls_ca"])]
    tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, value_name = "PEM", global = true, requires_all = ["tls_cert", "tls_ca"])]
    tls_key: Option<PathBuf>,
    /// The certificate authority that signs every peer's certificate (PEM).
    #[arg(long, value_name = "PEM", global = true, requires_all = ["tls_cert", "tls_key"])]
    tls_ca: Option<PathBuf>,
    /// Access control this process enforces on what peers send it: `lab` (the built-in lab
    /// profile: controllers command, operators stop, others read) or a zenoh JSON5 file with
    /// an `access_control` object. Needs TLS; see docs/security.md.
    #[arg(long, value_name = "PROFILE", global = true)]
    acl: Option<PathBuf>,
}

impl BusArgs {
    fn config(&self) -> BusConfig {
        BusConfig {
            connect: self.connect.clone(),
            listen: self.listen.clone(),
            config_file: self.zenoh_config.clone(),
            hub_port: self.hub_port,
            shared_memory: !self.no_shm,
            ros: self.ros,
            tls: match (&self.tls_cert, &self.tls_key, &self.tls_ca) {
                (Some(cert), Some(key), Some(ca)) => Some(TlsFiles {
                    cert: cert.clone(),
                    key: key.clone(),
                    ca: ca.clone(),
                }),
                _ => None,
            },
            acl: self.acl.clone(),
        }
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Inspect and publish bus traffic.
    #[command(subcommand)]
    Topics(topics::TopicsCommand),
    /// Measure Sinew's performance.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Robots: check descriptions and kinematics; serve, calibrate and emulate real arms.
    #[command(subcommand)]
    Robot(robot::RobotCommand),
    /// Drive a follower arm from a leader arm a person moves (SO-101), through the follower's
    /// limits.
    Teleop(arm::TeleopArgs),
    /// Run the simulator: scripted experts and benchmarks.
    #[command(subcommand)]
    Sim(sim::SimCommand),
    /// Run a policy in closed loop on a robot's bus keys (a real robot or `sinew sim serve`).
    Run(run::RunArgs),
    /// Record a robot's keys to a rosbag2-compatible MCAP file; `record info FILE` inspects one.
    Record(record::RecordArgs),
    /// Play a recording back on the bus.
    Replay(replay::ReplayArgs),
    /// Inspect and run policy folders (OpenVLA, sinew-tiny).
    #[command(subcommand)]
    Policy(policy::PolicyCommand),
    /// LeRobotDataset v3.0: record demonstrations, inspect datasets.
    #[command(subcommand)]
    Dataset(dataset::DatasetCommand),
    /// Evaluate a policy in closed loop in the simulator (success per task and instruction).
    Eval(eval::EvalArgs),
    /// Train sinew-tiny by behaviour cloning on a LeRobotDataset.
    Train(train::TrainArgs),
    /// Action tokenizers (OpenVLA bins, FAST): fit, encode, decode.
    #[command(subcommand)]
    Tokens(tokens::TokensCommand),
    /// Cameras: list V4L2 webcams, publish cameras on a robot's camera keys.
    #[command(subcommand)]
    Camera(camera::CameraCommand),
    /// Transport security: make a lab's certificates, show the built-in access profile.
    #[command(subcommand)]
    Security(security::SecurityCommand),
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info,zenoh=warn",
        2 => "debug,zenoh=info",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_filter(filter),
        )
        // Counts what access control refuses (zenoh reports it at trace level only), for the
        // serving telemetry; the log output above keeps its own level.
        .with(sinew_bus::security::acl_refusal_layer())
        .init();
}

fn run() -> Result<()> {
    let cli = Cli::parse();
    let workers = match &cli.command {
        Command::Train(a) => a.workers(),
        Command::Bench(bench::BenchCommand::Train(a)) => a.workers(),
        _ => 1,
    };
    if workers > 1 {
        train::kernels_on_calling_thread();
    }
    init_logging(cli.verbose);
    let stop = stop::Stop::install()?;
    let bus = cli.bus.config();
    sinew_app::remote::set_bus_config(bus.clone());
    match cli.command {
        Command::Topics(cmd) => topics::run(cmd, &bus, &stop),
        Command::Bench(cmd) => bench::run(cmd, &bus, &cli.bus, &stop),
        Command::Robot(cmd) => robot::run(cmd, &bus, &stop),
        Command::Teleop(a) => arm::run_teleop(a, &stop),
        Command::Sim(cmd) => sim::run(cmd, &bus, &stop),
        Command::Policy(cmd) => policy::run(cmd, &bus, &stop),
        Command::Run(a) => run::run(a, &bus, &stop),
        Command::Record(a) => record::run(a, &bus, &stop),
        Command::Replay(a) => replay::replay(a, &bus, &stop),
        Command::Tokens(cmd) => tokens::run(cmd),
        Command::Dataset(cmd) => dataset::run(cmd, &stop),
        Command::Train(a) => train::run(a, &stop),
        Command::Eval(a) => eval::run(a, &stop),
        Command::Camera(cmd) => camera::run(cmd, &bus, &stop),
        Command::Security(cmd) => security::run(cmd),
    }
}

/// Output piped into a reader that has stopped (`sinew robot fk ... | head`) ends the program
/// quietly, as it would a C tool killed by SIGPIPE: Rust ignores SIGPIPE, so `println!`
/// panics with "failed printing to stdout: Broken pipe" instead. Other panics keep the
/// default report.
fn quiet_on_broken_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let msg = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or("");
        if msg.contains("failed printing to stdout") && msg.contains("Broken pipe") {
            std::process::exit(0);
        }
        default(info);
    }));
}

fn main() {
    quiet_on_broken_pipe();
    if let Err(e) = run() {
        // One line with the chain of causes; no backtrace even when RUST_BACKTRACE is set.
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
