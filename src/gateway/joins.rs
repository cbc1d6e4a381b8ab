//! Joins of one room gathered on their way to its owner, so that a storm of
//! joins (a gateway's members coming back after it restarted) subscribes a
//! room with a few requests, not one per member.
//!
//! One join request per room is on its way at a time, and, while joins
//! keep coming, one per `GATHER` unless `FULL` wait. The joins that come
//! meanwhile wait at the room's gate, each with the later operations of its
//! connection behind it (so that a connection's operations keep their
//! order), and go together when the one on its way is answered and either
//! `GATHER` has passed since it went or `FULL` wait. A join that finds no
//! gate goes at once. The owner
//! answers gathered joins once: what their `joined` frames share, and the
//! kept events any of them replays. Each joiner's `joined` is written here
//! from that answer, as the owner writes one `joined` alone.

use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use std::time::Duration;

use bytes::Bytes;
use serde_json::value::RawValue;
use tokio::time::Instant;

use super::outbox::Outbox;
use crate::ids::{ConnId, Map, RoomId, UserId};
use crate::protocol::server::{is_msg_frame, push_json_str};
use crate::protocol::{Joining, JOIN_HISTORY, NAMES_SHOWN};

/// The least time between two join requests of one room: a storm of
/// joins costs its owner one request per this long.
pub(super) const GATHER: Duration = Duration::from_millis(100);
/// Waiting joins that go without waiting for the rest of `GATHER`, so that
/// clients that join a few at a time are not slowed down.
pub(super) const FULL: usize = 128;

/// A connection's `join` waiting at its room's gate.
pub(super) struct Joiner {
    pub(super) conn: ConnId,
    pub(super) out: Arc<Outbox>,
    pub(super) user: UserId,
    /// The client frame's `id`.
    pub(super) id: Option<Box<str>>,
    pub(super) since: Option<u64>,
    pub(super) epoch: Option<Box<str>>,
}

impl Joiner {
    /// The join as the link carries it.
    pub(super) fn joining(&self) -> Joining<&str> {
        Joining {
            conn: self.conn,
            user: self.user.as_str(),
            since: self.since,
            epoch: self.epoch.as_deref(),
        }
    }
}

/// The gates of the rooms with a join on its way; `L` is an operation that
/// waits behind a joiner.
pub(super) struct Gates<L> {
    rooms: Mutex<Map<RoomId, Gate<L>>>,
    /// How many gates there are, so that operations pass without a lock
    /// while none is.
    open: AtomicUsize,
    /// Numbers timers, so that one that fired late is known.
    timers: AtomicU64,
}

struct Gate<L> {
    joiners: Vec<Joiner>,
    later: Vec<L>,
    /// When the last join request of the room went.
    sent: Instant,
    /// Whether one is on its way (else the waiting joins wait for a timer).
    on_its_way: bool,
    /// The timer the waiting joins go on, if one is armed.
    timer: Option<u64>,
}

/// What to do next at a room's gate.
pub(super) enum Next<L> {
    /// Nothing, now.
    Wait,
    /// Send these joins in one request, then the operations behind them.
    Go(Vec<Joiner>, Vec<L>),
    /// Arm a timer for this time, to `fire` with this number.
    At(Instant, u64),
}

impl<L> Default for Gates<L> {
    fn default() -> Self {
        Self {
            rooms: Mutex::default(),
            open: AtomicUsize::new(0),
            timers: AtomicU64::new(0),
        }
    }
}

impl<L> Gates<L> {
    fn lock(&self) -> MutexGuard<'_, Map<RoomId, Gate<L>>> {
        self.rooms.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A join of `room`: it goes at once when none is on its way (the
    /// room's gate opening behind it), else it waits, and the waiting go
    /// at once when they are `FULL` and the last request was answered.
    pub(super) fn enter(&self, room: &RoomId, joiner: Joiner) -> Next<L> {
        let mut rooms = self.lock();
        let Some(gate) = rooms.get_mut(room) else {
            let gate = Gate {
                joiners: Vec::new(),
                later: Vec::new(),
                sent: Instant::now(),
                on_its_way: true,
                timer: None,
            };
            rooms.insert(room.clone(), gate);
            self.open.fetch_add(1, Ordering::Relaxed);
            return Next::Go(vec![joiner], Vec::new());
        };
        gate.joiners.push(joiner);
        if gate.on_its_way || gate.joiners.len() < FULL {
            return Next::Wait;
        }
        gate.go()
    }

    /// An operation of `conn` on `room`: it waits (none returned) when the
    /// connection's join does, else it goes.
    pub(super) fn behind(&self, room: &str, conn: ConnId, op: L) -> Option<L> {
        if self.open.load(Ordering::Relaxed) == 0 {
            return Some(op);
        }
        let mut rooms = self.lock();
        match rooms.get_mut(room) {
            Some(gate) if gate.joiners.iter().any(|j| j.conn == conn) => {
                gate.later.push(op);
                None
            }
            _ => Some(op),
        }
    }

    /// The join request on its way for `room` was answered (or given up):
    /// the joins that waited go, once `GATHER` has passed since it went or
    /// `FULL` wait; when none waited, the gate closes.
    pub(super) fn answered(&self, room: &str) -> Next<L> {
        let mut rooms = self.lock();
        let Some(gate) = rooms.get_mut(room) else {
            return Next::Wait;
        };
        gate.on_its_way = false;
        if gate.joiners.is_empty() {
            rooms.remove(room);
            self.open.fetch_sub(1, Ordering::Relaxed);
            return Next::Wait;
        }
        let at = gate.sent + GATHER;
        if gate.joiners.len() >= FULL || Instant::now() >= at {
            return gate.go();
        }
        if gate.timer.is_some() {
            return Next::Wait;
        }
        let timer = self.timers.fetch_add(1, Ordering::Relaxed);
        gate.timer = Some(timer);
        Next::At(at, timer)
    }

    /// Timer `timer` of `room` fired: the joins waiting for it go.
    pub(super) fn fire(&self, room: &str, timer: u64) -> Next<L> {
        let mut rooms = self.lock();
        match rooms.get_mut(room) {
            Some(gate) if gate.timer == Some(timer) && !gate.on_its_way => gate.go(),
            _ => Next::Wait,
        }
    }
}

impl<L> Gate<L> {
    /// The waiting joins go now.
    fn go(&mut self) -> Next<L> {
        self.sent = Instant::now();
        self.on_its_way = true;
        self.timer = None;
        Next::Go(
            std::mem::take(&mut self.joiners),
            std::mem::take(&mut self.later),
        )
    }
}

/// What the owner answered gathered joins with: the fields after `history`
/// that their `joined` frames share (presence names no joiner first).
#[derive(serde::Deserialize)]
pub(super) struct Shared<'a> {
    #[serde(borrow)]
    epoch: Cow<'a, str>,
    #[serde(borrow)]
    online: Vec<Cow<'a, str>>,
    online_count: u64,
    #[serde(borrow)]
    reads: &'a RawValue,
    #[serde(borrow)]
    widgets: Option<&'a RawValue>,
    #[serde(borrow)]
    roles: Option<&'a RawValue>,
}

impl<'a> Shared<'a> {
    /// Reads the owner's answer.
    pub(super) fn parse(answer: &'a [u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(answer)
    }

    /// The history the answer belongs to.
    pub(super) fn epoch(&self) -> &str {
        &self.epoch
    }

    /// The events of `events` a joiner's `joined` holds, and whether that
    /// history is truncated.
    fn history_for<'e>(
        &self,
        seq: u64,
        joiner: &Joiner,
        events: &'e [(u64, Bytes)],
    ) -> (Vec<&'e [u8]>, bool) {
        let other_history = joiner.epoch.as_deref().is_some_and(|e| e != self.epoch);
        match joiner.since {
            _ if other_history => (events.iter().map(|(_, f)| &f[..]).collect(), true),
            Some(since) => {
                let after = &events[events.partition_point(|(s, _)| *s <= since)..];
                let first = after.first().map_or(seq.saturating_add(1), |(s, _)| *s);
                let history = after.iter().map(|(_, f)| &f[..]).collect();
                (history, since.saturating_add(1) < first)
            }
            None => {
                let mut last: Vec<&[u8]> = events
                    .iter()
                    .rev()
                    .map(|(_, f)| &f[..])
                    .filter(|f| is_msg_frame(f))
                    .take(JOIN_HISTORY)
                    .collect();
                last.reverse();
                (last, false)
            }
        }
    }

    /// A joiner's `joined`, with the room's `seq` and the kept `events`
    /// (ascending, each with its seq) that the owner sent for all: the
    /// events after the joiner's `since` (all, marked truncated, when it
    /// counted in another history; its latest messages when it named no
    /// `since`), and the names online, the joiner's first.
    pub(super) fn joined(
        &self,
        room: &str,
        seq: u64,
        joiner: &Joiner,
        events: &[(u64, Bytes)],
    ) -> Vec<u8> {
        let (history, truncated) = self.history_for(seq, joiner, events);
        let size: usize = history.iter().map(|f| f.len() + 1).sum::<usize>()
            + self.online.iter().map(|u| u.len() + 3).sum::<usize>()
            + self.reads.get().len()
            + self.widgets.map_or(0, |w| w.get().len())
            + self.roles.map_or(0, |r| r.get().len());
        let mut out = Vec::with_capacity(192 + room.len() + size);
        out.extend_from_slice(br#"{"t":"joined""#);
        if let Some(id) = &joiner.id {
            out.extend_from_slice(br#","id":"#);
            push_json_str(&mut out, id);
        }
        out.extend_from_slice(br#","room":"#);
        push_json_str(&mut out, room);
        out.extend_from_slice(br#","seq":"#);
        out.extend_from_slice(itoa::Buffer::new().format(seq).as_bytes());
        out.extend_from_slice(br#","history":["#);
        for (i, frame) in history.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(frame);
        }
        out.extend_from_slice(br#"],"epoch":"#);
        push_json_str(&mut out, &self.epoch);
        out.extend_from_slice(br#","online":["#);
        push_json_str(&mut out, joiner.user.as_str());
        let others = self
            .online
            .iter()
            .filter(|u| **u != joiner.user.as_str())
            .take(NAMES_SHOWN - 1);
        for user in others {
            out.push(b',');
            push_json_str(&mut out, user);
        }
        out.extend_from_slice(br#"],"online_count":"#);
        out.extend_from_slice(itoa::Buffer::new().format(self.online_count).as_bytes());
        out.extend_from_slice(br#","truncated":"#);
        out.extend_from_slice(if truncated { b"true" } else { b"false" });
        out.extend_from_slice(br#","reads":"#);
        out.extend_from_slice(self.reads.get().as_bytes());
        if let Some(widgets) = self.widgets {
            out.extend_from_slice(br#","widgets":"#);
            out.extend_from_slice(widgets.get().as_bytes());
        }
        if let Some(roles) = self.roles {
            out.extend_from_slice(br#","roles":"#);
            out.extend_from_slice(roles.get().as_bytes());
        }
        out.push(b'}');
        out
    }
}

#[cfg(test)]
mod tests;
