//! Small shared helpers: clock, random tokens and ids, hashing, name rules.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// Wall clock in Unix seconds (the one place the server reads it outside tests' control).
pub fn now() -> i64 {
    jit_core::time::now()
}

/// `n` random bytes from the kernel (jit_core's one getrandom(2) helper, as jitd uses).
pub fn random_bytes<const N: usize>() -> Result<[u8; N]> {
    let mut b = [0u8; N];
    jit_core::host::random::fill(&mut b).map_err(|e| Error::internal(format!("getrandom: {e}")))?;
    Ok(b)
}

/// A random identifier `prefix-` + 16 hex digits.
pub fn new_id(prefix: &str) -> Result<String> {
    Ok(format!("{prefix}-{}", hex(&random_bytes::<8>()?)))
}

/// A bearer secret: prefix + 256 random bits in hex.
pub fn new_secret(prefix: &str) -> Result<String> {
    Ok(format!("{prefix}_{}", hex(&random_bytes::<32>()?)))
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Secrets are stored as their SHA-256 only: 256 random bits need no slow hash.
pub fn sha256_hex(b: &[u8]) -> String {
    hex(&Sha256::digest(b))
}

/// The identity key of a person: one person is counted once however their name is spelled.
pub fn person_key(name: &str) -> String {
    name.to_lowercase()
}

/// Account-style names for people and groups (they become account and group names on hosts).
pub fn valid_account_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 32
        && (b[0].is_ascii_lowercase() || b[0] == b'_')
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_' || *c == b'-')
}

/// Host, role and label names: `[a-z0-9][a-z0-9._-]*`, at most 64 bytes.
pub fn valid_object_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 64
        && b[0].is_ascii_alphanumeric()
        && b.iter().all(|c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'.' | b'_' | b'-')
        })
}

/// Parses `k=v` label arguments (both parts object names).
pub fn parse_labels(args: &[String]) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for a in args {
        let (k, v) = a
            .split_once('=')
            .ok_or_else(|| Error::bad(format!("label {a:?} is not k=v")))?;
        if !valid_object_name(k) || !valid_object_name(v) {
            return Err(Error::bad(format!(
                "label {a:?}: names are [a-z0-9._-], 64 bytes at most"
            )));
        }
        if out.insert(k.to_string(), v.to_string()).is_some() {
            return Err(Error::bad(format!("label {k:?} given twice")));
        }
    }
    Ok(out)
}

/// A selector matches when every one of its labels is set to the same value on the host. An
/// empty selector is never used to mean "all": callers refuse it before matching.
pub fn selector_matches(sel: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    sel.iter().all(|(k, v)| labels.get(k) == Some(v))
}
