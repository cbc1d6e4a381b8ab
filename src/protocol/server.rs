//! Server frames: every frame a client receives, serialized once by whoever
//! produces it (the room's owner for room events, the gateway for its own
//! replies) and then passed on as bytes.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::value::RawValue;

use super::client::Widget;
use super::{ErrorCode, Failure};

/// A widget with its server-assigned version.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct VersionedWidget {
    /// The widget as last written.
    #[serde(flatten)]
    pub widget: Widget,
    /// Its version, 1 on creation, +1 on every change.
    pub v: u64,
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
        widgets: Vec<&'a VersionedWidget>,
        deleted: Vec<&'a str>,
    },
    /// Someone's cursor on a board.
    #[serde(rename = "board.cursor")]
    BoardCursor {
        room: &'a str,
        user: &'a str,
        x: f64,
        y: f64,
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
}
