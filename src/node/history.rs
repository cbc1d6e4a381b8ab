//! `history` pages that reach past what a room keeps in memory: the rest
//! comes from the node's archive, joined into one ascending page. Pages that
//! memory holds whole are answered at once, as the room would.

use std::sync::Arc;

use bytes::Bytes;

use crate::archive::archiver::Archiver;
use crate::ids::Rid;
use crate::rooms::state::history_frame;
use crate::rooms::{Reply, Room, Sink};

/// One `history` request.
pub(super) struct Request<'a> {
    pub(super) rid: Rid,
    pub(super) room: &'a str,
    pub(super) id: Option<&'a str>,
    pub(super) before: Option<u64>,
    pub(super) limit: u16,
}

/// Answers `request` from `live`'s memory and, past it, the archive;
/// `false` when the room serves nothing from memory now (it loads or
/// moves): the room then answers as usual.
pub(super) fn answer(
    archiver: Arc<Archiver>,
    live: &Arc<Room>,
    sink: &Arc<dyn Sink>,
    request: Request<'_>,
) -> bool {
    let limit = usize::from(request.limit);
    let Some(memory) = live.memory_page(request.before, limit) else {
        return false;
    };
    let reply = {
        let (sink, rid) = (sink.clone(), request.rid);
        let (room, id) = (request.room.to_string(), request.id.map(str::to_string));
        move |epoch: &str, events: &[(u64, Bytes)], more: bool| {
            let frames: Vec<&[u8]> = events.iter().map(|(_, f)| &f[..]).collect();
            let frame = history_frame(id.as_deref(), &room, epoch, &frames, more);
            sink.reply(rid, Reply::ok(&frame));
        }
    };
    // Everything older than what memory keeps is in the archive (the room
    // started at seq 1).
    let archived_below = memory.oldest_kept > 1;
    if memory.events.len() >= limit || !archived_below {
        let more = memory.more_kept || archived_below;
        reply(&memory.epoch, &memory.events, more);
        return true;
    }
    let below = memory.events.first().map_or_else(
        || request.before.unwrap_or(u64::MAX).min(memory.oldest_kept),
        |(seq, _)| *seq,
    );
    let room = request.room.to_string();
    tokio::spawn(async move {
        let need = limit - memory.events.len();
        match archiver.page(&room, &memory.epoch, below, need).await {
            Ok(page) => {
                let mut events = page.events;
                events.extend(memory.events);
                reply(&memory.epoch, &events, page.more);
            }
            Err(e) => {
                tracing::warn!(room.id = %room, error = %e, "history past memory: the archive did not answer");
                reply(&memory.epoch, &memory.events, true);
            }
        }
    });
    true
}
