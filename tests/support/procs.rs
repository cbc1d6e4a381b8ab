//! Real `roomring` processes (`CARGO_BIN_EXE_roomring`), read until their
//! ready line, killed on drop.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};

/// A running roomring process.
pub struct Proc {
    /// Its member id.
    pub id: String,
    /// The address from its ready line.
    pub addr: SocketAddr,
    child: Child,
}

/// The process logs to the test's stderr, warnings and errors only unless
/// `ROOMRING_TEST_LOG` says otherwise.
fn logs_to_the_test(mut command: Command) -> Command {
    command
        .env(
            "RUST_LOG",
            std::env::var("ROOMRING_TEST_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stderr(Stdio::inherit());
    command
}

/// `roomring ROLE --id ID --listen 127.0.0.1:0 --coordinator URL` with
/// `--auth none`, a cluster secret, and `extra`.
fn member_command(role: &str, id: &str, redis_url: &str, extra: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_roomring"));
    command
        .args([role, "--id", id, "--listen", "127.0.0.1:0"])
        .args(["--coordinator", redis_url])
        .args([
            "--auth",
            "none",
            "--cluster-secret",
            "test-cluster-secret-of-32-bytes-or-more",
        ])
        .args(extra);
    command
}

impl Proc {
    /// Starts `roomring ROLE --id ID --listen 127.0.0.1:0 --coordinator URL`
    /// with `--auth none` and a cluster secret, and waits for its ready line.
    pub fn start(role: &str, id: &str, redis_url: &str) -> Self {
        Self::start_with(role, id, redis_url, &[])
    }

    /// `start` with more flags.
    pub fn start_with(role: &str, id: &str, redis_url: &str, extra: &[&str]) -> Self {
        let command = member_command(role, id, redis_url, extra);
        Self::spawn(logs_to_the_test(command), role, id)
    }

    /// `start`, its log (warnings and errors) written to `log`.
    pub fn start_logged(role: &str, id: &str, redis_url: &str, log: &std::path::Path) -> Self {
        let mut command = member_command(role, id, redis_url, &[]);
        command
            .env("RUST_LOG", "warn")
            .stderr(std::fs::File::create(log).expect("log file"));
        Self::spawn(command, role, id)
    }

    /// Starts `roomring dev --listen 127.0.0.1:0` and waits for its ready line.
    pub fn dev() -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_roomring"));
        command.args(["dev", "--listen", "127.0.0.1:0"]);
        Self::spawn(logs_to_the_test(command), "dev", "dev")
    }

    fn spawn(mut command: Command, role: &str, id: &str) -> Self {
        let mut child = command
            .stdout(Stdio::piped())
            .spawn()
            .expect("roomring starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("ready line");
        let parts: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(
            parts.get(..3),
            Some(&["ready", role, id][..]),
            "ready line: {line:?}"
        );
        let addr = parts[3].parse().expect("ready address");
        Self {
            id: id.to_string(),
            addr,
            child,
        }
    }

    /// SIGKILL, as a crash.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then the exit code (waiting without blocking the runtime;
    /// panics after 30 s).
    pub async fn terminate(&mut self) -> Option<i32> {
        let pid = self.child.id().to_string();
        let ok = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success();
        assert!(ok);
        self.wait_exit().await
    }

    /// Waits for it to exit, as `terminate` does, without a signal.
    pub async fn wait_exit(&mut self) -> Option<i32> {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status.code();
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} did not exit",
                self.id
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// Sends a signal (`STOP`, `CONT`, ...).
    pub fn signal(&self, name: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{name}");
    }

    /// Whether it is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Node and gateway processes on one Redis, each started by its ready line,
/// every gateway waited for until it knows every member; stopped on drop.
pub struct ProcCluster {
    /// `n1`, `n2`, ...
    pub nodes: Vec<Proc>,
    /// `g1`, `g2`, ...
    pub gateways: Vec<Proc>,
}

impl ProcCluster {
    /// `nodes` nodes (with `node_flags`) and `gateways` gateways (with
    /// `gateway_flags`) on the Redis at `url`.
    pub async fn start(
        url: &str,
        (nodes, node_flags): (usize, &[&str]),
        (gateways, gateway_flags): (usize, &[&str]),
    ) -> Self {
        let nodes: Vec<Proc> = (1..=nodes)
            .map(|i| Proc::start_with("node", &format!("n{i}"), url, node_flags))
            .collect();
        let gateways: Vec<Proc> = (1..=gateways)
            .map(|i| Proc::start_with("gateway", &format!("g{i}"), url, gateway_flags))
            .collect();
        let want = (nodes.len(), gateways.len());
        for gw in &gateways {
            let addr = gw.addr;
            eventually!({
                let (_, v) = super::http(addr, "GET", "/api/cluster", None).await;
                let count = |k: &str| v[k].as_array().map_or(0, Vec::len);
                if (count("nodes"), count("gateways")) == want {
                    Ok(())
                } else {
                    Err(v)
                }
            });
        }
        Self { nodes, gateways }
    }
}
