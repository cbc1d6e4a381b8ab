//! Reading a client frame: one pass into borrowed raw fields, then the
//! checks of each operation's fields and bounds.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::widgets::{check_widget, finite, moves, required};
use super::*;

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
    let id = frame_id(raw.id.take()).map_err(|f| reject(f, None, None))?;
    let t = field(raw.t.take(), "t").map_err(|f| reject(f, id.as_ref(), None))?;
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
    let room = field(raw.room.take(), "room").map_err(|f| reject(f, id.as_ref(), None))?;
    let kind = RoomId::kind_of(&room)
        .map_err(|e| reject(Failure::bad_request(e.to_string()), id.as_ref(), None))?;
    let op =
        room_op(&t, &raw, kind, id.is_some()).map_err(|f| reject(f, id.as_ref(), Some(&room)))?;
    Ok(ClientFrame {
        id,
        cmd: Command::Room { room, op },
    })
}

/// A frame's `id`, when it has one: a string of at most `MAX_ID_BYTES`.
fn frame_id(id: Option<Str<'_>>) -> Result<Option<Cow<'_, str>>, Failure> {
    match id.map(|v| text(v, "id")) {
        None => Ok(None),
        Some(Ok(s)) if s.len() <= MAX_ID_BYTES => Ok(Some(s)),
        Some(_) => Err(Failure::bad_request(format!(
            "id must be a string of at most {MAX_ID_BYTES} bytes"
        ))),
    }
}

/// A string field the frame must have.
fn field<'a>(v: Option<Str<'a>>, name: &str) -> Result<Cow<'a, str>, Failure> {
    match v {
        Some(v) => text(v, name),
        None => Err(Failure::bad_request(format!("missing field {name}"))),
    }
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
        "send" => send(raw, has_id)?,
        "presence.list" => presence_list(raw)?,
        "history" => history(raw)?,
        // The rest are a board's (or unknown, answered there).
        _ => board_op(t, raw)?,
    })
}

fn send<'a>(raw: &Raw<'a>, has_id: bool) -> Result<RoomOp<&'a [u8]>, Failure> {
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
    Ok(RoomOp::Send {
        body: body.get().as_bytes(),
    })
}

fn presence_list<'a>(raw: &Raw<'a>) -> Result<RoomOp<&'a [u8]>, Failure> {
    let after: Option<String> = optional(raw.after, "after")?;
    if let Some(after) = &after {
        crate::ids::UserId::parse(after)
            .map_err(|e| Failure::bad_request(format!("after: {e}")))?;
    }
    let limit = page_limit(optional(raw.limit, "limit")?, DEFAULT_PAGE, MAX_PAGE)?;
    Ok(RoomOp::PresenceList { after, limit })
}

fn history<'a>(raw: &Raw<'a>) -> Result<RoomOp<&'a [u8]>, Failure> {
    let before = match optional::<u64>(raw.before, "before") {
        Ok(Some(0)) | Err(_) => {
            return Err(Failure::bad_request("before must be a positive integer"))
        }
        Ok(before) => before,
    };
    let limit = optional(raw.limit, "limit")?;
    let limit = page_limit(limit, DEFAULT_HISTORY_PAGE, MAX_HISTORY_PAGE)?;
    Ok(RoomOp::History { before, limit })
}

/// A board's operations (the room is a board's).
fn board_op<'a>(t: &str, raw: &Raw<'a>) -> Result<RoomOp<&'a [u8]>, Failure> {
    Ok(match t {
        "board.put" => {
            let widget: Widget = required(raw.widget, "widget")?;
            check_widget(&widget)?;
            RoomOp::BoardPut {
                widget,
                base: optional(raw.base, "base")?,
            }
        }
        "board.move" => board_move(raw)?,
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
        other => {
            return Err(Failure::bad_request(format!(
                "unknown frame type {other:?}"
            )))
        }
    })
}

/// `board.move`: widgets to given places, or some shifted by one offset.
fn board_move<'a>(raw: &Raw<'a>) -> Result<RoomOp<&'a [u8]>, Failure> {
    Ok(match (raw.moves, raw.ids) {
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

fn optional<'de, T: Deserialize<'de>>(
    v: Option<&'de RawValue>,
    name: &str,
) -> Result<Option<T>, Failure> {
    match v {
        Some(v) if v.get() != "null" => required(Some(v), name).map(Some),
        _ => Ok(None),
    }
}
