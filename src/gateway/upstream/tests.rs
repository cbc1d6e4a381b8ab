//! The upstream against real nodes on loopback links: questions routed to
//! a room's owner, routes cached until they change, and a question whose
//! owner went away answered `unavailable` within its deadline.

use super::*;
use crate::coordinator::Embedded;
use crate::node::{self, NodeConfig};

const SECRET: &str = "a-cluster-secret-of-32-bytes-or-more";

/// An upstream of gateway `g1` following `coordinator`'s ring.
fn upstream(coordinator: &Coordinator, shutdown: Shutdown) -> Arc<Upstream> {
    Upstream::spawn(
        NodeId::parse("g1").unwrap(),
        coordinator.clone(),
        Secret::new(SECRET),
        crate::coordinator::watch_ring(coordinator.as_ref()),
        Arc::new(Subscriptions::default()),
        Arc::new(Sessions::default()),
        shutdown,
    )
}

/// The owner a room's `Info` answer names, once the room's owner answers.
async fn owner_by_info(up: &Upstream, room: &RoomId) -> String {
    for _ in 0..200 {
        if let Ok(info) = up.query(room, Query::Info).await {
            let info: serde_json::Value = serde_json::from_slice(&info).unwrap();
            return info["owner"].as_str().unwrap().to_string();
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{room} was never answered");
}

#[tokio::test]
async fn questions_reach_each_rooms_owner_and_routes_are_cached_until_they_change() {
    let coordinator: Coordinator = Arc::new(Embedded::new(Duration::from_secs(3)));
    let mut nodes = Vec::new();
    for id in ["n1", "n2"] {
        let config = NodeConfig::for_test(id, SECRET);
        nodes.push(
            node::start(config, coordinator.clone(), None)
                .await
                .unwrap(),
        );
    }
    let (trigger, shutdown) = crate::shutdown::channel();
    let up = upstream(&coordinator, shutdown);
    let mut owners = std::collections::BTreeSet::new();
    for i in 0..16 {
        let room = RoomId::parse(&format!("chat:r{i}")).unwrap();
        let owner = owner_by_info(&up, &room).await;
        let ring = up.view().ring.owner_of(room.as_str()).cloned().unwrap();
        assert_eq!(
            owner,
            ring.as_str(),
            "{room} answered by its owner on the ring"
        );
        owners.insert(owner);
    }
    assert_eq!(owners.len(), 2, "16 rooms spread over both nodes");
    let mut cache = None;
    let (first, _) = up.route("chat:r0", Some(&mut cache)).unwrap();
    let cached = cache.as_ref().map(|r| r.version_seen()).unwrap();
    up.route("chat:r0", Some(&mut cache)).unwrap();
    assert_eq!(
        cache.as_ref().map(|r| r.version_seen()),
        Some(cached),
        "kept"
    );
    up.routes_changed();
    let (again, _) = up.route("chat:r0", Some(&mut cache)).unwrap();
    assert_eq!(again, first);
    assert!(
        cache.as_ref().map(|r| r.version_seen()) > Some(cached),
        "checked again"
    );
    trigger.stopped(Duration::from_secs(2)).await;
    for node in nodes {
        node.stop().await;
    }
}

#[tokio::test]
async fn a_question_whose_owner_is_gone_is_answered_unavailable_within_its_deadline() {
    let coordinator: Coordinator = Arc::new(Embedded::new(Duration::from_secs(3)));
    let node = node::start(
        NodeConfig::for_test("n1", SECRET),
        coordinator.clone(),
        None,
    )
    .await
    .unwrap();
    let (trigger, shutdown) = crate::shutdown::channel();
    let up = upstream(&coordinator, shutdown);
    let room = RoomId::parse("chat:gone").unwrap();
    assert_eq!(owner_by_info(&up, &room).await, "n1");
    // Killed: its port refuses a new link, so its lease is revoked and the
    // room has no owner to route to; the question waits out its deadline.
    node.kill().await;
    let asked = Instant::now();
    let failure = up.query(&room, Query::Info).await.unwrap_err();
    assert_eq!(failure.code, ErrorCode::Unavailable);
    let waited = asked.elapsed();
    assert!(
        waited <= ANSWER_WITHIN + Duration::from_millis(500),
        "{waited:?}"
    );
    trigger.stopped(Duration::from_secs(2)).await;
}
