//! An upload's `manifest.json` and its validation (the original Akosha's rules).

use chrono::{DateTime, Duration, Utc};
use serde_json::{Map, Value};

use crate::ingest::batch::json_kind;

/// Most conversations one upload may declare.
pub const MAX_CONVERSATION_COUNT: u64 = 1_000_000;
/// Longest accepted file name in `files`.
const MAX_FILE_NAME: usize = 255;
/// How far in the future `uploaded_at` may lie (clock skew between machines).
const MAX_FUTURE_SKEW_SECS: i64 = 5 * 60;

/// How a data file is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// gzip (RFC 1952)
    Gzip,
    /// Zstandard
    Zstd,
    /// LZ4 frame format
    Lz4,
}

impl Compression {
    /// Parses `gzip`, `zstd` or `lz4`; `none` and an absent value are `None`.
    pub fn parse(name: &str) -> Result<Option<Compression>, String> {
        match name {
            "gzip" => Ok(Some(Compression::Gzip)),
            "zstd" => Ok(Some(Compression::Zstd)),
            "lz4" => Ok(Some(Compression::Lz4)),
            "none" | "" => Ok(None),
            other => Err(format!("expected gzip, zstd or lz4, got {other:?}")),
        }
    }

    /// The format's name.
    pub fn name(self) -> &'static str {
        match self {
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
            Compression::Lz4 => "lz4",
        }
    }
}

/// One entry of a manifest's `files`: a bare name, or Session-Buddy's object.
#[derive(Debug, Clone, PartialEq)]
pub struct ManifestFile {
    /// the file's name inside the upload
    pub name: String,
    /// its full object key, when the manifest gives one
    pub path: Option<String>,
    /// how it is compressed, when the manifest says
    pub compression: Option<Compression>,
    /// sha256 hex of the file, when the manifest gives one (Session-Buddy leaves it empty)
    pub checksum: Option<String>,
}

/// A validated manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    /// when the upload was made (`uploaded_at`, or Session-Buddy's `timestamp`)
    pub uploaded_at: DateTime<Utc>,
    /// conversations the data file holds, when declared
    pub conversation_count: Option<u64>,
    /// format version, `^\d+\.\d+$`
    pub version: String,
    /// kind of system that uploaded, 1 to 50 characters
    pub system_type: Option<String>,
    /// sha256 hex of the data file
    pub checksum: Option<String>,
    /// how the data file is compressed (`compressed` + `compression_format`)
    pub compression: Option<Compression>,
    /// the upload's files
    pub files: Vec<ManifestFile>,
    /// the system id the manifest names, if it names one
    pub system_id: Option<String>,
    /// the upload id the manifest names, if it names one
    pub upload_id: Option<String>,
    /// free-form attributes
    pub metadata: Map<String, Value>,
}

/// What a manifest must hold, by upload layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManifestRules {
    /// `systems/<id>/<upload>/`: `uploaded_at` and `conversation_count` required
    Original,
    /// Session-Buddy's `systems/<id>/uploads/<upload>/`: `timestamp` stands for `uploaded_at`, no count
    SessionBuddy,
}

impl Manifest {
    /// Parses and validates manifest bytes; the error names the field and what was wrong.
    pub fn parse(bytes: &[u8], rules: ManifestRules, now: DateTime<Utc>) -> Result<Self, String> {
        let value: Value = serde_json::from_slice(bytes)
            .map_err(|e| format!("manifest is not valid JSON: {e}"))?;
        let Value::Object(mut m) = value else {
            return Err(format!(
                "manifest must be a JSON object, got {}",
                json_kind(&value)
            ));
        };
        let uploaded_at = match (m.remove("uploaded_at"), m.remove("timestamp"), rules) {
            (Some(v), _, _) => parse_time("uploaded_at", &v, now)?,
            (None, Some(v), ManifestRules::SessionBuddy) => parse_time("timestamp", &v, now)?,
            (None, _, _) => return Err("manifest field uploaded_at is required".to_string()),
        };
        let conversation_count = match (m.remove("conversation_count"), rules) {
            (Some(v), _) => Some(int_field(
                "conversation_count",
                &v,
                0,
                MAX_CONVERSATION_COUNT,
            )?),
            (None, ManifestRules::Original) => {
                return Err("manifest field conversation_count is required".to_string())
            }
            (None, ManifestRules::SessionBuddy) => None,
        };
        if let Some(v) = m.remove("total_size_bytes") {
            int_field("total_size_bytes", &v, 0, 100_000_000_000)?;
        }
        let version = match m.remove("version") {
            None | Some(Value::Null) => "1.0".to_string(),
            Some(v) => {
                let s = str_field("version", &v)?;
                if !is_version(&s) {
                    return Err(format!(
                        "manifest field version must look like 1.0 (^\\d+\\.\\d+$), got {s:?}"
                    ));
                }
                s
            }
        };
        let system_type = optional_str(&mut m, "system_type")?;
        if let Some(t) = &system_type {
            let n = t.chars().count();
            if !(1..=50).contains(&n) {
                return Err(format!(
                    "manifest field system_type must be 1 to 50 characters, got {n}"
                ));
            }
        }
        let checksum = optional_str(&mut m, "checksum")?;
        if let Some(c) = &checksum {
            check_sha256("checksum", c)?;
        }
        let compressed = match m.remove("compressed") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => b,
            Some(v) => {
                return Err(format!(
                    "manifest field compressed must be true or false, got {}",
                    json_kind(&v)
                ))
            }
        };
        let format = optional_str(&mut m, "compression_format")?;
        let compression = match (compressed, format) {
            (false, None) => None,
            (true, None) => {
                return Err(
                    "manifest says compressed but gives no compression_format (gzip, zstd or lz4)"
                        .to_string(),
                )
            }
            (false, Some(f)) => {
                return Err(format!(
                    "manifest gives compression_format {f:?} but compressed is not true"
                ))
            }
            (true, Some(f)) => Some(Compression::parse(&f).ok().flatten().ok_or_else(|| {
                format!("manifest field compression_format must be gzip, zstd or lz4, got {f:?}")
            })?),
        };
        let files = match m.remove("files") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, v)| parse_file(i, v))
                .collect::<Result<_, _>>()?,
            Some(v) => {
                return Err(format!(
                    "manifest field files must be an array, got {}",
                    json_kind(&v)
                ))
            }
        };
        let system_id = optional_str(&mut m, "system_id")?;
        let upload_id = optional_str(&mut m, "upload_id")?;
        let metadata = match m.remove("metadata") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(o)) => o,
            Some(v) => {
                return Err(format!(
                    "manifest field metadata must be an object, got {}",
                    json_kind(&v)
                ))
            }
        };
        Ok(Manifest {
            uploaded_at,
            conversation_count,
            version,
            system_type,
            checksum,
            compression,
            files,
            system_id,
            upload_id,
            metadata,
        })
    }
}

fn parse_time(field: &str, v: &Value, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    let t = match v {
        Value::String(s) => DateTime::parse_from_rfc3339(s)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| {
                format!("manifest field {field} must be an ISO 8601 date-time with a timezone offset, got {s:?} ({e})")
            })?,
        Value::Number(n) => n
            .as_i64()
            .and_then(|secs| DateTime::from_timestamp(secs, 0))
            .ok_or_else(|| format!("manifest field {field} must be a date-time, got {n}"))?,
        other => {
            return Err(format!(
                "manifest field {field} must be an ISO 8601 date-time, got {}",
                json_kind(other)
            ))
        }
    };
    if t > now + Duration::seconds(MAX_FUTURE_SKEW_SECS) {
        return Err(format!(
            "manifest field {field} must not be more than 5 minutes in the future, got {} (now {})",
            t.to_rfc3339(),
            now.to_rfc3339()
        ));
    }
    Ok(t)
}

fn int_field(field: &str, v: &Value, min: u64, max: u64) -> Result<u64, String> {
    match v.as_u64() {
        Some(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(format!(
            "manifest field {field} must be an integer from {min} to {max}, got {v}"
        )),
    }
}

fn str_field(field: &str, v: &Value) -> Result<String, String> {
    match v {
        Value::String(s) => Ok(s.clone()),
        other => Err(format!(
            "manifest field {field} must be a string, got {}",
            json_kind(other)
        )),
    }
}

fn optional_str(m: &mut Map<String, Value>, field: &str) -> Result<Option<String>, String> {
    match m.remove(field) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => str_field(field, &v).map(Some),
    }
}

fn is_version(s: &str) -> bool {
    let mut parts = s.split('.');
    let ok =
        |p: Option<&str>| p.is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    ok(parts.next()) && ok(parts.next()) && parts.next().is_none()
}

/// Checks a sha256 hex digest: 64 lowercase hex digits.
pub fn check_sha256(field: &str, c: &str) -> Result<(), String> {
    if c.len() == 64 && c.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        Ok(())
    } else {
        Err(format!(
            "manifest field {field} must be a sha256 digest of 64 lowercase hex digits, got {c:?}"
        ))
    }
}

/// Checks a file name: no path separators, parent references, home references or NUL.
pub fn check_file_name(field: &str, name: &str) -> Result<(), String> {
    let bad = name.is_empty()
        || name.len() > MAX_FILE_NAME
        || name.contains("..")
        || name.contains('/')
        || name.contains('\\')
        || name.contains('~')
        || name.contains('\0')
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if bad {
        Err(format!(
            "manifest field {field} must be a plain file name of 1 to 255 characters from [A-Za-z0-9_.-] without .., /, ~ or NUL, got {name:?}"
        ))
    } else {
        Ok(())
    }
}

fn parse_file(i: usize, v: &Value) -> Result<ManifestFile, String> {
    let field = format!("files[{i}]");
    match v {
        Value::String(name) => {
            check_file_name(&field, name)?;
            Ok(ManifestFile {
                name: name.clone(),
                path: None,
                compression: None,
                checksum: None,
            })
        }
        Value::Object(o) => {
            let name = match o.get("name") {
                Some(Value::String(s)) => s.clone(),
                Some(other) => {
                    return Err(format!(
                        "manifest field {field}.name must be a string, got {}",
                        json_kind(other)
                    ))
                }
                None => return Err(format!("manifest field {field}.name is required")),
            };
            check_file_name(&format!("{field}.name"), &name)?;
            let text = |key: &str| -> Result<Option<String>, String> {
                match o.get(key) {
                    None | Some(Value::Null) => Ok(None),
                    Some(Value::String(s)) if s.is_empty() => Ok(None),
                    Some(Value::String(s)) => Ok(Some(s.clone())),
                    Some(other) => Err(format!(
                        "manifest field {field}.{key} must be a string, got {}",
                        json_kind(other)
                    )),
                }
            };
            let path = text("path")?;
            if let Some(p) = &path {
                if p.contains("..") || p.contains('\0') || p.starts_with('/') {
                    return Err(format!(
                        "manifest field {field}.path must be an object key inside the upload, got {p:?}"
                    ));
                }
            }
            let compression = match text("compression")? {
                None => None,
                Some(c) => Compression::parse(&c)
                    .map_err(|e| format!("manifest field {field}.compression: {e}"))?,
            };
            let checksum = text("checksum")?;
            if let Some(c) = &checksum {
                check_sha256(&format!("{field}.checksum"), c)?;
            }
            if let Some(size) = o.get("size_bytes") {
                if !size.is_u64() {
                    return Err(format!(
                        "manifest field {field}.size_bytes must be a non-negative integer, got {size}"
                    ));
                }
            }
            Ok(ManifestFile {
                name,
                path,
                compression,
                checksum,
            })
        }
        other => Err(format!(
            "manifest field {field} must be a file name or an object with name, got {}",
            json_kind(other)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-23T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn parse(v: Value) -> Result<Manifest, String> {
        Manifest::parse(v.to_string().as_bytes(), ManifestRules::Original, now())
    }

    fn ok() -> Value {
        json!({"uploaded_at": "2026-11-23T11:00:00+00:00", "conversation_count": 3})
    }

    fn with(key: &str, v: Value) -> Value {
        let mut m = ok();
        m[key] = v;
        m
    }

    #[test]
    fn a_minimal_manifest_validates_with_defaults() {
        let m = parse(ok()).unwrap();
        assert_eq!(m.conversation_count, Some(3));
        assert_eq!(m.version, "1.0");
        assert_eq!(m.compression, None);
    }

    #[test]
    fn each_rule_names_its_field() {
        let cases = [
            (json!({"conversation_count": 1}), "uploaded_at is required"),
            (
                json!({"uploaded_at": "2026-11-23T11:00:00Z"}),
                "conversation_count is required",
            ),
            (
                with("uploaded_at", json!("2026-11-23T12:06:00Z")),
                "5 minutes in the future",
            ),
            (with("uploaded_at", json!("2026-11-23 11:00")), "ISO 8601"),
            (
                with("conversation_count", json!(-1)),
                "conversation_count must be an integer from 0 to 1000000",
            ),
            (
                with("conversation_count", json!(1_000_001)),
                "conversation_count",
            ),
            (
                with("version", json!("1.0.0")),
                "version must look like 1.0",
            ),
            (
                with("system_type", json!("")),
                "system_type must be 1 to 50",
            ),
            (with("system_type", json!("x".repeat(51))), "system_type"),
            (with("checksum", json!("ABC")), "checksum must be a sha256"),
            (with("compressed", json!(true)), "no compression_format"),
            (
                with("compression_format", json!("gzip")),
                "compressed is not true",
            ),
            (with("files", json!(["../etc/passwd"])), "files[0]"),
            (with("files", json!(["a/b"])), "files[0]"),
            (with("files", json!(["~root"])), "files[0]"),
            (with("files", json!(["a\u{0}b"])), "files[0]"),
            (with("metadata", json!([1])), "metadata must be an object"),
        ];
        for (manifest, expected) in cases {
            let e = parse(manifest.clone()).unwrap_err();
            assert!(e.contains(expected), "{manifest}: {e}");
        }
        let mut bad_format = ok();
        bad_format["compressed"] = json!(true);
        bad_format["compression_format"] = json!("brotli");
        assert!(parse(bad_format).unwrap_err().contains("gzip, zstd or lz4"));
        assert!(Manifest::parse(b"[]", ManifestRules::Original, now())
            .unwrap_err()
            .contains("must be a JSON object"));
        assert!(Manifest::parse(b"{", ManifestRules::Original, now())
            .unwrap_err()
            .contains("not valid JSON"));
    }

    #[test]
    fn session_buddy_manifest_is_accepted_with_its_rules() {
        let m = json!({
            "upload_id": "20261123_110000_laptop-1",
            "system_id": "laptop-1",
            "timestamp": "2026-11-23T11:00:00.123456+00:00",
            "files": [{"name": "reflection.duckdb",
                       "path": "systems/laptop-1/uploads/20261123_110000_laptop-1/reflection.duckdb",
                       "size_bytes": 0, "compression": "gzip", "checksum": ""}],
            "metadata": {"uploader": "session-buddy", "version": "1.0.0"}
        });
        let parsed =
            Manifest::parse(m.to_string().as_bytes(), ManifestRules::SessionBuddy, now()).unwrap();
        assert_eq!(parsed.conversation_count, None);
        assert_eq!(parsed.files[0].name, "reflection.duckdb");
        assert_eq!(parsed.files[0].compression, Some(Compression::Gzip));
        assert_eq!(parsed.files[0].checksum, None);
        assert_eq!(parsed.system_id.as_deref(), Some("laptop-1"));
        // the original rules want uploaded_at
        assert!(parse(m).unwrap_err().contains("uploaded_at"));
    }
}
