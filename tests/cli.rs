//! The binary as an operator runs it: flags, ready line, signals.

mod support;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};

use support::{http, Client};

fn roomring() -> Command {
    Command::new(env!("CARGO_BIN_EXE_roomring"))
}

#[test]
fn bad_flags_exit_64_with_a_message() {
    for args in [
        &["dev", "--nodes", "zero"][..],
        &["dev", "--bogus"],
        &["launch"],
        &["node", "--id", "n1"],
    ] {
        let out = roomring().args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(64), "{args:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("error"),
            "{args:?}"
        );
    }
    let help = roomring().arg("--help").output().unwrap();
    assert_eq!(help.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&help.stdout).contains("dev"));
}

/// A clean stop is quiet too: the gateway leaves with its links, and no
/// node takes it for a gateway whose lease lapsed.
#[tokio::test]
async fn dev_prints_its_ready_line_and_stops_cleanly_on_sigterm() {
    let mut child = roomring()
        .args(["dev", "--listen", "127.0.0.1:0", "--nodes", "2"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let parts: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(parts[..3], ["ready", "dev", "dev"], "{line}");
    let addr: SocketAddr = parts[3].parse().unwrap();
    eventually!({
        let (status, body) = http(addr, "GET", "/readyz", None).await;
        if status == 200 {
            Ok(())
        } else {
            Err(body)
        }
    });
    let mut c = Client::connect(addr, "ann").await;
    c.join("chat:cli").await;
    c.say("chat:cli", "1", "before the signal").await;
    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    assert_eq!(c.close_code().await, Some(1012));
    let out = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        !log.contains("WARN") && !log.contains("ERROR"),
        "a clean stop logged:\n{log}"
    );
}

#[tokio::test]
async fn a_second_process_with_a_live_members_id_exits_with_a_clear_error() {
    let redis = support::redis::RedisServer::start();
    let mut first = support::procs::Proc::start("node", "twin", &redis.url());
    let started = std::time::Instant::now();
    let second = roomring()
        .args([
            "node",
            "--id",
            "twin",
            "--listen",
            "127.0.0.1:0",
            "--coordinator",
            &redis.url(),
        ])
        .args(["--cluster-secret", "test-cluster-secret"])
        .output()
        .expect("runs");
    assert_eq!(second.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(
        stderr.contains("member id twin is in use by a live process"),
        "{stderr}"
    );
    assert!(
        started.elapsed() >= std::time::Duration::from_secs(3),
        "it waited out a lease first"
    );
    assert!(first.alive(), "the first process is untouched");
}

/// Two processes given the same id at the same instant both find it free;
/// only one may join, and the other exits with the same clear error.
#[tokio::test]
async fn of_two_processes_started_at_once_with_one_id_one_exits_and_one_keeps_it() {
    let redis = support::redis::RedisServer::start();
    let spawn = || {
        roomring()
            .args(["node", "--id", "twin", "--listen", "127.0.0.1:0"])
            .args(["--coordinator", &redis.url()])
            .args(["--cluster-secret", "test-cluster-secret"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("runs")
    };
    // Writes wait a moment, so that both read the id as free before
    // either joins.
    redis.cli(&["CLIENT", "PAUSE", "700", "WRITE"]);
    let mut twins = [spawn(), spawn()];
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let exited = loop {
        if let Some(at) = (0..2).find(|&i| matches!(twins[i].try_wait(), Ok(Some(_)))) {
            break at;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "both processes kept running with one id"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let [a, b] = &mut twins;
    let (loser, winner) = if exited == 0 { (a, b) } else { (b, a) };
    let status = loser.wait().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(loser.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("member id twin is in use by a live process"),
        "{stderr}"
    );
    // The other keeps its lease: one generation, renewed, not taken back.
    let generation = || redis.query(&["HGET", "roomring:member:twin", "generation"]);
    let held = generation();
    assert!(!held.is_empty(), "the id is held");
    tokio::time::sleep(std::time::Duration::from_secs(4)).await;
    assert_eq!(generation(), held, "the lease stayed with one process");
    assert!(matches!(winner.try_wait(), Ok(None)), "the other runs on");
    let _ = winner.kill();
    let _ = winner.wait();
}

#[tokio::test]
async fn a_gateway_with_a_drain_delay_says_unready_first_and_serves_until_it_closes() {
    let redis = support::redis::RedisServer::start();
    let _node = support::procs::Proc::start("node", "n1", &redis.url());
    let mut gw = support::procs::Proc::start_with(
        "gateway",
        "g1",
        &redis.url(),
        &["--drain-delay-ms", "1500"],
    );
    support::wait_for_nodes(gw.addr, 1).await;
    assert_eq!(http(gw.addr, "GET", "/readyz", None).await.0, 200);
    let mut c = Client::connect(gw.addr, "ann").await;
    c.join("chat:drain-delay").await;

    gw.signal("TERM");
    eventually!({
        let (status, body) = http(gw.addr, "GET", "/readyz", None).await;
        if status == 503 && body["error"]["code"] == "unavailable" {
            Ok(())
        } else {
            Err((status, body))
        }
    });
    // Still serving: the open socket is answered and a new one is accepted.
    c.say("chat:drain-delay", "d1", "while draining").await;
    let mut late = Client::connect(gw.addr, "bob").await;
    late.join("chat:drain-delay").await;
    // Then the clients are closed as a restart, and the process exits 0.
    assert_eq!(c.close_code().await, Some(1012));
    assert_eq!(gw.wait_exit().await, Some(0));
}
