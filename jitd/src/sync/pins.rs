//! The TLS pin set: jitd learns the server's next TLS certificate from the server it already
//! trusts, so `jit-server key tls-next` / `tls-promote` need no re-enrolment.
//!
//! `GET /v1/host/tls?nonce=N` (a signed host call over the currently pinned connection) answers
//! a pin document signed like the state document (root-certified online key, its own signature
//! domain); `jit_proto::state_doc::verify_pins` checks it (signatures over the raw bytes before
//! parsing, host name and key, nonce, expiry). The pin set becomes `{current, next}` and is
//! written durably (the enrolment file: write, fsync, rename) before any connection uses it.
//! Only the root-certified online key can change the set: someone holding the TLS key alone, or
//! someone on the path, can neither add a pin nor strip the next one without the document
//! failing verification (a refused document changes nothing and is audited).

use jit_core::time::UnixTime;
use jit_proto::state_doc::verify_pins;
use serde_json::json;

use super::apply::GrantSink;
use super::client::HostClient;
use super::state::{Enrolment, LinkStore};
use crate::audit::Event;
use crate::remote::client::CallError;

/// Longest time between two fetches of the pin set.
pub const PINS_EVERY_MAX: i64 = 3600;

/// Fetches, verifies and stores the pin set. Returns whether it changed.
///
/// # Errors
/// The call failed, the document was refused (audited), or the new set could not be stored
/// (then the old set stays in use).
pub fn refresh(
    sink: &dyn GrantSink,
    store: &LinkStore,
    e: &Enrolment,
    client: &HostClient,
    now: UnixTime,
) -> Result<bool, String> {
    let nonce = super::client::nonce()?;
    let raw = client.tls_pins(&nonce).map_err(|e| match e {
        CallError::Refused(c, m) => format!("server refused the pin-set call ({c}): {m}"),
        CallError::Unreachable(m) => format!("server unreachable: {m}"),
    })?;
    let body = match verify_pins(&raw, &e.pins()?, now, &nonce) {
        Ok(b) => b,
        Err(err) => {
            sink.record(
                now,
                true,
                Event::SyncPinsRefused,
                json!({ "error": err.to_string(), "bytes": raw.len() }),
            );
            return Err(format!("TLS pin document refused: {err}"));
        }
    };
    let mut set = vec![body.current.clone()];
    if let Some(n) = body.next.filter(|n| *n != body.current) {
        set.push(n);
    }
    if set == e.tls_pins {
        return Ok(false);
    }
    let updated = Enrolment {
        tls_pins: set.clone(),
        ..e.clone()
    };
    store
        .save_enrolment(&updated)
        .map_err(|err| format!("cannot store the new TLS pin set, keeping the old: {err}"))?;
    sink.record(
        now,
        false,
        Event::SyncTlsPins,
        json!({ "previous": e.tls_pins, "current": body.current, "next": set.get(1) }),
    );
    Ok(true)
}
