//! Validated identifiers shared by every role: rooms, users, members (nodes and
//! gateways), and the membership epoch. Each is parsed once at the edge and is
//! cheap to clone afterwards.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// Why a string is not a valid identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// The room id is not `chat:NAME` or `board:NAME`.
    #[error(
        "room id must be chat:NAME or board:NAME with NAME of 1-128 characters [A-Za-z0-9._-]"
    )]
    Room,
    /// The user name has characters outside the allowed set or a bad length.
    #[error("user must be 1-64 characters [A-Za-z0-9._-]")]
    User,
    /// The member id has characters outside the allowed set or a bad length.
    #[error("member id must be 1-64 characters [A-Za-z0-9._-]")]
    Member,
}

fn is_name(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// The two kinds of room; a room's kind decides which operations it accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RoomKind {
    /// Chat room (couples or group).
    Chat,
    /// Collaborative board with widgets; also accepts chat operations.
    Board,
}

/// A room id `KIND:NAME`; the whole string is the consistent-hash key.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RoomId(Arc<str>);

impl RoomId {
    /// Parses and validates a room id.
    pub fn parse(s: &str) -> Result<Self, IdError> {
        Self::kind_of(s)?;
        Ok(Self(s.into()))
    }

    /// Validates a room id without keeping it, returning its kind.
    pub fn kind_of(s: &str) -> Result<RoomKind, IdError> {
        match s.split_once(':') {
            Some(("chat", name)) if is_name(name, 128) => Ok(RoomKind::Chat),
            Some(("board", name)) if is_name(name, 128) => Ok(RoomKind::Board),
            _ => Err(IdError::Room),
        }
    }

    /// The room's kind, from its prefix.
    pub fn kind(&self) -> RoomKind {
        if self.0.starts_with("board:") {
            RoomKind::Board
        } else {
            RoomKind::Chat
        }
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A user name (`sub` claim or `?user=`).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct UserId(Arc<str>);

impl UserId {
    /// Parses and validates a user name.
    pub fn parse(s: &str) -> Result<Self, IdError> {
        if is_name(s, 64) {
            Ok(Self(s.into()))
        } else {
            Err(IdError::User)
        }
    }

    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The id of a cluster member: an application node or a gateway.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct NodeId(Arc<str>);

impl NodeId {
    /// Parses and validates a member id.
    pub fn parse(s: &str) -> Result<Self, IdError> {
        if is_name(s, 64) {
            Ok(Self(s.into()))
        } else {
            Err(IdError::Member)
        }
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Which gateway link a connection arrived on (a node's own count).
pub type LinkId = u64;

/// One subscribed client connection: its gateway link and its id there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Sub {
    /// The gateway link.
    pub link: LinkId,
    /// The connection on that gateway.
    pub conn: ConnId,
}

/// A hash map on the hot paths (ids, connections, requests): foldhash,
/// seeded per process, instead of the standard library's SipHash.
pub type Map<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
/// A hash set on the hot paths; see `Map`.
pub type Set<K> = std::collections::HashSet<K, foldhash::fast::RandomState>;

/// A client connection's id, unique per gateway.
pub type ConnId = u64;
/// A request id, unique per sender, matching replies to their request.
pub type Rid = u64;

/// The membership epoch: increases on every change of the member list.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Epoch(pub u64);

macro_rules! string_id {
    ($($t:ident),*) => {$(
        impl TryFrom<String> for $t {
            type Error = IdError;
            fn try_from(s: String) -> Result<Self, IdError> {
                Self::parse(&s)
            }
        }
        impl From<$t> for String {
            fn from(id: $t) -> String {
                id.0.to_string()
            }
        }
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl fmt::Debug for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{:?}", &*self.0)
            }
        }
    )*};
}
string_id!(RoomId, UserId, NodeId);

// Maps keyed by id are looked up with the `&str` a frame or record carries,
// without allocating an id first; `Hash` and `Eq` agree with `str`'s.
impl std::borrow::Borrow<str> for RoomId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl std::borrow::Borrow<str> for UserId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// What a cluster member does: a member id's role, named in the link's
/// handshake and in the membership list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// An application node, owning rooms.
    Node,
    /// A gateway, holding client connections.
    Gateway,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_ids() {
        assert_eq!(
            RoomId::parse("chat:couple-42").unwrap().kind(),
            RoomKind::Chat
        );
        assert_eq!(
            RoomId::parse("board:x.y_z").unwrap().kind(),
            RoomKind::Board
        );
        for bad in [
            "",
            "chat:",
            "chat",
            "dm:x",
            "chat:a b",
            "chat:é",
            &format!("chat:{}", "a".repeat(129)),
        ] {
            assert_eq!(RoomId::parse(bad), Err(IdError::Room), "{bad}");
        }
        assert!(RoomId::parse(&format!("chat:{}", "a".repeat(128))).is_ok());
    }

    #[test]
    fn user_ids() {
        assert!(UserId::parse("alice.b-c_1").is_ok());
        assert_eq!(UserId::parse(""), Err(IdError::User));
        assert_eq!(UserId::parse("a:b"), Err(IdError::User));
        assert_eq!(UserId::parse(&"a".repeat(65)), Err(IdError::User));
    }
}
