//! One room's state and its pure transition `apply(origin, op) -> Outcome`:
//! the gap-free seq, the kept log of stored events, the idempotency window,
//! presence counted over connections, read receipts and, for boards, widgets.

use std::collections::{BTreeMap, HashMap, VecDeque};

use serde_json::value::RawValue;

use super::board::Board;
use super::store::Entry;
use crate::ids::{RoomId, RoomKind, UserId};
use crate::protocol::client::RoomOp;
use crate::protocol::link::ConnId;
use crate::protocol::server::{error_frame, ServerFrame};
use crate::protocol::Failure;

/// Which gateway link a connection arrived on.
pub type LinkId = u64;

/// Messages a `join` without `since` replays.
pub const JOIN_HISTORY: usize = 50;

/// One subscribed client connection: its gateway link and its id there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Sub {
    /// The gateway link.
    pub link: LinkId,
    /// The connection on that gateway.
    pub conn: ConnId,
}

/// Who performs an operation.
#[derive(Debug, Clone)]
pub struct Origin {
    /// The connection.
    pub sub: Sub,
    /// Its user.
    pub user: UserId,
}

/// What applying an operation produced.
#[derive(Debug, Default)]
pub struct Outcome {
    /// A frame for the requesting connection only.
    pub reply: Option<String>,
    /// For a `join`: the seq the reply reflects.
    pub seq: Option<u64>,
    /// Frames for every subscriber, in order.
    pub events: Vec<Event>,
}

/// A frame for the room's subscribers.
#[derive(Debug)]
pub struct Event {
    /// The encoded client frame.
    pub frame: String,
    /// Its seq, for stored events.
    pub seq: Option<u64>,
    /// A connection that must not receive it (the one that caused it).
    pub skip: Option<Sub>,
    /// For chat messages: the author and the client id.
    pub author: Option<(UserId, Option<String>)>,
}

impl Event {
    /// An event that is not stored, kept from the connection that caused it.
    fn ephemeral(frame: &ServerFrame<'_>, skip: Sub) -> Self {
        Self {
            frame: frame.encode(),
            seq: None,
            skip: Some(skip),
            author: None,
        }
    }

    /// The journal entry of a stored event.
    pub fn entry(&self) -> Option<Entry> {
        let seq = self.seq?;
        let (author, cid) = match &self.author {
            Some((user, cid)) => (Some(user.to_string()), cid.clone()),
            None => (None, None),
        };
        Some(Entry {
            seq,
            frame: self.frame.clone(),
            author,
            cid,
        })
    }
}

/// A kept (seq-stamped) event.
#[derive(Debug)]
struct Kept {
    seq: u64,
    /// Set for chat messages: `(author, client id)` for the idempotency window.
    msg: Option<(UserId, Option<String>)>,
    frame: Box<RawValue>,
}

/// The state of one room.
#[derive(Debug)]
pub struct RoomState {
    room: RoomId,
    seq: u64,
    keep: usize,
    log: VecDeque<Kept>,
    /// `(user, client id)` of kept messages to their seq.
    sent: HashMap<(UserId, String), u64>,
    conns: HashMap<Sub, UserId>,
    links: HashMap<LinkId, usize>,
    online: BTreeMap<UserId, usize>,
    reads: BTreeMap<UserId, u64>,
    board: Option<Board>,
}

impl RoomState {
    /// An empty room keeping the last `keep` stored events.
    pub fn new(room: RoomId, keep: usize) -> Self {
        let board = (room.kind() == RoomKind::Board).then(Board::default);
        Self {
            room,
            seq: 0,
            keep: keep.max(1),
            log: VecDeque::new(),
            sent: HashMap::new(),
            conns: HashMap::new(),
            links: HashMap::new(),
            online: BTreeMap::new(),
            reads: BTreeMap::new(),
            board,
        }
    }

    /// The room's last seq.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Whether any connection of this link is subscribed.
    pub fn has_link(&self, link: LinkId) -> bool {
        self.links.contains_key(&link)
    }

    /// Users online, sorted.
    pub fn online(&self) -> impl Iterator<Item = &UserId> {
        self.online.keys()
    }

    /// The board's widgets, for board rooms.
    pub fn board(&self) -> Option<&Board> {
        self.board.as_ref()
    }

    /// Applies one client operation; `now` is the time in ms since the epoch.
    pub fn apply(&mut self, origin: &Origin, id: Option<&str>, op: &RoomOp, now: u64) -> Outcome {
        let room = self.room.clone();
        // The gateway refuses operations on rooms a connection has not joined;
        // the room takes them even from a connection it does not know yet,
        // because a connection moving here with its room may send before its
        // re-join arrives.
        let result = match op {
            RoomOp::Join { since } => Ok(self.join(origin, id, *since)),
            RoomOp::Leave => Ok(self.leave(origin.sub)),
            RoomOp::Send { body } => Ok(self.send(&origin.user, id, body, now)),
            RoomOp::Typing => Ok(self.ephemeral(
                origin,
                ServerFrame::Typing {
                    room: room.as_str(),
                    user: origin.user.as_str(),
                },
            )),
            RoomOp::Read { seq } => self.read(origin, *seq),
            RoomOp::BoardCursor { x, y } => {
                let frame = ServerFrame::BoardCursor {
                    room: room.as_str(),
                    user: origin.user.as_str(),
                    x: *x,
                    y: *y,
                };
                Ok(self.ephemeral(origin, frame))
            }
            RoomOp::BoardPut { .. } | RoomOp::BoardMove { .. } | RoomOp::BoardDelete { .. } => {
                self.board_op(&origin.user, id, op)
            }
        };
        result.unwrap_or_else(|failure| Outcome {
            reply: Some(error_frame(&failure, id, Some(room.as_str()))),
            ..Outcome::default()
        })
    }

    fn join(&mut self, origin: &Origin, id: Option<&str>, since: Option<u64>) -> Outcome {
        let mut out = Outcome::default();
        if self.conns.insert(origin.sub, origin.user.clone()).is_none() {
            *self.links.entry(origin.sub.link).or_default() += 1;
            let count = self.online.entry(origin.user.clone()).or_default();
            *count += 1;
            if *count == 1 {
                let frame = ServerFrame::Presence {
                    room: self.room.as_str(),
                    user: origin.user.as_str(),
                    online: true,
                };
                out.events.push(Event::ephemeral(&frame, origin.sub));
            }
        }
        let first_kept = self.log.front().map_or(self.seq + 1, |e| e.seq);
        let msgs = self.log.iter().filter(|e| e.msg.is_some());
        let history: Vec<&RawValue> = match since {
            Some(since) => msgs.filter(|e| e.seq > since).map(|e| &*e.frame).collect(),
            None => {
                let mut last: Vec<&RawValue> =
                    msgs.rev().take(JOIN_HISTORY).map(|e| &*e.frame).collect();
                last.reverse();
                last
            }
        };
        let frame = ServerFrame::Joined {
            id,
            room: self.room.as_str(),
            seq: self.seq,
            history,
            online: self.online.keys().map(UserId::as_str).collect(),
            truncated: since.is_some_and(|s| s + 1 < first_kept),
            reads: self.reads.iter().map(|(u, s)| (u.as_str(), *s)).collect(),
            widgets: self.board.as_ref().map(|b| b.widgets().collect()),
        };
        out.reply = Some(frame.encode());
        out.seq = Some(self.seq);
        out
    }

    fn leave(&mut self, sub: Sub) -> Outcome {
        let mut out = Outcome::default();
        let Some(user) = self.conns.remove(&sub) else {
            return out;
        };
        if let Some(n) = self.links.get_mut(&sub.link) {
            *n -= 1;
            if *n == 0 {
                self.links.remove(&sub.link);
            }
        }
        if let Some(n) = self.online.get_mut(&user) {
            *n -= 1;
            if *n == 0 {
                self.online.remove(&user);
                let frame = ServerFrame::Presence {
                    room: self.room.as_str(),
                    user: user.as_str(),
                    online: false,
                };
                out.events.push(Event::ephemeral(&frame, sub));
            }
        }
        out
    }

    /// Drops every connection of a gateway link that went away.
    pub fn drop_link(&mut self, link: LinkId) -> Outcome {
        let subs: Vec<Sub> = self
            .conns
            .keys()
            .filter(|s| s.link == link)
            .copied()
            .collect();
        let mut out = Outcome::default();
        for sub in subs {
            out.events.append(&mut self.leave(sub).events);
        }
        out
    }

    /// Stores a chat message, or returns the first ack of a retried one.
    pub fn send(&mut self, from: &UserId, id: Option<&str>, body: &RawValue, now: u64) -> Outcome {
        let room = self.room.clone();
        if let Some(id) = id {
            if let Some(&seq) = self.sent.get(&(from.clone(), id.to_string())) {
                let ack = ServerFrame::Ack {
                    id,
                    room: room.as_str(),
                    seq,
                }
                .encode();
                return Outcome {
                    reply: Some(ack),
                    ..Outcome::default()
                };
            }
        }
        let seq = self.seq + 1;
        let frame = ServerFrame::Msg {
            room: room.as_str(),
            seq,
            from: from.as_str(),
            body,
            ts: now,
        }
        .encode();
        let reply = id.map(|id| {
            ServerFrame::Ack {
                id,
                room: room.as_str(),
                seq,
            }
            .encode()
        });
        let event = self.store(frame, Some((from.clone(), id.map(str::to_string))));
        Outcome {
            reply,
            seq: None,
            events: vec![event],
        }
    }

    fn read(&mut self, origin: &Origin, seq: u64) -> Result<Outcome, Failure> {
        if seq > self.seq {
            return Err(Failure::bad_request(format!(
                "seq {seq} is past the room's last seq {}",
                self.seq
            )));
        }
        let latest = self.reads.entry(origin.user.clone()).or_default();
        *latest = (*latest).max(seq);
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

    fn ephemeral(&self, origin: &Origin, frame: ServerFrame<'_>) -> Outcome {
        let event = Event::ephemeral(&frame, origin.sub);
        Outcome {
            events: vec![event],
            ..Outcome::default()
        }
    }

    fn board_op(&mut self, by: &UserId, id: Option<&str>, op: &RoomOp) -> Result<Outcome, Failure> {
        let board = self
            .board
            .as_mut()
            .ok_or_else(|| Failure::bad_request("board operations need a board: room"))?;
        let (changed, deleted) = match op {
            RoomOp::BoardPut { widget, base } => {
                (vec![board.put(widget.clone(), *base)?], Vec::new())
            }
            RoomOp::BoardMove { moves } => (board.apply_moves(moves), Vec::new()),
            RoomOp::BoardDelete { ids } => (Vec::new(), board.delete(ids)),
            _ => return Err(Failure::bad_request("not a board operation")),
        };
        let seq = self.seq + 1;
        let frame = ServerFrame::BoardChanged {
            id,
            room: self.room.as_str(),
            seq,
            by: by.as_str(),
            widgets: changed.iter().filter_map(|w| board.get(w)).collect(),
            deleted: deleted.iter().map(String::as_str).collect(),
        }
        .encode();
        Ok(Outcome {
            events: vec![self.store(frame, None)],
            ..Outcome::default()
        })
    }

    /// Stamps the next seq on an encoded frame, keeps it, trims the log.
    fn store(&mut self, frame: String, msg: Option<(UserId, Option<String>)>) -> Event {
        self.seq += 1;
        let seq = self.seq;
        // The frame was produced by our own serializer, so it is valid JSON.
        let raw =
            RawValue::from_string(frame.clone()).unwrap_or_else(|_| RawValue::NULL.to_owned());
        self.keep_entry(Kept {
            seq,
            msg: msg.clone(),
            frame: raw,
        });
        Event {
            frame,
            seq: Some(seq),
            skip: None,
            author: msg,
        }
    }

    fn keep_entry(&mut self, kept: Kept) {
        if let Some((user, Some(id))) = &kept.msg {
            self.sent.insert((user.clone(), id.clone()), kept.seq);
        }
        self.log.push_back(kept);
        while self.log.len() > self.keep {
            if let Some(Kept {
                msg: Some((user, Some(id))),
                ..
            }) = self.log.pop_front()
            {
                self.sent.remove(&(user, id));
            }
        }
    }
}

mod queries;
mod transfer;

#[cfg(test)]
mod tests;
