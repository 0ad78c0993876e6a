//! Direction A without Python: the frames openpi-client's `WebsocketClientPolicy` sent to
//! `sinew policy serve policies/sinew-tiny-so101-v1 --openpi PORT` (recorded by
//! `crates/sinew-openpi/tests/fixtures/openpi_peer.py client`) are replayed byte for byte
//! against the Rust server, and its replies must read as that client read the recorded ones:
//! the same metadata, `actions` of the same shape and dtype (and values, the model being
//! deterministic), `server_timing`, the same error text for the bad request, `/healthz` 200.

use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use serde_json::Value as Json;
use sinew_app::openpi::OpenpiServer;
use sinew_app::resolve::{load_policy_folder, DeviceSpec};
use sinew_openpi::codec::decode;
use sinew_openpi::ws::{Client, WsConfig};
use sinew_openpi::{OpenpiError, Value};

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

fn transcript() -> Json {
    let p = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../sinew-openpi/tests/fixtures/direction_a_openpi_client.json"
    );
    serde_json::from_str(&std::fs::read_to_string(p).expect("transcript")).expect("json")
}

fn healthz(addr: std::net::SocketAddr) -> String {
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    out
}

#[test]
fn openpi_client_frames_replayed_against_the_rust_server_read_as_the_client_read_them() {
    let t = transcript();
    let frames = t["frames"].as_array().expect("frames");
    let policy = load_policy_folder("sinew-tiny-so101-v1", &DeviceSpec::default()).expect("policy");
    let server = OpenpiServer::bind(policy, "127.0.0.1:0").expect("bind");
    let addr = server.local_addr().expect("addr");
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let serving = std::thread::Builder::new()
        .name("openpi-serve".into())
        .spawn(move || server.serve(&|| s.load(Ordering::SeqCst)))
        .expect("spawn");

    let mut client = Client::connect(&addr.to_string(), WsConfig::default()).expect("connect");
    // The first frame is the metadata.
    assert_eq!(frames[0]["dir"], "server->client");
    let recorded_meta = decode(&hex(frames[0]["hex"].as_str().expect("hex"))).expect("meta");
    assert_eq!(client.metadata(), &recorded_meta);
    assert!(
        healthz(addr).starts_with("HTTP/1.1 200 OK"),
        "healthz while connected"
    );

    let mut replies = 0;
    let mut i = 1;
    while i + 1 < frames.len() {
        let (req, rep) = (&frames[i], &frames[i + 1]);
        assert_eq!(req["dir"], "client->server");
        assert_eq!(rep["dir"], "server->client");
        let bytes = hex(req["hex"].as_str().expect("hex"));
        let recorded = hex(rep["hex"].as_str().expect("hex"));
        match (rep["kind"].as_str(), client.exchange(bytes)) {
            (Some("binary"), Ok(got)) => {
                let (got, want) = (
                    decode(&got).expect("reply"),
                    decode(&recorded).expect("rec"),
                );
                let (Some(Value::NdArray(a)), Some(Value::NdArray(b))) =
                    (got.get("actions"), want.get("actions"))
                else {
                    panic!("actions arrays");
                };
                assert_eq!(a.shape(), b.shape());
                assert_eq!(a.shape(), &[10, 6]);
                assert_eq!(a.dtype(), b.dtype());
                let (a, b) = (a.to_f64(), b.to_f64());
                assert!(a.iter().all(|x| x.is_finite()));
                let worst = a
                    .iter()
                    .zip(&b)
                    .map(|(x, y)| (x - y).abs())
                    .fold(0.0, f64::max);
                assert!(
                    worst < 1e-3,
                    "actions differ from the recorded run by {worst}"
                );
                let timing = got.get("server_timing").expect("server_timing");
                assert!(timing.get("infer_ms").and_then(Value::as_f64).is_some());
                assert_eq!(timing.get("prev_total_ms").is_some(), replies > 0);
                replies += 1;
            }
            (Some("text"), Err(OpenpiError::Server(text))) => {
                assert_eq!(text.as_bytes(), recorded.as_slice());
                assert!(text.contains("no image for camera `wrist`"), "{text}");
            }
            (kind, got) => panic!("frame {i}: recorded a {kind:?} reply, got {got:?}"),
        }
        i += 2;
    }
    assert_eq!(replies, 2, "the LIBERO- and ALOHA-style requests");
    assert!(healthz(addr).starts_with("HTTP/1.1 200 OK"));
    let results = &t["results"];
    assert_eq!(results["healthz"]["status"], 200);
    assert_eq!(results["aloha"]["same_as_libero"], true);
    stop.store(true, Ordering::SeqCst);
    serving.join().expect("join").expect("served");
}
