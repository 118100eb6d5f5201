//! Who may do what: tokens with roles ([`tokens`]), what each route and MCP tool needs
//! ([`policy`]), and the node's view of its tokens file, read again when it changes.

pub mod audit;
pub mod limits;
pub mod policy;
pub mod tokens;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

pub use audit::{AuditEntry, AuditLog};
pub use limits::RateLimiter;
pub use policy::{mcp_role, mcp_tools, rest_role};
pub use tokens::{Refused, Role, TokenEntry, Tokens, TokensError};

/// Options that create a file readable and writable by its owner only (tokens, their key,
/// their lock, the audit log).
pub(crate) fn owner_only() -> std::fs::OpenOptions {
    let mut options = std::fs::OpenOptions::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options
}

/// How often the tokens file is looked at for changes.
const RELOAD_EVERY: Duration = Duration::from_secs(2);

/// The caller a request was let in as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// the token's id (`-` when tokens are off)
    pub token: String,
    /// what it may do
    pub role: Role,
}

/// The node's tokens, when it requires them.
pub struct Auth {
    path: Option<PathBuf>,
    tokens: parking_lot::RwLock<(Arc<Tokens>, Option<SystemTime>)>,
}

impl Auth {
    /// Tokens off: every caller may do everything (a node on loopback without a tokens file,
    /// or started with `--insecure`).
    pub fn off() -> Arc<Auth> {
        Arc::new(Auth {
            path: None,
            tokens: parking_lot::RwLock::new((Arc::new(Tokens::default()), None)),
        })
    }

    /// Tokens from `path`, read now; refused when the file is not a tokens file.
    pub fn from_file(path: PathBuf) -> Result<Arc<Auth>, TokensError> {
        let tokens = Tokens::load(&path)?;
        let modified = modified(&path);
        Ok(Arc::new(Auth {
            path: Some(path),
            tokens: parking_lot::RwLock::new((Arc::new(tokens), modified)),
        }))
    }

    /// Whether requests need a token.
    pub fn required(&self) -> bool {
        self.path.is_some()
    }

    /// The caller a `Authorization: Bearer` token (if any) makes, or why it is refused.
    pub fn caller(&self, bearer: Option<&str>) -> Result<Caller, Refused> {
        if !self.required() {
            return Ok(Caller {
                token: "-".to_string(),
                role: Role::Admin,
            });
        }
        let token = bearer.ok_or(Refused::Missing)?;
        let tokens = Arc::clone(&self.tokens.read().0);
        let entry = tokens.check(token, chrono::Utc::now())?;
        Ok(Caller {
            token: entry.id.clone(),
            role: entry.role,
        })
    }

    /// Reads the tokens file again if it changed; a file that no longer reads keeps the
    /// tokens read before, with an error logged.
    pub fn reload_if_changed(&self) {
        let Some(path) = &self.path else { return };
        let now = modified(path);
        if now == self.tokens.read().1 {
            return;
        }
        match Tokens::load(path) {
            Ok(tokens) => {
                tracing::info!(path = %path.display(), tokens = tokens.tokens.len(), "tokens file read again");
                *self.tokens.write() = (Arc::new(tokens), now);
            }
            Err(e) => {
                tracing::error!(error = %e, "tokens file changed but cannot be read; the tokens read before stay in force");
                self.tokens.write().1 = now;
            }
        }
    }

    /// Looks at the tokens file every two seconds, for as long as the node runs.
    pub fn watch(self: &Arc<Self>) {
        if !self.required() {
            return;
        }
        let auth = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(RELOAD_EVERY).await;
                let Some(auth) = auth.upgrade() else { return };
                tokio::task::spawn_blocking(move || auth.reload_if_changed())
                    .await
                    .ok();
            }
        });
    }
}

fn modified(path: &std::path::Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}
