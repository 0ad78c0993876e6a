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
        Ok(cfg)
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
