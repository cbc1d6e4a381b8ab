//! Ephemeral events, conflated by the room so that what each subscriber
//! gets is bounded whatever the room's size: `typing` at most once a second
//! per user, cursors in one `board.cursors` batch per room at most every
//! 50 ms with the latest position of each user who moved. Pure: the caller
//! passes the time and sends what it is given.

use crate::ids::{Map, Sub, UserId};
use crate::protocol::server::{Cursor, ServerFrame};

use super::presence::{Pace, Pacer};

/// Least time between two `board.cursors` of one room, in ms.
pub const CURSORS_EVERY_MS: u64 = 50;
/// Least time between two `typing` of one user in one room, in ms.
pub const TYPING_EVERY_MS: u64 = 1000;
/// Typing times kept before the stale ones are dropped.
const TYPING_KEPT: usize = 256;

/// A cursor batch's frame, and the one connection it is kept from when
/// every cursor in it is that connection's own.
pub type Batch = (Vec<u8>, Option<Sub>);

/// The conflation state of one room.
#[derive(Debug, Clone)]
pub struct Ephemeral {
    /// When each user's last `typing` went out (ms).
    typing: Map<UserId, u64>,
    /// The latest position of each user who moved since the last batch,
    /// with the connection it came from.
    cursors: Map<UserId, (f64, f64, Sub)>,
    batches: Pacer,
}

impl Default for Ephemeral {
    fn default() -> Self {
        Self {
            typing: Map::default(),
            cursors: Map::default(),
            batches: Pacer::new(CURSORS_EVERY_MS),
        }
    }
}

impl Ephemeral {
    /// Whether a `typing` of `user` at `now` goes out.
    pub fn typing(&mut self, user: &UserId, now: u64) -> bool {
        if self
            .typing
            .get(user)
            .is_some_and(|&at| now < at + TYPING_EVERY_MS)
        {
            return false;
        }
        if self.typing.len() >= TYPING_KEPT {
            self.typing.retain(|_, at| now < *at + TYPING_EVERY_MS);
        }
        self.typing.insert(user.clone(), now);
        true
    }

    /// A cursor moved: the batch to send now, or when to ask again (`due`).
    pub fn cursor(
        &mut self,
        room: &str,
        sub: Sub,
        user: &UserId,
        (x, y): (f64, f64),
        now: u64,
    ) -> Result<Option<Batch>, u64> {
        match self.cursors.get_mut(user) {
            Some(c) => *c = (x, y, sub),
            None => {
                self.cursors.insert(user.clone(), (x, y, sub));
            }
        }
        match self.batches.offer(now) {
            Pace::Now => Ok(self.batch(room)),
            Pace::At(at) => Err(at),
        }
    }

    /// A user left the room: its cursor is not in the next batch.
    pub fn left(&mut self, user: &UserId) {
        self.cursors.remove(user);
        self.typing.remove(user);
    }

    /// The batch due at `now`, if one waits.
    pub fn due(&mut self, room: &str, now: u64) -> Option<Batch> {
        if self.batches.due(now) {
            self.batch(room)
        } else {
            None
        }
    }

    /// When the waiting batch is due.
    pub fn next(&self) -> Option<u64> {
        self.batches.next()
    }

    fn batch(&mut self, room: &str) -> Option<Batch> {
        let first = self.cursors.values().next()?.2;
        let skip = self.cursors.values().all(|c| c.2 == first).then_some(first);
        let mut cursors: Vec<Cursor<'_>> = self
            .cursors
            .iter()
            .map(|(user, (x, y, _))| Cursor {
                user: user.as_str(),
                x: *x,
                y: *y,
            })
            .collect();
        cursors.sort_unstable_by(|a, b| a.user.cmp(b.user));
        let frame = ServerFrame::BoardCursors { room, cursors }
            .encode()
            .into_bytes();
        self.cursors.clear();
        Some((frame, skip))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str) -> UserId {
        UserId::parse(name).unwrap()
    }

    fn sub(conn: u64) -> Sub {
        Sub { link: 1, conn }
    }

    fn cursors(frame: &[u8]) -> Vec<(String, f64)> {
        let v: serde_json::Value = serde_json::from_slice(frame).unwrap();
        assert_eq!(v["t"], "board.cursors");
        v["cursors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["user"].as_str().unwrap().to_string(),
                    c["x"].as_f64().unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn typing_goes_out_at_most_once_a_second_per_user() {
        let mut e = Ephemeral::default();
        let (ann, bob) = (user("ann"), user("bob"));
        assert!(e.typing(&ann, 0));
        assert!(!e.typing(&ann, 999));
        assert!(e.typing(&bob, 500), "per user");
        assert!(e.typing(&ann, 1000));
        for i in 0..1000 {
            e.typing(&user(&format!("u{i}")), 5000 + i);
        }
        assert!(e.typing.len() <= TYPING_KEPT + 1000, "stale ones dropped");
    }

    #[test]
    fn cursors_are_batched_with_the_latest_position_of_each_mover() {
        let mut e = Ephemeral::default();
        let (ann, bob, cat) = (user("ann"), user("bob"), user("cat"));
        let (frame, skip) = e
            .cursor("board:b", sub(1), &ann, (1.0, 0.0), 0)
            .unwrap()
            .unwrap();
        assert_eq!(cursors(&frame), [("ann".into(), 1.0)]);
        assert_eq!(skip, Some(sub(1)), "ann's own connection needs no echo");
        assert_eq!(e.cursor("board:b", sub(1), &ann, (2.0, 0.0), 10), Err(51));
        assert_eq!(e.cursor("board:b", sub(2), &bob, (5.0, 0.0), 20), Err(51));
        assert_eq!(e.cursor("board:b", sub(1), &ann, (3.0, 0.0), 30), Err(51));
        assert_eq!(e.cursor("board:b", sub(3), &cat, (7.0, 0.0), 40), Err(51));
        e.left(&cat);
        assert_eq!(e.due("board:b", 50), None);
        let (frame, skip) = e.due("board:b", 51).unwrap();
        assert_eq!(
            cursors(&frame),
            [("ann".into(), 3.0), ("bob".into(), 5.0)],
            "the last positions, the one who left dropped"
        );
        assert_eq!(skip, None, "two movers: everyone gets it");
        assert_eq!(e.due("board:b", 200), None, "nothing moved since");
        assert_eq!(e.next(), None);
    }

    #[test]
    fn a_room_of_many_movers_sends_at_most_one_batch_per_period() {
        let mut e = Ephemeral::default();
        let movers: Vec<UserId> = (0..300).map(|i| user(&format!("u{i}"))).collect();
        let mut batches = 0;
        // 300 users at 20 Hz for one second, in 1 ms steps.
        for now in 0..1000u64 {
            for (i, u) in movers.iter().enumerate() {
                if (now + i as u64).is_multiple_of(50)
                    && e.cursor("board:b", sub(i as u64), u, (now as f64, 0.0), now)
                        .is_ok_and(|b| b.is_some())
                {
                    batches += 1;
                }
            }
            if e.due("board:b", now).is_some() {
                batches += 1;
            }
        }
        assert!(batches <= 20, "{batches} batches in one second");
        assert!(batches >= 19);
    }
}
