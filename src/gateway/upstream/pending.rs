//! Requests in flight: routed again, answered `unavailable` or failed when
//! their link drops, and expired when nobody answered within
//! `ANSWER_WITHIN`.

use super::*;

impl Upstream {
    /// Tries again a little later, or gives up with `unavailable`; a resume
    /// keeps trying as long as its connection is subscribed.
    pub(super) fn retry(self: &Arc<Self>, rid: Rid, mut op: OpPending) {
        let room = record_room(&op.record);
        if op.kind == OpKind::Resume && !self.subs.is_subscribed(room.as_str(), op.conn) {
            // Its connection left. The room's events are held until a resume
            // ends; if a connection that joined meanwhile is all that is
            // left, the resume goes on for it.
            if let Some((conn, since)) = self.subs.held_for(room.as_str()) {
                self.resume(room.as_str(), conn, since);
            }
            return;
        }
        let patience = match op.kind {
            OpKind::Resume => Patience::Forever,
            _ => Patience::Tries,
        };
        let Some(pause) = retry::pause(op.attempt, patience, self.expired(op.born)) else {
            return self.unavailable(&op);
        };
        op.attempt = (op.attempt + 1).min(retry::MOST_TRIES);
        tracing::trace!(room.id = %room, conn = op.conn, attempt = op.attempt, "routing again");
        let up = self.clone();
        let at = Instant::now() + pause;
        self.at(at, async move {
            let room = record_room(&op.record);
            if let Some(writer) = up.send_op(rid, op, room.as_str(), None) {
                writer.wait_room().await;
            }
        });
    }

    /// Answers an operation `unavailable`.
    pub(super) fn unavailable(self: &Arc<Self>, op: &OpPending) {
        let (room, _) = record_room_and_id(&op.record);
        let failure = Failure::new(
            ErrorCode::Unavailable,
            format!("{room} cannot be served right now; retry"),
        );
        self.failed(op, &failure, None);
    }

    /// Answers an operation (each of its joiners) with an `error` frame.
    pub(super) fn failed(
        self: &Arc<Self>,
        op: &OpPending,
        failure: &Failure,
        dirty: Option<&mut Dirty>,
    ) {
        let (room, id) = record_room_and_id(&op.record);
        let mut dirty = dirty;
        let mut answer = |out: &Arc<Outbox>, id: Option<&str>| {
            let frame = websocket::text(error_frame(failure, id, Some(&room)).as_bytes());
            match dirty.as_deref_mut() {
                Some(dirty) => dirty.push(out, frame),
                None => out.send(frame),
            }
        };
        if op.joiners.is_empty() {
            answer(&op.out, id.as_deref());
        }
        for joiner in &op.joiners {
            answer(&joiner.out, joiner.id.as_deref());
        }
        if op.kind == OpKind::Join {
            self.join_ended(&room);
        }
    }

    /// Requests in flight on a link that dropped: operations are routed
    /// again (a retried `send` is idempotent by its id), except those that
    /// may have been applied and must not be applied twice (`OpKind::Once`:
    /// answered `unavailable`); queries fail.
    pub(super) fn fail_pending(self: &Arc<Self>, node: &NodeId) {
        let gone = self.lock_pending().sent_to(node);
        for (rid, call) in gone {
            match call.call {
                Pending::Op(op) if op.kind == OpKind::Once => self.unavailable(&op),
                Pending::Op(op) => self.retry(rid, op),
                Pending::Query(tx) => drop(tx),
                Pending::Resume(resume) => self.retry_resume(resume.room, resume.attempt + 1),
            }
        }
    }

    /// The current sweep round.
    pub(super) fn round(&self) -> u64 {
        self.round.load(Ordering::Relaxed)
    }

    /// Whether a request sent in round `born` has waited `ANSWER_WITHIN`.
    pub(super) fn expired(&self, born: u64) -> bool {
        self.round() >= self.due(born)
    }

    /// The round by which a request sent in round `born` is answered.
    pub(super) fn due(&self, born: u64) -> u64 {
        born + (ANSWER_WITHIN.as_millis() / SWEEP.as_millis()) as u64
    }

    /// Answers requests nobody answered in time, until shutdown.
    pub(super) async fn sweep(self: Arc<Self>, mut shutdown: Shutdown) {
        let mut tick = tokio::time::interval(SWEEP);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.wait() => return,
            }
            self.round.fetch_add(1, Ordering::Relaxed);
            let overdue = self.lock_pending().overdue(self.round());
            for (rid, call) in overdue {
                match call.call {
                    Pending::Op(mut op) if op.kind == OpKind::Resume => {
                        op.born = self.round();
                        self.retry(rid, op);
                    }
                    Pending::Op(op) => {
                        tracing::debug!(rid, "no answer in time");
                        self.unavailable(&op);
                    }
                    Pending::Query(tx) => {
                        let failure = Failure::new(
                            ErrorCode::Unavailable,
                            "the room's node did not answer in time; retry",
                        );
                        let _ = tx.send((Status::Failed(failure), Bytes::new()));
                    }
                    Pending::Resume(resume) => self.retry_resume(resume.room, resume.attempt + 1),
                }
            }
        }
    }
}
