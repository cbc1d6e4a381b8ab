//! The archive's in-process twin, for `dev` and tests.

use std::collections::BTreeMap;
use std::sync::Mutex;

use bytes::Bytes;

use super::{Answer, Archive, Archived, Page, Seqs};

/// Events by (room, epoch), then seq: (stored at, frame).
type Histories = BTreeMap<(String, String), BTreeMap<u64, (u64, Bytes)>>;

/// An archive in memory.
#[derive(Default)]
pub struct MemoryArchive {
    histories: Mutex<Histories>,
}

impl MemoryArchive {
    fn lock(&self) -> std::sync::MutexGuard<'_, Histories> {
        self.histories.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait::async_trait]
impl Archive for MemoryArchive {
    async fn append(&self, events: &[Archived]) -> Answer<()> {
        let mut histories = self.lock();
        for e in events {
            histories
                .entry((e.room.clone(), e.epoch.clone()))
                .or_default()
                .entry(e.seq)
                .or_insert_with(|| (e.at, e.frame.clone()));
        }
        Ok(())
    }

    async fn page(&self, room: &str, epoch: &str, before: u64, limit: usize) -> Answer<Page> {
        let histories = self.lock();
        let Some(events) = histories.get(&(room.to_string(), epoch.to_string())) else {
            return Ok(Page::default());
        };
        let mut below = events.range(..before).rev();
        let mut page: Vec<(u64, Bytes)> = below
            .by_ref()
            .take(limit)
            .map(|(seq, (_, frame))| (*seq, frame.clone()))
            .collect();
        page.reverse();
        Ok(Page {
            events: page,
            more: below.next().is_some(),
        })
    }

    async fn held(&self, room: &str, epoch: &str, seqs: Seqs) -> Answer<Vec<u64>> {
        let histories = self.lock();
        let key = (room.to_string(), epoch.to_string());
        Ok(histories
            .get(&key)
            .map(|e| e.range(seqs).map(|(seq, _)| *seq).collect())
            .unwrap_or_default())
    }

    async fn delete(&self, room: &str) -> Answer<()> {
        self.lock().retain(|(r, _), _| r != room);
        Ok(())
    }

    async fn retain(&self, cutoff: u64) -> Answer<u64> {
        let mut histories = self.lock();
        let mut gone = 0;
        for events in histories.values_mut() {
            let before = events.len();
            events.retain(|_, (at, _)| *at >= cutoff);
            gone += (before - events.len()) as u64;
        }
        histories.retain(|_, events| !events.is_empty());
        Ok(gone)
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn the_memory_archive_passes_the_suite() {
        super::super::conformance::run(&super::MemoryArchive::default()).await;
    }
}
