//! Redis without a single point of failure: a primary, a replica and three
//! Sentinels; 3 nodes and 2 gateways on `redis+sentinel://`, group commits
//! waiting for the replica. The primary is killed (SIGKILL) under chat load:
//! every acked message is in history afterwards, readers see every seq once,
//! rooms serve again within a bounded time, and no process exits. With one
//! replica, the promoted one is alone: the nodes accept degraded writes
//! (`--redis-allow-degraded`) to serve on.

mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::procs::Proc;
use support::sentinel::SentinelSet;
use support::{wait_for_nodes, ChatLoad, Client};

const ROOMS: usize = 6;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_primary_killed_under_load_loses_no_acked_message() {
    let mut redis = SentinelSet::start();
    let url = redis.url();
    let mut nodes: Vec<Proc> = (1..=3)
        .map(|i| {
            Proc::start_with(
                "node",
                &format!("n{i}"),
                &url,
                &["--redis-wait-replicas", "1", "--redis-allow-degraded"],
            )
        })
        .collect();
    let mut gateways: Vec<Proc> = (1..=2)
        .map(|i| Proc::start("gateway", &format!("g{i}"), &url))
        .collect();
    for gw in &gateways {
        wait_for_nodes(gw.addr, 3).await;
    }
    let (g1, g2) = (gateways[0].addr, gateways[1].addr);
    let rooms = (0..ROOMS).map(|i| format!("chat:ha-{i}")).collect();
    let load = ChatLoad::start(g1, g2, rooms, Duration::from_millis(40)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;

    let old = redis.primary.port;
    redis.primary.kill();
    let killed = Instant::now();
    // A room nobody used yet is served (loaded and written) again after:
    let mut probe = Client::connect(g1, "probe").await;
    let mut joined = false;
    let back = loop {
        assert!(
            killed.elapsed() < Duration::from_secs(20),
            "never served again"
        );
        let f = if joined {
            probe
                .send(json!({"t": "send", "room": "chat:ha-probe", "id": "p", "body": {}}))
                .await;
            probe.recv_either("ack", Some("p")).await
        } else {
            probe
                .send(json!({"t": "join", "room": "chat:ha-probe", "id": "j"}))
                .await;
            probe.recv_either("joined", Some("j")).await
        };
        match f["t"].as_str() {
            Some("ack") => break killed.elapsed(),
            Some("joined") => joined = true,
            _ => {
                assert_eq!(f["code"], "unavailable", "{f}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    let promoted = redis.primary_port();
    assert_ne!(promoted, Some(old), "the Sentinels promoted the replica");
    assert_eq!(promoted, Some(redis.replica.port));
    eprintln!(
        "served again {} ms after the primary was killed",
        back.as_millis()
    );
    tokio::time::sleep(Duration::from_secs(1)).await;

    load.check().await;
    for p in nodes.iter_mut().chain(gateways.iter_mut()) {
        assert!(p.alive(), "{} exited", p.id);
    }
}
