//! HTTPS: the certificate chain and key from PEM files, read again on SIGHUP (a connection
//! keeps the certificate it began with; new ones get the new one).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;

/// The node's certificate and key, and the TLS settings made of them.
pub struct TlsFiles {
    cert: PathBuf,
    key: PathBuf,
    current: parking_lot::RwLock<Arc<ServerConfig>>,
}

/// Why the certificate or key could not be used.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TlsError(String);

fn load(cert: &Path, key: &Path) -> Result<ServerConfig, TlsError> {
    crate::storage::objects::install_crypto_provider();
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| {
            TlsError(format!(
                "cannot read http.tls_cert_file {}: {e}",
                cert.display()
            ))
        })?
        .collect::<Result<_, _>>()
        .map_err(|e| {
            TlsError(format!(
                "http.tls_cert_file {} is not PEM certificates: {e}",
                cert.display()
            ))
        })?;
    if chain.is_empty() {
        return Err(TlsError(format!(
            "http.tls_cert_file {} holds no certificate",
            cert.display()
        )));
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| {
        TlsError(format!(
            "http.tls_key_file {} is not a PEM private key: {e}",
            key.display()
        ))
    })?;
    let mut config = ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, key_der)
        .map_err(|e| TlsError(format!("the certificate and key do not go together: {e}")))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

impl TlsFiles {
    /// Reads the certificate chain and key.
    pub fn open(cert: &Path, key: &Path) -> Result<Arc<TlsFiles>, TlsError> {
        let config = load(cert, key)?;
        Ok(Arc::new(TlsFiles {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            current: parking_lot::RwLock::new(Arc::new(config)),
        }))
    }

    /// Reads the files again; on failure the certificate in use stays, and the error says why.
    pub fn reload(&self) -> Result<(), TlsError> {
        let config = load(&self.cert, &self.key)?;
        *self.current.write() = Arc::new(config);
        Ok(())
    }

    /// An acceptor with the certificate in use now.
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(Arc::clone(&self.current.read()))
    }

    /// Reads the files again on every SIGHUP, for as long as the node runs.
    pub fn reload_on_sighup(self: &Arc<Self>) {
        #[cfg(unix)]
        {
            let files = Arc::downgrade(self);
            let Ok(mut hangups) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            else {
                tracing::warn!("cannot listen for SIGHUP; the certificate is read at start only");
                return;
            };
            tokio::spawn(async move {
                while hangups.recv().await.is_some() {
                    let Some(files) = files.upgrade() else { return };
                    match files.reload() {
                        Ok(()) => {
                            tracing::info!(cert = %files.cert.display(), "certificate read again (SIGHUP)")
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "certificate not read again; the one in use stays")
                        }
                    }
                }
            });
        }
    }
}
