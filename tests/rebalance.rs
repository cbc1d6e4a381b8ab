//! Live rebalancing in one process: nodes join and drain under chat traffic;
//! rooms move with their memory, clients keep their sockets and see every
//! seq once, in order.

mod support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use roomring::dev::DevCluster;
use serde_json::json;
use support::{http, Client, TestCluster};

const ROOMS: usize = 24;

fn room(i: usize) -> String {
    format!("chat:move-{i}")
}

/// A writer per room on gateway 1 sending until told to stop, and a reader
/// per room on gateway 2; returns (acked seqs per room, readers).
struct Traffic {
    stop: Arc<AtomicBool>,
    writers: Vec<tokio::task::JoinHandle<Vec<u64>>>,
    readers: Vec<Client>,
}

async fn traffic(writer_gw: SocketAddr, reader_gw: SocketAddr) -> Traffic {
    let stop = Arc::new(AtomicBool::new(false));
    let mut readers = Vec::new();
    let mut writers = Vec::new();
    for i in 0..ROOMS {
        let mut r = Client::connect(reader_gw, &format!("reader{i}")).await;
        r.join(&room(i)).await;
        readers.push(r);
        let stop = stop.clone();
        writers.push(tokio::spawn(async move {
            let mut w = Client::connect(writer_gw, &format!("writer{i}")).await;
            w.join(&room(i)).await;
            let mut acked = Vec::new();
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let id = format!("m{n}");
                w.send(json!({"t": "send", "room": room(i), "id": id, "body": {"n": n}}))
                    .await;
                loop {
                    let f = w.recv().await;
                    if f["id"] == id.as_str() {
                        assert_eq!(f["t"], "ack", "every send is acked while rooms move: {f}");
                        acked.push(f["seq"].as_u64().unwrap());
                        break;
                    }
                }
                n += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            acked
        }));
    }
    Traffic {
        stop,
        writers,
        readers,
    }
}

impl Traffic {
    /// Stops the writers and checks every room: acks gap-free from 1, the
    /// reader saw exactly the acked seqs, history holds them once.
    async fn finish(self, cluster: &DevCluster) {
        self.stop.store(true, Ordering::Relaxed);
        for (i, (w, mut r)) in self.writers.into_iter().zip(self.readers).enumerate() {
            let acked = w.await.unwrap();
            assert!(!acked.is_empty());
            assert_eq!(
                acked,
                (1..=acked.len() as u64).collect::<Vec<_>>(),
                "{}: acks",
                room(i)
            );
            let mut seen = Vec::new();
            while seen.len() < acked.len() {
                let f = r.recv().await;
                if f["t"] == "msg" {
                    seen.push(f["seq"].as_u64().unwrap());
                }
            }
            assert_eq!(seen, acked, "{}: the reader saw a gap or a repeat", room(i));
            let (_, h) = http(
                cluster.addr(),
                "GET",
                &format!("/api/rooms/{}/messages?limit=1000", room(i)),
                None,
            )
            .await;
            let seqs: Vec<u64> = h["messages"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["seq"].as_u64().unwrap())
                .collect();
            assert_eq!(seqs, acked, "{}: history", room(i));
        }
    }
}

async fn owners(addr: SocketAddr) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for i in 0..ROOMS {
        let (_, info) = http(addr, "GET", &format!("/api/rooms/{}", room(i)), None).await;
        out.insert(
            room(i),
            info["owner"].as_str().unwrap_or_default().to_string(),
        );
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joining_node_takes_its_share_live() {
    let cluster = TestCluster::start(3, 2).await;
    let (g1, g2) = (cluster.gateways[0].addr, cluster.gateways[1].addr);
    let t = traffic(g1, g2).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (status, added) = http(g1, "POST", "/api/cluster/nodes", None).await;
    assert_eq!(status, 201);
    let new = added["id"].as_str().unwrap().to_string();
    eventually!({
        let o = owners(g1).await;
        if o.values().any(|n| *n == new) {
            Ok(())
        } else {
            Err(o)
        }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    t.finish(&cluster).await;
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_update_moves_every_room_without_a_gap() {
    let cluster = TestCluster::start(3, 2).await;
    let (g1, g2) = (cluster.gateways[0].addr, cluster.gateways[1].addr);
    let t = traffic(g1, g2).await;
    for old in ["node-1", "node-2", "node-3"] {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let (status, _) = http(g1, "POST", "/api/cluster/nodes", None).await;
        assert_eq!(status, 201);
        let (status, _) = http(g1, "POST", &format!("/api/cluster/nodes/{old}/drain"), None).await;
        assert_eq!(status, 202);
        eventually!({
            let ids = cluster.nodes.ids();
            if ids.iter().all(|n| n.as_str() != old) {
                Ok(())
            } else {
                Err(ids)
            }
        });
    }
    let o = owners(g1).await;
    assert!(
        o.values()
            .all(|n| ["node-4", "node-5", "node-6"].contains(&n.as_str())),
        "{o:?}"
    );
    t.finish(&cluster).await;
    cluster.stop().await;
}
