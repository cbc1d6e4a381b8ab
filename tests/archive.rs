//! The archive on a real PostgreSQL server: the suite every backend passes,
//! and what a bad URL or an unreachable server gets.

mod support;

use roomring::archive::postgres::PostgresArchive;
use support::postgres::Postgres;

#[tokio::test]
async fn the_postgres_archive_passes_the_suite() {
    let pg = Postgres::start();
    let archive = PostgresArchive::connect(&pg.url()).await.expect("connects");
    roomring::archive::conformance::run(&archive).await;
    // A second process starting on the same database finds the table there.
    PostgresArchive::connect(&pg.url())
        .await
        .expect("connects again");
}

#[tokio::test]
async fn a_bad_url_or_an_absent_server_is_a_clear_error() {
    let bad = PostgresArchive::connect("mysql://x")
        .await
        .err()
        .expect("refused");
    assert!(bad.to_string().contains("postgres://"), "{bad}");
    let port = support::redis::free_port();
    let absent =
        PostgresArchive::connect(&format!("postgres://postgres@127.0.0.1:{port}/postgres"))
            .await
            .err()
            .expect("no server");
    assert!(
        absent.to_string().contains("archive unavailable"),
        "{absent}"
    );
}

/// Pages of `history` from `before` down to seq 1: every seq once, in order.
async fn page_back(c: &mut support::Client, room: &str, before: u64) -> Vec<u64> {
    let mut seqs = Vec::new();
    let mut before = before;
    for page in 0.. {
        let id = format!("p{page}");
        c.send(serde_json::json!({"t": "history", "room": room, "id": id, "before": before, "limit": 200}))
            .await;
        let got = c.recv_type("history").await;
        let mut these: Vec<u64> = got["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["seq"].as_u64().unwrap())
            .collect();
        let more = got["more"] == true;
        if let Some(first) = these.first() {
            before = *first;
        }
        these.extend(seqs);
        seqs = these;
        if !more {
            return seqs;
        }
        assert!(page < 100, "paging never ends");
    }
    unreachable!()
}

/// The number of times each seq of `room` is in the archive.
async fn archived(url: &str, room: &str) -> Vec<(i64, i64)> {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let rows = client
        .query(
            "SELECT seq, count(*) FROM roomring_events WHERE room = $1 GROUP BY seq ORDER BY seq",
            &[&room],
        )
        .await;
    // Before the node's archiver has created its table, nothing is archived.
    rows.map(|rows| rows.iter().map(|r| (r.get(0), r.get(1))).collect())
        .unwrap_or_default()
}

/// Waits until the archive holds each of `room`'s seqs 1 to `upto` once.
async fn archived_once(url: &str, room: &str, upto: i64) {
    let expected: Vec<(i64, i64)> = (1..=upto).map(|s| (s, 1)).collect();
    eventually!({
        let counts = archived(url, room).await;
        if counts == expected {
            Ok(())
        } else {
            Err(counts.len())
        }
    });
}

/// A new client of `user` that has joined `room` (its node may still be
/// starting).
async fn joined_anew(gw: std::net::SocketAddr, user: &str, room: &str) -> support::Client {
    let mut c = support::Client::connect(gw, user).await;
    eventually!({
        c.send(serde_json::json!({"t": "join", "room": room, "id": "j"}))
            .await;
        let f = c.recv().await;
        if f["t"] == "joined" {
            Ok(())
        } else {
            Err(f)
        }
    });
    c
}

/// A node with an archive: every acked message reaches it once, including
/// those of a node killed while it archived, and `history` pages back past
/// what the room keeps, to seq 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acked_message_is_archived_once_and_history_pages_back_through_it() {
    let pg = Postgres::start();
    let redis = support::redis::RedisServer::start();
    let node_flags = ["--archive", &pg.url(), "--history", "1000"];
    let mut cluster =
        support::procs::ProcCluster::start(&redis.url(), (1, &node_flags), (1, &[])).await;
    let gw = cluster.gateways[0].addr;
    let room = "chat:kept-for-good";
    let mut ann = support::Client::connect(gw, "ann").await;
    ann.join(room).await;
    for i in 1..=1200 {
        ann.say(room, &format!("a{i}"), "before").await;
    }
    // Killed while it archives; a new process takes the room from Redis.
    cluster.nodes[0].kill9();
    cluster.nodes[0] = support::procs::Proc::start_with("node", "n1", &redis.url(), &node_flags);
    let mut bob = joined_anew(gw, "bob", room).await;
    for i in 1..=300 {
        bob.say(room, &format!("b{i}"), "after").await;
    }
    let all: Vec<u64> = (1..=1500).collect();
    assert_eq!(
        page_back(&mut bob, room, 1501).await,
        all,
        "paged back to seq 1"
    );
    archived_once(&pg.url(), room, 1500).await;
}

/// A board's changes are stored events too: they page back past what the
/// board keeps, from the archive, as a chat's messages do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn board_changes_page_back_through_the_archive_like_messages() {
    let pg = Postgres::start();
    let redis = support::redis::RedisServer::start();
    let node_flags = ["--archive", &pg.url(), "--history", "1000"];
    let cluster =
        support::procs::ProcCluster::start(&redis.url(), (1, &node_flags), (1, &[])).await;
    let room = "board:kept-for-good";
    let mut ann = support::Client::connect(cluster.gateways[0].addr, "ann").await;
    ann.join(room).await;
    for i in 1..=1100 {
        ann.send(serde_json::json!({"t": "board.put", "room": room, "id": format!("p{i}"),
            "widget": {"id": format!("n{}", i % 7), "kind": "sticky", "x": i, "y": 0, "text": "idea"}}))
            .await;
        ann.recv_type("board.changed").await;
    }
    archived_once(&pg.url(), room, 1100).await;
    let all: Vec<u64> = (1..=1100).collect();
    assert_eq!(
        page_back(&mut ann, room, 1101).await,
        all,
        "paged back to seq 1"
    );
    ann.send(serde_json::json!({"t": "history", "room": room, "before": 3, "limit": 5}))
        .await;
    let page = ann.recv_type("history").await;
    let oldest = &page["messages"][0];
    assert_eq!(
        (&oldest["t"], &oldest["seq"], &oldest["widgets"][0]["x"]),
        (
            &serde_json::json!("board.changed"),
            &serde_json::json!(1),
            &serde_json::json!(1.0)
        ),
        "{page}"
    );
}

/// PostgreSQL away under load, and the node killed before it came back:
/// sends are acked all along, Redis keeps what the archive does not hold
/// yet (past the room's `--history`), and the next owner archives it once
/// PostgreSQL is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_acked_while_postgres_is_away_is_lost_to_the_archive() {
    let mut pg = Postgres::start();
    let redis = support::redis::RedisServer::start();
    let metrics: std::net::SocketAddr = ([127, 0, 0, 1], support::redis::free_port()).into();
    let metrics_flag = format!("--metrics-listen={metrics}");
    let node_flags = ["--archive", &pg.url(), "--history", "1000", &metrics_flag];
    let mut cluster =
        support::procs::ProcCluster::start(&redis.url(), (1, &node_flags), (1, &[])).await;
    let gw = cluster.gateways[0].addr;
    let room = "chat:while-away";
    let mut ann = support::Client::connect(gw, "ann").await;
    ann.join(room).await;
    for i in 1..=50 {
        ann.say(room, &format!("a{i}"), "archived").await;
    }
    archived_once(&pg.url(), room, 50).await;
    pg.stop();
    for i in 51..=1250 {
        ann.say(room, &format!("a{i}"), "acked while PostgreSQL is away")
            .await;
    }
    pages_while_postgres_is_away(&mut ann, gw, room).await;
    // Counted from the moment each event was handed to the archiver.
    eventually!({
        match support::metric(metrics, "roomring_archive_lag").await {
            1200 => Ok(()),
            lag => Err(lag),
        }
    });
    cluster.nodes[0].kill9();
    pg.start_again();
    cluster.nodes[0] = support::procs::Proc::start_with("node", "n1", &redis.url(), &node_flags);
    let _bob = joined_anew(gw, "bob", room).await;
    archived_once(&pg.url(), room, 1250).await;
}

/// The room keeps 251 to 1250 in memory, the archive 1 to 50, Redis the
/// rest: pages read memory, then Redis; past it the archive is away.
async fn pages_while_postgres_is_away(
    c: &mut support::Client,
    gw: std::net::SocketAddr,
    room: &str,
) {
    let seqs = |messages: &serde_json::Value| -> Vec<u64> {
        let messages = messages.as_array().unwrap();
        messages
            .iter()
            .map(|m| m["seq"].as_u64().unwrap())
            .collect()
    };
    c.send(serde_json::json!({"t": "history", "room": room, "before": 300, "limit": 200}))
        .await;
    let page = c.recv_type("history").await;
    assert_eq!(
        seqs(&page["messages"]),
        (100..300).collect::<Vec<_>>(),
        "memory, then Redis"
    );
    assert_eq!(page["more"], true);
    let path = format!("/api/rooms/{room}/messages?before=100&limit=200");
    let (status, page) = support::http(gw, "GET", &path, None).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(
        seqs(&page["messages"]),
        (51..100).collect::<Vec<_>>(),
        "what Redis holds"
    );
    assert_eq!(page["more"], true, "older ones are archived");
    let path = format!("/api/rooms/{room}/messages?before=51&limit=200");
    let (status, answer) = support::http(gw, "GET", &path, None).await;
    assert_eq!(
        (status, &answer["error"]["code"]),
        (503, &serde_json::json!("unavailable")),
        "{answer}"
    );
}

/// With `--retention`, what was stored longer ago leaves the archive, and
/// what is newer stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retention_removes_older_events_from_the_archive() {
    let pg = Postgres::start();
    let redis = support::redis::RedisServer::start();
    let node_flags = ["--archive", &pg.url(), "--retention", "3s"];
    let cluster =
        support::procs::ProcCluster::start(&redis.url(), (1, &node_flags), (1, &[])).await;
    let room = "chat:short-lived";
    let mut ann = support::Client::connect(cluster.gateways[0].addr, "ann").await;
    ann.join(room).await;
    for i in 1..=5 {
        ann.say(room, &format!("old{i}"), "goes").await;
    }
    archived_once(&pg.url(), room, 5).await;
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    for i in 6..=8 {
        ann.say(room, &format!("new{i}"), "stays").await;
    }
    eventually!({
        let seqs: Vec<i64> = archived(&pg.url(), room)
            .await
            .iter()
            .map(|(s, _)| *s)
            .collect();
        if seqs == [6, 7, 8] {
            Ok(())
        } else {
            Err(seqs)
        }
    });
}

/// `DELETE /api/rooms/{room}`: the room's memory, Redis keys and archived
/// events go; its reader gets `joined` of a new, empty history; deleting
/// again is not an error; the room goes on from seq 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_room_removes_its_history_everywhere_and_tells_its_readers() {
    let pg = Postgres::start();
    let redis = support::redis::RedisServer::start();
    let node_flags = ["--archive", &pg.url()];
    let cluster =
        support::procs::ProcCluster::start(&redis.url(), (1, &node_flags), (1, &[])).await;
    let gw = cluster.gateways[0].addr;
    let room = "chat:to-forget";
    let mut ann = support::Client::connect(gw, "ann").await;
    let first = ann.join(room).await;
    for i in 1..=20 {
        ann.say(room, &format!("m{i}"), "soon gone").await;
    }
    archived_once(&pg.url(), room, 20).await;
    let path = format!("/api/rooms/{room}");
    let (status, _) = support::http(gw, "DELETE", &path, None).await;
    assert_eq!(status, 204);
    let joined = ann.recv_type("joined").await;
    assert_eq!(joined["truncated"], true);
    assert_ne!(joined["epoch"], first["epoch"], "a new history");
    assert_eq!(joined["history"], serde_json::json!([]));
    assert!(
        archived(&pg.url(), room).await.is_empty(),
        "the archive forgot it"
    );
    assert_eq!(
        redis
            .query(&["XLEN", &format!("roomring:room:{room}:log")])
            .trim(),
        "0"
    );
    let (status, _) = support::http(gw, "DELETE", &path, None).await;
    assert_eq!(status, 204, "again, and nothing to delete");
    assert_eq!(ann.say(room, "after", "a new start").await, 1);
    let (status, page) =
        support::http(gw, "GET", &format!("{path}/messages?before=100"), None).await;
    assert_eq!(status, 200);
    assert_eq!(page["messages"].as_array().unwrap().len(), 1);
}
