//! The tokens file: each token's id, role, expiry and revocation, and the SHA-256 of the
//! token, never the token itself.
//!
//! A token is `akosha_<id>_<secret>`: 12 hex digits that name its entry and 64 hex digits
//! (256 random bits). SHA-256 suffices to keep such a token: a password hash (Argon2id)
//! slows down guessing low-entropy secrets, but 256 random bits cannot be guessed, and a
//! fast hash keeps checking a request's token in microseconds.

use std::path::Path;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// What a token may do; each role may do what the ones before it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// search, stats, graph and analytics queries, metrics
    Reader,
    /// and ingest, the memory and graph store tools
    Writer,
    /// and delete, age, rebuild, backup, upload retries
    Admin,
}

impl Role {
    /// The role's name.
    pub fn name(self) -> &'static str {
        match self {
            Role::Reader => "reader",
            Role::Writer => "writer",
            Role::Admin => "admin",
        }
    }

    /// A role by name.
    pub fn parse(name: &str) -> Option<Role> {
        match name {
            "reader" => Some(Role::Reader),
            "writer" => Some(Role::Writer),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

/// One token's entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenEntry {
    /// the token's id (also in the token itself)
    pub id: String,
    /// what it may do
    pub role: Role,
    /// HMAC-SHA256 of the whole token under the file's key (`<file>.key`), hex
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub hmac_sha256: String,
    /// SHA-256 of the whole token, hex: tokens made before the key (still taken)
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sha256: String,
    /// who or what it is for
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// when it was made
    pub created_at: DateTime<Utc>,
    /// when it stops working, if ever
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    /// when it was revoked, if it was
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<DateTime<Utc>>,
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// No `Authorization: Bearer` header.
    #[error("this node requires a token: send Authorization: Bearer <token>")]
    Missing,
    /// Not a token of this node.
    #[error("the token is not valid for this node")]
    Unknown,
    /// Expired.
    #[error("the token {0} expired at {1}")]
    Expired(String, String),
    /// Revoked.
    #[error("the token {0} was revoked at {1}")]
    Revoked(String, String),
}

/// The tokens file's content, and the key its tokens are hashed with.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Tokens {
    /// every token ever made (revoked ones stay, marked)
    pub tokens: Vec<TokenEntry>,
    /// the key of the file (`<file>.key`), made with the first token
    #[serde(skip)]
    key: Option<[u8; 32]>,
}

/// Why the tokens file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TokensError {
    /// It could not be read or written.
    #[error("tokens file {path}: {message}")]
    Io {
        /// the file
        path: String,
        /// what failed
        message: String,
    },
    /// It is not a tokens file.
    #[error("tokens file {path} is not valid: {message}")]
    Invalid {
        /// the file
        path: String,
        /// what is wrong
        message: String,
    },
    /// The token asked for is not in it.
    #[error("no token {0} in the file")]
    NoSuchToken(String),
}

/// The file named as `path` with `suffix` added (`<tokens>.key`, `<tokens>.lock`).
fn beside(path: &Path, suffix: &str) -> std::path::PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    path.with_file_name(name)
}

/// The key in a key file (64 hex digits), `None` when there is no file.
fn read_key(path: &Path) -> Result<Option<[u8; 32]>, TokensError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(TokensError::Io {
                path: path.display().to_string(),
                message: e.to_string(),
            })
        }
    };
    let text = text.trim();
    let bytes: Option<Vec<u8>> = (text.len() == 64)
        .then(|| {
            (0..32)
                .map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok())
                .collect()
        })
        .flatten();
    match bytes.and_then(|b| <[u8; 32]>::try_from(b).ok()) {
        Some(key) => Ok(Some(key)),
        None => Err(TokensError::Invalid {
            path: path.display().to_string(),
            message: format!("expected 64 hex digits, got {} characters", text.len()),
        }),
    }
}

/// Writes a file whole, readable by its owner only: a temporary file renamed over it.
fn write_whole(path: &Path, bytes: &[u8]) -> Result<(), TokensError> {
    use std::io::Write;
    let io = |e: std::io::Error| TokensError::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    };
    // a name of its own, so that a writer not holding the lock cannot mix into it
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    let mut f = super::owner_only()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .map_err(io)?;
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

/// HMAC-SHA256 (RFC 2104) of `message` under a 32-byte `key`.
fn hmac_sha256(key: &[u8; 32], message: &[u8]) -> [u8; 32] {
    let mut inner_pad = [0x36u8; 64];
    let mut outer_pad = [0x5cu8; 64];
    for (i, b) in key.iter().enumerate() {
        inner_pad[i] ^= b;
        outer_pad[i] ^= b;
    }
    let inner = Sha256::new()
        .chain_update(inner_pad)
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(outer_pad)
        .chain_update(inner)
        .finalize()
        .into()
}

/// SHA-256 of a token, hex.
pub fn digest(token: &str) -> String {
    format!("{:x}", Sha256::digest(token.as_bytes()))
}

/// Whether two strings are equal, in time that does not depend on where they differ.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Tokens {
    /// The file at `path`; an absent file is an empty one.
    pub fn load(path: &Path) -> Result<Tokens, TokensError> {
        let mut tokens: Tokens = match std::fs::read_to_string(path) {
            Ok(text) => serde_json::from_str(&text).map_err(|e| TokensError::Invalid {
                path: path.display().to_string(),
                message: e.to_string(),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Tokens::default(),
            Err(e) => {
                return Err(TokensError::Io {
                    path: path.display().to_string(),
                    message: e.to_string(),
                })
            }
        };
        let key_file = beside(path, ".key");
        tokens.key = read_key(&key_file)?;
        if tokens.key.is_none() && tokens.tokens.iter().any(|t| !t.hmac_sha256.is_empty()) {
            return Err(TokensError::Invalid {
                path: key_file.display().to_string(),
                message: "missing: the tokens made with this key cannot be checked without it; keep it beside the tokens file".to_string(),
            });
        }
        Ok(tokens)
    }

    /// Changes the file at `path` with `change`, holding an exclusive lock on `<path>.lock`
    /// from reading to writing, so that two writers at once (two shells running
    /// `akosha-admin token`) each see the other's change; answers what `change` answered.
    pub fn update<T>(
        path: &Path,
        change: impl FnOnce(&mut Tokens) -> Result<T, TokensError>,
    ) -> Result<T, TokensError> {
        let io = |e: std::io::Error| TokensError::Io {
            path: path.display().to_string(),
            message: e.to_string(),
        };
        let lock = super::owner_only()
            .write(true)
            .create(true)
            .truncate(false)
            .open(beside(path, ".lock"))
            .map_err(io)?;
        lock.lock().map_err(io)?;
        let mut tokens = Tokens::load(path)?;
        let answer = change(&mut tokens)?;
        tokens.save(path)?;
        // the lock goes with the file handle, also on an early return
        drop(lock);
        Ok(answer)
    }

    /// Writes the file whole (a new file renamed over the old, readable by its owner only),
    /// and its key file first when there is none yet.
    pub fn save(&self, path: &Path) -> Result<(), TokensError> {
        if let Some(key) = &self.key {
            let at = beside(path, ".key");
            if !at.exists() {
                write_whole(&at, format!("{}\n", hex(key)).as_bytes())?;
            }
        }
        let mut text = serde_json::to_string_pretty(self).map_err(|e| TokensError::Invalid {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        text.push('\n');
        write_whole(path, text.as_bytes())
    }

    /// Makes a token of `role`; answers it (the only time it is seen) and keeps its hash.
    pub fn create(
        &mut self,
        role: Role,
        name: &str,
        expires_at: Option<DateTime<Utc>>,
    ) -> Result<String, TokensError> {
        let mut bytes = [0u8; 38];
        getrandom::fill(&mut bytes).map_err(|e| TokensError::Io {
            path: "(random source)".to_string(),
            message: e.to_string(),
        })?;
        let id = hex(&bytes[..6]);
        let token = format!("akosha_{id}_{}", hex(&bytes[6..]));
        let key = match self.key {
            Some(k) => k,
            None => {
                let mut k = [0u8; 32];
                getrandom::fill(&mut k).map_err(|e| TokensError::Io {
                    path: "(random source)".to_string(),
                    message: e.to_string(),
                })?;
                self.key = Some(k);
                k
            }
        };
        self.tokens.push(TokenEntry {
            id,
            role,
            hmac_sha256: hex(&hmac_sha256(&key, token.as_bytes())),
            sha256: String::new(),
            name: name.to_string(),
            created_at: Utc::now(),
            expires_at,
            revoked_at: None,
        });
        Ok(token)
    }

    /// Revokes the token `id`.
    pub fn revoke(&mut self, id: &str) -> Result<(), TokensError> {
        let entry = self
            .tokens
            .iter_mut()
            .find(|t| t.id == id)
            .ok_or_else(|| TokensError::NoSuchToken(id.to_string()))?;
        if entry.revoked_at.is_none() {
            entry.revoked_at = Some(Utc::now());
        }
        Ok(())
    }

    /// The entry of a token presented at `now`, or why it is refused.
    pub fn check(&self, token: &str, now: DateTime<Utc>) -> Result<&TokenEntry, Refused> {
        let id = token
            .strip_prefix("akosha_")
            .and_then(|rest| rest.split('_').next())
            .ok_or(Refused::Unknown)?;
        let entry = self
            .tokens
            .iter()
            .find(|t| t.id == id)
            .ok_or(Refused::Unknown)?;
        let matches = match (&self.key, entry.hmac_sha256.is_empty()) {
            (Some(key), false) => same(
                &entry.hmac_sha256,
                &hex(&hmac_sha256(key, token.as_bytes())),
            ),
            (None, false) => false,
            (_, true) => !entry.sha256.is_empty() && same(&entry.sha256, &digest(token)),
        };
        if !matches {
            return Err(Refused::Unknown);
        }
        if let Some(at) = entry.revoked_at {
            return Err(Refused::Revoked(entry.id.clone(), at.to_rfc3339()));
        }
        if let Some(at) = entry.expires_at.filter(|at| *at <= now) {
            return Err(Refused::Expired(entry.id.clone(), at.to_rfc3339()));
        }
        Ok(entry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_checked_by_hash_expiry_and_revocation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.json");
        let mut t = Tokens::load(&path).unwrap();
        let reader = t.create(Role::Reader, "ci", None).unwrap();
        let soon = Utc::now() + chrono::Duration::seconds(60);
        let admin = t.create(Role::Admin, "", Some(soon)).unwrap();
        t.save(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains(&reader) && !text.contains(&admin), "{text}");
        let t = Tokens::load(&path).unwrap();
        let now = Utc::now();
        assert_eq!(t.check(&reader, now).unwrap().role, Role::Reader);
        assert_eq!(t.check(&admin, now).unwrap().role, Role::Admin);
        let later = now + chrono::Duration::seconds(120);
        assert!(matches!(t.check(&admin, later), Err(Refused::Expired(..))));
        // one character off, another node's token, garbage
        let mut wrong = reader.clone();
        wrong.pop();
        wrong.push('x');
        for bad in [wrong.as_str(), "akosha_000000000000_00", "Bearer", ""] {
            assert_eq!(t.check(bad, now).err(), Some(Refused::Unknown), "{bad}");
        }
        let mut t = t;
        let id = t.tokens[0].id.clone();
        t.revoke(&id).unwrap();
        assert!(matches!(t.check(&reader, now), Err(Refused::Revoked(..))));
        assert!(t.revoke("nope").is_err());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            for file in [path.clone(), beside(&path, ".key")] {
                let mode = std::fs::metadata(&file).unwrap().permissions().mode();
                assert_eq!(mode & 0o777, 0o600, "{}", file.display());
            }
        }
    }

    #[test]
    fn tokens_are_hashed_with_the_files_key_and_older_files_still_work() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.json");
        let mut t = Tokens::load(&path).unwrap();
        let token = t.create(Role::Writer, "", None).unwrap();
        t.save(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let key = std::fs::read_to_string(beside(&path, ".key")).unwrap();
        assert_eq!(key.trim().len(), 64);
        assert!(!text.contains(&token) && !key.contains(&token));
        // the file alone says nothing of the token: its plain hash is not in it
        assert!(!text.contains(&digest(&token)), "{text}");
        assert!(text.contains("hmac_sha256"), "{text}");
        let now = Utc::now();
        assert_eq!(
            Tokens::load(&path)
                .unwrap()
                .check(&token, now)
                .unwrap()
                .role,
            Role::Writer
        );
        // another key: the same file takes no token
        std::fs::write(beside(&path, ".key"), format!("{}\n", "ab".repeat(32))).unwrap();
        let other = Tokens::load(&path).unwrap();
        assert_eq!(other.check(&token, now).err(), Some(Refused::Unknown));
        // no key file: refused loudly, naming it
        std::fs::remove_file(beside(&path, ".key")).unwrap();
        let err = Tokens::load(&path).unwrap_err().to_string();
        assert!(
            err.contains("tokens.json.key") && err.contains("missing"),
            "{err}"
        );
        // a file of tokens hashed before keys (plain SHA-256) keeps working
        let old = "akosha_0123456789ab_00112233445566778899aabbccddeeff00112233445566778899aabbcc";
        let legacy = format!(
            r#"{{"tokens": [{{"id": "0123456789ab", "role": "reader", "sha256": "{}", "created_at": "2026-12-01T00:00:00Z"}}]}}"#,
            digest(old)
        );
        std::fs::write(&path, legacy).unwrap();
        let t = Tokens::load(&path).unwrap();
        assert_eq!(t.check(old, now).unwrap().role, Role::Reader);
        // a bad key file is named
        std::fs::write(beside(&path, ".key"), "not hex").unwrap();
        let err = Tokens::load(&path).unwrap_err().to_string();
        assert!(err.contains("64 hex digits"), "{err}");
    }

    #[test]
    fn the_keyed_hash_is_hmac_sha256() {
        // RFC 4231 test case 2: the key "Jefe", zero-padded as HMAC pads every short key
        let mut key = [0u8; 32];
        key[..4].copy_from_slice(b"Jefe");
        assert_eq!(
            hex(&hmac_sha256(&key, b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
