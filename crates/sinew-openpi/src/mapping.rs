//! openpi messages to and from Sinew's [`Observation`], [`ActionChunk`] and [`PolicySpec`].
//!
//! openpi's examples name observation entries per robot: LIBERO and DROID send flat keys
//! (`observation/image`, `observation/wrist_image`, `observation/state`, `prompt`), ALOHA
//! nested ones (`images` → `cam_high`, `state`, `prompt`). [`ObservationKeys`] says where the
//! server looks; [`RequestKeys`] what the client sends. `docs/openpi.md` has the table.

use sinew_core::{ActionChunk, ActionKind, Image, Observation, PolicySpec};

use crate::value::{DKind, NdArray, Value};
use crate::OpenpiError;

/// The largest image side accepted from a request (pixels).
pub const MAX_IMAGE_SIDE: usize = 8192;

/// Where a served policy finds the parts of an observation in a request. Paths are `/`
/// separated and looked up flat first (`observation/image` as one key), then nested
/// (`images` → `cam_high`); `{camera}` stands for a camera's name.
#[derive(Debug, Clone, PartialEq)]
pub struct ObservationKeys {
    /// The instruction, first found wins (absent: an empty instruction).
    pub prompt: Vec<String>,
    /// The joint state, first found wins (absent: no state).
    pub state: Vec<String>,
    /// Where each camera's image may be, tried in order.
    pub camera: Vec<String>,
    /// Where the policy's first camera may also be (openpi's single-image key).
    pub first_camera: Vec<String>,
}

impl Default for ObservationKeys {
    fn default() -> Self {
        let v = |s: &[&str]| s.iter().map(|s| (*s).to_owned()).collect();
        Self {
            prompt: v(&["prompt"]),
            state: v(&["observation/state", "state"]),
            camera: v(&[
                "observation/{camera}",
                "observation/{camera}_image",
                "images/{camera}",
            ]),
            first_camera: v(&["observation/image", "image"]),
        }
    }
}

/// What an openpi client sends for an observation. A key with `.` is sent nested
/// (`images.cam_high` is `{"images": {"cam_high": ...}}`, as ALOHA policies read).
#[derive(Debug, Clone, PartialEq)]
pub struct RequestKeys {
    /// Each camera's image (`{camera}` is its name).
    pub camera: String,
    /// The first camera's image again under openpi's single-image key, if any.
    pub first_camera: Option<String>,
    /// When set, camera `i` is sent under `image_keys[i]` only (instead of `camera` and
    /// `first_camera`): `observation/image,observation/wrist_image` for a LIBERO server.
    pub image_keys: Option<Vec<String>>,
    /// The joint state (float32).
    pub state: String,
    /// The instruction.
    pub prompt: String,
}

impl Default for RequestKeys {
    fn default() -> Self {
        Self {
            camera: "observation/{camera}".into(),
            first_camera: Some("observation/image".into()),
            image_keys: None,
            state: "observation/state".into(),
            prompt: "prompt".into(),
        }
    }
}

fn keys_of(v: &Value) -> String {
    match v {
        Value::Map(entries) => entries
            .iter()
            .map(|(k, _)| k.as_str().unwrap_or("?").to_owned())
            .collect::<Vec<_>>()
            .join(", "),
        other => format!("(a {}, not a map)", other.kind()),
    }
}

/// The observation in an openpi request, for a policy reading `cameras`.
pub fn observation_from_request(
    request: &Value,
    cameras: &[String],
    keys: &ObservationKeys,
) -> Result<Observation, OpenpiError> {
    if !matches!(request, Value::Map(_)) {
        return Err(OpenpiError::Message(format!(
            "the observation must be a map, got a {}",
            request.kind()
        )));
    }
    let mut obs = Observation::default();
    if let Some((key, v)) = first_found(request, &keys.prompt) {
        obs.instruction = v
            .as_str()
            .ok_or_else(|| {
                OpenpiError::Message(format!("`{key}` must be a str, got a {}", v.kind()))
            })?
            .to_owned();
    }
    if let Some((key, v)) = first_found(request, &keys.state) {
        obs.joint_positions =
            numbers_1d(v).map_err(|e| OpenpiError::Message(format!("`{key}`: {e}")))?;
    }
    for (i, cam) in cameras.iter().enumerate() {
        let mut tried: Vec<String> = keys
            .camera
            .iter()
            .map(|p| p.replace("{camera}", cam))
            .collect();
        if i == 0 {
            tried.extend(keys.first_camera.iter().cloned());
        }
        let (key, v) = first_found(request, &tried).ok_or_else(|| {
            OpenpiError::Message(format!(
                "no image for camera `{cam}` (looked for {}; the request has {})",
                tried.join(", "),
                keys_of(request)
            ))
        })?;
        let img = image_from_value(v).map_err(|e| OpenpiError::Message(format!("`{key}`: {e}")))?;
        obs.images.insert(cam.clone(), img);
    }
    Ok(obs)
}

fn first_found<'a>(request: &'a Value, paths: &'a [String]) -> Option<(&'a str, &'a Value)> {
    paths
        .iter()
        .find_map(|p| request.lookup(p).map(|v| (p.as_str(), v)))
}

/// A 1-D array or list of numbers as `f64`.
fn numbers_1d(v: &Value) -> Result<Vec<f64>, String> {
    match v {
        Value::NdArray(a) if a.shape().len() == 1 => Ok(a.to_f64()),
        Value::NdArray(a) => Err(format!("expected a 1-D array, got shape {:?}", a.shape())),
        Value::Array(items) => items
            .iter()
            .map(|x| {
                x.as_f64()
                    .ok_or_else(|| format!("a {} in a list of numbers", x.kind()))
            })
            .collect(),
        other => Err(format!(
            "expected an array of numbers, got a {}",
            other.kind()
        )),
    }
}

/// An openpi image (uint8, `[H, W, 3]`, `[3, H, W]` as ALOHA sends, or grey `[H, W]` /
/// `[H, W, 1]`) as an `rgb8` frame.
pub fn image_from_value(v: &Value) -> Result<Image, String> {
    let Value::NdArray(a) = v else {
        return Err(format!("expected a uint8 image array, got a {}", v.kind()));
    };
    if a.dtype().kind != DKind::UInt || a.dtype().size != 1 {
        return Err(format!(
            "images must be uint8 (|u1), got {}",
            a.dtype().numpy_str()
        ));
    }
    let s = a.shape();
    let d = a.data();
    let (h, w, rgb): (usize, usize, Vec<u8>) = match *s {
        [h, w, 3] => (h, w, d.to_vec()),
        [3, h, w] => {
            let plane = h * w;
            let mut out = Vec::with_capacity(plane * 3);
            for i in 0..plane {
                out.extend_from_slice(&[d[i], d[plane + i], d[2 * plane + i]]);
            }
            (h, w, out)
        }
        [h, w] | [h, w, 1] => (h, w, d.iter().flat_map(|&g| [g, g, g]).collect()),
        _ => {
            return Err(format!(
                "expected an image of shape [H, W, 3], [3, H, W] or [H, W], got {s:?}"
            ))
        }
    };
    if h == 0 || w == 0 || h > MAX_IMAGE_SIDE || w > MAX_IMAGE_SIDE {
        return Err(format!(
            "image of {w}x{h} pixels (each side must be 1 to {MAX_IMAGE_SIDE})"
        ));
    }
    Ok(Image {
        height: h as u32,
        width: w as u32,
        encoding: "rgb8".into(),
        step: (w * 3) as u32,
        data: rgb.into(),
        ..Default::default()
    })
}

/// A camera frame (`rgb8`, `bgr8`, `rgba8`, `bgra8`, `mono8`) as a uint8 `[H, W, 3]` array.
pub fn image_to_array(img: &Image, camera: &str) -> Result<NdArray, OpenpiError> {
    let out = img
        .to_packed_rgb()
        .map_err(|e| OpenpiError::Message(format!("camera `{camera}`: {e}")))?;
    let (w, h) = (img.width as usize, img.height as usize);
    NdArray::from_u8(vec![h, w, 3], out)
}

/// The openpi request for `obs`: each of `cameras` as uint8 `[H, W, 3]`, the joint state as
/// float32, the instruction.
pub fn request_from_observation(
    obs: &Observation,
    cameras: &[String],
    keys: &RequestKeys,
) -> Result<Value, OpenpiError> {
    if let Some(k) = &keys.image_keys {
        if k.len() != cameras.len() {
            return Err(OpenpiError::Message(format!(
                "{} image keys for {} cameras ({})",
                k.len(),
                cameras.len(),
                cameras.join(", ")
            )));
        }
    }
    let mut request = Value::Map(Vec::new());
    for (i, cam) in cameras.iter().enumerate() {
        let img = obs.images.get(cam).ok_or_else(|| {
            OpenpiError::Message(format!(
                "no frame from camera `{cam}` (have: {})",
                obs.images.keys().cloned().collect::<Vec<_>>().join(", ")
            ))
        })?;
        let arr = Value::NdArray(image_to_array(img, cam)?);
        match &keys.image_keys {
            Some(k) => insert_path(&mut request, &k[i], arr),
            None => {
                if i == 0 {
                    if let Some(k) = &keys.first_camera {
                        insert_path(&mut request, k, arr.clone());
                    }
                }
                insert_path(&mut request, &keys.camera.replace("{camera}", cam), arr);
            }
        }
    }
    let state: Vec<f32> = obs.joint_positions.iter().map(|&q| q as f32).collect();
    insert_path(
        &mut request,
        &keys.state,
        Value::NdArray(NdArray::from_f32(vec![state.len()], &state)?),
    );
    insert_path(
        &mut request,
        &keys.prompt,
        Value::str(obs.instruction.clone()),
    );
    Ok(request)
}

/// Inserts `value` at `path`, a `.` separating nested maps.
fn insert_path(map: &mut Value, path: &str, value: Value) {
    match path.split_once('.') {
        None => map.insert(path, value),
        Some((head, rest)) => {
            if !matches!(map.get(head), Some(Value::Map(_))) {
                map.insert(head, Value::Map(Vec::new()));
            }
            if let Value::Map(entries) = map {
                if let Some((_, inner)) = entries.iter_mut().find(|(k, _)| k.as_str() == Some(head))
                {
                    insert_path(inner, rest, value);
                }
            }
        }
    }
}

/// A served policy's reply: `actions` (float32 `[T, D]`) and `policy_timing` (the policy's
/// own time, ms). The server adds `server_timing`.
pub fn reply_from_chunk(chunk: &ActionChunk) -> Result<Value, OpenpiError> {
    let (t, d) = (chunk.len(), chunk.dim());
    if chunk.actions.iter().any(|a| a.len() != d) {
        return Err(OpenpiError::Message("a chunk with ragged actions".into()));
    }
    let flat: Vec<f32> = chunk.actions.iter().flatten().map(|&a| a as f32).collect();
    Ok(Value::map([
        (
            "actions",
            Value::NdArray(NdArray::from_f32(vec![t, d], &flat)?),
        ),
        (
            "policy_timing",
            Value::map([("infer_ms", Value::Float(chunk.timings.total_ms()))]),
        ),
    ]))
}

/// The timing an openpi server reports with a reply (ms).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ServerTiming {
    /// `server_timing.infer_ms`: the policy's inference on the server.
    pub infer_ms: Option<f64>,
    /// `server_timing.prev_total_ms`: the server's whole previous request.
    pub prev_total_ms: Option<f64>,
}

/// The action chunk in an openpi reply: `actions` as a float or int array `[T, D]` (or a list
/// of lists), every entry finite.
pub fn chunk_from_reply(reply: &Value) -> Result<(ActionChunk, ServerTiming), OpenpiError> {
    let actions = reply.get("actions").ok_or_else(|| {
        OpenpiError::Message(format!(
            "the reply has no `actions` (it has {})",
            keys_of(reply)
        ))
    })?;
    let rows: Vec<Vec<f64>> = match actions {
        Value::NdArray(a) => match *a.shape() {
            [t, d] if t > 0 && d > 0 => a.to_f64().chunks_exact(d).map(<[f64]>::to_vec).collect(),
            _ => {
                return Err(OpenpiError::Message(format!(
                    "`actions` must be a non-empty [T, D] array, got shape {:?}",
                    a.shape()
                )))
            }
        },
        Value::Array(rows) => rows
            .iter()
            .map(|r| numbers_1d(r).map_err(|e| OpenpiError::Message(format!("`actions`: {e}"))))
            .collect::<Result<_, _>>()?,
        other => {
            return Err(OpenpiError::Message(format!(
                "`actions` must be an array, got a {}",
                other.kind()
            )))
        }
    };
    let d = rows.first().map_or(0, Vec::len);
    if rows.is_empty() || d == 0 || rows.iter().any(|r| r.len() != d) {
        return Err(OpenpiError::Message("`actions` is empty or ragged".into()));
    }
    if let Some((t, j)) = rows
        .iter()
        .enumerate()
        .find_map(|(t, r)| r.iter().position(|a| !a.is_finite()).map(|j| (t, j)))
    {
        return Err(OpenpiError::NonFinite(format!(
            "`actions`[{t}][{j}] is {}",
            rows[t][j]
        )));
    }
    let timing = reply.get("server_timing");
    let ms = |k: &str| timing.and_then(|t| t.get(k)).and_then(Value::as_f64);
    let chunk = ActionChunk {
        actions: rows,
        ..Default::default()
    };
    Ok((
        chunk,
        ServerTiming {
            infer_ms: ms("infer_ms"),
            prev_total_ms: ms("prev_total_ms"),
        },
    ))
}

/// A JSON value as a msgpack value (objects become maps with `str` keys).
pub fn value_from_json(j: &serde_json::Value) -> Value {
    match j {
        serde_json::Value::Null => Value::Nil,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => n
            .as_i64()
            .map(Value::Int)
            .or_else(|| n.as_u64().map(Value::UInt))
            .unwrap_or_else(|| Value::Float(n.as_f64().unwrap_or(f64::NAN))),
        serde_json::Value::String(s) => Value::str(s.clone()),
        serde_json::Value::Array(a) => Value::Array(a.iter().map(value_from_json).collect()),
        serde_json::Value::Object(o) => {
            Value::map(o.iter().map(|(k, v)| (k.clone(), value_from_json(v))))
        }
    }
}

/// The metadata a Sinew server sends on connect: the policy's [`PolicySpec`] fields, plus
/// `action_horizon` (openpi's name for the chunk length).
pub fn metadata_from_spec(spec: &PolicySpec) -> Value {
    let mut meta = serde_json::to_value(spec)
        .map(|j| value_from_json(&j))
        .unwrap_or_else(|_| Value::Map(Vec::new()));
    meta.insert("action_horizon", Value::Int(spec.chunk_length as i64));
    meta.insert("server", Value::str("sinew"));
    meta
}

/// `fallback` with what `metadata` says: `cameras`, `action_dim`, `action_horizon` (or
/// `chunk_length`), `action_kind`, `control_rate_hz`, `n_action_steps`, `state_dim`,
/// `image_size`, `architecture`. openpi's own servers send their training config's metadata,
/// often `{}`: then `fallback` stands.
pub fn spec_from_metadata(metadata: &Value, fallback: PolicySpec) -> PolicySpec {
    let mut s = fallback;
    if let Some(Value::Array(c)) = metadata.get("cameras") {
        let cams: Vec<String> = c
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect();
        if !cams.is_empty() {
            s.cameras = cams;
        }
    }
    let n = |k: &str| metadata.get(k).and_then(Value::as_usize);
    if let Some(d) = n("action_dim") {
        s.action_dim = d;
    }
    if let Some(t) = n("action_horizon").or_else(|| n("chunk_length")) {
        s.chunk_length = t;
    }
    if let Some(d) = n("state_dim") {
        s.state_dim = d;
        s.uses_state = d > 0;
    }
    if let Some(Value::Bool(b)) = metadata.get("uses_state") {
        s.uses_state = *b;
    }
    if let Some(k) = n("n_action_steps") {
        s.n_action_steps = Some(k);
    }
    if let Some(r) = metadata.get("control_rate_hz").and_then(Value::as_f64) {
        if r > 0.0 && r.is_finite() {
            s.control_rate_hz = r;
        }
    }
    if let Some(k) = metadata.get("action_kind").and_then(Value::as_str) {
        s.action_kind = match k {
            "joint_delta" => ActionKind::JointDelta,
            "ee_delta" => ActionKind::EeDelta,
            "joint_position" => ActionKind::JointPosition,
            _ => s.action_kind,
        };
    }
    if let Some(Value::Array(wh)) = metadata.get("image_size") {
        if let [w, h] = wh.as_slice() {
            if let (Some(w), Some(h)) = (w.as_usize(), h.as_usize()) {
                s.image_size = (w as u32, h as u32);
            }
        }
    }
    if let Some(a) = metadata.get("architecture").and_then(Value::as_str) {
        s.architecture = format!("openpi:{a}");
    }
    s
}
