//! The application node: owns the rooms the ring gives it, one task each,
//! and serves gateways over multiplexed links.
//!
//! Task tree (all ended by the node's `Trigger`):
//! - `Listener::run`: accepts gateway links; one `link::serve` task each
//!   (reader inline, writer task beside it);
//! - `lease::keep`: renews the membership lease and reports the room count;
//! - one room task per room, owned through the `Registry`.

mod lease;
mod link;
mod registry;
pub mod storage;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::coordinator::{Coordinator, RingView, Role};
use crate::ids::NodeId;
use crate::rooms::store::RoomStore;
use crate::rooms::LinkTx;
use crate::shutdown::{self, Trigger};
use registry::Registry;

/// Messages a gateway link may queue before it counts as too slow.
pub const LINK_QUEUE: usize = 16 * 1024;

/// How a node is run.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Its member id.
    pub id: NodeId,
    /// Where it listens for links.
    pub listen: SocketAddr,
    /// The address others reach it at, when not the bound one.
    pub advertise: Option<String>,
    /// Authenticates gateway and node links.
    pub cluster_secret: String,
    /// Stored events kept per room.
    pub history_keep: usize,
}

impl NodeConfig {
    /// A node on a free loopback port, for tests.
    pub fn for_test(id: &str, cluster_secret: &str) -> Self {
        Self {
            id: NodeId::parse(id).expect("valid test node id"),
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            advertise: None,
            cluster_secret: cluster_secret.to_string(),
            history_keep: 1000,
        }
    }
}

/// A node failed to start.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The listen address could not be bound.
    #[error("cannot listen on {0}: {1}")]
    Bind(SocketAddr, std::io::Error),
    /// The coordinator refused or could not be reached.
    #[error(transparent)]
    Coordinator(#[from] crate::coordinator::CoordError),
}

/// State shared by the node's tasks.
struct Node {
    config: NodeConfig,
    /// The address registered with the coordinator.
    advertise: String,
    coordinator: Coordinator,
    registry: Registry,
    /// Live gateway links, for notifications; short critical sections only.
    links: Mutex<HashMap<u64, LinkTx>>,
    ring: watch::Receiver<Arc<RingView>>,
}

/// A running node.
pub struct NodeHandle {
    /// Its id.
    pub id: NodeId,
    /// The bound link address.
    pub addr: SocketAddr,
    trigger: Trigger,
    task: JoinHandle<()>,
}

impl NodeHandle {
    /// Stops the node and waits for it to leave the cluster.
    pub async fn stop(self) {
        self.trigger.fire();
        let _ = self.task.await;
    }

    /// Waits until the node ends by itself.
    pub async fn wait(self) {
        let _ = self.task.await;
    }
}

/// Binds, joins the cluster and starts serving.
pub async fn start(
    config: NodeConfig,
    coordinator: Coordinator,
    store: Option<Arc<dyn RoomStore>>,
) -> Result<NodeHandle, NodeError> {
    // Metrics recorded before the recorder exists would be lost.
    crate::telemetry::prometheus();
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|e| NodeError::Bind(config.listen, e))?;
    let addr = listener
        .local_addr()
        .map_err(|e| NodeError::Bind(config.listen, e))?;
    let advertise = config.advertise.clone().unwrap_or_else(|| addr.to_string());
    let lease = coordinator.join(Role::Node, &config.id, &advertise).await?;
    let ring = crate::coordinator::watch_ring(coordinator.as_ref());
    let id = config.id.clone();
    let registry = Registry::new(id.clone(), config.history_keep, store);
    let node = Arc::new(Node {
        config,
        advertise,
        coordinator,
        registry,
        links: Mutex::default(),
        ring,
    });
    let (trigger, shutdown) = shutdown::channel();
    let span = tracing::info_span!("node", node.id = %id);
    let task = tokio::spawn(
        async move {
            let keeper =
                tokio::spawn(lease::keep(node.clone(), lease, shutdown.clone()).in_current_span());
            link::Listener {
                node: node.clone(),
                listener,
                shutdown: shutdown.clone(),
            }
            .run()
            .await;
            let _ = keeper.await;
            tracing::info!("node stopped");
        }
        .instrument(span),
    );
    Ok(NodeHandle {
        id,
        addr,
        trigger,
        task,
    })
}

/// Runs a node until SIGINT/SIGTERM.
pub async fn run(
    config: NodeConfig,
    coordinator: Coordinator,
    store: Option<Arc<dyn RoomStore>>,
) -> Result<(), NodeError> {
    let node = start(config, coordinator, store).await?;
    println!("ready node {} {}", node.id, node.addr);
    shutdown::signal().await;
    node.stop().await;
    Ok(())
}
