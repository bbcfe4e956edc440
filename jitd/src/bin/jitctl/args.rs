//! Value parsers for jitctl's options: each option is checked here, with jit_core's own parser
//! (the one jitd and the modules use), before anything is sent to jitd, so a typo is a usage
//! error (exit 2) that names the option rather than a refusal from the daemon.

use jit_core::policy::classify::{class_names, parse_class, CLASS_ALL};
use jit_core::policy::net::parse_cidr;
use jit_core::policy::window::parse_window;
use jit_core::time::parse_duration;

/// The longest `--timeout`: a day is longer than any teardown jitd waits for.
const MAX_TIMEOUT_SECS: u64 = 86_400;

/// A duration (`90s`, `30m`, `2h`, `1h30m`) in seconds. A leading `-` is read as a value (the
/// options using this set `allow_hyphen_values`) so `--for -5m` is told why, not how to pass
/// a value that starts with a dash.
pub fn duration(s: &str) -> Result<i64, String> {
    if s.trim_start().starts_with('-') {
        return Err(format!(
            "a duration cannot be negative ({s:?}): use a number with a unit, e.g. 90s, 30m, 2h, 1h30m"
        ));
    }
    parse_duration(s).map_err(|e| e.to_string())
}

/// `--timeout`: whole seconds, at least 1 (0 would give up before asking).
pub fn timeout(s: &str) -> Result<u64, String> {
    match s.trim().parse::<u64>() {
        Ok(n) if (1..=MAX_TIMEOUT_SECS).contains(&n) => Ok(n),
        _ => Err(format!(
            "expected whole seconds from 1 to {MAX_TIMEOUT_SECS}, e.g. 30"
        )),
    }
}

/// `--revoke-on`: one of the revocation classes.
pub fn revoke_class(s: &str) -> Result<String, String> {
    // lateral-movement is seen by jitd's process monitor, not the command classifier.
    if s == "lateral-movement" {
        return Ok(s.to_string());
    }
    match parse_class(s) {
        Some(_) => Ok(s.to_string()),
        None => Err(format!(
            "unknown class: use {} or lateral-movement",
            class_names(CLASS_ALL).join(", ")
        )),
    }
}

/// `--from`: an address or a network (`10.0.0.0/8`, `2001:db8::/32`, `192.0.2.7`).
pub fn cidr(s: &str) -> Result<String, String> {
    parse_cidr(s)
        .map(|_| s.to_string())
        .map_err(|e| e.to_string())
}

/// `--window`: a login time window (`Mon-Fri 09:00-18:00`).
pub fn window(s: &str) -> Result<String, String> {
    parse_window(s)
        .map(|_| s.to_string())
        .map_err(|e| e.to_string())
}

/// `--cap`: a Linux capability name (`CAP_NET_RAW`, `net_raw`), made canonical.
pub fn capability(s: &str) -> Result<String, String> {
    let n = jit_core::caps::parse(s).map_err(|e| e.to_string())?;
    jit_core::caps::name(n)
        .map(str::to_string)
        .ok_or_else(|| format!("{s:?} is not a Linux capability"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(duration("1h30m"), Ok(5400));
        assert!(duration("-5m").is_err_and(|e| e.contains("negative")));
        assert!(duration("90").is_err());
        assert!(duration("0s").is_err());
    }

    #[test]
    fn timeouts() {
        assert_eq!(timeout("30"), Ok(30));
        assert!(timeout("0").is_err());
        assert!(timeout("86401").is_err());
        assert!(timeout("18446744073709551615").is_err());
        assert!(timeout("-1").is_err());
    }

    #[test]
    fn classes_networks_windows() {
        assert_eq!(revoke_class("ioc").as_deref(), Ok("ioc"));
        assert!(revoke_class("lateral").is_err_and(|e| e.contains("sensitive-read")));
        assert_eq!(cidr("10.0.0.0/8").as_deref(), Ok("10.0.0.0/8"));
        assert!(cidr("10.0.0.0/33").is_err());
        assert!(window("Mon-Fri 09:00-18:00").is_ok());
        assert!(window("Mon-Fri 25:00-18:00").is_err());
    }
}
