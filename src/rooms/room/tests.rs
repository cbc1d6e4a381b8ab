use super::*;
use crate::rooms::store::{Entry, MemoryStore};
use std::sync::Mutex as StdMutex;

/// A link that keeps the `seq` of every answer.
#[derive(Default)]
struct Answers(StdMutex<Vec<Option<u64>>>);

impl Sink for Answers {
    fn link(&self) -> LinkId {
        1
    }
    fn event(&self, _: &RoomId, _: &Event, _: Option<ConnId>) {}
    fn reply(&self, _: Rid, reply: Reply<'_>) {
        self.0.lock().unwrap().push(reply.seq);
    }
}

async fn stored(store: &Arc<MemoryStore>, room: &RoomId, seq: u64) {
    let (tx, rx) = oneshot::channel();
    store.append(Append {
        room: room.clone(),
        entries: vec![Entry {
            seq,
            frame: format!(r#"{{"t":"msg","seq":{seq}}}"#).into(),
            author: None,
            cid: None,
        }],
        snapshot: None,
        keep: usize::MAX,
        done: Box::new(move |r| {
            let _ = tx.send(r.is_ok());
        }),
    });
    assert!(rx.await.unwrap());
}

/// A room left frozen by a move that got no answer may have been taken
/// and written to by the node it went to: given back, it serves what
/// storage holds, not what it held.
#[tokio::test]
async fn a_frozen_room_given_back_reloads_what_storage_holds() {
    let store = MemoryStore::new(1000);
    let id = RoomId::parse("chat:back").unwrap();
    stored(&store, &id, 1).await;
    let room = Arc::new(Room::new(
        id.clone(),
        NodeId::parse("n1").unwrap(),
        Limits::default(),
        Some(store.clone() as Arc<dyn RoomStore>),
    ));
    let join = |rid: Rid, conn: ConnId| Op {
        rid,
        sub: Sub { link: 1, conn },
        user: "ann",
        id: None,
        op: RoomOp::Join {
            since: None,
            epoch: None,
        },
    };
    let seqs = Arc::new(Answers::default());
    let sink: Arc<dyn Sink> = seqs.clone();
    room.op(&sink, join(1, 1));
    tokio::time::sleep(Duration::from_millis(50)).await;
    drop(room.freeze());
    // The node it went to took it and wrote seq 2.
    stored(&store, &id, 2).await;
    assert!(room.thaw_if_frozen());
    room.op(&sink, join(2, 2));
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(*seqs.0.lock().unwrap(), [Some(1), Some(2)]);
}
