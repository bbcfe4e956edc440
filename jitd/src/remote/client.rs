//! HTTPS to jit-server with exactly the pinned certificate accepted (SHA-256 of its DER, the
//! form `jit-server init` prints); handshake signatures are still verified by rustls.

use std::io::Read;
use std::time::Duration;

use serde_json::Value;

/// Largest response body read.
pub const MAX_RESPONSE: u64 = 8 << 20;

/// Why a call failed: the server said no (status and its message), or it could not be reached.
#[derive(Debug)]
pub enum CallError {
    Refused(u16, String),
    Unreachable(String),
}

/// A client for one server, one token, one set of pinned fingerprints.
pub struct Remote {
    agent: ureq::Agent,
    base: String,
    token: String,
}

impl Remote {
    pub fn new(server: &str, token: &str, pins: &[String]) -> Result<Remote, String> {
        let base = https_base(server)?;
        let agent = pinned_agent(pins, Duration::from_secs(60))?;
        Ok(Remote {
            agent,
            base,
            token: token.to_string(),
        })
    }

    /// One call; the JSON answer, or why not.
    pub fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value, CallError> {
        let req = self
            .agent
            .request(method, &format!("{}{path}", self.base))
            .set("Authorization", &format!("Bearer {}", self.token));
        let res = match body {
            Some(b) => req.set("Content-Type", "application/json").send_bytes(
                &serde_json::to_vec(b).map_err(|e| CallError::Unreachable(e.to_string()))?,
            ),
            None => req.call(),
        };
        match res {
            Ok(r) => read_json(r).map_err(CallError::Unreachable),
            Err(ureq::Error::Status(code, r)) => {
                let msg = read_json(r)
                    .ok()
                    .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_string))
                    .unwrap_or_else(|| format!("HTTP {code}"));
                Err(CallError::Refused(code, msg))
            }
            Err(e) => Err(CallError::Unreachable(e.to_string())),
        }
    }
}

/// `server` without a trailing slash, refused unless it is an `https://` URL.
pub fn https_base(server: &str) -> Result<String, String> {
    let base = server.trim_end_matches('/').to_string();
    if !base.starts_with("https://") {
        return Err(format!("server {server:?} must be an https:// URL"));
    }
    Ok(base)
}

/// A blocking HTTPS agent that accepts only a server certificate whose fingerprint is one of
/// `pins`, follows no redirects and gives each call at most `timeout`. Shared by the people's
/// verbs and jitd's host link (one copy of the verifier).
pub fn pinned_agent(pins: &[String], timeout: Duration) -> Result<ureq::Agent, String> {
    let tls = jit_proto::tls_pin::pinned_config(pins)?;
    Ok(ureq::AgentBuilder::new()
        .tls_config(tls)
        .timeout(timeout)
        .redirects(0)
        .build())
}

/// The body of `r`, refused past `cap` bytes (read at most `cap + 1`).
pub fn read_capped(r: ureq::Response, cap: u64) -> Result<Vec<u8>, String> {
    let mut buf = Vec::new();
    r.into_reader()
        .take(cap + 1)
        .read_to_end(&mut buf)
        .map_err(|e| e.to_string())?;
    if buf.len() as u64 > cap {
        return Err("response too large".into());
    }
    Ok(buf)
}

fn read_json(r: ureq::Response) -> Result<Value, String> {
    let buf = read_capped(r, MAX_RESPONSE)?;
    serde_json::from_slice(&buf).map_err(|e| format!("bad response: {e}"))
}
