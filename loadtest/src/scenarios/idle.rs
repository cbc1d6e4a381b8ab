//! `idle`: hold N connections that send nothing, and measure what they cost
//! the server in memory.

use std::sync::Arc;

use anyhow::Result;
use clap::Args;
use futures_util::StreamExt;
use serde_json::json;
use tokio::sync::{Barrier, Semaphore};

use crate::client;
use crate::report::Report;
use crate::run::{Run, CONNECT_PARALLELISM};

/// Parameters of `idle`.
#[derive(Debug, Clone, Args)]
pub struct IdleArgs {
    /// Connections to hold (over all generator processes).
    #[arg(long, default_value_t = 10_000)]
    pub connections: usize,
}

/// Runs the scenario: connect everyone, hold for the duration, close.
pub async fn run(run: &Run, args: IdleArgs) -> Result<Report> {
    let mine: Vec<usize> = (0..args.connections).filter(|&i| run.mine(i)).collect();
    let server_idle = run.sample();
    let permits = Arc::new(Semaphore::new(CONNECT_PARALLELISM));
    let connected = Arc::new(Barrier::new(mine.len() + 1));
    let release = Arc::new(tokio::sync::Notify::new());
    let mut tasks = Vec::with_capacity(mine.len());
    for &i in &mine {
        let (gateway, source) = (run.gateway(i), run.source(i));
        let user = format!("{}-idle{i}", run.common.prefix);
        let (permits, connected, release) = (permits.clone(), connected.clone(), release.clone());
        tasks.push(tokio::spawn(async move {
            let permit = permits.acquire_owned().await;
            let conn = client::connect(&gateway, source, &user).await;
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
    let bar = run.begin().await;
    // Let allocators and the server settle before sampling.
    tokio::time::sleep(run.window()).await;
    run.checkpoint("held").await;
    let server_joined = run.sample();
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    release.notify_waiters();
    let mut disconnects = 0;
    let mut failures = 0;
    for task in tasks {
        match task.await? {
            Ok(false) => {}
            Ok(true) => disconnects += 1,
            Err(e) => {
                failures += 1;
                if failures <= 3 {
                    eprintln!("connection failed: {e:#}");
                }
                disconnects += 1;
            }
        }
    }
    let mut report = Report::new(
        "idle",
        json!({ "connections": args.connections }),
        mine.len(),
        run.common.duration,
    )?;
    report.disconnects = disconnects;
    report.server_idle = server_idle;
    report.server_joined = server_joined;
    report.server_end = server_joined;
    Ok(report)
}
