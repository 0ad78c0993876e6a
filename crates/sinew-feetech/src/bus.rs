//! A Feetech servo bus: instructions out, status packets in, over a serial port (1,000,000
//! baud for the SO-101). Every transaction has a timeout sized to its bytes on the wire and a
//! bounded number of retries; bad checksums, missing replies and status error bits are
//! counted per servo and returned as values, never panics.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::protocol::{self, Instruction, Packet, PacketError, Parsed, StatusError, BROADCAST_ID};
use crate::registers::{Register, RegisterError};

/// A byte stream to the servos.
pub trait Port: Send {
    /// Writes all of `bytes`.
    fn send(&mut self, bytes: &[u8]) -> io::Result<()>;
    /// Reads what is there, waiting at most `timeout` for the first byte; `Ok(0)` on timeout.
    fn receive(&mut self, buf: &mut [u8], timeout: Duration) -> io::Result<usize>;
    /// Drops unread input.
    fn clear_input(&mut self) -> io::Result<()>;
}

/// A serial port (a USB serial adapter, or the emulator's pseudo-terminal).
pub struct SerialLink {
    port: Box<dyn serialport::SerialPort>,
    timeout: Duration,
}

impl SerialLink {
    /// Opens `path` at `baud`.
    pub fn open(path: &str, baud: u32) -> Result<Self, BusError> {
        let port = serialport::new(path, baud)
            .timeout(Duration::from_millis(10))
            .open()
            .map_err(|e| BusError::Open {
                port: path.to_owned(),
                why: e.to_string(),
            })?;
        Ok(Self {
            port,
            timeout: Duration::from_millis(10),
        })
    }
}

impl Port for SerialLink {
    fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.port.write_all(bytes)?;
        self.port.flush()
    }

    fn receive(&mut self, buf: &mut [u8], timeout: Duration) -> io::Result<usize> {
        if timeout != self.timeout {
            self.port
                .set_timeout(timeout)
                .map_err(|e| io::Error::other(e.to_string()))?;
            self.timeout = timeout;
        }
        match self.port.read(buf) {
            Ok(n) => Ok(n),
            Err(e) if e.kind() == io::ErrorKind::TimedOut => Ok(0),
            Err(e) => Err(e),
        }
    }

    fn clear_input(&mut self) -> io::Result<()> {
        self.port
            .clear(serialport::ClearBuffer::Input)
            .map_err(|e| io::Error::other(e.to_string()))
    }
}

/// Why a bus transaction failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BusError {
    /// The port could not be opened.
    #[error("cannot open serial port {port}: {why}")]
    Open {
        /// Port path.
        port: String,
        /// Why.
        why: String,
    },
    /// Reading or writing the port failed.
    #[error("serial port: {0}")]
    Io(String),
    /// No (valid) reply from the servo within the timeout, after every retry.
    #[error("servo {id}: no valid reply after {attempts} attempt(s) ({why})")]
    NoReply {
        /// Servo.
        id: u8,
        /// Attempts made.
        attempts: u32,
        /// What went wrong last: timeout or bad checksum.
        why: &'static str,
    },
    /// The servo answered with a reply of the wrong size.
    #[error("servo {id}: reply has {got} data bytes, expected {expected}")]
    BadReply {
        /// Servo.
        id: u8,
        /// Bytes received.
        got: usize,
        /// Bytes expected.
        expected: usize,
    },
    /// A packet could not be built.
    #[error(transparent)]
    Packet(#[from] PacketError),
    /// A value does not fit its register.
    #[error(transparent)]
    Register(#[from] RegisterError),
}

impl From<io::Error> for BusError {
    fn from(e: io::Error) -> Self {
        BusError::Io(e.to_string())
    }
}

/// Counters of one servo.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ServoCounters {
    /// Valid replies.
    pub replies: u64,
    /// Expected replies that never came.
    pub timeouts: u64,
    /// Replies with a bad checksum.
    pub bad_checksums: u64,
    /// Replies with any status error bit set.
    pub status_errors: u64,
    /// Replies with the overload bit.
    pub overloads: u64,
    /// The last status error byte seen.
    pub last_error: StatusError,
}

/// Counters of the bus.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct BusStats {
    /// Instruction packets sent (retries included).
    pub sent: u64,
    /// Transactions retried.
    pub retries: u64,
    /// Transactions that failed after every retry.
    pub failures: u64,
    /// Bytes that were not part of any packet.
    pub garbage_bytes: u64,
    /// Per servo.
    pub servos: BTreeMap<u8, ServoCounters>,
}

/// How the bus waits and retries.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BusConfig {
    /// Line rate, baud (1,000,000 for the SO-101).
    pub baud: u32,
    /// Time allowed beyond the bytes' wire time for a reply (USB adapter latency, the servo's
    /// return delay).
    pub reply_margin: Duration,
    /// Retries after a failed transaction.
    pub retries: u32,
}

impl Default for BusConfig {
    fn default() -> Self {
        Self {
            baud: 1_000_000,
            reply_margin: Duration::from_millis(8),
            retries: 2,
        }
    }
}

/// What one servo answered to a SYNC_READ.
pub type SyncReply = Result<(Vec<u8>, StatusError), BusError>;

/// A servo bus.
pub struct FeetechBus {
    port: Box<dyn Port>,
    config: BusConfig,
    stats: BusStats,
    rx: Vec<u8>,
}

impl FeetechBus {
    /// A bus on `port`.
    pub fn new(port: Box<dyn Port>, config: BusConfig) -> Self {
        Self {
            port,
            config,
            stats: BusStats::default(),
            rx: Vec::with_capacity(256),
        }
    }

    /// Opens the serial port at `path`.
    pub fn open(path: &str, config: BusConfig) -> Result<Self, BusError> {
        Ok(Self::new(
            Box::new(SerialLink::open(path, config.baud)?),
            config,
        ))
    }

    /// The counters so far.
    pub fn stats(&self) -> &BusStats {
        &self.stats
    }

    /// The timeout for `bytes` on the wire (10 bits a byte) plus the margin.
    fn timeout_for(&self, bytes: usize) -> Duration {
        let wire = Duration::from_secs_f64(bytes as f64 * 10.0 / f64::from(self.config.baud));
        wire + self.config.reply_margin
    }

    fn servo(&mut self, id: u8) -> &mut ServoCounters {
        self.stats.servos.entry(id).or_default()
    }

    fn transmit(
        &mut self,
        id: u8,
        instruction: Instruction,
        params: &[u8],
    ) -> Result<(), BusError> {
        let bytes = protocol::encode(id, instruction as u8, params)?;
        // A late reply to an earlier instruction must not be taken for this one's.
        self.rx.clear();
        self.port.clear_input()?;
        self.port.send(&bytes)?;
        self.stats.sent += 1;
        Ok(())
    }

    /// The next status packet, waiting until `deadline`. `Err(why)` on timeout or bad checksum.
    fn next_packet(&mut self, deadline: Instant) -> Result<Packet, (Option<u8>, &'static str)> {
        let mut buf = [0u8; 256];
        loop {
            loop {
                match protocol::parse(&self.rx) {
                    Parsed::Packet { packet, consumed } => {
                        self.rx.drain(..consumed);
                        return Ok(packet);
                    }
                    Parsed::BadChecksum { consumed, id } => {
                        self.rx.drain(..consumed);
                        self.servo(id).bad_checksums += 1;
                        return Err((Some(id), "bad checksum"));
                    }
                    Parsed::Garbage { consumed } => {
                        self.stats.garbage_bytes += consumed as u64;
                        self.rx.drain(..consumed);
                    }
                    Parsed::Incomplete => break,
                }
            }
            let now = Instant::now();
            if now >= deadline {
                return Err((None, "timeout"));
            }
            match self.port.receive(&mut buf, deadline - now) {
                Ok(n) => self.rx.extend_from_slice(&buf[..n]),
                Err(_) => return Err((None, "read error")),
            }
        }
    }

    /// One instruction to `id` and its status reply with `data_len` bytes, with retries.
    fn transact(
        &mut self,
        id: u8,
        instruction: Instruction,
        params: &[u8],
        data_len: usize,
    ) -> Result<(Vec<u8>, StatusError), BusError> {
        let attempts = self.config.retries + 1;
        let mut why = "timeout";
        for attempt in 0..attempts {
            if attempt > 0 {
                self.stats.retries += 1;
            }
            self.transmit(id, instruction, params)?;
            let deadline = Instant::now() + self.timeout_for(params.len() + 6 + data_len + 6);
            loop {
                match self.next_packet(deadline) {
                    Ok(p) if p.id == id => {
                        let status = p.status();
                        self.record_status(id, status);
                        if p.params.len() != data_len {
                            return Err(BusError::BadReply {
                                id,
                                got: p.params.len(),
                                expected: data_len,
                            });
                        }
                        return Ok((p.params, status));
                    }
                    // Another servo's packet (an echo, a late reply): not ours, keep waiting.
                    Ok(_) => continue,
                    Err((_, w)) => {
                        why = w;
                        if w == "timeout" {
                            self.servo(id).timeouts += 1;
                        }
                        break;
                    }
                }
            }
        }
        self.stats.failures += 1;
        Err(BusError::NoReply { id, attempts, why })
    }

    fn record_status(&mut self, id: u8, status: StatusError) {
        let s = self.servo(id);
        s.replies += 1;
        if !status.is_ok() {
            s.status_errors += 1;
            s.last_error = status;
            if status.overload() {
                s.overloads += 1;
            }
        } else {
            s.last_error = StatusError(0);
        }
    }

    /// PING: the servo's status error byte.
    pub fn ping(&mut self, id: u8) -> Result<StatusError, BusError> {
        Ok(self.transact(id, Instruction::Ping, &[], 0)?.1)
    }

    /// READ `len` bytes at `address`.
    pub fn read_bytes(
        &mut self,
        id: u8,
        address: u8,
        len: u8,
    ) -> Result<(Vec<u8>, StatusError), BusError> {
        self.transact(id, Instruction::Read, &[address, len], usize::from(len))
    }

    /// READ one register.
    pub fn read(&mut self, id: u8, reg: Register) -> Result<i32, BusError> {
        let (bytes, _) = self.read_bytes(id, reg.address, reg.size)?;
        Ok(reg.decode(&bytes)?)
    }

    /// WRITE bytes at `address` (acknowledged; broadcast writes are not).
    pub fn write_bytes(
        &mut self,
        id: u8,
        address: u8,
        data: &[u8],
    ) -> Result<StatusError, BusError> {
        let mut params = vec![address];
        params.extend_from_slice(data);
        if id == BROADCAST_ID {
            self.transmit(id, Instruction::Write, &params)?;
            return Ok(StatusError(0));
        }
        Ok(self.transact(id, Instruction::Write, &params, 0)?.1)
    }

    /// WRITE one register.
    pub fn write(&mut self, id: u8, reg: Register, value: i32) -> Result<StatusError, BusError> {
        let data = reg.encode(value)?;
        self.write_bytes(id, reg.address, &data)
    }

    /// REG_WRITE: stage a register write, applied at [`FeetechBus::action`].
    pub fn reg_write(
        &mut self,
        id: u8,
        reg: Register,
        value: i32,
    ) -> Result<StatusError, BusError> {
        let mut params = vec![reg.address];
        params.extend_from_slice(&reg.encode(value)?);
        if id == BROADCAST_ID {
            self.transmit(id, Instruction::RegWrite, &params)?;
            return Ok(StatusError(0));
        }
        Ok(self.transact(id, Instruction::RegWrite, &params, 0)?.1)
    }

    /// ACTION: apply staged writes (broadcast: every servo at once, no reply).
    pub fn action(&mut self, id: u8) -> Result<(), BusError> {
        if id == BROADCAST_ID {
            return self.transmit(id, Instruction::Action, &[]);
        }
        self.transact(id, Instruction::Action, &[], 0).map(|_| ())
    }

    /// SYNC_WRITE one register on several servos (one packet, no reply).
    pub fn sync_write(&mut self, reg: Register, values: &[(u8, i32)]) -> Result<(), BusError> {
        let data = values
            .iter()
            .map(|(id, v)| Ok((*id, reg.encode(*v)?)))
            .collect::<Result<Vec<_>, RegisterError>>()?;
        let params = protocol::sync_write_params(reg.address, &data)?;
        self.transmit(BROADCAST_ID, Instruction::SyncWrite, &params)
    }

    /// SYNC_READ `len` bytes at `address` from `ids`: one result per ID, in order. Servos that
    /// did not answer (or answered with a bad checksum) are asked again, up to the retries.
    pub fn sync_read(
        &mut self,
        address: u8,
        len: u8,
        ids: &[u8],
    ) -> Result<Vec<SyncReply>, BusError> {
        let mut out: Vec<Option<SyncReply>> = vec![None; ids.len()];
        let mut pending: Vec<usize> = (0..ids.len()).collect();
        let mut last_why: Vec<&'static str> = vec!["timeout"; ids.len()];
        for attempt in 0..=self.config.retries {
            if pending.is_empty() {
                break;
            }
            if attempt > 0 {
                self.stats.retries += 1;
            }
            let asked: Vec<u8> = pending.iter().map(|&i| ids[i]).collect();
            self.transmit(
                BROADCAST_ID,
                Instruction::SyncRead,
                &protocol::sync_read_params(address, len, &asked),
            )?;
            let per = usize::from(len) + 6;
            let deadline = Instant::now() + self.timeout_for(asked.len() + 8 + per * asked.len());
            let mut left = pending.len();
            while left > 0 {
                match self.next_packet(deadline) {
                    Ok(p) => {
                        let Some(&i) = pending
                            .iter()
                            .find(|&&i| ids[i] == p.id && out[i].is_none())
                        else {
                            continue;
                        };
                        let status = p.status();
                        self.record_status(p.id, status);
                        left -= 1;
                        out[i] = Some(if p.params.len() == usize::from(len) {
                            Ok((p.params, status))
                        } else {
                            Err(BusError::BadReply {
                                id: p.id,
                                got: p.params.len(),
                                expected: usize::from(len),
                            })
                        });
                    }
                    Err((Some(id), why)) => {
                        if let Some(&i) = pending.iter().find(|&&i| ids[i] == id) {
                            last_why[i] = why;
                        }
                    }
                    Err((None, _)) => break,
                }
            }
            pending.retain(|&i| out[i].is_none());
        }
        for &i in &pending {
            if last_why[i] == "timeout" {
                self.servo(ids[i]).timeouts += 1;
            }
            self.stats.failures += 1;
        }
        Ok(out
            .into_iter()
            .enumerate()
            .map(|(i, r)| {
                r.unwrap_or(Err(BusError::NoReply {
                    id: ids[i],
                    attempts: self.config.retries + 1,
                    why: last_why[i],
                }))
            })
            .collect())
    }

    /// SYNC_READ of one register: one value per ID.
    pub fn sync_read_register(
        &mut self,
        reg: Register,
        ids: &[u8],
    ) -> Result<Vec<Result<i32, BusError>>, BusError> {
        Ok(self
            .sync_read(reg.address, reg.size, ids)?
            .into_iter()
            .map(|r| r.and_then(|(b, _)| Ok(reg.decode(&b)?)))
            .collect())
    }
}
