//! The driver against the emulated bus: every instruction, faults counted and recovered from.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use sinew_feetech::bus::{BusConfig, BusError, FeetechBus};
use sinew_feetech::emulator::{Emulator, EmulatorConfig, FaultKind, Hand};
use sinew_feetech::protocol::BROADCAST_ID;
use sinew_feetech::registers as reg;

fn bus(emu: &Emulator) -> FeetechBus {
    FeetechBus::open(emu.path().to_str().unwrap(), BusConfig::default()).unwrap()
}

/// Polls `f` until it holds, failing after `limit`.
fn eventually(limit: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < limit,
            "condition not met within {limit:?}"
        );
        std::thread::yield_now();
    }
}

#[test]
fn every_instruction_works_against_the_emulator() {
    let emu = Emulator::start(EmulatorConfig::so101()).unwrap();
    let mut b = bus(&emu);
    for id in 1..=6 {
        assert!(b.ping(id).unwrap().is_ok());
        assert_eq!(b.read(id, reg::MODEL_NUMBER).unwrap(), reg::STS3215_MODEL);
    }
    assert!(matches!(
        b.ping(9),
        Err(BusError::NoReply {
            id: 9,
            attempts: 3,
            ..
        })
    ));

    // EEPROM is locked until Lock = 0.
    b.write(2, reg::HOMING_OFFSET, -300).unwrap();
    assert_eq!(b.read(2, reg::HOMING_OFFSET).unwrap(), 0);
    b.write(2, reg::LOCK, 0).unwrap();
    b.write(2, reg::HOMING_OFFSET, -300).unwrap();
    assert_eq!(b.read(2, reg::HOMING_OFFSET).unwrap(), -300);
    // Present = actual − offset: servo 2 started at 2128.
    assert_eq!(b.read(2, reg::PRESENT_POSITION).unwrap(), 2128 + 300);

    // SYNC_WRITE goals with torque on; the servos move there at bounded speed.
    let on: Vec<(u8, i32)> = (1..=6).map(|id| (id, 1)).collect();
    let start: Vec<i32> = b
        .sync_read_register(reg::PRESENT_POSITION, &[1, 3, 4])
        .unwrap()
        .into_iter()
        .map(Result::unwrap)
        .collect();
    b.sync_write(
        reg::GOAL_POSITION,
        &[(1, start[0] + 200), (3, start[1] - 100), (4, start[2])],
    )
    .unwrap();
    b.sync_write(reg::TORQUE_ENABLE, &on).unwrap();
    eventually(Duration::from_secs(5), || {
        let now: Vec<i32> = b
            .sync_read_register(reg::PRESENT_POSITION, &[1, 3])
            .unwrap()
            .into_iter()
            .map(Result::unwrap)
            .collect();
        now == vec![start[0] + 200, start[1] - 100]
    });

    // REG_WRITE stages; ACTION applies.
    b.reg_write(4, reg::GOAL_POSITION, start[2] + 50).unwrap();
    assert_eq!(b.read(4, reg::GOAL_POSITION).unwrap(), start[2]);
    b.action(BROADCAST_ID).unwrap();
    assert_eq!(b.read(4, reg::GOAL_POSITION).unwrap(), start[2] + 50);
    let report = emu.report();
    assert!(report.servos.iter().all(|s| s.torque));
    assert_eq!(b.stats().failures, 1, "only the ping of servo 9 failed");
}

#[test]
fn faults_are_counted_and_the_bus_recovers() {
    let emu = Emulator::start(EmulatorConfig::so101()).unwrap();
    let mut b = bus(&emu);
    let ids = [1, 2, 3, 4, 5, 6];

    emu.inject(FaultKind::Silent, 3, 3600.0);
    let r = b.sync_read(reg::PRESENT_POSITION.address, 2, &ids).unwrap();
    assert!(r[2].is_err(), "servo 3 is silent");
    assert!(r.iter().enumerate().all(|(k, x)| k == 2 || x.is_ok()));
    assert!(b.stats().servos[&3].timeouts >= 1);

    emu.clear_faults();
    emu.inject(FaultKind::Corrupt, 5, 3600.0);
    let r = b.sync_read(reg::PRESENT_POSITION.address, 2, &ids).unwrap();
    assert!(
        matches!(
            &r[4],
            Err(BusError::NoReply {
                why: "bad checksum",
                ..
            })
        ),
        "{:?}",
        r[4]
    );
    assert!(
        b.stats().servos[&5].bad_checksums >= 3,
        "each attempt's reply was corrupt"
    );

    emu.clear_faults();
    emu.inject(FaultKind::Overload, 6, 3600.0);
    let r = b.sync_read(reg::PRESENT_POSITION.address, 2, &ids).unwrap();
    let (_, status) = r[5].as_ref().unwrap();
    assert!(status.overload());
    assert_eq!(b.stats().servos[&6].overloads, 1);

    emu.clear_faults();
    let r = b.sync_read(reg::PRESENT_POSITION.address, 2, &ids).unwrap();
    assert!(r.iter().all(|x| x.as_ref().is_ok_and(|(_, s)| s.is_ok())));
}

#[test]
fn a_hand_moves_servos_whose_torque_is_off() {
    let mut cfg = EmulatorConfig::so101();
    cfg.hand = Hand::Sweep {
        amplitude: 500.0,
        period_s: 0.5,
    };
    let emu = Emulator::start(cfg).unwrap();
    let mut b = bus(&emu);
    let first = b.read(1, reg::PRESENT_POSITION).unwrap();
    let (mut lo, mut hi) = (first, first);
    eventually(Duration::from_secs(10), || {
        let p = b.read(1, reg::PRESENT_POSITION).unwrap();
        lo = lo.min(p);
        hi = hi.max(p);
        hi - lo > 900
    });
    assert!(hi - lo <= 1001, "the sweep is ±500 steps: {lo}..{hi}");
}
