//! The gateway's part in keeping its lease (`coordinator::keeper`): it
//! reports its connection count, and stops if another process takes its id.

use std::sync::Arc;

use super::Gateway;
use crate::coordinator::isolated::Liveness;
use crate::coordinator::keeper::{self, Ended, Holder, Identity};
use crate::coordinator::{Lease, Role};
use crate::shutdown::Shutdown;

impl Holder for Gateway {
    fn load(&self) -> u64 {
        self.sessions.len() as u64
    }
}

/// Renews the gateway's membership until shutdown, then leaves.
pub(super) async fn keep(
    gw: Arc<Gateway>,
    lease: Lease,
    advertise: String,
    live: Liveness,
    shutdown: Shutdown,
) {
    let me = Identity {
        id: &gw.config.id,
        role: Role::Gateway,
        advertise: &advertise,
    };
    match keeper::keep(&gw.coordinator, me, &*gw, lease, live, shutdown).await {
        Ended::Taken(e) => {
            tracing::error!(error = %e, "stopping");
            gw.fatal.raise(e);
        }
        Ended::Stopped(lease) => keeper::leave(&gw.coordinator, &gw.config.id, lease).await,
    }
}
