//! What a room stores: a message sent (once per client id), read receipts
//! (the latest per user, bounded), and every stored event stamped with the
//! next seq and kept within the room's bounds of count and bytes.

use super::*;

impl RoomState {
    /// Stores a chat message, or returns the first ack of a retried one.
    pub fn send(&mut self, from: &UserId, id: Option<&str>, body: &[u8], now: u64) -> Outcome {
        if let Some(id) = id {
            if let Some(&seq) = self.sent.get(from.as_str()).and_then(|ids| ids.get(id)) {
                return Outcome {
                    reply: Some(ack_frame(id, self.room.as_str(), seq).into()),
                    ..Outcome::default()
                };
            }
        }
        let seq = self.seq + 1;
        let frame = msg_frame(self.room.as_str(), seq, from.as_str(), body, now);
        let reply = id.map(|id| ack_frame(id, self.room.as_str(), seq).into());
        let event = self.store(frame.into(), Some((from.clone(), id.map(ClientId::from))));
        Outcome {
            reply,
            events: vec![event],
            ..Outcome::default()
        }
    }

    pub(super) fn read(&mut self, origin: &Origin, seq: u64) -> Result<Outcome, Failure> {
        if seq > self.seq {
            return Err(Failure::bad_request(format!(
                "seq {seq} is past the room's last seq {}",
                self.seq
            )));
        }
        let latest = self.reads.entry(origin.user.clone()).or_default();
        *latest = (*latest).max(seq);
        if self.reads.len() > READS_KEPT {
            // A room of many passing users: the oldest receipt goes, never
            // the one just given.
            let oldest = self
                .reads
                .iter()
                .filter(|(user, _)| **user != origin.user)
                .min_by_key(|(_, seq)| **seq)
                .map(|(user, _)| user.clone());
            if let Some(user) = oldest {
                self.reads.remove(&user);
            }
        }
        let room = self.room.clone();
        Ok(self.ephemeral(
            origin,
            ServerFrame::Read {
                room: room.as_str(),
                user: origin.user.as_str(),
                seq,
            },
        ))
    }

    /// Stamps the next seq on an encoded frame, keeps it, trims the log.
    pub(super) fn store(&mut self, frame: Bytes, msg: Option<(UserId, Option<ClientId>)>) -> Event {
        self.seq += 1;
        let seq = self.seq;
        self.keep_entry(Kept {
            seq,
            msg: msg.clone(),
            frame: frame.clone(),
        });
        Event {
            frame,
            seq: Some(seq),
            skip: None,
            author: msg,
        }
    }

    pub(super) fn keep_entry(&mut self, kept: Kept) {
        if let Some((user, Some(id))) = &kept.msg {
            self.sent
                .entry(user.clone())
                .or_default()
                .insert(id.clone(), kept.seq);
        }
        self.log_bytes += kept.frame.len();
        self.log.push_back(kept);
        while self.log.len() > self.keep || (self.log_bytes > KEEP_BYTES && self.log.len() > 1) {
            let Some(gone) = self.log.pop_front() else {
                break;
            };
            self.log_bytes -= gone.frame.len();
            if let Kept {
                msg: Some((user, Some(id))),
                ..
            } = gone
            {
                if let Some(ids) = self.sent.get_mut(user.as_str()) {
                    ids.remove(&id);
                    if ids.is_empty() {
                        self.sent.remove(user.as_str());
                    }
                }
            }
        }
    }
}
