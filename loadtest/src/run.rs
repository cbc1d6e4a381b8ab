//! What every scenario shares: where to connect from and to, which part of
//! the load this process drives, the server samples, the timeline, the
//! moment sending begins and the progress bar.

use std::io::BufRead;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;
use tokio::sync::Barrier;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::procstat::{self, Sample};
use crate::report::Report;
use crate::timeline::Timeline;
use crate::track::Tracker;
use crate::Common;

/// Time after the window for deliveries still in flight.
pub const DRAIN: Duration = Duration::from_secs(2);
/// Connections opened at once.
pub const CONNECT_PARALLELISM: usize = 256;

/// Seconds a timeline of these options covers: the window, the drain and
/// some slack.
pub fn timeline_seconds(common: &Common) -> usize {
    (common.duration + DRAIN.as_secs_f64()).ceil() as usize + 5
}

/// What was taken as sending began.
pub struct Started {
    server_idle: Option<Sample>,
    server_joined: Option<Sample>,
    join_seconds: f64,
    bar: Option<ProgressBar>,
}

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
        let seconds = timeline_seconds(&common);
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

    /// Generator processes in all.
    pub fn parts(&self) -> usize {
        self.shard.1
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

    /// Once every connection task has passed `joined`: samples the server,
    /// begins the timeline and lets the tasks send (`go`). `server_idle` is
    /// the sample taken before connecting.
    pub async fn start(
        &self,
        server_idle: Option<Sample>,
        joined: &Barrier,
        go: &Barrier,
    ) -> Started {
        joined.wait().await;
        let join_seconds = self.start.elapsed().as_secs_f64();
        let server_joined = self.sample();
        let bar = self.begin().await;
        go.wait().await;
        Started {
            server_idle,
            server_joined,
            join_seconds,
            bar,
        }
    }

    /// Waits for the connection tasks and adds what each saw into a report
    /// with the run's timeline and server samples; a task that failed
    /// counts as disconnected. The caller sets what was expected.
    pub async fn report(
        &self,
        started: Started,
        scenario: &'static str,
        params: Value,
        connections: usize,
        tasks: Vec<JoinHandle<Result<Tracker>>>,
    ) -> Result<Report> {
        let mut report = Report::new(scenario, params, connections, self.common.duration)?;
        report.server_idle = started.server_idle;
        report.server_joined = started.server_joined;
        report.join_seconds = Some(started.join_seconds);
        report.timeline = Some(self.timeline.clone());
        let mut failures = 0;
        for task in tasks {
            match task.await? {
                Ok(t) => t.add_to(&mut report)?,
                Err(e) => {
                    failures += 1;
                    if failures <= 3 {
                        eprintln!("connection failed: {e:#}");
                    }
                    report.disconnects += 1;
                }
            }
        }
        if let Some(bar) = started.bar {
            bar.finish_and_clear();
        }
        report.server_end = self.sample();
        Ok(report)
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
