//! Results: a human summary and a JSON document.

use std::sync::Arc;

use hdrhistogram::Histogram;
use serde_json::{json, Value};

use crate::procstat::Sample;
use crate::timeline::Timeline;

/// What a run measured.
pub struct Report {
    /// Scenario name.
    pub scenario: &'static str,
    /// Parameters, as given.
    pub params: Value,
    /// Client connections.
    pub connections: usize,
    /// Length of the sending window, seconds.
    pub seconds: f64,
    /// Sends issued.
    pub sent: u64,
    /// Sends acked.
    pub acked: u64,
    /// Error frames received.
    pub errors: u64,
    /// Sends that got neither an ack nor an error.
    pub lost_acks: u64,
    /// Messages delivered to subscribers.
    pub delivered: u64,
    /// Deliveries owed by the acked sends.
    pub expected: u64,
    /// Seqs seen twice on one subscription.
    pub duplicates: u64,
    /// Seqs skipped on one subscription.
    pub gaps: u64,
    /// Connections closed by the server that did not come back.
    pub disconnects: u64,
    /// Connections closed by the server that came back (`--reconnect`).
    pub reconnects: u64,
    /// From a close to the room rejoined on a new connection, µs.
    pub resume: Histogram<u64>,
    /// Delivery latency, µs.
    pub latency: Histogram<u64>,
    /// Delivery latency of the connections that were never closed, µs.
    pub unmoved_latency: Histogram<u64>,
    /// Latency from send to ack, µs.
    pub ack_latency: Histogram<u64>,
    /// Server sample before connecting.
    pub server_idle: Option<Sample>,
    /// Server sample once every connection joined.
    pub server_joined: Option<Sample>,
    /// Server sample after the window and the drain.
    pub server_end: Option<Sample>,
    /// Throughput and latency per second, and membership events.
    pub timeline: Option<Arc<Timeline>>,
    /// From the first connect to the last `joined`, seconds.
    pub join_seconds: Option<f64>,
    /// Conflated ephemeral frames (`board.cursors`) received.
    pub batches: u64,
    /// The highest pace of batches one connection got (at its median gap),
    /// per second.
    pub batch_rate_max: f64,
    /// Latency of the newest position in each batch, µs.
    pub batch_latency: Histogram<u64>,
}

impl Report {
    /// An empty report of a scenario.
    pub fn new(
        scenario: &'static str,
        params: Value,
        connections: usize,
        seconds: f64,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            scenario,
            params,
            connections,
            seconds,
            sent: 0,
            acked: 0,
            errors: 0,
            lost_acks: 0,
            delivered: 0,
            expected: 0,
            duplicates: 0,
            gaps: 0,
            disconnects: 0,
            reconnects: 0,
            resume: Histogram::new_with_bounds(1, 60_000_000, 3)?,
            latency: Histogram::new_with_bounds(1, 60_000_000, 3)?,
            unmoved_latency: Histogram::new_with_bounds(1, 60_000_000, 3)?,
            ack_latency: Histogram::new_with_bounds(1, 60_000_000, 3)?,
            server_idle: None,
            server_joined: None,
            server_end: None,
            timeline: None,
            join_seconds: None,
            batches: 0,
            batch_rate_max: 0.0,
            batch_latency: Histogram::new_with_bounds(1, 60_000_000, 3)?,
        })
    }

    /// The counters and histograms, for a parent process to add up.
    pub fn wire(&self) -> Value {
        let values = |h: &Histogram<u64>| -> Vec<[u64; 2]> {
            h.iter_recorded()
                .map(|v| [v.value_iterated_to(), v.count_at_value()])
                .collect()
        };
        json!({
            "params": self.params,
            "connections": self.connections,
            "sent": self.sent, "acked": self.acked, "errors": self.errors,
            "lost_acks": self.lost_acks, "delivered": self.delivered,
            "expected": self.expected, "duplicates": self.duplicates,
            "gaps": self.gaps, "disconnects": self.disconnects, "reconnects": self.reconnects,
            "latency": values(&self.latency),
            "unmoved_latency": values(&self.unmoved_latency), "ack_latency": values(&self.ack_latency),
            "resume": values(&self.resume),
            "batches": self.batches, "batch_rate_max": self.batch_rate_max,
            "batch_latency": values(&self.batch_latency),
            "timeline": self.timeline.as_ref().map(|t| t.raw()),
        })
    }

    /// Adds a child process's counters and histograms.
    pub fn absorb(&mut self, wire: &Value) {
        let n = |key: &str| wire[key].as_u64().unwrap_or(0);
        self.sent += n("sent");
        self.acked += n("acked");
        self.errors += n("errors");
        self.lost_acks += n("lost_acks");
        self.delivered += n("delivered");
        self.expected += n("expected");
        self.duplicates += n("duplicates");
        self.gaps += n("gaps");
        self.disconnects += n("disconnects");
        self.reconnects += n("reconnects");
        self.batches += n("batches");
        let rate = wire["batch_rate_max"].as_f64().unwrap_or(0.0);
        self.batch_rate_max = self.batch_rate_max.max(rate);
        for (key, hist) in [
            ("latency", &mut self.latency),
            ("unmoved_latency", &mut self.unmoved_latency),
            ("ack_latency", &mut self.ack_latency),
            ("resume", &mut self.resume),
            ("batch_latency", &mut self.batch_latency),
        ] {
            for pair in wire[key].as_array().into_iter().flatten() {
                let (v, c) = (pair[0].as_u64().unwrap_or(1), pair[1].as_u64().unwrap_or(0));
                let _ = hist.record_n(v.max(1), c);
            }
        }
        if let (Some(t), Some(raw)) = (&self.timeline, wire.get("timeline")) {
            t.add_raw(raw);
        }
    }

    /// The chart of the run, when it has a timeline.
    pub fn chart(&self) -> Option<String> {
        let t = self.timeline.as_ref()?;
        let title = format!("roomring-loadtest {} {}", self.scenario, self.params);
        Some(crate::chart::svg(
            &title,
            &t.rows(self.seconds + crate::run::DRAIN.as_secs_f64()),
            &t.events(),
        ))
    }

    /// Lost deliveries.
    pub fn lost(&self) -> u64 {
        self.expected.saturating_sub(self.delivered)
    }

    /// Whether anything was lost, repeated, skipped or cut.
    pub fn failed(&self) -> bool {
        self.lost() > 0
            || self.lost_acks > 0
            || self.duplicates > 0
            || self.gaps > 0
            || self.disconnects > 0
    }

    fn server(&self) -> Option<Value> {
        let (idle, joined, end) = (self.server_idle?, self.server_joined?, self.server_end?);
        let cpu = end.cpu_secs - joined.cpu_secs;
        let joining = joined.cpu_secs - idle.cpu_secs;
        let per_conn =
            joined.rss_bytes.saturating_sub(idle.rss_bytes) as f64 / self.connections.max(1) as f64;
        Some(json!({
            "cpu_seconds": cpu,
            "cpu_seconds_per_million_deliveries": cpu / (self.delivered.max(1) as f64) * 1e6,
            "cpu_seconds_joining": joining,
            "cpu_ms_per_1k_joins": joining * 1e6 / self.connections.max(1) as f64,
            "rss_bytes_idle": idle.rss_bytes,
            "rss_bytes_joined": joined.rss_bytes,
            "rss_bytes_end": end.rss_bytes,
            "rss_bytes_per_connection": per_conn,
        }))
    }

    /// The JSON result.
    pub fn json(&self) -> Value {
        let q = |p: f64| self.latency.value_at_quantile(p) as f64 / 1000.0;
        let a = |p: f64| self.ack_latency.value_at_quantile(p) as f64 / 1000.0;
        let r = |p: f64| self.resume.value_at_quantile(p) as f64 / 1000.0;
        let b = |p: f64| self.batch_latency.value_at_quantile(p) as f64 / 1000.0;
        let connection_seconds = self.connections.max(1) as f64 * self.seconds;
        json!({
            "scenario": self.scenario,
            "params": self.params,
            "connections": self.connections,
            "seconds": self.seconds,
            "sent": self.sent,
            "acked": self.acked,
            "errors": self.errors,
            "lost_acks": self.lost_acks,
            "delivered": self.delivered,
            "expected": self.expected,
            "lost": self.lost(),
            "duplicates": self.duplicates,
            "gaps": self.gaps,
            "disconnects": self.disconnects,
            "reconnects": self.reconnects,
            "resume_ms": { "p50": r(0.5), "p99": r(0.99), "max": self.resume.max() as f64 / 1000.0 },
            "unmoved_latency_ms": {
                "p50": self.unmoved_latency.value_at_quantile(0.5) as f64 / 1000.0,
                "p99": self.unmoved_latency.value_at_quantile(0.99) as f64 / 1000.0,
            },
            "deliveries_per_second": self.delivered as f64 / self.seconds,
            "acks_per_second": self.acked as f64 / self.seconds,
            "latency_ms": { "p50": q(0.5), "p99": q(0.99), "p999": q(0.999), "max": self.latency.max() as f64 / 1000.0 },
            "ack_latency_ms": { "p50": a(0.5), "p99": a(0.99), "p999": a(0.999), "max": self.ack_latency.max() as f64 / 1000.0 },
            "join_seconds": self.join_seconds,
            "batches": self.batches,
            "batches_per_connection_second": self.batches as f64 / connection_seconds,
            "batch_rate_max": self.batch_rate_max,
            "batch_latency_ms": { "p50": b(0.5), "p99": b(0.99), "max": self.batch_latency.max() as f64 / 1000.0 },
            "server": self.server(),
            "timeline": self.timeline.as_ref().map(|t| t.json(self.seconds + crate::run::DRAIN.as_secs_f64())),
        })
    }

    /// Prints the human summary.
    pub fn print(&self) {
        let j = self.json();
        println!("scenario      {} {}", self.scenario, self.params);
        println!("connections   {}", self.connections);
        println!(
            "sent / acked  {} / {} ({} errors, {} lost acks)",
            self.sent, self.acked, self.errors, self.lost_acks
        );
        println!(
            "deliveries    {} of {} ({:.0}/s)",
            self.delivered,
            self.expected,
            j["deliveries_per_second"].as_f64().unwrap_or(0.0)
        );
        println!(
            "acks          {:.0}/s",
            j["acks_per_second"].as_f64().unwrap_or(0.0)
        );
        println!(
            "lost / dup / gap / disconnects  {} / {} / {} / {}",
            self.lost(),
            self.duplicates,
            self.gaps,
            self.disconnects
        );
        let l = &j["latency_ms"];
        println!(
            "latency ms    p50 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}",
            l["p50"].as_f64().unwrap_or(0.0),
            l["p99"].as_f64().unwrap_or(0.0),
            l["p999"].as_f64().unwrap_or(0.0),
            l["max"].as_f64().unwrap_or(0.0)
        );
        let a = &j["ack_latency_ms"];
        println!(
            "ack ms        p50 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}",
            a["p50"].as_f64().unwrap_or(0.0),
            a["p99"].as_f64().unwrap_or(0.0),
            a["p999"].as_f64().unwrap_or(0.0),
            a["max"].as_f64().unwrap_or(0.0)
        );
        if self.batches > 0 {
            let b = &j["batch_latency_ms"];
            println!(
                "batches       {} ({:.1} per connection per second; the fastest pace, at the median gap, {:.2}/s), latency p50 {:.2}  p99 {:.2} ms",
                self.batches,
                j["batches_per_connection_second"].as_f64().unwrap_or(0.0),
                self.batch_rate_max,
                b["p50"].as_f64().unwrap_or(0.0),
                b["p99"].as_f64().unwrap_or(0.0)
            );
        }
        if self.reconnects > 0 {
            let r = &j["resume_ms"];
            println!(
                "reconnects    {}, back in p50 {:.0}  p99 {:.0}  max {:.0} ms",
                self.reconnects,
                r["p50"].as_f64().unwrap_or(0.0),
                r["p99"].as_f64().unwrap_or(0.0),
                r["max"].as_f64().unwrap_or(0.0)
            );
            let u = &j["unmoved_latency_ms"];
            println!(
                "never closed  delivery latency p50 {:.2}  p99 {:.2} ms",
                u["p50"].as_f64().unwrap_or(0.0),
                u["p99"].as_f64().unwrap_or(0.0)
            );
        }
        if let Some(t) = &self.timeline {
            for (at, event) in t.events() {
                println!("event         {at:6.2}s {event}");
            }
        }
        if let Some(took) = self.join_seconds {
            let per_1k = j["server"]["cpu_ms_per_1k_joins"].as_f64();
            match per_1k {
                Some(ms) => {
                    println!("joined        in {took:.2} s, server {ms:.1} CPU-ms per 1k joins")
                }
                None => println!("joined        in {took:.2} s"),
            }
        }
        if let Some(s) = j["server"].as_object() {
            println!(
                "server        {:.2} CPU-s, {:.2} CPU-s per 1M deliveries, RSS {:.1} MiB, {:.0} B per connection",
                s["cpu_seconds"].as_f64().unwrap_or(0.0),
                s["cpu_seconds_per_million_deliveries"].as_f64().unwrap_or(0.0),
                s["rss_bytes_end"].as_f64().unwrap_or(0.0) / 1048576.0,
                s["rss_bytes_per_connection"].as_f64().unwrap_or(0.0),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn child(delivered: u64, latency_us: u64) -> Report {
        let mut r = Report::new("chat", json!({"rooms": 2}), 4, 1.0).expect("report");
        r.sent = delivered / 2;
        r.acked = delivered / 2;
        r.delivered = delivered;
        r.expected = delivered;
        for _ in 0..delivered {
            r.latency.record(latency_us).expect("record");
        }
        r
    }

    #[test]
    fn children_add_up() {
        let mut total = Report::new("chat", json!({}), 0, 1.0).expect("report");
        total.absorb(&child(100, 1_000).wire());
        total.absorb(&child(300, 9_000).wire());
        assert_eq!((total.sent, total.delivered, total.lost()), (200, 400, 0));
        assert_eq!(total.latency.len(), 400);
        assert!(total.latency.value_at_quantile(0.2) < 1_100);
        assert!(total.latency.value_at_quantile(0.5) > 8_900);
        assert!(!total.failed());
        let mut short = child(10, 1);
        short.expected = 12;
        assert!(short.failed());
    }
}
