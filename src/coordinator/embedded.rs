//! The in-process coordinator for `dev` and tests: the member list behind a
//! mutex, a reaper task that expires unrenewed leases, and a `watch` channel
//! that publishes every change. Its members live in its own process, so a
//! stop of the whole process (`kill -STOP`, a laptop asleep) stops them all
//! alike: time that passed with nobody touching the list at all is added to
//! every lease instead of expiring them.
//!
//! Task tree: `Embedded::new` spawns one reaper where membership runs
//! (`isolated`); it holds a `Weak` to the state and ends when the last
//! `Embedded` is dropped.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use super::{CoordError, Lease, Member, MemberState, Membership, Role, View};
use crate::ids::{Epoch, NodeId};

/// The embedded coordinator.
pub struct Embedded {
    inner: Arc<Inner>,
}

struct Inner {
    /// Member list and leases; held only for short, non-async sections.
    state: Mutex<State>,
    /// Publishes the view; receivers never block it.
    view_tx: watch::Sender<Arc<View>>,
    ttl: Duration,
}

struct State {
    epoch: u64,
    next_generation: u64,
    members: BTreeMap<NodeId, (Member, Instant)>,
    /// When the list was last touched (a renewal, a join, the reaper).
    seen: Instant,
}

impl State {
    fn new() -> Self {
        Self {
            epoch: 0,
            next_generation: 0,
            members: BTreeMap::new(),
            seen: Instant::now(),
        }
    }

    /// Notes a touch at `now`. Touches come every `ttl / 4` at most apart
    /// while the process runs (the reaper's period); a longer silence was
    /// the whole process stopped, and every lease is moved on by it.
    fn touch(&mut self, now: Instant, ttl: Duration) {
        let silent = now.saturating_duration_since(self.seen);
        if silent > ttl / 2 {
            for (_, deadline) in self.members.values_mut() {
                *deadline += silent;
            }
        }
        self.seen = now;
    }
}

impl Embedded {
    /// A coordinator whose leases last `ttl`; must run inside a tokio runtime.
    pub fn new(ttl: Duration) -> Self {
        let (view_tx, _) = watch::channel(Arc::new(View::default()));
        let inner = Arc::new(Inner {
            state: Mutex::new(State::new()),
            view_tx,
            ttl,
        });
        super::isolated::spawn(reap(Arc::downgrade(&inner)));
        Self { inner }
    }
}

/// Expires lapsed leases until the coordinator is dropped.
async fn reap(inner: Weak<Inner>) {
    let period = match inner.upgrade() {
        Some(i) => i.ttl / 4,
        None => return,
    };
    loop {
        tokio::time::sleep(period).await;
        let Some(inner) = inner.upgrade() else { return };
        let now = Instant::now();
        let ttl = inner.ttl;
        inner.change(|s| {
            s.touch(now, ttl);
            let before = s.members.len();
            s.members.retain(|_, (_, deadline)| *deadline > now);
            s.members.len() != before
        });
    }
}

impl Inner {
    /// Applies `f`; if it reports a change, bumps the epoch and publishes.
    fn change(&self, f: impl FnOnce(&mut State) -> bool) -> bool {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if !f(&mut state) {
            return false;
        }
        state.epoch += 1;
        self.publish(&state);
        true
    }

    fn publish(&self, state: &State) {
        let view = View {
            epoch: Epoch(state.epoch),
            members: state.members.values().map(|(m, _)| m.clone()).collect(),
        };
        self.view_tx.send_replace(Arc::new(view));
    }
}

#[async_trait::async_trait]
impl Membership for Embedded {
    async fn join(&self, role: Role, id: &NodeId, addr: &str) -> Result<Lease, CoordError> {
        let now = Instant::now();
        let deadline = now + self.inner.ttl;
        let mut generation = 0;
        let ttl = self.inner.ttl;
        let joined = self.inner.change(|s| {
            s.touch(now, ttl);
            // A live lease on the id is another member's.
            if s.members.get(id).is_some_and(|(_, until)| *until > now) {
                return false;
            }
            s.next_generation += 1;
            generation = s.next_generation;
            let member = Member {
                id: id.clone(),
                role,
                addr: addr.to_string(),
                state: MemberState::Active,
                generation,
                load: 0,
            };
            s.members.insert(id.clone(), (member, deadline));
            true
        });
        if !joined {
            return Err(CoordError::InUse(id.clone()));
        }
        Ok(Lease { generation })
    }

    async fn renew(&self, id: &NodeId, lease: Lease, load: u64) -> Result<(), CoordError> {
        let mut state = self.inner.state.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        state.touch(now, self.inner.ttl);
        match state.members.get_mut(id) {
            Some((m, deadline)) if m.generation == lease.generation && *deadline > now => {
                *deadline = now + self.inner.ttl;
                if m.load != load {
                    m.load = load;
                    // Load is news for the cluster view, not a membership change.
                    self.inner.publish(&state);
                }
                Ok(())
            }
            _ => Err(CoordError::LeaseLost),
        }
    }

    async fn set_state(&self, id: &NodeId, new: MemberState) -> Result<(), CoordError> {
        let mut found = false;
        self.inner.change(|s| match s.members.get_mut(id) {
            Some((m, _)) => {
                found = true;
                std::mem::replace(&mut m.state, new) != new
            }
            None => false,
        });
        if found {
            Ok(())
        } else {
            Err(CoordError::NoMember(id.clone()))
        }
    }

    async fn leave(&self, id: &NodeId, lease: Lease) -> Result<(), CoordError> {
        self.inner.change(|s| match s.members.get(id) {
            Some((m, _)) if m.generation == lease.generation => s.members.remove(id).is_some(),
            _ => false,
        });
        Ok(())
    }

    fn watch(&self) -> watch::Receiver<Arc<View>> {
        self.inner.view_tx.subscribe()
    }

    fn lease_ttl(&self) -> Duration {
        self.inner.ttl
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: &str) -> Member {
        Member {
            id: NodeId::parse(id).unwrap(),
            role: Role::Node,
            addr: "127.0.0.1:1".into(),
            state: MemberState::Active,
            generation: 1,
            load: 0,
        }
    }

    #[test]
    fn a_silence_of_the_whole_process_moves_every_lease_on() {
        let ttl = Duration::from_secs(4);
        let mut s = State::new();
        let t0 = s.seen;
        let m = member("n1");
        s.members.insert(m.id.clone(), (m, t0 + ttl));
        let deadline = |s: &State| s.members.values().next().unwrap().1;
        s.touch(t0 + Duration::from_secs(1), ttl);
        assert_eq!(deadline(&s), t0 + ttl, "a running process: nothing moves");
        s.touch(t0 + Duration::from_secs(11), ttl);
        assert_eq!(
            deadline(&s),
            t0 + ttl + Duration::from_secs(10),
            "10 s with nobody touching the list: the lease moves on by them"
        );
    }
}
