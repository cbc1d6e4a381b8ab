//! The room's inside, under its lock: applying what was asked, holding
//! outcomes until what they reflect is durable, and releasing them (events
//! to every subscribed link, then the answer).

use super::*;
use crate::rooms::state::Outcome;

impl Inner {
    /// Notes that a paced event wants the room's timer at `at`.
    pub(super) fn want(&mut self, at: Option<u64>) {
        if let Some(at) = at {
            self.wake = Some(self.wake.map_or(at, |w| w.min(at)));
        }
    }

    /// A durable room that has not been rebuilt from storage yet (or is
    /// being rebuilt).
    pub(super) fn needs_load(&self) -> bool {
        self.loading.is_some() || self.durable.as_ref().is_some_and(|d| !d.loaded)
    }

    pub(super) fn apply_op(
        &mut self,
        sink: &Arc<dyn Sink>,
        op: Op<'_>,
    ) -> Option<(Arc<dyn RoomStore>, Batch)> {
        let Some(user) = self.state.user(op.sub, op.user) else {
            let failure = Status::Failed(Failure::bad_request("bad user"));
            sink.reply(op.rid, Reply::failed(&failure));
            return None;
        };
        let origin = Origin { sub: op.sub, user };
        let out = self.state.apply(&origin, op.id, &op.op, now_ms());
        self.want(out.wake);
        let link = sink.link();
        if self.state.has_link(link) {
            self.links.entry(link).or_insert_with(|| sink.clone());
        } else {
            self.links.remove(&link);
        }
        let counts = matches!(op.op, RoomOp::Send { .. }) && !out.events.is_empty();
        self.emit(Release {
            events: out.events,
            answer: Some(Answer {
                sink: sink.clone(),
                rid: op.rid,
                seq: out.seq,
                frame: out.reply,
                missed: out.missed.unwrap_or_default(),
                counts,
            }),
        })
    }

    pub(super) fn apply_resume<'a>(
        &mut self,
        sink: &Arc<dyn Sink>,
        rid: Rid,
        (since, epoch): (u64, Option<&str>),
        conns: impl Iterator<Item = (ConnId, &'a str)>,
    ) -> Option<(Arc<dyn RoomStore>, Batch)> {
        let link = sink.link();
        let subs: Vec<(Sub, UserId)> = conns
            .filter_map(|(conn, name)| {
                let sub = Sub { link, conn };
                Some((sub, self.state.user(sub, name)?))
            })
            .collect();
        let out = self.state.resume_all(link, subs, (since, epoch), now_ms());
        self.answer_link(sink, rid, out)
    }

    pub(super) fn apply_joins<'a>(
        &mut self,
        sink: &Arc<dyn Sink>,
        rid: Rid,
        joins: impl Iterator<Item = Joining<&'a str>>,
    ) -> Option<(Arc<dyn RoomStore>, Batch)> {
        let link = sink.link();
        let joiners: Vec<Joiner<'a>> = joins
            .filter_map(|j| {
                let sub = Sub { link, conn: j.conn };
                let user = self.state.user(sub, j.user)?;
                Some(Joiner {
                    origin: Origin { sub, user },
                    since: j.since,
                    epoch: j.epoch,
                })
            })
            .collect();
        let out = self.state.join_all(joiners, now_ms());
        self.answer_link(sink, rid, out)
    }

    /// Emits what a request for many of a link's connections (a resume,
    /// gathered joins) produced: its events, then its one answer.
    fn answer_link(
        &mut self,
        sink: &Arc<dyn Sink>,
        rid: Rid,
        out: Outcome,
    ) -> Option<(Arc<dyn RoomStore>, Batch)> {
        self.want(out.wake);
        if self.state.has_link(sink.link()) {
            self.links
                .entry(sink.link())
                .or_insert_with(|| sink.clone());
        }
        self.emit(Release {
            events: out.events,
            answer: Some(Answer {
                sink: sink.clone(),
                rid,
                seq: out.seq,
                frame: out.reply,
                missed: out.missed.unwrap_or_default(),
                counts: false,
            }),
        })
    }

    pub(super) fn apply_query(
        &mut self,
        sink: &Arc<dyn Sink>,
        rid: Rid,
        query: Query<Bytes>,
        owner: &NodeId,
    ) -> Option<(Arc<dyn RoomStore>, Batch)> {
        let (events, frame, counts) = match query {
            Query::Info => (Vec::new(), self.state.info_json(owner.as_str()), false),
            Query::Messages { since, limit } => {
                (Vec::new(), self.state.messages_json(since, limit), false)
            }
            Query::Page { before, limit } => {
                (Vec::new(), self.state.page_json(before, limit), false)
            }
            // The node erases a room itself (`Room::erase`); one that reaches
            // the room waited for it to load: asked again, it is erased.
            Query::Erase => {
                sink.reply(rid, Reply::failed(&Status::Failed(busy(self.state.id()))));
                return None;
            }
            Query::Post { from, body } => {
                let Ok(from) = UserId::parse(&from) else {
                    let failure = Status::Failed(Failure::bad_request("bad author"));
                    sink.reply(rid, Reply::failed(&failure));
                    return None;
                };
                let out = self.state.send(&from, None, &body, now_ms());
                let seq = format!("{{\"seq\":{}}}", self.state.seq()).into_bytes();
                (out.events, seq, true)
            }
        };
        self.emit(Release {
            events,
            answer: Some(Answer {
                sink: sink.clone(),
                rid,
                seq: None,
                frame: Some(frame.into()),
                missed: Vec::new(),
                counts,
            }),
        })
    }

    /// Releases an outcome now, or holds it until what it reflects is
    /// durable; returns an append to submit.
    pub(super) fn emit(&mut self, release: Release) -> Option<(Arc<dyn RoomStore>, Batch)> {
        let seq = self.state.seq();
        let Some(d) = &mut self.durable else {
            self.release(release);
            return None;
        };
        d.stage(&release.events);
        for ready in d.hold(seq, release) {
            self.release(ready);
        }
        self.next_batch()
    }

    pub(super) fn next_batch(&mut self) -> Option<(Arc<dyn RoomStore>, Batch)> {
        let d = self.durable.as_mut()?;
        let state = &self.state;
        let mut batch = d.next_batch(|| state.snapshot(), state.kept())?;
        batch.epoch = Arc::from(state.epoch());
        Some((d.store.clone(), batch))
    }

    /// Sends each event once to every subscribed link (the link of the
    /// connection that caused it learns which one to skip), then the answer.
    pub(super) fn release(&self, release: Release) {
        for event in &release.events {
            for sink in self.links.values() {
                let skip = event.skip.filter(|s| s.link == sink.link()).map(|s| s.conn);
                sink.event(self.state.id(), event, skip);
            }
        }
        if let Some(a) = release.answer {
            if a.counts {
                crate::telemetry::metrics().messages_in.increment(1);
            }
            a.sink.reply(
                a.rid,
                Reply {
                    status: &Status::Ok,
                    seq: a.seq,
                    frame: a.frame.as_deref(),
                    missed: &a.missed,
                },
            );
        }
    }

    /// Answers the freeze requests once nothing is waiting for storage.
    pub(super) fn export_if_settled(&mut self) {
        if self.freezing.is_empty() || self.loading.is_some() {
            return;
        }
        if !self.durable.as_ref().is_none_or(Durable::settled) {
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
}
