//! Hot rooms: a join storm into one room of a `roomring dev` process costs
//! each member a bounded number of presence frames and no lease; presence
//! past the limit is counted and paged; cursors and typing are conflated.

mod support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use support::procs::Proc;
use support::{http, Client};
use tokio::sync::{watch, Semaphore};

/// What the members of a storm saw, all told.
#[derive(Default)]
struct Seen {
    /// `presence` and `presence.count` frames.
    presence: AtomicU64,
    /// The most any one member got.
    most: AtomicU64,
}

/// The cluster's epoch and its nodes: a lease lost (and a member joining
/// again) changes the epoch.
async fn membership(addr: std::net::SocketAddr) -> (u64, Vec<String>) {
    let (status, cluster) = http(addr, "GET", "/api/cluster", None).await;
    assert_eq!(status, 200, "{cluster}");
    let epoch = cluster["epoch"].as_u64().expect("epoch");
    let nodes = cluster["nodes"].as_array().expect("nodes");
    let mut ids: Vec<String> = nodes
        .iter()
        .map(|n| n["id"].as_str().unwrap_or_default().to_string())
        .collect();
    ids.sort();
    (epoch, ids)
}

/// A member: joins, then counts presence frames until told to stop; it
/// stays connected until its caller drops it, so that no departure is
/// counted.
async fn member(
    addr: std::net::SocketAddr,
    i: usize,
    room: &'static str,
    permits: Arc<Semaphore>,
    seen: Arc<Seen>,
    mut stop: watch::Receiver<bool>,
) -> (Value, Client) {
    let permit = permits.acquire_owned().await.expect("permit");
    let mut c = Client::connect(addr, &format!("m{i:05}")).await;
    let joined = c.join(room).await;
    drop(permit);
    let mut presence = 0;
    loop {
        tokio::select! {
            frames = c.stay(Duration::from_millis(100)) => {
                presence += frames
                    .iter()
                    .filter(|f| f["t"] == "presence" || f["t"] == "presence.count")
                    .count() as u64;
            }
            _ = stop.changed() => break,
        }
    }
    seen.presence.fetch_add(presence, Ordering::Relaxed);
    seen.most.fetch_max(presence, Ordering::Relaxed);
    (joined, c)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_storm_costs_each_member_bounded_presence_and_no_lease() {
    const MEMBERS: usize = 2500;
    const ROOM: &str = "chat:storm";
    let dev = Proc::dev();
    let addr = dev.addr;
    let before = membership(addr).await;

    let mut watcher = Client::connect(addr, "watcher").await;
    watcher.join(ROOM).await;
    let seen = Arc::new(Seen::default());
    let permits = Arc::new(Semaphore::new(200));
    let (stop_tx, stop_rx) = watch::channel(false);
    let started = tokio::time::Instant::now();
    let members: Vec<_> = (0..MEMBERS)
        .map(|i| {
            let (permits, seen, stop) = (permits.clone(), seen.clone(), stop_rx.clone());
            tokio::spawn(member(addr, i, ROOM, permits, seen, stop))
        })
        .collect();
    // The watcher sees names up to the limit, then counts, the last one
    // with every member.
    let mut names = 0;
    let mut last_count = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while last_count != MEMBERS + 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "storm never settled"
        );
        let f = watcher.recv().await;
        match f["t"].as_str() {
            Some("presence") => names += 1,
            Some("presence.count") => last_count = f["count"].as_u64().unwrap() as usize,
            _ => {}
        }
    }
    let storm = started.elapsed();
    assert_eq!(names, 199, "the watcher plus 199 named, then counts");

    // A late joiner: 200 names, itself first, and the whole count.
    let mut late = Client::connect(addr, "late").await;
    let joined = late.join(ROOM).await;
    let online = joined["online"].as_array().unwrap();
    assert_eq!(online.len(), 200);
    assert_eq!(online[0], "late");
    assert_eq!(joined["online_count"], MEMBERS + 2);
    assert!(
        online[1..]
            .windows(2)
            .all(|w| w[0].as_str() < w[1].as_str()),
        "the others in presence.list order"
    );

    // Every user, once each, in pages.
    let mut listed: Vec<String> = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let mut frame = json!({"t": "presence.list", "room": ROOM, "id": "p", "limit": 1000});
        if let Some(a) = &after {
            frame["after"] = json!(a);
        }
        late.send(frame).await;
        let page = late.recv_type("presence.page").await;
        assert_eq!(page["id"], "p");
        let users = page["users"].as_array().unwrap();
        listed.extend(users.iter().map(|u| u.as_str().unwrap().to_string()));
        match page["next"].as_str() {
            Some(next) => after = Some(next.to_string()),
            None => break,
        }
    }
    assert_eq!(listed.len(), MEMBERS + 2);
    assert!(
        listed.windows(2).all(|w| w[0] < w[1]),
        "ascending, no repeat"
    );

    // Bad paging is refused, and the connection stays.
    for (bad, why) in [
        (json!({"limit": 0}), "limit 0"),
        (json!({"limit": 1001}), "limit 1001"),
        (json!({"limit": "ten"}), "a string limit"),
        (json!({"after": 7}), "a number after"),
        (json!({"after": "not a user!"}), "a bad user after"),
    ] {
        let mut frame = json!({"t": "presence.list", "room": ROOM, "id": "bad"});
        for (k, v) in bad.as_object().unwrap() {
            frame[k] = v.clone();
        }
        late.send(frame).await;
        let err = late.recv_type("error").await;
        assert_eq!(
            (err["code"].as_str(), err["id"].as_str()),
            (Some("bad_request"), Some("bad")),
            "{why}"
        );
    }
    late.send(json!({"t": "ping", "id": "still"})).await;
    assert_eq!(late.recv_type("pong").await["id"], "still");

    stop_tx.send(true).unwrap();
    let mut stayed = Vec::with_capacity(MEMBERS);
    for m in members {
        let (joined, c) = m.await.unwrap();
        assert!(joined["online"].as_array().unwrap().len() <= 200);
        stayed.push(c);
    }
    // Each member got at most the 200 named, then one count a second
    // while the storm lasted, and one after it.
    let bound = 200 + storm.as_secs() + 3;
    let most = seen.most.load(Ordering::Relaxed);
    assert!(
        most <= bound,
        "a member got {most} presence frames (bound {bound})"
    );
    let all = seen.presence.load(Ordering::Relaxed);
    assert!(
        all <= (MEMBERS as u64) * bound,
        "{all} presence frames in all"
    );
    assert_eq!(
        membership(addr).await,
        before,
        "a lease changed during the storm"
    );
    drop(stayed);
}

#[tokio::test]
async fn cursors_come_in_batches_and_typing_once_a_second() {
    let dev = Proc::dev();
    let addr = dev.addr;
    let mut movers = Vec::new();
    for i in 0..5 {
        let mut c = Client::connect(addr, &format!("e{i}")).await;
        c.join("board:busy").await;
        movers.push(c);
    }
    let mut viewer = Client::connect(addr, "viewer").await;
    viewer.join("board:busy").await;
    // 5 editors at 100 Hz for a second: 500 moves.
    for step in 0..100 {
        for (i, c) in movers.iter_mut().enumerate() {
            c.send(json!({"t": "board.cursor", "room": "board:busy", "x": step, "y": i}))
                .await;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let frames = viewer.stay(Duration::from_millis(300)).await;
    let batches: Vec<&Value> = frames
        .iter()
        .filter(|f| f["t"] == "board.cursors")
        .collect();
    assert!(
        !batches.is_empty() && batches.len() <= 30,
        "{} batches for about 1.3 s",
        batches.len()
    );
    // A batch carries the cursors that moved since the one before, so the
    // last position of each mover is in the last batch that names it.
    let mut last = std::collections::BTreeMap::new();
    for batch in &batches {
        for c in batch["cursors"].as_array().unwrap() {
            last.insert(c["user"].as_str().unwrap().to_owned(), c["x"].as_f64());
        }
    }
    assert_eq!(last.len(), 5, "every mover in a batch: {last:?}");
    assert!(
        last.values().all(|x| *x == Some(99.0)),
        "the last positions: {last:?}"
    );
    assert!(
        frames.iter().all(|f| f["t"] != "board.cursor"),
        "no single cursor frames"
    );

    // Typing: one a second per user, however often it is sent.
    for _ in 0..20 {
        movers[0]
            .send(json!({"t": "typing", "room": "board:busy"}))
            .await;
    }
    let frames = viewer.stay(Duration::from_millis(500)).await;
    let typing = frames.iter().filter(|f| f["t"] == "typing").count();
    assert_eq!(typing, 1);
}

/// A room that moves is subscribed again at its new owner with one request
/// for all of a gateway's members, and none of them misses or repeats a
/// message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hot_room_that_moves_is_resubscribed_once_for_all_its_members() {
    const MEMBERS: usize = 300;
    const ROOM: &str = "chat:moving";
    let dev = Proc::dev();
    let addr = dev.addr;
    let mut members = Vec::with_capacity(MEMBERS);
    for i in 0..MEMBERS {
        let mut c = Client::connect(addr, &format!("r{i:03}")).await;
        c.join(ROOM).await;
        members.push(c);
    }
    let mut sender = Client::connect(addr, "sender").await;
    sender.join(ROOM).await;
    let first = sender.say(ROOM, "before", "before").await;
    let resumes = support::metric(addr, "roomring_resumes_total").await;
    let resumed = support::metric(addr, "roomring_resumed_connections_total").await;

    support::drain_owner(addr, ROOM).await;
    let last = sender.say(ROOM, "after", "after").await;
    assert_eq!(last, first + 1);
    for c in &mut members {
        assert_eq!(c.msgs_until(last).await, [first, last], "{}", c.user);
    }
    eventually!({
        let requests = support::metric(addr, "roomring_resumes_total").await - resumes;
        let conns = support::metric(addr, "roomring_resumed_connections_total").await - resumed;
        if (requests, conns) == (1, MEMBERS as u64 + 1) {
            Ok(())
        } else {
            Err(format!(
                "{requests} resume requests for {conns} connections"
            ))
        }
    });
}

/// Members joining one room at once (a gateway's members coming back after
/// it restarted) are subscribed with a few requests, not one each, and
/// each gets the `joined` it would have got alone: the history after its
/// `since`, its own name first, its `id`; then every message once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_of_joins_is_gathered_into_few_requests_each_answered_as_alone() {
    const MEMBERS: usize = 400;
    const ROOM: &str = "chat:storm";
    let dev = Proc::dev();
    let addr = dev.addr;
    let mut sender = Client::connect(addr, "sender").await;
    let epoch = sender.join(ROOM).await["epoch"].clone();
    for i in 1..=10 {
        assert_eq!(sender.say(ROOM, &format!("m{i}"), "hi").await, i);
    }
    let mut members = Vec::with_capacity(MEMBERS);
    for i in 0..MEMBERS {
        members.push(Client::connect(addr, &format!("s{i:03}")).await);
    }
    let requests = support::metric(addr, "roomring_join_requests_total").await;
    let joins = support::metric(addr, "roomring_joins_total").await;
    // Every fifth names no since; the others resume from 0..=10, some in
    // another history.
    let since = |i: usize| (!i.is_multiple_of(5)).then_some((i % 11) as u64);
    for (i, c) in members.iter_mut().enumerate() {
        let mut join = json!({"t": "join", "room": ROOM, "id": format!("j{i}")});
        if let Some(since) = since(i) {
            join["since"] = json!(since);
            join["epoch"] = if i % 7 == 0 {
                json!("another")
            } else {
                epoch.clone()
            };
        }
        c.send(join).await;
    }
    for (i, c) in members.iter_mut().enumerate() {
        let joined = c.recv_either("joined", Some(&format!("j{i}"))).await;
        assert_eq!(joined["t"], "joined", "{joined}");
        let seqs: Vec<u64> = support::joined_seqs(&joined);
        let other = since(i).is_some() && i % 7 == 0;
        let want: Vec<u64> = match since(i) {
            Some(_) if other => (1..=10).collect(),
            Some(since) => (since + 1..=10).collect(),
            None => (1..=10).collect(),
        };
        assert_eq!(seqs, want, "{} since {:?}", c.user, since(i));
        assert_eq!(joined["truncated"], other, "{}", c.user);
        assert_eq!(
            (joined["seq"].as_u64(), &joined["epoch"]),
            (Some(10), &epoch)
        );
        assert_eq!(joined["online"][0], c.user.as_str(), "the joiner first");
        let count = joined["online_count"].as_u64().unwrap();
        assert!((2..=MEMBERS as u64 + 1).contains(&count), "{count}");
    }
    let requests = support::metric(addr, "roomring_join_requests_total").await - requests;
    let joins = support::metric(addr, "roomring_joins_total").await - joins;
    assert_eq!(joins, MEMBERS as u64, "every member subscribed");
    assert!(
        requests <= MEMBERS as u64 / 4,
        "{requests} requests for {MEMBERS} joins"
    );
    let last = sender.say(ROOM, "after", "after").await;
    for c in &mut members {
        assert_eq!(c.msgs_until(last).await, [last], "{}", c.user);
    }
    let (status, room) = http(addr, "GET", &format!("/api/rooms/{ROOM}"), None).await;
    assert_eq!(status, 200, "{room}");
    assert_eq!(room["online_count"], MEMBERS as u64 + 1, "{room}");
}
