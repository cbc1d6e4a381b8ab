//! Requests in flight: routed again, answered `unavailable` or failed when
//! their link drops, and expired when nobody answered within
//! `ANSWER_WITHIN`.

use super::*;

impl Upstream {
    /// Requests in flight on a link that dropped: operations are routed
    /// again (a retried `send` is idempotent by its id), except those that
    /// may have been applied and must not be applied twice (`OpKind::Once`:
    /// answered `unavailable`); queries fail.
    pub(super) fn fail_pending(self: &Arc<Self>, node: &NodeId) {
        let mut gone = Vec::new();
        {
            let mut pending = self.lock_pending();
            let rids: Vec<Rid> = pending
                .iter()
                .filter(|(_, p)| p.node() == Some(node))
                .map(|(rid, _)| *rid)
                .collect();
            for rid in rids {
                if let Some(p) = pending.remove(&rid) {
                    gone.push((rid, p));
                }
            }
        }
        for (rid, p) in gone {
            match p {
                Pending::Op(op) if op.kind == OpKind::Once => self.unavailable(&op),
                Pending::Op(mut op) => {
                    op.parts.clear();
                    self.retry(rid, op)
                }
                Pending::Query { tx, .. } => drop(tx),
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
        let rounds = (ANSWER_WITHIN.as_millis() / SWEEP.as_millis()) as u64;
        self.round().saturating_sub(born) >= rounds
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
            let expired: Vec<(Rid, Pending)> = {
                let mut pending = self.lock_pending();
                let rids: Vec<Rid> = pending
                    .iter()
                    .filter(|(_, p)| self.expired(p.born()))
                    .map(|(rid, _)| *rid)
                    .collect();
                rids.into_iter()
                    .filter_map(|rid| Some((rid, pending.remove(&rid)?)))
                    .collect()
            };
            for (rid, p) in expired {
                match p {
                    Pending::Op(mut op) if op.kind == OpKind::Resume => {
                        op.born = self.round();
                        op.parts.clear();
                        self.retry(rid, op);
                    }
                    Pending::Op(op) => {
                        tracing::debug!(rid, "no answer in time");
                        self.unavailable(&op);
                    }
                    Pending::Query { tx, .. } => {
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
