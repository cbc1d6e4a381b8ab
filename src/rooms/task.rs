//! The room task: applies commands in order and, when the room is durable,
//! holds every outcome until the stored events it reflects are committed,
//! so that nothing is acked, shown or replayed that storage does not hold.
//! Appends are pipelined: while one is in flight, later outcomes queue up and
//! go out together in the next one.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use super::state::{Event, LinkId, Outcome, RoomState};
use super::store::{Append, Entry, RoomStore, StoreError, SNAPSHOT_EVERY};
use super::{Arrival, Frozen, LinkTx, RoomCmd};
use crate::ids::{NodeId, RoomId};
use crate::protocol::client::RoomOp;
use crate::protocol::link::{encode, LinkMsg, Query, Rid, Status, ToGateway};
use crate::protocol::{now_ms, ErrorCode, Failure};

/// An append in flight: the seq it makes durable and its answer.
type InFlight = Option<(u64, oneshot::Receiver<Result<(), StoreError>>)>;

/// Where an outcome's reply goes.
enum Reply {
    /// To a client connection, through its gateway link.
    Op {
        link: LinkTx,
        rid: Rid,
        seq: Option<u64>,
        payload: Option<String>,
        counts: bool,
    },
    /// To an HTTP API request.
    Query {
        link: LinkTx,
        rid: Rid,
        payload: String,
        counts: bool,
    },
    /// Nobody.
    None,
}

/// An outcome waiting for durability.
struct Held {
    /// The room's seq when it was produced: everything up to it must be durable.
    upto: u64,
    events: Vec<Event>,
    reply: Reply,
}

/// Durability bookkeeping of a room with a store.
struct Durable {
    store: Arc<dyn RoomStore>,
    loaded: bool,
    /// The last seq known to be committed.
    committed: u64,
    /// Entries not yet handed to the journal.
    unsent: Vec<Entry>,
    /// Outcomes in production order.
    held: VecDeque<Held>,
    /// Seq of the last snapshot written.
    snapshot_at: u64,
}

/// The single writer of one room.
pub(super) struct Room {
    room: RoomId,
    owner: NodeId,
    state: RoomState,
    /// Links with at least one subscribed connection.
    links: HashMap<LinkId, LinkTx>,
    rx: mpsc::Receiver<RoomCmd>,
    durable: Option<Durable>,
    /// Frozen for a hand-off: operations are answered `Moved`.
    frozen: bool,
    /// Waiting for everything stored to be durable before exporting.
    freezing: Vec<oneshot::Sender<Option<Frozen>>>,
}

impl Room {
    pub(super) fn new(
        room: RoomId,
        owner: NodeId,
        keep: usize,
        store: Option<Arc<dyn RoomStore>>,
        rx: mpsc::Receiver<RoomCmd>,
    ) -> Self {
        let durable = store.map(|store| Durable {
            store,
            loaded: false,
            committed: 0,
            unsent: Vec::new(),
            held: VecDeque::new(),
            snapshot_at: 0,
        });
        Self {
            state: RoomState::new(room.clone(), keep),
            room,
            owner,
            links: HashMap::new(),
            rx,
            durable,
            frozen: false,
            freezing: Vec::new(),
        }
    }

    /// Installs a room handed off by its previous owner.
    pub(super) fn install(&mut self, arrival: Arrival) {
        if let Some(state) = arrival.state {
            self.state.restore(state);
            if let Some(d) = &mut self.durable {
                // The previous owner made all of it durable before exporting.
                d.loaded = true;
                d.committed = self.state.seq();
                d.snapshot_at = self.state.seq();
            }
        }
        self.state.adopt(arrival.conns);
        for link in arrival.links {
            if self.state.has_link(link.id) {
                self.links.insert(link.id, link);
            }
        }
    }

    pub(super) async fn run(mut self) {
        let mut batch = Vec::with_capacity(64);
        let mut in_flight: InFlight = None;
        loop {
            let committed = tokio::select! {
                n = self.rx.recv_many(&mut batch, 64) => {
                    if n == 0 {
                        break;
                    }
                    for cmd in batch.drain(..) {
                        self.handle(cmd).await;
                    }
                    None
                }
                result = answer(&mut in_flight) => Some(result),
            };
            // Only an answered append leaves the flight.
            if let Some(result) = committed {
                if let Some((upto, _)) = in_flight.take() {
                    self.on_commit(upto, result);
                }
            }
            if in_flight.is_none() {
                in_flight = self.flush().await;
            }
            if !self.freezing.is_empty() && in_flight.is_none() {
                self.export_frozen();
            }
        }
    }

    /// Answers the freeze requests once nothing is waiting for storage.
    fn export_frozen(&mut self) {
        let settled = self
            .durable
            .as_ref()
            .is_none_or(|d| d.unsent.is_empty() && d.held.is_empty());
        if !settled {
            return;
        }
        // A room whose storage failed exports nothing: the next owner loads it.
        let loaded = self.durable.as_ref().is_none_or(|d| d.loaded);
        for waiter in self.freezing.drain(..) {
            let frozen = loaded.then(|| Frozen {
                state: self.state.export(),
                conns: self.state.connections(),
            });
            let _ = waiter.send(frozen);
        }
    }

    /// Loads the room from storage if it is not loaded; false if it cannot.
    async fn ensure_loaded(&mut self) -> bool {
        let Some(d) = &mut self.durable else {
            return true;
        };
        if d.loaded {
            return true;
        }
        match d.store.load(&self.room).await {
            Ok(loaded) => {
                self.state.restore(loaded);
                d.loaded = true;
                d.committed = self.state.seq();
                d.snapshot_at = self.state.seq();
                tracing::debug!(seq = d.committed, "room loaded");
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "room cannot load");
                false
            }
        }
    }

    async fn handle(&mut self, cmd: RoomCmd) {
        match cmd {
            RoomCmd::Op { link, rid, .. } | RoomCmd::Query { link, rid, .. } if self.frozen => {
                link.reply(rid, Status::Moved, None, None);
            }
            RoomCmd::Freeze(reply) => {
                self.frozen = true;
                self.freezing.push(reply);
            }
            RoomCmd::Thaw => self.frozen = false,
            RoomCmd::Op {
                link,
                rid,
                origin,
                id,
                op,
            } => {
                if !self.ensure_loaded().await {
                    return link.reply(rid, Status::Failed(unavailable(&self.room)), None, None);
                }
                let out = self.state.apply(&origin, id.as_deref(), &op, now_ms());
                if self.state.has_link(link.id) {
                    self.links.entry(link.id).or_insert_with(|| link.clone());
                } else {
                    self.links.remove(&link.id);
                }
                let counts = matches!(op, RoomOp::Send { .. }) && !out.events.is_empty();
                let reply = Reply::Op {
                    link,
                    rid,
                    seq: out.seq,
                    payload: out.reply,
                    counts,
                };
                self.emit(out.events, reply);
            }
            RoomCmd::Query { link, rid, query } => {
                if !self.ensure_loaded().await {
                    return link.reply(rid, Status::Failed(unavailable(&self.room)), None, None);
                }
                let (events, payload, counts) = match query {
                    Query::Info => (Vec::new(), self.state.info_json(self.owner.as_str()), false),
                    Query::Messages { since, limit } => {
                        (Vec::new(), self.state.messages_json(since, limit), false)
                    }
                    Query::Post { from, body } => {
                        let Outcome { events, .. } = self.state.send(&from, None, &body, now_ms());
                        (
                            events,
                            serde_json::json!({ "seq": self.state.seq() }).to_string(),
                            true,
                        )
                    }
                };
                self.emit(
                    events,
                    Reply::Query {
                        link,
                        rid,
                        payload,
                        counts,
                    },
                );
            }
            RoomCmd::LinkClosed(id) => {
                self.links.remove(&id);
                let out = self.state.drop_link(id);
                self.emit(out.events, Reply::None);
            }
        }
    }

    /// Publishes an outcome now, or holds it until what it reflects is durable.
    fn emit(&mut self, events: Vec<Event>, reply: Reply) {
        let Some(d) = &mut self.durable else {
            return self.release(Held {
                upto: 0,
                events,
                reply,
            });
        };
        d.unsent.extend(events.iter().filter_map(Event::entry));
        d.held.push_back(Held {
            upto: self.state.seq(),
            events,
            reply,
        });
        self.release_committed();
    }

    fn release_committed(&mut self) {
        while let Some(d) = &mut self.durable {
            match d.held.front() {
                Some(h) if h.upto <= d.committed => {
                    if let Some(held) = d.held.pop_front() {
                        self.release(held);
                    }
                }
                _ => break,
            }
        }
    }

    /// Hands the unsent entries to the journal (one append in flight at most).
    async fn flush(&mut self) -> InFlight {
        let d = self.durable.as_mut()?;
        let upto = d.unsent.last()?.seq;
        let snapshot = (upto >= d.snapshot_at + SNAPSHOT_EVERY).then(|| self.state.snapshot());
        if snapshot.is_some() {
            d.snapshot_at = upto;
        }
        let (done, answer) = oneshot::channel();
        let append = Append {
            room: self.room.clone(),
            entries: std::mem::take(&mut d.unsent),
            snapshot,
            done,
        };
        if d.store.journal().send(append).await.is_err() {
            self.on_commit(upto, Err(StoreError("the journal writer is gone".into())));
            return None;
        }
        Some((upto, answer))
    }

    /// An append was committed (or failed).
    fn on_commit(&mut self, upto: u64, result: Result<(), StoreError>) {
        let Some(d) = &mut self.durable else { return };
        match result {
            Ok(()) => {
                d.committed = d.committed.max(upto);
                self.release_committed();
            }
            Err(e) => {
                // Nothing past `committed` may be shown: refuse it, forget it,
                // and rebuild from storage on the next command.
                tracing::warn!(error = %e, "append failed; the room reloads");
                let failure = unavailable(&self.room);
                for held in std::mem::take(&mut d.held) {
                    match held.reply {
                        Reply::Op { link, rid, .. } | Reply::Query { link, rid, .. } => {
                            link.reply(rid, Status::Failed(failure.clone()), None, None);
                        }
                        Reply::None => {}
                    }
                }
                d.unsent.clear();
                d.loaded = false;
            }
        }
    }

    /// Sends an outcome's events to every subscribed link, then its reply.
    fn release(&self, held: Held) {
        self.publish(&held.events);
        match held.reply {
            Reply::Op {
                link,
                rid,
                seq,
                payload,
                counts,
            } => {
                if counts {
                    metrics::counter!("roomring_messages_in_total").increment(1);
                }
                link.reply(rid, Status::Ok, seq, payload.as_deref());
            }
            Reply::Query {
                link,
                rid,
                payload,
                counts,
            } => {
                if counts {
                    metrics::counter!("roomring_messages_in_total").increment(1);
                }
                link.reply(rid, Status::Ok, None, Some(&payload));
            }
            Reply::None => {}
        }
    }

    /// Sends each event once to every subscribed link; the link of the
    /// connection to skip gets its own header.
    fn publish(&self, events: &[Event]) {
        for event in events {
            let header = |skip| ToGateway::Event {
                room: self.room.clone(),
                seq: event.seq,
                skip,
            };
            let shared: LinkMsg = encode(&header(None), Some(&event.frame)).into();
            for link in self.links.values() {
                match event.skip {
                    Some(sub) if sub.link == link.id => {
                        link.send(encode(&header(Some(sub.conn)), Some(&event.frame)).into());
                    }
                    _ => link.send(shared.clone()),
                }
            }
        }
    }
}

/// Waits for the append in flight, or forever when there is none.
async fn answer(in_flight: &mut InFlight) -> Result<(), StoreError> {
    match in_flight {
        Some((_, rx)) => rx
            .await
            .unwrap_or_else(|_| Err(StoreError("the journal writer is gone".into()))),
        None => std::future::pending().await,
    }
}

fn unavailable(room: &RoomId) -> Failure {
    Failure::new(
        ErrorCode::Unavailable,
        format!("{room} cannot store right now; retry"),
    )
}
