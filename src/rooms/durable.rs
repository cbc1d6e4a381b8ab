//! The durability pipeline of a room with a store: outcomes are held until
//! every stored event they reflect is committed, so that nothing is acked,
//! shown or replayed that storage does not hold. One append is in flight at
//! a time; what is produced meanwhile goes out together in the next one.
//! Pure bookkeeping: the room drives it and does the I/O.

use std::collections::VecDeque;
use std::sync::Arc;

use super::state::Event;
use super::store::{Entry, RoomStore, Snapshot, SNAPSHOT_BYTES, SNAPSHOT_EVERY};

/// The durability state of one room.
pub(super) struct Durable<R> {
    pub(super) store: Arc<dyn RoomStore>,
    /// The room is rebuilt from storage (or was handed off durable).
    pub(super) loaded: bool,
    /// The last seq known to be committed.
    committed: u64,
    /// Entries not yet handed to the journal.
    unsent: Vec<Entry>,
    /// Outcomes in production order, each with the seq it must wait for.
    held: VecDeque<(u64, R)>,
    /// The seq the append in flight makes durable.
    in_flight: Option<u64>,
    /// Seq of the last snapshot written.
    snapshot_at: u64,
    /// Whether the next append must carry a snapshot: after a load or a
    /// hand-off the one storage holds may be far older than the state,
    /// and the log is trimmed by what follows the last one.
    snapshot_owed: bool,
    /// Encoded bytes of the events staged since that snapshot.
    bytes_since: usize,
}

/// An append to hand to the journal: up to which seq, what, a snapshot,
/// and how many entries of the log storage keeps at least.
pub(super) struct Batch {
    pub(super) upto: u64,
    /// The history the entries belong to (set by the room).
    pub(super) epoch: Arc<str>,
    pub(super) entries: Vec<Entry>,
    pub(super) snapshot: Option<Snapshot>,
    pub(super) keep: usize,
}

impl<R> Durable<R> {
    pub(super) fn new(store: Arc<dyn RoomStore>) -> Self {
        Self {
            store,
            loaded: false,
            committed: 0,
            unsent: Vec::new(),
            held: VecDeque::new(),
            in_flight: None,
            snapshot_at: 0,
            snapshot_owed: true,
            bytes_since: 0,
        }
    }

    /// The room's state now reflects storage up to `seq`.
    pub(super) fn loaded_at(&mut self, seq: u64) {
        self.loaded = true;
        self.committed = seq;
        self.snapshot_at = seq;
        self.snapshot_owed = true;
        self.bytes_since = 0;
    }

    /// The last seq known to be committed (everything up to it was shown).
    pub(super) fn shown(&self) -> u64 {
        self.committed
    }

    /// Queues the stored events among `events` for the next append.
    pub(super) fn stage(&mut self, events: &[Event]) {
        let entries = events.iter().filter_map(Event::entry);
        for entry in entries {
            self.bytes_since += entry.frame.len();
            self.unsent.push(entry);
        }
    }

    /// Holds an outcome produced when the room was at `upto`; returns what
    /// may go out now. While the room waits to reload after a failed append,
    /// its state past `committed` is void and will never be committed, so an
    /// outcome produced meanwhile (a link's connections leaving) waits for
    /// `committed` only: held for a seq nothing will commit, it would keep
    /// the room from ever settling (a freeze would never be answered).
    pub(super) fn hold(&mut self, upto: u64, outcome: R) -> Vec<R> {
        let upto = if self.loaded {
            upto
        } else {
            upto.min(self.committed)
        };
        self.held.push_back((upto, outcome));
        self.releasable()
    }

    fn releasable(&mut self) -> Vec<R> {
        let mut out = Vec::new();
        while self
            .held
            .front()
            .is_some_and(|(upto, _)| *upto <= self.committed)
        {
            if let Some((_, r)) = self.held.pop_front() {
                out.push(r);
            }
        }
        out
    }

    /// The next append, unless one is in flight or nothing is unsent;
    /// `snapshot` is taken when one is due (every `SNAPSHOT_EVERY` events
    /// or `SNAPSHOT_BYTES`); the room keeps `kept` events in memory.
    pub(super) fn next_batch(
        &mut self,
        snapshot: impl FnOnce() -> Snapshot,
        kept: usize,
    ) -> Option<Batch> {
        if self.in_flight.is_some() {
            return None;
        }
        let upto = self.unsent.last()?.seq;
        let due = self.snapshot_owed
            || upto >= self.snapshot_at + SNAPSHOT_EVERY
            || self.bytes_since >= SNAPSHOT_BYTES;
        let snapshot = due.then(snapshot);
        if snapshot.is_some() {
            self.snapshot_at = upto;
            self.snapshot_owed = false;
            self.bytes_since = 0;
        }
        let since_snapshot = usize::try_from(upto - self.snapshot_at).unwrap_or(usize::MAX);
        let keep = kept.max(since_snapshot);
        self.in_flight = Some(upto);
        Some(Batch {
            epoch: Arc::from(""),
            upto,
            entries: std::mem::take(&mut self.unsent),
            snapshot,
            keep,
        })
    }

    /// The append up to `upto` was committed: returns what may go out now.
    pub(super) fn committed(&mut self, upto: u64) -> Vec<R> {
        if self.in_flight == Some(upto) {
            self.in_flight = None;
        }
        self.committed = self.committed.max(upto);
        self.releasable()
    }

    /// The append up to `upto` failed: nothing past `committed` may be shown.
    /// Returns every held outcome, to be refused; the room must reload.
    pub(super) fn failed(&mut self, upto: u64) -> Vec<R> {
        if self.in_flight == Some(upto) {
            self.in_flight = None;
        }
        self.unsent.clear();
        self.loaded = false;
        self.held.drain(..).map(|(_, r)| r).collect()
    }

    /// Storage may hold more than the room does: it reloads before it
    /// serves again (nothing of its own waits: a frozen room is settled).
    pub(super) fn reload(&mut self) {
        self.loaded = false;
    }

    /// Nothing waits for storage.
    pub(super) fn settled(&self) -> bool {
        self.unsent.is_empty() && self.held.is_empty() && self.in_flight.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::UserId;
    use crate::rooms::store::MemoryStore;

    fn event(seq: u64) -> Event {
        Event {
            frame: format!("{{\"seq\":{seq}}}").into(),
            seq: Some(seq),
            skip: None,
            author: Some((
                UserId::parse("ann").unwrap(),
                Some(format!("m{seq}").into()),
            )),
        }
    }

    #[tokio::test]
    async fn outcomes_wait_for_the_commit_of_what_they_reflect() {
        let mut d: Durable<&str> = Durable::new(MemoryStore::new(10));
        d.loaded_at(0);
        d.stage(&[event(1)]);
        assert!(d.hold(1, "ack 1").is_empty(), "not yet durable");
        let first = d.next_batch(Snapshot::default, 1000).expect("an append");
        assert_eq!((first.upto, first.entries.len()), (1, 1));
        d.stage(&[event(2)]);
        assert!(d.hold(2, "ack 2").is_empty());
        assert!(
            d.next_batch(Snapshot::default, 1000).is_none(),
            "one in flight at a time"
        );
        // An ephemeral outcome behind a stored one waits its turn.
        assert!(d.hold(2, "typing").is_empty());
        assert_eq!(d.committed(1), vec!["ack 1"]);
        let second = d
            .next_batch(Snapshot::default, 1000)
            .expect("the next append");
        assert_eq!(second.entries[0].seq, 2);
        assert!(!d.settled());
        assert_eq!(d.committed(2), vec!["ack 2", "typing"]);
        assert!(d.settled());
    }

    #[tokio::test]
    async fn a_failed_append_refuses_everything_held_and_asks_for_a_reload() {
        let mut d: Durable<&str> = Durable::new(MemoryStore::new(10));
        d.loaded_at(5);
        assert_eq!(d.hold(5, "nothing stored"), vec!["nothing stored"]);
        d.stage(&[event(6)]);
        d.hold(6, "ack 6");
        let batch = d.next_batch(Snapshot::default, 1000).expect("append");
        d.stage(&[event(7)]);
        d.hold(7, "ack 7");
        assert_eq!(d.failed(batch.upto), vec!["ack 6", "ack 7"]);
        assert!(!d.loaded && d.settled());
    }

    #[tokio::test]
    async fn after_a_failed_append_an_outcome_at_the_void_seq_does_not_wedge_the_room() {
        let mut d: Durable<&str> = Durable::new(MemoryStore::new(10));
        d.loaded_at(5);
        d.stage(&[event(6)]);
        d.hold(6, "ack 6");
        let batch = d.next_batch(Snapshot::default, 1000).expect("append");
        assert_eq!(d.failed(batch.upto), vec!["ack 6"]);
        // A gateway link drops before the reload: its connections leave
        // while the room's memory still says seq 6.
        assert_eq!(d.hold(6, "presence: gone"), vec!["presence: gone"]);
        assert!(d.settled(), "a freeze can be answered");
    }

    #[tokio::test]
    async fn snapshots_go_with_every_few_hundred_entries() {
        let mut d: Durable<()> = Durable::new(MemoryStore::new(10));
        d.loaded_at(0);
        let mut snapshots = 0;
        for seq in 1..=2 * SNAPSHOT_EVERY {
            d.stage(&[event(seq)]);
            d.hold(seq, ());
            let batch = d
                .next_batch(
                    || Snapshot {
                        seq,
                        ..Snapshot::default()
                    },
                    1000,
                )
                .expect("append");
            snapshots += usize::from(batch.snapshot.is_some());
            d.committed(batch.upto);
        }
        assert_eq!(snapshots, 2);
    }

    #[tokio::test]
    async fn large_events_bring_the_snapshot_sooner_and_let_the_log_shrink_to_what_follows_it() {
        let mut d: Durable<()> = Durable::new(MemoryStore::new(1000));
        d.loaded_at(10);
        let big = |seq: u64| Event {
            frame: vec![b'x'; 1 << 20].into(),
            ..event(seq)
        };
        d.stage(&[event(11)]);
        let first = d.next_batch(Snapshot::default, 3).expect("append");
        assert!(
            first.snapshot.is_some(),
            "loaded: the stored snapshot may be far older, so the first append carries one"
        );
        assert_eq!(first.keep, 3);
        d.committed(first.upto);
        for seq in 12..=18 {
            d.stage(&[big(seq)]);
        }
        let second = d.next_batch(Snapshot::default, 3).expect("append");
        assert!(second.snapshot.is_none(), "7 MiB since the last");
        assert_eq!(second.keep, 7, "every event since the snapshot");
        d.committed(second.upto);
        d.stage(&[big(19)]);
        let third = d.next_batch(Snapshot::default, 3).expect("append");
        assert!(third.snapshot.is_some(), "8 MiB since the last: a snapshot");
        assert_eq!(third.keep, 3, "then what the room keeps in memory");
        d.committed(third.upto);
        for seq in 20..=23 {
            d.stage(&[event(seq)]);
            let batch = d.next_batch(Snapshot::default, 3).expect("append");
            assert!(batch.snapshot.is_none());
            assert_eq!(batch.keep, 3.max((seq - 19) as usize));
            d.committed(batch.upto);
        }
    }
}
