//! rmw_zenoh mode between two sessions in one process: keys, tokens, attachments.

use std::time::Duration;

use sinew_bus::{Bus, BusConfig, BusError, Qos, RosInterop};
use sinew_msgs::ros2::rmw_zenoh::{Attachment, EntityKind};
use sinew_msgs::{Header, JointState, Message, StringMsg, Time};
use zenoh::Wait;

const WAIT: Duration = Duration::from_secs(20);
const DOMAIN: u32 = 3;

fn pair(ros: RosInterop) -> (Bus, Bus) {
    let ep = format!(
        "tcp/127.0.0.1:{}",
        sinew_bus::free_loopback_port().expect("a free port")
    );
    let a = Bus::open(&BusConfig {
        listen: vec![ep.clone()],
        ros,
        ..BusConfig::default()
    })
    .expect("listening session");
    let b = Bus::open(&BusConfig {
        connect: vec![ep],
        ros,
        ..BusConfig::default()
    })
    .expect("connecting session");
    (a, b)
}

fn rmw() -> RosInterop {
    RosInterop::RmwZenoh { domain_id: DOMAIN }
}

fn state(i: u32) -> JointState {
    JointState {
        header: Header::new(Time { sec: 1, nanosec: i }, "base"),
        name: vec!["j".into()],
        position: vec![f64::from(i)],
        ..Default::default()
    }
}

#[test]
fn typed_traffic_goes_on_rmw_keys_with_tokens_and_attachments() {
    let (a, b) = pair(rmw());
    let key = "rmwtest/joint_states";
    let graph = a.ros_graph(DOMAIN).expect("graph");
    let sub = b.subscribe::<JointState>(key, 8).expect("subscriber");
    let publisher = a
        .publisher_with::<JointState>(
            key,
            Qos {
                block_when_congested: true,
                ..Qos::default()
            },
        )
        .expect("publisher");
    assert_eq!(
        publisher.wire_key(),
        "3/rmwtest/joint_states/sensor_msgs::msg::dds_::JointState_/RIHS01_a13ee3a330e346c9d87b5aa18d24e11690752bd33a0350f11c5882bc9179260e"
    );
    assert!(publisher.wait_for_subscribers(WAIT), "subscriber matched");

    // A bridge-style publisher on the same key does not match the rmw subscriber, although
    // its declaration has reached this session.
    let bridge_key_pub = a
        .session()
        .declare_publisher(key)
        .wait()
        .expect("plain publisher");
    let matched = bridge_key_pub.matching_status().wait().expect("status");
    assert!(!matched.matching());

    // Both nodes, the publisher and the subscription are in the graph.
    let both_nodes_pub_and_sub = |es: &[sinew_msgs::ros2::rmw_zenoh::Entity]| {
        let count = |k: EntityKind| es.iter().filter(|e| e.kind == k).count();
        count(EntityKind::Node) == 2
            && es.iter().any(|e| {
                e.kind == EntityKind::Publisher
                    && e.topic.as_ref().is_some_and(|t| {
                        t.name == "/rmwtest/joint_states"
                            && t.dds_type == "sensor_msgs::msg::dds_::JointState_"
                            && t.qos.to_keyexpr() == "::2,:,:,:,,"
                    })
            })
            && es.iter().any(|e| {
                e.kind == EntityKind::Subscription
                    && e.topic.as_ref().is_some_and(|t| {
                        t.name == "/rmwtest/joint_states" && t.qos.to_keyexpr() == "::,8:,:,:,,"
                    })
            })
    };
    assert!(
        graph.wait_until(WAIT, both_nodes_pub_and_sub),
        "{:#?}",
        graph.entities()
    );
    let pub_entity = graph
        .entities()
        .into_iter()
        .find(|e| e.kind == EntityKind::Publisher)
        .expect("publisher entity");
    assert!(a
        .ros_node_name()
        .is_some_and(|n| n == pub_entity.node_name && n.starts_with("sinew_")));

    for i in 0..3 {
        publisher.put(&state(i)).expect("put");
    }
    let before = Time::now().as_nanos();
    for i in 0..3u32 {
        let r = sub.recv_timeout(WAIT).expect("message");
        assert_eq!(r.msg, state(i));
        assert_eq!(r.key, key, "the key is the topic, as in bridge mode");
        let att = r.attachment.expect("attachment");
        assert_eq!(att.sequence_number, i64::from(i) + 1);
        assert_eq!(att.source_gid, pub_entity.gid());
        assert!((att.source_timestamp - before).abs() < 60_000_000_000);
    }

    // The publisher's token goes with it.
    drop(publisher);
    assert!(
        graph.wait_until(WAIT, |es| !es
            .iter()
            .any(|e| e.kind == EntityKind::Publisher)),
        "publisher token undeclared"
    );
    drop(sub);
    assert!(graph.wait_until(WAIT, |es| !es
        .iter()
        .any(|e| e.kind == EntityKind::Subscription)));
    a.close();
    b.close();
}

#[test]
fn raw_traffic_maps_keys_and_infers_types() {
    let (a, b) = pair(rmw());
    let raw = b.subscribe_raw("rmwraw/**", 16).expect("raw subscriber");
    // Wait for the subscriber through a typed publisher's matching status.
    let probe = a
        .publisher::<StringMsg>("rmwraw/instruction")
        .expect("probe");
    assert!(probe.wait_for_subscribers(WAIT));
    let payload = StringMsg {
        data: "pick".into(),
    }
    .to_cdr();
    a.put_raw("rmwraw/instruction", payload.clone())
        .expect("put_raw infers std_msgs/String from the key");
    let s = raw.recv_timeout(WAIT).expect("sample");
    assert_eq!(s.key, "rmwraw/instruction");
    assert_eq!(s.ros_type.as_deref(), Some("std_msgs/msg/String"));
    assert_eq!(&s.payload[..], &payload[..]);
    let att: Attachment = s.attachment.expect("put_raw attaches");
    assert_eq!(att.sequence_number, 1);

    match a.put_raw("rmwraw/mystery", vec![0, 1, 0, 0]) {
        Err(BusError::Ros(_)) => {}
        other => panic!("a key of unknown type needs put_raw_as: {other:?}"),
    }
    a.put_raw_as("rmwraw/mystery", StringMsg::DEF, payload)
        .expect("put_raw_as");
    let s = raw.recv_timeout(WAIT).expect("sample");
    assert_eq!(s.key, "rmwraw/mystery");
    assert_eq!(s.attachment.map(|a| a.sequence_number), Some(2));
    a.close();
    b.close();
}

#[test]
fn bridge_mode_declares_no_tokens_and_attaches_nothing() {
    let (a, b) = pair(RosInterop::Bridge);
    let graph = b.ros_graph(0).expect("graph");
    let sub = b
        .subscribe::<JointState>("brtest/joint_states", 4)
        .expect("sub");
    let p = a
        .publisher::<JointState>("brtest/joint_states")
        .expect("pub");
    assert_eq!(p.wire_key(), "brtest/joint_states");
    assert!(p.wait_for_subscribers(WAIT));
    p.put(&state(1)).expect("put");
    let r = sub.recv_timeout(WAIT).expect("message");
    assert_eq!(r.key, "brtest/joint_states");
    assert!(r.attachment.is_none());
    assert!(graph.entities().is_empty());
    assert!(a.ros_node_name().is_none());
    a.close();
    b.close();
}
