//! The options on pam_jit's pam.d line: `timeout=N` and `debug`, parsed by
//! [`jit_core::options`] (shared with sudo_jit). Broken options make every hook refuse jit and
//! managed identities and still answer `PAM_IGNORE` for everyone else; the bad word is logged
//! at every call, as Linux-PAM's own modules do.

pub use jit_core::options::{Options, DEFAULT_TIMEOUT, MAX_TIMEOUT_MS, MIN_TIMEOUT_MS};

/// Parses the words of the pam.d line.
pub fn parse(words: &[&[u8]]) -> Options {
    jit_core::options::parse(words, "module option")
}
