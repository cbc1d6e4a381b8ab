//! Where a room's outcomes go. A room hands plain values to a `Sink`, one
//! per gateway link; the node implements it and encodes the wire, so that a
//! room knows nothing of records, links or sockets.

use bytes::Bytes;

use super::state::{Event, LinkId};
use crate::ids::{ConnId, Rid, RoomId};
use crate::protocol::Status;

/// One gateway link as a room sees it.
pub trait Sink: Send + Sync {
    /// The link's id on this node.
    fn link(&self) -> LinkId;
    /// An event for every subscribed connection of the link, but `skip`.
    fn event(&self, room: &RoomId, event: &Event, skip: Option<ConnId>);
    /// The answer to request `rid`.
    fn reply(&self, rid: Rid, reply: Reply<'_>);
    /// The room's history was lost or rewound where it is: the link's
    /// readers of it must be told (they resume it).
    fn rewound(&self, _room: &RoomId) {}
}

/// An answer, as values.
#[derive(Debug)]
pub struct Reply<'a> {
    /// How it went.
    pub status: &'a Status,
    /// For a `join` or a resume: the room's seq the answer reflects.
    pub seq: Option<u64>,
    /// A client frame for the requester, if any.
    pub frame: Option<&'a [u8]>,
    /// For a resume: the kept events after its `since`, (seq, frame) each.
    pub missed: &'a [(u64, Bytes)],
}

impl Reply<'static> {
    /// "Not here": the requester asks its ring again.
    pub fn moved() -> Self {
        Reply {
            status: &Status::Moved,
            seq: None,
            frame: None,
            missed: &[],
        }
    }
}

impl<'a> Reply<'a> {
    /// An answer with a client frame for the requester.
    pub fn ok(frame: &'a [u8]) -> Self {
        Reply {
            status: &Status::Ok,
            seq: None,
            frame: Some(frame),
            missed: &[],
        }
    }

    /// A refusal.
    pub fn failed(status: &'a Status) -> Self {
        Reply {
            status,
            seq: None,
            frame: None,
            missed: &[],
        }
    }
}
