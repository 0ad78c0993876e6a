//! Bytes from a peer are untrusted: every defect is an error that names it, before anything
//! is allocated from a length in the message, and never a panic.

use sinew_openpi::codec::{decode, decode_with, encode, Limits};
use sinew_openpi::mapping::{chunk_from_reply, observation_from_request, ObservationKeys};
use sinew_openpi::{DType, NdArray, OpenpiError, Value};

fn err(bytes: &[u8]) -> String {
    decode(bytes).expect_err("refused").to_string()
}

fn ndarray_map(dtype: &str, shape: Vec<Value>, data: Vec<u8>) -> Vec<u8> {
    encode(&Value::Map(vec![
        (Value::Bin(b"__ndarray__".to_vec()), Value::Bool(true)),
        (Value::Bin(b"data".to_vec()), Value::Bin(data)),
        (Value::Bin(b"dtype".to_vec()), Value::str(dtype)),
        (Value::Bin(b"shape".to_vec()), Value::Array(shape)),
    ]))
    .expect("encode")
}

#[test]
fn lengths_larger_than_the_message_are_refused_before_allocating() {
    // array32 claiming 4 billion entries, map32 likewise, bin32 and str32 of 4 GB.
    assert!(err(&[0xdd, 0xff, 0xff, 0xff, 0xff]).contains("cannot fit"));
    assert!(err(&[0xdf, 0xff, 0xff, 0xff, 0xff, 0xc0]).contains("cannot fit"));
    assert!(err(&[0xc6, 0xff, 0xff, 0xff, 0xff, 0]).contains("truncated"));
    assert!(err(&[0xdb, 0xff, 0xff, 0xff, 0xff]).contains("truncated"));
}

#[test]
fn truncated_trailing_and_extension_bytes_are_refused() {
    let ok = encode(&Value::map([("prompt", Value::str("hi"))])).expect("encode");
    for n in 0..ok.len() {
        assert!(decode(&ok[..n]).is_err(), "prefix of {n} bytes");
    }
    let mut long = ok.clone();
    long.push(0xc0);
    assert!(err(&long).contains("left over"));
    assert!(err(&[0xd4, 0x01, 0x00]).contains("extension"));
    assert!(err(&[0xc1]).contains("never used"));
    assert!(err(&[0xa2, 0xff, 0xfe]).contains("UTF-8"));
}

#[test]
fn deep_nesting_and_too_many_values_are_refused() {
    let deep = vec![0x91; 100]
        .into_iter()
        .chain([0xc0])
        .collect::<Vec<u8>>();
    assert!(err(&deep).contains("nested deeper"));
    let many = encode(&Value::Array(vec![Value::Nil; 100])).expect("encode");
    let limits = Limits {
        max_values: 50,
        ..Limits::default()
    };
    assert!(decode_with(&many, limits)
        .expect_err("refused")
        .to_string()
        .contains("more than 50 values"));
}

#[test]
fn arrays_whose_shape_dtype_and_data_disagree_are_refused() {
    let e = err(&ndarray_map(
        "<f4",
        vec![Value::Int(2), Value::Int(3)],
        vec![0; 20],
    ));
    assert!(e.contains("needs 24 data bytes, got 20"), "{e}");
    let e = err(&ndarray_map(
        "<f8",
        vec![Value::Int(1 << 40), Value::Int(1 << 40)],
        vec![0; 8],
    ));
    assert!(e.contains("overflows") || e.contains("needs"), "{e}");
    let e = err(&ndarray_map("|O", vec![Value::Int(1)], vec![0; 8]));
    assert!(e.contains("dtype"), "{e}");
    let e = err(&ndarray_map("<U5", vec![Value::Int(1)], vec![0; 20]));
    assert!(e.contains("only float, int, uint and bool"), "{e}");
    let e = err(&ndarray_map("<f4", vec![Value::Int(-1)], vec![]));
    assert!(e.contains("not a size"), "{e}");
}

fn image(h: usize, w: usize) -> Value {
    Value::NdArray(NdArray::from_u8(vec![h, w, 3], vec![7; h * w * 3]).expect("array"))
}

#[test]
fn a_request_without_a_camera_names_it_and_the_keys_it_has() {
    let cams = vec!["front".to_owned(), "wrist".to_owned()];
    let req = Value::map([
        ("observation/image", image(4, 4)),
        ("prompt", Value::str("go")),
    ]);
    let e = observation_from_request(&req, &cams, &ObservationKeys::default())
        .expect_err("no wrist")
        .to_string();
    assert!(
        e.contains("camera `wrist`") && e.contains("observation/wrist_image"),
        "{e}"
    );
    assert!(
        e.contains("the request has observation/image, prompt"),
        "{e}"
    );
    // Float images and wrong shapes are named too.
    let f = Value::NdArray(NdArray::from_f32(vec![2, 2, 3], &[0.5; 12]).expect("array"));
    let req = Value::map([("observation/front", f), ("observation/wrist", image(2, 2))]);
    let e = observation_from_request(&req, &cams, &ObservationKeys::default())
        .expect_err("float image")
        .to_string();
    assert!(e.contains("uint8"), "{e}");
    let e = observation_from_request(&Value::Nil, &cams, &ObservationKeys::default())
        .expect_err("not a map")
        .to_string();
    assert!(e.contains("must be a map"), "{e}");
}

#[test]
fn libero_and_aloha_style_requests_map_to_the_same_observation() {
    let cams = vec!["front".to_owned(), "wrist".to_owned()];
    let state = Value::NdArray(NdArray::from_f32(vec![3], &[0.5, -1.0, 2.0]).expect("array"));
    let libero = Value::map([
        ("observation/image", image(2, 4)),
        ("observation/wrist_image", image(2, 4)),
        ("observation/state", state.clone()),
        ("prompt", Value::str("pick")),
    ]);
    // ALOHA sends channels first: [3, H, W] (a last axis of 3 is read as [H, W, 3]).
    let chw = Value::NdArray(NdArray::from_u8(vec![3, 2, 4], vec![7; 24]).expect("array"));
    let aloha = Value::map([
        (
            "images",
            Value::map([("front", chw.clone()), ("wrist", chw)]),
        ),
        ("state", state),
        ("prompt", Value::str("pick")),
    ]);
    let keys = ObservationKeys::default();
    let a = observation_from_request(&libero, &cams, &keys).expect("libero");
    let b = observation_from_request(&aloha, &cams, &keys).expect("aloha");
    assert_eq!(a.joint_positions, vec![0.5, -1.0, 2.0]);
    assert_eq!(a.instruction, "pick");
    assert_eq!(a.images, b.images);
    assert_eq!((a.images["front"].width, a.images["front"].height), (4, 2));
    assert_eq!(a.joint_positions, b.joint_positions);
}

#[test]
fn replies_without_finite_2d_actions_are_refused() {
    let nan = Value::NdArray(NdArray::from_f64(vec![1, 2], &[0.0, f64::NAN]).expect("array"));
    let e = chunk_from_reply(&Value::map([("actions", nan)])).expect_err("nan");
    assert!(matches!(e, OpenpiError::NonFinite(_)), "{e}");
    let flat = Value::NdArray(NdArray::from_f64(vec![2], &[0.0, 1.0]).expect("array"));
    let e = chunk_from_reply(&Value::map([("actions", flat)])).expect_err("1-D");
    assert!(e.to_string().contains("[T, D]"), "{e}");
    let e = chunk_from_reply(&Value::map([("state", Value::Nil)])).expect_err("none");
    assert!(e.to_string().contains("no `actions`"), "{e}");
    // A list of lists (a JSON-minded server) is read as well.
    let rows = Value::Array(vec![
        Value::Array(vec![Value::Float(0.5), Value::Int(1)]),
        Value::Array(vec![Value::Float(-0.5), Value::Int(2)]),
    ]);
    let (c, _) = chunk_from_reply(&Value::map([("actions", rows)])).expect("rows");
    assert_eq!(c.actions, vec![vec![0.5, 1.0], vec![-0.5, 2.0]]);
    assert_eq!(DType::parse("=f8").expect("native"), DType::F64);
}
