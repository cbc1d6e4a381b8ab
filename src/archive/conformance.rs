//! The one test suite every `Archive` backend passes, given an empty
//! archive.

use bytes::Bytes;

use super::{Archive, Archived};

fn event(room: &str, epoch: &str, seq: u64, at: u64) -> Archived {
    Archived {
        room: room.into(),
        epoch: epoch.into(),
        seq,
        at,
        frame: Bytes::from(format!(r#"{{"t":"msg","room":"{room}","seq":{seq}}}"#)),
    }
}

fn seqs(page: &super::Page) -> Vec<u64> {
    page.events.iter().map(|(seq, _)| *seq).collect()
}

/// Runs every check against `archive`, which must start empty.
pub async fn run(archive: &dyn Archive) {
    appends_are_idempotent_and_pages_ascend(archive).await;
    histories_and_rooms_are_apart(archive).await;
    what_is_held_is_told_seq_by_seq(archive).await;
    a_room_is_deleted_whole_and_again_harmlessly(archive).await;
    a_retention_removes_what_is_older_than_its_cutoff(archive).await;
}

async fn appends_are_idempotent_and_pages_ascend(a: &dyn Archive) {
    let batch: Vec<Archived> = (1..=120)
        .map(|s| event("chat:a", "e1", s, 1000 + s))
        .collect();
    a.append(&batch[..70]).await.unwrap();
    // A batch sent again after a failure, overlapping what is stored.
    a.append(&batch[50..]).await.unwrap();
    let mut replaced = event("chat:a", "e1", 10, 1010);
    replaced.frame = Bytes::from_static(b"{}");
    a.append(&[replaced]).await.unwrap();
    let latest = a.page("chat:a", "e1", u64::MAX, 50).await.unwrap();
    assert_eq!(seqs(&latest), (71..=120).collect::<Vec<_>>());
    assert!(latest.more);
    let first = a.page("chat:a", "e1", 11, 50).await.unwrap();
    assert_eq!(seqs(&first), (1..=10).collect::<Vec<_>>());
    assert!(!first.more);
    assert_eq!(
        first.events[9].1, batch[9].frame,
        "stored once, as first sent"
    );
    let exact = a.page("chat:a", "e1", 61, 10).await.unwrap();
    assert_eq!(seqs(&exact), (51..=60).collect::<Vec<_>>());
    assert!(exact.more);
    assert!(a
        .page("chat:a", "e1", 1, 10)
        .await
        .unwrap()
        .events
        .is_empty());
}

async fn histories_and_rooms_are_apart(a: &dyn Archive) {
    a.append(&[
        event("chat:a", "e2", 1, 5000),
        event("chat:b", "e1", 7, 5000),
    ])
    .await
    .unwrap();
    let other_history = a.page("chat:a", "e2", u64::MAX, 50).await.unwrap();
    assert_eq!(seqs(&other_history), [1]);
    assert!(!other_history.more);
    assert_eq!(
        seqs(&a.page("chat:b", "e1", u64::MAX, 50).await.unwrap()),
        [7]
    );
    let none = a.page("chat:never", "e1", u64::MAX, 50).await.unwrap();
    assert!(none.events.is_empty() && !none.more);
}

async fn what_is_held_is_told_seq_by_seq(a: &dyn Archive) {
    assert_eq!(
        a.held("chat:a", "e1", 118..=130).await.unwrap(),
        [118, 119, 120]
    );
    assert_eq!(a.held("chat:a", "e2", 1..=u64::MAX).await.unwrap(), [1]);
    assert!(a.held("chat:never", "e1", 1..=9).await.unwrap().is_empty());
    // Later events archived first (by another node) leave a gap below.
    let later: Vec<Archived> = [1, 2, 6, 7]
        .iter()
        .map(|&s| event("chat:gap", "e1", s, s))
        .collect();
    a.append(&later).await.unwrap();
    assert_eq!(a.held("chat:gap", "e1", 1..=7).await.unwrap(), [1, 2, 6, 7]);
    assert_eq!(
        a.held("chat:gap", "e1", 3..=5).await.unwrap(),
        Vec::<u64>::new()
    );
    a.delete("chat:gap").await.unwrap();
}

async fn a_room_is_deleted_whole_and_again_harmlessly(a: &dyn Archive) {
    a.delete("chat:a").await.unwrap();
    a.delete("chat:a").await.unwrap();
    assert!(a
        .page("chat:a", "e1", u64::MAX, 50)
        .await
        .unwrap()
        .events
        .is_empty());
    assert!(a
        .page("chat:a", "e2", u64::MAX, 50)
        .await
        .unwrap()
        .events
        .is_empty());
    assert!(a
        .held("chat:a", "e1", 1..=u64::MAX)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        seqs(&a.page("chat:b", "e1", u64::MAX, 50).await.unwrap()),
        [7],
        "others stay"
    );
}

async fn a_retention_removes_what_is_older_than_its_cutoff(a: &dyn Archive) {
    let batch: Vec<Archived> = (1..=10)
        .map(|s| event("chat:c", "e1", s, s * 100))
        .collect();
    a.append(&batch).await.unwrap();
    let gone = a.retain(501).await.unwrap();
    assert_eq!(gone, 5, "seqs 1 to 5, stored at 100 to 500");
    assert_eq!(
        seqs(&a.page("chat:c", "e1", u64::MAX, 50).await.unwrap()),
        [6, 7, 8, 9, 10]
    );
    assert_eq!(
        seqs(&a.page("chat:b", "e1", u64::MAX, 50).await.unwrap()),
        [7],
        "stored at 5000"
    );
}
