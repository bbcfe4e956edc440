//! HTTPS: rustls (ring provider) in front of the axum router, one task per connection, caps on
//! concurrent connections (in all and per client address), deadlines on the handshake and on
//! reading request headers (the whole-request deadline is in the API layer).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

use crate::error::{Error, Result};
use crate::keys::ServerKeys;

/// Most connections served at once (each long-polling host holds one).
pub const MAX_CONNECTIONS: usize = 8192;

pub fn server_config(keys: &ServerKeys) -> Result<Arc<rustls::ServerConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::internal(format!("TLS: {e}")))?
        .with_no_client_auth()
        .with_single_cert(keys.tls_chain.clone(), keys.tls_key.clone_key())
        .map_err(|e| Error::internal(format!("TLS key: {e}")))?;
    Ok(Arc::new(cfg))
}

/// Connections open per client address: a cap, so one address (a slow-loris client opening
/// connection after connection) cannot take every slot.
#[derive(Clone, Default)]
struct PerIp(Arc<Mutex<HashMap<IpAddr, usize>>>);

/// One counted connection; uncounted when dropped.
struct IpSlot(PerIp, IpAddr);

impl PerIp {
    fn take(&self, ip: IpAddr, cap: usize) -> Option<IpSlot> {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let n = m.entry(ip).or_insert(0);
        if *n >= cap {
            return None;
        }
        *n += 1;
        Some(IpSlot(self.clone(), ip))
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut m = (self.0).0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = m.get_mut(&self.1) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.1);
            }
        }
    }
}

/// Accepts until the process ends. The TLS configuration is read per connection from `tls`,
/// so a reloaded key (SIGHUP) serves new connections at once.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<RwLock<Arc<rustls::ServerConfig>>>,
    per_ip_cap: usize,
    app: Router,
) -> Result<()> {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let per_ip = PerIp::default();
    loop {
        let permit = slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| Error::internal(format!("semaphore: {e}")))?;
        let (stream, peer): (_, SocketAddr) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                eprintln!("jit-server: accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // Over the cap: closed before any TLS work is spent on it.
        let Some(ip_slot) = per_ip.take(peer.ip(), per_ip_cap) else {
            drop(stream);
            continue;
        };
        let cfg = tls.read().unwrap_or_else(|p| p.into_inner()).clone();
        let acceptor = TlsAcceptor::from(cfg);
        let app = app.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let _ip_slot = ip_slot;
            let Ok(Ok(tls)) =
                tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream)).await
            else {
                return;
            };
            let svc = TowerToHyperService::new(app);
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .max_buf_size(64 * 1024)
                .serve_connection(TokioIo::new(tls), svc)
                .await;
        });
    }
}
