//! The HTTP API on the gateways.

mod support;

use serde_json::json;
use support::{http, http_with, Client, TestCluster};

#[tokio::test]
async fn posting_reading_and_paging_messages() {
    let cluster = TestCluster::start(3, 2).await;
    let (g1, g2) = (cluster.gateways[0].addr, cluster.gateways[1].addr);
    let mut ann = Client::connect(g2, "ann").await;
    ann.join("chat:api").await;
    for i in 1..=5 {
        let (status, body) = http(
            g1,
            "POST",
            "/api/rooms/chat:api/messages",
            Some(json!({"from": "bot", "body": {"n": i}})),
        )
        .await;
        assert_eq!((status, body["seq"].as_u64()), (200, Some(i)));
        let m = ann.recv_type("msg").await;
        assert_eq!(
            (m["from"].as_str(), m["body"]["n"].as_u64()),
            (Some("bot"), Some(i))
        );
    }
    let (status, page) = http(
        g2,
        "GET",
        "/api/rooms/chat:api/messages?since=1&limit=2",
        None,
    )
    .await;
    assert_eq!(status, 200);
    let seqs: Vec<_> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, vec![2, 3]);
    let (_, all) = http(g2, "GET", "/api/rooms/chat:api/messages", None).await;
    assert_eq!(all["messages"].as_array().unwrap().len(), 5);
    let (_, info) = http(g1, "GET", "/api/rooms/chat:api", None).await;
    assert_eq!(
        (info["room"].as_str(), info["seq"].as_u64()),
        (Some("chat:api"), Some(5))
    );
    assert_eq!(info["online"], json!(["ann"]));
    assert!(info["owner"].as_str().unwrap().starts_with("node-"));
    let (_, fresh) = http(g1, "GET", "/api/rooms/chat:never-used", None).await;
    assert_eq!(
        (fresh["seq"].as_u64(), &fresh["online"]),
        (Some(0), &json!([]))
    );
    cluster.stop().await;
}

#[tokio::test]
async fn bad_requests_get_json_errors() {
    let cluster = TestCluster::start(1, 1).await;
    let addr = cluster.addr();
    let cases = [
        ("GET", "/api/rooms/nope", None, 400, "bad_request"),
        (
            "GET",
            "/api/rooms/chat:x/messages?since=-3",
            None,
            400,
            "bad_request",
        ),
        (
            "POST",
            "/api/rooms/chat:x/messages",
            Some("not json".to_string()),
            400,
            "bad_request",
        ),
        (
            "POST",
            "/api/rooms/chat:x/messages",
            Some(json!({"body": 1}).to_string()),
            400,
            "bad_request",
        ),
        (
            "POST",
            "/api/rooms/chat:x/messages",
            Some(json!({"from": "a b", "body": 1}).to_string()),
            400,
            "bad_request",
        ),
        (
            "POST",
            "/api/rooms/chat:x/messages",
            Some(json!({"from": "a", "body": "x".repeat(17000)}).to_string()),
            413,
            "too_large",
        ),
        (
            "POST",
            "/api/users/ann/notify",
            Some(json!({}).to_string()),
            400,
            "bad_request",
        ),
        ("GET", "/api/nothing", None, 404, "not_found"),
        ("GET", "/nothing.html", None, 404, "not_found"),
        (
            "POST",
            "/api/cluster/nodes/ghost/drain",
            None,
            404,
            "not_found",
        ),
    ];
    for (method, path, body, status, code) in cases {
        let (got, reply) = http_with(addr, method, path, body, &[]).await;
        assert_eq!(
            (got, reply["error"]["code"].as_str()),
            (status, Some(code)),
            "{method} {path}"
        );
        assert!(reply["error"]["message"].is_string());
    }
    cluster.stop().await;
}

#[tokio::test]
async fn notifications_reach_every_connection_of_the_user_on_every_gateway() {
    let cluster = TestCluster::start(3, 2).await;
    let mut on_g1 = Client::connect(cluster.gateways[0].addr, "ann").await;
    let mut on_g2 = Client::connect(cluster.gateways[1].addr, "ann").await;
    let mut other = Client::connect(cluster.gateways[1].addr, "bob").await;
    let (status, _) = http(
        cluster.gateways[1].addr,
        "POST",
        "/api/users/ann/notify",
        Some(json!({"body": {"hello": "ann"}})),
    )
    .await;
    assert_eq!(status, 202);
    for c in [&mut on_g1, &mut on_g2] {
        assert_eq!(
            c.recv().await,
            json!({"t": "notify", "body": {"hello": "ann"}})
        );
    }
    other
        .expect_silence(std::time::Duration::from_millis(300))
        .await;
    cluster.stop().await;
}

#[tokio::test]
async fn cluster_health_readiness_metrics_and_web_client() {
    let cluster = TestCluster::start(3, 2).await;
    let addr = cluster.addr();
    let mut c = Client::connect(addr, "ann").await;
    c.join("chat:m").await;
    c.say("chat:m", "1", "count me").await;
    let (status, view) = http(addr, "GET", "/api/cluster", None).await;
    assert_eq!(status, 200);
    assert!(view["epoch"].as_u64().unwrap() >= 5);
    assert_eq!(view["nodes"].as_array().unwrap().len(), 3);
    assert!(view["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .all(|n| n["state"] == "active" && n["rooms"].is_u64()));
    let gws = view["gateways"].as_array().unwrap();
    assert_eq!(gws.len(), 2);
    assert_eq!(
        gws.iter().find(|g| g["id"] == "gw-1").unwrap()["connections"],
        1
    );
    eventually!({
        let (_, v) = http(addr, "GET", "/api/cluster", None).await;
        let rooms: u64 = v["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["rooms"].as_u64().unwrap())
            .sum();
        if rooms >= 1 {
            Ok(())
        } else {
            Err(v)
        }
    });
    assert_eq!(http(addr, "GET", "/healthz", None).await.0, 200);
    assert_eq!(http(addr, "GET", "/readyz", None).await.0, 200);
    let (status, metrics) = http(addr, "GET", "/metrics", None).await;
    let text = metrics.as_str().unwrap().to_string();
    assert_eq!(status, 200);
    for name in [
        "roomring_connections",
        "roomring_messages_in_total",
        "roomring_deliveries_total",
        "roomring_node_rooms",
    ] {
        assert!(text.contains(name), "{name} missing from /metrics");
    }
    let (status, page) = http(addr, "GET", "/", None).await;
    assert_eq!(status, 200);
    assert!(page.as_str().unwrap().contains("chat.js"));
    let (status, js) = http(addr, "GET", "/roomring.js", None).await;
    assert_eq!(status, 200);
    assert!(js.as_str().unwrap().contains("class RoomringClient"));
    cluster.stop().await;
}

#[tokio::test]
async fn a_broadcast_reaches_every_connection_on_every_gateway() {
    let cluster = TestCluster::start(3, 2).await;
    let (g1, g2) = (cluster.gateways[0].addr, cluster.gateways[1].addr);
    let mut clients = Vec::new();
    for (i, user) in ["ann", "bob", "cy", "ann"].iter().enumerate() {
        clients.push(Client::connect(if i % 2 == 0 { g1 } else { g2 }, user).await);
    }
    let (status, _) = http(
        g2,
        "POST",
        "/api/broadcast",
        Some(json!({"body": {"text": "maintenance at 10"}})),
    )
    .await;
    assert_eq!(status, 202);
    for c in &mut clients {
        assert_eq!(
            c.recv_type("notify").await,
            json!({"t": "notify", "body": {"text": "maintenance at 10"}})
        );
    }
    let (status, body) = http(
        g1,
        "POST",
        "/api/broadcast",
        Some(json!({"text": "no body field"})),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("bad_request"))
    );
    cluster.stop().await;
}

#[tokio::test]
async fn the_config_tells_a_client_how_to_authenticate_and_its_limits() {
    let cluster = TestCluster::start(1, 1).await;
    let (status, config) = http(cluster.addr(), "GET", "/api/config", None).await;
    assert_eq!(status, 200);
    assert_eq!(config["auth"], "none");
    assert_eq!(config["protocol"], 1);
    assert_eq!(config["limits"]["history_page"], 200);
    assert_eq!(config["limits"]["rooms_per_connection"], 256);
    cluster.stop().await;
}
