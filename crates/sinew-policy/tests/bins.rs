//! The bin tokenizer and quantile normalisation against a numpy reference
//! (fixtures/gen_bin_fixture.py), plus round-trip properties.

use proptest::prelude::*;
use serde_json::Value;
use sinew_policy::{BinTokenizer, Normalizer};

fn fixture() -> Value {
    serde_json::from_str(include_str!("fixtures/bin_tokenizer.json")).expect("fixture")
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_f64().expect("number"))
        .collect()
}

#[test]
fn tokens_and_decoded_values_match_the_reference() {
    let f = fixture();
    let tok = BinTokenizer::openvla();
    let actions = floats(&f["actions"]);
    let want: Vec<u32> = f["tokens"]
        .as_array()
        .expect("tokens")
        .iter()
        .map(|t| t.as_u64().expect("int") as u32)
        .collect();
    assert_eq!(tok.encode(&actions).expect("encode"), want);
    let decoded = tok.decode(&want);
    for (a, b) in decoded.iter().zip(floats(&f["decoded"])) {
        assert!((a - b).abs() < 1e-12, "{a} vs {b}");
    }
    assert_eq!(tok.token_range(), (31744, 31999));
}

#[test]
fn edges_and_out_of_range_values() {
    let tok = BinTokenizer::openvla();
    assert_eq!(
        tok.encode(&[-1.0, 1.0, -5.0, 5.0]).expect("encode"),
        vec![31999, 31744, 31999, 31744]
    );
    let half = tok.bin_width() / 2.0;
    assert!((tok.decode_token(31999) - (-1.0 + half)).abs() < 1e-12);
    // +1 falls past the last edge: OpenVLA clips it into the last bin.
    assert!((tok.decode_token(31744) - (1.0 - half)).abs() < 1e-12);
    // Tokens outside the action range decode to the nearest end bin, never panic.
    assert!((tok.decode_token(0) - (1.0 - half)).abs() < 1e-12);
    assert!((tok.decode_token(u32::MAX) - (-1.0 + half)).abs() < 1e-12);
    assert!(!tok.is_action_token(29871));
    let err = tok.encode(&[0.0, f64::NAN]).expect_err("NaN");
    assert!(err.to_string().contains("dimension 1"), "{err}");
    assert!(BinTokenizer::new(10, 256).is_err());
}

#[test]
fn quantile_unnormalisation_matches_the_reference() {
    let f = fixture();
    let q = Normalizer::Quantile {
        q01: floats(&f["q01"]),
        q99: floats(&f["q99"]),
        mask: f["mask"]
            .as_array()
            .expect("mask")
            .iter()
            .map(|b| b.as_bool().expect("bool"))
            .collect(),
    };
    for (n, u) in f["normalized"]
        .as_array()
        .expect("rows")
        .iter()
        .zip(f["unnormalized"].as_array().expect("rows"))
    {
        let got = q.unnormalize(&floats(n)).expect("unnormalize");
        for (a, b) in got.iter().zip(floats(u)) {
            assert!((a - b).abs() < 1e-12);
        }
        // And back, within the clip range.
        let back = q.normalize(&got).expect("normalize");
        for (a, b) in back.iter().zip(floats(n)) {
            assert!((a - b).abs() < 1e-6);
        }
    }
    assert!(q.normalize(&[0.0; 3]).is_err());
}

proptest! {
    #[test]
    fn round_trip_is_within_half_a_bin(x in -1.0f64..=1.0) {
        let tok = BinTokenizer::openvla();
        let t = tok.encode_value(x, 0).expect("encode");
        prop_assert!(tok.is_action_token(t));
        prop_assert!((tok.decode_token(t) - x).abs() <= tok.bin_width() / 2.0 + 1e-12);
    }
}
