//! A live room: its pure state behind a mutex, so that whoever delivers an
//! operation (a link reader, a loader, the journal's answer) applies it in
//! place, as the room's single writer, with no task of its own to wake. It
//! tracks which gateway links have subscribers, holds outcomes for durable
//! storage (`durable`), loads itself from storage on first use, and freezes
//! for a hand-off.
//!
//! `storage`: loading, and appends released once durable; `lifecycle`:
//! freezing for a hand-off, thawing, release when idle; `erase`: a history
//! removed; `inner`: what the lock guards.
//!
//! Lock order: a room's lock may be held while appending to a link (`Sink`),
//! never the other way round; nothing awaits under it, and the store is
//! called only after it is released.

mod inner;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::oneshot;

use super::durable::{Batch, Durable};
use super::sink::{Reply, Sink};
use super::state::{Event, Joiner, LinkId, MemoryPage, Origin, RoomState, Sub};
use super::store::{Append, Loaded, RoomStore, StoreError};
use super::Limits;
use crate::ids::{ConnId, Map, NodeId, Rid, RoomId, UserId};
use crate::protocol::client::RoomOp;
use crate::protocol::{now_ms, ErrorCode, Failure, Joining, Query, Status};

/// Operations a loading room queues; past it they are refused `unavailable`.
pub const LOADING_QUEUE: usize = 4096;

/// One client operation, borrowed from the record that carried it.
pub struct Op<'a> {
    /// The request id.
    pub rid: Rid,
    /// The connection.
    pub sub: Sub,
    /// Its user's name.
    pub user: &'a str,
    /// The client frame's id.
    pub id: Option<&'a str>,
    /// What.
    pub op: RoomOp<Bytes>,
}

/// A frozen room's state, ready to move.
#[derive(Debug)]
pub struct Frozen {
    /// The durable part (seq, kept log, snapshot).
    pub state: Loaded,
    /// Subscribed connections with their users.
    pub conns: Vec<(Sub, UserId)>,
}

/// A room arriving by hand-off, to be installed instead of loaded.
pub struct Arrival {
    /// Its durable part; `None` to load it from storage.
    pub state: Option<Loaded>,
    /// Connections subscribed at the previous owner, on this node's links.
    pub conns: Vec<(Sub, UserId)>,
    /// The links of those connections.
    pub links: Vec<Arc<dyn Sink>>,
}

/// An outcome on its way out: events for the subscribers, then the answer.
struct Release {
    events: Vec<Event>,
    answer: Option<Answer>,
}

struct Answer {
    sink: Arc<dyn Sink>,
    rid: Rid,
    seq: Option<u64>,
    frame: Option<Bytes>,
    missed: Vec<(u64, Bytes)>,
    /// A stored chat message (counted once it is out).
    counts: bool,
}

/// What a loading room keeps until it can apply it.
enum Queued {
    Op {
        sink: Arc<dyn Sink>,
        rid: Rid,
        sub: Sub,
        user: String,
        id: Option<String>,
        op: RoomOp<Bytes>,
    },
    Query {
        sink: Arc<dyn Sink>,
        rid: Rid,
        query: Query<Bytes>,
    },
    Resume {
        sink: Arc<dyn Sink>,
        rid: Rid,
        since: u64,
        epoch: Option<String>,
        conns: Vec<(ConnId, String)>,
    },
    Joins {
        sink: Arc<dyn Sink>,
        rid: Rid,
        joins: Vec<Joining<String>>,
    },
}

/// A live room.
pub struct Room {
    id: RoomId,
    owner: NodeId,
    /// Set once the node has let the room go (moved on, or released): a
    /// reference kept elsewhere must be looked up again.
    retired: std::sync::atomic::AtomicBool,
    /// When an operation was last routed here, in the node's count of
    /// routings (so that busy rooms move first).
    used: std::sync::atomic::AtomicU64,
    /// Held for one operation at a time; see the lock order above.
    inner: Mutex<Inner>,
}

struct Inner {
    state: RoomState,
    /// Links with at least one subscribed connection.
    links: Map<LinkId, Arc<dyn Sink>>,
    durable: Option<Durable<Release>>,
    /// Set while the room loads: operations wait here, in order.
    loading: Option<VecDeque<Queued>>,
    /// Frozen for a hand-off: operations are answered `Moved`.
    frozen: bool,
    /// Waiting for everything stored to be durable before exporting.
    freezing: Vec<oneshot::Sender<Option<Frozen>>>,
    /// When a paced event asked to be sent (ms since the Unix epoch), until
    /// a timer is armed for it.
    wake: Option<u64>,
    /// When the armed timer fires, if one is.
    timer: Option<u64>,
}

impl Room {
    /// A room owned by `owner`, within `limits`; with a store it is
    /// rebuilt from storage on first use.
    pub fn new(
        id: RoomId,
        owner: NodeId,
        limits: Limits,
        store: Option<Arc<dyn RoomStore>>,
    ) -> Arc<Self> {
        Arc::new(Self {
            inner: Mutex::new(Inner {
                state: RoomState::new(id.clone(), limits),
                links: Map::default(),
                durable: store.map(Durable::new),
                loading: None,
                frozen: false,
                freezing: Vec::new(),
                wake: None,
                timer: None,
            }),
            id,
            owner,
            retired: std::sync::atomic::AtomicBool::new(false),
            used: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// Marks the room used at `now` (a count of routings).
    pub fn touch(&self, now: u64) {
        self.used.store(now, std::sync::atomic::Ordering::Relaxed);
    }

    /// When the room was last used, in the same count.
    pub fn used(&self) -> u64 {
        self.used.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The node has let the room go.
    pub fn retire(&self) {
        self.retired
            .store(true, std::sync::atomic::Ordering::Release);
    }

    /// Whether the node has let the room go.
    pub fn is_retired(&self) -> bool {
        self.retired.load(std::sync::atomic::Ordering::Acquire)
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The room's id.
    pub fn id(&self) -> &RoomId {
        &self.id
    }

    /// Installs the state of a room handed off by its previous owner.
    pub fn install(&self, arrival: Arrival) {
        let mut inner = self.lock();
        if let Some(state) = arrival.state {
            inner.state.restore(state);
            let seq = inner.state.seq();
            if let Some(d) = &mut inner.durable {
                // The previous owner made all of it durable before exporting.
                d.loaded_at(seq);
            }
        }
        inner.state.adopt(arrival.conns);
        for link in arrival.links {
            if inner.state.has_link(link.link()) {
                inner.links.insert(link.link(), link);
            }
        }
    }

    /// Applies a client operation; the answer goes to `sink`.
    pub fn op(self: &Arc<Self>, sink: &Arc<dyn Sink>, op: Op<'_>) {
        let queued = |op: Op<'_>| Queued::Op {
            sink: sink.clone(),
            rid: op.rid,
            sub: op.sub,
            user: op.user.to_string(),
            id: op.id.map(str::to_string),
            op: op.op,
        };
        self.serve(sink, op.rid, op, queued, |inner, op| {
            inner.apply_op(sink, op)
        });
    }

    /// Applies `what` with `apply` now, or, while the room loads, queues
    /// what `queued` makes of it; a frozen room answers `moved`.
    fn serve<T>(
        self: &Arc<Self>,
        sink: &Arc<dyn Sink>,
        rid: Rid,
        what: T,
        queued: impl FnOnce(T) -> Queued,
        apply: impl FnOnce(&mut Inner, T) -> Option<(Arc<dyn RoomStore>, Batch)>,
    ) {
        let mut inner = self.lock();
        if inner.frozen {
            return sink.reply(rid, Reply::moved());
        }
        if inner.needs_load() {
            return self.queue(inner, queued(what));
        }
        let batch = apply(&mut inner, what);
        self.arm(&mut inner);
        drop(inner);
        self.submit(batch);
    }

    /// Arms the room's timer for the paced event that asked for it, unless
    /// one fires sooner.
    fn arm(self: &Arc<Self>, inner: &mut Inner) {
        let Some(at) = inner.wake.take() else { return };
        if inner.timer.is_some_and(|t| t <= at) {
            return;
        }
        inner.timer = Some(at);
        let room = Arc::downgrade(self);
        let wait = Duration::from_millis(at.saturating_sub(now_ms()));
        tokio::spawn(async move {
            tokio::time::sleep(wait).await;
            if let Some(room) = room.upgrade() {
                room.tick(at);
            }
        });
    }

    /// The timer armed for `at` fired: the paced events due go out.
    fn tick(self: &Arc<Self>, at: u64) {
        let mut inner = self.lock();
        if inner.timer == Some(at) {
            inner.timer = None;
        }
        if inner.frozen || self.is_retired() {
            return;
        }
        // Early by the wall clock: nothing is due yet, and the timer is
        // armed again for what waits.
        let out = inner.state.due(now_ms());
        inner.wake = out.wake;
        self.emitted(inner, out.events);
    }

    /// Subscribes a gateway's connections again, all at once, from `since`
    /// in the history `epoch` names, when the gateway knows it (the room
    /// moved, or the link dropped); the answer, with the events after
    /// `since`, goes to `sink` once.
    pub fn resume(
        self: &Arc<Self>,
        sink: &Arc<dyn Sink>,
        rid: Rid,
        (since, epoch): (u64, Option<&str>),
        conns: &[(ConnId, &str)],
    ) {
        let queued = |conns: &[(ConnId, &str)]| Queued::Resume {
            sink: sink.clone(),
            rid,
            since,
            epoch: epoch.map(str::to_string),
            conns: conns.iter().map(|(c, u)| (*c, u.to_string())).collect(),
        };
        self.serve(sink, rid, conns, queued, |inner, conns| {
            inner.apply_resume(sink, rid, (since, epoch), conns.iter().copied())
        });
    }

    /// Subscribes a gateway's joiners of the room all at once; the answer,
    /// what their `joined` frames share and the events they replay, goes
    /// to `sink` once (see `RoomState::join_all`).
    pub fn join_all(self: &Arc<Self>, sink: &Arc<dyn Sink>, rid: Rid, joins: &[Joining<&str>]) {
        let queued = |joins: &[Joining<&str>]| Queued::Joins {
            sink: sink.clone(),
            rid,
            joins: joins
                .iter()
                .map(|j| Joining {
                    conn: j.conn,
                    user: j.user.to_string(),
                    since: j.since,
                    epoch: j.epoch.map(str::to_string),
                })
                .collect(),
        };
        self.serve(sink, rid, joins, queued, |inner, joins| {
            inner.apply_joins(sink, rid, joins.iter().cloned())
        });
    }

    /// What memory holds of a `history` page, if the room serves from
    /// memory now (not loading, not frozen).
    pub fn memory_page(&self, before: Option<u64>, limit: usize) -> Option<MemoryPage> {
        let inner = self.lock();
        if inner.frozen || inner.needs_load() {
            return None;
        }
        Some(inner.state.memory_page(before, limit))
    }

    /// Answers an HTTP API query; the answer goes to `sink`.
    pub fn query(self: &Arc<Self>, sink: &Arc<dyn Sink>, rid: Rid, query: Query<Bytes>) {
        let queued = |query| Queued::Query {
            sink: sink.clone(),
            rid,
            query,
        };
        let owner = &self.owner;
        self.serve(sink, rid, query, queued, |inner, query| {
            inner.apply_query(sink, rid, query, owner)
        });
    }

    /// A gateway link went away: its connections leave.
    pub fn drop_link(self: &Arc<Self>, link: LinkId) {
        let mut inner = self.lock();
        inner.links.remove(&link);
        let out = inner.state.drop_link(link, now_ms());
        inner.want(out.wake);
        self.emitted(inner, out.events);
    }

    /// Emits what the room made by itself (no request to answer), arms
    /// its timer, and hands what is to be stored to the journal.
    fn emitted(self: &Arc<Self>, mut inner: MutexGuard<'_, Inner>, events: Vec<Event>) {
        let batch = inner.emit(Release {
            events,
            answer: None,
        });
        self.arm(&mut inner);
        drop(inner);
        self.submit(batch);
    }
}

pub(super) fn busy(room: &RoomId) -> Failure {
    Failure::new(
        ErrorCode::Unavailable,
        format!("{room} is moving or storing right now; retry"),
    )
}

mod erase;
mod lifecycle;
mod storage;

#[cfg(test)]
mod tests;
