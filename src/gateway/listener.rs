//! The gateway's accept loop: one task per TCP connection, serving HTTP/1.1
//! with upgrades through hyper and the gateway's router. A WebSocket upgrade
//! hands the very TCP stream over to the client connection's task, so that
//! the gateway writes to it directly (see `outbox`).

use std::convert::Infallible;
use std::net::SocketAddr;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpSocket};
use tower::ServiceExt;

use crate::shutdown::Shutdown;

/// Connections a listener lets wait for their accept (the kernel keeps at
/// most `net.core.somaxconn`): a gateway's clients come back together after
/// another gateway died, and a full queue drops their SYNs, which costs
/// each of them a second.
const ACCEPT_BACKLOG: u32 = 4096;

/// The client listener, bound, and the address it is bound to.
pub(super) fn bound(addr: SocketAddr) -> std::io::Result<(TcpListener, SocketAddr)> {
    let listener = listen(addr)?;
    let addr = listener.local_addr()?;
    Ok((listener, addr))
}

/// The client listener, with room for a burst of connections.
fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(ACCEPT_BACKLOG)
}

/// Accepts connections until shutdown; connections in progress finish
/// their current request, WebSockets are closed by the gateway itself.
pub(super) struct Listener {
    pub(super) listener: TcpListener,
    pub(super) router: Router,
    pub(super) shutdown: Shutdown,
}

impl Listener {
    pub(super) async fn run(self) {
        let shutdown = self.shutdown.clone();
        crate::listen::accept_until(&self.listener, shutdown, "http", |stream, peer| {
            // Frames go out as soon as they are written: without
            // TCP_NODELAY a frame written while the previous one is
            // unacknowledged waits for the client's delayed ACK.
            let _ = stream.set_nodelay(true);
            let span = tracing::trace_span!("http", client.addr = %peer);
            let http = serve(stream, peer, self.router.clone(), self.shutdown.clone());
            Some((http, span))
        })
        .await;
    }
}

/// How long a client may take to send a request's headers (the WebSocket
/// upgrade's included) before its connection is closed.
const HEADER_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

async fn serve(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    router: Router,
    mut shutdown: Shutdown,
) {
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        let router = router.clone();
        async move { Ok::<_, Infallible>(router.oneshot(req).await.unwrap_or_else(|e| match e {})) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => {
            if let Err(e) = result {
                tracing::trace!(error = %e, "http connection ended");
            }
        }
        _ = shutdown.wait() => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(std::time::Duration::from_secs(2), conn).await;
        }
    }
}
