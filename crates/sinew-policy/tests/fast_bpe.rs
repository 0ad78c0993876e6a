//! FAST's BPE half against the reference (fixtures/gen_fast_bpe_fixture.py: the release's `fit`,
//! `__call__` and `decode` over Python `tokenizers` and scipy).

use std::path::Path;

use serde::Deserialize;
use sinew_policy::fast::{DecodeMode, FastTokenizer};

#[derive(Deserialize)]
struct Case {
    chunk: Vec<Vec<f64>>,
    ids: Vec<u32>,
    decoded: Vec<Vec<f64>>,
}

#[derive(Deserialize)]
struct Fixture {
    scale: f64,
    vocab_size: usize,
    #[serde(rename = "T")]
    t: usize,
    #[serde(rename = "D")]
    d: usize,
    min_token: i64,
    train: Vec<Vec<Vec<f64>>>,
    cases: Vec<Case>,
}

fn fixtures() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn fixture() -> Fixture {
    serde_json::from_str(&std::fs::read_to_string(fixtures().join("fast_bpe.json")).expect("read"))
        .expect("parse")
}

fn model_of(json: &str) -> serde_json::Value {
    let v: serde_json::Value = serde_json::from_str(json).expect("tokenizer json");
    v["model"].clone()
}

#[test]
fn fit_matches_the_reference_vocabulary_and_merges() {
    let f = fixture();
    let tok = FastTokenizer::fit(&f.train, f.scale, f.vocab_size).expect("fit");
    assert_eq!(tok.config.min_token, f.min_token);
    let reference =
        std::fs::read_to_string(fixtures().join("fast_bpe_tokenizer.json")).expect("read");
    let (ours, theirs) = (
        model_of(&tok.bpe_json().expect("json")),
        model_of(&reference),
    );
    assert_eq!(ours["vocab"], theirs["vocab"]);
    assert_eq!(ours["merges"], theirs["merges"]);
}

#[test]
fn encode_and_decode_match_the_reference() {
    let f = fixture();
    let tok = FastTokenizer::fit(&f.train, f.scale, f.vocab_size).expect("fit");
    for (i, c) in f.cases.iter().enumerate() {
        let ids = tok.encode(&c.chunk).expect("encode");
        assert_eq!(ids, c.ids, "case {i}: ids");
        assert!(
            ids.len() < f.t * f.d,
            "BPE compresses ({} ids for {} values)",
            ids.len(),
            f.t * f.d
        );
        let out = tok.decode(&ids, f.t, f.d, DecodeMode::Strict);
        assert!(out.exact);
        for (a, b) in out.actions.iter().flatten().zip(c.decoded.iter().flatten()) {
            assert!((a - b).abs() < 1e-12, "case {i}: {a} vs {b}");
        }
        // Within the rounding error of the DCT coefficients.
        for (a, b) in out.actions.iter().flatten().zip(c.chunk.iter().flatten()) {
            assert!(
                (a - b).abs() < 0.5 / f.scale * (f.t as f64).sqrt(),
                "case {i}: reconstruction {a} vs {b}"
            );
        }
    }
}

#[test]
fn save_load_round_trip_and_damaged_sequences() {
    let f = fixture();
    let tok = FastTokenizer::fit(&f.train, f.scale, f.vocab_size).expect("fit");
    let dir = std::env::temp_dir().join(format!("sinew-fast-{}", std::process::id()));
    tok.save(&dir).expect("save");
    let back = FastTokenizer::load(&dir).expect("load");
    assert_eq!(back.config, tok.config);
    let c = &f.cases[0];
    let ids = back.encode(&c.chunk).expect("encode");
    assert_eq!(ids, c.ids);
    // A truncated sequence: strict gives zeros, relaxed pads the missing coefficients.
    let short = &ids[..ids.len() - 3];
    let strict = back.decode(short, f.t, f.d, DecodeMode::Strict);
    assert!(!strict.exact);
    assert!(strict.actions.iter().flatten().all(|v| *v == 0.0));
    let relaxed = back.decode(short, f.t, f.d, DecodeMode::Relaxed);
    assert!(!relaxed.exact && relaxed.actions.len() == f.t);
    assert!(relaxed.actions.iter().flatten().any(|v| *v != 0.0));
    // Ids outside the vocabulary do not panic.
    let junk = back.decode(&[999_999, 3, 7], f.t, f.d, DecodeMode::Relaxed);
    assert_eq!(junk.actions.len(), f.t);
}
