//! Moving a room's state in and out: restoring it from storage, snapshots,
//! and the export and adoption of a whole room for a live hand-off.

use super::{ClientId, Kept, RoomState, Sub};
use crate::ids::UserId;
use crate::rooms::board::Board;
use crate::rooms::store::{Entry, Loaded, Snapshot};

impl RoomState {
    /// Replaces the durable part of the state (seq, log, idempotency window,
    /// widgets, read receipts) with what storage holds; connections and
    /// presence stay as they are.
    pub fn restore(&mut self, loaded: Loaded) {
        let Loaded {
            mut entries,
            snapshot,
            epoch,
        } = loaded;
        if let Some(epoch) = epoch {
            self.epoch = epoch.into();
        }
        entries.sort_by_key(|e| e.seq);
        entries.dedup_by_key(|e| e.seq);
        let snapshot = snapshot.unwrap_or_default();
        self.seq = snapshot.seq;
        self.log.clear();
        self.log_bytes = 0;
        self.sent.clear();
        self.reads = snapshot
            .reads
            .iter()
            .filter_map(|(u, s)| Some((UserId::parse(u).ok()?, *s)))
            .collect();
        if let Some(board) = &mut self.board {
            *board = Board::from_parts(snapshot.widgets, snapshot.roles);
        }
        for entry in entries {
            let frame = entry.frame;
            if entry.seq > snapshot.seq {
                if let Some(board) = &mut self.board {
                    board.replay(&frame);
                }
            }
            let msg = entry
                .author
                .and_then(|a| UserId::parse(&a).ok())
                .map(|a| (a, entry.cid.as_deref().map(ClientId::from)));
            self.seq = self.seq.max(entry.seq);
            self.keep_entry(Kept {
                seq: entry.seq,
                msg,
                frame,
            });
        }
    }

    /// The kept stored events past `seq`, as events for every subscriber
    /// (those an append reported failed that storage holds after all).
    pub fn stored_after(&self, seq: u64) -> Vec<super::Event> {
        self.log
            .iter()
            .filter(|k| k.seq > seq)
            .map(|k| super::Event {
                frame: k.frame.clone(),
                seq: Some(k.seq),
                skip: None,
                author: k.msg.clone(),
            })
            .collect()
    }

    /// Board widgets and read receipts now.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            seq: self.seq,
            widgets: self
                .board
                .iter()
                .flat_map(|b| b.widgets().cloned())
                .collect(),
            reads: self
                .reads
                .iter()
                .map(|(u, s)| (u.to_string(), *s))
                .collect(),
            roles: self
                .board
                .as_ref()
                .map(|b| b.stored_roles().clone())
                .unwrap_or_default(),
        }
    }

    /// The durable part of the state, as storage would hold it.
    pub fn export(&self) -> Loaded {
        let entries = self
            .log
            .iter()
            .map(|k| Entry {
                seq: k.seq,
                frame: k.frame.clone(),
                author: k.msg.as_ref().map(|(u, _)| u.to_string()),
                cid: k
                    .msg
                    .as_ref()
                    .and_then(|(_, c)| c.as_deref().map(str::to_string)),
            })
            .collect();
        Loaded {
            entries,
            snapshot: Some(self.snapshot()),
            epoch: Some(self.epoch.to_string()),
        }
    }

    /// The subscribed connections and their users.
    pub fn connections(&self) -> Vec<(Sub, UserId)> {
        self.conns.iter().map(|(s, u)| (*s, u.clone())).collect()
    }

    /// Adopts connections that were subscribed at the room's previous owner,
    /// without presence events: for everyone else nothing changed.
    pub fn adopt(&mut self, conns: Vec<(Sub, UserId)>) {
        for (sub, user) in conns {
            if self.conns.insert(sub, user.clone()).is_none() {
                *self.links.entry(sub.link).or_default() += 1;
                self.presence.adopt(&user);
                self.adopted.insert(sub);
            }
        }
    }
}
