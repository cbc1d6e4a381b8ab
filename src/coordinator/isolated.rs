//! Membership on a thread of its own: the coordinator's I/O and every lease
//! renewal run on a small runtime that room work never touches, so that a
//! node or gateway that is busy (a join storm, a hot room) is slow, never
//! declared dead. A process that is not busy but stuck is another matter:
//! `Liveness` tells the renewals when the serving runtime has not run for
//! `HUNG_AFTER`, and they let the lease lapse.
//!
//! Task tree: `start` (once per process, from `main`) runs one thread with
//! a current-thread runtime until the process exits; `spawn` puts a task on
//! it (or, when it was never started, as in tests that run whole clusters
//! on one runtime, on the caller's runtime).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{CoordError, Coordinator, Lease, MemberState, Membership, Role, View};
use crate::ids::NodeId;

/// How long the serving runtime may go without running before a renewal
/// takes the process for stuck rather than busy.
pub const HUNG_AFTER: Duration = Duration::from_secs(10);
/// How often the serving runtime says it runs.
const BEAT: Duration = Duration::from_millis(100);

static RUNTIME: OnceLock<Handle> = OnceLock::new();

/// Starts the membership thread; later calls do nothing.
pub fn start() -> std::io::Result<()> {
    if RUNTIME.get().is_some() {
        return Ok(());
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let handle = runtime.handle().clone();
    std::thread::Builder::new()
        .name("membership".into())
        .spawn(move || runtime.block_on(std::future::pending::<()>()))?;
    let _ = RUNTIME.set(handle);
    Ok(())
}

/// Whether the membership thread runs (it was started).
pub fn is_started() -> bool {
    RUNTIME.get().is_some()
}

/// Runs a task where membership runs.
pub fn spawn<F>(task: F) -> JoinHandle<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    match RUNTIME.get() {
        Some(handle) => handle.spawn(task),
        None => tokio::spawn(task),
    }
}

/// Runs `task` where membership runs and waits for it.
async fn on_thread<T: Send + 'static>(
    task: impl std::future::Future<Output = Result<T, CoordError>> + Send + 'static,
) -> Result<T, CoordError> {
    spawn(task)
        .await
        .unwrap_or_else(|e| Err(CoordError::Unreachable(format!("membership task: {e}"))))
}

/// A coordinator whose every call runs on the membership thread, with the
/// connections it opens there.
pub struct Isolated(Coordinator);

impl Isolated {
    /// Wraps a coordinator that was made on the membership thread.
    pub fn wrap(inner: Coordinator) -> Coordinator {
        Arc::new(Self(inner))
    }
}

#[async_trait::async_trait]
impl Membership for Isolated {
    async fn join(&self, role: Role, id: &NodeId, addr: &str) -> Result<Lease, CoordError> {
        let (inner, id, addr) = (self.0.clone(), id.clone(), addr.to_string());
        on_thread(async move { inner.join(role, &id, &addr).await }).await
    }

    async fn renew(&self, id: &NodeId, lease: Lease, load: u64) -> Result<(), CoordError> {
        let (inner, id) = (self.0.clone(), id.clone());
        on_thread(async move { inner.renew(&id, lease, load).await }).await
    }

    async fn set_state(&self, id: &NodeId, state: MemberState) -> Result<(), CoordError> {
        let (inner, id) = (self.0.clone(), id.clone());
        on_thread(async move { inner.set_state(&id, state).await }).await
    }

    async fn leave(&self, id: &NodeId, lease: Lease) -> Result<(), CoordError> {
        let (inner, id) = (self.0.clone(), id.clone());
        on_thread(async move { inner.leave(&id, lease).await }).await
    }

    async fn revoke(&self, id: &NodeId, generation: u64) -> Result<(), CoordError> {
        let (inner, id) = (self.0.clone(), id.clone());
        on_thread(async move { inner.revoke(&id, generation).await }).await
    }

    fn watch(&self) -> watch::Receiver<Arc<View>> {
        self.0.watch()
    }

    fn lease_ttl(&self) -> Duration {
        self.0.lease_ttl()
    }
}

/// Notes a successful renewal now after the one at `last`
/// (`roomring_lease_gap_max_seconds`).
pub fn renewed(last: &mut tokio::time::Instant, worst: &mut Duration) {
    let now = tokio::time::Instant::now();
    let gap = now - *last;
    *last = now;
    if gap > *worst {
        *worst = gap;
        crate::telemetry::metrics()
            .lease_gap_max
            .set(gap.as_secs_f64());
    }
}

/// Whether the serving runtime runs: a task on it beats every `BEAT`, and
/// renewals on the membership thread look at the last beat. The longest
/// gap is `roomring_runtime_stall_max_seconds`: what a renewal on the
/// serving runtime would have waited at worst.
#[derive(Clone)]
pub struct Liveness {
    /// Milliseconds since `origin` of the last beat.
    last: Arc<AtomicU64>,
    /// The longest gap between two beats, in ms.
    worst: Arc<AtomicU64>,
    origin: std::time::Instant,
}

impl Liveness {
    /// Starts beating on the current (serving) runtime until `shutdown`.
    pub fn start(mut shutdown: crate::shutdown::Shutdown) -> Self {
        let live = Self {
            last: Arc::new(AtomicU64::new(0)),
            worst: Arc::new(AtomicU64::new(0)),
            origin: std::time::Instant::now(),
        };
        let beat = live.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(BEAT);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => beat.beat(),
                    _ = shutdown.wait() => return,
                }
            }
        });
        live
    }

    fn beat(&self) {
        let now = self.origin.elapsed().as_millis() as u64;
        let gap = now.saturating_sub(self.last.swap(now, Ordering::Relaxed));
        if gap > self.worst.fetch_max(gap, Ordering::Relaxed) {
            crate::telemetry::metrics()
                .runtime_stall_max
                .set(gap as f64 / 1000.0);
        }
    }

    /// How long the serving runtime has not run.
    pub fn stalled_for(&self) -> Duration {
        let now = self.origin.elapsed().as_millis() as u64;
        Duration::from_millis(now.saturating_sub(self.last.load(Ordering::Relaxed)))
    }

    /// Whether the serving runtime looks stuck rather than busy.
    pub fn is_hung(&self) -> bool {
        self.stalled_for() > HUNG_AFTER
    }
}
