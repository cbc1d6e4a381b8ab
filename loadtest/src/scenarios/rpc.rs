//! `rpc`: request/response round trips through the tiers (client, gateway,
//! owning node and back): each connection, alone in its room, keeps its
//! share of K `send`s in flight and sends the next as each ack comes.

use std::sync::Arc;

use anyhow::Result;
use clap::Args;
use futures_util::SinkExt;
use serde_json::json;
use tokio::sync::{Barrier, Semaphore};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use crate::client::{self, Frame};
use crate::report::Report;
use crate::run::{Run, CONNECT_PARALLELISM, DRAIN};
use crate::track::{id_time, Tracker};

/// Parameters of `rpc`.
#[derive(Debug, Clone, Args)]
pub struct RpcArgs {
    /// Connections, each in a room of its own.
    #[arg(long, default_value_t = 100)]
    pub connections: usize,
    /// Requests in flight over all connections (at least one each).
    #[arg(long, default_value_t = 100)]
    pub in_flight: usize,
}

/// Runs the scenario.
pub async fn run(run: &Run, args: RpcArgs) -> Result<Report> {
    let mine: Vec<usize> = (0..args.connections).filter(|&i| run.mine(i)).collect();
    let server_idle = run.sample();
    let joined = Arc::new(Barrier::new(mine.len() + 1));
    let go = Arc::new(Barrier::new(mine.len() + 1));
    let permits = Arc::new(Semaphore::new(CONNECT_PARALLELISM));
    let mut tasks = Vec::with_capacity(mine.len());
    for &i in &mine {
        let (gateway, source) = (run.gateway(i), run.source(i));
        let room = format!("chat:{}-rpc{i}", run.common.prefix);
        let user = format!("{}-r{i}", run.common.prefix);
        // Spread K over the connections, the first ones taking the remainder.
        let depth = (args.in_flight / args.connections
            + usize::from(i < args.in_flight % args.connections))
        .max(1);
        let (joined, go, permits) = (joined.clone(), go.clone(), permits.clone());
        let (timeline, start, window) = (run.timeline.clone(), run.start, run.window());
        tasks.push(tokio::spawn(async move {
            let permit = permits.acquire_owned().await;
            let conn = match client::connect(&gateway, source, &user).await {
                Ok((mut tx, mut rx)) => client::join(&mut tx, &mut rx, &room)
                    .await
                    .map(|seq| (tx, rx, seq)),
                Err(e) => Err(e),
            };
            drop(permit);
            joined.wait().await;
            go.wait().await;
            let (mut tx, mut rx, seq) = conn?;
            let mut t = Tracker::new(timeline, seq)?;
            let micros = || start.elapsed().as_micros() as u64;
            let end = Instant::now() + window;
            let request = |n: u64, at: u64| {
                format!(r#"{{"t":"send","room":"{room}","id":"{n}.{at}","body":{{"at":{at}}}}}"#)
            };
            for _ in 0..depth {
                let frame = request(t.sent, micros());
                t.sent();
                tx.feed(Message::Text(frame.into())).await?;
            }
            tx.flush().await?;
            let stop = tokio::time::sleep_until(end + DRAIN);
            tokio::pin!(stop);
            let mut outstanding = depth;
            while outstanding > 0 {
                let text = tokio::select! {
                    text = client::next_text(&mut rx) => text,
                    _ = &mut stop => break,
                };
                let Ok(Some(text)) = text else {
                    t.disconnected = true;
                    break;
                };
                let Ok(frame) = serde_json::from_str::<Frame<'_>>(&text) else {
                    continue;
                };
                let now = micros();
                match frame.t {
                    "msg" => {
                        t.seq(frame.seq.unwrap_or(0));
                        t.delivered(frame.body.and_then(|b| b.at), now);
                        continue;
                    }
                    "ack" => t.acked(id_time(frame.id), now),
                    "error" => t.errors += 1,
                    _ => continue,
                }
                outstanding -= 1;
                if Instant::now() < end {
                    let frame = request(t.sent, now);
                    t.sent();
                    outstanding += 1;
                    if client::send(&mut tx, frame).await.is_err() {
                        t.disconnected = true;
                        break;
                    }
                }
            }
            let _ = tx.close().await;
            Ok(t)
        }));
    }
    let started = run.start(server_idle, &joined, &go).await;
    let params = json!({"connections": args.connections, "in_flight": args.in_flight});
    let mut report = run
        .report(started, "rpc", params, mine.len(), tasks)
        .await?;
    // Each ack'd send is echoed once, to its sender, the room's only member.
    report.expected = report.acked;
    Ok(report)
}
