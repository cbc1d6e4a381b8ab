//! The accept loop every listening role runs (a gateway's clients, a
//! node's links): one task per accepted connection until shutdown, and a
//! short pause after a failed accept (out of descriptors, most likely).

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tracing::Instrument;

use crate::shutdown::Shutdown;

/// How long to wait after a failed accept before the next.
const ACCEPT_PAUSE: Duration = Duration::from_millis(50);

/// Accepts until `shutdown`; `serve` turns each connection into its task
/// (named `what`, in its span, tracked by `shutdown`) or refuses it with
/// `None`.
pub async fn accept_until<F, T>(
    listener: &TcpListener,
    mut shutdown: Shutdown,
    what: &'static str,
    mut serve: F,
) where
    F: FnMut(TcpStream, SocketAddr) -> Option<(T, tracing::Span)>,
    T: Future<Output = ()> + Send + 'static,
{
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.wait() => return,
        };
        match accepted {
            Ok((stream, peer)) => {
                if let Some((task, span)) = serve(stream, peer) {
                    shutdown.spawn(crate::telemetry::contained(what, task).instrument(span));
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(ACCEPT_PAUSE).await;
            }
        }
    }
}
