//! Hostile input at the socket: random frames against a running gateway. Each
//! gets a clear answer or nothing (ephemeral frames), never a dropped
//! connection, and the connection stays usable.

mod support;

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
use serde_json::json;
use support::{Client, TestCluster};
use tokio_tungstenite::tungstenite::Message;

fn frames() -> impl Strategy<Value = Message> {
    let text = prop_oneof![
        ".{0,200}".prop_map(|s| s),
        (
            prop_oneof![Just("join"), Just("send"), Just("board.put"), Just("board.move"), Just("read"), Just("x")],
            prop_oneof![Just("chat:h"), Just("board:h"), Just("nope")],
            ".{0,40}",
        )
            .prop_map(|(t, room, junk)| format!(r#"{{"t":"{t}","room":"{room}","id":"p","body":{junk:?},"seq":{junk:?},"moves":[{junk:?}]}}"#)),
        Just(r#"{"t":"send","room":"chat:h","id":"n","body":{"a":
1}}"#.to_string()),
        Just(r#"{"t":"join","room":"chat:h","since":18446744073709551615}"#.to_string()),
    ];
    prop_oneof![
        text.prop_map(|t| Message::Text(t.into())),
        proptest::collection::vec(any::<u8>(), 0..64).prop_map(|b| Message::Binary(b.into())),
    ]
}

#[tokio::test]
async fn random_frames_never_break_a_connection() {
    let cluster = TestCluster::start(2, 1).await;
    let mut c = Client::connect(cluster.addr(), "fuzzer").await;
    let mut runner = TestRunner::deterministic();
    for i in 0..200 {
        let frame = frames().new_tree(&mut runner).unwrap().current();
        c.send_message(frame).await;
        // Still usable: a ping right behind it is answered.
        let id = format!("alive-{i}");
        c.send(json!({"t": "ping", "id": id})).await;
        loop {
            let f = c.recv().await;
            if f["t"] == "error" {
                assert!(f["code"].is_string() && f["message"].is_string(), "{f}");
            }
            if f["t"] == "pong" && f["id"] == id.as_str() {
                break;
            }
        }
    }
    // The raw newline body is answered like any other send.
    c.join("chat:h").await;
    c.send_text("{\"t\":\"send\",\"room\":\"chat:h\",\"id\":\"nl\",\"body\":{\"a\":\n1}}".into())
        .await;
    let ack = c.recv_either("ack", Some("nl")).await;
    assert_eq!(ack["t"], "ack", "{ack}");
    cluster.stop().await;
}

#[tokio::test]
async fn an_http_body_with_a_raw_newline_is_answered() {
    let cluster = TestCluster::start(2, 1).await;
    let (status, body) = support::http_with(
        cluster.addr(),
        "POST",
        "/api/rooms/chat:nl/messages",
        Some("{\"from\":\"svc\",\"body\":{\"a\":\n1}}".into()),
        &[],
    )
    .await;
    assert_eq!((status, body["seq"].as_u64()), (200, Some(1)), "{body}");
    cluster.stop().await;
}
