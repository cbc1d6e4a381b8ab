//! One client WebSocket, once upgraded (`upgrade`): one task that reads
//! frames and handles each at once (validate, forward to the room's
//! owner, or answer locally). Writes to the socket happen wherever frames
//! are produced (`outbox`); this task writes only when the socket was full.
//! An idle connection holds no read buffer: reads go to a per-thread buffer
//! and only an incomplete frame is kept.

use std::cell::RefCell;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;

use super::admission::TokenBucket;
use super::auth::Identity;
use super::outbox::{Close, Outbox, Task};
use super::upstream::{OpRequest, Route};
use super::websocket::{self, close, Decoder, Incoming};
use super::Gateway;
use crate::ids::{ConnId, RoomId};
use crate::link::LinkWriter;
use crate::protocol::client::{self, Command, RoomOp};
use crate::protocol::server::{error_frame, ServerFrame};
use crate::protocol::{ErrorCode, Failure};

mod handler;
use handler::Handler;

/// Frames past this size close the connection with 1009.
const MAX_MESSAGE: usize = 1024 * 1024;
/// How long a close frame may wait for the client to take it.
const CLOSE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);
/// Bytes read from a socket at a time, into the thread's buffer.
const READ_SCRATCH: usize = 64 * 1024;

thread_local! {
    /// The read buffer of every connection served on this thread.
    static SCRATCH: RefCell<Box<[u8]>> = RefCell::new(vec![0; READ_SCRATCH].into_boxed_slice());
}

/// The task of one client connection.
pub(super) struct Connection {
    decoder: Decoder,
    handler: Handler,
    /// Held while the connection lives: its place under the gateway's cap.
    _permit: OwnedSemaphorePermit,
}

enum Read {
    Ok,
    Eof,
}

impl Connection {
    pub(super) fn new(
        gw: Arc<Gateway>,
        identity: Identity,
        stream: TcpStream,
        permit: OwnedSemaphorePermit,
    ) -> Self {
        let _ = stream.set_nodelay(true);
        // A host that vanished without a FIN is noticed by the heartbeats
        // too; keepalive also frees the socket of one that no ping reaches.
        crate::link::keepalive(&stream, Duration::from_secs(60), Duration::from_secs(10));
        let out = Outbox::new(stream, gw.config.outbox);
        let id = gw
            .sessions
            .open(identity.user.clone(), out.clone(), identity.expires);
        let bucket = TokenBucket::new(gw.config.clients.rate_per_sec, gw.config.clients.rate_burst);
        Self {
            decoder: Decoder::new(MAX_MESSAGE),
            handler: Handler {
                gw,
                id,
                identity,
                out,
                joined: Vec::new(),
                bucket,
                closing: None,
                wait: None,
            },
            _permit: permit,
        }
    }

    pub(super) async fn run(mut self, leftover: Bytes) {
        // What the client sent right behind its upgrade request; the buffer
        // it sits in is the HTTP connection's, and must not stay with us.
        if !leftover.is_empty() {
            let mut data = leftover.to_vec();
            self.decode(&mut data);
        }
        drop(leftover);
        let out = self.handler.out.clone();
        // The one waiter on the outbox's wake-ups: every wait below polls
        // it, so that no wake-up goes to a future nobody polls.
        let mut woken = std::pin::pin!(out.woken());
        let close = loop {
            if let Some(close) = self.handler.closing.take() {
                break Some(close);
            }
            // The rare waits are boxed: an idle connection's task holds only
            // the common one.
            if let Some(link) = self.handler.wait.take() {
                if let Err(close) = Box::pin(wait_for_room(&out, woken.as_mut(), link)).await {
                    break close;
                }
            }
            match out.task() {
                Some(Task::Close(close)) => break Some(close),
                Some(Task::Write) => match Box::pin(write_when_ready(&out, woken.as_mut())).await {
                    Ok(()) => continue,
                    Err(close) => break close,
                },
                None => {}
            }
            // The socket's own read-readiness slot, not a registered waiter:
            // this task is its only reader.
            let readable = std::future::poll_fn(|cx| out.stream().poll_read_ready(cx));
            tokio::select! {
                ready = readable => {
                    if ready.is_err() {
                        break None;
                    }
                    if let Read::Eof = self.read() {
                        break None;
                    }
                }
                () = woken.as_mut() => woken.set(out.woken()),
            }
        };
        if let Some(close) = close {
            let frame = websocket::close_frame(close.code, close.reason);
            Box::pin(out.write_last(frame, CLOSE_TIMEOUT)).await;
        }
        self.handler.leave_all();
        self.handler.gw.sessions.close(self.handler.id);
        out.gone();
    }

    /// Reads what the socket has and handles every complete frame.
    fn read(&mut self) -> Read {
        SCRATCH.with_borrow_mut(|buf| match read_some(self.handler.out.stream(), buf) {
            Ok(0) => Read::Eof,
            Ok(n) => {
                self.handler.out.heard(self.handler.gw.sessions.round());
                self.decode(&mut buf[..n]);
                Read::Ok
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Read::Ok,
            Err(_) => Read::Eof,
        })
    }

    fn decode(&mut self, data: &mut [u8]) {
        let handler = &mut self.handler;
        if let Err(fatal) = self.decoder.feed(data, &mut |msg| handler.on_message(msg)) {
            handler.closing.get_or_insert(Close {
                code: fatal.code,
                reason: fatal.reason,
            });
        }
    }
}

/// The outbox's wake-up, pinned in the connection's task.
type Woken<'a, 'o> = std::pin::Pin<&'a mut tokio::sync::futures::Notified<'o>>;

/// Waits until an overloaded link has room again, writing the socket out
/// meanwhile whenever it is full and takes more: events for the connection
/// keep flowing while its requests wait. `Err` as for `write_when_ready`.
async fn wait_for_room<'o>(
    out: &'o Outbox,
    mut woken: Woken<'_, 'o>,
    link: LinkWriter,
) -> Result<(), Option<Close>> {
    let room = link.wait_room();
    tokio::pin!(room);
    loop {
        let blocked = match out.task() {
            Some(Task::Close(close)) => return Err(Some(close)),
            Some(Task::Write) => true,
            None => false,
        };
        tokio::select! {
            () = room.as_mut() => return Ok(()),
            written = out.write_blocked(), if blocked => written.map_err(|_| None)?,
            () = woken.as_mut() => woken.set(out.woken()),
        }
    }
}

/// Waits until a full socket takes more and writes; `Err` when the
/// connection is to end (with a close to send, or none when it is gone).
async fn write_when_ready<'o>(
    out: &'o Outbox,
    mut woken: Woken<'_, 'o>,
) -> Result<(), Option<Close>> {
    loop {
        match out.task() {
            Some(Task::Close(close)) => return Err(Some(close)),
            Some(Task::Write) => {}
            None => return Ok(()),
        }
        tokio::select! {
            written = out.write_blocked() => return written.map_err(|_| None),
            () = woken.as_mut() => woken.set(out.woken()),
        }
    }
}

/// One read from a ready socket. A read that does not fill the buffer has
/// drained the socket, so its readiness is cleared at once (as tokio's own
/// `poll_read` does): the next wait goes straight to the reactor instead of
/// costing a read that only says "would block".
fn read_some(stream: &TcpStream, buf: &mut [u8]) -> std::io::Result<usize> {
    use std::io::Read as _;
    let mut got = 0;
    let drained = stream.try_io(tokio::io::Interest::READABLE, || {
        got = (&*socket2::SockRef::from(stream)).read(buf)?;
        if got > 0 && got < buf.len() {
            Err(std::io::ErrorKind::WouldBlock.into())
        } else {
            Ok(())
        }
    });
    match drained {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && got > 0 => Ok(got),
        Err(e) => Err(e),
        Ok(()) => Ok(got),
    }
}
