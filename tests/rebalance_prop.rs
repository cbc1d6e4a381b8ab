//! Random sequences of node joins and drains under chat traffic. In every
//! case: every acked message is in history exactly once, every room's seqs
//! are gap-free, every live subscription sees exactly the acked seqs in
//! order, and no client is disconnected. `Step::Kill` stops a node without
//! a hand-off, its rooms rebuilt from the in-memory store (crashes of real
//! processes on Redis are in `cluster_redis.rs`); `ROOMRING_PROP_KILLS=0`
//! leaves kills out.

mod support;

use std::time::Duration;

use proptest::prelude::*;
use roomring::dev::DevOptions;
use support::{check_room, http, Client, TestCluster, Writer};

const ROOMS: usize = 6;

#[derive(Debug, Clone)]
enum Step {
    AddNode,
    Drain(usize),
    Kill(usize),
    Wait(u64),
}

fn step() -> impl Strategy<Value = Step> {
    let kills = if std::env::var_os("ROOMRING_PROP_KILLS").is_some_and(|v| v == "0") {
        0
    } else {
        1
    };
    prop_oneof![
        3 => Just(Step::AddNode),
        3 => (0usize..8).prop_map(Step::Drain),
        kills => (0usize..8).prop_map(Step::Kill),
        2 => (50u64..400).prop_map(Step::Wait),
    ]
}

async fn scenario(steps: Vec<Step>) {
    let mut options = DevOptions::for_test(3, 2);
    options.memory_store = true;
    let cluster = TestCluster::with(options).await;
    let (g1, g2) = (cluster.gateways[0].addr, cluster.gateways[1].addr);
    let rooms: Vec<String> = (0..ROOMS).map(|i| format!("chat:prop-{i}")).collect();
    let mut readers = Vec::new();
    for room in &rooms {
        let mut r = Client::connect(g2, &format!("r-{}", room.replace(':', "-"))).await;
        r.join(room).await;
        readers.push(r);
    }
    // A killed node's rooms are unavailable until its lease lapses: those
    // answers are retried, as a real client would.
    let writers: Vec<_> = rooms
        .iter()
        .map(|room| Writer::spawn(g1, room, Duration::from_millis(25), true))
        .collect();
    let mut last_kill = None;
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
                last_kill = Some(tokio::time::Instant::now());
            }
            Step::Wait(ms) => tokio::time::sleep(Duration::from_millis(ms)).await,
            _ => {}
        }
    }
    // A killed node's rooms serve again once its lease lapses: let every
    // room take some sends after that.
    if let Some(killed) = last_kill {
        tokio::time::sleep_until(killed + roomring::dev::DEV_LEASE + Duration::from_millis(1500))
            .await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    for ((room, w), mut r) in rooms.iter().zip(writers).zip(readers) {
        check_room(g2, room, &w.finish().await, &mut r).await;
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

/// A case that once stalled two rooms for over 15 s: the newest node is
/// killed while still leased, then another node drains towards it.
#[test]
fn a_drain_towards_a_killed_node_does_not_stall_other_rooms() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(scenario(vec![
        Step::Drain(7),
        Step::AddNode,
        Step::Kill(5),
        Step::Drain(0),
        Step::Drain(0),
    ]));
}
