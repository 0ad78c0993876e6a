//! CDR (XCDR1) reader and writer, as ROS 2 serialises messages.
//!
//! A payload is a 4-byte encapsulation header (`00 01 00 00` for little endian, `00 00 00 00`
//! for big endian) followed by the fields in declaration order. Every primitive is aligned to
//! its own size, counted from the end of the header. Strings are a `u32` length that includes
//! the terminating NUL, the bytes, then the NUL. Sequences are a `u32` element count followed by
//! the elements; an empty sequence of a primitive type adds no alignment padding after its count
//! (this is what Fast-CDR, and so ROS 2, does).
//!
//! The reader never allocates from a length field before checking that the payload actually
//! holds that many bytes, and every error names the field being read.

use bytes::Bytes;

use crate::error::{DecodeError, DecodeErrorKind};

/// Encapsulation header written in front of every payload: CDR, little endian, no options.
pub const ENCAPSULATION_LE: [u8; 4] = [0x00, 0x01, 0x00, 0x00];
const ENCAPSULATION_LEN: usize = 4;

/// Where the writer puts bytes: a growable `Vec`, a fixed slice (for example a shared-memory
/// buffer), or nothing at all (to measure the encoded size first).
pub trait Sink {
    /// Appends `bytes`.
    fn put(&mut self, bytes: &[u8]);
    /// Appends `n` zero bytes.
    fn put_zeros(&mut self, n: usize);
}

impl Sink for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
    fn put_zeros(&mut self, n: usize) {
        self.resize(self.len() + n, 0);
    }
}

/// A sink that only counts bytes, used to size a buffer before encoding into it.
#[derive(Debug, Default)]
pub struct CountingSink(pub usize);

impl Sink for CountingSink {
    fn put(&mut self, bytes: &[u8]) {
        self.0 += bytes.len();
    }
    fn put_zeros(&mut self, n: usize) {
        self.0 += n;
    }
}

/// A sink over a caller-provided slice that must be exactly as long as the encoding
/// (see [`crate::Message::encoded_len`]). Writes past its end are dropped and reported by
/// [`SliceSink::overflowed`].
#[derive(Debug)]
pub struct SliceSink<'a> {
    buf: &'a mut [u8],
    pos: usize,
    overflowed: bool,
}

impl<'a> SliceSink<'a> {
    /// Wraps `buf`, writing from its start.
    pub fn new(buf: &'a mut [u8]) -> Self {
        Self {
            buf,
            pos: 0,
            overflowed: false,
        }
    }
    /// Bytes written so far.
    pub fn written(&self) -> usize {
        self.pos
    }
    /// True when something did not fit.
    pub fn overflowed(&self) -> bool {
        self.overflowed
    }
}

impl Sink for SliceSink<'_> {
    fn put(&mut self, bytes: &[u8]) {
        match self.buf.get_mut(self.pos..self.pos + bytes.len()) {
            Some(dst) => {
                dst.copy_from_slice(bytes);
                self.pos += bytes.len();
            }
            None => self.overflowed = true,
        }
    }
    fn put_zeros(&mut self, n: usize) {
        match self.buf.get_mut(self.pos..self.pos + n) {
            Some(dst) => {
                dst.fill(0);
                self.pos += n;
            }
            None => self.overflowed = true,
        }
    }
}

/// Little-endian CDR writer. Create it with [`Writer::new`], which writes the encapsulation
/// header.
#[derive(Debug)]
pub struct Writer<S: Sink> {
    sink: S,
    /// Bytes written after the encapsulation header; alignment is relative to this.
    pos: usize,
}

macro_rules! write_prim {
    ($name:ident, $seq:ident, $t:ty) => {
        #[doc = concat!("Writes one `", stringify!($t), "`, aligned to its size.")]
        pub fn $name(&mut self, v: $t) {
            self.align(std::mem::size_of::<$t>());
            self.raw(&v.to_le_bytes());
        }
        #[doc = concat!("Writes a sequence of `", stringify!($t), "`: count, then the aligned elements.")]
        pub fn $seq(&mut self, v: &[$t]) {
            self.write_len(v.len());
            if !v.is_empty() {
                self.align(std::mem::size_of::<$t>());
                for x in v {
                    self.raw(&x.to_le_bytes());
                }
            }
        }
    };
}

impl<S: Sink> Writer<S> {
    /// Starts a payload in `sink` with the little-endian encapsulation header.
    pub fn new(mut sink: S) -> Self {
        sink.put(&ENCAPSULATION_LE);
        Self { sink, pos: 0 }
    }

    /// Finishes and returns the sink.
    pub fn finish(self) -> S {
        self.sink
    }

    fn raw(&mut self, bytes: &[u8]) {
        self.sink.put(bytes);
        self.pos += bytes.len();
    }

    fn align(&mut self, n: usize) {
        let pad = (n - self.pos % n) % n;
        if pad > 0 {
            self.sink.put_zeros(pad);
            self.pos += pad;
        }
    }

    write_prim!(write_u32, write_u32_seq, u32);
    write_prim!(write_i32, write_i32_seq, i32);
    write_prim!(write_f64, write_f64_seq, f64);
    write_prim!(write_f32, write_f32_seq, f32);
    write_prim!(write_u64, write_u64_seq, u64);

    /// Writes one byte.
    pub fn write_u8(&mut self, v: u8) {
        self.raw(&[v]);
    }

    /// Writes a sequence length. Lengths above `u32::MAX` cannot be represented in CDR; they
    /// are saturated, which makes the payload undecodable rather than silently wrong.
    pub fn write_len(&mut self, n: usize) {
        self.write_u32(u32::try_from(n).unwrap_or(u32::MAX));
    }

    /// Writes a string: length including the NUL, bytes, NUL.
    pub fn write_string(&mut self, s: &str) {
        self.write_len(s.len() + 1);
        self.raw(s.as_bytes());
        self.raw(&[0]);
    }

    /// Writes a sequence of strings.
    pub fn write_string_seq(&mut self, v: &[String]) {
        self.write_len(v.len());
        for s in v {
            self.write_string(s);
        }
    }

    /// Writes a `uint8[]` sequence: count, then the bytes (no alignment).
    pub fn write_byte_seq(&mut self, v: &[u8]) {
        self.write_len(v.len());
        self.raw(v);
    }
}

/// CDR reader over a shared buffer. Byte sequences are returned as slices of that buffer, so
/// decoding an image copies no pixel data.
#[derive(Debug)]
pub struct Reader<'a> {
    buf: &'a Bytes,
    /// Absolute offset of the next byte.
    pos: usize,
    little_endian: bool,
}

macro_rules! read_prim {
    ($name:ident, $seq:ident, $t:ty) => {
        #[doc = concat!("Reads one aligned `", stringify!($t), "`; `field` names it in errors.")]
        pub fn $name(&mut self, field: &'static str) -> Result<$t, DecodeError> {
            const N: usize = std::mem::size_of::<$t>();
            self.align(N, field)?;
            let b = self.take(N, field)?;
            let mut a = [0u8; N];
            a.copy_from_slice(b);
            Ok(if self.little_endian {
                <$t>::from_le_bytes(a)
            } else {
                <$t>::from_be_bytes(a)
            })
        }
        #[doc = concat!("Reads a sequence of `", stringify!($t), "`, checking its count against the payload first.")]
        pub fn $seq(&mut self, field: &'static str) -> Result<Vec<$t>, DecodeError> {
            const N: usize = std::mem::size_of::<$t>();
            let count = self.read_count(field, N)?;
            let mut out = Vec::with_capacity(count);
            if count > 0 {
                self.align(N, field)?;
                // Re-check: alignment padding may have eaten into what was left.
                self.check_available(count.saturating_mul(N), field)?;
                for _ in 0..count {
                    out.push(self.$name(field)?);
                }
            }
            Ok(out)
        }
    };
}

impl<'a> Reader<'a> {
    /// Reads the encapsulation header and positions the reader on the first field.
    pub fn new(buf: &'a Bytes) -> Result<Self, DecodeError> {
        let head = buf.get(..ENCAPSULATION_LEN).ok_or(DecodeError {
            field: "encapsulation header",
            kind: DecodeErrorKind::Truncated {
                needed: ENCAPSULATION_LEN,
                available: buf.len(),
            },
        })?;
        let little_endian = match (head[0], head[1]) {
            (0x00, 0x01) => true,
            (0x00, 0x00) => false,
            _ => {
                return Err(DecodeError {
                    field: "encapsulation header",
                    kind: DecodeErrorKind::BadEncapsulation([head[0], head[1]]),
                })
            }
        };
        Ok(Self {
            buf,
            pos: ENCAPSULATION_LEN,
            little_endian,
        })
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    /// Checks that everything but at most 3 bytes of end padding was consumed.
    pub fn finish(self) -> Result<(), DecodeError> {
        let left = self.remaining();
        if left > 3 {
            return Err(DecodeError {
                field: "end of message",
                kind: DecodeErrorKind::TrailingBytes(left),
            });
        }
        Ok(())
    }

    fn check_available(&self, n: usize, field: &'static str) -> Result<(), DecodeError> {
        if n > self.remaining() {
            return Err(DecodeError {
                field,
                kind: DecodeErrorKind::Truncated {
                    needed: n,
                    available: self.remaining(),
                },
            });
        }
        Ok(())
    }

    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], DecodeError> {
        self.check_available(n, field)?;
        let buf: &'a Bytes = self.buf;
        let s = &buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn align(&mut self, n: usize, field: &'static str) -> Result<(), DecodeError> {
        let rel = self.pos - ENCAPSULATION_LEN;
        let pad = (n - rel % n) % n;
        self.take(pad, field).map(|_| ())
    }

    read_prim!(read_u32, read_u32_seq, u32);
    read_prim!(read_i32, read_i32_seq, i32);
    read_prim!(read_f64, read_f64_seq, f64);
    read_prim!(read_f32, read_f32_seq, f32);
    read_prim!(read_u64, read_u64_seq, u64);

    /// Reads one byte.
    pub fn read_u8(&mut self, field: &'static str) -> Result<u8, DecodeError> {
        Ok(self.take(1, field)?[0])
    }

    /// Reads a sequence count and checks that `count * min_element_size` bytes remain, so that
    /// no allocation is ever sized by an unchecked length field.
    pub fn read_count(
        &mut self,
        field: &'static str,
        min_element_size: usize,
    ) -> Result<usize, DecodeError> {
        let count = self.read_u32(field)? as usize;
        let needed = count.saturating_mul(min_element_size);
        if needed > self.remaining() {
            return Err(DecodeError {
                field,
                kind: DecodeErrorKind::LengthExceedsPayload {
                    count: count as u64,
                    available: self.remaining(),
                },
            });
        }
        Ok(count)
    }

    /// Reads a string (length with NUL, bytes, NUL), checking the NUL and UTF-8.
    pub fn read_string(&mut self, field: &'static str) -> Result<String, DecodeError> {
        let len = self.read_count(field, 1)?;
        if len == 0 {
            // Some writers send an empty string as length 0; accept it.
            return Ok(String::new());
        }
        let raw = self.take(len, field)?;
        let (body, nul) = raw.split_at(len - 1);
        if nul != [0] {
            return Err(DecodeError {
                field,
                kind: DecodeErrorKind::MissingNul,
            });
        }
        std::str::from_utf8(body)
            .map(str::to_owned)
            .map_err(|_| DecodeError {
                field,
                kind: DecodeErrorKind::InvalidUtf8,
            })
    }

    /// Reads a sequence of strings. Each string takes at least 5 bytes (length and NUL) except
    /// the tolerated zero-length form, so the count is checked against 4 bytes per element.
    pub fn read_string_seq(&mut self, field: &'static str) -> Result<Vec<String>, DecodeError> {
        let count = self.read_count(field, 4)?;
        let mut out = Vec::with_capacity(count);
        for _ in 0..count {
            out.push(self.read_string(field)?);
        }
        Ok(out)
    }

    /// Reads a `uint8[]` as a slice of the underlying buffer, without copying.
    pub fn read_byte_seq(&mut self, field: &'static str) -> Result<Bytes, DecodeError> {
        let count = self.read_count(field, 1)?;
        let start = self.pos;
        self.take(count, field)?;
        Ok(self.buf.slice(start..start + count))
    }
}
