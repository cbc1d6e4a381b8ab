//! Bad input gets the contract's error codes, and the connection stays open.

mod support;

use std::time::Duration;

use roomring::dev::DevOptions;
use roomring::gateway::Auth;
use serde_json::json;
use support::{http_with, Client, TestCluster};
use tokio_tungstenite::tungstenite::Message;

async fn expect_error(c: &mut Client, code: &str) -> serde_json::Value {
    let f = c.recv().await;
    assert_eq!(
        (f["t"].as_str(), f["code"].as_str()),
        (Some("error"), Some(code)),
        "{f}"
    );
    assert!(!f["message"].as_str().unwrap_or_default().is_empty());
    f
}

async fn still_open(c: &mut Client) {
    c.send(json!({"t": "ping", "id": "alive"})).await;
    assert_eq!(c.recv().await, json!({"t": "pong", "id": "alive"}));
}

#[tokio::test]
async fn malformed_frames_are_bad_requests_and_the_connection_stays_open() {
    let cluster = TestCluster::start(3, 1).await;
    let mut c = Client::connect(cluster.addr(), "ann").await;
    for bad in [
        "garbage".to_string(),
        "[1,2]".into(),
        json!({"no": "type"}).to_string(),
        json!({"t": "dance", "id": "d"}).to_string(),
        json!({"t": "join"}).to_string(),
        json!({"t": "join", "room": "nope"}).to_string(),
        json!({"t": "join", "room": "chat:a b"}).to_string(),
        json!({"t": "join", "room": "chat:x", "since": -1}).to_string(),
        json!({"t": "ping", "id": 7}).to_string(),
        json!({"t": "ping", "id": "x".repeat(65)}).to_string(),
    ] {
        c.send_text(bad.clone()).await;
        let f = expect_error(&mut c, "bad_request").await;
        if bad.contains("\"d\"") {
            assert_eq!(f["id"], "d", "a valid id is echoed");
        }
    }
    c.send_message(Message::Binary(vec![1, 2, 3].into())).await;
    expect_error(&mut c, "bad_request").await;
    c.join("chat:x").await;
    c.send(json!({"t": "send", "room": "chat:x", "body": "no id"}))
        .await;
    expect_error(&mut c, "bad_request").await;
    c.send(json!({"t": "send", "room": "chat:x", "id": "nb"}))
        .await;
    assert_eq!(expect_error(&mut c, "bad_request").await["id"], "nb");
    c.send(json!({"t": "read", "room": "chat:x", "seq": 99, "id": "r"}))
        .await;
    expect_error(&mut c, "bad_request").await;
    c.send(json!({"t": "board.put", "room": "chat:x", "id": "bp", "widget": {"id": "w", "kind": "k", "x": 0, "y": 0}})).await;
    let f = expect_error(&mut c, "bad_request").await;
    assert_eq!(
        (f["id"].as_str(), f["room"].as_str()),
        (Some("bp"), Some("chat:x"))
    );
    still_open(&mut c).await;
    cluster.stop().await;
}

#[tokio::test]
async fn oversize_frames_and_bodies_are_too_large() {
    let cluster = TestCluster::start(3, 1).await;
    let mut c = Client::connect(cluster.addr(), "ann").await;
    c.join("chat:big").await;
    let body = "x".repeat(17 * 1024);
    c.send(json!({"t": "send", "room": "chat:big", "id": "b1", "body": body}))
        .await;
    assert_eq!(expect_error(&mut c, "too_large").await["id"], "b1");
    c.send(json!({"t": "ping", "pad": "y".repeat(70 * 1024)}))
        .await;
    expect_error(&mut c, "too_large").await;
    still_open(&mut c).await;
    c.send_text("z".repeat(1024 * 1024 + 10)).await;
    assert_eq!(c.close_code().await, Some(1009));
    cluster.stop().await;
}

#[tokio::test]
async fn operations_on_unjoined_rooms_are_not_joined() {
    let cluster = TestCluster::start(3, 1).await;
    let mut c = Client::connect(cluster.addr(), "ann").await;
    for frame in [
        json!({"t": "send", "room": "chat:nj", "id": "s", "body": 1}),
        json!({"t": "typing", "room": "chat:nj", "id": "t"}),
        json!({"t": "read", "room": "chat:nj", "seq": 0, "id": "r"}),
        json!({"t": "leave", "room": "chat:nj", "id": "l"}),
    ] {
        c.send(frame.clone()).await;
        let f = expect_error(&mut c, "not_joined").await;
        assert_eq!(
            (&f["id"], f["room"].as_str()),
            (&frame["id"], Some("chat:nj"))
        );
    }
    still_open(&mut c).await;
    cluster.stop().await;
}

#[tokio::test]
async fn flooding_is_rate_limited() {
    let mut options = DevOptions::for_test(1, 1);
    options.clients.rate_per_sec = 5;
    options.clients.rate_burst = 10;
    let cluster = TestCluster::with(options).await;
    let mut c = Client::connect(cluster.addr(), "ann").await;
    for i in 0..30 {
        c.send(json!({"t": "ping", "id": format!("p{i}")})).await;
    }
    let (mut pongs, mut limited) = (0, 0);
    for _ in 0..30 {
        let f = c.recv().await;
        match f["t"].as_str() {
            Some("pong") => pongs += 1,
            Some("error") if f["code"] == "rate_limited" => {
                assert!(f["id"].as_str().unwrap().starts_with('p'));
                limited += 1
            }
            _ => panic!("unexpected {f}"),
        }
    }
    assert!((10..=12).contains(&pongs), "the burst passes: {pongs}");
    assert_eq!(pongs + limited, 30);
    tokio::time::sleep(Duration::from_millis(400)).await;
    c.send(json!({"t": "ping", "id": "later"})).await;
    assert_eq!(c.recv().await["t"], "pong", "tokens come back");
    cluster.stop().await;
}

/// Frames that fail to parse, and binary frames, spend tokens like any
/// other: a flood of them is not a way around the limit.
#[tokio::test]
async fn unparseable_and_binary_frames_take_rate_tokens() {
    let mut options = DevOptions::for_test(1, 1);
    options.clients.rate_per_sec = 1;
    options.clients.rate_burst = 10;
    let cluster = TestCluster::with(options).await;
    let mut c = Client::connect(cluster.addr(), "ann").await;
    for i in 0..10 {
        if i % 2 == 0 {
            c.send_text("{not json".into()).await;
        } else {
            c.send_message(Message::Binary(vec![1, 2, 3].into())).await;
        }
    }
    for _ in 0..10 {
        assert_eq!(c.recv().await["code"], "bad_request");
    }
    // The burst is spent: the next frame, a valid one, is refused.
    c.send(json!({"t": "ping", "id": "after"})).await;
    let f = c.recv().await;
    assert_eq!(
        (f["t"].as_str(), f["code"].as_str()),
        (Some("error"), Some("rate_limited")),
        "{f}"
    );
    cluster.stop().await;
}

fn token(claims: serde_json::Value) -> String {
    let key = jsonwebtoken::EncodingKey::from_secret(b"test-secret");
    jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).unwrap()
}

fn exp() -> u64 {
    roomring::protocol::now_ms() / 1000 + 600
}

#[tokio::test]
async fn jwt_identity_rooms_and_api_roles() {
    let mut options = DevOptions::for_test(2, 1);
    options.auth = Auth::jwt("test-secret");
    let cluster = roomring::dev::DevCluster::start(options).await.unwrap();
    let addr = cluster.addr();
    assert!(
        Client::connect_query(addr, "user=ann").await.is_err(),
        "no token: refused"
    );
    assert!(
        Client::connect_query(addr, "token=not.a.jwt")
            .await
            .is_err(),
        "bad token: refused"
    );
    let t = token(json!({"sub": "ann", "exp": exp(), "rooms": ["chat:couple-42", "board:*"]}));
    let mut c = Client::connect_query(addr, &format!("token={t}"))
        .await
        .unwrap();
    c.send(json!({"t": "join", "room": "chat:couple-42", "id": "ok"}))
        .await;
    assert_eq!(c.recv_type("joined").await["online"], json!(["ann"]));
    c.send(json!({"t": "join", "room": "chat:couple-43", "id": "no"}))
        .await;
    assert_eq!(expect_error(&mut c, "forbidden").await["id"], "no");

    let (status, body) = http_with(addr, "GET", "/api/rooms/chat:x", None, &[]).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("unauthorized"))
    );
    let service = format!(
        "Bearer {}",
        token(json!({"sub": "svc", "exp": exp(), "role": "service", "aud": "roomring-api"}))
    );
    let (status, _) = http_with(
        addr,
        "GET",
        "/api/rooms/chat:x",
        None,
        &[("Authorization", &service)],
    )
    .await;
    assert_eq!(status, 200);
    let (status, body) = http_with(
        addr,
        "GET",
        "/api/cluster",
        None,
        &[("Authorization", &service)],
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("forbidden"))
    );
    let admin = format!(
        "Bearer {}",
        token(json!({"sub": "ops", "exp": exp(), "role": "admin", "aud": "roomring-api"}))
    );
    let (status, _) = http_with(
        addr,
        "GET",
        "/api/cluster",
        None,
        &[("Authorization", &admin)],
    )
    .await;
    assert_eq!(status, 200);
    cluster.stop().await;
}
