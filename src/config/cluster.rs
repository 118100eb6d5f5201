//! `[cluster]`: joining other nodes (gossip membership, transport) and spreading shards over them.

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{check_range, invalid, ConfigError};

/// Longest node id, in bytes.
pub const MAX_NODE_ID_LEN: usize = 64;

/// `[cluster]`: who this node is in a cluster, whom it joins, and how fast it notices a dead peer.
///
/// Without `listen` the node is a one-node cluster of itself and none of the other keys
/// matter. The cookie is not a key here: it comes from `--cookie` or `AKOSHA_COOKIE` only,
/// so that it is never written into a file that is shown or logged.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// `IP:PORT` serving both the transport (TCP) and gossip (UDP); absent means a one-node cluster
    pub listen: Option<String>,
    /// `HOST:PORT` of members to gossip with first (their `listen` address)
    pub join: Vec<String>,
    /// this node's id, stable across restarts (letters, digits, `.`, `_`, `-`)
    pub node_id: Option<String>,
    /// gossip cluster name; nodes gossiping another name are ignored
    pub cluster_id: String,
    /// copies of each shard, capped by the number of members
    pub replication_factor: usize,
    /// pause between two gossip rounds, in milliseconds
    pub gossip_interval_ms: u64,
    /// phi above which a silent peer is declared dead (phi = silence / mean heartbeat interval)
    pub phi_threshold: f64,
    /// heartbeat interval assumed of a peer before enough of its heartbeats came, in milliseconds
    pub failure_initial_interval_ms: u64,
    /// heartbeat gaps longer than this are not counted into a peer's mean, in milliseconds
    pub failure_max_interval_ms: u64,
    /// how long a dead member stays listed before it is forgotten, in seconds
    pub dead_grace_secs: u64,
    /// how long connecting to a peer and its cookie handshake may take, in milliseconds
    pub dial_timeout_ms: u64,
    /// pause before a peer that could not be reached is dialled again, in milliseconds
    pub redial_interval_ms: u64,
    /// how long a node told to stop (SIGTERM) waits for its shards' new replicas to be
    /// whole before it exits anyway, in seconds
    pub leave_timeout_secs: u64,
    /// PEM certificate chain this member shows peers and clients on the transport (with
    /// `tls_key_file` and `tls_ca_file`); empty: the transport is plain TCP
    pub tls_cert_file: String,
    /// PEM private key of `tls_cert_file`
    pub tls_key_file: String,
    /// PEM certificates of the CA that signs every member's and client's certificate; a peer
    /// or client without a certificate from it cannot open a session (mutual TLS)
    pub tls_ca_file: String,
    /// DNS name every member's certificate carries (subjectAltName), checked on each dial
    pub tls_server_name: String,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            listen: None,
            join: Vec::new(),
            node_id: None,
            cluster_id: "akosha".to_string(),
            replication_factor: 2,
            gossip_interval_ms: 1_000,
            phi_threshold: 8.0,
            failure_initial_interval_ms: 1_000,
            failure_max_interval_ms: 10_000,
            dead_grace_secs: 3_600,
            dial_timeout_ms: 3_000,
            redial_interval_ms: 2_000,
            leave_timeout_secs: 300,
            tls_cert_file: String::new(),
            tls_key_file: String::new(),
            tls_ca_file: String::new(),
            tls_server_name: "akosha".to_string(),
        }
    }
}

impl ClusterConfig {
    /// Checks ranges and formats that the types alone do not.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(listen) = &self.listen {
            let addr = parse_listen(listen)?;
            if addr.port() == 0 {
                return Err(invalid(
                    "cluster.listen",
                    &format!("expected a fixed port (peers dial it), got {listen:?}"),
                ));
            }
            if addr.ip().is_unspecified() {
                return Err(invalid(
                    "cluster.listen",
                    &format!(
                        "expected the address peers reach this node at, got the unspecified {listen:?}"
                    ),
                ));
            }
        }
        for peer in &self.join {
            if peer.rsplit_once(':').is_none_or(|(host, port)| {
                host.is_empty() || port.parse::<u16>().map_or(true, |p| p == 0)
            }) {
                return Err(invalid(
                    "cluster.join",
                    &format!("expected HOST:PORT of a member's listen address, got {peer:?}"),
                ));
            }
        }
        if let Some(id) = &self.node_id {
            check_node_id(id)?;
        }
        let tls = [
            ("cluster.tls_cert_file", &self.tls_cert_file),
            ("cluster.tls_key_file", &self.tls_key_file),
            ("cluster.tls_ca_file", &self.tls_ca_file),
        ];
        if tls.iter().any(|(_, v)| !v.is_empty()) {
            if let Some((key, _)) = tls.iter().find(|(_, v)| v.is_empty()) {
                return Err(invalid(
                    key,
                    "expected cluster.tls_cert_file, tls_key_file and tls_ca_file all set, or none, got it empty",
                ));
            }
        }
        if rustls::pki_types::ServerName::try_from(self.tls_server_name.as_str()).is_err() {
            return Err(invalid(
                "cluster.tls_server_name",
                &format!(
                    "expected a DNS name or IP address, got {:?}",
                    self.tls_server_name
                ),
            ));
        }
        if self.cluster_id.is_empty() || self.cluster_id.len() > MAX_NODE_ID_LEN {
            return Err(invalid(
                "cluster.cluster_id",
                &format!(
                    "expected 1 to {MAX_NODE_ID_LEN} bytes, got {:?}",
                    self.cluster_id
                ),
            ));
        }
        if !(self.phi_threshold.is_finite() && self.phi_threshold >= 1.0) {
            return Err(invalid(
                "cluster.phi_threshold",
                &format!("expected a number from 1, got {}", self.phi_threshold),
            ));
        }
        let ranges: [(&str, u64, u64, u64); 8] = [
            (
                "cluster.replication_factor",
                self.replication_factor as u64,
                1,
                16,
            ),
            (
                "cluster.gossip_interval_ms",
                self.gossip_interval_ms,
                10,
                60_000,
            ),
            (
                "cluster.failure_initial_interval_ms",
                self.failure_initial_interval_ms,
                10,
                600_000,
            ),
            (
                "cluster.failure_max_interval_ms",
                self.failure_max_interval_ms,
                self.gossip_interval_ms,
                3_600_000,
            ),
            ("cluster.dead_grace_secs", self.dead_grace_secs, 1, 1 << 31),
            ("cluster.dial_timeout_ms", self.dial_timeout_ms, 10, 600_000),
            (
                "cluster.redial_interval_ms",
                self.redial_interval_ms,
                10,
                3_600_000,
            ),
            (
                "cluster.leave_timeout_secs",
                self.leave_timeout_secs,
                0,
                86_400,
            ),
        ];
        for (key, value, min, max) in ranges {
            check_range(key, value as usize, min as usize, max as usize)?;
        }
        Ok(())
    }

    /// The `listen` address, parsed; `None` for a one-node cluster.
    pub fn listen_addr(&self) -> Result<Option<SocketAddr>, ConfigError> {
        self.listen.as_deref().map(parse_listen).transpose()
    }

    /// Pause between two gossip rounds.
    pub fn gossip_interval(&self) -> Duration {
        Duration::from_millis(self.gossip_interval_ms)
    }

    /// How long connecting to a peer and its handshake may take.
    pub fn dial_timeout(&self) -> Duration {
        Duration::from_millis(self.dial_timeout_ms)
    }

    /// How long a leaving node waits for its shards to be handed over.
    pub fn leave_timeout(&self) -> Duration {
        Duration::from_secs(self.leave_timeout_secs)
    }

    /// The transport's TLS files, when `tls_cert_file` is set.
    pub fn tls_paths(&self) -> Option<crate::cluster::tls::TlsPaths> {
        (!self.tls_cert_file.is_empty()).then(|| crate::cluster::tls::TlsPaths {
            cert: self.tls_cert_file.clone().into(),
            key: self.tls_key_file.clone().into(),
            ca: self.tls_ca_file.clone().into(),
            server_name: self.tls_server_name.clone(),
        })
    }

    /// Pause before an unreachable peer is dialled again.
    pub fn redial_interval(&self) -> Duration {
        Duration::from_millis(self.redial_interval_ms)
    }
}

/// Checks a node id: 1 to 64 bytes of letters, digits, `.`, `_` and `-`.
pub fn check_node_id(id: &str) -> Result<(), ConfigError> {
    let ok = !id.is_empty()
        && id.len() <= MAX_NODE_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(invalid(
            "cluster.node_id",
            &format!(
                "expected 1 to {MAX_NODE_ID_LEN} letters, digits, '.', '_' or '-', got {id:?}"
            ),
        ))
    }
}

fn parse_listen(text: &str) -> Result<SocketAddr, ConfigError> {
    text.parse()
        .map_err(|_| invalid("cluster.listen", &format!("expected IP:PORT, got {text:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_detect_within_ten_seconds() {
        let c = ClusterConfig::default();
        c.validate().unwrap();
        // a dead peer is declared once its silence reaches phi_threshold mean intervals
        let worst =
            c.phi_threshold * c.failure_initial_interval_ms as f64 + c.gossip_interval_ms as f64;
        assert!(worst <= 10_000.0, "{worst}");
    }

    #[test]
    fn bad_values_name_their_key() {
        let cases: [(&str, ClusterConfig); 6] = [
            (
                "cluster.listen",
                ClusterConfig {
                    listen: Some("localhost:7000".into()),
                    ..Default::default()
                },
            ),
            (
                "cluster.listen",
                ClusterConfig {
                    listen: Some("0.0.0.0:7000".into()),
                    ..Default::default()
                },
            ),
            (
                "cluster.join",
                ClusterConfig {
                    join: vec!["nohost".into()],
                    ..Default::default()
                },
            ),
            (
                "cluster.node_id",
                ClusterConfig {
                    node_id: Some("a/b".into()),
                    ..Default::default()
                },
            ),
            (
                "cluster.replication_factor",
                ClusterConfig {
                    replication_factor: 0,
                    ..Default::default()
                },
            ),
            (
                "cluster.phi_threshold",
                ClusterConfig {
                    phi_threshold: f64::NAN,
                    ..Default::default()
                },
            ),
        ];
        for (key, config) in cases {
            let e = config.validate().unwrap_err();
            assert!(e.to_string().contains(key), "{key}: {e}");
        }
    }
}
