//! Linux capability names for tokenization grants (`jitctl grant add --cap`): the kernel's
//! numbers, the spelling accepted (`CAP_NET_BIND_SERVICE`, `net_bind_service`), and the set
//! that amounts to root, refused unless the operator allows one by name. Pure: jitd checks
//! grants with it and builds the capability masks it hands to the kernel from it.

/// Every capability the kernel headers of Linux 6.x name, by number (index = number).
pub const NAMES: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// Capabilities that amount to root (or to reading root's secrets), with the one-line reason
/// a refusal gives. Refused by jitd unless `allow_caps` names one.
pub const ROOT_EQUIVALENT: &[(&str, &str)] = &[
    ("CAP_CHOWN", "takes ownership of any file"),
    ("CAP_DAC_OVERRIDE", "writes any file (/etc/shadow, sudoers)"),
    (
        "CAP_DAC_READ_SEARCH",
        "reads any file (/etc/shadow, host keys, jitd's secrets)",
    ),
    ("CAP_FOWNER", "changes the mode of any file"),
    ("CAP_FSETID", "keeps set-id bits on files it changes"),
    ("CAP_KILL", "signals any process, jitd included"),
    ("CAP_SETGID", "becomes any group"),
    ("CAP_SETUID", "becomes any user, root included"),
    ("CAP_SETPCAP", "hands capabilities on"),
    ("CAP_SYS_MODULE", "loads kernel code"),
    ("CAP_SYS_RAWIO", "reads and writes raw memory and devices"),
    ("CAP_SYS_CHROOT", "builds a root of its own choosing"),
    ("CAP_SYS_PTRACE", "controls any process"),
    ("CAP_SYS_ADMIN", "mounts, namespaces and much more: root"),
    ("CAP_SYS_BOOT", "loads a new kernel (kexec)"),
    ("CAP_MKNOD", "makes device nodes for raw disks"),
    ("CAP_SETFCAP", "writes file capabilities"),
    ("CAP_MAC_OVERRIDE", "bypasses the security module"),
    ("CAP_MAC_ADMIN", "changes the security module's policy"),
    ("CAP_BPF", "loads BPF programs"),
    ("CAP_PERFMON", "observes any process and the kernel"),
    ("CAP_IPC_OWNER", "reads and writes anyone's shared memory"),
];

/// Why a capability name was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapError(pub String);

impl std::fmt::Display for CapError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CapError {}

/// The kernel number of a capability name. Accepts `CAP_NET_RAW`, `cap_net_raw` and
/// `net_raw`; nothing else (no numbers: a typo must not name another capability).
///
/// # Errors
/// An unknown or malformed name.
pub fn parse(name: &str) -> Result<u8, CapError> {
    let shown: String = name.chars().take(40).collect();
    if name.is_empty()
        || name.len() > 40
        || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    {
        return Err(CapError(format!("{shown:?} is not a capability name")));
    }
    let up = name.to_ascii_uppercase();
    let full = if up.starts_with("CAP_") {
        up
    } else {
        format!("CAP_{up}")
    };
    NAMES
        .iter()
        .position(|n| *n == full)
        .and_then(|i| u8::try_from(i).ok())
        .ok_or_else(|| {
            CapError(format!(
                "{shown:?} is not a Linux capability (see capabilities(7))"
            ))
        })
}

/// The canonical name of capability `n` (`CAP_…`), if the kernel headers name it.
pub fn name(n: u8) -> Option<&'static str> {
    NAMES.get(usize::from(n)).copied()
}

/// Why capability `name` (canonical) amounts to root, if it does.
pub fn root_equivalent(name: &str) -> Option<&'static str> {
    ROOT_EQUIVALENT
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, why)| *why)
}

/// A bit mask of capability numbers (bit n = capability n), as /proc/PID/status shows them.
pub fn mask(caps: &[u8]) -> u64 {
    caps.iter()
        .filter(|&&c| c < 64)
        .fold(0u64, |m, &c| m | (1u64 << c))
}

/// Parses a hexadecimal capability mask as /proc/PID/status prints it (`CapEff:\t0000…0400`).
pub fn parse_mask(hex: &str) -> Option<u64> {
    u64::from_str_radix(hex.trim(), 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers() {
        assert_eq!(parse("CAP_NET_BIND_SERVICE"), Ok(10));
        assert_eq!(parse("net_bind_service"), Ok(10));
        assert_eq!(parse("cap_sys_admin"), Ok(21));
        assert_eq!(parse("CAP_CHECKPOINT_RESTORE"), Ok(40));
        assert_eq!(name(13), Some("CAP_NET_RAW"));
        assert_eq!(name(41), None);
        for bad in [
            "",
            "10",
            "CAP_",
            "CAP_NET-RAW",
            "CAP_NOPE",
            "net raw",
            "CAP_NET_RAW\n",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        assert!(parse(&"A".repeat(10_000)).unwrap_err().0.len() < 100);
    }

    #[test]
    fn root_equivalents_are_named_capabilities() {
        for (n, _) in ROOT_EQUIVALENT {
            assert!(NAMES.contains(n), "{n}");
        }
        assert!(root_equivalent("CAP_SYS_ADMIN").is_some());
        assert!(root_equivalent("CAP_NET_BIND_SERVICE").is_none());
        assert!(root_equivalent("CAP_NET_RAW").is_none());
    }

    #[test]
    fn masks() {
        assert_eq!(mask(&[10, 13]), 0x2400);
        assert_eq!(parse_mask("0000000000000400"), Some(0x400));
        assert_eq!(parse_mask("zz"), None);
    }
}
