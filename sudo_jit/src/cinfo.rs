//! Reading sudo's `key=value` string vectors (`settings`, `user_info`, `command_info`) and
//! `run_argv` into owned, validated Rust values.
//!
//! Everything here is untrusted input: sizes are capped (entries, bytes per string), only the
//! keys sudo_jit needs are interpreted, a needed key that is not UTF-8, repeated with a different
//! value, or out of range is an error (which refuses jit users), numeric ids equal to
//! `(uid_t)-1` are refused (CVE-2019-14287). `run_envp` is never read (docs/threat-model.md#x13).

use libc::c_char;

/// Most entries read from one vector (`run_argv` may legitimately hold many).
pub const MAX_ENTRIES: usize = 131_072;
/// Longest single string read (sudo's own limit is the kernel's ARG_MAX).
pub const MAX_STRING: usize = 4 * 1024 * 1024;
/// Longest value of a key sudo_jit interprets (names, paths, id lists).
pub const MAX_VALUE: usize = 64 * 1024;

/// Why a vector could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InfoError {
    /// More than [`MAX_ENTRIES`] entries.
    TooManyEntries,
    /// A string longer than its cap.
    TooLong(&'static str),
    /// A needed value is not UTF-8.
    NotUtf8(&'static str),
    /// A needed key appears twice with different values.
    Duplicate(&'static str),
    /// A needed key is missing.
    Missing(&'static str),
    /// A needed value does not parse.
    Bad(&'static str),
}

impl std::fmt::Display for InfoError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InfoError::TooManyEntries => write!(f, "too many entries from sudo"),
            InfoError::TooLong(k) => write!(f, "{k} from sudo is too long"),
            InfoError::NotUtf8(k) => write!(f, "{k} from sudo is not UTF-8"),
            InfoError::Duplicate(k) => write!(f, "{k} given twice by sudo"),
            InfoError::Missing(k) => write!(f, "{k} missing from sudo's information"),
            InfoError::Bad(k) => write!(f, "bad {k} from sudo"),
        }
    }
}

/// Copies a NULL-terminated vector of C strings.
///
/// # Safety
/// `v` is null or points to a NULL-terminated array of NUL-terminated strings that stay valid
/// during the call (sudo's plugin contract).
///
/// # Errors
/// More than [`MAX_ENTRIES`] entries or a string longer than [`MAX_STRING`].
pub unsafe fn copy_vector(v: *const *const c_char) -> Result<Vec<Vec<u8>>, InfoError> {
    let mut out = Vec::new();
    if v.is_null() {
        return Ok(out);
    }
    for i in 0..=MAX_ENTRIES {
        // SAFETY: the array is NULL-terminated and we stop at the terminator, so index `i` is
        // within it.
        let p = unsafe { *v.add(i) };
        if p.is_null() {
            return Ok(out);
        }
        if i == MAX_ENTRIES {
            break;
        }
        // SAFETY: `p` is a NUL-terminated string; strnlen reads at most MAX_STRING + 1 bytes.
        let n = unsafe { libc::strnlen(p, MAX_STRING + 1) };
        if n > MAX_STRING {
            return Err(InfoError::TooLong("a string"));
        }
        // SAFETY: `n` bytes from `p` are readable (strnlen found the NUL at `n`).
        let bytes = unsafe { std::slice::from_raw_parts(p.cast::<u8>(), n) };
        out.push(bytes.to_vec());
    }
    Err(InfoError::TooManyEntries)
}

/// Looks up `key` in a `key=value` vector. Entries without `=` are ignored; a key given twice
/// must carry the same value.
///
/// # Errors
/// Duplicate with a different value, not UTF-8, longer than [`MAX_VALUE`].
pub fn get<'v>(v: &'v [Vec<u8>], key: &'static str) -> Result<Option<&'v str>, InfoError> {
    let mut found: Option<&[u8]> = None;
    for e in v {
        let Some(eq) = e.iter().position(|&b| b == b'=') else {
            continue;
        };
        let (k, val) = e.split_at(eq);
        if k != key.as_bytes() {
            continue;
        }
        let val = val.get(1..).unwrap_or_default();
        match found {
            Some(prev) if prev != val => return Err(InfoError::Duplicate(key)),
            _ => found = Some(val),
        }
    }
    match found {
        None => Ok(None),
        Some(b) if b.len() > MAX_VALUE => Err(InfoError::TooLong(key)),
        Some(b) => std::str::from_utf8(b)
            .map(Some)
            .map_err(|_| InfoError::NotUtf8(key)),
    }
}

fn get_bool(v: &[Vec<u8>], key: &'static str) -> Result<bool, InfoError> {
    match get(v, key)? {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(_) => Err(InfoError::Bad(key)),
    }
}

/// A uid/gid: decimal, not `(id_t)-1`.
pub fn parse_id(s: &str, key: &'static str) -> Result<u32, InfoError> {
    if s.is_empty() || s.len() > 10 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(InfoError::Bad(key));
    }
    match s.parse::<u32>() {
        Ok(n) if n != u32::MAX => Ok(n),
        _ => Err(InfoError::Bad(key)),
    }
}

fn get_id(v: &[Vec<u8>], key: &'static str) -> Result<Option<u32>, InfoError> {
    get(v, key)?.map(|s| parse_id(s, key)).transpose()
}

fn nonempty(s: Option<&str>) -> Option<String> {
    s.filter(|s| !s.is_empty()).map(str::to_string)
}

/// Who invoked sudo and how (`settings` and `user_info`, captured in `open`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Invocation {
    /// `user_info` `user`.
    pub user: String,
    /// `user_info` `uid`.
    pub uid: u32,
    /// `user_info` `groups` plus `gid`: the process's groups.
    pub groups: Vec<u32>,
    /// `settings` `runas_user` (`-u`).
    pub runas_user: Option<String>,
    /// `settings` `runas_group` (`-g`).
    pub runas_group: Option<String>,
    /// `-s` or `-i`.
    pub shell: bool,
    /// `settings` `sudoedit`.
    pub edit: bool,
    /// `settings` `cmnd_chroot` (`-R`).
    pub chroot: Option<String>,
    /// `settings` `remote_host` (`-h`).
    pub remote_host: Option<String>,
    /// `settings` `noninteractive` (`-n`): sudo may not prompt, so no step-up code can be
    /// asked for.
    pub noninteractive: bool,
    /// The user asked sudo to hand the command environment variables: `-E`
    /// (`settings` `preserve_environment`), or `VAR=value` / `--preserve-env=LIST` on the
    /// command line ([`argv_sets_env`]).
    pub sets_env: bool,
}

/// Parses `settings` and `user_info`.
///
/// # Errors
/// See [`InfoError`]; `uid` and `user` are required.
pub fn parse_invocation(
    settings: &[Vec<u8>],
    user_info: &[Vec<u8>],
) -> Result<Invocation, InfoError> {
    let uid = get_id(user_info, "uid")?.ok_or(InfoError::Missing("uid"))?;
    let user = get(user_info, "user")?
        .filter(|u| !u.is_empty() && u.len() <= 256)
        .ok_or(InfoError::Missing("user"))?
        .to_string();
    let mut groups = Vec::new();
    if let Some(g) = get_id(user_info, "gid")? {
        groups.push(g);
    }
    if let Some(list) = get(user_info, "groups")? {
        for g in list.split(',').filter(|g| !g.is_empty()) {
            groups.push(parse_id(g, "groups")?);
        }
    }
    Ok(Invocation {
        user,
        uid,
        groups,
        runas_user: nonempty(get(settings, "runas_user")?),
        runas_group: nonempty(get(settings, "runas_group")?),
        shell: get_bool(settings, "run_shell")? || get_bool(settings, "login_shell")?,
        edit: get_bool(settings, "sudoedit")?,
        chroot: nonempty(get(settings, "cmnd_chroot")?),
        remote_host: nonempty(get(settings, "remote_host")?),
        noninteractive: get_bool(settings, "noninteractive")?,
        sets_env: get_bool(settings, "preserve_environment")?,
    })
}

/// Whether sudo's command line (`submit_argv` of `open`, before `submit_optind`) sets
/// environment variables for the command: a `VAR=value` word (sudo takes every word with a `=`
/// that starts with neither `-`, `/` nor `=` among its options as one) or `--preserve-env=LIST`
/// (any prefix getopt accepts). Neither reaches an approval plugin otherwise, and the sudoers
/// rule `... NOPASSWD: ALL` implies SETENV, so sudo passes `LD_PRELOAD=...` on to the
/// command. An option argument that looks like an assignment (`-p a=b`) counts too: that only
/// ever refuses. With a `submit_optind` outside the vector, every word is looked at.
pub fn argv_sets_env(submit_argv: &[Vec<u8>], submit_optind: i32) -> bool {
    let end = match usize::try_from(submit_optind) {
        Ok(n) if (1..=submit_argv.len()).contains(&n) => n,
        _ => submit_argv.len(),
    };
    submit_argv.iter().take(end).skip(1).any(|w| {
        let Some(eq) = w.iter().position(|&b| b == b'=') else {
            return false;
        };
        match w.first() {
            Some(b'-') => {
                let name = &w[..eq];
                name.len() > 2 && name.starts_with(b"--") && b"--preserve-env".starts_with(name)
            }
            Some(b'/') | Some(b'=') | None => false,
            Some(_) => true,
        }
    })
}

/// What sudo is about to run (`command_info` and `run_argv`, given to `check`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Command {
    /// `command`: the resolved path.
    pub command: String,
    /// `run_argv[1..]`.
    pub argv: Vec<String>,
    /// `runas_uid` (= `runas_euid` when both are given).
    pub runas_uid: u32,
    /// `runas_gid` (= `runas_egid` when both are given).
    pub runas_gid: Option<u32>,
    /// `chroot` / `runchroot`.
    pub chroot: Option<String>,
    /// `sudoedit=true`.
    pub edit: bool,
}

fn same_id(v: &[Vec<u8>], a: &'static str, b: &'static str) -> Result<Option<u32>, InfoError> {
    match (get_id(v, a)?, get_id(v, b)?) {
        (Some(x), Some(y)) if x != y => Err(InfoError::Bad(a)),
        (x, y) => Ok(x.or(y)),
    }
}

/// Parses `command_info` and `run_argv`.
///
/// # Errors
/// See [`InfoError`]; `command` and `runas_uid`/`runas_euid` are required; an argument that
/// is not UTF-8 is refused (grants name UTF-8 arguments only).
pub fn parse_command(command_info: &[Vec<u8>], run_argv: &[Vec<u8>]) -> Result<Command, InfoError> {
    let command = get(command_info, "command")?
        .filter(|c| c.starts_with('/'))
        .ok_or(InfoError::Missing("command"))?
        .to_string();
    let runas_uid =
        same_id(command_info, "runas_uid", "runas_euid")?.ok_or(InfoError::Missing("runas_uid"))?;
    let runas_gid = same_id(command_info, "runas_gid", "runas_egid")?;
    let mut chroot = nonempty(get(command_info, "chroot")?);
    if chroot.is_none() {
        chroot = nonempty(get(command_info, "runchroot")?);
    }
    let argv = run_argv
        .iter()
        .skip(1)
        .map(|a| String::from_utf8(a.clone()).map_err(|_| InfoError::NotUtf8("an argument")))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Command {
        command,
        argv,
        runas_uid,
        runas_gid,
        chroot,
        edit: get_bool(command_info, "sudoedit")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(items: &[&str]) -> Vec<Vec<u8>> {
        items.iter().map(|s| s.as_bytes().to_vec()).collect()
    }

    #[test]
    fn invocation_parses_and_rejects() {
        let inv = parse_invocation(
            &v(&[
                "run_shell=true",
                "runas_user=www-data",
                "noequals",
                "remote_host=h",
                "noninteractive=true",
            ]),
            &v(&["uid=70001", "user=alice", "gid=70001", "groups=70001,70010"]),
        )
        .unwrap();
        assert_eq!(inv.uid, 70001);
        assert_eq!(inv.groups, vec![70001, 70001, 70010]);
        assert!(inv.shell);
        assert_eq!(inv.runas_user.as_deref(), Some("www-data"));
        assert_eq!(inv.remote_host.as_deref(), Some("h"));
        assert!(inv.noninteractive);
        assert!(
            !parse_invocation(&[], &v(&["uid=1", "user=a"]))
                .unwrap()
                .noninteractive
        );
        // user_info without uid, duplicate differing uid, uid -1.
        assert!(parse_invocation(&[], &v(&["user=alice"])).is_err());
        assert!(parse_invocation(&[], &v(&["uid=1", "uid=2", "user=a"])).is_err());
        assert!(parse_invocation(&[], &v(&["uid=1", "uid=1", "user=a"])).is_ok());
        assert!(parse_invocation(&[], &v(&["uid=4294967295", "user=a"])).is_err());
        assert!(parse_invocation(&[], &v(&["uid=-1", "user=a"])).is_err());
        assert!(parse_invocation(&v(&["run_shell=maybe"]), &v(&["uid=1", "user=a"])).is_err());
        assert!(
            parse_invocation(&v(&["preserve_environment=true"]), &v(&["uid=1", "user=a"]))
                .unwrap()
                .sets_env
        );
        assert!(!inv.sets_env);
    }

    #[test]
    fn env_assignments_on_the_command_line() {
        let yes = |a: &[&str], i| assert!(argv_sets_env(&v(a), i), "{a:?} {i}");
        let no = |a: &[&str], i| assert!(!argv_sets_env(&v(a), i), "{a:?} {i}");
        yes(&["sudo", "LD_PRELOAD=/x.so", "/usr/bin/id"], 2);
        yes(&["sudo", "-n", "A=1", "-u", "root", "B=2", "id"], 6);
        yes(&["sudo", "--preserve-env=PAGER", "id"], 2);
        yes(&["sudo", "--preserve-e=PAGER", "id"], 2);
        no(&["sudo", "-n", "/usr/bin/id", "A=1"], 2);
        no(&["sudo", "-u", "root", "--", "id", "x=y"], 4);
        no(&["sudo", "--user=root", "--prompt=x", "id"], 3);
        no(&["sudo", "-D", "/a=b", "id"], 3);
        no(&["sudo", "id"], 1);
        no(&[], 0);
        // sudo's optind out of range: every word counts.
        yes(&["sudo", "id", "x=y"], 0);
        yes(&["sudo", "id", "x=y"], 9);
    }

    #[test]
    fn command_parses_and_rejects() {
        let c = parse_command(
            &v(&["command=/usr/bin/id", "runas_uid=0", "runas_euid=0"]),
            &v(&["id", "-u"]),
        )
        .unwrap();
        assert_eq!(c.command, "/usr/bin/id");
        assert_eq!(c.argv, vec!["-u".to_string()]);
        assert!(parse_command(&v(&["command=/x", "runas_uid=4294967295"]), &[]).is_err());
        assert!(parse_command(&v(&["command=/x", "runas_uid=0", "runas_euid=1"]), &[]).is_err());
        assert!(parse_command(&v(&["command=x", "runas_uid=0"]), &[]).is_err());
        let c = parse_command(&v(&["command=/x", "runas_uid=0", "runchroot=/tmp/r"]), &[]).unwrap();
        assert_eq!(c.chroot.as_deref(), Some("/tmp/r"));
    }

    #[test]
    fn copy_vector_caps() {
        let strings: Vec<std::ffi::CString> = (0..10_000)
            .map(|i| std::ffi::CString::new(format!("a{i}")).unwrap())
            .collect();
        let mut ptrs: Vec<*const c_char> = strings.iter().map(|s| s.as_ptr()).collect();
        ptrs.push(std::ptr::null());
        // SAFETY: a NULL-terminated array of live C strings.
        let got = unsafe { copy_vector(ptrs.as_ptr()) }.unwrap();
        assert_eq!(got.len(), 10_000);
        // SAFETY: null is allowed.
        assert!(unsafe { copy_vector(std::ptr::null()) }.unwrap().is_empty());
    }
}
