//! OpenVLA on a tiny random checkpoint in the exact Hugging Face layout of openvla/openvla-7b
//! (same tensor names, bf16 shards with an index, Llama-style tokenizer.json), against an
//! independent reference forward pass (timm + transformers; fixtures/gen_openvla_tiny.py).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, IndexOp, Tensor};
use serde::Deserialize;
use sinew_core::{Image, Observation, Policy};
use sinew_policy::models::openvla::{Decoding, OpenVlaPolicy};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

#[derive(Deserialize)]
struct Run {
    tokens: Vec<u32>,
    step_logits: Vec<Vec<f32>>,
    actions: Vec<f64>,
}

#[derive(Deserialize)]
struct Parity {
    instruction: String,
    input_ids: Vec<u32>,
    unnorm_key: String,
    dino_features_first_patch: Vec<f32>,
    siglip_features_first_patch: Vec<f32>,
    projected_patches_sum: f32,
    projected_patches_first: Vec<f32>,
    projected_patches_last: Vec<f32>,
    unconstrained: Run,
    constrained: Run,
}

fn parity() -> Parity {
    let text =
        std::fs::read_to_string(fixtures().join("openvla_tiny_parity.json")).expect("fixture");
    serde_json::from_str(&text).expect("fixture parses")
}

fn observation(instruction: &str) -> Observation {
    let img = image::open(fixtures().join("openvla_tiny_image.png"))
        .expect("png")
        .to_rgb8();
    let (w, h) = img.dimensions();
    let mut images = BTreeMap::new();
    images.insert(
        "front".to_owned(),
        Image {
            width: w,
            height: h,
            encoding: "rgb8".into(),
            step: 3 * w,
            data: img.into_raw().into(),
            ..Default::default()
        },
    );
    Observation {
        images,
        instruction: instruction.to_owned(),
        ..Default::default()
    }
}

fn load(key: &str) -> OpenVlaPolicy {
    OpenVlaPolicy::load(
        &fixtures().join("openvla-tiny"),
        &Device::Cpu,
        DType::F32,
        Some(key),
    )
    .expect("tiny checkpoint loads")
}

fn assert_close(what: &str, got: &[f32], want: &[f32], tol: f32) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let worst = got
        .iter()
        .zip(want)
        .map(|(a, b)| (a - b).abs() / (1.0 + b.abs()))
        .fold(0.0f32, f32::max);
    assert!(
        worst < tol,
        "{what}: worst relative difference {worst} >= {tol}"
    );
}

#[test]
fn prompt_tokens_match_the_reference_tokenizer() {
    let p = parity();
    let policy = load(&p.unnorm_key);
    assert_eq!(
        policy.prompt_ids(&p.instruction).expect("prompt"),
        p.input_ids
    );
}

#[test]
fn backbones_projector_and_logits_match_the_reference() {
    let p = parity();
    let policy = load(&p.unnorm_key);
    let pixels = policy
        .pixel_values(&observation(&p.instruction))
        .expect("pixels");
    assert_eq!(pixels.dims(), &[1, 6, 224, 224]);
    let (dino, siglip) = policy.model().backbone_features(&pixels).expect("features");
    let first = |t: &Tensor| -> Vec<f32> { t.i((0, 0)).and_then(|r| r.to_vec1()).expect("row") };
    assert_close(
        "DINOv2 features",
        &first(&dino),
        &p.dino_features_first_patch,
        1e-4,
    );
    assert_close(
        "SigLIP features",
        &first(&siglip.expect("fused")),
        &p.siglip_features_first_patch,
        1e-4,
    );

    let patches = policy.model().project_patches(&pixels).expect("projector");
    assert_eq!(patches.dims(), &[1, 256, 64]);
    let last = patches
        .i((0, 255))
        .and_then(|r| r.to_vec1::<f32>())
        .expect("row");
    assert_close(
        "projected first patch",
        &first(&patches),
        &p.projected_patches_first,
        1e-4,
    );
    assert_close(
        "projected last patch",
        &last,
        &p.projected_patches_last,
        1e-4,
    );
    let sum: f32 = patches.sum_all().and_then(|s| s.to_scalar()).expect("sum");
    assert!((sum - p.projected_patches_sum).abs() < 1e-3 * (1.0 + p.projected_patches_sum.abs()));

    for (run, allowed) in [
        (&p.unconstrained, None),
        (&p.constrained, Some((768, 1023))),
    ] {
        let (tokens, logits) = policy
            .model()
            .generate(&pixels, &p.input_ids, 7, allowed, DType::F32)
            .expect("generate");
        assert_eq!(tokens, run.tokens, "greedy tokens");
        for (i, (got, want)) in logits.iter().zip(&run.step_logits).enumerate() {
            assert_close(&format!("logits of step {i}"), got, want, 2e-4);
        }
    }
}

#[test]
fn decoded_actions_match_in_both_decoding_modes() {
    let p = parity();
    let mut policy = load(&p.unnorm_key);
    for (mode, run) in [
        (Decoding::Unconstrained, &p.unconstrained),
        (Decoding::Constrained, &p.constrained),
    ] {
        policy.decoding = mode;
        let chunk = policy.infer(&observation(&p.instruction)).expect("infer");
        assert_eq!(chunk.tokens, run.tokens);
        assert_eq!(chunk.actions.len(), 1);
        for (a, b) in chunk.actions[0].iter().zip(&run.actions) {
            assert!((a - b).abs() < 1e-9, "action {a} vs {b}");
        }
        let non_action = run
            .tokens
            .iter()
            .filter(|t| !(768..=1023).contains(*t))
            .count();
        assert_eq!(
            chunk.warnings.len(),
            non_action,
            "one warning per non-action token"
        );
    }
    assert_eq!(policy.spec().action_dim, 7);
}
