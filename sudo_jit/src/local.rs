//! Reading /etc/passwd and /etc/group directly (never through NSS: the jit module answers
//! there, and a hung directory service must not hang sudo) to tell local ids from jit's, with
//! jit_core's one parser ([`jit_core::host::accounts`]); and following a command's symlinks
//! only through paths only root can change.

use std::collections::HashSet;
use std::ffi::CStr;

use jit_core::host::accounts;
use jit_core::host::trust::{self, Access};

/// The uids of a passwd-format file's usable lines; empty when unreadable, which makes every
/// id in jit's range look like jit's (fails closed for jit, never for root).
pub fn uids(path: &CStr) -> HashSet<u32> {
    accounts::read_account_file(path)
        .map(|d| accounts::parse_passwd(&d).iter().map(|e| e.uid).collect())
        .unwrap_or_default()
}

/// The gids of a group-format file's usable lines; empty when unreadable, as [`uids`].
pub fn gids(path: &CStr) -> HashSet<u32> {
    accounts::read_account_file(path)
        .map(|d| accounts::parse_group(&d).iter().map(|e| e.gid).collect())
        .unwrap_or_default()
}

/// Most symlinks followed by [`trusted_alias`] (the kernel's limit).
const MAX_SYMLINKS: usize = 40;

/// Where `command` leads when nobody but root can change that between sudo_jit's check and
/// sudo's `execve` of the same path: every directory, symlink and file met on the way is owned
/// by root, and no directory on the way is writable by group or others (a sticky /tmp is not
/// safe either). `None` when it is not so, cannot be resolved, or leads to itself.
///
/// This is what lets a grant for `/usr/bin/id` allow `/bin/id` on a merged-/usr host, without
/// letting a user point a symlink of their own at an allowed command, have it approved, and
/// re-point it at a shell before sudo runs it.
pub fn trusted_alias(command: &str) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    if !command.starts_with('/') {
        return None;
    }
    let root = std::fs::symlink_metadata("/").ok()?;
    trust::check_metadata(&root, Access::ReadableByAll).ok()?;
    let mut pending: std::collections::VecDeque<String> =
        command.split('/').map(str::to_string).collect();
    // Components resolved so far: real directories (no symlinks), so `..` is lexical here.
    let mut done: Vec<String> = Vec::new();
    let mut links = 0;
    while let Some(c) = pending.pop_front() {
        if c.is_empty() || c == "." {
            continue;
        }
        if c == ".." {
            done.pop();
            continue;
        }
        let path = format!(
            "/{}",
            done.iter()
                .chain([&c])
                .cloned()
                .collect::<Vec<_>>()
                .join("/")
        );
        let m = std::fs::symlink_metadata(&path).ok()?;
        if m.uid() != 0 {
            return None;
        }
        if m.file_type().is_symlink() {
            links += 1;
            if links > MAX_SYMLINKS {
                return None;
            }
            let target = std::fs::read_link(&path).ok()?;
            let target = target.to_str()?;
            if target.starts_with('/') {
                done.clear();
            }
            let mut next: std::collections::VecDeque<String> =
                target.split('/').map(str::to_string).collect();
            next.extend(pending);
            pending = next;
            continue;
        }
        if m.is_dir() {
            trust::check_metadata(&m, Access::ReadableByAll).ok()?;
        }
        done.push(c);
    }
    let resolved = format!("/{}", done.join("/"));
    (resolved != command).then_some(resolved)
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_of_usable_lines_only() {
        let dir = std::env::temp_dir().join(format!("sudo_jit_ids_{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (p, g) = (dir.join("passwd"), dir.join("group"));
        std::fs::write(
            &p,
            b"root:x:0:0::/root:/bin/sh\nbad\nbob:x:70005:70005::/:/x\n+nis\nodd:x:70006:zz::/:/x\n#c:x:70007:0::/:/x\n",
        )
        .unwrap();
        std::fs::write(&g, b"root:x:0:\njit-sudo:x:70010:bob\nbad:x:+70011:\n").unwrap();
        let c = |p: &std::path::Path| std::ffi::CString::new(p.to_str().unwrap()).unwrap();
        assert_eq!(super::uids(&c(&p)), [0, 70005].into());
        assert_eq!(super::gids(&c(&g)), [0, 70010].into());
        assert!(super::uids(&c(&dir.join("missing"))).is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn alias_only_through_root_owned_paths() {
        use std::os::unix::fs::symlink;
        // Merged /usr (as on this project's hosts): /bin is a root-owned symlink to usr/bin.
        if std::fs::read_link("/bin").is_ok_and(|t| t.as_os_str() == "usr/bin") {
            assert_eq!(
                super::trusted_alias("/bin/id").as_deref(),
                Some("/usr/bin/id")
            );
            assert_eq!(
                super::trusted_alias("/bin/../bin/id").as_deref(),
                Some("/usr/bin/id")
            );
        }
        // Itself, missing, relative: no alias.
        assert_eq!(super::trusted_alias("/usr/bin/id"), None);
        assert_eq!(super::trusted_alias("/usr/bin/no-such-command-jit"), None);
        assert_eq!(super::trusted_alias("bin/id"), None);
        // A symlink in a directory its owner (or anyone, /tmp) can change: canonicalize
        // follows it to the allowed command, the alias does not (it could be re-pointed
        // before sudo runs it).
        let dir = std::env::temp_dir().join(format!("sudo_jit_alias_{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let link = dir.join("id");
        let _ = std::fs::remove_file(&link);
        symlink("/usr/bin/id", &link).unwrap();
        let link = link.to_str().unwrap();
        assert_eq!(
            std::fs::canonicalize(link).unwrap().to_str(),
            Some("/usr/bin/id")
        );
        assert_eq!(super::trusted_alias(link), None);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
