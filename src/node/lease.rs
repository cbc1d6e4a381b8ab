//! The node's part in keeping its lease (`coordinator::keeper`): it reports
//! its room count, and fences itself (it serves no room) as soon as the
//! lease is in doubt, well before it could expire and the ring hand its
//! rooms to another node.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::Node;
use crate::coordinator::isolated::Liveness;
use crate::coordinator::keeper::{self, Ended, Holder, Identity};
use crate::coordinator::{Lease, Role};
use crate::shutdown::Shutdown;

impl Holder for Node {
    fn load(&self) -> u64 {
        self.registry.len() as u64
    }

    fn held(&self, rejoined: Option<u64>) {
        if let Some(generation) = rejoined {
            self.generation.store(generation, Ordering::Release);
            self.fence();
        }
        self.registry.set_fenced(false);
    }

    fn in_doubt(&self) {
        self.registry.set_fenced(true);
    }

    fn lost(&self) {
        tracing::debug!("dropping rooms");
        self.registry.set_fenced(true);
        self.registry.clear();
        super::serve::close_links(self);
    }
}

/// Renews until shutdown, then leaves the cluster (unless killed).
pub(super) async fn keep(node: Arc<Node>, lease: Lease, live: Liveness, shutdown: Shutdown) {
    let me = Identity {
        id: &node.config.id,
        role: Role::Node,
        advertise: &node.advertise,
    };
    match keeper::keep(&node.coordinator, me, &*node, lease, live, shutdown).await {
        Ended::Taken(e) => {
            tracing::error!(error = %e, "stopping");
            node.killed.store(true, Ordering::Release);
            node.fatal.raise(e);
            node.stop.fire();
        }
        Ended::Stopped(_) if node.killed.load(Ordering::Acquire) => {}
        Ended::Stopped(lease) => keeper::leave(&node.coordinator, &node.config.id, lease).await,
    }
}
