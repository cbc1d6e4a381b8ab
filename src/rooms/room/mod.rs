//! A live room: its pure state behind a mutex, so that whoever delivers an
//! operation (a link reader, a loader, the journal's answer) applies it in
//! place, as the room's single writer, with no task of its own to wake. It
//! tracks which gateway links have subscribers, holds outcomes for durable
//! storage (`durable`), loads itself from storage on first use, and freezes
//! for a hand-off.
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
        let batch = inner.emit(Release {
            events: out.events,
            answer: None,
        });
        self.arm(&mut inner);
        drop(inner);
        self.submit(batch);
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
        let batch = inner.emit(Release {
            events: out.events,
            answer: None,
        });
        self.arm(&mut inner);
        drop(inner);
        self.submit(batch);
    }

    /// Stops applying operations (they are answered `Moved`); once nothing
    /// waits for storage, the receiver gets the room's state to move, or
    /// `None` when storage failed (the next owner then loads it).
    pub fn freeze(&self) -> oneshot::Receiver<Option<Frozen>> {
        let (tx, rx) = oneshot::channel();
        let mut inner = self.lock();
        inner.frozen = true;
        inner.freezing.push(tx);
        inner.export_if_settled();
        rx
    }

    /// Serves again (the hand-off did not happen).
    pub fn thaw(&self) {
        self.lock().frozen = false;
    }

    /// Serves again if it is frozen and the node has not let it go; whether
    /// it was frozen. With a store it serves what storage holds: the node
    /// it was handed to may have taken it and written to it, so it reloads
    /// rather than go on from what it held.
    pub fn thaw_if_frozen(&self) -> bool {
        if self.is_retired() {
            return false;
        }
        let mut inner = self.lock();
        let was = std::mem::replace(&mut inner.frozen, false);
        if was {
            // A freeze still waiting on storage never went out: nothing of
            // it can be elsewhere, and its append settles as usual.
            if let Some(d) = inner.durable.as_mut().filter(|d| d.settled()) {
                d.reload();
            }
        }
        was
    }

    /// Whether the room never stored an event (its seq is 0).
    pub fn stored_nothing(&self) -> bool {
        self.lock().state.seq() == 0
    }

    /// Whether the room is frozen (for a move, or left so by one that got
    /// no answer).
    pub fn is_frozen(&self) -> bool {
        self.lock().frozen
    }

    /// Lets the room go from memory if it is idle and nothing would be lost:
    /// with a store, its history is there; without one, only a room that
    /// never stored an event goes. From then on it answers `Moved`, so an
    /// operation already routed to it is retried on a fresh room.
    pub fn release_if_idle(&self) -> bool {
        let mut inner = self.lock();
        let idle = inner.state.is_idle()
            && inner.loading.is_none()
            && inner.freezing.is_empty()
            && !inner.frozen;
        let nothing_lost = match &inner.durable {
            Some(d) => d.settled(),
            None => inner.state.seq() == 0,
        };
        if !(idle && nothing_lost) {
            return false;
        }
        inner.frozen = true;
        self.retire();
        true
    }

    /// Whether no connection is subscribed and nothing is under way, so that
    /// the room may be released from memory.
    pub fn is_idle(&self) -> bool {
        let inner = self.lock();
        inner.state.is_idle()
            && inner.loading.is_none()
            && inner.freezing.is_empty()
            && inner.durable.as_ref().is_none_or(Durable::settled)
    }

    fn queue(self: &Arc<Self>, mut inner: MutexGuard<'_, Inner>, queued: Queued) {
        match &mut inner.loading {
            Some(queue) if queue.len() >= LOADING_QUEUE => {
                let (sink, rid) = queued.requester();
                sink.reply(rid, Reply::failed(&unavailable(&self.id)));
            }
            Some(queue) => queue.push_back(queued),
            None => {
                inner.loading = Some(VecDeque::from([queued]));
                let store = inner.durable.as_ref().map(|d| d.store.clone());
                drop(inner);
                if let Some(store) = store {
                    let room = self.clone();
                    tokio::spawn(async move {
                        let loaded = store.load(&room.id).await;
                        room.loaded(loaded);
                    });
                }
            }
        }
    }

    /// Storage answered the load: apply what waited, in order.
    fn loaded(self: &Arc<Self>, result: Result<Loaded, StoreError>) {
        let mut inner = self.lock();
        let ok = match result {
            Ok(loaded) => {
                // A reload after a failed append: what that append wrote may
                // be stored after all (it committed past its timeout, or on
                // a replica promoted since). Storage is the truth, so those
                // events go out now, before anything newer.
                let shown = inner.durable.as_ref().map_or(0, Durable::shown);
                let history = inner.state.epoch().to_string();
                inner.state.restore(loaded);
                let seq = inner.state.seq();
                if let Some(d) = &mut inner.durable {
                    d.loaded_at(seq);
                }
                let same_history = inner.state.epoch() == history;
                if shown > 0 && seq > shown && same_history {
                    let events = inner.state.stored_after(shown);
                    tracing::info!(room.id = %self.id, events = events.len(), "stored events of a failed append published");
                    inner.release(Release {
                        events,
                        answer: None,
                    });
                } else if shown > 0 && (seq < shown || !same_history) {
                    // Storage lost what the readers saw (a failover to a
                    // replica that missed it, its data gone): they must
                    // not wait for seqs that will never come again.
                    tracing::warn!(room.id = %self.id, shown, seq, "the room's history was lost or rewound; its readers are told");
                    for sink in inner.links.values() {
                        sink.rewound(&self.id);
                    }
                }
                tracing::debug!(seq, "room loaded");
                true
            }
            Err(e) => {
                tracing::warn!(room.id = %self.id, error = %e, "room cannot load");
                false
            }
        };
        let queue = inner.loading.take().unwrap_or_default();
        let mut batch = None;
        for queued in queue {
            if inner.frozen {
                let (sink, rid) = queued.requester();
                sink.reply(rid, Reply::moved());
                continue;
            }
            if !ok {
                let (sink, rid) = queued.requester();
                sink.reply(rid, Reply::failed(&unavailable(&self.id)));
                continue;
            }
            let next = match queued {
                Queued::Op {
                    sink,
                    rid,
                    sub,
                    user,
                    id,
                    op,
                } => {
                    let op = Op {
                        rid,
                        sub,
                        user: &user,
                        id: id.as_deref(),
                        op,
                    };
                    inner.apply_op(&sink, op)
                }
                Queued::Query { sink, rid, query } => {
                    inner.apply_query(&sink, rid, query, &self.owner)
                }
                Queued::Resume {
                    sink,
                    rid,
                    since,
                    epoch,
                    conns,
                } => {
                    let conns = conns.iter().map(|(c, u)| (*c, u.as_str()));
                    inner.apply_resume(&sink, rid, (since, epoch.as_deref()), conns)
                }
                Queued::Joins { sink, rid, joins } => {
                    inner.apply_joins(&sink, rid, joins.iter().map(Joining::borrowed))
                }
            };
            batch = batch.or(next);
        }
        inner.export_if_settled();
        self.arm(&mut inner);
        drop(inner);
        self.submit(batch);
    }

    /// Hands an append to the journal, once the room's lock is released (a
    /// store may answer at once).
    fn submit(self: &Arc<Self>, batch: Option<(Arc<dyn RoomStore>, Batch)>) {
        let Some((store, batch)) = batch else { return };
        let room = Arc::downgrade(self);
        let upto = batch.upto;
        store.append(Append {
            room: self.id.clone(),
            epoch: batch.epoch,
            entries: batch.entries,
            snapshot: batch.snapshot,
            keep: batch.keep,
            done: Box::new(move |result| {
                if let Some(room) = room.upgrade() {
                    room.committed(upto, result);
                }
            }),
        });
    }

    /// The journal answered the append up to `upto`.
    fn committed(self: &Arc<Self>, upto: u64, result: Result<(), StoreError>) {
        let mut inner = self.lock();
        let Some(d) = &mut inner.durable else { return };
        match result {
            Ok(()) => {
                for release in d.committed(upto) {
                    inner.release(release);
                }
            }
            Err(e) => {
                tracing::warn!(room.id = %self.id, error = %e, "append failed; the room reloads");
                let failure = unavailable(&self.id);
                for release in d.failed(upto) {
                    if let Some(a) = release.answer {
                        a.sink.reply(a.rid, Reply::failed(&failure));
                    }
                }
            }
        }
        let batch = inner.next_batch();
        inner.export_if_settled();
        drop(inner);
        self.submit(batch);
    }
}

impl Queued {
    fn requester(self) -> (Arc<dyn Sink>, Rid) {
        match self {
            Self::Op { sink, rid, .. }
            | Self::Query { sink, rid, .. }
            | Self::Resume { sink, rid, .. }
            | Self::Joins { sink, rid, .. } => (sink, rid),
        }
    }
}

pub(super) fn busy(room: &RoomId) -> Failure {
    Failure::new(
        ErrorCode::Unavailable,
        format!("{room} is moving or storing right now; retry"),
    )
}

fn unavailable(room: &RoomId) -> Status {
    Status::Failed(Failure::new(
        ErrorCode::Unavailable,
        format!("{room} cannot store right now; retry"),
    ))
}

mod erase;

#[cfg(test)]
mod tests;
