//! The writing half of an established link. `LinkWriter` is a cloneable
//! handle: any task appends records to one shared buffer, and the buffer is
//! written many records per write, either by the link's writer task (woken
//! by the first record, it runs after the tasks woken in the same round of
//! the scheduler, which append theirs) or at once by a producer that holds
//! the link for a whole batch of work (`hold`) and writes when it is done,
//! with no task woken. The reading half is `reader`'s.
//!
//! Task tree: `LinkWriter::spawn` starts the writer task; it ends when the
//! link is closed (after writing what was buffered) or a write fails.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use serde::Serialize;
use tokio::sync::Notify;

use super::codec::{self, CodecError};
use super::transport::{write_sealed, WriteHalf};
use super::LinkError;

/// A write buffer that grew past this during a burst is let go afterwards.
const KEEP_WRITE_BUFFER: usize = 1 << 20;
/// A socket that takes nothing for this long means the peer is gone
/// without a word (no FIN, no RST): the link is dropped.
const WRITE_STALL: Duration = Duration::from_secs(10);

/// The sending half of a link.
#[derive(Clone)]
pub struct LinkWriter {
    shared: Arc<Shared>,
}

struct Shared {
    half: WriteHalf,
    /// Records not yet written; held only to append, or to take the buffer
    /// for a write (the write itself happens outside).
    state: Mutex<State>,
    /// Wakes the writer task: records were appended, the socket was full,
    /// or the link closed.
    ready: Notify,
    /// Wakes senders waiting for the buffer to drain below `limit`.
    drained: Notify,
    /// Buffered bytes above which the link counts as overloaded: senders
    /// that can wait do (`wait_room`), the others close the link.
    limit: usize,
    /// Set once the link is closed or broken; nothing more is sent.
    closed: AtomicBool,
}

#[derive(Default)]
struct State {
    buf: BytesMut,
    /// Someone is writing (outside the lock); others only append.
    writing: bool,
    /// The socket is full: only the writer task writes, once it takes more.
    blocked: bool,
    /// The writer task has been woken for what is buffered.
    scheduled: bool,
    /// Producers holding the link for a batch: they write when done.
    holds: usize,
}

/// A producer's hold on a link for a batch of work; dropping it writes what
/// the batch appended.
pub struct Hold<'a> {
    writer: &'a LinkWriter,
}

impl Drop for Hold<'_> {
    fn drop(&mut self) {
        self.writer.lock().holds -= 1;
        self.writer.flush();
    }
}

impl LinkWriter {
    /// Starts the writer task on `half`; `limit` bounds the buffered bytes.
    pub(crate) fn spawn(half: WriteHalf, limit: usize) -> Self {
        let shared = Arc::new(Shared {
            half,
            state: Mutex::default(),
            ready: Notify::new(),
            drained: Notify::new(),
            limit,
            closed: AtomicBool::new(false),
        });
        let writer = Self { shared };
        tokio::spawn(writer.clone().write_loop());
        writer
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.shared.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends one record. Fails only when the link is closed, or when the
    /// record cannot be encoded (it is then not sent).
    pub fn send<T: Serialize + ?Sized>(&self, record: &T) -> Result<(), LinkError> {
        self.send_with(|buf| codec::encode_into(buf, record))
    }

    /// Appends what `write` encodes, under one lock, so that several records
    /// stay together and in order.
    pub fn send_with(
        &self,
        write: impl FnOnce(&mut BytesMut) -> Result<(), CodecError>,
    ) -> Result<(), LinkError> {
        if self.is_closed() {
            return Err(LinkError::Closed);
        }
        let mut state = self.lock();
        write(&mut state.buf)?;
        let wake = state.holds == 0 && !state.scheduled && !state.blocked;
        state.scheduled |= wake;
        drop(state);
        if wake {
            self.shared.ready.notify_one();
        }
        Ok(())
    }

    /// Holds the link for a batch of work: records appended meanwhile (from
    /// any task) wake no one, and are written when the hold is dropped.
    pub fn hold(&self) -> Hold<'_> {
        self.lock().holds += 1;
        Hold { writer: self }
    }

    /// Writes what is buffered now, unless someone else is writing or the
    /// socket is full; what the socket does not take waits for the writer
    /// task.
    fn flush(&self) {
        let WriteHalf::Tcp(half) = &self.shared.half else {
            return self.schedule();
        };
        let mut out = {
            let mut state = self.lock();
            if state.writing || state.blocked || state.buf.is_empty() {
                return;
            }
            state.writing = true;
            std::mem::take(&mut state.buf)
        };
        loop {
            while !out.is_empty() {
                match half.try_write(&out) {
                    Ok(n) => out.advance(n),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        // Unwritten bytes go back in front of what was
                        // appended meanwhile.
                        let mut state = self.lock();
                        out.extend_from_slice(&state.buf);
                        state.buf = out;
                        state.writing = false;
                        state.blocked = true;
                        drop(state);
                        self.shared.ready.notify_one();
                        return;
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        tracing::debug!(error = %e, "link write failed");
                        self.lock().writing = false;
                        self.close();
                        return;
                    }
                }
            }
            let mut state = self.lock();
            if state.buf.is_empty() {
                state.writing = false;
                // Keep the emptied buffer for the next records, unless a
                // burst made it large.
                out.clear();
                if out.capacity() <= KEEP_WRITE_BUFFER {
                    state.buf = out;
                }
                drop(state);
                self.shared.drained.notify_waiters();
                return;
            }
            out.clear();
            std::mem::swap(&mut state.buf, &mut out);
        }
    }

    /// Wakes the writer task for what is buffered (under TLS the writer
    /// task seals and writes everything).
    fn schedule(&self) {
        let mut state = self.lock();
        let wake = !state.scheduled && !state.buf.is_empty();
        state.scheduled |= wake;
        drop(state);
        if wake {
            self.shared.ready.notify_one();
        }
    }

    /// Bytes buffered and not yet handed to the socket.
    pub fn buffered(&self) -> usize {
        self.lock().buf.len()
    }

    /// Whether more than the limit is buffered.
    pub fn is_overloaded(&self) -> bool {
        self.buffered() > self.shared.limit
    }

    /// Waits until the buffer is below the limit (or the link closed).
    pub async fn wait_room(&self) {
        loop {
            let drained = self.shared.drained.notified();
            tokio::pin!(drained);
            drained.as_mut().enable();
            if !self.is_overloaded() || self.is_closed() {
                return;
            }
            drained.await;
        }
    }

    /// Closes the link: what is buffered is still written, then the socket
    /// is shut down.
    pub fn close(&self) {
        self.shared.closed.store(true, Ordering::Release);
        self.shared.ready.notify_one();
        self.shared.drained.notify_waiters();
    }

    /// Whether the link is closed or broken.
    pub fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::Acquire)
    }

    /// Whether two handles are the same link.
    pub fn same(&self, other: &LinkWriter) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }

    async fn write_loop(self) {
        if let WriteHalf::Tls(half) = &self.shared.half {
            return self.write_loop_tls(half).await;
        }
        // The writer steps aside once before it writes: on one thread a
        // yielding task runs again only after the I/O driver was polled, so
        // the records that the sockets ready by then produce join the same
        // write (`docs/performance.md`); with several threads it lets the
        // round that woke it finish first.
        loop {
            self.shared.ready.notified().await;
            let (blocked, empty) = {
                let state = self.lock();
                (state.blocked, state.buf.is_empty())
            };
            if blocked {
                let WriteHalf::Tcp(half) = &self.shared.half else {
                    unreachable!("only a plain link blocks")
                };
                match tokio::time::timeout(WRITE_STALL, half.writable()).await {
                    Ok(Ok(())) => self.lock().blocked = false,
                    Ok(Err(_)) | Err(_) => {
                        tracing::warn!("link write stalled; dropping the link");
                        break;
                    }
                }
            } else if !empty {
                tokio::task::yield_now().await;
            }
            self.lock().scheduled = false;
            self.flush();
            if self.is_closed() {
                let state = self.lock();
                if state.buf.is_empty() && !state.writing {
                    break;
                }
            }
        }
        self.shared.closed.store(true, Ordering::Release);
        self.shared.drained.notify_waiters();
        // Everything is written: the peer reads to the end, then sees EOF.
        if let WriteHalf::Tcp(half) = &self.shared.half {
            let _ = socket2::SockRef::from(half.as_ref()).shutdown(std::net::Shutdown::Write);
        }
    }

    /// The writer task of a TLS link: it writes whatever is buffered, in
    /// one sealed write at a time, until the link closes.
    async fn write_loop_tls(
        &self,
        half: &tokio::sync::Mutex<
            tokio::io::WriteHalf<tokio_rustls::TlsStream<tokio::net::TcpStream>>,
        >,
    ) {
        let mut half = half.lock().await;
        loop {
            self.shared.ready.notified().await;
            tokio::task::yield_now().await;
            loop {
                let out = {
                    let mut state = self.lock();
                    state.scheduled = false;
                    if state.buf.is_empty() {
                        break;
                    }
                    std::mem::take(&mut state.buf)
                };
                let written = tokio::time::timeout(WRITE_STALL, write_sealed(&mut *half, &out));
                if !matches!(written.await, Ok(Ok(()))) {
                    tracing::warn!("link write failed or stalled; dropping the link");
                    self.shared.closed.store(true, Ordering::Release);
                    self.shared.drained.notify_waiters();
                    return;
                }
                self.shared.drained.notify_waiters();
            }
            if self.is_closed() {
                break;
            }
        }
        self.shared.drained.notify_waiters();
        let _ = tokio::io::AsyncWriteExt::shutdown(&mut *half).await;
    }
}

/// Writes one record straight to a socket half (the handshake, before the
/// writer task exists).
pub(super) async fn write_record<T: Serialize>(
    half: &mut WriteHalf,
    record: &T,
) -> Result<(), LinkError> {
    let bytes = codec::encode(record)?;
    half.write_all(&bytes).await.map_err(LinkError::Io)
}

/// Tunes a link's socket: no Nagle delay (records are batched here), and
/// keepalive probes, so that a peer host that vanished without a FIN is
/// noticed.
pub(super) fn tune(stream: &tokio::net::TcpStream) {
    let _ = stream.set_nodelay(true);
    keepalive(stream, Duration::from_secs(5), Duration::from_secs(2));
}

/// Sends TCP keepalive probes after `idle` without traffic, then every
/// `interval`, so that a peer that vanished without a FIN frees the socket.
pub(crate) fn keepalive(stream: &tokio::net::TcpStream, idle: Duration, interval: Duration) {
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(idle)
        .with_interval(interval);
    let _ = socket2::SockRef::from(stream).set_tcp_keepalive(&keepalive);
}

impl From<io::Error> for LinkError {
    fn from(e: io::Error) -> Self {
        Self::Io(e)
    }
}
