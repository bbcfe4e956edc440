//! Compile-time defaults shared by jitd and the modules (INTERFACE.md "Paths").

/// The world-readable snapshot (0644): what NSS and `jit-authorized-keys` need (accounts,
/// groups, memberships, times, public ssh keys), and nothing more.
pub const DEFAULT_SNAPSHOT_PATH: &str = "/run/jitd/snapshot";
/// The root-only gates file (0600): the whole image, gate records (sudo scope, `--from`,
/// `--service`, `--window`, flags) and the managed list included, which pam_jit and sudo_jit
/// (both running as root) read. jitd writes it next to the snapshot under this file name.
pub const DEFAULT_GATES_PATH: &str = "/run/jitd/gates";
/// File name of the gates file, in the snapshot's directory.
pub const GATES_FILE_NAME: &str = "gates";
/// jitd's local API socket.
pub const DEFAULT_SOCKET_PATH: &str = "/run/jitd/jitd.sock";
/// jitd's configuration file.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/jit/jitd.toml";
/// Durable state directory (0700 root).
pub const DEFAULT_STATE_DIR: &str = "/var/lib/jitd";
/// The managed-admin list jitd keeps durable (one name per line, root 0644), for pam_jit and
/// sudo_jit when the snapshot is missing: a managed admin must stay refused then (§3.3), and the
/// snapshot lives on tmpfs while this survives a reboot.
pub const DEFAULT_MANAGED_LIST: &str = "/var/lib/jitd/managed-accounts";
/// Audit trail, one JSON object per line (0600 root).
pub const DEFAULT_AUDIT_LOG: &str = "/var/log/jit/audit.jsonl";
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
/// Largest snapshot a reader will map (64 MiB: far above 10 000 grants).
pub const MAX_SNAPSHOT_BYTES: u64 = 64 * 1024 * 1024;
/// Longest string stored in the snapshot (ssh keys are the long ones).
pub const MAX_SNAPSHOT_STRING: usize = 16 * 1024;
