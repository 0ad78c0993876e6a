//! The exact bytes openpi-client's `msgpack_numpy.packb` wrote (fixtures/codec.json, made by
//! `fixtures/openpi_peer.py codec`) decode to the values Python read back, and re-encode to
//! the same bytes.

use serde_json::Value as Json;
use sinew_openpi::codec::{decode, encode};
use sinew_openpi::Value;

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

fn fixture() -> Json {
    let p = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/codec.json");
    serde_json::from_str(&std::fs::read_to_string(p).expect("fixture")).expect("json")
}

/// Checks `v` against Python's description of the same value.
fn check(what: &str, desc: &Json, v: &Value) {
    let obj = desc.as_object().expect("description");
    let (tag, d) = obj.iter().next().expect("one tag");
    match (tag.as_str(), v) {
        ("ndarray", Value::NdArray(a)) => {
            assert_eq!(a.dtype().numpy_str(), d.as_str().expect("dtype"), "{what}");
            let shape: Vec<usize> = desc["shape"]
                .as_array()
                .expect("shape")
                .iter()
                .map(|x| x.as_u64().expect("dim") as usize)
                .collect();
            assert_eq!(a.shape(), shape.as_slice(), "{what}");
            let want: Vec<f64> = desc["values"]
                .as_array()
                .expect("values")
                .iter()
                .map(|x| x.as_f64().expect("number"))
                .collect();
            assert_eq!(a.to_f64(), want, "{what}");
        }
        ("npgeneric", Value::NpScalar(s)) => {
            assert_eq!(s.dtype.numpy_str(), d.as_str().expect("dtype"), "{what}");
            check(what, &serde_json::json!({"scalar": desc["value"]}), &s.data);
        }
        ("map", Value::Map(entries)) => {
            let want = d.as_array().expect("entries");
            assert_eq!(entries.len(), want.len(), "{what}");
            for ((k, v), w) in entries.iter().zip(want) {
                let key = w[0].as_str().expect("key");
                assert_eq!(k.as_str(), Some(key), "{what}");
                check(&format!("{what}.{key}"), &w[1], v);
            }
        }
        ("list", Value::Array(items)) => {
            let want = d.as_array().expect("items");
            assert_eq!(items.len(), want.len(), "{what}");
            for (i, (v, w)) in items.iter().zip(want).enumerate() {
                check(&format!("{what}[{i}]"), w, v);
            }
        }
        ("bytes", Value::Bin(b)) => assert_eq!(*b, hex(d.as_str().expect("hex")), "{what}"),
        ("scalar", v) => match (d, v) {
            (Json::Null, Value::Nil) => {}
            (Json::Bool(a), Value::Bool(b)) => assert_eq!(a, b, "{what}"),
            (Json::String(a), Value::Str(b)) => assert_eq!(a, b, "{what}"),
            (Json::Number(n), Value::Int(i)) => assert_eq!(n.as_i64(), Some(*i), "{what}"),
            (Json::Number(n), Value::Float(f)) => assert_eq!(n.as_f64(), Some(*f), "{what}"),
            (d, v) => panic!("{what}: Python read {d}, Rust {v:?}"),
        },
        (tag, v) => panic!("{what}: Python read a {tag}, Rust a {}", v.kind()),
    }
}

#[test]
fn openpi_client_bytes_decode_as_python_reads_them_and_reencode_identically() {
    let f = fixture();
    let msgs = f["messages"].as_object().expect("messages");
    assert!(msgs.len() >= 5);
    for (name, m) in msgs {
        let bytes = hex(m["hex"].as_str().expect("hex"));
        let v = decode(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        check(name, &m["value"], &v);
        assert_eq!(
            encode(&v).expect("encode"),
            bytes,
            "{name} re-encodes byte for byte"
        );
    }
}

#[test]
fn keys_of_openpi_arrays_are_bin_and_dtypes_str() {
    // The observation's uint8 image: map of 4 with bin keys, dtype "|u1", shape [4, 5, 3].
    let f = fixture();
    let bytes = hex(f["messages"]["observation"]["hex"].as_str().expect("hex"));
    let v = decode(&bytes).expect("decodes");
    let Some(Value::NdArray(img)) = v.get("observation/image") else {
        panic!("an array");
    };
    assert_eq!(img.shape(), &[4, 5, 3]);
    assert_eq!(img.data()[..4], [0, 1, 2, 3]);
    // 0x84 = fixmap(4), 0xc4 0x0b = bin8 of 11 bytes: "__ndarray__".
    let packed = encode(&Value::NdArray(img.clone())).expect("encode");
    assert_eq!(&packed[..3], &[0x84, 0xc4, 0x0b]);
    assert_eq!(&packed[3..14], b"__ndarray__");
    assert_eq!(
        v.get("prompt").and_then(Value::as_str),
        Some("pick up the red cube")
    );
}
