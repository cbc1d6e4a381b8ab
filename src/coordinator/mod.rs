//! The coordinator: the live member list (nodes and gateways, each with a
//! lease) and its monotonically increasing epoch, published on a `watch`
//! channel. `embedded` serves one process; `redis` a real cluster; both pass
//! the one `conformance` suite.

pub mod conformance;
pub mod embedded;
pub mod endpoint;
pub mod isolated;
pub mod keeper;
pub mod redis;
mod sentinel;

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::ids::{Epoch, NodeId};
use crate::ring::Ring;

pub use embedded::Embedded;

pub use crate::ids::Role;

/// A member's state; only `active` nodes are on the ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MemberState {
    /// Serving.
    Active,
    /// Leaving: off the ring, handing its rooms off.
    Draining,
}

/// One member of the cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Member {
    /// Its id.
    pub id: NodeId,
    /// Node or gateway.
    pub role: Role,
    /// The address others reach it at.
    pub addr: String,
    /// Active or draining.
    pub state: MemberState,
    /// Increases each time a process joins with this id.
    pub generation: u64,
    /// Rooms (nodes) or connections (gateways), as of its last renewal.
    pub load: u64,
}

/// The member list at one epoch.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct View {
    /// Increases on every change of membership or state (not of load).
    pub epoch: Epoch,
    /// Members sorted by id.
    pub members: Vec<Member>,
}

impl View {
    /// Members of one role.
    pub fn with_role(&self, role: Role) -> impl Iterator<Item = &Member> {
        self.members.iter().filter(move |m| m.role == role)
    }

    /// One member by id.
    pub fn member(&self, id: &NodeId) -> Option<&Member> {
        self.members.iter().find(|m| &m.id == id)
    }

    /// The ring over the active nodes.
    pub fn ring(&self) -> Ring {
        Ring::new(
            self.with_role(Role::Node)
                .filter(|m| m.state == MemberState::Active)
                .map(|m| m.id.clone()),
        )
    }
}

/// A held lease: the generation it was granted for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    /// The member's generation.
    pub generation: u64,
}

/// Coordinator failures.
#[derive(Debug, thiserror::Error)]
pub enum CoordError {
    /// The lease lapsed (or a newer generation took the id): stop serving.
    #[error("lease lost")]
    LeaseLost,
    /// No member with that id.
    #[error("no member {0}")]
    NoMember(NodeId),
    /// The backend cannot be reached.
    #[error("coordinator unreachable: {0}")]
    Unreachable(String),
    /// Another live process holds this member id.
    #[error("member id {0} is in use by a live process (its lease keeps being renewed); give this one another --id")]
    InUse(NodeId),
}

/// Waits until no live member holds `id` (a crashed predecessor's lease
/// lapses within the TTL, or is revoked sooner); an id still held after
/// the TTL and a second belongs to a live process, and joining would take
/// the lease from it back and forth.
pub async fn wait_for_free_id(m: &dyn Membership, id: &NodeId) -> Result<(), CoordError> {
    let mut view = m.watch();
    let deadline = tokio::time::Instant::now() + m.lease_ttl() + Duration::from_secs(1);
    loop {
        if view.borrow_and_update().member(id).is_none() {
            return Ok(());
        }
        if tokio::time::timeout_at(deadline, view.changed())
            .await
            .is_err()
        {
            return Err(CoordError::InUse(id.clone()));
        }
    }
}

/// The membership service every role talks to.
#[async_trait::async_trait]
pub trait Membership: Send + Sync + 'static {
    /// Joins (or re-joins as a new generation) with a lease.
    async fn join(&self, role: Role, id: &NodeId, addr: &str) -> Result<Lease, CoordError>;
    /// Renews the lease and reports the member's load.
    async fn renew(&self, id: &NodeId, lease: Lease, load: u64) -> Result<(), CoordError>;
    /// Sets a member's state (any member may drain another).
    async fn set_state(&self, id: &NodeId, state: MemberState) -> Result<(), CoordError>;
    /// Leaves for good.
    async fn leave(&self, id: &NodeId, lease: Lease) -> Result<(), CoordError>;
    /// Revokes another member's lease of `generation`, now: a gateway that
    /// lost its link to a node and cannot open a new one says it is gone.
    /// Nothing happens if the member has joined again since (a newer
    /// generation). A member revoked by mistake finds its lease lost, stops
    /// serving (its appends are fenced) and joins again as a new generation.
    async fn revoke(&self, id: &NodeId, generation: u64) -> Result<(), CoordError> {
        self.leave(id, Lease { generation }).await
    }
    /// The current view and every later one.
    fn watch(&self) -> watch::Receiver<Arc<View>>;
    /// How long a lease lasts without renewal.
    fn lease_ttl(&self) -> Duration;
}

/// How soon a member tries again after a failed lease renewal.
pub const RENEW_RETRY: std::time::Duration = std::time::Duration::from_millis(150);

/// A shared coordinator handle.
pub type Coordinator = Arc<dyn Membership>;

/// The ring as of one epoch, with the view it was computed from.
#[derive(Clone, Default)]
pub struct RingView {
    /// The view.
    pub view: Arc<View>,
    /// Its ring of active nodes.
    pub ring: Arc<Ring>,
    /// The epoch at which the ring's nodes last changed (membership changes
    /// that leave the ring as it is, such as gateways coming and going, do
    /// not move rooms).
    pub ring_epoch: Epoch,
}

/// Follows the coordinator and recomputes the ring when the epoch changes;
/// the task ends when the coordinator's channel closes or every receiver is
/// dropped. Receivers are woken only by a new epoch: a view that differs in
/// members' reported load alone replaces the current one silently, since
/// everyone that reacts to changes (routing caches, resumption, rebalancing)
/// has nothing to do about it.
pub fn watch_ring(m: &dyn Membership) -> watch::Receiver<Arc<RingView>> {
    let mut views = m.watch();
    let first = views.borrow_and_update().clone();
    let initial = RingView {
        ring: Arc::new(first.ring()),
        ring_epoch: first.epoch,
        view: first,
    };
    let (tx, rx) = watch::channel(Arc::new(initial));
    tokio::spawn(async move {
        loop {
            tokio::select! {
                changed = views.changed() => if changed.is_err() { return },
                _ = tx.closed() => return,
            }
            let view = views.borrow_and_update().clone();
            let last = tx.borrow().clone();
            let (ring, ring_epoch) = if last.view.epoch == view.epoch {
                (last.ring.clone(), last.ring_epoch)
            } else {
                let ring = view.ring();
                if ring.nodes() == last.ring.nodes() {
                    (last.ring.clone(), last.ring_epoch)
                } else {
                    (Arc::new(ring), view.epoch)
                }
            };
            let news = last.view.epoch != view.epoch;
            let next = Arc::new(RingView {
                view,
                ring,
                ring_epoch,
            });
            tx.send_if_modified(|current| {
                *current = next;
                news
            });
        }
    });
    rx
}
