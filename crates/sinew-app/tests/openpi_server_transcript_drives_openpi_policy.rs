//! Direction B without Python: a mock server replays, byte for byte, the metadata and replies
//! a Python server speaking openpi's `websocket_policy_server.py` protocol sent to
//! `sinew sim run --policy openpi:...` (recorded by
//! `crates/sinew-openpi/tests/fixtures/openpi_peer.py server`), and `OpenpiPolicy` must read
//! them: the fixed float64 chunk exactly, `server_timing` as the forward time; and its own
//! requests must carry what the Python server read (keys, dtypes, shapes).

use std::net::TcpListener;
use std::sync::mpsc;

use serde_json::Value as Json;
use sinew_app::openpi::{OpenpiPolicy, OpenpiTarget};
use sinew_core::{Image, Observation, Policy};
use sinew_openpi::codec::decode;
use sinew_openpi::Value;
use tungstenite::Message;

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

fn record() -> Json {
    let p = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../sinew-openpi/tests/fixtures/direction_b_openpi_server.json"
    );
    serde_json::from_str(&std::fs::read_to_string(p).expect("record")).expect("json")
}

fn frame(seed: u8) -> Image {
    let data: Vec<u8> = (0..224 * 224 * 3)
        .map(|i| (i as u8).wrapping_mul(seed))
        .collect();
    Image {
        width: 224,
        height: 224,
        encoding: "rgb8".into(),
        step: 224 * 3,
        data: data.into(),
        ..Default::default()
    }
}

/// Accepts one client, sends the recorded metadata, answers each request with the next
/// recorded reply; hands every request it got to `requests`.
fn mock(metadata: Vec<u8>, replies: Vec<Vec<u8>>, requests: mpsc::Sender<Vec<u8>>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::Builder::new()
        .name("openpi-mock".into())
        .spawn(move || {
            let (stream, _) = listener.accept().expect("accept");
            let mut ws = tungstenite::accept(stream).expect("handshake");
            ws.send(Message::binary(metadata)).expect("metadata");
            let mut i = 0;
            while let Ok(m) = ws.read() {
                if let Message::Binary(b) = m {
                    let _ = requests.send(b.to_vec());
                    ws.send(Message::binary(replies[i % replies.len()].clone()))
                        .expect("reply");
                    i += 1;
                }
            }
        })
        .expect("spawn");
    port
}

#[test]
fn openpi_policy_reads_a_python_openpi_servers_recorded_bytes() {
    let r = record();
    let metadata = hex(r["metadata_hex"].as_str().expect("metadata"));
    let replies: Vec<Vec<u8>> = r["replies"]
        .as_array()
        .expect("replies")
        .iter()
        .map(|h| hex(h.as_str().expect("hex")))
        .collect();
    assert_eq!(replies.len(), 3);
    let (tx, rx) = mpsc::channel();
    let port = mock(metadata, replies.clone(), tx);

    let name = format!(
        "openpi:127.0.0.1:{port}?cameras=front,wrist&image_keys=observation/image,observation/wrist_image"
    );
    let target = OpenpiTarget::parse(&name).expect("openpi").expect("parses");
    let mut policy = OpenpiPolicy::new(target);
    policy.probe().expect("connects");
    // openpi's LIBERO server sends `{}`: the cameras come from the name, the rest defaults.
    assert_eq!(policy.spec().cameras, ["front", "wrist"]);
    let obs = Observation {
        images: [("front".into(), frame(3)), ("wrist".into(), frame(5))].into(),
        joint_positions: vec![0.0, -0.3, 0.4, 0.2, 0.0, 0.5],
        instruction: "reach for the yellow cube".into(),
        stamp_s: 1.5,
        ..Default::default()
    };
    for (i, reply) in replies.iter().enumerate() {
        let chunk = policy.infer(&obs).expect("a chunk");
        let sent = decode(reply).expect("recorded reply");
        let Some(Value::NdArray(want)) = sent.get("actions") else {
            panic!("actions");
        };
        assert_eq!(want.dtype().numpy_str(), "<f8");
        assert_eq!((chunk.len(), chunk.dim()), (10, 6));
        let flat: Vec<f64> = chunk.actions.iter().flatten().copied().collect();
        assert_eq!(flat, want.to_f64(), "reply {i}: float64 actions exactly");
        for (t, row) in chunk.actions.iter().enumerate() {
            for (j, a) in row.iter().enumerate() {
                let v = 0.05 * (0.3 * t as f64 + j as f64).sin();
                assert!((a - v).abs() < 1e-12, "the Python server's fixed chunk");
            }
        }
        assert_eq!(chunk.observation_stamp_s, 1.5);
        let infer_ms = sent
            .get("server_timing")
            .and_then(|t| t.get("infer_ms"))
            .and_then(Value::as_f64)
            .expect("server_timing");
        assert!(chunk.timings.forward_ms <= infer_ms + 1e-9);
        assert!(chunk.timings.total_ms() >= chunk.timings.forward_ms);
    }
    // What the Rust client sent is what the Python server read from `sinew sim run`.
    let request = decode(&rx.recv().expect("a request")).expect("decodes");
    let keys = r["requests"][0]["keys"].as_object().expect("keys");
    for (k, want) in keys {
        let got = request.get(k).unwrap_or_else(|| panic!("{k} missing"));
        match got {
            Value::NdArray(a) => {
                assert_eq!(
                    a.dtype().numpy_str(),
                    want["dtype"].as_str().expect("dtype"),
                    "{k}"
                );
                let shape: Vec<usize> = want["shape"]
                    .as_array()
                    .expect("shape")
                    .iter()
                    .map(|d| d.as_u64().expect("dim") as usize)
                    .collect();
                assert_eq!(a.shape(), shape.as_slice(), "{k}");
            }
            Value::Str(s) => assert_eq!(s, want["value"].as_str().expect("prompt")),
            other => panic!("{k}: a {}", other.kind()),
        }
    }
    let Some(Value::NdArray(front)) = request.get("observation/image") else {
        panic!("front image");
    };
    assert_eq!(front.data(), &frame(3).data[..]);
}
