//! Rooms subscribed again at their new owner when the ring moves them or
//! their node's link drops: one resume per room and node (link version 2
//! on), or one per connection with an older node.

use super::*;

impl Upstream {
    /// Subscribes again, at their owner on the current ring, the rooms that
    /// moved or whose node's link went `down`, so that presence stays right
    /// and the gap is filled: one resume per room.
    pub(in crate::gateway) fn resume_moved(self: &Arc<Self>, down: Option<&NodeId>) {
        let ring = self.ring.borrow().ring.clone();
        for resume in self.subs.to_resume(&ring, down) {
            tracing::debug!(room.id = %resume.room, since = resume.since, "resuming room");
            self.resume_room(resume.room, 0);
        }
    }

    /// Subscribes a held room's connections again at its owner: in one
    /// record for them all, or, with a node of link version 1, one resume
    /// per connection. Nothing once the room is not held any more.
    pub(super) fn resume_room(self: &Arc<Self>, room: RoomId, attempt: usize) {
        let Some((since, epoch, conns)) = self.held_with_joiners(&room) else {
            return;
        };
        let Some((owner, writer)) = self.writer_to_owner(room.as_str()) else {
            return self.retry_resume(room, attempt);
        };
        if self.version_of(&owner) < 2 {
            if conns.is_empty() {
                return self.subs.forget_if_empty(room.as_str());
            }
            for conn in conns {
                self.resume(room.as_str(), conn, since);
            }
            return;
        }
        let users: Vec<(ConnId, crate::ids::UserId)> = conns
            .into_iter()
            .filter_map(|conn| Some((conn, self.sessions.get(conn)?.0)))
            .collect();
        let rid = self.ids.next();
        let record = ToNode::Resume {
            rid,
            room: room.as_str(),
            since,
            conns: users.iter().map(|(c, u)| (*c, u.as_str())).collect(),
            epoch: epoch.as_deref(),
        };
        let record = match codec::encode(&record) {
            Ok(record) => record,
            Err(e) => {
                // More connections than one record holds: one each.
                tracing::debug!(room.id = %room, error = %e, "resuming connection by connection");
                for (conn, _) in users {
                    self.resume(room.as_str(), conn, since);
                }
                return;
            }
        };
        let resume = ResumePending {
            room: room.clone(),
            attempt,
        };
        let due = self.due(self.round());
        self.lock_pending()
            .insert(rid, owner, due, Pending::Resume(resume));
        let sent = writer.send_with(|buf| {
            buf.extend_from_slice(&record);
            Ok(())
        });
        if sent.is_err() && self.lock_pending().take(rid).is_some() {
            self.retry_resume(room, attempt);
        }
    }

    /// What a held room resumes from, and its connections: those held,
    /// and those whose join the old owner applied but has not answered yet
    /// (it came with the room: named here, it is not taken for one that
    /// closed).
    fn held_with_joiners(&self, room: &RoomId) -> Option<(u64, Option<Arc<str>>, Vec<ConnId>)> {
        let (since, epoch, mut conns) = self.subs.held(room.as_str())?;
        for conn in self.joining(room.as_str()) {
            if !conns.contains(&conn) {
                conns.push(conn);
            }
        }
        Some((since, epoch, conns))
    }

    /// Connections whose join of `room` waits for its answer.
    pub(super) fn joining(&self, room: &str) -> Vec<ConnId> {
        self.lock_pending()
            .iter()
            .filter_map(|c| match &c.call {
                Pending::Op(op) if op.kind == OpKind::Join && record_room(&op.record) == room => {
                    Some(op.joiners.iter().map(|j| j.conn).chain([op.conn]))
                }
                _ => None,
            })
            .flatten()
            .collect()
    }

    /// Tries a room's resume again a little later.
    pub(super) fn retry_resume(self: &Arc<Self>, room: RoomId, attempt: usize) {
        let pause = retry::pause(attempt, Patience::Forever, false).unwrap_or_default();
        let up = self.clone();
        let at = Instant::now() + pause;
        self.at(at, async move {
            up.resume_room(room, attempt + 1);
        });
    }

    /// Subscribes one local connection again at the room's owner, from
    /// `since`; nothing if the connection is gone.
    pub(super) fn resume(self: &Arc<Self>, room: &str, conn: ConnId, since: u64) {
        let Some((user, out)) = self.sessions.get(conn) else {
            return;
        };
        self.op(OpRequest {
            room,
            conn,
            out: &out,
            user: user.as_str(),
            id: None,
            op: RoomOp::Resume { since },
            route: None,
        });
    }
}
