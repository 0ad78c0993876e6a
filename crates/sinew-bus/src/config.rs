//! How a Sinew process joins the bus.

use std::path::PathBuf;

use crate::BusError;

/// The loopback port of the default session. It is zenoh's own default port, so a zenoh
/// router or zenoh-bridge-ros2dds already running on this machine is joined automatically.
pub const DEFAULT_HUB_PORT: u16 = 7447;

/// Session options. The default joins the other Sinew processes on this machine and nothing
/// else: the first process listens on `tcp/127.0.0.1:<hub_port>` (the hub), later ones find the
/// port taken, listen on an ephemeral loopback port and connect to the hub; zenoh's gossip then
/// connects them to each other, so traffic keeps flowing if the hub exits. Multicast scouting
/// is off, so other machines can neither find nor reach the session unless configured to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusConfig {
    /// Endpoints to connect to, e.g. `tcp/192.168.1.20:7447` (a robot's bridge on the LAN).
    pub connect: Vec<String>,
    /// Endpoints to listen on, e.g. `tcp/0.0.0.0:7447` to accept other machines.
    pub listen: Vec<String>,
    /// A zenoh JSON5 configuration file; `connect` and `listen` are added to it.
    pub config_file: Option<PathBuf>,
    /// Port of the default loopback hub (used when none of the above is given).
    pub hub_port: u16,
    /// Whether to publish large payloads through zenoh's shared-memory transport.
    pub shared_memory: bool,
    /// How ROS 2 peers see the topics: zenoh-bridge-ros2dds names (default) or rmw_zenoh.
    pub ros: RosInterop,
    /// TLS certificates; with them `tls/` endpoints are mutually authenticated.
    pub tls: Option<TlsFiles>,
    /// A zenoh access-control profile (JSON5 holding an `access_control` object) that this
    /// session enforces on what its peers send it.
    pub acl: Option<PathBuf>,
}

/// How ROS 2 peers see Sinew's topics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RosInterop {
    /// zenoh-bridge-ros2dds naming: the ROS topic without its leading slash
    /// (`/so101/joint_states` is `so101/joint_states`).
    #[default]
    Bridge,
    /// ROS 2's own zenoh middleware, rmw_zenoh: keys
    /// `<domain_id>/<topic>/<dds type name>/<type hash>`, liveliness tokens and the attachment
    /// rmw_zenoh puts on each sample.
    RmwZenoh {
        /// The ROS domain id (`ROS_DOMAIN_ID`, 0 by default).
        domain_id: u32,
    },
}

impl std::str::FromStr for RosInterop {
    type Err = String;

    /// `bridge`, `rmw-zenoh` (domain 0) or `rmw-zenoh:DOMAIN`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("{s:?}: expected bridge, rmw-zenoh or rmw-zenoh:DOMAIN (0-232)");
        match s.split_once(':') {
            None if s == "bridge" => Ok(Self::Bridge),
            None if s == "rmw-zenoh" => Ok(Self::RmwZenoh { domain_id: 0 }),
            Some(("rmw-zenoh", d)) => match d.parse::<u32>() {
                Ok(domain_id) if domain_id <= 232 => Ok(Self::RmwZenoh { domain_id }),
                _ => Err(bad()),
            },
            _ => Err(bad()),
        }
    }
}

impl TlsFiles {
    fn apply(&self, cfg: &mut zenoh::Config) -> Result<(), BusError> {
        for (flag, path) in [
            ("--tls-cert", &self.cert),
            ("--tls-key", &self.key),
            ("--tls-ca", &self.ca),
        ] {
            if let Err(e) = std::fs::File::open(path) {
                return Err(BusError::Config {
                    what: format!("{flag} {}", path.display()),
                    reason: e.to_string(),
                });
            }
        }
        let s = |p: &PathBuf| format!("{:?}", p.display().to_string());
        let tls = "transport/link/tls";
        set(cfg, &format!("{tls}/root_ca_certificate"), &s(&self.ca))?;
        set(cfg, &format!("{tls}/listen_certificate"), &s(&self.cert))?;
        set(cfg, &format!("{tls}/listen_private_key"), &s(&self.key))?;
        set(cfg, &format!("{tls}/connect_certificate"), &s(&self.cert))?;
        set(cfg, &format!("{tls}/connect_private_key"), &s(&self.key))?;
        set(cfg, &format!("{tls}/enable_mtls"), "true")?;
        set(cfg, &format!("{tls}/verify_name_on_connect"), "true")
    }
}

/// PEM files for zenoh's TLS transport. The same certificate serves when listening and when
/// connecting, and peers must present one signed by `ca` (mutual TLS).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// This process's certificate (its common name is its identity in access control).
    pub cert: PathBuf,
    /// Its private key.
    pub key: PathBuf,
    /// The certificate authority that signs every peer's certificate.
    pub ca: PathBuf,
}

impl Default for BusConfig {
    fn default() -> Self {
        Self {
            connect: Vec::new(),
            listen: Vec::new(),
            config_file: None,
            hub_port: DEFAULT_HUB_PORT,
            shared_memory: true,
            ros: RosInterop::Bridge,
            tls: None,
            acl: None,
        }
    }
}

/// The role a session ended up with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionRole {
    /// Listening on the well-known loopback hub port.
    Hub,
    /// Connected to a hub that another process holds.
    HubClient,
    /// Configured explicitly (endpoints or a config file).
    Configured,
}

impl BusConfig {
    /// True when the user gave endpoints or a file, so the default hub logic does not apply.
    pub fn is_explicit(&self) -> bool {
        !self.connect.is_empty() || !self.listen.is_empty() || self.config_file.is_some()
    }

    fn base(&self) -> Result<zenoh::Config, BusError> {
        let mut cfg = match &self.config_file {
            Some(path) => zenoh::Config::from_file(path).map_err(|e| BusError::Config {
                what: format!("zenoh config file {}", path.display()),
                reason: e.to_string(),
            })?,
            None => {
                let mut c = zenoh::Config::default();
                set(&mut c, "mode", "\"peer\"")?;
                set(&mut c, "scouting/multicast/enabled", "false")?;
                c
            }
        };
        set(
            &mut cfg,
            "transport/shared_memory/enabled",
            if self.shared_memory { "true" } else { "false" },
        )?;
        if let Some(tls) = &self.tls {
            tls.apply(&mut cfg)?;
        }
        if let Some(acl) = &self.acl {
            set(&mut cfg, "access_control", &crate::security::load_acl(acl)?)?;
        }
        Ok(cfg)
    }

    /// Checks that TLS and access control are used the way they work: TLS files with `tls/`
    /// endpoints of the user's choosing, access control with identities to check.
    pub(crate) fn check_security(&self) -> Result<(), BusError> {
        let has_tls_endpoint = self
            .listen
            .iter()
            .chain(&self.connect)
            .any(|e| e.starts_with("tls/"));
        if self.tls.is_some() && !self.is_explicit() {
            return Err(BusError::Config {
                what: "--tls-cert/--tls-key/--tls-ca".into(),
                reason: "TLS needs endpoints: --listen tls/HOST:PORT on the robot's side, \
                         --connect tls/HOST:PORT on the others"
                    .into(),
            });
        }
        if has_tls_endpoint && self.tls.is_none() && self.config_file.is_none() {
            return Err(BusError::Config {
                what: "a tls/ endpoint".into(),
                reason: "it needs --tls-cert, --tls-key and --tls-ca (or a zenoh config file \
                         with transport/link/tls)"
                    .into(),
            });
        }
        if self.acl.is_some() && !self.is_explicit() {
            return Err(BusError::Config {
                what: "--acl".into(),
                reason: "access control needs explicit endpoints (--listen tls/HOST:PORT): \
                         the default loopback hub would let every local process in unchecked"
                    .into(),
            });
        }
        Ok(())
    }

    /// The zenoh configuration for an explicit setup.
    pub(crate) fn explicit_config(&self) -> Result<zenoh::Config, BusError> {
        let mut cfg = self.base()?;
        for e in &self.listen {
            check_endpoint(e, "--listen")?;
        }
        for e in &self.connect {
            check_endpoint(e, "--connect")?;
        }
        if !self.listen.is_empty() {
            set(&mut cfg, "listen/endpoints", &json_list(&self.listen))?;
        }
        if !self.connect.is_empty() {
            set(&mut cfg, "connect/endpoints", &json_list(&self.connect))?;
        }
        if self.connect.iter().any(|e| e.starts_with("tls/")) {
            // A peer whose certificate is refused should hear it at once, not retry forever
            // in the background while its commands go nowhere.
            set(&mut cfg, "connect/exit_on_failure", "true")?;
            set(&mut cfg, "connect/timeout_ms", "5000")?;
        }
        if self.listen.is_empty() && self.config_file.is_none() {
            // zenoh's peers listen on tcp/[::]:0 unless told otherwise: a plain listener on
            // every interface, beside a TLS connection, would let anyone in. A session that
            // only connects listens on loopback (other local processes reach it directly),
            // or with TLS on nothing.
            let own: Vec<String> = match self.tls {
                Some(_) => Vec::new(),
                None => vec!["tcp/127.0.0.1:0".to_owned()],
            };
            set(&mut cfg, "listen/endpoints", &json_list(&own))?;
        }
        Ok(cfg)
    }

    /// The configuration of the hub process.
    pub(crate) fn hub_config(&self) -> Result<zenoh::Config, BusError> {
        let mut cfg = self.base()?;
        let ep = format!("tcp/127.0.0.1:{}", self.hub_port);
        set(&mut cfg, "listen/endpoints", &json_list(&[ep]))?;
        Ok(cfg)
    }

    /// The configuration of a process joining an existing hub.
    pub(crate) fn hub_client_config(&self) -> Result<zenoh::Config, BusError> {
        let mut cfg = self.base()?;
        set(
            &mut cfg,
            "listen/endpoints",
            &json_list(&["tcp/127.0.0.1:0".to_owned()]),
        )?;
        let hub = format!("tcp/127.0.0.1:{}", self.hub_port);
        set(&mut cfg, "connect/endpoints", &json_list(&[hub]))?;
        Ok(cfg)
    }
}

fn set(cfg: &mut zenoh::Config, key: &str, json5: &str) -> Result<(), BusError> {
    cfg.insert_json5(key, json5).map_err(|e| BusError::Config {
        what: key.to_owned(),
        reason: e.to_string(),
    })
}

fn json_list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| format!("{s:?}")).collect();
    format!("[{}]", quoted.join(","))
}

fn check_endpoint(e: &str, flag: &str) -> Result<(), BusError> {
    let ok = e
        .split_once('/')
        .is_some_and(|(proto, addr)| !proto.is_empty() && !addr.is_empty());
    if ok {
        Ok(())
    } else {
        Err(BusError::Config {
            what: format!("{flag} {e}"),
            reason: "an endpoint is PROTOCOL/ADDRESS, for example tcp/127.0.0.1:7447".into(),
        })
    }
}
