//! What a tokenization grant may name. Capabilities that amount to root are refused unless
//! the operator allows one by name (`allow_caps`); a program must be an ELF executable owned
//! by root, writable by nobody else, reached from `/` through root-owned directories writable
//! by nobody else and through no symbolic link, so that no user can change what the name
//! runs. Interpreters, shells and launchers are refused by name unless `allow_cap_programs`
//! lists the path: a capability given to `python3` or `env` is given to anything they start.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::PathBuf;

use jit_core::caps;
use jit_core::host::trust::{self, Access};
use jit_proto::GrantSpec;

use crate::config::Config;

/// Most capabilities and programs one grant may name.
pub const MAX_ITEMS: usize = 16;

/// Programs that run other programs (or code) chosen by whoever starts them. The file name is
/// compared after trailing digits and dots are removed (`python3.11` is `python`).
const LAUNCHERS: &[&str] = &[
    "sh",
    "bash",
    "dash",
    "zsh",
    "ksh",
    "mksh",
    "csh",
    "tcsh",
    "fish",
    "rbash",
    "busybox",
    "env",
    "python",
    "pypy",
    "perl",
    "ruby",
    "node",
    "nodejs",
    "lua",
    "luajit",
    "php",
    "tclsh",
    "wish",
    "expect",
    "awk",
    "gawk",
    "mawk",
    "nawk",
    "gdb",
    "strace",
    "ltrace",
    "xargs",
    "find",
    "nohup",
    "timeout",
    "nice",
    "ionice",
    "setsid",
    "chrt",
    "taskset",
    "stdbuf",
    "script",
    "screen",
    "tmux",
    "sudo",
    "su",
    "runuser",
    "setpriv",
    "capsh",
    "unshare",
    "nsenter",
    "chroot",
    "flock",
    "watch",
    "vi",
    "vim",
    "nvim",
    "emacs",
    "ed",
    "less",
    "more",
    "man",
    "socat",
    "ncat",
    "nc.traditional",
    "netcat.traditional",
    "ssh",
    "make",
    "git",
    "systemd-run",
];

/// What a grant's tokenization part becomes once admitted.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Tokens {
    /// Canonical capability names, sorted.
    pub caps: Vec<String>,
    /// Program paths, sorted.
    pub programs: Vec<String>,
}

/// Validates the `allow_caps` and `allow_cap_programs` keys of jitd.toml.
///
/// # Errors
/// An unknown capability name, or a program path that is not absolute.
pub fn config_keys(
    allow_caps: Option<Vec<String>>,
    allow_programs: Option<Vec<String>>,
) -> Result<(Vec<String>, Vec<PathBuf>), String> {
    let mut out = Vec::new();
    for c in allow_caps.unwrap_or_default() {
        let n = caps::parse(&c).map_err(|e| format!("allow_caps: {e}"))?;
        out.push(caps::name(n).unwrap_or_default().to_string());
    }
    out.sort();
    out.dedup();
    let mut progs = Vec::new();
    for p in allow_programs.unwrap_or_default() {
        check_path_syntax(&p).map_err(|e| format!("allow_cap_programs: {e}"))?;
        progs.push(PathBuf::from(p));
    }
    Ok((out, progs))
}

/// Admits the `--cap`/`--program` part of a grant request: names, the deny list and the
/// path syntax. Whether each program is trusted is a host fact the caller checks with
/// [`open_trusted`] (admission asks it through `HostFacts`). Both or neither.
///
/// # Errors
/// One line saying why (an unknown or refused capability, a malformed path).
pub fn admit_caps(spec: &GrantSpec, cfg: &Config) -> Result<Tokens, String> {
    if spec.caps.is_empty() && spec.programs.is_empty() {
        return Ok(Tokens::default());
    }
    if spec.caps.is_empty() {
        return Err("--program needs --cap (the capabilities the program runs with)".into());
    }
    if spec.programs.is_empty() {
        return Err("--cap needs --program (the programs that run with it)".into());
    }
    if spec.caps.len() > MAX_ITEMS || spec.programs.len() > MAX_ITEMS {
        return Err(format!(
            "at most {MAX_ITEMS} --cap and {MAX_ITEMS} --program per grant"
        ));
    }
    let mut out = Tokens::default();
    for c in &spec.caps {
        let n = caps::parse(c).map_err(|e| format!("--cap: {e}"))?;
        let name = caps::name(n).unwrap_or_default().to_string();
        check_cap_allowed(&name, cfg)?;
        out.caps.push(name);
    }
    for p in &spec.programs {
        check_path_syntax(p)?;
        out.programs.push(p.clone());
    }
    out.caps.sort();
    out.caps.dedup();
    out.programs.sort();
    out.programs.dedup();
    Ok(out)
}

/// [`admit_caps`], then [`open_trusted`] for every program.
///
/// # Errors
/// As those.
pub fn admit(spec: &GrantSpec, cfg: &Config) -> Result<Tokens, String> {
    let t = admit_caps(spec, cfg)?;
    for p in &t.programs {
        open_trusted(p, cfg)?;
    }
    Ok(t)
}

/// Refuses a root-equivalent capability the operator has not allowed.
///
/// # Errors
/// The one-line refusal.
pub fn check_cap_allowed(name: &str, cfg: &Config) -> Result<(), String> {
    match caps::root_equivalent(name) {
        Some(why) if !cfg.allow_caps.iter().any(|a| a == name) => Err(format!(
            "{name} refused by policy: it amounts to root ({why}); an operator may allow it with allow_caps in jitd.toml"
        )),
        _ => Ok(()),
    }
}

/// An absolute, normal path: no empty, `.` or `..` component, no NUL, at most 4096 bytes.
fn check_path_syntax(p: &str) -> Result<(), String> {
    let shown: String = p.chars().take(80).collect();
    if !p.starts_with('/') || p.len() > 4096 || p.contains('\0') || p == "/" {
        return Err(format!("{shown:?} is not an absolute path to a program"));
    }
    if p[1..]
        .split('/')
        .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return Err(format!(
            "{shown:?} is not a normal path (no //, . or .. components)"
        ));
    }
    Ok(())
}

/// The launcher name a file name stands for, if it is one.
fn launcher_name(file: &str) -> Option<&'static str> {
    let stem = file.trim_end_matches(|c: char| c.is_ascii_digit() || c == '.');
    LAUNCHERS
        .iter()
        .find(|l| **l == stem || **l == file)
        .copied()
}

fn stat_fd(fd: &OwnedFd) -> Result<libc::stat, std::io::Error> {
    // SAFETY: all-zero is a valid `stat`; fstat fills it for a valid descriptor.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `fd` is open and `st` is valid for writes.
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(st)
}

fn open_at(dir: libc::c_int, name: &str, flags: libc::c_int) -> Result<OwnedFd, std::io::Error> {
    let c = CString::new(name)
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "NUL in name"))?;
    // SAFETY: `dir` is an open directory (or AT_FDCWD) and `c` a NUL-terminated name.
    let fd = unsafe { libc::openat(dir, c.as_ptr(), flags | libc::O_CLOEXEC | libc::O_NOFOLLOW) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this descriptor; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Opens `path` for execution after checking that no user can change what it runs: every
/// directory from `/` and the file itself are owned by root and writable by no one else, no
/// component is a symbolic link (each is opened with O_NOFOLLOW, relative to its parent's
/// descriptor, so nothing is resolved twice), the file is a regular ELF executable without
/// set-id bits, and it is not an interpreter, shell or launcher unless `allow_cap_programs`
/// lists it. The descriptor is what [`super::spawn`] executes.
///
/// # Errors
/// One line naming the component at fault.
pub fn open_trusted(path: &str, cfg: &Config) -> Result<OwnedFd, String> {
    check_path_syntax(path)?;
    let allowed = cfg.allow_cap_programs.iter().any(|p| p.as_os_str() == path);
    let comps: Vec<&str> = path[1..].split('/').collect();
    let mut dir = open_at(libc::AT_FDCWD, "/", libc::O_PATH | libc::O_DIRECTORY)
        .map_err(|e| format!("/: {e}"))?;
    let mut walked = String::new();
    let last = comps.len().saturating_sub(1);
    for (i, comp) in comps.iter().enumerate() {
        let st = stat_fd(&dir).map_err(|e| format!("{}/: {e}", walked))?;
        if let Some(why) = untrusted(&st) {
            return Err(format!(
                "{path:?} refused: directory {:?} is {why}",
                if walked.is_empty() {
                    "/"
                } else {
                    walked.as_str()
                }
            ));
        }
        walked.push('/');
        walked.push_str(comp);
        let flags = if i == last {
            libc::O_RDONLY
        } else {
            libc::O_PATH | libc::O_DIRECTORY
        };
        let next = open_at(dir.as_raw_fd(), comp, flags).map_err(|e| {
            if e.raw_os_error() == Some(libc::ELOOP)
                || (e.raw_os_error() == Some(libc::ENOTDIR) && is_symlink(&walked))
            {
                format!("{path:?} refused: {walked:?} is a symbolic link; give the real path of the program")
            } else {
                format!("{path:?}: {walked}: {e}")
            }
        })?;
        dir = next;
    }
    let file = dir;
    let st = stat_fd(&file).map_err(|e| format!("{path}: {e}"))?;
    if st.st_mode & libc::S_IFMT != libc::S_IFREG {
        return Err(format!("{path:?} refused: not a regular file"));
    }
    if let Some(why) = untrusted(&st) {
        return Err(format!("{path:?} refused: the program is {why}"));
    }
    if st.st_mode & 0o111 == 0 {
        return Err(format!("{path:?} refused: not executable"));
    }
    if st.st_mode & 0o6000 != 0 {
        return Err(format!("{path:?} refused: set-uid or set-gid program"));
    }
    let mut magic = [0u8; 4];
    // SAFETY: `file` is open for reading and `magic` is valid for 4 bytes.
    let n = unsafe { libc::pread(file.as_raw_fd(), magic.as_mut_ptr().cast(), 4, 0) };
    let elf = n == 4 && magic == *b"\x7fELF";
    if !elf && !allowed {
        return Err(format!(
            "{path:?} refused: not an ELF executable (a script runs its interpreter, which would carry the capability)"
        ));
    }
    let file_name = comps.last().copied().unwrap_or_default();
    if let (Some(l), false) = (launcher_name(file_name), allowed) {
        return Err(format!(
            "{path:?} refused: {l} runs other programs or code at its user's request (an operator may allow it with allow_cap_programs in jitd.toml)"
        ));
    }
    Ok(file)
}

/// The first reason the owner and mode of `st` are not "only root can change this"
/// (`jit_core::host::trust`, the rule jit applies to every file it trusts).
fn untrusted(st: &libc::stat) -> Option<String> {
    trust::violations(st.st_uid, st.st_mode, Access::ReadableByAll)
        .first()
        .map(ToString::to_string)
}

fn is_symlink(p: &str) -> bool {
    std::fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_symlink())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> Config {
        Config::defaults().unwrap()
    }

    #[test]
    fn launchers_by_stem() {
        assert_eq!(launcher_name("python3.11"), Some("python"));
        assert_eq!(launcher_name("bash"), Some("bash"));
        assert_eq!(launcher_name("perl5.36.0"), Some("perl"));
        assert_eq!(launcher_name("nc.traditional"), Some("nc.traditional"));
        assert_eq!(launcher_name("tcpdump"), None);
        assert_eq!(launcher_name("ip"), None);
    }

    #[test]
    fn paths() {
        let c = cfg();
        for bad in [
            "",
            "true",
            "./true",
            "/usr//bin/true",
            "/usr/bin/../bin/true",
            "/",
        ] {
            assert!(open_trusted(bad, &c).is_err(), "{bad:?}");
        }
        // A root-owned ELF in root-owned directories (Debian's merged /usr).
        open_trusted("/usr/bin/true", &c).unwrap();
        // /bin is a symbolic link to usr/bin on merged-/usr systems.
        if is_symlink("/bin") {
            let e = open_trusted("/bin/true", &c).unwrap_err();
            assert!(e.contains("symbolic link"), "{e}");
        }
        let e = open_trusted("/usr/bin/env", &c).unwrap_err();
        assert!(e.contains("allow_cap_programs"), "{e}");
        let e = open_trusted("/tmp/x", &c).unwrap_err();
        assert!(
            e.contains("writable by group or others") || e.contains("No such"),
            "{e}"
        );
    }

    #[test]
    fn caps_policy() {
        let mut c = cfg();
        let spec = |caps: &[&str]| GrantSpec {
            user: "carol".into(),
            caps: caps.iter().map(|s| s.to_string()).collect(),
            programs: vec!["/usr/bin/true".into()],
            ..GrantSpec::default()
        };
        let t = admit(&spec(&["net_bind_service", "CAP_NET_RAW"]), &c).unwrap();
        assert_eq!(t.caps, ["CAP_NET_BIND_SERVICE", "CAP_NET_RAW"]);
        let e = admit(&spec(&["CAP_SYS_ADMIN"]), &c).unwrap_err();
        assert!(
            e.contains("CAP_SYS_ADMIN refused by policy") && e.contains("allow_caps"),
            "{e}"
        );
        c.allow_caps = vec!["CAP_SYS_ADMIN".into()];
        admit(&spec(&["CAP_SYS_ADMIN"]), &c).unwrap();
        assert!(admit(&spec(&["CAP_SYS_PTRACE"]), &c).is_err());
        let mut s = spec(&["net_raw"]);
        s.programs.clear();
        assert!(admit(&s, &c).unwrap_err().contains("--cap needs --program"));
    }
}
