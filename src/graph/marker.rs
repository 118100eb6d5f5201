//! What the graph keeps of each record it counted (a marker: the copy's version and the
//! names it gave), and the tally of a change's records by system and names.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::feed::Names;
use super::store::GraphError;
use crate::version::Version;

/// What the graph holds of one record.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Marker {
    /// version of the copy counted (or of its deletion)
    pub(super) v: Version,
    /// what it gave; none when deleted
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) n: Option<Names>,
}

/// First byte of a marker in its compact form (a JSON marker starts with `{`).
const COMPACT: u8 = 1;

impl Marker {
    /// The compact form: the tag, the version, whether it names anything, then each of
    /// user, project and session as a length (`u16::MAX` for none) and its bytes.
    pub(super) fn to_bytes(&self) -> Vec<u8> {
        Marker::bytes(self.v, self.n.as_ref())
    }

    /// The compact form of a marker of `v` that gave `n`.
    pub(super) fn bytes(v: Version, n: Option<&Names>) -> Vec<u8> {
        let names = n.map_or(0, |n| {
            [&n.user, &n.project, &n.session]
                .iter()
                .map(|p| 2 + p.as_ref().map_or(0, String::len))
                .sum()
        });
        let mut out = Vec::with_capacity(2 + Version::BYTES + names);
        out.push(COMPACT);
        out.extend_from_slice(&v.to_bytes());
        let Some(n) = n else {
            out.push(0);
            return out;
        };
        out.push(1);
        for part in [&n.user, &n.project, &n.session] {
            match part {
                // names are checked short (see `check_text`), far below u16::MAX
                Some(text) if text.len() < usize::from(u16::MAX) => {
                    out.extend_from_slice(&(text.len() as u16).to_le_bytes());
                    out.extend_from_slice(text.as_bytes());
                }
                _ => out.extend_from_slice(&u16::MAX.to_le_bytes()),
            }
        }
        out
    }

    /// Reads either form; `None` when the bytes are neither.
    pub(super) fn from_bytes(b: &[u8]) -> Option<Marker> {
        if b.first() != Some(&COMPACT) {
            return serde_json::from_slice(b).ok();
        }
        let v = Version::from_bytes(b.get(1..1 + Version::BYTES)?)?;
        let mut rest = b.get(1 + Version::BYTES..)?;
        let (&named, tail) = rest.split_first()?;
        rest = tail;
        if named == 0 {
            return rest.is_empty().then_some(Marker { v, n: None });
        }
        let mut part = || -> Option<Option<String>> {
            let len = u16::from_le_bytes(rest.get(..2)?.try_into().ok()?);
            rest = rest.get(2..)?;
            if len == u16::MAX {
                return Some(None);
            }
            let text = std::str::from_utf8(rest.get(..usize::from(len))?).ok()?;
            rest = rest.get(usize::from(len)..)?;
            Some(Some(text.to_string()))
        };
        let (user, project, session) = (part()?, part()?, part()?);
        Some(Marker {
            v,
            n: Some(Names {
                user,
                project,
                session,
            }),
        })
    }

    /// The marker stored under `key`, decoded.
    pub(super) fn decode(key: &[u8], bytes: &[u8]) -> Result<Marker, GraphError> {
        Marker::from_bytes(bytes).ok_or_else(|| GraphError::Decode {
            key: String::from_utf8_lossy(key).into_owned(),
            message: "not a record marker".to_string(),
        })
    }
}

/// Records counted (or taken back) by system and names; consecutive records of one system
/// that name the same things (most of an upload, a session at a time) add to one run.
#[derive(Default)]
pub(super) struct Tally {
    run: Option<(String, Names, i64)>,
    done: HashMap<(String, Names), i64>,
}

impl Tally {
    /// Adds `n` records of `system` that gave `names`.
    pub(super) fn add(&mut self, system: &str, names: &Names, n: i64) {
        if let Some((s, same, count)) = &mut self.run {
            if s == system && same == names {
                *count += n;
                return;
            }
        }
        if let Some((s, names, count)) = self.run.replace((system.to_string(), names.clone(), n)) {
            *self.done.entry((s, names)).or_default() += count;
        }
    }

    /// The sums, by system and names.
    pub(super) fn into_counts(mut self) -> HashMap<(String, Names), i64> {
        if let Some((s, names, count)) = self.run.take() {
            *self.done.entry((s, names)).or_default() += count;
        }
        self.done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_marker_reads_back_from_its_compact_form_and_from_json() {
        let v = Version { hlc: 77, node: 3 };
        let named = Marker {
            v,
            n: Some(Names {
                user: Some("alice".into()),
                project: None,
                session: Some(String::new()),
            }),
        };
        for m in [
            named,
            Marker { v, n: None },
            Marker {
                v,
                n: Some(Names::default()),
            },
        ] {
            let back = Marker::from_bytes(&m.to_bytes()).unwrap();
            assert_eq!((back.v, back.n), (m.v, m.n.clone()));
            let json = serde_json::to_vec(&m).unwrap();
            let back = Marker::from_bytes(&json).unwrap();
            assert_eq!((back.v, back.n), (m.v, m.n));
        }
        let cut = Marker {
            v,
            n: Some(Names::default()),
        }
        .to_bytes();
        assert!(Marker::from_bytes(&cut[..cut.len() - 1]).is_none());
        assert!(Marker::decode(b"m", b"junk").is_err());
    }

    #[test]
    fn a_tally_sums_runs_of_one_system_and_names_and_their_returns() {
        let names = |u: &str| Names {
            user: Some(u.to_string()),
            ..Names::default()
        };
        let mut t = Tally::default();
        for (system, user, n) in [
            ("a", "ann", 1),
            ("a", "ann", 1),
            ("b", "ann", 1),
            ("a", "bob", -1),
            ("a", "ann", 1),
            ("a", "ann", -1),
            ("b", "ann", 1),
        ] {
            t.add(system, &names(user), n);
        }
        let counts = t.into_counts();
        assert_eq!(counts.len(), 3);
        assert_eq!(counts[&("a".to_string(), names("ann"))], 2);
        assert_eq!(counts[&("b".to_string(), names("ann"))], 2);
        assert_eq!(counts[&("a".to_string(), names("bob"))], -1);
    }
}
