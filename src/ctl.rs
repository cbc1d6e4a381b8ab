//! `roomring ctl`: inspect and steer a cluster through its coordinator.

use std::time::Duration;

use crate::config::CtlAction;
use crate::coordinator::redis::{self, Redis, PREFIX};
use crate::coordinator::{CoordError, MemberState, Membership, Role};
use crate::ids::{NodeId, RoomId};

/// A ctl command failed.
#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    /// The coordinator could not be reached or refused.
    #[error(transparent)]
    Coordinator(#[from] CoordError),
    /// No such node.
    #[error("no node {0}")]
    NoNode(String),
    /// The ring is empty.
    #[error("the ring has no node")]
    EmptyRing,
}

/// Runs one ctl action and prints its result.
pub async fn run(url: &str, action: CtlAction) -> Result<(), CtlError> {
    // ctl never joins, so the TTL only matters to members.
    let coordinator = Redis::connect(url, PREFIX, Duration::from_secs(3)).await?;
    let view = redis::snapshot(&coordinator).await?;
    match action {
        CtlAction::Members => {
            println!("epoch {}", view.epoch);
            for m in &view.members {
                let role = if m.role == Role::Node {
                    "node"
                } else {
                    "gateway"
                };
                let state = if m.state == MemberState::Active {
                    "active"
                } else {
                    "draining"
                };
                println!(
                    "{role:8} {:16} {:22} {state:9} gen {} load {}",
                    m.id, m.addr, m.generation, m.load
                );
            }
        }
        CtlAction::Ring => {
            println!("epoch {}", view.epoch);
            for id in view.ring().nodes() {
                println!("{id}");
            }
        }
        CtlAction::Locate { room } => {
            let room = RoomId::parse(&room).map_err(|_| CtlError::EmptyRing)?;
            let ring = view.ring();
            let owner = ring.owner(&room).ok_or(CtlError::EmptyRing)?;
            println!("{room} {owner}");
        }
        CtlAction::Drain { id } => {
            let node = NodeId::parse(&id).map_err(|_| CtlError::NoNode(id.clone()))?;
            if view.member(&node).is_none_or(|m| m.role != Role::Node) {
                return Err(CtlError::NoNode(id));
            }
            coordinator.set_state(&node, MemberState::Draining).await?;
            println!("{id} draining");
        }
    }
    Ok(())
}
