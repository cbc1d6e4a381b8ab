//! Throughput and latency second by second, and the membership events of a
//! run, recorded lock-free by every connection task; drawn by `chart` and
//! shown live by the progress bar.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

use serde_json::{json, Value};
use tokio::time::Instant;

/// Latency buckets per power of two (so each is about 19 % wide).
const SUB: f64 = 4.0;
/// Buckets cover 1 µs to 2^27 µs (134 s).
const BUCKETS: usize = 27 * SUB as usize;

/// Counters of one second.
struct Second {
    sent: AtomicU64,
    delivered: AtomicU64,
    latency: Vec<AtomicU64>,
}

impl Second {
    fn new() -> Self {
        Self {
            sent: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            latency: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// The latency (µs) under which a fraction `q` of this second's deliveries
    /// arrived, or `None` when there were none.
    fn quantile(&self, q: f64) -> Option<f64> {
        let counts: Vec<u64> = self
            .latency
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = (q * total as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, c) in counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Some(2f64.powf((i + 1) as f64 / SUB));
            }
        }
        None
    }
}

/// A run's timeline.
pub struct Timeline {
    start: OnceLock<Instant>,
    /// Seconds after the start before latencies count in the run's totals.
    warmup: f64,
    seconds: Vec<Second>,
    events: Mutex<Vec<(f64, String)>>,
}

impl Timeline {
    /// A timeline `seconds` long (later records are dropped); it records
    /// nothing until it begins.
    pub fn new(seconds: usize) -> Self {
        Self::with_warmup(seconds, 0.0)
    }

    /// A timeline whose first `warmup` seconds do not count in the totals.
    pub fn with_warmup(seconds: usize, warmup: f64) -> Self {
        Self {
            start: OnceLock::new(),
            warmup,
            seconds: (0..seconds).map(|_| Second::new()).collect(),
            events: Mutex::new(Vec::new()),
        }
    }

    /// Starts the clock (when sending begins).
    pub fn begin(&self) {
        let _ = self.start.set(Instant::now());
    }

    fn now(&self) -> Option<&Second> {
        let start = self.start.get()?;
        self.seconds.get(start.elapsed().as_secs() as usize)
    }

    /// Whether the warm-up is over (latencies count in the totals).
    pub fn warm(&self) -> bool {
        self.start
            .get()
            .is_some_and(|s| s.elapsed().as_secs_f64() >= self.warmup)
    }

    /// Seconds since the start.
    pub fn elapsed(&self) -> f64 {
        self.start.get().map_or(0.0, |s| s.elapsed().as_secs_f64())
    }

    /// One frame sent.
    pub fn sent(&self) {
        if let Some(s) = self.now() {
            s.sent.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// One delivery, with its latency in µs when known.
    pub fn delivered(&self, latency_us: Option<u64>) {
        let Some(s) = self.now() else { return };
        s.delivered.fetch_add(1, Ordering::Relaxed);
        if let Some(us) = latency_us {
            let i = ((us.max(1) as f64).log2() * SUB) as usize;
            s.latency[i.min(BUCKETS - 1)].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Marks an event (a node added or drained) at the current time.
    pub fn event(&self, label: impl Into<String>) {
        let at = self.elapsed();
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((at, label.into()));
    }

    /// Deliveries in the last whole second and its p99 in ms, for the
    /// progress bar.
    pub fn last_second(&self) -> (u64, Option<f64>) {
        let i = self.elapsed() as usize;
        match i.checked_sub(1).and_then(|i| self.seconds.get(i)) {
            Some(s) => (
                s.delivered.load(Ordering::Relaxed),
                s.quantile(0.99).map(|us| us / 1000.0),
            ),
            None => (0, None),
        }
    }

    /// Rows of (second, sent, delivered, p50 ms, p99 ms) up to `until` seconds.
    pub fn rows(&self, until: f64) -> Vec<Row> {
        self.seconds
            .iter()
            .take(until.ceil() as usize)
            .enumerate()
            .map(|(i, s)| Row {
                second: i,
                sent: s.sent.load(Ordering::Relaxed),
                delivered: s.delivered.load(Ordering::Relaxed),
                p50_ms: s.quantile(0.5).map(|us| us / 1000.0),
                p99_ms: s.quantile(0.99).map(|us| us / 1000.0),
            })
            .collect()
    }

    /// The events, in time order.
    pub fn events(&self) -> Vec<(f64, String)> {
        let mut events = self
            .events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        events.sort_by(|a, b| a.0.total_cmp(&b.0));
        events
    }

    /// The raw counters, for a parent process to add up.
    pub fn raw(&self) -> Value {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        json!({
            "sent": self.seconds.iter().map(|s| load(&s.sent)).collect::<Vec<_>>(),
            "delivered": self.seconds.iter().map(|s| load(&s.delivered)).collect::<Vec<_>>(),
            "latency": self.seconds.iter().map(|s| s.latency.iter().map(load).collect::<Vec<_>>()).collect::<Vec<_>>(),
        })
    }

    /// Adds another process's raw counters.
    pub fn add_raw(&self, raw: &Value) {
        let add = |c: &AtomicU64, v: &Value| {
            c.fetch_add(v.as_u64().unwrap_or(0), Ordering::Relaxed);
        };
        let list = |key: &str| raw[key].as_array().cloned().unwrap_or_default();
        for (s, v) in self.seconds.iter().zip(list("sent")) {
            add(&s.sent, &v);
        }
        for (s, v) in self.seconds.iter().zip(list("delivered")) {
            add(&s.delivered, &v);
        }
        for (s, buckets) in self.seconds.iter().zip(list("latency")) {
            for (c, v) in s
                .latency
                .iter()
                .zip(buckets.as_array().into_iter().flatten())
            {
                add(c, v);
            }
        }
    }

    /// The timeline as JSON.
    pub fn json(&self, until: f64) -> Value {
        let rows: Vec<Value> = self
            .rows(until)
            .into_iter()
            .map(|r| json!([r.second, r.sent, r.delivered, r.p50_ms, r.p99_ms]))
            .collect();
        let events: Vec<Value> = self
            .events()
            .into_iter()
            .map(|(at, label)| json!({"at": at, "event": label}))
            .collect();
        json!({"columns": ["second", "sent", "delivered", "p50_ms", "p99_ms"], "rows": rows, "events": events})
    }
}

/// One second of a timeline.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// Seconds since the start.
    pub second: usize,
    /// Frames sent.
    pub sent: u64,
    /// Deliveries.
    pub delivered: u64,
    /// Median delivery latency.
    pub p50_ms: Option<f64>,
    /// 99th percentile delivery latency.
    pub p99_ms: Option<f64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_fall_in_the_right_bucket() {
        let t = Timeline::new(1);
        t.delivered(Some(1));
        assert_eq!(t.rows(1.0)[0].delivered, 0, "recorded before it began");
        t.begin();
        for _ in 0..98 {
            t.delivered(Some(1_000));
        }
        t.delivered(Some(50_000));
        t.delivered(Some(50_000));
        let row = &t.rows(1.0)[0];
        assert_eq!(row.delivered, 100);
        let p50 = row.p50_ms.unwrap();
        let p99 = row.p99_ms.unwrap();
        assert!((1.0..1.2).contains(&p50), "{p50}");
        assert!((50.0..60.0).contains(&p99), "{p99}");

        let cold = Timeline::with_warmup(1, 60.0);
        cold.begin();
        assert!(!cold.warm() && t.warm());

        let sum = Timeline::new(1);
        sum.add_raw(&t.raw());
        sum.add_raw(&t.raw());
        assert_eq!(sum.rows(1.0)[0].delivered, 200);
        assert_eq!(sum.rows(1.0)[0].p99_ms, Some(p99));
    }
}
