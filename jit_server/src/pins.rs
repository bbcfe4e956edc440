//! The TLS pin set a host keeps: the server's current TLS certificate and, once prepared, the
//! next one. Published in a document signed like the state document (root-certified online
//! key), so a host learns the next TLS key from the server it already trusts and the TLS key
//! can be replaced without re-enrolling any host.
//!
//! Wire form: `{"cert","cert_sig","body","sig"}`, four base64 strings, the first two exactly as
//! in the state document; `sig` is the certified online key's ed25519 signature over
//! `"jit-tls-pins-v1\0" || body bytes`. The body: `{"version":1,"host","host_key","current",
//! "next","nonce","server_time","expires_at"}` (`next` is null when none is prepared).

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ed25519_dalek::Signer;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::keys::ServerKeys;

/// Domain separation: a pin set can never be taken for a state document or the reverse.
pub const PINS_DOMAIN: &[u8] = b"jit-tls-pins-v1\0";

/// The signed content.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PinsBody {
    pub version: u32,
    pub host: String,
    pub host_key: String,
    /// `SHA256:…` of the certificate served now.
    pub current: String,
    /// `SHA256:…` of the certificate the server will switch to, if prepared.
    pub next: Option<String>,
    pub nonce: String,
    pub server_time: i64,
    pub expires_at: i64,
}

#[derive(Serialize)]
struct Envelope {
    cert: String,
    cert_sig: String,
    body: String,
    sig: String,
}

/// Signs the pin set for one host's call.
pub fn sign_pins(keys: &ServerKeys, body: &PinsBody) -> Result<Vec<u8>> {
    let bytes = serde_json::to_vec(body)?;
    let mut msg = PINS_DOMAIN.to_vec();
    msg.extend_from_slice(&bytes);
    let sig = keys.online.sign(&msg).to_bytes();
    Ok(serde_json::to_vec(&Envelope {
        cert: STANDARD.encode(&keys.cert.bytes),
        cert_sig: STANDARD.encode(keys.cert.sig),
        body: STANDARD.encode(&bytes),
        sig: STANDARD.encode(sig),
    })?)
}
