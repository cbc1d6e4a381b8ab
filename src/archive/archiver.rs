//! A node's archiver: it takes the events its rooms committed (after their
//! acks), and those a room's new owner found in storage above what the
//! archive holds, and appends them in batches. While the archive is away it
//! keeps them and tries again; what waits is the archive's lag
//! (`roomring_archive_lag`), bounded by `MAX_WAITING_BYTES`, past which the
//! oldest waiting events are dropped from the queue (counted in
//! `roomring_archive_dropped_total`; Redis still holds a room's tail).
//!
//! Task tree: `Archiver::spawn` starts one task; it ends when the archiver
//! is dropped.

use std::collections::VecDeque;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;

use super::{Answer, Archive, ArchiveError, Archived, Page};

/// Events appended in one batch at most.
const BATCH: usize = 2000;
/// Bytes of frames waiting for the archive at most.
pub const MAX_WAITING_BYTES: usize = 256 << 20;
/// The longest pause between two tries while the archive is away.
const RETRY_MAX: Duration = Duration::from_secs(2);

enum Job {
    /// Committed events.
    Events(Vec<Archived>),
    /// A room erased: its events go, after those handed over before.
    Delete {
        room: String,
        done: tokio::sync::oneshot::Sender<Answer<()>>,
    },
    /// A room's stored events as its new owner found them: those the
    /// archive does not hold go in.
    Ensure {
        room: String,
        epoch: String,
        events: Vec<(u64, Bytes)>,
    },
}

/// The archive as a node's rooms use it.
pub struct Archiver {
    jobs: mpsc::UnboundedSender<Job>,
    archive: Arc<OnceLock<Arc<dyn Archive>>>,
    pending: Arc<Pending>,
}

/// Per room, the lowest seq handed to the archiver and not archived yet,
/// and how many of its events wait: storage keeps a room's log from there
/// on, so that nothing leaves Redis before the archive holds it. Their
/// count is the archive's lag (`roomring_archive_lag`), counted from the
/// moment an event is handed over.
#[derive(Default)]
pub struct Pending(std::sync::Mutex<Waits>);

/// Per room its lowest unarchived seq and how many of its events wait; and
/// how many wait in all.
type Waits = (std::collections::HashMap<String, (u64, usize)>, usize);

impl Pending {
    fn lock(&self) -> std::sync::MutexGuard<'_, Waits> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Events handed over, as (room, seq): one lock and one gauge update
    /// for all of them.
    fn add<'a>(&self, events: impl Iterator<Item = (&'a str, u64)>) {
        let mut guard = self.lock();
        let (rooms, total) = &mut *guard;
        for (room, seq) in events {
            match rooms.get_mut(room) {
                Some(entry) => {
                    entry.0 = entry.0.min(seq);
                    entry.1 += 1;
                }
                None => {
                    rooms.insert(room.to_string(), (seq, 1));
                }
            }
            *total += 1;
        }
        lag(*total);
    }

    /// Events archived (or let go), as (room, seq): for each room, the
    /// next one is the lowest.
    fn done<'a>(&self, events: impl Iterator<Item = (&'a str, u64)>) {
        let mut guard = self.lock();
        let (rooms, total) = &mut *guard;
        for (room, seq) in events {
            if let Some(entry) = rooms.get_mut(room) {
                entry.1 = entry.1.saturating_sub(1);
                *total = total.saturating_sub(1);
                if entry.1 == 0 {
                    rooms.remove(room);
                } else {
                    entry.0 = entry.0.max(seq + 1);
                }
            }
        }
        lag(*total);
    }

    /// Whether nothing waits.
    fn is_empty(&self) -> bool {
        self.lock().0.is_empty()
    }

    /// The lowest seq of `room` not archived yet, if any waits.
    pub fn lowest(&self, room: &str) -> Option<u64> {
        self.lock().0.get(room).map(|(low, _)| *low)
    }
}

fn lag(waiting: usize) {
    crate::telemetry::metrics().archive_lag.set(waiting as f64);
}

impl Archiver {
    /// An archiver whose archive `connect` opens, tried again until it
    /// answers (the node serves meanwhile; the events wait).
    pub fn spawn<F, Fut>(connect: F) -> Arc<Self>
    where
        F: Fn() -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Answer<Arc<dyn Archive>>> + Send + 'static,
    {
        let (jobs, rx) = mpsc::unbounded_channel();
        let archive = Arc::new(OnceLock::new());
        let pending = Arc::new(Pending::default());
        tokio::spawn(run(connect, archive.clone(), rx, pending.clone()));
        Arc::new(Self {
            jobs,
            archive,
            pending,
        })
    }

    /// What waits, per room.
    pub fn pending(&self) -> &Pending {
        &self.pending
    }

    /// Waits until nothing waits for the archive, for at most `patience`;
    /// whether it came to that. A node that drained waits so before it
    /// exits (what waits would go with it; new owners archive the rooms'
    /// kept events they received, not what was older).
    pub async fn settled(&self, patience: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + patience;
        while !self.pending.is_empty() {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        true
    }

    /// Committed events, to archive.
    pub fn push(&self, events: Vec<Archived>) {
        if !events.is_empty() {
            (self.pending).add(events.iter().map(|e| (e.room.as_str(), e.seq)));
            let _ = self.jobs.send(Job::Events(events));
        }
    }

    /// A room's stored events as a new owner found them.
    pub fn ensure(&self, room: &str, epoch: &str, events: Vec<(u64, Bytes)>) {
        (self.pending).add(events.iter().map(|(seq, _)| (room, *seq)));
        let job = Job::Ensure {
            room: room.into(),
            epoch: epoch.into(),
            events,
        };
        let _ = self.jobs.send(job);
    }

    /// Removes, now and then, what was stored longer ago than `retention`
    /// (every node does: it is idempotent, and cheap on the time index).
    pub fn retain(self: &Arc<Self>, retention: Duration) {
        let archive = self.archive.clone();
        let every = (retention / 2).clamp(Duration::from_millis(500), Duration::from_secs(600));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                let Some(archive) = archive.get() else {
                    continue;
                };
                let cutoff = crate::protocol::now_ms().saturating_sub(retention.as_millis() as u64);
                match archive.retain(cutoff).await {
                    Ok(0) => {}
                    Ok(gone) => tracing::info!(
                        events = gone,
                        "retention: older events removed from the archive"
                    ),
                    Err(e) => tracing::warn!(error = %e, "retention: the archive did not answer"),
                }
            }
        });
    }

    /// Removes every archived event of `room`, after the events handed
    /// over before (and before those handed over after); waits until the
    /// archive has done it.
    pub async fn delete(&self, room: &str) -> Answer<()> {
        let (done, rx) = tokio::sync::oneshot::channel();
        let job = Job::Delete {
            room: room.into(),
            done,
        };
        if self.jobs.send(job).is_err() {
            return Err(ArchiveError("the archiver stopped".into()));
        }
        rx.await
            .unwrap_or_else(|_| Err(ArchiveError("the archiver stopped".into())))
    }

    /// A page of the archive (`Archive::page`), if it is connected.
    pub async fn page(&self, room: &str, epoch: &str, before: u64, limit: usize) -> Answer<Page> {
        let archive = self
            .archive
            .get()
            .ok_or_else(|| ArchiveError("not connected yet".into()))?;
        archive.page(room, epoch, before, limit).await
    }
}

async fn run<F, Fut>(
    connect: F,
    slot: Arc<OnceLock<Arc<dyn Archive>>>,
    mut rx: mpsc::UnboundedReceiver<Job>,
    pending: Arc<Pending>,
) where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Answer<Arc<dyn Archive>>>,
{
    let mut waiting = Waiting {
        pending,
        ..Waiting::default()
    };
    let mut pause = Duration::from_millis(100);
    let archive = loop {
        match connect().await {
            Ok(archive) => break archive,
            Err(e) => {
                tracing::warn!(error = %e, "archive unreachable; events wait for it");
                while let Ok(job) = rx.try_recv() {
                    waiting.add(job);
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(RETRY_MAX);
            }
        }
    };
    let _ = slot.set(archive.clone());
    let mut jobs = Vec::new();
    loop {
        if waiting.is_empty() && rx.recv_many(&mut jobs, 64).await == 0 {
            return;
        }
        for job in jobs.drain(..) {
            waiting.add(job);
        }
        while let Ok(job) = rx.try_recv() {
            waiting.add(job);
        }
        if let Err(e) = waiting.flush(archive.as_ref()).await {
            tracing::warn!(error = %e, lag = waiting.events.len(), "archive append failed; trying again");
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(RETRY_MAX);
        } else {
            pause = Duration::from_millis(100);
        }
    }
}

/// A room's stored events (seq, frame) as its new owner found them: room,
/// epoch, events.
type Found = (String, String, Vec<(u64, Bytes)>);

/// What waits for the archive, in order.
enum Item {
    Event(Archived),
    Delete(String, tokio::sync::oneshot::Sender<Answer<()>>),
}

/// What waits for the archive.
#[derive(Default)]
struct Waiting {
    events: VecDeque<Item>,
    ensures: VecDeque<Found>,
    bytes: usize,
    pending: Arc<Pending>,
}

impl Waiting {
    fn is_empty(&self) -> bool {
        self.events.is_empty() && self.ensures.is_empty()
    }

    fn add(&mut self, job: Job) {
        match job {
            Job::Events(events) => {
                for e in events {
                    self.bytes += e.frame.len();
                    self.events.push_back(Item::Event(e));
                }
                while self.bytes > MAX_WAITING_BYTES {
                    let Some(Item::Event(old)) = self.events.front() else {
                        break;
                    };
                    self.bytes -= old.frame.len();
                    (self.pending).done(std::iter::once((old.room.as_str(), old.seq)));
                    self.events.pop_front();
                    crate::telemetry::metrics().archive_dropped.increment(1);
                }
            }
            Job::Delete { room, done } => self.events.push_back(Item::Delete(room, done)),
            Job::Ensure {
                room,
                epoch,
                events,
            } => self.ensures.push_back((room, epoch, events)),
        }
    }

    /// Appends what waits, a batch at a time; stops at the first failure
    /// (nothing is lost: the rest waits).
    async fn flush(&mut self, archive: &dyn Archive) -> Answer<()> {
        while let Some((room, epoch, events)) = self.ensures.front() {
            let held = match (events.first(), events.last()) {
                (Some((from, _)), Some((to, _))) => archive.held(room, epoch, *from..=*to).await?,
                _ => Vec::new(),
            };
            let missing: Vec<Archived> = events
                .iter()
                .filter(|(seq, _)| held.binary_search(seq).is_err())
                .map(|(seq, frame)| Archived {
                    room: room.clone(),
                    epoch: epoch.clone(),
                    seq: *seq,
                    at: crate::protocol::now_ms(),
                    frame: frame.clone(),
                })
                .collect();
            for chunk in missing.chunks(BATCH) {
                archive.append(chunk).await?;
            }
            (self.pending).done(events.iter().map(|(seq, _)| (room.as_str(), *seq)));
            self.ensures.pop_front();
        }
        while let Some(front) = self.events.front() {
            if let Item::Delete(room, _) = front {
                let deleted = archive.delete(room).await;
                if let Some(Item::Delete(_, done)) = self.events.pop_front() {
                    let _ = done.send(deleted.clone());
                }
                deleted?;
                continue;
            }
            let batch: Vec<Archived> = self
                .events
                .iter()
                .take(BATCH)
                .map_while(|item| match item {
                    Item::Event(e) => Some(e.clone()),
                    Item::Delete(..) => None,
                })
                .collect();
            archive.append(&batch).await?;
            for item in self.events.drain(..batch.len()) {
                if let Item::Event(e) = item {
                    self.bytes -= e.frame.len();
                }
            }
            (self.pending).done(batch.iter().map(|e| (e.room.as_str(), e.seq)));
            crate::telemetry::metrics()
                .archived
                .increment(batch.len() as u64);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
