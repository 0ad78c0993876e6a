//! A bus of emulated STS3215 servos on a pseudo-terminal, for tests and for trying Sinew
//! without an arm (`sinew robot emulate`). Each servo has the control table of
//! [`crate::registers`], moves toward its goal at bounded speed (and acceleration) while its
//! torque is on, can be moved "by hand" while its torque is off (a sweep, as a person moving a
//! leader arm or calibrating), and answers PING, READ, WRITE, REG_WRITE/ACTION, SYNC_READ and
//! SYNC_WRITE as the real servo does. Faults are injected by time: a servo that stops
//! answering, replies with a corrupted checksum, or reports overload (and drops torque).
//!
//! Every goal position written is logged, so tests can check that no goal ever stepped further
//! than the serving side's velocity limit allows.
//!
//! With `wire_time` on, each reply leaves no earlier than the request's and the reply's bytes
//! would take on a 1,000,000-baud line (10 µs a byte), so round-trip times resemble a real bus.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Serialize;
use serialport::{SerialPort, TTYPort};

use crate::bus::BusError;
use crate::calibration::Calibration;
use crate::protocol::{self, Instruction, Packet, Parsed, StatusError, BROADCAST_ID};
use crate::registers::{self as reg, Register};

/// How long a hand holds a servo still after its homing offset is written, s.
pub const HAND_SETTLE_S: f64 = 0.5;

/// Servo speed when Goal_Velocity is 0, steps/s (the STS3215 at 12 V: about 0.2 s per 60°).
pub const DEFAULT_SPEED: f64 = 3400.0;

/// What goes wrong, and when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// The servo does not answer and ignores writes (unplugged).
    Silent,
    /// Replies leave with a wrong checksum.
    Corrupt,
    /// Replies carry the overload bit; the servo drops its torque.
    Overload,
}

/// A fault of one servo during `[from_s, until_s)` after the emulator started.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fault {
    /// Servo ID.
    pub id: u8,
    /// What.
    pub kind: FaultKind,
    /// Start, s.
    pub from_s: f64,
    /// End, s.
    pub until_s: f64,
}

impl std::str::FromStr for Fault {
    type Err = String;
    /// `KIND:ID:FROM_S:DURATION_S`, KIND one of silent, corrupt, overload.
    fn from_str(s: &str) -> Result<Self, String> {
        let parts: Vec<&str> = s.split(':').collect();
        let [kind, id, from, dur] = parts[..] else {
            return Err(format!(
                "fault {s:?}: expected KIND:ID:FROM_S:DURATION_S (KIND silent, corrupt or overload)"
            ));
        };
        let kind = match kind {
            "silent" => FaultKind::Silent,
            "corrupt" => FaultKind::Corrupt,
            "overload" => FaultKind::Overload,
            k => {
                return Err(format!(
                    "fault {s:?}: unknown kind {k:?} (silent, corrupt, overload)"
                ))
            }
        };
        let num = |what: &str, v: &str| -> Result<f64, String> {
            v.parse::<f64>()
                .ok()
                .filter(|x| x.is_finite() && *x >= 0.0)
                .ok_or_else(|| format!("fault {s:?}: {what} {v:?} is not a non-negative number"))
        };
        let from_s = num("start", from)?;
        Ok(Fault {
            id: id
                .parse()
                .map_err(|_| format!("fault {s:?}: servo ID {id:?} is not 0..=252"))?,
            kind,
            from_s,
            until_s: from_s + num("duration", dur)?,
        })
    }
}

/// Motion of servos whose torque is off, as a person's hand would move them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Hand {
    /// They stay where they are.
    Still,
    /// Each sweeps `amplitude` steps either side of where it started, with this period; servo
    /// `i` (in the order configured) lags by a tenth of a period per index.
    Sweep {
        /// Steps.
        amplitude: f64,
        /// s.
        period_s: f64,
    },
}

/// The servos of an emulated bus.
#[derive(Debug, Clone)]
pub struct EmulatorConfig {
    /// Servo IDs and their starting shaft positions, steps (0..4096).
    pub servos: Vec<(u8, f64)>,
    /// Reply no earlier than the bytes would take at 1 Mbaud.
    pub wire_time: bool,
    /// Torque-off motion.
    pub hand: Hand,
    /// Faults by time.
    pub faults: Vec<Fault>,
    /// EEPROM contents to start with (homing offsets and position limits), as a calibrated
    /// arm keeps them.
    pub calibration: Option<Calibration>,
}

impl EmulatorConfig {
    /// An SO-101's six servos (IDs 1-6) near mid-range.
    pub fn so101() -> Self {
        Self {
            servos: (1..=6)
                .map(|id| (id, 2048.0 + 40.0 * f64::from(id)))
                .collect(),
            wire_time: true,
            hand: Hand::Still,
            faults: Vec::new(),
            calibration: None,
        }
    }
}

/// What one emulated servo saw.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ServoReport {
    /// ID.
    pub id: u8,
    /// Present_Position now, steps.
    pub present_position: i32,
    /// Goal_Position now, steps.
    pub goal_position: i32,
    /// Torque on.
    pub torque: bool,
    /// Goal positions written.
    pub goal_writes: u64,
    /// The largest change between consecutive goal writes while the torque stayed on, steps.
    pub max_goal_step: i32,
    /// Homing_Offset register, steps.
    pub homing_offset: i32,
}

/// What the emulated bus saw.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct EmulatorReport {
    /// Instruction packets received.
    pub instructions: u64,
    /// Status packets sent.
    pub replies: u64,
    /// Received packets with a bad checksum.
    pub bad_checksums: u64,
    /// Per servo.
    pub servos: Vec<ServoReport>,
}

struct Servo {
    id: u8,
    regs: [u8; 128],
    /// Shaft position, steps (continuous).
    actual: f64,
    start: f64,
    velocity: f64,
    staged: Option<(u8, Vec<u8>)>,
    /// When the hand's motion started, s (restarted by a homing: the person held the middle
    /// pose until the offset was set).
    hand_t0: f64,
    goal_writes: u64,
    last_goal: Option<i32>,
    max_goal_step: i32,
    index: usize,
}

impl Servo {
    fn new(id: u8, actual: f64, index: usize) -> Self {
        let mut s = Self {
            id,
            regs: [0; 128],
            actual,
            start: actual,
            velocity: 0.0,
            staged: None,
            hand_t0: 0.0,
            goal_writes: 0,
            last_goal: None,
            max_goal_step: 0,
            index,
        };
        let defaults = [
            (reg::FIRMWARE_MAJOR, 3),
            (reg::FIRMWARE_MINOR, 10),
            (reg::MODEL_NUMBER, reg::STS3215_MODEL),
            (reg::ID, i32::from(id)),
            (reg::RESPONSE_STATUS_LEVEL, 1),
            (reg::MIN_POSITION_LIMIT, 0),
            (reg::MAX_POSITION_LIMIT, 4095),
            (reg::MAX_TEMPERATURE_LIMIT, 70),
            (reg::MAX_VOLTAGE_LIMIT, 140),
            (reg::MIN_VOLTAGE_LIMIT, 40),
            (reg::MAX_TORQUE_LIMIT, 1000),
            (reg::P_COEFFICIENT, 32),
            (reg::TORQUE_LIMIT, 1000),
            (reg::LOCK, 1),
            (reg::PRESENT_VOLTAGE, 120),
            (reg::PRESENT_TEMPERATURE, 30),
        ];
        for (r, v) in defaults {
            s.set(r, v);
        }
        let present = s.present();
        s.set(reg::GOAL_POSITION, present);
        s.refresh_present();
        s
    }

    fn get(&self, r: Register) -> i32 {
        let a = usize::from(r.address);
        r.decode(&self.regs[a..a + usize::from(r.size)])
            .unwrap_or(0)
    }

    fn set(&mut self, r: Register, v: i32) {
        if let Ok(b) = r.encode(v) {
            let a = usize::from(r.address);
            self.regs[a..a + b.len()].copy_from_slice(&b);
        }
    }

    fn present(&self) -> i32 {
        let offset = f64::from(self.get(reg::HOMING_OFFSET));
        ((self.actual - offset).round() as i32).rem_euclid(reg::STS3215_RESOLUTION)
    }

    fn refresh_present(&mut self) {
        let p = self.present();
        self.set(reg::PRESENT_POSITION, p);
        let v = self.velocity.round().clamp(-32767.0, 32767.0) as i32;
        self.set(reg::PRESENT_VELOCITY, v);
        self.set(reg::MOVING, i32::from(v != 0));
    }

    fn torque(&self) -> bool {
        self.get(reg::TORQUE_ENABLE) != 0
    }

    /// Moves the shaft by `dt` seconds up to time `t` (s since start).
    fn step(&mut self, dt: f64, t: f64, hand: Hand) {
        if self.torque() {
            let lo = self.get(reg::MIN_POSITION_LIMIT);
            let hi = self.get(reg::MAX_POSITION_LIMIT).max(lo);
            let goal = self.get(reg::GOAL_POSITION).clamp(lo, hi);
            let target = f64::from(goal) + f64::from(self.get(reg::HOMING_OFFSET));
            // The shaft position in the goal's frame (present may wrap; the goal does not).
            let err = target - self.actual;
            let speed = match self.get(reg::GOAL_VELOCITY).unsigned_abs() {
                0 => DEFAULT_SPEED,
                v => f64::from(v),
            };
            let acc = f64::from(self.get(reg::ACCELERATION)) * 100.0;
            let mut v_want = err.signum() * speed.min(err.abs() / dt.max(1e-6));
            if acc > 0.0 {
                // Brake in time, and change speed by at most acc·dt.
                v_want = v_want.clamp(
                    -(2.0 * acc * err.abs()).sqrt(),
                    (2.0 * acc * err.abs()).sqrt(),
                );
                let dv = (v_want - self.velocity).clamp(-acc * dt, acc * dt);
                v_want = self.velocity + dv;
            }
            self.velocity = v_want;
            let moved = self.velocity * dt;
            self.actual += if moved.abs() > err.abs() { err } else { moved };
        } else {
            let before = self.actual;
            if let Hand::Sweep {
                amplitude,
                period_s,
            } = hand
            {
                // Servos lag each other by a tenth of a period. A homing restarts each from
                // where it stands, after the person has held it there for HAND_SETTLE_S (the
                // host reads the position and writes the offset meanwhile).
                let (lag, moving_s) = if self.hand_t0 > 0.0 {
                    (0.0, (t - self.hand_t0 - HAND_SETTLE_S).max(0.0))
                } else {
                    (0.1 * self.index as f64, t)
                };
                let phase = std::f64::consts::TAU * (moving_s / period_s - lag);
                self.actual = self.start + amplitude * phase.sin();
            }
            self.velocity = if dt > 0.0 {
                (self.actual - before) / dt
            } else {
                0.0
            };
        }
        self.refresh_present();
    }

    fn write(&mut self, address: u8, data: &[u8], t: f64) -> StatusError {
        let end = usize::from(address) + data.len();
        if end > self.regs.len() {
            return StatusError(StatusError::ANGLE);
        }
        // EEPROM is written only while unlocked; the servo acknowledges either way.
        let locked = self.get(reg::LOCK) != 0;
        for (k, b) in data.iter().enumerate() {
            let a = usize::from(address) + k;
            if a < 40 && locked {
                continue;
            }
            // Read-only registers (present values) are not writable.
            if (56..=70).contains(&a) {
                continue;
            }
            self.regs[a] = *b;
        }
        let offset_at = usize::from(reg::HOMING_OFFSET.address);
        if !locked && usize::from(address) <= offset_at && end > offset_at {
            // A homing: the hand starts its motion from here.
            self.hand_t0 = t;
            self.start = self.actual;
        }
        let goal_at = usize::from(reg::GOAL_POSITION.address);
        if usize::from(address) <= goal_at && end >= goal_at + 2 {
            let g = self.get(reg::GOAL_POSITION);
            self.goal_writes += 1;
            if self.torque() {
                if let Some(last) = self.last_goal {
                    self.max_goal_step = self.max_goal_step.max((g - last).abs());
                }
                self.last_goal = Some(g);
            }
        }
        if !self.torque() {
            self.last_goal = None;
            self.velocity = 0.0;
        }
        StatusError(0)
    }

    fn report(&self) -> ServoReport {
        ServoReport {
            id: self.id,
            present_position: self.present(),
            goal_position: self.get(reg::GOAL_POSITION),
            torque: self.torque(),
            goal_writes: self.goal_writes,
            max_goal_step: self.max_goal_step,
            homing_offset: self.get(reg::HOMING_OFFSET),
        }
    }
}

struct State {
    servos: Vec<Servo>,
    hand: Hand,
    faults: Vec<Fault>,
    wire_time: bool,
    start: Instant,
    last_step: f64,
    report: EmulatorReport,
}

impl State {
    fn advance(&mut self) -> f64 {
        let t = self.start.elapsed().as_secs_f64();
        let dt = (t - self.last_step).max(0.0);
        self.last_step = t;
        let faults = self.faults.clone();
        for s in &mut self.servos {
            let overloaded = faults.iter().any(|f| {
                f.id == s.id && f.kind == FaultKind::Overload && (f.from_s..f.until_s).contains(&t)
            });
            if overloaded && s.torque() {
                // Overload protection: the servo lets go.
                s.set(reg::TORQUE_ENABLE, 0);
                s.last_goal = None;
            }
            s.set(
                reg::STATUS,
                if overloaded {
                    i32::from(StatusError::OVERLOAD)
                } else {
                    0
                },
            );
            s.step(dt, t, self.hand);
        }
        t
    }

    fn fault(&self, id: u8, t: f64) -> Option<FaultKind> {
        self.faults
            .iter()
            .find(|f| f.id == id && (f.from_s..f.until_s).contains(&t))
            .map(|f| f.kind)
    }

    /// The replies to one instruction packet.
    fn handle(&mut self, p: &Packet) -> Vec<Vec<u8>> {
        let t = self.advance();
        self.report.instructions += 1;
        let Some(instr) = Instruction::from_code(p.code) else {
            return Vec::new();
        };
        let mut replies = Vec::new();
        let reply = |state: &Self, id: u8, params: &[u8]| -> Option<Vec<u8>> {
            let kind = state.fault(id, t);
            if kind == Some(FaultKind::Silent) {
                return None;
            }
            let servo = state.servos.iter().find(|s| s.id == id)?;
            let err = servo.get(reg::STATUS) as u8;
            let mut bytes = protocol::encode(id, err, params).ok()?;
            if kind == Some(FaultKind::Corrupt) {
                if let Some(last) = bytes.last_mut() {
                    *last ^= 0x5A;
                }
            }
            Some(bytes)
        };
        match instr {
            Instruction::SyncRead => {
                let [address, len, ids @ ..] = &p.params[..] else {
                    return replies;
                };
                for id in ids {
                    let data = self
                        .servos
                        .iter()
                        .find(|s| s.id == *id)
                        .and_then(|s| read_regs(s, *address, *len));
                    if let Some(d) = data {
                        replies.extend(reply(self, *id, &d));
                    }
                }
            }
            Instruction::SyncWrite => {
                let [address, len, rest @ ..] = &p.params[..] else {
                    return replies;
                };
                let len = usize::from(*len);
                for chunk in rest.chunks(len + 1) {
                    if chunk.len() != len + 1 || self.fault(chunk[0], t) == Some(FaultKind::Silent)
                    {
                        continue;
                    }
                    if let Some(s) = self.servos.iter_mut().find(|s| s.id == chunk[0]) {
                        s.write(*address, &chunk[1..], t);
                    }
                }
            }
            Instruction::Action => {
                for s in &mut self.servos {
                    if (p.id == BROADCAST_ID || p.id == s.id)
                        && self.faults.iter().all(|f| {
                            !(f.id == s.id
                                && f.kind == FaultKind::Silent
                                && (f.from_s..f.until_s).contains(&t))
                        })
                    {
                        if let Some((a, d)) = s.staged.take() {
                            s.write(a, &d, t);
                        }
                    }
                }
                if p.id != BROADCAST_ID {
                    replies.extend(reply(self, p.id, &[]));
                }
            }
            _ => {
                if p.id == BROADCAST_ID || self.fault(p.id, t) == Some(FaultKind::Silent) {
                    return replies;
                }
                let Some(s) = self.servos.iter_mut().find(|s| s.id == p.id) else {
                    return replies;
                };
                let data: Vec<u8> = match (instr, &p.params[..]) {
                    (Instruction::Ping, _) => Vec::new(),
                    (Instruction::Read, [address, len]) => match read_regs(s, *address, *len) {
                        Some(d) => d,
                        None => return replies,
                    },
                    (Instruction::Write, [address, data @ ..]) => {
                        s.write(*address, data, t);
                        s.refresh_present();
                        Vec::new()
                    }
                    (Instruction::RegWrite, [address, data @ ..]) => {
                        s.staged = Some((*address, data.to_vec()));
                        Vec::new()
                    }
                    _ => return replies,
                };
                replies.extend(reply(self, p.id, &data));
            }
        }
        self.report.replies += replies.len() as u64;
        replies
    }
}

fn read_regs(s: &Servo, address: u8, len: u8) -> Option<Vec<u8>> {
    let a = usize::from(address);
    s.regs.get(a..a + usize::from(len)).map(<[u8]>::to_vec)
}

/// An emulated servo bus on a pseudo-terminal.
pub struct Emulator {
    path: PathBuf,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    // The terminal's other end stays open, so the bus survives clients closing theirs.
    _slave: TTYPort,
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Emulator {
    /// Starts the bus; its port is [`Emulator::path`].
    pub fn start(config: EmulatorConfig) -> Result<Self, BusError> {
        let (mut master, slave) = TTYPort::pair().map_err(|e| BusError::Open {
            port: "a new pseudo-terminal".into(),
            why: e.to_string(),
        })?;
        let path = PathBuf::from(slave.name().ok_or_else(|| BusError::Open {
            port: "a new pseudo-terminal".into(),
            why: "it has no name".into(),
        })?);
        // `pair` takes no lock on the terminal, so a client opens it exclusively.
        master
            .set_timeout(Duration::from_millis(20))
            .map_err(|e| BusError::Io(e.to_string()))?;
        let mut servos: Vec<Servo> = config
            .servos
            .iter()
            .enumerate()
            .map(|(i, (id, at))| Servo::new(*id, *at, i))
            .collect();
        if let Some(cal) = &config.calibration {
            for (_, m) in &cal.motors {
                if let Some(s) = servos.iter_mut().find(|s| s.id == m.id) {
                    s.set(reg::HOMING_OFFSET, m.homing_offset);
                    s.set(reg::MIN_POSITION_LIMIT, m.range_min);
                    s.set(reg::MAX_POSITION_LIMIT, m.range_max);
                    let p = s.present();
                    s.set(reg::GOAL_POSITION, p);
                    s.refresh_present();
                }
            }
        }
        let state = Arc::new(Mutex::new(State {
            servos,
            hand: config.hand,
            faults: config.faults,
            wire_time: config.wire_time,
            start: Instant::now(),
            last_step: 0.0,
            report: EmulatorReport::default(),
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let state = state.clone();
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("servo-emulator".into())
                .spawn(move || serve(&mut master, &state, &stop))
                .map_err(|e| BusError::Io(e.to_string()))?
        };
        Ok(Self {
            path,
            state,
            stop,
            thread: Some(thread),
            _slave: slave,
        })
    }

    /// The port to open (`/dev/pts/N`).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What the bus saw so far.
    pub fn report(&self) -> EmulatorReport {
        let mut st = lock(&self.state);
        st.advance();
        let mut r = st.report.clone();
        r.servos = st.servos.iter().map(Servo::report).collect();
        r
    }

    /// Adds a fault, its times counted from now.
    pub fn inject(&self, kind: FaultKind, id: u8, duration_s: f64) {
        let mut st = lock(&self.state);
        let now = st.start.elapsed().as_secs_f64();
        st.faults.push(Fault {
            id,
            kind,
            from_s: now,
            until_s: now + duration_s,
        });
    }

    /// Ends every fault now.
    pub fn clear_faults(&self) {
        lock(&self.state).faults.clear();
    }

    /// Changes the torque-off motion.
    pub fn set_hand(&self, hand: Hand) {
        let mut st = lock(&self.state);
        st.advance();
        for s in &mut st.servos {
            s.start = s.actual;
        }
        st.hand = hand;
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(master: &mut TTYPort, state: &Mutex<State>, stop: &AtomicBool) {
    let mut rx: Vec<u8> = Vec::with_capacity(512);
    let mut buf = [0u8; 512];
    while !stop.load(Ordering::Relaxed) {
        match master.read(&mut buf) {
            Ok(n) => rx.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => continue,
            Err(_) => {
                // No client has the terminal open (EIO): wait for one.
                std::thread::sleep(Duration::from_millis(5));
                continue;
            }
        }
        let received = Instant::now();
        loop {
            match protocol::parse(&rx) {
                Parsed::Packet { packet, consumed } => {
                    rx.drain(..consumed);
                    let (replies, wire) = {
                        let mut st = lock(state);
                        let r = st.handle(&packet);
                        (r, st.wire_time)
                    };
                    if wire {
                        let bytes = consumed + replies.iter().map(Vec::len).sum::<usize>();
                        let due = received + Duration::from_micros(10 * bytes as u64);
                        // Modelling the line's byte time, not synchronisation.
                        while Instant::now() < due {
                            std::hint::spin_loop();
                        }
                    }
                    for r in replies {
                        let _ = master.write_all(&r);
                    }
                }
                Parsed::BadChecksum { consumed, .. } => {
                    rx.drain(..consumed);
                    lock(state).report.bad_checksums += 1;
                }
                Parsed::Garbage { consumed } => {
                    rx.drain(..consumed);
                }
                Parsed::Incomplete => break,
            }
        }
    }
}
