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
//!
//! This file holds the classifier itself (one simple command, and scripts); its parts live in
//! one file each: `class` (class names and `ioc_commands` entries), `args` (word helpers),
//! `paths` (normalisation, the file sets, globbing), `wrappers` (commands that run a command),
//! `verbs` (program and package-manager verb tables) and `lexer` (the shell lexer).

use super::sudo::SudoRequest;

mod args;
mod class;
mod lexer;
mod paths;
mod verbs;
mod wrappers;

use args::*;
pub use class::{
    class_names, parse_class, parse_ioc_entry, IocEntry, CLASS_ACCOUNT_CHANGE, CLASS_ALL,
    CLASS_IOC, CLASS_SENSITIVE_READ, CLASS_SOFTWARE_INSTALL,
};
use lexer::*;
use paths::*;
use verbs::*;
use wrappers::*;

/// How many `sh -c` / `find -exec` / `$(...)` levels are looked into.
pub const MAX_DEPTH: usize = 4;

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

// ---------------------------------------------------------------------------------------------
// The classifier for one simple command

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

/// Entry points for the fuzz targets and property tests into the shell lexer and the glob
/// matcher, which are otherwise private to the classifier. Not an API: the shapes returned are
/// what an invariant check needs, nothing more.
#[doc(hidden)]
pub mod fuzzing {
    /// Lexes `text` as the classifier does: (words of each simple command, redirection
    /// targets, `$(...)` texts found inside double quotes).
    pub fn lex(text: &str) -> (Vec<Vec<String>>, Vec<String>, Vec<String>) {
        let (cmds, subs) = super::lexer::lex(text);
        let targets = cmds
            .iter()
            .flat_map(|c| c.redirs.iter().map(|r| r.target.clone()))
            .collect();
        (cmds.into_iter().map(|c| c.words).collect(), targets, subs)
    }

    /// Whether the glob `pat` matches the path `text`, as the file-set checks use it.
    pub fn glob_match(pat: &str, text: &str) -> bool {
        super::paths::glob_match(pat, text)
    }

    /// Lexical normalisation of a path as the file-set checks see it (`~` as root's home).
    pub fn normalise(p: &str) -> Option<String> {
        super::paths::normalise(p, Some("/root"))
    }
}
