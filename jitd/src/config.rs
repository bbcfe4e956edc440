//! jitd's configuration: `/etc/jit/jitd.toml`, TOML with unknown keys rejected, every key
//! optional (embedded defaults), validated into [`Config`] before anything runs.

use std::path::PathBuf;

use jit_core::constants::*;
use jit_core::time::parse_duration;
use jit_core::validate::{validate_abs_path, validate_name};
use serde::Deserialize;

use crate::mfa::totp::TotpConfig;

/// What to do with an ephemeral account's home at teardown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HomePolicy {
    /// Delete the tree (fd-relative, never following links).
    Remove,
    /// Move it under `<home_root>/.jit-archive/` (root-only).
    Archive,
    /// Leave it; the uid stays reserved for the identity, so its files stay its own.
    Keep,
}

/// Whether to invalidate nscd's caches on every change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NscdMode {
    /// When nscd's socket exists.
    Auto,
    /// Never (for hosts without nscd; a test uses it as the control run).
    Off,
}

/// The file as written.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    version: Option<u32>,
    uid_range: Option<String>,
    home_root: Option<String>,
    home_policy: Option<HomePolicy>,
    skel: Option<String>,
    shell: Option<String>,
    managed_accounts: Option<Vec<String>>,
    max_grant: Option<String>,
    breakglass_for: Option<String>,
    kill_grace: Option<String>,
    ioc_commands: Option<Vec<String>>,
    state_dir: Option<String>,
    snapshot_path: Option<String>,
    socket_path: Option<String>,
    audit_log: Option<String>,
    passwd_file: Option<String>,
    sudo_conf: Option<String>,
    group_file: Option<String>,
    nscd: Option<NscdMode>,
    workers: Option<usize>,
    deny_groups: Option<Vec<String>>,
    allow_groups: Option<Vec<String>>,
    sweep_paths: Option<Vec<String>>,
    groups: Option<RawGroups>,
    server: Option<toml::Value>,
    totp: Option<RawTotp>,
    cgroup_dir: Option<String>,
    certify_suid_roots: Option<Vec<String>>,
    certify_exclude: Option<Vec<String>>,
    sensitive_paths: Option<Vec<String>>,
    lateral_ports: Option<Vec<u16>>,
    monitor_marks: Option<String>,
    allow_caps: Option<Vec<String>>,
    allow_cap_programs: Option<Vec<String>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawTotp {
    window: Option<u8>,
    max_failures: Option<u32>,
    lockout: Option<String>,
    lockout_max: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawGroups {
    users: Option<String>,
    sudo: Option<String>,
    mfa: Option<String>,
}

/// Validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where it was read from (None: embedded defaults).
    pub source: Option<PathBuf>,
    /// First id of the reserved range.
    pub uid_min: u32,
    /// Last id of the reserved range (inclusive). The top three ids are jit's own groups.
    pub uid_max: u32,
    /// Parent of ephemeral homes.
    pub home_root: PathBuf,
    /// Teardown policy for homes.
    pub home_policy: HomePolicy,
    /// Skeleton copied into new homes.
    pub skel: PathBuf,
    /// Login shell.
    pub shell: String,
    /// Managed local admin accounts.
    pub managed_accounts: Vec<String>,
    /// Longest grant, seconds.
    pub max_grant_secs: i64,
    /// Length of the emergency grant one break-glass code opens, seconds.
    pub breakglass_secs: i64,
    /// SIGTERM-to-SIGKILL grace at teardown, milliseconds.
    pub kill_grace_ms: u64,
    /// Extra indicator-of-compromise command patterns (enforced by sudo_jit).
    pub ioc_commands: Vec<String>,
    /// Durable state directory.
    pub state_dir: PathBuf,
    /// Snapshot the modules read.
    pub snapshot_path: PathBuf,
    /// Local API socket.
    pub socket_path: PathBuf,
    /// Audit trail.
    pub audit_log: PathBuf,
    /// Local account database, read directly (never through NSS: no recursion into jit).
    pub passwd_file: PathBuf,
    /// Local group database, read directly.
    pub group_file: PathBuf,
    /// sudo's front-end configuration, checked before a sudo scope is accepted.
    pub sudo_conf: PathBuf,
    /// nscd invalidation.
    pub nscd: NscdMode,
    /// Socket worker threads.
    pub workers: usize,
    /// Name of the group of every live ephemeral account.
    pub group_users: String,
    /// Name of the group of users with a live sudo scope.
    pub group_sudo: String,
    /// Name of the group of users whose login needs TOTP.
    pub group_mfa: String,
    /// TOTP window and lockout.
    pub totp: TotpConfig,
    /// Local groups never granted (root-equivalent): [`DEFAULT_DENY_GROUPS`] plus `deny_groups`,
    /// minus `allow_groups`. Sorted, deduplicated.
    pub deny_groups: Vec<String>,
    /// Directories searched at teardown for set-uid/set-gid files a grantee left behind:
    /// [`DEFAULT_SWEEP_PATHS`], the home root and `sweep_paths`.
    pub sweep_paths: Vec<PathBuf>,
    /// Per-grant cgroups: None = `<cgroup2 mount>/jit.slice`, `off`, or a directory.
    pub cgroup_dir: Option<String>,
    /// Roots of the set-uid/set-gid walk of the certification fingerprint.
    pub certify_suid_roots: Vec<PathBuf>,
    /// Paths the certification fingerprint never walks.
    pub certify_exclude: Vec<PathBuf>,
    /// Files whose opening by a grant's process is `sensitive-read` (besides the defaults).
    pub sensitive_paths: Vec<PathBuf>,
    /// Remote-login ports for `lateral-movement`.
    pub lateral_ports: Vec<u16>,
    /// How the monitor watches writes to account, sudo, key and package files.
    pub monitor_marks: crate::monitor::events::Marks,
    /// Tokenization: root-equivalent capabilities the operator allows in grants (canonical
    /// names; see `jit_core::caps::ROOT_EQUIVALENT`).
    pub allow_caps: Vec<String>,
    /// Tokenization: interpreters, shells or launchers the operator allows as `--program`.
    pub allow_cap_programs: Vec<PathBuf>,
}

/// Groups whose membership is root or close to it on a Debian or RHEL host (raw disks and
/// memory, password hashes, terminals, container and VM daemons that run anything as root,
/// /usr/local on Debian). sudo, adm and wheel are not here: they are what jit grants on
/// purpose, and sudo_jit narrows a sudo grant. An operator adds to the list with
/// `deny_groups` and lifts one entry with `allow_groups`.
pub const DEFAULT_DENY_GROUPS: &[&str] = &[
    "root",
    "shadow",
    "disk",
    "kmem",
    "sys",
    "tty",
    "docker",
    "lxd",
    "libvirt",
    "staff",
    "incus-admin",
];

/// World-writable places every host has, searched at teardown besides the home root.
pub const DEFAULT_SWEEP_PATHS: &[&str] = &["/tmp", "/var/tmp", "/dev/shm"];

/// A configuration problem, with the key it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

fn err(msg: impl Into<String>) -> ConfigError {
    ConfigError(msg.into())
}

fn parse_kill_grace(s: &str) -> Result<u64, ConfigError> {
    let s = s.trim();
    let ms = if let Some(n) = s.strip_suffix("ms") {
        n.parse::<u64>()
            .map_err(|_| err(format!("kill_grace: invalid duration {s:?}")))?
    } else {
        let secs = parse_duration(s).map_err(|e| err(format!("kill_grace: {e}")))?;
        u64::try_from(secs).unwrap_or(u64::MAX).saturating_mul(1000)
    };
    if !(10..=60_000).contains(&ms) {
        return Err(err("kill_grace must be between 10ms and 60s"));
    }
    Ok(ms)
}

fn parse_range(s: &str) -> Result<(u32, u32), ConfigError> {
    let (a, b) = s
        .split_once('-')
        .ok_or_else(|| err(format!("uid_range: expected MIN-MAX, got {s:?}")))?;
    let a: u32 = a
        .trim()
        .parse()
        .map_err(|_| err(format!("uid_range: bad number {a:?}")))?;
    let b: u32 = b
        .trim()
        .parse()
        .map_err(|_| err(format!("uid_range: bad number {b:?}")))?;
    if a < 1000
        || b > i32::MAX as u32
        || b < a + 10
        || (a..=b).contains(&65_534)
        || (a..=b).contains(&65_535)
    {
        return Err(err(format!(
            "uid_range {s:?}: must lie within 1000..2147483647, hold at least 11 ids and exclude 65534 and 65535"
        )));
    }
    Ok((a, b))
}

fn path_key(key: &'static str, v: Option<String>, default: &str) -> Result<PathBuf, ConfigError> {
    let v = v.unwrap_or_else(|| default.to_string());
    validate_abs_path(key, &v).map_err(|e| err(format!("{key}: {e}")))?;
    Ok(PathBuf::from(v))
}

fn group_names(key: &str, v: Option<Vec<String>>) -> Result<Vec<String>, ConfigError> {
    let v = v.unwrap_or_default();
    if v.len() > 256 {
        return Err(err(format!("{key}: at most 256 entries")));
    }
    for g in &v {
        validate_name("group name", g).map_err(|e| err(format!("{key}: {e}")))?;
    }
    Ok(v)
}

/// The built-in deny list plus `deny_groups`, minus `allow_groups`. A name in both keys is a
/// contradiction the operator must resolve, not something to guess about.
fn deny_list(
    deny: Option<Vec<String>>,
    allow: Option<Vec<String>>,
) -> Result<Vec<String>, ConfigError> {
    let deny = group_names("deny_groups", deny)?;
    let allow = group_names("allow_groups", allow)?;
    if let Some(g) = allow.iter().find(|g| deny.contains(g)) {
        return Err(err(format!(
            "{g:?} is in both deny_groups and allow_groups"
        )));
    }
    let mut out: Vec<String> = DEFAULT_DENY_GROUPS
        .iter()
        .map(|s| (*s).to_string())
        .chain(deny)
        .filter(|g| !allow.contains(g))
        .collect();
    out.sort();
    out.dedup();
    Ok(out)
}

/// The default sweep directories, the home root and `sweep_paths` (absolute, not `/`).
fn sweep_list(
    extra: Option<Vec<String>>,
    home_root: &std::path::Path,
) -> Result<Vec<PathBuf>, ConfigError> {
    let extra = extra.unwrap_or_default();
    if extra.len() > 64 {
        return Err(err("sweep_paths: at most 64 entries"));
    }
    let mut out: Vec<PathBuf> = DEFAULT_SWEEP_PATHS.iter().map(PathBuf::from).collect();
    out.push(home_root.to_path_buf());
    for p in extra {
        validate_abs_path("sweep_paths", &p).map_err(|e| err(format!("sweep_paths: {e}")))?;
        if std::path::Path::new(&p) == std::path::Path::new("/") {
            return Err(err(
                "sweep_paths: / is not searched as a whole; name the writable directories",
            ));
        }
        out.push(PathBuf::from(p));
    }
    out.dedup();
    Ok(out)
}

/// The monitoring and certification keys: `cgroup_dir` is `off` or an absolute path; the walk
/// lists hold absolute paths (at most 64 each).
type MonitorKeys = (Option<String>, Vec<PathBuf>, Vec<PathBuf>);

fn monitor_keys(
    cgroup_dir: Option<String>,
    roots: Option<Vec<String>>,
    exclude: Option<Vec<String>>,
) -> Result<MonitorKeys, ConfigError> {
    if let Some(d) = &cgroup_dir {
        if d != "off" {
            validate_abs_path("cgroup_dir", d).map_err(|e| err(format!("cgroup_dir: {e}")))?;
        }
    }
    let list = |key: &'static str, v: Vec<String>| -> Result<Vec<PathBuf>, ConfigError> {
        if v.len() > 64 {
            return Err(err(format!("{key}: at most 64 entries")));
        }
        v.into_iter()
            .map(|p| {
                validate_abs_path(key, &p).map_err(|e| err(format!("{key}: {e}")))?;
                Ok(PathBuf::from(p))
            })
            .collect()
    };
    Ok((
        cgroup_dir,
        list(
            "certify_suid_roots",
            roots.unwrap_or_else(|| vec!["/".to_string()]),
        )?,
        list("certify_exclude", exclude.unwrap_or_default())?,
    ))
}

impl Config {
    /// The embedded defaults (docs/design.md#paths).
    ///
    /// # Errors
    /// Never in practice; the defaults are valid.
    pub fn defaults() -> Result<Config, ConfigError> {
        Self::from_raw(RawConfig::default(), None)
    }

    /// Parses and validates TOML text.
    ///
    /// # Errors
    /// Syntax errors, unknown keys, invalid values.
    pub fn parse(text: &str, source: Option<PathBuf>) -> Result<Config, ConfigError> {
        let raw: RawConfig =
            toml::from_str(text).map_err(|e| err(format!("{}", e).trim_end().to_string()))?;
        Self::from_raw(raw, source)
    }

    /// Reads `path`. A missing file at the default path means embedded defaults; a missing file
    /// named explicitly is an error.
    ///
    /// # Errors
    /// Unreadable or invalid file.
    pub fn load(path: &std::path::Path, explicit: bool) -> Result<Config, ConfigError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(&text, Some(path.to_path_buf()))
                .map_err(|e| err(format!("{}: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => Self::defaults(),
            Err(e) => Err(err(format!("{}: {e}", path.display()))),
        }
    }

    fn from_raw(raw: RawConfig, source: Option<PathBuf>) -> Result<Config, ConfigError> {
        if let Some(v) = raw.version {
            if v != 1 {
                return Err(err(format!("version = {v}: this jitd reads version 1")));
            }
        }
        if raw.server.is_some() {
            return Err(err(
                "[server]: syncing with a central service is not supported yet; remove the section",
            ));
        }
        let totp = {
            let t = raw.totp.unwrap_or_default();
            let d = TotpConfig::default();
            let secs = |key: &str, v: Option<String>, def: i64| -> Result<i64, ConfigError> {
                match v {
                    Some(s) => parse_duration(&s).map_err(|e| err(format!("totp.{key}: {e}"))),
                    None => Ok(def),
                }
            };
            let c = TotpConfig {
                window_steps: t.window.unwrap_or(d.window_steps),
                max_failures: t.max_failures.unwrap_or(d.max_failures),
                lockout_base_secs: secs("lockout", t.lockout, d.lockout_base_secs)?,
                lockout_max_secs: secs("lockout_max", t.lockout_max, d.lockout_max_secs)?,
            };
            c.validate().map_err(|e| err(format!("[totp]: {e}")))?;
            c
        };
        let (uid_min, uid_max) = parse_range(raw.uid_range.as_deref().unwrap_or("70000-79999"))?;
        let home_root = path_key("home_root", raw.home_root, DEFAULT_HOME_ROOT)?;
        if home_root == std::path::Path::new("/") {
            return Err(err("home_root must not be /"));
        }
        let shell = raw.shell.unwrap_or_else(|| DEFAULT_SHELL.to_string());
        validate_abs_path("shell", &shell).map_err(|e| err(format!("shell: {e}")))?;
        let mut managed = raw.managed_accounts.unwrap_or_default();
        for m in &managed {
            if m == "root" {
                return Err(err(
                    "managed_accounts: root is never managed (it must always be able to log in)",
                ));
            }
            validate_name("managed account", m)
                .map_err(|e| err(format!("managed_accounts: {e}")))?;
        }
        managed.sort();
        managed.dedup();
        let max_grant_secs = match raw.max_grant {
            Some(s) => parse_duration(&s).map_err(|e| err(format!("max_grant: {e}")))?,
            None => DEFAULT_MAX_GRANT_SECS,
        };
        if max_grant_secs > 31 * 86_400 {
            return Err(err("max_grant: at most 31d"));
        }
        let breakglass_secs = match raw.breakglass_for {
            Some(s) => parse_duration(&s).map_err(|e| err(format!("breakglass_for: {e}")))?,
            None => 3600.min(max_grant_secs),
        };
        if breakglass_secs <= 0 || breakglass_secs > max_grant_secs {
            return Err(err("breakglass_for must be positive and at most max_grant"));
        }
        let kill_grace_ms = match raw.kill_grace {
            Some(s) => parse_kill_grace(&s)?,
            None => 1000,
        };
        let mut names = Vec::new();
        let groups = raw.groups.unwrap_or_default();
        for (key, v, d) in [
            ("groups.users", groups.users, GROUP_JIT_USERS),
            ("groups.sudo", groups.sudo, GROUP_JIT_SUDO),
            ("groups.mfa", groups.mfa, GROUP_JIT_MFA),
        ] {
            let v = v.unwrap_or_else(|| d.to_string());
            validate_name("group name", &v).map_err(|e| err(format!("{key}: {e}")))?;
            if names.contains(&v) {
                return Err(err(format!("{key}: {v:?} is used twice")));
            }
            names.push(v);
        }
        let workers = raw.workers.unwrap_or(4);
        if !(1..=64).contains(&workers) {
            return Err(err("workers must be between 1 and 64"));
        }
        let ioc_commands = raw.ioc_commands.unwrap_or_default();
        if ioc_commands.len() > 256 {
            return Err(err("ioc_commands: at most 256 entries"));
        }
        for c in &ioc_commands {
            jit_core::policy::classify::parse_ioc_entry(c)
                .map_err(|e| err(format!("ioc_commands: {e}")))?;
        }
        let deny_groups = deny_list(raw.deny_groups, raw.allow_groups)?;
        let home_root_for_sweep = home_root.clone();
        let sweep_paths = sweep_list(raw.sweep_paths, &home_root_for_sweep)?;
        let (cgroup_dir, certify_suid_roots, certify_exclude) =
            monitor_keys(raw.cgroup_dir, raw.certify_suid_roots, raw.certify_exclude)?;
        let sensitive_paths = raw
            .sensitive_paths
            .unwrap_or_default()
            .into_iter()
            .map(|p| {
                validate_abs_path("sensitive_paths", &p)
                    .map_err(|e| err(format!("sensitive_paths: {e}")))?;
                Ok(PathBuf::from(p))
            })
            .collect::<Result<Vec<_>, ConfigError>>()?;
        if sensitive_paths.len() > 256 {
            return Err(err("sensitive_paths: at most 256 entries"));
        }
        let lateral_ports = raw
            .lateral_ports
            .unwrap_or_else(|| crate::monitor::lateral::DEFAULT_PORTS.to_vec());
        if lateral_ports.len() > 64 || lateral_ports.contains(&0) {
            return Err(err("lateral_ports: at most 64 ports, none 0"));
        }
        let monitor_marks = match raw.monitor_marks.as_deref() {
            None | Some("filesystem") => crate::monitor::events::Marks::Filesystem,
            Some("mount") => crate::monitor::events::Marks::Mount,
            Some(other) => {
                return Err(err(format!(
                    "monitor_marks: {} is neither \"filesystem\" nor \"mount\"",
                    jit_proto::text::quoted_name(other)
                )))
            }
        };
        let (allow_caps, allow_cap_programs) =
            crate::tokenize::policy::config_keys(raw.allow_caps, raw.allow_cap_programs)
                .map_err(err)?;
        let mut it = names.into_iter();
        Ok(Config {
            allow_caps,
            allow_cap_programs,
            sensitive_paths,
            lateral_ports,
            monitor_marks,
            cgroup_dir,
            certify_suid_roots,
            certify_exclude,
            source,
            uid_min,
            uid_max,
            home_root,
            home_policy: raw.home_policy.unwrap_or(HomePolicy::Remove),
            skel: path_key("skel", raw.skel, "/etc/skel")?,
            shell,
            managed_accounts: managed,
            max_grant_secs,
            breakglass_secs,
            kill_grace_ms,
            ioc_commands,
            state_dir: path_key("state_dir", raw.state_dir, DEFAULT_STATE_DIR)?,
            snapshot_path: path_key("snapshot_path", raw.snapshot_path, DEFAULT_SNAPSHOT_PATH)?,
            socket_path: path_key("socket_path", raw.socket_path, DEFAULT_SOCKET_PATH)?,
            audit_log: path_key("audit_log", raw.audit_log, DEFAULT_AUDIT_LOG)?,
            passwd_file: path_key("passwd_file", raw.passwd_file, DEFAULT_PASSWD_FILE)?,
            sudo_conf: path_key("sudo_conf", raw.sudo_conf, "/etc/sudo.conf")?,
            group_file: path_key("group_file", raw.group_file, DEFAULT_GROUP_FILE)?,
            nscd: raw.nscd.unwrap_or(NscdMode::Auto),
            workers,
            group_users: it.next().unwrap_or_default(),
            group_sudo: it.next().unwrap_or_default(),
            group_mfa: it.next().unwrap_or_default(),
            totp,
            deny_groups,
            sweep_paths,
        })
    }

    /// gid of `jit-users` (top of the range).
    pub fn gid_users(&self) -> u32 {
        self.uid_max
    }

    /// gid of `jit-sudo`.
    pub fn gid_sudo(&self) -> u32 {
        self.uid_max - 1
    }

    /// gid of `jit-mfa`.
    pub fn gid_mfa(&self) -> u32 {
        self.uid_max - 2
    }

    /// Highest id handed to an account (the top three are jit's groups).
    pub fn account_uid_max(&self) -> u32 {
        self.uid_max - 3
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        let c = Config::defaults().unwrap();
        assert_eq!((c.uid_min, c.uid_max), (70_000, 79_999));
        assert_eq!(c.max_grant_secs, 12 * 3600);
        assert_eq!(c.snapshot_path, PathBuf::from("/run/jitd/snapshot"));
        assert_eq!(c.gid_users(), 79_999);
        assert_eq!(c.monitor_marks, crate::monitor::events::Marks::Filesystem);
    }

    #[test]
    fn monitor_marks() {
        let c = Config::parse("monitor_marks = \"mount\"", None).unwrap();
        assert_eq!(c.monitor_marks, crate::monitor::events::Marks::Mount);
        let e = Config::parse("monitor_marks = \"inode\\n\"", None).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("monitor_marks") && !msg.contains('\n'),
            "{msg}"
        );
    }

    #[test]
    fn full_file() {
        let c = Config::parse(
            r#"
            uid_range = "71000-71999"
            home_root = "/srv/home"
            home_policy = "archive"
            managed_accounts = ["admin", "ops", "admin"]
            max_grant = "2h"
            kill_grace = "250ms"
            nscd = "off"
            [totp]
            window = 0
            max_failures = 3
            lockout = "1m"
            [groups]
            sudo = "jit-admins"
            "#,
            None,
        )
        .unwrap();
        assert_eq!(c.uid_min, 71_000);
        assert_eq!(c.home_policy, HomePolicy::Archive);
        assert_eq!(c.managed_accounts, ["admin", "ops"]);
        assert_eq!(c.kill_grace_ms, 250);
        assert_eq!(c.group_sudo, "jit-admins");
        assert_eq!(c.group_users, "jit-users");
        assert_eq!(
            (
                c.totp.window_steps,
                c.totp.max_failures,
                c.totp.lockout_base_secs
            ),
            (0, 3, 60)
        );
    }

    #[test]
    fn refusals() {
        for bad in [
            "unknown_key = 1",
            "uid_range = \"0-100\"",
            "uid_range = \"65000-66000\"",
            "uid_range = \"65535-65600\"",
            "uid_range = \"70000-70005\"",
            "managed_accounts = [\"root\"]",
            "managed_accounts = [\"a:b\"]",
            "home_root = \"relative\"",
            "home_root = \"/\"",
            "max_grant = \"90\"",
            "max_grant = \"40d\"",
            "kill_grace = \"0ms\"",
            "home_policy = \"shred\"",
            "[server]\nurl = \"https://x\"",
            "version = 2",
            "[totp]\nwindow = 9",
            "[totp]\nmax_failures = 0",
            "[totp]\nlockout = \"1h\"\nlockout_max = \"1m\"",
            "[totp]\nsecret = \"x\"",
            "[groups]\nusers = \"x\"\nsudo = \"x\"",
            "deny_groups = [\"Bad Name\"]",
            "allow_groups = [\"../x\"]",
            "deny_groups = [\"games\"]\nallow_groups = [\"games\"]",
            "sweep_paths = [\"relative\"]",
            "sweep_paths = [\"/\"]",
        ] {
            assert!(Config::parse(bad, None).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn deny_list_default_extend_and_allow() {
        let c = Config::defaults().unwrap();
        for g in [
            "root", "shadow", "disk", "kmem", "sys", "tty", "docker", "lxd", "libvirt",
        ] {
            assert!(
                c.deny_groups.iter().any(|d| d == g),
                "{g} not denied by default"
            );
        }
        for g in ["sudo", "adm", "wheel"] {
            assert!(
                !c.deny_groups.iter().any(|d| d == g),
                "{g} must stay grantable"
            );
        }
        let c = Config::parse(
            "deny_groups = [\"games\"]\nallow_groups = [\"docker\"]",
            None,
        )
        .unwrap();
        assert!(c.deny_groups.iter().any(|d| d == "games"));
        assert!(c.deny_groups.iter().any(|d| d == "shadow"));
        assert!(!c.deny_groups.iter().any(|d| d == "docker"));
    }

    #[test]
    fn sweep_paths_hold_defaults_home_root_and_extras() {
        let c = Config::parse(
            "home_root = \"/srv/home\"\nsweep_paths = [\"/srv/scratch\"]",
            None,
        )
        .unwrap();
        let want: Vec<PathBuf> = ["/tmp", "/var/tmp", "/dev/shm", "/srv/home", "/srv/scratch"]
            .iter()
            .map(PathBuf::from)
            .collect();
        assert_eq!(c.sweep_paths, want);
    }
}
