//! The gateway's local state: its client connections (by id and by user) and,
//! per room, the local connections subscribed to it. A room event arrives once
//! from the owner and is fanned out here to every local subscriber, the same
//! bytes shared by all of them.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::ws::Utf8Bytes;
use tokio::sync::Notify;

use crate::ids::{NodeId, RoomId, UserId};
use crate::protocol::link::ConnId;
use crate::ring::Ring;

/// Frames a connection may have queued before it counts as a slow consumer.
pub const CONN_QUEUE: usize = 1024;

/// Close code for a client that does not read fast enough.
pub const CLOSE_SLOW: u16 = 1008;
/// Close code when the gateway stops (service restart).
pub const CLOSE_RESTART: u16 = 1012;

/// Why and how a connection is to be closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Close {
    /// WebSocket close code.
    pub code: u16,
    /// Reason sent with it.
    pub reason: &'static str,
}

/// What a connection's task is to write next.
pub enum Outgoing {
    /// Frames, oldest first.
    Frames,
    /// Close with this code.
    Close(Close),
}

/// One connection's queue of frames to write, and its close request: a
/// mutex-guarded deque that allocates only once frames flow, and one wake-up
/// permit. An idle connection holds a couple of hundred bytes here.
#[derive(Default)]
struct Outbox {
    state: Mutex<OutboxState>,
    ready: Notify,
}

#[derive(Default)]
struct OutboxState {
    frames: VecDeque<Utf8Bytes>,
    close: Option<Close>,
    /// The connection's task is gone.
    gone: bool,
}

impl Outbox {
    fn lock(&self) -> std::sync::MutexGuard<'_, OutboxState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The sending side of one client connection.
#[derive(Clone)]
pub struct ConnTx(Arc<Outbox>);

impl ConnTx {
    /// Queues a frame; past `CONN_QUEUE` queued frames asks the connection to
    /// close (`CLOSE_SLOW`), so that one slow client never holds up a room.
    pub fn send(&self, frame: Utf8Bytes) -> bool {
        let mut state = self.0.lock();
        if state.gone || state.close.is_some() {
            return false;
        }
        if state.frames.len() >= CONN_QUEUE {
            state.close = Some(Close {
                code: CLOSE_SLOW,
                reason: "slow consumer",
            });
        } else {
            state.frames.push_back(frame);
        }
        let queued = state.close.is_none();
        drop(state);
        self.0.ready.notify_one();
        queued
    }

    /// Asks the connection to close (the first request wins).
    pub fn close(&self, close: Close) {
        let mut state = self.0.lock();
        if state.close.is_none() {
            state.close = Some(close);
            drop(state);
            self.0.ready.notify_one();
        }
    }
}

/// The receiving side, owned by the connection's task.
pub struct ConnRx(Arc<Outbox>);

impl ConnRx {
    /// Waits for frames (swapped into `batch`, which must be empty) or a
    /// close request, which comes first.
    pub async fn next(&mut self, batch: &mut VecDeque<Utf8Bytes>) -> Outgoing {
        self.wait(|state| {
            if let Some(close) = state.close {
                Some(Outgoing::Close(close))
            } else if !state.frames.is_empty() {
                std::mem::swap(&mut state.frames, batch);
                Some(Outgoing::Frames)
            } else {
                None
            }
        })
        .await
    }

    /// Waits for a close request only (while a write is in progress).
    pub async fn closing(&self) -> Close {
        self.wait(|state| state.close).await
    }

    /// Waits until `ready` finds something in the outbox. Every change to
    /// the outbox leaves a wake-up permit, so none is missed between the
    /// look and the wait.
    async fn wait<T>(&self, mut ready: impl FnMut(&mut OutboxState) -> Option<T>) -> T {
        loop {
            if let Some(found) = ready(&mut self.0.lock()) {
                return found;
            }
            self.0.ready.notified().await;
        }
    }
}

impl Drop for ConnRx {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        state.gone = true;
        state.frames = VecDeque::new();
    }
}

struct Conn {
    user: UserId,
    tx: ConnTx,
}

/// Events a room may buffer while it resumes at a new owner.
const HOLD_LIMIT: usize = 16 * 1024;

/// An event held back while its room resumes.
type HeldEvent = (Option<u64>, Option<ConnId>, Utf8Bytes);

/// One room's local subscribers.
#[derive(Default)]
struct RoomSubs {
    conns: Vec<(ConnId, ConnTx)>,
    /// The last seq passed on, so a repeated event is dropped.
    last_seq: u64,
    /// The node that serves this gateway's subscription.
    owner: Option<NodeId>,
    /// While the room resumes at a new owner: its events, held back until the
    /// missed ones are fetched, so that nobody sees a gap. Bounded by
    /// `HOLD_LIMIT`; past it the oldest go (the resume then fills them in).
    held: Option<Vec<HeldEvent>>,
}

impl RoomSubs {
    /// Passes an event on unless it was already passed on.
    fn deliver(&mut self, seq: Option<u64>, skip: Option<ConnId>, frame: &Utf8Bytes) -> u64 {
        if let Some(seq) = seq {
            if seq <= self.last_seq {
                return 0;
            }
            self.last_seq = seq;
        }
        let mut sent = 0;
        for (id, tx) in &self.conns {
            if Some(*id) != skip && tx.send(frame.clone()) {
                sent += 1;
            }
        }
        sent
    }
}

/// A room to subscribe again at its (new) owner.
pub struct Resume {
    /// The room.
    pub room: RoomId,
    /// Its local connections and their users.
    pub conns: Vec<(ConnId, UserId)>,
    /// The last seq passed on.
    pub since: u64,
}

/// Connections and subscriptions of one gateway.
#[derive(Default)]
pub struct Sessions {
    next: AtomicU64,
    /// Held for map updates and non-blocking sends only.
    conns: Mutex<HashMap<ConnId, Conn>>,
    /// Held for map updates and non-blocking sends only.
    rooms: Mutex<HashMap<RoomId, RoomSubs>>,
}

impl Sessions {
    /// Registers a new connection of `user`.
    pub fn open(&self, user: UserId) -> (ConnId, ConnTx, ConnRx) {
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let outbox = Arc::new(Outbox::default());
        let conn_tx = ConnTx(outbox.clone());
        self.lock_conns().insert(
            id,
            Conn {
                user,
                tx: conn_tx.clone(),
            },
        );
        metrics::gauge!("roomring_connections").increment(1.0);
        (id, conn_tx, ConnRx(outbox))
    }

    /// Forgets a connection (its rooms must have been unsubscribed).
    pub fn close(&self, id: ConnId) {
        if self.lock_conns().remove(&id).is_some() {
            metrics::gauge!("roomring_connections").decrement(1.0);
        }
    }

    /// How many connections are open.
    pub fn len(&self) -> usize {
        self.lock_conns().len()
    }

    /// Whether no connection is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Queues a frame for one connection.
    pub fn send_to(&self, id: ConnId, frame: Utf8Bytes) {
        let tx = self.lock_conns().get(&id).map(|c| c.tx.clone());
        if let Some(tx) = tx {
            tx.send(frame);
        }
    }

    /// Queues a frame for every connection of a user; returns how many.
    pub fn send_to_user(&self, user: &UserId, frame: Utf8Bytes) -> usize {
        let conns = self.lock_conns();
        conns
            .values()
            .filter(|c| &c.user == user)
            .filter(|c| c.tx.send(frame.clone()))
            .count()
    }

    /// Asks every connection to close.
    pub fn close_all(&self, close: Close) {
        for conn in self.lock_conns().values() {
            conn.tx.close(close);
        }
    }

    /// Subscribes a connection to a room whose seq was `seq` when it joined.
    pub fn subscribe(&self, room: &RoomId, id: ConnId, seq: u64, owner: &NodeId) {
        let Some(tx) = self.lock_conns().get(&id).map(|c| c.tx.clone()) else {
            return;
        };
        let mut rooms = self.lock_rooms();
        let subs = rooms.entry(room.clone()).or_default();
        if subs.conns.is_empty() || seq < subs.last_seq {
            // First local subscriber, or the room restarted from scratch.
            subs.last_seq = seq;
        }
        if !subs.conns.iter().any(|(c, _)| *c == id) {
            subs.conns.push((id, tx));
        }
        if subs.held.is_none() {
            subs.owner = Some(owner.clone());
        }
    }

    /// Marks for resumption every subscribed room whose owner is not the
    /// ring's any more, or is the node whose link went `down`; their events
    /// are held until `resumed`.
    pub fn to_resume(&self, ring: &Ring, down: Option<&NodeId>) -> Vec<Resume> {
        let mut rooms = self.lock_rooms();
        let moved: Vec<RoomId> = rooms
            .iter()
            .filter(|(room, subs)| {
                let owner = subs.owner.as_ref();
                subs.held.is_none()
                    && (owner != ring.owner(room) || (owner.is_some() && owner == down))
            })
            .map(|(room, _)| room.clone())
            .collect();
        let conns = self.lock_conns();
        moved
            .into_iter()
            .filter_map(|room| {
                let subs = rooms.get_mut(&room)?;
                subs.held = Some(Vec::new());
                subs.owner = None;
                let users = subs
                    .conns
                    .iter()
                    .filter_map(|(id, _)| Some((*id, conns.get(id)?.user.clone())));
                Some(Resume {
                    conns: users.collect(),
                    since: subs.last_seq,
                    room,
                })
            })
            .collect()
    }

    /// Whether a connection is still subscribed to a room.
    pub fn is_subscribed(&self, room: &RoomId, id: ConnId) -> bool {
        self.lock_rooms()
            .get(room)
            .is_some_and(|s| s.conns.iter().any(|(c, _)| *c == id))
    }

    /// A resumed room: passes on the `missed` events (seq, frame) first,
    /// then the held ones, and delivers live again.
    pub fn resumed(&self, room: &RoomId, owner: &NodeId, missed: Vec<(u64, Utf8Bytes)>) {
        let mut rooms = self.lock_rooms();
        let Some(subs) = rooms.get_mut(room) else {
            return;
        };
        let mut sent = 0;
        for (seq, frame) in missed {
            sent += subs.deliver(Some(seq), None, &frame);
        }
        for (seq, skip, frame) in subs.held.take().unwrap_or_default() {
            sent += subs.deliver(seq, skip, &frame);
        }
        subs.owner = Some(owner.clone());
        drop(rooms);
        metrics::counter!("roomring_deliveries_total").increment(sent);
    }

    /// Unsubscribes a connection from a room.
    pub fn unsubscribe(&self, room: &RoomId, id: ConnId) {
        let mut rooms = self.lock_rooms();
        if let Some(subs) = rooms.get_mut(room) {
            subs.conns.retain(|(c, _)| *c != id);
            if subs.conns.is_empty() {
                rooms.remove(room);
            }
        }
    }

    /// Fans a room event out to the local subscribers, except `skip`.
    pub fn dispatch(
        &self,
        room: &RoomId,
        seq: Option<u64>,
        skip: Option<ConnId>,
        frame: Utf8Bytes,
    ) {
        let mut rooms = self.lock_rooms();
        let Some(subs) = rooms.get_mut(room) else {
            return;
        };
        if let Some(held) = &mut subs.held {
            if held.len() >= HOLD_LIMIT {
                held.remove(0);
            }
            held.push((seq, skip, frame));
            return;
        }
        let sent = subs.deliver(seq, skip, &frame);
        drop(rooms);
        metrics::counter!("roomring_deliveries_total").increment(sent);
    }

    fn lock_conns(&self) -> std::sync::MutexGuard<'_, HashMap<ConnId, Conn>> {
        self.conns.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_rooms(&self) -> std::sync::MutexGuard<'_, HashMap<RoomId, RoomSubs>> {
        self.rooms.lock().unwrap_or_else(|e| e.into_inner())
    }
}
