//! Who may talk to what: client and API tokens, key rotation, expiry, the
//! HTTP API's limits, and links that only authenticated members of the
//! right role can use.

mod support;

use std::time::Duration;

use axum::body::Body;
use http::Request;
use roomring::coordinator::Role;
use roomring::dev::{DevCluster, DevOptions};
use roomring::gateway::auth::{sign, API_AUDIENCE};
use roomring::gateway::{Auth, HttpLimits};
use roomring::ids::NodeId;
use roomring::link::{self, Secret, ToNode};
use serde_json::{json, Value};
use support::{http_with, Client};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::ServiceExt;

const KEY: &[u8] = b"current-key";
const OLD_KEY: &[u8] = b"previous-key";

fn now() -> u64 {
    roomring::protocol::now_ms() / 1000
}

fn api_token(role: &str, key: &[u8]) -> String {
    sign(
        &json!({"sub": "ops", "exp": now() + 600, "aud": API_AUDIENCE, "role": role}),
        key,
    )
    .unwrap()
}

async fn jwt_cluster(http: HttpLimits) -> DevCluster {
    let mut options = DevOptions::for_test(2, 1);
    options.auth = Auth::jwt_keys(&["current-key", "previous-key"], 0);
    options.clients.http = http;
    let cluster = DevCluster::start(options).await.expect("cluster starts");
    let bearer = format!("Bearer {}", api_token("admin", KEY));
    let addr = cluster.addr();
    eventually!({
        let (status, body) = http_with(
            addr,
            "GET",
            "/api/cluster",
            None,
            &[("Authorization", &bearer)],
        )
        .await;
        if status == 200 && body["nodes"].as_array().map_or(0, |n| n.len()) == 2 {
            Ok(())
        } else {
            Err(body)
        }
    });
    cluster
}

/// Calls the gateway's routes without a socket.
async fn call(
    app: &axum::Router,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> (u16, Value) {
    let mut req = Request::builder().method(method).uri(path);
    if let Some(token) = token {
        req = req.header("Authorization", format!("Bearer {token}"));
    }
    let req = req
        .header("Content-Type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let response = app.clone().oneshot(req).await.unwrap();
    let status = response.status().as_u16();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn api_tokens_roles_and_rotation_are_checked_by_the_layers() {
    let cluster = jwt_cluster(HttpLimits::default()).await;
    let app = cluster.gateways[0].app();
    let (status, body) = call(&app, "GET", "/api/cluster", None, "").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("unauthorized"))
    );
    // What a client needs before it connects asks for no token.
    let (status, config) = call(&app, "GET", "/api/config", None, "").await;
    assert_eq!((status, config["auth"].as_str()), (200, Some("jwt")));

    // A client token, even one claiming the admin role, is not an API token.
    let client_admin = sign(
        &json!({"sub": "eve", "exp": now() + 600, "role": "admin"}),
        KEY,
    )
    .unwrap();
    let (status, _) = call(&app, "GET", "/api/cluster", Some(&client_admin), "").await;
    assert_eq!(status, 401);
    let forged = api_token("admin", b"not-the-key");
    assert_eq!(
        call(&app, "GET", "/api/cluster", Some(&forged), "").await.0,
        401
    );

    let service = api_token("service", KEY);
    let (status, body) = call(&app, "GET", "/api/cluster", Some(&service), "").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("forbidden"))
    );
    assert_eq!(
        call(&app, "GET", "/api/rooms/chat:sec", Some(&service), "")
            .await
            .0,
        200
    );
    let (status, body) = call(
        &app,
        "POST",
        "/api/rooms/chat:sec/messages",
        Some(&service),
        r#"{"from":"svc","body":"hi"}"#,
    )
    .await;
    assert_eq!((status, body["seq"].as_u64()), (200, Some(1)));

    let (status, _) = call(
        &app,
        "POST",
        "/api/broadcast",
        Some(&service),
        r#"{"body":"hi"}"#,
    )
    .await;
    assert_eq!(status, 403, "a broadcast needs the admin role");
    // During a rotation both keys sign valid tokens.
    let old_admin = api_token("admin", OLD_KEY);
    assert_eq!(
        call(&app, "GET", "/api/cluster", Some(&old_admin), "")
            .await
            .0,
        200
    );
    // Health needs no token.
    assert_eq!(call(&app, "GET", "/healthz", None, "").await.0, 200);
    cluster.stop().await;
}

#[tokio::test]
async fn the_api_refuses_large_bodies_and_excess_concurrency_with_json_errors() {
    let limits = HttpLimits {
        concurrency: 1,
        timeout: Duration::from_secs(10),
        body_bytes: 1024,
    };
    let cluster = jwt_cluster(limits).await;
    let app = cluster.gateways[0].app();
    let service = api_token("service", KEY);
    let big = json!({"from": "svc", "body": "x".repeat(2000)}).to_string();
    let (status, body) = call(
        &app,
        "POST",
        "/api/rooms/chat:big/messages",
        Some(&service),
        &big,
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (413, Some("too_large"))
    );

    // One request at a time: of many sent together, the excess gets 503.
    let calls = (0..16).map(|i| {
        let body = json!({"from": "svc", "body": i}).to_string();
        let service = service.clone();
        let app = &app;
        async move {
            call(
                app,
                "POST",
                "/api/rooms/chat:conc/messages",
                Some(&service),
                &body,
            )
            .await
        }
    });
    let results = futures_util::future::join_all(calls).await;
    let shed: Vec<_> = results.iter().filter(|(s, _)| *s == 503).collect();
    assert!(results.iter().any(|(s, _)| *s == 200), "{results:?}");
    assert!(!shed.is_empty(), "{results:?}");
    assert!(
        shed.iter()
            .all(|(_, b)| b["error"]["code"] == "unavailable"),
        "{shed:?}"
    );
    cluster.stop().await;
}

#[tokio::test]
async fn a_socket_is_closed_with_1008_when_its_token_expires() {
    let cluster = jwt_cluster(HttpLimits::default()).await;
    let short = sign(&json!({"sub": "ann", "exp": now() + 2}), KEY).unwrap();
    let mut ann = Client::connect_query(cluster.addr(), &format!("token={short}"))
        .await
        .unwrap();
    ann.join("chat:expiry").await;
    let long = sign(&json!({"sub": "bob", "exp": now() + 600}), OLD_KEY).unwrap();
    let mut bob = Client::connect_query(cluster.addr(), &format!("token={long}"))
        .await
        .unwrap();
    bob.join("chat:expiry").await;
    assert_eq!(ann.close_code().await, Some(1008));
    // The other connection is untouched.
    bob.say("chat:expiry", "b1", "still here").await;
    // An API token is no client token.
    let api = api_token("admin", KEY);
    let (status, _) = http_with(
        cluster.addr(),
        "GET",
        &format!("/ws?token={api}"),
        None,
        &[
            ("Connection", "Upgrade"),
            ("Upgrade", "websocket"),
            ("Sec-WebSocket-Version", "13"),
            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ],
    )
    .await;
    assert_eq!(status, 401);
    cluster.stop().await;
}

#[tokio::test]
async fn a_node_port_gives_nothing_to_clients_forgers_or_gateways_sending_handoffs() {
    let cluster = support::TestCluster::start(2, 1).await;
    let node = cluster.nodes.addrs()[0].to_string();

    // A client (an HTTP request, a WebSocket upgrade) gets no answer, only a close.
    let mut raw = tokio::net::TcpStream::connect(&node).await.unwrap();
    raw.write_all(b"GET /link HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(8), raw.read_to_end(&mut got)).await;
    assert!(read.is_ok(), "the node kept a stranger's socket open");
    assert!(
        !String::from_utf8_lossy(&got).contains("HTTP/1.1"),
        "{got:?}"
    );

    // A link with the wrong secret fails its handshake.
    let me = NodeId::parse("intruder").unwrap();
    let forged =
        link::client::connect(&node, Role::Gateway, &me, &Secret::new("wrong-secret")).await;
    assert!(forged.is_err());

    // A gateway's link that sends a hand-off is dropped, and the room is not installed.
    let secret = cluster.nodes.secret();
    let gw = NodeId::parse("gw-rogue").unwrap();
    let mut link = link::client::connect(&node, Role::Gateway, &gw, &secret)
        .await
        .expect("a gateway may link");
    let handoff = ToNode::Handoff {
        rid: 1,
        epoch: 1,
        room: "chat:stolen",
        state: None,
        conns: vec![],
    };
    link.writer.send(&handoff).unwrap();
    let dropped = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if link.reader.next().await.is_err() {
                break;
            }
        }
    })
    .await;
    assert!(dropped.is_ok(), "the node kept a link that sent a hand-off");
    cluster.stop().await;
}

#[tokio::test]
async fn strangers_on_a_node_port_are_bounded_and_counted() {
    let cluster = support::TestCluster::start(1, 1).await;
    let node = cluster.nodes.addrs()[0];
    let gw = cluster.addr();
    let before = support::metric(gw, "roomring_link_refusals_total").await;
    // 100 connections that say nothing: 64 may wait to authenticate, the
    // rest are closed at once.
    let mut silent = Vec::new();
    for _ in 0..100 {
        silent.push(tokio::net::TcpStream::connect(node).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut closed = 0;
    for stream in &mut silent {
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_millis(5), stream.read(&mut byte)).await;
        if matches!(read, Ok(Ok(0)) | Ok(Err(_))) {
            closed += 1;
        }
    }
    assert_eq!(
        closed, 36,
        "past 64 authenticating, a link is closed at once"
    );
    let refused = support::metric(gw, "roomring_link_refusals_total").await - before;
    // At least: the counter is the process's, and other tests refuse links too.
    assert!(refused >= 36, "each counted: {refused}");
    drop(silent);
    // Once they are gone, a member links again.
    let me = NodeId::parse("gw-late").unwrap();
    let secret = cluster.nodes.secret();
    let addr = node.to_string();
    eventually!(link::client::connect(&addr, Role::Gateway, &me, &secret).await);
    cluster.stop().await;
}

/// The status of a request sent with these `Host` and extra headers.
async fn status_as(addr: std::net::SocketAddr, request: &str, host: &str, extra: &str) -> u16 {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let text = format!("{request} HTTP/1.1\r\nHost: {host}\r\n{extra}Connection: close\r\nContent-Length: 2\r\nContent-Type: application/json\r\n\r\n{{}}");
    stream.write_all(text.as_bytes()).await.unwrap();
    // The status line is enough (a WebSocket stays open).
    let mut raw = Vec::new();
    let mut byte = [0u8; 1];
    while !raw.ends_with(b"\r\n") && stream.read(&mut byte).await.unwrap() == 1 {
        raw.push(byte[0]);
    }
    let raw = String::from_utf8_lossy(&raw);
    raw.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap()
}

#[tokio::test]
async fn without_auth_other_sites_and_rebound_names_get_403() {
    let mut options = DevOptions::for_test(1, 1);
    options.clients.allowed_origins = vec!["https://app.example".into()];
    let cluster = support::TestCluster::with(options).await;
    let addr = cluster.addr();
    let own = addr.to_string();
    let drain = "POST /api/cluster/nodes/nobody/drain";
    let upgrade = "GET /ws?user=ann";
    let ws = "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
    // A page of another site, through a visitor's browser.
    let evil = "Origin: http://evil.example\r\n";
    assert_eq!(status_as(addr, drain, &own, evil).await, 403);
    assert_eq!(
        status_as(addr, upgrade, &own, &format!("{evil}{ws}")).await,
        403
    );
    // A name rebound to this host.
    assert_eq!(status_as(addr, drain, "evil.example:80", "").await, 403);
    assert_eq!(status_as(addr, upgrade, "evil.example", ws).await, 403);
    // The server's own pages, loopback names and allowed origins go on.
    let mine = format!("Origin: http://{own}\r\n");
    assert_eq!(
        status_as(addr, drain, &own, &mine).await,
        404,
        "no such node"
    );
    assert_eq!(status_as(addr, drain, "localhost", "").await, 404);
    let app = "Origin: https://app.example\r\n";
    assert_eq!(
        status_as(addr, upgrade, &own, &format!("{app}{ws}")).await,
        101
    );
    // Health and the pages themselves are not guarded.
    assert_eq!(
        status_as(addr, "GET /healthz", "evil.example", "").await,
        200
    );
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_in_mutual_tls_and_redis_over_tls_carry_the_cluster_and_links_refuse_plain_or_foreign_peers(
) {
    const ROOMS: [&str; 8] = [
        "chat:tls-1",
        "chat:tls-2",
        "chat:tls-3",
        "chat:tls-4",
        "chat:tls-5",
        "chat:tls-6",
        "chat:tls-7",
        "chat:tls-8",
    ];
    let base = std::env::temp_dir().join(format!("roomring-link-tls-{}", std::process::id()));
    let (ca, cert, key) = support::tls::certificates(&base.join("ours"), "member");
    let (_, foreign_cert, foreign_key) = support::tls::certificates(&base.join("theirs"), "member");
    let path = |p: &std::path::Path| p.to_str().unwrap().to_string();
    let (ca_s, cert_s, key_s) = (path(&ca), path(&cert), path(&key));
    let tls = [
        "--link-ca",
        ca_s.as_str(),
        "--link-cert",
        cert_s.as_str(),
        "--link-key",
        key_s.as_str(),
    ];
    // Redis over TLS too, its certificate from the same CA.
    let redis_tls = support::redis::free_port();
    let redis_args: Vec<String> = [
        "--tls-port",
        &redis_tls.to_string(),
        "--tls-cert-file",
        &cert_s,
        "--tls-key-file",
        &key_s,
        "--tls-ca-cert-file",
        &ca_s,
        "--tls-auth-clients",
        "no",
    ]
    .map(String::from)
    .to_vec();
    let _redis = support::redis::RedisServer::start_with(Some("redis-s3cret"), &redis_args);
    let url = format!("rediss://:redis-s3cret@localhost:{redis_tls}");
    let flags = [&tls[..], &["--redis-ca", ca_s.as_str()]].concat();
    let cluster = support::procs::ProcCluster::start(&url, (2, &flags), (1, &flags)).await;
    let (gw, n2) = (&cluster.gateways[0], &cluster.nodes[1]);
    let (mut ann, mut bob) = (
        Client::connect(gw.addr, "ann").await,
        Client::connect(gw.addr, "bob").await,
    );
    for room in ROOMS {
        ann.join(room).await;
        bob.join(room).await;
        let seq = ann.say(room, &format!("{room}-1"), "over TLS").await;
        let got = bob.recv_type("msg").await;
        assert_eq!(
            (got["room"].as_str(), got["seq"].as_u64()),
            (Some(room), Some(seq))
        );
    }
    // A drain hands n1's rooms to n2 over a node-to-node link in TLS.
    let mut on_n1 = 0;
    for room in ROOMS {
        on_n1 += usize::from(support::owner(gw.addr, room).await.as_deref() == Some("n1"));
    }
    assert!(on_n1 > 0, "n1 owns rooms to hand off");
    let (status, _) = support::http(gw.addr, "POST", "/api/cluster/nodes/n1/drain", None).await;
    assert_eq!(status, 202);
    for room in ROOMS {
        eventually!(match support::owner(gw.addr, room).await.as_deref() {
            Some("n2") => Ok(()),
            other => Err(format!("{room} on {other:?}")),
        });
        let seq = ann.say(room, &format!("{room}-2"), "after the move").await;
        let got = bob.recv_type("msg").await;
        assert_eq!(
            (got["room"].as_str(), got["seq"].as_u64()),
            (Some(room), Some(seq))
        );
    }
    // The right secret without TLS, or TLS from another CA, links to nothing
    // (asked of n2: n1 drained and ends).
    let secret = Secret::new("test-cluster-secret-of-32-bytes-or-more");
    let me = NodeId::parse("intruder").unwrap();
    let node = n2.addr.to_string();
    let plain = link::client::connect(&node, Role::Gateway, &me, &secret).await;
    assert!(plain.is_err(), "a plain link to a TLS node");
    let foreign = link::LinkTls::from_files(&ca, &foreign_cert, &foreign_key).unwrap();
    let theirs =
        link::client::connect(&node, Role::Gateway, &me, &secret.clone().with_tls(foreign)).await;
    assert!(theirs.is_err(), "a certificate of another CA");
    let ours = link::LinkTls::from_files(&ca, &cert, &key).unwrap();
    let member = link::client::connect(&node, Role::Gateway, &me, &secret.with_tls(ours)).await;
    assert!(member.is_ok(), "a member's certificate and secret");
    drop(cluster);
    let _ = std::fs::remove_dir_all(&base);
}
