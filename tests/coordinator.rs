//! Both coordinator backends pass the one membership suite.

mod support;

use std::time::Duration;

use roomring::coordinator::conformance;
use roomring::coordinator::embedded::Embedded;
use roomring::coordinator::redis::Redis;
use support::redis::RedisServer;

#[tokio::test]
async fn embedded_passes_the_membership_suite() {
    let embedded = Embedded::new(Duration::from_millis(600));
    conformance::run(&embedded, &embedded).await;
}

#[tokio::test]
async fn redis_passes_the_membership_suite() {
    let server = RedisServer::start();
    let endpoint = server.endpoint();
    let connect = || Redis::connect(&endpoint, "suite", Duration::from_millis(600));
    let (coordinator, other) = (connect().await.unwrap(), connect().await.unwrap());
    conformance::run(&coordinator, &other).await;
}

/// A process's own join that timed out but landed leaves a lease it does
/// not know; joining again takes it over (another process's would be
/// refused, as the suite checks).
#[tokio::test]
async fn a_process_takes_over_a_lease_its_own_lost_join_left() {
    use roomring::coordinator::{Membership, Role};
    use roomring::ids::NodeId;
    let server = RedisServer::start();
    let m = Redis::connect(&server.endpoint(), "own", Duration::from_secs(3))
        .await
        .unwrap();
    let id = NodeId::parse("n1").unwrap();
    let lost = m.join(Role::Node, &id, "127.0.0.1:9").await.unwrap();
    let again = m.join(Role::Node, &id, "127.0.0.1:9").await.unwrap();
    assert!(again.generation > lost.generation);
    m.renew(&id, again, 0).await.expect("the new lease holds");
}

#[tokio::test]
async fn two_redis_clients_converge_on_one_view() {
    use roomring::coordinator::{Membership, Role};
    use roomring::ids::NodeId;
    let server = RedisServer::start();
    let a = Redis::connect(&server.endpoint(), "conv", Duration::from_secs(3))
        .await
        .unwrap();
    let b = Redis::connect(&server.endpoint(), "conv", Duration::from_secs(3))
        .await
        .unwrap();
    let id = NodeId::parse("n1").unwrap();
    a.join(Role::Node, &id, "127.0.0.1:9").await.unwrap();
    let seen = conformance::until(&b, "b sees n1", |v| v.member(&id).is_some()).await;
    assert_eq!(seen.epoch, a.watch().borrow().epoch);
}
