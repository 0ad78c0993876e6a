//! Bad checkpoints and bad observations give errors that name the file, tensor or field.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use sinew_core::{Image, Observation, Policy, PolicyError};
use sinew_policy::models::openvla::OpenVlaPolicy;

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/openvla-tiny")
}

/// A private copy of the tiny checkpoint to damage.
fn copy(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sinew-openvla-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    for e in std::fs::read_dir(fixture_dir()).expect("fixture") {
        let p = e.expect("entry").path();
        std::fs::copy(&p, dir.join(p.file_name().expect("name"))).expect("copy");
    }
    dir
}

fn load(dir: &Path) -> Result<OpenVlaPolicy, PolicyError> {
    OpenVlaPolicy::load(dir, &Device::Cpu, DType::F32, Some("tiny_bridge"))
}

fn err(dir: &Path) -> String {
    load(dir).map(|_| ()).expect_err("must fail").to_string()
}

const SHARD2: &str = "model-00002-of-00002.safetensors";

fn rewrite_shard(dir: &Path, f: impl FnOnce(&mut HashMap<String, Tensor>)) {
    let path = dir.join(SHARD2);
    let mut t = candle_core::safetensors::load(&path, &Device::Cpu).expect("load shard");
    f(&mut t);
    candle_core::safetensors::save(&t, &path).expect("save shard");
}

#[test]
fn missing_tensor_is_named() {
    let dir = copy("missing");
    let mut victim = String::new();
    rewrite_shard(&dir, |t| {
        victim = t
            .keys()
            .filter(|k| k.contains("layers.1") || k.contains("blocks.1"))
            .min()
            .cloned()
            .expect("a block-1 tensor");
        t.remove(&victim);
    });
    let e = err(&dir);
    assert!(e.contains(&victim) && e.contains("missing"), "{e}");
}

#[test]
fn wrong_dtype_is_named() {
    let dir = copy("dtype");
    let mut victim = String::new();
    rewrite_shard(&dir, |t| {
        victim = t.keys().min().cloned().expect("a tensor");
        let v = t[&victim].to_dtype(DType::U32).expect("cast");
        t.insert(victim.clone(), v);
    });
    let e = err(&dir);
    assert!(
        e.contains(&victim) && e.contains("U32") && e.contains(SHARD2),
        "{e}"
    );
}

#[test]
fn shape_mismatch_between_config_and_weights_is_named() {
    let dir = copy("shape");
    let cfg_path = dir.join("config.json");
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&cfg_path).expect("read")).expect("json");
    cfg["text_config"]["intermediate_size"] = 100.into();
    std::fs::write(&cfg_path, cfg.to_string()).expect("write");
    let e = err(&dir);
    assert!(
        e.contains("mlp") && e.contains("100") && e.contains("128"),
        "{e}"
    );
}

#[test]
fn corrupted_header_is_reported_with_the_file() {
    let dir = copy("header");
    let path = dir.join(SHARD2);
    let mut bytes = std::fs::read(&path).expect("read");
    for b in &mut bytes[8..40] {
        *b = b'#';
    }
    std::fs::write(&path, &bytes).expect("write");
    let e = err(&dir);
    assert!(e.contains(SHARD2) && e.contains("corrupted"), "{e}");

    // A file shorter than its claimed header.
    std::fs::write(&path, &bytes[..100]).expect("write");
    let e = err(&dir);
    assert!(e.contains(SHARD2) && e.contains("corrupted"), "{e}");
}

#[test]
fn unknown_unnorm_key_lists_the_known_ones() {
    let e = OpenVlaPolicy::load(&fixture_dir(), &Device::Cpu, DType::F32, Some("nope"))
        .map(|_| ())
        .expect_err("unknown key");
    let e = e.to_string();
    assert!(
        e.contains("nope") && e.contains("tiny_bridge") && e.contains("tiny_other"),
        "{e}"
    );
    // Two datasets and no key: the user is told to choose.
    let e = OpenVlaPolicy::load(&fixture_dir(), &Device::Cpu, DType::F32, None)
        .map(|_| ())
        .expect_err("ambiguous");
    assert!(e.to_string().contains("unnorm_key"), "{e}");
}

fn obs(img: Image, instruction: &str) -> Observation {
    let mut images = BTreeMap::new();
    images.insert("front".to_owned(), img);
    Observation {
        images,
        instruction: instruction.into(),
        ..Default::default()
    }
}

fn image(w: u32, h: u32, encoding: &str, bpp: u32) -> Image {
    Image {
        width: w,
        height: h,
        encoding: encoding.into(),
        step: w * bpp,
        data: vec![90u8; (w * h * bpp) as usize].into(),
        ..Default::default()
    }
}

#[test]
fn bad_observations_are_reported_and_other_sizes_are_resized() {
    let mut p = load(&fixture_dir()).expect("loads");
    let e = p
        .infer(&obs(image(224, 224, "16UC1", 2), "pick"))
        .expect_err("encoding");
    assert!(
        e.to_string().contains("16UC1") && e.to_string().contains("front"),
        "{e}"
    );
    let mut short = image(224, 224, "rgb8", 3);
    short.data = vec![0u8; 100].into();
    let e = p.infer(&obs(short, "pick")).expect_err("short data");
    assert!(e.to_string().contains("inconsistent"), "{e}");
    let e = p
        .infer(&Observation {
            instruction: "pick".into(),
            ..Default::default()
        })
        .expect_err("no camera");
    assert!(e.to_string().contains("front"), "{e}");
    let long = "pick up the red cube and ".repeat(60);
    let e = p
        .infer(&obs(image(224, 224, "rgb8", 3), &long))
        .expect_err("too long");
    assert!(e.to_string().contains("instruction too long"), "{e}");
    // A 640x480 bgr8 frame is converted and resized, not refused.
    let chunk = p
        .infer(&obs(image(640, 480, "bgr8", 3), "pick"))
        .expect("resized");
    assert_eq!(chunk.actions.len(), 1);
    assert_eq!(chunk.actions[0].len(), 7);
    assert!(chunk.actions[0].iter().all(|a| a.is_finite()));
}
