//! `sinew security`: a lab's certificates and the built-in access-control profile.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Subcommand};

#[derive(Debug, Subcommand)]
pub enum SecurityCommand {
    /// Make a certificate authority and certificates signed by it, one per identity
    /// (`ca.pem`, `ca.key`, `<name>.pem`, `<name>.key`). Never overwrites.
    Certs(CertsArgs),
    /// Print the built-in lab access-control profile (`--acl lab`), to copy and edit.
    Profile,
}

#[derive(Debug, Args)]
pub struct CertsArgs {
    /// Folder to write into (created if missing).
    #[arg(long)]
    out: PathBuf,
    /// An identity: the certificate's common name, which access control matches (`robot`,
    /// `controller`, `operator`, any other name reads only under the lab profile). Repeatable.
    #[arg(long = "name", value_name = "NAME", required = true)]
    names: Vec<String>,
    /// A host name or address the certificates are valid for, as peers will connect to it
    /// (`tls/192.168.1.20:7447` needs 192.168.1.20). Repeatable; localhost and 127.0.0.1 are
    /// always included.
    #[arg(long = "host", value_name = "HOST")]
    hosts: Vec<String>,
}

pub fn run(cmd: SecurityCommand) -> Result<()> {
    match cmd {
        SecurityCommand::Certs(a) => {
            let mut hosts = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
            for h in a.hosts {
                if !hosts.contains(&h) {
                    hosts.push(h);
                }
            }
            let set = sinew_bus::security::make_certificates(&a.out, &a.names, &hosts)?;
            println!(
                "CA certificate  {}  (give to every peer: --tls-ca)",
                set.ca_cert.display()
            );
            println!(
                "CA key          {}  (keep it off the robots: it signs new identities)",
                set.ca_key.display()
            );
            for (name, cert, key) in &set.identities {
                println!(
                    "{name:<15} --tls-cert {} --tls-key {}",
                    cert.display(),
                    key.display()
                );
            }
            Ok(())
        }
        SecurityCommand::Profile => {
            print!("{}", sinew_bus::security::LAB_PROFILE);
            Ok(())
        }
    }
}
