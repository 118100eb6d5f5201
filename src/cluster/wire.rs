//! The wire format of everything that crosses nodes, and its version.
//!
//! # Transport and handshake
//!
//! Nodes talk over ractor_cluster 0.16 sessions: one TCP connection per pair of nodes, on
//! the port of `--listen`. A session opens with ractor_cluster's handshake (Erlang's
//! distribution handshake): the dialling side sends its *name*, the other side answers with
//! a status and a random challenge, each side proves it knows the cookie by returning
//! `sha256(challenge ‖ cookie)` for the other's challenge, and only then is the session
//! authenticated. The cookie itself never crosses the network, but nothing after the
//! handshake is encrypted (no TLS yet).
//!
//! ractor_cluster's own `NodeFlags.version` is fixed by the library, so Akosha's wire version
//! rides in the name instead. Every node's name is
//!
//! ```text
//! akosha/w<WIRE_VERSION>/<generation>/<node_id>@<listen ip>
//! ```
//!
//! where `generation` is the node's start time in milliseconds since the Unix epoch (a
//! restarted node has a higher one) and `node_id` is `--node-id` (letters, digits, `.`, `_`,
//! `-`; never `/` or `@`). The name is sent before the cookie challenge, but Akosha trusts it
//! only once the session is authenticated: at that moment each side parses the peer's name
//! with [`PeerName::parse`] and checks it with [`PeerName::check_version`]. A peer with
//! another wire version (or a name that is not Akosha's) is refused there: its session is
//! stopped before any message is exchanged and an error line says which version came and
//! which was expected. Gossip carries the version too (the `wire` key), so a node does not
//! even dial a peer that announces another one.
//!
//! # Messages
//!
//! A message that crosses nodes is an enum deriving `RactorClusterMessage`; ractor_cluster
//! sends the variant by its *name* and each field through `BytesConvertable`. So:
//!
//! - never rename a variant of a remotable message: rename is a wire change;
//! - every field is a [`Payload<T>`]: `T` is encoded with bincode 1.3 ([`encode`]: varint
//!   integers, little endian, no trailing bytes, at most [`MAX_PAYLOAD_BYTES`]), behind one tag
//!   byte. `BytesConvertable` may not fail, and ractor_cluster drops an undecodable message
//!   with only a debug log, so a payload that cannot be decoded (or could not be encoded)
//!   arrives as [`Payload::Undecodable`] with the reason, never as a panic or a wrong value;
//! - fields of `T` are only ever appended at the end of a struct, and then `WIRE_VERSION` is
//!   raised: bincode has no field names, so a reordered or removed field is misread silently.
//!
//! ractor_cluster caps one inbound frame at 16 MiB; answers larger than [`MAX_PAYLOAD_BYTES`]
//! must be paged by their sender.

use serde::de::DeserializeOwned;
use serde::Serialize;

/// Version of the wire format; nodes speaking different versions never form a session.
pub const WIRE_VERSION: u32 = 6;

/// First part of every Akosha node's transport name.
pub const NAME_PREFIX: &str = "akosha";

/// First part of the transport name of a client ([`crate::client::Client`]): it talks to
/// one member, never joins gossip and never holds shards.
pub const CLIENT_PREFIX: &str = "akosha-client";

/// A client's name, `akosha-client/w<version>/<id>`.
pub fn client_name(id: &str) -> String {
    format!("{CLIENT_PREFIX}/w{WIRE_VERSION}/{id}")
}

/// The wire version a client's full transport name (`akosha-client/w<version>/<id>@<host>`)
/// announces; `None` for a name that is not a client's.
pub fn client_version(full: &str) -> Option<u32> {
    let (name, _host) = full.rsplit_once('@')?;
    let mut parts = name.splitn(3, '/');
    let (Some(CLIENT_PREFIX), Some(version), Some(id)) = (parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    if id.is_empty() {
        return None;
    }
    version.strip_prefix('w')?.parse().ok()
}

/// Largest encoded payload, in bytes: ractor_cluster's 16 MiB frame less room for its envelope.
pub const MAX_PAYLOAD_BYTES: u64 = 15 * 1024 * 1024;

/// Why bytes from another node could not be read, or a value could not be written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The peer's name is not `akosha/w<version>/<generation>/<node_id>@<host>`.
    #[error("expected a peer name akosha/w<version>/<generation>/<node_id>@<host>, got {0:?}")]
    BadName(String),
    /// The peer speaks another wire version.
    #[error("expected wire version {expected}, peer {node_id} speaks {got}")]
    Version {
        /// the peer's node id
        node_id: String,
        /// our version
        expected: u32,
        /// the peer's version
        got: u32,
    },
    /// A payload could not be encoded.
    #[error("cannot encode payload: {0}")]
    Encode(String),
    /// A payload could not be decoded.
    #[error("cannot decode payload: {0}")]
    Decode(String),
}

/// The identity a node announces in its transport name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PeerName {
    /// the node's id (`--node-id`)
    pub node_id: String,
    /// start time in milliseconds since the Unix epoch; a restart makes a higher one
    pub generation: u64,
    /// the wire version the node speaks
    pub wire_version: u32,
}

impl PeerName {
    /// The name of this node speaking [`WIRE_VERSION`].
    pub fn new(node_id: &str, generation: u64) -> PeerName {
        PeerName {
            node_id: node_id.to_string(),
            generation,
            wire_version: WIRE_VERSION,
        }
    }

    /// The node-name part given to ractor_cluster (it appends `@<hostname>`).
    pub fn node_name(&self) -> String {
        format!(
            "{NAME_PREFIX}/w{}/{}/{}",
            self.wire_version, self.generation, self.node_id
        )
    }

    /// Reads a full transport name, `akosha/w<version>/<generation>/<node_id>@<host>`.
    pub fn parse(full: &str) -> Result<PeerName, WireError> {
        let bad = || WireError::BadName(full.to_string());
        let (name, _host) = full.rsplit_once('@').ok_or_else(bad)?;
        let mut parts = name.splitn(4, '/');
        let (Some(prefix), Some(version), Some(generation), Some(node_id)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad());
        };
        if prefix != NAME_PREFIX || node_id.is_empty() || node_id.contains('/') {
            return Err(bad());
        }
        let wire_version = version
            .strip_prefix('w')
            .and_then(|v| v.parse::<u32>().ok())
            .ok_or_else(bad)?;
        let generation = generation.parse::<u64>().map_err(|_| bad())?;
        Ok(PeerName {
            node_id: node_id.to_string(),
            generation,
            wire_version,
        })
    }

    /// Refuses a peer whose wire version is not `expected`.
    pub fn check_version(&self, expected: u32) -> Result<(), WireError> {
        if self.wire_version == expected {
            Ok(())
        } else {
            Err(WireError::Version {
                node_id: self.node_id.clone(),
                expected,
                got: self.wire_version,
            })
        }
    }
}

fn options() -> impl bincode::Options {
    use bincode::Options;
    bincode::DefaultOptions::new()
        .with_limit(MAX_PAYLOAD_BYTES)
        .with_little_endian()
        .with_varint_encoding()
        .reject_trailing_bytes()
}

/// Encodes a value with bincode as the wire format says (at most [`MAX_PAYLOAD_BYTES`]).
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, WireError> {
    use bincode::Options;
    options()
        .serialize(value)
        .map_err(|e| WireError::Encode(e.to_string()))
}

/// Decodes a value written by [`encode`]; trailing bytes are an error.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, WireError> {
    use bincode::Options;
    options()
        .deserialize(bytes)
        .map_err(|e| WireError::Decode(e.to_string()))
}

/// Tag byte of a payload that carries a value.
const TAG_VALUE: u8 = 0;
/// Tag byte of a payload whose sender could not encode its value (the reason follows, UTF-8).
const TAG_UNENCODABLE: u8 = 1;

/// One field of a remotable message: a value, or why it could not cross.
#[derive(Debug, Clone, PartialEq)]
pub enum Payload<T> {
    /// the value, as sent
    Value(T),
    /// the bytes could not be read (or the sender could not write them), and why
    Undecodable(WireError),
}

impl<T> Payload<T> {
    /// The value, or why it did not arrive.
    pub fn into_result(self) -> Result<T, WireError> {
        match self {
            Payload::Value(v) => Ok(v),
            Payload::Undecodable(e) => Err(e),
        }
    }
}

impl<T> From<T> for Payload<T> {
    fn from(value: T) -> Self {
        Payload::Value(value)
    }
}

impl<T: Serialize + DeserializeOwned + Send + 'static> ractor::BytesConvertable for Payload<T> {
    fn into_bytes(self) -> Vec<u8> {
        let encoded = match &self {
            Payload::Value(v) => encode(v),
            Payload::Undecodable(e) => Err(e.clone()),
        };
        match encoded {
            Ok(body) => {
                let mut bytes = Vec::with_capacity(body.len() + 1);
                bytes.push(TAG_VALUE);
                bytes.extend_from_slice(&body);
                bytes
            }
            Err(e) => {
                let mut bytes = vec![TAG_UNENCODABLE];
                bytes.extend_from_slice(e.to_string().as_bytes());
                bytes
            }
        }
    }

    fn from_bytes(bytes: Vec<u8>) -> Self {
        match bytes.split_first() {
            Some((&TAG_VALUE, body)) => match decode(body) {
                Ok(v) => Payload::Value(v),
                Err(e) => Payload::Undecodable(e),
            },
            Some((&TAG_UNENCODABLE, reason)) => Payload::Undecodable(WireError::Encode(
                String::from_utf8_lossy(reason).into_owned(),
            )),
            Some((tag, _)) => Payload::Undecodable(WireError::Decode(format!(
                "expected payload tag {TAG_VALUE} or {TAG_UNENCODABLE}, got {tag}"
            ))),
            None => Payload::Undecodable(WireError::Decode(
                "expected a payload, got 0 bytes".to_string(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use ractor::BytesConvertable;
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Hello {
        node: String,
        shards: Vec<u16>,
    }

    #[test]
    fn names_round_trip_and_carry_the_version() {
        let me = PeerName::new("node-1.eu_west", 1_764_000_000_123);
        let full = format!("{}@127.0.0.1", me.node_name());
        assert_eq!(
            full,
            format!("akosha/w{WIRE_VERSION}/1764000000123/node-1.eu_west@127.0.0.1")
        );
        let parsed = PeerName::parse(&full).unwrap();
        assert_eq!(parsed, me);
        parsed.check_version(WIRE_VERSION).unwrap();
        let future = PeerName {
            wire_version: WIRE_VERSION + 1,
            ..me
        };
        let e = PeerName::parse(&format!("{}@h", future.node_name()))
            .unwrap()
            .check_version(WIRE_VERSION)
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "expected wire version {WIRE_VERSION}, peer node-1.eu_west speaks {}",
                WIRE_VERSION + 1
            )
        );
    }

    #[test]
    fn client_names_say_their_version_and_are_no_member_names() {
        let full = format!("{}@127.0.0.1", client_name("admin-1f3a"));
        assert_eq!(client_version(&full), Some(WIRE_VERSION));
        assert!(PeerName::parse(&full).is_err(), "a client is not a member");
        assert_eq!(client_version("akosha-client/w2/x@h"), Some(2));
        for bad in [
            "akosha-client/w4/@h",
            "akosha/w4/1/n1@h",
            "akosha-client/v4/x@h",
            "x",
        ] {
            assert_eq!(client_version(bad), None, "{bad}");
        }
    }

    #[test]
    fn foreign_names_are_refused() {
        for name in [
            "node_a@localhost",
            "akosha/w1/123@h",
            "akosha/wx/123/a@h",
            "akosha/w1/notanumber/a@h",
            "other/w1/1/a@h",
            "akosha/w1/1/@h",
            "akosha/w1/1/a/b@h",
            "akosha/w1/1/a",
        ] {
            assert!(
                matches!(PeerName::parse(name), Err(WireError::BadName(_))),
                "{name}"
            );
        }
    }

    #[test]
    fn payloads_round_trip() {
        let hello = Hello {
            node: "n1".into(),
            shards: vec![0, 7, 255],
        };
        let bytes = Payload::from(hello.clone()).into_bytes();
        assert_eq!(bytes[0], TAG_VALUE);
        assert_eq!(Payload::<Hello>::from_bytes(bytes), Payload::Value(hello));
    }

    #[test]
    fn bad_bytes_arrive_as_undecodable_not_as_a_panic() {
        let cases: [Vec<u8>; 3] = [vec![], vec![9, 1, 2], vec![TAG_VALUE, 0xff]];
        for bytes in cases {
            let p = Payload::<Hello>::from_bytes(bytes.clone());
            assert!(
                matches!(p, Payload::Undecodable(WireError::Decode(_))),
                "{bytes:?}: {p:?}"
            );
        }
        // a trailing byte means the two sides disagree on the type
        let mut bytes = Payload::from(7u32).into_bytes();
        bytes.push(0);
        let p = Payload::<u32>::from_bytes(bytes);
        assert!(
            matches!(p, Payload::Undecodable(WireError::Decode(_))),
            "{p:?}"
        );
        // a value the sender cannot encode (over the limit) crosses as the reason
        let huge = vec![0u8; MAX_PAYLOAD_BYTES as usize + 1];
        let p = Payload::<Vec<u8>>::from_bytes(Payload::from(huge).into_bytes());
        assert!(
            matches!(p, Payload::Undecodable(WireError::Encode(_))),
            "{p:?}"
        );
    }
}
