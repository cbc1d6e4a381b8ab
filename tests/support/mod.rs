//! Test harness: a real cluster in-process (embedded coordinator, nodes and
//! gateways linked over loopback TCP), WebSocket and HTTP clients, and
//! `eventually!`.
#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use roomring::dev::{DevCluster, DevOptions};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long a test waits for an expected frame.
pub const WAIT: Duration = Duration::from_secs(5);

/// Retries an assertion-returning block until it holds or 10 s pass.
#[macro_export]
macro_rules! eventually {
    ($body:expr) => {{
        let deadline = tokio::time::Instant::now() + $crate::support::patience();
        loop {
            match $body {
                Ok(v) => break v,
                Err(e) if tokio::time::Instant::now() > deadline => panic!("never held: {e:?}"),
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(25)).await,
            }
        }
    }};
}

/// How long `eventually!` waits for a condition: `ROOMRING_TEST_PATIENCE`
/// seconds (for slow machines), else 10.
pub fn patience() -> std::time::Duration {
    let secs = std::env::var("ROOMRING_TEST_PATIENCE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    std::time::Duration::from_secs(secs)
}

/// Builds a `TestCluster`.
pub struct TestCluster;

impl TestCluster {
    /// `nodes` nodes and `gateways` gateways, `--auth none`.
    pub async fn start(nodes: usize, gateways: usize) -> DevCluster {
        Self::with(DevOptions::for_test(nodes, gateways)).await
    }

    /// A cluster from explicit options; waits until every gateway knows
    /// every node.
    pub async fn with(options: DevOptions) -> DevCluster {
        if std::env::var_os("RUST_LOG").is_some() {
            roomring::telemetry::init_tracing();
        }
        let nodes = options.nodes;
        let cluster = DevCluster::start(options).await.expect("cluster starts");
        for gw in &cluster.gateways {
            let addr = gw.addr;
            eventually!({
                let (status, body) = http(addr, "GET", "/api/cluster", None).await;
                let active = body["nodes"].as_array().map_or(0, |n| n.len());
                if status == 200 && active == nodes {
                    Ok(())
                } else {
                    Err(body)
                }
            });
        }
        cluster
    }
}

/// A WebSocket client speaking the roomring protocol.
pub struct Client {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    pub user: String,
}

impl Client {
    /// Connects as `user` (`--auth none`).
    pub async fn connect(addr: SocketAddr, user: &str) -> Self {
        let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws?user={user}"))
            .await
            .expect("ws connects");
        Self {
            ws,
            user: user.to_string(),
        }
    }

    /// Connects with a raw query string.
    pub async fn connect_query(
        addr: SocketAddr,
        query: &str,
    ) -> Result<Self, tokio_tungstenite::tungstenite::Error> {
        let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws?{query}")).await?;
        Ok(Self {
            ws,
            user: String::new(),
        })
    }

    /// Sends one JSON frame.
    pub async fn send(&mut self, frame: Value) {
        self.ws
            .send(Message::Text(frame.to_string().into()))
            .await
            .expect("ws send");
    }

    /// Sends raw text.
    pub async fn send_text(&mut self, text: String) {
        self.ws
            .send(Message::Text(text.into()))
            .await
            .expect("ws send");
    }

    /// Sends a raw message.
    pub async fn send_message(&mut self, msg: Message) {
        self.ws.send(msg).await.expect("ws send");
    }

    /// The next text frame as JSON; panics after `WAIT`.
    pub async fn recv(&mut self) -> Value {
        loop {
            match tokio::time::timeout(WAIT, self.ws.next()).await {
                Ok(Some(Ok(Message::Text(t)))) => {
                    return serde_json::from_str(&t).expect("server sends JSON")
                }
                Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
                other => panic!("{}: expected a frame, got {other:?}", self.user),
            }
        }
    }

    /// The next frame of type `t`, skipping others.
    pub async fn recv_type(&mut self, t: &str) -> Value {
        loop {
            let f = self.recv().await;
            if f["t"] == t {
                return f;
            }
        }
    }

    /// Asserts that no frame arrives within `d`.
    pub async fn expect_silence(&mut self, d: Duration) {
        if let Ok(Some(msg)) = tokio::time::timeout(d, self.ws.next()).await {
            panic!("{}: expected silence, got {msg:?}", self.user);
        }
    }

    /// Keeps reading for `d`, as a live client does (answering pings);
    /// panics if the connection closes meanwhile. Returns the text frames
    /// that came.
    pub async fn stay(&mut self, d: Duration) -> Vec<Value> {
        let until = tokio::time::Instant::now() + d;
        let mut frames = Vec::new();
        loop {
            match tokio::time::timeout_at(until, self.ws.next()).await {
                Err(_) => return frames,
                Ok(Some(Ok(Message::Text(t)))) => {
                    frames.push(serde_json::from_str(&t).expect("server sends JSON"))
                }
                Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => {}
                other => panic!("{}: the connection ended: {other:?}", self.user),
            }
        }
    }

    /// Joins and returns the `joined` frame.
    pub async fn join(&mut self, room: &str) -> Value {
        self.send(json!({"t": "join", "room": room, "id": format!("join-{room}")}))
            .await;
        let f = self.recv_type("joined").await;
        assert_eq!(f["room"], room);
        f
    }

    /// Sends a message and returns its ack's seq.
    pub async fn say(&mut self, room: &str, id: &str, text: &str) -> u64 {
        self.send(json!({"t": "send", "room": room, "id": id, "body": {"text": text}}))
            .await;
        loop {
            let f = self.recv().await;
            if f["t"] == "ack" && f["id"] == id {
                return f["seq"].as_u64().expect("ack seq");
            }
            assert_ne!(f["t"], "error", "send {id} failed: {f}");
        }
    }

    /// Waits for the close frame and returns its code.
    pub async fn close_code(&mut self) -> Option<u16> {
        loop {
            match tokio::time::timeout(WAIT, self.ws.next()).await {
                Ok(Some(Ok(Message::Close(frame)))) => return frame.map(|f| u16::from(f.code)),
                Ok(Some(Ok(_))) => continue,
                Ok(Some(Err(_)) | None) => return None,
                Err(_) => panic!("{}: no close within {WAIT:?}", self.user),
            }
        }
    }
}

/// A minimal HTTP/1.1 request; returns the status and the JSON body (or
/// `Value::String` of the raw text when it is not JSON).
pub async fn http(addr: SocketAddr, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    http_with(addr, method, path, body.map(|b| b.to_string()), &[]).await
}

/// `http` with a raw body and extra headers.
pub async fn http_with(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<String>,
    headers: &[(&str, &str)],
) -> (u16, Value) {
    let mut stream = TcpStream::connect(addr).await.expect("http connects");
    let body = body.unwrap_or_default();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if !body.is_empty() {
        req.push_str("Content-Type: application/json\r\n");
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(&body);
    stream.write_all(req.as_bytes()).await.expect("http write");
    let mut raw = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut raw))
        .await
        .expect("http reply in time")
        .expect("http read");
    let text = String::from_utf8_lossy(&raw).to_string();
    let status: u16 = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let payload = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(rest)
    } else {
        rest.to_string()
    };
    let value = serde_json::from_str(&payload).unwrap_or(Value::String(payload));
    (status, value)
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        s = &rest[n + 2..];
    }
    out
}
pub mod postgres;
pub mod procs;
pub mod proxy;
pub mod redis;
pub mod sentinel;
pub mod tls;

/// A client sending one message after another into a room until stopped,
/// each retried with its id until acked.
pub struct Writer {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<Vec<u64>>,
}

impl Writer {
    /// Joins `room` through `gw` and starts sending every `pace`. With
    /// `tolerate_unavailable`, `unavailable` answers (a crashed node's rooms)
    /// are retried; otherwise any error fails the test.
    pub fn spawn(gw: SocketAddr, room: &str, pace: Duration, tolerate_unavailable: bool) -> Self {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let room = room.to_string();
        let task = tokio::spawn(async move {
            let mut c = Client::connect(gw, &format!("w-{}", room.replace(':', "-"))).await;
            let expect = |f: &Value| {
                assert!(
                    tolerate_unavailable && f["code"] == "unavailable",
                    "{room}: {f}"
                );
            };
            loop {
                c.send(json!({"t": "join", "room": room})).await;
                let f = c.recv_either("joined", None).await;
                if f["t"] == "joined" {
                    break;
                }
                expect(&f);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let mut acked = Vec::new();
            let mut n = 0;
            // At least one message is sent and acked, however soon it is
            // stopped: a writer that acked nothing has shown nothing.
            while acked.is_empty() || !flag.load(std::sync::atomic::Ordering::Relaxed) {
                let id = format!("m{n}");
                let give_up = tokio::time::Instant::now() + Duration::from_secs(15);
                loop {
                    assert!(
                        tokio::time::Instant::now() < give_up,
                        "{room}: {id} not acked within 15 s"
                    );
                    c.send(json!({"t": "send", "room": room, "id": id, "body": {"id": id}}))
                        .await;
                    let f = c.recv_either("ack", Some(&id)).await;
                    if f["t"] == "ack" {
                        acked.push(f["seq"].as_u64().expect("ack seq"));
                        break;
                    }
                    expect(&f);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                n += 1;
                tokio::time::sleep(pace).await;
            }
            acked
        });
        Self { stop, task }
    }

    /// Stops sending (once one message was acked) and returns the acked
    /// seqs, in order.
    pub async fn finish(self) -> Vec<u64> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.task.await.expect("writer")
    }
}

impl Client {
    /// The next frame of type `t` or `error` (with this `id`, if given).
    pub async fn recv_either(&mut self, t: &str, id: Option<&str>) -> Value {
        let give_up = tokio::time::Instant::now() + WAIT;
        loop {
            assert!(
                tokio::time::Instant::now() < give_up,
                "{}: no {t} within {WAIT:?}",
                self.user
            );
            let f = self.recv().await;
            let ours = id.is_none_or(|id| f["id"] == id);
            if ours && (f["t"] == t || f["t"] == "error") {
                return f;
            }
        }
    }

    /// Reads `msg` frames until seq `upto` and returns every seq seen.
    pub async fn msgs_until(&mut self, upto: u64) -> Vec<u64> {
        let mut seqs = Vec::new();
        while seqs.last().copied().unwrap_or(0) < upto {
            let f = self.recv().await;
            if f["t"] == "msg" {
                seqs.push(f["seq"].as_u64().expect("msg seq"));
            }
        }
        seqs
    }
}

/// The seqs of a `joined` frame's history, in order.
pub fn joined_seqs(joined: &Value) -> Vec<u64> {
    joined["history"]
        .as_array()
        .expect("a history")
        .iter()
        .map(|m| m["seq"].as_u64().expect("a seq"))
        .collect()
}

/// A room's kept messages (up to 1000), through the HTTP API.
pub async fn history(gw: SocketAddr, room: &str) -> Vec<Value> {
    let (status, body) = http(
        gw,
        "GET",
        &format!("/api/rooms/{room}/messages?limit=1000"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body["messages"].as_array().expect("messages").clone()
}

/// The seqs of a room's kept messages.
pub async fn history_seqs(gw: SocketAddr, room: &str) -> Vec<u64> {
    history(gw, room)
        .await
        .iter()
        .map(|m| m["seq"].as_u64().expect("seq"))
        .collect()
}

/// A room's writer, its reader (on another gateway) and history agree: the
/// acks are 1..=N, the reader saw exactly them, history holds them once.
pub async fn check_room(gw: SocketAddr, room: &str, acked: &[u64], reader: &mut Client) {
    assert!(!acked.is_empty(), "{room}: nothing was acked");
    assert_eq!(
        acked,
        (1..=acked.len() as u64).collect::<Vec<_>>(),
        "{room}: acked seqs"
    );
    assert_eq!(
        reader.msgs_until(acked.len() as u64).await,
        acked,
        "{room}: the reader saw a gap or a repeat"
    );
    assert_eq!(history_seqs(gw, room).await, acked, "{room}: history");
}

/// Waits until the gateway at `gw` lists `nodes` nodes.
pub async fn wait_for_nodes(gw: SocketAddr, nodes: usize) {
    eventually!({
        let (_, v) = http(gw, "GET", "/api/cluster", None).await;
        if v["nodes"].as_array().map_or(0, Vec::len) == nodes {
            Ok(())
        } else {
            Err(v)
        }
    });
}

/// Chat under way: a writer per room through one gateway (retrying
/// `unavailable`), a reader per room through another.
pub struct ChatLoad {
    rooms: Vec<String>,
    writers: Vec<Writer>,
    readers: Vec<Client>,
    readers_at: SocketAddr,
}

impl ChatLoad {
    /// Joins the readers, then starts the writers, each sending every `pace`.
    pub async fn start(
        writers_at: SocketAddr,
        readers_at: SocketAddr,
        rooms: Vec<String>,
        pace: Duration,
    ) -> Self {
        let mut readers = Vec::new();
        for room in &rooms {
            let mut r = Client::connect(readers_at, &format!("r{}", readers.len())).await;
            r.join(room).await;
            readers.push(r);
        }
        let writers = rooms
            .iter()
            .map(|room| Writer::spawn(writers_at, room, pace, true))
            .collect();
        Self {
            rooms,
            writers,
            readers,
            readers_at,
        }
    }

    /// Stops the writers and checks every room (`check_room`).
    pub async fn check(self) {
        for ((room, w), mut r) in self.rooms.iter().zip(self.writers).zip(self.readers) {
            let acked = w.finish().await;
            check_room(self.readers_at, room, &acked, &mut r).await;
        }
    }
}

/// The node that owns each of `rooms`, as a gateway's API says.
pub async fn owners(
    gw: SocketAddr,
    rooms: impl IntoIterator<Item = String>,
) -> std::collections::HashMap<String, String> {
    let mut out = std::collections::HashMap::new();
    for room in rooms {
        let owner = owner(gw, &room).await.unwrap_or_default();
        out.insert(room, owner);
    }
    out
}

/// The node that owns `room`, as a gateway's API says.
pub async fn owner(gw: SocketAddr, room: &str) -> Option<String> {
    let (_, info) = http(gw, "GET", &format!("/api/rooms/{room}"), None).await;
    info["owner"].as_str().map(str::to_string)
}

/// A counter or gauge of the gateway's `/metrics` (0 while unset).
pub async fn metric(addr: SocketAddr, name: &str) -> u64 {
    let (_, text) = http(addr, "GET", "/metrics", None).await;
    text.as_str()
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse::<f64>().ok())
        .unwrap_or(0.0) as u64
}

/// Drains the node that owns `room` and waits until another node serves it.
pub async fn drain_owner(gw: SocketAddr, room: &str) {
    let owner = owner(gw, room).await.expect("the room has an owner");
    let (status, _) = http(
        gw,
        "POST",
        &format!("/api/cluster/nodes/{owner}/drain"),
        None,
    )
    .await;
    assert_eq!(status, 202);
    eventually!({
        let (_, now) = http(gw, "GET", &format!("/api/rooms/{room}"), None).await;
        if now["owner"].as_str().is_some_and(|o| o != owner) {
            Ok(())
        } else {
            Err(now)
        }
    });
}
