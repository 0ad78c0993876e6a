//! ROS 2 identities of Sinew's types against independent references: RIHS01 hashes and the
//! hashed JSON from rosbags (fixtures/rihs01.py, which also checks them against hashes ROS 2
//! published), GIDs from the `xxhash` Python package, and the key and liveliness-token examples
//! of ros2/rmw_zenoh docs/design.md.

use serde_json::Value;
use sinew_msgs::ros2::rmw_zenoh::{
    gid_of_keyexpr, topic_key, Entity, EntityKind, EntityTopic, Qos, TopicKey,
};
use sinew_msgs::ros2::{type_hash, TypeDescription};
use sinew_msgs::{
    CompressedImage, Duration, Header, Image, JointState, JointTrajectory, JointTrajectoryPoint,
    Message, MessageKind, MsgDef, PolicyReply, PolicyRequest, StringMsg, Time,
};

const STRING_HASH: &str = "RIHS01_df668c740482bbd48fb39d76a70dfd4bd59db1288021743503259e948f6b1a18";

fn fixture() -> Value {
    serde_json::from_str(include_str!("fixtures/rihs01.json")).expect("fixture is JSON")
}

fn defs() -> Vec<&'static MsgDef> {
    vec![
        Time::DEF,
        Duration::DEF,
        StringMsg::DEF,
        Header::DEF,
        Image::DEF,
        CompressedImage::DEF,
        JointState::DEF,
        JointTrajectoryPoint::DEF,
        JointTrajectory::DEF,
        PolicyRequest::DEF,
        PolicyReply::DEF,
    ]
}

#[test]
fn type_hashes_match_rosbags_and_ros2() {
    let f = fixture();
    let types = f["types"].as_array().expect("types");
    assert_eq!(types.len(), defs().len());
    for def in defs() {
        let case = types
            .iter()
            .find(|t| t["type_name"] == def.name)
            .unwrap_or_else(|| panic!("{} is in the fixture", def.name));
        let d = TypeDescription::of(def).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            d.hashed_json(),
            case["hashed_json"].as_str().expect("json"),
            "{}: hashed text",
            def.name
        );
        assert_eq!(
            type_hash(def).expect("hash").to_string(),
            case["rihs01"].as_str().expect("hash"),
            "{}",
            def.name
        );
        assert_eq!(
            def.dds_type_name(),
            case["dds_type_name"].as_str().expect("dds")
        );
    }
    // Every type Sinew puts on the bus is covered, and those ROS 2 published are among them.
    for kind in MessageKind::ALL {
        let case = types
            .iter()
            .find(|t| t["type_name"] == kind.def().name)
            .expect("every kind");
        assert_eq!(case["published_by_ros2"], true, "{kind}");
    }
}

#[test]
fn gids_match_xxhash() {
    for g in fixture()["gids"].as_array().expect("gids") {
        let token = g["token"].as_str().expect("token");
        let hex: String = gid_of_keyexpr(token)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(hex, g["gid_hex"].as_str().expect("gid"), "{token}");
        let e = Entity::parse(token).expect("a design.md token parses");
        assert_eq!(e.gid(), gid_of_keyexpr(token));
    }
}

/// The key examples of docs/design.md ("Topic and Service name mapping").
#[test]
fn data_keys_match_the_design_document() {
    assert_eq!(
        topic_key(0, "/chatter", "std_msgs::msg::dds_::String_", STRING_HASH),
        format!("0/chatter/std_msgs::msg::dds_::String_/{STRING_HASH}")
    );
    assert_eq!(
        topic_key(
            0,
            "/robot1/chatter",
            &StringMsg::DEF.dds_type_name(),
            &type_hash(StringMsg::DEF).expect("hash").to_string()
        ),
        format!("0/robot1/chatter/std_msgs::msg::dds_::String_/{STRING_HASH}")
    );
    let srv = "2/add_two_ints/example_interfaces::srv::dds_::AddTwoInts_/RIHS01_e118de6bf5eeb66a2491b5bda11202e7b68f198d6f67922cf30364858239c81a";
    let k = TopicKey::parse(srv).expect("parses");
    assert_eq!(k.domain_id, 2);
    assert_eq!(k.topic, "/add_two_ints");
    assert_eq!(
        k.ros_type_name().as_deref(),
        Some("example_interfaces/srv/AddTwoInts")
    );
    assert_eq!(k.key(), srv);
}

/// The liveliness-token examples of docs/design.md ("Graph Cache"), parsed and rebuilt.
#[test]
fn liveliness_tokens_match_the_design_document() {
    let node = "@ros2_lv/2/aac3178e146ba6f1fc6e6a4085e77f21/0/0/NN/%/%/listener";
    let e = Entity::parse(node).expect("node token");
    assert_eq!(
        e,
        Entity {
            domain_id: 2,
            zid: "aac3178e146ba6f1fc6e6a4085e77f21".into(),
            node_id: "0".into(),
            entity_id: "0".into(),
            kind: EntityKind::Node,
            enclave: "/".into(),
            namespace: "/".into(),
            node_name: "listener".into(),
            topic: None,
        }
    );
    assert_eq!(e.keyexpr(), node);

    let publisher = format!(
        "@ros2_lv/2/8b20917502ee955ac4476e0266340d5c/0/10/MP/%/%/talker/%chatter/std_msgs::msg::dds_::String_/{STRING_HASH}/::,7:,:,:,,"
    );
    let p = Entity {
        domain_id: 2,
        zid: "8b20917502ee955ac4476e0266340d5c".into(),
        node_id: "0".into(),
        entity_id: "10".into(),
        kind: EntityKind::Publisher,
        enclave: "/".into(),
        namespace: "/".into(),
        node_name: "talker".into(),
        topic: Some(EntityTopic {
            name: "/chatter".into(),
            dds_type: StringMsg::DEF.dds_type_name(),
            type_hash: type_hash(StringMsg::DEF).expect("hash").to_string(),
            qos: Qos::keep_last(7),
        }),
    };
    assert_eq!(p.keyexpr(), publisher);
    assert_eq!(Entity::parse(&publisher), Ok(p.clone()));
    assert_eq!(
        p.topic_key().as_deref(),
        Some(format!("2/chatter/std_msgs::msg::dds_::String_/{STRING_HASH}").as_str())
    );

    let sub = format!(
        "@ros2_lv/2/aac3178e146ba6f1fc6e6a4085e77f21/0/10/MS/%/%/listener/%chatter/std_msgs::msg::dds_::String_/{STRING_HASH}/::,10:,:,:,,"
    );
    let s = Entity::parse(&sub).expect("subscription token");
    assert_eq!(s.kind, EntityKind::Subscription);
    assert_eq!(s.topic.as_ref().map(|t| t.qos), Some(Qos::keep_last(10)));
    assert_eq!(s.keyexpr(), sub);

    for srv in [
        "@ros2_lv/2/f9980ee0495eaafb3e38f0d19e2eae12/0/10/SS/%/%/add_two_ints_server/%add_two_ints/example_interfaces::srv::dds_::AddTwoInts_/RIHS01_e118de6bf5eeb66a2491b5bda11202e7b68f198d6f67922cf30364858239c81a/::,10:,:,:,,",
        "@ros2_lv/2/e1dc8d1b45ae8717fce78689cc655685/0/10/SC/%/%/add_two_ints_client/%add_two_ints/example_interfaces::srv::dds_::AddTwoInts_/RIHS01_e118de6bf5eeb66a2491b5bda11202e7b68f198d6f67922cf30364858239c81a/::,10:,:,:,,",
    ] {
        let e = Entity::parse(srv).expect("service token");
        assert_eq!(e.keyexpr(), srv);
        assert_eq!(
            e.topic.as_ref().map(|t| t.name.as_str()),
            Some("/add_two_ints")
        );
    }
}

#[test]
fn malformed_tokens_are_refused() {
    for bad in [
        "",
        "@ros2_lv/0/z/0/0/NN/%/%",
        "@ros2_lv/0/z/0/0/XX/%/%/n",
        "@other/0/z/0/0/NN/%/%/n",
        "@ros2_lv/x/z/0/0/NN/%/%/n",
        "@ros2_lv/0/z/0/0/NN/%/%/n/extra",
        "@ros2_lv/0/z/0/1/MP/%/%/n/%t/T_/H",
        "@ros2_lv/0/z/0/1/MP/%/%/n/%t/T_/H/not-qos",
        "@ros2_lv/0/z//1/MP/%/%/n/%t/T_/H/::,:,:,:,,",
    ] {
        assert!(Entity::parse(bad).is_err(), "{bad:?}");
    }
}

mod never_panic {
    use proptest::prelude::*;
    use sinew_msgs::ros2::rmw_zenoh::{Attachment, Entity, Qos, TopicKey};

    proptest! {
        #[test]
        fn attachments(bytes in proptest::collection::vec(any::<u8>(), 0..96)) {
            let _ = Attachment::parse(&bytes);
        }

        #[test]
        fn keys_tokens_and_qos(s in "[@a-z0-9_/%:,*]{0,120}") {
            let _ = TopicKey::parse(&s);
            let _ = Qos::parse(&s);
            if let Ok(e) = Entity::parse(&s) {
                // Whatever parses is rebuilt to a token that parses to the same entity.
                prop_assert_eq!(Entity::parse(&e.keyexpr()), Ok(e));
            }
        }

        #[test]
        fn attachments_round_trip(seq in any::<i64>(), ts in any::<i64>(), gid in any::<[u8; 16]>()) {
            let a = Attachment { sequence_number: seq, source_timestamp: ts, source_gid: gid };
            prop_assert_eq!(Attachment::parse(&a.to_bytes()), Ok(a));
        }
    }
}
