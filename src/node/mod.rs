//! The application node: owns the rooms the ring gives it and serves
//! gateways and its peers over authenticated links.
//!
//! Task tree (all ended by the node's `stop` trigger):
//! - `accept::Listener::run`: accepts links from gateways and nodes; one
//!   `serve::serve` task each, which reads records and applies them to the
//!   rooms in place (a writer task per link sends what rooms emit);
//! - `lease::keep`: renews the membership lease and reports the room count,
//!   on the membership thread (`coordinator::isolated`), where room work
//!   cannot delay it;
//! - `rebalance::run`: hands rooms off when the ring moves them away, and
//!   fires `stop` once a draining node has nothing left;
//! - `Peers`: a reader and a writer task per link to another node;
//! - short-lived loader tasks, one per room being rebuilt from storage.

mod accept;
mod arrival;
mod erase;
mod history;
mod lease;
mod peers;
mod rebalance;
mod registry;
mod routes;
mod serve;
mod sink;
pub mod storage;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::coordinator::isolated::{self, Liveness};
use crate::coordinator::keeper;
use crate::coordinator::{Coordinator, Lease, MemberState, RingView, Role};
use crate::ids::{Map, NodeId};
use crate::link::{Peer, Secret};
use crate::rooms::store::RoomStore;
use crate::shutdown::{self, Shutdown, Trigger};
use peers::Peers;
use registry::Registry;
use sink::LinkSink;

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
    pub cluster_secret: Secret,
    /// What each room keeps and how it shows presence.
    pub rooms: crate::rooms::Limits,
    /// How long a room no connection has joined stays in memory.
    pub room_idle: Duration,
    /// Whether links from builds before link version 4 are served.
    pub older_builds: crate::link::OlderBuilds,
}

/// The default of `NodeConfig::room_idle`.
pub const ROOM_IDLE: Duration = Duration::from_secs(60);

impl NodeConfig {
    /// A node of member `id` with every default: the loopback on a free
    /// port, the rooms' default limits, links of this build only.
    pub fn new(id: NodeId, cluster_secret: Secret) -> Self {
        Self {
            id,
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            advertise: None,
            cluster_secret,
            rooms: crate::rooms::Limits::default(),
            room_idle: ROOM_IDLE,
            older_builds: crate::link::OlderBuilds::Refuse,
        }
    }

    /// A node on a free loopback port, for tests.
    pub fn for_test(id: &str, cluster_secret: &str) -> Self {
        let id = NodeId::parse(id).expect("valid test node id");
        Self::new(id, Secret::new(cluster_secret))
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

/// One link into this node.
struct LinkEntry {
    /// Who is at the other end, as its handshake proved.
    peer: Peer,
    /// Where rooms send what this link's connections get.
    sink: Arc<LinkSink>,
    /// Set once a membership view listed the peer: only then does its
    /// absence from a later view mean its lease lapsed.
    listed: AtomicBool,
}

/// State shared by the node's tasks.
struct Node {
    config: NodeConfig,
    /// The address registered with the coordinator.
    advertise: String,
    coordinator: Coordinator,
    registry: Registry,
    /// Live links by link id; short critical sections only.
    links: Mutex<Map<u64, LinkEntry>>,
    /// Links to other nodes, for hand-offs.
    peers: Peers,
    ring: watch::Receiver<Arc<RingView>>,
    /// Stops the node: fired by its handle, by a signal, or when it drained.
    stop: Trigger,
    /// Set by `NodeHandle::kill`: stop without leaving the cluster.
    killed: AtomicBool,
    /// The durable store, told who writes (`fence`).
    store: Option<Arc<dyn RoomStore>>,
    /// The current lease's generation.
    generation: AtomicU64,
    /// Why the node stopped by itself, for `run` to return.
    fatal: shutdown::Fatal<crate::coordinator::CoordError>,
}

impl Node {
    /// Tells the store who writes now: this member, its lease generation,
    /// and the newest membership epoch seen.
    fn fence(&self) {
        if let Some(store) = &self.store {
            store.fence(crate::rooms::store::Writer {
                member: self.config.id.to_string(),
                generation: self.generation.load(Ordering::Acquire),
                epoch: self.ring.borrow().view.epoch.0,
            });
        }
    }

    fn lock_links(&self) -> MutexGuard<'_, Map<u64, LinkEntry>> {
        self.links.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A running node.
pub struct NodeHandle {
    /// Its id.
    pub id: NodeId,
    /// The bound link address.
    pub addr: SocketAddr,
    node: Arc<Node>,
    task: JoinHandle<()>,
}

impl NodeHandle {
    /// Stops the node at once: it leaves the cluster without handing its
    /// rooms off (their new owners load them from storage).
    pub async fn stop(self) {
        self.node.stop.fire();
        let _ = self.task.await;
    }

    /// Drains the node: it leaves the ring, hands every room off to its new
    /// owner, leaves the cluster and stops; after `grace` it stops anyway.
    pub async fn drain(self, grace: Duration) {
        let draining = self
            .node
            .coordinator
            .set_state(&self.id, MemberState::Draining);
        match tokio::time::timeout(keeper::PATIENCE, draining).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "cannot mark the node draining"),
            Err(_) => {
                tracing::warn!("cannot mark the node draining: the coordinator did not answer")
            }
        }
        self.wait_or_stop(grace).await;
    }

    /// Waits until the node ends by itself (it drained), or stops it after `grace`.
    pub async fn wait_or_stop(mut self, grace: Duration) {
        if tokio::time::timeout(grace, &mut self.task).await.is_err() {
            tracing::warn!("drain did not finish in time; stopping");
            self.node.stop.fire();
            let _ = self.task.await;
        }
    }

    /// Simulates a crash: the node stops serving and stops renewing its
    /// lease, but does not leave; the cluster notices when the lease lapses.
    pub async fn kill(self) {
        self.node.killed.store(true, Ordering::Release);
        self.node.stop.fire();
        let _ = self.task.await;
    }

    /// Whether the node has ended (drained or stopped).
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
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
    let registry = Registry::new(id.clone(), config.rooms, store.clone());
    let peers = Peers::new(id.clone(), config.cluster_secret.clone());
    let (stop, shutdown) = shutdown::channel();
    let node = Arc::new(Node {
        config,
        advertise,
        coordinator,
        registry,
        links: Mutex::default(),
        peers,
        ring,
        stop,
        killed: AtomicBool::new(false),
        store,
        generation: AtomicU64::new(lease.generation),
        fatal: shutdown::Fatal::default(),
    });
    node.fence();
    let span = tracing::info_span!("node", node.id = %id);
    let task = tokio::spawn(serving(node.clone(), listener, lease, shutdown).instrument(span));
    Ok(NodeHandle {
        id,
        addr,
        node,
        task,
    })
}

/// The node's life: its lease kept, rooms moved as the ring says, idle
/// rooms released, and links accepted until it stops.
async fn serving(node: Arc<Node>, listener: TcpListener, lease: Lease, shutdown: Shutdown) {
    let live = Liveness::start(shutdown.clone());
    let keeper =
        isolated::spawn(lease::keep(node.clone(), lease, live, shutdown.clone()).in_current_span());
    let mover = shutdown.spawn(rebalance::run(node.clone(), shutdown.clone()).in_current_span());
    shutdown.spawn(release_idle(node.clone(), shutdown.clone()).in_current_span());
    accept::Listener {
        node: node.clone(),
        listener,
        shutdown,
    }
    .run()
    .await;
    // Moves still under way are abandoned, not awaited (a hand-off waits up
    // to 5 s for its answer): a stopped node's rooms are taken over (from
    // storage) by their new owners.
    mover.abort();
    node.stop.stopped(crate::shutdown::TASK_GRACE).await;
    let _ = keeper.await;
    tracing::info!("node stopped");
}

/// How long a node that ended waits for its archiver to have nothing left.
const ARCHIVE_PATIENCE: Duration = Duration::from_secs(5);

/// How long a node drains on SIGTERM before it stops anyway.
pub const DRAIN_GRACE: Duration = Duration::from_secs(30);

/// Runs a node until it drains (SIGTERM, or drained through the API).
pub async fn run(
    config: NodeConfig,
    coordinator: Coordinator,
    store: Option<Arc<dyn RoomStore>>,
) -> Result<(), NodeError> {
    let mut node = start(config, coordinator, store).await?;
    println!("ready node {} {}", node.id, node.addr);
    let inner = node.node.clone();
    tokio::select! {
        _ = shutdown::signal() => node.drain(DRAIN_GRACE).await,
        _ = &mut node.task => {}
    }
    let archiver = inner.store.as_ref().and_then(|s| s.archiver());
    if let Some(archiver) = archiver {
        if !archiver.settled(ARCHIVE_PATIENCE).await {
            tracing::warn!(
                "exiting with events not archived yet (the archive is away); Redis keeps them"
            );
        }
    }
    match inner.fatal.take() {
        Some(e) => Err(e.into()),
        None => Ok(()),
    }
}

/// Releases rooms that no connection has joined for `room_idle`; their
/// stored history stays, and the next use loads it again. Of a room that
/// never stored an event, storage keeps nothing.
async fn release_idle(node: Arc<Node>, mut shutdown: Shutdown) {
    let idle = node.config.room_idle;
    let mut tick = tokio::time::interval((idle / 4).max(Duration::from_millis(50)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.wait() => return,
        }
        let released = node.registry.release_idle(idle);
        if !released.is_empty() {
            tracing::debug!(released = released.len(), "idle rooms released");
        }
        if let Some(store) = node.registry.store() {
            for room in released.iter().filter(|r| r.stored_nothing()) {
                // Not if a join brought the room back meanwhile: its new
                // copy holds the record and the epoch now.
                if !node.registry.holds(room.id()) {
                    store.forget(room.id()).await;
                }
            }
        }
    }
}
