//! Revocation classes (`--revoke-on`): which kinds of dangerous act a sudo command is.
//!
//! `sudo_jit` classifies every command before it runs; when a class the grant names matches,
//! the command is refused and jitd ends the grant (man/sudo_jit.8). This is a
//! tripwire, not a sandbox: a scope decides what may run, the classes decide which of those
//! runs end the grant. It therefore aims at the commands people and tooling really type, and is
//! precise enough that `apt list`, `dpkg -l`, `visudo -c` or `cat /etc/passwd` never end a
//! grant by accident. Judgement uses the basename of the resolved command and the arguments,
//! looking through wrappers (`env`, `nice`, `timeout`, `sudo`, `xargs`, `find -exec`, ...) and
//! into `sh -c` scripts (`bash -c "history -c"`, `echo ... >> /etc/sudoers`), a few levels
//! deep. Paths are normalised lexically (`/etc/../etc/shadow`); symlinks and relative paths
//! cannot be resolved without I/O and are not.
//!
//! All work is linear in the size of the request (docs/threat-model.md#b10: 10 000 arguments, a 1 MiB argument):
//! wrappers are peeled in a loop, scripts nest at most [`MAX_DEPTH`] levels, and path checks
//! skip anything longer than `PATH_MAX`.

use super::sudo::{parse_path_and_args, SudoRequest};
use super::PolicyError;

/// Indicator of compromise: reverse shells, disabling audit or firewalls, clearing logs or
/// shell history, `setenforce 0`, and the operator's own `ioc_commands`.
pub const CLASS_IOC: u32 = 1;
/// Installing, upgrading or removing software (apt, dpkg, rpm, dnf, pip, snap, npm -g, ...).
pub const CLASS_SOFTWARE_INSTALL: u32 = 2;
/// Changing accounts, groups or sudo rights (useradd, passwd, editing /etc/sudoers, ...).
pub const CLASS_ACCOUNT_CHANGE: u32 = 4;
/// Reading password hashes, sudo rules, ssh host private keys or anything under /root.
pub const CLASS_SENSITIVE_READ: u32 = 8;
/// Every class.
pub const CLASS_ALL: u32 =
    CLASS_IOC | CLASS_SOFTWARE_INSTALL | CLASS_ACCOUNT_CHANGE | CLASS_SENSITIVE_READ;

const CLASS_TABLE: [(u32, &str); 4] = [
    (CLASS_IOC, "ioc"),
    (CLASS_SOFTWARE_INSTALL, "software-install"),
    (CLASS_ACCOUNT_CHANGE, "account-change"),
    (CLASS_SENSITIVE_READ, "sensitive-read"),
];

/// How many `sh -c` / `find -exec` / `$(...)` levels are looked into.
pub const MAX_DEPTH: usize = 4;
/// Longer arguments cannot be paths the kernel would open.
const MAX_PATH: usize = 4096;

/// `ioc` | `software-install` | `account-change` | `sensitive-read` to its bit.
pub fn parse_class(s: &str) -> Option<u32> {
    CLASS_TABLE.iter().find(|(_, n)| *n == s).map(|(b, _)| *b)
}

/// The names of the classes set in `bits`, in a fixed order (unknown bits are ignored).
pub fn class_names(bits: u32) -> Vec<&'static str> {
    CLASS_TABLE
        .iter()
        .filter(|(b, _)| bits & b != 0)
        .map(|(_, n)| *n)
        .collect()
}

/// One operator-configured IOC command (jitd's `ioc_commands`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum IocEntry {
    /// A basename such as `tcpdump`: that program wherever it lives, any arguments.
    Name(String),
    /// An absolute path: any arguments (`None`), or arguments starting with these
    /// (`Some(prefix)`; `Some([])` from `path ""` means exactly no arguments).
    Command {
        /// Absolute, normalised path.
        path: String,
        /// Argument prefix, if any.
        args: Option<Vec<String>>,
    },
}

/// Parses an `ioc_commands` entry: a basename (`tcpdump`), a path (`/usr/sbin/tcpdump`), or a
/// path with leading arguments (`/usr/bin/curl -T`). `ALL` is refused: it would end every grant
/// at its first command.
pub fn parse_ioc_entry(s: &str) -> Result<IocEntry, PolicyError> {
    const WHAT: &str = "IOC command";
    let t = s.trim_matches(' ');
    if t.is_empty() {
        return Err(PolicyError::Empty(WHAT));
    }
    if t == "ALL" {
        return Err(PolicyError::invalid(
            WHAT,
            s,
            "ALL would match every command; name a program or a path",
        ));
    }
    if !t.starts_with('/') {
        let ok = t.len() <= 255
            && t != "."
            && t != ".."
            && t.bytes().all(|b| {
                b.is_ascii_graphic()
                    && !matches!(b, b'/' | b'"' | b'\'' | b'\\' | b'*' | b'?' | b'[')
            });
        if !ok {
            return Err(PolicyError::invalid(
                WHAT,
                s,
                "expected a program name (tcpdump) or an absolute path with optional arguments",
            ));
        }
        return Ok(IocEntry::Name(t.to_string()));
    }
    let (path, args) = parse_path_and_args(WHAT, t)?;
    Ok(IocEntry::Command {
        path: path.to_string(),
        args,
    })
}

/// Every class `req` falls in (a bit set of `CLASS_*`), with `extra_ioc` from jitd's
/// `ioc_commands` (entries that do not parse are ignored here; jitd refuses them at config load
/// with [`parse_ioc_entry`]).
pub fn classify(req: &SudoRequest<'_>, extra_ioc: &[&str]) -> u32 {
    let ctx = Ctx {
        extra: extra_ioc
            .iter()
            .filter_map(|e| parse_ioc_entry(e).ok())
            .collect(),
        // `~` in a script run as root is /root (sudo resets HOME to the target's home).
        home: (req.runas_uid == 0).then_some("/root"),
    };
    let mut acc = Acc::default();
    if req.edit {
        // sudoedit: the arguments are the files to edit, whatever the editor.
        for a in req.argv {
            if names(&ctx, a, false, Files::Account) {
                acc.bits |= CLASS_ACCOUNT_CHANGE;
            }
            if names(&ctx, a, false, Files::Sensitive) {
                acc.bits |= CLASS_SENSITIVE_READ;
            }
        }
        return acc.bits;
    }
    simple(&ctx, 0, req.command, req.argv, &[], false, &mut acc);
    acc.bits
}

// ---------------------------------------------------------------------------------------------
// Context and accumulation

struct Ctx {
    extra: Vec<IocEntry>,
    home: Option<&'static str>,
}

/// What one script has shown so far. The flags find reverse shells built from harmless parts
/// (`mkfifo f; sh -i < f | nc host 4444 > f`).
#[derive(Default)]
struct Acc {
    bits: u32,
    net_client: bool,
    stdin_shell: bool,
    fifo: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RedirOp {
    /// `<`
    In,
    /// `>`, `>|`, `&>`, `>&file`: truncates the target.
    Out,
    /// `>>`, `&>>`
    Append,
    /// `<>`
    ReadWrite,
    /// `2>&1`, `<&3`: descriptor duplication, no file.
    DupFd,
    /// `<<`, `<<<`: the word is a delimiter or text, not a file.
    Here,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Redir {
    op: RedirOp,
    /// The operator involved `&` or `<>` (what reverse shells use to wire a socket to stdio).
    amp: bool,
    target: String,
}

// ---------------------------------------------------------------------------------------------
// Word helpers

fn basename(p: &str) -> &str {
    p.rsplit('/').next().unwrap_or(p)
}

fn arg<S: AsRef<str>>(args: &[S], i: usize) -> Option<&str> {
    args.get(i).map(AsRef::as_ref)
}

fn tail<S>(args: &[S], i: usize) -> &[S] {
    args.get(i..).unwrap_or(&[])
}

/// A short option cluster such as `-ivh` (not `--long`, not `-` alone): its letters.
fn short_cluster(a: &str) -> Option<&str> {
    let rest = a.strip_prefix('-')?;
    if rest.is_empty() || rest.starts_with('-') {
        return None;
    }
    Some(rest)
}

fn cluster_has(a: &str, letters: &str) -> bool {
    short_cluster(a).is_some_and(|c| c.chars().any(|ch| letters.contains(ch)))
}

fn contains_ci(hay: &str, needle: &str) -> bool {
    let n = needle.as_bytes();
    if n.is_empty() {
        return true;
    }
    hay.as_bytes()
        .windows(n.len())
        .any(|w| w.eq_ignore_ascii_case(n))
}

/// `python3.11` is `python`: a name followed only by digits and dots.
fn versioned(base: &str, name: &str) -> bool {
    base.strip_prefix(name)
        .is_some_and(|v| v.bytes().all(|b| b.is_ascii_digit() || b == b'.'))
}

/// The first operand (non-option argument) and its index, skipping options; `value_opts` are
/// options whose value is the next argument.
fn first_operand<'x, S: AsRef<str>>(
    args: &'x [S],
    value_opts: &[&str],
) -> Option<(usize, &'x str)> {
    let mut i = 0;
    while let Some(a) = args.get(i).map(AsRef::as_ref) {
        if a == "--" {
            return args.get(i + 1).map(|s| (i + 1, s.as_ref()));
        }
        if a.starts_with('-') && a.len() > 1 {
            i += if value_opts.contains(&a) { 2 } else { 1 };
            continue;
        }
        return Some((i, a));
    }
    None
}

/// The value of `-c CMD` / `--command CMD` / `--command=CMD`.
fn opt_value<'x, S: AsRef<str>>(args: &'x [S], short: &str, long: &str) -> Option<&'x str> {
    let mut it = args.iter().map(AsRef::as_ref);
    while let Some(a) = it.next() {
        if a == "--" {
            return None;
        }
        if a == short || a == long {
            return it.next();
        }
        if let Some(v) = a.strip_prefix(long).and_then(|r| r.strip_prefix('=')) {
            return Some(v);
        }
    }
    None
}

// ---------------------------------------------------------------------------------------------
// Paths

/// Lexical normalisation of an absolute path (`~root`, and `~` when the home is known, are
/// expanded): `//`, `.` and `..` resolved. `None` for relative or over-long paths.
fn normalise(p: &str, home: Option<&str>) -> Option<String> {
    if p.len() > MAX_PATH {
        return None;
    }
    let expanded;
    let p = if let Some(rest) = p.strip_prefix("~root") {
        if !(rest.is_empty() || rest.starts_with('/')) {
            return None;
        }
        expanded = format!("/root{rest}");
        expanded.as_str()
    } else if let Some(rest) = p.strip_prefix('~') {
        if !(rest.is_empty() || rest.starts_with('/')) {
            return None;
        }
        expanded = format!("{}{rest}", home?);
        expanded.as_str()
    } else {
        p
    };
    if !p.starts_with('/') {
        return None;
    }
    let mut parts: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    let mut out = String::with_capacity(p.len());
    for c in &parts {
        out.push('/');
        out.push_str(c);
    }
    if out.is_empty() {
        out.push('/');
    }
    Some(out)
}

fn under(p: &str, dir: &str) -> bool {
    p == dir || p.strip_prefix(dir).is_some_and(|r| r.starts_with('/'))
}

/// Files whose change changes who may log in or use sudo.
fn is_account_file(p: &str) -> bool {
    matches!(
        p,
        "/etc/passwd" | "/etc/shadow" | "/etc/group" | "/etc/gshadow" | "/etc/sudoers"
    ) || under(p, "/etc/sudoers.d")
}

/// Files whose reading discloses secrets: password hashes (and their `-` backups and the
/// history of old ones), sudo rules, ssh host private keys, and anything of root's.
fn is_sensitive(p: &str) -> bool {
    if matches!(
        p,
        "/etc/shadow"
            | "/etc/shadow-"
            | "/etc/gshadow"
            | "/etc/gshadow-"
            | "/etc/sudoers"
            | "/etc/security/opasswd"
    ) || under(p, "/etc/sudoers.d")
        || under(p, "/root")
    {
        return true;
    }
    p.strip_prefix("/etc/ssh/ssh_host_")
        .is_some_and(|k| k.ends_with("_key") && !k.contains('/'))
}

/// Representative members of each set, for shell glob patterns (`cat /etc/sha*`).
const ACCOUNT_REPS: &[&str] = &[
    "/etc/passwd",
    "/etc/shadow",
    "/etc/group",
    "/etc/gshadow",
    "/etc/sudoers",
    "/etc/sudoers.d/x",
];
const SENSITIVE_REPS: &[&str] = &[
    "/etc/shadow",
    "/etc/shadow-",
    "/etc/gshadow",
    "/etc/gshadow-",
    "/etc/sudoers",
    "/etc/sudoers.d/x",
    "/etc/security/opasswd",
    "/etc/ssh/ssh_host_rsa_key",
    "/etc/ssh/ssh_host_ecdsa_key",
    "/etc/ssh/ssh_host_ed25519_key",
    "/etc/ssh/ssh_host_dsa_key",
    "/root/x",
    "/root/.ssh/id_rsa",
    "/root/.ssh/id_ed25519",
    "/root/.ssh/authorized_keys",
    "/root/.bash_history",
];

fn has_glob(p: &str) -> bool {
    p.contains(['*', '?', '['])
}

/// Shell glob match of one path segment (no `/`): `*`, `?`, and `[...]` taken as any one
/// character (an over-approximation, which is the safe side for a tripwire).
fn glob_segment(pat: &[u8], text: &[u8]) -> bool {
    // Compile `[...]` to a single wildcard first.
    let mut p: Vec<Option<u8>> = Vec::with_capacity(pat.len());
    let mut stars: Vec<bool> = Vec::with_capacity(pat.len());
    let mut i = 0;
    while let Some(&c) = pat.get(i) {
        match c {
            b'*' => {
                p.push(None);
                stars.push(true);
            }
            b'?' => {
                p.push(None);
                stars.push(false);
            }
            b'[' => match pat
                .get(i + 1..)
                .and_then(|r| r.iter().skip(1).position(|&b| b == b']'))
            {
                Some(off) => {
                    p.push(None);
                    stars.push(false);
                    i += off + 2;
                }
                None => {
                    p.push(Some(b'['));
                    stars.push(false);
                }
            },
            c => {
                p.push(Some(c));
                stars.push(false);
            }
        }
        i += 1;
    }
    // Classic linear-backtracking wildcard match.
    let (mut pi, mut ti) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ti < text.len() {
        let tc = text.get(ti).copied();
        match (p.get(pi), stars.get(pi)) {
            (Some(_), Some(true)) => {
                star = Some((pi, ti));
                pi += 1;
            }
            (Some(None), Some(false)) => {
                pi += 1;
                ti += 1;
            }
            (Some(Some(c)), _) if Some(*c) == tc => {
                pi += 1;
                ti += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    pi = sp + 1;
                    ti = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    while stars.get(pi) == Some(&true) {
        pi += 1;
    }
    pi == p.len()
}

fn glob_match(pat: &str, text: &str) -> bool {
    let (mut ps, mut ts) = (pat.split('/'), text.split('/'));
    loop {
        match (ps.next(), ts.next()) {
            (None, None) => return true,
            (Some(p), Some(t)) => {
                if !glob_segment(p.as_bytes(), t.as_bytes()) {
                    return false;
                }
            }
            _ => return false,
        }
    }
}

/// The two sets of files the classes care about.
#[derive(Clone, Copy)]
enum Files {
    Account,
    Sensitive,
}

impl Files {
    fn contains(self, p: &str) -> bool {
        match self {
            Files::Account => is_account_file(p),
            Files::Sensitive => is_sensitive(p),
        }
    }

    fn reps(self) -> &'static [&'static str] {
        match self {
            Files::Account => ACCOUNT_REPS,
            Files::Sensitive => SENSITIVE_REPS,
        }
    }
}

/// Whether argument `a` names a file of the set (glob patterns count when the argument went
/// through a shell, `globs`). Looks at the argument itself, at the value of `key=value` and
/// `--opt=value`, and at the path glued to a short option (`-f/etc/shadow`).
fn names(ctx: &Ctx, a: &str, globs: bool, set: Files) -> bool {
    if a.len() > MAX_PATH {
        return false;
    }
    let mut candidates: [Option<&str>; 3] = [Some(a), None, None];
    if let Some((_, v)) = a.split_once('=') {
        candidates[1] = Some(v);
    }
    if a.starts_with('-') {
        if let Some(pos) = a.find('/') {
            candidates[2] = a.get(pos..);
        }
    }
    candidates.iter().flatten().any(|c| {
        let Some(n) = normalise(c, ctx.home) else {
            return false;
        };
        if globs && has_glob(&n) {
            // Everything under /root or /etc/sudoers.d counts, whatever the pattern below.
            let lit = n.split(['*', '?', '[']).next().unwrap_or("");
            let lit_dir = lit.rsplit_once('/').map_or("", |(d, _)| d);
            return set.contains(lit_dir) || set.reps().iter().any(|r| glob_match(&n, r));
        }
        set.contains(&n)
    })
}

fn any_names<S: AsRef<str>>(ctx: &Ctx, args: &[S], globs: bool, set: Files) -> bool {
    args.iter().any(|a| names(ctx, a.as_ref(), globs, set))
}

/// `/var/log` or below.
fn is_log_path(ctx: &Ctx, a: &str) -> bool {
    a.len() <= MAX_PATH && normalise(a, ctx.home).is_some_and(|n| under(&n, "/var/log"))
}

const HISTORY_FILES: &[&str] = &[
    ".bash_history",
    ".zsh_history",
    ".sh_history",
    ".ash_history",
    ".mksh_history",
    ".history",
    ".python_history",
    ".mysql_history",
    ".psql_history",
    ".node_repl_history",
    ".lesshst",
    ".viminfo",
];

fn is_history_file(a: &str) -> bool {
    HISTORY_FILES.contains(&basename(a)) || basename(a) == "zhistory"
}

// ---------------------------------------------------------------------------------------------
// Wrappers: commands that run another command given in their arguments

struct Wrapper {
    names: &'static [&'static str],
    /// Short option letters taking a value (next argument, or glued: `-n5`).
    short_values: &'static str,
    /// Long options taking the next argument as value (`--opt=value` is handled anyway).
    long_values: &'static [&'static str],
    /// Short letters / long options after which no command runs (`sudo -l`, `command -v`).
    stop_short: &'static str,
    stop_long: &'static [&'static str],
    /// Operands to skip before the command (`timeout DURATION`, `chroot DIR`).
    positionals: usize,
    /// `NAME=value` operands are skipped (env).
    assignments: bool,
}

const WRAPPERS: &[Wrapper] = &[
    Wrapper {
        names: &["env"],
        short_values: "uCS",
        long_values: &["--unset", "--chdir", "--split-string"],
        stop_short: "",
        stop_long: &[],
        positionals: 0,
        assignments: true,
    },
    Wrapper {
        names: &["nohup", "builtin", "setsid", "catchsegv", "unbuffer"],
        short_values: "",
        long_values: &[],
        stop_short: "",
        stop_long: &[],
        positionals: 0,
        assignments: false,
    },
    Wrapper {
        names: &["nice"],
        short_values: "n",
        long_values: &["--adjustment"],
        stop_short: "",
        stop_long: &[],
        positionals: 0,
        assignments: false,
    },
    Wrapper {
        names: &["ionice"],
        short_values: "cn",
        long_values: &["--class", "--classdata"],
        stop_short: "pPu",
        stop_long: &["--pid", "--pgid", "--uid"],
        positionals: 0,
        assignments: false,
    },
    Wrapper {
        names: &["timeout"],
        short_values: "sk",
        long_values: &["--signal", "--kill-after"],
        stop_short: "",
        stop_long: &[],
        positionals: 1,
        assignments: false,
    },
    Wrapper {
        names: &["stdbuf"],
        short_values: "ioe",
        long_values: &["--input", "--output", "--error"],
        stop_short: "",
        stop_long: &[],
        positionals: 0,
        assignments: false,
    },
    Wrapper {
        names: &["time"],
        short_values: "fo",
        long_values: &["--format", "--output"],
        stop_short: "",
        stop_long: &[],
        positionals: 0,
        assignments: false,
    },
    Wrapper {
        names: &["command"],
        short_values: "",
        long_values: &[],
        stop_short: "vV",
        stop_long: &[],
        positionals: 0,
        assignments: false,
    },
    Wrapper {
        names: &["exec"],
        short_values: "a",
        long_values: &[],
        stop_short: "",
        stop_long: &[],
        positionals: 0,
        assignments: false,
    },
    Wrapper {
        names: &["chrt"],
        short_values: "TPD",
        long_values: &["--sched-runtime", "--sched-period", "--sched-deadline"],
        stop_short: "pm",
        stop_long: &["--pid", "--max"],
        positionals: 1,
        assignments: false,
    },
    Wrapper {
        names: &["taskset"],
        short_values: "",
        long_values: &[],
        stop_short: "p",
        stop_long: &["--pid"],
        positionals: 1,
        assignments: false,
    },
    Wrapper {
        names: &["sudo"],
        short_values: "ughpCDRTUrt",
        long_values: &[
            "--user",
            "--group",
            "--host",
            "--prompt",
            "--close-from",
            "--chdir",
            "--chroot",
            "--command-timeout",
            "--other-user",
            "--role",
            "--type",
        ],
        stop_short: "elvVK",
        stop_long: &[
            "--edit",
            "--list",
            "--validate",
            "--version",
            "--remove-timestamp",
        ],
        positionals: 0,
        assignments: true,
    },
    Wrapper {
        names: &["doas"],
        short_values: "u",
        long_values: &[],
        stop_short: "C",
        stop_long: &[],
        positionals: 0,
        assignments: false,
    },
    Wrapper {
        names: &["chroot"],
        short_values: "",
        long_values: &["--userspec", "--groups"],
        stop_short: "",
        stop_long: &[],
        positionals: 1,
        assignments: false,
    },
    Wrapper {
        names: &["xargs"],
        short_values: "adEILnPs",
        long_values: &[
            "--arg-file",
            "--delimiter",
            "--eof",
            "--replace",
            "--max-lines",
            "--max-args",
            "--max-procs",
            "--max-chars",
            "--process-slot-var",
        ],
        stop_short: "",
        stop_long: &[],
        positionals: 0,
        assignments: false,
    },
    Wrapper {
        names: &["flock"],
        short_values: "wE",
        long_values: &["--timeout", "--conflict-exit-code"],
        stop_short: "c",
        stop_long: &["--command"],
        positionals: 1,
        assignments: false,
    },
    Wrapper {
        names: &["nsenter"],
        short_values: "tSGUC",
        long_values: &["--target", "--setuid", "--setgid"],
        stop_short: "",
        stop_long: &[],
        positionals: 0,
        assignments: false,
    },
    Wrapper {
        names: &["unshare", "busybox"],
        short_values: "",
        long_values: &[],
        stop_short: "",
        stop_long: &["--list"],
        positionals: 0,
        assignments: false,
    },
    Wrapper {
        names: &["systemd-run"],
        short_values: "upEMH",
        long_values: &[
            "--unit",
            "--property",
            "--setenv",
            "--machine",
            "--host",
            "--description",
            "--slice",
            "--uid",
            "--gid",
            "--nice",
            "--working-directory",
        ],
        stop_short: "",
        stop_long: &[],
        positionals: 0,
        assignments: false,
    },
    Wrapper {
        names: &["strace", "ltrace"],
        short_values: "oepsuEPIbaX",
        long_values: &["--output", "--expr", "--attach", "--string-limit", "--user"],
        stop_short: "",
        stop_long: &[],
        positionals: 0,
        assignments: false,
    },
];

fn is_assignment(a: &str) -> bool {
    match a.split_once('=') {
        Some((name, _)) => {
            !name.is_empty()
                && !name.starts_with(|c: char| c.is_ascii_digit())
                && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        }
        None => false,
    }
}

/// For a wrapper, the index in `args` where the wrapped command starts: `Some(Some(i))`;
/// `Some(None)` when the wrapper runs no command (`sudo -l`, `env` alone); `None` for a
/// command that is no wrapper.
fn unwrap_index<S: AsRef<str>>(base: &str, args: &[S]) -> Option<Option<usize>> {
    let w = WRAPPERS.iter().find(|w| w.names.contains(&base))?;
    let mut i = 0;
    let mut skip_pos = w.positionals;
    while let Some(a) = arg(args, i) {
        if a == "--" {
            i += 1;
            break;
        }
        if let Some(long) = a.strip_prefix("--").filter(|l| !l.is_empty()) {
            let name = format!("--{}", long.split('=').next().unwrap_or(""));
            if w.stop_long.contains(&name.as_str()) {
                return Some(None);
            }
            i += if !long.contains('=') && w.long_values.contains(&name.as_str()) {
                2
            } else {
                1
            };
            continue;
        }
        if let Some(cluster) = short_cluster(a) {
            // Old `nice -10 cmd` and `kill -9`-like numeric options carry no value.
            let mut consumed = 1;
            for (pos, ch) in cluster.char_indices() {
                if w.stop_short.contains(ch) {
                    return Some(None);
                }
                if w.short_values.contains(ch) {
                    if cluster
                        .get(pos + ch.len_utf8()..)
                        .is_some_and(str::is_empty)
                    {
                        consumed = 2;
                    }
                    break;
                }
            }
            i += consumed;
            continue;
        }
        if w.assignments && is_assignment(a) {
            i += 1;
            continue;
        }
        if skip_pos > 0 {
            skip_pos -= 1;
            i += 1;
            continue;
        }
        break;
    }
    Some((i < args.len()).then_some(i))
}

// ---------------------------------------------------------------------------------------------
// The classifier for one simple command

const SHELLS: &[&str] = &[
    "sh", "bash", "dash", "zsh", "ksh", "ksh93", "mksh", "lksh", "pdksh", "ash", "yash", "posh",
    "rbash", "fish",
];
const NETCATS: &[&str] = &[
    "nc",
    "ncat",
    "netcat",
    "nc.traditional",
    "nc.openbsd",
    "pnc",
];
const LOG_UNITS: &[&str] = &[
    "auditd",
    "rsyslog",
    "syslog-ng",
    "systemd-journald",
    "syslog",
];
const LOG_DAEMONS: &[&str] = &[
    "auditd",
    "rsyslogd",
    "syslog-ng",
    "systemd-journald",
    "syslogd",
];
const LOG_WIPERS: &[&str] = &["shred", "truncate", "rm", "unlink", "srm", "wipe"];

const ACCOUNT_TOOLS: &[&str] = &[
    "useradd",
    "usermod",
    "userdel",
    "groupadd",
    "groupmod",
    "groupdel",
    "adduser",
    "deluser",
    "addgroup",
    "delgroup",
    "passwd",
    "chpasswd",
    "chgpasswd",
    "chage",
    "gpasswd",
    "vipw",
    "vigr",
    "visudo",
    "chsh",
    "chfn",
    "newusers",
    "pwconv",
    "pwunconv",
    "grpconv",
    "grpunconv",
];
const EDITORS: &[&str] = &[
    "vi",
    "vim",
    "nvim",
    "vim.basic",
    "vim.tiny",
    "vim.nox",
    "vim.gtk3",
    "gvim",
    "nano",
    "rnano",
    "pico",
    "emacs",
    "emacs-nox",
    "ed",
    "red",
    "ex",
    "joe",
    "jed",
    "mcedit",
    "micro",
    "ne",
    "kak",
    "hx",
    "helix",
    "gedit",
    "mg",
    "zile",
];
/// Commands that change a file named anywhere in their arguments.
const FILE_CHANGERS: &[&str] = &[
    "tee", "mv", "rm", "unlink", "truncate", "shred", "chmod", "chown", "chgrp", "chattr",
    "setfacl",
];
/// Commands that write only their destination (the last operand or `-t DIR`).
const COPIERS: &[&str] = &["cp", "install", "ln", "rsync", "scp"];
/// Commands that only look at names and metadata, never contents: not a sensitive read.
const METADATA_ONLY: &[&str] = &[
    "ls", "stat", "test", "[", "du", "lsattr", "getfacl", "namei", "realpath", "readlink",
    "dirname", "basename", "file", "touch", "mkdir", "rmdir", "cd", "pwd", "echo", "printf",
];

const APT_VERBS: &[&str] = &[
    "install",
    "reinstall",
    "upgrade",
    "dist-upgrade",
    "full-upgrade",
    "safe-upgrade",
    "dselect-upgrade",
    "remove",
    "purge",
    "autoremove",
    "autopurge",
    "build-dep",
    "satisfy",
];
const APT_VALUE_OPTS: &[&str] = &[
    "-o",
    "-c",
    "-t",
    "-a",
    "--option",
    "--config-file",
    "--target-release",
    "--host-architecture",
];
const DNF_VERBS: &[&str] = &[
    "install",
    "in",
    "reinstall",
    "update",
    "upgrade",
    "up",
    "remove",
    "erase",
    "rm",
    "autoremove",
    "downgrade",
    "distro-sync",
    "distrosync",
    "dist-upgrade",
    "dup",
    "update-to",
    "upgrade-to",
    "localinstall",
    "localupdate",
    "groupinstall",
    "groupupdate",
    "groupupgrade",
    "groupremove",
    "grouperase",
    "swap",
    "patch",
    "source-install",
    "si",
];
const DNF_GROUP_VERBS: &[&str] = &[
    "install",
    "remove",
    "erase",
    "update",
    "upgrade",
    "reinstall",
    "swap",
];
const DNF_VALUE_OPTS: &[&str] = &[
    "-c",
    "--config",
    "-x",
    "--exclude",
    "-d",
    "--debuglevel",
    "-e",
    "--errorlevel",
    "--installroot",
    "--releasever",
    "--repo",
    "--repoid",
    "--enablerepo",
    "--disablerepo",
    "--setopt",
    "--forcearch",
    "--color",
    "-r",
    "--root",
    "-R",
    "-D",
    "--reposd-dir",
];
const PIP_VERBS: &[&str] = &["install", "uninstall"];
const PIP_VALUE_OPTS: &[&str] = &[
    "--proxy",
    "--log",
    "--log-file",
    "--cache-dir",
    "--python",
    "--timeout",
    "--retries",
    "--cert",
    "--client-cert",
    "--exists-action",
    "--trusted-host",
    "-i",
    "--index-url",
    "--extra-index-url",
    "--use-feature",
    "--use-deprecated",
];
const NPM_VERBS: &[&str] = &[
    "install",
    "i",
    "in",
    "ins",
    "inst",
    "insta",
    "instal",
    "isnt",
    "isnta",
    "isntal",
    "add",
    "uninstall",
    "un",
    "unlink",
    "remove",
    "rm",
    "r",
    "update",
    "up",
    "upgrade",
];

fn simple<'x, S: AsRef<str>>(
    ctx: &Ctx,
    depth: usize,
    cmd: &'x str,
    args: &'x [S],
    redirs: &[Redir],
    globs: bool,
    acc: &mut Acc,
) {
    let (mut cmd, mut args) = (cmd, args);
    // Peel wrappers; each step consumes at least one argument, so this ends.
    loop {
        if extra_hit(ctx, cmd, args) {
            acc.bits |= CLASS_IOC;
        }
        if basename(cmd) == "env" {
            // `env -S 'apt install x'` splits its value into a command line.
            if let Some(line) = opt_value(args, "-S", "--split-string") {
                acc.bits |= script(ctx, depth + 1, line);
            }
        }
        match unwrap_index(basename(cmd), args) {
            Some(Some(i)) => {
                let Some(next) = args.get(i) else { break };
                cmd = next.as_ref();
                args = tail(args, i + 1);
            }
            _ => break,
        }
    }
    let base = basename(cmd);
    let mut interactive_shell = false;

    // IOC ----------------------------------------------------------------------------------
    if SHELLS.contains(&base) {
        let inv = shell_invocation(args);
        interactive_shell = inv.interactive;
        if inv.interactive || inv.stdin {
            acc.stdin_shell = true;
        }
        if let Some(script_text) = inv.script {
            acc.bits |= script(ctx, depth + 1, script_text);
        }
    }
    if matches!(base, "su" | "runuser" | "script") {
        if let Some(s) = opt_value(args, "-c", "--command") {
            acc.bits |= script(ctx, depth + 1, s);
        }
    }
    if base == "flock" {
        if let Some(s) = opt_value(args, "-c", "--command") {
            acc.bits |= script(ctx, depth + 1, s);
        }
    }
    if base == "watch" {
        if let Some((i, _)) = first_operand(args, &["-n", "--interval", "-q", "--equexit"]) {
            let joined: Vec<&str> = tail(args, i).iter().map(AsRef::as_ref).collect();
            acc.bits |= script(ctx, depth + 1, &joined.join(" "));
        }
    }
    if base == "find" {
        find_command(ctx, depth, args, acc);
    }
    if NETCATS.contains(&base) {
        acc.net_client = true;
        let exec = args.iter().map(AsRef::as_ref).any(|a| {
            cluster_has(a, "ec")
                || ["--exec", "--sh-exec", "--lua-exec"]
                    .iter()
                    .any(|o| a == *o || a.strip_prefix(o).is_some_and(|r| r.starts_with('=')))
        });
        if exec {
            acc.bits |= CLASS_IOC;
        }
    }
    if base == "telnet" {
        acc.net_client = true;
    }
    if base == "openssl" && args.iter().any(|a| a.as_ref() == "s_client") {
        acc.net_client = true;
    }
    if base == "socat" {
        acc.net_client = true;
        let exec = args.iter().map(AsRef::as_ref).any(|a| {
            let b = a.as_bytes();
            b.get(..5).is_some_and(|p| p.eq_ignore_ascii_case(b"exec:"))
                || b.get(..7)
                    .is_some_and(|p| p.eq_ignore_ascii_case(b"system:"))
        });
        if exec {
            acc.bits |= CLASS_IOC;
        }
    }
    let interp = ["python", "perl", "php", "ruby"]
        .into_iter()
        .find(|n| versioned(base, n));
    if let Some(lang) = interp {
        interpreter(ctx, lang, args, globs, acc);
    }
    if base == "mkfifo" || (base == "mknod" && args.iter().any(|a| a.as_ref() == "p")) {
        acc.fifo = true;
    }
    if base == "auditctl" {
        let mut it = args.iter().map(AsRef::as_ref).peekable();
        while let Some(a) = it.next() {
            let disable = (a == "-e" && it.peek() == Some(&"0")) || a == "-e0";
            if disable || a == "-D" {
                acc.bits |= CLASS_IOC;
            }
        }
    }
    let is_log_unit = |u: &str| {
        let u = u
            .strip_suffix(".service")
            .or_else(|| u.strip_suffix(".socket"))
            .unwrap_or(u);
        LOG_UNITS.contains(&u)
    };
    if base == "systemctl" {
        let stops = args
            .iter()
            .any(|a| matches!(a.as_ref(), "stop" | "disable" | "mask" | "kill"));
        if stops && args.iter().any(|a| is_log_unit(a.as_ref())) {
            acc.bits |= CLASS_IOC;
        }
    }
    if base == "service" && is_log_unit(arg(args, 0).unwrap_or("")) && arg(args, 1) == Some("stop")
    {
        acc.bits |= CLASS_IOC;
    }
    if LOG_UNITS.contains(&base) && args.iter().any(|a| a.as_ref() == "stop") {
        // /etc/init.d/auditd stop
        acc.bits |= CLASS_IOC;
    }
    if matches!(base, "pkill" | "killall") && args.iter().any(|a| LOG_DAEMONS.contains(&a.as_ref()))
    {
        acc.bits |= CLASS_IOC;
    }
    if LOG_WIPERS.contains(&base)
        && args
            .iter()
            .any(|a| is_log_path(ctx, a.as_ref()) || is_history_file(a.as_ref()))
    {
        acc.bits |= CLASS_IOC;
    }
    if base == "tee"
        && !args.iter().any(|a| matches!(a.as_ref(), "-a" | "--append"))
        && args.iter().any(|a| is_log_path(ctx, a.as_ref()))
    {
        acc.bits |= CLASS_IOC;
    }
    if base == "ln"
        && args.iter().any(|a| a.as_ref() == "/dev/null")
        && args.iter().any(|a| is_history_file(a.as_ref()))
    {
        acc.bits |= CLASS_IOC;
    }
    if base == "journalctl"
        && args
            .iter()
            .map(AsRef::as_ref)
            .any(|a| a.starts_with("--vacuum-") || a == "--rotate")
    {
        acc.bits |= CLASS_IOC;
    }
    if base == "history" && args.iter().any(|a| cluster_has(a.as_ref(), "cd")) {
        acc.bits |= CLASS_IOC;
    }
    let has = |w: &str| args.iter().any(|a| a.as_ref() == w);
    let history_off = match base {
        "unset" => has("HISTFILE") || has("HISTSIZE"),
        "export" | "declare" | "typeset" | "readonly" => {
            args.iter().any(|a| history_killer(a.as_ref()))
        }
        "set" => has("+o") && has("history"),
        _ => false,
    };
    if history_off {
        acc.bits |= CLASS_IOC;
    }
    if base == "setenforce"
        && arg(args, 0).is_some_and(|a| a == "0" || a.eq_ignore_ascii_case("permissive"))
    {
        acc.bits |= CLASS_IOC;
    }
    if (base.starts_with("iptables") || base.starts_with("ip6tables"))
        && (has("-F") || has("--flush"))
    {
        acc.bits |= CLASS_IOC;
    }
    if base == "nft" && has("flush") && has("ruleset") {
        acc.bits |= CLASS_IOC;
    }
    if base == "ufw" && arg(args, 0) == Some("disable") {
        acc.bits |= CLASS_IOC;
    }

    // Software --------------------------------------------------------------------------------
    if software(base, args) {
        acc.bits |= CLASS_SOFTWARE_INSTALL;
    }

    // Accounts --------------------------------------------------------------------------------
    if account_change(ctx, base, args, globs) {
        acc.bits |= CLASS_ACCOUNT_CHANGE;
    }

    // Sensitive reads -------------------------------------------------------------------------
    if !METADATA_ONLY.contains(&base) && any_names(ctx, args, globs, Files::Sensitive) {
        acc.bits |= CLASS_SENSITIVE_READ;
    }

    // Redirections (from a script) ------------------------------------------------------------
    let amp = redirs.iter().any(|r| r.amp);
    for r in redirs {
        let t = r.target.as_str();
        if (t.contains("/dev/tcp/") || t.contains("/dev/udp/"))
            && (amp || interactive_shell || base == "exec")
        {
            acc.bits |= CLASS_IOC;
        }
        let writes = matches!(r.op, RedirOp::Out | RedirOp::Append | RedirOp::ReadWrite);
        let reads = matches!(r.op, RedirOp::In | RedirOp::ReadWrite);
        if writes && names(ctx, t, true, Files::Account) {
            acc.bits |= CLASS_ACCOUNT_CHANGE;
        }
        if reads && names(ctx, t, true, Files::Sensitive) {
            acc.bits |= CLASS_SENSITIVE_READ;
        }
        if r.op == RedirOp::Out && (is_log_path(ctx, t) || is_history_file(t)) {
            acc.bits |= CLASS_IOC;
        }
    }
}

/// `HISTFILE=/dev/null`, `HISTSIZE=0`, `HISTFILESIZE=0`, `SAVEHIST=0`.
fn history_killer(a: &str) -> bool {
    match a.split_once('=') {
        Some(("HISTFILE", v)) => v.is_empty() || v == "/dev/null",
        Some(("HISTSIZE" | "HISTFILESIZE" | "SAVEHIST", v)) => v == "0",
        _ => false,
    }
}

fn extra_hit<S: AsRef<str>>(ctx: &Ctx, cmd: &str, args: &[S]) -> bool {
    ctx.extra.iter().any(|e| match e {
        IocEntry::Name(n) => basename(cmd) == n,
        IocEntry::Command { path, args: want } => {
            // A bare name in a script is found through PATH: compare by basename then.
            let same = if cmd.contains('/') {
                cmd == path
            } else {
                basename(path) == cmd
            };
            same && match want {
                None => true,
                Some(w) if w.is_empty() => args.is_empty(),
                Some(w) => {
                    args.len() >= w.len() && w.iter().zip(args).all(|(a, b)| a == b.as_ref())
                }
            }
        }
    })
}

struct ShellInvocation<'x> {
    script: Option<&'x str>,
    interactive: bool,
    /// Reads commands from standard input (no script, no file).
    stdin: bool,
}

fn shell_invocation<S: AsRef<str>>(args: &[S]) -> ShellInvocation<'_> {
    let mut i = 0;
    let (mut c_flag, mut interactive, mut s_flag) = (false, false, false);
    while let Some(a) = arg(args, i) {
        if a == "--" || a == "-" {
            i += 1;
            break;
        }
        if matches!(a, "-o" | "+o" | "-O" | "+O" | "--rcfile" | "--init-file") {
            i += 2;
            continue;
        }
        if a.starts_with("--") {
            i += 1;
            continue;
        }
        if let Some(cl) = short_cluster(a) {
            c_flag |= cl.contains('c');
            interactive |= cl.contains('i');
            s_flag |= cl.contains('s');
            i += if cl.contains(['o', 'O']) { 2 } else { 1 };
            continue;
        }
        if a.starts_with('+') && a.len() > 1 {
            i += 1;
            continue;
        }
        break;
    }
    let operand = arg(args, i);
    ShellInvocation {
        script: if c_flag { operand } else { None },
        interactive,
        stdin: !c_flag && (s_flag || operand.is_none()),
    }
}

fn interpreter<S: AsRef<str>>(ctx: &Ctx, lang: &str, args: &[S], globs: bool, acc: &mut Acc) {
    let inline_letters = match lang {
        "python" => "c",
        "perl" => "eE",
        "php" => "r",
        _ => "e",
    };
    let all = || args.iter().map(AsRef::as_ref);
    let inline = all().any(|a| cluster_has(a, inline_letters));
    if inline {
        let sock = all().any(|a| contains_ci(a, "sock"));
        let spawns = all().any(|a| {
            [
                "subprocess",
                "pty",
                "dup2",
                "/bin/sh",
                "/bin/bash",
                "exec",
                "system(",
                "popen",
                "spawn",
                "fork",
                "passthru",
            ]
            .iter()
            .any(|n| contains_ci(a, n))
        });
        if sock && spawns {
            acc.bits |= CLASS_IOC;
        }
    }
    // python -m pip install ...
    if lang == "python" {
        let mut i = 0;
        while let Some(a) = arg(args, i) {
            let module = if a == "-m" {
                arg(args, i + 1).map(|m| (m, i + 2))
            } else {
                a.strip_prefix("-m")
                    .filter(|m| !m.is_empty())
                    .map(|m| (m, i + 1))
            };
            if let Some((m, rest)) = module {
                if versioned(m, "pip") && pip_changes(tail(args, rest)) {
                    acc.bits |= CLASS_SOFTWARE_INSTALL;
                }
                break;
            }
            if !a.starts_with('-') || cluster_has(a, "c") {
                break;
            }
            i += 1;
        }
    }
    // perl -pi -e 's/.../' /etc/passwd edits in place. `-Mstrict`, `-Ilib`, `-x` carry a
    // glued value whose letters are not options.
    let in_place = |a: &str| {
        short_cluster(a).is_some_and(|c| !c.starts_with(['M', 'm', 'I', 'x']) && c.contains('i'))
    };
    if lang == "perl" && all().any(in_place) && any_names(ctx, args, globs, Files::Account) {
        acc.bits |= CLASS_ACCOUNT_CHANGE;
    }
}

fn pip_changes<S: AsRef<str>>(args: &[S]) -> bool {
    first_operand(args, PIP_VALUE_OPTS).is_some_and(|(_, v)| PIP_VERBS.contains(&v))
}

/// `find START... EXPR`: `-delete` under /var/log clears logs; `-exec CMD {} ;` runs CMD on
/// the start paths, judged as if typed with them.
fn find_command<S: AsRef<str>>(ctx: &Ctx, depth: usize, args: &[S], acc: &mut Acc) {
    // `-exec` fans out over start paths; two levels of find bound the work at 16 passes.
    if depth >= 2 {
        return;
    }
    let all: Vec<&str> = args.iter().map(AsRef::as_ref).collect();
    let mut i = 0;
    while let Some(a) = all.get(i) {
        match *a {
            "-H" | "-L" | "-P" => i += 1,
            "-D" => i += 2,
            a if a.starts_with("-O") => i += 1,
            _ => break,
        }
    }
    let starts: Vec<&str> = tail(&all, i)
        .iter()
        .take_while(|a| !a.starts_with('-') && **a != "(" && **a != "!")
        .copied()
        .collect();
    let exprs = tail(&all, i + starts.len());
    if exprs.contains(&"-delete") && starts.iter().any(|s| is_log_path(ctx, s)) {
        acc.bits |= CLASS_IOC;
    }
    let mut j = 0;
    while let Some(a) = exprs.get(j) {
        if matches!(*a, "-exec" | "-execdir" | "-ok" | "-okdir") {
            let sub = tail(exprs, j + 1);
            let end = sub
                .iter()
                .position(|s| *s == ";" || *s == "+")
                .unwrap_or(sub.len());
            let sub = sub.get(..end).unwrap_or(&[]);
            if let Some((cmd, rest)) = sub.split_first() {
                let paths: &[&str] = if starts.is_empty() { &["."] } else { &starts };
                for p in paths.iter().take(4) {
                    let replaced: Vec<String> = rest.iter().map(|r| r.replace("{}", p)).collect();
                    simple(ctx, depth + 1, cmd, &replaced, &[], false, acc);
                }
            }
            j += end + 2;
            continue;
        }
        j += 1;
    }
}

fn software<S: AsRef<str>>(base: &str, args: &[S]) -> bool {
    let all = || args.iter().map(AsRef::as_ref);
    let verb_in = |value_opts: &[&str], verbs: &[&str]| {
        first_operand(args, value_opts).is_some_and(|(_, v)| verbs.contains(&v))
    };
    match base {
        "apt" | "apt-get" | "aptitude" => verb_in(APT_VALUE_OPTS, APT_VERBS),
        "dpkg" => all().any(|a| {
            matches!(a, "--install" | "--remove" | "--purge" | "--unpack")
                || short_cluster(a).is_some_and(|c| {
                    c.bytes().all(|b| b.is_ascii_alphabetic()) && c.contains(['i', 'r', 'P'])
                })
        }),
        "rpm" => {
            let query = all().any(|a| {
                matches!(a, "--query" | "--verify" | "--checksig" | "--querytags")
                    || cluster_has(a, "qVK")
            });
            let change = all().any(|a| {
                matches!(
                    a,
                    "--install" | "--upgrade" | "--freshen" | "--erase" | "--reinstall"
                ) || short_cluster(a).is_some_and(|c| {
                    c.bytes().all(|b| b.is_ascii_alphabetic()) && c.contains(['i', 'U', 'F', 'e'])
                })
            });
            change && !query
        }
        "dnf" | "dnf5" | "yum" | "microdnf" | "tdnf" | "zypper" => {
            match first_operand(args, DNF_VALUE_OPTS) {
                Some((i, "group" | "groups" | "module")) => {
                    first_operand(tail(args, i + 1), DNF_VALUE_OPTS)
                        .is_some_and(|(_, v)| DNF_GROUP_VERBS.contains(&v))
                }
                Some((_, v)) => DNF_VERBS.contains(&v),
                None => false,
            }
        }
        b if versioned(b, "pip") => pip_changes(args),
        "snap" => verb_in(&[], &["install", "remove", "refresh", "revert"]),
        "flatpak" => verb_in(&[], &["install", "uninstall", "update", "remove"]),
        "gem" => verb_in(&[], &["install", "uninstall", "update"]),
        "apk" => verb_in(
            &["-X", "--repository", "-p", "--root"],
            &["add", "del", "upgrade", "fix"],
        ),
        "cargo" => verb_in(&[], &["install", "uninstall"]),
        "npm" | "pnpm" => {
            let global = all().any(|a| matches!(a, "-g" | "--global" | "--location=global"));
            global
                && verb_in(
                    &[
                        "--prefix",
                        "--registry",
                        "--cache",
                        "--userconfig",
                        "-w",
                        "--workspace",
                    ],
                    NPM_VERBS,
                )
        }
        "yarn" => {
            arg(args, 0) == Some("global")
                && matches!(arg(args, 1), Some("add" | "remove" | "upgrade"))
        }
        "pacman" => {
            let operand = first_operand(args, &[]).is_some();
            all().any(|a| {
                matches!(a, "--upgrade" | "--remove")
                    || short_cluster(a).is_some_and(|c| {
                        let sync = c.starts_with('S')
                            && !c.contains(['s', 'i', 'l', 'g', 'p', 'c', 'w'])
                            // `-Sy` alone only refreshes the package lists.
                            && (operand || c.contains('u'));
                        c.starts_with('U') || c.starts_with('R') || sync
                    })
            })
        }
        _ => false,
    }
}

fn account_change<S: AsRef<str>>(ctx: &Ctx, base: &str, args: &[S], globs: bool) -> bool {
    let all = || args.iter().map(AsRef::as_ref);
    if ACCOUNT_TOOLS.contains(&base) {
        // Read-only modes of the same tools are not changes.
        let read_only = match base {
            "visudo" => all().any(|a| a == "--check" || a == "--version" || cluster_has(a, "cV")),
            "chage" => all().any(|a| a == "--list" || cluster_has(a, "l")),
            "passwd" => all().any(|a| a == "--status" || cluster_has(a, "S")),
            "chsh" => all().any(|a| a == "--list-shells" || cluster_has(a, "l")),
            _ => false,
        };
        return !read_only;
    }
    if EDITORS.contains(&base) || FILE_CHANGERS.contains(&base) {
        return any_names(ctx, args, globs, Files::Account);
    }
    if base == "sed" {
        let in_place = all().any(|a| a.starts_with("--in-place") || cluster_has(a, "i"));
        return in_place && any_names(ctx, args, globs, Files::Account);
    }
    if base == "dd" {
        return all()
            .filter_map(|a| a.strip_prefix("of="))
            .any(|a| names(ctx, a, globs, Files::Account));
    }
    if COPIERS.contains(&base) {
        return copier_changes(ctx, args, globs);
    }
    false
}

/// cp/install/ln/rsync write only their destination: the `-t DIR` directory or the last
/// operand. Copying *from* /etc/passwd changes nothing.
fn copier_changes<S: AsRef<str>>(ctx: &Ctx, args: &[S], globs: bool) -> bool {
    let all: Vec<&str> = args.iter().map(AsRef::as_ref).collect();
    let mut target_dir: Option<&str> = None;
    let mut operands: Vec<&str> = Vec::new();
    let mut i = 0;
    while let Some(a) = all.get(i) {
        if *a == "-t" || *a == "--target-directory" {
            target_dir = all.get(i + 1).copied();
            i += 2;
            continue;
        }
        if let Some(d) = a.strip_prefix("--target-directory=") {
            target_dir = Some(d);
        } else if !a.starts_with('-') {
            operands.push(a);
        }
        i += 1;
    }
    let (dest, sources) = match target_dir {
        Some(d) => (d, &operands[..]),
        None => match operands.split_last() {
            Some((d, s)) => (*d, s),
            None => return false,
        },
    };
    if names(ctx, dest, globs, Files::Account) {
        return true;
    }
    // `cp passwd.new /etc/` or `install -m 440 rule /etc/sudoers.d/`.
    let dest_dir = normalise(dest, ctx.home);
    dest_dir.as_deref() == Some("/etc")
        && sources.iter().any(|s| {
            matches!(
                basename(s),
                "passwd" | "shadow" | "group" | "gshadow" | "sudoers"
            )
        })
}

// ---------------------------------------------------------------------------------------------
// Scripts: `sh -c TEXT` and friends

#[derive(Default)]
struct SimpleCmd {
    words: Vec<String>,
    redirs: Vec<Redir>,
}

/// Splits shell text into simple commands with their redirections. Not a shell parser: it
/// knows quotes, backslashes, comments, the separators `; & | && || ( ) \``, newlines and the
/// redirection operators, which is what finding commands and files in one-liners needs.
/// `$(...)` and backquoted text is split as commands in place; inside double quotes it is
/// returned in `subs` to be looked at as a script of its own.
fn lex(text: &str) -> (Vec<SimpleCmd>, Vec<String>) {
    let mut cmds = Vec::new();
    let mut subs = Vec::new();
    let mut cur = SimpleCmd::default();
    let mut word = String::new();
    let mut have_word = false;
    let mut pending: Option<(RedirOp, bool)> = None;
    let mut chars = text.chars().peekable();

    fn end_word(
        word: &mut String,
        have_word: &mut bool,
        pending: &mut Option<(RedirOp, bool)>,
        cur: &mut SimpleCmd,
        subs: &mut Vec<String>,
    ) {
        if !*have_word && word.is_empty() {
            return;
        }
        let w = std::mem::take(word);
        *have_word = false;
        if let Some(pos) = w.find("$(").or_else(|| w.find('`')) {
            if let Some(inner) = w.get(pos..) {
                subs.push(inner.trim_start_matches(['$', '(', '`']).to_string());
            }
        }
        match pending.take() {
            Some((op, amp)) => cur.redirs.push(Redir { op, amp, target: w }),
            None => cur.words.push(w),
        }
    }
    fn end_cmd(cur: &mut SimpleCmd, cmds: &mut Vec<SimpleCmd>) {
        let c = std::mem::take(cur);
        if !c.words.is_empty() || !c.redirs.is_empty() {
            cmds.push(c);
        }
    }

    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                have_word = true;
                for q in chars.by_ref() {
                    if q == '\'' {
                        break;
                    }
                    word.push(q);
                }
            }
            '"' => {
                have_word = true;
                while let Some(q) = chars.next() {
                    match q {
                        '"' => break,
                        '\\' => {
                            if let Some(n) = chars.next() {
                                word.push(n);
                            }
                        }
                        q => word.push(q),
                    }
                }
            }
            '\\' => match chars.next() {
                Some('\n') | None => {}
                Some(n) => word.push(n),
            },
            '#' if word.is_empty() && !have_word => {
                for n in chars.by_ref() {
                    if n == '\n' {
                        break;
                    }
                }
                end_cmd(&mut cur, &mut cmds);
            }
            ' ' | '\t' => end_word(&mut word, &mut have_word, &mut pending, &mut cur, &mut subs),
            '\n' | ';' | '|' | '(' | ')' | '`' => {
                end_word(&mut word, &mut have_word, &mut pending, &mut cur, &mut subs);
                pending = None;
                end_cmd(&mut cur, &mut cmds);
            }
            '&' if chars.peek() == Some(&'>') => {
                end_word(&mut word, &mut have_word, &mut pending, &mut cur, &mut subs);
                chars.next();
                let op = if chars.peek() == Some(&'>') {
                    chars.next();
                    RedirOp::Append
                } else {
                    RedirOp::Out
                };
                pending = Some((op, true));
            }
            '&' => {
                end_word(&mut word, &mut have_word, &mut pending, &mut cur, &mut subs);
                pending = None;
                end_cmd(&mut cur, &mut cmds);
            }
            '<' | '>' => {
                // A word of digits right before is a descriptor number, not an argument.
                if !have_word && !word.is_empty() && word.bytes().all(|b| b.is_ascii_digit()) {
                    word.clear();
                }
                end_word(&mut word, &mut have_word, &mut pending, &mut cur, &mut subs);
                let mut op_s = String::from(c);
                while let Some(&n) = chars.peek() {
                    if matches!(n, '<' | '>' | '&' | '|') && op_s.len() < 3 {
                        // `>|` is an operator, `> |` a pipe: only glue `|` right after `>`.
                        if n == '|' && op_s != ">" {
                            break;
                        }
                        op_s.push(n);
                        chars.next();
                    } else {
                        break;
                    }
                }
                let amp = op_s.contains('&') || op_s == "<>";
                let op = match op_s.as_str() {
                    "<" => RedirOp::In,
                    "<>" => RedirOp::ReadWrite,
                    ">>" => RedirOp::Append,
                    "<<" | "<<<" | "<<-" => RedirOp::Here,
                    ">&" | "<&" => {
                        // `2>&1`, `<&3`, `>&-`: descriptors; `>& file`: a file.
                        if chars
                            .peek()
                            .is_some_and(|n| n.is_ascii_digit() || *n == '-')
                        {
                            while chars
                                .peek()
                                .is_some_and(|n| n.is_ascii_digit() || *n == '-')
                            {
                                chars.next();
                            }
                            cur.redirs.push(Redir {
                                op: RedirOp::DupFd,
                                amp: true,
                                target: String::new(),
                            });
                            continue;
                        }
                        if op_s == "<&" {
                            RedirOp::In
                        } else {
                            RedirOp::Out
                        }
                    }
                    _ => RedirOp::Out,
                };
                pending = Some((op, amp));
            }
            c => word.push(c),
        }
    }
    end_word(&mut word, &mut have_word, &mut pending, &mut cur, &mut subs);
    end_cmd(&mut cur, &mut cmds);
    (cmds, subs)
}

/// Shell keywords that may precede a command word.
const KEYWORDS: &[&str] = &[
    "if", "then", "else", "elif", "fi", "do", "done", "while", "until", "!", "{", "}", "time",
    "coproc",
];

/// Classifies shell text; `depth` counts the levels of scripts already entered.
fn script(ctx: &Ctx, depth: usize, text: &str) -> u32 {
    if depth > MAX_DEPTH {
        return 0;
    }
    let (cmds, subs) = lex(text);
    let mut acc = Acc::default();
    for c in &cmds {
        let mut start = 0;
        while let Some(w) = c.words.get(start) {
            if KEYWORDS.contains(&w.as_str()) {
                start += 1;
            } else if is_assignment(w) {
                if history_killer(w) {
                    acc.bits |= CLASS_IOC;
                }
                start += 1;
            } else {
                break;
            }
        }
        let words = tail(&c.words, start);
        match words.split_first() {
            Some((cmd, rest)) => simple(ctx, depth, cmd, rest, &c.redirs, true, &mut acc),
            // Only redirections: `> /var/log/auth.log`, `exec 3<>/dev/tcp/...` without a word.
            None => simple::<String>(ctx, depth, "", &[], &c.redirs, true, &mut acc),
        }
    }
    for s in &subs {
        acc.bits |= script(ctx, depth + 1, s);
    }
    // A network client with a shell reading its stdin or a fifo is a reverse shell.
    if acc.net_client && (acc.stdin_shell || acc.fifo) {
        acc.bits |= CLASS_IOC;
    }
    acc.bits
}

#[cfg(test)]
mod tests;
