//! `roomring ctl`: inspect and steer a cluster through its coordinator.

use std::time::Duration;

use crate::config::CtlAction;
use crate::coordinator::endpoint::Endpoint;
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
pub async fn run(endpoint: &Endpoint, action: CtlAction) -> Result<(), CtlError> {
    // ctl never joins, so the TTL only matters to members.
    let coordinator = Redis::connect(endpoint, PREFIX, Duration::from_secs(3)).await?;
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

/// Checks that `target` answers within 3 s: `http://HOST:PORT/PATH` with a
/// 200, or `HOST:PORT` accepting a TCP connection.
pub async fn probe(target: &str) -> anyhow::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let check = async {
        match target.strip_prefix("http://") {
            Some(rest) => {
                let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
                let mut stream = tokio::net::TcpStream::connect(host).await?;
                let request =
                    format!("GET /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
                stream.write_all(request.as_bytes()).await?;
                let mut head = vec![0; 64];
                let n = stream.read(&mut head).await?;
                let line = String::from_utf8_lossy(&head[..n]);
                anyhow::ensure!(
                    line.starts_with("HTTP/1.1 200"),
                    "{target} answered {:?}",
                    line.lines().next().unwrap_or("")
                );
                Ok(())
            }
            None => {
                tokio::net::TcpStream::connect(target).await?;
                Ok(())
            }
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(3), check)
        .await
        .map_err(|_| anyhow::anyhow!("{target} did not answer within 3 s"))?
}
