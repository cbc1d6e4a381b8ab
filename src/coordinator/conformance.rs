//! The one test suite every `Membership` backend passes. Backends call
//! `run` with a fresh coordinator whose lease TTL is at most one second, and
//! the handle another process would hold on the same membership (the same
//! one, for a backend that lives in one process).

use std::time::Duration;

use super::{CoordError, MemberState, Membership, Role, View};
use crate::ids::NodeId;

/// Waits until the published view satisfies `pred` (backends may publish
/// asynchronously), or panics after five seconds.
pub async fn until(m: &dyn Membership, what: &str, pred: impl Fn(&View) -> bool) -> View {
    let mut rx = m.watch();
    let wait = async { rx.wait_for(|v| pred(v)).await.map(|v| (**v).clone()) };
    match tokio::time::timeout(Duration::from_secs(5), wait).await {
        Ok(Ok(view)) => view,
        _ => panic!(
            "coordinator never reached: {what}; last view {:?}",
            m.watch().borrow()
        ),
    }
}

fn id(s: &str) -> NodeId {
    NodeId::parse(s).expect("valid id")
}

/// Runs every check of the suite against `m`; `other` is another
/// process's handle on the same membership.
pub async fn run(m: &dyn Membership, other: &dyn Membership) {
    assert!(
        m.lease_ttl() <= Duration::from_secs(1),
        "the suite needs a short lease"
    );
    join_and_state_bump_the_epoch(m).await;
    load_does_not_bump_the_epoch(m).await;
    rejoin_is_a_new_generation(m, other).await;
    unrenewed_leases_expire(m).await;
    unknown_members_are_reported(m).await;
}

async fn join_and_state_bump_the_epoch(m: &dyn Membership) {
    let (a, b) = (id("suite-a"), id("suite-b"));
    let start = m.watch().borrow().epoch;
    let la = m.join(Role::Node, &a, "127.0.0.1:1").await.expect("join a");
    let v1 = until(m, "a joined", |v| v.member(&a).is_some()).await;
    assert!(v1.epoch > start);
    let lb = m
        .join(Role::Gateway, &b, "127.0.0.1:2")
        .await
        .expect("join b");
    let v2 = until(m, "b joined", |v| v.member(&b).is_some()).await;
    assert!(v2.epoch > v1.epoch);
    assert_eq!(v2.member(&b).map(|x| x.role), Some(Role::Gateway));
    assert_eq!(
        v2.ring().nodes(),
        std::slice::from_ref(&a),
        "only active nodes are on the ring"
    );

    m.set_state(&a, MemberState::Draining)
        .await
        .expect("drain a");
    let v3 = until(m, "a draining", |v| {
        v.member(&a).map(|x| x.state) == Some(MemberState::Draining)
    })
    .await;
    assert!(v3.epoch > v2.epoch);
    assert!(v3.ring().is_empty(), "a draining node leaves the ring");

    m.leave(&a, la).await.expect("leave a");
    m.leave(&b, lb).await.expect("leave b");
    let v4 = until(m, "both left", |v| {
        v.member(&a).is_none() && v.member(&b).is_none()
    })
    .await;
    assert!(v4.epoch > v3.epoch);
}

async fn load_does_not_bump_the_epoch(m: &dyn Membership) {
    let a = id("suite-load");
    let lease = m.join(Role::Node, &a, "127.0.0.1:3").await.expect("join");
    let before = until(m, "joined", |v| v.member(&a).is_some()).await;
    m.renew(&a, lease, 42).await.expect("renew");
    let after = until(m, "load 42", |v| v.member(&a).map(|x| x.load) == Some(42)).await;
    assert_eq!(after.epoch, before.epoch);
    m.leave(&a, lease).await.expect("leave");
}

async fn rejoin_is_a_new_generation(m: &dyn Membership, other: &dyn Membership) {
    let a = id("suite-rejoin");
    let first = m.join(Role::Node, &a, "127.0.0.1:4").await.expect("join");
    assert!(
        matches!(
            other.join(Role::Node, &a, "127.0.0.1:5").await,
            Err(CoordError::InUse(_))
        ),
        "a live lease keeps its id from another process"
    );
    // Revoked (or lapsed), the id is free for a new generation.
    m.revoke(&a, first.generation).await.expect("revoke");
    let second = m.join(Role::Node, &a, "127.0.0.1:5").await.expect("rejoin");
    assert!(second.generation > first.generation);
    let v = until(m, "rejoined", |v| {
        v.member(&a).map(|x| x.generation) == Some(second.generation)
    })
    .await;
    assert_eq!(v.member(&a).map(|x| x.addr.as_str()), Some("127.0.0.1:5"));
    assert!(matches!(
        m.renew(&a, first, 0).await,
        Err(CoordError::LeaseLost)
    ));
    // The old generation's leave must not remove the new one.
    m.leave(&a, first).await.expect("stale leave");
    m.renew(&a, second, 0)
        .await
        .expect("the new generation keeps its lease");
    m.leave(&a, second).await.expect("leave");
}

async fn unrenewed_leases_expire(m: &dyn Membership) {
    let (a, b) = (id("suite-lapse"), id("suite-kept"));
    let la = m.join(Role::Node, &a, "127.0.0.1:6").await.expect("join a");
    let lb = m.join(Role::Node, &b, "127.0.0.1:7").await.expect("join b");
    until(m, "both joined", |v| {
        v.member(&a).is_some() && v.member(&b).is_some()
    })
    .await;
    let ttl = m.lease_ttl();
    let deadline = tokio::time::Instant::now() + ttl * 3;
    while tokio::time::Instant::now() < deadline {
        m.renew(&b, lb, 0).await.expect("b renews");
        tokio::time::sleep(ttl / 4).await;
    }
    let v = until(m, "a expired", |v| v.member(&a).is_none()).await;
    assert!(v.member(&b).is_some(), "a renewed lease is kept");
    assert!(matches!(
        m.renew(&a, la, 0).await,
        Err(CoordError::LeaseLost)
    ));
    m.leave(&b, lb).await.expect("leave b");
}

async fn unknown_members_are_reported(m: &dyn Membership) {
    let ghost = id("suite-ghost");
    assert!(matches!(
        m.set_state(&ghost, MemberState::Draining).await,
        Err(CoordError::NoMember(_))
    ));
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn embedded_passes_the_suite() {
        let m = super::super::Embedded::new(std::time::Duration::from_millis(400));
        super::run(&m, &m).await;
    }
}
