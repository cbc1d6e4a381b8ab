//! The HTTP API: rooms, notifications, the cluster, health and metrics. One
//! `AppError` turns every failure into a status and a JSON body.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use serde_json::value::RawValue;

use super::Gateway;
use crate::coordinator::{MemberState, Role};
use crate::ids::{NodeId, RoomId, UserId};
use crate::protocol::client::{DEFAULT_HISTORY_PAGE, MAX_BODY_BYTES, MAX_HISTORY_PAGE};
use crate::protocol::{ErrorCode, Failure, Query as RoomQuery};

/// Default and largest page of `GET /api/rooms/{room}/messages`.
const PAGE: (usize, usize) = (100, 1000);

/// A failure as an HTTP response: `{"error":{"code","message"}}`.
#[derive(Debug)]
pub(crate) struct AppError(pub Failure);

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.0.code.http_status())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = json!({ "error": { "code": self.0.code, "message": self.0.message } });
        (status, axum::Json(body)).into_response()
    }
}

impl From<Failure> for AppError {
    fn from(f: Failure) -> Self {
        Self(f)
    }
}

type ApiResult = Result<Response, AppError>;

fn json_text(status: StatusCode, body: bytes::Bytes) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn room_id(s: &str) -> Result<RoomId, AppError> {
    RoomId::parse(s).map_err(|e| AppError(Failure::bad_request(e.to_string())))
}

/// Reads a JSON object body field by field, keeping `body` raw.
fn json_body(bytes: &[u8]) -> Result<HashMap<String, Box<RawValue>>, AppError> {
    serde_json::from_slice(bytes).map_err(|e| {
        AppError(Failure::bad_request(format!(
            "body must be a JSON object: {e}"
        )))
    })
}

fn raw_field(
    fields: &mut HashMap<String, Box<RawValue>>,
    name: &str,
) -> Result<Box<RawValue>, AppError> {
    let value = fields
        .remove(name)
        .ok_or_else(|| Failure::bad_request(format!("missing field {name}")))?;
    if value.get().len() > MAX_BODY_BYTES {
        return Err(Failure::new(
            ErrorCode::TooLarge,
            format!("{name} is larger than {MAX_BODY_BYTES} bytes"),
        )
        .into());
    }
    Ok(value)
}

/// `GET /api/rooms/{room}`.
pub(super) async fn room_info(
    State(gw): State<Arc<Gateway>>,
    Path(room): Path<String>,
) -> ApiResult {
    let room = room_id(&room)?;
    Ok(json_text(
        StatusCode::OK,
        gw.upstream.query(&room, RoomQuery::Info).await?,
    ))
}

/// `GET /api/rooms/{room}/messages?since=N&limit=M`.
pub(super) async fn room_messages(
    State(gw): State<Arc<Gateway>>,
    Path(room): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> ApiResult {
    let room = room_id(&room)?;
    let number = |name: &str, default: usize| -> Result<usize, AppError> {
        params.get(name).map_or(Ok(default), |v| {
            v.parse().map_err(|_| {
                AppError(Failure::bad_request(format!(
                    "{name} must be a non-negative integer"
                )))
            })
        })
    };
    let query = match params.get("before") {
        // Paging back: `before` a positive integer, `limit` 1 to 200.
        Some(before) => {
            let before = before
                .parse::<u64>()
                .ok()
                .filter(|b| *b > 0)
                .ok_or_else(|| {
                    AppError(Failure::bad_request("before must be a positive integer"))
                })?;
            let max = usize::from(MAX_HISTORY_PAGE);
            let limit = number("limit", usize::from(DEFAULT_HISTORY_PAGE))?;
            if !(1..=max).contains(&limit) {
                let message = format!("limit {limit} is not between 1 and {max}");
                return Err(AppError(Failure::bad_request(message)));
            }
            RoomQuery::Page {
                before: Some(before),
                limit,
            }
        }
        None => RoomQuery::Messages {
            since: number("since", 0)? as u64,
            limit: number("limit", PAGE.0)?.min(PAGE.1),
        },
    };
    Ok(json_text(
        StatusCode::OK,
        gw.upstream.query(&room, query).await?,
    ))
}

/// `DELETE /api/rooms/{room}`: the room's history goes, in memory, in
/// Redis and in the archive; 204 whether it had one or not.
pub(super) async fn delete_room(
    State(gw): State<Arc<Gateway>>,
    Path(room): Path<String>,
) -> Result<StatusCode, AppError> {
    let room = room_id(&room)?;
    gw.upstream.query(&room, RoomQuery::Erase).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/rooms/{room}/messages` with `{"from","body"}`.
pub(super) async fn post_message(
    State(gw): State<Arc<Gateway>>,
    Path(room): Path<String>,
    body: Bytes,
) -> ApiResult {
    let room = room_id(&room)?;
    let mut fields = json_body(&body)?;
    let from: String = serde_json::from_str(raw_field(&mut fields, "from")?.get())
        .map_err(|_| Failure::bad_request("from must be a string"))?;
    let from = UserId::parse(&from).map_err(|e| Failure::bad_request(format!("from: {e}")))?;
    let body = raw_field(&mut fields, "body")?;
    let from = from.to_string();
    let body = body.get().as_bytes();
    Ok(json_text(
        StatusCode::OK,
        gw.upstream
            .query(&room, RoomQuery::Post { from, body })
            .await?,
    ))
}

/// `POST /api/users/{user}/notify` with `{"body"}`.
pub(super) async fn notify(
    State(gw): State<Arc<Gateway>>,
    Path(user): Path<String>,
    body: Bytes,
) -> ApiResult {
    let user = UserId::parse(&user).map_err(|e| Failure::bad_request(e.to_string()))?;
    let body = raw_field(&mut json_body(&body)?, "body")?;
    gw.upstream.notify(user.as_str(), body.get().as_bytes())?;
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(json!({ "status": "accepted" })),
    )
        .into_response())
}

/// `POST /api/broadcast` with `{"body"}` (admin): a `notify` to every
/// connection of every gateway.
pub(super) async fn broadcast(State(gw): State<Arc<Gateway>>, body: Bytes) -> ApiResult {
    let body = raw_field(&mut json_body(&body)?, "body")?;
    gw.upstream.broadcast(body.get().as_bytes())?;
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(json!({ "status": "accepted" })),
    )
        .into_response())
}

/// `GET /api/cluster`.
pub(super) async fn cluster(State(gw): State<Arc<Gateway>>) -> ApiResult {
    let view = gw.upstream.view();
    let nodes: Vec<_> = view
        .view
        .with_role(Role::Node)
        .map(|m| json!({ "id": m.id, "addr": m.addr, "state": m.state, "rooms": m.load }))
        .collect();
    let gateways: Vec<_> = view
        .view
        .with_role(Role::Gateway)
        .map(|m| {
            let connections = if m.id == gw.config.id {
                gw.sessions.len() as u64
            } else {
                m.load
            };
            json!({ "id": m.id, "addr": m.addr, "connections": connections })
        })
        .collect();
    let ring: Vec<_> = view.ring.nodes().iter().collect();
    let arcs: Vec<_> = view
        .ring
        .arcs()
        .into_iter()
        .map(|(start, end, node)| json!({ "start": start, "end": end, "node": node }))
        .collect();
    let body = json!({ "epoch": view.view.epoch, "nodes": nodes, "gateways": gateways, "ring": ring, "arcs": arcs });
    Ok(axum::Json(body).into_response())
}

/// `POST /api/cluster/nodes/{id}/drain`.
pub(super) async fn drain(State(gw): State<Arc<Gateway>>, Path(id): Path<String>) -> ApiResult {
    let not_found = || AppError(Failure::new(ErrorCode::NotFound, format!("no node {id}")));
    let node = NodeId::parse(&id).map_err(|_| not_found())?;
    let is_node = gw
        .upstream
        .view()
        .view
        .member(&node)
        .is_some_and(|m| m.role == Role::Node);
    if !is_node {
        return Err(not_found());
    }
    gw.coordinator
        .set_state(&node, MemberState::Draining)
        .await
        .map_err(|e| Failure::new(ErrorCode::Unavailable, e.to_string()))?;
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(json!({ "id": node, "state": "draining" })),
    )
        .into_response())
}

/// `POST /api/cluster/nodes` (dev only): starts one more node.
pub(super) async fn add_node(State(gw): State<Arc<Gateway>>) -> ApiResult {
    let Some(dev) = &gw.dev else {
        return Err(Failure::new(
            ErrorCode::NotFound,
            "adding nodes over the API exists only in dev",
        )
        .into());
    };
    let id = dev.add_node().await?;
    Ok((StatusCode::CREATED, axum::Json(json!({ "id": id }))).into_response())
}

/// `GET /api/config`: what a client needs to know before it connects (how
/// it authenticates, and the limits it will meet); asks for no token.
pub(super) async fn config(State(gw): State<Arc<Gateway>>) -> Response {
    use crate::protocol::client as limits;
    let auth = match gw.config.auth {
        super::Auth::None => "none",
        super::Auth::Jwt(_) => "jwt",
    };
    axum::Json(json!({
        "protocol": 1,
        "auth": auth,
        "limits": {
            "frame_bytes": limits::MAX_FRAME_BYTES,
            "body_bytes": MAX_BODY_BYTES,
            "rooms_per_connection": gw.config.clients.rooms_per_conn,
            "frames_per_second": gw.config.clients.rate_per_sec,
            "frame_burst": gw.config.clients.rate_burst,
            "history_page": MAX_HISTORY_PAGE,
            "presence_page": limits::MAX_PAGE,
            "widgets_per_board": limits::MAX_WIDGETS,
        },
    }))
    .into_response()
}

/// `GET /healthz`.
pub(super) async fn healthz() -> Response {
    axum::Json(json!({ "status": "ok" })).into_response()
}

/// `GET /readyz`: ready once the ring has a node, until the gateway drains.
pub(super) async fn readyz(State(gw): State<Arc<Gateway>>) -> ApiResult {
    if gw.admission.is_stopping() {
        return Err(Failure::new(ErrorCode::Unavailable, "the gateway is stopping").into());
    }
    if gw.upstream.view().ring.is_empty() {
        return Err(Failure::new(
            ErrorCode::Unavailable,
            "no application node on the ring yet",
        )
        .into());
    }
    Ok(axum::Json(json!({ "status": "ready" })).into_response())
}

/// `GET /metrics`: Prometheus text.
pub(super) async fn metrics(State(gw): State<Arc<Gateway>>) -> Response {
    metrics::gauge!("roomring_gateway_connections", "gateway" => gw.config.id.to_string())
        .set(gw.sessions.len() as f64);
    for m in gw.upstream.view().view.with_role(Role::Node) {
        metrics::gauge!("roomring_node_rooms", "node" => m.id.to_string()).set(m.load as f64);
    }
    let text = crate::telemetry::prometheus().render();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

/// Any other `/api` path.
pub(super) async fn not_found() -> AppError {
    AppError(Failure::new(ErrorCode::NotFound, "no such endpoint"))
}

/// A known path with the wrong method.
pub(super) async fn method_not_allowed() -> Response {
    let body =
        json!({ "error": { "code": ErrorCode::BadRequest, "message": "method not allowed" } });
    (StatusCode::METHOD_NOT_ALLOWED, axum::Json(body)).into_response()
}
