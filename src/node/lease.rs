//! Keeps the node's membership lease: renews it, reports the room count, and
//! fences the node (it serves no room) as soon as the lease is in doubt, well
//! before it could expire and the ring hand its rooms to another node.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::{timeout, Instant};

use super::Node;
use crate::coordinator::isolated::{self, Liveness};
use crate::coordinator::{CoordError, Lease, Role};
use crate::shutdown::Shutdown;

/// Renews until shutdown, then leaves the cluster; while the node's
/// serving runtime is stuck (`live`), it renews nothing.
pub(super) async fn keep(
    node: Arc<Node>,
    mut lease: Lease,
    live: Liveness,
    mut shutdown: Shutdown,
) {
    let ttl = node.coordinator.lease_ttl();
    let period = ttl / 3;
    let id = node.config.id.clone();
    let mut renewed = Instant::now();
    let mut worst = Duration::ZERO;
    let mut wait = period;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.wait() => break,
        }
        // A failed renewal is tried again soon: Redis may be back (a
        // Sentinel failover) long before the next period.
        wait = crate::coordinator::RENEW_RETRY;
        if live.is_hung() {
            tracing::error!(
                stalled_ms = live.stalled_for().as_millis() as u64,
                "the node's runtime is stuck; letting the lease lapse"
            );
            wait = period;
            if renewed.elapsed() > ttl / 2 {
                node.registry.set_fenced(true);
            }
            continue;
        }
        let load = node.registry.len() as u64;
        match timeout(period, node.coordinator.renew(&id, lease, load)).await {
            Ok(Ok(())) => {
                isolated::renewed(&mut renewed, &mut worst);
                wait = period;
                node.registry.set_fenced(false);
            }
            Ok(Err(CoordError::LeaseLost)) => {
                tracing::warn!("lease lost; dropping rooms and joining again");
                node.registry.set_fenced(true);
                node.registry.clear();
                super::serve::close_links(&node);
                let joined = match rejoin(&node).await {
                    Err(e @ CoordError::InUse(_)) => {
                        // Another process holds the id now: this one stops
                        // for good instead of taking the lease back.
                        tracing::error!(error = %e, "stopping");
                        node.killed
                            .store(true, std::sync::atomic::Ordering::Release);
                        node.fatal.raise(e);
                        node.stop.fire();
                        return;
                    }
                    joined => joined.ok(),
                };
                if let Some(new) = joined {
                    lease = new;
                    node.generation
                        .store(lease.generation, std::sync::atomic::Ordering::Release);
                    node.fence();
                    renewed = Instant::now();
                    wait = period;
                    node.registry.set_fenced(false);
                }
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "lease renewal failed"),
            Err(_) => tracing::warn!("lease renewal timed out"),
        }
        if renewed.elapsed() > ttl / 2 {
            node.registry.set_fenced(true);
        }
    }
    if node.killed.load(std::sync::atomic::Ordering::Acquire) {
        return;
    }
    // The lease lapses by itself if the coordinator does not answer.
    match timeout(
        super::COORDINATOR_PATIENCE,
        node.coordinator.leave(&id, lease),
    )
    .await
    {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "leaving the cluster failed"),
        Err(_) => tracing::warn!("leaving the cluster: the coordinator did not answer"),
    }
}

async fn rejoin(node: &Node) -> Result<Lease, CoordError> {
    let join = node
        .coordinator
        .join(Role::Node, &node.config.id, &node.advertise);
    match timeout(Duration::from_secs(2), join).await {
        Ok(Ok(lease)) => Ok(lease),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "joining again failed");
            Err(e)
        }
        Err(_) => Err(CoordError::Unreachable("joining again timed out".into())),
    }
}
