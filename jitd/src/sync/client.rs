//! jitd's HTTPS calls to jit-server: enrolment (with the join token), the long-poll, the signed
//! acknowledgement and host events. Every call after enrolment is signed with the host key
//! (`x-jit-host`, `x-jit-time`, `x-jit-sig`, see docs/server.md "Hosts"). The TLS verifier is
//! the one in `remote::client` (the server's certificate pinned by fingerprint).

use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ed25519_dalek::{Signer, SigningKey};
use jit_core::time::UnixTime;
use jit_proto::state_doc::MAX_DOC_BYTES;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::remote::client::{https_base, pinned_agent, read_capped, CallError};

/// Domain of a host's request signature (the server's `HOST_REQ_DOMAIN`).
const HOST_REQ_DOMAIN: &str = "jit-host-req-v1";
/// Largest answer to anything but the long-poll.
const MAX_SMALL: u64 = 64 << 10;

/// The server's answer to an enrolment.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrollAnswer {
    /// The host's name, from the join token's record.
    pub host: String,
    /// Fingerprint of the key the server registered.
    pub host_key: String,
    /// The root public key to pin, base64.
    pub root_key: String,
    /// The server's TLS fingerprint.
    pub tls_fingerprint: String,
    /// The fingerprint of the TLS key the server will rotate to (`jit-server key tls-next`),
    /// pinned too so a rotation needs no new enrolment; absent when none is prepared.
    #[serde(default)]
    pub tls_next_fingerprint: Option<String>,
}

/// One host event for the server's audit.
#[derive(Debug, Clone, Serialize)]
pub struct HostEvent {
    /// Host clock.
    pub at: UnixTime,
    /// One of the server's fixed kinds (`grant_live`, `grant_ended`, `stale`, …).
    pub kind: &'static str,
    /// Server grant id, if any.
    pub grant: String,
    /// Short free text (no control characters, ≤ 1024 bytes).
    pub detail: String,
    /// The daemon's grant id the event is about (not sent: `grant` is filled from it when the
    /// report is made, with the server's id for a server grant).
    #[serde(skip)]
    pub local_grant: String,
}

fn status_error(e: ureq::Error) -> CallError {
    match e {
        ureq::Error::Status(code, r) => {
            let msg = read_capped(r, MAX_SMALL)
                .ok()
                .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
                .and_then(|v| v.get("error").and_then(|m| m.as_str()).map(str::to_string))
                .unwrap_or_else(|| format!("HTTP {code}"));
            CallError::Refused(code, jit_proto::text::one_line(&msg, 200))
        }
        other => CallError::Unreachable(other.to_string()),
    }
}

/// Enrols with `token`, registering `key`'s public half. The connection accepts only the
/// certificate `fingerprint` names.
pub fn enroll(
    url: &str,
    fingerprint: &str,
    token: &str,
    key: &SigningKey,
) -> Result<EnrollAnswer, CallError> {
    let base = https_base(url).map_err(CallError::Unreachable)?;
    let agent = pinned_agent(&[fingerprint.to_string()], Duration::from_secs(20))
        .map_err(CallError::Unreachable)?;
    let body = serde_json::json!({
        "token": token,
        "key": STANDARD.encode(key.verifying_key().to_bytes()),
    });
    let r = agent
        .post(&format!("{base}/v1/enroll"))
        .set("Content-Type", "application/json")
        .send_string(&body.to_string())
        .map_err(status_error)?;
    let b = read_capped(r, MAX_SMALL).map_err(CallError::Unreachable)?;
    serde_json::from_slice(&b).map_err(|e| CallError::Unreachable(format!("bad enrol answer: {e}")))
}

/// An enrolled host's client.
pub struct HostClient {
    agent: ureq::Agent,
    base: String,
    host: String,
    key: SigningKey,
}

impl HostClient {
    /// A client for `host` at `url`, accepting the `pins` certificates. Each call may take at
    /// most `timeout` (the long-poll's wait and a margin).
    pub fn new(
        url: &str,
        pins: &[String],
        host: &str,
        key: SigningKey,
        timeout: Duration,
    ) -> Result<HostClient, String> {
        Ok(HostClient {
            agent: pinned_agent(pins, timeout)?,
            base: https_base(url)?,
            host: host.to_string(),
            key,
        })
    }

    fn signed(&self, method: &str, pq: &str, body: &[u8]) -> Result<ureq::Response, CallError> {
        let time = jit_core::time::now();
        let hash: String = Sha256::digest(body)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let msg = format!("{HOST_REQ_DOMAIN}\0{method}\0{pq}\0{time}\0{hash}");
        let sig = STANDARD.encode(self.key.sign(msg.as_bytes()).to_bytes());
        let req = self
            .agent
            .request(method, &format!("{}{pq}", self.base))
            .set("x-jit-host", &self.host)
            .set("x-jit-time", &time.to_string())
            .set("x-jit-sig", &sig);
        let res = if method == "GET" {
            req.call()
        } else {
            req.set("Content-Type", "application/json").send_bytes(body)
        };
        res.map_err(status_error)
    }

    /// The long-poll: the raw signed document (verified by the caller before anything is read
    /// from it), at most `MAX_DOC_BYTES`.
    pub fn poll(&self, since: u64, wait_secs: u64, nonce: &str) -> Result<Vec<u8>, CallError> {
        let pq = format!("/v1/host/state?since={since}&wait={wait_secs}s&nonce={nonce}");
        let r = self.signed("GET", &pq, b"")?;
        read_capped(r, MAX_DOC_BYTES as u64).map_err(CallError::Unreachable)
    }

    /// Confirms `seq` applied.
    pub fn ack(&self, seq: u64) -> Result<(), CallError> {
        let body = serde_json::json!({ "seq": seq }).to_string();
        self.signed("POST", "/v1/host/ack", body.as_bytes())
            .map(|_| ())
    }

    /// Registers this host's X25519 public key (fleet TOTP secrets are sealed to it).
    pub fn register_seal_key(&self, public: &[u8; 32]) -> Result<(), CallError> {
        let body = serde_json::json!({ "key": STANDARD.encode(public) }).to_string();
        self.signed("POST", "/v1/host/seal_key", body.as_bytes())
            .map(|_| ())
    }

    /// Reports a TOTP step accepted here for `user`, so the person's other hosts refuse it.
    pub fn mfa_used(&self, user: &str, step: u64) -> Result<(), CallError> {
        let body = serde_json::json!({ "user": user, "step": step }).to_string();
        self.signed("POST", "/v1/host/mfa_used", body.as_bytes())
            .map(|_| ())
    }

    /// The signed TLS pin set (verified by the caller before anything is read from it).
    pub fn tls_pins(&self, nonce: &str) -> Result<Vec<u8>, CallError> {
        let pq = format!("/v1/host/tls?nonce={nonce}");
        let r = self.signed("GET", &pq, b"")?;
        read_capped(r, jit_proto::state_doc::MAX_PINS_BYTES as u64).map_err(CallError::Unreachable)
    }

    /// Sends one grant's certification record.
    pub fn certification(&self, body: &serde_json::Value) -> Result<(), CallError> {
        let body = body.to_string();
        self.signed("POST", "/v1/host/certification", body.as_bytes())
            .map(|_| ())
    }

    /// Reports events (at most 100 per call; the caller batches).
    pub fn events(&self, events: &[HostEvent]) -> Result<(), CallError> {
        let body = serde_json::json!({ "events": events }).to_string();
        self.signed("POST", "/v1/host/events", body.as_bytes())
            .map(|_| ())
    }
}

/// A fresh poll nonce: 16 random bytes, hex.
pub fn nonce() -> Result<String, String> {
    let mut b = [0u8; 16];
    // SAFETY: `b` is writable for its length.
    let got = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    if got != b.len() as isize {
        return Err("getrandom failed".into());
    }
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}
