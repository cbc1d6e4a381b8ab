//! What a client connection does with each message it reads: a frame
//! parsed, checked against its token, its rate and its rooms, and sent on
//! its way to the room's owner.

use super::*;

/// What a connection does with each message, apart from decoding.
pub(super) struct Handler {
    pub(super) gw: Arc<Gateway>,
    pub(super) id: ConnId,
    pub(super) identity: Identity,
    pub(super) out: Arc<Outbox>,
    /// Rooms this connection has joined (as far as it has asked), with the
    /// route to each one's owner: a short list (at most `rooms_per_conn`,
    /// mostly one or two), smaller than a map for an idle connection.
    pub(super) joined: Vec<(RoomId, Option<Route>)>,
    pub(super) bucket: TokenBucket,
    /// Set when the client closed or broke the protocol.
    pub(super) closing: Option<Close>,
    /// A link that was overloaded by this connection's last operation: wait
    /// for it before reading more.
    pub(super) wait: Option<LinkWriter>,
}

impl Handler {
    pub(super) fn on_message(&mut self, msg: Incoming<'_>) {
        if self.closing.is_some() {
            return;
        }
        match msg {
            Incoming::Text(text) => self.on_text(text),
            Incoming::Binary => {
                if self.bucket.take() {
                    self.reply_error(
                        &Failure::bad_request("binary frames are not supported"),
                        None,
                        None,
                    );
                }
            }
            Incoming::Ping(payload) => self.out.send(websocket::pong(payload)),
            Incoming::Pong => {}
            Incoming::Close(_) => {
                self.closing = Some(Close {
                    code: close::NORMAL,
                    reason: "",
                })
            }
        }
    }

    fn on_text(&mut self, text: &str) {
        crate::telemetry::metrics().frames_in.increment(1);
        let frame = match client::parse(text) {
            Ok(frame) => frame,
            // Answered within the frame rate: a flood of bad frames gets
            // no more answers than a flood of good ones.
            Err(rejected) if self.bucket.take() => {
                let (id, room) = (rejected.id.as_deref(), rejected.room.as_deref());
                return self.reply_error(&rejected.failure, id, room);
            }
            Err(_) => return,
        };
        let id = frame.id.as_deref();
        let room = match &frame.cmd {
            Command::Room { room, .. } => Some(&**room),
            Command::Ping => None,
        };
        if !self.bucket.take() {
            let failure = Failure::new(ErrorCode::RateLimited, "too many frames; slow down");
            return self.reply_error(&failure, id, room);
        }
        let (room, op) = match frame.cmd {
            Command::Ping => {
                let pong = ServerFrame::Pong { id }.encode();
                return self.out.send(websocket::text(pong.as_bytes()));
            }
            Command::Room { room, op } => (room, op),
        };
        if !self.identity.may_use(&room) {
            let failure = Failure::new(
                ErrorCode::Forbidden,
                format!("the token does not allow {room}"),
            );
            return self.reply_error(&failure, id, Some(&room));
        }
        if let Err(failure) = self.track(&room, &op) {
            return self.reply_error(&failure, id, Some(&room));
        }
        let route = match &op {
            RoomOp::Leave => None,
            _ => self
                .joined
                .iter_mut()
                .find(|(r, _)| r.as_str() == &*room)
                .map(|(_, route)| route),
        };
        let req = OpRequest {
            room: &room,
            conn: self.id,
            out: &self.out,
            user: self.identity.user.as_str(),
            id,
            op,
            route,
        };
        if let Some(link) = self.gw.upstream.op(req) {
            crate::telemetry::metrics().link_waits.increment(1);
            self.wait = Some(link);
        }
    }

    /// Keeps the rooms the connection joined as `op` changes them; a
    /// failure when `op` may not go (a room too many, a room not joined).
    fn track<B>(&mut self, room: &str, op: &RoomOp<B>) -> Result<(), Failure> {
        let at = self.joined.iter().position(|(r, _)| r.as_str() == room);
        let joined = at.is_some();
        match op {
            RoomOp::Join { .. } if joined => {}
            RoomOp::Join { .. } => {
                let limit = self.gw.config.clients.rooms_per_conn;
                if self.joined.len() >= limit {
                    let failure = Failure::new(
                        ErrorCode::TooLarge,
                        format!("a connection may join at most {limit} rooms"),
                    );
                    return Err(failure);
                }
                if let Ok(parsed) = RoomId::parse(room) {
                    // Most connections join one room: room for exactly one
                    // first (a push would make room for four).
                    if self.joined.capacity() == 0 {
                        self.joined.reserve_exact(1);
                    }
                    self.joined.push((parsed, None));
                }
            }
            _ if !joined => {
                let failure = Failure::new(ErrorCode::NotJoined, format!("join {room} first"));
                return Err(failure);
            }
            RoomOp::Leave => {
                if let Some(at) = at {
                    self.joined.swap_remove(at);
                }
                self.gw.subs.unsubscribe(room, self.id);
            }
            _ => {}
        }
        Ok(())
    }

    fn reply_error(&self, failure: &Failure, id: Option<&str>, room: Option<&str>) {
        self.out
            .send(websocket::text(error_frame(failure, id, room).as_bytes()));
    }

    /// Leaves every joined room, so that presence is right at the owners.
    pub(super) fn leave_all(&mut self) {
        for (room, _) in std::mem::take(&mut self.joined) {
            self.gw.subs.unsubscribe(room.as_str(), self.id);
            let req = OpRequest {
                room: room.as_str(),
                conn: self.id,
                out: &self.out,
                user: self.identity.user.as_str(),
                id: None,
                op: RoomOp::Leave,
                route: None,
            };
            self.gw.upstream.op(req);
        }
    }
}
