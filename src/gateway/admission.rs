//! Who may open a client WebSocket, and how a stopping gateway lets its
//! clients go, so that a restart never turns into a reconnect storm.
//!
//! While it runs, a gateway takes at most `accept_rate` new connections a
//! second (a token bucket as deep as one second of them) and
//! `max_connections` at once, no more than its open-files limit allows.
//! Past the rate an upgrade waits its turn, up to a second; one that would
//! wait longer, or finds the gateway full, gets 503 with `Retry-After`
//! (a client told to come back in a second had better wait here, its
//! socket open, than go and come again). Once it stops, it
//! takes none (503 without `Retry-After`: go elsewhere) and closes each
//! socket once, spread evenly over the drain window.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use super::outbox::Close;
use super::sessions::Sessions;
use super::websocket;

/// The shortest drain window, for any number of connections.
pub(super) const DRAIN_MIN: Duration = Duration::from_secs(2);
/// The longest drain window the default gives.
pub(super) const DRAIN_MAX: Duration = Duration::from_secs(10);
/// Connections closed per second of the default drain window.
const DRAIN_PER_SEC: usize = 1000;
/// Seconds a client turned away by the rate is told to wait.
pub(super) const RETRY_RATE: u64 = 1;
/// The longest an upgrade waits for its turn under the rate.
pub(super) const QUEUE_MAX: Duration = Duration::from_secs(RETRY_RATE);
/// Seconds a client turned away by the connection cap is told to wait.
pub(super) const RETRY_FULL: u64 = 5;
/// Open files a gateway keeps for its links, listeners and logs.
const FILES_KEPT: usize = 256;

/// Why a WebSocket is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refusal {
    /// The gateway is stopping: the client should go to another one.
    Stopping,
    /// Too many new connections this second: retry after this many seconds.
    Rate(u64),
}

/// A budget of `rate` a second, in bursts of `burst`: a gateway's new
/// connections, or one connection's frames.
pub(super) struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    at: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub(super) fn new(rate: u32, burst: u32) -> Self {
        Self {
            rate: f64::from(rate),
            burst: f64::from(burst),
            tokens: f64::from(burst),
            at: Instant::now(),
        }
    }

    /// Takes a token, if there is one.
    pub(super) fn take(&mut self) -> bool {
        let ok = self.has();
        if ok {
            self.tokens -= 1.0;
        }
        ok
    }

    /// Whether a token is there, taking none.
    pub(super) fn has(&mut self) -> bool {
        self.wait_for_one() == Duration::ZERO
    }

    /// Takes the next token, now or once it comes: how long to wait for it,
    /// or `None` (nothing taken) if that is longer than `max`. Tokens taken
    /// ahead leave the bucket in debt: those who come after wait behind.
    pub(super) fn reserve(&mut self, max: Duration) -> Option<Duration> {
        let wait = self.wait_for_one();
        if wait > max {
            return None;
        }
        self.tokens -= 1.0;
        Some(wait)
    }

    /// How long until a token is there (zero: it is), taking none.
    pub(super) fn wait_for_one(&mut self) -> Duration {
        let now = Instant::now();
        let refill = now.duration_since(self.at).as_secs_f64() * self.rate;
        self.tokens = (self.tokens + refill).min(self.burst);
        self.at = now;
        let short = 1.0 - self.tokens;
        if short <= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(short / self.rate)
        }
    }
}

/// The connection rate and the stop of one gateway.
pub(super) struct Admission {
    /// New connections, a second's worth at most.
    bucket: Mutex<TokenBucket>,
    stopping: AtomicBool,
}

impl Admission {
    /// Admits `rate` new connections a second, in bursts of as many.
    pub(super) fn new(rate: u32) -> Self {
        let rate = rate.max(1);
        Self {
            bucket: Mutex::new(TokenBucket::new(rate, rate)),
            stopping: AtomicBool::new(false),
        }
    }

    /// A new connection: admitted once its turn comes (its token taken;
    /// the caller waits the time returned), or refused.
    pub(super) fn admit(&self) -> Result<Duration, Refusal> {
        self.check(true)
    }

    /// Whether a new connection would be admitted, taking nothing (a
    /// client asking why it was refused).
    pub(super) fn would_admit(&self) -> Result<(), Refusal> {
        self.check(false).map(drop)
    }

    fn check(&self, take: bool) -> Result<Duration, Refusal> {
        if self.is_stopping() {
            return Err(Refusal::Stopping);
        }
        let mut bucket = self.bucket.lock().unwrap_or_else(|e| e.into_inner());
        let turn = if take {
            bucket.reserve(QUEUE_MAX)
        } else {
            Some(bucket.wait_for_one()).filter(|wait| *wait <= QUEUE_MAX)
        };
        turn.ok_or(Refusal::Rate(RETRY_RATE))
    }

    /// The gateway stops: no connection is admitted any more.
    pub(super) fn stop(&self) {
        self.stopping.store(true, Ordering::Relaxed);
    }

    /// Whether the gateway stops.
    pub(super) fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Relaxed)
    }
}

/// The drain window for `conns` connections: the configured one, else
/// max(2 s, one second per 1000 connections), at most 10 s.
pub(super) fn drain_window(conns: usize, configured: Option<Duration>) -> Duration {
    configured.unwrap_or_else(|| {
        let secs = conns.div_ceil(DRAIN_PER_SEC) as u64;
        Duration::from_secs(secs).clamp(DRAIN_MIN, DRAIN_MAX)
    })
}

/// Closes every open connection once with 1012, spread evenly over the
/// drain window (`drain_window`).
pub(super) async fn close_paced(sessions: &Sessions, window: Option<Duration>) {
    let conns = sessions.ids();
    let window = drain_window(conns.len(), window);
    tracing::info!(
        connections = conns.len(),
        window_ms = window.as_millis() as u64,
        "closing clients over the drain window"
    );
    let close = Close {
        code: websocket::close::RESTART,
        reason: "service restart",
    };
    let start = Instant::now();
    let mut closed = 0;
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    while closed < conns.len() {
        tick.tick().await;
        let due = closed_by(conns.len(), start.elapsed(), window);
        for &conn in &conns[closed..due] {
            sessions.close_one(conn, close);
        }
        closed = due;
    }
}

/// How many of `n` sockets are closed `elapsed` into a drain `window`:
/// spread evenly, one every `window / n`, the first at once and the last
/// at the window's end.
pub(super) fn closed_by(n: usize, elapsed: Duration, window: Duration) -> usize {
    if n <= 1 || elapsed >= window {
        return n;
    }
    let step = window.as_secs_f64() / (n - 1) as f64;
    ((elapsed.as_secs_f64() / step) as usize + 1).min(n)
}

/// Lowers `max` to what the open-files limit holds, saying so.
pub(super) fn cap_connections(max: &mut usize) {
    if let Some(possible) = connections_possible().filter(|possible| *max > *possible) {
        tracing::info!(
            max_connections = *max,
            possible,
            "taking at most the connections the open-files limit holds"
        );
        *max = possible;
    }
}

/// The most connections this process can hold, by its open-files limit
/// (Linux's `/proc/self/limits`), keeping some for links and logs; `None`
/// where that limit cannot be read.
fn connections_possible() -> Option<usize> {
    possible_by(&std::fs::read_to_string("/proc/self/limits").ok()?)
}

/// The connections a process of these limits (as `/proc/self/limits`
/// shows them) can hold.
fn possible_by(limits: &str) -> Option<usize> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let soft = line.split_whitespace().nth(3)?;
    let files: usize = soft.parse().ok()?;
    Some(files.saturating_sub(FILES_KEPT).max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn past_the_rate_connections_wait_their_turn_up_to_a_second() {
        let ms = |ms| Ok(Duration::from_millis(ms));
        let admission = Admission::new(3);
        for _ in 0..3 {
            assert_eq!(admission.admit(), ms(0), "a second's worth at once");
        }
        let turns: Vec<_> = (0..3)
            .map(|_| admission.admit().map(|d| d.as_millis()))
            .collect();
        assert_eq!(
            turns,
            [Ok(333), Ok(666), Ok(1000)],
            "one every third of a second"
        );
        assert_eq!(admission.would_admit(), Err(Refusal::Rate(RETRY_RATE)));
        assert_eq!(
            admission.admit(),
            Err(Refusal::Rate(RETRY_RATE)),
            "longer than a second: come back later"
        );
        tokio::time::advance(Duration::from_millis(340)).await;
        assert_eq!(
            admission.would_admit(),
            Ok(()),
            "a third of a second: one more"
        );
        assert_eq!(admission.would_admit(), Ok(()), "asking takes nothing");
        assert!(admission
            .admit()
            .is_ok_and(|d| d > Duration::from_millis(900)));
        assert!(admission.admit().is_err());
        tokio::time::advance(Duration::from_secs(60)).await;
        for _ in 0..3 {
            assert_eq!(
                admission.admit(),
                ms(0),
                "a full bucket, not a minute's worth"
            );
        }
        assert_eq!(admission.admit().map(|d| d.as_millis()), Ok(333));
    }

    #[tokio::test(start_paused = true)]
    async fn a_stopping_gateway_admits_nobody() {
        let admission = Admission::new(100);
        admission.stop();
        assert_eq!(admission.admit(), Err(Refusal::Stopping));
        assert_eq!(admission.would_admit(), Err(Refusal::Stopping));
    }

    #[test]
    fn the_drain_window_grows_with_the_connections_within_2_and_10_seconds() {
        let secs = |n| drain_window(n, None).as_secs();
        assert_eq!(
            [secs(0), secs(1500), secs(2000), secs(4001), secs(50_000)],
            [2, 2, 2, 5, 10]
        );
        let set = Some(Duration::from_millis(300));
        assert_eq!(drain_window(50_000, set), Duration::from_millis(300));
    }

    #[test]
    fn closes_are_spread_evenly_over_the_window() {
        let w = Duration::from_secs(4);
        let at = |ms| closed_by(5, Duration::from_millis(ms), w);
        // One every second: at 0, 1, 2, 3 and 4 s.
        assert_eq!(
            [at(0), at(999), at(1000), at(2500), at(3999), at(4000)],
            [1, 1, 2, 3, 4, 5]
        );
        assert_eq!(closed_by(1, Duration::ZERO, w), 1);
        assert_eq!(closed_by(0, Duration::ZERO, w), 0);
        assert_eq!(closed_by(8000, Duration::ZERO, Duration::ZERO), 8000);
        let half = closed_by(8000, Duration::from_secs(2), w);
        assert!((3999..=4001).contains(&half), "{half}");
    }

    #[test]
    fn the_connections_possible_leave_room_for_links() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max open files            20000                20000                files\n";
        assert_eq!(possible_by(limits), Some(20_000 - FILES_KEPT));
        assert_eq!(
            possible_by("Max open files  unlimited unlimited files"),
            None
        );
        assert_eq!(possible_by("Max processes 10 10"), None);
    }
}
