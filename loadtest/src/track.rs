//! Per-connection accounting: seq order on one room, deliveries and their
//! latency, acks and theirs; added into the run's report at the end.

use std::sync::Arc;

use anyhow::Result;
use hdrhistogram::Histogram;

use crate::client::Body;
use crate::report::Report;
use crate::timeline::Timeline;

/// One connection's latencies, µs: allocated at the first (thousands of
/// connections that record nothing cost nothing), at two significant
/// digits (20 KiB each, where three take 140 KiB).
#[derive(Default)]
pub struct Latencies(Option<Histogram<u64>>);

impl Latencies {
    /// Records one value.
    pub fn record(&mut self, us: u64) {
        let h = self.0.get_or_insert_with(|| {
            Histogram::new_with_bounds(1, 60_000_000, 2).expect("valid bounds")
        });
        let _ = h.record(us.clamp(1, 60_000_000));
    }

    /// Adds what was recorded into `total`.
    pub fn add_to(&self, total: &mut Histogram<u64>) -> Result<()> {
        if let Some(h) = &self.0 {
            total.add(h)?;
        }
        Ok(())
    }

    /// Takes what was recorded out of `total` (which holds it).
    pub fn subtract_from(&self, total: &mut Histogram<u64>) -> Result<()> {
        if let Some(h) = &self.0 {
            total.subtract(h)?;
        }
        Ok(())
    }
}

/// What one connection saw.
pub struct Tracker {
    /// Frames sent that expect a reply (`send`: an ack or an error).
    pub sent: u64,
    /// Frames sent that expect no reply.
    pub sent_other: u64,
    /// Acks received.
    pub acked: u64,
    /// Error frames received.
    pub errors: u64,
    /// Deliveries received.
    pub delivered: u64,
    /// Seqs seen twice.
    pub duplicates: u64,
    /// Seqs skipped.
    pub gaps: u64,
    /// Whether the server closed the connection (and it did not come back).
    pub disconnected: bool,
    /// Times the connection was closed and came back (`--reconnect`).
    pub reconnects: u64,
    /// From a close to the room rejoined on a new connection, µs.
    pub resume: Latencies,
    /// Delivery latency, µs.
    pub latency: Latencies,
    /// The part of `latency` that waited for a sender to come back.
    late_latency: Latencies,
    /// Send-to-ack latency, µs.
    pub ack_latency: Latencies,
    /// Conflated ephemeral frames received.
    pub batches: u64,
    /// Latency of the newest entry of each batch, µs.
    pub batch_latency: Latencies,
    /// When the last batch came, and the gaps between batches, µs.
    batch_last: Option<u64>,
    batch_gaps: Vec<u32>,
    last: u64,
    timeline: Arc<Timeline>,
}

impl Tracker {
    /// A tracker for a subscription that joined at `seq`.
    pub fn new(timeline: Arc<Timeline>, seq: u64) -> Result<Self> {
        Ok(Self {
            sent: 0,
            sent_other: 0,
            acked: 0,
            errors: 0,
            delivered: 0,
            duplicates: 0,
            gaps: 0,
            disconnected: false,
            reconnects: 0,
            resume: Latencies::default(),
            latency: Latencies::default(),
            late_latency: Latencies::default(),
            ack_latency: Latencies::default(),
            batches: 0,
            batch_latency: Latencies::default(),
            batch_last: None,
            batch_gaps: Vec::new(),
            last: seq,
            timeline,
        })
    }

    /// A frame sent that expects an ack.
    pub fn sent(&mut self) {
        self.sent += 1;
        self.timeline.sent();
    }

    /// A frame sent that expects no reply.
    pub fn sent_other(&mut self) {
        self.sent_other += 1;
        self.timeline.sent();
    }

    /// A stored event at `seq`: checks order.
    pub fn seq(&mut self, seq: u64) {
        if seq <= self.last {
            self.duplicates += 1;
        } else {
            self.gaps += seq - self.last - 1;
            self.last = seq;
        }
    }

    /// The last seq seen, for resuming with `since`.
    pub fn last(&self) -> u64 {
        self.last
    }

    /// The connection came back `took` µs after it was closed.
    pub fn resumed(&mut self, took: u64) {
        self.reconnects += 1;
        self.resume.record(took.max(1));
    }

    /// A delivery sent at `at` (µs on the generator clock), received at `now`.
    pub fn delivered(&mut self, at: Option<u64>, now: u64) {
        self.delivered_after(at, now, false);
    }

    /// A delivery of the generator's `body`, received at `now`; a `late`
    /// one (its sender came back) is kept apart from the latency of the
    /// clients that were never closed.
    pub fn delivered_body(&mut self, body: Option<Body>, now: u64) {
        let (at, late) = body.map_or((None, false), |b| (b.at, b.late));
        self.delivered_after(at, now, late);
    }

    fn delivered_after(&mut self, at: Option<u64>, now: u64, late: bool) {
        self.delivered += 1;
        let latency = at.map(|at| now.saturating_sub(at).max(1));
        if let Some(us) = latency.filter(|_| self.timeline.warm()) {
            self.latency.record(us);
            if late {
                self.late_latency.record(us);
            }
        }
        self.timeline.delivered(latency);
    }

    /// A batch of ephemeral entries whose newest was sent at `at`, received
    /// at `now` (µs on the generator clock).
    pub fn batch(&mut self, at: Option<u64>, now: u64) {
        self.batches += 1;
        if let Some(last) = self.batch_last {
            self.batch_gaps
                .push(now.saturating_sub(last).min(u64::from(u32::MAX)) as u32);
        }
        self.batch_last = Some(now);
        if let Some(at) = at.filter(|_| self.timeline.warm()) {
            self.batch_latency.record(now.saturating_sub(at).max(1));
        }
    }

    /// Batches per second at the median gap between two (the pace the
    /// server kept: a delayed batch shortens one gap and lengthens the next,
    /// and moves the median not at all).
    pub fn batch_rate(&mut self) -> f64 {
        if self.batch_gaps.is_empty() {
            return 0.0;
        }
        let mid = self.batch_gaps.len() / 2;
        let (_, median, _) = self.batch_gaps.select_nth_unstable(mid);
        1e6 / f64::from((*median).max(1))
    }

    /// An ack of a frame sent at `at`, received at `now`.
    pub fn acked(&mut self, at: Option<u64>, now: u64) {
        self.acked += 1;
        if let Some(at) = at.filter(|_| self.timeline.warm()) {
            self.ack_latency.record(now.saturating_sub(at).max(1));
        }
    }

    /// Adds this connection into the report.
    pub fn add_to(mut self, report: &mut Report) -> Result<()> {
        report.sent += self.sent + self.sent_other;
        report.acked += self.acked;
        report.lost_acks += self.sent.saturating_sub(self.acked + self.errors);
        report.errors += self.errors;
        report.delivered += self.delivered;
        report.duplicates += self.duplicates;
        report.gaps += self.gaps;
        report.disconnects += u64::from(self.disconnected);
        report.reconnects += self.reconnects;
        report.batch_rate_max = report.batch_rate_max.max(self.batch_rate());
        self.resume.add_to(&mut report.resume)?;
        report.batches += self.batches;
        self.batch_latency.add_to(&mut report.batch_latency)?;
        if self.reconnects == 0 && !self.disconnected {
            // What a connection that stayed waited for the server, not for
            // a sender that was closed and came back.
            self.latency.add_to(&mut report.unmoved_latency)?;
            self.late_latency
                .subtract_from(&mut report.unmoved_latency)?;
        }
        self.latency.add_to(&mut report.latency)?;
        self.ack_latency.add_to(&mut report.ack_latency)?;
        Ok(())
    }
}

/// The send time a generator's client id carries (`N.MICROS`).
pub fn id_time(id: Option<&str>) -> Option<u64> {
    id?.split_once('.')?.1.parse().ok()
}
