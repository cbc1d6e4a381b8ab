//! `board`: R boards of M members. Every member moves its cursor at a fixed
//! rate (ephemeral: the others get them conflated in `board.cursors`
//! batches); one member per board drags a selection of all W widgets at
//! another rate: one relative `board.move` (`ids`, `dx`, `dy`), stored,
//! `board.changed` to everyone, the mover included. Cursor `x` and the first
//! widget's new `x` carry the send time (each drag's `dx` takes widget `w0`
//! to it). Batches are counted apart from deliveries: the report gives
//! batches per connection per second, the most in one second, and the
//! latency of each batch's newest cursor. `board-hot` is one board of 300
//! editors moving cursors at 20 Hz.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Result};
use clap::Args;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::{Barrier, Semaphore};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_tungstenite::tungstenite::Message;

use crate::client::{self, Frame, Rx, Tx};
use crate::report::Report;
use crate::run::{Run, CONNECT_PARALLELISM, DRAIN};
use crate::track::Tracker;

/// Parameters of `board`.
#[derive(Debug, Clone, Args)]
pub struct BoardArgs {
    /// Boards.
    #[arg(long, default_value_t = 50)]
    pub boards: usize,
    /// Members per board.
    #[arg(long, default_value_t = 10)]
    pub members: usize,
    /// Widgets per board, all in the selection each drag moves.
    #[arg(long, default_value_t = 1000)]
    pub widgets: usize,
    /// Cursor updates per second per member.
    #[arg(long, default_value_t = 5.0)]
    pub cursor_rate: f64,
    /// Selection drags per second per board.
    #[arg(long, default_value_t = 1.0)]
    pub move_rate: f64,
}

/// Parameters of `board-hot`: `board` with one busy board.
#[derive(Debug, Clone, Args)]
pub struct BoardHotArgs {
    /// Members of the board.
    #[arg(long, default_value_t = 300)]
    pub members: usize,
    /// Widgets, all in the selection each drag moves.
    #[arg(long, default_value_t = 100)]
    pub widgets: usize,
    /// Cursor updates per second per member.
    #[arg(long, default_value_t = 20.0)]
    pub cursor_rate: f64,
    /// Selection drags per second.
    #[arg(long, default_value_t = 2.0)]
    pub move_rate: f64,
}

impl From<BoardHotArgs> for BoardArgs {
    fn from(h: BoardHotArgs) -> Self {
        Self {
            boards: 1,
            members: h.members,
            widgets: h.widgets,
            cursor_rate: h.cursor_rate,
            move_rate: h.move_rate,
        }
    }
}

/// The cursors of a `board.cursors` batch.
#[derive(Deserialize)]
struct Cursors {
    cursors: Vec<Moved>,
}

/// The parts of a `board.changed` the generator reads.
#[derive(Deserialize)]
struct Changed {
    #[serde(default)]
    widgets: Vec<Moved>,
}

#[derive(Deserialize)]
struct Moved {
    x: f64,
}

/// Per board: bulk moves echoed to the mover.
struct BoardCounts {
    moves: AtomicU64,
}

/// Runs the scenario.
pub async fn run(run: &Run, args: BoardArgs, scenario: &'static str) -> Result<Report> {
    let boards: Vec<usize> = (0..args.boards).filter(|&b| run.mine(b)).collect();
    let connections = boards.len() * args.members;
    let counts: Arc<Vec<BoardCounts>> = Arc::new(
        boards
            .iter()
            .map(|_| BoardCounts {
                moves: AtomicU64::new(0),
            })
            .collect(),
    );
    let server_idle = run.sample();
    let joined = Arc::new(Barrier::new(connections + 1));
    let go = Arc::new(Barrier::new(connections + 1));
    let permits = Arc::new(Semaphore::new(CONNECT_PARALLELISM));
    let cursor_period = Duration::from_secs_f64(1.0 / args.cursor_rate);
    let move_period = Duration::from_secs_f64(1.0 / args.move_rate);
    let mut tasks = Vec::with_capacity(connections);
    for (slot, &b) in boards.iter().enumerate() {
        // The mover lays the widgets out before the others join.
        let laid_out = Arc::new(Barrier::new(args.members));
        for member in 0..args.members {
            let i = b * args.members + member;
            let (gateway, source) = (run.gateway(i), run.source(i));
            let room = format!("board:{}-{b}", run.common.prefix);
            let user = format!("{}-b{i}", run.common.prefix);
            let (counts, joined, go, permits, laid_out) = (
                counts.clone(),
                joined.clone(),
                go.clone(),
                permits.clone(),
                laid_out.clone(),
            );
            let (timeline, start, window) = (run.timeline.clone(), run.start, run.window());
            let widgets = args.widgets;
            let mover = member == 0;
            let offset = cursor_period.mul_f64((i as f64 * 0.618_034) % 1.0);
            tasks.push(tokio::spawn(async move {
                if !mover {
                    laid_out.wait().await;
                }
                let permit = permits.acquire_owned().await;
                let conn = async {
                    let (mut tx, mut rx) = client::connect(&gateway, source, &user).await?;
                    let seq = client::join(&mut tx, &mut rx, &room).await?;
                    let seq = if mover {
                        lay_out(&mut tx, &mut rx, &room, widgets).await?
                    } else {
                        seq
                    };
                    Ok::<_, anyhow::Error>((tx, rx, seq))
                }
                .await;
                drop(permit);
                if mover {
                    laid_out.wait().await;
                }
                joined.wait().await;
                go.wait().await;
                let (mut tx, mut rx, seq) = conn?;
                let mut t = Tracker::new(timeline, seq)?;
                let micros = || start.elapsed().as_micros() as u64;
                let begin = Instant::now();
                let end = begin + window;
                let mut cursor = tokio::time::interval_at(begin + offset, cursor_period);
                cursor.set_missed_tick_behavior(MissedTickBehavior::Burst);
                let mut moves = tokio::time::interval_at(begin + offset, move_period);
                moves.set_missed_tick_behavior(MissedTickBehavior::Burst);
                let stop = tokio::time::sleep_until(end + DRAIN);
                tokio::pin!(stop);
                let selection: Vec<String> = (0..widgets).map(|w| format!(r#""w{w}""#)).collect();
                let selection = selection.join(",");
                // Where widget w0 is (laid out at 0); each drag moves it to
                // the drag's send time.
                let mut w0_x = 0u128;
                loop {
                    let frame = tokio::select! {
                        // A guard is read when the wait begins: a tick due
                        // after the window's end sends nothing.
                        at = cursor.tick(), if Instant::now() < end => {
                            if at >= end {
                                continue;
                            }
                            let at = at.duration_since(start).as_micros();
                            t.sent_other();
                            format!(r#"{{"t":"board.cursor","room":"{room}","x":{at},"y":{member}}}"#)
                        }
                        at = moves.tick(), if mover && Instant::now() < end => {
                            if at >= end {
                                continue;
                            }
                            let at = at.duration_since(start).as_micros();
                            let dx = at - w0_x;
                            w0_x = at;
                            t.sent();
                            format!(r#"{{"t":"board.move","room":"{room}","id":"m{}","ids":[{selection}],"dx":{dx},"dy":0}}"#, t.sent)
                        }
                        text = client::next_text(&mut rx) => {
                            let Ok(Some(text)) = text else {
                                t.disconnected = true;
                                break;
                            };
                            let Ok(frame) = serde_json::from_str::<Frame<'_>>(&text) else { continue };
                            let now = micros();
                            match frame.t {
                                "board.cursors" => {
                                    let batch: Option<Cursors> = serde_json::from_str(&text).ok();
                                    let newest = batch.and_then(|b| b.cursors.iter().map(|c| c.x as u64).max());
                                    t.batch(newest, now);
                                }
                                "board.changed" => {
                                    t.seq(frame.seq.unwrap_or(0));
                                    let changed: Option<Changed> = serde_json::from_str(&text).ok();
                                    let at = changed.and_then(|c| c.widgets.first().map(|w| w.x as u64));
                                    t.delivered(at, now);
                                    // Every member sees the mover's id; the mover's copy is the reply.
                                    if mover && frame.id.is_some_and(|id| id.starts_with('m')) {
                                        counts[slot].moves.fetch_add(1, Ordering::Relaxed);
                                        t.acked(at, now);
                                    }
                                }
                                "error" => t.errors += 1,
                                _ => {}
                            }
                            continue;
                        }
                        _ = &mut stop => break,
                    };
                    if client::send(&mut tx, frame).await.is_err() {
                        t.disconnected = true;
                        break;
                    }
                }
                let _ = futures_util::SinkExt::close(&mut tx).await;
                Ok(t)
            }));
        }
    }
    let started = run.start(server_idle, &joined, &go).await;
    let params = json!({
        "boards": args.boards, "members": args.members, "widgets": args.widgets,
        "cursor_rate": args.cursor_rate, "move_rate": args.move_rate,
    });
    let mut report = run
        .report(started, scenario, params, connections, tasks)
        .await?;
    let members = args.members as u64;
    report.expected = counts
        .iter()
        .map(|c| c.moves.load(Ordering::Relaxed) * members)
        .sum();
    Ok(report)
}

/// Puts the board's widgets and waits until all are stored; returns the seq.
async fn lay_out(tx: &mut Tx, rx: &mut Rx, room: &str, widgets: usize) -> Result<u64> {
    for w in 0..widgets {
        let frame = format!(
            r#"{{"t":"board.put","room":"{room}","id":"p{w}","widget":{{"id":"w{w}","kind":"sticky","x":0,"y":{w},"text":"note {w}"}}}}"#
        );
        futures_util::SinkExt::feed(tx, Message::Text(frame.into())).await?;
    }
    futures_util::SinkExt::flush(tx).await?;
    let (mut stored, mut seq) = (0, 0);
    while stored < widgets {
        let Some(text) = client::next_text(rx).await? else {
            bail!("closed while laying out {room}")
        };
        let frame: Frame<'_> = serde_json::from_str(&text)?;
        match frame.t {
            "board.changed" => {
                stored += 1;
                seq = seq.max(frame.seq.unwrap_or(0));
            }
            "error" => bail!("laying out {room}: {text}"),
            _ => {}
        }
    }
    Ok(seq)
}
