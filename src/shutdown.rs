//! One shutdown story for every role: a `Trigger` that fires one
//! cancellation token (by being triggered or dropped) and tracks the tasks
//! its `Shutdown` listeners spawn, so that a role that stops waits for them
//! with a grace period instead of leaving them behind.

use std::future::Future;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::{CancellationToken, DropGuard};
use tokio_util::task::TaskTracker;

/// How long a role that stops waits for its tasks; each ends by itself
/// once the shutdown fires (its socket closed, its link dropped).
pub const TASK_GRACE: Duration = Duration::from_secs(2);

/// Fires the shutdown of everything listening on its token; fires when
/// dropped, too.
#[derive(Debug)]
pub struct Trigger {
    token: CancellationToken,
    tasks: TaskTracker,
}

/// Listens for shutdown and spawns tasks the trigger waits for; cheap to
/// clone into every task.
#[derive(Debug, Clone)]
pub struct Shutdown {
    token: CancellationToken,
    tasks: TaskTracker,
}

/// A new trigger and its first listener.
pub fn channel() -> (Trigger, Shutdown) {
    let trigger = Trigger {
        token: CancellationToken::new(),
        tasks: TaskTracker::new(),
    };
    let shutdown = trigger.subscribe();
    (trigger, shutdown)
}

impl Trigger {
    /// Fires the shutdown; listeners wake at once.
    pub fn fire(&self) {
        self.token.cancel();
    }

    /// A listener of this trigger.
    pub fn subscribe(&self) -> Shutdown {
        Shutdown {
            token: self.token.clone(),
            tasks: self.tasks.clone(),
        }
    }

    /// Fires the shutdown and waits up to `grace` for every task spawned
    /// through its listeners to end; says how many had not.
    pub async fn stopped(&self, grace: Duration) -> usize {
        self.fire();
        self.tasks.close();
        if tokio::time::timeout(grace, self.tasks.wait())
            .await
            .is_err()
        {
            tracing::debug!(
                left = self.tasks.len(),
                "tasks still running after the grace period"
            );
        }
        self.tasks.len()
    }
}

impl Drop for Trigger {
    fn drop(&mut self) {
        self.token.cancel();
    }
}

impl Shutdown {
    /// Whether the shutdown has fired.
    pub fn is_fired(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Waits until the shutdown fires or its trigger is dropped.
    pub async fn wait(&mut self) {
        self.token.cancelled().await;
    }

    /// Spawns a task its trigger waits for when it stops.
    pub fn spawn<F>(&self, task: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.tasks.spawn(task)
    }

    /// A listener for one task that can also be stopped alone: it fires
    /// with this one, or when the guard is dropped; what it spawns is
    /// tracked by the same trigger.
    pub fn child(&self) -> (Shutdown, DropGuard) {
        let token = self.token.child_token();
        let guard = token.clone().drop_guard();
        let child = Shutdown {
            token,
            tasks: self.tasks.clone(),
        };
        (child, guard)
    }
}

/// An error that ends a role from inside (another process took its member
/// id): kept for the role's `run` to return, with a wake-up for it.
#[derive(Debug)]
pub struct Fatal<E> {
    error: std::sync::Mutex<Option<E>>,
    raised: tokio::sync::Notify,
}

impl<E> Default for Fatal<E> {
    fn default() -> Self {
        Self {
            error: std::sync::Mutex::new(None),
            raised: tokio::sync::Notify::new(),
        }
    }
}

impl<E> Fatal<E> {
    /// Records the error (the first one stays) and wakes `raised`.
    pub fn raise(&self, error: E) {
        self.error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert(error);
        self.raised.notify_one();
    }

    /// The error raised, if any.
    pub fn take(&self) -> Option<E> {
        self.error.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    /// Waits until an error is raised.
    pub async fn raised(&self) {
        self.raised.notified().await;
    }
}

/// Waits for SIGINT or SIGTERM.
pub async fn signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn dropping_the_trigger_shuts_down() {
        let (trigger, mut shutdown) = super::channel();
        assert!(!shutdown.is_fired());
        drop(trigger);
        shutdown.wait().await;
    }

    #[tokio::test]
    async fn a_child_fires_alone_when_its_guard_drops_and_with_its_parent() {
        let (trigger, shutdown) = super::channel();
        let (mut alone, guard) = shutdown.child();
        let (with_parent, _guard) = shutdown.child();
        drop(guard);
        alone.wait().await;
        assert!(!shutdown.is_fired() && !with_parent.is_fired());
        trigger.fire();
        assert!(with_parent.is_fired());
    }

    #[tokio::test(start_paused = true)]
    async fn a_stop_waits_for_the_tasks_it_tracks_for_at_most_its_grace() {
        let (trigger, shutdown) = super::channel();
        let mut listening = shutdown.clone();
        let ends = shutdown.spawn(async move { listening.wait().await });
        let stuck = shutdown.spawn(std::future::pending::<()>());
        let started = tokio::time::Instant::now();
        let left = trigger.stopped(std::time::Duration::from_secs(2)).await;
        assert_eq!(left, 1, "the stuck task is left");
        assert!(ends.is_finished());
        assert!(!stuck.is_finished());
        assert_eq!(started.elapsed(), std::time::Duration::from_secs(2));
    }
}
