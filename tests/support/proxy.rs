//! A TCP proxy in front of one process, which a test can cut (every
//! connection through it closes and new ones are refused for a while, as if
//! the process's host dropped off the network and came back), slow down
//! (every chunk held for a while, as on a congested path) or pause (the
//! connections stay open and nothing goes through: a blackhole).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The proxy; its `addr` is what others are told to dial.
pub struct Proxy {
    pub addr: SocketAddr,
    target: Arc<Mutex<Option<SocketAddr>>>,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: Option<JoinHandle<()>>,
    paused: watch::Sender<bool>,
    delay: watch::Sender<Duration>,
}

impl Proxy {
    /// A proxy on a free loopback port; `forward_to` sets where it leads.
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut proxy = Self {
            addr,
            target: Arc::default(),
            tasks: Arc::default(),
            accept: None,
            paused: watch::channel(false).0,
            delay: watch::channel(Duration::ZERO).0,
        };
        proxy.listen(listener);
        proxy
    }

    /// Where connections go.
    pub fn forward_to(&self, target: SocketAddr) {
        *self.target.lock().unwrap() = Some(target);
    }

    fn listen(&mut self, listener: TcpListener) {
        let (target, tasks) = (self.target.clone(), self.tasks.clone());
        let (paused, delay) = (self.paused.clone(), self.delay.clone());
        self.accept = Some(tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let Some(to) = *target.lock().unwrap() else {
                    continue;
                };
                let (paused, delay) = (paused.clone(), delay.clone());
                let task = tokio::spawn(async move {
                    if let Ok(outbound) = TcpStream::connect(to).await {
                        let (ir, iw) = inbound.into_split();
                        let (or, ow) = outbound.into_split();
                        tokio::join!(
                            pipe(ir, ow, paused.subscribe(), delay.subscribe()),
                            pipe(or, iw, paused.subscribe(), delay.subscribe())
                        );
                    }
                });
                tasks.lock().unwrap().push(task);
            }
        }));
    }

    /// Stops moving bytes either way, the connections left open.
    pub fn pause(&self) {
        self.paused.send_replace(true);
    }

    /// Holds every chunk this long before passing it on (zero: none).
    pub fn delay(&self, by: Duration) {
        self.delay.send_replace(by);
    }

    /// Moves bytes again.
    pub fn resume(&self) {
        self.paused.send_replace(false);
    }

    /// Closes every connection and refuses new ones for `for_`, then
    /// accepts again on the same port.
    pub async fn cut(&mut self, for_: Duration) {
        if let Some(accept) = self.accept.take() {
            accept.abort();
            let _ = accept.await;
        }
        for task in self.tasks.lock().unwrap().drain(..) {
            task.abort();
        }
        tokio::time::sleep(for_).await;
        let listener = TcpListener::bind(self.addr)
            .await
            .expect("the proxy's port again");
        self.listen(listener);
    }
}

/// Copies one direction, holding off while paused and delaying each chunk.
async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut paused: watch::Receiver<bool>,
    delay: watch::Receiver<Duration>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        if paused.wait_for(|p| !*p).await.is_err() {
            return;
        }
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let by = *delay.borrow();
        if !by.is_zero() {
            tokio::time::sleep(by).await;
        }
        if paused.wait_for(|p| !*p).await.is_err() || to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}
