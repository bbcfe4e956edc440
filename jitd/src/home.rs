//! Ephemeral home directories: made from the skeleton when a grant goes live, removed, archived
//! or kept at teardown. Every step is fd-relative under an opened `home_root` with O_NOFOLLOW,
//! so a symlink planted by the user (or anyone) never redirects a root-privileged operation
//! outside the tree (docs/threat-model.md: B6, D5, D6, X15). The name was validated by the allow-list
//! and cannot contain `/` or be `..`.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

use jit_core::host::trust::{self, Access};

fn c(s: &str) -> io::Result<CString> {
    CString::new(s).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in name"))
}

fn check(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

fn open_dir_at(dirfd: RawFd, name: &CStr) -> io::Result<OwnedFd> {
    // SAFETY: `name` is a valid C string; the fd returned is checked and then owned.
    let fd = check(unsafe {
        libc::openat(
            dirfd,
            name.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    })?;
    // SAFETY: fresh descriptor, owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn open_root(home_root: &Path) -> io::Result<OwnedFd> {
    let p = CString::new(home_root.as_os_str().as_encoded_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in path"))?;
    // SAFETY: valid C string; result checked and owned.
    let fd = check(unsafe {
        libc::open(
            p.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    })?;
    // SAFETY: fresh descriptor.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn fstat(fd: RawFd) -> io::Result<libc::stat> {
    // SAFETY: an all-zero stat is a valid value to be overwritten.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is writable and `fd` is open.
    check(unsafe { libc::fstat(fd, &mut st) })?;
    Ok(st)
}

/// What `create` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Created {
    /// A new home from the skeleton.
    New,
    /// The identity's home from an earlier grant (home_policy = keep) was reused.
    Reused,
}

/// Makes `<home_root>/<name>` (0700, owned by uid:gid) and copies the skeleton into it.
///
/// # Errors
/// An existing entry that is not a directory owned by `uid` is never taken over.
pub fn create(
    home_root: &Path,
    name: &str,
    uid: u32,
    gid: u32,
    skel: &Path,
) -> io::Result<Created> {
    let root = open_root(home_root)?;
    let cname = c(name)?;
    // SAFETY: valid dirfd and C string.
    let rc = unsafe { libc::mkdirat(root.as_raw_fd(), cname.as_ptr(), 0o700) };
    let fresh = if rc == 0 {
        true
    } else {
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EEXIST) {
            return Err(e);
        }
        false
    };
    let home = open_dir_at(root.as_raw_fd(), &cname).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!(
                "{}/{name} exists and is not a plain directory: {e}",
                home_root.display()
            ),
        )
    })?;
    let st = fstat(home.as_raw_fd())?;
    if !fresh {
        if st.st_uid != uid {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!(
                    "{}/{name} exists and belongs to uid {}: not taking it over",
                    home_root.display(),
                    st.st_uid
                ),
            ));
        }
        return Ok(Created::Reused);
    }
    // SAFETY: plain fchown/fchmod on our descriptor.
    check(unsafe { libc::fchown(home.as_raw_fd(), uid, gid) })?;
    // SAFETY: as above.
    check(unsafe { libc::fchmod(home.as_raw_fd(), 0o700) })?;
    if skel.is_dir() {
        copy_tree(skel, home.as_raw_fd(), uid, gid, 0)?;
    }
    Ok(Created::New)
}

/// Copies regular files and directories of `src` (root-owned, trusted) into `dst_fd`.
/// Symlinks and special files in the skeleton are skipped.
fn copy_tree(src: &Path, dst_fd: RawFd, uid: u32, gid: u32, depth: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if depth > 16 {
        return Ok(());
    }
    for entry in std::fs::read_dir(src)? {
        let entry = entry?;
        let ft = entry.file_type()?;
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        let cname = c(&name)?;
        let mode = entry.metadata()?.permissions().mode() & 0o777;
        if ft.is_dir() {
            // SAFETY: valid dirfd and C string.
            check(unsafe { libc::mkdirat(dst_fd, cname.as_ptr(), 0o700) })?;
            let sub = open_dir_at(dst_fd, &cname)?;
            // SAFETY: our descriptor.
            check(unsafe { libc::fchown(sub.as_raw_fd(), uid, gid) })?;
            // SAFETY: our descriptor.
            check(unsafe { libc::fchmod(sub.as_raw_fd(), mode as libc::mode_t) })?;
            copy_tree(&entry.path(), sub.as_raw_fd(), uid, gid, depth + 1)?;
        } else if ft.is_file() {
            let data = std::fs::read(entry.path())?;
            // SAFETY: valid dirfd and C string; result checked and owned.
            let fd = check(unsafe {
                libc::openat(
                    dst_fd,
                    cname.as_ptr(),
                    libc::O_WRONLY
                        | libc::O_CREAT
                        | libc::O_EXCL
                        | libc::O_NOFOLLOW
                        | libc::O_CLOEXEC,
                    0o600 as libc::c_uint,
                )
            })?;
            // SAFETY: fresh descriptor.
            let f = unsafe { OwnedFd::from_raw_fd(fd) };
            let mut file = std::fs::File::from(f);
            std::io::Write::write_all(&mut file, &data)?;
            // SAFETY: our descriptor.
            check(unsafe { libc::fchown(file.as_raw_fd(), uid, gid) })?;
            // SAFETY: our descriptor.
            check(unsafe { libc::fchmod(file.as_raw_fd(), mode as libc::mode_t) })?;
        }
    }
    Ok(())
}

/// Lists the entry names of an open directory without following anything.
fn entries(dirfd: RawFd) -> io::Result<Vec<(CString, bool)>> {
    // fdopendir takes ownership of the fd it is given, so give it a duplicate.
    // SAFETY: dup of an open descriptor.
    let dupfd = check(unsafe { libc::fcntl(dirfd, libc::F_DUPFD_CLOEXEC, 0) })?;
    // SAFETY: `dupfd` is an open directory descriptor that fdopendir now owns.
    let dir = unsafe { libc::fdopendir(dupfd) };
    if dir.is_null() {
        let e = io::Error::last_os_error();
        // SAFETY: fdopendir failed, so we still own `dupfd`.
        unsafe { libc::close(dupfd) };
        return Err(e);
    }
    let mut out = Vec::new();
    loop {
        // SAFETY: `dir` is a valid DIR*; readdir returns NULL at the end.
        let ent = unsafe { libc::readdir(dir) };
        if ent.is_null() {
            break;
        }
        // SAFETY: d_name is a NUL-terminated array inside the dirent readdir returned.
        let name = unsafe { CStr::from_ptr((*ent).d_name.as_ptr()) };
        if name.to_bytes() == b"." || name.to_bytes() == b".." {
            continue;
        }
        // SAFETY: an all-zero stat is valid to be overwritten.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: valid dirfd, C string and writable stat; AT_SYMLINK_NOFOLLOW never follows.
        let rc = unsafe { libc::fstatat(dirfd, name.as_ptr(), &mut st, libc::AT_SYMLINK_NOFOLLOW) };
        let is_dir = rc == 0 && (st.st_mode & libc::S_IFMT) == libc::S_IFDIR;
        out.push((name.to_owned(), is_dir));
    }
    // SAFETY: `dir` came from fdopendir and is closed once.
    unsafe { libc::closedir(dir) };
    Ok(out)
}

/// (device, inode) of an open descriptor.
fn ident(fd: RawFd) -> io::Result<(u64, u64)> {
    let st = fstat(fd)?;
    Ok((st.st_dev, st.st_ino))
}

/// Bound on the steps of one removal (each step removes an entry or moves one level), so a
/// tree that changes under the walk cannot keep it going for ever.
const REMOVE_STEP_LIMIT: u64 = 50_000_000;

/// Empties the directory open as `top`, however deep the tree is: iteratively, holding one
/// descriptor at a time (never one per level, never a path), so a tree deeper than PATH_MAX or
/// than the descriptor limit (a grantee's `mkdir d; cd d` loop) is removed like any other.
///
/// Going down opens the child with O_NOFOLLOW|O_DIRECTORY relative to the current directory;
/// going up opens `..` and checks that it is the directory we came from (device and inode
/// remembered on the way down), so a directory moved during the walk stops it with an error
/// rather than letting it delete outside the tree. A mount point inside the home stops it too.
fn remove_contents(top: &OwnedFd) -> io::Result<()> {
    // SAFETY: dup of an open descriptor; the result is checked and owned.
    let dup = check(unsafe { libc::fcntl(top.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 0) })?;
    // SAFETY: fresh descriptor, owned by nobody else.
    let mut cur = unsafe { OwnedFd::from_raw_fd(dup) };
    let mut pending = entries(cur.as_raw_fd())?;
    // Never into another filesystem mounted inside the home: it is not the grantee's tree.
    let (top_dev, _) = ident(cur.as_raw_fd())?;
    // Per level below `top`: the parent's identity, this directory's name in it, and the
    // parent's entries not handled yet (names only: memory grows with the tree, descriptors
    // do not).
    type Level = ((u64, u64), CString, Vec<(CString, bool)>);
    let mut levels: Vec<Level> = Vec::new();
    let mut steps: u64 = 0;
    loop {
        steps += 1;
        if steps > REMOVE_STEP_LIMIT {
            return Err(io::Error::other("home tree kept changing during removal"));
        }
        if let Some((name, is_dir)) = pending.pop() {
            if !is_dir {
                // SAFETY: valid dirfd and C string; unlinking a hard link leaves its other names.
                check(unsafe { libc::unlinkat(cur.as_raw_fd(), name.as_ptr(), 0) })?;
                continue;
            }
            // SAFETY: valid dirfd and C string; an empty directory goes at once.
            if unsafe { libc::unlinkat(cur.as_raw_fd(), name.as_ptr(), libc::AT_REMOVEDIR) } == 0 {
                continue;
            }
            // O_NOFOLLOW|O_DIRECTORY: if it was swapped for a symlink since fstatat, this
            // fails and the link itself is unlinked, never its target.
            match open_dir_at(cur.as_raw_fd(), &name) {
                Ok(sub) => {
                    if ident(sub.as_raw_fd())?.0 != top_dev {
                        return Err(io::Error::other(
                            "a filesystem is mounted inside the home: left in place",
                        ));
                    }
                    let sub_pending = entries(sub.as_raw_fd())?;
                    let parent_pending = std::mem::replace(&mut pending, sub_pending);
                    levels.push((ident(cur.as_raw_fd())?, name, parent_pending));
                    cur = sub;
                }
                Err(_) => {
                    // SAFETY: valid dirfd and C string.
                    check(unsafe { libc::unlinkat(cur.as_raw_fd(), name.as_ptr(), 0) })?;
                }
            }
            continue;
        }
        // Everything listed is handled; anything added meanwhile is handled next.
        let again = entries(cur.as_raw_fd())?;
        if !again.is_empty() {
            pending = again;
            continue;
        }
        // `cur` is empty: go up and remove it.
        let Some((parent_id, name, parent_pending)) = levels.pop() else {
            return Ok(());
        };
        let parent = open_dir_at(cur.as_raw_fd(), c"..")?;
        if ident(parent.as_raw_fd())? != parent_id {
            return Err(io::Error::other(
                "a directory of the home moved during removal: stopped",
            ));
        }
        cur = parent;
        pending = parent_pending;
        // SAFETY: valid dirfd and C string. If it was refilled, the parent's re-read above
        // finds it again and the walk goes back into it.
        let _ = unsafe { libc::unlinkat(cur.as_raw_fd(), name.as_ptr(), libc::AT_REMOVEDIR) };
    }
}

/// Opens `<home_root>/<name>` if it is a directory owned by `uid`; `Ok(None)` if absent.
fn open_owned(
    root: &OwnedFd,
    home_root: &Path,
    name: &str,
    uid: u32,
) -> io::Result<Option<OwnedFd>> {
    let cname = c(name)?;
    match open_dir_at(root.as_raw_fd(), &cname) {
        Ok(fd) => {
            let st = fstat(fd.as_raw_fd())?;
            if st.st_uid != uid {
                return Err(io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    format!(
                        "{}/{name} belongs to uid {}, not {uid}: left alone",
                        home_root.display(),
                        st.st_uid
                    ),
                ));
            }
            Ok(Some(fd))
        }
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Moves `<home_root>/<name>` to `<home_root>/.jit-archive/<name>-<grant_id>` (archive dir
/// root-owned 0700). Returns the archive path, or None if there was no home.
///
/// # Errors
/// A home owned by someone else is left alone and reported; also an archive directory that is
/// not root's own.
pub fn archive(
    home_root: &Path,
    name: &str,
    uid: u32,
    grant_id: &str,
) -> io::Result<Option<String>> {
    Ok(move_aside(home_root, ARCHIVE_DIR, name, uid, grant_id)?
        .map(|target| format!("{}/{ARCHIVE_DIR}/{target}", home_root.display())))
}

/// Where archived homes go, under the home root.
const ARCHIVE_DIR: &str = ".jit-archive";
/// Where removed homes wait for [`purge_retired`], under the home root.
pub const RETIRED_DIR: &str = ".jit-removing";

/// Takes `<home_root>/<name>` away at once for removal: moved (one rename, whatever it holds)
/// to `<home_root>/.jit-removing/<name>-<grant_id>`, root-owned 0700, which
/// [`purge_retired`] empties. A teardown removing a home of millions of files (the grantee's
/// own making) would otherwise hold the teardown pass, and every other grant's end behind it,
/// for as long as the deletion takes. Returns whether there was a home.
///
/// # Errors
/// A home owned by someone else, or with a file system mounted inside, is left alone and
/// reported; also a `.jit-removing` that is not root's own.
pub fn retire(home_root: &Path, name: &str, uid: u32, grant_id: &str) -> io::Result<bool> {
    // A file system mounted inside the home (by root, for a task) is not the grantee's: the
    // home is left in place, as deleting it in place left it (a mountinfo read, not a walk).
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let home = home_root.join(name);
    if crate::mountinfo::mount_points(&mounts)
        .iter()
        .any(|mp| mp.starts_with(&home))
    {
        return Err(io::Error::other(
            "a filesystem is mounted inside the home: left in place",
        ));
    }
    Ok(move_aside(home_root, RETIRED_DIR, name, uid, grant_id)?.is_some())
}

/// Opens (made if missing) the root-only directory `dir` under `root`.
fn root_only_dir(root: &OwnedFd, dir: &str) -> io::Result<OwnedFd> {
    let cdir = c(dir)?;
    // SAFETY: valid dirfd and C string.
    let rc = unsafe { libc::mkdirat(root.as_raw_fd(), cdir.as_ptr(), 0o700) };
    if rc != 0 && io::Error::last_os_error().raw_os_error() != Some(libc::EEXIST) {
        return Err(io::Error::last_os_error());
    }
    open_root_only(root, dir).map_err(|e| match e.kind() {
        io::ErrorKind::PermissionDenied => io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("{e}: not moving a home into it"),
        ),
        _ => e,
    })
}

/// Opens the directory `dir` under `root` if it is root-only (root's, writable by root alone).
fn open_root_only(root: &OwnedFd, dir: &str) -> io::Result<OwnedFd> {
    let fd = open_dir_at(root.as_raw_fd(), &c(dir)?)?;
    let st = fstat(fd.as_raw_fd())?;
    if trust::check_stat(&st, Access::RootOnly).is_err() {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("{dir} is not root-only"),
        ));
    }
    Ok(fd)
}

/// Moves the home of `name` (a directory owned by `uid`) into the root-only `dir` as
/// `<name>-<grant_id>`; the new name, or None without a home.
fn move_aside(
    home_root: &Path,
    dir: &str,
    name: &str,
    uid: u32,
    grant_id: &str,
) -> io::Result<Option<String>> {
    let root = open_root(home_root)?;
    if open_owned(&root, home_root, name, uid)?.is_none() {
        return Ok(None);
    }
    let dirfd = root_only_dir(&root, dir)?;
    let target = format!("{name}-{grant_id}");
    let (cname, ctarget) = (c(name)?, c(&target)?);
    // SAFETY: valid dirfds and C strings.
    check(unsafe {
        libc::renameat(
            root.as_raw_fd(),
            cname.as_ptr(),
            dirfd.as_raw_fd(),
            ctarget.as_ptr(),
        )
    })?;
    Ok(Some(target))
}

/// Removes `<home_root>/.jit-removing` once it is empty, so a host where homes were removed
/// keeps no trace of it under the home root. The caller makes sure no [`retire`] runs at the
/// same time (both run under jitd's teardown lock). Absent or not empty: nothing.
///
/// # Errors
/// The home root cannot be opened, or the removal fails otherwise.
pub fn drop_retired_dir(home_root: &Path) -> io::Result<()> {
    let root = open_root(home_root)?;
    let cdir = c(RETIRED_DIR)?;
    // SAFETY: valid dirfd and C string; only an empty directory is removed.
    let rc = unsafe { libc::unlinkat(root.as_raw_fd(), cdir.as_ptr(), libc::AT_REMOVEDIR) };
    if rc == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::ENOENT | libc::ENOTEMPTY | libc::EEXIST) => Ok(()),
        _ => Err(e),
    }
}

/// Deletes every home waiting under `<home_root>/.jit-removing` (fd-relative, never following
/// a link, never into another file system: `remove_contents`). Returns what could not be deleted
/// (left in place for the next purge) with the reason; nothing to do without the directory.
pub fn purge_retired(home_root: &Path) -> Vec<(String, String)> {
    let mut failed = Vec::new();
    let shown = |n: &CStr| {
        format!(
            "{}/{RETIRED_DIR}/{}",
            home_root.display(),
            n.to_string_lossy()
        )
    };
    let listed = open_root(home_root).and_then(|root| {
        let dir = open_root_only(&root, RETIRED_DIR)?;
        let names = entries(dir.as_raw_fd())?;
        Ok((dir, names))
    });
    let (dir, names) = match listed {
        Ok(l) => l,
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return failed,
        Err(e) => {
            failed.push((
                format!("{}/{RETIRED_DIR}", home_root.display()),
                format!("{e}: nothing under it is deleted"),
            ));
            return failed;
        }
    };
    for (name, is_dir) in names {
        let gone = if is_dir {
            open_dir_at(dir.as_raw_fd(), &name)
                .and_then(|home| remove_contents(&home))
                .and_then(|()| {
                    // SAFETY: valid dirfd and C string.
                    check(unsafe {
                        libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), libc::AT_REMOVEDIR)
                    })
                })
        } else {
            // Only root can put anything here; whatever else it is goes too.
            // SAFETY: valid dirfd and C string.
            check(unsafe { libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), 0) })
        };
        if let Err(e) = gone {
            failed.push((shown(&name), e.to_string()));
        }
    }
    failed
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn tmp(tag: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("jitd-home-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// What home_policy = remove does: the home moved aside, then deleted by the purge (which
    /// must leave nothing behind and report nothing).
    fn remove(root: &Path, name: &str, uid: u32) -> io::Result<bool> {
        let had = retire(root, name, uid, "g-000000000001")?;
        assert_eq!(purge_retired(root), Vec::new());
        if let Ok(mut left) = std::fs::read_dir(root.join(RETIRED_DIR)) {
            assert!(left.next().is_none(), "the purge left something");
        }
        Ok(had)
    }

    #[test]
    fn create_copy_remove_without_following_links() {
        let base = tmp("a");
        let (root, skel, outside) = (base.join("home"), base.join("skel"), base.join("outside"));
        for d in [&root, &skel, &outside] {
            std::fs::create_dir_all(d).unwrap();
        }
        std::fs::write(skel.join(".bashrc"), "echo hi\n").unwrap();
        std::fs::create_dir(skel.join(".config")).unwrap();
        std::fs::write(skel.join(".config/x"), "x").unwrap();
        std::fs::write(outside.join("precious"), "keep me").unwrap();

        assert_eq!(
            create(&root, "alice", 4_000_200, 4_000_200, &skel).unwrap(),
            Created::New
        );
        let h = root.join("alice");
        assert_eq!(std::fs::metadata(&h).unwrap().uid(), 4_000_200);
        assert_eq!(std::fs::metadata(&h).unwrap().mode() & 0o777, 0o700);
        assert_eq!(
            std::fs::read_to_string(h.join(".bashrc")).unwrap(),
            "echo hi\n"
        );
        assert_eq!(
            std::fs::metadata(h.join(".config/x")).unwrap().uid(),
            4_000_200
        );
        assert_eq!(
            create(&root, "alice", 4_000_200, 4_000_200, &skel).unwrap(),
            Created::Reused
        );

        // The user plants links to the outside before teardown.
        std::os::unix::fs::symlink(&outside, h.join("link")).unwrap();
        std::os::unix::fs::symlink(outside.join("precious"), h.join("flink")).unwrap();
        std::fs::hard_link(outside.join("precious"), h.join("hard")).unwrap();
        assert!(remove(&root, "alice", 4_000_200).unwrap());
        assert!(!h.exists());
        assert_eq!(
            std::fs::read_to_string(outside.join("precious")).unwrap(),
            "keep me"
        );
        assert!(
            !remove(&root, "alice", 4_000_200).unwrap(),
            "absent is fine"
        );
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn never_takes_over_foreign_or_linked_homes() {
        let base = tmp("b");
        let root = base.join("home");
        std::fs::create_dir_all(&root).unwrap();
        // A symlink where the home should go, pointing at a directory elsewhere.
        std::os::unix::fs::symlink(&base, root.join("mallory")).unwrap();
        assert!(create(&root, "mallory", 4_000_300, 4_000_300, &base.join("noskel")).is_err());
        assert!(remove(&root, "mallory", 4_000_300).is_err() || root.join("mallory").exists());
        // A directory owned by someone else.
        std::fs::create_dir(root.join("bob")).unwrap();
        assert!(create(&root, "bob", 4_000_301, 4_000_301, &base.join("noskel")).is_err());
        assert!(remove(&root, "bob", 4_000_301).is_err());
        assert!(root.join("bob").exists());
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn archive_moves_into_root_only_dir() {
        let base = tmp("c");
        let root = base.join("home");
        std::fs::create_dir_all(&root).unwrap();
        create(&root, "carl", 4_000_400, 4_000_400, &base.join("noskel")).unwrap();
        let p = archive(&root, "carl", 4_000_400, "g-0001")
            .unwrap()
            .unwrap();
        assert!(std::path::Path::new(&p).is_dir());
        assert_eq!(
            std::fs::metadata(root.join(".jit-archive")).unwrap().mode() & 0o777,
            0o700
        );
        assert!(archive(&root, "carl", 4_000_400, "g-0002")
            .unwrap()
            .is_none());
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn retire_takes_the_home_away_at_once_and_purge_deletes_it_without_following_links() {
        use std::os::unix::fs::PermissionsExt;
        let base = tmp("r");
        let (root, outside) = (base.join("home"), base.join("outside"));
        std::fs::create_dir_all(&root).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("keep"), "not the grantee's").unwrap();
        create(&root, "rita", 4_000_600, 4_000_600, &base.join("noskel")).unwrap();
        let h = root.join("rita");
        std::fs::create_dir_all(h.join("a/b")).unwrap();
        for i in 0..50 {
            std::fs::write(h.join(format!("a/b/f{i}")), "x").unwrap();
        }
        std::os::unix::fs::symlink(&outside, h.join("a/out")).unwrap();
        assert!(retire(&root, "rita", 4_000_600, "g-0001").unwrap());
        assert!(!h.exists(), "gone from the home root at once");
        let dir = root.join(RETIRED_DIR);
        assert_eq!(std::fs::metadata(&dir).unwrap().mode() & 0o777, 0o700);
        assert!(dir.join("rita-g-0001/a/b/f49").exists(), "not deleted yet");
        assert!(
            !retire(&root, "rita", 4_000_600, "g-0002").unwrap(),
            "no home: nothing"
        );
        assert!(purge_retired(&root).is_empty());
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0, "deleted");
        assert!(
            outside.join("keep").exists(),
            "the link's target is untouched"
        );
        assert!(
            purge_retired(&root).is_empty(),
            "nothing left: nothing to do"
        );
        // A .jit-removing others could write to is neither moved into nor purged.
        create(&root, "rita", 4_000_600, 4_000_600, &base.join("noskel")).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        std::fs::create_dir(dir.join("planted")).unwrap();
        let e = retire(&root, "rita", 4_000_600, "g-0003").unwrap_err();
        assert!(e.to_string().contains("not root-only"), "{e}");
        assert!(h.exists(), "left in place");
        let failed = purge_retired(&root);
        assert_eq!(failed.len(), 1, "{failed:?}");
        assert!(dir.join("planted").exists());
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn removes_a_tree_deeper_than_path_max_and_the_fd_limit() {
        let base = tmp("d");
        let root = base.join("home");
        std::fs::create_dir_all(&root).unwrap();
        create(&root, "deep", 4_000_500, 4_000_500, &base.join("noskel")).unwrap();
        // 3000 levels of 20-byte names: 63 000 bytes of path, beyond PATH_MAX and beyond a
        // descriptor per level; built with openat so the test itself needs no long paths.
        let top = open_root(&root.join("deep")).unwrap();
        let name = c(&"d".repeat(20)).unwrap();
        let mut cur = top;
        for i in 0..3000 {
            // SAFETY: valid dirfd and C string.
            check(unsafe { libc::mkdirat(cur.as_raw_fd(), name.as_ptr(), 0o700) }).unwrap();
            if i % 100 == 0 {
                let f = c("file").unwrap();
                // SAFETY: valid dirfd and C string.
                let fd = unsafe {
                    libc::openat(
                        cur.as_raw_fd(),
                        f.as_ptr(),
                        libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC,
                        0o600,
                    )
                };
                assert!(fd >= 0);
                // SAFETY: our descriptor.
                unsafe { libc::close(fd) };
            }
            cur = open_dir_at(cur.as_raw_fd(), &name).unwrap();
        }
        drop(cur);
        assert!(remove(&root, "deep", 4_000_500).unwrap());
        assert!(!root.join("deep").exists());
        std::fs::remove_dir_all(&base).unwrap();
    }
}
