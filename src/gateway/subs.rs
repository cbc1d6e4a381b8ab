//! The gateway's subscriptions, and their only owner: per room, the local
//! connections subscribed to it, the node that serves the gateway's one
//! subscription there, and the last seq passed on. A room event arrives once
//! from the owner and is fanned out here, one frame built and shared by
//! every subscriber. Each connection has its own floor (the seq it joined
//! at, then the last seq it got), so nobody sees an event twice, whatever
//! the order in which replies and events arrive around a move.

use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;

use super::outbox::{Dirty, Outbox};
use super::websocket;
use crate::ids::{ConnId, Map, NodeId, RoomId};
use crate::ring::Ring;

/// Events a room may buffer while it resumes at a new owner; past it the
/// oldest go (the resume fills them in from the owner's history).
const HOLD_LIMIT: usize = 16 * 1024;

/// An event held back while its room resumes: seq, connection to skip, frame.
type HeldEvent = (Option<u64>, Option<ConnId>, Bytes);

struct Subscriber {
    conn: ConnId,
    out: Arc<Outbox>,
    /// Stored events up to this seq are not for this connection.
    after: u64,
}

/// Subscribers a room looks through one by one; past it, it keeps an index
/// by connection, so that a join or a leave costs the same in any room.
const SCAN_UP_TO: usize = 32;

/// One room's local subscribers.
#[derive(Default)]
struct RoomSubs {
    conns: Vec<Subscriber>,
    /// Where each connection is in `conns`, once there are more than
    /// `SCAN_UP_TO`.
    index: Option<Map<ConnId, usize>>,
    /// The last seq passed on.
    last_seq: u64,
    /// The history (`epoch`) that `last_seq` counts in, once known.
    epoch: Option<Arc<str>>,
    /// The node that serves this gateway's subscription.
    owner: Option<NodeId>,
    /// While the room resumes at a new owner: its events, held back until
    /// the missed ones are in, so that nobody sees a gap.
    held: Option<Vec<HeldEvent>>,
}

impl RoomSubs {
    /// Delivers what was held while the room resumed (after `last_seq`),
    /// and delivers live again from `owner`; returns the frames queued.
    fn live_again(&mut self, owner: &NodeId, dirty: &mut Dirty) -> u64 {
        let mut sent = 0;
        for (seq, skip, frame) in self.held.take().unwrap_or_default() {
            if seq.is_none_or(|s| s > self.last_seq) {
                sent += self.deliver(seq, skip, &frame, dirty);
            }
        }
        self.owner = Some(owner.clone());
        sent
    }

    /// Where a connection is in `conns`.
    fn find(&self, conn: ConnId) -> Option<usize> {
        match &self.index {
            Some(index) => index.get(&conn).copied(),
            None => self.conns.iter().position(|s| s.conn == conn),
        }
    }

    fn add(&mut self, sub: Subscriber) {
        if let Some(index) = &mut self.index {
            index.insert(sub.conn, self.conns.len());
        }
        self.conns.push(sub);
        if self.index.is_none() && self.conns.len() > SCAN_UP_TO {
            let index = self.conns.iter().enumerate().map(|(i, s)| (s.conn, i));
            self.index = Some(index.collect());
        }
    }

    fn remove(&mut self, conn: ConnId) {
        let Some(at) = self.find(conn) else { return };
        self.conns.swap_remove(at);
        if let Some(index) = &mut self.index {
            index.remove(&conn);
            if let Some(moved) = self.conns.get(at) {
                index.insert(moved.conn, at);
            }
        }
    }

    /// Passes an event on to every subscriber it is new to.
    fn deliver(
        &mut self,
        seq: Option<u64>,
        skip: Option<ConnId>,
        frame: &Bytes,
        dirty: &mut Dirty,
    ) -> u64 {
        if let Some(seq) = seq {
            self.last_seq = self.last_seq.max(seq);
        }
        let mut sent = 0;
        for sub in &mut self.conns {
            if Some(sub.conn) == skip {
                continue;
            }
            if let Some(seq) = seq {
                if seq <= sub.after {
                    continue;
                }
                sub.after = seq;
            }
            dirty.push(&sub.out, frame.clone());
            sent += 1;
        }
        sent
    }
}

/// A room to subscribe again at its (new) owner.
pub(super) struct Resume {
    /// The room.
    pub(super) room: RoomId,
    /// The last seq passed on.
    pub(super) since: u64,
}

/// Subscriptions of one gateway.
#[derive(Default)]
pub(super) struct Subscriptions {
    /// Held for map updates and non-blocking queueing only.
    rooms: Mutex<Map<RoomId, RoomSubs>>,
}

impl Subscriptions {
    fn lock(&self) -> MutexGuard<'_, Map<RoomId, RoomSubs>> {
        self.rooms.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Subscribes a connection to a room whose seq was `seq` when it joined,
    /// at `owner`.
    pub(super) fn subscribe(
        &self,
        room: &RoomId,
        conn: ConnId,
        out: &Arc<Outbox>,
        seq: u64,
        owner: &NodeId,
        epoch: impl FnOnce() -> Option<Arc<str>>,
    ) {
        let mut rooms = self.lock();
        let subs = rooms.entry(room.clone()).or_default();
        if subs.conns.is_empty() {
            // The first local subscriber starts the gateway's stream.
            subs.last_seq = seq;
            subs.epoch = None;
        }
        if subs.epoch.is_none() {
            subs.epoch = epoch();
        }
        match subs.find(conn) {
            // Never lowered: a late reply (from an owner the room has left)
            // must not open the floor to events the connection already has.
            Some(at) => subs.conns[at].after = subs.conns[at].after.max(seq),
            None => subs.add(Subscriber {
                conn,
                out: out.clone(),
                after: seq,
            }),
        }
        if subs.held.is_none() {
            subs.owner = Some(owner.clone());
        }
    }

    /// Unsubscribes a connection from a room.
    pub(super) fn unsubscribe(&self, room: &str, conn: ConnId) {
        let mut rooms = self.lock();
        if let Some(subs) = rooms.get_mut(room) {
            subs.remove(conn);
            // A room held for a resume stays until the resume is answered:
            // the resume tells the new owner that nobody is left here.
            if subs.conns.is_empty() && subs.held.is_none() {
                rooms.remove(room);
            }
        }
    }

    /// Forgets a room held for a resume that nobody here waits for any
    /// more and that no resume will tell of.
    pub(super) fn forget_if_empty(&self, room: &str) {
        let mut rooms = self.lock();
        if rooms.get(room).is_some_and(|subs| subs.conns.is_empty()) {
            rooms.remove(room);
        }
    }

    /// A room still held for a resume, and a connection subscribed to it
    /// with the seq to resume from: for a resume whose own connection left
    /// (others may have joined meanwhile, and the held events wait for a
    /// resume to end).
    pub(super) fn held_for(&self, room: &str) -> Option<(ConnId, u64)> {
        let rooms = self.lock();
        let subs = rooms.get(room)?;
        subs.held.as_ref()?;
        Some((subs.conns.first()?.conn, subs.last_seq))
    }

    /// Holds a room's events for a resume at the same owner (its history
    /// was lost or rewound there): whether it was subscribed and not held
    /// already.
    pub(super) fn hold(&self, room: &str) -> bool {
        let mut rooms = self.lock();
        match rooms.get_mut(room) {
            Some(subs) if subs.held.is_none() => {
                subs.held = Some(Vec::new());
                true
            }
            _ => false,
        }
    }

    /// A room still held for a resume: the seq to resume from, the history
    /// it counts in, and every connection subscribed to it (a resume of the
    /// whole room).
    pub(super) fn held(&self, room: &str) -> Option<(u64, Option<Arc<str>>, Vec<ConnId>)> {
        let rooms = self.lock();
        let subs = rooms.get(room)?;
        subs.held.as_ref()?;
        let conns = subs.conns.iter().map(|s| s.conn).collect();
        Some((subs.last_seq, subs.epoch.clone(), conns))
    }

    /// Whether a connection is still subscribed to a room.
    pub(super) fn is_subscribed(&self, room: &str, conn: ConnId) -> bool {
        self.lock()
            .get(room)
            .is_some_and(|s| s.find(conn).is_some())
    }

    /// Fans a room event out to the local subscribers, except `skip`; the
    /// WebSocket frame is built once, and only if someone gets it.
    pub(super) fn dispatch(
        &self,
        room: &str,
        seq: Option<u64>,
        skip: Option<ConnId>,
        payload: &[u8],
        dirty: &mut Dirty,
    ) {
        let mut rooms = self.lock();
        let Some(subs) = rooms.get_mut(room) else {
            return;
        };
        if seq.is_some_and(|s| s <= subs.last_seq) && subs.held.is_none() {
            return;
        }
        let frame = websocket::text(payload);
        if let Some(held) = &mut subs.held {
            if held.len() >= HOLD_LIMIT {
                held.remove(0);
            }
            held.push((seq, skip, frame));
            return;
        }
        let sent = subs.deliver(seq, skip, &frame, dirty);
        dirty.delivered(sent);
    }

    /// Marks for resumption every subscribed room whose owner is not the
    /// ring's any more, or is the node whose link went `down`; their events
    /// are held until `resumed`.
    pub(super) fn to_resume(&self, ring: &Ring, down: Option<&NodeId>) -> Vec<Resume> {
        let mut rooms = self.lock();
        rooms
            .iter_mut()
            .filter(|(room, subs)| {
                let owner = subs.owner.as_ref();
                subs.held.is_none()
                    && (owner != ring.owner(room) || (owner.is_some() && owner == down))
            })
            .map(|(room, subs)| {
                subs.held = Some(Vec::new());
                subs.owner = None;
                Resume {
                    room: room.clone(),
                    since: subs.last_seq,
                }
            })
            .collect()
    }

    /// One connection, resumed on its own, gets the room's `joined` (past
    /// the replay budget, or another history) and counts from its seq; so
    /// does the room, whose other connections' answers follow.
    pub(super) fn resynced(
        &self,
        room: &str,
        owner: &NodeId,
        conn: ConnId,
        (seq, epoch): (u64, Option<Arc<str>>),
        frame: Bytes,
        dirty: &mut Dirty,
    ) {
        let mut rooms = self.lock();
        let Some(subs) = rooms.get_mut(room) else {
            return;
        };
        let mut sent = 0;
        if let Some(at) = subs.find(conn) {
            let sub = &mut subs.conns[at];
            sub.after = seq;
            dirty.push(&sub.out, frame);
            sent += 1;
        }
        subs.last_seq = seq;
        subs.epoch = epoch;
        sent += subs.live_again(owner, dirty);
        dirty.delivered(sent);
    }

    /// A resumed room: passes on the `missed` events (seq, frame) first,
    /// or, when more were missed than a replay holds or the room's history
    /// was lost or rewound, the room's `joined` (seq, epoch, frame: marked
    /// truncated, with the latest events; every count starts again from its
    /// seq), then the held ones, and delivers live again.
    pub(super) fn resumed(
        &self,
        room: &str,
        owner: &NodeId,
        missed: &[(u64, Bytes)],
        joined: Option<(u64, Option<Arc<str>>, Bytes)>,
        dirty: &mut Dirty,
    ) {
        let mut rooms = self.lock();
        let Some(subs) = rooms.get_mut(room) else {
            return;
        };
        let mut sent = 0;
        if let Some((seq, epoch, frame)) = joined {
            let frame = websocket::text(&frame);
            for sub in &mut subs.conns {
                sub.after = seq;
                dirty.push(&sub.out, frame.clone());
                sent += 1;
            }
            subs.last_seq = seq;
            subs.epoch = epoch;
        }
        for (seq, payload) in missed {
            if *seq > subs.last_seq {
                sent += subs.deliver(Some(*seq), None, &websocket::text(payload), dirty);
            }
        }
        sent += subs.live_again(owner, dirty);
        dirty.delivered(sent);
        if subs.conns.is_empty() {
            rooms.remove(room);
        }
    }
}

#[cfg(test)]
mod tests;
