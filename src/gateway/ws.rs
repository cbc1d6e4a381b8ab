//! One client WebSocket: identity at upgrade, then one task that reads and
//! validates frames, forwards room operations upstream, and writes queued
//! frames in batches (one flush per wake-up).

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, Query, State};
use axum::response::{IntoResponse, Response};
use http::HeaderMap;
use tracing::Instrument;

use super::auth::Identity;
use super::http::AppError;
use super::sessions::{Close, ConnRx, ConnTx, Outgoing};
use super::upstream::OpRequest;
use super::Gateway;
use crate::ids::RoomId;
use crate::protocol::client::{self, Command, RoomOp};
use crate::protocol::link::ConnId;
use crate::protocol::server::{error_frame, ServerFrame};
use crate::protocol::{ErrorCode, Failure};

/// Read buffer per connection: a chat frame fits; larger frames grow it on
/// demand. Every idle connection holds one, so it is kept small.
const READ_BUFFER: usize = 512;
/// Bytes buffered before a write reaches the socket (flushes write sooner).
const WRITE_BUFFER: usize = 4 * 1024;
/// How long a close frame may wait for the client to take it.
const CLOSE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);
/// Frames past this size close the connection with 1009.
const MAX_MESSAGE: usize = 1024 * 1024;

/// `GET /ws`: authenticates, then upgrades.
pub(super) async fn upgrade(
    State(gw): State<Arc<Gateway>>,
    Query(query): Query<HashMap<String, String>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    let identity = match gw.config.auth.identify(&query, &headers) {
        Ok(identity) => identity,
        Err(failure) => return AppError(failure).into_response(),
    };
    ws.read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER)
        .max_message_size(MAX_MESSAGE)
        .max_frame_size(MAX_MESSAGE)
        .on_upgrade(move |socket| {
            let span = tracing::debug_span!("conn", client.addr = %peer, user = %identity.user);
            async move {
                let (id, tx, rx) = gw.sessions.open(identity.user.clone());
                let bucket = TokenBucket::new(gw.config.rate_per_sec, gw.config.rate_burst);
                let conn = Connection {
                    gw,
                    id,
                    identity,
                    tx,
                    joined: HashSet::new(),
                    bucket,
                };
                conn.run(socket, rx).await;
            }
            .instrument(span)
        })
}

/// Per-connection frame budget: `rate` per second, bursts of `burst`.
struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    at: Instant,
}

impl TokenBucket {
    fn new(rate: u32, burst: u32) -> Self {
        Self {
            rate: rate as f64,
            burst: burst as f64,
            tokens: burst as f64,
            at: Instant::now(),
        }
    }

    fn take(&mut self) -> bool {
        let now = Instant::now();
        self.tokens =
            (self.tokens + now.duration_since(self.at).as_secs_f64() * self.rate).min(self.burst);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The task of one client connection.
struct Connection {
    gw: Arc<Gateway>,
    id: ConnId,
    identity: Identity,
    tx: ConnTx,
    /// Rooms this connection has joined (as far as it has asked).
    joined: HashSet<RoomId>,
    bucket: TokenBucket,
}

impl Connection {
    async fn run(mut self, mut socket: WebSocket, mut rx: ConnRx) {
        // Grows on the first frames out; an idle connection holds none.
        let mut batch = VecDeque::new();
        let close = loop {
            tokio::select! {
                out = rx.next(&mut batch) => match out {
                    Outgoing::Close(close) => break Some(close),
                    Outgoing::Frames => {
                        // A client that stops reading blocks the write; its
                        // queue then overflows and asks for the close.
                        let written = tokio::select! {
                            ok = write_batch(&mut socket, &mut batch) => ok,
                            close = rx.closing() => break Some(close),
                        };
                        if !written { break None }
                    }
                },
                msg = socket.recv() => match msg {
                    // Boxed so that the (large) forwarding future is not part
                    // of every idle connection's task.
                    Some(Ok(Message::Text(text))) => Box::pin(self.on_text(&text)).await,
                    Some(Ok(Message::Binary(_))) => {
                        self.reply_error(&Failure::bad_request("binary frames are not supported"), None, None);
                    }
                    Some(Ok(Message::Close(_))) | None => break None,
                    Some(Ok(_)) => {}
                    Some(Err(e)) => {
                        let too_big = e.to_string().contains("too long") || e.to_string().contains("too big");
                        break too_big.then_some(Close { code: 1009, reason: "frame too large" });
                    }
                },
            }
        };
        if let Some(close) = close {
            let frame = CloseFrame {
                code: close.code,
                reason: close.reason.into(),
            };
            // A slow consumer may not read its close frame either.
            let _ =
                tokio::time::timeout(CLOSE_TIMEOUT, socket.send(Message::Close(Some(frame)))).await;
        }
        Box::pin(self.leave_all()).await;
        self.gw.sessions.close(self.id);
    }

    async fn on_text(&mut self, text: &str) {
        metrics::counter!("roomring_frames_in_total").increment(1);
        let frame = match client::parse(text) {
            Ok(frame) => frame,
            Err(rejected) => {
                return self.reply_error(
                    &rejected.failure,
                    rejected.id.as_deref(),
                    rejected.room.as_deref(),
                );
            }
        };
        let room_str = match &frame.cmd {
            Command::Room { room, .. } => Some(room.as_str().to_string()),
            Command::Ping => None,
        };
        if !self.bucket.take() {
            let failure = Failure::new(ErrorCode::RateLimited, "too many frames; slow down");
            return self.reply_error(&failure, frame.id.as_deref(), room_str.as_deref());
        }
        let (room, op) = match frame.cmd {
            Command::Ping => {
                let pong = ServerFrame::Pong {
                    id: frame.id.as_deref(),
                }
                .encode();
                self.tx.send(pong.into());
                return;
            }
            Command::Room { room, op } => (room, op),
        };
        if !self.identity.may_use(&room) {
            let failure = Failure::new(
                ErrorCode::Forbidden,
                format!("the token does not allow {room}"),
            );
            return self.reply_error(&failure, frame.id.as_deref(), Some(room.as_str()));
        }
        match &op {
            RoomOp::Join { .. } => {
                self.joined.insert(room.clone());
            }
            _ if !self.joined.contains(&room) => {
                let failure = Failure::new(ErrorCode::NotJoined, format!("join {room} first"));
                return self.reply_error(&failure, frame.id.as_deref(), Some(room.as_str()));
            }
            RoomOp::Leave => {
                self.joined.remove(&room);
                self.gw.sessions.unsubscribe(&room, self.id);
            }
            _ => {}
        }
        let req = OpRequest {
            room,
            conn: self.id,
            user: self.identity.user.clone(),
            id: frame.id,
            op,
            resume: false,
        };
        self.gw.upstream.op(req).await;
    }

    fn reply_error(&self, failure: &Failure, id: Option<&str>, room: Option<&str>) {
        self.tx.send(error_frame(failure, id, room).into());
    }

    /// Leaves every joined room, so that presence is right at the owners.
    async fn leave_all(&mut self) {
        for room in std::mem::take(&mut self.joined) {
            self.gw.sessions.unsubscribe(&room, self.id);
            let req = OpRequest {
                room,
                conn: self.id,
                user: self.identity.user.clone(),
                id: None,
                op: RoomOp::Leave,
                resume: false,
            };
            self.gw.upstream.op(req).await;
        }
    }
}

/// Writes queued frames and flushes once; false when the socket is gone.
/// A batch that grew large during a burst is let go rather than kept.
async fn write_batch(socket: &mut WebSocket, batch: &mut VecDeque<Utf8Bytes>) -> bool {
    use futures_util::SinkExt;
    let count = batch.len() as u64;
    for frame in batch.drain(..) {
        if socket.feed(Message::Text(frame)).await.is_err() {
            return false;
        }
    }
    metrics::counter!("roomring_frames_out_total").increment(count);
    if batch.capacity() > 64 {
        *batch = VecDeque::new();
    }
    socket.flush().await.is_ok()
}
