//! Durable room state as the room task sees it: a journal that appends stored
//! events (group-committed by the backend), and a loader that rebuilds a room
//! from its log and latest snapshot. The Redis backend lives in `node`.

use tokio::sync::{mpsc, oneshot};

use crate::ids::RoomId;

/// Stored events between snapshots of board widgets and read receipts.
pub const SNAPSHOT_EVERY: u64 = 200;

pub use crate::protocol::link::{Entry, Loaded, Snapshot};

/// Storage failed: the room serves no stored operation until it reloads.
#[derive(Debug, Clone, thiserror::Error)]
#[error("room storage unavailable: {0}")]
pub struct StoreError(pub String);

/// One room's appends, committed together with other rooms' appends.
#[derive(Debug)]
pub struct Append {
    /// The room.
    pub room: RoomId,
    /// Entries, in seq order.
    pub entries: Vec<Entry>,
    /// A snapshot to write with them.
    pub snapshot: Option<Snapshot>,
    /// Told once the entries are durable (or not).
    pub done: oneshot::Sender<Result<(), StoreError>>,
}

/// The durable store of a node's rooms.
#[async_trait::async_trait]
pub trait RoomStore: Send + Sync + 'static {
    /// Reads a room's log and latest snapshot.
    async fn load(&self, room: &RoomId) -> Result<Loaded, StoreError>;
    /// The queue of the group-commit writer.
    fn journal(&self) -> mpsc::Sender<Append>;
}
