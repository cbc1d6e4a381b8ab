//! How long a `history` page takes from a large archive: fills one room of
//! the PostgreSQL archive at URL with N events (in batches, as nodes
//! append them), then asks for PAGES pages of 50 at random places in it and
//! prints their latency. `scripts/archive-pages` runs it on a fresh server.
//!
//!   cargo run --release --example archive_pages -- postgres://... [N] [PAGES]

use std::time::{Duration, Instant};

use bytes::Bytes;
use roomring::archive::postgres::PostgresArchive;
use roomring::archive::{Archive, Archived};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let url = args.next().ok_or("usage: archive_pages URL [N] [PAGES]")?;
    let n: u64 = args.next().map_or(Ok(1_000_000), |a| a.parse())?;
    let pages: usize = args.next().map_or(Ok(2000), |a| a.parse())?;
    let archive = PostgresArchive::connect(&url).await?;
    let (room, epoch) = ("chat:big", "e1");
    let filled = Instant::now();
    let mut seq = 1;
    while seq <= n {
        let batch: Vec<Archived> = (seq..=(seq + 1999).min(n))
            .map(|s| Archived {
                room: room.into(),
                epoch: epoch.into(),
                seq: s,
                at: 1_700_000_000_000 + s,
                frame: Bytes::from(format!(
                    r#"{{"t":"msg","room":"{room}","seq":{s},"from":"ann","body":{{"text":"message number {s}"}},"ts":{}}}"#,
                    1_700_000_000_000 + s
                )),
            })
            .collect();
        seq += batch.len() as u64;
        archive.append(&batch).await?;
    }
    println!(
        "archived      {n} events in {:.1} s",
        filled.elapsed().as_secs_f64()
    );
    // Deterministic spread over the whole room: a multiplicative walk.
    let mut at = 1u64;
    let mut took: Vec<Duration> = Vec::with_capacity(pages);
    for _ in 0..pages {
        at = at
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407)
            % n.max(1);
        let before = at + 51;
        let start = Instant::now();
        let page = archive.page(room, epoch, before, 50).await?;
        took.push(start.elapsed());
        assert_eq!(page.events.len(), 50.min(before as usize - 1));
    }
    took.sort();
    let q = |p: f64| took[((took.len() as f64 * p) as usize).min(took.len() - 1)];
    println!(
        "pages         {pages} of 50: p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms",
        q(0.5).as_secs_f64() * 1e3,
        q(0.99).as_secs_f64() * 1e3,
        took[took.len() - 1].as_secs_f64() * 1e3
    );
    Ok(())
}
