//! Pages of a room's stored events (`history`, and `GET …/messages?before=`)
//! that reach past what the room keeps in memory. The rest comes from the
//! room's Redis log for the events the archive does not hold yet (the log
//! keeps them until it does), then from the archive, joined into one
//! ascending page. Pages that memory holds whole are answered at once.

use std::sync::Arc;

use bytes::Bytes;

use super::routes::Routes;
use super::Node;
use crate::archive::archiver::Archiver;
use crate::ids::{Rid, RoomId};
use crate::link::ToNode;
use crate::protocol::client::RoomOp;
use crate::protocol::{ErrorCode, Failure, Status};
use crate::rooms::state::{history_frame, page_json, MemoryPage};
use crate::rooms::store::RoomStore;
use crate::rooms::{Reply, Room, Sink};

/// How a page is answered.
pub(super) enum Shape<'a> {
    /// A `history` frame, with the request's id.
    Frame(Option<&'a str>),
    /// The HTTP API's `{"messages":[..],"more":bool}`.
    Json,
}

/// One page request.
pub(super) struct Request<'a> {
    pub(super) rid: Rid,
    pub(super) shape: Shape<'a>,
    pub(super) before: Option<u64>,
    pub(super) limit: usize,
}

/// Where a page's older part comes from.
pub(super) struct Tiers {
    pub(super) store: Arc<dyn RoomStore>,
    pub(super) archiver: Arc<Archiver>,
}

/// Answers `request` from `live`'s memory and, past it, Redis and the
/// archive; `false` when the room serves nothing from memory now (it loads
/// or moves): the room then answers as usual.
pub(super) fn answer(
    tiers: Tiers,
    live: &Arc<Room>,
    sink: &Arc<dyn Sink>,
    request: Request<'_>,
) -> bool {
    let limit = request.limit;
    let Some(memory) = live.memory_page(request.before, limit) else {
        return false;
    };
    let (room, before) = (live.id().clone(), request.before);
    let reply = replier(sink.clone(), &room, &request, memory.epoch.clone());
    // Everything older than what memory keeps is in Redis or the archive
    // (the room started at seq 1).
    let stored_below = memory.oldest_kept > 1;
    if memory.events.len() >= limit || !stored_below {
        reply(Ok((memory.events, memory.more_kept || stored_below)));
        return true;
    }
    tokio::spawn(async move {
        let need = limit - memory.events.len();
        let older = older(&tiers, &room, (&memory, before), need).await;
        let page = match older {
            Ok((mut events, more)) => {
                events.extend(memory.events);
                Ok((events, more))
            }
            Err(e) if memory.events.is_empty() => Err(e),
            // What memory holds, and the rest when asked again.
            Err(_) => Ok((memory.events, true)),
        };
        reply(page);
    });
    true
}

type Page = (Vec<(u64, Bytes)>, bool);

/// Sends a page (or why there is none) in the request's shape.
fn replier(
    sink: Arc<dyn Sink>,
    room: &RoomId,
    request: &Request<'_>,
    epoch: String,
) -> impl FnOnce(Result<Page, String>) + Send + 'static {
    let (rid, room) = (request.rid, room.to_string());
    let id = match request.shape {
        Shape::Frame(id) => Some(id.map(str::to_string)),
        Shape::Json => None,
    };
    move |page| {
        let (events, more) = match page {
            Ok(page) => page,
            Err(why) => {
                let failure = Failure::new(ErrorCode::Unavailable, why);
                return sink.reply(rid, Reply::failed(&Status::Failed(failure)));
            }
        };
        let frames: Vec<&[u8]> = events.iter().map(|(_, f)| &f[..]).collect();
        let body = match id {
            Some(id) => history_frame(id.as_deref(), &room, &epoch, &frames, more),
            None => page_json(&frames, more),
        };
        sink.reply(rid, Reply::ok(&body));
    }
}

/// Up to `need` events below what memory holds, ascending, and whether
/// older ones are stored: first from Redis what the archive does not hold
/// yet, then from the archive.
async fn older(
    tiers: &Tiers,
    room: &RoomId,
    (memory, before): (&MemoryPage, Option<u64>),
    need: usize,
) -> Result<Page, String> {
    let mut below = match memory.events.first() {
        Some((seq, _)) => *seq,
        None => before.unwrap_or(u64::MAX).min(memory.oldest_kept),
    };
    let mut events = Vec::new();
    if let Some(unarchived) = tiers.archiver.pending().lowest(room.as_str()) {
        if below > unarchived {
            events = tiers
                .store
                .stored_below(room, below, unarchived, need, memory.top)
                .await
                .map_err(|e| e.to_string())?;
            below = events.first().map_or(below, |(seq, _)| *seq);
        }
    }
    let need = need - events.len();
    if need == 0 || below <= 1 {
        return Ok((events, below > 1));
    }
    let archived = tiers
        .archiver
        .page(room.as_str(), &memory.epoch, below, need)
        .await;
    match archived {
        Ok(mut page) => {
            page.events.extend(events);
            Ok((page.events, page.more))
        }
        Err(_) if !events.is_empty() => Ok((events, true)),
        Err(e) => {
            tracing::warn!(room.id = %room, error = %e, "history past memory: the archive did not answer");
            Err("the archive is unavailable; try again".into())
        }
    }
}

/// The page of stored events `request` asks for, if it asks for one.
pub(super) fn page_of<'a>(request: &ToNode<'a>) -> Option<(&'a str, Request<'a>)> {
    let (rid, room, shape, before, limit) = match *request {
        ToNode::Op {
            rid,
            room,
            id,
            op: RoomOp::History { before, limit },
            ..
        } => (rid, room, Shape::Frame(id), before, usize::from(limit)),
        ToNode::Query {
            rid,
            room,
            query: crate::protocol::Query::Page { before, limit },
        } => (rid, room, Shape::Json, before, limit),
        _ => return None,
    };
    let request = Request {
        rid,
        shape,
        before,
        limit,
    };
    Some((room, request))
}

/// Serves a page of stored events when the node keeps an archive (past
/// what the room keeps, the rest comes from Redis and the archive);
/// `false` when the room answers it itself.
pub(super) fn paged(
    node: &Node,
    routes: &mut Routes,
    sink: &Arc<dyn Sink>,
    room: &str,
    request: Request<'_>,
) -> bool {
    let Some(store) = node.store.clone() else {
        return false;
    };
    let Some(archiver) = store.archiver() else {
        return false;
    };
    let Some(live) = routes.get(node, room) else {
        return false;
    };
    answer(Tiers { store, archiver }, &live, sink, request)
}
