//! FAST's DCT quantisation against scipy (fixtures/gen_fast_fixture.py).

use serde_json::Value;
use sinew_policy::fast::{DecodeMode, FastQuantizer};

fn rows(v: &Value) -> Vec<Vec<f64>> {
    v.as_array()
        .expect("rows")
        .iter()
        .map(|r| {
            r.as_array()
                .expect("row")
                .iter()
                .map(|x| x.as_f64().expect("num"))
                .collect()
        })
        .collect()
}

#[test]
fn dct_quantisation_matches_scipy() {
    let f: Value = serde_json::from_str(include_str!("fixtures/fast_dct.json")).expect("fixture");
    let fq = FastQuantizer {
        scale: f["scale"].as_f64().expect("scale"),
        min_token: f["min_token"].as_i64().expect("min"),
    };
    for case in f["cases"].as_array().expect("cases") {
        let (t, d) = (
            case["T"].as_u64().expect("T") as usize,
            case["D"].as_u64().expect("D") as usize,
        );
        let chunk = rows(&case["chunk"]);
        let q = fq.quantize(&chunk).expect("quantize");
        let want: Vec<i64> = case["quantized"]
            .as_array()
            .expect("q")
            .iter()
            .map(|v| v.as_i64().expect("int"))
            .collect();
        assert_eq!(q, want, "T={t} D={d}");
        let codes: Vec<u32> = case["codes"]
            .as_array()
            .expect("codes")
            .iter()
            .map(|v| v.as_u64().expect("int") as u32)
            .collect();
        assert_eq!(fq.to_codes(&q), codes);
        assert_eq!(fq.from_codes(&codes), q);
        let recon = fq
            .dequantize(&q, t, d, DecodeMode::Strict)
            .expect("decodes");
        for (a, b) in recon
            .iter()
            .flatten()
            .zip(rows(&case["reconstructed"]).iter().flatten())
        {
            assert!((a - b).abs() < 1e-9, "{a} vs {b}");
        }
        // Quantisation error is bounded by the rounding of each coefficient.
        for (a, b) in recon.iter().flatten().zip(chunk.iter().flatten()) {
            assert!((a - b).abs() < 0.5 / fq.scale * (t as f64).sqrt() + 1e-9);
        }
    }
}

#[test]
fn wrong_lengths_strict_and_relaxed() {
    let fq = FastQuantizer::default();
    let chunk = vec![vec![0.5, -0.5]; 4];
    let mut q = fq.quantize(&chunk).expect("quantize");
    q.pop();
    assert!(fq.dequantize(&q, 4, 2, DecodeMode::Strict).is_none());
    let relaxed = fq
        .dequantize(&q, 4, 2, DecodeMode::Relaxed)
        .expect("relaxed pads");
    assert_eq!(relaxed.len(), 4);
    assert!(fq.quantize(&[vec![f64::NAN]]).is_err());
    assert!(fq.quantize(&[vec![0.0, 1.0], vec![0.0]]).is_err());
}
