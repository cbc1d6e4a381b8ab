//! The rooms a node holds: one task each, created on first use when the
//! ring gives the room to this node, refused otherwise.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use crate::ids::{NodeId, RoomId};
use crate::ring::Ring;
use crate::rooms::store::RoomStore;
use crate::rooms::{spawn_room, RoomCmd, RoomHandle};
use std::sync::Arc;

/// The node's room tasks by room id.
pub(super) struct Registry {
    id: NodeId,
    keep: usize,
    store: Option<Arc<dyn RoomStore>>,
    /// Held for map look-ups and inserts only, never across an await.
    rooms: Mutex<HashMap<RoomId, RoomHandle>>,
    /// Set while the node's lease is in doubt: it then serves no room.
    fenced: AtomicBool,
}

impl Registry {
    pub(super) fn new(id: NodeId, keep: usize, store: Option<Arc<dyn RoomStore>>) -> Self {
        Self {
            id,
            keep,
            store,
            rooms: Mutex::new(HashMap::new()),
            fenced: AtomicBool::new(false),
        }
    }

    /// The room's task if this node may serve it now, starting it if needed.
    pub(super) fn route(&self, room: &RoomId, ring: &Ring) -> Option<RoomHandle> {
        if self.fenced.load(Ordering::Acquire) || ring.owner(room) != Some(&self.id) {
            return None;
        }
        let mut rooms = self.rooms.lock().unwrap_or_else(|e| e.into_inner());
        let handle = rooms.entry(room.clone()).or_insert_with(|| {
            spawn_room(room.clone(), self.id.clone(), self.keep, self.store.clone())
        });
        Some(handle.clone())
    }

    /// How many rooms are held.
    pub(super) fn len(&self) -> usize {
        self.rooms.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Stops or resumes serving (lease in doubt / renewed).
    pub(super) fn set_fenced(&self, fenced: bool) {
        self.fenced.store(fenced, Ordering::Release);
    }

    /// Drops every room: their state may have moved on while fenced.
    pub(super) fn clear(&self) {
        self.rooms.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    /// Sends a command built per room to every room task.
    pub(super) async fn broadcast(&self, cmd: impl Fn() -> RoomCmd) {
        let handles: Vec<RoomHandle> = self
            .rooms
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        for handle in handles {
            let _ = handle.send(cmd()).await;
        }
    }
}
