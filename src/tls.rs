//! PEM files for TLS (certificate chains, private keys, CA roots), read with the name of the
//! setting that points at them, and reading them again on SIGHUP.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::RootCertStore;

/// Why a certificate, key or CA file could not be used; the message names the setting.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TlsError(pub String);

/// Reads a PEM certificate chain from `path`, set by `key` (e.g. `http.tls_cert_file`).
pub fn read_chain(path: &Path, key: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    crate::storage::objects::install_crypto_provider();
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|e| TlsError(format!("cannot read {key} {}: {e}", path.display())))?
        .collect::<Result<_, _>>()
        .map_err(|e| {
            TlsError(format!(
                "{key} {} is not PEM certificates: {e}",
                path.display()
            ))
        })?;
    if chain.is_empty() {
        return Err(TlsError(format!(
            "{key} {} holds no certificate",
            path.display()
        )));
    }
    Ok(chain)
}

/// Reads a PEM private key from `path`, set by `key`.
pub fn read_key(path: &Path, key: &str) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| {
        TlsError(format!(
            "{key} {} is not a PEM private key: {e}",
            path.display()
        ))
    })
}

/// Reads the CA certificates to trust from `path`, set by `key`.
pub fn read_roots(path: &Path, key: &str) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in read_chain(path, key)? {
        roots.add(cert).map_err(|e| {
            TlsError(format!(
                "{key} {} holds a certificate that cannot be a CA: {e}",
                path.display()
            ))
        })?;
    }
    Ok(roots)
}

/// Settings made of files that can be read again while the node runs.
pub trait Reload: Send + Sync + 'static {
    /// Reads the files again; on failure the settings in use stay, and the error says why.
    fn reload(&self) -> Result<(), TlsError>;
    /// What was read, for the log line (e.g. the certificate's path).
    fn describe(&self) -> String;
}

/// Reads `files` again on every SIGHUP, for as long as they are in use.
pub fn reload_on_sighup<T: Reload>(files: &Arc<T>) {
    #[cfg(unix)]
    {
        let files = Arc::downgrade(files);
        let Ok(mut hangups) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        else {
            tracing::warn!("cannot listen for SIGHUP; certificates are read at start only");
            return;
        };
        tokio::spawn(async move {
            while hangups.recv().await.is_some() {
                let Some(files) = files.upgrade() else { return };
                match files.reload() {
                    Ok(()) => {
                        tracing::info!(what = %files.describe(), "certificate read again (SIGHUP)")
                    }
                    Err(e) => {
                        tracing::error!(what = %files.describe(), error = %e, "certificate not read again; the one in use stays")
                    }
                }
            }
        });
    }
}
