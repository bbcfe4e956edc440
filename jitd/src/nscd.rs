//! nscd invalidation. nscd caches positive passwd answers for 600 s and group answers for an
//! hour on Debian, so a revoked identity would stay visible; jitd flushes both tables on every
//! change, before it acknowledges the change (docs/threat-model.md: N9, F14).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::config::NscdMode;

/// nscd's socket: present while an nscd serves this mount namespace.
const NSCD_SOCKET: &str = "/run/nscd/socket";

/// Flushes nscd's passwd and group caches if nscd runs. Returns whether nscd was flushed.
/// Bounded: a hung nscd costs at most two seconds per table.
pub fn invalidate(mode: NscdMode) -> bool {
    if mode == NscdMode::Off || !Path::new(NSCD_SOCKET).exists() {
        return false;
    }
    let mut ok = true;
    for table in ["passwd", "group"] {
        let child = Command::new("nscd")
            .args(["-i", table])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let Ok(mut child) = child else {
            ok = false;
            continue;
        };
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            match child.try_wait() {
                Ok(Some(st)) => {
                    ok &= st.success();
                    break;
                }
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5))
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    ok = false;
                    break;
                }
            }
        }
    }
    ok
}

/// nscd's configuration file.
pub const NSCD_CONF: &str = "/etc/nscd.conf";

/// Where an installed nscd lives (Debian, RHEL).
const NSCD_BINARIES: &[&str] = &["/usr/sbin/nscd", "/sbin/nscd", "/usr/bin/nscd"];

/// Whether nscd is installed or serving here.
pub fn present() -> bool {
    Path::new(NSCD_SOCKET).exists() || NSCD_BINARIES.iter().any(|b| Path::new(b).exists())
}

/// The identity tables (`passwd`, `group`) that an nscd.conf text caches. nscd applies its
/// lines in order, so the last `enable-cache` line for a table decides; a table with no line is
/// not cached (nscd's default). Fail-closed: any value other than `no` counts as caching.
pub fn cached_identity_tables(text: &str) -> Vec<&'static str> {
    let mut cached: [Option<bool>; 2] = [None, None];
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("");
        let mut words = line.split_whitespace();
        if words.next() != Some("enable-cache") {
            continue;
        }
        let slot = match words.next() {
            Some("passwd") => 0,
            Some("group") => 1,
            _ => continue,
        };
        cached[slot] = Some(words.next() != Some("no"));
    }
    ["passwd", "group"]
        .into_iter()
        .zip(cached)
        .filter(|(_, c)| *c == Some(true))
        .map(|(t, _)| t)
        .collect()
}

/// `--check-config`: nscd must not cache passwd or group. jitd flushes nscd at every change,
/// but an account's expiry is enforced by the NSS module itself (it checks the time), which
/// nscd's cache bypasses: with jitd stopped at `not_after`, a cached account would keep
/// resolving for nscd's positive time-to-live (600 s for passwd, an hour for group on Debian).
pub fn check_config(conf: &Path, nscd_present: bool, problems: &mut Vec<String>) {
    if !nscd_present {
        return;
    }
    let text = match std::fs::read_to_string(conf) {
        Ok(t) => t,
        // nscd without a configuration file caches nothing.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
        Err(e) => {
            problems.push(format!(
                "nscd is installed and {} is not readable ({e}): cannot check that it does not cache passwd and group",
                conf.display()
            ));
            return;
        }
    };
    let cached = cached_identity_tables(&text);
    if !cached.is_empty() {
        problems.push(format!(
            "nscd caches {} ({}): an expired jit account or membership would keep resolving from nscd's cache whenever jitd is not running to flush it; set `enable-cache passwd no` and `enable-cache group no` in {} (as SSSD advises) and restart nscd",
            cached.join(" and "),
            cached
                .iter()
                .map(|t| format!("enable-cache {t} yes"))
                .collect::<Vec<_>>()
                .join(", "),
            conf.display()
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_tables_cached_by_nscd_conf() {
        let debian = "\tenable-cache\t\tpasswd\t\tyes\n\tenable-cache\t\tgroup\t\tyes\n\tenable-cache\t\thosts\t\tyes\n";
        assert_eq!(cached_identity_tables(debian), ["passwd", "group"]);
        let off = "enable-cache passwd no\nenable-cache group no\nenable-cache hosts yes\n";
        assert!(cached_identity_tables(off).is_empty());
        assert!(cached_identity_tables("# enable-cache passwd yes\n").is_empty());
        assert_eq!(
            cached_identity_tables("enable-cache passwd no\nenable-cache passwd yes\n"),
            ["passwd"],
            "the last line decides"
        );
        assert_eq!(
            cached_identity_tables("enable-cache group maybe\n"),
            ["group"],
            "fail-closed on an odd value"
        );
        assert!(cached_identity_tables("").is_empty(), "nscd's default");
    }

    #[test]
    fn check_names_the_fix() {
        let dir = std::env::temp_dir().join(format!("jitd-nscd-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let conf = dir.join("nscd.conf");
        std::fs::write(&conf, "enable-cache passwd yes\nenable-cache group no\n").unwrap();
        let mut p = Vec::new();
        check_config(&conf, false, &mut p);
        assert!(p.is_empty(), "no nscd, nothing to check");
        check_config(&conf, true, &mut p);
        assert!(
            p.len() == 1
                && p[0].contains("enable-cache passwd no")
                && p[0].contains("enable-cache group no"),
            "{p:?}"
        );
        std::fs::write(&conf, "enable-cache passwd no\n").unwrap();
        let mut p = Vec::new();
        check_config(&conf, true, &mut p);
        assert!(p.is_empty(), "{p:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
