//! The web client, compiled into the binary so that every gateway serves it
//! wherever it runs.

use axum::http::{header, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

use super::http::AppError;
use crate::protocol::{ErrorCode, Failure};

/// Path, content type and content of every file under `static/`.
const FILES: &[(&str, &str, &str)] = &[
    (
        "/",
        "text/html; charset=utf-8",
        include_str!("../../static/index.html"),
    ),
    (
        "/index.html",
        "text/html; charset=utf-8",
        include_str!("../../static/index.html"),
    ),
    (
        "/cluster.html",
        "text/html; charset=utf-8",
        include_str!("../../static/cluster.html"),
    ),
    (
        "/board.html",
        "text/html; charset=utf-8",
        include_str!("../../static/board.html"),
    ),
    (
        "/board.js",
        "text/javascript; charset=utf-8",
        include_str!("../../static/board.js"),
    ),
    (
        "/roomring.js",
        "text/javascript; charset=utf-8",
        include_str!("../../static/roomring.js"),
    ),
    (
        "/chat.js",
        "text/javascript; charset=utf-8",
        include_str!("../../static/chat.js"),
    ),
    (
        "/cluster.js",
        "text/javascript; charset=utf-8",
        include_str!("../../static/cluster.js"),
    ),
    (
        "/style.css",
        "text/css; charset=utf-8",
        include_str!("../../static/style.css"),
    ),
];

/// Serves a static file, or a JSON 404.
pub(super) async fn serve(uri: Uri) -> Response {
    match FILES.iter().find(|(path, _, _)| *path == uri.path()) {
        Some((_, kind, body)) => {
            (StatusCode::OK, [(header::CONTENT_TYPE, *kind)], *body).into_response()
        }
        None => AppError(Failure::new(
            ErrorCode::NotFound,
            format!("no such path {}", uri.path()),
        ))
        .into_response(),
    }
}
