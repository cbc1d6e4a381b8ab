//! Read-only answers for the HTTP API: a room's messages and its summary.

use super::RoomState;
use crate::rooms::presence::NAMES_SHOWN;

impl RoomState {
    /// `{"messages":[..]}`: up to `limit` kept messages after `since`.
    pub fn messages_json(&self, since: u64, limit: usize) -> Vec<u8> {
        let msgs: Vec<&[u8]> = self
            .log
            .iter()
            .filter(|e| e.msg.is_some() && e.seq > since)
            .take(limit)
            .map(|e| &e.frame[..])
            .collect();
        let mut out = b"{\"messages\":[".to_vec();
        super::history::splice(&mut out, &msgs);
        out.extend_from_slice(b"]}");
        out
    }

    /// `{"room","owner","seq","online","online_count"}` (at most
    /// `NAMES_SHOWN` names), plus `widgets` for boards.
    pub fn info_json(&self, owner: &str) -> Vec<u8> {
        let mut info = serde_json::json!({
            "room": self.room.as_str(),
            "owner": owner,
            "seq": self.seq,
            "online": self.presence.shown(None, NAMES_SHOWN),
            "online_count": self.presence.count(),
        });
        if let Some(board) = &self.board {
            info["widgets"] = serde_json::json!(board.widgets().collect::<Vec<_>>());
        }
        info.to_string().into_bytes()
    }
}
