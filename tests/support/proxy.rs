//! A TCP proxy in front of one process, which a test can cut: every
//! connection through it closes and new ones are refused for a while, as if
//! the process's host dropped off the network and came back.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// The proxy; its `addr` is what others are told to dial.
pub struct Proxy {
    pub addr: SocketAddr,
    target: Arc<Mutex<Option<SocketAddr>>>,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: Option<JoinHandle<()>>,
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
        self.accept = Some(tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let Some(to) = *target.lock().unwrap() else {
                    continue;
                };
                let task = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(to).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                tasks.lock().unwrap().push(task);
            }
        }));
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
