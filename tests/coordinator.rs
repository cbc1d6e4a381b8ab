//! Both coordinator backends pass the one membership suite.

mod support;

use std::time::Duration;

use roomring::coordinator::conformance;
use roomring::coordinator::embedded::Embedded;
use roomring::coordinator::redis::Redis;
use support::redis::RedisServer;

#[tokio::test]
async fn embedded_passes_the_membership_suite() {
    conformance::run(&Embedded::new(Duration::from_millis(600))).await;
}

#[tokio::test]
async fn redis_passes_the_membership_suite() {
    let server = RedisServer::start();
    let coordinator = Redis::connect(&server.endpoint(), "suite", Duration::from_millis(600))
        .await
        .unwrap();
    conformance::run(&coordinator).await;
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
