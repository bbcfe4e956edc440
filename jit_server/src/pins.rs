//! The TLS pin set a host keeps: the server's current TLS certificate and, once prepared, the
//! next one. Published in a document signed like the state document (root-certified online
//! key), so a host learns the next TLS key from the server it already trusts and the TLS key
//! can be replaced without re-enrolling any host.
//!
//! Wire form: `{"cert","cert_sig","body","sig"}`, four base64 strings, the first two exactly as
//! in the state document; `sig` is the certified online key's ed25519 signature over
//! `"jit-tls-pins-v1\0" || body bytes`. The body: `{"version":1,"host","host_key","current",
//! "next","nonce","server_time","expires_at"}` (`next` is null when none is prepared). The type,
//! the signing and jitd's verifier are one definition in `jit_proto::state_doc`.

pub use jit_proto::state_doc::{PinsBody, PINS_DOMAIN};

use crate::error::{Error, Result};
use crate::keys::ServerKeys;

/// Signs the pin set for one host's call.
pub fn sign_pins(keys: &ServerKeys, body: &PinsBody) -> Result<Vec<u8>> {
    jit_proto::state_doc::sign_pins(&keys.online, &keys.cert, body)
        .map_err(|e| Error::internal(format!("signing the pin set: {e}")))
}
