//! A gateway link as rooms see it: `LinkSink` turns what rooms emit into
//! link records. Long answers (a `joined` with a long history or a large
//! board, a resume's missed events) go out as parts of at most a chunk each,
//! all under one lock, so that no record is huge and nothing comes between
//! the parts of one answer.

use serde_bytes::Bytes as Raw;

use crate::ids::{ConnId, Rid, RoomId};
use crate::link::calls;
use crate::link::codec;
use crate::link::{FromNode, LinkWriter};
use crate::rooms::state::{Event, LinkId};
use crate::rooms::{Reply, Sink};

/// One link's outbound side on this node.
pub(super) struct LinkSink {
    id: LinkId,
    writer: LinkWriter,
    /// The link version the peer speaks.
    version: u16,
}

impl LinkSink {
    pub(super) fn new(id: LinkId, writer: LinkWriter, version: u16) -> Self {
        Self {
            id,
            writer,
            version,
        }
    }

    /// Closes the link: its peer sees it drop (and a gateway resumes its
    /// rooms when it links again).
    pub(super) fn close(&self) {
        self.writer.close();
    }

    /// A link whose peer does not read fast enough is closed rather than
    /// left to grow: its gateway reconnects and resumes its rooms.
    fn check_overload(&self) {
        if self.writer.is_overloaded() && !self.writer.is_closed() {
            tracing::warn!(link.id = self.id, "link too slow; closing it");
            self.writer.close();
        }
    }

    /// Sends an announcement frame, for every connection of the gateway.
    pub(super) fn broadcast(&self, frame: &[u8]) {
        let _ = self.writer.send(&FromNode::Broadcast {
            payload: Raw::new(frame),
        });
        self.check_overload();
    }

    /// Sends a notification frame.
    pub(super) fn notify(&self, user: &str, frame: &[u8]) {
        let _ = self.writer.send(&FromNode::Notify {
            user,
            payload: Raw::new(frame),
        });
        self.check_overload();
    }
}

impl Sink for LinkSink {
    fn link(&self) -> LinkId {
        self.id
    }

    fn rewound(&self, room: &RoomId) {
        // Older gateways cannot read it; theirs learn at their next resume.
        if self.version >= 4 {
            let _ = self.writer.send(&FromNode::Rewound {
                room: room.as_str(),
            });
        }
    }

    fn event(&self, room: &RoomId, event: &Event, skip: Option<ConnId>) {
        let record = FromNode::Event {
            room: room.as_str(),
            seq: event.seq,
            skip,
            payload: Raw::new(&event.frame),
        };
        let _ = self.writer.send(&record);
        self.check_overload();
    }

    fn reply(&self, rid: Rid, reply: Reply<'_>) {
        let _ = self.writer.send_with(|buf| {
            for (seq, frame) in reply.missed {
                let part = FromNode::Part {
                    rid,
                    seq: Some(*seq),
                    payload: Raw::new(frame),
                };
                codec::encode_into(buf, &part)?;
            }
            let (parts, rest) = calls::cut(reply.frame.unwrap_or_default());
            for head in parts {
                let part = FromNode::Part {
                    rid,
                    seq: None,
                    payload: Raw::new(head),
                };
                codec::encode_into(buf, &part)?;
            }
            let last = FromNode::Reply {
                rid,
                status: reply.status.clone(),
                seq: reply.seq,
                payload: Raw::new(rest),
            };
            codec::encode_into(buf, &last)
        });
        self.check_overload();
    }
}
