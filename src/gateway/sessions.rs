//! The gateway's client connections, by id and by user: where replies and
//! notifications find their socket.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;

use super::outbox::{Close, Dirty, Outbox};
use crate::ids::{ConnId, Map, UserId};

struct Conn {
    user: UserId,
    out: Arc<Outbox>,
    expires: Option<u64>,
}

/// The open connections of one gateway.
#[derive(Default)]
pub(super) struct Sessions {
    next: AtomicU64,
    /// Held for map updates and look-ups only.
    conns: Mutex<Map<ConnId, Conn>>,
    /// Connections whose token expires, by expiry (seconds since the Unix
    /// epoch); only JWT connections are here.
    expiring: Mutex<BTreeSet<(u64, ConnId)>>,
    /// Heartbeat rounds so far (`heartbeat`).
    round: AtomicU32,
    /// Told whenever the last connection closes.
    emptied: tokio::sync::Notify,
}

impl Sessions {
    fn lock(&self) -> MutexGuard<'_, Map<ConnId, Conn>> {
        self.conns.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn expiring(&self) -> MutexGuard<'_, BTreeSet<(u64, ConnId)>> {
        self.expiring.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a new connection of `user`, whose token (if any) expires
    /// at `expires`.
    pub(super) fn open(&self, user: UserId, out: Arc<Outbox>, expires: Option<u64>) -> ConnId {
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        out.heard(self.round());
        self.lock().insert(id, Conn { user, out, expires });
        if let Some(at) = expires {
            self.expiring().insert((at, id));
        }
        crate::telemetry::metrics().connections.increment(1.0);
        id
    }

    /// Forgets a connection (its rooms must have been unsubscribed).
    pub(super) fn close(&self, id: ConnId) {
        let (conn, empty) = {
            let mut conns = self.lock();
            (conns.remove(&id), conns.is_empty())
        };
        let Some(conn) = conn else {
            return;
        };
        if empty {
            self.emptied.notify_waiters();
        }
        if let Some(at) = conn.expires {
            self.expiring().remove(&(at, id));
        }
        crate::telemetry::metrics().connections.decrement(1.0);
    }

    /// Asks every connection whose token expired by `now` (seconds since
    /// the Unix epoch) to close with 1008; returns how many.
    pub(super) fn close_expired(&self, now: u64) -> usize {
        let due: Vec<ConnId> = {
            let mut expiring = self.expiring();
            let mut due = Vec::new();
            while let Some(&(at, id)) = expiring.first() {
                if at > now {
                    break;
                }
                expiring.pop_first();
                due.push(id);
            }
            due
        };
        let conns = self.lock();
        for id in &due {
            if let Some(conn) = conns.get(id) {
                conn.out.close(Close {
                    code: super::websocket::close::POLICY,
                    reason: "token expired",
                });
            }
        }
        due.len()
    }

    /// The current heartbeat round: a connection marks it on its outbox
    /// whenever its client sends anything.
    pub(super) fn round(&self) -> u32 {
        self.round.load(Ordering::Relaxed)
    }

    /// One heartbeat round, run once per ping interval: a connection not
    /// heard from since the round before gets a ping, and one not heard
    /// from since two rounds before (so it did not answer that ping either)
    /// is closed. Returns (pinged, closed).
    pub(super) fn heartbeat(&self, ping: &Bytes) -> (usize, usize) {
        let round = self.round.fetch_add(1, Ordering::Relaxed).wrapping_add(1);
        let (mut pinged, mut closed) = (0, 0);
        let mut dirty = Dirty::default();
        for conn in self.lock().values() {
            match round.wrapping_sub(conn.out.last_heard()) {
                0 | 1 => {}
                2 => {
                    dirty.push(&conn.out, ping.clone());
                    pinged += 1;
                }
                _ => {
                    conn.out.close(Close {
                        code: super::websocket::close::GOING_AWAY,
                        reason: "no pong",
                    });
                    closed += 1;
                }
            }
        }
        dirty.flush();
        (pinged, closed)
    }

    /// How many connections are open.
    pub(super) fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no connection is open.
    pub(super) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A connection's user and outbox.
    pub(super) fn get(&self, id: ConnId) -> Option<(UserId, Arc<Outbox>)> {
        self.lock()
            .get(&id)
            .map(|c| (c.user.clone(), c.out.clone()))
    }

    /// Queues a frame for every connection of a user; returns how many.
    pub(super) fn send_to_user(&self, user: &str, frame: &Bytes, dirty: &mut Dirty) -> usize {
        let conns = self.lock();
        let mut sent = 0;
        for conn in conns.values().filter(|c| c.user.as_str() == user) {
            dirty.push(&conn.out, frame.clone());
            sent += 1;
        }
        sent
    }

    /// Queues a frame for every connection; returns how many.
    pub(super) fn send_to_all(&self, frame: &Bytes, dirty: &mut Dirty) -> usize {
        let conns = self.lock();
        for conn in conns.values() {
            dirty.push(&conn.out, frame.clone());
        }
        conns.len()
    }

    /// Returns once no connection is open.
    pub(super) async fn all_closed(&self) {
        loop {
            let emptied = self.emptied.notified();
            if self.is_empty() {
                return;
            }
            emptied.await;
        }
    }

    /// The open connections, oldest first.
    pub(super) fn ids(&self) -> Vec<ConnId> {
        let mut ids: Vec<ConnId> = self.lock().keys().copied().collect();
        ids.sort_unstable();
        ids
    }

    /// Asks one connection to close.
    pub(super) fn close_one(&self, id: ConnId, close: Close) {
        if let Some(conn) = self.lock().get(&id) {
            conn.out.close(close);
        }
    }

    /// Asks every connection to close.
    pub(super) fn close_all(&self, close: Close) {
        for conn in self.lock().values() {
            conn.out.close(close);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::outbox::OutboxLimits;

    async fn outbox() -> Arc<Outbox> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stream, _) = tokio::join!(tokio::net::TcpStream::connect(addr), listener.accept());
        Outbox::new(stream.unwrap(), OutboxLimits::default())
    }

    #[tokio::test]
    async fn all_closed_returns_when_the_last_connection_closes() {
        let sessions = Arc::new(Sessions::default());
        sessions.all_closed().await;
        let user = UserId::parse("ann").unwrap();
        let a = sessions.open(user.clone(), outbox().await, None);
        let b = sessions.open(user, outbox().await, None);
        let waiting = tokio::spawn({
            let sessions = sessions.clone();
            async move { sessions.all_closed().await }
        });
        sessions.close(a);
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "one is still open");
        sessions.close(b);
        tokio::time::timeout(std::time::Duration::from_secs(5), waiting)
            .await
            .expect("told when the last one closed")
            .unwrap();
        assert_eq!(sessions.ids(), Vec::<ConnId>::new());
    }
}
