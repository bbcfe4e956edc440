//! Which capabilities jitd itself can hand on. A tokenized program gets its capabilities from
//! jitd: the forked child narrows its bounding set (CAP_SETPCAP), becomes the person
//! (CAP_SETUID, CAP_SETGID) and raises the granted capabilities into its ambient set, which the
//! kernel allows only for capabilities in jitd's own permitted and bounding sets. Under
//! systemd those are the unit's `CapabilityBoundingSet=`. A grant naming a capability jitd
//! does not hold is refused at admission, in one line, rather than every `jitctl run` failing
//! later; `jitctl status` says the same.

use jit_core::caps;

use crate::config::Config;

/// What starting any tokenized program needs (see `spawn.rs`).
pub const SPAWN_NEEDS: [&str; 3] = ["CAP_SETPCAP", "CAP_SETGID", "CAP_SETUID"];

/// jitd's own permitted and bounding sets as masks (bit n = capability n).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Own {
    /// CapPrm.
    pub permitted: u64,
    /// CapBnd.
    pub bounding: u64,
}

impl Own {
    /// Read from `/proc/self/status` (the same for every thread of jitd).
    ///
    /// # Errors
    /// The file or one of the two lines could not be read.
    pub fn read() -> Result<Own, String> {
        let text = std::fs::read_to_string("/proc/self/status")
            .map_err(|e| format!("/proc/self/status: {e}"))?;
        Own::parse(&text).ok_or_else(|| "/proc/self/status: no CapPrm/CapBnd line".to_string())
    }

    /// Parses the `CapPrm:` and `CapBnd:` lines of a status file.
    pub fn parse(status: &str) -> Option<Own> {
        let field = |key: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(caps::parse_mask)
        };
        Some(Own {
            permitted: field("CapPrm:")?,
            bounding: field("CapBnd:")?,
        })
    }

    /// Whether jitd can give capability number `n` to a child.
    pub fn holds(&self, n: u8) -> bool {
        n < 64 && (self.permitted & self.bounding) & (1u64 << n) != 0
    }

    /// The capabilities [`SPAWN_NEEDS`] names that jitd lacks.
    pub fn spawn_missing(&self) -> Vec<&'static str> {
        SPAWN_NEEDS
            .iter()
            .filter(|c| !caps::parse(c).is_ok_and(|n| self.holds(n)))
            .copied()
            .collect()
    }

    /// Admission's check of one canonical capability name.
    ///
    /// # Errors
    /// The one-line refusal.
    pub fn check(&self, cap: &str) -> Result<(), String> {
        let missing = self.spawn_missing();
        if !missing.is_empty() {
            return Err(format!(
                "tokenization is unavailable on this host: jitd lacks {} (not in its capability bounding set: jitd.service CapabilityBoundingSet=)",
                missing.join(", ")
            ));
        }
        let n = caps::parse(cap).map_err(|e| e.to_string())?;
        if !self.holds(n) {
            return Err(format!(
                "{cap} cannot be granted on this host: it is not in jitd's own capability bounding set (add it to jitd.service's CapabilityBoundingSet= with a drop-in)"
            ));
        }
        Ok(())
    }

    /// The `tokenization:` line of `jitctl status`: whether `jitctl run` can work at all, and
    /// which capabilities policy would allow but jitd cannot hand on.
    pub fn describe(&self, cfg: &Config) -> String {
        let missing = self.spawn_missing();
        if !missing.is_empty() {
            return format!(
                "unavailable: jitd lacks {} (its capability bounding set); --cap grants are refused",
                missing.join(", ")
            );
        }
        let not_held: Vec<&str> = (0..64u8)
            .filter_map(caps::name)
            .filter(|name| {
                caps::root_equivalent(name).is_none() || cfg.allow_caps.iter().any(|a| a == name)
            })
            .filter(|name| caps::parse(name).is_ok_and(|n| !self.holds(n)))
            .collect();
        if not_held.is_empty() {
            "available".to_string()
        } else {
            format!(
                "available; outside jitd's capability bounding set, so refused at grant: {}",
                not_held.join(", ")
            )
        }
    }
}

/// Admission's default check: jitd's own sets, read now.
///
/// # Errors
/// The one-line refusal, or why the sets could not be read.
pub fn check_self(cap: &str) -> Result<(), String> {
    Own::read()?.check(cap)
}

/// The status line, from jitd's own sets read now.
pub fn describe_self(cfg: &Config) -> String {
    match Own::read() {
        Ok(o) => o.describe(cfg),
        Err(e) => format!("unknown ({e})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: u64 = 0x1ff_ffff_ffff;

    #[test]
    fn parses_the_status_lines() {
        let s = "Name:\tjitd\nCapInh:\t0000000000000000\nCapPrm:\t00000000000004c0\nCapEff:\t00000000000004c0\nCapBnd:\t00000000000005c0\n";
        let o = Own::parse(s).unwrap();
        assert_eq!(o.permitted, 0x4c0);
        assert_eq!(o.bounding, 0x5c0);
        assert!(Own::parse("CapPrm:\t00\n").is_none());
        assert!(Own::parse("CapPrm:\tzz\nCapBnd:\t00\n").is_none());
    }

    #[test]
    fn a_capability_outside_the_bounding_set_is_refused_in_one_line() {
        let no_raw = Own {
            permitted: FULL & !(1 << 13),
            bounding: FULL & !(1 << 13),
        };
        assert!(no_raw.check("CAP_NET_BIND_SERVICE").is_ok());
        let e = no_raw.check("CAP_NET_RAW").unwrap_err();
        assert!(e.contains("CAP_NET_RAW") && e.contains("bounding set") && !e.contains('\n'));
        let cfg = Config::defaults().unwrap();
        let d = no_raw.describe(&cfg);
        assert!(
            d.starts_with("available;") && d.contains("CAP_NET_RAW"),
            "{d}"
        );
        // Root-equivalent ones are not listed unless allowed (policy refuses them anyway).
        assert!(!d.contains("CAP_SYS_ADMIN"), "{d}");
        // Permitted but outside the bounding set (or the other way) is not enough.
        let half = Own {
            permitted: FULL,
            bounding: FULL & !(1 << 10),
        };
        assert!(half.check("CAP_NET_BIND_SERVICE").is_err());
    }

    #[test]
    fn without_setuid_setgid_setpcap_tokenization_is_unavailable() {
        let hardened = Own {
            permitted: (1 << 10) | (1 << 13),
            bounding: (1 << 10) | (1 << 13),
        };
        let e = hardened.check("CAP_NET_RAW").unwrap_err();
        assert!(
            e.contains("tokenization is unavailable")
                && e.contains("CAP_SETUID")
                && e.contains("CAP_SETPCAP"),
            "{e}"
        );
        assert!(hardened
            .describe(&Config::defaults().unwrap())
            .starts_with("unavailable"));
        let all = Own {
            permitted: FULL,
            bounding: FULL,
        };
        assert_eq!(all.describe(&Config::defaults().unwrap()), "available");
    }
}
