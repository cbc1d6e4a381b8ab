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

#[test]
fn secrets_shorter_than_32_bytes_exit_64_and_roomring_secret_prints_one() {
    let out = roomring().arg("secret").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let secret = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(secret.len() >= 32, "{secret}");
    let node = |secret: &str| {
        roomring()
            .args(["node", "--id", "n1", "--listen", "127.0.0.1:0"])
            .args([
                "--coordinator",
                "redis://127.0.0.1:1",
                "--cluster-secret",
                secret,
            ])
            .output()
            .unwrap()
    };
    let short = node("eight-by");
    assert_eq!(short.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&short.stderr).contains("at least 32 bytes"));
    let token = roomring()
        .args(["token", "--sub", "ann", "--jwt-secret", "k"])
        .output()
        .unwrap();
    assert_eq!(token.status.code(), Some(64), "a one-byte JWT secret");
    let signed = roomring()
        .args(["token", "--sub", "ann", "--jwt-secret", &secret])
        .output()
        .unwrap();
    assert_eq!(signed.status.code(), Some(0));
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
        .args([
            "--cluster-secret",
            "test-cluster-secret-of-32-bytes-or-more",
        ])
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
            .args([
                "--cluster-secret",
                "test-cluster-secret-of-32-bytes-or-more",
            ])
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
async fn a_stopping_gateway_refuses_new_clients_and_closes_the_others_over_its_window() {
    const CLIENTS: usize = 10;
    let redis = support::redis::RedisServer::start();
    let _node = support::procs::Proc::start("node", "n1", &redis.url());
    let mut gw = support::procs::Proc::start_with(
        "gateway",
        "g1",
        &redis.url(),
        &["--drain-delay-ms", "1000", "--drain-window-ms", "1000"],
    );
    support::wait_for_nodes(gw.addr, 1).await;
    assert_eq!(http(gw.addr, "GET", "/readyz", None).await.0, 200);
    let mut clients = Vec::new();
    for i in 0..CLIENTS {
        let mut c = Client::connect(gw.addr, &format!("u{i}")).await;
        c.join("chat:drain").await;
        clients.push(c);
    }

    gw.signal("TERM");
    eventually!({
        let (status, body) = http(gw.addr, "GET", "/readyz", None).await;
        if status == 503 && body["error"]["code"] == "unavailable" {
            Ok(())
        } else {
            Err((status, body))
        }
    });
    // New clients are refused at once, and told to go elsewhere (no
    // Retry-After); the open sockets are still served.
    let (status, retry_after) = refused(gw.addr).await;
    assert_eq!((status, retry_after), (503, None));
    clients[0].say("chat:drain", "d1", "while draining").await;

    // Then each is closed once, as a restart, spread over the window.
    let start = tokio::time::Instant::now();
    let mut closed_at = Vec::new();
    for c in &mut clients {
        assert_eq!(c.close_code().await, Some(1012), "{}", c.user);
        closed_at.push(start.elapsed());
    }
    let spread = closed_at[CLIENTS - 1] - closed_at[0];
    assert!(
        spread >= std::time::Duration::from_millis(600),
        "closes spread over {spread:?}: {closed_at:?}"
    );
    assert_eq!(gw.wait_exit().await, Some(0));
}

#[tokio::test]
async fn past_its_accept_rate_a_client_waits_its_turn_then_gets_503_with_retry_after() {
    let redis = support::redis::RedisServer::start();
    let _node = support::procs::Proc::start("node", "n1", &redis.url());
    let gw =
        support::procs::Proc::start_with("gateway", "g1", &redis.url(), &["--accept-rate", "1"]);
    support::wait_for_nodes(gw.addr, 1).await;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let mut first = Client::connect(gw.addr, "first").await;
    // The next waits its turn (a second later), its socket open.
    let addr = gw.addr;
    let queued = tokio::spawn(async move {
        let asked = std::time::Instant::now();
        let mut c = Client::connect(addr, "queued").await;
        c.join("chat:rate").await;
        asked.elapsed()
    });
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    // One more would wait past a second: it is told to come back.
    assert_eq!(refused(gw.addr).await, (503, Some(1)));
    // A client asking why (a GET without the upgrade) learns the same.
    let (status, body) = http(gw.addr, "GET", "/ws", None).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (503, &serde_json::json!("unavailable"))
    );
    let waited = queued.await.unwrap();
    assert!(
        waited >= std::time::Duration::from_millis(500),
        "admitted after its turn, not at once: {waited:?}"
    );
    // Later it admits again, and the first was served all along.
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let mut late = Client::connect(gw.addr, "late").await;
    late.join("chat:rate").await;
    first.join("chat:rate").await;
}

/// Opens a WebSocket that the gateway refuses: its status and `Retry-After`.
async fn refused(addr: std::net::SocketAddr) -> (u16, Option<u64>) {
    use tokio_tungstenite::tungstenite::Error;
    match tokio_tungstenite::connect_async(format!("ws://{addr}/ws?user=late")).await {
        Err(Error::Http(response)) => {
            let retry = response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok()?.parse().ok());
            (response.status().as_u16(), retry)
        }
        other => panic!("expected a refusal, got {:?}", other.map(|_| "a socket")),
    }
}
