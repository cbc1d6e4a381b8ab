//! Requests in flight on links, for every role that asks: a synchronous
//! table of calls by request id, each with the node it went to, its
//! deadline and the parts of its answer so far; and the one place a long
//! answer is cut into parts. Who asks keeps the table behind its own lock
//! and decides what a dropped link or a missed deadline means.

use std::sync::atomic::{AtomicU64, Ordering};

use bytes::{Bytes, BytesMut};

use super::codec::CHUNK;
use super::Rid;
use crate::ids::{Map, NodeId};

/// The parts of an answer so far: events by seq (a replay), then the bytes
/// of one long frame, in order.
#[derive(Debug, Default)]
pub struct Parts {
    /// Events, each with its seq.
    pub events: Vec<(u64, Bytes)>,
    /// The start of the answer's frame.
    pub frame: BytesMut,
}

impl Parts {
    /// Adds a part: an event when it has a seq, else more of the frame.
    pub fn add(&mut self, seq: Option<u64>, payload: &[u8]) {
        match seq {
            Some(seq) => self.events.push((seq, Bytes::copy_from_slice(payload))),
            None => self.frame.extend_from_slice(payload),
        }
    }

    /// The whole frame, owned: what came in parts (taken, not copied),
    /// then `last`.
    pub fn into_frame(&mut self, last: &[u8]) -> Bytes {
        self.frame.extend_from_slice(last);
        self.frame.split().freeze()
    }

    /// The whole frame, borrowed: what came in parts, then `last` (`last`
    /// itself when nothing came before it).
    pub fn whole<'a>(&'a mut self, last: &'a [u8]) -> &'a [u8] {
        if self.frame.is_empty() {
            return last;
        }
        self.frame.extend_from_slice(last);
        &self.frame
    }
}

/// One request in flight.
#[derive(Debug)]
pub struct Call<T> {
    /// The node it went to.
    pub to: NodeId,
    /// When it counts as unanswered, in the asker's clock (ms, or rounds
    /// of a sweep).
    pub due: u64,
    /// Its answer so far.
    pub parts: Parts,
    /// What the asker keeps with it.
    pub call: T,
}

/// Request ids of one asker, unique as long as it runs (a request routed
/// again keeps its own); taken without the table's lock.
#[derive(Debug)]
pub struct Ids(AtomicU64);

impl Default for Ids {
    fn default() -> Self {
        Self(AtomicU64::new(1))
    }
}

impl Ids {
    /// A fresh request id.
    pub fn next(&self) -> Rid {
        self.0.fetch_add(1, Ordering::Relaxed)
    }
}

/// The calls in flight of one asker, by request id.
#[derive(Debug)]
pub struct Calls<T> {
    in_flight: Map<Rid, Call<T>>,
}

impl<T> Default for Calls<T> {
    fn default() -> Self {
        Self {
            in_flight: Map::default(),
        }
    }
}

impl<T> Calls<T> {
    /// A request sent to `to`, unanswered at `due`.
    pub fn insert(&mut self, rid: Rid, to: NodeId, due: u64, call: T) {
        let parts = Parts::default();
        self.in_flight.insert(
            rid,
            Call {
                to,
                due,
                parts,
                call,
            },
        );
    }

    /// A part of the answer to `rid` (nothing if it is no longer awaited).
    pub fn part(&mut self, rid: Rid, seq: Option<u64>, payload: &[u8]) {
        if let Some(call) = self.in_flight.get_mut(&rid) {
            call.parts.add(seq, payload);
        }
    }

    /// The call `rid` answered (or given up), out of the table.
    pub fn take(&mut self, rid: Rid) -> Option<Call<T>> {
        self.in_flight.remove(&rid)
    }

    /// The calls that went to `to`, whose link dropped.
    pub fn sent_to(&mut self, to: &NodeId) -> Vec<(Rid, Call<T>)> {
        self.take_where(|call| &call.to == to)
    }

    /// The calls unanswered at `now`.
    pub fn overdue(&mut self, now: u64) -> Vec<(Rid, Call<T>)> {
        self.take_where(|call| call.due <= now)
    }

    /// The calls in flight, for a look.
    pub fn iter(&self) -> impl Iterator<Item = &Call<T>> {
        self.in_flight.values()
    }

    fn take_where(&mut self, pick: impl Fn(&Call<T>) -> bool) -> Vec<(Rid, Call<T>)> {
        let mut taken: Vec<(Rid, Call<T>)> =
            self.in_flight.extract_if(|_, call| pick(call)).collect();
        taken.sort_unstable_by_key(|(rid, _)| *rid);
        taken
    }
}

/// A long frame cut for the link: the parts that go first, each of
/// `CHUNK` bytes, and the last piece (at most `CHUNK`, empty for an empty
/// frame) that goes with the answer.
pub fn cut(frame: &[u8]) -> (std::slice::Chunks<'_, u8>, &[u8]) {
    let head = frame.len().saturating_sub(1) / CHUNK * CHUNK;
    (frame[..head].chunks(CHUNK), &frame[head..])
}

/// Items in slices of about `CHUNK` bytes each, as `size` counts an item
/// (at least one item a slice).
pub fn slices<T>(items: &[T], size: impl Fn(&T) -> usize) -> impl Iterator<Item = &[T]> {
    let mut rest = items;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut total = 0;
        let n = (rest.iter())
            .take_while(|item| {
                total += size(item);
                total <= CHUNK
            })
            .count()
            .max(1);
        let (head, tail) = rest.split_at(n);
        rest = tail;
        Some(head)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str) -> NodeId {
        NodeId::parse(id).expect("id")
    }

    #[test]
    fn calls_are_taken_by_answer_by_link_and_by_deadline() {
        let (ids, mut calls) = (Ids::default(), Calls::default());
        let (a, b, c) = (ids.next(), ids.next(), ids.next());
        assert!(a < b && b < c, "fresh ids");
        calls.insert(a, node("n1"), 10, "a");
        calls.insert(b, node("n2"), 20, "b");
        calls.insert(c, node("n1"), 30, "c");
        calls.part(b, None, b"he");
        calls.part(b, None, b"ll");
        calls.part(99, None, b"nobody waits for it");
        let mut answered = calls.take(b).expect("in flight");
        assert_eq!(answered.parts.whole(b"o"), b"hello");
        assert!(calls.take(b).is_none(), "taken once");
        let overdue: Vec<_> = calls.overdue(10).into_iter().map(|(rid, _)| rid).collect();
        assert_eq!(overdue, [a]);
        let dropped: Vec<_> = calls
            .sent_to(&node("n1"))
            .into_iter()
            .map(|(rid, c)| (rid, c.call))
            .collect();
        assert_eq!(dropped, [(c, "c")]);
        assert_eq!(calls.iter().count(), 0, "all taken");
    }

    #[test]
    fn parts_keep_events_apart_from_the_frame() {
        let mut parts = Parts::default();
        parts.add(Some(7), b"seven");
        parts.add(Some(8), b"eight");
        parts.add(None, b"{\"type\":");
        assert_eq!(parts.events.len(), 2);
        assert_eq!(parts.events[1], (8, Bytes::from_static(b"eight")));
        assert_eq!(parts.whole(b"1}"), b"{\"type\":1}");
        let mut parts = Parts::default();
        assert_eq!(parts.whole(b"x"), b"x");
        parts.add(None, b"ab");
        assert_eq!(parts.into_frame(b"c"), Bytes::from_static(b"abc"));
        assert!(parts.frame.is_empty(), "taken");
    }

    #[test]
    fn a_frame_is_cut_into_whole_chunks_and_a_last_piece() {
        for len in [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK, 2 * CHUNK + 5] {
            let frame: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let (parts, last) = cut(&frame);
            let parts: Vec<&[u8]> = parts.collect();
            assert!(parts.iter().all(|p| p.len() == CHUNK), "{len}");
            assert!(
                last.len() <= CHUNK && (len == 0 || !last.is_empty()),
                "{len}"
            );
            assert_eq!([parts.concat(), last.to_vec()].concat(), frame, "{len}");
        }
    }

    #[test]
    fn items_go_in_slices_of_about_a_chunk() {
        let items: Vec<usize> = vec![CHUNK / 2, CHUNK / 2, 1, CHUNK * 2, 3];
        let got: Vec<&[usize]> = slices(&items, |n| *n).collect();
        assert_eq!(got, [&items[..2], &items[2..3], &items[3..4], &items[4..]]);
        assert_eq!(slices::<usize>(&[], |n| *n).count(), 0);
    }
}
