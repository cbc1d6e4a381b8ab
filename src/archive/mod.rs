//! The archive: every stored event of every room (`msg`, `board.changed`),
//! kept past the Redis tail for as long as the operator wants, so that
//! `history` pages back through a room however old it is. Events are keyed
//! by (room, epoch, seq): appending one twice stores it once, and a page is
//! one range of that key. `memory` is the in-process twin; `postgres` the
//! production backend; both pass the one `conformance` suite.

pub mod archiver;
pub mod conformance;
pub mod memory;
pub mod postgres;

use bytes::Bytes;

/// One archived event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Archived {
    /// The room.
    pub room: String,
    /// The history it belongs to.
    pub epoch: String,
    /// Its seq in that history.
    pub seq: u64,
    /// When it was stored, ms since the Unix epoch (what a retention goes by).
    pub at: u64,
    /// The client frame, as delivered.
    pub frame: Bytes,
}

/// Events just below a seq, ascending, and whether older ones are archived.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Page {
    /// (seq, frame), ascending.
    pub events: Vec<(u64, Bytes)>,
    /// Whether the archive holds older events of the same history.
    pub more: bool,
}

/// The archive could not be reached or refused the request.
#[derive(Debug, Clone, thiserror::Error)]
#[error("archive unavailable: {0}")]
pub struct ArchiveError(pub String);

/// What the archive answers.
pub type Answer<T> = Result<T, ArchiveError>;

/// A range of seqs, both ends included.
pub type Seqs = std::ops::RangeInclusive<u64>;

/// Where every room's events are kept for good.
#[async_trait::async_trait]
pub trait Archive: Send + Sync + 'static {
    /// Stores events (any rooms, any order); one already stored is kept as
    /// it is, so that a batch may be sent again after a failure.
    async fn append(&self, events: &[Archived]) -> Answer<()>;
    /// The latest `limit` events of `room`'s history `epoch` below `before`,
    /// ascending.
    async fn page(&self, room: &str, epoch: &str, before: u64, limit: usize) -> Answer<Page>;
    /// The seqs of `room`'s history `epoch` within `seqs` that are archived, ascending: what a new owner need not
    /// archive again of what storage holds. Another node may have archived
    /// later events first, so the highest seq says nothing of those below.
    async fn held(&self, room: &str, epoch: &str, seqs: Seqs) -> Answer<Vec<u64>>;
    /// Removes every event of `room`, of every history; removing a room
    /// with none is not an error.
    async fn delete(&self, room: &str) -> Answer<()>;
    /// Removes every event stored before `cutoff` (ms since the Unix
    /// epoch): the operator's retention. Returns how many went.
    async fn retain(&self, cutoff: u64) -> Answer<u64>;
}
