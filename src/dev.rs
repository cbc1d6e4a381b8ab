//! `roomring dev`: a whole cluster in one process. An embedded coordinator,
//! application nodes and gateways, all linked over real loopback TCP, so that
//! what runs here is what runs across machines.
//!
//! Task tree: each node and gateway runs its own tasks (see `node`,
//! `gateway`); `DevCluster` owns their handles and stops gateways first
//! (clients get 1012), then nodes.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::coordinator::{Coordinator, Embedded};
use crate::gateway::{self, Auth, ClientLimits, DevControl, GatewayConfig, GatewayHandle};
use crate::ids::NodeId;
use crate::link::Secret;
use crate::node::{self, NodeConfig, NodeHandle};
use crate::protocol::{ErrorCode, Failure};
use crate::rooms::store::{MemoryStore, RoomStore};

/// Nodes one dev process runs at most (`--nodes` and `POST /api/cluster/nodes`).
pub const MAX_NODES: usize = 64;

/// Lease TTL of the embedded coordinator.
pub const DEV_LEASE: Duration = Duration::from_secs(3);

/// How a dev cluster is laid out.
#[derive(Debug, Clone)]
pub struct DevOptions {
    /// The first gateway's address (later ones take free ports).
    pub listen: SocketAddr,
    /// Application nodes at start.
    pub nodes: usize,
    /// Gateways.
    pub gateways: usize,
    /// Client identification.
    pub auth: Auth,
    /// What each room keeps and how it shows presence.
    pub rooms: crate::rooms::Limits,
    /// How long a room no connection has joined stays in memory.
    pub room_idle: Duration,
    /// Keep rooms in an in-process store too, so that a killed node's rooms
    /// come back (crash tests); `dev` itself keeps rooms in node memory only.
    pub memory_store: bool,
    /// What each client may do and how many may come, per gateway.
    pub clients: ClientLimits,
}

impl DevOptions {
    /// Free ports, `--auth none`, default limits.
    pub fn for_test(nodes: usize, gateways: usize) -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            nodes,
            gateways,
            auth: Auth::None,
            rooms: crate::rooms::Limits::default(),
            room_idle: node::ROOM_IDLE,
            memory_store: false,
            clients: ClientLimits::default(),
        }
    }
}

/// A dev cluster failed to start.
#[derive(Debug, thiserror::Error)]
pub enum DevError {
    /// A node did not start.
    #[error(transparent)]
    Node(#[from] node::NodeError),
    /// A gateway did not start.
    #[error(transparent)]
    Gateway(#[from] gateway::GatewayError),
}

/// The nodes of a dev cluster; `DevControl` for the HTTP API.
pub struct Nodes {
    coordinator: Coordinator,
    secret: String,
    rooms: crate::rooms::Limits,
    room_idle: Duration,
    store: Option<Arc<dyn RoomStore>>,
    next: AtomicUsize,
    /// Running nodes; held only to push or take handles.
    running: Mutex<Vec<NodeHandle>>,
}

impl Nodes {
    /// Starts one more node, `node-N`.
    pub async fn add(&self) -> Result<NodeId, node::NodeError> {
        let n = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let id = NodeId::parse(&format!("node-{n}")).expect("a valid member id");
        let mut config = NodeConfig::new(id, Secret::new(&self.secret));
        config.rooms = self.rooms;
        config.room_idle = self.room_idle;
        let handle = node::start(config, self.coordinator.clone(), self.store.clone()).await?;
        let id = handle.id.clone();
        self.running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(handle);
        Ok(id)
    }

    /// Takes the handle of a running node (to stop or kill it).
    pub fn take(&self, id: &NodeId) -> Option<NodeHandle> {
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        let at = running.iter().position(|n| &n.id == id)?;
        Some(running.remove(at))
    }

    /// Ids of the running nodes (a drained node ends by itself).
    pub fn ids(&self) -> Vec<NodeId> {
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        running.retain(|n| !n.is_finished());
        running.iter().map(|n| n.id.clone()).collect()
    }

    /// Link addresses of the running nodes.
    pub fn addrs(&self) -> Vec<SocketAddr> {
        let running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        running.iter().map(|n| n.addr).collect()
    }

    /// The in-process cluster's link secret.
    pub fn secret(&self) -> Secret {
        Secret::new(&self.secret)
    }

    async fn stop_all(&self) {
        let all: Vec<NodeHandle> =
            std::mem::take(&mut *self.running.lock().unwrap_or_else(|e| e.into_inner()));
        for node in all {
            node.stop().await;
        }
    }
}

#[async_trait::async_trait]
impl DevControl for Nodes {
    async fn add_node(&self) -> Result<NodeId, Failure> {
        let running = self.running.lock().unwrap_or_else(|e| e.into_inner()).len();
        if running >= MAX_NODES {
            return Err(Failure::new(
                ErrorCode::TooLarge,
                format!("dev runs at most {MAX_NODES} nodes"),
            ));
        }
        self.add()
            .await
            .map_err(|e| Failure::new(ErrorCode::Unavailable, e.to_string()))
    }
}

/// A running dev cluster.
pub struct DevCluster {
    /// The shared coordinator.
    pub coordinator: Coordinator,
    /// The application nodes.
    pub nodes: Arc<Nodes>,
    /// The gateways, the first on `listen`.
    pub gateways: Vec<GatewayHandle>,
}

impl DevCluster {
    /// Starts the coordinator, the nodes and the gateways.
    pub async fn start(options: DevOptions) -> Result<Self, DevError> {
        let coordinator: Coordinator = Arc::new(Embedded::new(DEV_LEASE));
        let secret = Secret::fresh_text();
        let nodes = Arc::new(Nodes {
            coordinator: coordinator.clone(),
            secret: secret.clone(),
            rooms: options.rooms,
            room_idle: options.room_idle,
            store: options
                .memory_store
                .then(|| MemoryStore::new(options.rooms.keep) as Arc<dyn RoomStore>),
            next: AtomicUsize::new(0),
            running: Mutex::default(),
        });
        for _ in 0..options.nodes {
            nodes.add().await?;
        }
        let mut gateways = Vec::new();
        for i in 0..options.gateways.max(1) {
            let id = NodeId::parse(&format!("gw-{}", i + 1)).expect("a valid member id");
            let mut config = GatewayConfig::new(id, Secret::new(&secret));
            if i == 0 {
                config.listen = options.listen;
            }
            config.auth = options.auth.clone();
            config.clients = options.clients.clone();
            let control: Arc<dyn DevControl> = nodes.clone();
            gateways.push(gateway::start(config, coordinator.clone(), Some(control)).await?);
        }
        Ok(Self {
            coordinator,
            nodes,
            gateways,
        })
    }

    /// The first gateway's client address.
    pub fn addr(&self) -> SocketAddr {
        self.gateways[0].addr
    }

    /// Stops gateways (clients get 1012), then nodes.
    pub async fn stop(self) {
        for gw in self.gateways {
            gw.stop().await;
        }
        self.nodes.stop_all().await;
    }
}

/// Runs a dev cluster until SIGINT/SIGTERM.
pub async fn run(options: DevOptions) -> Result<(), DevError> {
    if !options.listen.ip().is_loopback() && matches!(options.auth, Auth::None) {
        tracing::warn!(listen = %options.listen, "dev with --auth none on a non-loopback address: anyone who reaches it may use every room and the admin API");
        eprintln!("warning: dev listens on {} with --auth none: anyone who reaches it may use every room and the admin API", options.listen);
    }
    let cluster = DevCluster::start(options).await?;
    println!("ready dev dev {}", cluster.addr());
    crate::shutdown::signal().await;
    cluster.stop().await;
    Ok(())
}
