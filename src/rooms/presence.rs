//! Who is online in a room, counted over connections, and what the room
//! tells its subscribers of it: a `presence` per user while at most `limit`
//! users are online; past it a `presence.count` at most once a second (and
//! always once after the last change), so that a join costs the room the
//! same whatever its size. Pure: the caller passes the time and sends what
//! it is told to.

use std::collections::BTreeMap;
use std::ops::Bound;

use crate::ids::UserId;

/// The default presence limit: past it a room sends counts, not names.
pub const PRESENCE_LIMIT: usize = 200;
pub use crate::protocol::NAMES_SHOWN;
/// Least time between two `presence.count` of one room, in ms.
pub const COUNT_EVERY_MS: u64 = 1000;

/// Sends at most once per `period` ms: what is offered in between is sent
/// once, when the period is over (the last state always goes out). Times
/// are whole ms, so a send waits until the clock has passed `sent + period`.
#[derive(Debug, Clone)]
pub struct Pacer {
    period: u64,
    /// When the last send went out (ms), if ever.
    sent: Option<u64>,
    /// Something waits to go out at `sent + period`.
    pending: bool,
}

/// What a pacer says of an offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pace {
    /// Send now.
    Now,
    /// Wait: ask again (`due`) at this time (ms).
    At(u64),
}

impl Pacer {
    /// A pacer of one send per `period` ms.
    pub fn new(period: u64) -> Self {
        Self {
            period,
            sent: None,
            pending: false,
        }
    }

    /// The first time after `sent` at which a send may go out: whole
    /// milliseconds, so one more than `sent + period`, for sends to be at
    /// least `period` apart however far into its millisecond `sent` was.
    fn after(&self, sent: u64) -> u64 {
        sent + self.period + 1
    }

    /// Something changed at `now`.
    pub fn offer(&mut self, now: u64) -> Pace {
        match self.sent {
            Some(sent) if now < self.after(sent) => {
                self.pending = true;
                Pace::At(self.after(sent))
            }
            _ => {
                self.sent = Some(now);
                self.pending = false;
                Pace::Now
            }
        }
    }

    /// Whether what waits may go out at `now` (it counts as sent).
    pub fn due(&mut self, now: u64) -> bool {
        let due = self.pending && self.sent.is_none_or(|s| now >= self.after(s));
        if due {
            self.pending = false;
            self.sent = Some(now);
        }
        due
    }

    /// When what waits is due, if anything waits.
    pub fn next(&self) -> Option<u64> {
        self.pending.then(|| self.sent.map_or(0, |s| self.after(s)))
    }

    /// Notes a send at `now` made whatever the pace; what waited is
    /// forgotten.
    pub fn sent(&mut self, now: u64) {
        self.sent = Some(now);
        self.pending = false;
    }
}

/// What the room tells its subscribers of one arrival or departure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Told {
    /// Nothing (another connection of the user stays, or a count waits).
    Nothing,
    /// `presence` for this user, online or not.
    User(bool),
    /// `presence.count` with this count, now.
    Count(usize),
    /// A `presence.count` waits until this time (ms).
    CountAt(u64),
}

/// The online users of one room.
#[derive(Debug, Clone)]
pub struct Presence {
    /// Connections per online user, in the order `presence.list` pages in.
    online: BTreeMap<UserId, u32>,
    limit: usize,
    count: Pacer,
}

impl Presence {
    /// Nobody online; past `limit` users the room counts instead of naming.
    pub fn new(limit: usize) -> Self {
        Self {
            online: BTreeMap::new(),
            limit,
            count: Pacer::new(COUNT_EVERY_MS),
        }
    }

    /// Online users.
    pub fn count(&self) -> usize {
        self.online.len()
    }

    /// Whether a user is online.
    pub fn get(&self, name: &str) -> Option<&UserId> {
        self.online.get_key_value(name).map(|(u, _)| u)
    }

    /// Online users in ascending order.
    pub fn users(&self) -> impl Iterator<Item = &UserId> {
        self.online.keys()
    }

    /// One more connection of `user`, at `now`.
    pub fn arrive(&mut self, user: &UserId, now: u64) -> Told {
        let conns = self.online.entry(user.clone()).or_default();
        *conns += 1;
        if *conns > 1 {
            return Told::Nothing;
        }
        if self.online.len() <= self.limit {
            Told::User(true)
        } else {
            self.pace(now)
        }
    }

    /// One more connection of `user`, told nobody (it moved here with
    /// its room: for everyone else nothing changed).
    pub fn adopt(&mut self, user: &UserId) {
        *self.online.entry(user.clone()).or_default() += 1;
    }

    /// One connection of `user` fewer, at `now`.
    pub fn depart(&mut self, user: &UserId, now: u64) -> Told {
        let Some(conns) = self.online.get_mut(user) else {
            return Told::Nothing;
        };
        *conns -= 1;
        if *conns > 0 {
            return Told::Nothing;
        }
        self.online.remove(user);
        let count = self.online.len();
        if count < self.limit {
            Told::User(false)
        } else if count == self.limit {
            // Back at the limit: one last count, then names again.
            self.count.sent(now);
            Told::Count(count)
        } else {
            self.pace(now)
        }
    }

    fn pace(&mut self, now: u64) -> Told {
        match self.count.offer(now) {
            Pace::Now => Told::Count(self.online.len()),
            Pace::At(at) => Told::CountAt(at),
        }
    }

    /// The count that is due at `now`, if one waits.
    pub fn due(&mut self, now: u64) -> Option<usize> {
        self.count.due(now).then_some(self.online.len())
    }

    /// When a waiting count is due.
    pub fn next(&self) -> Option<u64> {
        self.count.next()
    }

    /// At most `n` names: `first` (when online) first, then the others in
    /// ascending order.
    pub fn shown<'a>(&'a self, first: Option<&'a UserId>, n: usize) -> Vec<&'a str> {
        let first = first.filter(|f| self.online.contains_key(*f));
        let others = self
            .online
            .keys()
            .filter(|u| Some(*u) != first)
            .take(n.saturating_sub(usize::from(first.is_some())));
        first
            .into_iter()
            .chain(others)
            .map(UserId::as_str)
            .collect()
    }

    /// A page of at most `limit` users after `after` (exclusive), in
    /// ascending order, and whether more follow.
    pub fn page(&self, after: Option<&str>, limit: usize) -> (Vec<&str>, bool) {
        let from = match after {
            Some(after) => Bound::Excluded(after),
            None => Bound::Unbounded,
        };
        let mut users = self
            .online
            .range::<str, _>((from, Bound::Unbounded))
            .map(|(u, _)| u.as_str());
        let page: Vec<&str> = users.by_ref().take(limit).collect();
        let more = users.next().is_some();
        (page, more)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str) -> UserId {
        UserId::parse(name).unwrap()
    }

    fn users(n: usize) -> Vec<UserId> {
        (0..n).map(|i| user(&format!("u{i:05}"))).collect()
    }

    #[test]
    fn a_pacer_sends_at_once_then_at_most_once_a_period_and_always_the_last() {
        let mut p = Pacer::new(1000);
        assert_eq!(p.offer(10), Pace::Now);
        assert_eq!(p.offer(20), Pace::At(1011));
        assert_eq!(p.offer(500), Pace::At(1011));
        assert!(!p.due(1010), "not before the period is over");
        assert_eq!(p.next(), Some(1011));
        assert!(p.due(1011));
        assert!(!p.due(1012), "once");
        assert_eq!(p.next(), None);
        assert_eq!(p.offer(3000), Pace::Now, "a quiet period: at once again");
    }

    #[test]
    fn up_to_the_limit_users_are_named_past_it_counted_at_most_once_a_second() {
        let mut p = Presence::new(3);
        let u = users(6);
        for x in &u[..3] {
            assert_eq!(p.arrive(x, 0), Told::User(true));
        }
        assert_eq!(p.arrive(&u[3], 100), Told::Count(4), "the first past it");
        assert_eq!(p.arrive(&u[4], 200), Told::CountAt(1101));
        assert_eq!(p.arrive(&u[5], 300), Told::CountAt(1101));
        assert_eq!(p.due(1100), None);
        assert_eq!(p.due(1101), Some(6), "the last count always arrives");
        assert_eq!(p.due(5000), None, "and once");
        assert_eq!(p.arrive(&u[5], 5000), Told::Nothing, "a second connection");
        assert_eq!(p.depart(&u[5], 5000), Told::Nothing);
        assert_eq!(p.depart(&u[5], 5000), Told::Count(5));
        assert_eq!(p.depart(&u[4], 5100), Told::CountAt(6001));
        assert_eq!(
            p.depart(&u[3], 5200),
            Told::Count(3),
            "back at the limit: one count at once, the waiting one dropped"
        );
        assert_eq!(p.due(6001), None);
        assert_eq!(p.depart(&u[2], 5300), Told::User(false), "then names");
        assert_eq!(p.arrive(&u[2], 5400), Told::User(true));
    }

    #[test]
    fn the_first_name_shown_is_the_joiners_then_the_page_order() {
        let mut p = Presence::new(200);
        for x in users(5) {
            p.arrive(&x, 0);
        }
        let me = user("u00003");
        assert_eq!(
            p.shown(Some(&me), 3),
            ["u00003", "u00000", "u00001"],
            "the joiner, then others ascending"
        );
        assert_eq!(p.shown(None, 2), ["u00000", "u00001"]);
        assert_eq!(p.shown(Some(&user("gone")), 2), ["u00000", "u00001"]);
        assert_eq!(p.shown(Some(&me), 10).len(), 5);
    }

    #[test]
    fn pages_walk_every_user_once_in_ascending_order() {
        let mut p = Presence::new(200);
        let all = users(1001);
        for x in all.iter().rev() {
            p.arrive(x, 0);
        }
        let mut seen = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let (page, more) = p.page(after.as_deref(), 300);
            assert!(page.len() <= 300);
            seen.extend(page.iter().map(|s| s.to_string()));
            if !more {
                break;
            }
            after = page.last().map(|s| s.to_string());
        }
        let expected: Vec<String> = all.iter().map(|u| u.to_string()).collect();
        assert_eq!(seen, expected);
        assert_eq!(p.page(Some("zzz"), 10), (vec![], false));
        assert_eq!(p.page(Some("u00999"), 10).0, ["u01000"]);
        assert_eq!(
            p.page(Some("u00999x"), 10).0,
            ["u01000"],
            "after need not be online"
        );
    }
}
