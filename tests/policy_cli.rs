//! `sinew policy info|run` and `sinew tokens fit|encode|decode` as a user runs them.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../sinew-policy/tests/fixtures")
}

fn sinew(args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sinew"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sinew runs");
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(text.as_bytes())
            .expect("write");
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().expect("wait");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn policy_info_describes_an_openvla_checkpoint() {
    let dir = fixtures().join("openvla-tiny");
    let (ok, out, err) = sinew(&["policy", "info", dir.to_str().expect("utf8")], None);
    assert!(ok, "{err}");
    for want in [
        "openvla",
        "front at 224x224",
        "1 x 7 (ee_delta)",
        "tiny_bridge",
        "BF16",
        "Llama 2 layers",
        "ids 768..1023",
    ] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }
    let (ok, json, _) = sinew(
        &["policy", "info", dir.to_str().expect("utf8"), "--json"],
        None,
    );
    assert!(ok);
    let v: serde_json::Value = serde_json::from_str(&json).expect("json");
    assert_eq!(v["spec"]["action_dim"], 7);
    assert_eq!(v["architecture"], "open-vla");
    // Not a policy folder.
    let (ok, _, err) = sinew(
        &["policy", "info", fixtures().to_str().expect("utf8")],
        None,
    );
    assert!(!ok && err.contains("config.json"), "{err}");
}

#[test]
fn policy_run_matches_the_parity_fixture() {
    let dir = fixtures().join("openvla-tiny");
    let img = format!(
        "front={}",
        fixtures().join("openvla_tiny_image.png").display()
    );
    let (ok, out, err) = sinew(
        &[
            "policy",
            "run",
            dir.to_str().expect("utf8"),
            "--image",
            &img,
            "--instruction",
            "Pick up the RED cube",
            "--unnorm-key",
            "tiny_bridge",
        ],
        None,
    );
    assert!(ok, "{err}");
    let chunk: serde_json::Value = serde_json::from_str(&out).expect("json");
    let parity: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("openvla_tiny_parity.json")).expect("read"),
    )
    .expect("json");
    assert_eq!(chunk["tokens"], parity["constrained"]["tokens"]);
    let (got, want) = (
        chunk["actions"][0].as_array().expect("a"),
        parity["constrained"]["actions"].as_array().expect("b"),
    );
    for (g, w) in got.iter().zip(want) {
        assert!((g.as_f64().expect("f") - w.as_f64().expect("f")).abs() < 1e-9);
    }
    // --device cuda on a CPU build is refused with the reason.
    let (ok, _, err) = sinew(
        &[
            "policy",
            "run",
            dir.to_str().expect("utf8"),
            "--image",
            &img,
            "--instruction",
            "x",
            "--device",
            "cuda:0",
        ],
        None,
    );
    assert!(!ok && err.contains("cuda"), "{err}");
}

#[test]
fn bins_encode_and_decode_round_trip() {
    let (ok, out, err) = sinew(
        &["tokens", "encode"],
        Some("[-1.0, -0.5, 0.0, 0.5, 1.0, 3.0]"),
    );
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    let tokens = v["tokens"][0].clone();
    assert!(tokens
        .as_array()
        .expect("array")
        .iter()
        .all(|t| (31744..=31999).contains(&t.as_u64().expect("u64"))));
    let (ok, out, err) = sinew(&["tokens", "decode"], Some(&tokens.to_string()));
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    let back: Vec<f64> = serde_json::from_value(v["actions"][0].clone()).expect("floats");
    for (a, b) in back.iter().zip([-1.0, -0.5, 0.0, 0.5, 1.0, 1.0]) {
        assert!((a - b).abs() <= 1.0 / 255.0 + 1e-12, "{a} vs {b}");
    }
    let (ok, _, err) = sinew(&["tokens", "encode"], Some("[1.0, \"x\"]"));
    assert!(!ok && err.contains("expected an action"), "{err}");
}

#[test]
fn fast_fit_then_encode_and_decode() {
    let fixture: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("fast_bpe.json")).expect("read"),
    )
    .expect("json");
    let dir = std::env::temp_dir().join(format!("sinew-tokens-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let chunks = dir.join("chunks.json");
    std::fs::write(&chunks, fixture["train"].to_string()).expect("write");
    let out_dir = dir.join("fast");
    let (ok, out, err) = sinew(
        &[
            "tokens",
            "fit",
            "--chunks",
            chunks.to_str().expect("utf8"),
            "--out",
            out_dir.to_str().expect("utf8"),
            "--vocab-size",
            "256",
        ],
        None,
    );
    assert!(ok, "{err}");
    assert!(out.contains("fitted FAST on 300 chunks of 10 x 4"), "{out}");
    let case = &fixture["cases"][0];
    let tok = out_dir.to_str().expect("utf8");
    let (ok, out, err) = sinew(
        &["tokens", "encode", "--tokenizer", tok],
        Some(&case["chunk"].to_string()),
    );
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["tokens"], case["ids"]);
    let (ok, out, err) = sinew(
        &["tokens", "decode", "--tokenizer", tok],
        Some(&case["ids"].to_string()),
    );
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["exact"], true);
    let got: Vec<Vec<f64>> = serde_json::from_value(v["actions"].clone()).expect("actions");
    let want: Vec<Vec<f64>> = serde_json::from_value(case["decoded"].clone()).expect("decoded");
    for (a, b) in got.iter().flatten().zip(want.iter().flatten()) {
        assert!((a - b).abs() < 1e-12);
    }
}
