//! Paths: lexical normalisation, the account and sensitive file sets, glob patterns.

use super::args::basename;
use super::Ctx;

/// Longer arguments cannot be paths the kernel would open.
pub(super) const MAX_PATH: usize = 4096;

/// Lexical normalisation of an absolute path (`~root`, and `~` when the home is known, are
/// expanded): `//`, `.` and `..` resolved. `None` for relative or over-long paths.
pub(super) fn normalise(p: &str, home: Option<&str>) -> Option<String> {
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

pub(super) fn under(p: &str, dir: &str) -> bool {
    p == dir || p.strip_prefix(dir).is_some_and(|r| r.starts_with('/'))
}

/// Files whose change changes who may log in or use sudo.
pub(super) fn is_account_file(p: &str) -> bool {
    matches!(
        p,
        "/etc/passwd" | "/etc/shadow" | "/etc/group" | "/etc/gshadow" | "/etc/sudoers"
    ) || under(p, "/etc/sudoers.d")
}

/// Files whose reading discloses secrets: password hashes (and their `-` backups and the
/// history of old ones), sudo rules, ssh host private keys, and anything of root's.
pub(super) fn is_sensitive(p: &str) -> bool {
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
pub(super) const ACCOUNT_REPS: &[&str] = &[
    "/etc/passwd",
    "/etc/shadow",
    "/etc/group",
    "/etc/gshadow",
    "/etc/sudoers",
    "/etc/sudoers.d/x",
];
pub(super) const SENSITIVE_REPS: &[&str] = &[
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

pub(super) fn has_glob(p: &str) -> bool {
    p.contains(['*', '?', '['])
}

/// Shell glob match of one path segment (no `/`): `*`, `?`, and `[...]` taken as any one
/// character (an over-approximation, which is the safe side for a tripwire).
pub(super) fn glob_segment(pat: &[u8], text: &[u8]) -> bool {
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

pub(super) fn glob_match(pat: &str, text: &str) -> bool {
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
pub(super) enum Files {
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
pub(super) fn names(ctx: &Ctx, a: &str, globs: bool, set: Files) -> bool {
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

pub(super) fn any_names<S: AsRef<str>>(ctx: &Ctx, args: &[S], globs: bool, set: Files) -> bool {
    args.iter().any(|a| names(ctx, a.as_ref(), globs, set))
}

/// `/var/log` or below.
pub(super) fn is_log_path(ctx: &Ctx, a: &str) -> bool {
    a.len() <= MAX_PATH && normalise(a, ctx.home).is_some_and(|n| under(&n, "/var/log"))
}

pub(super) const HISTORY_FILES: &[&str] = &[
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

pub(super) fn is_history_file(a: &str) -> bool {
    HISTORY_FILES.contains(&basename(a)) || basename(a) == "zhistory"
}
