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
