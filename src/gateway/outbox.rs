//! One client connection's way out. Frames (whole WebSocket frames, shared
//! `Bytes`) are queued by whoever produces them and written straight to the
//! socket with a vectored write, by the producer itself: a link reader that
//! fans an event out flushes each socket it touched once per batch read, so
//! that no task is woken per delivery. Only a write that would block hands
//! over to the connection's task, which waits for the socket.
//!
//! The queue is bounded in frames and in bytes; past either bound the
//! connection is a slow consumer and is closed (1008).

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use tokio::net::TcpStream;
use tokio::sync::Notify;

use super::websocket::close;

/// Slices handed to one vectored write.
const IOV: usize = 32;

/// Bounds of one connection's queue.
#[derive(Debug, Clone, Copy)]
pub struct OutboxLimits {
    /// Frames queued at most.
    pub frames: usize,
    /// Bytes queued at most.
    pub bytes: usize,
}

impl Default for OutboxLimits {
    fn default() -> Self {
        Self {
            frames: 4096,
            bytes: 32 << 20,
        }
    }
}

/// Why and how a connection is to be closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Close {
    /// WebSocket close code.
    pub code: u16,
    /// Reason sent with it.
    pub reason: &'static str,
}

/// What the connection's task must do.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Task {
    /// Wait until the socket takes more, then flush.
    Write,
    /// Close with this code.
    Close(Close),
}

/// A connection's socket and its queue of frames to write.
pub struct Outbox {
    stream: TcpStream,
    /// Held for queue changes and for each write (which never blocks).
    state: Mutex<State>,
    /// Wakes the connection's task: a write would block, or a close.
    wake: Notify,
    limits: OutboxLimits,
    /// The heartbeat round in which the client was last heard from
    /// (`Sessions::heartbeat`).
    heard: AtomicU32,
}

#[derive(Default)]
struct State {
    queue: VecDeque<Bytes>,
    /// Bytes of the front frame already written.
    offset: usize,
    /// Bytes queued, the written part of the front frame included.
    queued: usize,
    /// A write would block: only the connection's task writes, once the
    /// socket takes more.
    blocked: bool,
    /// Frames were queued and not yet flushed.
    dirty: bool,
    close: Option<Close>,
    /// The connection is gone; nothing is queued any more.
    gone: bool,
}

impl Outbox {
    /// The outbox of a connection's socket.
    pub(super) fn new(stream: TcpStream, limits: OutboxLimits) -> Arc<Self> {
        Arc::new(Self {
            stream,
            state: Mutex::default(),
            wake: Notify::new(),
            limits,
            heard: AtomicU32::new(0),
        })
    }

    /// Notes that the client sent something in heartbeat round `round`.
    pub(super) fn heard(&self, round: u32) {
        if self.heard.load(Ordering::Relaxed) != round {
            self.heard.store(round, Ordering::Relaxed);
        }
    }

    /// The round in which the client was last heard from.
    pub(super) fn last_heard(&self) -> u32 {
        self.heard.load(Ordering::Relaxed)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The socket, for the connection's task to read from.
    pub(super) fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// Queues a frame without writing it; true when the outbox was clean,
    /// so that the caller adds it to the outboxes it flushes (`Dirty`).
    pub(super) fn push(&self, frame: Bytes) -> bool {
        let mut state = self.lock();
        if state.gone || state.close.is_some() {
            return false;
        }
        if state.queue.len() >= self.limits.frames || state.queued + frame.len() > self.limits.bytes
        {
            state.queue.clear();
            state.queued = 0;
            state.offset = 0;
            state.close = Some(Close {
                code: close::POLICY,
                reason: "slow consumer",
            });
            drop(state);
            self.wake.notify_one();
            return false;
        }
        state.queued += frame.len();
        state.queue.push_back(frame);
        !std::mem::replace(&mut state.dirty, true)
    }

    /// Queues a frame and writes what is queued.
    pub(super) fn send(&self, frame: Bytes) {
        if self.push(frame) {
            crate::telemetry::metrics().frames_out.increment(1);
        }
        self.flush();
    }

    /// Writes what is queued, unless writes wait for the socket.
    pub(super) fn flush(&self) {
        let mut state = self.lock();
        state.dirty = false;
        if !state.blocked {
            self.write(&mut state);
        }
    }

    /// Writes until the queue is empty or the socket would block.
    fn write(&self, state: &mut State) {
        while let Some(front) = state.queue.front() {
            // One frame goes out with a plain send; several in one
            // vectored write.
            let result = if state.queue.len() == 1 {
                self.stream.try_write(&front[state.offset..])
            } else {
                let mut slices = [IoSlice::new(&[]); IOV];
                let mut n = 0;
                for (i, frame) in state.queue.iter().take(IOV).enumerate() {
                    let from = if i == 0 { state.offset } else { 0 };
                    slices[n] = IoSlice::new(&frame[from..]);
                    n += 1;
                }
                self.stream.try_write_vectored(&slices[..n])
            };
            match result {
                Ok(written) => state.advance(written),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    state.blocked = true;
                    self.wake.notify_one();
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    // The connection is gone; its task notices on read.
                    state.queue.clear();
                    state.queued = 0;
                    state.offset = 0;
                    state.gone = true;
                    self.wake.notify_one();
                    return;
                }
            }
        }
    }

    /// Asks the connection to close (the first request wins).
    pub fn close(&self, close: Close) {
        let mut state = self.lock();
        if state.close.is_none() {
            state.close = Some(close);
            drop(state);
            self.wake.notify_one();
        }
    }

    /// What the connection's task has to do now, if anything.
    pub(super) fn task(&self) -> Option<Task> {
        let state = self.lock();
        if let Some(close) = state.close {
            Some(Task::Close(close))
        } else if state.blocked {
            Some(Task::Write)
        } else {
            None
        }
    }

    /// Fires when the connection's task may have something to do (`task`):
    /// created once and re-armed after it fires, so that waiting costs no
    /// registration per wake-up.
    pub(super) fn woken(&self) -> tokio::sync::futures::Notified<'_> {
        self.wake.notified()
    }

    /// Writes one last frame (a close) if the socket takes it within
    /// `within`, whatever is queued before it.
    pub(super) async fn write_last(&self, frame: Bytes, within: std::time::Duration) {
        let write = async {
            {
                let mut state = self.lock();
                state.queue.clear();
                state.queued = frame.len();
                state.offset = 0;
                state.queue.push_back(frame);
                state.blocked = false;
                self.write(&mut state);
            }
            while self.lock().blocked {
                if self.write_blocked().await.is_err() {
                    return;
                }
            }
        };
        let _ = tokio::time::timeout(within, write).await;
    }

    /// The socket takes more: write what is queued.
    pub(super) async fn write_blocked(&self) -> io::Result<()> {
        std::future::poll_fn(|cx| self.stream.poll_write_ready(cx)).await?;
        let mut state = self.lock();
        state.blocked = false;
        self.write(&mut state);
        Ok(())
    }

    /// The connection's task is gone: nothing more is queued.
    pub(super) fn gone(&self) {
        let mut state = self.lock();
        state.gone = true;
        state.queue = VecDeque::new();
        state.queued = 0;
    }
}

impl State {
    /// Drops what was written.
    fn advance(&mut self, mut written: usize) {
        self.queued -= written;
        while let Some(front) = self.queue.front() {
            let left = front.len() - self.offset;
            if written < left {
                self.offset += written;
                return;
            }
            written -= left;
            self.offset = 0;
            self.queue.pop_front();
        }
        // A queue that grew during a burst is let go.
        if self.queue.capacity() > 64 {
            self.queue = VecDeque::new();
        }
    }
}

/// The outboxes a batch of work queued frames on, each flushed once at the
/// end of the batch; the frames are counted once per batch too.
#[derive(Default)]
pub(super) struct Dirty {
    outboxes: Vec<Arc<Outbox>>,
    frames: u64,
    deliveries: u64,
}

impl Dirty {
    /// Queues a frame on `out`, remembering to flush it.
    pub(super) fn push(&mut self, out: &Arc<Outbox>, frame: Bytes) {
        self.frames += 1;
        if out.push(frame) {
            self.outboxes.push(out.clone());
        }
    }

    /// Counts room events delivered by the frames pushed.
    pub(super) fn delivered(&mut self, n: u64) {
        self.deliveries += n;
    }

    /// Flushes every outbox touched.
    pub(super) fn flush(&mut self) {
        for out in self.outboxes.drain(..) {
            out.flush();
        }
        if self.frames > 0 {
            let metrics = crate::telemetry::metrics();
            metrics
                .frames_out
                .increment(std::mem::take(&mut self.frames));
            metrics
                .deliveries
                .increment(std::mem::take(&mut self.deliveries));
        }
    }
}
