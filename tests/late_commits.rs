//! Appends that Redis holds although the node was told they failed: a Redis
//! stalled past the commit timeout (the write lands when it wakes), and a
//! replica that did not take a commit in time (the primary holds it). The
//! room reloads and publishes what storage holds, so readers on another
//! gateway see every seq exactly once and writers' retries are acked at the
//! seq first given. And with a replica required, a commit no replica
//! holds is never acked.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::json;
use support::procs::{Proc, ProcCluster};
use support::redis::RedisServer;
use support::{wait_for_nodes, ChatLoad, Client};

const ROOMS: usize = 6;

async fn cluster(url: &str, node_flags: &[&str]) -> ProcCluster {
    ProcCluster::start(url, (3, node_flags), (2, &[])).await
}

/// Writers on `writers_at`, readers on `readers_at`, while `fault` runs;
/// then every room checked.
async fn under_load(
    writers_at: SocketAddr,
    readers_at: SocketAddr,
    name: &str,
    fault: impl std::future::Future<Output = ()>,
) {
    let rooms = (0..ROOMS).map(|i| format!("chat:{name}-{i}")).collect();
    let load = ChatLoad::start(writers_at, readers_at, rooms, Duration::from_millis(30)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    fault.await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    load.check().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_stalled_for_1_2_s_five_times_leaves_readers_no_gap() {
    let redis = RedisServer::start();
    let c = cluster(&redis.url(), &[]).await;
    let (g1, g2) = (c.gateways[0].addr, c.gateways[1].addr);
    under_load(g1, g2, "stall", async {
        for _ in 0..5 {
            redis.pause();
            tokio::time::sleep(Duration::from_millis(1200)).await;
            redis.resume();
            tokio::time::sleep(Duration::from_millis(600)).await;
        }
    })
    .await;
}

/// A replica of `primary`, once it has caught up.
async fn replica_of(primary: &RedisServer) -> RedisServer {
    let replica = RedisServer::start_with(
        None,
        &[
            "--replicaof".into(),
            "127.0.0.1".into(),
            primary.port.to_string(),
        ],
    );
    eventually!({
        let info = replica.query(&["INFO", "replication"]);
        if info.contains("master_link_status:up") {
            Ok(())
        } else {
            Err(info)
        }
    });
    replica
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_its_replica_missed_is_published_once_the_room_reloads() {
    let primary = RedisServer::start();
    let replica = replica_of(&primary).await;
    let c = cluster(&primary.url(), &["--redis-wait-replicas", "1"]).await;
    let (g1, g2) = (c.gateways[0].addr, c.gateways[1].addr);
    under_load(g1, g2, "unreplicated", async {
        for _ in 0..3 {
            // Still connected, but it takes nothing within WAIT's timeout.
            replica.pause();
            tokio::time::sleep(Duration::from_millis(700)).await;
            replica.resume();
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    })
    .await;
}

/// With `--redis-wait-replicas 1`, a primary left without its replica acks
/// nothing: the send is `unavailable` (the client retries it with its id);
/// once a replica is back, the retry is acked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_no_replica_holds_is_not_acked() {
    let primary = RedisServer::start();
    let mut replica = replica_of(&primary).await;
    let _node = Proc::start_with(
        "node",
        "n1",
        &primary.url(),
        &["--redis-wait-replicas", "1"],
    );
    let gw = Proc::start("gateway", "g1", &primary.url());
    wait_for_nodes(gw.addr, 1).await;
    let room = "chat:replicated";
    let mut ann = Client::connect(gw.addr, "ann").await;
    ann.join(room).await;
    assert_eq!(ann.say(room, "held", "held by the replica").await, 1);

    replica.kill();
    eventually!({
        let info = primary.query(&["INFO", "replication"]);
        if info.contains("connected_slaves:0") {
            Ok(())
        } else {
            Err(info)
        }
    });
    let send = json!({"t": "send", "room": room, "id": "alone", "body": {"text": "no replica"}});
    ann.send(send.clone()).await;
    let refused = ann.recv_either("ack", Some("alone")).await;
    assert_eq!(
        (refused["t"].as_str(), refused["code"].as_str()),
        (Some("error"), Some("unavailable")),
        "{refused}"
    );

    let _back = replica_of(&primary).await;
    let acked = eventually!({
        ann.send(send.clone()).await;
        let f = ann.recv_either("ack", Some("alone")).await;
        if f["t"] == "ack" {
            Ok(f)
        } else {
            Err(f)
        }
    });
    assert_eq!(acked["seq"], 2, "{acked}");
}
