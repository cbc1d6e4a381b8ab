//! The gateway's local state: its client connections (by id and by user) and,
//! per room, the local connections subscribed to it. A room event arrives once
//! from the owner and is fanned out here to every local subscriber, the same
//! bytes shared by all of them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::ws::Utf8Bytes;
use tokio::sync::{mpsc, watch};

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

/// The sending side of one client connection.
#[derive(Clone)]
pub struct ConnTx {
    /// Bounded; a full queue closes the connection (`CLOSE_SLOW`) so that one
    /// slow client never holds up a room.
    tx: mpsc::Sender<Utf8Bytes>,
    /// Tells the connection's task to close with a code.
    close: Arc<watch::Sender<Option<Close>>>,
}

impl ConnTx {
    /// Queues a frame; on overflow asks the connection to close.
    pub fn send(&self, frame: Utf8Bytes) -> bool {
        match self.tx.try_send(frame) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.close(Close {
                    code: CLOSE_SLOW,
                    reason: "slow consumer",
                });
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    /// Asks the connection to close (the first request wins).
    pub fn close(&self, close: Close) {
        self.close
            .send_if_modified(|c| c.is_none() && c.replace(close).is_none());
    }
}

/// The receiving side, owned by the connection's task.
pub struct ConnRx {
    /// Frames to write.
    pub frames: mpsc::Receiver<Utf8Bytes>,
    /// Close requests.
    pub close: watch::Receiver<Option<Close>>,
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
        let (tx, frames) = mpsc::channel(CONN_QUEUE);
        let (close_tx, close) = watch::channel(None);
        let conn_tx = ConnTx {
            tx,
            close: Arc::new(close_tx),
        };
        self.lock_conns().insert(
            id,
            Conn {
                user,
                tx: conn_tx.clone(),
            },
        );
        metrics::gauge!("roomring_connections").increment(1.0);
        (id, conn_tx, ConnRx { frames, close })
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
