//! Stalls, big payloads and idle rooms: nothing breaks a room or goes
//! unnoticed.

mod support;

use std::time::Duration;

use support::procs::Proc;
use support::Client;

/// A process paused past its lease (GC, VM steal, SIGSTOP) comes back with
/// its subscriptions live: every message sent after is delivered.
#[tokio::test]
async fn a_stall_longer_than_the_lease_leaves_no_subscription_deaf() {
    let dev = Proc::dev();
    let rooms: Vec<String> = (0..12).map(|i| format!("chat:stall-{i}")).collect();
    let mut ann = Client::connect(dev.addr, "ann").await;
    let mut bob = Client::connect(dev.addr, "bob").await;
    for room in &rooms {
        ann.join(room).await;
        bob.join(room).await;
    }
    dev.signal("STOP");
    tokio::time::sleep(Duration::from_secs(4)).await;
    dev.signal("CONT");
    // Let the process notice its lapsed lease and come back.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut sent = Vec::new();
    for round in 0..3 {
        for room in &rooms {
            let id = format!("{room}-{round}");
            let seq = ann.say(room, &id, "after the stall").await;
            sent.push((room.clone(), seq));
        }
    }
    let mut got = std::collections::HashSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while got.len() < sent.len() && tokio::time::Instant::now() < deadline {
        let f = bob.recv().await;
        if f["t"] == "msg" && f["body"]["text"] == "after the stall" {
            got.insert((
                f["room"].as_str().unwrap().to_string(),
                f["seq"].as_u64().unwrap(),
            ));
        }
    }
    let missing: Vec<_> = sent.iter().filter(|s| !got.contains(*s)).collect();
    assert!(missing.is_empty(), "bob never got {missing:?}");
}

async fn rooms_held(addr: std::net::SocketAddr) -> u64 {
    let (_, body) = support::http(addr, "GET", "/api/cluster", None).await;
    body["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["rooms"].as_u64().unwrap_or(0))
        .sum()
}

/// A join/leave loop over many rooms does not grow the nodes for ever: rooms
/// nobody has joined for the idle time are released, and their stored
/// history comes back with the next join.
#[tokio::test]
async fn rooms_nobody_joined_are_released_and_their_history_stays() {
    let mut options = roomring::dev::DevOptions::for_test(2, 1);
    options.room_idle = Duration::from_secs(1);
    options.memory_store = true;
    let cluster = support::TestCluster::with(options).await;
    let addr = cluster.addr();
    let mut c = Client::connect(addr, "ann").await;
    for i in 0..300 {
        let room = format!("chat:idle-{i}");
        c.join(&room).await;
        if i % 2 == 0 {
            c.say(&room, &format!("m{i}"), "kept").await;
        }
        c.send(serde_json::json!({"t": "leave", "room": room}))
            .await;
    }
    // One room stays joined: it is never released.
    c.join("chat:idle-held").await;
    eventually!({
        let held = rooms_held(addr).await;
        if held == 1 {
            Ok(())
        } else {
            Err(held)
        }
    });
    let joined = c.join("chat:idle-10").await;
    let history = joined["history"].as_array().unwrap();
    assert_eq!(history.len(), 1, "{joined}");
    assert_eq!(history[0]["body"]["text"], "kept");
    assert_eq!(c.say("chat:idle-10", "again", "next").await, 2);
    cluster.stop().await;
}

/// Without a store (plain `dev`), only rooms that never stored an event are
/// released: the rest hold the only copy of their history.
#[tokio::test]
async fn without_a_store_only_rooms_without_history_are_released() {
    let mut options = roomring::dev::DevOptions::for_test(2, 1);
    options.room_idle = Duration::from_secs(1);
    let cluster = support::TestCluster::with(options).await;
    let addr = cluster.addr();
    let mut c = Client::connect(addr, "ann").await;
    for i in 0..100 {
        let room = format!("chat:mem-{i}");
        c.join(&room).await;
        if i < 10 {
            c.say(&room, &format!("m{i}"), "only copy").await;
        }
        c.send(serde_json::json!({"t": "leave", "room": room}))
            .await;
    }
    eventually!({
        let held = rooms_held(addr).await;
        if held == 10 {
            Ok(())
        } else {
            Err(held)
        }
    });
    let joined = c.join("chat:mem-3").await;
    assert_eq!(joined["history"][0]["body"]["text"], "only copy");
    cluster.stop().await;
}

/// A client that answers no ping (its host vanished, or it hung) is closed
/// within a few ping intervals and leaves presence; one that answers stays.
#[tokio::test]
async fn a_client_that_answers_no_ping_is_closed_and_leaves_presence() {
    let mut options = roomring::dev::DevOptions::for_test(1, 1);
    options.ping_interval = Duration::from_secs(1);
    let cluster = support::TestCluster::with(options).await;
    let gw = cluster.gateways[0].addr;
    let mut ann = Client::connect(gw, "ann").await;
    ann.join("chat:ping").await;
    let mut bob = Client::connect(gw, "bob").await;
    bob.join("chat:ping").await;
    // From here on bob's socket is never read, so his client sends no
    // pong; ann's reads, and her client answers every ping.
    let started = std::time::Instant::now();
    loop {
        let f = ann.recv_type("presence").await;
        if f["user"] == "bob" && f["online"] == false {
            break;
        }
    }
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(1),
        "not before a ping went unanswered: {took:?}"
    );
    assert_eq!(bob.close_code().await, Some(1001));
    // ann stayed: she is still served after more intervals.
    ann.stay(Duration::from_millis(3500)).await;
    ann.say("chat:ping", "p1", "still here").await;
}
