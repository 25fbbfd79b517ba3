//! A round-robin TCP load balancer on loopback, in the harness's process: each client
//! connection goes to the next replica that accepts a connection (a dead replica is skipped, as a
//! balancer's health check would), and bytes are copied both ways until either side closes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

#[derive(Debug)]
pub(crate) struct Balancer {
    pub(crate) addr: SocketAddr,
    accept: tokio::task::JoinHandle<()>,
}

impl Drop for Balancer {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

impl Balancer {
    pub(crate) async fn start(backends: Vec<SocketAddr>) -> anyhow::Result<Balancer> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let backends: Arc<[SocketAddr]> = backends.into();
        let next = Arc::new(AtomicUsize::new(0));
        let accept = tokio::spawn(async move {
            loop {
                let Ok((inbound, _)) = listener.accept().await else {
                    continue;
                };
                let first = next.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(relay(inbound, backends.clone(), first));
            }
        });
        Ok(Balancer { addr, accept })
    }
}

async fn relay(mut inbound: TcpStream, backends: Arc<[SocketAddr]>, first: usize) {
    let _ = inbound.set_nodelay(true);
    for i in 0..backends.len() {
        let backend = backends[(first + i) % backends.len()];
        if let Ok(Ok(mut outbound)) =
            tokio::time::timeout(Duration::from_secs(1), TcpStream::connect(backend)).await
        {
            let _ = outbound.set_nodelay(true);
            let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            return;
        }
    }
    // No replica accepts: the client's connection is closed, as a balancer with no healthy
    // backend would.
}
