//! Room storage in Redis, through its own API: a seq already in a room's
//! log is refused, whoever writes it (a copy of the room that fell behind
//! storage can never write a seq twice).

mod support;

use bytes::Bytes;
use roomring::ids::RoomId;
use roomring::node::storage::{RedisStore, Replication};
use roomring::rooms::store::{Append, Entry, RoomStore, Writer};
use support::redis::RedisServer;

/// Appends entries of these seqs and waits for the answer.
async fn append(store: &RedisStore, room: &RoomId, seqs: &[u64]) -> Result<(), String> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    store.append(Append {
        room: room.clone(),
        epoch: std::sync::Arc::from("e"),
        entries: seqs
            .iter()
            .map(|&seq| Entry {
                seq,
                frame: Bytes::from(format!(r#"{{"t":"msg","seq":{seq}}}"#)),
                author: None,
                cid: None,
            })
            .collect(),
        snapshot: None,
        keep: usize::MAX,
        done: Box::new(move |result| {
            let _ = tx.send(result.map_err(|e| e.to_string()));
        }),
    });
    rx.await.expect("an answer")
}

/// A store on `redis` whose writer, n1, holds a live lease.
async fn fenced_store(redis: &RedisServer) -> std::sync::Arc<RedisStore> {
    redis.cli(&["HSET", "t:member:n1", "generation", "1"]);
    let store = RedisStore::connect(&redis.endpoint(), "t", 1000, Replication::default(), None)
        .await
        .expect("store");
    store.fence(Writer {
        member: "n1".into(),
        generation: 1,
        epoch: 1,
    });
    store
}

#[tokio::test]
async fn a_seq_already_in_the_log_is_refused_whoever_writes_it() {
    let redis = RedisServer::start();
    let store = fenced_store(&redis).await;
    let room = RoomId::parse("chat:twice").unwrap();
    store.load(&room).await.expect("claimed and loaded");

    append(&store, &room, &[1, 2, 3]).await.expect("new seqs");
    let again = append(&store, &room, &[3]).await.expect_err("3 is stored");
    assert!(again.contains("already holds"), "{again}");
    append(&store, &room, &[2, 3, 4])
        .await
        .expect_err("a tail that overlaps the log");
    append(&store, &room, &[4, 5]).await.expect("what follows");

    let loaded = store.load(&room).await.expect("loaded");
    let seqs: Vec<u64> = loaded.entries.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, [1, 2, 3, 4, 5], "each seq once");
}

/// What the release before stored formats were versioned wrote, byte for
/// byte: log entries of fields s, f, u, c and a snapshot without "v". This
/// release reads it; a room stored in a newer format is refused with a
/// clear error, never misread.
#[tokio::test]
async fn what_the_previous_release_stored_is_read_and_a_newer_format_refused() {
    let redis = RedisServer::start();
    let store = fenced_store(&redis).await;
    let room = RoomId::parse("board:old").unwrap();
    for seq in 1..=2 {
        let frame =
            format!(r#"{{"t":"msg","room":"board:old","seq":{seq},"from":"ann","body":{{}}}}"#);
        redis.cli(&[
            "XADD",
            "t:room:board:old:log",
            "*",
            "s",
            &seq.to_string(),
            "f",
            &frame,
            "u",
            "ann",
            "c",
            &format!("m{seq}"),
        ]);
    }
    let old_snapshot = r#"{"seq":2,"widgets":[],"reads":{"ann":2}}"#;
    redis.cli(&["SET", "t:room:board:old:snap", old_snapshot]);
    let loaded = store.load(&room).await.expect("the old formats load");
    let seqs: Vec<u64> = loaded.entries.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, [1, 2]);
    assert_eq!(loaded.entries[1].cid.as_deref(), Some("m2"));
    let snapshot = loaded.snapshot.expect("the snapshot");
    assert_eq!((snapshot.seq, snapshot.reads.get("ann")), (2, Some(&2)));

    let newer = r#"{"v":2,"seq":2,"widgets":[],"reads":{}}"#;
    redis.cli(&["SET", "t:room:board:old:snap", newer]);
    let refused = store.load(&room).await.expect_err("a newer snapshot");
    assert!(
        refused
            .to_string()
            .contains("newer than this release reads"),
        "{refused}"
    );
}
