//! Durable room state as a room sees it: a journal that appends stored
//! events (group-committed by the backend, which answers each append through
//! its callback), and a loader that rebuilds a room from its log and latest
//! snapshot. `MemoryStore` is the in-memory twin; the Redis backend lives in
//! `node::storage`.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::ids::RoomId;
use crate::protocol::server::VersionedWidget;

/// Stored events between snapshots of board widgets and read receipts.
pub const SNAPSHOT_EVERY: u64 = 200;
/// Encoded bytes of stored events between snapshots, at most (one batch
/// more): with few large events the snapshot comes sooner, so that a log
/// trimmed to its bytes still holds every event since the last one.
pub const SNAPSHOT_BYTES: usize = 8 << 20;

/// One stored event.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// Its seq.
    pub seq: u64,
    /// The client frame (`msg` or `board.changed`).
    pub frame: Bytes,
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
    /// Board roles of named users and `*`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub roles: BTreeMap<String, crate::protocol::client::BoardRole>,
}

/// What a room is rebuilt from.
#[derive(Debug, Clone, Default)]
pub struct Loaded {
    /// The kept log, any order.
    pub entries: Vec<Entry>,
    /// The latest snapshot.
    pub snapshot: Option<Snapshot>,
    /// The history's epoch; none for a history that storage never held.
    pub epoch: Option<String>,
}

/// Storage failed: the room serves no stored operation until it reloads.
#[derive(Debug, Clone, thiserror::Error)]
#[error("room storage unavailable: {0}")]
pub struct StoreError(pub String);

/// Told once an append is durable, or not.
pub type Done = Box<dyn FnOnce(Result<(), StoreError>) + Send>;

/// One room's appends, committed together with other rooms' appends.
pub struct Append {
    /// The room.
    pub room: RoomId,
    /// The history the entries belong to (what the archive keys them by).
    pub epoch: std::sync::Arc<str>,
    /// Entries, in seq order.
    pub entries: Vec<Entry>,
    /// A snapshot to write with them.
    pub snapshot: Option<Snapshot>,
    /// Entries of the room's log to keep at least: the newest, as many as
    /// the room keeps in memory and every one since its last snapshot
    /// (`usize::MAX`: as many as the store keeps of any room).
    pub keep: usize,
    /// Called once the entries are durable (or not).
    pub done: Done,
}

/// The durable store of a node's rooms.
#[async_trait::async_trait]
pub trait RoomStore: Send + Sync + 'static {
    /// Reads a room's log and latest snapshot.
    async fn load(&self, room: &RoomId) -> Result<Loaded, StoreError>;
    /// Queues an append for the group-commit writer. A room has at most one
    /// append queued or in flight, so the queue holds at most one per room.
    fn append(&self, append: Append);
    /// Who writes from now on: this member's id and lease generation (after
    /// a join), as of the newest membership epoch it has seen. A store that
    /// fences refuses loads and appends whose writer is no longer the
    /// room's owner of record or whose lease lapsed.
    fn fence(&self, _writer: Writer) {}
    /// Removes what storage holds of a room's history, and names its next
    /// history `epoch`.
    async fn erase(&self, _room: &RoomId, _epoch: &str) -> Result<(), StoreError> {
        Ok(())
    }
    /// Up to `limit` stored events of `room` with seqs from `from` up to
    /// `below` (exclusive), the latest of them, ascending; `top` is the
    /// room's seq (where the log ends). What a page past memory reads of
    /// events the archive does not hold yet.
    async fn stored_below(
        &self,
        _room: &RoomId,
        _below: u64,
        _from: u64,
        _limit: usize,
        _top: u64,
    ) -> Result<Vec<(u64, bytes::Bytes)>, StoreError> {
        Ok(Vec::new())
    }
    /// The archive behind this storage, if the node has one.
    fn archiver(&self) -> Option<std::sync::Arc<crate::archive::archiver::Archiver>> {
        None
    }
    /// A room that never stored an event was let go: what storage keeps of
    /// it (its owner record, its epoch) goes too, unless it holds events
    /// after all or another writer owns it now, so that rooms only joined
    /// and left leave nothing behind.
    async fn forget(&self, _room: &RoomId) {}
}

/// The writer a fencing store checks appends against.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Writer {
    /// Member id.
    pub member: String,
    /// Its lease generation.
    pub generation: u64,
    /// The newest membership epoch it has seen.
    pub epoch: u64,
}

/// The in-memory twin of a durable store: what `dev` and tests use to run
/// crash scenarios without Redis. Shared by every node of one process.
pub struct MemoryStore {
    /// Room logs and snapshots; held for short, non-async sections.
    rooms: Mutex<HashMap<RoomId, Loaded>>,
    /// Unbounded: at most one append per room (see `RoomStore::append`).
    journal: mpsc::UnboundedSender<Append>,
}

impl MemoryStore {
    /// A store keeping at most `keep` entries per room (fewer when an
    /// append says so); starts its writer task, which ends when the store is
    /// dropped.
    pub fn new(keep: usize) -> Arc<Self> {
        let (journal, mut rx) = mpsc::unbounded_channel::<Append>();
        let store = Arc::new(Self {
            rooms: Mutex::default(),
            journal,
        });
        let writer = Arc::downgrade(&store);
        tokio::spawn(async move {
            while let Some(append) = rx.recv().await {
                let Some(store) = writer.upgrade() else {
                    return;
                };
                {
                    let mut rooms = store.rooms.lock().unwrap_or_else(|e| e.into_inner());
                    let room = rooms.entry(append.room.clone()).or_default();
                    room.entries.extend(append.entries);
                    let keep = append.keep.clamp(1, keep);
                    let excess = room.entries.len().saturating_sub(keep);
                    room.entries.drain(..excess);
                    if append.snapshot.is_some() {
                        room.snapshot = append.snapshot;
                    }
                }
                (append.done)(Ok(()));
            }
        });
        store
    }
}

#[async_trait::async_trait]
impl RoomStore for MemoryStore {
    async fn load(&self, room: &RoomId) -> Result<Loaded, StoreError> {
        let mut rooms = self.rooms.lock().unwrap_or_else(|e| e.into_inner());
        let loaded = rooms.entry(room.clone()).or_default();
        loaded.epoch.get_or_insert_with(|| new_epoch().to_string());
        Ok(loaded.clone())
    }

    fn append(&self, append: Append) {
        if let Err(mpsc::error::SendError(append)) = self.journal.send(append) {
            (append.done)(Err(StoreError("the journal writer is gone".into())));
        }
    }

    async fn erase(&self, room: &RoomId, epoch: &str) -> Result<(), StoreError> {
        let mut rooms = self.rooms.lock().unwrap_or_else(|e| e.into_inner());
        rooms.insert(
            room.clone(),
            Loaded {
                epoch: Some(epoch.to_string()),
                ..Loaded::default()
            },
        );
        Ok(())
    }
}

/// A fresh history epoch: 16 hex digits from the OS's randomness.
pub fn new_epoch() -> Arc<str> {
    let mut bytes = [0u8; 8];
    if getrandom::fill(&mut bytes).is_err() {
        let now = crate::protocol::now_ms().to_le_bytes();
        bytes.copy_from_slice(&now);
    }
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>()
        .into()
}
