//! Compile-time defaults shared by jitd and the modules: every path jit uses is written here
//! once, as a string for jitd's configuration and messages and as a C string (`*_C`) for the
//! modules' `open(2)` calls, which must not allocate (docs/design.md#paths).

use std::ffi::CStr;

/// A path literal with its NUL as a `&CStr`. Only used in `const` items, so it runs at compile
/// time: a literal with an interior NUL fails the build, never a running process.
#[allow(clippy::panic)]
const fn c_path(with_nul: &'static [u8]) -> &'static CStr {
    match CStr::from_bytes_with_nul(with_nul) {
        Ok(c) => c,
        Err(_) => panic!("a path constant holds a NUL byte"),
    }
}

/// Defines, for each entry, `$name: &str` and `$cname: &CStr` from one literal.
macro_rules! paths {
    ($($(#[$doc:meta])* $name:ident, $cname:ident = $lit:literal;)*) => {$(
        $(#[$doc])*
        pub const $name: &str = $lit;
        #[doc = concat!("[`", stringify!($name), "`] as a C string.")]
        pub const $cname: &CStr = c_path(concat!($lit, "\0").as_bytes());
    )*};
}

paths! {
    /// The world-readable snapshot (0644): what NSS and `jit-authorized-keys` need (accounts,
    /// groups, memberships, times, public ssh keys), and nothing more.
    DEFAULT_SNAPSHOT_PATH, DEFAULT_SNAPSHOT_PATH_C = "/run/jitd/snapshot";
    /// The snapshot's directory: the NSS module looks up the change counter jitd keeps for it
    /// (`snapshot::generation`).
    DEFAULT_SNAPSHOT_DIR, DEFAULT_SNAPSHOT_DIR_C = "/run/jitd";
    /// The root-only gates file (0600): the whole image, gate records (sudo scope, `--from`,
    /// `--service`, `--window`, flags) and the managed list included, which pam_jit and sudo_jit
    /// (both running as root) read. jitd writes it next to the snapshot under this file name.
    DEFAULT_GATES_PATH, DEFAULT_GATES_PATH_C = "/run/jitd/gates";
    /// The delta read over the snapshot (format 1.4): what grants added since the snapshot was
    /// written add to it, until jitd writes the next whole one (docs/snapshot-format.md §12).
    DEFAULT_SNAPSHOT_DELTA_PATH, DEFAULT_SNAPSHOT_DELTA_PATH_C = "/run/jitd/snapshot.delta";
    /// The delta read over the gates file, as [`DEFAULT_SNAPSHOT_DELTA_PATH`] (0600 root).
    DEFAULT_GATES_DELTA_PATH, DEFAULT_GATES_DELTA_PATH_C = "/run/jitd/gates.delta";
    /// jitd's local API socket.
    DEFAULT_SOCKET_PATH, DEFAULT_SOCKET_PATH_C = "/run/jitd/jitd.sock";
    /// jitd's configuration file.
    DEFAULT_CONFIG_PATH, DEFAULT_CONFIG_PATH_C = "/etc/jit/jitd.toml";
    /// Durable state directory (0700 root).
    DEFAULT_STATE_DIR, DEFAULT_STATE_DIR_C = "/var/lib/jitd";
    /// The managed-admin list jitd keeps durable (one name per line, root 0644), for pam_jit and
    /// sudo_jit when the snapshot is missing: a managed admin must stay refused then, and the
    /// snapshot lives on tmpfs while this survives a reboot.
    DEFAULT_MANAGED_LIST, DEFAULT_MANAGED_LIST_C = "/var/lib/jitd/managed-accounts";
    /// Audit trail, one JSON object per line (0600 root).
    DEFAULT_AUDIT_LOG, DEFAULT_AUDIT_LOG_C = "/var/log/jit/audit.jsonl";
    /// The host's account file, read directly (never through NSS) by jitd and the modules.
    DEFAULT_PASSWD_FILE, DEFAULT_PASSWD_FILE_C = "/etc/passwd";
    /// The host's group file, read directly like [`DEFAULT_PASSWD_FILE`].
    DEFAULT_GROUP_FILE, DEFAULT_GROUP_FILE_C = "/etc/group";
}

/// File name of the gates file, in the snapshot's directory.
pub const GATES_FILE_NAME: &str = "gates";
/// What a delta file's name adds to its base's (`snapshot.delta`, `gates.delta`).
pub const DELTA_SUFFIX: &str = ".delta";
/// Largest delta a reader reads (1 MiB): jitd writes the whole snapshot again long before
/// (docs/snapshot-format.md §12), so a bigger one is not jitd's and is ignored.
pub const MAX_DELTA_BYTES: u64 = 1024 * 1024;
/// Where ephemeral homes are made.
pub const DEFAULT_HOME_ROOT: &str = "/home";
/// Login shell of ephemeral accounts.
pub const DEFAULT_SHELL: &str = "/bin/bash";
/// Reserved id range for ephemeral accounts and jit's own groups.
pub const DEFAULT_UID_MIN: u32 = 70000;
/// Upper end (inclusive) of the reserved id range.
pub const DEFAULT_UID_MAX: u32 = 79999;
/// Longest grant jitd accepts unless configured otherwise (12 h).
pub const DEFAULT_MAX_GRANT_SECS: i64 = 12 * 3600;
/// Socket deadline for module and jitctl calls.
pub const DEFAULT_SOCKET_TIMEOUT_MS: u64 = 2000;

/// Group listing every live ephemeral account.
pub const GROUP_JIT_USERS: &str = "jit-users";
/// Group listing every user with a live sudo scope.
pub const GROUP_JIT_SUDO: &str = "jit-sudo";
/// Group listing every user whose login needs a TOTP code.
pub const GROUP_JIT_MFA: &str = "jit-mfa";

/// Longest user or group name accepted anywhere (bytes, ASCII).
pub const MAX_NAME_LEN: usize = 32;
/// The most a reader copies from a snapshot file at once: the whole file (one without the
/// lookup index, or the gates file for a jit user), its base or accounts region, or a shard
/// (docs/snapshot-format.md §6.1). 64 MiB: the public snapshot of ~57 000 ordinary grants.
pub const MAX_SNAPSHOT_BYTES: u64 = 64 * 1024 * 1024;
/// The largest snapshot file a reader opens at all. Only a file with the lookup index can be
/// larger than [`MAX_SNAPSHOT_BYTES`] and still be used: readers copy bounded parts of it.
pub const MAX_SNAPSHOT_FILE_BYTES: u64 = 256 * 1024 * 1024;
/// Longest string stored in the snapshot (ssh keys are the long ones).
pub const MAX_SNAPSHOT_STRING: usize = 16 * 1024;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn c_strings_equal_the_strings() {
        for (s, c) in [
            (DEFAULT_SNAPSHOT_PATH, DEFAULT_SNAPSHOT_PATH_C),
            (DEFAULT_SNAPSHOT_DIR, DEFAULT_SNAPSHOT_DIR_C),
            (DEFAULT_GATES_PATH, DEFAULT_GATES_PATH_C),
            (DEFAULT_SNAPSHOT_DELTA_PATH, DEFAULT_SNAPSHOT_DELTA_PATH_C),
            (DEFAULT_GATES_DELTA_PATH, DEFAULT_GATES_DELTA_PATH_C),
            (DEFAULT_SOCKET_PATH, DEFAULT_SOCKET_PATH_C),
            (DEFAULT_CONFIG_PATH, DEFAULT_CONFIG_PATH_C),
            (DEFAULT_STATE_DIR, DEFAULT_STATE_DIR_C),
            (DEFAULT_MANAGED_LIST, DEFAULT_MANAGED_LIST_C),
            (DEFAULT_AUDIT_LOG, DEFAULT_AUDIT_LOG_C),
            (DEFAULT_PASSWD_FILE, DEFAULT_PASSWD_FILE_C),
            (DEFAULT_GROUP_FILE, DEFAULT_GROUP_FILE_C),
        ] {
            assert_eq!(c.to_str(), Ok(s));
        }
        assert_eq!(
            format!("{DEFAULT_SNAPSHOT_PATH}{DELTA_SUFFIX}"),
            DEFAULT_SNAPSHOT_DELTA_PATH
        );
        assert_eq!(
            format!("{DEFAULT_GATES_PATH}{DELTA_SUFFIX}"),
            DEFAULT_GATES_DELTA_PATH
        );
        let dir = std::path::Path::new(DEFAULT_SNAPSHOT_PATH).parent();
        assert_eq!(dir, Some(std::path::Path::new(DEFAULT_SNAPSHOT_DIR)));
        assert_eq!(
            dir.map(|d| d.join(GATES_FILE_NAME)),
            Some(DEFAULT_GATES_PATH.into())
        );
    }
}
