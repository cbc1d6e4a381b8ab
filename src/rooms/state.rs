//! One room's state and its pure transition `apply(origin, op) -> Outcome`:
//! the gap-free seq, the kept log of stored events, the idempotency window,
//! presence counted over connections, read receipts and, for boards, widgets.
//! Frames are built once, as shared `Bytes`, and kept as they were sent.
//!
//! `joins`: the `joined` frame and the replays of a `since`; `queries`: the
//! HTTP API's read-only answers; `transfer`: export and restore for
//! hand-offs and snapshots.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use bytes::Bytes;

use super::board::{Board, RoleChanges};
use super::ephemeral::Ephemeral;
use super::presence::{Presence, Told, NAMES_SHOWN};
use super::store::Entry;
use super::Limits;
use crate::ids::{ConnId, Map, RoomId, RoomKind, UserId};
use crate::protocol::client::{BoardRole, RoomOp};
use crate::protocol::server::{ack_frame, error_frame, msg_frame, ServerFrame, WidgetEntry};
use crate::protocol::{ErrorCode, Failure};

/// Which gateway link a connection arrived on.
pub type LinkId = u64;

/// A client's id of a message, shared by the kept log, the idempotency
/// window and the journal without copies.
pub type ClientId = std::sync::Arc<str>;

pub use crate::protocol::JOIN_HISTORY;

/// Events a `join` with `since` (or a resume) replays at most: the last
/// this many, in at most `REPLAY_BYTES` encoded; past either the client is
/// told `truncated` and pages the rest with `history`.
pub const REPLAY_EVENTS: usize = 1000;
/// Encoded bytes a replay holds at most.
pub const REPLAY_BYTES: usize = 8 << 20;
/// Encoded bytes of events a room keeps at most, in memory and, with the
/// events since its last snapshot, in its stored log: past them the oldest
/// go, however few are kept, so that a room of huge board changes hands
/// off and reloads as fast as one of chat lines (its widgets travel whole,
/// not as the changes that made them).
pub const KEEP_BYTES: usize = 16 << 20;

/// Read receipts a room keeps (the latest per user): past it the oldest
/// receipt goes, so that a room many users pass through stays bounded.
pub const READS_KEPT: usize = 1024;

/// One subscribed client connection: its gateway link and its id there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Sub {
    /// The gateway link.
    pub link: LinkId,
    /// The connection on that gateway.
    pub conn: ConnId,
}

/// One of a gateway's joiners of a room (see `RoomState::join_all`).
#[derive(Debug, Clone)]
pub struct Joiner<'a> {
    /// The connection and its user.
    pub origin: Origin,
    /// The last seq it has, if it resumes.
    pub since: Option<u64>,
    /// The history `since` counts in, when it knows it.
    pub epoch: Option<&'a str>,
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
    pub reply: Option<Bytes>,
    /// For a resume: the kept events after its `since`, (seq, frame) each.
    pub missed: Option<Vec<(u64, Bytes)>>,
    /// For a `join` or a resume: the seq the reply reflects.
    pub seq: Option<u64>,
    /// Frames for every subscriber, in order.
    pub events: Vec<Event>,
    /// When the room wants `due` called (ms since the Unix epoch): a paced
    /// event waits.
    pub wake: Option<u64>,
}

/// A frame for the room's subscribers.
#[derive(Debug, Clone)]
pub struct Event {
    /// The encoded client frame.
    pub frame: Bytes,
    /// Its seq, for stored events.
    pub seq: Option<u64>,
    /// A connection that must not receive it (the one that caused it).
    pub skip: Option<Sub>,
    /// For chat messages: the author and the client id.
    pub author: Option<(UserId, Option<ClientId>)>,
}

impl Event {
    /// An event that is not stored, kept from the connection that caused it.
    fn ephemeral(frame: &ServerFrame<'_>, skip: Option<Sub>) -> Self {
        Self::unstored(frame.encode().into_bytes(), skip)
    }

    /// An encoded event that is not stored.
    fn unstored(frame: Vec<u8>, skip: Option<Sub>) -> Self {
        Self {
            frame: frame.into(),
            seq: None,
            skip,
            author: None,
        }
    }

    /// The journal entry of a stored event.
    pub fn entry(&self) -> Option<Entry> {
        let seq = self.seq?;
        let (author, cid) = match &self.author {
            Some((user, cid)) => (Some(user.to_string()), cid.as_deref().map(str::to_string)),
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
    msg: Option<(UserId, Option<ClientId>)>,
    frame: Bytes,
}

/// The state of one room.
#[derive(Debug)]
pub struct RoomState {
    room: RoomId,
    seq: u64,
    keep: usize,
    log: VecDeque<Kept>,
    /// Encoded bytes of `log`.
    log_bytes: usize,
    /// Client ids of kept messages, per author, to their seq.
    sent: Map<UserId, Map<ClientId, u64>>,
    conns: Map<Sub, UserId>,
    /// Connections that came with the room from its previous owner and have
    /// not been subscribed here since: their gateway's resume says which
    /// are still there (one closed during the move is not).
    adopted: std::collections::HashSet<Sub>,
    links: Map<LinkId, usize>,
    presence: Presence,
    ephemeral: Ephemeral,
    reads: BTreeMap<UserId, u64>,
    board: Option<Board>,
    /// Names this unbroken history of the room (`joined`'s `epoch`).
    epoch: Arc<str>,
}

impl RoomState {
    /// An empty room within `limits`.
    pub fn new(room: RoomId, limits: Limits) -> Self {
        let board = (room.kind() == RoomKind::Board).then(Board::default);
        Self {
            room,
            seq: 0,
            keep: limits.keep.max(1),
            log: VecDeque::new(),
            log_bytes: 0,
            sent: Map::default(),
            conns: Map::default(),
            adopted: Default::default(),
            links: Map::default(),
            presence: Presence::new(limits.presence),
            ephemeral: Ephemeral::default(),
            reads: BTreeMap::new(),
            board,
            epoch: new_epoch(),
        }
    }

    /// The room's id.
    pub fn id(&self) -> &RoomId {
        &self.room
    }

    /// The user of a subscribed connection, or else the user of that name
    /// as this room knows it, so that a known user costs no allocation.
    pub fn user(&self, sub: Sub, name: &str) -> Option<UserId> {
        if let Some(user) = self.conns.get(&sub) {
            if user.as_str() == name {
                return Some(user.clone());
            }
        }
        if let Some(user) = self.presence.get(name) {
            return Some(user.clone());
        }
        UserId::parse(name).ok()
    }

    /// Whether no connection is subscribed.
    pub fn is_idle(&self) -> bool {
        self.conns.is_empty()
    }

    /// The room's history epoch.
    pub fn epoch(&self) -> &str {
        &self.epoch
    }

    /// Events the room keeps now (at most `keep`, in at most `KEEP_BYTES`).
    pub fn kept(&self) -> usize {
        self.log.len()
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
        self.presence.users()
    }

    /// The board's widgets, for board rooms.
    pub fn board(&self) -> Option<&Board> {
        self.board.as_ref()
    }

    /// Applies one client operation; `now` is the time in ms since the epoch.
    pub fn apply(
        &mut self,
        origin: &Origin,
        id: Option<&str>,
        op: &RoomOp<Bytes>,
        now: u64,
    ) -> Outcome {
        let room = self.room.clone();
        // The gateway refuses operations on rooms a connection has not joined;
        // the room takes them even from a connection it does not know yet,
        // because a connection moving here with its room may send before its
        // re-join arrives.
        let result = match op {
            RoomOp::Join { since, epoch } => {
                Ok(self.join(origin, id, *since, epoch.as_deref(), now))
            }
            RoomOp::Resume { since } => Ok(self.resume(origin, *since, now)),
            RoomOp::Leave => Ok(self.leave(origin.sub, now)),
            RoomOp::Send { body } => Ok(self.send(&origin.user, id, body, now)),
            RoomOp::Typing if self.ephemeral.typing(&origin.user, now) => Ok(self.ephemeral(
                origin,
                ServerFrame::Typing {
                    room: room.as_str(),
                    user: origin.user.as_str(),
                },
            )),
            RoomOp::Typing => Ok(Outcome::default()),
            RoomOp::Read { seq } => self.read(origin, *seq),
            RoomOp::BoardCursor { x, y } => {
                let moved =
                    self.ephemeral
                        .cursor(room.as_str(), origin.sub, &origin.user, (*x, *y), now);
                Ok(match moved {
                    Ok(batch) => Outcome {
                        events: batch
                            .map(|(frame, skip)| Event::unstored(frame, skip))
                            .into_iter()
                            .collect(),
                        ..Outcome::default()
                    },
                    Err(at) => Outcome {
                        wake: Some(at),
                        ..Outcome::default()
                    },
                })
            }
            RoomOp::PresenceList { after, limit } => {
                Ok(self.presence_page(id, after.as_deref(), usize::from(*limit)))
            }
            RoomOp::History { before, limit } => {
                Ok(self.history_page(id, *before, usize::from(*limit)))
            }
            RoomOp::BoardPut { .. }
            | RoomOp::BoardMove { .. }
            | RoomOp::BoardShift { .. }
            | RoomOp::BoardDelete { .. }
            | RoomOp::BoardRole { .. } => self.board_op(&origin.user, id, op),
        };
        result.unwrap_or_else(|failure| Outcome {
            reply: Some(error_frame(&failure, id, Some(room.as_str())).into()),
            ..Outcome::default()
        })
    }

    /// Subscribes a connection; its presence is announced to the others
    /// when it is the user's first (as a count past the presence limit).
    fn subscribe(&mut self, origin: &Origin, now: u64, out: &mut Outcome) {
        self.adopted.remove(&origin.sub);
        if self.conns.insert(origin.sub, origin.user.clone()).is_some() {
            return;
        }
        *self.links.entry(origin.sub.link).or_default() += 1;
        let told = self.presence.arrive(&origin.user, now);
        self.tell(told, &origin.user, origin.sub, out);
    }

    /// Turns what presence says of a user's arrival or departure into
    /// events (kept from the connection `sub`) or a wake-up.
    fn tell(&self, told: Told, user: &UserId, sub: Sub, out: &mut Outcome) {
        let room = self.room.as_str();
        match told {
            Told::Nothing => {}
            Told::User(online) => {
                let frame = ServerFrame::Presence {
                    room,
                    user: user.as_str(),
                    online,
                };
                out.events.push(Event::ephemeral(&frame, Some(sub)));
            }
            Told::Count(count) => {
                let frame = ServerFrame::PresenceCount { room, count };
                out.events.push(Event::ephemeral(&frame, None));
            }
            Told::CountAt(at) => out.wake = Some(out.wake.map_or(at, |w| w.min(at))),
        }
    }

    /// The paced events due at `now` (a `presence.count`, a cursor batch),
    /// and when to ask again.
    pub fn due(&mut self, now: u64) -> Outcome {
        let mut out = Outcome::default();
        if let Some(count) = self.presence.due(now) {
            let frame = ServerFrame::PresenceCount {
                room: self.room.as_str(),
                count,
            };
            out.events.push(Event::ephemeral(&frame, None));
        }
        if let Some((frame, skip)) = self.ephemeral.due(self.room.as_str(), now) {
            out.events.push(Event::unstored(frame, skip));
        }
        out.wake = [self.presence.next(), self.ephemeral.next()]
            .into_iter()
            .flatten()
            .min();
        out
    }

    fn leave(&mut self, sub: Sub, now: u64) -> Outcome {
        let mut out = Outcome::default();
        self.adopted.remove(&sub);
        let Some(user) = self.conns.remove(&sub) else {
            return out;
        };
        if let Some(n) = self.links.get_mut(&sub.link) {
            *n -= 1;
            if *n == 0 {
                self.links.remove(&sub.link);
            }
        }
        let told = self.presence.depart(&user, now);
        if self.presence.get(user.as_str()).is_none() {
            self.ephemeral.left(&user);
        }
        self.tell(told, &user, sub, &mut out);
        out
    }

    /// Drops every connection of a gateway link that went away.
    pub fn drop_link(&mut self, link: LinkId, now: u64) -> Outcome {
        let subs: Vec<Sub> = self
            .conns
            .keys()
            .filter(|s| s.link == link)
            .copied()
            .collect();
        let mut out = Outcome::default();
        self.leave_each(subs, now, &mut out);
        out
    }

    /// Each of `subs` leaves; what the room tells of it goes into `out`.
    fn leave_each(&mut self, subs: Vec<Sub>, now: u64, out: &mut Outcome) {
        for sub in subs {
            let left = self.leave(sub, now);
            out.events.extend(left.events);
            out.wake = [out.wake, left.wake].into_iter().flatten().min();
        }
    }

    /// A `presence.page` of at most `limit` online users after `after`.
    fn presence_page(&self, id: Option<&str>, after: Option<&str>, limit: usize) -> Outcome {
        let (users, more) = self.presence.page(after, limit);
        let next = if more { users.last().copied() } else { None };
        let frame = ServerFrame::PresencePage {
            id,
            room: self.room.as_str(),
            users,
            next,
        };
        Outcome {
            reply: Some(frame.encode().into()),
            ..Outcome::default()
        }
    }

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

    fn read(&mut self, origin: &Origin, seq: u64) -> Result<Outcome, Failure> {
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

    fn ephemeral(&self, origin: &Origin, frame: ServerFrame<'_>) -> Outcome {
        let event = Event::ephemeral(&frame, Some(origin.sub));
        Outcome {
            events: vec![event],
            ..Outcome::default()
        }
    }

    fn board_op(
        &mut self,
        by: &UserId,
        id: Option<&str>,
        op: &RoomOp<Bytes>,
    ) -> Result<Outcome, Failure> {
        let board = self
            .board
            .as_mut()
            .ok_or_else(|| Failure::bad_request("board operations need a board: room"))?;
        let mut roles = RoleChanges::new();
        if !matches!(op, RoomOp::BoardRole { .. }) {
            if board.role_of(by.as_str()) == BoardRole::Viewer {
                return Err(Failure::new(
                    ErrorCode::Forbidden,
                    "a viewer may not change the board",
                ));
            }
            board.claim(by.as_str(), &mut roles);
        }
        let mut moved_only = false;
        let (changed, deleted) = match op {
            RoomOp::BoardPut { widget, base } => {
                (vec![board.put(widget.clone(), *base)?], Vec::new())
            }
            RoomOp::BoardMove { moves } => {
                moved_only = true;
                (board.apply_moves(moves), Vec::new())
            }
            RoomOp::BoardShift { ids, dx, dy } => {
                moved_only = true;
                (board.shift(ids, *dx, *dy)?, Vec::new())
            }
            RoomOp::BoardDelete { ids } => (Vec::new(), board.delete(ids)),
            RoomOp::BoardRole { user, role } => {
                board.set_role(by.as_str(), user, *role, &mut roles)?;
                (Vec::new(), Vec::new())
            }
            _ => return Err(Failure::bad_request("not a board operation")),
        };
        let seq = self.seq + 1;
        let widgets = changed
            .iter()
            .filter_map(|w| board.get(w))
            .map(|w| {
                if moved_only {
                    WidgetEntry::Moved {
                        id: &w.widget.id,
                        x: w.widget.x,
                        y: w.widget.y,
                        v: w.v,
                    }
                } else {
                    WidgetEntry::Full(w)
                }
            })
            .collect();
        let frame = ServerFrame::BoardChanged {
            id,
            room: self.room.as_str(),
            seq,
            by: by.as_str(),
            widgets,
            deleted: deleted.iter().map(String::as_str).collect(),
            roles: (!roles.is_empty()).then_some(&roles),
        }
        .encode();
        Ok(Outcome {
            events: vec![self.store(frame.into(), None)],
            ..Outcome::default()
        })
    }

    /// Stamps the next seq on an encoded frame, keeps it, trims the log.
    fn store(&mut self, frame: Bytes, msg: Option<(UserId, Option<ClientId>)>) -> Event {
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

    fn keep_entry(&mut self, kept: Kept) {
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

/// A fresh history epoch: 16 hex digits from the OS's randomness.
pub fn new_epoch() -> Arc<str> {
    let mut bytes = [0u8; 8];
    if getrandom::fill(&mut bytes).is_err() {
        let now = crate::protocol::now_ms().to_le_bytes();
        bytes.copy_from_slice(&now);
    }
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>()
        .into()
}

mod history;
pub use history::{history_frame, page_json, MemoryPage};
mod joins;
mod queries;
mod transfer;

#[cfg(test)]
mod tests;
