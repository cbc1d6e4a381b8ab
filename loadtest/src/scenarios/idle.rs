//! `idle`: hold N connections that send nothing, and measure what they cost
//! the server in memory.

use std::sync::Arc;

use anyhow::Result;
use clap::Args;
use futures_util::StreamExt;
use serde_json::json;
use tokio::sync::{Barrier, Semaphore};

use crate::client;
use crate::procstat;
use crate::report::Report;
use crate::Common;

/// Parameters of `idle`.
#[derive(Debug, Clone, Args)]
pub struct IdleArgs {
    /// Connections to hold.
    #[arg(long, default_value_t = 10_000)]
    pub connections: usize,
}

/// Runs the scenario: connect everyone, hold for the duration, close.
pub async fn run(common: &Common, args: IdleArgs) -> Result<Report> {
    let pids = &common.server_pid;
    let server_idle = (!pids.is_empty()).then(|| procstat::sample(pids));
    let permits = Arc::new(Semaphore::new(256));
    let connected = Arc::new(Barrier::new(args.connections + 1));
    let release = Arc::new(tokio::sync::Notify::new());
    let mut tasks = Vec::with_capacity(args.connections);
    for i in 0..args.connections {
        let gateway = common.gateway[i % common.gateway.len()].clone();
        let user = format!("{}-idle{i}", common.prefix);
        let (permits, connected, release) = (permits.clone(), connected.clone(), release.clone());
        tasks.push(tokio::spawn(async move {
            let permit = permits.acquire_owned().await;
            let conn = client::connect(&gateway, &user).await;
            drop(permit);
            connected.wait().await;
            let (_tx, mut rx) = conn?;
            let closed = tokio::select! {
                _ = release.notified() => false,
                msg = rx.next() => msg.is_none(),
            };
            Ok::<bool, anyhow::Error>(closed)
        }));
    }
    connected.wait().await;
    // Let allocators and the server settle before sampling.
    tokio::time::sleep(common.window()).await;
    let server_joined = (!pids.is_empty()).then(|| procstat::sample(pids));
    release.notify_waiters();
    let mut disconnects = 0;
    for task in tasks {
        match task.await? {
            Ok(false) => {}
            _ => disconnects += 1,
        }
    }
    let mut report = Report::new(
        "idle",
        json!({ "connections": args.connections }),
        args.connections,
        common.duration,
    )?;
    report.disconnects = disconnects;
    report.server_idle = server_idle;
    report.server_joined = server_joined;
    report.server_end = server_joined;
    Ok(report)
}
