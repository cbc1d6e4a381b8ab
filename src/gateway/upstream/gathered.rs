//! Joins gathered per room on their way to its owner (`gateway::joins`
//! keeps the gates and writes each joiner's `joined`): sending what a gate
//! lets go, in one request to an owner of link version 3 or one each to an
//! older one, and answering each joiner from the owner's one answer.

use super::*;

impl Upstream {
    /// Whether joins of `room` are gathered: its owner's link speaks
    /// version 3.
    pub(super) fn gathers_joins(&self, room: &str) -> bool {
        let owner = self.ring.borrow().ring.owner_of(room).cloned();
        owner.is_some_and(|owner| self.version_of(&owner) >= 3)
    }

    /// A join request of `room` ended (answered, or given up): the joins
    /// that waited at its gate go, as one request, and then the operations
    /// behind them.
    pub(super) fn join_ended(self: &Arc<Self>, room: &str) {
        let next = self.gates.answered(room);
        self.joins_next(room, next);
    }

    /// Sends what goes next at a room's gate, or arms its timer.
    pub(super) fn joins_next(self: &Arc<Self>, room: &str, next: Next<(Rid, OpPending)>) {
        match next {
            Next::Wait => {}
            Next::At(at, timer) => {
                let up = self.clone();
                let room = room.to_string();
                self.at(at, async move {
                    let next = up.gates.fire(&room, timer);
                    up.joins_next(&room, next);
                });
            }
            Next::Go(joiners, later) => {
                self.send_joins(room, joiners);
                for (rid, op) in later {
                    self.send_op(rid, op, room, None);
                }
            }
        }
    }

    /// Sends joins of `room` gathered at its gate: in one request, or one
    /// each to an owner of link version 2 or less.
    pub(super) fn send_joins(self: &Arc<Self>, room: &str, joiners: Vec<Joiner>) {
        let rid = self.ids.next();
        let record = ToNode::Join {
            rid,
            room,
            joins: joiners.iter().map(Joiner::joining).collect(),
        };
        let record = match codec::encode(&record) {
            Ok(record) if self.gathers_joins(room) => record,
            _ => {
                for joiner in joiners {
                    self.send_alone(room, joiner);
                }
                return;
            }
        };
        let Some(first) = joiners.first() else { return };
        counted_joins(joiners.len());
        let (conn, out) = (first.conn, first.out.clone());
        let mut pending = OpPending::new(conn, out, OpKind::Join, record, 3, self.round());
        pending.joiners = joiners;
        self.send_op(rid, pending, room, None);
    }

    /// Sends a join that waited at its room's gate on its own.
    pub(super) fn send_alone(self: &Arc<Self>, room: &str, joiner: Joiner) {
        let rid = self.ids.next();
        let record = ToNode::Op {
            rid,
            room,
            conn: joiner.conn,
            user: joiner.user.as_str(),
            id: joiner.id.as_deref(),
            op: RoomOp::Join {
                since: joiner.since,
                epoch: joiner.epoch.as_deref().map(str::to_string),
            },
        };
        let Ok(record) = codec::encode(&record) else {
            return;
        };
        let pending = OpPending::new(
            joiner.conn,
            joiner.out,
            OpKind::Join,
            record,
            1,
            self.round(),
        );
        self.send_op(rid, pending, room, None);
    }

    /// The owner answered gathered joins: each joiner gets its `joined`,
    /// written from the one answer, and is subscribed from its seq.
    pub(super) fn joins_answered(
        self: &Arc<Self>,
        owner: &NodeId,
        (op, mut parts): (OpPending, Parts),
        seq: Option<u64>,
        payload: &[u8],
        dirty: &mut Dirty,
    ) {
        let room = record_room(&op.record);
        let events = std::mem::take(&mut parts.events);
        let (Ok(room_id), Some(seq), Ok(shared)) = (
            RoomId::parse(&room),
            seq,
            Shared::parse(parts.whole(payload)),
        ) else {
            tracing::warn!(room.id = %room, "a bad answer to gathered joins");
            return self.unavailable(&op);
        };
        let epoch: Arc<str> = Arc::from(shared.epoch());
        for joiner in &op.joiners {
            let frame = shared.joined(&room, seq, joiner, &events);
            dirty.push(&joiner.out, websocket::text(&frame));
            self.subs
                .subscribe(&room_id, joiner.conn, &joiner.out, seq, owner, || {
                    Some(epoch.clone())
                });
        }
        self.join_ended(&room);
    }
}

/// Counts a join request carrying `joins` joins.
pub(super) fn counted_joins(joins: usize) {
    let metrics = crate::telemetry::metrics();
    metrics.join_requests.increment(1);
    metrics.joins.increment(joins as u64);
}
