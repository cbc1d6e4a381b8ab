//! One shutdown story for every role: a `Trigger` that fires by being
//! triggered or dropped, and `Shutdown` listeners that each loop selects on.

use tokio::sync::watch;

/// Fires the shutdown of everything listening on its channel.
#[derive(Debug)]
pub struct Trigger {
    tx: watch::Sender<bool>,
}

/// Listens for shutdown; cheap to clone into every task.
#[derive(Debug, Clone)]
pub struct Shutdown {
    rx: watch::Receiver<bool>,
}

/// A new trigger and its first listener.
pub fn channel() -> (Trigger, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (Trigger { tx }, Shutdown { rx })
}

impl Trigger {
    /// Fires the shutdown; listeners wake at once.
    pub fn fire(&self) {
        self.tx.send_replace(true);
    }

    /// A listener of this trigger.
    pub fn subscribe(&self) -> Shutdown {
        Shutdown {
            rx: self.tx.subscribe(),
        }
    }
}

impl Shutdown {
    /// Whether the shutdown has fired.
    pub fn is_fired(&self) -> bool {
        *self.rx.borrow()
    }

    /// Waits until the shutdown fires or its trigger is dropped.
    pub async fn wait(&mut self) {
        // An error means the trigger is gone, which also means shut down.
        let _ = self.rx.wait_for(|fired| *fired).await;
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
}
