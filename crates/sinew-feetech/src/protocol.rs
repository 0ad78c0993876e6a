//! The Feetech SCS/STS packet format (the same framing as Dynamixel protocol 1.0).
//!
//! ```text
//! instruction: 0xFF 0xFF ID LEN INSTR PARAM... CHK     LEN = params + 2
//! status:      0xFF 0xFF ID LEN ERROR PARAM... CHK     CHK = !(ID + LEN + INSTR|ERROR + sum(PARAM)) & 0xFF
//! ```
//! Multi-byte values of the STS series are little-endian. ID 0xFE is the broadcast ID: no
//! servo answers a broadcast, except to SYNC_READ, where each listed servo answers with its own
//! status packet in the order of the list.

use std::fmt;

/// The broadcast ID.
pub const BROADCAST_ID: u8 = 0xFE;
/// The largest servo ID.
pub const MAX_ID: u8 = 0xFC;

/// Instruction codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Instruction {
    /// Is the servo there? Answered with an empty status packet.
    Ping = 0x01,
    /// Read `len` bytes from `addr`.
    Read = 0x02,
    /// Write bytes at `addr`.
    Write = 0x03,
    /// Stage a write, applied at ACTION.
    RegWrite = 0x04,
    /// Apply staged writes.
    Action = 0x05,
    /// Read the same bytes from several servos (broadcast).
    SyncRead = 0x82,
    /// Write the same register on several servos (broadcast, no reply).
    SyncWrite = 0x83,
}

impl Instruction {
    /// The instruction of a code, if it is one.
    pub fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            0x01 => Self::Ping,
            0x02 => Self::Read,
            0x03 => Self::Write,
            0x04 => Self::RegWrite,
            0x05 => Self::Action,
            0x82 => Self::SyncRead,
            0x83 => Self::SyncWrite,
            _ => return None,
        })
    }
}

/// The error byte of a status packet (bit meanings of Feetech's SDK).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct StatusError(pub u8);

impl StatusError {
    /// Input voltage out of range.
    pub const VOLTAGE: u8 = 0x01;
    /// Goal or angle out of range (sensor error).
    pub const ANGLE: u8 = 0x02;
    /// Over temperature.
    pub const OVERHEAT: u8 = 0x04;
    /// Over current.
    pub const OVERCURRENT: u8 = 0x08;
    /// Overload (the servo drops torque to protect itself).
    pub const OVERLOAD: u8 = 0x20;

    /// No error bit set.
    pub fn is_ok(self) -> bool {
        self.0 == 0
    }

    /// The overload bit.
    pub fn overload(self) -> bool {
        self.0 & Self::OVERLOAD != 0
    }
}

impl fmt::Display for StatusError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 == 0 {
            return write!(f, "ok");
        }
        let names = [
            (Self::VOLTAGE, "input voltage"),
            (Self::ANGLE, "angle"),
            (Self::OVERHEAT, "overheat"),
            (Self::OVERCURRENT, "overcurrent"),
            (Self::OVERLOAD, "overload"),
        ];
        let mut first = true;
        for (bit, name) in names {
            if self.0 & bit != 0 {
                write!(f, "{}{name}", if first { "" } else { ", " })?;
                first = false;
            }
        }
        let unknown = self.0 & !(0x01 | 0x02 | 0x04 | 0x08 | 0x20);
        if unknown != 0 {
            write!(f, "{}bits {unknown:#04x}", if first { "" } else { ", " })?;
        }
        Ok(())
    }
}

/// Why a packet could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    /// Too many parameters for the one-byte length field.
    #[error("{0} parameter bytes do not fit in one packet (at most 253)")]
    TooLong(usize),
    /// An ID above 0xFC that is not the broadcast ID.
    #[error("servo ID {0} is out of range (0..=252, or 254 for broadcast)")]
    BadId(u8),
}

/// The checksum of a packet's ID, length, instruction/error and parameters.
pub fn checksum(body: &[u8]) -> u8 {
    !body.iter().fold(0u8, |a, b| a.wrapping_add(*b))
}

/// One packet in either direction: `code` is the instruction (host to servo) or the error byte
/// (servo to host).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    /// Servo ID (or broadcast).
    pub id: u8,
    /// Instruction or error byte.
    pub code: u8,
    /// Parameters.
    pub params: Vec<u8>,
}

impl Packet {
    /// The packet's bytes on the wire.
    pub fn encode(&self) -> Result<Vec<u8>, PacketError> {
        encode(self.id, self.code, &self.params)
    }

    /// The status error byte (for status packets).
    pub fn status(&self) -> StatusError {
        StatusError(self.code)
    }
}

/// The bytes of a packet with `id`, `code` and `params`.
pub fn encode(id: u8, code: u8, params: &[u8]) -> Result<Vec<u8>, PacketError> {
    if id > MAX_ID && id != BROADCAST_ID {
        return Err(PacketError::BadId(id));
    }
    if params.len() > 253 {
        return Err(PacketError::TooLong(params.len()));
    }
    let mut out = Vec::with_capacity(params.len() + 6);
    out.extend_from_slice(&[0xFF, 0xFF, id, (params.len() + 2) as u8, code]);
    out.extend_from_slice(params);
    let c = checksum(&out[2..]);
    out.push(c);
    Ok(out)
}

/// What [`parse`] found at the start of a buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// A whole packet, `consumed` bytes long (any garbage before it included).
    Packet {
        /// The packet.
        packet: Packet,
        /// Bytes to drop from the buffer.
        consumed: usize,
    },
    /// A packet whose checksum is wrong; drop `consumed` bytes and go on.
    BadChecksum {
        /// Bytes to drop.
        consumed: usize,
        /// ID byte of the bad packet.
        id: u8,
    },
    /// Bytes before any header (noise); drop `consumed`.
    Garbage {
        /// Bytes to drop.
        consumed: usize,
    },
    /// Not enough bytes yet.
    Incomplete,
}

/// Finds the first packet in `buf`.
pub fn parse(buf: &[u8]) -> Parsed {
    let Some(start) = buf.windows(2).position(|w| w == [0xFF, 0xFF]) else {
        // Keep a trailing 0xFF: it may be the first half of a header.
        let keep = usize::from(buf.last() == Some(&0xFF));
        return match buf.len() - keep {
            0 => Parsed::Incomplete,
            n => Parsed::Garbage { consumed: n },
        };
    };
    if start > 0 {
        return Parsed::Garbage { consumed: start };
    }
    // A run of 0xFF: the header is the last two (the ID is never 0xFF).
    if buf.len() >= 3 && buf[2] == 0xFF {
        return Parsed::Garbage { consumed: 1 };
    }
    if buf.len() < 4 {
        return Parsed::Incomplete;
    }
    let len = usize::from(buf[3]);
    if len < 2 {
        return Parsed::Garbage { consumed: 2 };
    }
    let total = len + 4;
    if buf.len() < total {
        return Parsed::Incomplete;
    }
    let id = buf[2];
    if checksum(&buf[2..total - 1]) != buf[total - 1] {
        return Parsed::BadChecksum {
            consumed: total,
            id,
        };
    }
    Parsed::Packet {
        packet: Packet {
            id,
            code: buf[4],
            params: buf[5..total - 1].to_vec(),
        },
        consumed: total,
    }
}

/// SYNC_READ parameters: start address, length, then the IDs.
pub fn sync_read_params(address: u8, len: u8, ids: &[u8]) -> Vec<u8> {
    let mut p = vec![address, len];
    p.extend_from_slice(ids);
    p
}

/// SYNC_WRITE parameters: start address, length per servo, then each ID with its bytes.
pub fn sync_write_params(address: u8, data: &[(u8, Vec<u8>)]) -> Result<Vec<u8>, PacketError> {
    let len = data.first().map_or(0, |(_, d)| d.len());
    let mut p = vec![address, len as u8];
    for (id, d) in data {
        p.push(*id);
        p.extend_from_slice(d);
    }
    if p.len() > 253 {
        return Err(PacketError::TooLong(p.len()));
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ping_packet_matches_the_datasheet_example() {
        // Feetech's manual: PING servo 1 is FF FF 01 02 01 FB.
        assert_eq!(
            encode(1, Instruction::Ping as u8, &[]).ok(),
            Some(vec![0xFF, 0xFF, 0x01, 0x02, 0x01, 0xFB])
        );
    }

    #[test]
    fn parse_skips_noise_and_rejects_bad_checksums() {
        let good = encode(3, 0, &[0x10, 0x20]).unwrap_or_default();
        let mut buf = vec![0x00, 0x13];
        buf.extend_from_slice(&good);
        assert_eq!(parse(&buf), Parsed::Garbage { consumed: 2 });
        match parse(&buf[2..]) {
            Parsed::Packet { packet, consumed } => {
                assert_eq!(consumed, good.len());
                assert_eq!(packet.id, 3);
                assert_eq!(packet.params, vec![0x10, 0x20]);
            }
            other => panic!("expected a packet, got {other:?}"),
        }
        let mut bad = good.clone();
        let last = bad.len() - 1;
        bad[last] ^= 0x55;
        assert!(matches!(parse(&bad), Parsed::BadChecksum { id: 3, .. }));
        assert_eq!(parse(&good[..4]), Parsed::Incomplete);
        assert_eq!(parse(&[0x12, 0xFF]), Parsed::Garbage { consumed: 1 });
        assert_eq!(
            parse(&[0xFF, 0xFF, 0xFF, 0x01]),
            Parsed::Garbage { consumed: 1 }
        );
    }

    #[test]
    fn status_errors_name_their_bits() {
        assert_eq!(StatusError(0x21).to_string(), "input voltage, overload");
        assert!(StatusError(0x20).overload());
        assert_eq!(StatusError(0).to_string(), "ok");
    }

    proptest::proptest! {
        #[test]
        fn any_packet_round_trips(id in 0u8..=252, code: u8, params in proptest::collection::vec(proptest::num::u8::ANY, 0..40), noise in proptest::collection::vec(0u8..0xFF, 0..5)) {
            let bytes = encode(id, code, &params).unwrap_or_default();
            let mut buf = noise.clone();
            buf.extend_from_slice(&bytes);
            let mut off = 0;
            loop {
                match parse(&buf[off..]) {
                    Parsed::Garbage { consumed } => off += consumed,
                    Parsed::Packet { packet, consumed } => {
                        proptest::prop_assert_eq!(packet, Packet { id, code, params: params.clone() });
                        proptest::prop_assert_eq!(off + consumed, buf.len());
                        break;
                    }
                    other => { proptest::prop_assert!(false, "{:?}", other); break; }
                }
            }
        }
    }
}
