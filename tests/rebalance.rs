//! Live rebalancing in one process: nodes join and drain under chat traffic;
//! rooms move with their memory, clients keep their sockets and see every
//! seq once, in order.

mod support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use roomring::dev::DevCluster;
use support::{check_room, http, Client, TestCluster, Writer};

const ROOMS: usize = 24;

fn room(i: usize) -> String {
    format!("chat:move-{i}")
}

/// A writer per room on one gateway and a reader per room on another.
struct Traffic {
    writers: Vec<Writer>,
    readers: Vec<Client>,
}

async fn traffic(writer_gw: SocketAddr, reader_gw: SocketAddr) -> Traffic {
    let mut readers = Vec::new();
    let mut writers = Vec::new();
    for i in 0..ROOMS {
        let mut r = Client::connect(reader_gw, &format!("reader{i}")).await;
        r.join(&room(i)).await;
        readers.push(r);
        // Planned moves must never surface as errors.
        writers.push(Writer::spawn(
            writer_gw,
            &room(i),
            Duration::from_millis(20),
            false,
        ));
    }
    Traffic { writers, readers }
}

impl Traffic {
    async fn finish(self, cluster: &DevCluster) {
        for (i, (w, mut r)) in self.writers.into_iter().zip(self.readers).enumerate() {
            check_room(cluster.addr(), &room(i), &w.finish().await, &mut r).await;
        }
    }
}

async fn owners(addr: SocketAddr) -> HashMap<String, String> {
    support::owners(addr, (0..ROOMS).map(room)).await
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
