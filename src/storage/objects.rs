//! Opening the object store a node reads uploads from: a local directory or an S3 bucket.

use std::sync::{Arc, Once};

use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::local::LocalFileSystem;
use object_store::prefix::PrefixStore;
use object_store::{ClientConfigKey, ObjectStore, RetryConfig};

use crate::config::ObjectStoreConfig;

/// Why the object store could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenStoreError {
    /// The URL's scheme is not one we serve.
    #[error("object store url must be file:///abs/path or s3://bucket/prefix, got {0:?}")]
    Scheme(String),
    /// The local directory could not be created.
    #[error("cannot create object store directory {dir}: {source}")]
    Directory {
        /// the directory
        dir: String,
        /// the I/O error
        source: std::io::Error,
    },
    /// The backend refused its configuration.
    #[error("cannot open object store {url}: {source}")]
    Backend {
        /// the URL
        url: String,
        /// the backend's error
        source: object_store::Error,
    },
}

/// Installs rustls's ring provider for the S3 client's TLS; later calls do nothing.
pub fn install_crypto_provider() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        // an error means a provider is already installed, which is what we want
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// Opens the store at `url` (`file:///abs/path` or `s3://bucket/prefix`).
///
/// S3 settings not given in `config` come from the usual AWS environment variables.
/// Requests are not retried here: [`crate::storage::resilient::ResilientStore`] retries them
/// with jitter behind its circuit breaker.
pub fn open_object_store(
    url: &url::Url,
    config: &ObjectStoreConfig,
) -> Result<Arc<dyn ObjectStore>, OpenStoreError> {
    match url.scheme() {
        "file" => {
            let dir = url
                .to_file_path()
                .map_err(|_| OpenStoreError::Scheme(url.to_string()))?;
            std::fs::create_dir_all(&dir).map_err(|source| OpenStoreError::Directory {
                dir: dir.display().to_string(),
                source,
            })?;
            let store = LocalFileSystem::new_with_prefix(&dir)
                .map_err(|source| OpenStoreError::Backend {
                    url: url.to_string(),
                    source,
                })?
                .with_automatic_cleanup(true);
            Ok(Arc::new(store))
        }
        "s3" | "s3a" => {
            install_crypto_provider();
            let bucket = url.host_str().unwrap_or_default();
            let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
            if let Some(v) = &config.endpoint {
                builder = builder.with_endpoint(v);
            }
            if let Some(v) = &config.region {
                builder = builder.with_region(v);
            }
            if let Some(v) = &config.access_key_id {
                builder = builder.with_access_key_id(v);
            }
            if let Some(v) = &config.secret_access_key {
                builder = builder.with_secret_access_key(v);
            }
            if let Some(v) = config.allow_http {
                builder = builder.with_allow_http(v);
            }
            // through with_config, so that AWS_ALLOW_HTTP and the other client settings read
            // from the environment are kept (with_client_options would replace them all)
            let timeout = |ms: u64| format!("{ms}ms");
            builder = builder
                .with_config(
                    AmazonS3ConfigKey::Client(ClientConfigKey::Timeout),
                    timeout(config.request_timeout_ms),
                )
                .with_config(
                    AmazonS3ConfigKey::Client(ClientConfigKey::ConnectTimeout),
                    timeout(config.connect_timeout_ms),
                );
            let retry = RetryConfig {
                max_retries: 0,
                ..RetryConfig::default()
            };
            let store =
                builder
                    .with_retry(retry)
                    .build()
                    .map_err(|source| OpenStoreError::Backend {
                        url: url.to_string(),
                        source,
                    })?;
            let prefix = url.path().trim_matches('/');
            if prefix.is_empty() {
                Ok(Arc::new(store))
            } else {
                Ok(Arc::new(PrefixStore::new(store, prefix.to_string())))
            }
        }
        _ => Err(OpenStoreError::Scheme(url.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::path::Path;
    use object_store::ObjectStoreExt;

    #[tokio::test]
    async fn file_url_opens_a_directory_and_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let url = url::Url::from_directory_path(dir.path().join("objects")).unwrap();
        let store = open_object_store(&url, &ObjectStoreConfig::default()).unwrap();
        store
            .put(&Path::from("systems/a/u/manifest.json"), "{}".into())
            .await
            .unwrap();
        let got = store
            .get(&Path::from("systems/a/u/manifest.json"))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(&got[..], b"{}");
        assert!(dir
            .path()
            .join("objects/systems/a/u/manifest.json")
            .is_file());
    }

    #[test]
    fn other_schemes_are_refused() {
        let url = url::Url::parse("gs://bucket/x").unwrap();
        let e = open_object_store(&url, &ObjectStoreConfig::default()).unwrap_err();
        assert!(e.to_string().contains("s3://bucket/prefix"), "{e}");
    }
}
