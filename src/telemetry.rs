//! Logs and metrics: the tracing subscriber, the process-wide Prometheus
//! recorder, installed once however many roles the process runs, and the
//! hot-path counters, registered once so that counting costs one atomic add.

use std::sync::OnceLock;

use metrics::{Counter, Gauge};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// Initializes logging to stderr, filtered by `RUST_LOG` (default `info`),
/// coloured only on a terminal (a container's or a file's log stays plain).
pub fn init_tracing() {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

/// The process's Prometheus handle, installing the recorder on first use.
pub fn prometheus() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        // Another recorder may already be installed (a host application); we
        // then still render our handle, which simply stays empty.
        let _ = metrics::set_global_recorder(recorder);
        handle
    })
}

/// Serves `GET /metrics` (this process's Prometheus text) on `listener`:
/// how an operator reads the metrics of a process without a client port (a
/// node's archive lag, its commits). Runs until the process ends.
pub async fn serve_metrics(listener: tokio::net::TcpListener) -> std::io::Result<()> {
    use axum::http::header;
    let text = || async {
        let text = prometheus().render();
        ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text)
    };
    let app = axum::Router::new().route("/metrics", axum::routing::get(text));
    axum::serve(listener, app).await
}

/// The counters and gauges every role updates.
pub struct Metrics {
    /// Client frames read by gateways.
    pub frames_in: Counter,
    /// Frames queued to clients by gateways.
    pub frames_out: Counter,
    /// Room events delivered to client connections.
    pub deliveries: Counter,
    /// Chat messages stored by rooms.
    pub messages_in: Counter,
    /// Group commits written to Redis.
    pub storage_commits: Counter,
    /// Open client connections.
    pub connections: Gauge,
    /// Times the coordinator's epoch was found gone back and carried forward.
    pub coordinator_resets: Counter,
    /// Panics caught in a connection's or a link's task.
    pub panics: Counter,
    /// Moves to another Redis primary named by the Sentinels.
    pub redis_failovers: Counter,
    /// Group commits acknowledged with fewer replicas than
    /// `--redis-wait-replicas`, because the primary had fewer connected.
    pub storage_unreplicated: Counter,
    /// Times a client connection stopped reading until its link to a node,
    /// buffering past its limit, took more (a stalled or slow node).
    pub link_waits: Counter,
    /// The longest the serving runtime went without running a 100 ms
    /// beat, in seconds: how long a task there could have waited.
    pub runtime_stall_max: Gauge,
    /// The longest time between two successful lease renewals, in seconds.
    pub lease_gap_max: Gauge,
    /// Resume requests nodes answered: one per room and gateway link (one
    /// per connection from a gateway of link version 1).
    pub resumes: Counter,
    /// Connections those requests subscribed again.
    pub resumed_connections: Counter,
    /// Join requests gateways sent to nodes: one per `join` passed on
    /// alone, and one per room for the joins gathered while another was on
    /// its way (link version 3 on).
    pub join_requests: Counter,
    /// Joins those requests carried.
    pub joins: Counter,
    /// Link connections a node closed before they authenticated.
    pub link_refusals: Counter,
    /// Events committed but not yet in the archive.
    pub archive_lag: Gauge,
    /// Events appended to the archive.
    pub archived: Counter,
    /// Events dropped from the archive's queue past its bound.
    pub archive_dropped: Counter,
}

/// The process's metrics, registered with the recorder on first use.
pub fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(|| {
        prometheus();
        Metrics {
            frames_in: metrics::counter!("roomring_frames_in_total"),
            frames_out: metrics::counter!("roomring_frames_out_total"),
            deliveries: metrics::counter!("roomring_deliveries_total"),
            messages_in: metrics::counter!("roomring_messages_in_total"),
            storage_commits: metrics::counter!("roomring_storage_commits_total"),
            connections: metrics::gauge!("roomring_connections"),
            coordinator_resets: metrics::counter!("roomring_coordinator_resets_total"),
            panics: metrics::counter!("roomring_panics_total"),
            redis_failovers: metrics::counter!("roomring_redis_failovers_total"),
            storage_unreplicated: metrics::counter!("roomring_storage_unreplicated_total"),
            link_waits: metrics::counter!("roomring_link_waits_total"),
            runtime_stall_max: metrics::gauge!("roomring_runtime_stall_max_seconds"),
            lease_gap_max: metrics::gauge!("roomring_lease_gap_max_seconds"),
            resumes: metrics::counter!("roomring_resumes_total"),
            resumed_connections: metrics::counter!("roomring_resumed_connections_total"),
            join_requests: metrics::counter!("roomring_join_requests_total"),
            joins: metrics::counter!("roomring_joins_total"),
            link_refusals: metrics::counter!("roomring_link_refusals_total"),
            archive_lag: metrics::gauge!("roomring_archive_lag"),
            archived: metrics::counter!("roomring_archived_total"),
            archive_dropped: metrics::counter!("roomring_archive_dropped_total"),
        }
    })
}

/// Runs a task's future so that a panic in it ends only that task: it is
/// logged and counted (`roomring_panics_total`), and the process and every
/// other connection, link and room go on.
pub async fn contained<F: std::future::Future<Output = ()>>(what: &'static str, task: F) {
    use futures_util::FutureExt;
    if let Err(panic) = std::panic::AssertUnwindSafe(task).catch_unwind().await {
        let message = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        metrics().panics.increment(1);
        tracing::error!(task = what, panic = %message, "a task panicked; it ended, nothing else did");
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn a_panic_is_contained_and_counted() {
        let before = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
        let task = tokio::spawn(super::contained("test", async { panic!("boom") }));
        let result = task.await;
        std::panic::set_hook(before);
        assert!(result.is_ok(), "the panic did not escape the task");
        let text = super::prometheus().render();
        assert!(text.contains("roomring_panics_total 1"), "{text}");
    }
}
