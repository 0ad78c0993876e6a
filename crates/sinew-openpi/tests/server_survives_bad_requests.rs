//! A request the server cannot use gets openpi's error path (the defect as a text frame, then
//! close 1011) and the server goes on serving the next client; plain HTTP gets 200 on
//! `/healthz` and 426 elsewhere.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};

use sinew_core::ActionChunk;
use sinew_openpi::codec::encode;
use sinew_openpi::mapping::{metadata_from_spec, reply_from_chunk};
use sinew_openpi::ws::{Client, Handler, Server, WsConfig};
use sinew_openpi::{OpenpiError, Value};

/// Echoes the request's `n` as a 1 x 1 chunk; a request without `n` is an error.
struct Echo;

impl Handler for Echo {
    fn metadata(&mut self) -> Value {
        Value::map([("server", Value::str("echo"))])
    }
    fn infer(&mut self, request: &Value) -> Result<Value, String> {
        let n = request
            .get("n")
            .and_then(Value::as_f64)
            .ok_or("no `n` in the request")?;
        let chunk = ActionChunk {
            actions: vec![vec![n]],
            ..Default::default()
        };
        reply_from_chunk(&chunk).map_err(|e| e.to_string())
    }
}

fn http(addr: std::net::SocketAddr, path: &str) -> String {
    let mut s = TcpStream::connect(addr).expect("connect");
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    out
}

#[test]
fn bad_requests_get_the_error_frame_and_the_server_serves_the_next_client() {
    let server = Server::bind("127.0.0.1:0", WsConfig::default()).expect("bind");
    let addr = server.local_addr().expect("addr");
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        let serving = s.spawn(|| {
            let mut echo = Echo;
            server.serve(&mut echo, &|| stop.load(Ordering::SeqCst))
        });
        let a = addr.to_string();
        let ok = |c: &mut Client, n: i64| {
            let r = c.infer(&Value::map([("n", Value::Int(n))])).expect("reply");
            let Some(Value::NdArray(acts)) = r.get("actions") else {
                panic!("actions");
            };
            assert_eq!(acts.to_f64(), vec![n as f64]);
            assert!(r.get("server_timing").is_some());
        };

        // Garbage bytes: an error text naming the defect, then the close.
        let mut c = Client::connect(&a, WsConfig::default()).expect("connect");
        assert_eq!(
            c.metadata().get("server").and_then(Value::as_str),
            Some("echo")
        );
        ok(&mut c, 3);
        match c.exchange(vec![0xc1, 0x00]) {
            Err(OpenpiError::Server(t)) => assert!(t.contains("never used"), "{t}"),
            other => panic!("expected the error frame, got {other:?}"),
        }
        // The connection is closed after the error.
        assert!(c.exchange(encode(&Value::Nil).expect("nil")).is_err());

        // An array whose data does not fill its shape.
        let mut c = Client::connect(&a, WsConfig::default()).expect("connect again");
        let bad = encode(&Value::Map(vec![
            (Value::Bin(b"__ndarray__".to_vec()), Value::Bool(true)),
            (Value::Bin(b"data".to_vec()), Value::Bin(vec![0; 3])),
            (Value::Bin(b"dtype".to_vec()), Value::str("<f4")),
            (
                Value::Bin(b"shape".to_vec()),
                Value::Array(vec![Value::Int(1 << 30)]),
            ),
        ]))
        .expect("encode");
        match c.exchange(bad) {
            Err(OpenpiError::Server(t)) => assert!(t.contains("data bytes"), "{t}"),
            other => panic!("expected the error frame, got {other:?}"),
        }

        // The handler's own error.
        let mut c = Client::connect(&a, WsConfig::default()).expect("connect again");
        match c.infer(&Value::map([("m", Value::Int(1))])) {
            Err(OpenpiError::Server(t)) => assert!(t.contains("no `n`"), "{t}"),
            other => panic!("expected the error frame, got {other:?}"),
        }

        // Still serving, and plain HTTP is answered.
        let mut c = Client::connect(&a, WsConfig::default()).expect("still serving");
        ok(&mut c, 7);
        assert!(http(addr, "/healthz").starts_with("HTTP/1.1 200 OK"));
        assert!(http(addr, "/").starts_with("HTTP/1.1 426"));
        c.close();
        stop.store(true, Ordering::SeqCst);
        serving.join().expect("join").expect("served");
    });
    // The metadata of a spec carries openpi's `action_horizon`.
    let spec = sinew_core::PolicySpec {
        architecture: "x".into(),
        cameras: vec!["front".into()],
        image_size: (96, 96),
        uses_state: false,
        state_dim: 0,
        action_kind: sinew_core::ActionKind::JointPosition,
        action_dim: 6,
        chunk_length: 10,
        control_rate_hz: 10.0,
        action_tokenizer: "bins".into(),
        n_action_steps: None,
    };
    let m = metadata_from_spec(&spec);
    assert_eq!(m.get("action_horizon").and_then(Value::as_usize), Some(10));
    let back = sinew_openpi::mapping::spec_from_metadata(&m, spec.clone());
    assert_eq!(back.cameras, spec.cameras);
}
