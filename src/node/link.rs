//! Gateway links on a node: the accept loop and one task per link that
//! reads requests and routes them to room tasks; a writer task beside it
//! drains the link's queue, flushing once per wake-up.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::Message;
use tracing::Instrument;

use super::{Node, LINK_QUEUE};
use crate::protocol::link::{self, LinkMsg, Status, ToGateway, ToNode};
use crate::protocol::server::ServerFrame;
use crate::rooms::state::{Origin, Sub};
use crate::rooms::{LinkTx, RoomCmd};
use crate::shutdown::Shutdown;

/// Link ids are unique per process, so rooms never confuse two links.
static NEXT_LINK: AtomicU64 = AtomicU64::new(1);

/// Accepts gateway links until shutdown.
pub(super) struct Listener {
    pub(super) node: Arc<Node>,
    pub(super) listener: TcpListener,
    pub(super) shutdown: Shutdown,
}

impl Listener {
    pub(super) async fn run(mut self) {
        loop {
            let accepted = tokio::select! {
                accepted = self.listener.accept() => accepted,
                _ = self.shutdown.wait() => return,
            };
            match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    let span = tracing::debug_span!("link", client.addr = %peer);
                    tokio::spawn(
                        serve(self.node.clone(), stream, peer, self.shutdown.clone())
                            .instrument(span),
                    );
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            }
        }
    }
}

/// Serves one gateway link until it closes or the node shuts down.
// tungstenite's handshake callback fixes the (large) error type.
#[allow(clippy::result_large_err)]
async fn serve(node: Arc<Node>, stream: TcpStream, peer: SocketAddr, mut shutdown: Shutdown) {
    let secret = node.config.cluster_secret.clone();
    let check = move |req: &Request, resp: Response| -> Result<Response, ErrorResponse> {
        let ok = req.uri().path() == link::LINK_PATH
            && req
                .headers()
                .get(link::SECRET_HEADER)
                .is_some_and(|v| v.as_bytes() == secret.as_bytes());
        if ok {
            Ok(resp)
        } else {
            let mut refused = ErrorResponse::new(Some("bad cluster secret".into()));
            *refused.status_mut() = http::StatusCode::UNAUTHORIZED;
            Err(refused)
        }
    };
    let ws = match tokio_tungstenite::accept_hdr_async(stream, check).await {
        Ok(ws) => ws,
        Err(e) => {
            tracing::warn!(%peer, error = %e, "link refused");
            return;
        }
    };
    let (mut sink, mut stream) = ws.split();
    let id = NEXT_LINK.fetch_add(1, Ordering::Relaxed);
    let (link, mut rx, overflow) = LinkTx::new(id, LINK_QUEUE);
    node.links
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(id, link.clone());
    tracing::debug!(link.id = id, "link up");

    let writer = tokio::spawn(async move {
        let mut batch: Vec<LinkMsg> = Vec::with_capacity(256);
        loop {
            tokio::select! {
                n = rx.recv_many(&mut batch, 256) => {
                    if n == 0 { break }
                    for msg in batch.drain(..) {
                        if sink.feed(Message::Text(msg)).await.is_err() { return }
                    }
                    if sink.flush().await.is_err() { return }
                }
                _ = overflow.notified() => {
                    tracing::warn!("gateway link too slow; closing it");
                    break;
                }
            }
        }
        let _ = sink.close().await;
    });

    loop {
        let msg = tokio::select! {
            msg = stream.next() => msg,
            _ = shutdown.wait() => break,
        };
        match msg {
            Some(Ok(Message::Text(text))) => handle(&node, &link, &text).await,
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
            Some(Ok(_)) => {}
        }
    }
    writer.abort();
    node.links
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&id);
    node.registry.broadcast(|| RoomCmd::LinkClosed(id)).await;
    tracing::debug!(link.id = id, "link down");
}

/// Routes one request from the gateway.
async fn handle(node: &Node, link: &LinkTx, text: &str) {
    let request = match link::decode::<ToNode>(text) {
        Ok((request, _)) => request,
        Err(e) => {
            tracing::warn!(error = %e, "dropping a bad link message");
            return;
        }
    };
    let ring = node.ring.borrow().ring.clone();
    let (rid, room, cmd) = match request {
        ToNode::Op {
            rid,
            room,
            conn,
            user,
            id,
            op,
        } => {
            let origin = Origin {
                sub: Sub {
                    link: link.id,
                    conn,
                },
                user,
            };
            (
                rid,
                room,
                RoomCmd::Op {
                    link: link.clone(),
                    rid,
                    origin,
                    id,
                    op,
                },
            )
        }
        ToNode::Query { rid, room, query } => (
            rid,
            room,
            RoomCmd::Query {
                link: link.clone(),
                rid,
                query,
            },
        ),
        ToNode::Notify { user, body } => {
            let frame = ServerFrame::Notify { body: &body }.encode();
            let msg: LinkMsg = link::encode(&ToGateway::Notify { user }, Some(&frame)).into();
            let targets: Vec<LinkTx> = node
                .links
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .values()
                .cloned()
                .collect();
            for target in targets {
                target.send(msg.clone());
            }
            return;
        }
    };
    match node.registry.route(&room, &ring) {
        Some(handle) => {
            if handle.send(cmd).await.is_err() {
                link.reply(rid, Status::Moved, None, None);
            }
        }
        None => link.reply(rid, Status::Moved, None, None),
    }
}
