//! `sinew dataset record`: demonstrations in the simulator written as a LeRobotDataset v3.0
//! (the scripted expert, with exploration noise; DAgger with `--policy`; takeover data with
//! `--takeover`; see `sinew_app::dataset`). `sinew dataset info DIR`: what a dataset holds.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Subcommand};
use sinew_app::dataset::{record_dataset, RecordSpec};
use sinew_app::resolve::{load_robot, load_task};
use sinew_data::Dataset;

use crate::stop::Stop;

#[derive(Debug, Subcommand)]
pub enum DatasetCommand {
    /// Record scripted-expert demonstrations as a LeRobotDataset v3.0.
    Record(Box<RecordArgs>),
    /// Summarise a LeRobotDataset v3.0 (Sinew's or LeRobot's) and check every frame.
    Info(InfoArgs),
}

#[derive(Debug, Args)]
pub struct RecordArgs {
    /// Robot name or folder.
    #[arg(long, default_value = "so101")]
    robot: String,
    /// Tasks, comma-separated (episodes are recorded for each).
    #[arg(long, default_value = "reach,push,pick-place", value_delimiter = ',')]
    task: Vec<String>,
    /// Episodes per task (successful ones, unless --keep-failures).
    #[arg(long, default_value_t = 10)]
    episodes: u64,
    /// A task kept with its own number of episodes instead of --episodes, NAME=EPISODES
    /// (e.g. push=1600: twice the pushes of the other tasks). Comma-separated or repeated.
    #[arg(long, value_name = "NAME=EPISODES", value_delimiter = ',', value_parser = parse_task_episodes)]
    task_episodes: Vec<(String, u64)>,
    /// First seed; episode seeds count up from it (failures skip a seed).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Output folder (must not hold a dataset).
    #[arg(long)]
    out: PathBuf,
    /// Square image side stored (px).
    #[arg(long, default_value_t = 96)]
    image_size: u32,
    /// Store only part of a camera's frames, cropped before the resize to --image-size:
    /// CAMERA=x0,y0,x1,y1 as fractions of the frame (left, top, right, bottom), e.g.
    /// front=0.185,0.26,0.815,0.89. Repeatable; a policy trained on the dataset crops the same way.
    #[arg(long, value_name = "CAMERA=X0,Y0,X1,Y1", value_parser = parse_crop)]
    crop: Vec<(String, [f64; 4])>,
    /// Keep demonstrations that did not succeed.
    #[arg(long)]
    keep_failures: bool,
    /// Standard deviation (rad) of Gaussian noise added to the executed arm-joint targets
    /// (the recorded actions stay the expert's); 0 records clean demonstrations. Applies to
    /// expert-driven episodes only.
    #[arg(long, default_value_t = 0.0)]
    noise: f64,
    /// A policy folder to drive the episodes while the expert labels them (DAgger).
    #[arg(long)]
    policy: Option<String>,
    /// With --policy: the fraction of episodes the expert drives instead (chosen per seed).
    #[arg(long, default_value_t = 0.0)]
    expert_fraction: f64,
    /// With --policy: the policy drives up to a random step within this fraction of the task's
    /// step limit, unrecorded; then the expert takes over from that state and only its part
    /// is recorded, kept when it succeeds (e.g. 0.4).
    #[arg(long, value_name = "FRACTION")]
    takeover: Option<f64>,
    /// With --takeover: the tasks it applies to (default all); the expert alone drives the
    /// others' episodes. `NAME:FRACTION` gives a task its own window (e.g.
    /// `reach,push,pick-place:0.15`: pick-and-place handed over before the jaws close).
    #[arg(long, value_delimiter = ',')]
    takeover_tasks: Vec<String>,
    /// With --takeover: the expert gets the task's whole step limit after the handover instead
    /// of the steps left (the episode runs longer), so late handovers can still be finished.
    #[arg(long)]
    takeover_full_limit: bool,
    /// Episodes simulated at once (with --policy, each worker loads its own copy). The
    /// dataset does not depend on it.
    #[arg(long, default_value_t = 1)]
    jobs: usize,
    #[command(flatten)]
    device: crate::args::DeviceArgs,
    /// Record a person teleoperating real arms (a leader driving a follower) instead of the
    /// simulator: n + ENTER ends an episode, r + ENTER records it again, q + ENTER stops.
    #[arg(long)]
    teleop: bool,
    #[command(flatten)]
    arms: TeleopRecordArgs,
}

/// `--teleop`: the arms, cameras and episode timing.
#[derive(Debug, Args)]
pub struct TeleopRecordArgs {
    /// Leader arm's serial port.
    #[arg(long, requires = "teleop")]
    leader_port: Option<String>,
    /// Leader calibration file (default: LeRobot's teleoperators/so101_leader/<--leader-id>.json).
    #[arg(long, value_name = "FILE", requires = "teleop")]
    leader_calibration: Option<PathBuf>,
    /// Leader arm's id.
    #[arg(long, default_value = "sinew")]
    leader_id: String,
    /// Follower arm's serial port.
    #[arg(long, requires = "teleop")]
    follower_port: Option<String>,
    /// Follower calibration file (default: LeRobot's robots/so101_follower/<--follower-id>.json).
    #[arg(long, value_name = "FILE", requires = "teleop")]
    follower_calibration: Option<PathBuf>,
    /// Follower arm's id.
    #[arg(long, default_value = "sinew")]
    follower_id: String,
    /// A camera recorded: NAME=v4l2:/dev/video0[:WxH@FPS][:mjpeg|yuyv], NAME=file:PATH or
    /// NAME=synthetic:WxH@FPS. Repeatable.
    #[arg(long = "camera", value_name = "SPEC", requires = "teleop")]
    cameras: Vec<sinew_camera::CameraSpec>,
    /// The task text of every episode (LeRobot's --dataset.single_task).
    #[arg(long, requires = "teleop")]
    single_task: Option<String>,
    /// Recording time per episode, s.
    #[arg(long, default_value_t = 20.0)]
    episode_time: f64,
    /// Time to reset the scene between episodes, s (teleoperation goes on, unrecorded).
    #[arg(long, default_value_t = 5.0)]
    reset_time: f64,
    /// Frames per second stored.
    #[arg(long, default_value_t = 30)]
    fps: u32,
    /// Teleoperation loop rate, Hz.
    #[arg(long, default_value_t = 100.0)]
    rate: f64,
    /// Line rate of both servo buses, baud.
    #[arg(long, default_value_t = 1_000_000)]
    baud: u32,
}

#[derive(Debug, Args)]
pub struct InfoArgs {
    /// The dataset folder.
    dir: PathBuf,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(cmd: DatasetCommand, stop: &Stop) -> Result<()> {
    match cmd {
        DatasetCommand::Record(a) => record(*a, stop),
        DatasetCommand::Info(a) => info(a),
    }
}

/// `CAMERA=x0,y0,x1,y1`.
fn parse_crop(s: &str) -> Result<(String, [f64; 4]), String> {
    let (cam, rest) = s
        .split_once('=')
        .ok_or_else(|| format!("`{s}` is not CAMERA=x0,y0,x1,y1"))?;
    let v: Vec<f64> = rest
        .split(',')
        .map(|x| x.trim().parse::<f64>())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("`{s}`: {e}"))?;
    let c: [f64; 4] = v
        .try_into()
        .map_err(|_| format!("`{s}`: four numbers x0,y0,x1,y1 are needed"))?;
    // The rectangle is checked where the recording is set up (`record_dataset`).
    Ok((cam.trim().to_owned(), c))
}

fn parse_task_episodes(s: &str) -> std::result::Result<(String, u64), String> {
    let (name, n) = s
        .split_once('=')
        .ok_or_else(|| format!("`{s}`: expected NAME=EPISODES, e.g. push=1600"))?;
    let n: u64 = n
        .trim()
        .parse()
        .map_err(|_| format!("`{s}`: `{n}` is not a whole number of episodes"))?;
    Ok((name.trim().to_owned(), n))
}

/// `NAME=VALUE` flag entries as a map, refusing a name given twice: `--{flag} names {what}
/// `NAME` twice`.
fn unique_names<V: Copy>(
    list: &[(String, V)],
    flag: &str,
    what: &str,
) -> Result<std::collections::BTreeMap<String, V>> {
    let mut m = std::collections::BTreeMap::new();
    for (name, v) in list {
        if m.insert(name.clone(), *v).is_some() {
            anyhow::bail!("--{flag} names {what} `{name}` twice");
        }
    }
    Ok(m)
}

fn record(a: RecordArgs, stop: &Stop) -> Result<()> {
    if a.teleop {
        return record_teleop(a, stop);
    }
    let spec = RecordSpec {
        robot: load_robot(&a.robot)?,
        tasks: a.task.iter().map(|t| load_task(t)).collect::<Result<_>>()?,
        episodes: a.episodes,
        task_episodes: unique_names(&a.task_episodes, "task-episodes", "task")?,
        seed: a.seed,
        out: a.out.clone(),
        image_size: a.image_size,
        crops: unique_names(&a.crop, "crop", "camera")?,
        keep_failures: a.keep_failures,
        noise: a.noise,
        policy: a.policy.clone(),
        expert_fraction: a.expert_fraction,
        takeover: a.takeover,
        takeover_tasks: a.takeover_tasks.clone(),
        takeover_full_limit: a.takeover_full_limit,
        jobs: a.jobs,
        device: a.device.spec(),
    };
    let mut current = String::new();
    let r = record_dataset(
        &spec,
        |task, kept, tried| {
            if task != current {
                if !current.is_empty() {
                    eprintln!();
                }
                current = task.to_owned();
            }
            eprint!(
                "\rdataset: {task} {kept}/{} episodes ({tried} tried)   ",
                spec.episodes_of(task)
            );
        },
        &|| stop.requested(),
    )?;
    eprintln!();
    println!(
        "dataset {}: {} episodes, {} frames, {} tasks, {:.1} MB, {:.1} s",
        a.out.display(),
        r.episodes,
        r.frames,
        r.tasks,
        dir_size(&a.out) as f64 / 1e6,
        r.wall_s
    );
    for (t, (k, n, ok, driven)) in r.per_task {
        print!("  {t}: {k} kept of {n} demonstrations (seeds {}..)", a.seed);
        if driven > 0 {
            print!(
                "; the policy drove {driven} and succeeded in {ok} ({:.0}%)",
                100.0 * ok as f64 / driven as f64
            );
        }
        println!();
    }
    Ok(())
}

fn record_teleop(a: RecordArgs, stop: &Stop) -> Result<()> {
    use sinew_app::hardware::{
        record_teleop_dataset, ArmSpec, RecordKey, TeleopDatasetSpec, TeleopSpec,
    };
    use sinew_feetech::calibration::{lerobot_calibration_path, ArmRole};
    if !a.crop.is_empty() {
        anyhow::bail!(
            "--crop applies to simulated recordings; teleoperated ones store whole frames"
        );
    }
    let t = &a.arms;
    let (Some(leader), Some(follower)) = (&t.leader_port, &t.follower_port) else {
        anyhow::bail!("--teleop needs --leader-port and --follower-port");
    };
    let Some(task) = t.single_task.clone() else {
        anyhow::bail!("--teleop needs --single-task \"what the person does\"");
    };
    let arm = |port: &str, file: &Option<PathBuf>, id: &str, role| ArmSpec {
        port: port.to_owned(),
        calibration: file
            .clone()
            .unwrap_or_else(|| lerobot_calibration_path(role, id)),
        baud: t.baud,
    };
    let spec = TeleopDatasetSpec {
        teleop: TeleopSpec {
            robot: load_robot(&a.robot)?,
            leader: arm(leader, &t.leader_calibration, &t.leader_id, ArmRole::Leader),
            follower: arm(
                follower,
                &t.follower_calibration,
                &t.follower_id,
                ArmRole::Follower,
            ),
            rate_hz: t.rate,
            duration_s: None,
        },
        cameras: t.cameras.clone(),
        out: a.out.clone(),
        task,
        episodes: a.episodes,
        episode_s: t.episode_time,
        reset_s: t.reset_time,
        fps: t.fps,
        image_size: a.image_size,
    };
    let (tx, keys) = crossbeam_channel::unbounded();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            let key = match line.trim() {
                "n" | "next" => RecordKey::Next,
                "r" | "rerecord" => RecordKey::Rerecord,
                "q" | "quit" | "stop" => RecordKey::Stop,
                _ => continue,
            };
            if tx.send(key).is_err() {
                break;
            }
        }
    });
    eprintln!(
        "dataset: teleoperating {} from {leader}; type n + ENTER for the next episode, r + ENTER to record this one again, q + ENTER to stop",
        follower
    );
    let mut last = std::time::Instant::now();
    let r = record_teleop_dataset(
        &spec,
        &keys,
        &mut |p| {
            if last.elapsed().as_secs_f64() >= 0.25 {
                last = std::time::Instant::now();
                eprint!(
                    "\rdataset: episode {}/{} {} {:>5.1}/{:.1} s, {} frames   ",
                    (p.kept + 1).min(p.episodes),
                    p.episodes,
                    if p.recording {
                        "recording"
                    } else {
                        "reset    "
                    },
                    p.phase_s,
                    p.phase_len_s,
                    p.frames
                );
            }
        },
        &|| stop.requested(),
    )?;
    eprintln!();
    println!(
        "dataset {}: {} episodes, {} frames ({} re-recorded, {} frames skipped), {:.1} MB; teleop {:.1} Hz",
        a.out.display(),
        r.episodes,
        r.frames,
        r.rerecorded,
        r.skipped_frames,
        dir_size(&a.out) as f64 / 1e6,
        r.teleop.rate_hz
    );
    Ok(())
}

fn dir_size(p: &std::path::Path) -> u64 {
    let mut n = 0;
    if let Ok(rd) = std::fs::read_dir(p) {
        for e in rd.flatten() {
            let p = e.path();
            n += if p.is_dir() {
                dir_size(&p)
            } else {
                e.metadata().map(|m| m.len()).unwrap_or(0)
            };
        }
    }
    n
}

fn info(a: InfoArgs) -> Result<()> {
    let ds = Dataset::open(&a.dir)?;
    let frames = ds.read_frames()?;
    let sizes = ds.check_images(&frames)?;
    let mut per_task: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for e in &ds.episodes {
        let t = e.tasks.first().cloned().unwrap_or_default();
        let entry = per_task.entry(t).or_default();
        entry.0 += 1;
        entry.1 += e.length;
    }
    let lengths: Vec<u64> = ds.episodes.iter().map(|e| e.length).collect();
    let bytes = dir_size(&a.dir);
    if a.json {
        let v = serde_json::json!({
            "dir": a.dir, "codebase_version": ds.info.codebase_version,
            "robot_type": ds.info.robot_type, "fps": ds.info.fps,
            "episodes": ds.info.total_episodes, "frames": ds.info.total_frames,
            "tasks": ds.tasks, "cameras": ds.cameras,
            "image_sizes": sizes, "bytes": bytes,
            "episodes_per_task": per_task.iter().map(|(k, v)| (k.clone(), v.0)).collect::<BTreeMap<_, _>>(),
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    println!("dataset    {}", a.dir.display());
    println!(
        "format     LeRobotDataset {} ({:.1} MB)",
        ds.info.codebase_version,
        bytes as f64 / 1e6
    );
    println!(
        "robot      {}",
        ds.info.robot_type.clone().unwrap_or_default()
    );
    println!("fps        {}", ds.info.fps);
    println!(
        "episodes   {} ({} frames; length min {} / mean {:.1} / max {})",
        ds.info.total_episodes,
        ds.info.total_frames,
        lengths.iter().min().unwrap_or(&0),
        lengths.iter().sum::<u64>() as f64 / lengths.len().max(1) as f64,
        lengths.iter().max().unwrap_or(&0)
    );
    for (c, (w, h)) in ds.cameras.iter().zip(&sizes) {
        println!("camera     {c}: {w}x{h} (image, PNG in parquet)");
    }
    for f in ["observation.state", "action"] {
        if let Some(s) = ds.info.feature(f) {
            println!("feature    {f}: {} {:?}", s.dtype, s.shape);
        }
    }
    println!("tasks      {}", ds.tasks.len());
    for (t, (n, frames)) in &per_task {
        println!("  {n:>5} episodes {frames:>7} frames  {t}");
    }
    Ok(())
}
