//! A protocol client for load: connect, join, and read frames cheaply.

use anyhow::{bail, Context, Result};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Write half.
pub type Tx = SplitSink<WebSocketStream<MaybeTlsStream<TcpStream>>, Message>;
/// Read half.
pub type Rx = SplitStream<WebSocketStream<MaybeTlsStream<TcpStream>>>;

/// The fields of a server frame that load accounting needs.
#[derive(Debug, Deserialize)]
pub struct Frame<'a> {
    /// Frame type.
    pub t: &'a str,
    /// Seq of msg, ack, joined.
    pub seq: Option<u64>,
    /// Client id of ack and error.
    pub id: Option<&'a str>,
    /// Message body.
    pub body: Option<Body>,
}

/// Bodies the generator sends carry their send time (µs on the generator clock).
#[derive(Debug, Deserialize)]
pub struct Body {
    /// Send time, µs since the run's start.
    pub at: Option<u64>,
}

/// Connects as `user` to one gateway.
pub async fn connect(gateway: &str, user: &str) -> Result<(Tx, Rx)> {
    let url = format!("ws://{gateway}/ws?user={user}");
    let (ws, _) = tokio_tungstenite::connect_async(&url)
        .await
        .with_context(|| format!("connect {url}"))?;
    Ok(ws.split())
}

/// Joins a room and returns its seq.
pub async fn join(tx: &mut Tx, rx: &mut Rx, room: &str) -> Result<u64> {
    tx.send(Message::Text(
        format!(r#"{{"t":"join","room":"{room}"}}"#).into(),
    ))
    .await?;
    while let Some(msg) = rx.next().await {
        if let Message::Text(text) = msg? {
            let frame: Frame<'_> = serde_json::from_str(&text)?;
            match frame.t {
                "joined" => return Ok(frame.seq.unwrap_or(0)),
                "error" => bail!("join {room}: {text}"),
                _ => {}
            }
        }
    }
    bail!("closed while joining {room}")
}
