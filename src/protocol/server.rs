//! Server frames: every frame a client receives, serialized once by whoever
//! produces it (the room's owner for room events, the gateway for its own
//! replies) and then passed on as bytes.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::value::RawValue;

use super::client::Widget;
use super::{ErrorCode, Failure};

/// A widget with its server-assigned version: in JSON the widget's fields
/// and `v` side by side, in binary formats (the link) a pair.
#[derive(Debug, Clone, PartialEq)]
pub struct VersionedWidget {
    /// The widget as last written.
    pub widget: Widget,
    /// Its version, 1 on creation, +1 on every change.
    pub v: u64,
}

/// One widget in a `board.changed`: whole, or after a move only where it
/// went (`id`, `x`, `y`, `v`), so that a move of thousands stays small.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum WidgetEntry<'a> {
    /// The widget as written.
    Full(&'a VersionedWidget),
    /// Its new position and version.
    Moved {
        /// Widget id.
        id: &'a str,
        /// X position.
        x: f64,
        /// Y position.
        y: f64,
        /// Version.
        v: u64,
    },
}

#[derive(Serialize)]
struct FlatRef<'a> {
    #[serde(flatten)]
    widget: &'a Widget,
    v: u64,
}

#[derive(serde::Deserialize)]
struct Flat {
    #[serde(flatten)]
    widget: Widget,
    v: u64,
}

impl Serialize for VersionedWidget {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            FlatRef {
                widget: &self.widget,
                v: self.v,
            }
            .serialize(s)
        } else {
            (&self.widget, self.v).serialize(s)
        }
    }
}

impl<'de> serde::Deserialize<'de> for VersionedWidget {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            let Flat { widget, v } = Flat::deserialize(d)?;
            Ok(Self { widget, v })
        } else {
            let (widget, v) = <(Widget, u64)>::deserialize(d)?;
            Ok(Self { widget, v })
        }
    }
}

/// One user's cursor in a `board.cursors` batch.
#[derive(Debug, Serialize)]
pub struct Cursor<'a> {
    /// Whose.
    pub user: &'a str,
    /// X position.
    pub x: f64,
    /// Y position.
    pub y: f64,
}

/// A frame from server to client; `t` is the tag.
#[derive(Debug, Serialize)]
#[serde(tag = "t")]
pub enum ServerFrame<'a> {
    /// Reply to `join`.
    #[serde(rename = "joined")]
    Joined {
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<&'a str>,
        room: &'a str,
        seq: u64,
        history: Vec<&'a RawValue>,
        online: Vec<&'a str>,
        online_count: usize,
        truncated: bool,
        /// Latest read receipt per user (an addition to v1).
        reads: BTreeMap<&'a str, u64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        widgets: Option<Vec<&'a VersionedWidget>>,
    },
    /// A stored chat message.
    #[serde(rename = "msg")]
    Msg {
        room: &'a str,
        seq: u64,
        from: &'a str,
        body: &'a RawValue,
        ts: u64,
    },
    /// A `send` is stored.
    #[serde(rename = "ack")]
    Ack {
        id: &'a str,
        room: &'a str,
        seq: u64,
    },
    /// A user's first connection joined or last one left.
    #[serde(rename = "presence")]
    Presence {
        room: &'a str,
        user: &'a str,
        online: bool,
    },
    /// Someone is typing.
    #[serde(rename = "typing")]
    Typing { room: &'a str, user: &'a str },
    /// A read receipt.
    #[serde(rename = "read")]
    Read {
        room: &'a str,
        user: &'a str,
        seq: u64,
    },
    /// The result of a board operation.
    #[serde(rename = "board.changed")]
    BoardChanged {
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<&'a str>,
        room: &'a str,
        seq: u64,
        by: &'a str,
        widgets: Vec<WidgetEntry<'a>>,
        deleted: Vec<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        roles: Option<&'a std::collections::BTreeMap<String, super::client::BoardRole>>,
    },
    /// The cursors that moved on a board since the last batch.
    #[serde(rename = "board.cursors")]
    BoardCursors {
        room: &'a str,
        cursors: Vec<Cursor<'a>>,
    },
    /// How many users are online, past the presence limit.
    #[serde(rename = "presence.count")]
    PresenceCount { room: &'a str, count: usize },
    /// A page of a room's online users.
    #[serde(rename = "presence.page")]
    PresencePage {
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<&'a str>,
        room: &'a str,
        users: Vec<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        next: Option<&'a str>,
    },
    /// A notification for this user.
    #[serde(rename = "notify")]
    Notify { body: &'a RawValue },
    /// Reply to `ping`.
    #[serde(rename = "pong")]
    Pong {
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<&'a str>,
    },
    /// A refused frame or failed operation.
    #[serde(rename = "error")]
    Error {
        code: ErrorCode,
        message: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        room: Option<&'a str>,
    },
}

impl ServerFrame<'_> {
    /// Serializes the frame to its JSON text.
    pub fn encode(&self) -> String {
        // Serializing these types cannot fail: every map key is a string.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Appends a room or user id, which needs no JSON escaping: ids are checked
/// to be `[A-Za-z0-9._-:]` when parsed.
fn push_id(out: &mut Vec<u8>, id: &str) {
    out.push(b'"');
    out.extend_from_slice(id.as_bytes());
    out.push(b'"');
}

/// Digits of the longest `u64`.
const U64_DIGITS: usize = 20;

fn push_u64(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// A `msg` frame, written directly (the hot path): the same bytes as
/// `ServerFrame::Msg` encodes, with `body` copied in as the client sent it.
pub fn msg_frame(room: &str, seq: u64, from: &str, body: &[u8], ts: u64) -> Vec<u8> {
    // Sized for the longest numbers: the frame is kept in the room's
    // history, so it is allocated once and never grown.
    const FIXED: usize =
        r#"{"t":"msg","room":"","seq":,"from":"","body":,"ts":}"#.len() + 2 * U64_DIGITS;
    let mut out = Vec::with_capacity(FIXED + room.len() + from.len() + body.len());
    out.extend_from_slice(br#"{"t":"msg","room":"#);
    push_id(&mut out, room);
    out.extend_from_slice(br#","seq":"#);
    push_u64(&mut out, seq);
    out.extend_from_slice(br#","from":"#);
    push_id(&mut out, from);
    out.extend_from_slice(br#","body":"#);
    out.extend_from_slice(body);
    out.extend_from_slice(br#","ts":"#);
    push_u64(&mut out, ts);
    out.push(b'}');
    out
}

/// Whether a kept frame is a chat message (as `msg_frame` wrote it).
pub fn is_msg_frame(frame: &[u8]) -> bool {
    frame.starts_with(br#"{"t":"msg","#)
}

/// Appends a JSON string: as it is when nothing in it needs escaping (the
/// common case), through serde_json otherwise.
pub fn push_json_str(out: &mut Vec<u8>, s: &str) {
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        let _ = serde_json::to_writer(&mut *out, s);
    }
}

/// An `ack` frame, written directly: the same bytes as `ServerFrame::Ack`.
pub fn ack_frame(id: &str, room: &str, seq: u64) -> Vec<u8> {
    const FIXED: usize = r#"{"t":"ack","id":"","room":"","seq":}"#.len() + U64_DIGITS;
    let mut out = Vec::with_capacity(FIXED + id.len() + room.len());
    out.extend_from_slice(br#"{"t":"ack","id":"#);
    push_json_str(&mut out, id);
    out.extend_from_slice(br#","room":"#);
    push_id(&mut out, room);
    out.extend_from_slice(br#","seq":"#);
    push_u64(&mut out, seq);
    out.push(b'}');
    out
}

/// Encodes an `error` frame for a failure.
pub fn error_frame(failure: &Failure, id: Option<&str>, room: Option<&str>) -> String {
    ServerFrame::Error {
        code: failure.code,
        message: &failure.message,
        id,
        room,
    }
    .encode()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_have_the_contract_shape() {
        let body = RawValue::from_string(r#"{"text":"hi"}"#.into()).unwrap();
        let msg = ServerFrame::Msg {
            room: "chat:a",
            seq: 3,
            from: "ann",
            body: &body,
            ts: 9,
        }
        .encode();
        assert_eq!(
            msg,
            r#"{"t":"msg","room":"chat:a","seq":3,"from":"ann","body":{"text":"hi"},"ts":9}"#
        );
        let err = error_frame(&Failure::bad_request("nope"), Some("1"), None);
        assert_eq!(
            err,
            r#"{"t":"error","code":"bad_request","message":"nope","id":"1"}"#
        );
        assert_eq!(ServerFrame::Pong { id: None }.encode(), r#"{"t":"pong"}"#);
    }

    #[test]
    fn msg_and_ack_frames_are_allocated_once_at_their_longest() {
        let msg = msg_frame("chat:a", u64::MAX, "ann", br#"{"text":"hi"}"#, u64::MAX);
        let body = RawValue::from_string(r#"{"text":"hi"}"#.into()).unwrap();
        let expected = ServerFrame::Msg {
            room: "chat:a",
            seq: u64::MAX,
            from: "ann",
            body: &body,
            ts: u64::MAX,
        }
        .encode();
        assert_eq!(msg, expected.as_bytes());
        assert_eq!(msg.capacity(), msg.len(), "grown, or sized too large");
        let ack = ack_frame("m1", "chat:a", u64::MAX);
        assert_eq!(
            ack,
            br#"{"t":"ack","id":"m1","room":"chat:a","seq":18446744073709551615}"#
        );
        assert_eq!(ack.capacity(), ack.len(), "grown, or sized too large");
    }

    #[test]
    fn widgets_skip_absent_fields_in_json_and_keep_them_on_the_link() {
        let w = VersionedWidget {
            widget: Widget {
                id: "n1".into(),
                kind: "sticky".into(),
                x: 1.0,
                y: 2.0,
                w: None,
                h: Some(3.0),
                text: None,
                color: Some("red".into()),
            },
            v: 4,
        };
        let json = serde_json::to_string(&w).unwrap();
        assert_eq!(
            json,
            r#"{"id":"n1","kind":"sticky","x":1.0,"y":2.0,"h":3.0,"color":"red","v":4}"#
        );
        assert_eq!(serde_json::from_str::<VersionedWidget>(&json).unwrap(), w);
        let bin = postcard::to_allocvec(&w).unwrap();
        assert_eq!(postcard::from_bytes::<VersionedWidget>(&bin).unwrap(), w);
    }

    #[test]
    fn direct_encoders_match_serde() {
        let body = RawValue::from_string(r#"{"text":"h\"i","n":[1,2]}"#.into()).unwrap();
        let serde = ServerFrame::Msg {
            room: "chat:a-b.c_d",
            seq: 18_446_744_073_709_551_615,
            from: "ann.b",
            body: &body,
            ts: 1_764_590_000_123,
        }
        .encode();
        let direct = msg_frame(
            "chat:a-b.c_d",
            18_446_744_073_709_551_615,
            "ann.b",
            body.get().as_bytes(),
            1_764_590_000_123,
        );
        assert_eq!(String::from_utf8(direct).unwrap(), serde);
        for id in ["m1", "with \"quotes\" and \\ and \u{1}"] {
            let serde = ServerFrame::Ack {
                id,
                room: "board:x",
                seq: 0,
            }
            .encode();
            assert_eq!(
                String::from_utf8(ack_frame(id, "board:x", 0)).unwrap(),
                serde
            );
        }
    }
}
