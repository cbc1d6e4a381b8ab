//! What wraps the HTTP API's handlers, so that none of them repeats it:
//! who may call a route (a role, checked once per route group), how many
//! requests run at once, how long one may take, and how big its body may be.
//! Every refusal is the API's JSON error.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::error_handling::HandleErrorLayer;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::{BoxError, Router};
use tower::ServiceBuilder;

use super::auth::ApiRole;
use super::http::AppError;
use super::{Gateway, HttpLimits};
use crate::protocol::{ErrorCode, Failure};

/// Lets a request through only if its caller holds `role`.
pub(super) fn require(
    gw: &Arc<Gateway>,
    routes: Router<Arc<Gateway>>,
    role: ApiRole,
) -> Router<Arc<Gateway>> {
    routes.route_layer(middleware::from_fn_with_state(
        (gw.clone(), role),
        |State((gw, role)): State<(Arc<Gateway>, ApiRole)>, req: Request, next: Next| async move {
            match gw.config.auth.authorize_api(req.headers(), role) {
                Ok(()) => next.run(req).await,
                Err(failure) => AppError(failure).into_response(),
            }
        },
    ))
}

/// Lets a request through only if its `Host` and `Origin` may call the
/// gateway (`origin::Guard`), else 403.
pub(super) fn guard(gw: &Arc<Gateway>, routes: Router<Arc<Gateway>>) -> Router<Arc<Gateway>> {
    routes.route_layer(middleware::from_fn_with_state(
        gw.clone(),
        |State(gw): State<Arc<Gateway>>, req: Request, next: Next| async move {
            match gw.guard.check(req.headers()) {
                Ok(()) => next.run(req).await,
                Err(why) => AppError(Failure::new(ErrorCode::Forbidden, why)).into_response(),
            }
        },
    ))
}

/// Concurrency, time and body limits around the API's routes.
pub(super) fn limit(routes: Router<Arc<Gateway>>, limits: HttpLimits) -> Router<Arc<Gateway>> {
    let body_bytes = limits.body_bytes;
    routes.layer(
        ServiceBuilder::new()
            .layer(HandleErrorLayer::new(move |e: BoxError| async move {
                overloaded(e, limits.timeout)
            }))
            .load_shed()
            .concurrency_limit(limits.concurrency)
            .timeout(limits.timeout)
            .layer(middleware::from_fn(move |req: Request, next: Next| {
                limit_body(req, next, body_bytes)
            })),
    )
}

fn overloaded(e: BoxError, timeout: Duration) -> Response {
    let message = if e.is::<tower::timeout::error::Elapsed>() {
        format!("the request took longer than {} s", timeout.as_secs())
    } else if e.is::<tower::load_shed::error::Overloaded>() {
        "too many requests at once on this gateway".to_string()
    } else {
        format!("the request failed: {e}")
    };
    AppError(Failure::new(ErrorCode::Unavailable, message)).into_response()
}

/// Reads the body up to `max` bytes; a larger one is refused with 413
/// before its handler runs.
async fn limit_body(req: Request, next: Next, max: usize) -> Response {
    let too_large = || {
        AppError(Failure::new(
            ErrorCode::TooLarge,
            format!("the request body is larger than {max} bytes"),
        ))
        .into_response()
    };
    let declared = req
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return too_large();
    }
    let (parts, body) = req.into_parts();
    match axum::body::to_bytes(body, max).await {
        Ok(bytes) => {
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
        Err(_) => too_large(),
    }
}
