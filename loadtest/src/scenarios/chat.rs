//! `chat`: R rooms of M members; S members of each room send at a fixed
//! rate on an open-loop schedule. Couples chat is M=2, S=2; group fan-out is
//! M=100, S=1. Rooms are spread over generator processes, or, when there are
//! fewer rooms than processes (one hot room), their members are.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use clap::Args;
use futures_util::SinkExt;
use serde_json::json;
use tokio::sync::{Barrier, Semaphore};
use tokio::time::{Instant, MissedTickBehavior};

use crate::client::{self, Frame, Joined, Rx, Tx};
use crate::report::Report;
use crate::run::{Run, CONNECT_PARALLELISM, DRAIN};
use crate::track::{id_time, Tracker};

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
    /// When the server closes a connection, open a new one (through the same
    /// gateway address, e.g. a load balancer), rejoin with `since` and send
    /// again what was not acked, as a client would; the time each takes to
    /// come back is reported.
    #[arg(long)]
    pub reconnect: bool,
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
            reconnect: false,
        }
    }
}

/// Runs the scenario.
pub async fn run(run: &Run, args: ChatArgs, scenario: &'static str) -> Result<Report> {
    let senders = args.senders.unwrap_or(args.members).min(args.members);
    let by_member = args.rooms < run.parts();
    let members: Vec<(usize, usize)> = (0..args.rooms)
        .filter(|&r| by_member || run.mine(r))
        .flat_map(|r| (0..args.members).map(move |m| (r, m)))
        .filter(|&(r, m)| !by_member || run.mine(r * args.members + m))
        .collect();
    let connections = members.len();
    // Acked sends of this process's senders: each owes every member of its
    // room a delivery, wherever that member is driven from.
    let acked = Arc::new(AtomicU64::new(0));
    let server_idle = run.sample();
    let joined = Arc::new(Barrier::new(connections + 1));
    let go = Arc::new(Barrier::new(connections + 1));
    let permits = Arc::new(Semaphore::new(CONNECT_PARALLELISM));
    let period = Duration::from_secs_f64(1.0 / args.rate);
    let mut tasks = Vec::with_capacity(connections);
    for &(room_idx, member) in &members {
        let i = room_idx * args.members + member;
        let gateway = run.gateway(i);
        let source = run.source(i);
        let room = format!("chat:{}-{room_idx}", run.common.prefix);
        let user = format!("{}-u{i}", run.common.prefix);
        let (acked, joined, go, permits) =
            (acked.clone(), joined.clone(), go.clone(), permits.clone());
        let (timeline, start) = (run.timeline.clone(), run.start);
        let sends = member < senders;
        let reconnect = args.reconnect;
        let window = run.window();
        // Spread first sends over one period so senders do not tick in step.
        let offset = period.mul_f64((i as f64 * 0.618_034) % 1.0);
        tasks.push(tokio::spawn(async move {
            let permit = permits.acquire_owned().await;
            let conn = client::connect(&gateway, source, &user).await;
            let (mut tx, mut rx) = match conn {
                Ok(c) => c,
                Err(e) => {
                    joined.wait().await;
                    go.wait().await;
                    return Err(e);
                }
            };
            let first = client::rejoin(&mut tx, &mut rx, &room, None).await;
            drop(permit);
            joined.wait().await;
            go.wait().await;
            let first = first?;
            let mut epoch = first.epoch;
            let mut t = Tracker::new(timeline, first.seq)?;
            let micros = || start.elapsed().as_micros() as u64;
            let begin = Instant::now();
            let end = begin + window;
            let mut ticker = tokio::time::interval_at(begin + offset, period);
            ticker.set_missed_tick_behavior(MissedTickBehavior::Burst);
            let stop_at = end + DRAIN;
            let stop = tokio::time::sleep_until(stop_at);
            tokio::pin!(stop);
            // Sends not yet acked, by id, to send again on a new connection.
            let mut pending: HashMap<String, String> = HashMap::new();
            // When the connection last came back, µs on the run's clock.
            let mut back_at = 0;
            loop {
                let mut closed = false;
                tokio::select! {
                    at = ticker.tick(), if sends && Instant::now() < end => {
                        // The guard was read when the wait began: a tick
                        // due after the window's end sends nothing (its
                        // ack could come after the drain).
                        if at >= end {
                            continue;
                        }
                        let at = at.duration_since(start).as_micros() as u64;
                        // The id carries the send time too, for the ack latency.
                        let id = format!("{}.{at}", t.sent);
                        // Due while this sender had no connection: it waited for us.
                        let late = if at < back_at { r#","late":true"# } else { "" };
                        let frame = format!(r#"{{"t":"send","room":"{room}","id":"{id}","body":{{"at":{at},"by":"{user}"{late}}}}}"#);
                        t.sent();
                        if reconnect {
                            pending.insert(id, frame.clone());
                        }
                        closed = client::send(&mut tx, frame).await.is_err();
                    }
                    text = client::next_text(&mut rx) => match text {
                        Ok(Some(text)) => {
                            let Ok(frame) = serde_json::from_str::<Frame<'_>>(&text) else { continue };
                            match frame.t {
                                "msg" => {
                                    t.seq(frame.seq.unwrap_or(0));
                                    t.delivered_body(frame.body, micros());
                                }
                                "ack" => {
                                    acked.fetch_add(1, Ordering::Relaxed);
                                    t.acked(id_time(frame.id), micros());
                                    frame.id.map(|id| pending.remove(id));
                                }
                                "error" => {
                                    t.errors += 1;
                                    frame.id.map(|id| pending.remove(id));
                                }
                                _ => {}
                            }
                        }
                        Ok(None) | Err(_) => closed = true,
                    },
                    _ = &mut stop => break,
                }
                if !closed {
                    continue;
                }
                if !reconnect {
                    t.disconnected = true;
                    break;
                }
                let down = Instant::now();
                let since = (t.last(), epoch.as_str());
                let Some((ntx, nrx, joined)) =
                    come_back(&gateway, source, &user, &room, since, stop_at).await
                else {
                    t.disconnected = true;
                    break;
                };
                (tx, rx, epoch) = (ntx, nrx, joined.epoch);
                if joined.truncated {
                    t.gaps += 1;
                }
                for kept in joined.history {
                    t.seq(kept.seq);
                    t.delivered_body(kept.body, micros());
                }
                back_at = micros();
                for frame in pending.values() {
                    let again = frame.replacen(r#""body":{"#, r#""body":{"late":true,"#, 1);
                    if client::send(&mut tx, again).await.is_err() {
                        break;
                    }
                }
                t.resumed(down.elapsed().as_micros() as u64);
            }
            let _ = tx.close().await;
            Ok::<_, anyhow::Error>(t)
        }));
    }
    let started = run.start(server_idle, &joined, &go).await;
    let params = json!({"rooms": args.rooms, "members": args.members, "senders": senders, "rate": args.rate});
    let mut report = run
        .report(started, scenario, params, connections, tasks)
        .await?;
    report.expected = acked.load(Ordering::Relaxed) * args.members as u64;
    Ok(report)
}

/// Opens a new connection and rejoins `room` from `since` until
/// `deadline`, as `docs/client.md` tells every client to: before each try
/// a random wait below min(30 s, 0.5 s × 2^tries), and a refusal's
/// `Retry-After` on top.
async fn come_back(
    gateway: &str,
    source: Option<IpAddr>,
    user: &str,
    room: &str,
    since: (u64, &str),
    deadline: Instant,
) -> Option<(Tx, Rx, Joined)> {
    let mut wait_more = Duration::ZERO;
    for tries in 0.. {
        tokio::time::sleep(wait_more + client::reconnect_delay(tries)).await;
        if Instant::now() >= deadline {
            break;
        }
        let attempt = async {
            let (mut tx, mut rx) = client::connect(gateway, source, user).await?;
            let joined = client::rejoin(&mut tx, &mut rx, room, Some(since)).await?;
            anyhow::Ok((tx, rx, joined))
        };
        match tokio::time::timeout_at(deadline, attempt).await {
            Ok(Ok(back)) => return Some(back),
            Ok(Err(e)) => wait_more = client::retry_after(&e),
            Err(_) => break,
        }
    }
    None
}
