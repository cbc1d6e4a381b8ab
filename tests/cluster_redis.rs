//! A real multi-process cluster on a real Redis: 3 nodes, 2 gateways,
//! clients on both; a node killed with SIGKILL under load, and Redis made
//! unreachable for 5 s. No acked message is lost or repeated, and the clients
//! that stay connected see gap-free seqs throughout.

mod support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::procs::{Proc, ProcCluster};
use support::redis::RedisServer;
use support::{check_room, history, http, Client, Writer};

const ROOMS: usize = 12;

struct Cluster {
    redis: RedisServer,
    nodes: Vec<Proc>,
    gateways: Vec<Proc>,
}

async fn cluster() -> Cluster {
    let redis = RedisServer::start();
    let ProcCluster { nodes, gateways } =
        ProcCluster::start(&redis.url(), (3, &[]), (2, &[])).await;
    Cluster {
        redis,
        nodes,
        gateways,
    }
}

/// What one room's writer saw: acked ids with their seq and ack time.
struct Acks {
    acks: Vec<(String, u64, Instant)>,
}

/// Sends `count` messages, one after the other, retrying each (same id)
/// until it is acked; pauses `pace` between messages.
async fn writer(gw: SocketAddr, room: String, count: usize, pace: Duration) -> Acks {
    let mut c = Client::connect(gw, &format!("w-{}", room.replace(':', "-"))).await;
    c.join(&room).await;
    let mut acks = Vec::new();
    for i in 0..count {
        let id = format!("m{i}");
        loop {
            c.send(json!({"t": "send", "room": room, "id": id, "body": {"id": id}}))
                .await;
            let reply = loop {
                let f = c.recv().await;
                if f["id"] == id.as_str() && (f["t"] == "ack" || f["t"] == "error") {
                    break f;
                }
            };
            if reply["t"] == "ack" {
                acks.push((id.clone(), reply["seq"].as_u64().unwrap(), Instant::now()));
                break;
            }
            assert_eq!(
                reply["code"], "unavailable",
                "only unavailable is expected: {reply}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::time::sleep(pace).await;
    }
    Acks { acks }
}

/// Every acked message is in history exactly once, and history is gap-free.
fn check_history(room: &str, acks: &Acks, history: &[Value]) {
    let seqs: Vec<u64> = history.iter().map(|m| m["seq"].as_u64().unwrap()).collect();
    assert_eq!(
        seqs,
        (1..=seqs.len() as u64).collect::<Vec<_>>(),
        "{room}: history has gaps"
    );
    let mut by_id: HashMap<&str, Vec<u64>> = HashMap::new();
    for m in history {
        by_id
            .entry(m["body"]["id"].as_str().unwrap())
            .or_default()
            .push(m["seq"].as_u64().unwrap());
    }
    for (id, seq, _) in &acks.acks {
        assert_eq!(
            by_id.get(id.as_str()),
            Some(&vec![*seq]),
            "{room}: {id} acked at {seq}"
        );
    }
}

/// A writer per room through `gw`, each sending `count` messages every `pace`.
fn writers(gw: SocketAddr, count: usize, pace: Duration) -> Vec<tokio::task::JoinHandle<Acks>> {
    rooms()
        .into_iter()
        .map(|room| tokio::spawn(writer(gw, room, count, pace)))
        .collect()
}

/// A reader per room, joined through `gw`.
async fn readers(gw: SocketAddr) -> Vec<Client> {
    let mut readers = Vec::new();
    for room in rooms() {
        let mut r = Client::connect(gw, &format!("r-{}", room.replace(':', "-"))).await;
        r.join(&room).await;
        readers.push(r);
    }
    readers
}

/// Every writer's acks against its reader (gap-free up to the last ack)
/// and against history.
async fn check_writers(
    gw: SocketAddr,
    writers: Vec<tokio::task::JoinHandle<Acks>>,
    readers: Vec<Client>,
) -> Vec<Acks> {
    let mut all = Vec::new();
    for ((room, w), mut r) in rooms().into_iter().zip(writers).zip(readers) {
        let acks = w.await.unwrap();
        let last = acks.acks.last().unwrap().1;
        assert_eq!(
            r.msgs_until(last).await,
            (1..=last).collect::<Vec<_>>(),
            "{room}: the reader saw a gap or a repeat"
        );
        check_history(&room, &acks, &history(gw, &room).await);
        all.push(acks);
    }
    all
}

fn rooms() -> Vec<String> {
    (0..ROOMS).map(|i| format!("chat:crash-{i}")).collect()
}

async fn owners(gw: SocketAddr) -> HashMap<String, String> {
    support::owners(gw, rooms()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_loses_no_acked_message_and_its_rooms_come_back() {
    let mut c = cluster().await;
    let (g1, g2) = (c.gateways[0].addr, c.gateways[1].addr);
    let before = owners(g1).await;
    let victim = before.values().next().unwrap().clone();
    let readers = readers(g2).await;
    let writers = writers(g1, 60, Duration::from_millis(50));
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let killed_at = Instant::now();
    c.nodes.iter_mut().find(|n| n.id == victim).unwrap().kill9();

    let all = check_writers(g2, writers, readers).await;
    let pauses = pauses(&all, &before, &victim, killed_at);
    let worst = pauses.iter().max().copied().unwrap_or_default();
    let pauses: Vec<f64> = pauses.iter().map(|p| p.as_secs_f64() * 1000.0).collect();
    println!("failover: the longest pause of an affected room was {worst:?}");
    println!("failover pauses ms: {pauses:.1?}");
    assert!(worst > Duration::ZERO, "some room was owned by the victim");
    // The gateways see the links drop and the port refuse: the lease is
    // revoked at once instead of lapsing.
    assert!(
        worst < Duration::from_secs(1),
        "affected rooms served again within 1 s: {worst:?}"
    );
    let after = owners(g1).await;
    assert!(after.values().all(|o| *o != victim));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_outage_of_5_s_heals_by_itself() {
    let mut c = cluster().await;
    let (g1, g2) = (c.gateways[0].addr, c.gateways[1].addr);
    let readers = readers(g2).await;
    let writers = writers(g1, 40, Duration::from_millis(100));
    tokio::time::sleep(Duration::from_millis(1000)).await;
    c.redis.pause();
    tokio::time::sleep(Duration::from_secs(5)).await;
    c.redis.resume();
    for acks in check_writers(g2, writers, readers).await {
        assert_eq!(acks.acks.len(), 40);
    }
    for p in c.nodes.iter_mut().chain(c.gateways.iter_mut()) {
        assert!(p.alive(), "{} exited", p.id);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_update_of_every_node_loses_nothing_and_drops_nobody() {
    let mut c = cluster().await;
    let (g1, g2) = (c.gateways[0].addr, c.gateways[1].addr);
    let readers = readers(g2).await;
    // Planned moves must never surface as errors.
    let writers: Vec<_> = rooms()
        .iter()
        .map(|room| Writer::spawn(g1, room, Duration::from_millis(30), false))
        .collect();
    for i in 0..3 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let id = c.nodes[i].id.clone();
        assert_eq!(
            c.nodes[i].terminate().await,
            Some(0),
            "{id} drains and exits 0"
        );
        c.nodes[i] = Proc::start("node", &id, &c.redis.url());
        eventually!({
            let (_, v) = http(g1, "GET", "/api/cluster", None).await;
            let ring: Vec<String> = serde_json::from_value(v["ring"].clone()).unwrap_or_default();
            if ring.len() == 3 {
                Ok(())
            } else {
                Err(v)
            }
        });
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    for ((room, w), mut r) in rooms().into_iter().zip(writers).zip(readers) {
        check_room(g2, &room, &w.finish().await, &mut r).await;
    }
}

fn ctl(redis_url: &str, args: &[&str]) -> (Option<i32>, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_roomring"))
        .args(["ctl", "--coordinator", redis_url])
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctl_lists_locates_and_drains() {
    let mut c = cluster().await;
    let url = c.redis.url();
    let (code, members) = ctl(&url, &["members"]);
    assert_eq!(code, Some(0));
    for id in ["n1", "n2", "n3", "g1", "g2"] {
        assert!(members.contains(&format!(" {id} ")), "{id} in {members}");
    }
    let (_, ring) = ctl(&url, &["ring"]);
    assert_eq!(
        ring.lines().skip(1).collect::<Vec<_>>(),
        vec!["n1", "n2", "n3"]
    );
    let (code, located) = ctl(&url, &["locate", "chat:where"]);
    assert_eq!(code, Some(0));
    let (_, info) = http(c.gateways[0].addr, "GET", "/api/rooms/chat:where", None).await;
    assert_eq!(
        located.trim(),
        format!("chat:where {}", info["owner"].as_str().unwrap())
    );
    assert_eq!(ctl(&url, &["drain", "nobody"]).0, Some(1));
    assert_eq!(ctl(&url, &["drain", "n2"]).0, Some(0));
    let n2 = c.nodes.iter_mut().find(|n| n.id == "n2").unwrap();
    eventually!(if n2.alive() {
        Err("n2 still running")
    } else {
        Ok(())
    });
    let (_, ring) = ctl(&url, &["ring"]);
    assert_eq!(ring.lines().skip(1).collect::<Vec<_>>(), vec!["n1", "n3"]);
}

/// Redis loses its data (FLUSHALL): the cluster carries its membership epoch
/// forward, so a node killed afterwards is still replaced; a client
/// resuming with its old epoch learns that the history is another one, and
/// so does a reader connected all along, unasked, and then hears the new
/// history's messages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_redis_loses_its_data_the_cluster_recovers_and_clients_see_a_new_epoch() {
    let mut cluster = cluster().await;
    let g1 = cluster.gateways[0].addr;
    let mut ann = Client::connect(g1, "ann").await;
    let joined = ann.join("chat:flush").await;
    let old_epoch = joined["epoch"].as_str().unwrap().to_string();
    for i in 0..3 {
        ann.say("chat:flush", &format!("f{i}"), "before").await;
    }
    // A cluster that has lived long: many membership changes before.
    cluster.redis.cli(&[
        "INCRBY",
        &format!("{}:epoch", roomring::coordinator::redis::PREFIX),
        "100",
    ]);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    cluster.redis.flushall();
    // Every member finds its lease gone and joins again.
    eventually!({
        let (_, v) = http(g1, "GET", "/api/cluster", None).await;
        let n = v["nodes"].as_array().map_or(0, Vec::len);
        if n == 3 {
            Ok(())
        } else {
            Err(v)
        }
    });
    // Ann, connected all along, is told that the history is another one.
    let give_up = Instant::now() + Duration::from_secs(20);
    let told = loop {
        assert!(Instant::now() < give_up, "ann was never told");
        let frames = ann.stay(Duration::from_millis(250)).await;
        if let Some(f) = frames.into_iter().find(|f| f["t"] == "joined") {
            break f;
        }
    };
    assert_eq!(told["truncated"], true, "{told}");
    assert_ne!(told["epoch"], old_epoch.as_str(), "{told}");
    assert!(told.get("id").is_none(), "unasked: {told}");
    let resynced_at = told["seq"].as_u64().unwrap();

    let mut bob = Client::connect(g1, "bob").await;
    let again = eventually!({
        bob.send(json!({"t": "join", "room": "chat:flush", "since": 3, "epoch": old_epoch}))
            .await;
        let f = bob.recv_either("joined", None).await;
        if f["t"] == "joined" && f["epoch"] != old_epoch.as_str() {
            Ok(f)
        } else {
            Err(f)
        }
    });
    assert_eq!(again["truncated"], true, "{again}");

    // A node killed now is replaced: its rooms serve again elsewhere.
    let (_, info) = http(g1, "GET", "/api/rooms/chat:flush", None).await;
    let victim = info["owner"].as_str().unwrap().to_string();
    let at = cluster.nodes.iter().position(|n| n.id == victim).unwrap();
    cluster.nodes[at].kill9();
    let started = Instant::now();
    let seq = eventually!({
        ann.send(
            json!({"t": "send", "room": "chat:flush", "id": "after", "body": {"after": true}}),
        )
        .await;
        let f = ann.recv_either("ack", Some("after")).await;
        if f["t"] == "ack" {
            Ok(f["seq"].as_u64().unwrap())
        } else {
            Err(f)
        }
    });
    assert!(seq > resynced_at);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    // Bob, who joined the new history, hears it (ann's own copy may have
    // been cut by the kill).
    let heard = bob.msgs_until(seq).await;
    assert_eq!(heard.last(), Some(&seq));
}

/// The longest gap between two acks after `since`, for each room the
/// victim owned.
fn pauses(
    all: &[Acks],
    before: &HashMap<String, String>,
    victim: &str,
    since: Instant,
) -> Vec<Duration> {
    rooms()
        .iter()
        .zip(all)
        .filter(|(room, _)| before[*room] == victim)
        .map(|(_, acks)| {
            acks.acks
                .windows(2)
                .filter(|p| p[1].2 > since)
                .map(|p| p[1].2 - p[0].2)
                .max()
                .unwrap_or_default()
        })
        .collect()
}

/// No seq appears twice in any room's log in Redis.
async fn assert_no_seq_twice(url: &str) {
    for room in rooms() {
        let logged = logged_seqs(url, &room).await;
        let mut unique = logged.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(
            unique.len(),
            logged.len(),
            "{room}: a seq was written twice: {logged:?}"
        );
    }
}

/// The seqs a room's log in Redis holds, in log order.
async fn logged_seqs(url: &str, room: &str) -> Vec<u64> {
    let client = redis::Client::open(url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let entries: Vec<(String, HashMap<String, Vec<u8>>)> = redis::cmd("XRANGE")
        .arg(format!(
            "{}:room:{room}:log",
            roomring::coordinator::redis::PREFIX
        ))
        .arg("-")
        .arg("+")
        .query_async(&mut conn)
        .await
        .unwrap();
    entries
        .into_iter()
        .map(|(_, f)| std::str::from_utf8(&f["s"]).unwrap().parse().unwrap())
        .collect()
}

/// A node paused for less than its lease (SIGSTOP 1 s) keeps its rooms: its
/// links stay up, so nobody suspects it, and no acked message is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_paused_for_a_second_loses_nothing() {
    let c = cluster().await;
    let (g1, g2) = (c.gateways[0].addr, c.gateways[1].addr);
    let before = owners(g1).await;
    let victim = before.values().next().unwrap().clone();
    let readers = readers(g2).await;
    let writers = writers(g1, 40, Duration::from_millis(50));
    tokio::time::sleep(Duration::from_millis(800)).await;
    let paused = c.nodes.iter().find(|n| n.id == victim).unwrap();
    paused.signal("STOP");
    tokio::time::sleep(Duration::from_secs(1)).await;
    paused.signal("CONT");
    for acks in check_writers(g2, writers, readers).await {
        assert_eq!(acks.acks.len(), 40);
    }
    assert_eq!(owners(g1).await, before, "a 1 s pause moves no room");
}

/// A node paused past its lease (SIGSTOP 4 s) loses its rooms to others
/// within the lease and a second; when it resumes, the fenced appends keep it
/// from writing anything stale: no seq appears twice in any room's log, and
/// every acked message is in the history once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_node_is_replaced_and_writes_nothing_stale_when_it_resumes() {
    let c = cluster().await;
    let (g1, g2) = (c.gateways[0].addr, c.gateways[1].addr);
    let before = owners(g1).await;
    let victim = before.values().next().unwrap().clone();
    let readers = readers(g2).await;
    let writers = writers(g1, 80, Duration::from_millis(50));
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let hung = c.nodes.iter().find(|n| n.id == victim).unwrap();
    let stopped_at = Instant::now();
    hung.signal("STOP");
    tokio::time::sleep(Duration::from_secs(4)).await;
    hung.signal("CONT");

    let all = check_writers(g2, writers, readers).await;
    let worst = pauses(&all, &before, &victim, stopped_at)
        .into_iter()
        .max()
        .unwrap_or_default();
    assert_no_seq_twice(&c.redis.url()).await;
    println!("hung node: the longest pause of an affected room was {worst:?}");
    assert!(
        worst < Duration::from_secs(5),
        "served elsewhere within lease + 1 s (+ retry): {worst:?}"
    );
}

/// Two more nodes and two gateways around the caller's `n1` (set up to be
/// cut off somehow), once `n1` owns a room; the owners then.
async fn around(redis: &RedisServer, n1: Proc) -> ([Proc; 3], Vec<Proc>, HashMap<String, String>) {
    let nodes = [
        n1,
        Proc::start("node", "n2", &redis.url()),
        Proc::start("node", "n3", &redis.url()),
    ];
    let gateways: Vec<Proc> = (1..=2)
        .map(|i| Proc::start("gateway", &format!("g{i}"), &redis.url()))
        .collect();
    let g1 = gateways[0].addr;
    support::wait_for_nodes(g1, 3).await;
    let before = owners(g1).await;
    assert!(
        before.values().any(|o| o == "n1"),
        "n1 owns a room: {before:?}"
    );
    (nodes, gateways, before)
}

/// n1 is back, as a new generation, with rooms.
async fn n1_owns_rooms_again(g1: SocketAddr) {
    eventually!({
        let now = owners(g1).await;
        if now.values().any(|o| o == "n1") {
            Ok(())
        } else {
            Err(now)
        }
    });
}

/// A node partitioned from Redis alone (a proxy in front of Redis for it
/// first delays every chunk, then passes nothing, its connections left
/// open): it stops writing before its rooms are served elsewhere. What it
/// sent into the blackhole reaches Redis late, and is refused there: no seq
/// is written twice, every acked message is in history once, and readers on
/// another gateway see no gap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_partitioned_from_redis_stops_writing_before_its_rooms_move() {
    let redis = RedisServer::start();
    let proxy = support::proxy::Proxy::start().await;
    proxy.forward_to(format!("127.0.0.1:{}", redis.port).parse().unwrap());
    let through = format!("redis://{}", proxy.addr);
    let (nodes, gateways, before) = around(&redis, Proc::start("node", "n1", &through)).await;
    let (g1, g2) = (gateways[0].addr, gateways[1].addr);
    let readers = readers(g2).await;
    let writers = writers(g1, 100, Duration::from_millis(50));
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let cut_at = Instant::now();
    proxy.delay(Duration::from_millis(400));
    tokio::time::sleep(Duration::from_millis(1000)).await;
    proxy.pause();
    tokio::time::sleep(Duration::from_secs(5)).await;
    // The partition heals: what waited in it arrives now.
    proxy.delay(Duration::ZERO);
    proxy.resume();

    let all = check_writers(g2, writers, readers).await;
    assert_no_seq_twice(&redis.url()).await;
    let worst = pauses(&all, &before, "n1", cut_at)
        .into_iter()
        .max()
        .unwrap_or_default();
    println!("partitioned node: the longest pause of an affected room was {worst:?}");
    n1_owns_rooms_again(g1).await;
    drop(nodes);
}

/// A node cut off from everyone for a moment (a proxy in front of it closes
/// every connection and refuses new ones for 1.5 s): the gateways suspect it
/// and revoke its lease, its rooms move, it finds its lease lost, joins
/// again as a new generation and gets rooms again. No acked message is lost,
/// no reader sees a gap or a repeat, and no seq is written twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_cut_off_for_a_moment_is_replaced_rejoins_and_loses_nothing() {
    let redis = RedisServer::start();
    let mut proxy = support::proxy::Proxy::start().await;
    let advertise = proxy.addr.to_string();
    let cut = Proc::start_with("node", "n1", &redis.url(), &["--advertise", &advertise]);
    proxy.forward_to(cut.addr);
    let (nodes, gateways, _) = around(&redis, cut).await;
    let (g1, g2) = (gateways[0].addr, gateways[1].addr);
    let readers = readers(g2).await;
    let writers = writers(g1, 80, Duration::from_millis(50));
    tokio::time::sleep(Duration::from_millis(1000)).await;
    proxy.cut(Duration::from_millis(1500)).await;
    check_writers(g2, writers, readers).await;
    assert_no_seq_twice(&redis.url()).await;
    n1_owns_rooms_again(g1).await;
    drop(nodes);
}

/// A gateway gone quiet past its lease (SIGSTOP: no FIN, no RST) takes its
/// users out of presence; when it comes back, they are in again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_whose_lease_lapsed_leaves_presence_with_its_users() {
    let c = cluster().await;
    let (g1, g2) = (c.gateways[0].addr, c.gateways[1].addr);
    let mut ann = Client::connect(g1, "ann").await;
    let mut bob = Client::connect(g2, "bob").await;
    ann.join("chat:presence").await;
    let joined = bob.join("chat:presence").await;
    assert_eq!(joined["online"], json!(["bob", "ann"]), "the joiner first");
    c.gateways[0].signal("STOP");
    let gone = tokio::time::timeout(Duration::from_secs(8), async {
        loop {
            let f = bob.recv().await;
            if f["t"] == "presence" && f["user"] == "ann" && f["online"] == false {
                break;
            }
        }
    })
    .await;
    c.gateways[0].signal("CONT");
    assert!(gone.is_ok(), "ann never left presence");
    let back = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let f = bob.recv().await;
            if f["t"] == "presence" && f["user"] == "ann" && f["online"] == true {
                break;
            }
        }
    })
    .await;
    assert!(back.is_ok(), "ann never came back");
    drop(ann);
}

/// The lines of a process's log that contain `needle`.
fn lines_with(log: &std::path::Path, needle: &str) -> Vec<String> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines()
        .filter(|l| l.contains(needle))
        .map(str::to_string)
        .collect()
}

/// A node that drains (SIGTERM) and stops is not reported as one that died:
/// the gateway logs no revoke for it. One killed (SIGKILL) is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_reports_a_killed_node_and_not_a_drained_one() {
    let redis = RedisServer::start();
    let log = std::env::temp_dir().join(format!("roomring-drained-{}.log", std::process::id()));
    let mut drained = Proc::start("node", "n1", &redis.url());
    let mut killed = Proc::start("node", "n2", &redis.url());
    let _stays = Proc::start("node", "n3", &redis.url());
    let gw = Proc::start_logged("gateway", "g1", &redis.url(), &log);
    support::wait_for_nodes(gw.addr, 3).await;
    let revokes = |log: &std::path::Path| lines_with(log, "revoking its lease");
    assert_eq!(drained.terminate().await, Some(0));
    support::wait_for_nodes(gw.addr, 2).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        revokes(&log),
        Vec::<String>::new(),
        "a drained node reported as dead"
    );
    killed.kill9();
    let said = tokio::time::timeout(Duration::from_secs(10), async {
        while revokes(&log).is_empty() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    let said_so = revokes(&log);
    let _ = std::fs::remove_file(&log);
    assert!(said.is_ok(), "a killed node was not reported");
    assert!(said_so.iter().all(|l| l.contains("n2")), "{said_so:?}");
}

/// The last node stops at once when told to (SIGTERM): with no other node
/// to hand its rooms to, it does not wait out its drain grace (30 s). Its
/// rooms' events are in Redis, and the next node serves them whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_node_stops_without_waiting_for_a_node_to_take_its_rooms() {
    let redis = RedisServer::start();
    let mut last = Proc::start("node", "n1", &redis.url());
    let gw = Proc::start("gateway", "g1", &redis.url());
    support::wait_for_nodes(gw.addr, 1).await;
    let mut ann = Client::connect(gw.addr, "ann").await;
    ann.join("chat:last").await;
    let seq = ann.say("chat:last", "m1", "kept").await;
    let stopped = tokio::time::timeout(Duration::from_secs(10), last.terminate()).await;
    assert_eq!(
        stopped.ok(),
        Some(Some(0)),
        "the last node waited for a taker"
    );
    let _next = Proc::start("node", "n2", &redis.url());
    support::wait_for_nodes(gw.addr, 1).await;
    eventually!({
        let seqs = support::history_seqs(gw.addr, "chat:last").await;
        if seqs == [seq] {
            Ok(())
        } else {
            Err(seqs)
        }
    });
}

/// A gateway that stops (SIGTERM) leaves with its links: the node that
/// served it logs no lapsed lease. One paused past its lease (SIGSTOP) is
/// taken for lapsed, and said so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_that_stops_is_not_taken_for_one_whose_lease_lapsed() {
    let redis = RedisServer::start();
    let log = std::env::temp_dir().join(format!("roomring-left-{}.log", std::process::id()));
    let _node = Proc::start_logged("node", "n1", &redis.url(), &log);
    let mut stopping = Proc::start("gateway", "g1", &redis.url());
    let pausing = Proc::start("gateway", "g2", &redis.url());
    for gw in [&stopping, &pausing] {
        support::wait_for_nodes(gw.addr, 1).await;
        let mut c = Client::connect(gw.addr, "ann").await;
        c.join("chat:left").await;
    }
    let lapsed = |log: &std::path::Path| lines_with(log, "lease lapsed");
    assert_eq!(stopping.terminate().await, Some(0));
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        lapsed(&log),
        Vec::<String>::new(),
        "a clean stop taken for a lapse"
    );
    pausing.signal("STOP");
    let said = tokio::time::timeout(Duration::from_secs(10), async {
        while lapsed(&log).is_empty() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    pausing.signal("CONT");
    let said_so = lapsed(&log);
    let _ = std::fs::remove_file(&log);
    assert!(
        said.is_ok(),
        "a gateway paused past its lease was not taken for lapsed"
    );
    assert!(said_so.iter().all(|l| l.contains("g2")), "{said_so:?}");
}

/// A relative board move whose link drops before its answer may have been
/// applied: the gateway answers it `unavailable` rather than sending it
/// again, so the widget moves once, not twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_board_move_in_flight_when_its_link_drops_is_not_applied_twice() {
    let redis = RedisServer::start();
    let mut proxy = support::proxy::Proxy::start().await;
    let advertise = proxy.addr.to_string();
    let node = Proc::start_with("node", "n1", &redis.url(), &["--advertise", &advertise]);
    proxy.forward_to(node.addr);
    let gw = Proc::start("gateway", "g1", &redis.url());
    support::wait_for_nodes(gw.addr, 1).await;
    let room = "board:once";
    let mut ann = Client::connect(gw.addr, "ann").await;
    ann.join(room).await;
    ann.send(json!({"t": "board.put", "room": room, "id": "p1",
        "widget": {"id": "w1", "kind": "sticky", "x": 0, "y": 0}}))
        .await;
    ann.recv_type("board.changed").await;

    // The move reaches the node and waits there for its commit; then the
    // link drops, and only afterwards does the commit land.
    redis.pause();
    ann.send(
        json!({"t": "board.move", "room": room, "id": "s1", "ids": ["w1"], "dx": 10, "dy": 0}),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    proxy.cut(Duration::ZERO).await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    redis.resume();
    let answer = loop {
        let f = ann.recv().await;
        if f["id"] == "s1" {
            break f;
        }
    };
    assert_eq!(
        (answer["t"].as_str(), answer["code"].as_str()),
        (Some("error"), Some("unavailable")),
        "{answer}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut bob = Client::connect(gw.addr, "bob").await;
    let joined = bob.join(room).await;
    assert_eq!(joined["widgets"][0]["x"], 10.0, "moved once: {joined}");
}
