//! The set-id sweep at teardown: privilege must not outlive a grant through files.
//!
//! While a grant is live, its account can leave a set-uid copy of a binary anywhere it can
//! write (/tmp, /var/tmp, /dev/shm, a world-writable directory under /home), and a group
//! grantee can leave a file of its own that is set-gid to the granted group. After the grant
//! ends, anyone who runs such a file acts as that uid (or with that gid). Teardown therefore
//! walks the configured directories and clears the set-uid and set-gid bits of:
//!
//! * regular files owned by an ended ephemeral account's uid (both bits), and
//! * regular files owned by a group grantee that are set-gid to a gid whose grant ended (the
//!   set-gid bit; a non-root user can only create files it owns, so the owner check finds what
//!   the grantee made and leaves files of other users alone).
//!
//! The walk is fd-relative and never follows a symbolic link: each directory is opened with
//! `openat(O_DIRECTORY|O_NOFOLLOW)` from its parent's descriptor, and it stays on the file
//! system of the directory it started from (mount points are not entered). A candidate is
//! opened with `O_PATH|O_NOFOLLOW` and checked again with `fstat` on that descriptor (a file
//! swapped for another between the listing and the open is left alone unless it matches too);
//! the mode is then changed through `/proc/self/fd/N`, which names exactly that inode
//! (`fchmod` refuses `O_PATH` descriptors, and opening the file for reading could block on a
//! FIFO or have side effects on a device). Depth and the number of entries are bounded; what
//! the bounds leave unsearched is reported, never silently skipped.

use std::collections::HashSet;
use std::ffi::{CStr, CString, OsStr};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Directory levels walked with one descriptor each before a deeper directory is set aside
/// (its descriptor kept) and walked afterwards as a root of its own, so the depth searched is
/// not bounded while the descriptors open at once stay below 2 × this.
pub const MAX_DEPTH: usize = 200;
/// Directories set aside at once; beyond that a deeper directory is reported, not searched.
pub const MAX_DEFERRED: usize = 200;
/// Longest path kept for the report; deeper names are summed up by a trailing `…`.
const MAX_PATH_KEPT: usize = 4096;
/// Most directory entries looked at per sweep root.
pub const MAX_ENTRIES: u64 = 10_000_000;

/// Whose files to look for.
#[derive(Debug, Clone, Default)]
pub struct Targets {
    /// Ephemeral accounts whose grants ended: their set-uid/set-gid files lose both bits.
    pub uids: HashSet<u32>,
    /// (owner uid, gid) of group grants that ended: the owner's files set-gid to that gid lose
    /// the set-gid bit.
    pub owner_gids: HashSet<(u32, u32)>,
}

impl Targets {
    /// Nothing to look for.
    pub fn is_empty(&self) -> bool {
        self.uids.is_empty() && self.owner_gids.is_empty()
    }

    /// The bits to clear from a regular file with this owner, group and mode (0: none).
    fn bits_to_clear(&self, uid: u32, gid: u32, mode: u32) -> u32 {
        let setid = mode & (libc::S_ISUID | libc::S_ISGID);
        if setid == 0 {
            return 0;
        }
        if self.uids.contains(&uid) {
            return setid;
        }
        if mode & libc::S_ISGID != 0 && self.owner_gids.contains(&(uid, gid)) {
            return libc::S_ISGID;
        }
        0
    }
}

/// One file whose bits were cleared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stripped {
    /// Path as found (root joined with the names walked).
    pub path: PathBuf,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Permission bits before (07777).
    pub mode_before: u32,
    /// Permission bits after.
    pub mode_after: u32,
}

/// What one sweep did.
#[derive(Debug, Default)]
pub struct Report {
    /// Files whose set-id bits were cleared.
    pub stripped: Vec<Stripped>,
    /// Matching files that could not be changed, with the reason.
    pub failed: Vec<(PathBuf, String)>,
    /// Places not searched (too deep, unreadable, entry cap, a root that is a symlink), with
    /// the reason.
    pub unsearched: Vec<(PathBuf, String)>,
    /// Directory entries looked at.
    pub entries: u64,
    /// Wall time, milliseconds.
    pub elapsed_ms: u64,
}

/// An owned descriptor, closed on drop.
struct Fd(libc::c_int);

impl Drop for Fd {
    fn drop(&mut self) {
        // SAFETY: the descriptor was returned by a successful open and is owned here alone.
        unsafe { libc::close(self.0) };
    }
}

/// An open directory stream (owns its descriptor), closed on drop.
struct Dir(*mut libc::DIR);

impl Drop for Dir {
    fn drop(&mut self) {
        // SAFETY: the stream came from a successful fdopendir and is closed exactly once.
        unsafe { libc::closedir(self.0) };
    }
}

impl Dir {
    /// Takes ownership of a directory descriptor.
    fn from_fd(fd: Fd) -> io::Result<Dir> {
        // SAFETY: fd is an open directory descriptor; on success the stream owns it.
        let d = unsafe { libc::fdopendir(fd.0) };
        if d.is_null() {
            return Err(io::Error::last_os_error());
        }
        std::mem::forget(fd);
        Ok(Dir(d))
    }

    fn fd(&self) -> libc::c_int {
        // SAFETY: self.0 is a valid open stream.
        unsafe { libc::dirfd(self.0) }
    }

    /// The next entry's name and d_type, `.` and `..` skipped; Ok(None) at the end.
    ///
    /// # Errors
    /// A read error (which ends this directory).
    fn next(&mut self) -> io::Result<Option<(CString, u8)>> {
        loop {
            // readdir reports an error only through errno, so it is cleared first.
            // SAFETY: __errno_location returns this thread's errno slot.
            unsafe { *libc::__errno_location() = 0 };
            // SAFETY: self.0 is a valid open stream used by this thread only.
            let ent = unsafe { libc::readdir64(self.0) };
            if ent.is_null() {
                let e = io::Error::last_os_error();
                return match e.raw_os_error() {
                    Some(0) | None => Ok(None),
                    Some(_) => Err(e),
                };
            }
            // SAFETY: readdir64 returned a valid entry whose d_name is NUL-terminated; it is
            // copied before the next call on the stream.
            let (name, dtype) = unsafe {
                (
                    CStr::from_ptr((*ent).d_name.as_ptr()).to_owned(),
                    (*ent).d_type,
                )
            };
            let b = name.as_bytes();
            if b == b"." || b == b".." {
                continue;
            }
            return Ok(Some((name, dtype)));
        }
    }
}

fn fstat_fd(fd: libc::c_int) -> io::Result<libc::stat64> {
    // SAFETY: an all-zero stat64 is a valid value to be overwritten.
    let mut st: libc::stat64 = unsafe { std::mem::zeroed() };
    // SAFETY: fd is open and st is a valid out pointer.
    if unsafe { libc::fstat64(fd, &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(st)
}

fn lstat_at(dir: libc::c_int, name: &CStr) -> io::Result<libc::stat64> {
    // SAFETY: as in fstat_fd.
    let mut st: libc::stat64 = unsafe { std::mem::zeroed() };
    // SAFETY: dir is open, name is NUL-terminated, st is a valid out pointer; the flag keeps a
    // symlink from being followed.
    if unsafe { libc::fstatat64(dir, name.as_ptr(), &mut st, libc::AT_SYMLINK_NOFOLLOW) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(st)
}

fn open_at(dir: libc::c_int, name: &CStr, flags: libc::c_int) -> io::Result<Fd> {
    // SAFETY: dir is open (or AT_FDCWD), name is NUL-terminated.
    let fd = unsafe {
        libc::openat(
            dir,
            name.as_ptr(),
            flags | libc::O_CLOEXEC | libc::O_NOFOLLOW,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(Fd(fd))
}

const DIR_FLAGS: libc::c_int = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NONBLOCK;

/// Clears the bits of the file `name` in `dir`, after re-checking it through an `O_PATH`
/// descriptor. Ok(None): it no longer matches (changed since it was listed).
fn strip(
    dir: libc::c_int,
    name: &CStr,
    listed: &libc::stat64,
    targets: &Targets,
) -> io::Result<Option<(u32, u32)>> {
    let fd = open_at(dir, name, libc::O_PATH)?;
    let st = fstat_fd(fd.0)?;
    if st.st_mode & libc::S_IFMT != libc::S_IFREG
        || st.st_ino != listed.st_ino
        || st.st_dev != listed.st_dev
    {
        return Ok(None);
    }
    let bits = targets.bits_to_clear(st.st_uid, st.st_gid, st.st_mode);
    if bits == 0 {
        return Ok(None);
    }
    let before = st.st_mode & 0o7777;
    let after = before & !bits;
    let proc_path = CString::new(format!("/proc/self/fd/{}", fd.0))
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: proc_path is NUL-terminated; the magic link names the inode fd holds, so the
    // mode change cannot land on another file whatever happens to the name meanwhile.
    if unsafe { libc::fchmodat(libc::AT_FDCWD, proc_path.as_ptr(), after, 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(Some((before, after)))
}

/// `parent/name` for the report; past [`MAX_PATH_KEPT`] bytes the path stops growing (it is
/// for the audit trail only: every operation is relative to a descriptor).
fn join(parent: &Path, name: &CStr) -> PathBuf {
    if parent.as_os_str().len() >= MAX_PATH_KEPT {
        return parent.to_path_buf();
    }
    let p = parent.join(OsStr::from_bytes(name.to_bytes()));
    if p.as_os_str().len() >= MAX_PATH_KEPT {
        p.join("…")
    } else {
        p
    }
}

/// Searches one root.
fn sweep_root(root: &Path, targets: &Targets, report: &mut Report) {
    let Ok(croot) = CString::new(root.as_os_str().as_bytes()) else {
        report
            .unsearched
            .push((root.to_path_buf(), "path holds a NUL byte".into()));
        return;
    };
    let fd = match open_at(libc::AT_FDCWD, &croot, DIR_FLAGS) {
        Ok(fd) => fd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return,
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            report.unsearched.push((
                root.to_path_buf(),
                "is a symbolic link (not followed; name its target in sweep_paths)".into(),
            ));
            return;
        }
        Err(e) => {
            report.unsearched.push((root.to_path_buf(), e.to_string()));
            return;
        }
    };
    let dev = match fstat_fd(fd.0) {
        Ok(st) => st.st_dev,
        Err(e) => {
            report.unsearched.push((root.to_path_buf(), e.to_string()));
            return;
        }
    };
    let mut pending: Vec<(Dir, PathBuf)> = match Dir::from_fd(fd) {
        Ok(d) => vec![(d, root.to_path_buf())],
        Err(e) => {
            report.unsearched.push((root.to_path_buf(), e.to_string()));
            return;
        }
    };
    let mut entries: u64 = 0;
    'walks: while let Some(start) = pending.pop() {
        let mut stack = vec![start];
        while let Some((dir, path)) = stack.last_mut() {
            let (name, dtype) = match dir.next() {
                Ok(Some(e)) => e,
                Ok(None) => {
                    stack.pop();
                    continue;
                }
                Err(e) => {
                    report
                        .unsearched
                        .push((path.clone(), format!("reading the directory: {e}")));
                    stack.pop();
                    continue;
                }
            };
            entries += 1;
            if entries > MAX_ENTRIES {
                report.unsearched.push((
                    root.to_path_buf(),
                    format!("stopped after {MAX_ENTRIES} entries"),
                ));
                break 'walks;
            }
            let dfd = dir.fd();
            let is_dir = match dtype {
                libc::DT_DIR => true,
                libc::DT_REG | libc::DT_UNKNOWN => false,
                // Symlinks, devices, FIFOs, sockets: never set-id executables worth following.
                _ => continue,
            };
            let st = if is_dir {
                None
            } else {
                match lstat_at(dfd, &name) {
                    Ok(st) => Some(st),
                    Err(_) => continue, // gone since the listing
                }
            };
            let is_dir = is_dir || st.is_some_and(|s| s.st_mode & libc::S_IFMT == libc::S_IFDIR);
            if is_dir {
                let child = join(path, &name);
                let cfd = match open_at(dfd, &name, DIR_FLAGS) {
                    Ok(fd) => fd,
                    // A name swapped for a symlink (ELOOP) or removed: nothing to search there.
                    Err(e)
                        if matches!(
                            e.raw_os_error(),
                            Some(libc::ELOOP | libc::ENOENT | libc::ENOTDIR)
                        ) =>
                    {
                        continue
                    }
                    Err(e) => {
                        report.unsearched.push((child, e.to_string()));
                        continue;
                    }
                };
                match fstat_fd(cfd.0) {
                    Ok(cst) if cst.st_dev == dev => {}
                    // Another file system mounted here: not entered.
                    Ok(_) => continue,
                    Err(e) => {
                        report.unsearched.push((child, e.to_string()));
                        continue;
                    }
                }
                match Dir::from_fd(cfd) {
                Ok(d) if stack.len() < MAX_DEPTH => stack.push((d, child)),
                Ok(d) if pending.len() < MAX_DEFERRED => pending.push((d, child)),
                Ok(_) => report.unsearched.push((
                    child,
                    format!("more than {MAX_DEFERRED} directories deeper than {MAX_DEPTH} levels at once"),
                )),
                Err(e) => report.unsearched.push((child, e.to_string())),
            }
                continue;
            }
            let Some(st) = st else { continue };
            if st.st_mode & libc::S_IFMT != libc::S_IFREG
                || targets.bits_to_clear(st.st_uid, st.st_gid, st.st_mode) == 0
            {
                continue;
            }
            let file = join(path, &name);
            match strip(dfd, &name, &st, targets) {
                Ok(Some((before, after))) => report.stripped.push(Stripped {
                    path: file,
                    uid: st.st_uid,
                    gid: st.st_gid,
                    mode_before: before,
                    mode_after: after,
                }),
                Ok(None) => {}
                Err(e) => report.failed.push((file, e.to_string())),
            }
        }
    }
    report.entries += entries;
}

/// `--check-config`: a sweep path that is a symbolic link or not a directory would never be
/// searched (a missing one is fine: /dev/shm may not exist in a container).
pub fn check_paths(paths: &[PathBuf], problems: &mut Vec<String>) {
    for p in paths {
        match std::fs::symlink_metadata(p) {
            Ok(m) if m.file_type().is_symlink() => problems.push(format!(
                "sweep path {} is a symbolic link: teardown does not follow it, so set-id files left there are never found; name its target in sweep_paths",
                p.display()
            )),
            Ok(m) if !m.is_dir() => problems.push(format!(
                "sweep path {} is not a directory",
                p.display()
            )),
            _ => {}
        }
    }
}

/// Searches every root (each once, in order) for the targets' set-id files and clears the bits.
pub fn sweep(roots: &[PathBuf], targets: &Targets) -> Report {
    let t = Instant::now();
    let mut report = Report::default();
    if !targets.is_empty() {
        let mut seen = HashSet::new();
        for root in roots {
            if seen.insert(root.clone()) {
                sweep_root(root, targets, &mut report);
            }
        }
    }
    report.elapsed_ms = u64::try_from(t.elapsed().as_millis()).unwrap_or(u64::MAX);
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::{AsRawFd, FromRawFd};
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    struct TestDir(PathBuf);

    impl TestDir {
        fn new(tag: &str) -> TestDir {
            let p = std::env::temp_dir().join(format!("jitd-sweep-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&p);
            std::fs::create_dir_all(&p).unwrap();
            TestDir(p)
        }
    }

    impl Drop for TestDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn file(p: &Path, uid: u32, gid: u32, mode: u32) {
        std::fs::write(p, b"#!/bin/sh\n").unwrap();
        std::os::unix::fs::chown(p, Some(uid), Some(gid)).unwrap();
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    fn mode(p: &Path) -> u32 {
        std::fs::symlink_metadata(p).unwrap().mode() & 0o7777
    }

    fn is_root() -> bool {
        // SAFETY: geteuid has no preconditions.
        unsafe { libc::geteuid() == 0 }
    }

    #[test]
    fn strips_targets_only_and_never_follows_links() {
        if !is_root() {
            eprintln!("skipped: needs root to chown test files");
            return;
        }
        let d = TestDir::new("unit");
        let deep = d.0.join("a/b/c");
        std::fs::create_dir_all(&deep).unwrap();
        file(&deep.join("suid"), 70_001, 70_001, 0o4755);
        file(&d.0.join("sgid-granted"), 1500, 4242, 0o2755);
        file(&d.0.join("sgid-other-owner"), 1501, 4242, 0o2755);
        file(&d.0.join("suid-other"), 1500, 1500, 0o4755);
        file(&d.0.join("plain"), 70_001, 70_001, 0o755);
        // Outside the root, reached only through a symlink: must stay.
        let outside = TestDir::new("outside");
        file(&outside.0.join("suid"), 70_001, 70_001, 0o4755);
        std::os::unix::fs::symlink(&outside.0, d.0.join("link")).unwrap();
        std::os::unix::fs::symlink(outside.0.join("suid"), d.0.join("link-file")).unwrap();
        let targets = Targets {
            uids: [70_001].into_iter().collect(),
            owner_gids: [(1500, 4242)].into_iter().collect(),
        };
        let r = sweep(&[d.0.clone(), d.0.clone()], &targets);
        assert_eq!(mode(&deep.join("suid")), 0o755);
        assert_eq!(mode(&d.0.join("sgid-granted")), 0o755);
        assert_eq!(mode(&d.0.join("sgid-other-owner")), 0o2755);
        assert_eq!(mode(&d.0.join("suid-other")), 0o4755);
        assert_eq!(mode(&outside.0.join("suid")), 0o4755);
        let mut paths: Vec<_> = r.stripped.iter().map(|s| s.path.clone()).collect();
        paths.sort();
        assert_eq!(paths, [deep.join("suid"), d.0.join("sgid-granted")]);
        assert!(r.failed.is_empty() && r.unsearched.is_empty(), "{r:?}");
        // A symlink as root is reported, not followed.
        let r = sweep(&[d.0.join("link")], &targets);
        assert_eq!(r.unsearched.len(), 1, "{r:?}");
        assert_eq!(mode(&outside.0.join("suid")), 0o4755);
    }

    #[test]
    fn check_paths_flags_links_and_files() {
        let d = TestDir::new("check");
        let link = d.0.join("link");
        std::os::unix::fs::symlink(&d.0, &link).unwrap();
        let file = d.0.join("file");
        std::fs::write(&file, b"").unwrap();
        let mut p = Vec::new();
        check_paths(&[d.0.clone(), link, file, d.0.join("missing")], &mut p);
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(p[0].contains("symbolic link") && p[1].contains("not a directory"));
    }

    #[test]
    fn deep_trees_are_searched_to_the_bottom() {
        if !is_root() {
            eprintln!("skipped: needs root to chown test files");
            return;
        }
        let d = TestDir::new("deep");
        // Deeper than MAX_DEPTH several times over, built fd-relative (the full path is longer
        // than PATH_MAX).
        let levels = MAX_DEPTH * 3 + 7;
        let mut dir = std::fs::File::open(&d.0).unwrap();
        for _ in 0..levels {
            let name = CString::new("d".repeat(200)).unwrap();
            // SAFETY: dir is an open directory, name is NUL-terminated.
            let rc = unsafe { libc::mkdirat(dir.as_raw_fd(), name.as_ptr(), 0o755) };
            assert_eq!(rc, 0);
            let fd = open_at(dir.as_raw_fd(), &name, DIR_FLAGS).unwrap();
            // SAFETY: fd is an open descriptor owned by nobody else.
            dir = unsafe { std::fs::File::from_raw_fd(fd.0) };
            std::mem::forget(fd);
        }
        let name = CString::new("suid").unwrap();
        // SAFETY: dir is an open directory, name is NUL-terminated.
        let f = unsafe {
            libc::openat(
                dir.as_raw_fd(),
                name.as_ptr(),
                libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC,
                0o755,
            )
        };
        assert!(f >= 0);
        // SAFETY: f is an open descriptor.
        unsafe {
            assert_eq!(libc::fchown(f, 70_001, 70_001), 0);
            assert_eq!(libc::fchmod(f, 0o4755), 0);
            libc::close(f);
        }
        let targets = Targets {
            uids: [70_001].into_iter().collect(),
            ..Targets::default()
        };
        let r = sweep(std::slice::from_ref(&d.0), &targets);
        assert!(
            r.unsearched.is_empty() && r.failed.is_empty(),
            "{:?} {:?}",
            r.unsearched,
            r.failed
        );
        assert_eq!(r.stripped.len(), 1, "{r:?}");
        assert_eq!(r.stripped[0].mode_after, 0o755);
        assert!(r.stripped[0].path.as_os_str().len() <= MAX_PATH_KEPT + 300);
        let st = lstat_at(dir.as_raw_fd(), &name).unwrap();
        assert_eq!(st.st_mode & 0o7777, 0o755);
    }

    /// The cost of a sweep over 100 000 files (`cargo test -p jitd --lib sweep_bench --
    /// --ignored --nocapture`); prints the figure, asserts nothing about time.
    #[test]
    #[ignore = "benchmark: creates 100 000 files"]
    fn sweep_bench_100k_files() {
        let d = TestDir::new("bench");
        let mut made = 0;
        'outer: for i in 0..100 {
            let sub = d.0.join(format!("d{i:03}"));
            for j in 0..10 {
                let leaf = sub.join(format!("e{j}"));
                std::fs::create_dir_all(&leaf).unwrap();
                for k in 0..100 {
                    std::fs::write(leaf.join(format!("f{k:03}")), b"").unwrap();
                    made += 1;
                    if made == 100_000 {
                        break 'outer;
                    }
                }
            }
        }
        let targets = Targets {
            uids: [70_001].into_iter().collect(),
            ..Targets::default()
        };
        let r = sweep(std::slice::from_ref(&d.0), &targets);
        println!(
            "sweep over {made} files ({} entries): {} ms",
            r.entries, r.elapsed_ms
        );
        assert!(r.entries >= 100_000);
    }
}
