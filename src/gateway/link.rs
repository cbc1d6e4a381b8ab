//! One gateway link to one node: connects (with backoff), runs the reader
//! and the batched writer, and on every drop routes the requests in flight
//! again and resumes the node's rooms elsewhere. The link table and the
//! routing itself live in `upstream`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use super::upstream::{OpRequest, Upstream};
use crate::ids::NodeId;
use crate::protocol::link::{self, LinkMsg, Rid, Status};
use crate::shutdown::Shutdown;

/// What to do with a reply.
// The large variant is the common one: boxing it would allocate per operation.
#[allow(clippy::large_enum_variant)]
pub(super) enum Pending {
    /// Forward to a client connection (and keep subscriptions in step).
    Op { req: OpRequest, attempt: usize },
    /// Hand to an HTTP handler.
    Query(oneshot::Sender<(Status, String)>),
}

/// One node's link as the router sees it.
pub(super) struct Link {
    /// The node at the other end.
    pub(super) node: NodeId,
    /// Whether the link is connected; requests wait for another route or
    /// retry while it is not.
    pub(super) up: AtomicBool,
    /// Bounded; a full queue makes requesters wait (backpressure on the
    /// client connection that sends too fast).
    pub(super) tx: mpsc::Sender<LinkMsg>,
    pub(super) next_rid: AtomicU64,
    /// Requests sent and not yet answered; short critical sections only.
    pub(super) pending: Mutex<HashMap<Rid, Pending>>,
}

impl Link {
    pub(super) fn lock_pending(&self) -> std::sync::MutexGuard<'_, HashMap<Rid, Pending>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Connects to one node and serves the link until told to stop.
pub(super) struct LinkTask {
    pub(super) up: Arc<Upstream>,
    pub(super) node: NodeId,
    pub(super) addr: String,
    pub(super) link: Arc<Link>,
    pub(super) rx: mpsc::Receiver<LinkMsg>,
    pub(super) stop: watch::Receiver<bool>,
}

impl LinkTask {
    pub(super) async fn run(mut self, mut shutdown: Shutdown) {
        let mut backoff = Duration::from_millis(50);
        loop {
            match self.connect().await {
                Ok(ws) => {
                    backoff = Duration::from_millis(50);
                    tracing::debug!(addr = %self.addr, "link up");
                    self.link.up.store(true, Ordering::Release);
                    self.serve(ws, &mut shutdown).await;
                    self.link.up.store(false, Ordering::Release);
                    self.fail_pending();
                    self.up.resume_moved(Some(&self.node));
                }
                Err(e) => {
                    tracing::debug!(addr = %self.addr, error = %e, "link connect failed");
                    self.fail_pending();
                }
            }
            if shutdown.is_fired() || *self.stop.borrow() || self.stop.has_changed().is_err() {
                self.fail_pending();
                return;
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = shutdown.wait() => return,
                _ = self.stop.changed() => return,
            }
            backoff = (backoff * 2).min(Duration::from_secs(1));
        }
    }

    async fn connect(
        &self,
    ) -> Result<
        tokio_tungstenite::WebSocketStream<
            tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
        >,
        String,
    > {
        let url = format!("ws://{}{}", self.addr, link::LINK_PATH);
        let mut req = url.into_client_request().map_err(|e| e.to_string())?;
        let headers = req.headers_mut();
        headers.insert(
            link::SECRET_HEADER,
            self.up.secret.parse().map_err(|_| "bad secret")?,
        );
        headers.insert(
            link::PEER_HEADER,
            self.up.gateway.as_str().parse().map_err(|_| "bad id")?,
        );
        let connect = tokio_tungstenite::connect_async_with_config(req, None, true);
        let (ws, _) = tokio::time::timeout(Duration::from_secs(2), connect)
            .await
            .map_err(|_| "timed out".to_string())?
            .map_err(|e| e.to_string())?;
        Ok(ws)
    }

    async fn serve(
        &mut self,
        ws: tokio_tungstenite::WebSocketStream<
            tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
        >,
        shutdown: &mut Shutdown,
    ) {
        let (mut sink, mut stream) = ws.split();
        let mut batch = Vec::with_capacity(256);
        loop {
            tokio::select! {
                msg = stream.next() => match msg {
                    Some(Ok(Message::Text(text))) => self.up.on_message(&self.link, text),
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                    Some(Ok(_)) => {}
                },
                n = self.rx.recv_many(&mut batch, 256) => {
                    if n == 0 { break }
                    let mut ok = true;
                    for msg in batch.drain(..) {
                        ok = ok && sink.feed(Message::Text(msg)).await.is_ok();
                    }
                    if !ok || sink.flush().await.is_err() { break }
                }
                _ = shutdown.wait() => break,
                _ = self.stop.changed() => break,
            }
        }
        tracing::debug!(node.id = %self.node, "link down");
    }

    /// Requests in flight or queued when a link drops: operations are routed
    /// again (a retried `send` is idempotent by its id), queries fail.
    fn fail_pending(&mut self) {
        while self.rx.try_recv().is_ok() {}
        let pending: Vec<Pending> = self.link.lock_pending().drain().map(|(_, p)| p).collect();
        for p in pending {
            match p {
                Pending::Op { req, attempt } => self.up.retry(req, attempt),
                Pending::Query(tx) => drop(tx),
            }
        }
    }
}
