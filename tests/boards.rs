//! Boards: versioned widgets, atomic bulk moves, conflicts, cursors.

mod support;

use std::time::Duration;

use serde_json::json;
use support::{http, Client, TestCluster};

#[tokio::test]
async fn board_operations_are_ordered_versioned_and_shared() {
    let cluster = TestCluster::start(3, 2).await;
    let mut ann = Client::connect(cluster.gateways[0].addr, "ann").await;
    let mut bob = Client::connect(cluster.gateways[1].addr, "bob").await;
    ann.join("board:plan").await;
    let joined = bob.join("board:plan").await;
    assert_eq!(joined["widgets"], json!([]));

    ann.send(json!({"t": "board.put", "room": "board:plan", "id": "p1",
        "widget": {"id": "n1", "kind": "sticky", "x": 10, "y": 20, "text": "idea", "color": "yellow"}})).await;
    let mine = ann.recv_type("board.changed").await;
    assert_eq!(
        (
            mine["id"].as_str(),
            mine["seq"].as_u64(),
            mine["by"].as_str()
        ),
        (Some("p1"), Some(1), Some("ann"))
    );
    let theirs = bob.recv_type("board.changed").await;
    assert_eq!(
        theirs["widgets"][0],
        json!({"id": "n1", "kind": "sticky", "x": 10.0, "y": 20.0, "text": "idea", "color": "yellow", "v": 1})
    );

    // A stale base is a conflict and changes nothing.
    ann.send(
        json!({"t": "board.put", "room": "board:plan", "id": "p2", "base": 0,
        "widget": {"id": "n1", "kind": "sticky", "x": 0, "y": 0}}),
    )
    .await;
    let err = ann.recv_type("error").await;
    assert_eq!(
        (err["code"].as_str(), err["id"].as_str()),
        (Some("conflict"), Some("p2"))
    );
    ann.send(
        json!({"t": "board.put", "room": "board:plan", "id": "p3", "base": 1,
        "widget": {"id": "n2", "kind": "sticky", "x": 0, "y": 0}}),
    )
    .await;
    assert_eq!(
        ann.recv_type("error").await["code"],
        "conflict",
        "a base for a missing widget"
    );

    for i in 2..=50 {
        ann.send(json!({"t": "board.put", "room": "board:plan", "widget": {"id": format!("n{i}"), "kind": "sticky", "x": 0, "y": 0}})).await;
    }
    let moves: Vec<_> = (1..=60)
        .map(|i| json!({"id": format!("n{i}"), "x": i, "y": -i}))
        .collect();
    ann.send(json!({"t": "board.move", "room": "board:plan", "id": "mv", "moves": moves}))
        .await;
    let moved = loop {
        let f = bob.recv_type("board.changed").await;
        if f["id"] == "mv" {
            break f;
        }
    };
    assert_eq!(moved["seq"], 51);
    assert_eq!(
        moved["widgets"].as_array().unwrap().len(),
        50,
        "unknown ids are skipped"
    );
    ann.send(
        json!({"t": "board.delete", "room": "board:plan", "id": "del", "ids": ["n1", "nope"]}),
    )
    .await;
    let del = loop {
        let f = bob.recv_type("board.changed").await;
        if f["id"] == "del" {
            break f;
        }
    };
    assert_eq!(del["deleted"], json!(["n1"]));

    let (_, info) = http(cluster.addr(), "GET", "/api/rooms/board:plan", None).await;
    assert_eq!(info["seq"], 52);
    assert_eq!(info["widgets"].as_array().unwrap().len(), 49);
    let n2 = info["widgets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["id"] == "n2")
        .unwrap();
    assert_eq!((n2["x"].as_f64(), n2["v"].as_u64()), (Some(2.0), Some(2)));
    cluster.stop().await;
}

#[tokio::test]
async fn cursors_are_ephemeral_and_chat_works_on_boards() {
    let cluster = TestCluster::start(3, 1).await;
    let mut ann = Client::connect(cluster.addr(), "ann").await;
    let mut bob = Client::connect(cluster.addr(), "bob").await;
    ann.join("board:c").await;
    bob.join("board:c").await;
    ann.recv_type("presence").await;
    ann.send(json!({"t": "board.cursor", "room": "board:c", "x": 1.5, "y": 2}))
        .await;
    assert_eq!(
        bob.recv().await,
        json!({"t": "board.cursor", "room": "board:c", "user": "ann", "x": 1.5, "y": 2.0})
    );
    ann.expect_silence(Duration::from_millis(200)).await;
    assert_eq!(ann.say("board:c", "m", "chat on a board").await, 1);
    // 5001 moves fit in a board.move frame (256 KiB) but not in its count.
    let moves: Vec<_> = (0..5001)
        .map(|i| json!({"id": format!("w{i}"), "x": 0, "y": 0}))
        .collect();
    ann.send(json!({"t": "board.move", "room": "board:c", "id": "many", "moves": moves}))
        .await;
    assert_eq!(ann.recv_type("error").await["code"], "too_large");
    cluster.stop().await;
}
