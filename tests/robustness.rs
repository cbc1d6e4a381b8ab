//! Stalls, big payloads and idle rooms: nothing breaks a room or goes
//! unnoticed.

mod support;

use std::time::Duration;

use support::procs::Proc;
use support::Client;

/// A `dev` process paused past its lease (a laptop asleep, SIGSTOP) comes
/// back with every room as it was (its history, its seq, its epoch) and its
/// subscriptions live: every message sent after is delivered.
#[tokio::test]
async fn a_stall_of_the_whole_process_loses_nothing_and_leaves_no_subscription_deaf() {
    let dev = Proc::dev();
    let rooms: Vec<String> = (0..12).map(|i| format!("chat:stall-{i}")).collect();
    let mut ann = Client::connect(dev.addr, "ann").await;
    let mut bob = Client::connect(dev.addr, "bob").await;
    let mut epochs = Vec::new();
    for room in &rooms {
        epochs.push(ann.join(room).await["epoch"].clone());
        bob.join(room).await;
        assert_eq!(ann.say(room, &format!("{room}-before"), "before").await, 1);
    }
    dev.signal("STOP");
    tokio::time::sleep(Duration::from_secs(5)).await;
    dev.signal("CONT");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut sent = Vec::new();
    for round in 0..3 {
        for room in &rooms {
            let id = format!("{room}-{round}");
            let seq = ann.say(room, &id, "after the stall").await;
            sent.push((room.clone(), seq));
        }
    }
    let mut got = std::collections::HashSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while got.len() < sent.len() && tokio::time::Instant::now() < deadline {
        let f = bob.recv().await;
        if f["t"] == "msg" && f["body"]["text"] == "after the stall" {
            got.insert((
                f["room"].as_str().unwrap().to_string(),
                f["seq"].as_u64().unwrap(),
            ));
        }
    }
    let missing: Vec<_> = sent.iter().filter(|s| !got.contains(*s)).collect();
    assert!(missing.is_empty(), "bob never got {missing:?}");
    assert!(
        sent.iter().all(|(_, seq)| *seq > 1),
        "every room went on from its seq: {sent:?}"
    );
    let mut carol = Client::connect(dev.addr, "carol").await;
    for (room, epoch) in rooms.iter().zip(&epochs) {
        let joined = carol.join(room).await;
        assert_eq!(&joined["epoch"], epoch, "{room}: the same history");
        assert_eq!(joined["history"][0]["body"]["text"], "before", "{room}");
    }
}

async fn rooms_held(addr: std::net::SocketAddr) -> u64 {
    let (_, body) = support::http(addr, "GET", "/api/cluster", None).await;
    body["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["rooms"].as_u64().unwrap_or(0))
        .sum()
}

/// A join/leave loop over many rooms does not grow the nodes for ever: rooms
/// nobody has joined for the idle time are released, and their stored
/// history comes back with the next join.
#[tokio::test]
async fn rooms_nobody_joined_are_released_and_their_history_stays() {
    let mut options = roomring::dev::DevOptions::for_test(2, 1);
    options.room_idle = Duration::from_secs(1);
    options.memory_store = true;
    let cluster = support::TestCluster::with(options).await;
    let addr = cluster.addr();
    let mut c = Client::connect(addr, "ann").await;
    for i in 0..300 {
        let room = format!("chat:idle-{i}");
        c.join(&room).await;
        if i % 2 == 0 {
            c.say(&room, &format!("m{i}"), "kept").await;
        }
        c.send(serde_json::json!({"t": "leave", "room": room}))
            .await;
    }
    // One room stays joined: it is never released.
    c.join("chat:idle-held").await;
    eventually!({
        let held = rooms_held(addr).await;
        if held == 1 {
            Ok(())
        } else {
            Err(held)
        }
    });
    let joined = c.join("chat:idle-10").await;
    let history = joined["history"].as_array().unwrap();
    assert_eq!(history.len(), 1, "{joined}");
    assert_eq!(history[0]["body"]["text"], "kept");
    assert_eq!(c.say("chat:idle-10", "again", "next").await, 2);
    cluster.stop().await;
}

/// Without a store (plain `dev`), only rooms that never stored an event are
/// released: the rest hold the only copy of their history.
#[tokio::test]
async fn without_a_store_only_rooms_without_history_are_released() {
    let mut options = roomring::dev::DevOptions::for_test(2, 1);
    options.room_idle = Duration::from_secs(1);
    let cluster = support::TestCluster::with(options).await;
    let addr = cluster.addr();
    let mut c = Client::connect(addr, "ann").await;
    for i in 0..100 {
        let room = format!("chat:mem-{i}");
        c.join(&room).await;
        if i < 10 {
            c.say(&room, &format!("m{i}"), "only copy").await;
        }
        c.send(serde_json::json!({"t": "leave", "room": room}))
            .await;
    }
    eventually!({
        let held = rooms_held(addr).await;
        if held == 10 {
            Ok(())
        } else {
            Err(held)
        }
    });
    let joined = c.join("chat:mem-3").await;
    assert_eq!(joined["history"][0]["body"]["text"], "only copy");
    cluster.stop().await;
}

/// A client that answers no ping (its host vanished, or it hung) is closed
/// within a few ping intervals and leaves presence; one that answers stays.
#[tokio::test]
async fn a_client_that_answers_no_ping_is_closed_and_leaves_presence() {
    let mut options = roomring::dev::DevOptions::for_test(1, 1);
    options.clients.ping_interval = Duration::from_secs(1);
    let cluster = support::TestCluster::with(options).await;
    let gw = cluster.gateways[0].addr;
    let mut ann = Client::connect(gw, "ann").await;
    ann.join("chat:ping").await;
    let mut bob = Client::connect(gw, "bob").await;
    bob.join("chat:ping").await;
    // From here on bob's socket is never read, so his client sends no
    // pong; ann's reads, and her client answers every ping.
    let started = std::time::Instant::now();
    loop {
        let f = ann.recv_type("presence").await;
        if f["user"] == "bob" && f["online"] == false {
            break;
        }
    }
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(1),
        "not before a ping went unanswered: {took:?}"
    );
    assert_eq!(bob.close_code().await, Some(1001));
    // ann stayed: she is still served after more intervals.
    ann.stay(Duration::from_millis(3500)).await;
    ann.say("chat:ping", "p1", "still here").await;
}

/// A raw WebSocket connection whose halves are independent, with a small
/// receive buffer: it can flood a gateway while reading nothing, then read.
struct RawReader {
    read: tokio::net::tcp::OwnedReadHalf,
    buf: Vec<u8>,
}

type RawWriter = tokio::net::tcp::OwnedWriteHalf;

async fn raw_connect(addr: std::net::SocketAddr, user: &str) -> (RawReader, RawWriter) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(16 * 1024).unwrap();
    let mut stream = socket.connect(addr).await.unwrap();
    let request = format!(
        "GET /ws?user={user} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let end = loop {
        let mut chunk = [0u8; 1024];
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "the upgrade was answered");
        buf.extend_from_slice(&chunk[..n]);
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
    };
    assert!(buf.starts_with(b"HTTP/1.1 101"), "upgraded");
    buf.drain(..end);
    let (read, write) = stream.into_split();
    (RawReader { read, buf }, write)
}

/// Writes one text frame, masked with a zero key.
async fn raw_send(write: &mut RawWriter, text: &str) {
    use tokio::io::AsyncWriteExt;
    let len = text.len();
    let mut frame = vec![0x81];
    if len < 126 {
        frame.push(0x80 | len as u8);
    } else if len < 65536 {
        frame.push(0x80 | 126);
        frame.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        frame.push(0x80 | 127);
        frame.extend_from_slice(&(len as u64).to_be_bytes());
    }
    frame.extend_from_slice(&[0; 4]);
    frame.extend_from_slice(text.as_bytes());
    write.write_all(&frame).await.unwrap();
}

impl RawReader {
    /// The next text frame's JSON (pings and other frames skipped).
    async fn recv(&mut self) -> serde_json::Value {
        use tokio::io::AsyncReadExt;
        loop {
            if let Some((opcode, payload)) = self.frame() {
                if opcode == 1 {
                    return serde_json::from_slice(&payload).unwrap();
                }
                continue;
            }
            let mut chunk = [0u8; 64 * 1024];
            let n = self.read.read(&mut chunk).await.unwrap();
            assert!(n > 0, "the gateway closed the connection");
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Cuts one whole server frame (unmasked) off the buffer.
    fn frame(&mut self) -> Option<(u8, Vec<u8>)> {
        let b = &self.buf;
        if b.len() < 2 {
            return None;
        }
        let (len, at) = match b[1] & 0x7f {
            126 if b.len() >= 4 => (u16::from_be_bytes([b[2], b[3]]) as usize, 4),
            127 if b.len() >= 10 => (
                u64::from_be_bytes(b[2..10].try_into().unwrap()) as usize,
                10,
            ),
            126 | 127 => return None,
            n => (n as usize, 2),
        };
        if b.len() < at + len {
            return None;
        }
        let opcode = b[0] & 0x0f;
        let payload = b[at..at + len].to_vec();
        self.buf.drain(..at + len);
        Some((opcode, payload))
    }
}

/// A connection whose requests wait for a hung node's link still gets the
/// events of its other rooms: its task writes its socket out while it
/// waits, instead of leaving them queued until the hung node is replaced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_waiting_for_a_hung_nodes_link_still_gets_its_other_rooms_events() {
    let redis = support::redis::RedisServer::start();
    let proxy = support::proxy::Proxy::start().await;
    let advertise = proxy.addr.to_string();
    let hung = Proc::start_with("node", "n1", &redis.url(), &["--advertise", &advertise]);
    proxy.forward_to(hung.addr);
    let _live = Proc::start("node", "n2", &redis.url());
    let unlimited = ["--rate", "1000000", "--burst", "1000000"];
    let gw = Proc::start_with("gateway", "g1", &redis.url(), &unlimited);
    support::wait_for_nodes(gw.addr, 2).await;
    let (mut on_hung, mut on_live) = (None, None);
    for i in 0..64 {
        let room = format!("chat:hol-{i}");
        match support::owner(gw.addr, &room).await.as_deref() {
            Some("n1") => on_hung = on_hung.or(Some(room)),
            Some("n2") => on_live = on_live.or(Some(room)),
            _ => {}
        }
    }
    let (hung_room, live_room) = (on_hung.unwrap(), on_live.unwrap());

    let (mut ann, mut ann_out) = raw_connect(gw.addr, "ann").await;
    for room in [&hung_room, &live_room] {
        raw_send(
            &mut ann_out,
            &format!(r#"{{"t":"join","room":"{room}","id":"j"}}"#),
        )
        .await;
        while ann.recv().await["t"] != "joined" {}
    }
    let mut bob = Client::connect(gw.addr, "bob").await;
    bob.join(&live_room).await;

    // n1 hangs: its link takes nothing. Ann floods its room, reading
    // nothing, until her connection waits for that link.
    proxy.pause();
    let body = "x".repeat(15 * 1024);
    let flood = tokio::spawn(async move {
        for i in 0..6000 {
            let frame = format!(
                r#"{{"t":"send","room":"{hung_room}","id":"f{i}","body":{{"text":"{body}"}}}}"#
            );
            raw_send(&mut ann_out, &frame).await;
        }
    });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while support::metric(gw.addr, "roomring_link_waits_total").await == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the link never filled up"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Bob talks in the live room, more than Ann's socket holds unread.
    let text = "y".repeat(15 * 1024);
    for i in 0..400 {
        bob.say(&live_room, &format!("b{i}"), &text).await;
    }
    // Ann reads now: every one of Bob's messages comes while n1 still hangs.
    let mut got = 0;
    let until = tokio::time::Instant::now() + Duration::from_secs(20);
    while got < 400 {
        let f = tokio::time::timeout_at(until, ann.recv())
            .await
            .unwrap_or_else(|_| panic!("ann got {got} of bob's 400 messages"));
        if f["t"] == "msg" && f["room"] == live_room.as_str() {
            got += 1;
        }
    }
    flood.abort();
    proxy.resume();
}

/// The node applies each record as it reads it, never waiting on a room: a
/// room whose send waits for storage holds up no other room on the link.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_waiting_for_storage_holds_up_no_other_room_on_its_link() {
    let redis = support::redis::RedisServer::start();
    let _node = Proc::start("node", "n1", &redis.url());
    let gw = Proc::start("gateway", "g1", &redis.url());
    support::wait_for_nodes(gw.addr, 1).await;
    let mut ann = Client::connect(gw.addr, "ann").await;
    let mut bob = Client::connect(gw.addr, "bob").await;
    let mut cat = Client::connect(gw.addr, "cat").await;
    ann.join("chat:slow").await;
    bob.join("chat:quick").await;
    cat.join("chat:quick").await;
    ann.say("chat:slow", "warm", "loaded").await;

    // Redis takes no write for a while: Ann's send waits for its commit.
    redis.cli(&["CLIENT", "PAUSE", "3000", "WRITE"]);
    let started = tokio::time::Instant::now();
    let held = serde_json::json!({"t": "send", "room": "chat:slow", "id": "held", "body": {"text": "later"}});
    ann.send(held).await;
    // Meanwhile the other room on the same link is served at once.
    for _ in 0..5 {
        bob.send(serde_json::json!({"t": "read", "room": "chat:quick", "seq": 0}))
            .await;
        let f = cat.recv_type("read").await;
        assert_eq!(f["user"], "bob");
    }
    let served = started.elapsed();
    // Ann's send is answered only when its commit is (acked, or failed
    // after the storage timeout).
    let answer = loop {
        let f = ann.recv().await;
        if f["id"] == "held" {
            break f;
        }
    };
    let waited = started.elapsed();
    assert!(
        served < Duration::from_millis(900) && waited >= Duration::from_millis(900),
        "the other room was served in {served:?}, the held send answered in {waited:?} ({answer})"
    );
}

/// A board of large changes keeps a bounded log, in memory and in Redis:
/// snapshots come by bytes too, so the log can shrink to what follows the
/// last one, and a node that loads the board after a kill has all of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_board_of_large_changes_keeps_a_bounded_log_and_reloads_whole() {
    const WIDGETS: usize = 2000;
    const DRAGS: usize = 200;
    let redis = support::redis::RedisServer::start();
    let mut n1 = Proc::start("node", "n1", &redis.url());
    let gw = Proc::start("gateway", "g1", &redis.url());
    support::wait_for_nodes(gw.addr, 1).await;
    let room = "board:heavy";
    let mut ann = Client::connect(gw.addr, "ann").await;
    ann.join(room).await;
    for i in 0..WIDGETS {
        let mut frame = serde_json::json!({"t": "board.put", "room": room,
            "widget": {"id": format!("w{i:04}"), "kind": "sticky", "x": 0, "y": i}});
        if i + 1 == WIDGETS {
            frame["id"] = serde_json::json!("laid");
        }
        ann.send(frame).await;
    }
    while ann.recv_type("board.changed").await["id"] != "laid" {}
    let ids: Vec<String> = (0..WIDGETS).map(|i| format!("w{i:04}")).collect();
    for d in 0..DRAGS {
        let id = format!("d{d}");
        ann.send(
            serde_json::json!({"t": "board.move", "room": room, "id": id,
            "ids": ids, "dx": 1, "dy": 0}),
        )
        .await;
        while ann.recv_type("board.changed").await["id"] != id.as_str() {}
    }
    // Each drag's change is about 90 KB: 16 MiB hold some 180 of them,
    // and Redis trims by whole nodes of 100 entries.
    let key = format!("{}:room:{room}:log", roomring::coordinator::redis::PREFIX);
    let stored: usize = redis.query(&["XLEN", &key]).trim().parse().unwrap();
    assert!(
        stored < 600,
        "{stored} of {} events stored",
        WIDGETS + DRAGS
    );

    n1.kill9();
    let _n2 = Proc::start("node", "n2", &redis.url());
    let mut bob = Client::connect(gw.addr, "bob").await;
    let joined = eventually!({
        bob.send(serde_json::json!({"t": "join", "room": room, "id": "j"}))
            .await;
        let f = bob.recv_either("joined", Some("j")).await;
        if f["t"] == "joined" {
            Ok(f)
        } else {
            Err(f)
        }
    });
    let widgets = joined["widgets"].as_array().unwrap();
    assert_eq!(widgets.len(), WIDGETS);
    assert!(
        widgets.iter().all(|w| w["x"] == DRAGS as f64),
        "every widget where the last drag left it"
    );
}

/// Rooms only joined and left leave nothing in Redis once released; a room
/// with history keeps it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_without_data_leave_no_keys_behind() {
    let redis = support::redis::RedisServer::start();
    let _n1 = Proc::start_with("node", "n1", &redis.url(), &["--room-idle", "1"]);
    let gw = Proc::start("gateway", "g1", &redis.url());
    support::wait_for_nodes(gw.addr, 1).await;
    let room_keys = |redis: &support::redis::RedisServer| -> Vec<String> {
        let pattern = format!("{}:room:*", roomring::coordinator::redis::PREFIX);
        let mut keys: Vec<String> = redis
            .query(&["KEYS", &pattern])
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect();
        keys.sort();
        keys
    };
    let mut ann = Client::connect(gw.addr, "ann").await;
    for i in 0..30 {
        let room = format!("chat:passing-{i}");
        ann.join(&room).await;
        ann.send(serde_json::json!({"t": "leave", "room": room}))
            .await;
    }
    ann.join("chat:kept").await;
    ann.say("chat:kept", "m", "kept").await;
    ann.send(serde_json::json!({"t": "leave", "room": "chat:kept"}))
        .await;
    assert!(
        room_keys(&redis).len() > 30,
        "every room touched has its keys"
    );
    eventually!({
        let keys = room_keys(&redis);
        if keys.iter().all(|k| k.contains("chat:kept")) {
            Ok(())
        } else {
            Err(keys)
        }
    });
    let kept = room_keys(&redis);
    assert!(kept.iter().any(|k| k.ends_with(":log")), "{kept:?}");
    let mut bob = Client::connect(gw.addr, "bob").await;
    let joined = bob.join("chat:kept").await;
    assert_eq!(joined["history"][0]["body"]["text"], "kept");
}
