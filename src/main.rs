//! The `roomring` binary: parse the command line, start telemetry, run a role.

use std::process::ExitCode;

use std::sync::Arc;

use roomring::config::{self, Command, Invocation};
use roomring::coordinator::endpoint::Endpoint;
use roomring::coordinator::isolated::{self, Isolated};
use roomring::coordinator::redis::{Redis, LEASE_TTL, PREFIX};
use roomring::coordinator::Coordinator;
use roomring::node::storage::RedisStore;

/// mimalloc: no arena growth and trimming churn under many small, short-lived
/// buffers, and a smaller footprint per idle connection than the system allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let Invocation { command, threads } = match config::parse(std::env::args_os()) {
        Ok(invocation) => invocation,
        Err(usage) => {
            if usage.code == 0 {
                print!("{}", usage.message);
            } else {
                eprint!("{}", usage.message);
            }
            return ExitCode::from(usage.code as u8);
        }
    };
    roomring::telemetry::init_tracing();
    // No transparent huge pages: with THP on (`always` on many distributions)
    // the heap's fresh regions are faulted in as 2 MiB pages, each zeroed
    // while a request waits; measured, that doubled the p99 of couples chat
    // (6.9 ms against 3.4 ms). It also keeps small processes small.
    #[cfg(target_os = "linux")]
    let _ = nix::sys::prctl::set_thp_disable(true);
    // Membership (leases, the coordinator's I/O) runs on a thread of its
    // own, so that no amount of room work delays a renewal.
    if let Err(e) = isolated::start() {
        eprintln!("error: cannot start the membership thread: {e}");
        return ExitCode::FAILURE;
    }
    // One thread runs every task of the process with no wake-up crossing
    // threads (see `--threads`).
    let runtime = if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
    };
    let runtime = match runtime {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(command));
    // The role has waited for the tasks it tracks; what is still around
    // (one past its grace, the stores' writers, the metrics server) must
    // not hold the exit: the role has already said goodbye to the cluster.
    runtime.shutdown_timeout(std::time::Duration::from_millis(500));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Dev(options) => roomring::dev::run(options).await?,
        Command::Node {
            config,
            coordinator: endpoint,
            replication,
            archive,
            retention,
            metrics_listen,
        } => {
            if let Some(addr) = metrics_listen {
                let listener = tokio::net::TcpListener::bind(addr)
                    .await
                    .map_err(|e| anyhow::anyhow!("--metrics-listen {addr}: {e}"))?;
                tokio::spawn(roomring::telemetry::serve_metrics(listener));
            }
            let coordinator = connect(&endpoint).await?;
            roomring::coordinator::wait_for_free_id(coordinator.as_ref(), &config.id).await?;
            let archiver = archive.map(|url| {
                roomring::archive::archiver::Archiver::spawn(move || {
                    let url = url.clone();
                    async move {
                        let archive = roomring::archive::postgres::PostgresArchive::connect(&url);
                        Ok(Arc::new(archive.await?) as Arc<dyn roomring::archive::Archive>)
                    }
                })
            });
            if let (Some(archiver), Some(retention)) = (&archiver, retention) {
                archiver.retain(retention);
            }
            let keep = config.rooms.keep;
            let store = RedisStore::connect(&endpoint, PREFIX, keep, replication, archiver).await?;
            roomring::node::run(config, coordinator, Some(store)).await?
        }
        Command::Gateway {
            config,
            coordinator,
        } => {
            let coordinator = connect(&coordinator).await?;
            roomring::coordinator::wait_for_free_id(coordinator.as_ref(), &config.id).await?;
            roomring::gateway::run(config, coordinator).await?
        }
        Command::Ctl {
            coordinator,
            action,
        } => roomring::ctl::run(&coordinator, action).await?,
        Command::Probe { target } => roomring::ctl::probe(&target).await?,
        Command::Secret => println!("{}", roomring::link::Secret::fresh_text()),
        Command::Token { claims, secret } => {
            println!(
                "{}",
                roomring::gateway::auth::sign(&claims, secret.reveal())?
            )
        }
    }
    Ok(())
}

/// The Redis coordinator, made on the membership thread (its connections
/// and its watcher live there) and called there.
async fn connect(endpoint: &Endpoint) -> anyhow::Result<Coordinator> {
    let endpoint = endpoint.clone();
    let connect = async move { Redis::connect(&endpoint, PREFIX, LEASE_TTL).await };
    let redis = isolated::spawn(connect).await??;
    Ok(Isolated::wrap(Arc::new(redis)))
}
