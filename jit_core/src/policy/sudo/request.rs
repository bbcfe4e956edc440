//! What sudo is about to run ([`SudoRequest`]), why jit refuses it ([`Refusal`]), and the
//! escaping every refusal line uses ([`shown`]).

/// What sudo is about to run, as `sudo_jit` learnt it from sudo's `settings`, `user_info` and
/// `command_info`. The caller maps absent keys to `None`/`false`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SudoRequest<'a> {
    /// The invoking user's name (`user_info` `user`).
    pub user: &'a str,
    /// The invoking user's uid (`user_info` `uid`).
    pub uid: u32,
    /// The resolved absolute command path (`command_info` `command`).
    pub command: &'a str,
    /// The arguments, without the command itself (`argv[1..]`).
    pub argv: &'a [&'a str],
    /// Run-as user as given (`settings` `runas_user`, may be `#<uid>`); the invoking user when
    /// only `-g` was given, `root` when neither.
    pub runas_user: &'a str,
    /// The uid sudo will switch to (`command_info` `runas_uid`/`runas_euid`).
    pub runas_uid: u32,
    /// Run-as group, only when the user asked for one with `-g` (may be `#<gid>`).
    pub runas_group: Option<&'a str>,
    /// The gid sudo will switch to, when `-g` was given.
    pub runas_gid: Option<u32>,
    /// `sudo -s` or `sudo -i` (`settings` `run_shell`/`login_shell`).
    pub shell: bool,
    /// sudoedit (`command_info` `sudoedit=true`).
    pub edit: bool,
    /// `-R`/`--chroot` or a `CHROOT` from sudoers (`command_info` `chroot`/`runchroot`).
    pub chroot: Option<&'a str>,
    /// `-h`/`--host` (`settings` `remote_host`).
    pub remote_host: Option<&'a str>,
}

impl<'a> SudoRequest<'a> {
    /// The common case: `user` runs `command argv...` as root, no options.
    pub fn new(user: &'a str, uid: u32, command: &'a str, argv: &'a [&'a str]) -> Self {
        SudoRequest {
            user,
            uid,
            command,
            argv,
            runas_user: "root",
            runas_uid: 0,
            runas_group: None,
            runas_gid: None,
            shell: false,
            edit: false,
            chroot: None,
            remote_host: None,
        }
    }
}

/// Why sudo_jit refuses a request. Each carries what the one-line message needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The command (with these arguments) is in no scope entry.
    OutsideScope {
        /// The resolved command path, shown escaped.
        command: String,
    },
    /// The run-as user/group is in no run-as entry, or its ids are unsafe (`#-1`).
    RunAs {
        /// `user` or `user:group` as requested, shown escaped.
        target: String,
    },
    /// `sudo -s`/`-i` under a grant without `ALL`.
    Shell,
    /// sudoedit under a grant without `ALL`.
    Edit,
    /// `-R`/`--chroot`: never (CVE-2025-32463).
    Chroot,
    /// `-h`/`--host`: never (CVE-2025-32462).
    RemoteHost,
}

impl Refusal {
    /// The line sudo_jit prints, e.g. `jit: /usr/bin/apt is outside grant g-1234`.
    pub fn message(&self, grant_id: &str) -> String {
        let id = shown(grant_id, 64);
        match self {
            Refusal::OutsideScope { command } => format!("jit: {command} is outside grant {id}"),
            Refusal::RunAs { target } => format!("jit: running as {target} is outside grant {id}"),
            Refusal::Shell => format!("jit: a shell (-s/-i) needs an ALL grant (grant {id})"),
            Refusal::Edit => format!("jit: sudoedit needs an ALL grant (grant {id})"),
            Refusal::Chroot => "jit: sudo -R/--chroot is never allowed under jit".to_string(),
            Refusal::RemoteHost => "jit: sudo -h/--host is never allowed under jit".to_string(),
        }
    }

    /// A stable short code for the audit trail.
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::OutsideScope { .. } => "outside-scope",
            Refusal::RunAs { .. } => "runas",
            Refusal::Shell => "shell",
            Refusal::Edit => "sudoedit",
            Refusal::Chroot => "chroot",
            Refusal::RemoteHost => "remote-host",
        }
    }
}

/// An untrusted string made safe for a terminal line: printable ASCII as is (so the usual
/// message reads `jit: /usr/bin/apt ...`), everything else escaped, capped at `max` chars.
/// sudo_jit uses it for its own refusal lines, so every line reads alike.
pub fn shown(s: &str, max: usize) -> String {
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i >= max {
            out.push_str("...");
            break;
        }
        if c == ' ' || c.is_ascii_graphic() {
            out.push(c);
        } else {
            out.extend(c.escape_default());
        }
    }
    out
}
