//! `rolling`: couples chat while the cluster is updated node by node through
//! the HTTP API (for each node there at the start: add a node, then drain the
//! old one), so that lost acks, duplicates, gaps and disconnects during a
//! rolling update show, with each membership change marked on the timeline.
//! With `--replace`, an outside command replaces each process instead (a
//! cluster of separate processes, nodes or gateways).

use std::time::Duration;

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use clap::Args;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpStream;

use crate::report::Report;
use crate::run::Run;
use crate::scenarios::chat::{self, ChatArgs};
use crate::timeline::Timeline;

/// Parameters of `rolling`.
#[derive(Debug, Clone, Args)]
pub struct RollingArgs {
    #[command(flatten)]
    pub chat: ChatArgs,
    /// Gateway whose HTTP API adds and drains nodes (default: the first
    /// `--gateway`); adding nodes needs `roomring dev`.
    #[arg(long)]
    pub api: Option<String>,
    /// Bearer token for the API, when the cluster checks them.
    #[arg(long, env = "ROOMRING_TOKEN")]
    pub token: Option<String>,
    /// Instead of adding and draining through the API, run this shell
    /// command once for each of `--ids` (or of the nodes the API lists),
    /// with `ROLL_ID` set to it: it stops that process and starts its
    /// replacement, and returns once the replacement serves (a node or a
    /// gateway of a cluster of separate processes).
    #[arg(long)]
    pub replace: Option<String>,
    /// What `--replace` rolls, in order (default: the nodes the API lists).
    #[arg(long, value_delimiter = ',', requires = "replace")]
    pub ids: Vec<String>,
}

/// Runs the scenario.
pub async fn run(run: &Run, args: RollingArgs) -> Result<Report> {
    let api = args.api.clone().unwrap_or_else(|| run.gateway(0));
    let token = args.token.clone();
    let nodes = if run.is_child() {
        Vec::new()
    } else if !args.ids.is_empty() {
        args.ids.clone()
    } else {
        let cluster = request(&api, "GET", "/api/cluster", token.as_deref()).await?;
        let nodes: Vec<String> = cluster["nodes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|n| n["state"] != "draining")
            .filter_map(|n| n["id"].as_str().map(String::from))
            .collect();
        if nodes.is_empty() {
            bail!("{api} reports no nodes to roll");
        }
        nodes
    };
    let timeline = run.timeline.clone();
    let window = run.window();
    let replace = args.replace.clone();
    let driver = tokio::spawn(async move {
        match replace {
            Some(command) => replace_each(&command, &nodes, &timeline, window).await,
            None => roll(&api, token.as_deref(), &nodes, &timeline, window).await,
        }
    });
    let mut report = chat::run(run, args.chat, "rolling").await?;
    match driver.await? {
        Ok(()) => {}
        Err(e) => {
            eprintln!("rolling update failed: {e:#}");
            report.errors += 1;
        }
    }
    Ok(report)
}

/// Adds a node, then drains an old one, for each old node, at evenly spaced
/// times within the middle of the window.
async fn roll(
    api: &str,
    token: Option<&str>,
    nodes: &[String],
    timeline: &Timeline,
    window: Duration,
) -> Result<()> {
    let Some(schedule) = Schedule::start(timeline, window, 2 * nodes.len()).await else {
        return Ok(());
    };
    for (k, old) in nodes.iter().enumerate() {
        schedule.step(timeline, 2 * k).await;
        let added = request(api, "POST", "/api/cluster/nodes", token).await?;
        let id = added["id"].as_str().unwrap_or("?");
        timeline.event(format!("add {id}"));
        schedule.step(timeline, 2 * k + 1).await;
        request(
            api,
            "POST",
            &format!("/api/cluster/nodes/{old}/drain"),
            token,
        )
        .await?;
        timeline.event(format!("drain {old}"));
    }
    Ok(())
}

/// Runs `command` for each of `ids` in turn, starting at evenly spaced
/// times within the middle of the window (or as soon as the one before has
/// finished).
async fn replace_each(
    command: &str,
    ids: &[String],
    timeline: &Timeline,
    window: Duration,
) -> Result<()> {
    let Some(schedule) = Schedule::start(timeline, window, ids.len()).await else {
        return Ok(());
    };
    for (k, id) in ids.iter().enumerate() {
        schedule.step(timeline, k).await;
        timeline.event(format!("replace {id}"));
        let status = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(command)
            .env("ROLL_ID", id)
            .status()
            .await
            .with_context(|| format!("run {command}"))?;
        if !status.success() {
            bail!("{command} for {id}: {status}");
        }
        timeline.event(format!("{id} back"));
    }
    Ok(())
}

/// Steps of a rolling update spread evenly over the middle 70 % of the
/// window, from the moment sending begins.
struct Schedule {
    first: f64,
    spacing: f64,
}

impl Schedule {
    /// Waits for sending to begin; `None` when there is nothing to do.
    async fn start(timeline: &Timeline, window: Duration, steps: usize) -> Option<Self> {
        if steps == 0 {
            return None;
        }
        while timeline.elapsed() == 0.0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Some(Self {
            first: window.as_secs_f64() * 0.15,
            spacing: window.as_secs_f64() * 0.7 / steps as f64,
        })
    }

    /// Waits until step `k`'s time (at once if it has passed).
    async fn step(&self, timeline: &Timeline, k: usize) {
        let left = self.first + self.spacing * k as f64 - timeline.elapsed();
        if left > 0.0 {
            tokio::time::sleep(Duration::from_secs_f64(left)).await;
        }
    }
}

/// One HTTP/1.1 request to the API; the JSON reply (null when empty).
async fn request(addr: &str, method: &str, path: &str, token: Option<&str>) -> Result<Value> {
    let stream = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connect {addr}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let mut req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr);
    if let Some(token) = token {
        req = req.header("authorization", format!("Bearer {token}"));
    }
    let resp = sender
        .send_request(req.body(Empty::<Bytes>::new())?)
        .await?;
    let status = resp.status();
    let body = resp.into_body().collect().await?.to_bytes();
    if !status.is_success() {
        bail!(
            "{method} {path}: {status} {}",
            String::from_utf8_lossy(&body)
        );
    }
    if body.is_empty() {
        return Ok(Value::Null);
    }
    Ok(serde_json::from_slice(&body)?)
}
