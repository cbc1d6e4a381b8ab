//! The archive in PostgreSQL: one table, partitioned by a hash of the room,
//! keyed by (room, epoch, seq), so that appends are idempotent (`ON
//! CONFLICT DO NOTHING`) and a page is one backward range of the key.
//! `tokio-postgres` through a small `deadpool` pool: the process already
//! runs on tokio, statements are prepared once per connection, and the
//! schema is created at start (a fresh clone has no database to check
//! queries against at build time).

use bytes::Bytes;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::NoTls;

use super::{Answer, Archive, ArchiveError, Archived, Page, Seqs};

/// Partitions of the events table.
const PARTITIONS: u32 = 8;
/// Connections a process keeps to PostgreSQL at most.
const POOL: usize = 4;

/// An archive in a PostgreSQL database.
pub struct PostgresArchive {
    pool: Pool,
}

fn failed(e: impl std::fmt::Display) -> ArchiveError {
    ArchiveError(e.to_string())
}

impl PostgresArchive {
    /// Connects to `url` (`postgres://user[:password]@host:port/db`) and
    /// creates the table when it is missing.
    pub async fn connect(url: &str) -> Answer<Self> {
        let config: tokio_postgres::Config = url
            .parse()
            .map_err(|_| ArchiveError("not a postgres://user@host:port/db URL".into()))?;
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL)
            .wait_timeout(Some(std::time::Duration::from_secs(5)))
            .create_timeout(Some(std::time::Duration::from_secs(5)))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .map_err(failed)?;
        let archive = Self { pool };
        archive.create().await?;
        Ok(archive)
    }

    /// The table and its partitions, once, whoever starts first (an
    /// advisory lock keeps two processes from creating them together).
    async fn create(&self) -> Answer<()> {
        let mut client = self.pool.get().await.map_err(failed)?;
        let tx = client.transaction().await.map_err(failed)?;
        tx.execute("SELECT pg_advisory_xact_lock(7243001)", &[])
            .await
            .map_err(failed)?;
        let mut ddl = String::from(
            "CREATE TABLE IF NOT EXISTS roomring_events (
                room text NOT NULL, epoch text NOT NULL, seq bigint NOT NULL,
                at bigint NOT NULL, frame bytea NOT NULL,
                PRIMARY KEY (room, epoch, seq)
            ) PARTITION BY HASH (room);
            CREATE INDEX IF NOT EXISTS roomring_events_at ON roomring_events (at);",
        );
        for p in 0..PARTITIONS {
            ddl.push_str(&format!(
                "CREATE TABLE IF NOT EXISTS roomring_events_{p} PARTITION OF roomring_events
                 FOR VALUES WITH (MODULUS {PARTITIONS}, REMAINDER {p});"
            ));
        }
        tx.batch_execute(&ddl).await.map_err(failed)?;
        tx.commit().await.map_err(failed)
    }
}

#[async_trait::async_trait]
impl Archive for PostgresArchive {
    async fn append(&self, events: &[Archived]) -> Answer<()> {
        if events.is_empty() {
            return Ok(());
        }
        let client = self.pool.get().await.map_err(failed)?;
        let statement = client
            .prepare_cached(
                "INSERT INTO roomring_events (room, epoch, seq, at, frame)
                 SELECT * FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::bytea[])
                 ON CONFLICT DO NOTHING",
            )
            .await
            .map_err(failed)?;
        let rooms: Vec<&str> = events.iter().map(|e| e.room.as_str()).collect();
        let epochs: Vec<&str> = events.iter().map(|e| e.epoch.as_str()).collect();
        let seqs: Vec<i64> = events.iter().map(|e| e.seq as i64).collect();
        let ats: Vec<i64> = events.iter().map(|e| e.at as i64).collect();
        let frames: Vec<&[u8]> = events.iter().map(|e| &e.frame[..]).collect();
        client
            .execute(&statement, &[&rooms, &epochs, &seqs, &ats, &frames])
            .await
            .map_err(failed)?;
        Ok(())
    }

    async fn page(&self, room: &str, epoch: &str, before: u64, limit: usize) -> Answer<Page> {
        let client = self.pool.get().await.map_err(failed)?;
        let statement = client
            .prepare_cached(
                "SELECT seq, frame FROM roomring_events
                 WHERE room = $1 AND epoch = $2 AND seq < $3
                 ORDER BY seq DESC LIMIT $4",
            )
            .await
            .map_err(failed)?;
        let before = clamp(before);
        let take = limit as i64 + 1;
        let rows = client
            .query(&statement, &[&room, &epoch, &before, &take])
            .await
            .map_err(failed)?;
        let more = rows.len() > limit;
        let mut events: Vec<(u64, Bytes)> = rows
            .iter()
            .take(limit)
            .map(|row| {
                let seq: i64 = row.get(0);
                let frame: Vec<u8> = row.get(1);
                (seq as u64, Bytes::from(frame))
            })
            .collect();
        events.reverse();
        Ok(Page { events, more })
    }

    async fn held(&self, room: &str, epoch: &str, seqs: Seqs) -> Answer<Vec<u64>> {
        let client = self.pool.get().await.map_err(failed)?;
        let (from, to) = (clamp(*seqs.start()), clamp(*seqs.end()));
        let rows = client
            .query(
                "SELECT seq FROM roomring_events WHERE room = $1 AND epoch = $2 \
                 AND seq BETWEEN $3 AND $4 ORDER BY seq",
                &[&room, &epoch, &from, &to],
            )
            .await
            .map_err(failed)?;
        Ok(rows.iter().map(|r| r.get::<_, i64>(0) as u64).collect())
    }

    async fn delete(&self, room: &str) -> Answer<()> {
        let client = self.pool.get().await.map_err(failed)?;
        client
            .execute("DELETE FROM roomring_events WHERE room = $1", &[&room])
            .await
            .map_err(failed)?;
        Ok(())
    }

    async fn retain(&self, cutoff: u64) -> Answer<u64> {
        let client = self.pool.get().await.map_err(failed)?;
        let cutoff = clamp(cutoff);
        client
            .execute("DELETE FROM roomring_events WHERE at < $1", &[&cutoff])
            .await
            .map_err(failed)
    }
}

/// A seq or a time as PostgreSQL's `bigint` (past its range: its greatest).
fn clamp(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}
