//! roomring-loadtest: drives a roomring cluster through its public protocol
//! and reports deliveries, loss, ordering and latency, and, given the server's
//! pids, its CPU-seconds per million deliveries and its memory.

mod client;
mod procstat;
mod report;
mod scenarios;

use std::time::Duration;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};

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
    /// Server process ids to sample CPU and RSS from.
    #[arg(long, global = true, value_delimiter = ',')]
    pub server_pid: Vec<u32>,
    /// Write the JSON result here.
    #[arg(long, global = true)]
    pub json: Option<std::path::PathBuf>,
    /// Prefix of room names, so that runs do not share rooms.
    #[arg(long, global = true, default_value = "lt")]
    pub prefix: String,
}

impl Common {
    /// The sending window.
    pub fn window(&self) -> Duration {
        Duration::from_secs_f64(self.duration)
    }
}

#[derive(Debug, Subcommand)]
enum Scenario {
    /// Couples (or small groups): every member sends at a fixed rate.
    Chat(scenarios::chat::ChatArgs),
    /// Group fan-out: big rooms, one sender each.
    Fanout(scenarios::chat::FanoutArgs),
    /// Hold connections that send nothing; measures memory per connection.
    Idle(scenarios::idle::IdleArgs),
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    let report = match cli.scenario {
        Scenario::Chat(args) => scenarios::chat::run(&cli.common, args, "chat").await?,
        Scenario::Fanout(args) => scenarios::chat::run(&cli.common, args.into(), "fanout").await?,
        Scenario::Idle(args) => scenarios::idle::run(&cli.common, args).await?,
    };
    report.print();
    if let Some(path) = &cli.common.json {
        std::fs::write(path, serde_json::to_string_pretty(&report.json())?)?;
    }
    if report.failed() {
        std::process::exit(1);
    }
    Ok(())
}
