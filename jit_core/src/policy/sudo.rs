//! The sudo side of a grant: which commands (`--sudo`) may run, as whom (`--runas`), and the
//! sudo features that are never allowed under jit.
//!
//! `sudo_jit` (the approval plugin) fills a [`SudoRequest`] from what sudo resolved — the
//! absolute command path and the numeric run-as ids from `command_info`, not what the user
//! typed — and calls [`scope_allows`] and [`runas_allows`] (or [`sudo_allows`] for both). A
//! [`Refusal`] carries the one-line reason that sudo_jit prints, because sudo itself does not
//! show an approval plugin's error string (docs/design.md#traps).
//!
//! Matching is literal and exact: no globbing, no sudoers escapes, no prefix matching of
//! arguments. A scope can therefore only ever allow less than the administrator wrote, never
//! more (docs/threat-model.md: S3–S6, X12).

use super::PolicyError;
use crate::validate::validate_name;

const WHAT_SCOPE: &str = "sudo command";
const WHAT_RUNAS: &str = "run-as target";
/// PATH_MAX: a longer scope entry cannot name a command sudo would run.
pub const MAX_SCOPE_ENTRY_LEN: usize = 4096;

/// One `--sudo` entry.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ScopeEntry {
    /// `ALL`: any command, and the only scope under which a shell or sudoedit is allowed.
    All,
    /// `/usr/bin/systemctl`: that command with any arguments.
    AnyArgs {
        /// Absolute, normalised path.
        path: String,
    },
    /// `/usr/bin/systemctl restart nginx`: that command with exactly these arguments;
    /// `/usr/bin/id ""` means exactly no arguments.
    ExactArgs {
        /// Absolute, normalised path.
        path: String,
        /// The arguments, in order (empty: no arguments allowed).
        args: Vec<String>,
    },
}

impl ScopeEntry {
    /// The command path, or `None` for `ALL`.
    pub fn path(&self) -> Option<&str> {
        match self {
            ScopeEntry::All => None,
            ScopeEntry::AnyArgs { path } | ScopeEntry::ExactArgs { path, .. } => Some(path),
        }
    }

    /// Whether this entry allows `command` with `argv` (flags such as shell or sudoedit are
    /// judged by [`scope_allows`], not here).
    pub fn matches(&self, command: &str, argv: &[&str]) -> bool {
        match self {
            ScopeEntry::All => true,
            ScopeEntry::AnyArgs { path } => path == command,
            ScopeEntry::ExactArgs { path, args } => {
                path == command
                    && args.len() == argv.len()
                    && args.iter().zip(argv).all(|(a, b)| a == b)
            }
        }
    }
}

/// The canonical form, which [`parse_scope_entry`] reads back.
impl std::fmt::Display for ScopeEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ScopeEntry::All => f.write_str("ALL"),
            ScopeEntry::AnyArgs { path } => f.write_str(path),
            ScopeEntry::ExactArgs { path, args } if args.is_empty() => write!(f, "{path} \"\""),
            ScopeEntry::ExactArgs { path, args } => write!(f, "{path} {}", args.join(" ")),
        }
    }
}

/// Checks an absolute command path as sudo would resolve it: `/`-rooted, normalised (no `.`,
/// `..` or empty components, no trailing `/`), printable ASCII without glob characters, quotes
/// or backslashes. A path that breaks these could never equal sudo's resolved command, or would
/// look to a reader as if it matched more than it does (`/usr/bin/*`, `/usr/bin/../bin/sh`).
pub(crate) fn check_command_path(what: &'static str, p: &str) -> Result<(), PolicyError> {
    if !p.starts_with('/') {
        return Err(PolicyError::invalid(
            what,
            p,
            "the command must be ALL or an absolute path such as /usr/bin/systemctl",
        ));
    }
    if p.len() > MAX_SCOPE_ENTRY_LEN {
        return Err(PolicyError::TooLong(what, MAX_SCOPE_ENTRY_LEN));
    }
    if let Some(c) = p.chars().find(|c| !c.is_ascii_graphic()) {
        return Err(PolicyError::invalid(
            what,
            p,
            format!("the path has a character that is not printable ASCII ({c:?})"),
        ));
    }
    if p.contains(['*', '?', '[', ']', '{', '}']) {
        return Err(PolicyError::invalid(
            what,
            p,
            "wildcards are not supported: name each command by its full path",
        ));
    }
    if p.contains(['"', '\'', '\\']) {
        return Err(PolicyError::invalid(
            what,
            p,
            "quotes and backslashes are not allowed in a command path",
        ));
    }
    if p.ends_with('/') {
        return Err(PolicyError::invalid(
            what,
            p,
            "a directory is not a command (name each command by its full path)",
        ));
    }
    // Skip the empty piece before the leading '/'.
    if p.split('/')
        .skip(1)
        .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return Err(PolicyError::invalid(
            what,
            p,
            "the path must be normalised (no '.', '..' or '//')",
        ));
    }
    Ok(())
}

/// Splits `PATH [ARGS...]` for scope entries and IOC entries alike: returns the path and
/// `None` (any arguments) or `Some(args)` (`""` alone: no arguments).
pub(crate) fn parse_path_and_args<'s>(
    what: &'static str,
    s: &'s str,
) -> Result<(&'s str, Option<Vec<String>>), PolicyError> {
    if s.len() > MAX_SCOPE_ENTRY_LEN {
        return Err(PolicyError::TooLong(what, MAX_SCOPE_ENTRY_LEN));
    }
    if s.chars().any(|c| c.is_control()) {
        return Err(PolicyError::invalid(
            what,
            s,
            "contains a control character",
        ));
    }
    if s.chars().any(|c| c.is_whitespace() && c != ' ') {
        return Err(PolicyError::invalid(
            what,
            s,
            "arguments are separated by plain spaces only",
        ));
    }
    let mut words = s.split(' ').filter(|w| !w.is_empty());
    let Some(path) = words.next() else {
        return Err(PolicyError::Empty(what));
    };
    check_command_path(what, path)?;
    let rest: Vec<&str> = words.collect();
    if rest.is_empty() {
        return Ok((path, None));
    }
    if rest == [r#""""#] {
        return Ok((path, Some(Vec::new())));
    }
    if rest.iter().any(|w| w.contains(['"', '\''])) {
        return Err(PolicyError::invalid(
            what,
            s,
            "quoting is not supported: arguments are separated by spaces and compared exactly \
             (a lone \"\" means no arguments)",
        ));
    }
    Ok((path, Some(rest.into_iter().map(str::to_string).collect())))
}

/// Parses one `--sudo` entry: `ALL`, `/abs/path` (any arguments), `/abs/path arg ...` (exactly
/// those arguments, separated by spaces, compared literally) or `/abs/path ""` (no arguments).
///
/// Refused: relative paths and bare names (sudo's resolved command is always absolute),
/// `.`/`..`/`//` in the path (`/usr/bin/../bin/sh`), wildcards, quotes (there is no quoting:
/// an argument cannot contain a space), control characters, more than 4096 bytes.
pub fn parse_scope_entry(s: &str) -> Result<ScopeEntry, PolicyError> {
    if s.trim_matches(' ').is_empty() {
        return Err(PolicyError::Empty(WHAT_SCOPE));
    }
    if s.trim_matches(' ') == "ALL" {
        return Ok(ScopeEntry::All);
    }
    if s.split(' ').find(|w| !w.is_empty()) == Some("ALL") {
        return Err(PolicyError::invalid(
            WHAT_SCOPE,
            s,
            "ALL takes no arguments",
        ));
    }
    let (path, args) = parse_path_and_args(WHAT_SCOPE, s)?;
    let path = path.to_string();
    Ok(match args {
        None => ScopeEntry::AnyArgs { path },
        Some(args) => ScopeEntry::ExactArgs { path, args },
    })
}

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

/// Judges the command of `req` against the grant's scope.
///
/// In this order: a chroot (`-R`) and a remote host (`-h`) are refused whatever the scope (they
/// make sudo read attacker-chosen files or apply another host's rules); a shell (`-s`/`-i`)
/// and sudoedit need an `ALL` entry (a shell is every command; sudoedit's file list is a
/// different thing from a command's arguments, CVE-2023-22809); otherwise some entry must match
/// the command path exactly and, for entries with arguments, every argument exactly. An empty
/// scope allows nothing.
pub fn scope_allows(scope: &[ScopeEntry], req: &SudoRequest<'_>) -> Result<(), Refusal> {
    if req.chroot.is_some() {
        return Err(Refusal::Chroot);
    }
    if req.remote_host.is_some() {
        return Err(Refusal::RemoteHost);
    }
    let has_all = scope.contains(&ScopeEntry::All);
    if req.shell && !has_all {
        return Err(Refusal::Shell);
    }
    if req.edit && !has_all {
        return Err(Refusal::Edit);
    }
    if scope.iter().any(|e| e.matches(req.command, req.argv)) {
        return Ok(());
    }
    Err(Refusal::OutsideScope {
        command: shown(req.command, 256),
    })
}

/// Who a run-as entry lets the user become.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RunAsTarget {
    /// `ALL`: anyone, numeric `#<id>` included.
    All,
    /// One user or group, by name.
    Name(String),
}

/// One `--runas` entry: `user`, `user:group`, `:group`, `ALL`, `ALL:ALL`, `user:ALL`, ...
///
/// As in sudoers, an entry without a group allows no `-g` (the command runs with the target
/// user's own groups), and `:group` lets the user run as *themselves* with that group.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RunAs {
    /// `None`: the invoking user only (the `:group` form).
    pub user: Option<RunAsTarget>,
    /// `None`: no `-g` allowed.
    pub group: Option<RunAsTarget>,
}

impl RunAs {
    /// The default when a grant names no run-as target: `root`, no `-g`.
    pub fn root() -> RunAs {
        RunAs {
            user: Some(RunAsTarget::Name("root".to_string())),
            group: None,
        }
    }
}

/// The canonical form, which [`parse_runas`] reads back.
impl std::fmt::Display for RunAs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let part = |t: &RunAsTarget| match t {
            RunAsTarget::All => "ALL".to_string(),
            RunAsTarget::Name(n) => n.clone(),
        };
        if let Some(u) = &self.user {
            f.write_str(&part(u))?;
        }
        if let Some(g) = &self.group {
            write!(f, ":{}", part(g))?;
        }
        Ok(())
    }
}

fn parse_runas_part(s: &str, whole: &str) -> Result<RunAsTarget, PolicyError> {
    if s == "ALL" {
        return Ok(RunAsTarget::All);
    }
    if s.eq_ignore_ascii_case("all") {
        // A user called `all` would read as ALL to every reviewer of the grant.
        return Err(PolicyError::invalid(
            WHAT_RUNAS,
            whole,
            "write ALL in capitals (a target named \"all\" is not accepted)",
        ));
    }
    if s.starts_with('#') {
        return Err(PolicyError::invalid(
            WHAT_RUNAS,
            whole,
            "numeric ids are not accepted: name the user or group (or ALL)",
        ));
    }
    validate_name(WHAT_RUNAS, s)
        .map_err(|e| PolicyError::invalid(WHAT_RUNAS, whole, e.to_string()))?;
    Ok(RunAsTarget::Name(s.to_string()))
}

/// Parses one `--runas` entry: `user`, `user:group`, `:group`, with `ALL` allowed for either
/// part. Names follow the jit name rules; numeric `#<id>` forms are refused (a grant names
/// people's targets, and `#-1` is how CVE-2019-14287 reached root).
pub fn parse_runas(s: &str) -> Result<RunAs, PolicyError> {
    if s.is_empty() {
        return Err(PolicyError::Empty(WHAT_RUNAS));
    }
    if s.len() > 2 * crate::constants::MAX_NAME_LEN + 1 {
        return Err(PolicyError::TooLong(
            WHAT_RUNAS,
            2 * crate::constants::MAX_NAME_LEN + 1,
        ));
    }
    let (user_s, group_s) = match s.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (s, None),
    };
    let user = if user_s.is_empty() {
        if group_s.is_none() {
            return Err(PolicyError::Empty(WHAT_RUNAS));
        }
        None
    } else {
        Some(parse_runas_part(user_s, s)?)
    };
    let group = match group_s {
        None => None,
        Some("") => {
            return Err(PolicyError::invalid(
                WHAT_RUNAS,
                s,
                "nothing after ':' (write user, user:group or :group)",
            ))
        }
        Some(g) => Some(parse_runas_part(g, s)?),
    };
    Ok(RunAs { user, group })
}

/// `#<digits>` as a number, for `-u#1000` / `-g#1000`. Anything else (`#-1`, `#`, `#1x`,
/// `#99999999999`) is `Err`: the request is refused rather than guessed at.
fn numeric_id(s: &str) -> Option<Result<u32, ()>> {
    let digits = s.strip_prefix('#')?;
    let ok = !digits.is_empty() && digits.len() <= 10 && digits.bytes().all(|b| b.is_ascii_digit());
    Some(if ok {
        digits.parse().map_err(|_| ())
    } else {
        Err(())
    })
}

/// An id a process may switch to under jit: not `(uid_t)-1` (which `setresuid` takes as "leave
/// unchanged", CVE-2019-14287) and not above `i32::MAX` (read as negative by some programs).
fn id_is_sane(id: u32) -> bool {
    id <= i32::MAX as u32
}

/// Judges the run-as user and group of `req` against the grant's `--runas` list (empty: `root`
/// only).
///
/// Names *and* numbers are compared: the uid sudo will really use must be sane (never
/// `u32::MAX`/`#-1` or above `i32::MAX`, under any grant); `root` must mean uid 0 and uid 0
/// must be `root` unless the entry allows `ALL`; a numeric `#<uid>` must agree with the uid and
/// needs an `ALL` entry. The same rules hold for the group.
pub fn runas_allows(list: &[RunAs], req: &SudoRequest<'_>) -> Result<(), Refusal> {
    let refuse = || {
        let mut target = shown(req.runas_user, 64);
        if let Some(g) = req.runas_group {
            target.push(':');
            target.push_str(&shown(g, 64));
        }
        Err(Refusal::RunAs { target })
    };
    // Checks that hold under every grant, ALL:ALL included.
    if !id_is_sane(req.runas_uid) || req.runas_user.is_empty() {
        return refuse();
    }
    if req.runas_group.is_some() != req.runas_gid.is_some() {
        return refuse();
    }
    if req.runas_gid.is_some_and(|g| !id_is_sane(g)) {
        return refuse();
    }
    let user_num = numeric_id(req.runas_user);
    match user_num {
        Some(Ok(n)) if n == req.runas_uid => {}
        Some(_) => return refuse(),
        None if req.runas_user == "root" && req.runas_uid != 0 => return refuse(),
        None => {}
    }
    let group_num = req.runas_group.and_then(numeric_id);
    match (group_num, req.runas_group, req.runas_gid) {
        (Some(Ok(n)), _, Some(gid)) if n == gid => {}
        (Some(_), _, _) => return refuse(),
        (None, Some("root"), Some(gid)) if gid != 0 => return refuse(),
        _ => {}
    }

    let default = [RunAs::root()];
    let list = if list.is_empty() { &default[..] } else { list };
    let user_ok = |entry: &Option<RunAsTarget>| match entry {
        Some(RunAsTarget::All) => true,
        // A named entry never matches a numeric request, and uid 0 only as `root`.
        Some(RunAsTarget::Name(n)) => {
            user_num.is_none() && req.runas_user == n && (req.runas_uid != 0 || n == "root")
        }
        None => user_num.is_none() && req.runas_user == req.user && req.runas_uid == req.uid,
    };
    let group_ok = |entry: &Option<RunAsTarget>| match (entry, req.runas_group, req.runas_gid) {
        (_, None, _) => true,
        (None, Some(_), _) => false,
        (Some(RunAsTarget::All), Some(_), _) => true,
        (Some(RunAsTarget::Name(n)), Some(g), Some(gid)) => {
            group_num.is_none() && g == n && (gid != 0 || n == "root")
        }
        (Some(RunAsTarget::Name(_)), Some(_), None) => false,
    };
    if list.iter().any(|e| user_ok(&e.user) && group_ok(&e.group)) {
        Ok(())
    } else {
        refuse()
    }
}

/// Both judgements, scope first (so `-R`/`-h` are reported as such), then run-as.
pub fn sudo_allows(
    scope: &[ScopeEntry],
    runas: &[RunAs],
    req: &SudoRequest<'_>,
) -> Result<(), Refusal> {
    scope_allows(scope, req)?;
    runas_allows(runas, req)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(entries: &[&str]) -> Vec<ScopeEntry> {
        entries
            .iter()
            .map(|e| parse_scope_entry(e).unwrap_or_else(|err| panic!("{e}: {err}")))
            .collect()
    }

    fn runas(entries: &[&str]) -> Vec<RunAs> {
        entries
            .iter()
            .map(|e| parse_runas(e).unwrap_or_else(|err| panic!("{e}: {err}")))
            .collect()
    }

    fn req<'a>(command: &'a str, argv: &'a [&'a str]) -> SudoRequest<'a> {
        SudoRequest::new("alice", 70001, command, argv)
    }

    #[test]
    fn scope_entries_parse() {
        let any = |p: &str| ScopeEntry::AnyArgs { path: p.into() };
        let exact = |p: &str, a: &[&str]| ScopeEntry::ExactArgs {
            path: p.into(),
            args: a.iter().map(|s| s.to_string()).collect(),
        };
        let cases: Vec<(&str, ScopeEntry)> = vec![
            ("ALL", ScopeEntry::All),
            (" ALL ", ScopeEntry::All),
            ("/usr/bin/systemctl", any("/usr/bin/systemctl")),
            ("  /usr/bin/systemctl  ", any("/usr/bin/systemctl")),
            (
                "/usr/bin/systemctl restart nginx",
                exact("/usr/bin/systemctl", &["restart", "nginx"]),
            ),
            (
                "/usr/bin/systemctl  restart   nginx ",
                exact("/usr/bin/systemctl", &["restart", "nginx"]),
            ),
            ("/usr/bin/id \"\"", exact("/usr/bin/id", &[])),
            (
                "/usr/bin/journalctl -u nginx --since=-1h",
                exact("/usr/bin/journalctl", &["-u", "nginx", "--since=-1h"]),
            ),
            ("/usr/bin/grep a\\b", exact("/usr/bin/grep", &["a\\b"])),
            (
                "/usr/bin/find / -name *.log",
                exact("/usr/bin/find", &["/", "-name", "*.log"]),
            ),
            ("/opt/app-1.2/bin/ctl", any("/opt/app-1.2/bin/ctl")),
            ("/usr/bin/echo héllo", exact("/usr/bin/echo", &["héllo"])),
        ];
        for (input, want) in cases {
            let got = parse_scope_entry(input).unwrap_or_else(|e| panic!("{input:?}: {e}"));
            assert_eq!(got, want, "{input:?}");
            assert_eq!(
                parse_scope_entry(&got.to_string()).unwrap(),
                got,
                "round trip"
            );
        }
    }

    #[test]
    fn scope_entries_refused() {
        let long_path = format!("/{}", "a".repeat(5000));
        let long_args = format!("/usr/bin/echo {}", "a ".repeat(3000));
        for bad in [
            "",
            "   ",
            "all",
            "All",
            "ALL /usr/bin/id",
            "ALL:ALL",
            "systemctl",
            "./systemctl",
            "usr/bin/systemctl",
            "~/bin/x",
            "/usr/bin/../bin/sh",
            "/usr/bin/./sh",
            "/usr//bin/sh",
            "/usr/bin/",
            "/",
            "/..",
            "/usr/bin/*",
            "/usr/bin/system?tl",
            "/usr/bin/[s]h",
            "/usr/bin/{a,b}",
            "/usr/bin/sh\0",
            "/usr/bin/sh\n/bin/bash",
            "/usr/bin/systemctl\trestart",
            "/usr/bin/systemctl\u{a0}restart",
            "/usr/bin/systemctl restart\u{2003}nginx",
            "/usr/bin/sys\u{202e}tem",
            "/usr/bin/\x1b[31m",
            "\"/usr/bin/systemctl\"",
            "/usr/bin/echo \"hello world\"",
            "/usr/bin/echo 'hello world'",
            "/usr/bin/echo a \"\"",
            "/usr/bin/echo \"\" \"\"",
            "/usr/bin/echo \"\" a",
            "/usr/bin/a\\b",
            "sudoedit /etc/hosts",
            long_path.as_str(),
            long_args.as_str(),
        ] {
            assert!(parse_scope_entry(bad).is_err(), "{bad:?} accepted");
        }
        let msg = parse_scope_entry("/usr/bin/../bin/sh")
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("\"/usr/bin/../bin/sh\"") && msg.contains(".."),
            "{msg}"
        );
    }

    #[test]
    fn scope_matching_table() {
        let s = scope(&[
            "/usr/bin/systemctl restart nginx",
            "/usr/bin/journalctl",
            "/usr/bin/id \"\"",
        ]);
        let cases: &[(&str, &[&str], bool)] = &[
            ("/usr/bin/systemctl", &["restart", "nginx"], true),
            ("/usr/bin/systemctl", &["restart"], false),
            ("/usr/bin/systemctl", &["restart", "nginx", "sshd"], false),
            ("/usr/bin/systemctl", &["restart", "nginx "], false),
            ("/usr/bin/systemctl", &["restart", "NGINX"], false),
            ("/usr/bin/systemctl", &["nginx", "restart"], false),
            ("/usr/bin/systemctl", &["restart nginx"], false),
            ("/usr/bin/systemctl", &[], false),
            ("/usr/bin/systemctl", &["stop", "nginx"], false),
            ("/bin/systemctl", &["restart", "nginx"], false),
            ("/usr/bin/journalctl", &[], true),
            ("/usr/bin/journalctl", &["-u", "nginx"], true),
            ("/usr/bin/journalctl", &["--vacuum-time=1s"], true),
            ("/usr/bin/journalctl2", &[], false),
            ("/usr/bin/journal", &[], false),
            ("/usr/bin/journalctl/", &[], false),
            ("/usr/bin/../bin/journalctl", &[], false),
            ("/usr/bin/id", &[], true),
            ("/usr/bin/id", &["-u"], false),
            ("/usr/bin/id", &[""], false),
            ("/usr/bin/apt", &["install", "x"], false),
            ("", &[], false),
            ("journalctl", &[], false),
        ];
        for (cmd, argv, want) in cases {
            let r = scope_allows(&s, &req(cmd, argv));
            assert_eq!(r.is_ok(), *want, "{cmd} {argv:?}: {r:?}");
            if !want {
                assert!(matches!(r, Err(Refusal::OutsideScope { .. })));
            }
        }
        assert!(
            scope_allows(&[], &req("/usr/bin/id", &[])).is_err(),
            "empty scope"
        );
        let all = scope(&["ALL"]);
        assert!(scope_allows(&all, &req("/usr/bin/apt", &["install", "x"])).is_ok());
        assert!(scope_allows(&all, &req("/bin/sh", &[])).is_ok());
    }

    #[test]
    fn escape_hatches_refused() {
        let narrow = scope(&["/usr/bin/systemctl", "/bin/bash"]);
        let all = scope(&["ALL"]);
        let argv: &[&str] = &[];
        let base = req("/usr/bin/systemctl", argv);
        assert!(scope_allows(&narrow, &base).is_ok());

        let shell = SudoRequest {
            command: "/bin/bash",
            shell: true,
            ..base
        };
        assert_eq!(scope_allows(&narrow, &shell), Err(Refusal::Shell));
        assert!(scope_allows(&all, &shell).is_ok());

        let edit = SudoRequest {
            command: "/usr/bin/systemctl",
            edit: true,
            ..base
        };
        assert_eq!(scope_allows(&narrow, &edit), Err(Refusal::Edit));
        assert!(scope_allows(&all, &edit).is_ok());

        for dir in ["/tmp/evil", "/", ""] {
            let chroot = SudoRequest {
                chroot: Some(dir),
                ..base
            };
            assert_eq!(scope_allows(&narrow, &chroot), Err(Refusal::Chroot));
            assert_eq!(
                scope_allows(&all, &chroot),
                Err(Refusal::Chroot),
                "even ALL"
            );
            assert_eq!(
                sudo_allows(&all, &runas(&["ALL:ALL"]), &chroot),
                Err(Refusal::Chroot)
            );
        }
        for host in ["otherhost", "localhost", ""] {
            let remote = SudoRequest {
                remote_host: Some(host),
                ..base
            };
            assert_eq!(scope_allows(&narrow, &remote), Err(Refusal::RemoteHost));
            assert_eq!(
                scope_allows(&all, &remote),
                Err(Refusal::RemoteHost),
                "even ALL"
            );
        }
        // Chroot is reported before everything else, also with a shell.
        let both = SudoRequest {
            shell: true,
            chroot: Some("/x"),
            remote_host: Some("h"),
            ..base
        };
        assert_eq!(scope_allows(&narrow, &both), Err(Refusal::Chroot));
    }

    #[test]
    fn runas_entries_parse() {
        let name = |n: &str| Some(RunAsTarget::Name(n.into()));
        let cases: &[(&str, RunAs)] = &[
            ("root", RunAs::root()),
            (
                "postgres",
                RunAs {
                    user: name("postgres"),
                    group: None,
                },
            ),
            (
                "www-data:adm",
                RunAs {
                    user: name("www-data"),
                    group: name("adm"),
                },
            ),
            (
                ":adm",
                RunAs {
                    user: None,
                    group: name("adm"),
                },
            ),
            (
                "ALL",
                RunAs {
                    user: Some(RunAsTarget::All),
                    group: None,
                },
            ),
            (
                "ALL:ALL",
                RunAs {
                    user: Some(RunAsTarget::All),
                    group: Some(RunAsTarget::All),
                },
            ),
            (
                "root:ALL",
                RunAs {
                    user: name("root"),
                    group: Some(RunAsTarget::All),
                },
            ),
            (
                ":ALL",
                RunAs {
                    user: None,
                    group: Some(RunAsTarget::All),
                },
            ),
        ];
        for (input, want) in cases {
            let got = parse_runas(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(&got, want, "{input}");
            assert_eq!(got.to_string(), *input);
        }
        for bad in [
            "",
            ":",
            "root:",
            "root:adm:x",
            "#0",
            "#-1",
            "#4294967295",
            "root:#0",
            ":#0",
            "all",
            "Root",
            "ro ot",
            "root\n",
            "-root",
            "../root",
            "a.b",
            "root,postgres",
            "(root)",
            "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        ] {
            assert!(parse_runas(bad).is_err(), "{bad:?} accepted");
        }
        assert!(matches!(
            parse_runas(&"a".repeat(10_000)),
            Err(PolicyError::TooLong(..))
        ));
    }

    fn as_user<'a>(
        base: SudoRequest<'a>,
        user: &'a str,
        uid: u32,
        group: Option<(&'a str, u32)>,
    ) -> SudoRequest<'a> {
        SudoRequest {
            runas_user: user,
            runas_uid: uid,
            runas_group: group.map(|g| g.0),
            runas_gid: group.map(|g| g.1),
            ..base
        }
    }

    #[test]
    fn runas_table() {
        let argv: &[&str] = &[];
        let base = req("/usr/bin/id", argv);
        let default: &[&str] = &[];
        type Case<'a> = (&'a [&'a str], &'a str, u32, Option<(&'a str, u32)>, bool);
        let cases: &[Case<'_>] = &[
            // Default list: root only, no -g.
            (default, "root", 0, None, true),
            (default, "root", 0, Some(("root", 0)), false),
            (default, "postgres", 115, None, false),
            (default, "toor", 0, None, false),
            (default, "#0", 0, None, false),
            (default, "#-1", u32::MAX, None, false),
            (default, "#4294967295", u32::MAX, None, false),
            (default, "root", 5, None, false), // "root" must be uid 0
            (default, "alice", 70001, None, false),
            // Named targets.
            (&["postgres"], "postgres", 115, None, true),
            (&["postgres"], "root", 0, None, false),
            (&["postgres"], "postgres", 0, None, false), // a uid-0 alias named postgres
            (&["postgres"], "#115", 115, None, false),
            (
                &["postgres"],
                "postgres",
                115,
                Some(("postgres", 115)),
                false,
            ),
            (&["postgres"], "Postgres", 115, None, false),
            (&["postgres", "root"], "root", 0, None, true),
            (&["www-data:adm"], "www-data", 33, Some(("adm", 4)), true),
            (&["www-data:adm"], "www-data", 33, None, true),
            (&["www-data:adm"], "www-data", 33, Some(("root", 0)), false),
            (&["www-data:adm"], "www-data", 33, Some(("#4", 4)), false),
            (&["www-data:adm"], "www-data", 33, Some(("adm", 0)), false), // gid 0 is root's
            (&["www-data:adm"], "root", 0, Some(("adm", 4)), false),
            (&["root:ALL"], "root", 0, Some(("shadow", 42)), true),
            (&["root:ALL"], "root", 0, Some(("#42", 42)), true),
            (&["root:ALL"], "root", 0, Some(("#42", 43)), false),
            (&["root:ALL"], "root", 0, Some(("#-1", u32::MAX)), false),
            // `:group`: as oneself.
            (&[":adm"], "alice", 70001, Some(("adm", 4)), true),
            (&[":adm"], "alice", 70002, Some(("adm", 4)), false),
            (&[":adm"], "bob", 70002, Some(("adm", 4)), false),
            (&[":adm"], "root", 0, Some(("adm", 4)), false),
            (&[":adm"], "alice", 70001, Some(("sudo", 27)), false),
            (&[":adm"], "alice", 70001, None, true),
            // ALL and ALL:ALL.
            (&["ALL"], "postgres", 115, None, true),
            (&["ALL"], "toor", 0, None, true),
            (&["ALL"], "#115", 115, None, true),
            (&["ALL"], "#115", 116, None, false), // number and uid disagree
            (&["ALL"], "#0", 0, None, true),
            (&["ALL"], "#-1", u32::MAX, None, false),
            (&["ALL"], "#4294967295", u32::MAX, None, false),
            (&["ALL"], "#4294967295", 4_294_967_295, None, false),
            (&["ALL"], "#2147483648", 2_147_483_648, None, false),
            (&["ALL"], "#2147483647", 2_147_483_647, None, true),
            (&["ALL"], "#99999999999", 0, None, false),
            (&["ALL"], "#", 0, None, false),
            (&["ALL"], "#1x", 1, None, false),
            (&["ALL"], "#+1", 1, None, false),
            (&["ALL"], "", 0, None, false),
            (&["ALL"], "postgres", 115, Some(("adm", 4)), false), // (ALL) allows no -g
            (&["ALL:ALL"], "postgres", 115, Some(("adm", 4)), true),
            (&["ALL:ALL"], "#-1", u32::MAX, None, false),
            (&["ALL:ALL"], "root", 0, Some(("#-1", u32::MAX)), false),
            (&["ALL:ALL"], "root", 0, Some(("x", 3_000_000_000)), false),
            (&["ALL:ALL"], "root", 0, Some(("root", 7)), false),
            (&["ALL:ALL"], "root", 7, None, false),
        ];
        for (list, user, uid, group, want) in cases {
            let r = runas_allows(&runas(list), &as_user(base, user, *uid, *group));
            assert_eq!(
                r.is_ok(),
                *want,
                "{list:?} as {user}({uid}) {group:?}: {r:?}"
            );
            if let Err(e) = r {
                assert!(matches!(e, Refusal::RunAs { .. }));
            }
        }
        // A group name without a gid (or the reverse) is an inconsistent request.
        let odd = SudoRequest {
            runas_group: Some("adm"),
            runas_gid: None,
            ..base
        };
        assert!(runas_allows(&runas(&["ALL:ALL"]), &odd).is_err());
        let odd = SudoRequest {
            runas_group: None,
            runas_gid: Some(4),
            ..base
        };
        assert!(runas_allows(&runas(&["ALL:ALL"]), &odd).is_err());
    }

    #[test]
    fn messages() {
        let id = "g-1234";
        let cases = [
            (
                Refusal::OutsideScope {
                    command: "/usr/bin/apt".into(),
                },
                "jit: /usr/bin/apt is outside grant g-1234",
            ),
            (
                Refusal::RunAs {
                    target: "postgres".into(),
                },
                "jit: running as postgres is outside grant g-1234",
            ),
            (
                Refusal::Shell,
                "jit: a shell (-s/-i) needs an ALL grant (grant g-1234)",
            ),
            (
                Refusal::Edit,
                "jit: sudoedit needs an ALL grant (grant g-1234)",
            ),
            (
                Refusal::Chroot,
                "jit: sudo -R/--chroot is never allowed under jit",
            ),
            (
                Refusal::RemoteHost,
                "jit: sudo -h/--host is never allowed under jit",
            ),
        ];
        for (r, want) in cases {
            assert_eq!(r.message(id), want);
            assert!(!r.code().is_empty());
        }
        // Through the deciding functions, with untrusted text escaped.
        let argv: &[&str] = &[];
        let r = scope_allows(&[], &req("/usr/bin/apt", argv)).unwrap_err();
        assert_eq!(r.message(id), "jit: /usr/bin/apt is outside grant g-1234");
        let r = scope_allows(&[], &req("/tmp/\x1b[2Jx\ny", argv)).unwrap_err();
        assert_eq!(
            r.message(id),
            "jit: /tmp/\\u{1b}[2Jx\\ny is outside grant g-1234"
        );
        let base = req("/usr/bin/id", argv);
        let r = runas_allows(&[], &as_user(base, "#-1", u32::MAX, None)).unwrap_err();
        assert_eq!(r.message(id), "jit: running as #-1 is outside grant g-1234");
        let r = runas_allows(&[], &as_user(base, "www-data", 33, Some(("adm", 4)))).unwrap_err();
        assert_eq!(
            r.message(id),
            "jit: running as www-data:adm is outside grant g-1234"
        );
        let long = "/x".repeat(1000);
        let r = scope_allows(&[], &req(&long, argv)).unwrap_err();
        assert!(r.message(id).len() < 400);
        assert!(Refusal::Shell.message("g-\n").contains("g-\\n"));
    }

    #[test]
    fn combined_decision() {
        let s = scope(&["/usr/bin/systemctl restart nginx"]);
        let argv: &[&str] = &["restart", "nginx"];
        let base = req("/usr/bin/systemctl", argv);
        assert!(sudo_allows(&s, &[], &base).is_ok());
        let as_pg = as_user(base, "postgres", 115, None);
        assert!(matches!(
            sudo_allows(&s, &[], &as_pg),
            Err(Refusal::RunAs { .. })
        ));
        assert!(sudo_allows(&s, &runas(&["postgres"]), &as_pg).is_ok());
        let other: &[&str] = &["stop", "nginx"];
        assert!(matches!(
            sudo_allows(&s, &[], &req("/usr/bin/systemctl", other)),
            Err(Refusal::OutsideScope { .. })
        ));
    }

    #[test]
    fn huge_inputs_do_not_panic() {
        // docs/threat-model.md#b10: 10 000 argv entries and a 1 MiB argument.
        let many: Vec<String> = (0..10_000).map(|i| format!("arg{i}")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        let big = "A".repeat(1 << 20);
        let big_argv: &[&str] = &[big.as_str()];
        let s = scope(&["/usr/bin/systemctl restart nginx", "/usr/bin/journalctl"]);
        assert!(scope_allows(&s, &req("/usr/bin/systemctl", &many)).is_err());
        assert!(scope_allows(&s, &req("/usr/bin/journalctl", &many)).is_ok());
        assert!(scope_allows(&s, &req("/usr/bin/systemctl", big_argv)).is_err());
        let r = scope_allows(&s, &req(&big, big_argv)).unwrap_err();
        assert!(r.message("g-1234").len() < 400);
        let base = req("/usr/bin/id", big_argv);
        let r = runas_allows(&[], &as_user(base, &big, 5, Some((&big, 5)))).unwrap_err();
        assert!(r.message("g-1234").len() < 400);
        assert!(parse_scope_entry(&big).is_err());
        assert!(parse_runas(&big).is_err());
    }
}
