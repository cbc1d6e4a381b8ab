//! One room's state and its pure transition `apply(origin, op) -> Outcome`:
//! the gap-free seq, the kept log of stored events, the idempotency window,
//! presence counted over connections, read receipts and, for boards, widgets.
//! Frames are built once, as shared `Bytes`, and kept as they were sent.
//!
//! `log`: messages and read receipts, the gap-free seq and the kept log of
//! stored events; `members`: connections subscribing and leaving, and the presence they
//! make; `board_ops`: a board's operations; `joins`: the `joined` frame and
//! the replays of a `since`; `history`: pages of stored events; `queries`:
//! the HTTP API's read-only answers; `transfer`: export and restore for
//! hand-offs and snapshots.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use bytes::Bytes;

use super::board::{Board, RoleChanges};
use super::ephemeral::Ephemeral;
use super::presence::{Presence, Told, NAMES_SHOWN};
pub use super::store::new_epoch;
use super::store::Entry;
use super::Limits;
pub use crate::ids::{LinkId, Sub};
use crate::ids::{Map, RoomId, RoomKind, UserId};
use crate::protocol::client::{BoardRole, RoomOp};
use crate::protocol::server::{ack_frame, error_frame, msg_frame, ServerFrame, WidgetEntry};
use crate::protocol::{ErrorCode, Failure};

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
            RoomOp::BoardCursor { x, y } => Ok(self.cursor(origin, (*x, *y), now)),
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

    /// A cursor moved: the batch of moves that goes now, or when the next
    /// may go.
    fn cursor(&mut self, origin: &Origin, at: (f64, f64), now: u64) -> Outcome {
        let room = self.room.as_str();
        match (self.ephemeral).cursor(room, origin.sub, &origin.user, at, now) {
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
        }
    }

    fn ephemeral(&self, origin: &Origin, frame: ServerFrame<'_>) -> Outcome {
        let event = Event::ephemeral(&frame, Some(origin.sub));
        Outcome {
            events: vec![event],
            ..Outcome::default()
        }
    }
}

mod board_ops;
mod history;
pub use history::{history_frame, page_json, MemoryPage};
mod joins;
mod log;
mod members;
mod queries;
mod transfer;

#[cfg(test)]
pub(crate) mod tests;
