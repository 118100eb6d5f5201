//! Where uploads live in the object store: the two layouts and their keys.

use crate::ingest::manifest::{Compression, ManifestRules};
use crate::record::validate_system_id;

/// Name of every upload's manifest object.
pub const MANIFEST: &str = "manifest.json";
/// Prefix under which every system's uploads live.
pub const SYSTEMS_PREFIX: &str = "systems";
/// Longest accepted upload id.
const MAX_UPLOAD_ID: usize = 100;

/// How an upload is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// `systems/<system_id>/<upload_id>/manifest.json` + `memories.json`
    Original,
    /// Session-Buddy's `systems/<system_id>/uploads/<upload_id>/manifest.json`
    SessionBuddy,
}

impl Layout {
    /// The manifest rules of this layout.
    pub fn rules(self) -> ManifestRules {
        match self {
            Layout::Original => ManifestRules::Original,
            Layout::SessionBuddy => ManifestRules::SessionBuddy,
        }
    }
}

/// An upload, named by its manifest's key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadKey {
    /// the manifest's object key
    pub manifest: String,
    /// the upload's prefix (the manifest's "directory"), without a trailing `/`
    pub prefix: String,
    /// the system that uploaded
    pub system_id: String,
    /// the upload's id
    pub upload_id: String,
    /// its layout
    pub layout: Layout,
}

impl UploadKey {
    /// Whether an object key names a manifest.
    pub fn is_manifest(key: &str) -> bool {
        key.rsplit('/').next() == Some(MANIFEST)
    }

    /// Reads system, upload and layout from a manifest key; the error says what is wrong.
    pub fn parse(key: &str) -> Result<UploadKey, String> {
        let parts: Vec<&str> = key.split('/').collect();
        let (system_id, upload_id, layout) = match parts.as_slice() {
            [SYSTEMS_PREFIX, system, "uploads", upload, MANIFEST] => {
                (*system, *upload, Layout::SessionBuddy)
            }
            [SYSTEMS_PREFIX, system, upload, MANIFEST] => (*system, *upload, Layout::Original),
            _ => {
                return Err(format!(
                    "manifest key must be systems/<system_id>/<upload_id>/manifest.json or systems/<system_id>/uploads/<upload_id>/manifest.json, got {key:?}"
                ))
            }
        };
        validate_system_id(system_id).map_err(|e| format!("upload key {key:?}: {e}"))?;
        validate_upload_id(upload_id).map_err(|e| format!("upload key {key:?}: {e}"))?;
        let prefix = key[..key.len() - MANIFEST.len() - 1].to_string();
        Ok(UploadKey {
            manifest: key.to_string(),
            prefix,
            system_id: system_id.to_string(),
            upload_id: upload_id.to_string(),
            layout,
        })
    }

    /// The key of a file of this upload.
    pub fn file(&self, name: &str) -> String {
        format!("{}/{name}", self.prefix)
    }
}

/// Checks an upload id against `^[A-Za-z0-9_.-]{1,100}$` without `..`.
pub fn validate_upload_id(id: &str) -> Result<(), String> {
    let ok = !id.is_empty()
        && id.len() <= MAX_UPLOAD_ID
        && !id.contains("..")
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "upload_id must match ^[A-Za-z0-9_.-]{{1,100}}$ without .., got {id:?}"
        ))
    }
}

/// The data file names we read, with the compression each name implies.
pub const DATA_FILES: [(&str, Option<Compression>); 4] = [
    ("memories.json", None),
    ("memories.json.gz", Some(Compression::Gzip)),
    ("memories.json.zst", Some(Compression::Zstd)),
    ("memories.json.lz4", Some(Compression::Lz4)),
];

/// The compression a data file's name implies, or `None` when it is not a data file we read.
pub fn data_file(name: &str) -> Option<Option<Compression>> {
    DATA_FILES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, compression)| *compression)
}

/// What a file we do not read is, for the quarantine reason.
pub fn describe_unreadable(name: &str) -> String {
    let kind = match name.rsplit('.').next() {
        Some("duckdb") => "a DuckDB database",
        Some("parquet") => "a Parquet file",
        Some("db" | "sqlite" | "sqlite3") => "a SQLite database",
        Some("json") => "a JSON file other than memories.json",
        _ => "a file",
    };
    format!("{name} ({kind})")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_layouts_parse() {
        let k = UploadKey::parse("systems/laptop-1/u.2026/manifest.json").unwrap();
        assert_eq!(
            (k.system_id.as_str(), k.upload_id.as_str(), k.layout),
            ("laptop-1", "u.2026", Layout::Original)
        );
        assert_eq!(
            k.file("memories.json"),
            "systems/laptop-1/u.2026/memories.json"
        );
        let k = UploadKey::parse("systems/h/uploads/20261123_110000_h/manifest.json").unwrap();
        assert_eq!(k.layout, Layout::SessionBuddy);
        assert_eq!(k.prefix, "systems/h/uploads/20261123_110000_h");
    }

    #[test]
    fn bad_keys_say_why() {
        for (key, expected) in [
            ("systems/a/manifest.json", "must be systems/"),
            ("systems/a/b/c/manifest.json", "must be systems/"),
            ("systems/bad%20id/u/manifest.json", "system_id"),
            ("systems/a/u%21/manifest.json", "upload_id"),
            ("systems/a/x..y/manifest.json", "upload_id"),
        ] {
            let e = UploadKey::parse(key).unwrap_err();
            assert!(e.contains(expected), "{key}: {e}");
        }
        assert!(UploadKey::is_manifest("systems/a/u/manifest.json"));
        assert!(!UploadKey::is_manifest("systems/a/u/memories.json"));
    }

    #[test]
    fn data_file_names_imply_compression() {
        assert_eq!(data_file("memories.json"), Some(None));
        assert_eq!(
            data_file("memories.json.zst"),
            Some(Some(Compression::Zstd))
        );
        assert_eq!(data_file("reflection.duckdb"), None);
        assert_eq!(
            describe_unreadable("reflection.duckdb"),
            "reflection.duckdb (a DuckDB database)"
        );
    }
}
