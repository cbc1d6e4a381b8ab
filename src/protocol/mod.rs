//! The client wire: client frames (`client`), server frames (`server`), and
//! the plain values a room answers with (`Status`, `Query`). Depends on
//! nothing of the crate but `ids`, so the gateway, the node, the link and
//! the load generator share one definition.

pub mod client;
pub mod server;

use serde::{Deserialize, Serialize};

/// The error codes of protocol v1, shared by `error` frames and HTTP bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Unparseable or invalid frame or request.
    BadRequest,
    /// Missing or bad identity.
    Unauthorized,
    /// The identity may not do this.
    Forbidden,
    /// A frame or body over its limit.
    TooLarge,
    /// Over the per-connection frame rate.
    RateLimited,
    /// A stale board write.
    Conflict,
    /// An operation on a room the connection has not joined.
    NotJoined,
    /// The room cannot be served right now; retry.
    Unavailable,
    /// Unknown HTTP path or member.
    NotFound,
}

impl ErrorCode {
    /// The HTTP status that carries this code.
    pub fn http_status(self) -> u16 {
        match self {
            Self::BadRequest => 400,
            Self::Unauthorized => 401,
            Self::Forbidden => 403,
            Self::NotFound => 404,
            Self::Conflict => 409,
            Self::TooLarge => 413,
            Self::NotJoined => 409,
            Self::RateLimited => 429,
            Self::Unavailable => 503,
        }
    }
}

/// A client-visible error: a code and a human message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{code:?}: {message}")]
pub struct Failure {
    /// The protocol error code.
    pub code: ErrorCode,
    /// What went wrong, for a person.
    pub message: String,
}

impl Failure {
    /// Builds a failure from a code and a message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// A `bad_request` failure.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadRequest, message)
    }
}

/// How a request to a room's owner went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Status {
    /// Done; the answer comes with it.
    Ok,
    /// This node does not own the room (any more): ask the ring again.
    Moved,
    /// Refused.
    Failed(Failure),
}

/// Names in a `joined`, a room's HTTP summary and a `presence.page` by default.
pub const NAMES_SHOWN: usize = 200;

/// Messages a `join` without `since` replays.
pub const JOIN_HISTORY: usize = 50;

/// One connection's join among those a gateway gathers for a room's owner
/// (answered once for them all); `S` is a borrowed or an owned string.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Joining<S> {
    /// The connection on the gateway.
    pub conn: crate::ids::ConnId,
    /// Its user.
    pub user: S,
    /// The last seq it has, if it resumes.
    pub since: Option<u64>,
    /// The history `since` counts in.
    pub epoch: Option<S>,
}

impl<S: AsRef<str>> Joining<S> {
    /// The same join, its strings borrowed.
    pub fn borrowed(&self) -> Joining<&str> {
        Joining {
            conn: self.conn,
            user: self.user.as_ref(),
            since: self.since,
            epoch: self.epoch.as_ref().map(AsRef::as_ref),
        }
    }
}

/// An HTTP API question about a room; `B` holds a raw JSON body.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Query<B> {
    /// Owner, seq, online users (and widgets).
    Info,
    /// Kept messages after `since`.
    Messages {
        /// Exclusive lower bound.
        since: u64,
        /// How many at most.
        limit: usize,
    },
    /// A page of stored events below `before` (link version 4 on).
    Page {
        /// Exclusive upper bound; none for the room's seq + 1.
        before: Option<u64>,
        /// How many at most.
        limit: usize,
    },
    /// Remove the room's history: memory, storage and archive (link
    /// version 4 on).
    Erase,
    /// Post a message on behalf of a user.
    Post {
        /// The author.
        from: String,
        /// The raw JSON body.
        body: B,
    },
}

impl<B> Query<B> {
    /// The same query with its body mapped.
    pub fn map_body<C>(self, f: impl FnOnce(B) -> C) -> Query<C> {
        match self {
            Self::Info => Query::Info,
            Self::Messages { since, limit } => Query::Messages { since, limit },
            Self::Page { before, limit } => Query::Page { before, limit },
            Self::Erase => Query::Erase,
            Self::Post { from, body } => Query::Post {
                from,
                body: f(body),
            },
        }
    }
}

/// Milliseconds since the Unix epoch, the `ts` of messages.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
