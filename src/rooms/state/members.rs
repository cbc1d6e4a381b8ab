//! Who is in the room: connections subscribing and leaving (one by one, or
//! a whole gateway link at once), the presence they make (told as events,
//! or as a count past the presence limit, and paced), and presence pages.

use super::*;

impl RoomState {
    /// Subscribes a connection; its presence is announced to the others
    /// when it is the user's first (as a count past the presence limit).
    pub(super) fn subscribe(&mut self, origin: &Origin, now: u64, out: &mut Outcome) {
        self.adopted.remove(&origin.sub);
        if self.conns.insert(origin.sub, origin.user.clone()).is_some() {
            return;
        }
        *self.links.entry(origin.sub.link).or_default() += 1;
        let told = self.presence.arrive(&origin.user, now);
        self.tell(told, &origin.user, origin.sub, out);
    }

    /// Turns what presence says of a user's arrival or departure into
    /// events (kept from the connection `sub`) or a wake-up.
    pub(super) fn tell(&self, told: Told, user: &UserId, sub: Sub, out: &mut Outcome) {
        let room = self.room.as_str();
        match told {
            Told::Nothing => {}
            Told::User(online) => {
                let frame = ServerFrame::Presence {
                    room,
                    user: user.as_str(),
                    online,
                };
                out.events.push(Event::ephemeral(&frame, Some(sub)));
            }
            Told::Count(count) => {
                let frame = ServerFrame::PresenceCount { room, count };
                out.events.push(Event::ephemeral(&frame, None));
            }
            Told::CountAt(at) => out.wake = Some(out.wake.map_or(at, |w| w.min(at))),
        }
    }

    /// The paced events due at `now` (a `presence.count`, a cursor batch),
    /// and when to ask again.
    pub fn due(&mut self, now: u64) -> Outcome {
        let mut out = Outcome::default();
        if let Some(count) = self.presence.due(now) {
            let frame = ServerFrame::PresenceCount {
                room: self.room.as_str(),
                count,
            };
            out.events.push(Event::ephemeral(&frame, None));
        }
        if let Some((frame, skip)) = self.ephemeral.due(self.room.as_str(), now) {
            out.events.push(Event::unstored(frame, skip));
        }
        out.wake = [self.presence.next(), self.ephemeral.next()]
            .into_iter()
            .flatten()
            .min();
        out
    }

    pub(super) fn leave(&mut self, sub: Sub, now: u64) -> Outcome {
        let mut out = Outcome::default();
        self.adopted.remove(&sub);
        let Some(user) = self.conns.remove(&sub) else {
            return out;
        };
        if let Some(n) = self.links.get_mut(&sub.link) {
            *n -= 1;
            if *n == 0 {
                self.links.remove(&sub.link);
            }
        }
        let told = self.presence.depart(&user, now);
        if self.presence.get(user.as_str()).is_none() {
            self.ephemeral.left(&user);
        }
        self.tell(told, &user, sub, &mut out);
        out
    }

    /// Drops every connection of a gateway link that went away.
    pub fn drop_link(&mut self, link: LinkId, now: u64) -> Outcome {
        let subs: Vec<Sub> = self
            .conns
            .keys()
            .filter(|s| s.link == link)
            .copied()
            .collect();
        let mut out = Outcome::default();
        self.leave_each(subs, now, &mut out);
        out
    }

    /// Each of `subs` leaves; what the room tells of it goes into `out`.
    pub(super) fn leave_each(&mut self, subs: Vec<Sub>, now: u64, out: &mut Outcome) {
        for sub in subs {
            let left = self.leave(sub, now);
            out.events.extend(left.events);
            out.wake = [out.wake, left.wake].into_iter().flatten().min();
        }
    }

    /// A `presence.page` of at most `limit` online users after `after`.
    pub(super) fn presence_page(
        &self,
        id: Option<&str>,
        after: Option<&str>,
        limit: usize,
    ) -> Outcome {
        let (users, more) = self.presence.page(after, limit);
        let next = if more { users.last().copied() } else { None };
        let frame = ServerFrame::PresencePage {
            id,
            room: self.room.as_str(),
            users,
            next,
        };
        Outcome {
            reply: Some(frame.encode().into()),
            ..Outcome::default()
        }
    }
}
