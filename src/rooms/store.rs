//! Durable room state as the room task sees it: a journal that appends stored
//! events (group-committed by the backend), and a loader that rebuilds a room
//! from its log and latest snapshot. The Redis backend lives in `node`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use crate::ids::RoomId;
use crate::protocol::server::VersionedWidget;

/// Stored events between snapshots of board widgets and read receipts.
pub const SNAPSHOT_EVERY: u64 = 200;

/// One stored event.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// Its seq.
    pub seq: u64,
    /// The client frame (`msg` or `board.changed`).
    pub frame: String,
    /// The author of a chat message, for the idempotency window.
    pub author: Option<String>,
    /// The client id of a chat message.
    pub cid: Option<String>,
}

/// Board widgets and read receipts as of one seq.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The seq the snapshot reflects.
    pub seq: u64,
    /// Board widgets.
    pub widgets: Vec<VersionedWidget>,
    /// Latest read receipt per user.
    pub reads: BTreeMap<String, u64>,
}

/// What a room is rebuilt from.
#[derive(Debug, Clone, Default)]
pub struct Loaded {
    /// The kept log, any order.
    pub entries: Vec<Entry>,
    /// The latest snapshot.
    pub snapshot: Option<Snapshot>,
}

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
