//! Reading /etc/passwd and /etc/group directly (never through NSS: the jit module answers
//! there, and a hung directory service must not hang sudo) to tell local ids from jit's.

use std::collections::HashSet;

/// Largest local database file read (far above any real one).
const MAX_DB_BYTES: u64 = 16 * 1024 * 1024;

/// The ids (third field) of a passwd- or group-format file; empty when unreadable, which makes
/// every id in jit's range look like jit's (fails closed for jit, never for root).
pub fn ids_in(path: &str) -> HashSet<u32> {
    use std::io::Read;
    let mut buf = Vec::new();
    let ok = std::fs::File::open(path)
        .and_then(|f| f.take(MAX_DB_BYTES).read_to_end(&mut buf))
        .is_ok();
    if !ok {
        return HashSet::new();
    }
    parse_ids(&buf)
}

/// The pure part of [`ids_in`].
pub fn parse_ids(data: &[u8]) -> HashSet<u32> {
    data.split(|&b| b == b'\n')
        .filter_map(|line| {
            let field = line.split(|&b| b == b':').nth(2)?;
            std::str::from_utf8(field).ok()?.parse::<u32>().ok()
        })
        .collect()
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
    if root.uid() != 0 || root.mode() & 0o022 != 0 {
        return None;
    }
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
        if m.is_dir() && m.mode() & 0o022 != 0 {
            return None;
        }
        done.push(c);
    }
    let resolved = format!("/{}", done.join("/"));
    (resolved != command).then_some(resolved)
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_ids() {
        let ids =
            super::parse_ids(b"root:x:0:0::/root:/bin/sh\nbad\nbob:x:70005:70005::/:/x\n+nis\n");
        assert!(ids.contains(&0) && ids.contains(&70005) && ids.len() == 2);
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
