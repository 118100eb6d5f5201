//! HTTPS: the certificate chain and key from PEM files, read again on SIGHUP (a connection
//! keeps the certificate it began with; new ones get the new one).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::ServerConfig;

pub use crate::tls::TlsError;
use crate::tls::{read_chain, read_key, Reload};

/// The node's certificate and key, and the TLS settings made of them.
pub struct TlsFiles {
    cert: PathBuf,
    key: PathBuf,
    current: parking_lot::RwLock<Arc<ServerConfig>>,
}

fn load(cert: &Path, key: &Path) -> Result<ServerConfig, TlsError> {
    let chain = read_chain(cert, "http.tls_cert_file")?;
    let key_der = read_key(key, "http.tls_key_file")?;
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

    /// An acceptor with the certificate in use now.
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(Arc::clone(&self.current.read()))
    }
}

impl Reload for TlsFiles {
    fn reload(&self) -> Result<(), TlsError> {
        let config = load(&self.cert, &self.key)?;
        *self.current.write() = Arc::new(config);
        Ok(())
    }

    fn describe(&self) -> String {
        format!("http {}", self.cert.display())
    }
}
