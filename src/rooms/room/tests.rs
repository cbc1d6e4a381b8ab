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
        epoch: Arc::from("e"),
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
#[tokio::test(start_paused = true)]
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

/// A store whose data can be lost at once (a failover to a replica that
/// missed it, a primary restarted empty): the append in flight then fails.
struct Losing {
    store: std::sync::Mutex<Arc<MemoryStore>>,
    lose: std::sync::atomic::AtomicBool,
}

#[async_trait::async_trait]
impl RoomStore for Losing {
    async fn load(&self, room: &RoomId) -> Result<Loaded, StoreError> {
        let store = self.store.lock().unwrap().clone();
        store.load(room).await
    }

    fn append(&self, append: Append) {
        if self.lose.swap(false, std::sync::atomic::Ordering::SeqCst) {
            *self.store.lock().unwrap() = MemoryStore::new(1000);
            return (append.done)(Err(StoreError("the primary went away".into())));
        }
        self.store.lock().unwrap().append(append);
    }
}

/// A link that counts the rooms it is told were rewound.
#[derive(Default)]
struct Told(StdMutex<Vec<String>>);

impl Sink for Told {
    fn link(&self) -> LinkId {
        1
    }
    fn event(&self, _: &RoomId, _: &Event, _: Option<ConnId>) {}
    fn reply(&self, _: Rid, _: Reply<'_>) {}
    fn rewound(&self, room: &RoomId) {
        self.0.lock().unwrap().push(room.to_string());
    }
}

/// A room that reloads where it is and finds its history gone tells the
/// links of its readers, which would otherwise wait for seqs that never
/// come again.
#[tokio::test(start_paused = true)]
async fn a_room_whose_history_is_lost_where_it_is_tells_its_readers() {
    let store = Arc::new(Losing {
        store: std::sync::Mutex::new(MemoryStore::new(1000)),
        lose: false.into(),
    });
    let id = RoomId::parse("chat:lost").unwrap();
    let room = Arc::new(Room::new(
        id.clone(),
        NodeId::parse("n1").unwrap(),
        Limits::default(),
        Some(store.clone() as Arc<dyn RoomStore>),
    ));
    let told = Arc::new(Told::default());
    let sink: Arc<dyn Sink> = told.clone();
    let op = |rid: Rid, op: RoomOp<Bytes>| Op {
        rid,
        sub: Sub { link: 1, conn: 1 },
        user: "ann",
        id: None,
        op,
    };
    let send = |rid| {
        let body = Bytes::from(format!("{{\"n\":{rid}}}"));
        op(rid, RoomOp::Send { body })
    };
    let settle = || tokio::time::sleep(Duration::from_millis(30));
    room.op(
        &sink,
        op(
            1,
            RoomOp::Join {
                since: None,
                epoch: None,
            },
        ),
    );
    settle().await;
    room.op(&sink, send(2));
    room.op(&sink, send(3));
    settle().await;
    assert!(told.0.lock().unwrap().is_empty(), "nothing lost yet");
    store.lose.store(true, std::sync::atomic::Ordering::SeqCst);
    room.op(&sink, send(4));
    settle().await;
    room.op(&sink, send(5));
    settle().await;
    assert_eq!(
        *told.0.lock().unwrap(),
        ["chat:lost"],
        "told once, on the reload"
    );
}
