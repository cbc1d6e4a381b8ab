//! What every scenario shares: where to connect from and to, which part of
//! the load this process drives, the server samples, the timeline, the
//! moment sending begins and the progress bar.

use std::io::BufRead;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use tokio::time::Instant;

use crate::procstat::{self, Sample};
use crate::timeline::Timeline;
use crate::Common;

/// Time after the window for deliveries still in flight.
pub const DRAIN: Duration = Duration::from_secs(2);
/// Connections opened at once.
pub const CONNECT_PARALLELISM: usize = 256;

/// One process's run.
pub struct Run {
    /// The options.
    pub common: Common,
    /// Throughput and latency per second.
    pub timeline: Arc<Timeline>,
    /// The generator clock that send times are stamped with.
    pub start: Instant,
    /// (index, count) of this process among the generator processes.
    shard: (usize, usize),
}

impl Run {
    /// A run of these options.
    pub fn new(common: Common) -> Self {
        let seconds = (common.duration + DRAIN.as_secs_f64()).ceil() as usize + 5;
        let shard = common.shard.unwrap_or((0, 1));
        let warmup = common.warmup;
        Self {
            common,
            timeline: Arc::new(Timeline::with_warmup(seconds, warmup)),
            start: Instant::now(),
            shard,
        }
    }

    /// Whether this process drives unit `i` (a room, or a connection).
    pub fn mine(&self, i: usize) -> bool {
        i % self.shard.1 == self.shard.0
    }

    /// Whether this process is one of several, started by a parent.
    pub fn is_child(&self) -> bool {
        self.common.shard.is_some()
    }

    /// The gateway connection `i` goes to.
    pub fn gateway(&self, i: usize) -> String {
        self.common.gateway[i % self.common.gateway.len()].clone()
    }

    /// The local address connection `i` comes from.
    pub fn source(&self, i: usize) -> Option<IpAddr> {
        let sources = &self.common.source;
        (!sources.is_empty()).then(|| sources[(i / self.shard.1) % sources.len()])
    }

    /// The sending window.
    pub fn window(&self) -> Duration {
        Duration::from_secs_f64(self.common.duration)
    }

    /// A sample of the server processes, taken by the process that reports.
    pub fn sample(&self) -> Option<Sample> {
        (!self.common.server_pid.is_empty() && !self.is_child())
            .then(|| procstat::sample(&self.common.server_pid))
    }

    /// Every connection of this process is ready: a child says so and waits
    /// for its parent's word; then the timeline and the progress bar start.
    pub async fn begin(&self) -> Option<ProgressBar> {
        self.checkpoint("joined").await;
        self.timeline.begin();
        (!self.is_child()).then(|| progress(self.timeline.clone(), self.common.duration))
    }

    /// A point where the parent samples the server: a child says `tag` and
    /// waits for its parent's word.
    pub async fn checkpoint(&self, tag: &'static str) {
        if self.is_child() {
            println!("{tag}");
            tokio::task::spawn_blocking(|| {
                let mut line = String::new();
                let _ = std::io::stdin().lock().read_line(&mut line);
            })
            .await
            .ok();
        }
    }
}

/// A progress bar on stderr, drawn only on a terminal: elapsed time of the
/// window, deliveries in the last second and their p99.
pub fn progress(timeline: Arc<Timeline>, seconds: f64) -> ProgressBar {
    let bar = ProgressBar::new(seconds.ceil() as u64);
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{bar:30}] {pos}/{len}s {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let shown = bar.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        while !shown.is_finished() {
            tick.tick().await;
            let (delivered, p99) = timeline.last_second();
            shown.set_position(timeline.elapsed().min(seconds) as u64);
            shown.set_message(match p99 {
                Some(p99) => format!("{delivered} deliveries/s, p99 {p99:.1} ms"),
                None => format!("{delivered} deliveries/s"),
            });
        }
    });
    bar
}
