//! msgpack with numpy arrays, byte for byte as `openpi_client.msgpack_numpy` packs it.
//!
//! openpi packs with Python's `msgpack` (`use_bin_type=True`): integers in their smallest form,
//! floats as float64, `str` as msgpack str, `bytes` as bin. A numpy array becomes the map
//! `{b"__ndarray__": True, b"data": arr.tobytes(), b"dtype": arr.dtype.str, b"shape": arr.shape}`
//! (keys are **bin**, the dtype a str, the shape an array of ints) and a numpy scalar
//! `{b"__npgeneric__": True, b"data": obj.item(), b"dtype": obj.dtype.str}`. Unpacking turns
//! every such map back into an array (openpi's `object_hook`); nothing in a message can make
//! the reader run code (no pickle, no extension types).
//!
//! The reader checks every length against the bytes that are left before it allocates, caps
//! the nesting depth and the number of values, and refuses trailing bytes.

use rmp::encode as enc;
use rmp::Marker;

use crate::value::{DType, NdArray, NpScalar, Value};
use crate::OpenpiError;

/// Bounds on what [`decode`] accepts.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Deepest nesting of lists and maps.
    pub max_depth: usize,
    /// Most values in one message (every list entry, map key and map value counts).
    pub max_values: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_depth: 32,
            max_values: 1 << 20,
        }
    }
}

/// Packs `value` as openpi's `msgpack_numpy.packb` would.
pub fn encode(value: &Value) -> Result<Vec<u8>, OpenpiError> {
    let mut out = Vec::new();
    write_value(&mut out, value)?;
    Ok(out)
}

fn werr<E: std::fmt::Display>(e: E) -> OpenpiError {
    OpenpiError::Encode(e.to_string())
}

fn len32(n: usize, what: &str) -> Result<u32, OpenpiError> {
    u32::try_from(n).map_err(|_| OpenpiError::Encode(format!("{what} of {n} is too long")))
}

fn write_value(out: &mut Vec<u8>, value: &Value) -> Result<(), OpenpiError> {
    match value {
        Value::Nil => enc::write_nil(out).map_err(werr),
        Value::Bool(b) => enc::write_bool(out, *b).map_err(werr),
        Value::Int(i) => enc::write_sint(out, *i).map(drop).map_err(werr),
        Value::UInt(u) => enc::write_uint(out, *u).map(drop).map_err(werr),
        Value::Float(f) => enc::write_f64(out, *f).map_err(werr),
        Value::Str(s) => {
            enc::write_str_len(out, len32(s.len(), "a str")?).map_err(werr)?;
            out.extend_from_slice(s.as_bytes());
            Ok(())
        }
        Value::Bin(b) => write_bin(out, b),
        Value::Array(items) => {
            enc::write_array_len(out, len32(items.len(), "a list")?).map_err(werr)?;
            items.iter().try_for_each(|v| write_value(out, v))
        }
        Value::Map(entries) => {
            enc::write_map_len(out, len32(entries.len(), "a map")?).map_err(werr)?;
            for (k, v) in entries {
                write_value(out, k)?;
                write_value(out, v)?;
            }
            Ok(())
        }
        Value::NdArray(a) => {
            enc::write_map_len(out, 4).map_err(werr)?;
            write_bin(out, b"__ndarray__")?;
            enc::write_bool(out, true).map_err(werr)?;
            write_bin(out, b"data")?;
            write_bin(out, a.data())?;
            write_bin(out, b"dtype")?;
            write_value(out, &Value::Str(a.dtype().numpy_str()))?;
            write_bin(out, b"shape")?;
            enc::write_array_len(out, len32(a.shape().len(), "a shape")?).map_err(werr)?;
            for &d in a.shape() {
                enc::write_uint(out, d as u64).map_err(werr)?;
            }
            Ok(())
        }
        Value::NpScalar(s) => {
            enc::write_map_len(out, 3).map_err(werr)?;
            write_bin(out, b"__npgeneric__")?;
            enc::write_bool(out, true).map_err(werr)?;
            write_bin(out, b"data")?;
            write_value(out, &s.data)?;
            write_bin(out, b"dtype")?;
            write_value(out, &Value::Str(s.dtype.numpy_str()))
        }
    }
}

fn write_bin(out: &mut Vec<u8>, b: &[u8]) -> Result<(), OpenpiError> {
    enc::write_bin_len(out, len32(b.len(), "bytes")?).map_err(werr)?;
    out.extend_from_slice(b);
    Ok(())
}

/// Unpacks one message as openpi's `msgpack_numpy.unpackb` would, within the default
/// [`Limits`].
pub fn decode(bytes: &[u8]) -> Result<Value, OpenpiError> {
    decode_with(bytes, Limits::default())
}

/// Unpacks one message within `limits`.
pub fn decode_with(bytes: &[u8], limits: Limits) -> Result<Value, OpenpiError> {
    let mut r = Reader {
        bytes,
        pos: 0,
        values: 0,
        limits,
    };
    let v = r.value(0)?;
    if r.pos != bytes.len() {
        return Err(r.err(format!(
            "{} bytes left over after the message",
            bytes.len() - r.pos
        )));
    }
    Ok(v)
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
    values: usize,
    limits: Limits,
}

impl<'a> Reader<'a> {
    fn err(&self, why: impl std::fmt::Display) -> OpenpiError {
        OpenpiError::Decode(format!("at byte {}: {why}", self.pos))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], OpenpiError> {
        let left = self.bytes.len() - self.pos;
        if n > left {
            return Err(self.err(format!("needs {n} bytes, {left} left (truncated message)")));
        }
        let s = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], OpenpiError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn u8(&mut self) -> Result<u8, OpenpiError> {
        Ok(self.array::<1>()?[0])
    }

    fn u16(&mut self) -> Result<usize, OpenpiError> {
        Ok(usize::from(u16::from_be_bytes(self.array()?)))
    }

    fn u32(&mut self) -> Result<usize, OpenpiError> {
        let n = u32::from_be_bytes(self.array()?);
        usize::try_from(n).map_err(|_| self.err("length does not fit this machine"))
    }

    /// `n` entries of `per_entry` values each (1 for a list, 2 for a map): each value takes
    /// at least a byte, so they must fit in what is left, and they count towards the limit.
    fn count(&mut self, n: usize, per_entry: usize) -> Result<usize, OpenpiError> {
        let left = self.bytes.len() - self.pos;
        if n.saturating_mul(per_entry) > left {
            return Err(self.err(format!(
                "a container of {n} entries cannot fit in the {left} bytes left"
            )));
        }
        self.values = self.values.saturating_add(n.saturating_mul(per_entry));
        if self.values > self.limits.max_values {
            return Err(self.err(format!(
                "more than {} values in one message",
                self.limits.max_values
            )));
        }
        Ok(n)
    }

    fn value(&mut self, depth: usize) -> Result<Value, OpenpiError> {
        if depth > self.limits.max_depth {
            return Err(self.err(format!("nested deeper than {}", self.limits.max_depth)));
        }
        let marker = Marker::from_u8(self.u8()?);
        Ok(match marker {
            Marker::Null => Value::Nil,
            Marker::True => Value::Bool(true),
            Marker::False => Value::Bool(false),
            Marker::FixPos(n) => Value::Int(i64::from(n)),
            Marker::FixNeg(n) => Value::Int(i64::from(n)),
            Marker::U8 => Value::Int(i64::from(self.u8()?)),
            Marker::U16 => Value::Int(i64::from(u16::from_be_bytes(self.array()?))),
            Marker::U32 => Value::Int(i64::from(u32::from_be_bytes(self.array()?))),
            Marker::U64 => {
                let u = u64::from_be_bytes(self.array()?);
                i64::try_from(u).map_or(Value::UInt(u), Value::Int)
            }
            Marker::I8 => Value::Int(i64::from(i8::from_be_bytes(self.array()?))),
            Marker::I16 => Value::Int(i64::from(i16::from_be_bytes(self.array()?))),
            Marker::I32 => Value::Int(i64::from(i32::from_be_bytes(self.array()?))),
            Marker::I64 => Value::Int(i64::from_be_bytes(self.array()?)),
            Marker::F32 => Value::Float(f64::from(f32::from_be_bytes(self.array()?))),
            Marker::F64 => Value::Float(f64::from_be_bytes(self.array()?)),
            Marker::FixStr(n) => self.str(usize::from(n))?,
            Marker::Str8 => {
                let n = usize::from(self.u8()?);
                self.str(n)?
            }
            Marker::Str16 => {
                let n = self.u16()?;
                self.str(n)?
            }
            Marker::Str32 => {
                let n = self.u32()?;
                self.str(n)?
            }
            Marker::Bin8 => {
                let n = usize::from(self.u8()?);
                Value::Bin(self.take(n)?.to_vec())
            }
            Marker::Bin16 => {
                let n = self.u16()?;
                Value::Bin(self.take(n)?.to_vec())
            }
            Marker::Bin32 => {
                let n = self.u32()?;
                Value::Bin(self.take(n)?.to_vec())
            }
            Marker::FixArray(n) => self.list(usize::from(n), depth)?,
            Marker::Array16 => {
                let n = self.u16()?;
                self.list(n, depth)?
            }
            Marker::Array32 => {
                let n = self.u32()?;
                self.list(n, depth)?
            }
            Marker::FixMap(n) => self.map(usize::from(n), depth)?,
            Marker::Map16 => {
                let n = self.u16()?;
                self.map(n, depth)?
            }
            Marker::Map32 => {
                let n = self.u32()?;
                self.map(n, depth)?
            }
            Marker::FixExt1
            | Marker::FixExt2
            | Marker::FixExt4
            | Marker::FixExt8
            | Marker::FixExt16
            | Marker::Ext8
            | Marker::Ext16
            | Marker::Ext32 => {
                self.pos -= 1;
                return Err(self.err("msgpack extension types are not part of openpi's protocol"));
            }
            Marker::Reserved => {
                self.pos -= 1;
                return Err(self.err("byte 0xc1 is never used in msgpack"));
            }
        })
    }

    fn str(&mut self, n: usize) -> Result<Value, OpenpiError> {
        let start = self.pos;
        let b = self.take(n)?;
        match std::str::from_utf8(b) {
            Ok(s) => Ok(Value::Str(s.to_owned())),
            Err(_) => {
                self.pos = start;
                Err(self.err("a str that is not UTF-8"))
            }
        }
    }

    fn list(&mut self, n: usize, depth: usize) -> Result<Value, OpenpiError> {
        let n = self.count(n, 1)?;
        let mut items = Vec::with_capacity(n.min(1024));
        for _ in 0..n {
            items.push(self.value(depth + 1)?);
        }
        Ok(Value::Array(items))
    }

    fn map(&mut self, n: usize, depth: usize) -> Result<Value, OpenpiError> {
        let start = self.pos;
        let n = self.count(n, 2)?;
        let mut entries = Vec::with_capacity(n.min(1024));
        for _ in 0..n {
            let k = self.value(depth + 1)?;
            let v = self.value(depth + 1)?;
            entries.push((k, v));
        }
        let map = Value::Map(entries);
        numpy_hook(map).map_err(|e| OpenpiError::Decode(format!("map at byte {start}: {e}")))
    }
}

/// openpi's `unpack_array`: a map with `__ndarray__` becomes an array, one with
/// `__npgeneric__` a scalar; other maps stay maps.
fn numpy_hook(map: Value) -> Result<Value, OpenpiError> {
    if map.get("__ndarray__").is_some() {
        let dtype = dtype_of(&map)?;
        let Some(Value::Array(dims)) = map.get("shape") else {
            return Err(OpenpiError::Array("`shape` must be a list of ints".into()));
        };
        let shape = shape_of(dims)?;
        let Value::Map(entries) = map else {
            return Err(OpenpiError::Array("not a map".into()));
        };
        // The data bytes move out of the map: nothing is copied, and the size is checked
        // against the shape before the array exists.
        let data = entries
            .into_iter()
            .find_map(|(k, v)| match (k.as_str() == Some("data"), v) {
                (true, Value::Bin(b)) => Some(b),
                _ => None,
            })
            .ok_or_else(|| OpenpiError::Array("`data` must be bytes".into()))?;
        return Ok(Value::NdArray(NdArray::new(dtype, shape, data)?));
    }
    if map.get("__npgeneric__").is_some() {
        let dtype = dtype_of(&map)?;
        let data = match map.get("data") {
            Some(v @ (Value::Int(_) | Value::UInt(_) | Value::Float(_) | Value::Bool(_))) => {
                v.clone()
            }
            Some(v) => {
                return Err(OpenpiError::Array(format!(
                    "numpy scalar data must be a number, got {}",
                    v.kind()
                )))
            }
            None => return Err(OpenpiError::Array("numpy scalar without `data`".into())),
        };
        return Ok(Value::NpScalar(NpScalar {
            dtype,
            data: Box::new(data),
        }));
    }
    Ok(map)
}

fn dtype_of(map: &Value) -> Result<DType, OpenpiError> {
    let s = map
        .get("dtype")
        .and_then(Value::as_str)
        .ok_or_else(|| OpenpiError::Array("`dtype` must be a str like \"<f4\"".into()))?;
    DType::parse(s)
}

fn shape_of(dims: &[Value]) -> Result<Vec<usize>, OpenpiError> {
    dims.iter()
        .map(|d| {
            d.as_usize()
                .ok_or_else(|| OpenpiError::Array(format!("shape entry {d:?} is not a size")))
        })
        .collect()
}
