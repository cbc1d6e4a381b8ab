//! One link's cache of the rooms it reaches on this node.

use std::sync::Arc;

use tokio::sync::watch;

use super::Node;
use crate::coordinator::RingView;
use crate::ids::{Map, RoomId};
use crate::rooms::Room;

/// One link's recent look-ups of rooms, good while the ring stays as it is
/// and the rooms are still held, so that most operations need neither the
/// ring's hash nor the registry's lock.
pub(super) struct Routes {
    ring: watch::Receiver<Arc<RingView>>,
    view: Arc<RingView>,
    rooms: Map<RoomId, Arc<Room>>,
}

impl Routes {
    pub(super) fn new(node: &Node) -> Self {
        let mut ring = node.ring.clone();
        let view = ring.borrow_and_update().clone();
        Self {
            ring,
            view,
            rooms: Map::default(),
        }
    }

    /// The room, if this node serves it now.
    pub(super) fn get(&mut self, node: &Node, room: &str) -> Option<Arc<Room>> {
        if node.registry.is_fenced() {
            return None;
        }
        if self.ring.has_changed().unwrap_or(false) {
            self.view = self.ring.borrow_and_update().clone();
            self.rooms.clear();
            // Rooms claimed from now on carry the newest epoch.
            node.fence();
        }
        if let Some(live) = self.rooms.get(room) {
            if !live.is_retired() {
                live.touch(node.registry.tick());
                return Some(live.clone());
            }
            self.rooms.remove(room);
        }
        let live = node
            .registry
            .route(room, &self.view.ring, self.view.ring_epoch)?;
        if self.rooms.len() >= ROUTES_KEPT {
            self.rooms.clear();
        }
        self.rooms.insert(live.id().clone(), live.clone());
        Some(live)
    }
}

/// Rooms one link remembers; past it the cache starts over.
const ROUTES_KEPT: usize = 4096;
