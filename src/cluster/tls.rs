//! Mutual TLS on the cluster transport: a member's certificate and key, and the CA whose
//! certificates it accepts from peers and clients, read again on SIGHUP.
//!
//! Every member both accepts sessions (as a TLS server asking for a client certificate) and
//! dials them (as a TLS client showing its own); clients of the cluster dial only. A dial
//! checks that the peer's certificate names [`TlsPaths::server_name`], not the address it
//! was dialled at, so members can be reached by IP or by any DNS name.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::pki_types::ServerName;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, ServerConfig};

use crate::tls::{read_chain, read_key, read_roots, Reload, TlsError};

/// Where a member's or client's transport TLS files are, and the name members' certificates carry.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TlsPaths {
    /// PEM certificate chain shown to the other side
    pub cert: PathBuf,
    /// its PEM private key
    pub key: PathBuf,
    /// PEM certificates of the CA trusted for the other side
    pub ca: PathBuf,
    /// DNS name (subjectAltName) a member's certificate must carry
    pub server_name: String,
}

/// The TLS settings made of [`TlsPaths`], replaced whole when the files are read again.
pub struct ClusterTls {
    paths: TlsPaths,
    name: ServerName<'static>,
    current: parking_lot::RwLock<Configs>,
}

/// Both sides' settings, read from the same files.
#[derive(Clone)]
struct Configs {
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
}

fn load(paths: &TlsPaths) -> Result<Configs, TlsError> {
    let chain = read_chain(&paths.cert, "cluster.tls_cert_file")?;
    let key = read_key(&paths.key, "cluster.tls_key_file")?;
    let roots = Arc::new(read_roots(&paths.ca, "cluster.tls_ca_file")?);
    let verifier = WebPkiClientVerifier::builder(Arc::clone(&roots))
        .build()
        .map_err(|e| {
            TlsError(format!(
                "cluster.tls_ca_file {} cannot check client certificates: {e}",
                paths.ca.display()
            ))
        })?;
    let mismatch = |e: rustls::Error| {
        TlsError(format!(
            "cluster.tls_cert_file {} and cluster.tls_key_file {} do not go together: {e}",
            paths.cert.display(),
            paths.key.display()
        ))
    };
    let server = ServerConfig::builder()
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain.clone(), key.clone_key())
        .map_err(mismatch)?;
    let client = ClientConfig::builder()
        .with_root_certificates(Arc::clone(&roots))
        .with_client_auth_cert(chain, key)
        .map_err(mismatch)?;
    Ok(Configs {
        server: Arc::new(server),
        client: Arc::new(client),
    })
}

impl ClusterTls {
    /// Reads the certificate, key and CA; the error names the setting that is wrong.
    pub fn open(paths: TlsPaths) -> Result<Arc<ClusterTls>, TlsError> {
        let name = ServerName::try_from(paths.server_name.clone()).map_err(|e| {
            TlsError(format!(
                "cluster.tls_server_name: expected a DNS name or IP address, got {:?}: {e}",
                paths.server_name
            ))
        })?;
        let current = load(&paths)?;
        Ok(Arc::new(ClusterTls {
            paths,
            name,
            current: parking_lot::RwLock::new(current),
        }))
    }

    /// Accepts sessions with the certificate in use now, requiring one from the CA in return.
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(Arc::clone(&self.current.read().server))
    }

    /// Dials with the certificate in use now, trusting only the CA.
    pub fn connector(&self) -> tokio_rustls::TlsConnector {
        tokio_rustls::TlsConnector::from(Arc::clone(&self.current.read().client))
    }

    /// The name a member's certificate must carry.
    pub fn server_name(&self) -> ServerName<'static> {
        self.name.clone()
    }
}

impl std::fmt::Debug for ClusterTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterTls")
            .field("paths", &self.paths)
            .finish_non_exhaustive()
    }
}

impl Reload for ClusterTls {
    fn reload(&self) -> Result<(), TlsError> {
        let configs = load(&self.paths)?;
        *self.current.write() = configs;
        Ok(())
    }

    fn describe(&self) -> String {
        format!("cluster {}", self.paths.cert.display())
    }
}
