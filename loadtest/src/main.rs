//! roomring-loadtest: drives a roomring cluster through its public protocol
//! and reports deliveries, loss, ordering and latency, and, given the server's
//! pids, its CPU-seconds per million deliveries and its memory.
//!
//! Map: `scenarios` (one module each) drive connections made by `client`;
//! each connection accounts in a `track::Tracker`; `run` holds what a run
//! shares (sharding over generator processes, source addresses, the moment
//! sending begins, the progress bar); `timeline` records each second and
//! `chart` draws it; `report` adds everything up; `procstat` samples the
//! server; `spread` runs several generator processes and merges their results.

mod chart;
mod client;
mod procstat;
mod report;
mod run;
mod scenarios;
mod spread;
mod timeline;
mod track;

use std::net::IpAddr;
use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};

use crate::report::Report;
use crate::run::Run;

#[derive(Debug, Parser)]
#[command(
    name = "roomring-loadtest",
    version,
    about = "Load generator for roomring"
)]
struct Cli {
    #[command(flatten)]
    common: Common,
    #[command(subcommand)]
    scenario: Scenario,
}

/// Options every scenario takes.
#[derive(Debug, Clone, Args)]
pub struct Common {
    /// Gateway addresses (host:port), connections spread round-robin.
    #[arg(
        long,
        global = true,
        value_delimiter = ',',
        default_value = "127.0.0.1:8080"
    )]
    pub gateway: Vec<String>,
    /// How long to send, in seconds.
    #[arg(long, global = true, default_value_t = 10.0)]
    pub duration: f64,
    /// Seconds at the start of the window whose latencies are left out of the
    /// totals (they still show on the timeline; loss and order always count).
    #[arg(long, global = true, default_value_t = 0.0)]
    pub warmup: f64,
    /// Server process ids to sample CPU and RSS from.
    #[arg(long, global = true, value_delimiter = ',')]
    pub server_pid: Vec<u32>,
    /// Write the JSON result here.
    #[arg(long, global = true)]
    pub json: Option<PathBuf>,
    /// Write an SVG chart of throughput and latency over time here.
    #[arg(long, global = true)]
    pub chart: Option<PathBuf>,
    /// Prefix of room names, so that runs do not share rooms.
    #[arg(long, global = true, default_value = "lt")]
    pub prefix: String,
    /// Local addresses to connect from, round-robin (e.g. 127.0.0.2,127.0.0.3),
    /// for more connections than one address has ports.
    #[arg(long, global = true, value_delimiter = ',')]
    pub source: Vec<IpAddr>,
    /// Generator processes to spread the load over (one process may hold at
    /// most as many connections as it may open files).
    #[arg(long, global = true, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub processes: u16,
    /// This process's part, I/N (set by the parent of several processes).
    #[arg(long, global = true, hide = true, value_parser = parse_shard)]
    pub shard: Option<(usize, usize)>,
}

fn parse_shard(s: &str) -> Result<(usize, usize), String> {
    let (i, n) = s.split_once('/').ok_or("expected I/N")?;
    let (i, n): (usize, usize) = (
        i.parse().map_err(|_| "bad I")?,
        n.parse().map_err(|_| "bad N")?,
    );
    if n == 0 || i >= n {
        return Err("expected I < N".into());
    }
    Ok((i, n))
}

#[derive(Debug, Clone, Subcommand)]
enum Scenario {
    /// Couples (or small groups): every member sends at a fixed rate.
    Chat(scenarios::chat::ChatArgs),
    /// Group fan-out: big rooms, one sender each.
    Fanout(scenarios::chat::FanoutArgs),
    /// Hold connections that send nothing; measures memory per connection.
    Idle(scenarios::idle::IdleArgs),
    /// Request/response round trips through the tiers, K in flight.
    Rpc(scenarios::rpc::RpcArgs),
    /// Boards: many cursors and bulk widget moves.
    Board(scenarios::board::BoardArgs),
    /// One busy board: 300 editors moving cursors at 20 Hz.
    BoardHot(scenarios::board::BoardHotArgs),
    /// Couples chat during a rolling update driven through the HTTP API.
    Rolling(scenarios::rolling::RollingArgs),
}

impl Scenario {
    fn name(&self) -> &'static str {
        match self {
            Self::Chat(_) => "chat",
            Self::Fanout(_) => "fanout",
            Self::Idle(_) => "idle",
            Self::Rpc(_) => "rpc",
            Self::Board(_) => "board",
            Self::BoardHot(_) => "board-hot",
            Self::Rolling(_) => "rolling",
        }
    }

    async fn run(self, run: &Run) -> Result<Report> {
        match self {
            Self::Chat(args) => scenarios::chat::run(run, args, "chat").await,
            Self::Fanout(args) => scenarios::chat::run(run, args.into(), "fanout").await,
            Self::Idle(args) => scenarios::idle::run(run, args).await,
            Self::Rpc(args) => scenarios::rpc::run(run, args).await,
            Self::Board(args) => scenarios::board::run(run, args, "board").await,
            Self::BoardHot(args) => scenarios::board::run(run, args.into(), "board-hot").await,
            Self::Rolling(args) => scenarios::rolling::run(run, args).await,
        }
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    let common = cli.common.clone();
    if common.shard.is_some() {
        // A child: run its part and hand the counters to the parent.
        let run = Run::new(common);
        let report = cli.scenario.run(&run).await?;
        println!("result {}", report.wire());
        return Ok(());
    }
    let mut report = if common.processes > 1 {
        spread::run(&common, cli.scenario.name()).await?
    } else {
        cli.scenario.run(&Run::new(common.clone())).await?
    };
    if common.warmup > 0.0 {
        if let Some(params) = report.params.as_object_mut() {
            params.insert("warmup".into(), common.warmup.into());
        }
    }
    report.print();
    if let Some(path) = &common.json {
        std::fs::write(path, serde_json::to_string_pretty(&report.json())?)?;
    }
    if let (Some(path), Some(svg)) = (&common.chart, report.chart()) {
        std::fs::write(path, svg)?;
    }
    if report.failed() {
        std::process::exit(1);
    }
    Ok(())
}
