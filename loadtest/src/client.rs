//! A protocol client for load: connect (from a chosen local address), join,
//! and read frames cheaply.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use tokio::net::{lookup_host, TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message, Utf8Bytes};
use tokio_tungstenite::WebSocketStream;

/// Write half.
pub type Tx = SplitSink<WebSocketStream<TcpStream>, Message>;
/// Read half.
pub type Rx = SplitStream<WebSocketStream<TcpStream>>;

/// The fields of a server frame that load accounting needs.
#[derive(Debug, Deserialize)]
pub struct Frame<'a> {
    /// Frame type.
    pub t: &'a str,
    /// Seq of msg, ack, joined, board.changed.
    pub seq: Option<u64>,
    /// Client id of ack, error and board.changed.
    pub id: Option<&'a str>,
    /// Message body.
    pub body: Option<Body>,
}

/// Bodies the generator sends carry their send time (µs on the generator clock).
#[derive(Debug, Deserialize)]
pub struct Body {
    /// Send time, µs since the run's start.
    pub at: Option<u64>,
    /// Set when the message waited for its sender to come back (sent again,
    /// or due while the sender had no connection): its latency is the
    /// sender's, not the delivery's.
    #[serde(default)]
    pub late: bool,
}

/// Connects as `user` to one gateway, from `source` when given (so that
/// many connections can spread over several loopback addresses).
pub async fn connect(gateway: &str, source: Option<IpAddr>, user: &str) -> Result<(Tx, Rx)> {
    tokio::time::timeout(CONNECT_TIMEOUT, connect_now(gateway, source, user))
        .await
        .with_context(|| format!("connect {gateway}: no answer within {CONNECT_TIMEOUT:?}"))?
}

/// How long a connection and its upgrade may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

async fn connect_now(gateway: &str, source: Option<IpAddr>, user: &str) -> Result<(Tx, Rx)> {
    let url = format!("ws://{gateway}/ws?user={user}");
    let addr: SocketAddr = lookup_host(gateway)
        .await?
        .next()
        .with_context(|| format!("no address for {gateway}"))?;
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(ip) = source {
        socket
            .bind(SocketAddr::new(ip, 0))
            .with_context(|| format!("bind {ip}"))?;
    }
    let stream = socket
        .connect(addr)
        .await
        .with_context(|| format!("connect {gateway}"))?;
    stream.set_nodelay(true)?;
    let (ws, _) = tokio_tungstenite::client_async_with_config(&url, stream, Some(ws_config()))
        .await
        .with_context(|| format!("upgrade {url}"))?;
    Ok(ws.split())
}

/// The reconnect rule's first wait, and the ceiling it doubles from.
const BACKOFF_BASE: Duration = Duration::from_millis(500);
/// The longest wait the reconnect rule gives.
const BACKOFF_CAP: Duration = Duration::from_secs(30);

/// A random wait before try `tries` (from 0) of a client coming back:
/// below min(30 s, 0.5 s × 2^tries), full jitter (`docs/client.md`).
pub fn reconnect_delay(tries: u32) -> Duration {
    let ceiling = BACKOFF_BASE
        .saturating_mul(1 << tries.min(16))
        .min(BACKOFF_CAP);
    ceiling.mul_f64(fastrand::f64())
}

/// The `Retry-After` of an upgrade refused with one, else zero.
pub fn retry_after(error: &anyhow::Error) -> Duration {
    let secs = error.chain().find_map(|cause| match cause.downcast_ref() {
        Some(tungstenite::Error::Http(response)) => response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok()),
        _ => None,
    });
    Duration::from_secs(secs.unwrap_or(0))
}

/// Buffers sized for many connections: tungstenite's default read buffer
/// (128 KiB, zero-filled on every read) would cost a generator of 5,000
/// connections gigabytes and most of its CPU. Every server frame fits in
/// 16 MiB.
fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(8 << 10)
        .write_buffer_size(0)
        .max_message_size(Some(16 << 20))
        .max_frame_size(Some(16 << 20))
}

/// The next text frame, skipping others; `None` once the server has closed
/// the connection (a close frame or the end of the stream).
pub async fn next_text(rx: &mut Rx) -> Result<Option<Utf8Bytes>> {
    loop {
        match rx.next().await.transpose()? {
            Some(Message::Text(text)) => return Ok(Some(text)),
            Some(Message::Close(_)) | None => return Ok(None),
            Some(_) => {}
        }
    }
}

/// Joins a room and returns its seq.
pub async fn join(tx: &mut Tx, rx: &mut Rx, room: &str) -> Result<u64> {
    Ok(rejoin(tx, rx, room, None).await?.seq)
}

/// What a `joined` reply says.
#[derive(Debug, Deserialize)]
pub struct Joined {
    /// The room's seq.
    pub seq: u64,
    /// The room's history epoch.
    #[serde(default)]
    pub epoch: String,
    /// What was missed since `since` (or the latest messages).
    #[serde(default)]
    pub history: Vec<Kept>,
    /// Whether `since` was older than what is kept, or of another epoch.
    #[serde(default)]
    pub truncated: bool,
}

/// One message of a `joined` history.
#[derive(Debug, Deserialize)]
pub struct Kept {
    /// Its seq.
    pub seq: u64,
    /// Its body.
    pub body: Option<Body>,
}

/// Joins a room; with `since` (the last seq seen and the epoch it was seen
/// in), the reply carries what was missed.
pub async fn rejoin(
    tx: &mut Tx,
    rx: &mut Rx,
    room: &str,
    since: Option<(u64, &str)>,
) -> Result<Joined> {
    tokio::time::timeout(CONNECT_TIMEOUT, join_now(tx, rx, room, since))
        .await
        .with_context(|| format!("join {room}: no answer within {CONNECT_TIMEOUT:?}"))?
}

async fn join_now(
    tx: &mut Tx,
    rx: &mut Rx,
    room: &str,
    since: Option<(u64, &str)>,
) -> Result<Joined> {
    let frame = match since {
        None => format!(r#"{{"t":"join","room":"{room}"}}"#),
        Some((seq, epoch)) => {
            serde_json::json!({"t": "join", "room": room, "since": seq, "epoch": epoch}).to_string()
        }
    };
    tx.send(Message::Text(frame.into())).await?;
    while let Some(text) = next_text(rx).await? {
        let frame: Frame<'_> = serde_json::from_str(&text)?;
        match frame.t {
            "joined" => return Ok(serde_json::from_str(&text)?),
            "error" => bail!("join {room}: {text}"),
            _ => {}
        }
    }
    bail!("closed while joining {room}")
}

/// Sends one text frame.
pub async fn send(tx: &mut Tx, frame: String) -> Result<()> {
    tx.send(Message::Text(frame.into())).await?;
    Ok(())
}
