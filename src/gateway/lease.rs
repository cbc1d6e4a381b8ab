//! The gateway's membership: its lease renewed (and taken again if it
//! lapsed) while it serves, left when it stops.

use std::sync::Arc;
use std::time::Duration;

use super::Gateway;
use crate::coordinator::isolated::{self, Liveness};
use crate::coordinator::{CoordError, Lease, Role};
use crate::shutdown::Shutdown;

/// Renews the gateway's membership (joining again if it lapsed) until
/// shutdown, then leaves; runs on the membership thread, and renews nothing
/// while the serving runtime is stuck (`live`).
pub(super) async fn keep(
    gw: Arc<Gateway>,
    mut lease: Lease,
    advertise: String,
    live: Liveness,
    mut shutdown: Shutdown,
) {
    let period = gw.coordinator.lease_ttl() / 3;
    let mut wait = period;
    let (mut renewed, mut worst) = (tokio::time::Instant::now(), Duration::ZERO);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.wait() => break,
        }
        wait = crate::coordinator::RENEW_RETRY;
        if live.is_hung() {
            tracing::error!(
                stalled_ms = live.stalled_for().as_millis() as u64,
                "the gateway's runtime is stuck; letting the lease lapse"
            );
            wait = period;
            continue;
        }
        let load = gw.sessions.len() as u64;
        match gw.coordinator.renew(&gw.config.id, lease, load).await {
            Ok(()) => {
                isolated::renewed(&mut renewed, &mut worst);
                wait = period;
            }
            Err(CoordError::LeaseLost) => match gw
                .coordinator
                .join(Role::Gateway, &gw.config.id, &advertise)
                .await
            {
                Ok(new) => {
                    lease = new;
                    wait = period;
                }
                Err(e @ CoordError::InUse(_)) => {
                    // Another process holds the id now: this one stops
                    // instead of taking the lease back.
                    tracing::error!(error = %e, "stopping");
                    gw.fatal.raise(e);
                    return;
                }
                Err(e) => tracing::warn!(error = %e, "joining again failed"),
            },
            Err(e) => tracing::warn!(error = %e, "lease renewal failed"),
        }
    }
    if let Err(e) = gw.coordinator.leave(&gw.config.id, lease).await {
        tracing::warn!(error = %e, "leaving the cluster failed");
    }
}
