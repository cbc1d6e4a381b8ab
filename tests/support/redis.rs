//! A real `redis-server` on a free loopback port, stopped on drop.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running redis-server.
pub struct RedisServer {
    /// Its port on 127.0.0.1.
    pub port: u16,
    child: Option<Child>,
    /// The default user's password, if it needs one.
    password: Option<String>,
    /// More arguments (users, TLS, replication).
    extra: Vec<String>,
}

/// A loopback port free now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The process id of the redis-server answering on `port`, if one does.
fn server_pid(port: u16, password: Option<&str>) -> Option<u32> {
    use std::io::{Read, Write};
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    conn.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
    if let Some(p) = password {
        let auth = format!("*2\r\n$4\r\nAUTH\r\n${}\r\n{p}\r\n", p.len());
        conn.write_all(auth.as_bytes()).ok()?;
        let mut ok = [0u8; 5];
        conn.read_exact(&mut ok).ok()?;
        if &ok != b"+OK\r\n" {
            return None;
        }
    }
    conn.write_all(b"*2\r\n$4\r\nINFO\r\n$6\r\nserver\r\n")
        .ok()?;
    let mut reply = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&reply).contains("process_id:") || !reply.ends_with(b"\r\n") {
        let n = conn.read(&mut buf).ok()?;
        if n == 0 {
            break;
        }
        reply.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&reply);
    let line = text.lines().find_map(|l| l.strip_prefix("process_id:"))?;
    line.trim().parse().ok()
}

impl RedisServer {
    /// Starts one and waits until it answers.
    pub fn start() -> Self {
        Self::start_with(None, &[])
    }

    /// Starts one whose default user needs `password` (if given), with
    /// `extra` arguments, and waits until it answers on its plain port.
    pub fn start_with(password: Option<&str>, extra: &[String]) -> Self {
        let mut server = Self {
            port: free_port(),
            child: None,
            password: password.map(str::to_string),
            extra: extra.to_vec(),
        };
        server.spawn();
        server
    }

    /// `redis://127.0.0.1:PORT`, with the default user's password if any.
    pub fn url(&self) -> String {
        match &self.password {
            Some(p) => format!("redis://:{p}@127.0.0.1:{}", self.port),
            None => format!("redis://127.0.0.1:{}", self.port),
        }
    }

    /// The same, as the coordinator takes it.
    pub fn endpoint(&self) -> roomring::coordinator::endpoint::Endpoint {
        self.url().parse().expect("a redis:// URL")
    }

    fn spawn(&mut self) {
        // A port found free may be taken by another test's server before
        // ours binds it; ours then exits and the port answers for the other.
        // So the server that answers must be ours (by its process id).
        for _ in 0..20 {
            if self.try_spawn() {
                return;
            }
            self.stop();
            self.port = free_port();
        }
        panic!("redis-server did not start");
    }

    fn try_spawn(&mut self) -> bool {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .args(self.password.iter().flat_map(|p| ["--requirepass", p]))
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server runs (scripts/test installs it)");
        let pid = child.id();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Some(answered) = server_pid(self.port, self.password.as_deref()) {
                return answered == pid;
            }
            if let Some(Ok(Some(_))) = self.child.as_mut().map(|c| c.try_wait()) {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Stops it (SIGKILL): the data set, kept only in memory, is lost too.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Deletes every key, as a restart without persistence would.
    pub fn flushall(&self) {
        self.cli(&["FLUSHALL"]);
    }

    /// Runs one command through `redis-cli`.
    pub fn cli(&self, args: &[&str]) {
        self.query(args);
    }

    /// Runs one command through `redis-cli` and returns what it printed.
    pub fn query(&self, args: &[&str]) -> String {
        let port = self.port.to_string();
        let out = Command::new("redis-cli")
            .args(["--no-auth-warning", "-h", "127.0.0.1", "-p", &port])
            .args(self.password.iter().flat_map(|p| ["-a", p]))
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "redis-cli {args:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Kills it with SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        self.stop();
    }

    /// Pauses the server (SIGSTOP), so it is unreachable but keeps its data.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Resumes a paused server.
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, sig: &str) {
        if let Some(child) = &self.child {
            let ok = Command::new("kill")
                .args([sig, &child.id().to_string()])
                .status()
                .unwrap()
                .success();
            assert!(ok, "kill {sig}");
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.resume();
        self.stop();
    }
}
