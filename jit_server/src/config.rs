//! server.toml: where to listen, which database, which TLS files, document lifetime, limits.

use std::path::{Path, PathBuf};

use jit_proto::state_doc::MAX_DOC_GRANTS;
use serde::Deserialize;

use crate::error::{Error, Result};

/// Default data directory.
pub const DEFAULT_DATA: &str = "/var/lib/jit-server";
/// Default listen address until configured.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8443";

/// The configuration file (all keys optional). Unknown keys are refused so a typo is not
/// silently ignored.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// `ADDR:PORT` to serve HTTPS on.
    pub listen: Option<String>,
    /// `postgres://…`; absent: SQLite file `server.db` in the data directory.
    pub database: Option<String>,
    /// PEM certificate chain to serve instead of the generated self-signed one.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// PEM certificate of the *next* TLS key (with `tls_cert`; without it `DATA/tls.next.crt`
    /// from `jit-server key tls-next`): its fingerprint is published to hosts, signed, so the
    /// TLS key can be replaced without re-enrolling.
    pub tls_next_cert: Option<PathBuf>,
    /// Most connections open at once from one IP address (default 2048).
    pub max_connections_per_ip: Option<usize>,
    /// Seconds a client has to send a whole request, headers and body (default 10). Long-poll
    /// waits are not counted: they start once the request is read.
    pub request_read_timeout: Option<u64>,
    /// Lifetime of a signed state document in seconds (default 60).
    pub doc_ttl: Option<i64>,
    /// Longest long-poll in seconds (default 30; a host's `wait` is clamped to it).
    pub poll_max_wait: Option<u64>,
    /// The ticket service roles with `ticket_check` use.
    pub ticket: Option<crate::ticket::TicketConfig>,
    /// Most requests one person may hold open at once, pending or approved and not yet ended
    /// (default 32): filing more is refused, so no one fills the request table, the
    /// approvers' queue or a host's grant set.
    pub max_open_requests: Option<u32>,
    /// Most live grants one host may hold from the server (default and most: the 4096 one
    /// signed document carries). An approval leaves out a host that has no room left.
    pub max_grants_per_host: Option<usize>,
}

impl ServerConfig {
    /// Reads `path` if given, else `DATA/server.toml` if it exists, else the defaults.
    pub fn load(data: &Path, path: Option<&Path>) -> Result<ServerConfig> {
        let default_path = data.join("server.toml");
        let p = match path {
            Some(p) => p.to_path_buf(),
            None if default_path.exists() => default_path,
            None => return Ok(ServerConfig::default()),
        };
        let text =
            std::fs::read_to_string(&p).map_err(|e| Error::bad(format!("{}: {e}", p.display())))?;
        let cfg: ServerConfig =
            toml::from_str(&text).map_err(|e| Error::bad(format!("{}: {e}", p.display())))?;
        if cfg.tls_cert.is_some() != cfg.tls_key.is_some() {
            return Err(Error::bad("tls_cert and tls_key go together"));
        }
        if let Some(t) = &cfg.ticket {
            t.validate()?;
        }
        if let Some(t) = cfg.doc_ttl {
            if !(10..=3600).contains(&t) {
                return Err(Error::bad("doc_ttl must be 10..3600 seconds"));
            }
        }
        if cfg.max_open_requests == Some(0) {
            return Err(Error::bad("max_open_requests must be at least 1"));
        }
        if let Some(n) = cfg.max_grants_per_host {
            if !(1..=MAX_DOC_GRANTS).contains(&n) {
                return Err(Error::bad(format!(
                    "max_grants_per_host must be 1..{MAX_DOC_GRANTS} (what one signed document carries)"
                )));
            }
        }
        Ok(cfg)
    }

    /// What filing and approving may take (engine::Limits).
    pub fn limits(&self) -> crate::engine::Limits {
        crate::engine::Limits {
            open_requests: i64::from(self.max_open_requests.unwrap_or(32)),
            grants_per_host: self
                .max_grants_per_host
                .unwrap_or(MAX_DOC_GRANTS)
                .min(MAX_DOC_GRANTS) as i64,
        }
    }

    pub fn doc_ttl(&self) -> i64 {
        self.doc_ttl.unwrap_or(60)
    }

    pub fn max_connections_per_ip(&self) -> usize {
        self.max_connections_per_ip.unwrap_or(2048).max(1)
    }

    pub fn request_read_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.request_read_timeout.unwrap_or(10).clamp(1, 300))
    }

    pub fn poll_max_wait(&self) -> u64 {
        self.poll_max_wait.unwrap_or(30).clamp(1, 120)
    }

    /// The database URL: the configured one, else the SQLite file in `data`.
    pub fn database_url(&self, data: &Path) -> String {
        match &self.database {
            Some(u) => u.clone(),
            None => format!("sqlite://{}?mode=rwc", data.join("server.db").display()),
        }
    }
}
