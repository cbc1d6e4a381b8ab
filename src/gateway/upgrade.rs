//! `GET /ws`: who may open a client WebSocket (identity, the handshake,
//! admission and the connection cap), and the upgrade that hands the socket
//! to its connection task (`conn`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tracing::Instrument;

use super::admission::{self, Refusal};
use super::conn::Connection;
use super::http::AppError;
use super::websocket;
use super::Gateway;
use crate::protocol::{ErrorCode, Failure};

/// `GET /ws`: authenticates, checks the WebSocket handshake and the
/// connection limit, then upgrades.
pub(super) async fn upgrade(
    State(gw): State<Arc<Gateway>>,
    Query(query): Query<HashMap<String, String>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    mut req: Request,
) -> Response {
    let key = handshake_key(&headers);
    if key.is_err() {
        // A client asking why its upgrade was refused learns whether and
        // when to come back.
        if let Err(refusal) = gw.admission.would_admit() {
            return refused(refusal);
        }
    }
    let identity = match gw.config.auth.identify(&query, &headers) {
        Ok(identity) => identity,
        Err(failure) => return AppError(failure).into_response(),
    };
    let key = match key {
        Ok(key) => key,
        Err(message) => return AppError(Failure::bad_request(message)).into_response(),
    };
    match gw.admission.admit() {
        Ok(turn) if turn.is_zero() => {}
        Ok(turn) => {
            tokio::time::sleep(turn).await;
            if gw.admission.is_stopping() {
                return refused(Refusal::Stopping);
            }
        }
        Err(refusal) => return refused(refusal),
    }
    let Some(on_upgrade) = req.extensions_mut().remove::<hyper::upgrade::OnUpgrade>() else {
        return AppError(Failure::bad_request("the connection cannot be upgraded")).into_response();
    };
    let tasks = gw.tasks.clone();
    let Ok(permit) = gw.conn_limit.clone().try_acquire_owned() else {
        let failure = Failure::new(
            ErrorCode::Unavailable,
            "this gateway is at its connection limit",
        );
        return retry_after(AppError(failure).into_response(), admission::RETRY_FULL);
    };
    let span = tracing::debug_span!("conn", client.addr = %peer, user = %identity.user);
    let connection = async move {
        let upgraded = match on_upgrade.await {
            Ok(upgraded) => upgraded,
            Err(e) => return tracing::debug!(error = %e, "upgrade failed"),
        };
        let Ok(parts) = upgraded.downcast::<TokioIo<TcpStream>>() else {
            return tracing::warn!("upgraded connection is not a TCP stream");
        };
        Connection::new(gw, identity, parts.io.into_inner(), permit)
            .run(parts.read_buf)
            .await;
    };
    tasks.spawn(crate::telemetry::contained("connection", connection).instrument(span));
    switching(&key)
}

/// 101 Switching Protocols, with the accept key of `key`.
fn switching(key: &str) -> Response {
    let mut response = StatusCode::SWITCHING_PROTOCOLS.into_response();
    let h = response.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    if let Ok(accept) = HeaderValue::from_str(&websocket::accept_key(key.as_bytes())) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    }
    response
}

/// 503 for a WebSocket the gateway does not take: without `Retry-After`
/// when it stops (go to another gateway), with it past its rate.
fn refused(refusal: Refusal) -> Response {
    match refusal {
        Refusal::Stopping => {
            let failure = Failure::new(ErrorCode::Unavailable, "this gateway is stopping");
            AppError(failure).into_response()
        }
        Refusal::Rate(secs) => {
            let failure = Failure::new(
                ErrorCode::Unavailable,
                format!("this gateway takes no more connections this second; retry in {secs} s"),
            );
            retry_after(AppError(failure).into_response(), secs)
        }
    }
}

/// The response, with `Retry-After: secs`.
fn retry_after(mut response: Response, secs: u64) -> Response {
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    response
}

/// The client's `Sec-WebSocket-Key`, once the upgrade headers check out.
fn handshake_key(headers: &HeaderMap) -> Result<String, &'static str> {
    let has = |name: header::HeaderName, token: &str| {
        headers.get_all(name).iter().any(|v| {
            v.to_str()
                .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    if !has(header::UPGRADE, "websocket") || !has(header::CONNECTION, "upgrade") {
        return Err("this endpoint takes a WebSocket upgrade");
    }
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_none_or(|v| v != "13")
    {
        return Err("Sec-WebSocket-Version must be 13");
    }
    headers
        .get(header::SEC_WEBSOCKET_KEY)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .ok_or("missing Sec-WebSocket-Key")
}
