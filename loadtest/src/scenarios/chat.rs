//! `chat`: R rooms of M members; S members of each room send at a fixed
//! rate on an open-loop schedule. Couples chat is M=2, S=2; group fan-out is
//! M=100, S=1.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use clap::Args;
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde_json::json;
use tokio::sync::{Barrier, Semaphore};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_tungstenite::tungstenite::Message;

use crate::client::{self, Frame};
use crate::procstat;
use crate::report::Report;
use crate::Common;

/// Parameters of `chat`.
#[derive(Debug, Clone, Args)]
pub struct ChatArgs {
    /// Rooms.
    #[arg(long, default_value_t = 1000)]
    pub rooms: usize,
    /// Members per room.
    #[arg(long, default_value_t = 2)]
    pub members: usize,
    /// Members per room that send (default: all).
    #[arg(long)]
    pub senders: Option<usize>,
    /// Messages per second per sender.
    #[arg(long, default_value_t = 5.0)]
    pub rate: f64,
}

/// Parameters of `fanout`: `chat` with one sender per room.
#[derive(Debug, Clone, Args)]
pub struct FanoutArgs {
    /// Rooms.
    #[arg(long, default_value_t = 20)]
    pub rooms: usize,
    /// Members per room.
    #[arg(long, default_value_t = 100)]
    pub members: usize,
    /// Messages per second of each room's sender.
    #[arg(long, default_value_t = 20.0)]
    pub rate: f64,
}

impl From<FanoutArgs> for ChatArgs {
    fn from(f: FanoutArgs) -> Self {
        Self {
            rooms: f.rooms,
            members: f.members,
            senders: Some(1),
            rate: f.rate,
        }
    }
}

/// Connections opened at once.
const CONNECT_PARALLELISM: usize = 256;
/// Time after the window for deliveries still in flight.
const DRAIN: Duration = Duration::from_secs(2);

struct Shared {
    acked: Vec<AtomicU64>,
    start: Instant,
}

#[derive(Default)]
struct Tally {
    sent: u64,
    errors: u64,
    delivered: u64,
    duplicates: u64,
    gaps: u64,
    disconnected: bool,
}

/// Runs the scenario.
pub async fn run(common: &Common, args: ChatArgs, scenario: &'static str) -> Result<Report> {
    let senders = args.senders.unwrap_or(args.members).min(args.members);
    let connections = args.rooms * args.members;
    let shared = Arc::new(Shared {
        acked: (0..args.rooms).map(|_| AtomicU64::new(0)).collect(),
        start: Instant::now(),
    });
    let server_idle = (!common.server_pid.is_empty()).then(|| procstat::sample(&common.server_pid));
    let joined = Arc::new(Barrier::new(connections + 1));
    let go = Arc::new(Barrier::new(connections + 1));
    let permits = Arc::new(Semaphore::new(CONNECT_PARALLELISM));
    let period = Duration::from_secs_f64(1.0 / args.rate);
    let mut tasks = Vec::with_capacity(connections);
    for i in 0..connections {
        let (room_idx, member) = (i / args.members, i % args.members);
        let gateway = common.gateway[i % common.gateway.len()].clone();
        let room = format!("chat:{}-{room_idx}", common.prefix);
        let user = format!("{}-u{i}", common.prefix);
        let (shared, joined, go, permits) =
            (shared.clone(), joined.clone(), go.clone(), permits.clone());
        let sends = member < senders;
        let window = common.window();
        // Spread first sends over one period so senders do not tick in step.
        let offset = period.mul_f64((i as f64 * 0.618_034) % 1.0);
        tasks.push(tokio::spawn(async move {
            let permit = permits.acquire_owned().await;
            let conn = client::connect(&gateway, &user).await;
            let (mut tx, mut rx) = match conn {
                Ok(c) => c,
                Err(e) => {
                    joined.wait().await;
                    go.wait().await;
                    return Err(e);
                }
            };
            let joined_seq = client::join(&mut tx, &mut rx, &room).await;
            drop(permit);
            joined.wait().await;
            go.wait().await;
            let mut last = joined_seq?;
            let mut tally = Tally::default();
            let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
            let mut acks = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
            let begin = Instant::now();
            let end = begin + window;
            let mut ticker = tokio::time::interval_at(begin + offset, period);
            ticker.set_missed_tick_behavior(MissedTickBehavior::Burst);
            let stop = tokio::time::sleep_until(end + DRAIN);
            tokio::pin!(stop);
            loop {
                tokio::select! {
                    at = ticker.tick(), if sends && Instant::now() < end => {
                        let micros = at.duration_since(shared.start).as_micros() as u64;
                        // The id carries the send time too, for the ack latency.
                        let frame = format!(r#"{{"t":"send","room":"{room}","id":"{}.{micros}","body":{{"at":{micros},"by":"{user}"}}}}"#, tally.sent);
                        tally.sent += 1;
                        if tx.send(Message::Text(frame.into())).await.is_err() {
                            tally.disconnected = true;
                            break;
                        }
                    }
                    msg = rx.next() => {
                        let Some(Ok(Message::Text(text))) = msg else {
                            if matches!(msg, None | Some(Ok(Message::Close(_))) | Some(Err(_))) {
                                tally.disconnected = true;
                                break;
                            }
                            continue;
                        };
                        let Ok(frame) = serde_json::from_str::<Frame<'_>>(&text) else { continue };
                        match frame.t {
                            "msg" => {
                                let seq = frame.seq.unwrap_or(0);
                                if seq <= last {
                                    tally.duplicates += 1;
                                } else {
                                    tally.gaps += seq - last - 1;
                                    last = seq;
                                }
                                tally.delivered += 1;
                                if let Some(at) = frame.body.and_then(|b| b.at) {
                                    let now = Instant::now().duration_since(shared.start).as_micros() as u64;
                                    let _ = hist.record(now.saturating_sub(at).max(1));
                                }
                            }
                            "ack" => {
                                shared.acked[room_idx].fetch_add(1, Ordering::Relaxed);
                                let at = frame.id.and_then(|id| id.split_once('.')).and_then(|(_, t)| t.parse::<u64>().ok());
                                if let Some(at) = at {
                                    let now = Instant::now().duration_since(shared.start).as_micros() as u64;
                                    let _ = acks.record(now.saturating_sub(at).max(1));
                                }
                            }
                            "error" => tally.errors += 1,
                            _ => {}
                        }
                    }
                    _ = &mut stop => break,
                }
            }
            let _ = tx.close().await;
            Ok::<_, anyhow::Error>((tally, hist, acks))
        }));
    }
    joined.wait().await;
    let server_joined =
        (!common.server_pid.is_empty()).then(|| procstat::sample(&common.server_pid));
    go.wait().await;
    let params = json!({"rooms": args.rooms, "members": args.members, "senders": senders, "rate": args.rate});
    let mut report = Report::new(scenario, params, connections, common.duration)?;
    report.server_idle = server_idle;
    report.server_joined = server_joined;
    let mut failures = 0;
    for task in tasks {
        match task.await? {
            Ok((t, hist, acks)) => {
                report.ack_latency.add(acks)?;
                report.sent += t.sent;
                report.errors += t.errors;
                report.delivered += t.delivered;
                report.duplicates += t.duplicates;
                report.gaps += t.gaps;
                report.disconnects += u64::from(t.disconnected);
                report.latency.add(hist)?;
            }
            Err(e) => {
                failures += 1;
                if failures <= 3 {
                    eprintln!("connection failed: {e:#}");
                }
                report.disconnects += 1;
            }
        }
    }
    report.server_end =
        (!common.server_pid.is_empty()).then(|| procstat::sample(&common.server_pid));
    report.acked = shared.acked.iter().map(|a| a.load(Ordering::Relaxed)).sum();
    report.expected = report.acked * args.members as u64;
    Ok(report)
}
