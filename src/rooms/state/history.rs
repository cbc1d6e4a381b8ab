//! Paging back through a room's stored events (`history`): a page of the
//! `msg` and `board.changed` frames just below a seq, ascending, from what
//! the room keeps.

use super::*;

impl RoomState {
    /// The kept stored events below `before` (default: all), the latest
    /// `limit` of them, ascending, and whether older ones are kept.
    fn page(&self, before: Option<u64>, limit: usize) -> (Vec<&[u8]>, bool) {
        let (page, more) = self.kept_page(before, limit);
        (page.into_iter().map(|e| &e.frame[..]).collect(), more)
    }

    fn kept_page(&self, before: Option<u64>, limit: usize) -> (Vec<&Kept>, bool) {
        let before = before.unwrap_or(u64::MAX);
        let mut below = self.log.iter().rev().skip_while(|e| e.seq >= before);
        let mut page: Vec<&Kept> = below.by_ref().take(limit).collect();
        page.reverse();
        (page, below.next().is_some())
    }

    /// What memory holds of a `history` page, for a node that pages the
    /// rest from its archive.
    pub fn memory_page(&self, before: Option<u64>, limit: usize) -> MemoryPage {
        let (page, more) = self.kept_page(before, limit);
        MemoryPage {
            epoch: self.epoch.to_string(),
            events: page.iter().map(|e| (e.seq, e.frame.clone())).collect(),
            more_kept: more,
            oldest_kept: self.log.front().map_or(self.seq + 1, |e| e.seq),
            top: self.seq,
        }
    }

    /// The `history` frame: a page of stored events below `before`.
    pub(super) fn history_page(
        &self,
        id: Option<&str>,
        before: Option<u64>,
        limit: usize,
    ) -> Outcome {
        let (events, more) = self.page(before, limit);
        Outcome {
            reply: Some(self.history_frame(id, &events, more).into()),
            ..Outcome::default()
        }
    }

    /// `{"messages":[..],"more":bool}`: a page for the HTTP API.
    pub fn page_json(&self, before: Option<u64>, limit: usize) -> Vec<u8> {
        let (events, more) = self.page(before, limit);
        page_json(&events, more)
    }

    fn history_frame(&self, id: Option<&str>, events: &[&[u8]], more: bool) -> Vec<u8> {
        history_frame(id, self.room.as_str(), &self.epoch, events, more)
    }
}

/// What a room's memory holds of a `history` page.
#[derive(Debug)]
pub struct MemoryPage {
    /// The room's history.
    pub epoch: String,
    /// (seq, frame) kept below the page's bound, ascending.
    pub events: Vec<(u64, Bytes)>,
    /// Whether older events are kept in memory.
    pub more_kept: bool,
    /// The oldest kept seq (the room's seq + 1 when none is kept).
    pub oldest_kept: u64,
    /// The room's seq.
    pub top: u64,
}

/// `{"messages":[..],"more":bool}`: a page for the HTTP API.
pub fn page_json(events: &[&[u8]], more: bool) -> Vec<u8> {
    let mut out = b"{\"messages\":[".to_vec();
    splice(&mut out, events);
    out.extend_from_slice(format!("],\"more\":{more}}}").as_bytes());
    out
}

/// The `history` frame.
pub fn history_frame(
    id: Option<&str>,
    room: &str,
    epoch: &str,
    events: &[&[u8]],
    more: bool,
) -> Vec<u8> {
    let quoted = |s: &str| serde_json::to_string(s).unwrap_or_default();
    let mut out = b"{\"t\":\"history\",".to_vec();
    if let Some(id) = id {
        out.extend_from_slice(format!("\"id\":{},", quoted(id)).as_bytes());
    }
    out.extend_from_slice(
        format!(
            "\"room\":{},\"epoch\":{},\"messages\":[",
            quoted(room),
            quoted(epoch)
        )
        .as_bytes(),
    );
    splice(&mut out, events);
    out.extend_from_slice(format!("],\"more\":{more}}}").as_bytes());
    out
}

/// Appends frames, comma-separated.
pub(super) fn splice(out: &mut Vec<u8>, frames: &[&[u8]]) {
    for (i, frame) in frames.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(frame);
    }
}
