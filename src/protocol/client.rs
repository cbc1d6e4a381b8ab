//! Client frames: parsing and validation of what a WebSocket client sends.
//! A frame is read once into borrowed raw fields, so a message `body` is
//! forwarded as the bytes the client sent, never re-encoded or copied.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use super::{ErrorCode, Failure};
use crate::ids::{RoomId, RoomKind};

mod parse;
mod widgets;

pub use parse::parse;
pub use widgets::in_bounds;

/// Largest client frame answered normally; larger ones get `too_large`.
pub const MAX_FRAME_BYTES: usize = 64 * 1024;
/// Largest `board.move` frame, so that `MAX_MOVES` moves fit.
pub const MAX_MOVE_FRAME_BYTES: usize = 256 * 1024;
/// Largest encoded `send` body.
pub const MAX_BODY_BYTES: usize = 16 * 1024;
/// Largest client `id`.
pub const MAX_ID_BYTES: usize = 64;
/// Most widgets in one `board.move`.
pub const MAX_MOVES: usize = 5000;
/// Largest widget `text`, in bytes.
pub const MAX_TEXT_BYTES: usize = 4096;
/// Largest widget `kind` and `color`, in bytes.
pub const MAX_TAG_BYTES: usize = 64;
/// Widgets one board may hold.
pub const MAX_WIDGETS: usize = 10_000;
/// Widget coordinates and sizes lie within ±this, also after a relative
/// move.
pub const MAX_COORD: f64 = 1e9;
/// Encoded bytes a board's widgets may take in all.
pub const MAX_BOARD_BYTES: usize = 8 << 20;
/// Most users in one `presence.page`.
pub const MAX_PAGE: u16 = 1000;
/// Users in a `presence.page` when the client names no `limit`.
pub const DEFAULT_PAGE: u16 = 200;
/// Most events in one `history` page.
pub const MAX_HISTORY_PAGE: u16 = 200;
/// Events in a `history` page when the client names no `limit`.
pub const DEFAULT_HISTORY_PAGE: u16 = 50;

/// One validated client frame, borrowing from the text it was read from.
#[derive(Debug)]
pub struct ClientFrame<'a> {
    /// The client's correlation id, echoed in every reply.
    pub id: Option<Cow<'a, str>>,
    /// What the frame asks for.
    pub cmd: Command<'a>,
}

/// What a client frame asks for.
#[derive(Debug)]
pub enum Command<'a> {
    /// `ping`, answered by the gateway itself.
    Ping,
    /// An operation on one room, answered by its owner.
    Room {
        /// The room id, validated.
        room: Cow<'a, str>,
        /// The operation; a message body is the client's raw JSON.
        op: RoomOp<&'a [u8]>,
    },
}

/// A room operation as the owner applies it (also the link's encoding).
/// `B` holds a raw JSON body: borrowed bytes while a frame is parsed or a
/// link record decoded, shared `Bytes` inside a room.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum RoomOp<B> {
    /// Subscribe, optionally resuming after `since`.
    Join {
        /// The last seq the client has.
        since: Option<u64>,
        /// The history epoch `since` belongs to.
        epoch: Option<String>,
    },
    /// Re-subscribe a connection at its room's new owner (a gateway's own
    /// operation, never a client's): the answer is every kept event after
    /// `since`, one by one, so that the gateway fills the gap.
    Resume {
        /// The last seq the gateway passed on.
        since: u64,
    },
    /// Unsubscribe.
    Leave,
    /// Post a chat message.
    Send {
        /// The message body, as the client encoded it.
        body: B,
    },
    /// Ephemeral typing notice.
    Typing,
    /// Read receipt up to `seq`.
    Read {
        /// The last seq read.
        seq: u64,
    },
    /// Create or replace a widget.
    BoardPut {
        /// The widget.
        widget: Widget,
        /// The version the client saw, for a conditional write.
        base: Option<u64>,
    },
    /// Move many widgets atomically, each to its position.
    BoardMove {
        /// The moves.
        moves: Vec<WidgetMove>,
    },
    /// Move many widgets atomically, all by one offset (a dragged selection).
    BoardShift {
        /// The widgets.
        ids: Vec<String>,
        /// X offset.
        dx: f64,
        /// Y offset.
        dy: f64,
    },
    /// Delete widgets.
    BoardDelete {
        /// Widget ids.
        ids: Vec<String>,
    },
    /// Grant a role on a board (owner only); `owner` transfers ownership.
    BoardRole {
        /// The user, or `*` for everyone not named.
        user: String,
        /// The role.
        role: BoardRole,
    },
    /// Ephemeral cursor position.
    BoardCursor {
        /// X coordinate.
        x: f64,
        /// Y coordinate.
        y: f64,
    },
    /// A page of the room's online users (link version 2 on).
    PresenceList {
        /// The last user of the previous page.
        after: Option<String>,
        /// Users at most (1 to `MAX_PAGE`).
        limit: u16,
    },
    /// A page of the room's stored events below `before` (link version 4
    /// on).
    History {
        /// Exclusive upper bound; none for the room's seq + 1.
        before: Option<u64>,
        /// Events at most (1 to `MAX_HISTORY_PAGE`).
        limit: u16,
    },
}

impl<B> RoomOp<B> {
    /// The frame type the client used, for logs and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Join { .. } => "join",
            Self::Resume { .. } => "resume",
            Self::Leave => "leave",
            Self::Send { .. } => "send",
            Self::Typing => "typing",
            Self::Read { .. } => "read",
            Self::BoardPut { .. } => "board.put",
            Self::BoardMove { .. } | Self::BoardShift { .. } => "board.move",
            Self::BoardDelete { .. } => "board.delete",
            Self::BoardRole { .. } => "board.role",
            Self::BoardCursor { .. } => "board.cursor",
            Self::PresenceList { .. } => "presence.list",
            Self::History { .. } => "history",
        }
    }

    /// The same operation with its body mapped.
    pub fn map_body<C>(self, f: impl FnOnce(B) -> C) -> RoomOp<C> {
        match self {
            Self::Join { since, epoch } => RoomOp::Join { since, epoch },
            Self::Resume { since } => RoomOp::Resume { since },
            Self::Leave => RoomOp::Leave,
            Self::Send { body } => RoomOp::Send { body: f(body) },
            Self::Typing => RoomOp::Typing,
            Self::Read { seq } => RoomOp::Read { seq },
            Self::BoardPut { widget, base } => RoomOp::BoardPut { widget, base },
            Self::BoardMove { moves } => RoomOp::BoardMove { moves },
            Self::BoardShift { ids, dx, dy } => RoomOp::BoardShift { ids, dx, dy },
            Self::BoardDelete { ids } => RoomOp::BoardDelete { ids },
            Self::BoardRole { user, role } => RoomOp::BoardRole { user, role },
            Self::BoardCursor { x, y } => RoomOp::BoardCursor { x, y },
            Self::PresenceList { after, limit } => RoomOp::PresenceList { after, limit },
            Self::History { before, limit } => RoomOp::History { before, limit },
        }
    }
}

/// A board widget as clients send it; the server adds its version `v`.
/// In JSON absent optional fields are left out; in binary formats (the
/// link) every field is there, as they have no field names to go by.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Widget {
    /// Widget id, unique in the board.
    pub id: String,
    /// Free-form kind (`sticky`, `shape`, ...).
    pub kind: String,
    /// X position.
    pub x: f64,
    /// Y position.
    pub y: f64,
    /// Width.
    #[serde(default)]
    pub w: Option<f64>,
    /// Height.
    #[serde(default)]
    pub h: Option<f64>,
    /// Text content.
    #[serde(default)]
    pub text: Option<String>,
    /// Color.
    #[serde(default)]
    pub color: Option<String>,
}

impl Serialize for Widget {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let every = !s.is_human_readable();
        let given = [
            self.w.is_some(),
            self.h.is_some(),
            self.text.is_some(),
            self.color.is_some(),
        ];
        let fields = 4 + given.iter().filter(|g| every || **g).count();
        let mut st = s.serialize_struct("Widget", fields)?;
        st.serialize_field("id", &self.id)?;
        st.serialize_field("kind", &self.kind)?;
        st.serialize_field("x", &self.x)?;
        st.serialize_field("y", &self.y)?;
        macro_rules! optional {
            ($name:literal, $field:expr) => {
                if every || $field.is_some() {
                    st.serialize_field($name, &$field)?;
                } else {
                    st.skip_field($name)?;
                }
            };
        }
        optional!("w", self.w);
        optional!("h", self.h);
        optional!("text", self.text);
        optional!("color", self.color);
        st.end()
    }
}

/// One entry of `board.move`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WidgetMove {
    /// Widget id.
    pub id: String,
    /// New x.
    pub x: f64,
    /// New y.
    pub y: f64,
}

/// A rejected frame: the failure plus what the reply can still echo.
#[derive(Debug)]
pub struct Rejected {
    /// Why.
    pub failure: Failure,
    /// The frame's `id`, when it had a valid one.
    pub id: Option<String>,
    /// The frame's room, when it had a valid one.
    pub room: Option<String>,
}

/// What a user may do on a board.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BoardRole {
    /// Everything, and granting roles; exactly one per used board.
    Owner,
    /// Create, change, move and delete widgets.
    Editor,
    /// Watch only.
    Viewer,
}

#[cfg(test)]
mod tests;
