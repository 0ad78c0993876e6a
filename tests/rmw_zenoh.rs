//! End to end: `sinew --ros rmw-zenoh` against rmw_zenoh's wire format, with no ROS 2 and no
//! Python at test time.
//!
//! tests/fixtures/rmw_zenoh_peer.json is what tests/fixtures/rmw_zenoh_peer.py (a zenoh peer
//! written from ros2/rmw_zenoh docs/design.md, with rosbags' CDR and the xxhash package's
//! XXH3) published: keys, liveliness tokens, payloads and attachments. Here a plain zenoh
//! session replays it byte for byte to `sinew topics echo` and `topics list`; the last test
//! checks what a Sinew publisher puts on the wire, read by a plain zenoh subscriber.

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sinew_bus::{Bus, BusConfig};
use sinew_msgs::ros2::rmw_zenoh::{gid_of_keyexpr, EntityKind};
use sinew_msgs::{Message, StringMsg};
use zenoh::sample::SampleKind;
use zenoh::Wait;

const WAIT: Duration = Duration::from_secs(30);
const STRING_HASH: &str = "RIHS01_df668c740482bbd48fb39d76a70dfd4bd59db1288021743503259e948f6b1a18";

fn fixture() -> Value {
    serde_json::from_str(include_str!("fixtures/rmw_zenoh_peer.json")).expect("fixture is JSON")
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

fn sinew(args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_sinew"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sinew starts")
}

/// `sinew --ros rmw-zenoh --connect EP topics echo KEY --count N`.
fn rmw_echo(ep: &str, key: &str, count: &str) -> std::process::Child {
    sinew(&[
        "--ros",
        "rmw-zenoh",
        "--connect",
        ep,
        "topics",
        "echo",
        key,
        "--count",
        count,
    ])
}

/// Waits for `child` to exit, killing it after `WAIT`; returns (success, stdout, stderr).
fn finish(mut child: Child) -> (bool, String, String) {
    let deadline = Instant::now() + WAIT;
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break Some(s);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20)); // polling the exit status
    };
    let mut out = String::new();
    let mut err = String::new();
    if let Some(mut o) = child.stdout.take() {
        o.read_to_string(&mut out).expect("stdout");
    }
    if let Some(mut e) = child.stderr.take() {
        e.read_to_string(&mut err).expect("stderr");
    }
    (status.is_some_and(|s| s.success()), out, err)
}

/// A session listening on a free loopback port (bridge mode: a plain zenoh session for what
/// this test sends and reads), and its endpoint.
fn listener() -> (Bus, String) {
    let ep = format!(
        "tcp/127.0.0.1:{}",
        sinew_bus::free_loopback_port().expect("a free port")
    );
    let bus = Bus::open(&BusConfig {
        listen: vec![ep.clone()],
        ..BusConfig::default()
    })
    .expect("bus");
    (bus, ep)
}

/// The Python peer's node and publisher tokens, declared on `bus`.
fn declare_peer_tokens(bus: &Bus, f: &Value) -> Vec<zenoh::liveliness::LivelinessToken> {
    let mut keys = vec![f["node_token"].as_str().expect("node token").to_owned()];
    for p in f["publishers"].as_array().expect("publishers") {
        keys.push(p["token"].as_str().expect("token").to_owned());
    }
    keys.into_iter()
        .map(|k| {
            bus.session()
                .liveliness()
                .declare_token(k)
                .wait()
                .expect("token")
        })
        .collect()
}

/// Waits until a subscriber matches `publisher` (declarations travel asynchronously).
fn wait_matched(publisher: &zenoh::pubsub::Publisher<'_>) -> bool {
    let listener = publisher.matching_listener().wait().expect("listener");
    let deadline = Instant::now() + WAIT;
    if publisher
        .matching_status()
        .wait()
        .is_ok_and(|s| s.matching())
    {
        return true;
    }
    while let Ok(Some(s)) = listener.recv_deadline(deadline) {
        if s.matching() {
            return true;
        }
    }
    false
}

/// Puts the fixture's samples of `keys` on the wire exactly as the Python peer did.
fn replay(bus: &Bus, f: &Value, keys: &[&str]) {
    let publishers: Vec<(String, zenoh::pubsub::Publisher<'static>)> = keys
        .iter()
        .map(|k| {
            let p = bus
                .session()
                .declare_publisher(k.to_string())
                .wait()
                .expect("publisher");
            assert!(wait_matched(&p), "sinew subscribed to {k}");
            (k.to_string(), p)
        })
        .collect();
    for s in f["samples"].as_array().expect("samples") {
        let key = s["key"].as_str().expect("key");
        let Some((_, p)) = publishers.iter().find(|(k, _)| k == key) else {
            continue;
        };
        p.put(hex(s["payload_hex"].as_str().expect("payload")))
            .attachment(hex(s["attachment_hex"].as_str().expect("attachment")))
            .wait()
            .expect("put");
    }
}

fn lines(out: &str) -> Vec<Value> {
    out.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect()
}

#[test]
fn echo_prints_what_a_python_rmw_zenoh_peer_published() {
    let f = fixture();
    let (bus, ep) = listener();
    let _tokens = declare_peer_tokens(&bus, &f);
    let samples = f["samples"].as_array().expect("samples");
    let keys: Vec<&str> = f["publishers"]
        .as_array()
        .expect("publishers")
        .iter()
        .map(|p| p["key"].as_str().expect("key"))
        .collect();

    // Every topic at once: each line names its topic; types come from the keys.
    let count = samples.len().to_string();
    let child = rmw_echo(&ep, "**", &count);
    replay(&bus, &f, &keys);
    let (ok, out, err) = finish(child);
    assert!(ok, "echo failed: {err}");
    let want: Vec<Value> = samples
        .iter()
        .map(|s| {
            let topic = s["key"]
                .as_str()
                .expect("key")
                .split('/')
                .collect::<Vec<_>>();
            let topic = topic[1..topic.len() - 2].join("/");
            json!({"key": topic, "msg": s["echo"]})
        })
        .collect();
    assert_eq!(lines(&out), want, "stderr: {err}");

    // One topic by its ROS name: a subscription token announces the subscriber.
    let graph = bus.ros_graph(0).expect("graph");
    let joint_states: Vec<&Value> = samples
        .iter()
        .filter(|s| s["type"] == "sensor_msgs/msg/JointState")
        .collect();
    let count = joint_states.len().to_string();
    let child = rmw_echo(&ep, "/so101/joint_states", &count);
    assert!(
        graph.wait_until(WAIT, |es| es.iter().any(|e| e.kind
            == EntityKind::Subscription
            && e.topic
                .as_ref()
                .is_some_and(|t| t.name == "/so101/joint_states"
                    && t.dds_type == "sensor_msgs::msg::dds_::JointState_"))),
        "echo's subscription token: {:#?}",
        graph.entities()
    );
    let js_key = keys
        .iter()
        .copied()
        .find(|k| k.contains("JointState"))
        .expect("joint state key");
    replay(&bus, &f, &[js_key]);
    let (ok, out, err) = finish(child);
    assert!(ok, "echo failed: {err}");
    let want: Vec<Value> = joint_states.iter().map(|s| s["echo"].clone()).collect();
    assert_eq!(lines(&out), want, "stderr: {err}");
    bus.close();
}

#[test]
fn topics_list_shows_the_python_peers_publishers_with_their_types() {
    let f = fixture();
    let (bus, ep) = listener();
    let _tokens = declare_peer_tokens(&bus, &f);
    let (ok, out, err) = finish(sinew(&[
        "--ros",
        "rmw-zenoh",
        "--connect",
        &ep,
        "topics",
        "list",
        "--duration",
        "1",
    ]));
    assert!(ok, "list failed: {err}");
    let rows: Vec<Vec<&str>> = out
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows.first().map(|r| r[..4].to_vec()),
        Some(vec!["TOPIC", "TYPE", "PUBS", "SUBS"])
    );
    for p in f["publishers"].as_array().expect("publishers") {
        let topic = p["topic"].as_str().expect("topic");
        let row = rows
            .iter()
            .find(|r| r[0] == topic)
            .unwrap_or_else(|| panic!("{topic} listed:\n{out}"));
        assert_eq!(row[1], p["type"].as_str().expect("type"), "{out}");
        assert_eq!(row[2], "1", "one publisher: {out}");
    }
    bus.close();
}

#[test]
fn a_sinew_publisher_is_seen_with_rmw_zenohs_key_token_and_attachment() {
    let (bus, ep) = listener();
    let (tok_tx, tok_rx) = crossbeam_channel::unbounded::<String>();
    let _tokens = bus
        .session()
        .liveliness()
        .declare_subscriber("@ros2_lv/7/**")
        .history(true)
        .callback(move |s| {
            if s.kind() == SampleKind::Put {
                let _ = tok_tx.send(s.key_expr().as_str().to_owned());
            }
        })
        .wait()
        .expect("liveliness subscriber");
    let (tx, rx) = crossbeam_channel::unbounded::<(String, Vec<u8>, Option<Vec<u8>>)>();
    let _data = bus
        .session()
        .declare_subscriber("7/**")
        .callback(move |s| {
            let _ = tx.send((
                s.key_expr().as_str().to_owned(),
                s.payload().to_bytes().into_owned(),
                s.attachment().map(|a| a.to_bytes().into_owned()),
            ));
        })
        .wait()
        .expect("data subscriber");
    let before = sinew_msgs::Time::now().as_nanos();
    let (ok, _out, err) = finish(sinew(&[
        "--ros",
        "rmw-zenoh:7",
        "--connect",
        &ep,
        "topics",
        "pub",
        "/so101/instruction",
        "hello rmw",
        "--count",
        "2",
        "--rate",
        "50",
    ]));
    assert!(ok, "pub failed: {err}");
    assert!(!err.contains("no subscriber"), "{err}");

    // The node and publisher tokens, exactly as rmw_zenoh writes them.
    // Declared before the first sample, and `sinew` exits only after this session confirmed
    // receipt of everything it sent (Bus::close's flush), so they are all here.
    let tokens: Vec<String> = tok_rx.try_iter().collect();
    let node = tokens
        .iter()
        .find(|t| t.contains("/NN/"))
        .unwrap_or_else(|| panic!("node token in {tokens:?}"));
    let parts: Vec<&str> = node.split('/').collect();
    let zid = parts[2];
    let node_name = format!("sinew_{}", &zid[..8]);
    assert_eq!(node, &format!("@ros2_lv/7/{zid}/0/0/NN/%/%/{node_name}"));
    let mp = tokens
        .iter()
        .find(|t| t.contains("/MP/"))
        .unwrap_or_else(|| panic!("publisher token in {tokens:?}"));
    let entity_id = mp.split('/').nth(4).expect("entity id");
    assert_eq!(
        mp,
        &format!(
            "@ros2_lv/7/{zid}/0/{entity_id}/MP/%/%/{node_name}/%so101%instruction/std_msgs::msg::dds_::String_/{STRING_HASH}/::2,:,:,:,,"
        )
    );

    // The samples: key, CDR payload, attachment (sequence from 1, now, the token's GID).
    for seq in 1..=2i64 {
        let (key, payload, attachment) = rx.recv_timeout(WAIT).expect("sample");
        assert_eq!(
            key,
            format!("7/so101/instruction/std_msgs::msg::dds_::String_/{STRING_HASH}")
        );
        assert_eq!(
            StringMsg::from_cdr_slice(&payload).expect("CDR"),
            StringMsg {
                data: "hello rmw".into()
            }
        );
        let a = attachment.expect("rmw_zenoh attachment");
        assert_eq!(a.len(), 33, "{a:02x?}");
        assert_eq!(i64::from_le_bytes(a[..8].try_into().expect("8")), seq);
        let ts = i64::from_le_bytes(a[8..16].try_into().expect("8"));
        assert!(
            ts >= before && ts - before < 60_000_000_000,
            "timestamp {ts}"
        );
        assert_eq!(a[16], 16);
        assert_eq!(&a[17..], &gid_of_keyexpr(mp));
    }
    bus.close();
}
