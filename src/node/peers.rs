//! Links from this node to other nodes, for hand-offs: one WebSocket per peer,
//! opened on first use, requests matched to replies by id.
//!
//! Task tree: each open link has a reader and a writer task; both end when
//! the connection drops (the next request opens a new link).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use crate::ids::NodeId;
use crate::protocol::link::{self, Rid, Status, ToGateway, ToNode};

/// How long a hand-off may take before it counts as failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Requests a peer link may queue.
const PEER_QUEUE: usize = 1024;

type Pending = Arc<Mutex<HashMap<Rid, oneshot::Sender<Status>>>>;

struct PeerLink {
    addr: String,
    /// Bounded; requesters wait when it is full.
    tx: mpsc::Sender<String>,
    pending: Pending,
    next: AtomicU64,
    alive: Arc<AtomicBool>,
}

/// This node's links to its peers.
pub(super) struct Peers {
    me: NodeId,
    secret: String,
    /// Held for look-ups and inserts only.
    links: Mutex<HashMap<NodeId, Arc<PeerLink>>>,
    /// Held while a link is being opened, so that the many hand-offs of a
    /// round that start together share one connection instead of each
    /// opening its own (which can overflow the peer's accept backlog and
    /// cost a one-second SYN retry).
    connecting: tokio::sync::Mutex<()>,
}

impl Peers {
    pub(super) fn new(me: NodeId, secret: String) -> Self {
        Self {
            me,
            secret,
            links: Mutex::default(),
            connecting: tokio::sync::Mutex::new(()),
        }
    }

    fn open_link(&self, to: &NodeId, addr: &str) -> Option<Arc<PeerLink>> {
        self.links
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(to)
            .filter(|l| l.alive.load(Ordering::Acquire) && l.addr == addr)
            .cloned()
    }

    async fn link(&self, to: &NodeId, addr: &str) -> Result<Arc<PeerLink>, String> {
        if let Some(link) = self.open_link(to, addr) {
            return Ok(link);
        }
        let _connecting = self.connecting.lock().await;
        if let Some(link) = self.open_link(to, addr) {
            return Ok(link);
        }
        let link = self.connect(addr).await?;
        self.links
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(to.clone(), link.clone());
        Ok(link)
    }

    async fn connect(&self, addr: &str) -> Result<Arc<PeerLink>, String> {
        let mut req = format!("ws://{addr}{}", link::LINK_PATH)
            .into_client_request()
            .map_err(|e| e.to_string())?;
        let headers = req.headers_mut();
        headers.insert(
            link::SECRET_HEADER,
            self.secret.parse().map_err(|_| "bad secret")?,
        );
        headers.insert(
            link::PEER_HEADER,
            self.me.as_str().parse().map_err(|_| "bad id")?,
        );
        headers.insert(link::ROLE_HEADER, http::HeaderValue::from_static("node"));
        let connect = tokio_tungstenite::connect_async_with_config(req, None, true);
        let (ws, _) = tokio::time::timeout(REQUEST_TIMEOUT, connect)
            .await
            .map_err(|_| "connect timed out".to_string())?
            .map_err(|e| e.to_string())?;
        let (mut sink, mut stream) = ws.split();
        let (tx, mut rx) = mpsc::channel::<String>(PEER_QUEUE);
        let pending: Pending = Arc::default();
        let alive = Arc::new(AtomicBool::new(true));
        let writer_alive = alive.clone();
        tokio::spawn(async move {
            while let Some(text) = rx.recv().await {
                if sink.send(Message::Text(text.into())).await.is_err() {
                    break;
                }
            }
            writer_alive.store(false, Ordering::Release);
        });
        let (reader_pending, reader_alive) = (pending.clone(), alive.clone());
        tokio::spawn(async move {
            while let Some(Ok(msg)) = stream.next().await {
                let Message::Text(text) = msg else { continue };
                if let Ok((ToGateway::Reply { rid, status, .. }, _)) =
                    link::decode::<ToGateway>(&text)
                {
                    if let Some(tx) = reader_pending
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .remove(&rid)
                    {
                        let _ = tx.send(status);
                    }
                }
            }
            reader_alive.store(false, Ordering::Release);
            // Requesters waiting on this link learn that it is gone.
            reader_pending
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clear();
        });
        Ok(Arc::new(PeerLink {
            addr: addr.to_string(),
            tx,
            pending,
            next: AtomicU64::new(1),
            alive,
        }))
    }

    /// Sends a request built around a fresh request id and waits for its status.
    pub(super) async fn request(
        &self,
        to: &NodeId,
        addr: &str,
        make: impl FnOnce(Rid) -> ToNode,
    ) -> Result<Status, String> {
        let link = self.link(to, addr).await?;
        let rid = link.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        link.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(rid, tx);
        link.tx
            .send(link::encode(&make(rid), None))
            .await
            .map_err(|_| "peer link closed".to_string())?;
        match tokio::time::timeout(REQUEST_TIMEOUT, rx).await {
            Ok(Ok(status)) => Ok(status),
            Ok(Err(_)) => Err("peer link closed".into()),
            Err(_) => {
                link.pending
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&rid);
                Err("peer did not answer in time".into())
            }
        }
    }

    /// Sends a message that has no reply.
    pub(super) async fn tell(&self, to: &NodeId, addr: &str, msg: &ToNode) -> Result<(), String> {
        let link = self.link(to, addr).await?;
        link.tx
            .send(link::encode(msg, None))
            .await
            .map_err(|_| "peer link closed".to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use tokio::net::TcpListener;

    /// A peer that counts the links opened to it and reads what comes.
    async fn peer() -> (String, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut ws = tokio_tungstenite::accept_async(stream).await.expect("ws");
                    while let Some(Ok(_)) = ws.next().await {}
                });
            }
        });
        (addr, accepted)
    }

    #[tokio::test]
    async fn concurrent_first_requests_share_one_link() {
        let (addr, accepted) = peer().await;
        let peers = Arc::new(Peers::new(NodeId::parse("node-a").expect("id"), "s".into()));
        let to = NodeId::parse("node-b").expect("id");
        let tasks: Vec<_> = (0..32)
            .map(|i| {
                let (peers, to, addr) = (peers.clone(), to.clone(), addr.clone());
                tokio::spawn(async move {
                    let msg = ToNode::HandoffDone {
                        from: NodeId::parse("node-a").expect("id"),
                        epoch: crate::ids::Epoch(i),
                    };
                    peers.tell(&to, &addr, &msg).await
                })
            })
            .collect();
        for task in tasks {
            task.await.expect("task").expect("told");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
    }
}
