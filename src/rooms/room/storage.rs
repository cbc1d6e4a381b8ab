//! A room and its store: what arrives while it loads waits in order (up to
//! `LOADING_QUEUE`), the load installs what storage holds and serves what
//! waited, and appends go to the store one at a time, their outcomes
//! released once durable.

use super::*;

impl Room {
    pub(super) fn queue(self: &Arc<Self>, mut inner: MutexGuard<'_, Inner>, queued: Queued) {
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
    pub(super) fn loaded(self: &Arc<Self>, result: Result<Loaded, StoreError>) {
        let mut inner = self.lock();
        let ok = match result {
            Ok(loaded) => {
                self.restore(&mut inner, loaded);
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
            let next = self.apply_queued(&mut inner, queued);
            batch = batch.or(next);
        }
        inner.export_if_settled();
        self.arm(&mut inner);
        drop(inner);
        self.submit(batch);
    }

    /// Installs what storage holds. After a reload that followed a failed
    /// append, what that append wrote may be stored after all (it committed
    /// past its timeout, or on a replica promoted since): storage is the
    /// truth, so those events go out now, before anything newer.
    fn restore(&self, inner: &mut Inner, loaded: Loaded) {
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
    }

    /// Serves what waited while the room loaded.
    fn apply_queued(
        &self,
        inner: &mut Inner,
        queued: Queued,
    ) -> Option<(Arc<dyn RoomStore>, Batch)> {
        match queued {
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
            Queued::Query { sink, rid, query } => inner.apply_query(&sink, rid, query, &self.owner),
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
        }
    }

    /// Hands an append to the journal, once the room's lock is released (a
    /// store may answer at once).
    pub(super) fn submit(self: &Arc<Self>, batch: Option<(Arc<dyn RoomStore>, Batch)>) {
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
    pub(super) fn committed(self: &Arc<Self>, upto: u64, result: Result<(), StoreError>) {
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
    /// Who waits for the answer.
    fn requester(self) -> (Arc<dyn Sink>, Rid) {
        match self {
            Self::Op { sink, rid, .. }
            | Self::Query { sink, rid, .. }
            | Self::Resume { sink, rid, .. }
            | Self::Joins { sink, rid, .. } => (sink, rid),
        }
    }
}

/// A refusal while the store fails.
fn unavailable(room: &RoomId) -> Status {
    Status::Failed(Failure::new(
        ErrorCode::Unavailable,
        format!("{room} cannot store right now; retry"),
    ))
}
