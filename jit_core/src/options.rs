//! The options on a module's configuration line (pam_jit's pam.d line, sudo_jit's sudo.conf
//! line): `timeout=SECONDS` and `debug`, nothing else.
//!
//! They are the modules' only configuration (no file, no environment variable: the person
//! logging in may control the environment of `su` and `sudo`). An option that does not parse
//! makes the options *broken*: the module then refuses jit and managed identities and leaves
//! everyone else alone, so a typo can neither open jit access nor lock out root and local
//! users.

use std::time::Duration;

/// Shortest socket deadline accepted (milliseconds).
pub const MIN_TIMEOUT_MS: u64 = 100;
/// Longest socket deadline accepted (milliseconds): sshd's `LoginGraceTime` is far above it.
pub const MAX_TIMEOUT_MS: u64 = 30_000;
/// Default socket deadline.
pub const DEFAULT_TIMEOUT: Duration =
    Duration::from_millis(crate::constants::DEFAULT_SOCKET_TIMEOUT_MS);

/// Parsed module options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// Deadline of each call to jitd (connect, send, answer).
    pub timeout: Duration,
    /// More log lines (what each module logs is in its manual page).
    pub debug: bool,
    /// Why the options are unusable, if they are.
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

/// `N`, `N.F`, `N.FF` or `N.FFF` seconds to milliseconds: plain digits, at most three
/// decimals (no sign, exponent, `inf` or `nan`, which a float parser would take).
fn parse_seconds(v: &str) -> Option<u64> {
    let (int, frac) = match v.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (v, None),
    };
    let digits = |s: &str, max: usize| {
        !s.is_empty() && s.len() <= max && s.bytes().all(|b| b.is_ascii_digit())
    };
    if !digits(int, 5) {
        return None;
    }
    let mut ms = int.parse::<u64>().ok()?.checked_mul(1000)?;
    if let Some(f) = frac {
        if !digits(f, 3) {
            return None;
        }
        let scale = match f.len() {
            1 => 100,
            2 => 10,
            _ => 1,
        };
        ms = ms.checked_add(f.parse::<u64>().ok()?.checked_mul(scale)?)?;
    }
    Some(ms)
}

/// Parses the option words; `what` names them in messages (`module option`, `plugin option`).
/// The first bad word marks the options broken; later words are still read (so `debug` helps
/// to diagnose the bad one). A repeated `timeout=` is bad: two values mean someone edited the
/// line and only one of them was meant.
pub fn parse(words: &[&[u8]], what: &str) -> Options {
    let mut o = Options::default();
    let mut seen_timeout = false;
    for w in words {
        let Ok(w) = std::str::from_utf8(w) else {
            o.broken
                .get_or_insert_with(|| "an option is not UTF-8".to_string());
            continue;
        };
        let shown = crate::validate::escape_for_display(&w.chars().take(64).collect::<String>());
        if w == "debug" {
            o.debug = true;
        } else if let Some(v) = w.strip_prefix("timeout=") {
            match parse_seconds(v) {
                Some(ms) if (MIN_TIMEOUT_MS..=MAX_TIMEOUT_MS).contains(&ms) && !seen_timeout => {
                    o.timeout = Duration::from_millis(ms);
                    seen_timeout = true;
                }
                _ => {
                    o.broken.get_or_insert_with(|| {
                        format!("bad {what} {shown} (timeout is 0.1 to 30 seconds, once)")
                    });
                }
            }
        } else {
            o.broken
                .get_or_insert_with(|| format!("unknown {what} {shown}"));
        }
    }
    o
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn p(words: &[&str]) -> Options {
        let w: Vec<&[u8]> = words.iter().map(|s| s.as_bytes()).collect();
        parse(&w, "module option")
    }

    #[test]
    fn defaults() {
        assert_eq!(p(&[]), Options::default());
        assert_eq!(Options::default().timeout, Duration::from_secs(2));
        assert!(!Options::default().debug);
    }

    #[test]
    fn good_options() {
        let o = p(&["timeout=5", "debug"]);
        assert_eq!(o.timeout, Duration::from_secs(5));
        assert!(o.debug && o.broken.is_none());
        for (w, ms) in [
            ("timeout=0.5", 500),
            ("timeout=0.1", 100),
            ("timeout=0.25", 250),
            ("timeout=1.125", 1125),
            ("timeout=30", 30_000),
            ("timeout=30.0", 30_000),
            ("timeout=30.000", 30_000),
            ("timeout=2", 2000),
            ("timeout=02", 2000),
        ] {
            let o = p(&[w]);
            assert_eq!(o.broken, None, "{w}");
            assert_eq!(o.timeout, Duration::from_millis(ms), "{w}");
        }
    }

    #[test]
    fn bad_options() {
        for bad in [
            "timeout=0",
            "timeout=0.0",
            "timeout=0.099",
            "timeout=0.09",
            "timeout=30.001",
            "timeout=31",
            "timeout=99999",
            "timeout=999999999999999999999",
            "timeout=-1",
            "timeout=+1",
            "timeout=",
            "timeout=.5",
            "timeout=5.",
            "timeout=0.1234",
            "timeout=1e1",
            "timeout=inf",
            "timeout=nan",
            "timeout=2s",
            "timeout= 2",
            "timeout=２",
            "Timeout=2",
            "timeout",
            "debug=1",
            "Debug",
            "nullok",
            "use_first_pass",
            "socket=/tmp/x",
            "",
        ] {
            let o = p(&[bad]);
            assert!(o.broken.is_some(), "{bad:?} accepted");
        }
        let o = parse(&[b"\xff"], "module option");
        assert!(o.broken.is_some());
        assert!(p(&["timeout=2", "timeout=3"]).broken.is_some());
    }

    #[test]
    fn first_problem_is_kept_and_later_words_still_read() {
        let o = p(&["bogus", "timeout=99", "debug"]);
        assert!(o.debug);
        let why = o.broken.unwrap();
        assert!(why.contains("\"bogus\""), "{why}");
        // The bad value is escaped in the log line.
        let o = p(&["x\x1b[2J"]);
        assert!(!o.broken.unwrap().contains('\x1b'));
    }
}
