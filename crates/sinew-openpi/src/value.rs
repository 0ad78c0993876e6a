//! The values of openpi messages: msgpack's types plus numpy arrays and scalars, as
//! `openpi_client.msgpack_numpy` packs them.

use crate::OpenpiError;

/// One msgpack value, with numpy arrays and scalars recognised.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `nil` (Python `None`).
    Nil,
    /// A boolean.
    Bool(bool),
    /// An integer that fits `i64` (msgpack's positive and negative integers alike).
    Int(i64),
    /// A positive integer above `i64::MAX`.
    UInt(u64),
    /// A float (msgpack float64; a float32 read is widened).
    Float(f64),
    /// UTF-8 text (msgpack `str`, Python `str`).
    Str(String),
    /// Bytes (msgpack `bin`, Python `bytes`).
    Bin(Vec<u8>),
    /// A list (Python `list` or `tuple`).
    Array(Vec<Value>),
    /// A map, in wire order.
    Map(Vec<(Value, Value)>),
    /// A numpy array (`{b"__ndarray__": True, b"data", b"dtype", b"shape"}`).
    NdArray(NdArray),
    /// A numpy scalar (`{b"__npgeneric__": True, b"data", b"dtype"}`).
    NpScalar(NpScalar),
}

impl Value {
    /// A `str` value.
    pub fn str(s: impl Into<String>) -> Self {
        Value::Str(s.into())
    }

    /// A map with `str` keys, in the order given.
    pub fn map<K: Into<String>>(entries: impl IntoIterator<Item = (K, Value)>) -> Self {
        Value::Map(
            entries
                .into_iter()
                .map(|(k, v)| (Value::Str(k.into()), v))
                .collect(),
        )
    }

    /// The entry of a map whose key is `key` as `str` or as `bin`; `None` for other values.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Map(entries) => entries.iter().find(|(k, _)| k.key_is(key)).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The entry at a `/`-separated path: first `path` as one key (openpi's flat
    /// `observation/image`), then each segment as a nested map (`images` → `cam_high`).
    pub fn lookup(&self, path: &str) -> Option<&Value> {
        if let Some(v) = self.get(path) {
            return Some(v);
        }
        let (head, rest) = path.split_once('/')?;
        self.get(head)?.lookup(rest)
    }

    /// Inserts or replaces the entry `key` of a map (a `str` key); does nothing to other values.
    pub fn insert(&mut self, key: &str, value: Value) {
        if let Value::Map(entries) = self {
            match entries.iter_mut().find(|(k, _)| k.key_is(key)) {
                Some((_, v)) => *v = value,
                None => entries.push((Value::str(key), value)),
            }
        }
    }

    fn key_is(&self, key: &str) -> bool {
        match self {
            Value::Str(s) => s == key,
            Value::Bin(b) => b == key.as_bytes(),
            _ => false,
        }
    }

    /// The text of a `str` (or UTF-8 `bin`) value.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            Value::Bin(b) => std::str::from_utf8(b).ok(),
            _ => None,
        }
    }

    /// A number as `f64`: integers, floats and numpy scalars of either.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Int(i) => Some(*i as f64),
            Value::UInt(u) => Some(*u as f64),
            Value::Float(f) => Some(*f),
            Value::NpScalar(s) => s.data.as_f64(),
            _ => None,
        }
    }

    /// A non-negative integer as `usize` (numpy integer scalars included).
    pub fn as_usize(&self) -> Option<usize> {
        match self {
            Value::Int(i) => usize::try_from(*i).ok(),
            Value::UInt(u) => usize::try_from(*u).ok(),
            Value::NpScalar(s) => s.data.as_usize(),
            _ => None,
        }
    }

    /// What kind of value this is, for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Nil => "nil",
            Value::Bool(_) => "bool",
            Value::Int(_) | Value::UInt(_) => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "str",
            Value::Bin(_) => "bytes",
            Value::Array(_) => "list",
            Value::Map(_) => "map",
            Value::NdArray(_) => "ndarray",
            Value::NpScalar(_) => "numpy scalar",
        }
    }
}

/// The element type of a numpy array, as numpy's `dtype.str` spells it (`<f4`, `|u1`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DType {
    /// Float, signed or unsigned integer, or bool.
    pub kind: DKind,
    /// Bytes per element.
    pub size: usize,
    /// Whether multi-byte elements are big endian.
    pub big_endian: bool,
}

/// The kind letter of a numpy dtype.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DKind {
    /// `f`: IEEE float (2, 4 or 8 bytes).
    Float,
    /// `i`: signed integer (1, 2, 4 or 8 bytes).
    Int,
    /// `u`: unsigned integer (1, 2, 4 or 8 bytes).
    UInt,
    /// `b`: bool (1 byte).
    Bool,
}

impl DType {
    /// `|u1`.
    pub const U8: DType = DType::little(DKind::UInt, 1);
    /// `<f4`.
    pub const F32: DType = DType::little(DKind::Float, 4);
    /// `<f8`.
    pub const F64: DType = DType::little(DKind::Float, 8);

    const fn little(kind: DKind, size: usize) -> Self {
        Self {
            kind,
            size,
            big_endian: false,
        }
    }

    /// Parses numpy's `dtype.str` (`<f4`, `>i8`, `|u1`, `|b1`, `=f8`; `<f2` too). Other kinds
    /// (text, objects, structured, complex) are refused, as openpi refuses to pack them.
    pub fn parse(s: &str) -> Result<Self, OpenpiError> {
        let bad = |why: &str| OpenpiError::Array(format!("dtype {s:?}: {why}"));
        let b = s.as_bytes();
        if b.len() < 3 {
            return Err(bad("expected byte order, kind and size, like `<f4`"));
        }
        let big_endian = match b[0] {
            b'<' | b'|' | b'=' => false,
            b'>' => true,
            _ => return Err(bad("unknown byte order (expected <, >, | or =)")),
        };
        let kind = match b[1] {
            b'f' => DKind::Float,
            b'i' => DKind::Int,
            b'u' => DKind::UInt,
            b'b' => DKind::Bool,
            _ => return Err(bad("only float, int, uint and bool arrays are supported")),
        };
        let size: usize = s[2..]
            .parse()
            .map_err(|_| bad("the size is not a number"))?;
        let ok = match kind {
            DKind::Float => matches!(size, 2 | 4 | 8),
            DKind::Int | DKind::UInt => matches!(size, 1 | 2 | 4 | 8),
            DKind::Bool => size == 1,
        };
        if !ok {
            return Err(bad("unsupported element size"));
        }
        Ok(Self {
            kind,
            size,
            big_endian,
        })
    }

    /// numpy's `dtype.str` for this type: `|` for one-byte types, `<` or `>` otherwise.
    pub fn numpy_str(&self) -> String {
        let order = if self.size == 1 {
            '|'
        } else if self.big_endian {
            '>'
        } else {
            '<'
        };
        let kind = match self.kind {
            DKind::Float => 'f',
            DKind::Int => 'i',
            DKind::UInt => 'u',
            DKind::Bool => 'b',
        };
        format!("{order}{kind}{}", self.size)
    }

    /// One element at the start of `b` (at least `size` bytes) as `f64`.
    fn read_f64(&self, b: &[u8]) -> f64 {
        let mut buf = [0u8; 8];
        buf[..self.size].copy_from_slice(&b[..self.size]);
        if self.big_endian {
            buf[..self.size].reverse();
        }
        match (self.kind, self.size) {
            (DKind::Float, 2) => f16_to_f64(u16::from_le_bytes([buf[0], buf[1]])),
            (DKind::Float, 4) => f64::from(f32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]])),
            (DKind::Float, _) => f64::from_le_bytes(buf),
            (DKind::Int, 1) => f64::from(buf[0] as i8),
            (DKind::Int, 2) => f64::from(i16::from_le_bytes([buf[0], buf[1]])),
            (DKind::Int, 4) => f64::from(i32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]])),
            (DKind::Int, _) => i64::from_le_bytes(buf) as f64,
            (DKind::UInt | DKind::Bool, _) => u64::from_le_bytes(buf) as f64,
        }
    }
}

/// IEEE half precision to `f64`.
fn f16_to_f64(h: u16) -> f64 {
    let sign = if h & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exp = i32::from((h >> 10) & 0x1f);
    let frac = f64::from(h & 0x3ff);
    match exp {
        0 => sign * frac * 2f64.powi(-24),
        31 if frac == 0.0 => sign * f64::INFINITY,
        31 => f64::NAN,
        _ => sign * (1.0 + frac / 1024.0) * 2f64.powi(exp - 15),
    }
}

/// A numpy array: C-order bytes, element type and shape, checked to agree.
#[derive(Debug, Clone, PartialEq)]
pub struct NdArray {
    dtype: DType,
    shape: Vec<usize>,
    data: Vec<u8>,
}

impl NdArray {
    /// An array from its parts; fails unless `data` holds exactly the elements of `shape`.
    pub fn new(dtype: DType, shape: Vec<usize>, data: Vec<u8>) -> Result<Self, OpenpiError> {
        let need = shape
            .iter()
            .try_fold(dtype.size, |n, &d| n.checked_mul(d))
            .ok_or_else(|| OpenpiError::Array(format!("shape {shape:?} overflows")))?;
        if need != data.len() {
            return Err(OpenpiError::Array(format!(
                "shape {shape:?} of {} needs {need} data bytes, got {}",
                dtype.numpy_str(),
                data.len()
            )));
        }
        Ok(Self { dtype, shape, data })
    }

    /// A `|u1` array.
    pub fn from_u8(shape: Vec<usize>, data: Vec<u8>) -> Result<Self, OpenpiError> {
        Self::new(DType::U8, shape, data)
    }

    /// A `<f4` array.
    pub fn from_f32(shape: Vec<usize>, values: &[f32]) -> Result<Self, OpenpiError> {
        let data = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        Self::new(DType::F32, shape, data)
    }

    /// A `<f8` array.
    pub fn from_f64(shape: Vec<usize>, values: &[f64]) -> Result<Self, OpenpiError> {
        let data = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        Self::new(DType::F64, shape, data)
    }

    /// The element type.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// The shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The raw C-order bytes.
    pub fn data(&self) -> &[u8] {
        &self.data
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.data.len() / self.dtype.size
    }

    /// Whether the array holds no element.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Every element as `f64`, in C order.
    pub fn to_f64(&self) -> Vec<f64> {
        self.data
            .chunks_exact(self.dtype.size)
            .map(|e| self.dtype.read_f64(e))
            .collect()
    }
}

/// A numpy scalar: its dtype and its value as a Python number (`obj.item()`).
#[derive(Debug, Clone, PartialEq)]
pub struct NpScalar {
    /// The element type.
    pub dtype: DType,
    /// The value (an int, float or bool).
    pub data: Box<Value>,
}
