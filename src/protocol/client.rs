//! Client frames: parsing and validation of what a WebSocket client sends.
//! A frame is read once into borrowed raw fields, so a message `body` is
//! forwarded as the bytes the client sent, never re-encoded or copied.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::{ErrorCode, Failure};
use crate::ids::{RoomId, RoomKind};

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

/// The frame as read in one pass: its strings borrowed, the rest still raw.
#[derive(Deserialize)]
struct Raw<'a> {
    #[serde(borrow)]
    t: Option<Str<'a>>,
    #[serde(borrow)]
    id: Option<Str<'a>>,
    #[serde(borrow)]
    room: Option<Str<'a>>,
    #[serde(borrow)]
    since: Option<&'a RawValue>,
    #[serde(borrow)]
    body: Option<&'a RawValue>,
    #[serde(borrow)]
    seq: Option<&'a RawValue>,
    #[serde(borrow)]
    widget: Option<&'a RawValue>,
    #[serde(borrow)]
    base: Option<&'a RawValue>,
    #[serde(borrow)]
    moves: Option<&'a RawValue>,
    #[serde(borrow)]
    ids: Option<&'a RawValue>,
    #[serde(borrow)]
    x: Option<&'a RawValue>,
    #[serde(borrow)]
    y: Option<&'a RawValue>,
    #[serde(borrow)]
    epoch: Option<&'a RawValue>,
    #[serde(borrow)]
    dx: Option<&'a RawValue>,
    #[serde(borrow)]
    dy: Option<&'a RawValue>,
    #[serde(borrow)]
    user: Option<&'a RawValue>,
    #[serde(borrow)]
    role: Option<&'a RawValue>,
    #[serde(borrow)]
    after: Option<&'a RawValue>,
    #[serde(borrow)]
    limit: Option<&'a RawValue>,
    #[serde(borrow)]
    before: Option<&'a RawValue>,
}

/// A field that should be a string: the string (borrowed when it has no
/// escapes), or a note that it was some other JSON value, read in the same
/// pass as the rest of the frame.
enum Str<'a> {
    Is(Cow<'a, str>),
    Not,
}

impl<'de: 'a, 'a> Deserialize<'de> for Str<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::{IgnoredAny, MapAccess, SeqAccess, Visitor};
        struct StrVisitor;
        impl<'de> Visitor<'de> for StrVisitor {
            type Value = Str<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Str::Is(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Str::Is(Cow::Owned(v.to_string())))
            }
            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(Str::Is(Cow::Owned(v)))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
                Ok(Str::Not)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
                Ok(Str::Not)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
                Ok(Str::Not)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
                Ok(Str::Not)
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(Str::Not)
            }
            fn visit_none<E>(self) -> Result<Self::Value, E> {
                Ok(Str::Not)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Str::Not)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Str::Not)
            }
        }
        d.deserialize_any(StrVisitor)
    }
}

fn text<'a>(v: Str<'a>, name: &str) -> Result<Cow<'a, str>, Failure> {
    match v {
        Str::Is(s) => Ok(s),
        Str::Not => Err(Failure::bad_request(format!("{name} must be a string"))),
    }
}

/// Parses and validates one text frame.
pub fn parse(text_frame: &str) -> Result<ClientFrame<'_>, Rejected> {
    let reject = |failure, id: Option<&Cow<'_, str>>, room: Option<&str>| Rejected {
        failure,
        id: id.map(|i| i.to_string()),
        room: room.map(str::to_string),
    };
    if text_frame.len() > MAX_MOVE_FRAME_BYTES {
        return Err(reject(too_large(MAX_MOVE_FRAME_BYTES), None, None));
    }
    let mut raw: Raw<'_> = serde_json::from_str(text_frame).map_err(|e| {
        reject(
            Failure::bad_request(format!("frame is not a JSON object: {e}")),
            None,
            None,
        )
    })?;
    let id = match raw.id.take() {
        None => None,
        Some(v) => match text(v, "id") {
            Ok(s) if s.len() <= MAX_ID_BYTES => Some(s),
            _ => {
                let f = Failure::bad_request(format!(
                    "id must be a string of at most {MAX_ID_BYTES} bytes"
                ));
                return Err(reject(f, None, None));
            }
        },
    };
    let t = match raw.t.take() {
        Some(t) => text(t, "t").map_err(|f| reject(f, id.as_ref(), None))?,
        None => {
            return Err(reject(
                Failure::bad_request("missing field t"),
                id.as_ref(),
                None,
            ))
        }
    };
    let limit = if t == "board.move" {
        MAX_MOVE_FRAME_BYTES
    } else {
        MAX_FRAME_BYTES
    };
    if text_frame.len() > limit {
        return Err(reject(too_large(limit), id.as_ref(), None));
    }
    if t == "ping" {
        return Ok(ClientFrame {
            id,
            cmd: Command::Ping,
        });
    }
    if !is_room_frame(&t) {
        return Err(reject(
            Failure::bad_request(format!("unknown frame type {t:?}")),
            id.as_ref(),
            None,
        ));
    }
    let room = match raw.room.take() {
        Some(r) => text(r, "room").map_err(|f| reject(f, id.as_ref(), None))?,
        None => {
            return Err(reject(
                Failure::bad_request("missing field room"),
                id.as_ref(),
                None,
            ))
        }
    };
    let kind = RoomId::kind_of(&room)
        .map_err(|e| reject(Failure::bad_request(e.to_string()), id.as_ref(), None))?;
    let op =
        room_op(&t, &raw, kind, id.is_some()).map_err(|f| reject(f, id.as_ref(), Some(&room)))?;
    Ok(ClientFrame {
        id,
        cmd: Command::Room { room, op },
    })
}

fn too_large(limit: usize) -> Failure {
    Failure::new(
        ErrorCode::TooLarge,
        format!("frame is larger than {limit} bytes"),
    )
}

fn is_room_frame(t: &str) -> bool {
    matches!(
        t,
        "join"
            | "leave"
            | "send"
            | "typing"
            | "read"
            | "board.put"
            | "board.move"
            | "board.delete"
            | "board.role"
            | "board.cursor"
            | "presence.list"
            | "history"
    )
}

fn room_op<'a>(
    t: &str,
    raw: &Raw<'a>,
    kind: RoomKind,
    has_id: bool,
) -> Result<RoomOp<&'a [u8]>, Failure> {
    if t.starts_with("board.") && kind != RoomKind::Board {
        return Err(Failure::bad_request(format!("{t} needs a board: room")));
    }
    Ok(match t {
        "join" => RoomOp::Join {
            since: optional(raw.since, "since")?,
            epoch: optional(raw.epoch, "epoch")?,
        },
        "leave" => RoomOp::Leave,
        "typing" => RoomOp::Typing,
        "read" => RoomOp::Read {
            seq: required(raw.seq, "seq")?,
        },
        "send" => {
            if !has_id {
                return Err(Failure::bad_request("send needs an id"));
            }
            let body = raw
                .body
                .ok_or_else(|| Failure::bad_request("send needs a body"))?;
            if body.get().len() > MAX_BODY_BYTES {
                let msg = format!("body is larger than {MAX_BODY_BYTES} bytes");
                return Err(Failure::new(ErrorCode::TooLarge, msg));
            }
            RoomOp::Send {
                body: body.get().as_bytes(),
            }
        }
        "board.put" => {
            let widget: Widget = required(raw.widget, "widget")?;
            check_widget(&widget)?;
            RoomOp::BoardPut {
                widget,
                base: optional(raw.base, "base")?,
            }
        }
        "board.move" => match (raw.moves, raw.ids) {
            (Some(_), None) => RoomOp::BoardMove {
                moves: moves(raw.moves)?,
            },
            (None, Some(_)) => {
                let ids: Vec<String> = required(raw.ids, "ids")?;
                if ids.len() > MAX_MOVES {
                    return Err(Failure::new(
                        ErrorCode::TooLarge,
                        format!("at most {MAX_MOVES} ids per frame"),
                    ));
                }
                RoomOp::BoardShift {
                    ids,
                    dx: finite(raw.dx, "dx")?,
                    dy: finite(raw.dy, "dy")?,
                }
            }
            _ => {
                return Err(Failure::bad_request(
                    "board.move needs either moves, or ids with dx and dy",
                ))
            }
        },
        "board.delete" => {
            let ids: Vec<String> = required(raw.ids, "ids")?;
            RoomOp::BoardDelete { ids }
        }
        "board.role" => {
            let user: String = required(raw.user, "user")?;
            if user != "*" {
                crate::ids::UserId::parse(&user)
                    .map_err(|e| Failure::bad_request(format!("user: {e}")))?;
            }
            let role: BoardRole = required(raw.role, "role")
                .map_err(|_| Failure::bad_request("role must be owner, editor or viewer"))?;
            RoomOp::BoardRole { user, role }
        }
        "board.cursor" => RoomOp::BoardCursor {
            x: finite(raw.x, "x")?,
            y: finite(raw.y, "y")?,
        },
        "presence.list" => {
            let after: Option<String> = optional(raw.after, "after")?;
            if let Some(after) = &after {
                crate::ids::UserId::parse(after)
                    .map_err(|e| Failure::bad_request(format!("after: {e}")))?;
            }
            let limit = page_limit(optional(raw.limit, "limit")?, DEFAULT_PAGE, MAX_PAGE)?;
            RoomOp::PresenceList { after, limit }
        }
        "history" => RoomOp::History {
            before: match optional::<u64>(raw.before, "before") {
                Ok(Some(0)) | Err(_) => {
                    return Err(Failure::bad_request("before must be a positive integer"))
                }
                Ok(before) => before,
            },
            limit: page_limit(
                optional(raw.limit, "limit")?,
                DEFAULT_HISTORY_PAGE,
                MAX_HISTORY_PAGE,
            )?,
        },
        other => {
            return Err(Failure::bad_request(format!(
                "unknown frame type {other:?}"
            )))
        }
    })
}

/// A page's `limit`: `default` when absent, else within 1 and `max`.
fn page_limit(limit: Option<u64>, default: u16, max: u16) -> Result<u16, Failure> {
    match limit {
        None => Ok(default),
        Some(n) if (1..=u64::from(max)).contains(&n) => Ok(n as u16),
        Some(n) => Err(Failure::bad_request(format!(
            "limit {n} is not between 1 and {max}"
        ))),
    }
}

fn required<'de, T: Deserialize<'de>>(v: Option<&'de RawValue>, name: &str) -> Result<T, Failure> {
    let v = v.ok_or_else(|| Failure::bad_request(format!("missing field {name}")))?;
    serde_json::from_str(v.get()).map_err(|e| Failure::bad_request(format!("invalid {name}: {e}")))
}

fn optional<'de, T: Deserialize<'de>>(
    v: Option<&'de RawValue>,
    name: &str,
) -> Result<Option<T>, Failure> {
    match v {
        Some(v) if v.get() != "null" => required(Some(v), name).map(Some),
        _ => Ok(None),
    }
}

/// Whether a coordinate or size is one the contract allows.
pub fn in_bounds(n: f64) -> bool {
    n.is_finite() && n.abs() <= MAX_COORD
}

/// An offset: finite, and at most the whole span of coordinates.
fn finite(v: Option<&RawValue>, name: &str) -> Result<f64, Failure> {
    let n: f64 = required(v, name)?;
    if n.is_finite() && n.abs() <= 2.0 * MAX_COORD {
        Ok(n)
    } else {
        Err(Failure::bad_request(format!(
            "{name} must be a finite number within ±{}",
            2.0 * MAX_COORD
        )))
    }
}

fn check_widget(w: &Widget) -> Result<(), Failure> {
    if w.id.is_empty() || w.id.len() > 128 {
        return Err(Failure::bad_request("widget.id must be 1-128 bytes"));
    }
    if w.kind.is_empty() || w.kind.len() > MAX_TAG_BYTES {
        return Err(Failure::bad_request(format!(
            "widget.kind must be 1-{MAX_TAG_BYTES} bytes"
        )));
    }
    if w.color.as_ref().is_some_and(|c| c.len() > MAX_TAG_BYTES) {
        return Err(Failure::bad_request(format!(
            "widget.color must be at most {MAX_TAG_BYTES} bytes"
        )));
    }
    if w.text.as_ref().is_some_and(|t| t.len() > MAX_TEXT_BYTES) {
        return Err(Failure::bad_request(format!(
            "widget.text must be at most {MAX_TEXT_BYTES} bytes"
        )));
    }
    let dims = [Some(w.x), Some(w.y), w.w, w.h];
    if dims.iter().flatten().any(|n| !in_bounds(*n)) {
        return Err(Failure::bad_request(format!(
            "widget coordinates and sizes must be finite numbers within ±{MAX_COORD}"
        )));
    }
    Ok(())
}

fn moves(v: Option<&RawValue>) -> Result<Vec<WidgetMove>, Failure> {
    let moves: Vec<WidgetMove> = required(v, "moves")?;
    if moves.len() > MAX_MOVES {
        return Err(Failure::new(
            ErrorCode::TooLarge,
            format!("at most {MAX_MOVES} moves per frame"),
        ));
    }
    if moves.iter().any(|m| !in_bounds(m.x) || !in_bounds(m.y)) {
        return Err(Failure::bad_request(format!(
            "moves must have finite coordinates within ±{MAX_COORD}"
        )));
    }
    Ok(moves)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Any JSON value, a few levels deep.
    fn json() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            any::<f64>().prop_map(|f| serde_json::json!(f)),
            ".{0,12}".prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
                proptest::collection::btree_map(
                    prop_oneof![
                        Just("t".to_string()),
                        Just("room".to_string()),
                        Just("id".to_string()),
                        Just("body".to_string()),
                        Just("since".to_string()),
                        Just("widget".to_string()),
                        Just("moves".to_string()),
                        Just("ids".to_string()),
                        ".{0,6}"
                    ],
                    inner,
                    0..5
                )
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// A frame with a real type and room, and random other fields.
    fn framed() -> impl Strategy<Value = serde_json::Value> {
        let t = prop_oneof![
            Just("join"),
            Just("leave"),
            Just("send"),
            Just("typing"),
            Just("read"),
            Just("board.put"),
            Just("board.move"),
            Just("board.delete"),
            Just("board.role"),
            Just("board.cursor"),
            Just("ping"),
            Just("nope")
        ];
        let room = prop_oneof![Just("chat:a"), Just("board:b"), Just("bad room"), Just("")];
        (
            t,
            room,
            proptest::collection::btree_map(
                prop_oneof![
                    Just("id"),
                    Just("body"),
                    Just("since"),
                    Just("epoch"),
                    Just("seq"),
                    Just("widget"),
                    Just("base"),
                    Just("moves"),
                    Just("ids"),
                    Just("dx"),
                    Just("dy"),
                    Just("x"),
                    Just("y"),
                    Just("user"),
                    Just("role")
                ],
                json(),
                0..6,
            ),
        )
            .prop_map(|(t, room, rest)| {
                let mut frame = serde_json::json!({"t": t, "room": room});
                for (k, v) in rest {
                    frame[k] = v;
                }
                frame
            })
    }

    fn check(text: &str) {
        match parse(text) {
            Ok(frame) => {
                if let Some(id) = frame.id.as_deref() {
                    assert!(id.len() <= MAX_ID_BYTES);
                }
            }
            Err(rejected) => assert!(!rejected.failure.message.is_empty()),
        }
    }

    proptest! {
        #[test]
        fn random_text_is_parsed_or_refused_without_panicking(text in ".{0,300}") {
            check(&text);
        }

        #[test]
        fn random_json_shapes_are_parsed_or_refused_without_panicking(value in json()) {
            check(&value.to_string());
        }

        #[test]
        fn frames_with_random_fields_are_parsed_or_refused_without_panicking(frame in framed()) {
            check(&frame.to_string());
        }
    }
}
