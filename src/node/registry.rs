//! The rooms a node holds, created on first use when the ring gives the
//! room to this node, refused otherwise. After the ring
//! changes, a room this node does not hold yet is refused until every other
//! live node has said it handed off all it had for this node, so that no room
//! starts from scratch (or from storage) while its live state is on the way.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use std::time::Duration;

use tokio::time::Instant;

use crate::ids::{Epoch, Map, NodeId, RoomId};
use crate::ring::Ring;
use crate::rooms::state::LinkId;
use crate::rooms::store::RoomStore;
use crate::rooms::{Arrival, Limits, Room};

/// How long rooms wait for their hand-off before starting without it.
pub(super) const EXPECT_FOR: Duration = Duration::from_secs(5);

/// Who may still hand rooms to this node: every live node whose latest
/// "done" is older than the ring in force (`epoch`).
#[derive(Default)]
struct Expect {
    epoch: Epoch,
    live: HashSet<NodeId>,
    /// The latest epoch each node said it was done for (kept across rings,
    /// since a node may say so before this one sees the new ring).
    done: HashMap<NodeId, Epoch>,
    /// Set by the first `expect_from`: until then this node has not looked
    /// at the ring, so any room may still be on its way.
    ready: bool,
    until: Option<Instant>,
}

/// A room the node holds.
struct Held {
    room: Arc<Room>,
    /// When a sweep first found it unused (its recency count then), if no
    /// use came since.
    unused_since: Option<(Instant, u64)>,
}

impl Held {
    fn new(room: Arc<Room>) -> Self {
        Self {
            room,
            unused_since: None,
        }
    }
}

/// The node's rooms by room id.
pub(super) struct Registry {
    id: NodeId,
    limits: Limits,
    store: Option<Arc<dyn RoomStore>>,
    /// Held for map look-ups and inserts only, never across an await.
    rooms: Mutex<Map<RoomId, Held>>,
    /// Held for short checks only.
    expect: Mutex<Expect>,
    /// Set while the node's lease is in doubt: it then serves no room.
    fenced: AtomicBool,
    /// Routings so far, the clock of `Room::used` (a count orders rooms by
    /// recency without reading a clock per operation).
    routed: AtomicU64,
}

impl Registry {
    pub(super) fn new(id: NodeId, limits: Limits, store: Option<Arc<dyn RoomStore>>) -> Self {
        Self {
            id,
            limits,
            store,
            rooms: Mutex::default(),
            expect: Mutex::new(Expect {
                until: Some(Instant::now() + EXPECT_FOR),
                ..Expect::default()
            }),
            fenced: AtomicBool::new(false),
            routed: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Map<RoomId, Held>> {
        self.rooms.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_expect(&self) -> MutexGuard<'_, Expect> {
        self.expect.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The room if this node may serve it now, creating it if needed;
    /// `ring_epoch` is the epoch of `ring`.
    pub(super) fn route(&self, room: &str, ring: &Ring, ring_epoch: Epoch) -> Option<Arc<Room>> {
        if self.fenced.load(Ordering::Acquire)
            || RoomId::kind_of(room).is_err()
            || ring.owner_of(room) != Some(&self.id)
        {
            return None;
        }
        let now = self.tick();
        if let Some(held) = self.lock().get(room) {
            held.room.touch(now);
            return Some(held.room.clone());
        }
        if self.awaiting(ring_epoch) {
            return None;
        }
        let id = RoomId::parse(room).ok()?;
        let mut rooms = self.lock();
        let held = rooms.entry(id.clone()).or_insert_with(|| {
            Held::new(Room::new(
                id,
                self.id.clone(),
                self.limits,
                self.store.clone(),
            ))
        });
        held.room.touch(now);
        Some(held.room.clone())
    }

    /// Whether rooms may still be on their way here under the ring of
    /// `ring_epoch`.
    fn awaiting(&self, ring_epoch: Epoch) -> bool {
        let expect = self.lock_expect();
        // A ring newer than the expectations: the rebalancer has not looked
        // at it yet.
        let behind = !expect.ready || expect.epoch < ring_epoch;
        let pending = behind
            || expect
                .live
                .iter()
                .any(|n| expect.done.get(n).is_none_or(|e| *e < expect.epoch));
        pending && expect.until.is_some_and(|until| Instant::now() < until)
    }

    /// The ring of `epoch` is in force: rooms may now arrive from every other
    /// live node.
    pub(super) fn expect_from(&self, epoch: Epoch, live: impl Iterator<Item = NodeId>) {
        let live: HashSet<NodeId> = live.filter(|n| *n != self.id).collect();
        let mut expect = self.lock_expect();
        expect.done.retain(|n, _| live.contains(n));
        expect.live = live;
        expect.epoch = epoch;
        expect.ready = true;
        expect.until = Some(Instant::now() + EXPECT_FOR);
    }

    /// `node` has handed off everything it had for us as of `epoch`.
    pub(super) fn done_from(&self, node: &NodeId, epoch: Epoch) {
        let mut expect = self.lock_expect();
        let latest = expect.done.entry(node.clone()).or_default();
        *latest = (*latest).max(epoch);
    }

    /// Installs a room handed off by its previous owner; false if this node
    /// already serves it.
    pub(super) fn install(&self, room: &RoomId, arrival: Arrival) -> bool {
        let mut rooms = self.lock();
        if let Some(held) = rooms.get(room) {
            if !held.room.is_frozen() {
                return false;
            }
            // A copy left frozen by a move that got no answer: the room
            // comes back with everything that happened since, and replaces
            // it.
            held.room.retire();
            rooms.remove(room);
        }
        let live = Room::new(
            room.clone(),
            self.id.clone(),
            self.limits,
            self.store.clone(),
        );
        live.install(arrival);
        live.touch(self.tick());
        rooms.insert(room.clone(), Held::new(live));
        true
    }

    /// The rooms held that `ring` gives to another node (or to none), the
    /// most recently used first: their clients wait while they move, idle
    /// rooms' clients do not.
    pub(super) fn not_owned(&self, ring: &Ring) -> Vec<Arc<Room>> {
        let mut moving: Vec<(u64, Arc<Room>)> = self
            .lock()
            .iter()
            .filter(|(room, _)| ring.owner(room) != Some(&self.id))
            .map(|(_, held)| (held.room.used(), held.room.clone()))
            .collect();
        moving.sort_by_key(|m| std::cmp::Reverse(m.0));
        moving.into_iter().map(|(_, room)| room).collect()
    }

    /// Thaws the frozen rooms that `ring` gives to this node; returns how
    /// many. Only between rebalance rounds, when no hand-off is under way.
    pub(super) fn thaw_owned(&self, ring: &Ring) -> usize {
        let owned: Vec<Arc<Room>> = self
            .lock()
            .iter()
            .filter(|(room, _)| ring.owner(room) == Some(&self.id))
            .map(|(_, held)| held.room.clone())
            .collect();
        owned.iter().filter(|room| room.thaw_if_frozen()).count()
    }

    /// Forgets a room that moved on.
    pub(super) fn remove(&self, room: &RoomId) {
        if let Some(held) = self.lock().remove(room) {
            held.room.retire();
        }
    }

    /// Forgets this copy of a room that moved on, if it is still the one
    /// held (a copy handed back meanwhile replaced it, and stays).
    pub(super) fn remove_copy(&self, room: &Arc<Room>) {
        let mut rooms = self.lock();
        if rooms
            .get(room.id())
            .is_some_and(|held| Arc::ptr_eq(&held.room, room))
        {
            rooms.remove(room.id());
        }
        room.retire();
    }

    /// Whether a room of this id is held now.
    pub(super) fn holds(&self, room: &RoomId) -> bool {
        self.lock().contains_key(room)
    }

    /// Releases the rooms that no operation has reached for `idle` and that
    /// no connection has joined; returns those that went.
    pub(super) fn release_idle(&self, idle: Duration) -> Vec<Arc<Room>> {
        let now = Instant::now();
        let candidates: Vec<Arc<Room>> = {
            let mut rooms = self.lock();
            let mut due = Vec::new();
            for held in rooms.values_mut() {
                let used = held.room.used();
                match held.unused_since {
                    Some((since, at)) if at == used => {
                        if now.duration_since(since) >= idle {
                            due.push(held.room.clone());
                        }
                    }
                    _ => held.unused_since = Some((now, used)),
                }
            }
            due
        };
        // Each room decides under its own lock, outside the map's.
        let released: Vec<Arc<Room>> = candidates
            .into_iter()
            .filter(|room| room.release_if_idle())
            .collect();
        let mut rooms = self.lock();
        for room in &released {
            if rooms
                .get(room.id())
                .is_some_and(|held| Arc::ptr_eq(&held.room, room))
            {
                rooms.remove(room.id());
            }
        }
        released
    }

    /// The store rooms are kept in, if any.
    pub(super) fn store(&self) -> Option<&Arc<dyn RoomStore>> {
        self.store.as_ref()
    }

    /// How many rooms are held.
    pub(super) fn len(&self) -> usize {
        self.lock().len()
    }

    /// The next value of the recency count.
    pub(super) fn tick(&self) -> u64 {
        self.routed.fetch_add(1, Ordering::Relaxed)
    }

    /// Whether the node serves no room now (its lease is in doubt).
    pub(super) fn is_fenced(&self) -> bool {
        self.fenced.load(Ordering::Acquire)
    }

    /// Stops or resumes serving (lease in doubt / renewed).
    pub(super) fn set_fenced(&self, fenced: bool) {
        self.fenced.store(fenced, Ordering::Release);
    }

    /// Drops every room: their state may have moved on while fenced.
    pub(super) fn clear(&self) {
        for (_, held) in self.lock().drain() {
            held.room.retire();
        }
    }

    /// A link went away: its connections leave every room.
    pub(super) fn drop_link(&self, link: LinkId) {
        let rooms: Vec<Arc<Room>> = self.lock().values().map(|h| h.room.clone()).collect();
        for room in rooms {
            room.drop_link(link);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> NodeId {
        NodeId::parse(s).unwrap()
    }

    /// A room frozen for a move that never finished serves again once the
    /// ring gives it back; one the ring still gives away stays frozen.
    #[tokio::test]
    async fn frozen_rooms_the_ring_gives_back_are_thawed() {
        let (me, other) = (id("n1"), id("n2"));
        let registry = Registry::new(me.clone(), Limits::default(), None);
        registry.expect_from(Epoch(1), std::iter::empty());
        let alone = Ring::new([me.clone()]);
        let names: Vec<String> = (0..64).map(|i| format!("chat:t-{i}")).collect();
        let rooms: Vec<Arc<Room>> = names
            .iter()
            .map(|name| registry.route(name, &alone, Epoch(1)).expect("ours"))
            .collect();
        for room in &rooms {
            drop(room.freeze());
        }
        // The move is still due: the ring gives every room to n2.
        let away = Ring::new([other.clone()]);
        assert_eq!(registry.thaw_owned(&away), 0);
        // Half the rooms come back with a ring of both nodes.
        let both = Ring::new([me.clone(), other.clone()]);
        let back: Vec<&Arc<Room>> = rooms
            .iter()
            .filter(|r| both.owner(r.id()) == Some(&me))
            .collect();
        assert!(!back.is_empty() && back.len() < rooms.len());
        assert_eq!(registry.thaw_owned(&both), back.len());
        for room in &rooms {
            let ours = both.owner(room.id()) == Some(&me);
            // Thawed rooms are not frozen any more; the others still are.
            assert_eq!(room.thaw_if_frozen(), !ours, "{}", room.id());
        }
    }

    /// A room left frozen by a move that got no answer is replaced by the
    /// copy that comes back; one that serves refuses an arrival.
    #[tokio::test]
    async fn an_arriving_copy_replaces_a_frozen_leftover() {
        let me = id("n1");
        let registry = Registry::new(me.clone(), Limits::default(), None);
        registry.expect_from(Epoch(1), std::iter::empty());
        let alone = Ring::new([me.clone()]);
        let room = registry.route("chat:back", &alone, Epoch(1)).expect("ours");
        let arrival = || Arrival {
            state: None,
            conns: Vec::new(),
            links: Vec::new(),
        };
        assert!(!registry.install(room.id(), arrival()), "it serves here");
        drop(room.freeze());
        assert!(
            registry.install(room.id(), arrival()),
            "the copy that came back"
        );
        assert!(room.is_retired(), "the leftover goes");
        let now = registry.route("chat:back", &alone, Epoch(1)).expect("ours");
        assert!(!Arc::ptr_eq(&now, &room) && !now.is_frozen());
    }
}
