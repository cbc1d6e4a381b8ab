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

/// The in-memory twin of a durable store: what `dev` and tests use to run
/// crash scenarios without Redis. Shared by every node of one process.
pub struct MemoryStore {
    /// Room logs and snapshots; held for short, non-async sections.
    rooms: std::sync::Mutex<std::collections::HashMap<RoomId, Loaded>>,
    journal: mpsc::Sender<Append>,
}

impl MemoryStore {
    /// A store keeping about `keep` entries per room; starts its writer task,
    /// which ends when the store and every room drop their journal senders.
    pub fn new(keep: usize) -> std::sync::Arc<Self> {
        let (journal, mut rx) = mpsc::channel::<Append>(1024);
        let store = std::sync::Arc::new(Self {
            rooms: Default::default(),
            journal,
        });
        let writer = std::sync::Arc::downgrade(&store);
        tokio::spawn(async move {
            while let Some(append) = rx.recv().await {
                let Some(store) = writer.upgrade() else {
                    return;
                };
                {
                    let mut rooms = store.rooms.lock().unwrap_or_else(|e| e.into_inner());
                    let room = rooms.entry(append.room.clone()).or_default();
                    room.entries.extend(append.entries);
                    let excess = room.entries.len().saturating_sub(keep);
                    room.entries.drain(..excess);
                    if append.snapshot.is_some() {
                        room.snapshot = append.snapshot;
                    }
                }
                let _ = append.done.send(Ok(()));
            }
        });
        store
    }
}

#[async_trait::async_trait]
impl RoomStore for MemoryStore {
    async fn load(&self, room: &RoomId) -> Result<Loaded, StoreError> {
        let rooms = self.rooms.lock().unwrap_or_else(|e| e.into_inner());
        Ok(rooms.get(room).cloned().unwrap_or_default())
    }

    fn journal(&self) -> mpsc::Sender<Append> {
        self.journal.clone()
    }
}
