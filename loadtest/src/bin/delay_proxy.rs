//! roomring-delay-proxy: a TCP proxy that holds every byte for a fixed delay
//! in each direction before passing it on, in order. It stands in for
//! `tc qdisc ... netem delay` where the kernel has no netem: put one in front
//! of each server so that every hop of a cluster costs the same added
//! latency, as netem on every host's interface would.
//!
//!   roomring-delay-proxy --listen 10.77.0.11:7000 --to 127.0.0.1:7000 --delay-ms 10
//!
//! Each connection is two pumps, one per direction. A pump's reader stamps
//! each chunk it reads with `now + delay` and queues it; its writer sleeps
//! until a chunk's time and writes it. The queue is bounded, so a slow
//! receiver slows its sender as it would through a real link, and the
//! delay holds under load because stamps are taken at read time.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use clap::Parser;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Chunks in flight per direction before the reader waits.
const QUEUE: usize = 1024;
/// Bytes read at once.
const READ: usize = 64 * 1024;

#[derive(Debug, Parser)]
#[command(
    name = "roomring-delay-proxy",
    version,
    about = "TCP proxy adding a fixed delay in each direction"
)]
struct Cli {
    /// Address to accept connections on.
    #[arg(long)]
    listen: SocketAddr,
    /// Address each connection is forwarded to.
    #[arg(long)]
    to: SocketAddr,
    /// Delay added in each direction, in milliseconds.
    #[arg(long, default_value_t = 10)]
    delay_ms: u64,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if e.use_stderr() => {
            let _ = e.print();
            return ExitCode::from(64);
        }
        Err(e) => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    match runtime.block_on(serve(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("roomring-delay-proxy: {e}");
            ExitCode::from(1)
        }
    }
}

async fn serve(cli: Cli) -> std::io::Result<()> {
    let listener = TcpListener::bind(cli.listen).await?;
    let delay = Duration::from_millis(cli.delay_ms);
    println!(
        "ready delay-proxy {} -> {} (+{} ms each way)",
        listener.local_addr()?,
        cli.to,
        cli.delay_ms
    );
    loop {
        let (inbound, _) = listener.accept().await?;
        let to = cli.to;
        tokio::spawn(async move {
            let Ok(outbound) = TcpStream::connect(to).await else {
                return;
            };
            let _ = inbound.set_nodelay(true);
            let _ = outbound.set_nodelay(true);
            let (in_read, in_write) = inbound.into_split();
            let (out_read, out_write) = outbound.into_split();
            tokio::join!(
                pump(in_read, out_write, delay),
                pump(out_read, in_write, delay)
            );
        });
    }
}

/// Carries one direction: what `from` yields reaches `to` `delay` later.
/// End of stream is passed on after the same delay; an error ends both.
async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, delay: Duration) {
    let (tx, mut rx) = mpsc::channel::<(Instant, Bytes)>(QUEUE);
    let reader = async move {
        let mut buf = BytesMut::with_capacity(READ);
        loop {
            buf.reserve(READ);
            match from.read_buf(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let chunk = buf.split().freeze();
                    if tx.send((Instant::now() + delay, chunk)).await.is_err() {
                        break;
                    }
                }
            }
        }
        // Dropping the sender tells the writer, after the queued chunks,
        // that the stream ended; the end is delayed like the data.
        let end = Instant::now() + delay;
        drop(tx);
        end
    };
    let writer = async move {
        while let Some((at, chunk)) = rx.recv().await {
            // The timer rounds up to its next millisecond tick: a chunk
            // already due goes at once.
            if at > Instant::now() {
                tokio::time::sleep_until(at).await;
            }
            if to.write_all(&chunk).await.is_err() {
                return to;
            }
        }
        to
    };
    let (end, mut to) = tokio::join!(reader, writer);
    tokio::time::sleep_until(end).await;
    let _ = to.shutdown().await;
}
