//! A member's lease kept while it serves, for nodes and gateways alike:
//! renewed every third of its TTL (again soon after a failure: Redis may be
//! back from a failover long before the next period), taken again when it
//! lapsed, nothing renewed while the serving runtime is stuck, and left
//! when the member stops. What a member does at each turn (a node fences
//! itself) is its `Holder`'s.

use std::time::Duration;

use tokio::time::{timeout, Instant};

use super::isolated::{self, Liveness};
use super::{CoordError, Coordinator, Lease, Role, RENEW_RETRY};
use crate::ids::NodeId;
use crate::shutdown::Shutdown;

/// How long joining again may take before the next try.
const REJOIN_WITHIN: Duration = Duration::from_secs(2);

/// How long a stopping member waits for the coordinator (to let it leave,
/// to mark it draining); past it, its lease lapses by itself.
pub const PATIENCE: Duration = Duration::from_secs(5);

/// Who holds a lease, and what it does as the lease fares.
pub trait Holder: Send + Sync {
    /// What it reports with each renewal (rooms, connections).
    fn load(&self) -> u64;
    /// The lease is renewed, or taken again with `generation`.
    fn held(&self, _rejoined: Option<u64>) {}
    /// The lease may have lapsed (no renewal for half its TTL).
    fn in_doubt(&self) {}
    /// The lease lapsed: the member is no longer on the ring.
    fn lost(&self) {}
}

/// Who the lease is for.
pub struct Identity<'a> {
    /// The member's id.
    pub id: &'a NodeId,
    /// What it is.
    pub role: Role,
    /// Where it is reached.
    pub advertise: &'a str,
}

/// How keeping a lease ended.
pub enum Ended {
    /// The member stops; its lease is still to leave.
    Stopped(Lease),
    /// Another process took the member's id: this one stops for good.
    Taken(CoordError),
}

/// Renews `lease` until `shutdown` or until another process takes the id.
pub async fn keep(
    coordinator: &Coordinator,
    me: Identity<'_>,
    holder: &dyn Holder,
    mut lease: Lease,
    live: Liveness,
    mut shutdown: Shutdown,
) -> Ended {
    let ttl = coordinator.lease_ttl();
    let period = ttl / 3;
    let (mut renewed, mut worst) = (Instant::now(), Duration::ZERO);
    let mut wait = period;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.wait() => return Ended::Stopped(lease),
        }
        wait = RENEW_RETRY;
        if live.is_hung() {
            tracing::error!(
                stalled_ms = live.stalled_for().as_millis() as u64,
                "the runtime is stuck; letting the lease lapse"
            );
            wait = period;
        } else {
            let renewal = coordinator.renew(me.id, lease, holder.load());
            match timeout(period, renewal).await {
                Ok(Ok(())) => {
                    isolated::renewed(&mut renewed, &mut worst);
                    wait = period;
                    holder.held(None);
                }
                Ok(Err(CoordError::LeaseLost)) => {
                    tracing::warn!("lease lost; joining again");
                    holder.lost();
                    match rejoin(coordinator, &me).await {
                        Ok(new) => {
                            lease = new;
                            renewed = Instant::now();
                            wait = period;
                            holder.held(Some(lease.generation));
                        }
                        Err(e @ CoordError::InUse(_)) => return Ended::Taken(e),
                        Err(_) => {}
                    }
                }
                Ok(Err(e)) => tracing::warn!(error = %e, "lease renewal failed"),
                Err(_) => tracing::warn!("lease renewal timed out"),
            }
        }
        if renewed.elapsed() > ttl / 2 {
            holder.in_doubt();
        }
    }
}

async fn rejoin(coordinator: &Coordinator, me: &Identity<'_>) -> Result<Lease, CoordError> {
    match timeout(
        REJOIN_WITHIN,
        coordinator.join(me.role, me.id, me.advertise),
    )
    .await
    {
        Ok(Ok(lease)) => Ok(lease),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "joining again failed");
            Err(e)
        }
        Err(_) => Err(CoordError::Unreachable("joining again timed out".into())),
    }
}

/// Leaves the cluster, waiting at most `PATIENCE`.
pub async fn leave(coordinator: &Coordinator, id: &NodeId, lease: Lease) {
    match timeout(PATIENCE, coordinator.leave(id, lease)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "leaving the cluster failed"),
        Err(_) => tracing::warn!("leaving the cluster: the coordinator did not answer"),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    use super::*;
    use crate::coordinator::Embedded;

    /// Counts what the lease loop tells its holder.
    #[derive(Default)]
    struct Counting {
        renewed: AtomicU64,
        rejoined: AtomicU64,
        lost: AtomicU64,
    }

    impl Holder for Counting {
        fn load(&self) -> u64 {
            7
        }
        fn held(&self, rejoined: Option<u64>) {
            match rejoined {
                None => self.renewed.fetch_add(1, Ordering::SeqCst),
                Some(generation) => self.rejoined.swap(generation, Ordering::SeqCst),
            };
        }
        fn lost(&self) {
            self.lost.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_lease_is_renewed_each_third_of_its_ttl_and_taken_again_when_lost() {
        let coordinator: Coordinator = Arc::new(Embedded::new(Duration::from_secs(3)));
        let id = NodeId::parse("n1").unwrap();
        let first = coordinator.join(Role::Node, &id, "a:1").await.unwrap();
        let holder = Arc::new(Counting::default());
        let (trigger, shutdown) = crate::shutdown::channel();
        let live = Liveness::start(shutdown.clone());
        let task = tokio::spawn({
            let (coordinator, id, holder) = (coordinator.clone(), id.clone(), holder.clone());
            async move {
                let me = Identity {
                    id: &id,
                    role: Role::Node,
                    advertise: "a:1",
                };
                keep(&coordinator, me, &*holder, first, live, shutdown).await
            }
        });
        tokio::time::sleep(Duration::from_millis(3500)).await;
        assert_eq!(
            holder.renewed.load(Ordering::SeqCst),
            3,
            "one renewal a second"
        );
        coordinator.revoke(&id, first.generation).await.unwrap();
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(holder.lost.load(Ordering::SeqCst), 1);
        let again = holder.rejoined.load(Ordering::SeqCst);
        assert!(
            again > first.generation,
            "taken again with a newer generation"
        );
        trigger.fire();
        match task.await.unwrap() {
            Ended::Stopped(lease) => assert_eq!(lease.generation, again),
            Ended::Taken(e) => panic!("taken: {e}"),
        }
    }
}
