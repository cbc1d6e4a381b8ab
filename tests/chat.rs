//! Chat over real gateways and nodes: every chat frame of protocol v1.

mod support;

use std::collections::HashSet;
use std::time::Duration;

use roomring::dev::DevOptions;
use serde_json::{json, Value};
use support::{http, Client, TestCluster};

#[tokio::test]
async fn messages_fan_out_across_two_gateways_with_gap_free_seqs() {
    let cluster = TestCluster::start(3, 2).await;
    let (g1, g2) = (cluster.gateways[0].addr, cluster.gateways[1].addr);
    let mut ann = Client::connect(g1, "ann").await;
    let mut bob = Client::connect(g2, "bob").await;
    let mut cat = Client::connect(g2, "cat").await;
    let joined = ann.join("chat:fan").await;
    assert_eq!(joined["seq"], 0);
    assert_eq!(joined["online"], json!(["ann"]));
    assert_eq!(joined["id"], "join-chat:fan");
    bob.join("chat:fan").await;
    cat.join("chat:fan").await;

    for i in 1..=20u64 {
        let seq = ann
            .say("chat:fan", &format!("m{i}"), &format!("hello {i}"))
            .await;
        assert_eq!(seq, i);
    }
    for c in [&mut bob, &mut cat] {
        for i in 1..=20u64 {
            let m = c.recv_type("msg").await;
            assert_eq!(
                (m["seq"].as_u64(), m["from"].as_str()),
                (Some(i), Some("ann"))
            );
            assert_eq!(m["body"]["text"], format!("hello {i}"));
            assert!(m["ts"].as_u64().unwrap() > 1_600_000_000_000);
        }
    }
    cluster.stop().await;
}

#[tokio::test]
async fn the_sender_sees_its_own_message_and_one_ack() {
    let cluster = TestCluster::start(3, 1).await;
    let mut ann = Client::connect(cluster.addr(), "ann").await;
    ann.join("chat:own").await;
    ann.send(json!({"t": "send", "room": "chat:own", "id": "x1", "body": "plain string body"}))
        .await;
    let (a, b) = (ann.recv().await, ann.recv().await);
    let types: HashSet<_> = [a["t"].as_str().unwrap(), b["t"].as_str().unwrap()].into();
    assert_eq!(types, HashSet::from(["msg", "ack"]));
    let msg = if a["t"] == "msg" { &a } else { &b };
    assert_eq!(msg["body"], "plain string body");
    ann.expect_silence(Duration::from_millis(200)).await;
    cluster.stop().await;
}

#[tokio::test]
async fn a_retried_send_is_stored_once() {
    let cluster = TestCluster::start(3, 2).await;
    let mut ann = Client::connect(cluster.gateways[0].addr, "ann").await;
    let mut bob = Client::connect(cluster.gateways[1].addr, "bob").await;
    ann.join("chat:retry").await;
    bob.join("chat:retry").await;
    let first = ann.say("chat:retry", "same-id", "once").await;
    let again = ann.say("chat:retry", "same-id", "twice?").await;
    assert_eq!(first, again, "the retry gets the first ack");
    assert_eq!(bob.recv_type("msg").await["seq"], first);
    bob.expect_silence(Duration::from_millis(300)).await;
    // Bob may use the same id: ids are per user.
    assert_eq!(bob.say("chat:retry", "same-id", "bob's").await, first + 1);
    let (_, msgs) = http(
        cluster.addr(),
        "GET",
        "/api/rooms/chat:retry/messages",
        None,
    )
    .await;
    assert_eq!(msgs["messages"].as_array().unwrap().len(), 2);
    cluster.stop().await;
}

#[tokio::test]
async fn history_replays_with_and_without_since() {
    let cluster = TestCluster::start(3, 1).await;
    let mut ann = Client::connect(cluster.addr(), "ann").await;
    ann.join("chat:hist").await;
    for i in 1..=60 {
        ann.say("chat:hist", &format!("h{i}"), &format!("n{i}"))
            .await;
    }
    let mut late = Client::connect(cluster.addr(), "late").await;
    let recent = late.join("chat:hist").await;
    let seqs: Vec<u64> = support::joined_seqs(&recent);
    assert_eq!(
        seqs,
        (11..=60).collect::<Vec<_>>(),
        "the last 50 by default"
    );
    assert_eq!(recent["seq"], 60);
    assert_eq!(recent["truncated"], false);

    let mut resumed = Client::connect(cluster.addr(), "resumed").await;
    resumed
        .send(json!({"t": "join", "room": "chat:hist", "since": 5}))
        .await;
    let joined = resumed.recv_type("joined").await;
    let seqs: Vec<u64> = support::joined_seqs(&joined);
    assert_eq!(
        seqs,
        (6..=60).collect::<Vec<_>>(),
        "every kept message after since"
    );
    assert_eq!(joined["truncated"], false);
    // Joining again just replies joined again.
    resumed
        .send(json!({"t": "join", "room": "chat:hist", "since": 59, "id": "again"}))
        .await;
    let again = resumed.recv_type("joined").await;
    assert_eq!(
        (
            again["id"].as_str(),
            again["history"].as_array().unwrap().len()
        ),
        (Some("again"), 1)
    );
    cluster.stop().await;
}

#[tokio::test]
async fn since_older_than_history_is_truncated() {
    let mut options = roomring::dev::DevOptions::for_test(1, 1);
    options.rooms.keep = 1000;
    let cluster = TestCluster::with(options).await;
    let addr = cluster.addr();
    for i in 0..1005 {
        let (status, _) = http(
            addr,
            "POST",
            "/api/rooms/chat:long/messages",
            Some(json!({"from": "svc", "body": i})),
        )
        .await;
        assert_eq!(status, 200);
    }
    let mut c = Client::connect(addr, "reader").await;
    c.send(json!({"t": "join", "room": "chat:long", "since": 1}))
        .await;
    let joined = c.recv_type("joined").await;
    let history = joined["history"].as_array().unwrap();
    assert_eq!(joined["truncated"], true);
    assert_eq!(history.len(), 1000, "at least the last 1000 are kept");
    assert_eq!(history[0]["seq"], 6);
    cluster.stop().await;
}

#[tokio::test]
async fn presence_counts_connections_of_one_user() {
    let cluster = TestCluster::start(3, 2).await;
    let (g1, g2) = (cluster.gateways[0].addr, cluster.gateways[1].addr);
    let mut watcher = Client::connect(g1, "watcher").await;
    watcher.join("chat:pres").await;
    let mut ann1 = Client::connect(g1, "ann").await;
    let mut ann2 = Client::connect(g2, "ann").await;
    ann1.join("chat:pres").await;
    let p = watcher.recv_type("presence").await;
    assert_eq!(
        (p["user"].as_str(), p["online"].as_bool()),
        (Some("ann"), Some(true))
    );
    let joined = ann2.join("chat:pres").await;
    assert_eq!(joined["online"], json!(["ann", "watcher"]));
    watcher.expect_silence(Duration::from_millis(300)).await;

    ann1.send(json!({"t": "leave", "room": "chat:pres"})).await;
    watcher.expect_silence(Duration::from_millis(300)).await;
    drop(ann2); // the last connection goes away without a leave
    let gone = watcher.recv_type("presence").await;
    assert_eq!(
        (gone["user"].as_str(), gone["online"].as_bool()),
        (Some("ann"), Some(false))
    );
    cluster.stop().await;
}

#[tokio::test]
async fn typing_and_read_receipts_reach_the_others() {
    let cluster = TestCluster::start(3, 1).await;
    let mut ann = Client::connect(cluster.addr(), "ann").await;
    let mut bob = Client::connect(cluster.addr(), "bob").await;
    ann.join("chat:couple-1").await;
    bob.join("chat:couple-1").await;
    ann.recv_type("presence").await;
    ann.send(json!({"t": "typing", "room": "chat:couple-1"}))
        .await;
    let t = bob.recv().await;
    assert_eq!(
        (t["t"].as_str(), t["user"].as_str()),
        (Some("typing"), Some("ann"))
    );
    let seq = ann.say("chat:couple-1", "k1", "hi bob").await;
    bob.recv_type("msg").await;
    bob.send(json!({"t": "read", "room": "chat:couple-1", "seq": seq}))
        .await;
    let r = ann.recv_type("read").await;
    assert_eq!(
        (r["user"].as_str(), r["seq"].as_u64()),
        (Some("bob"), Some(seq))
    );
    bob.expect_silence(Duration::from_millis(200)).await;
    let mut late = Client::connect(cluster.addr(), "late").await;
    assert_eq!(late.join("chat:couple-1").await["reads"]["bob"], seq);
    cluster.stop().await;
}

#[tokio::test]
async fn leave_stops_delivery() {
    let cluster = TestCluster::start(3, 1).await;
    let mut ann = Client::connect(cluster.addr(), "ann").await;
    let mut bob = Client::connect(cluster.addr(), "bob").await;
    ann.join("chat:leave").await;
    bob.join("chat:leave").await;
    bob.send(json!({"t": "leave", "room": "chat:leave"})).await;
    ann.recv_type("presence").await; // bob online
    let off = ann.recv_type("presence").await;
    assert_eq!(off["online"], false);
    ann.say("chat:leave", "z", "anyone?").await;
    bob.expect_silence(Duration::from_millis(300)).await;
    cluster.stop().await;
}

#[tokio::test]
async fn rooms_spread_over_every_node() {
    let cluster = TestCluster::start(3, 1).await;
    let mut owners = HashSet::new();
    for i in 0..60 {
        let (status, info) = http(
            cluster.addr(),
            "GET",
            &format!("/api/rooms/chat:spread-{i}"),
            None,
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(info["seq"], 0);
        owners.insert(info["owner"].as_str().unwrap().to_string());
    }
    assert_eq!(
        owners,
        cluster.nodes.ids().iter().map(|n| n.to_string()).collect()
    );
    cluster.stop().await;
}

#[tokio::test]
async fn gateway_shutdown_closes_clients_with_1012() {
    let cluster = TestCluster::start(1, 1).await;
    let mut ann = Client::connect(cluster.addr(), "ann").await;
    ann.join("chat:bye").await;
    let stopping = tokio::spawn(cluster.stop());
    assert_eq!(ann.close_code().await, Some(1012));
    stopping.await.unwrap();
}

#[tokio::test]
async fn a_client_that_does_not_read_is_closed_and_the_room_goes_on() {
    // The writer sends as fast as it is acked, for as long as the gateway
    // takes to show the close: no frame limit in the way.
    let mut options = DevOptions::for_test(1, 1);
    options.clients.rate_per_sec = u32::MAX;
    options.clients.rate_burst = u32::MAX;
    let cluster = TestCluster::with(options).await;
    let gw = cluster.gateways[0].addr;
    let mut writer = Client::connect(gw, "wri").await;
    let mut slow = Client::connect(gw, "slo").await;
    writer.join("chat:flood").await;
    slow.join("chat:flood").await;
    let connections = |c: serde_json::Value| c["gateways"][0]["connections"].as_u64();
    let text = "x".repeat(15_000);
    // Each message is 15 KB: the slow client's socket buffers fill, then its
    // queue of 1024 frames; the writer is acked all along. The count of
    // connections is the gateway's as of its last lease renewal (each
    // second), so the writer goes on until it shows.
    let mut closed_after = None;
    for i in 1..=20_000u64 {
        let seq = writer.say("chat:flood", &format!("f{i}"), &text).await;
        assert_eq!(seq, i);
        if i % 50 == 0 && connections(http(gw, "GET", "/api/cluster", None).await.1) == Some(1) {
            closed_after = Some(i);
            break;
        }
    }
    let closed_after = closed_after.expect("the slow client was never closed");
    assert!(
        closed_after > 1024,
        "closed after only {closed_after} frames"
    );
    // The room goes on for the writer.
    let seq = writer.say("chat:flood", "after", "still here").await;
    assert_eq!(seq, closed_after + 1);
    // What reaches the slow client: what was buffered, then the end of the
    // connection, with 1008 if its close frame got through.
    let code = slow.close_code().await;
    assert!(matches!(code, None | Some(1008)), "closed with {code:?}");
}

#[tokio::test]
async fn the_history_epoch_is_stable_across_hand_offs_and_marks_another_history() {
    let cluster = TestCluster::start(3, 1).await;
    let addr = cluster.addr();
    let mut ann = Client::connect(addr, "ann").await;
    let first = ann.join("chat:epoch").await;
    let epoch = first["epoch"]
        .as_str()
        .expect("joined names its epoch")
        .to_string();
    assert_eq!(epoch.len(), 16);
    for i in 0..3 {
        ann.say("chat:epoch", &format!("e{i}"), "x").await;
    }
    support::drain_owner(addr, "chat:epoch").await;
    let mut bob = Client::connect(addr, "bob").await;
    bob.send(json!({"t": "join", "room": "chat:epoch", "since": 2, "epoch": epoch}))
        .await;
    let same = bob.recv_type("joined").await;
    assert_eq!(
        (same["epoch"].as_str(), same["truncated"].as_bool()),
        (Some(epoch.as_str()), Some(false))
    );
    assert_eq!(same["history"].as_array().unwrap().len(), 1);
    // A `since` from another history: everything kept, marked truncated.
    bob.send(json!({"t": "join", "room": "chat:epoch", "since": 2, "epoch": "0123456789abcdef"}))
        .await;
    let other = bob.recv_type("joined").await;
    assert_eq!(other["truncated"], true);
    assert_eq!(other["history"].as_array().unwrap().len(), 3);
    cluster.stop().await;
}

/// A chat room whose history is larger than any one link record (400
/// bodies of 16 KB, 6.5 MB against the 4 MiB record limit) is joined with
/// its whole history and handed off with it.
#[tokio::test]
async fn a_history_larger_than_a_link_record_is_joined_and_handed_off_whole() {
    let mut options = roomring::dev::DevOptions::for_test(3, 1);
    options.clients.rate_per_sec = 1_000_000;
    options.clients.rate_burst = 1_000_000;
    let cluster = TestCluster::with(options).await;
    let addr = cluster.addr();
    let mut ann = Client::connect(addr, "ann").await;
    ann.join("chat:big").await;
    let text = "b".repeat(16 * 1024 - 32);
    for i in 0..400 {
        ann.say("chat:big", &format!("m{i}"), &text).await;
    }
    let whole = |joined: &serde_json::Value| {
        let history = joined["history"].as_array().unwrap();
        history.len() == 400
            && history
                .iter()
                .enumerate()
                .all(|(i, m)| m["seq"] == i as u64 + 1 && m["body"]["text"].as_str() == Some(&text))
    };
    // A join with `since: 0` asks for everything kept.
    let join_all = json!({"t": "join", "room": "chat:big", "since": 0});
    let mut late = Client::connect(addr, "late").await;
    late.send(join_all.clone()).await;
    assert!(
        whole(&late.recv_type("joined").await),
        "joined with all of it"
    );
    support::drain_owner(addr, "chat:big").await;
    let mut after = Client::connect(addr, "after").await;
    after.send(join_all).await;
    assert!(
        whole(&after.recv_type("joined").await),
        "handed off with all of it"
    );
    assert_eq!(ann.say("chat:big", "next", "after the move").await, 401);
    cluster.stop().await;
}

/// `history` pages back through a room's stored events, ascending, and
/// the HTTP API with `before=` the same; bad bounds are `bad_request`.
#[tokio::test]
async fn history_pages_back_through_the_stored_events() {
    let cluster = support::TestCluster::start(2, 1).await;
    let addr = cluster.addr();
    let room = "chat:paged";
    let mut ann = Client::connect(addr, "ann").await;
    ann.join(room).await;
    for i in 1..=120 {
        ann.say(room, &format!("m{i}"), "hello").await;
    }
    let seqs = |frame: &Value| -> Vec<u64> {
        frame["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["seq"].as_u64().unwrap())
            .collect()
    };
    ann.send(json!({"t": "history", "room": room, "id": "h1"}))
        .await;
    let page = ann.recv_type("history").await;
    assert_eq!(
        (page["id"].as_str(), page["room"].as_str()),
        (Some("h1"), Some(room))
    );
    assert!(page["epoch"].is_string());
    assert_eq!(seqs(&page), (71..=120).collect::<Vec<_>>(), "the latest 50");
    assert_eq!(page["more"], true);
    ann.send(json!({"t": "history", "room": room, "id": "h2", "before": 71, "limit": 200}))
        .await;
    let page = ann.recv_type("history").await;
    assert_eq!(seqs(&page), (1..=70).collect::<Vec<_>>());
    assert_eq!(page["more"], false);
    assert_eq!(page["messages"][0]["t"], "msg");
    for (bad, id) in [
        (json!({"before": 0}), "b1"),
        (json!({"before": -3}), "b2"),
        (json!({"before": "x"}), "b3"),
        (json!({"limit": 201}), "b4"),
        (json!({"limit": 0}), "b5"),
    ] {
        let mut frame = json!({"t": "history", "room": room, "id": id});
        frame
            .as_object_mut()
            .unwrap()
            .extend(bad.as_object().unwrap().clone());
        ann.send(frame).await;
        let error = ann.recv_type("error").await;
        assert_eq!(
            (error["code"].as_str(), error["id"].as_str()),
            (Some("bad_request"), Some(id))
        );
    }

    let path = format!("/api/rooms/{room}/messages?before=71&limit=20");
    let (status, page) = support::http(addr, "GET", &path, None).await;
    assert_eq!(status, 200);
    assert_eq!(seqs(&page), (51..=70).collect::<Vec<_>>());
    assert_eq!(page["more"], true);
    for bad in [
        "before=abc",
        "before=0",
        "before=5&limit=0",
        "before=5&limit=201",
        "before=-1",
    ] {
        let (status, body) = support::http(
            addr,
            "GET",
            &format!("/api/rooms/{room}/messages?{bad}"),
            None,
        )
        .await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (400, Some("bad_request")),
            "{bad}"
        );
    }
    let (status, empty) = support::http(
        addr,
        "GET",
        "/api/rooms/chat:never-used/messages?before=10",
        None,
    )
    .await;
    assert_eq!(
        (status, empty),
        (200, json!({"messages": [], "more": false}))
    );
    cluster.stop().await;
}
