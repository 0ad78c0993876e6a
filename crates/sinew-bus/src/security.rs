//! Transport security and access control on the bus.
//!
//! - **TLS**: [`crate::TlsFiles`] turns on zenoh's TLS transport with mutual authentication:
//!   a peer must present a certificate signed by the configured CA, and its certificate's
//!   common name becomes its identity.
//! - **Access control**: a zenoh `access_control` profile ([`load_acl`]; the built-in lab
//!   profile is [`LAB_PROFILE`]) decides which identities may put on which keys. zenoh drops a
//!   refused message before any subscriber sees it and only says so at trace level; the
//!   [`AclRefusalLayer`] turns those trace events into a counter ([`acl_refusals`]) that the
//!   serving side reports.
//! - **Certificates**: [`make_certificates`] writes a lab CA and certificates signed by it.
//! - **Exposure**: [`plaintext_listeners`] names the endpoints that accept other machines'
//!   connections without TLS, which `Bus::open` warns about.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::BusError;

/// The built-in lab profile (`--acl lab`): controllers command, operators stop, everyone else
/// with a certificate from the lab's CA reads. The file is `crates/sinew-bus/profiles/lab.json5`.
pub const LAB_PROFILE: &str = include_str!("../profiles/lab.json5");

/// The `tracing` target of zenoh's access-control interceptor.
pub const ACL_TARGET: &str = "zenoh::net::routing::interceptor::access_control";

/// The `access_control` object of a profile, as JSON, ready to insert in a zenoh config.
/// `spec` is `lab` (the built-in profile) or a JSON5 file holding `{ access_control: {...} }`
/// (zenoh's own configuration format, so the same file can serve `zenohd`).
pub fn load_acl(spec: &Path) -> Result<String, BusError> {
    let err = |reason: String| BusError::Config {
        what: format!("--acl {}", spec.display()),
        reason,
    };
    let parsed = if spec == Path::new("lab") {
        zenoh::Config::from_json5(LAB_PROFILE)
    } else {
        if !spec.is_file() {
            return Err(err(
                "no such file (give `lab` for the built-in profile or a JSON5 file)".into(),
            ));
        }
        zenoh::Config::from_file(spec)
    }
    .map_err(|e| err(e.to_string()))?;
    let acl = parsed
        .get_json("access_control")
        .map_err(|e| err(e.to_string()))?;
    let value: serde_json::Value = serde_json::from_str(&acl).map_err(|e| err(e.to_string()))?;
    if value.get("enabled") != Some(&serde_json::Value::Bool(true)) {
        return Err(err(
            "the profile's access_control.enabled is not true".into()
        ));
    }
    Ok(acl)
}

/// Listen endpoints that accept connections from other machines without TLS: any `tcp/`,
/// `udp/`, `ws/` or `quic/`-less plain endpoint whose address is not loopback (a wildcard
/// address such as `0.0.0.0` or `[::]` listens on every interface). Unix sockets and
/// loopback addresses are private to the machine.
pub fn plaintext_listeners(endpoints: &[String]) -> Vec<String> {
    endpoints
        .iter()
        .filter(|e| {
            let Some((proto, rest)) = e.split_once('/') else {
                return false;
            };
            if !matches!(proto, "tcp" | "udp" | "ws") {
                return false;
            }
            // Drop zenoh's `#config` and `?metadata` suffixes, then the port.
            let addr = rest.split(['#', '?']).next().unwrap_or(rest);
            let host = match addr.rsplit_once(':') {
                Some((h, _port)) => h,
                None => addr,
            };
            let host = host.trim_start_matches('[').trim_end_matches(']');
            match host.parse::<IpAddr>() {
                Ok(ip) => !ip.is_loopback(),
                Err(_) => host != "localhost",
            }
        })
        .cloned()
        .collect()
}

/// How many messages this process's access control refused, and the last one.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct AclRefusals {
    /// Messages refused since the process started.
    pub count: u64,
    /// zenoh's description of the last one: the peer, its identity, the message and key.
    pub last: Option<String>,
}

static REFUSED: AtomicU64 = AtomicU64::new(0);
static LAST_REFUSED: Mutex<Option<String>> = Mutex::new(None);

/// What access control refused so far in this process (zero unless an [`AclRefusalLayer`]
/// is installed).
pub fn acl_refusals() -> AclRefusals {
    commit_pending(Duration::from_millis(50));
    AclRefusals {
        count: REFUSED.load(Ordering::Relaxed),
        last: lock(&LAST_REFUSED).clone(),
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A refusal by one subject that another subject of the same peer may still overturn: zenoh
/// checks a peer's subjects in turn, logging each one's verdict, and the first that allows
/// wins. (thread, "<message> on <key>", when, the line)
type Pending = (std::thread::ThreadId, String, Instant, String);
static PENDING: Mutex<Vec<Pending>> = Mutex::new(Vec::new());

fn commit(line: String) {
    REFUSED.fetch_add(1, Ordering::Relaxed);
    *lock(&LAST_REFUSED) = Some(line);
}

/// Refusals no later subject overturned within `after` (they are overturned within
/// microseconds, in the same call on the same thread) become final.
fn commit_pending(after: Duration) {
    let done: Vec<Pending> = {
        let mut p = lock(&PENDING);
        let (old, young): (Vec<Pending>, Vec<Pending>) =
            p.drain(..).partition(|e| e.2.elapsed() >= after);
        *p = young;
        old
    };
    for (_, _, _, line) in done {
        commit(line);
    }
}

/// A `tracing` layer that counts zenoh's access-control refusals. Install it with a filter
/// that passes [`ACL_TARGET`] at `TRACE` ([`acl_refusal_layer`] does), beside the usual log
/// output: zenoh reports each refused message there and nowhere else.
#[derive(Debug, Default)]
pub struct AclRefusalLayer;

/// [`AclRefusalLayer`] with its filter.
pub fn acl_refusal_layer<S>() -> impl tracing_subscriber::Layer<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    use tracing_subscriber::Layer;
    AclRefusalLayer.with_filter(
        tracing_subscriber::filter::Targets::new().with_target(ACL_TARGET, tracing::Level::TRACE),
    )
}

struct Message(String);

impl tracing::field::Visit for Message {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }
}

/// The decisions zenoh's ingress interceptor computes, in order, when it first sees a key
/// (`compute_keyexpr_cache`): these are answers prepared in advance, not messages.
const CACHING_ORDER: [&str; 9] = [
    "Query (ingress)",
    "Reply (ingress)",
    "Put (ingress)",
    "Delete (ingress)",
    "Declare/Undeclare Subscriber (ingress)",
    "Declare/Undeclare Queryable (ingress)",
    "Declare/Undeclare Liveliness Token (ingress)",
    "Liveliness Query (ingress)",
    "Declare Liveliness Subscriber (ingress)",
];

/// Refusals that mean a peer sent data it may not send (declarations refused are harmless:
/// the robot then simply never sends that peer anything).
const DATA_MESSAGES: [&str; 3] = ["Put (ingress)", "Delete (ingress)", "Query (ingress)"];

thread_local! {
    /// Where this thread is in a caching pass: the index in [`CACHING_ORDER`] of the last
    /// decision seen, or None outside one.
    static CACHING: std::cell::Cell<Option<usize>> = const { std::cell::Cell::new(None) };
}

/// What a trace line of zenoh's access control says about a message a peer sent.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Verdict {
    /// Not about a data message a peer sent (a decision prepared in advance, a declaration,
    /// an outgoing message, anything else).
    Other,
    /// Refused, finally (the cached decision for the peer).
    Refused,
    /// Refused by one of the peer's subjects; another may still allow it.
    RefusedBySubject(String),
    /// Allowed by one of the peer's subjects: overturns a refusal of the same message.
    AllowedBySubject(String),
}

/// Reads one trace line. Lines: "ACL (ingress): caching permissions for `k` ...", then one or
/// more lines per decision "<zid> on <subject> is (un)authorized to <message> on <key>"; a
/// message on a cached key gives "Using cached result: <zid> is (un)authorized to <message>
/// on <key>", one on an uncached key the decision lines alone.
fn verdict(line: &str) -> Verdict {
    if line.starts_with("ACL (ingress): caching permissions") {
        CACHING.with(|c| c.set(Some(0)));
        return Verdict::Other;
    }
    let cached = line.starts_with("Using cached result:");
    let (denied, rest) = match line.split_once(" is unauthorized to ") {
        Some((_, rest)) => (true, rest),
        None => match line.split_once(" is authorized to ") {
            Some((_, rest)) => (false, rest),
            None => return Verdict::Other,
        },
    };
    let label = rest.rsplit_once(" on ").map_or(rest, |(l, _)| l);
    let in_caching_pass = !cached
        && CACHING.with(
            |c| match (c.get(), CACHING_ORDER.iter().position(|&l| l == label)) {
                // Still in order: another prepared decision.
                (Some(at), Some(i)) if i >= at => {
                    c.set(Some(i));
                    true
                }
                _ => {
                    c.set(None);
                    false
                }
            },
        );
    if cached {
        CACHING.with(|c| c.set(None));
    }
    if in_caching_pass || !DATA_MESSAGES.contains(&label) {
        return Verdict::Other;
    }
    match (cached, denied) {
        (true, true) => Verdict::Refused,
        (true, false) => Verdict::Other,
        (false, true) => Verdict::RefusedBySubject(rest.to_owned()),
        (false, false) => Verdict::AllowedBySubject(rest.to_owned()),
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for AclRefusalLayer {
    fn on_event(
        &self,
        event: &tracing::Event<'_>,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        let mut m = Message(String::new());
        event.record(&mut m);
        let thread = std::thread::current().id();
        match verdict(&m.0) {
            Verdict::Other => {}
            Verdict::Refused => commit(m.0),
            Verdict::RefusedBySubject(what) => {
                lock(&PENDING).push((thread, what, Instant::now(), m.0));
            }
            Verdict::AllowedBySubject(what) => {
                lock(&PENDING).retain(|p| p.0 != thread || p.1 != what);
            }
        }
    }
}

/// The files [`make_certificates`] wrote.
#[derive(Debug, Clone)]
pub struct CertificateSet {
    /// The CA's certificate (give it to every peer as `--tls-ca`).
    pub ca_cert: PathBuf,
    /// The CA's private key (keep it off the robots; it signs new identities).
    pub ca_key: PathBuf,
    /// Each identity's certificate and key, in the order asked.
    pub identities: Vec<(String, PathBuf, PathBuf)>,
}

/// Writes a new certificate authority (`ca.pem`, `ca.key`) and, for each name, a certificate
/// and key signed by it (`<name>.pem`, `<name>.key`) into `dir`. Each certificate's common
/// name is its name (its identity in access control), and it is valid for TLS both as a
/// server and as a client, for the host names and addresses in `hosts` (a peer connecting to
/// `tls/192.168.1.20:7447` checks that the listener's certificate names 192.168.1.20).
/// Existing files are not overwritten. Keys are ECDSA P-256.
pub fn make_certificates(
    dir: &Path,
    names: &[String],
    hosts: &[String],
) -> Result<CertificateSet, BusError> {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, KeyUsagePurpose,
    };
    let err = |what: String, e: &dyn std::fmt::Display| BusError::Config {
        what,
        reason: e.to_string(),
    };
    std::fs::create_dir_all(dir).map_err(|e| err(dir.display().to_string(), &e))?;
    let write = |name: &str, text: &str| -> Result<PathBuf, BusError> {
        let path = dir.join(name);
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            if name.ends_with(".key") {
                opts.mode(0o600);
            }
        }
        let mut f = opts.open(&path).map_err(|e| {
            err(
                path.display().to_string(),
                &format!("{e} (certificates are never overwritten)"),
            )
        })?;
        std::io::Write::write_all(&mut f, text.as_bytes())
            .map_err(|e| err(path.display().to_string(), &e))?;
        Ok(path)
    };
    for n in names {
        let ok = !n.is_empty()
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.');
        if !ok || n == "ca" {
            return Err(err(
                format!("certificate name {n:?}"),
                &"names are letters, digits, '-', '_' and '.', and not `ca`",
            ));
        }
    }
    let ca_key = KeyPair::generate().map_err(|e| err("the CA key".into(), &e))?;
    let mut ca_params =
        CertificateParams::new(Vec::<String>::new()).map_err(|e| err("the CA".into(), &e))?;
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "Sinew lab CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca_params
        .self_signed(&ca_key)
        .map_err(|e| err("the CA".into(), &e))?;
    let issuer = Issuer::new(ca_params, &ca_key);
    let mut identities = Vec::new();
    let mut planned = Vec::new();
    for n in names {
        let mut sans: Vec<String> = hosts.to_vec();
        if !sans.contains(n) && n.parse::<IpAddr>().is_err() {
            sans.push(n.clone());
        }
        let key = KeyPair::generate().map_err(|e| err(format!("{n}'s key"), &e))?;
        let mut params = CertificateParams::new(sans)
            .map_err(|e| err(format!("{n}'s host names {hosts:?}"), &e))?;
        params
            .distinguished_name
            .push(DnType::CommonName, n.as_str());
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let cert = params
            .signed_by(&key, &issuer)
            .map_err(|e| err(format!("{n}'s certificate"), &e))?;
        planned.push((n.clone(), cert.pem(), key.serialize_pem()));
    }
    // Everything was made; now write, the CA first.
    let ca_cert_path = write("ca.pem", &ca_cert.pem())?;
    let ca_key_path = write("ca.key", &ca_key.serialize_pem())?;
    for (n, cert, key) in planned {
        let c = write(&format!("{n}.pem"), &cert)?;
        let k = write(&format!("{n}.key"), &key)?;
        identities.push((n, c, k));
    }
    Ok(CertificateSet {
        ca_cert: ca_cert_path,
        ca_key: ca_key_path,
        identities,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plaintext_listeners_are_the_non_loopback_ones() {
        let eps: Vec<String> = [
            "tcp/127.0.0.1:7447",
            "tcp/[::1]:7447",
            "tcp/localhost:7447",
            "tcp/0.0.0.0:7447",
            "tcp/[::]:7447",
            "udp/192.168.1.20:7447",
            "tls/0.0.0.0:7447",
            "unixsock-stream//tmp/sinew.sock",
            "tcp/robot.lab:7447#iface=eth0",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(
            plaintext_listeners(&eps),
            vec![
                "tcp/0.0.0.0:7447",
                "tcp/[::]:7447",
                "udp/192.168.1.20:7447",
                "tcp/robot.lab:7447#iface=eth0"
            ]
        );
    }

    #[test]
    fn refusals_count_messages_sent_not_decisions_prepared() {
        // zenoh 1.10's trace lines, as the robot's side logs them for one observer.
        let z = "59d7 on Interface(lo)+CertCommonName(observer)+Transport(Tls)+59d7";
        let caching = [
            "ACL (ingress): caching permissions for `so101/joint_commands` ...".to_owned(),
            format!("{z} is unauthorized to Query (ingress) on so101/joint_commands"),
            format!("{z} is unauthorized to Reply (ingress) on so101/joint_commands"),
            format!("{z} is unauthorized to Put (ingress) on so101/joint_commands"),
            format!("{z} is unauthorized to Delete (ingress) on so101/joint_commands"),
            format!("{z} is authorized to Declare/Undeclare Subscriber (ingress) on so101/joint_commands"),
            format!("{z} is unauthorized to Declare/Undeclare Queryable (ingress) on so101/joint_commands"),
            format!("{z} is authorized to Declare/Undeclare Liveliness Token (ingress) on so101/joint_commands"),
            format!("{z} is authorized to Liveliness Query (ingress) on so101/joint_commands"),
            format!("{z} is authorized to Declare Liveliness Subscriber (ingress) on so101/joint_commands"),
        ];
        assert!(caching.iter().all(|l| verdict(l) == Verdict::Other));
        // Then two puts: one on the cached key, one sent with its full name.
        let what = "Put (ingress) on so101/joint_commands".to_owned();
        assert_eq!(
            verdict("Using cached result: 59d7 is unauthorized to Put (ingress) on so101/joint_commands"),
            Verdict::Refused
        );
        assert_eq!(
            verdict(&format!("{z} is unauthorized to {what}")),
            Verdict::RefusedBySubject(what.clone())
        );
        // A controller's uncached put: refused by its `lab` subject, allowed by
        // `controllers`.
        assert_eq!(
            verdict(&format!("{z} is authorized to {what}")),
            Verdict::AllowedBySubject(what)
        );
        // Allowed puts and refused declarations are not refusals of data.
        assert_eq!(
            verdict(
                "Using cached result: 59d7 is authorized to Put (ingress) on so101/joint_commands"
            ),
            Verdict::Other
        );
        assert_eq!(
            verdict(&format!(
                "{z} is unauthorized to Declare Queryable (ingress) on so101/x"
            )),
            Verdict::Other
        );
    }

    #[test]
    fn the_lab_profile_parses_and_denies_by_default() {
        let json = load_acl(Path::new("lab")).expect("lab profile");
        let v: serde_json::Value = serde_json::from_str(&json).expect("json");
        assert_eq!(v["default_permission"], "deny");
        let subjects: Vec<&str> = v["subjects"]
            .as_array()
            .expect("subjects")
            .iter()
            .filter_map(|s| s["id"].as_str())
            .collect();
        assert_eq!(subjects, ["lab", "controllers", "operators"]);
    }

    #[test]
    fn a_missing_or_disabled_profile_is_an_error_naming_it() {
        let e = load_acl(Path::new("/no/such/acl.json5")).expect_err("missing");
        assert!(e.to_string().contains("/no/such/acl.json5"), "{e}");
        let dir = std::env::temp_dir().join(format!("sinew-acl-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let f = dir.join("off.json5");
        std::fs::write(&f, "{ access_control: { enabled: false } }").expect("write");
        let e = load_acl(&f).expect_err("disabled");
        assert!(e.to_string().contains("enabled is not true"), "{e}");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn certificates_are_written_once_and_name_their_identity() {
        let dir = std::env::temp_dir().join(format!("sinew-certs-{}", std::process::id()));
        std::fs::remove_dir_all(&dir).ok();
        let set = make_certificates(
            &dir,
            &["robot".into(), "observer".into()],
            &["localhost".into(), "127.0.0.1".into()],
        )
        .expect("certificates");
        assert_eq!(set.identities.len(), 2);
        let pem = std::fs::read_to_string(&set.identities[0].1).expect("robot.pem");
        assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"), "{pem}");
        let key = std::fs::read_to_string(&set.identities[0].2).expect("robot.key");
        assert!(key.contains("PRIVATE KEY"));
        // A second run refuses to overwrite the CA.
        let again = make_certificates(&dir, &["robot".into()], &[]).expect_err("exists");
        assert!(again.to_string().contains("never overwritten"), "{again}");
        assert!(make_certificates(&dir, &["../x".into()], &[]).is_err());
        std::fs::remove_dir_all(&dir).ok();
    }
}
