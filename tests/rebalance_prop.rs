//! Random sequences of node joins, drains and kills under chat traffic. In
//! every case: every acked message is in history exactly once, every room's
//! seqs are gap-free, every live subscription sees exactly the acked seqs in
//! order, and no client is disconnected.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use roomring::dev::DevOptions;
use serde_json::json;
use support::{http, Client, TestCluster};

const ROOMS: usize = 6;

#[derive(Debug, Clone)]
enum Step {
    AddNode,
    Drain(usize),
    Kill(usize),
    Wait(u64),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => Just(Step::AddNode),
        3 => (0usize..8).prop_map(Step::Drain),
        1 => (0usize..8).prop_map(Step::Kill),
        2 => (50u64..400).prop_map(Step::Wait),
    ]
}

async fn writer(gw: std::net::SocketAddr, room: String, stop: Arc<AtomicBool>) -> Vec<u64> {
    let mut c = Client::connect(gw, &format!("w-{}", room.replace(':', "-"))).await;
    // A room whose node was just killed answers `unavailable` until it is
    // served again; the client joins again, as a real one would.
    loop {
        c.send(json!({"t": "join", "room": room})).await;
        let f = loop {
            let f = c.recv().await;
            if f["t"] == "joined" || f["t"] == "error" {
                break f;
            }
        };
        if f["t"] == "joined" {
            break;
        }
        assert_eq!(f["code"], "unavailable", "{room}: {f}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut acked = Vec::new();
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        let id = format!("m{n}");
        loop {
            c.send(json!({"t": "send", "room": room, "id": id, "body": {"id": id}}))
                .await;
            let f = loop {
                let f = c.recv().await;
                if f["id"] == id.as_str() {
                    break f;
                }
            };
            if f["t"] == "ack" {
                acked.push(f["seq"].as_u64().unwrap());
                break;
            }
            // A killed node's rooms are unavailable until its lease lapses.
            assert_eq!(f["code"], "unavailable", "{room}: {f}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        n += 1;
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    acked
}

async fn scenario(steps: Vec<Step>) {
    let mut options = DevOptions::for_test(3, 2);
    options.memory_store = true;
    let cluster = TestCluster::with(options).await;
    let (g1, g2) = (cluster.gateways[0].addr, cluster.gateways[1].addr);
    let rooms: Vec<String> = (0..ROOMS).map(|i| format!("chat:prop-{i}")).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let mut readers = Vec::new();
    for room in &rooms {
        let mut r = Client::connect(g2, &format!("r-{}", room.replace(':', "-"))).await;
        r.join(room).await;
        readers.push(r);
    }
    let writers: Vec<_> = rooms
        .iter()
        .map(|room| tokio::spawn(writer(g1, room.clone(), stop.clone())))
        .collect();
    for step in steps {
        let ids = cluster.nodes.ids();
        match step {
            Step::AddNode => {
                cluster.nodes.add().await.unwrap();
            }
            Step::Drain(i) if ids.len() > 1 => {
                let id = ids[i % ids.len()].clone();
                let (status, _) =
                    http(g1, "POST", &format!("/api/cluster/nodes/{id}/drain"), None).await;
                assert_eq!(status, 202);
                eventually!({
                    let now = cluster.nodes.ids();
                    if now.contains(&id) {
                        Err(now)
                    } else {
                        Ok(())
                    }
                });
            }
            Step::Kill(i) if ids.len() > 1 => {
                let id = ids[i % ids.len()].clone();
                cluster.nodes.take(&id).unwrap().kill().await;
            }
            Step::Wait(ms) => tokio::time::sleep(Duration::from_millis(ms)).await,
            _ => {}
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    for ((room, w), mut r) in rooms.iter().zip(writers).zip(readers) {
        let acked = w.await.unwrap();
        assert_eq!(
            acked,
            (1..=acked.len() as u64).collect::<Vec<_>>(),
            "{room}: acked seqs"
        );
        let mut seen = Vec::new();
        while seen.len() < acked.len() {
            let f = r.recv().await;
            if f["t"] == "msg" {
                seen.push(f["seq"].as_u64().unwrap());
            }
        }
        assert_eq!(seen, acked, "{room}: the live subscription");
        let (_, h) = http(
            g2,
            "GET",
            &format!("/api/rooms/{room}/messages?limit=1000"),
            None,
        )
        .await;
        let history: Vec<u64> = h["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["seq"].as_u64().unwrap())
            .collect();
        assert_eq!(history, acked, "{room}: history");
    }
    cluster.stop().await;
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 5, max_shrink_iters: 0, ..ProptestConfig::default() })]

    #[test]
    fn random_joins_drains_and_kills_lose_nothing(steps in prop::collection::vec(step(), 2..6)) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(scenario(steps));
    }
}
