//! Programs that escape a narrow sudo scope: `jitctl grant add --sudo` warns when a grant names
//! one (the grant is still made: the operator may mean it).
//!
//! A scope entry that names a path without arguments lets the holder pass any arguments, and
//! for the programs below that is close to root: `find -exec`, `perl -e`, `less` then `!sh`,
//! `vi` then `:w /etc/sudoers.d/x`, `tar --to-command`, `cp` over `/etc/shadow`. The drop-in's
//! `Defaults:%jit-sudo intercept` makes sudo hand every command such a program *starts* to
//! sudo_jit, which refuses what the grant does not allow; it cannot see what a program does by
//! itself (an interpreter's code, an editor's writes). The table follows the public GTFOBins
//! catalogue's sudo entries for programs found on Debian and RHEL hosts; it is a warning aid,
//! not an enforcement list.

use jit_core::policy::sudo::{parse_scope_entry, ScopeEntry};

/// Why a program escapes a scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Escape {
    /// Runs arbitrary code itself (a shell, an interpreter, a debugger).
    Interpreter,
    /// Starts other commands on request (`-exec`, `--to-command`, a hook, a pager).
    Starter,
    /// Interactive, with a shell escape or a way to open any file from inside: fixed
    /// arguments do not confine it.
    Interactive,
    /// Reads or writes any file named on its command line (or copies over one).
    FileAccess,
}

impl Escape {
    fn why(self) -> &'static str {
        match self {
            Escape::Interpreter => {
                "runs any code as root by itself (intercept sees only the commands it starts)"
            }
            Escape::Starter => {
                "starts other commands on request (e.g. find -exec); sudo_jit checks them only \
                 under the drop-in's `Defaults:%jit-sudo intercept`"
            }
            Escape::Interactive => {
                "has an interactive shell escape or opens any file from inside; fixed arguments \
                 do not confine it (intercept stops only the commands it starts)"
            }
            Escape::FileAccess => {
                "reads or writes any file it is given (e.g. /etc/shadow, /etc/sudoers.d) as root"
            }
        }
    }
}

/// Program base names (after [`normalise`]) and how they escape.
const TABLE: &[(&str, Escape)] = &[
    // Shells, interpreters, debuggers.
    ("sh", Escape::Interpreter),
    ("bash", Escape::Interpreter),
    ("dash", Escape::Interpreter),
    ("zsh", Escape::Interpreter),
    ("ksh", Escape::Interpreter),
    ("mksh", Escape::Interpreter),
    ("csh", Escape::Interpreter),
    ("tcsh", Escape::Interpreter),
    ("fish", Escape::Interpreter),
    ("busybox", Escape::Interpreter),
    ("perl", Escape::Interpreter),
    ("python", Escape::Interpreter),
    ("ruby", Escape::Interpreter),
    ("php", Escape::Interpreter),
    ("lua", Escape::Interpreter),
    ("luajit", Escape::Interpreter),
    ("node", Escape::Interpreter),
    ("nodejs", Escape::Interpreter),
    ("tclsh", Escape::Interpreter),
    ("wish", Escape::Interpreter),
    ("expect", Escape::Interpreter),
    ("awk", Escape::Interpreter),
    ("gawk", Escape::Interpreter),
    ("mawk", Escape::Interpreter),
    ("nawk", Escape::Interpreter),
    ("gdb", Escape::Interpreter),
    ("julia", Escape::Interpreter),
    ("jrunscript", Escape::Interpreter),
    // Programs that start others.
    ("find", Escape::Starter),
    ("xargs", Escape::Starter),
    ("env", Escape::Starter),
    ("nice", Escape::Starter),
    ("nohup", Escape::Starter),
    ("timeout", Escape::Starter),
    ("stdbuf", Escape::Starter),
    ("setsid", Escape::Starter),
    ("chroot", Escape::Starter),
    ("unshare", Escape::Starter),
    ("nsenter", Escape::Starter),
    ("taskset", Escape::Starter),
    ("ionice", Escape::Starter),
    ("chrt", Escape::Starter),
    ("flock", Escape::Starter),
    ("watch", Escape::Starter),
    ("script", Escape::Starter),
    ("strace", Escape::Starter),
    ("ltrace", Escape::Starter),
    ("time", Escape::Starter),
    ("run-parts", Escape::Starter),
    ("start-stop-daemon", Escape::Starter),
    ("systemd-run", Escape::Starter),
    ("make", Escape::Starter),
    ("git", Escape::Starter),
    ("tar", Escape::Starter),
    ("zip", Escape::Starter),
    ("rsync", Escape::Starter),
    ("ssh", Escape::Starter),
    ("scp", Escape::Starter),
    ("sftp", Escape::Starter),
    ("socat", Escape::Starter),
    ("nc", Escape::Starter),
    ("ncat", Escape::Starter),
    ("crontab", Escape::Starter),
    ("at", Escape::Starter),
    ("apt", Escape::Starter),
    ("apt-get", Escape::Starter),
    ("dpkg", Escape::Starter),
    ("rpm", Escape::Starter),
    ("yum", Escape::Starter),
    ("dnf", Escape::Starter),
    ("pip", Escape::Starter),
    ("systemctl", Escape::Starter),
    ("journalctl", Escape::Starter),
    ("ip", Escape::Starter),
    ("capsh", Escape::Starter),
    ("valgrind", Escape::Starter),
    ("openvpn", Escape::Starter),
    ("docker", Escape::Starter),
    // Interactive: pagers, editors, clients with a `!` command.
    ("less", Escape::Interactive),
    ("more", Escape::Interactive),
    ("most", Escape::Interactive),
    ("pg", Escape::Interactive),
    ("man", Escape::Interactive),
    ("vi", Escape::Interactive),
    ("vim", Escape::Interactive),
    ("view", Escape::Interactive),
    ("rvim", Escape::Interactive),
    ("nvim", Escape::Interactive),
    ("ex", Escape::Interactive),
    ("ed", Escape::Interactive),
    ("nano", Escape::Interactive),
    ("pico", Escape::Interactive),
    ("emacs", Escape::Interactive),
    ("joe", Escape::Interactive),
    ("mg", Escape::Interactive),
    ("ftp", Escape::Interactive),
    ("tftp", Escape::Interactive),
    ("mail", Escape::Interactive),
    ("mutt", Escape::Interactive),
    ("mysql", Escape::Interactive),
    ("psql", Escape::Interactive),
    ("sqlite3", Escape::Interactive),
    ("irb", Escape::Interactive),
    ("visudo", Escape::Interactive),
    ("crash", Escape::Interactive),
    // Reading or writing any file.
    ("cat", Escape::FileAccess),
    ("head", Escape::FileAccess),
    ("tail", Escape::FileAccess),
    ("base64", Escape::FileAccess),
    ("xxd", Escape::FileAccess),
    ("od", Escape::FileAccess),
    ("dd", Escape::FileAccess),
    ("cp", Escape::FileAccess),
    ("mv", Escape::FileAccess),
    ("ln", Escape::FileAccess),
    ("tee", Escape::FileAccess),
    ("install", Escape::FileAccess),
    ("chmod", Escape::FileAccess),
    ("chown", Escape::FileAccess),
    ("setfacl", Escape::FileAccess),
    ("sed", Escape::FileAccess),
    ("sort", Escape::FileAccess),
    ("cpio", Escape::FileAccess),
    ("unzip", Escape::FileAccess),
    ("curl", Escape::FileAccess),
    ("wget", Escape::FileAccess),
    ("openssl", Escape::FileAccess),
    ("truncate", Escape::FileAccess),
    ("mount", Escape::FileAccess),
    ("passwd", Escape::FileAccess),
    ("chpasswd", Escape::FileAccess),
    ("usermod", Escape::FileAccess),
    ("useradd", Escape::FileAccess),
];

/// The table key for a program path: its base name, with a Debian alternative's suffix
/// (`vim.basic`, `vim.tiny`) and a version suffix (`python3.11`, `perl5.36.0`, `lua5.4`)
/// removed.
fn normalise(path: &str) -> &str {
    let base = path.rsplit('/').next().unwrap_or(path);
    let base = match base.split_once('.') {
        Some((head, tail)) if tail.chars().all(|c| c.is_ascii_alphabetic() || c == '3') => head,
        _ => base,
    };
    let trimmed = base.trim_end_matches(|c: char| c.is_ascii_digit() || c == '.');
    if trimmed.is_empty() {
        base
    } else {
        trimmed
    }
}

/// How the program at `path` escapes a scope, if it is a known one.
pub fn escape_of(path: &str) -> Option<Escape> {
    let key = normalise(path);
    TABLE.iter().find(|(n, _)| *n == key).map(|&(_, e)| e)
}

/// One warning per `--sudo` entry that names a known escaping program without confining it:
/// any program given with free arguments, and an interactive one even with fixed arguments.
/// `ALL` is root by the operator's explicit choice and entries that do not parse are jitd's
/// to refuse; neither warns.
pub fn warnings(scope: &[String]) -> Vec<String> {
    scope
        .iter()
        .filter_map(|entry| {
            let parsed = parse_scope_entry(entry).ok()?;
            let (path, free) = match &parsed {
                ScopeEntry::All => return None,
                ScopeEntry::AnyArgs { path } => (path.as_str(), true),
                ScopeEntry::ExactArgs { path, .. } => (path.as_str(), false),
            };
            let e = escape_of(path)?;
            (free || e == Escape::Interactive).then(|| {
                let how = if free {
                    "with any arguments"
                } else {
                    "even with these arguments"
                };
                format!(
                    "--sudo {entry:?}: {path} {how} {}; the grant is close to root unless its \
                     arguments are restricted (--sudo \"{path} ARG...\")",
                    e.why()
                )
            })
        })
        .collect()
}

/// `value` (a grant as JSON) with `"warnings": [...]` added when there are any, so `--json`
/// output carries them too.
pub fn with_warnings(mut value: serde_json::Value, warnings: &[String]) -> serde_json::Value {
    if let (Some(obj), false) = (value.as_object_mut(), warnings.is_empty()) {
        obj.insert("warnings".into(), serde_json::json!(warnings));
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_normalised() {
        for (path, want) in [
            ("/usr/bin/find", Some(Escape::Starter)),
            ("/usr/bin/python3.11", Some(Escape::Interpreter)),
            ("/usr/bin/python3", Some(Escape::Interpreter)),
            ("/usr/bin/perl5.36.0", Some(Escape::Interpreter)),
            ("/usr/bin/vim.basic", Some(Escape::Interactive)),
            ("/usr/bin/vim.tiny", Some(Escape::Interactive)),
            ("/usr/bin/lua5.4", Some(Escape::Interpreter)),
            ("/usr/bin/less", Some(Escape::Interactive)),
            ("/usr/bin/id", None),
            ("/usr/bin/systemd-resolve", None),
            ("/usr/local/bin/findings", None),
            ("/usr/bin/3", None),
        ] {
            assert_eq!(escape_of(path), want, "{path}");
        }
    }

    #[test]
    fn warns_only_for_unconfined_entries() {
        let w = |s: &[&str]| warnings(&s.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(w(&["/usr/bin/find"]).len(), 1);
        assert!(w(&["/usr/bin/find"])[0].contains("find -exec"));
        assert!(
            w(&["/usr/bin/find /var/log -name x"]).is_empty(),
            "args fixed"
        );
        assert!(w(&["/usr/bin/id", "/usr/bin/systemctl restart nginx"]).is_empty());
        assert!(w(&["ALL"]).is_empty());
        assert!(w(&["not a path"]).is_empty());
        // A pager or editor escapes whatever file it was given.
        let v = w(&["/usr/bin/less /var/log/syslog"]);
        assert!(
            v.len() == 1 && v[0].contains("even with these arguments"),
            "{v:?}"
        );
        assert_eq!(
            w(&["/usr/bin/perl", "/usr/bin/vi", "/usr/bin/id -u"]).len(),
            2
        );
    }

    #[test]
    fn json_gets_warnings_only_when_there_are_some() {
        let g = serde_json::json!({"id": "g-1"});
        assert_eq!(with_warnings(g.clone(), &[]), g);
        let v = with_warnings(g, &["x".into()]);
        assert_eq!(v["warnings"], serde_json::json!(["x"]));
    }
}
