//! The options on sudo_jit's `Plugin` line in /etc/sudo.conf (`timeout=2 debug`).
//!
//! Any option that does not parse makes the plugin *broken*: it stays loaded and refuses every
//! jit user (root and non-jit users are still approved). It never disables itself (DESIGN §5).

use std::time::Duration;

/// Longest socket deadline accepted for calls to jitd.
pub const MAX_TIMEOUT_SECS: u64 = 30;
/// Default socket deadline.
pub const DEFAULT_TIMEOUT: Duration =
    Duration::from_millis(jit_core::constants::DEFAULT_SOCKET_TIMEOUT_MS);

/// Parsed plugin options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// Deadline of each call to jitd: the confirmation of an approval, a step-up code's
    /// verification, the best-effort report of a denial.
    pub timeout: Duration,
    /// Log failed calls to jitd to syslog authpriv.
    pub debug: bool,
    /// Why the options are unusable, if they are: every jit user is refused.
    pub broken: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            timeout: DEFAULT_TIMEOUT,
            debug: false,
            broken: None,
        }
    }
}

/// Parses the option words. The first bad word marks the options broken; later words are
/// still read (so `debug` works for diagnosing the bad one).
pub fn parse(words: &[&[u8]]) -> Options {
    let mut o = Options::default();
    let mut seen_timeout = false;
    for w in words {
        let Ok(w) = std::str::from_utf8(w) else {
            o.broken
                .get_or_insert_with(|| "an option is not UTF-8".to_string());
            continue;
        };
        let shown = jit_core::validate::escape_for_display(&w.chars().take(64).collect::<String>());
        if w == "debug" {
            o.debug = true;
        } else if let Some(v) = w.strip_prefix("timeout=") {
            match v.parse::<u64>() {
                Ok(n) if (1..=MAX_TIMEOUT_SECS).contains(&n) && !seen_timeout => {
                    o.timeout = Duration::from_secs(n);
                    seen_timeout = true;
                }
                _ => {
                    o.broken
                        .get_or_insert_with(|| format!("bad plugin option {shown}"));
                }
            }
        } else {
            o.broken
                .get_or_insert_with(|| format!("unknown plugin option {shown}"));
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

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
    }
}
