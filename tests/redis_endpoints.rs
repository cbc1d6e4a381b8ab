//! The ways to reach Redis, each with real processes and a real
//! redis-server: an ACL user with a password in the URL, and `rediss://`
//! with the cluster's own CA. Wrong credentials, a wrong CA or plain text to
//! a TLS port stop a process at start with a message that names no secret.

mod support;

use std::process::Command;

use support::procs::Proc;
use support::redis::{free_port, RedisServer};
use support::{history, Client};

/// A node and a gateway on `url` (with `extra` flags) serve a chat room,
/// whose message lands in Redis's log for it.
async fn chat_works(url: &str, extra: &[&str], redis: &RedisServer) {
    let _node = Proc::start_with("node", "n1", url, extra);
    let gateway = Proc::start_with("gateway", "g1", url, extra);
    let room = "chat:endpoint";
    let mut c = eventually!({
        let mut c = Client::connect(gateway.addr, "ana").await;
        c.send(serde_json::json!({"t": "join", "room": room, "id": "j"}))
            .await;
        let f = c.recv().await;
        if f["t"] == "joined" {
            Ok(c)
        } else {
            Err(f)
        }
    });
    let seq = c.say(room, "m1", "over the wire").await;
    let kept = history(gateway.addr, room).await;
    assert_eq!(kept.last().unwrap()["seq"], seq);
    let logged = redis.query(&["XLEN", &format!("roomring:room:{room}:log")]);
    assert_eq!(logged.trim(), "1", "the message is in Redis's log");
}

/// Runs a node that must fail at start: its exit code and what it printed.
fn refused(url: &str, extra: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_roomring"))
        .args(["node", "--id", "n9", "--listen", "127.0.0.1:0"])
        .args([
            "--coordinator",
            url,
            "--cluster-secret",
            "test-cluster-secret-of-32-bytes-or-more",
        ])
        .args(extra)
        .output()
        .expect("roomring runs");
    let printed =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    (out.status.code(), printed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acl_user_and_password_in_the_url_are_used_and_never_printed() {
    let acl: Vec<String> = ["--user", "app", "on", ">app-s3cret", "~*", "&*", "+@all"]
        .map(String::from)
        .to_vec();
    let redis = RedisServer::start_with(Some("admin-s3cret"), &acl);
    let url = format!("redis://app:app-s3cret@127.0.0.1:{}", redis.port);
    chat_works(&url, &[], &redis).await;

    for bad in [
        format!("redis://app:wrong-s3cret@127.0.0.1:{}", redis.port),
        format!("redis://127.0.0.1:{}", redis.port),
    ] {
        let (code, printed) = refused(&bad, &[]);
        assert_eq!(code, Some(1), "{printed}");
        assert!(printed.contains("error:"), "{printed}");
        assert!(!printed.contains("s3cret"), "{printed}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rediss_with_the_clusters_own_ca_carries_the_cluster() {
    let dir = std::env::temp_dir().join(format!("roomring-tls-{}", std::process::id()));
    let (ca, cert, key) = support::tls::certificates(&dir, "redis");
    let tls_port = free_port();
    let tls: Vec<String> = vec![
        "--tls-port".into(),
        tls_port.to_string(),
        "--tls-cert-file".into(),
        cert.display().to_string(),
        "--tls-key-file".into(),
        key.display().to_string(),
        "--tls-ca-cert-file".into(),
        ca.display().to_string(),
        "--tls-auth-clients".into(),
        "no".into(),
    ];
    let redis = RedisServer::start_with(Some("tls-s3cret"), &tls);
    let ca_flag = ca.display().to_string();
    let url = format!("rediss://:tls-s3cret@localhost:{tls_port}");
    chat_works(&url, &["--redis-ca", &ca_flag], &redis).await;

    // The system's roots do not know this CA.
    let (code, printed) = refused(&url, &[]);
    assert_eq!(code, Some(1), "{printed}");
    assert!(!printed.contains("s3cret"), "{printed}");
    // Plain text to the TLS port gets nowhere.
    let plain = format!("redis://:tls-s3cret@127.0.0.1:{tls_port}");
    let (code, printed) = refused(&plain, &[]);
    assert_eq!(code, Some(1), "{printed}");
    // A CA file that holds no certificate is a usage error.
    let (code, printed) = refused(&url, &["--redis-ca", &key.display().to_string()]);
    assert_eq!(code, Some(64), "{printed}");
    assert!(printed.contains("--redis-ca"), "{printed}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rediss_sentinel_reaches_sentinels_and_primary_over_tls() {
    let dir = std::env::temp_dir().join(format!("roomring-sentinel-tls-{}", std::process::id()));
    let (ca, cert, key) = support::tls::certificates(&dir, "redis");
    let (redis_tls, sentinel_tls) = (free_port(), free_port());
    let tls_files = format!(
        "tls-cert-file {}\ntls-key-file {}\ntls-ca-cert-file {}\ntls-auth-clients no\n",
        cert.display(),
        key.display(),
        ca.display()
    );
    let tls: Vec<String> = tls_files
        .lines()
        .flat_map(|l| {
            l.split_once(' ')
                .map(|(k, v)| [format!("--{k}"), v.to_string()])
        })
        .flatten()
        .chain(["--tls-port".into(), redis_tls.to_string()])
        .collect();
    let redis = RedisServer::start_with(Some("tls-s3cret"), &tls);
    // One Sentinel, on TLS only, that watches the primary's TLS port.
    let conf = dir.join("sentinel.conf");
    std::fs::write(
        &conf,
        format!(
            "port 0\ntls-port {sentinel_tls}\nbind 127.0.0.1\ndir {}\n{tls_files}tls-replication yes\n\
             sentinel monitor main 127.0.0.1 {redis_tls} 1\nsentinel auth-pass main tls-s3cret\n",
            dir.display()
        ),
    )
    .unwrap();
    let mut sentinel = Command::new("redis-sentinel")
        .arg(&conf)
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("redis-sentinel runs (scripts/test installs it)");
    let ca_flag = ca.display().to_string();
    let url = format!("rediss+sentinel://:tls-s3cret@127.0.0.1:{sentinel_tls}/main");
    chat_works(&url, &["--redis-ca", &ca_flag], &redis).await;
    // In clear, that Sentinel answers nothing.
    let plain = format!("redis+sentinel://:tls-s3cret@127.0.0.1:{sentinel_tls}/main");
    let (code, printed) = refused(&plain, &[]);
    assert_eq!(code, Some(1), "{printed}");
    assert!(!printed.contains("s3cret"), "{printed}");
    let _ = sentinel.kill();
    let _ = sentinel.wait();
    let _ = std::fs::remove_dir_all(&dir);
}
