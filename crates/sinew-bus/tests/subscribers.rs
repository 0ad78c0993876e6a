//! Subscriber behaviour between two zenoh sessions on loopback TCP in one process.

use std::time::Duration;

use sinew_bus::{Bus, BusConfig, Qos};
use sinew_msgs::{Header, JointState, Message, Time};

fn free_port() -> u16 {
    sinew_bus::free_loopback_port().expect("a free loopback port")
}

/// Two sessions joined over loopback TCP: (publisher side, subscriber side).
fn pair() -> (Bus, Bus) {
    let ep = format!("tcp/127.0.0.1:{}", free_port());
    let a = Bus::open(&BusConfig {
        listen: vec![ep.clone()],
        ..BusConfig::default()
    })
    .expect("listening session");
    let b = Bus::open(&BusConfig {
        connect: vec![ep],
        ..BusConfig::default()
    })
    .expect("connecting session");
    (a, b)
}

fn state(seq: u32) -> JointState {
    JointState {
        header: Header::new(
            Time {
                sec: 0,
                nanosec: seq,
            },
            "base",
        ),
        name: vec!["j".into()],
        position: vec![seq as f64],
        ..Default::default()
    }
}

/// A publisher that waits instead of dropping, so every message is delivered.
fn reliable_publisher(bus: &Bus, key: &str) -> sinew_bus::Publisher<JointState> {
    let qos = Qos {
        block_when_congested: true,
        ..Qos::default()
    };
    bus.publisher_with::<JointState>(key, qos)
        .expect("publisher")
}

const WAIT: Duration = Duration::from_secs(20);

#[test]
fn latest_value_subscriber_never_hands_out_stale_frames() {
    let (a, b) = pair();
    let key = "test_latest/joint_states";
    let latest = b.latest::<JointState>(key).expect("subscriber");
    let publisher = reliable_publisher(&a, key);
    assert!(publisher.wait_for_subscribers(WAIT));

    const N: u32 = 3000;
    let writer = std::thread::spawn(move || {
        for seq in 1..=N {
            publisher.put(&state(seq)).expect("put");
        }
        publisher
    });
    // A reader that only starts once the writer has sent everything: most frames arrive while
    // nobody reads, so they must be replaced, never queued.
    let _publisher = writer.join().expect("writer thread");
    let mut last = 0u32;
    let mut taken = 0u64;
    while last < N {
        let got = latest
            .wait_new(WAIT)
            .expect("a fresh message before the timeout");
        let seq = got.msg.header.stamp.nanosec;
        assert!(seq > last, "stale or repeated frame: {seq} after {last}");
        last = seq;
        taken += 1;
    }
    assert!(
        latest.take().is_none(),
        "nothing fresh after the last frame was taken"
    );
    assert_eq!(latest.peek().map(|r| r.msg), Some(state(N)));
    let st = latest.stats();
    assert_eq!(st.received, N as u64);
    assert_eq!(st.malformed, 0);
    assert_eq!(
        taken + st.dropped,
        N as u64,
        "every frame is either taken or counted as dropped"
    );
    assert!(
        st.dropped > 0,
        "frames that arrived while nobody read were replaced"
    );
    a.close();
    b.close();
}

#[test]
fn malformed_payloads_on_a_live_key_are_counted_and_named() {
    let (a, b) = pair();
    let key = "test_malformed/joint_states";
    let latest = b.latest::<JointState>(key).expect("subscriber");
    let queue = b.subscribe::<JointState>(key, 16).expect("subscriber");
    let publisher = a.publisher::<JointState>(key).expect("publisher");
    assert!(publisher.wait_for_subscribers(WAIT));

    let good = state(7).to_cdr();
    let mut huge_count = good.clone();
    // The name sequence count sits right after the header (stamp 8 bytes + "base\0" padded).
    huge_count[4 + 8 + 4 + 8..4 + 8 + 4 + 8 + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    a.put_raw(key, good[..good.len() - 3].to_vec())
        .expect("put");
    a.put_raw(key, huge_count).expect("put");
    a.put_raw(key, vec![0xde, 0xad]).expect("put");
    publisher.put(&state(8)).expect("put");

    let got = queue
        .recv_timeout(WAIT)
        .expect("the valid message still arrives");
    assert_eq!(got.msg, state(8));
    assert_eq!(latest.wait_new(WAIT).map(|r| r.msg), Some(state(8)));
    for st in [latest.stats(), queue.stats()] {
        assert_eq!(st.received, 4);
        assert_eq!(st.malformed, 3);
        let err = st.last_error.expect("an error is kept");
        assert!(err.contains(key), "{err}");
        assert!(err.contains("sensor_msgs/msg/JointState"), "{err}");
        assert!(err.contains("encapsulation"), "{err}");
    }
    a.close();
    b.close();
}

#[test]
fn a_full_queue_drops_and_counts() {
    let (a, b) = pair();
    let key = "test_queue/joint_states";
    let queue = b.subscribe::<JointState>(key, 4).expect("subscriber");
    let latest = b.latest::<JointState>(key).expect("subscriber");
    let publisher = reliable_publisher(&a, key);
    assert!(publisher.wait_for_subscribers(WAIT));
    for seq in 1..=10 {
        publisher.put(&state(seq)).expect("put");
    }
    // The latest-value subscriber tells us when the last message has been delivered.
    let mut seen = 0;
    while seen < 10 {
        seen = latest
            .wait_new(WAIT)
            .expect("delivery")
            .msg
            .header
            .stamp
            .nanosec;
    }
    let got: Vec<u32> = std::iter::from_fn(|| queue.try_recv())
        .map(|r| r.msg.header.stamp.nanosec)
        .collect();
    assert_eq!(got, vec![1, 2, 3, 4], "the oldest are kept, in order");
    assert_eq!(queue.stats().dropped, 6);
    a.close();
    b.close();
}

#[test]
fn flush_returns_once_the_peer_has_everything_published_before_it() {
    let (a, b) = pair();
    let key = "test_flush/joint_states";
    let queue = b.subscribe::<JointState>(key, 1000).expect("subscriber");
    let publisher = reliable_publisher(&a, key);
    assert!(publisher.wait_for_subscribers(WAIT));
    for seq in 1..=300 {
        publisher.put(&state(seq)).expect("put");
    }
    assert_eq!(a.flush(WAIT), 1, "the one peer confirms");
    // Confirmed means delivered: everything is already queued, no waiting needed.
    let got: Vec<u32> = std::iter::from_fn(|| queue.try_recv())
        .map(|r| r.msg.header.stamp.nanosec)
        .collect();
    assert_eq!(got, (1..=300).collect::<Vec<u32>>());
    a.close();
    // With no peer left, there is nobody to confirm and flush does not wait.
    assert_eq!(b.flush(WAIT), 0);
    b.close();
}

#[test]
fn bad_endpoints_and_config_files_are_named() {
    let err = Bus::open(&BusConfig {
        connect: vec!["localhost".into()],
        ..BusConfig::default()
    })
    .expect_err("must fail");
    assert!(err.to_string().contains("--connect localhost"), "{err}");
    let err = Bus::open(&BusConfig {
        config_file: Some("/nonexistent/zenoh.json5".into()),
        ..BusConfig::default()
    })
    .expect_err("must fail");
    assert!(
        err.to_string().contains("/nonexistent/zenoh.json5"),
        "{err}"
    );
}
