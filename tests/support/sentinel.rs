//! A Redis primary, one replica and three `redis-sentinel` processes on free
//! loopback ports, each in its own directory, stopped on drop.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::redis::{free_port, RedisServer};

/// The Sentinels' name for the primary.
pub const MASTER: &str = "main";

/// A primary, a replica, and three Sentinels watching them.
pub struct SentinelSet {
    /// The primary at start.
    pub primary: RedisServer,
    /// Its replica.
    pub replica: RedisServer,
    /// The Sentinels' ports.
    pub sentinels: Vec<u16>,
    children: Vec<Child>,
    dir: PathBuf,
}

/// `redis-cli -p PORT ARGS...`, what it printed.
pub fn cli(port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .output()
        .expect("redis-cli runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn wait_for(what: &str, within: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !ok() {
        assert!(Instant::now() < deadline, "never: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl SentinelSet {
    /// Starts them and waits until the Sentinels know the replica and each
    /// other (so that they can agree on a failover).
    pub fn start() -> Self {
        let dir = std::env::temp_dir().join(format!(
            "roomring-sentinel-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let in_dir = |name: &str| {
            let d = dir.join(name);
            std::fs::create_dir_all(&d).unwrap();
            vec!["--dir".to_string(), d.display().to_string()]
        };
        let primary = RedisServer::start_with(None, &in_dir("primary"));
        let mut replica_args = in_dir("replica");
        replica_args.extend([
            "--replicaof".into(),
            "127.0.0.1".into(),
            primary.port.to_string(),
        ]);
        let replica = RedisServer::start_with(None, &replica_args);
        wait_for("the replica is in sync", Duration::from_secs(10), || {
            cli(replica.port, &["INFO", "replication"]).contains("master_link_status:up")
        });
        let mut sentinels = Vec::new();
        let mut children = Vec::new();
        for i in 0..3 {
            let port = free_port();
            let conf = dir.join(format!("sentinel-{i}.conf"));
            std::fs::write(
                &conf,
                format!(
                    "port {port}\nbind 127.0.0.1\ndir {}\n\
                     sentinel monitor {MASTER} 127.0.0.1 {} 2\n\
                     sentinel down-after-milliseconds {MASTER} 500\n\
                     sentinel failover-timeout {MASTER} 5000\n\
                     sentinel parallel-syncs {MASTER} 1\n",
                    dir.display(),
                    primary.port
                ),
            )
            .unwrap();
            let child = Command::new("redis-sentinel")
                .arg(&conf)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("redis-sentinel runs (scripts/test installs it)");
            children.push(child);
            sentinels.push(port);
        }
        for &port in &sentinels {
            wait_for(
                "each Sentinel knows the others",
                Duration::from_secs(20),
                || {
                    let info = cli(port, &["INFO", "sentinel"]);
                    info.contains("slaves=1") && info.contains("sentinels=3")
                },
            );
        }
        Self {
            primary,
            replica,
            sentinels,
            children,
            dir,
        }
    }

    /// `redis+sentinel://127.0.0.1:A,127.0.0.1:B,127.0.0.1:C/main`.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self
            .sentinels
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        format!("redis+sentinel://{}/{MASTER}", hosts.join(","))
    }

    /// The port of the primary the Sentinels name now.
    pub fn primary_port(&self) -> Option<u16> {
        let out = cli(
            self.sentinels[0],
            &["SENTINEL", "get-master-addr-by-name", MASTER],
        );
        out.lines().nth(1)?.trim().parse().ok()
    }
}

impl Drop for SentinelSet {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
