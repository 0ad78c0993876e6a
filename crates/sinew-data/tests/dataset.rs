//! Writing and reading LeRobotDataset v3.0.

use std::path::{Path, PathBuf};

use sinew_data::{Dataset, DatasetSpec, DatasetWriter, RgbImage};

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("sinew-data-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn spec() -> DatasetSpec {
    DatasetSpec {
        robot_type: "so101".into(),
        fps: 10,
        state_names: (0..6).map(|i| format!("j{i}")).collect(),
        action_names: (0..6).map(|i| format!("a{i}")).collect(),
        cameras: vec![("front".into(), 16, 12), ("wrist".into(), 8, 8)],
        crops: [("front".to_owned(), [0.25, 0.5, 0.75, 1.0])].into(),
        data_files_size_in_mb: 100.0,
    }
}

fn image(w: u32, h: u32, seed: u32) -> RgbImage {
    RgbImage {
        width: w,
        height: h,
        data: (0..w * h * 3)
            .map(|i| (i.wrapping_mul(2_654_435_761).wrapping_add(seed * 97) >> 7) as u8)
            .collect(),
    }
}

type Written = Vec<(u64, u64, Vec<f32>, Vec<f32>, RgbImage, RgbImage, String)>;

fn write(dir: &Path, episodes: &[(usize, &str)]) -> Written {
    let mut w = DatasetWriter::create(dir, spec()).expect("create");
    let mut out = Vec::new();
    for (e, (len, task)) in episodes.iter().enumerate() {
        for f in 0..*len {
            let state: Vec<f32> = (0..6)
                .map(|k| (e * 100 + f * 10 + k) as f32 * 0.01)
                .collect();
            let action: Vec<f32> = state.iter().map(|v| v + 0.5).collect();
            let (a, b) = (image(16, 12, (e * 1000 + f) as u32), image(8, 8, f as u32));
            w.add_frame(&state, &action, &[a.clone(), b.clone()])
                .expect("frame");
            out.push((e as u64, f as u64, state, action, a, b, task.to_string()));
        }
        w.end_episode(task).expect("end");
    }
    let info = w.finish().expect("finish");
    assert_eq!(info.total_frames, out.len() as u64);
    out
}

#[test]
fn a_dataset_reads_back_identical() {
    let dir = tmp("roundtrip");
    let written = write(
        &dir,
        &[
            (5, "touch the red cube"),
            (3, "push the blue cube"),
            (4, "touch the red cube"),
        ],
    );
    let ds = Dataset::open(&dir).expect("open");
    assert_eq!(ds.tasks, vec!["touch the red cube", "push the blue cube"]);
    assert_eq!(ds.episodes.len(), 3);
    assert_eq!(ds.cameras, vec!["front", "wrist"]);
    // The crop the front frames were taken from travels with the dataset; the wrist had none.
    assert_eq!(
        ds.info.crop("front").expect("crop"),
        Some([0.25, 0.5, 0.75, 1.0])
    );
    assert_eq!(ds.info.crop("wrist").expect("crop"), None);
    assert_eq!(ds.episodes[1].dataset_from_index, 5);
    assert_eq!(ds.episodes[1].tasks, vec!["push the blue cube"]);
    let frames = ds.read_frames().expect("frames");
    assert_eq!(frames.len(), written.len());
    for (f, (e, i, s, a, im0, im1, task)) in frames.iter().zip(&written) {
        assert_eq!((f.episode_index, f.frame_index), (*e, *i));
        assert_eq!(&f.state, s);
        assert_eq!(&f.action, a);
        assert_eq!(&f.image(0).expect("png"), im0);
        assert_eq!(&f.image(1).expect("png"), im1);
        assert_eq!(&ds.tasks[f.task_index as usize], task);
        assert!((f.timestamp - *i as f32 / 10.0).abs() < 1e-6);
    }
    assert_eq!(
        ds.check_images(&frames).expect("sizes"),
        vec![(16, 12), (8, 8)]
    );
}

#[test]
fn the_layout_is_lerobots() {
    let dir = tmp("layout");
    write(&dir, &[(4, "a"), (2, "b")]);
    for p in [
        "meta/info.json",
        "meta/stats.json",
        "meta/tasks.parquet",
        "meta/episodes/chunk-000/file-000.parquet",
        "data/chunk-000/file-000.parquet",
    ] {
        assert!(dir.join(p).is_file(), "{p}");
    }
    let info: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("meta/info.json")).expect("info"))
            .expect("json");
    assert_eq!(info["codebase_version"], "v3.0");
    assert_eq!(info["fps"], 10);
    assert_eq!(info["total_episodes"], 2);
    assert_eq!(info["total_frames"], 6);
    assert_eq!(info["total_tasks"], 2);
    assert_eq!(info["chunks_size"], 1000);
    assert_eq!(info["splits"]["train"], "0:2");
    assert_eq!(
        info["data_path"],
        "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
    );
    assert_eq!(
        info["features"]["observation.images.front"]["dtype"],
        "image"
    );
    assert_eq!(
        info["features"]["observation.images.front"]["shape"],
        serde_json::json!([12, 16, 3])
    );
    assert_eq!(
        info["features"]["observation.state"]["shape"],
        serde_json::json!([6])
    );
    for k in [
        "timestamp",
        "frame_index",
        "episode_index",
        "index",
        "task_index",
    ] {
        assert!(info["features"][k].is_object(), "{k}");
    }
    let stats: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("meta/stats.json")).expect("stats"))
            .expect("json");
    for k in [
        "min", "max", "mean", "std", "count", "q01", "q10", "q50", "q90", "q99",
    ] {
        assert!(stats["action"][k].is_array(), "{k}");
    }
    // Images: per channel, shape (3, 1, 1), values / 255.
    let m = &stats["observation.images.front"]["mean"];
    assert_eq!(m.as_array().expect("3").len(), 3);
    let v = m[0][0][0].as_f64().expect("f64");
    assert!((0.0..=1.0).contains(&v), "{v}");
    // action[0] over frames: 0.5, 0.6, 0.7, 0.8 and 1.5, 1.6: min/max exact.
    assert!((stats["action"]["min"][0].as_f64().expect("min") - 0.5).abs() < 1e-6);
    assert!((stats["action"]["max"][0].as_f64().expect("max") - 1.6).abs() < 1e-6);
}

#[test]
fn bad_input_is_refused_naming_the_episode_and_frame() {
    let dir = tmp("bad");
    let mut w = DatasetWriter::create(&dir, spec()).expect("create");
    let ok = [image(16, 12, 0), image(8, 8, 0)];
    w.add_frame(&[0.0; 6], &[0.0; 6], &ok).expect("frame 0");
    let e = w
        .add_frame(&[0.0; 6], &[0.0, f32::NAN, 0.0, 0.0, 0.0, 0.0], &ok)
        .expect_err("NaN");
    assert_eq!(e.to_string(), "episode 0, frame 1: action[1] is NaN");
    let e = w
        .add_frame(&[0.0; 6], &[0.0; 6], &[image(16, 12, 0), image(9, 8, 0)])
        .expect_err("size");
    assert!(e.to_string().contains("camera wrist: 9x8"), "{e}");
    w.end_episode("t").expect("end");
    w.finish().expect("finish");
    // A second writer on the same folder is refused.
    let e = DatasetWriter::create(&dir, spec()).expect_err("exists");
    assert!(e.to_string().contains("already"), "{e}");

    // Missing files and inconsistent metadata.
    let dir = tmp("broken");
    write(&dir, &[(3, "a"), (2, "a")]);
    let info_path = dir.join("meta/info.json");
    let text = std::fs::read_to_string(&info_path).expect("info");
    std::fs::write(
        &info_path,
        text.replace("\"total_frames\": 5", "\"total_frames\": 6"),
    )
    .expect("write");
    let e = Dataset::open(&dir).expect_err("inconsistent");
    assert!(
        e.to_string().contains("info.json") && e.to_string().contains("6 frames"),
        "{e}"
    );
    std::fs::write(&info_path, &text).expect("restore");
    std::fs::remove_file(dir.join("data/chunk-000/file-000.parquet")).expect("rm");
    let ds = Dataset::open(&dir).expect("metadata alone opens");
    let e = ds.read_frames().expect_err("no data file");
    assert!(e.to_string().contains("file-000.parquet"), "{e}");
    std::fs::write(
        &info_path,
        text.replace("\"dtype\": \"image\"", "\"dtype\": \"video\""),
    )
    .expect("write");
    let e = Dataset::open(&dir).expect_err("video");
    assert!(e.to_string().contains("mp4 video"), "{e}");
    std::fs::remove_file(dir.join("meta/tasks.parquet")).expect("rm");
    std::fs::write(&info_path, &text).expect("restore");
    let e = Dataset::open(&dir).expect_err("no tasks");
    assert!(e.to_string().contains("tasks.parquet"), "{e}");
}

#[test]
fn large_datasets_roll_over_to_new_data_files() {
    let dir = tmp("rollover");
    let mut s = spec();
    s.data_files_size_in_mb = 0.001; // every episode past the first starts a new file
    let mut w = DatasetWriter::create(&dir, s).expect("create");
    for e in 0..3 {
        for f in 0..4 {
            w.add_frame(
                &[f as f32; 6],
                &[e as f32; 6],
                &[image(16, 12, f), image(8, 8, f)],
            )
            .expect("frame");
        }
        w.end_episode("t").expect("end");
    }
    w.finish().expect("finish");
    assert!(dir.join("data/chunk-000/file-002.parquet").is_file());
    let ds = Dataset::open(&dir).expect("open");
    assert_eq!(ds.episodes[2].data_file_index, 2);
    let frames = ds.read_frames().expect("frames");
    assert_eq!(frames.len(), 12);
    assert_eq!(frames[9].action[0], 2.0);
}

#[test]
fn lerobot_reads_what_sinew_wrote() {
    // fixtures/so101_reach_push: written by `sinew dataset record` (real simulator frames);
    // fixtures/lerobot_read.json: what LeRobot 0.4.4's LeRobotDataset read from it
    // (fixtures/read_with_lerobot.py).
    let f = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let reference: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(f.join("lerobot_read.json")).expect("fixture"),
    )
    .expect("json");
    let ds = Dataset::open(&f.join("so101_reach_push")).expect("open");
    let frames = ds.read_frames().expect("frames");
    assert_eq!(reference["num_frames"], frames.len());
    assert_eq!(reference["num_episodes"], ds.episodes.len());
    assert_eq!(reference["fps"], ds.info.fps);
    let tasks: Vec<String> = serde_json::from_value(reference["tasks"].clone()).expect("tasks");
    assert_eq!(tasks, ds.tasks);
    for (r, f) in reference["frames"]
        .as_array()
        .expect("frames")
        .iter()
        .zip(&frames)
    {
        assert_eq!(r["index"], f.index);
        assert_eq!(r["episode_index"], f.episode_index);
        assert_eq!(r["frame_index"], f.frame_index);
        assert_eq!(r["task"], ds.tasks[f.task_index as usize]);
        let close = |a: &serde_json::Value, b: &[f32]| {
            let a: Vec<f64> = serde_json::from_value(a.clone()).expect("floats");
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (*x - *y as f64).abs() < 1e-6)
        };
        assert!(close(&r["state"], &f.state), "frame {}", f.index);
        assert!(close(&r["action"], &f.action), "frame {}", f.index);
        for (ci, cam) in ds.cameras.iter().enumerate() {
            let sum: u64 = f
                .image(ci)
                .expect("png")
                .data
                .iter()
                .map(|v| *v as u64)
                .sum();
            assert_eq!(r["pixel_sums"][cam], sum, "frame {} camera {cam}", f.index);
        }
    }
}
