//! The options on sudo_jit's `Plugin` line in /etc/sudo.conf (`timeout=2 debug`).
//!
//! Any option that does not parse makes the plugin *broken*: it stays loaded and refuses every
//! jit user (root and non-jit users are still approved). It never disables itself (docs/design.md#traps).

pub use jit_core::options::{Options, DEFAULT_TIMEOUT};

/// Parses the words of the sudo.conf line.
pub fn parse(words: &[&[u8]]) -> Options {
    jit_core::options::parse(words, "plugin option")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn good_and_bad_options() {
        let o = parse(&[b"timeout=5", b"debug"]);
        assert_eq!(o.timeout, Duration::from_secs(5));
        assert!(o.debug && o.broken.is_none());
        assert_eq!(parse(&[]), Options::default());
        for bad in [
            &b"timeout=0"[..],
            b"timeout=31",
            b"timeout=-1",
            b"timeout=",
            b"bypass",
            b"Debug",
            b"\xff",
        ] {
            assert!(parse(&[bad]).broken.is_some(), "{bad:?}");
        }
        assert!(parse(&[b"timeout=2", b"timeout=3"]).broken.is_some());
        assert!(parse(&[b"bypass"])
            .broken
            .unwrap()
            .contains("unknown plugin option"));
    }
}
