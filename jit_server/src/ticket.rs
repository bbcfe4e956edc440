//! Ticket binding: a role with `ticket_check = true` is granted only while its ticket is open in
//! the ticket service the operator configured (`[ticket]` in server.toml; never a URL from a
//! request or a policy file). Checked when a request is filed and every `check_every` seconds
//! while its grant is live: closed or gone → revoked everywhere; service down → nothing is
//! revoked in bulk, but a grant whose ticket stayed unverified longer than `max_unverified` ends.

use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use serde_json::Value;

use crate::db::{get_i64, get_opt_i64, get_str, Db};
use crate::error::{Error, Result};
use crate::policy::RoleDef;

/// Largest ticket service answer read.
const MAX_ANSWER: usize = 1 << 20;

/// `[ticket]` in server.toml.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TicketConfig {
    /// `http(s)://host[:port]/path/{id}`; `{id}` is replaced by the URL-encoded ticket.
    pub url: String,
    /// Dotted path to the status in the JSON answer (`fields.status.name`).
    pub field: String,
    /// Status values that mean open.
    pub open: Vec<String>,
    /// File holding a bearer token for the service.
    #[serde(default)]
    pub token_file: Option<std::path::PathBuf>,
    /// Seconds between checks of live grants (default 300).
    #[serde(default)]
    pub check_every: Option<u64>,
    /// A grant whose ticket could not be verified for this many seconds ends (default 3600).
    #[serde(default)]
    pub max_unverified: Option<i64>,
    /// Seconds per check (default 5).
    #[serde(default)]
    pub timeout: Option<u64>,
}

/// What the ticket service said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    Open,
    /// Closed (with the status seen) or missing.
    Closed(String),
    /// Unreachable, timed out, an error status, a redirect (never followed), bad JSON.
    Down(String),
}

struct Target {
    tls: bool,
    host: String,
    port: u16,
    path: String,
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
pub fn encode(id: &str) -> String {
    id.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

impl TicketConfig {
    pub fn validate(&self) -> Result<()> {
        self.target("x")?;
        if self.field.is_empty() || self.open.is_empty() {
            return Err(Error::bad("[ticket] field and open must be set"));
        }
        Ok(())
    }

    pub fn check_every(&self) -> Duration {
        Duration::from_secs(self.check_every.unwrap_or(300).max(1))
    }

    pub fn max_unverified(&self) -> i64 {
        self.max_unverified.unwrap_or(3600).max(1)
    }

    fn target(&self, id: &str) -> Result<Target> {
        if !self.url.contains("{id}") {
            return Err(Error::bad("[ticket] url must contain {id}"));
        }
        let url = self.url.replace("{id}", &encode(id));
        let (tls, rest) = if let Some(r) = url.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = url.strip_prefix("http://") {
            (false, r)
        } else {
            return Err(Error::bad("[ticket] url must be http:// or https://"));
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], rest[i..].to_string()),
            None => (rest, "/".to_string()),
        };
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) => (
                h.to_string(),
                p.parse()
                    .map_err(|_| Error::bad("[ticket] url has a bad port"))?,
            ),
            None => (authority.to_string(), if tls { 443 } else { 80 }),
        };
        if host.is_empty() || host.contains('@') {
            return Err(Error::bad("[ticket] url has no host (or has credentials)"));
        }
        Ok(Target {
            tls,
            host,
            port,
            path,
        })
    }

    /// Asks the service about one ticket.
    pub async fn check(&self, id: &str) -> Status {
        let timeout = Duration::from_secs(self.timeout.unwrap_or(5).max(1));
        match tokio::time::timeout(timeout, self.fetch(id)).await {
            Ok(s) => s,
            Err(_) => Status::Down("timed out".into()),
        }
    }

    async fn fetch(&self, id: &str) -> Status {
        let t = match self.target(id) {
            Ok(t) => t,
            Err(e) => return Status::Down(e.msg),
        };
        let token = match &self.token_file {
            Some(p) => match std::fs::read_to_string(p) {
                Ok(s) => Some(s.trim().to_string()),
                Err(e) => return Status::Down(format!("token file: {e}")),
            },
            None => None,
        };
        let tcp = match tokio::net::TcpStream::connect((t.host.as_str(), t.port)).await {
            Ok(s) => s,
            Err(e) => return Status::Down(format!("connect: {e}")),
        };
        let mut req = hyper::Request::get(t.path.as_str())
            .header("host", t.host.as_str())
            .header("accept", "application/json");
        if let Some(tok) = &token {
            req = req.header("authorization", format!("Bearer {tok}"));
        }
        let req = match req.body(Empty::<Bytes>::new()) {
            Ok(r) => r,
            Err(e) => return Status::Down(e.to_string()),
        };
        let answer = if t.tls {
            let mut roots = rustls::RootCertStore::empty();
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let cfg = match rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
            {
                Ok(b) => b.with_root_certificates(roots).with_no_client_auth(),
                Err(e) => return Status::Down(e.to_string()),
            };
            let name = match rustls::pki_types::ServerName::try_from(t.host.clone()) {
                Ok(n) => n,
                Err(e) => return Status::Down(e.to_string()),
            };
            match tokio_rustls::TlsConnector::from(Arc::new(cfg))
                .connect(name, tcp)
                .await
            {
                Ok(tls) => send(TokioIo::new(tls), req).await,
                Err(e) => return Status::Down(format!("TLS: {e}")),
            }
        } else {
            send(TokioIo::new(tcp), req).await
        };
        let (status, body) = match answer {
            Ok(x) => x,
            Err(e) => return Status::Down(e),
        };
        match status {
            200 => {}
            404 | 410 => return Status::Closed("missing".into()),
            s => return Status::Down(format!("HTTP {s} (redirects are not followed)")),
        }
        let v: Value = match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(e) => return Status::Down(format!("bad JSON: {e}")),
        };
        let mut cur = &v;
        for part in self.field.split('.') {
            cur = match cur.get(part) {
                Some(x) => x,
                None => return Status::Closed(format!("no {}", self.field)),
            };
        }
        match cur.as_str() {
            Some(s) if self.open.iter().any(|o| o == s) => Status::Open,
            Some(s) => Status::Closed(s.chars().take(64).collect()),
            None => Status::Closed(format!("{} is not a string", self.field)),
        }
    }
}

async fn send<I>(
    io: I,
    req: hyper::Request<Empty<Bytes>>,
) -> std::result::Result<(u16, Bytes), String>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let res = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let status = res.status().as_u16();
    let body = Limited::new(res.into_body(), MAX_ANSWER)
        .collect()
        .await
        .map_err(|e| format!("answer: {e}"))?
        .to_bytes();
    Ok((status, body))
}

/// Filing: the ticket must be open now.
pub async fn check_at_request(
    cfg: Option<&TicketConfig>,
    role: &RoleDef,
    ticket: &str,
) -> Result<()> {
    if !role.approval.ticket_check {
        return Ok(());
    }
    let cfg = cfg.ok_or_else(|| {
        Error::forbidden(format!(
            "role {} needs a ticket service and none is configured",
            role.name
        ))
    })?;
    match cfg.check(ticket).await {
        Status::Open => Ok(()),
        Status::Closed(s) => Err(Error::forbidden(format!(
            "ticket {ticket} is not open ({s})"
        ))),
        Status::Down(e) => Err(Error {
            status: 503,
            msg: format!("ticket service unreachable, request refused: {e}"),
        }),
    }
}

/// One pass over live ticket-bound grants: returns how many were revoked.
pub async fn sweep(db: &Db, cfg: &TicketConfig, now: i64) -> Result<usize> {
    let rows = sqlx::query(
        "SELECT id, ticket, role_spec, decided_at, ticket_verified_at FROM request r \
         WHERE state = 'approved' AND EXISTS (SELECT 1 FROM sgrant g WHERE g.request_id = r.id \
         AND g.revoked_at IS NULL AND g.not_after > $1)",
    )
    .bind(now)
    .fetch_all(&db.pool)
    .await?;
    let mut revoked = 0;
    for r in rows {
        let role: RoleDef = serde_json::from_str(&get_str(&r, "role_spec")?)?;
        if !role.approval.ticket_check {
            continue;
        }
        let id = get_str(&r, "id")?;
        let ticket = get_str(&r, "ticket")?;
        let verified = get_opt_i64(&r, "ticket_verified_at")?.unwrap_or(get_i64(&r, "decided_at")?);
        let why = match cfg.check(&ticket).await {
            Status::Open => {
                sqlx::query("UPDATE request SET ticket_verified_at = $2 WHERE id = $1")
                    .bind(&id)
                    .bind(now)
                    .execute(&db.pool)
                    .await?;
                continue;
            }
            Status::Closed(s) => format!("ticket {ticket} is {s}"),
            Status::Down(e) if now - verified > cfg.max_unverified() => {
                format!("ticket {ticket} unverified for {}s ({e})", now - verified)
            }
            Status::Down(_) => continue,
        };
        match crate::engine::revoke_because(db, "ticket", &id, &why, now).await {
            Ok(_) => revoked += 1,
            // Another replica's check got there first.
            Err(e) if e.status == 409 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(revoked)
}

/// The background checker of one replica.
pub async fn run(db: Db, cfg: TicketConfig, state: Arc<crate::api::AppState>) {
    loop {
        tokio::time::sleep(cfg.check_every()).await;
        match sweep(&db, &cfg, crate::util::now()).await {
            Ok(n) if n > 0 => state.woke(),
            Ok(_) => {}
            Err(e) => eprintln!("jit-server: ticket check: {e}"),
        }
    }
}
