//! Joins of one room gathered on their way to its owner, so that a storm of
//! joins (a gateway's members coming back after it restarted) subscribes a
//! room with a few requests, not one per member.
//!
//! One join request per room is on its way at a time, and, while joins
//! keep coming, one per `GATHER` unless `FULL` wait. The joins that come
//! meanwhile wait at the room's gate, each with the later operations of its
//! connection behind it (so that a connection's operations keep their
//! order), and go together when the one on its way is answered and either
//! `GATHER` has passed since it went or `FULL` wait. A join that finds no
//! gate goes at once. The owner
//! answers gathered joins once: what their `joined` frames share, and the
//! kept events any of them replays. Each joiner's `joined` is written here
//! from that answer, as the owner writes one `joined` alone.

use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use std::time::Duration;

use bytes::Bytes;
use serde_json::value::RawValue;
use tokio::time::Instant;

use super::outbox::Outbox;
use crate::ids::{ConnId, Map, RoomId, UserId};
use crate::protocol::server::{is_msg_frame, push_json_str};
use crate::protocol::{Joining, JOIN_HISTORY, NAMES_SHOWN};

/// The least time between two join requests of one room: a storm of
/// joins costs its owner one request per this long.
pub(super) const GATHER: Duration = Duration::from_millis(100);
/// Waiting joins that go without waiting for the rest of `GATHER`, so that
/// clients that join a few at a time are not slowed down.
pub(super) const FULL: usize = 128;

/// A connection's `join` waiting at its room's gate.
pub(super) struct Joiner {
    pub(super) conn: ConnId,
    pub(super) out: Arc<Outbox>,
    pub(super) user: UserId,
    /// The client frame's `id`.
    pub(super) id: Option<Box<str>>,
    pub(super) since: Option<u64>,
    pub(super) epoch: Option<Box<str>>,
}

impl Joiner {
    /// The join as the link carries it.
    pub(super) fn joining(&self) -> Joining<&str> {
        Joining {
            conn: self.conn,
            user: self.user.as_str(),
            since: self.since,
            epoch: self.epoch.as_deref(),
        }
    }
}

/// The gates of the rooms with a join on its way; `L` is an operation that
/// waits behind a joiner.
pub(super) struct Gates<L> {
    rooms: Mutex<Map<RoomId, Gate<L>>>,
    /// How many gates there are, so that operations pass without a lock
    /// while none is.
    open: AtomicUsize,
    /// Numbers timers, so that one that fired late is known.
    timers: AtomicU64,
}

struct Gate<L> {
    joiners: Vec<Joiner>,
    later: Vec<L>,
    /// When the last join request of the room went.
    sent: Instant,
    /// Whether one is on its way (else the waiting joins wait for a timer).
    on_its_way: bool,
    /// The timer the waiting joins go on, if one is armed.
    timer: Option<u64>,
}

/// What to do next at a room's gate.
pub(super) enum Next<L> {
    /// Nothing, now.
    Wait,
    /// Send these joins in one request, then the operations behind them.
    Go(Vec<Joiner>, Vec<L>),
    /// Arm a timer for this time, to `fire` with this number.
    At(Instant, u64),
}

impl<L> Default for Gates<L> {
    fn default() -> Self {
        Self {
            rooms: Mutex::default(),
            open: AtomicUsize::new(0),
            timers: AtomicU64::new(0),
        }
    }
}

impl<L> Gates<L> {
    fn lock(&self) -> MutexGuard<'_, Map<RoomId, Gate<L>>> {
        self.rooms.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A join of `room`: it goes at once when none is on its way (the
    /// room's gate opening behind it), else it waits, and the waiting go
    /// at once when they are `FULL` and the last request was answered.
    pub(super) fn enter(&self, room: &RoomId, joiner: Joiner) -> Next<L> {
        let mut rooms = self.lock();
        let Some(gate) = rooms.get_mut(room) else {
            let gate = Gate {
                joiners: Vec::new(),
                later: Vec::new(),
                sent: Instant::now(),
                on_its_way: true,
                timer: None,
            };
            rooms.insert(room.clone(), gate);
            self.open.fetch_add(1, Ordering::Relaxed);
            return Next::Go(vec![joiner], Vec::new());
        };
        gate.joiners.push(joiner);
        if gate.on_its_way || gate.joiners.len() < FULL {
            return Next::Wait;
        }
        gate.go()
    }

    /// An operation of `conn` on `room`: it waits (none returned) when the
    /// connection's join does, else it goes.
    pub(super) fn behind(&self, room: &str, conn: ConnId, op: L) -> Option<L> {
        if self.open.load(Ordering::Relaxed) == 0 {
            return Some(op);
        }
        let mut rooms = self.lock();
        match rooms.get_mut(room) {
            Some(gate) if gate.joiners.iter().any(|j| j.conn == conn) => {
                gate.later.push(op);
                None
            }
            _ => Some(op),
        }
    }

    /// The join request on its way for `room` was answered (or given up):
    /// the joins that waited go, once `GATHER` has passed since it went or
    /// `FULL` wait; when none waited, the gate closes.
    pub(super) fn answered(&self, room: &str) -> Next<L> {
        let mut rooms = self.lock();
        let Some(gate) = rooms.get_mut(room) else {
            return Next::Wait;
        };
        gate.on_its_way = false;
        if gate.joiners.is_empty() {
            rooms.remove(room);
            self.open.fetch_sub(1, Ordering::Relaxed);
            return Next::Wait;
        }
        let at = gate.sent + GATHER;
        if gate.joiners.len() >= FULL || Instant::now() >= at {
            return gate.go();
        }
        if gate.timer.is_some() {
            return Next::Wait;
        }
        let timer = self.timers.fetch_add(1, Ordering::Relaxed);
        gate.timer = Some(timer);
        Next::At(at, timer)
    }

    /// Timer `timer` of `room` fired: the joins waiting for it go.
    pub(super) fn fire(&self, room: &str, timer: u64) -> Next<L> {
        let mut rooms = self.lock();
        match rooms.get_mut(room) {
            Some(gate) if gate.timer == Some(timer) && !gate.on_its_way => gate.go(),
            _ => Next::Wait,
        }
    }
}

impl<L> Gate<L> {
    /// The waiting joins go now.
    fn go(&mut self) -> Next<L> {
        self.sent = Instant::now();
        self.on_its_way = true;
        self.timer = None;
        Next::Go(
            std::mem::take(&mut self.joiners),
            std::mem::take(&mut self.later),
        )
    }
}

/// What the owner answered gathered joins with: the fields after `history`
/// that their `joined` frames share (presence names no joiner first).
#[derive(serde::Deserialize)]
pub(super) struct Shared<'a> {
    #[serde(borrow)]
    epoch: Cow<'a, str>,
    #[serde(borrow)]
    online: Vec<Cow<'a, str>>,
    online_count: u64,
    #[serde(borrow)]
    reads: &'a RawValue,
    #[serde(borrow)]
    widgets: Option<&'a RawValue>,
    #[serde(borrow)]
    roles: Option<&'a RawValue>,
}

impl<'a> Shared<'a> {
    /// Reads the owner's answer.
    pub(super) fn parse(answer: &'a [u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(answer)
    }

    /// The history the answer belongs to.
    pub(super) fn epoch(&self) -> &str {
        &self.epoch
    }

    /// A joiner's `joined`, with the room's `seq` and the kept `events`
    /// (ascending, each with its seq) that the owner sent for all: the
    /// events after the joiner's `since` (all, marked truncated, when it
    /// counted in another history; its latest messages when it named no
    /// `since`), and the names online, the joiner's first.
    pub(super) fn joined(
        &self,
        room: &str,
        seq: u64,
        joiner: &Joiner,
        events: &[(u64, Bytes)],
    ) -> Vec<u8> {
        let other_history = joiner.epoch.as_deref().is_some_and(|e| e != self.epoch);
        let (history, truncated): (Vec<&[u8]>, bool) = match joiner.since {
            _ if other_history => (events.iter().map(|(_, f)| &f[..]).collect(), true),
            Some(since) => {
                let after = &events[events.partition_point(|(s, _)| *s <= since)..];
                let first = after.first().map_or(seq.saturating_add(1), |(s, _)| *s);
                let history = after.iter().map(|(_, f)| &f[..]).collect();
                (history, since.saturating_add(1) < first)
            }
            None => {
                let mut last: Vec<&[u8]> = events
                    .iter()
                    .rev()
                    .map(|(_, f)| &f[..])
                    .filter(|f| is_msg_frame(f))
                    .take(JOIN_HISTORY)
                    .collect();
                last.reverse();
                (last, false)
            }
        };
        let size: usize = history.iter().map(|f| f.len() + 1).sum::<usize>()
            + self.online.iter().map(|u| u.len() + 3).sum::<usize>()
            + self.reads.get().len()
            + self.widgets.map_or(0, |w| w.get().len())
            + self.roles.map_or(0, |r| r.get().len());
        let mut out = Vec::with_capacity(192 + room.len() + size);
        out.extend_from_slice(br#"{"t":"joined""#);
        if let Some(id) = &joiner.id {
            out.extend_from_slice(br#","id":"#);
            push_json_str(&mut out, id);
        }
        out.extend_from_slice(br#","room":"#);
        push_json_str(&mut out, room);
        out.extend_from_slice(br#","seq":"#);
        out.extend_from_slice(itoa::Buffer::new().format(seq).as_bytes());
        out.extend_from_slice(br#","history":["#);
        for (i, frame) in history.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(frame);
        }
        out.extend_from_slice(br#"],"epoch":"#);
        push_json_str(&mut out, &self.epoch);
        out.extend_from_slice(br#","online":["#);
        push_json_str(&mut out, joiner.user.as_str());
        let others = self
            .online
            .iter()
            .filter(|u| **u != joiner.user.as_str())
            .take(NAMES_SHOWN - 1);
        for user in others {
            out.push(b',');
            push_json_str(&mut out, user);
        }
        out.extend_from_slice(br#"],"online_count":"#);
        out.extend_from_slice(itoa::Buffer::new().format(self.online_count).as_bytes());
        out.extend_from_slice(br#","truncated":"#);
        out.extend_from_slice(if truncated { b"true" } else { b"false" });
        out.extend_from_slice(br#","reads":"#);
        out.extend_from_slice(self.reads.get().as_bytes());
        if let Some(widgets) = self.widgets {
            out.extend_from_slice(br#","widgets":"#);
            out.extend_from_slice(widgets.get().as_bytes());
        }
        if let Some(roles) = self.roles {
            out.extend_from_slice(br#","roles":"#);
            out.extend_from_slice(roles.get().as_bytes());
        }
        out.push(b'}');
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::outbox::OutboxLimits;

    async fn joiner(conn: ConnId, user: &str, since: Option<u64>, epoch: Option<&str>) -> Joiner {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stream, _) = tokio::join!(tokio::net::TcpStream::connect(addr), listener.accept());
        Joiner {
            conn,
            out: Outbox::new(stream.unwrap(), OutboxLimits::default()),
            user: UserId::parse(user).unwrap(),
            id: Some(format!("j{conn}").into()),
            since,
            epoch: epoch.map(Box::from),
        }
    }

    fn msg(seq: u64) -> (u64, Bytes) {
        let frame = crate::protocol::server::msg_frame("chat:a", seq, "u", b"\"hi\"", 1);
        (seq, frame.into())
    }

    fn board_change(seq: u64) -> (u64, Bytes) {
        let frame = format!(r#"{{"t":"board.changed","room":"chat:a","seq":{seq}}}"#);
        (seq, frame.into_bytes().into())
    }

    fn seqs(joined: &serde_json::Value) -> Vec<u64> {
        joined["history"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["seq"].as_u64().unwrap())
            .collect()
    }

    fn conns(next: Next<&'static str>) -> (Vec<ConnId>, Vec<&'static str>) {
        match next {
            Next::Go(joiners, later) => (joiners.iter().map(|j| j.conn).collect(), later),
            _ => panic!("expected joins to go"),
        }
    }

    fn waits(next: Next<&'static str>) -> bool {
        matches!(next, Next::Wait)
    }

    #[tokio::test(start_paused = true)]
    async fn joins_wait_behind_the_one_on_its_way_and_go_together_once_per_gather() {
        let gates: Gates<&str> = Gates::default();
        let room = RoomId::parse("chat:a").unwrap();
        assert_eq!(
            gates.behind("chat:a", 1, "send"),
            Some("send"),
            "no gate yet"
        );
        let first = gates.enter(&room, joiner(1, "a", None, None).await);
        assert_eq!(conns(first), (vec![1], vec![]), "the first goes at once");
        assert_eq!(
            gates.behind("chat:a", 1, "send"),
            Some("send"),
            "1 is on its way"
        );
        assert!(waits(gates.enter(&room, joiner(2, "b", None, None).await)));
        assert!(waits(gates.enter(&room, joiner(3, "c", None, None).await)));
        assert_eq!(gates.behind("chat:a", 2, "leave"), None, "2 waits");
        assert_eq!(gates.behind("chat:b", 2, "x"), Some("x"), "another room");

        // Answered at once: the others wait for the rest of `GATHER`.
        let Next::At(at, timer) = gates.answered("chat:a") else {
            panic!("expected a timer")
        };
        assert_eq!(at, Instant::now() + GATHER);
        assert!(waits(gates.answered("chat:a")), "one timer");
        assert!(waits(gates.enter(&room, joiner(4, "d", None, None).await)));
        tokio::time::advance(GATHER).await;
        assert!(waits(gates.fire("chat:a", timer + 1)), "not that timer");
        assert_eq!(
            conns(gates.fire("chat:a", timer)),
            (vec![2, 3, 4], vec!["leave"])
        );
        assert_eq!(
            gates.behind("chat:a", 2, "send"),
            Some("send"),
            "2 is on its way"
        );

        // Answered after `GATHER`: the next go at once.
        assert!(waits(gates.enter(&room, joiner(5, "e", None, None).await)));
        tokio::time::advance(GATHER).await;
        assert_eq!(conns(gates.answered("chat:a")), (vec![5], vec![]));
        assert!(waits(gates.answered("chat:a")), "nobody waited: closed");
        assert_eq!(
            conns(gates.enter(&room, joiner(6, "f", None, None).await)).0,
            [6]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_gate_goes_without_waiting_for_its_timer() {
        let gates: Gates<&str> = Gates::default();
        let room = RoomId::parse("chat:a").unwrap();
        conns(gates.enter(&room, joiner(0, "a", None, None).await));
        assert!(waits(gates.enter(&room, joiner(1, "b", None, None).await)));
        assert!(matches!(gates.answered("chat:a"), Next::At(..)));
        for conn in 2..FULL as ConnId {
            assert!(waits(
                gates.enter(&room, joiner(conn, "b", None, None).await)
            ));
        }
        let (full, _) = conns(gates.enter(&room, joiner(FULL as ConnId, "b", None, None).await));
        assert_eq!(full.len(), FULL);
        // While those are on their way, the next wait whatever their number.
        for conn in 0..FULL as ConnId * 2 {
            assert!(waits(
                gates.enter(&room, joiner(1000 + conn, "c", None, None).await)
            ));
        }
        assert_eq!(conns(gates.answered("chat:a")).0.len(), FULL * 2);
    }

    #[tokio::test]
    async fn each_joiner_gets_the_joined_the_owner_would_have_written() {
        let answer = br#"{"epoch":"e1","online":["a","b","c"],"online_count":3,"truncated":false,"reads":{"a":4}}"#;
        let shared = Shared::parse(answer).unwrap();
        let events: Vec<(u64, Bytes)> = (5..=9)
            .map(|s| if s == 7 { board_change(s) } else { msg(s) })
            .collect();
        let joined = |j: &Joiner| -> serde_json::Value {
            serde_json::from_slice(&shared.joined("chat:a", 9, j, &events)).unwrap()
        };

        let c = joined(&joiner(1, "c", Some(6), Some("e1")).await);
        assert_eq!(seqs(&c), [7, 8, 9], "everything after its since");
        assert_eq!(c["truncated"], false);
        assert_eq!(
            c["online"],
            serde_json::json!(["c", "a", "b"]),
            "the joiner first"
        );
        assert_eq!((c["id"].as_str(), c["seq"].as_u64()), (Some("j1"), Some(9)));
        assert_eq!(
            (c["online_count"].as_u64(), c["reads"]["a"].as_u64()),
            (Some(3), Some(4))
        );
        assert_eq!(
            (c["epoch"].as_str(), c["room"].as_str()),
            (Some("e1"), Some("chat:a"))
        );
        assert!(c.get("widgets").is_none());

        let old = joined(&joiner(2, "a", Some(2), None).await);
        assert_eq!(seqs(&old), [5, 6, 7, 8, 9]);
        assert_eq!(old["truncated"], true, "3 and 4 are missing");

        let ahead = joined(&joiner(3, "b", Some(9), None).await);
        assert_eq!(
            (seqs(&ahead), &ahead["truncated"]),
            (vec![], &serde_json::json!(false))
        );

        let other = joined(&joiner(4, "b", Some(8), Some("e0")).await);
        assert_eq!(seqs(&other), [5, 6, 7, 8, 9], "another history: all of it");
        assert_eq!(other["truncated"], true);

        let fresh = joined(&joiner(5, "d", None, None).await);
        assert_eq!(seqs(&fresh), [5, 6, 8, 9], "the latest messages only");
        assert_eq!(fresh["online"], serde_json::json!(["d", "a", "b", "c"]));
    }

    #[tokio::test]
    async fn a_board_joiner_gets_widgets_and_roles_and_names_stay_within_the_limit() {
        let names: Vec<String> = (0..200).map(|i| format!("u{i:03}")).collect();
        let answer = serde_json::json!({
            "epoch": "e", "online": names, "online_count": 5000, "truncated": false,
            "reads": {}, "widgets": [{"id": "w", "v": 1}], "roles": {"*": "editor"},
        });
        let answer = serde_json::to_vec(&answer).unwrap();
        let shared = Shared::parse(&answer).unwrap();
        let j = joiner(1, "zed", None, None).await;
        let joined: serde_json::Value =
            serde_json::from_slice(&shared.joined("board:b", 3, &j, &[])).unwrap();
        let online = joined["online"].as_array().unwrap();
        assert_eq!(online.len(), 200);
        assert_eq!(
            (online[0].as_str(), online[199].as_str()),
            (Some("zed"), Some("u198"))
        );
        assert_eq!(joined["widgets"][0]["id"], "w");
        assert_eq!(joined["roles"]["*"], "editor");
        assert_eq!(joined["online_count"], 5000);
    }
}
