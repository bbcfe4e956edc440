//! The change counter's set-up, trust rules and life cycle. Each test runs in an IPC namespace
//! of its own thread (`unshare(CLONE_NEWIPC)`), so no segment reaches the host's namespace and
//! tests cannot see each other's.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;

/// A private IPC namespace for this thread; false when not root (the test is then skipped, as
/// the other root-only tests of this crate are).
fn private_ipc() -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: needs root (a private IPC namespace)");
        return false;
    }
    // SAFETY: unshare only changes this thread's namespaces.
    let rc = unsafe { libc::unshare(libc::CLONE_NEWIPC) };
    assert_eq!(
        rc,
        0,
        "unshare(CLONE_NEWIPC): {}",
        std::io::Error::last_os_error()
    );
    true
}

struct Dir(std::path::PathBuf, CString);

fn temp_dir(tag: &str) -> Dir {
    let p = std::env::temp_dir().join(format!(
        "jit-gen-{tag}-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let _ = std::fs::remove_dir_all(&p);
    std::fs::create_dir_all(&p).unwrap();
    let c = CString::new(p.as_os_str().as_bytes()).unwrap();
    Dir(p, c)
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A raw segment under the key of `dir`, created by the calling process with `mode`.
fn raw_segment(dir: &Dir, mode: i32) -> libc::c_int {
    let (dev, ino) = dir_identity(&dir.1).unwrap();
    // SAFETY: creates a new segment.
    let id = unsafe {
        libc::shmget(
            key_for(dev, ino),
            SEGMENT_BYTES,
            libc::IPC_CREAT | libc::IPC_EXCL | mode,
        )
    };
    assert!(id >= 0, "shmget: {}", std::io::Error::last_os_error());
    id
}

/// Writes the four words of segment `id` as a set-up counter for `(dev, ino)` would hold them.
fn fill(id: libc::c_int, magic: u64, dev: u64, ino: u64, counter: u64) {
    // SAFETY: attaches the segment read-write, writes its first 32 bytes, detaches.
    unsafe {
        let p = libc::shmat(id, std::ptr::null(), 0);
        assert_ne!(p as isize, -1);
        let w = p.cast::<u64>();
        w.write(magic);
        w.add(1).write(dev);
        w.add(2).write(ino);
        w.add(3).write(counter);
        libc::shmdt(p);
    }
}

fn segment_exists(dir: &Dir) -> bool {
    let (dev, ino) = dir_identity(&dir.1).unwrap();
    // SAFETY: looks a segment up.
    unsafe { libc::shmget(key_for(dev, ino), 0, 0) >= 0 }
}

#[test]
fn keys_are_tagged_positive_and_differ_between_directories() {
    let mut seen = std::collections::HashSet::new();
    for ino in 0..1000u64 {
        let k = key_for(2049, ino);
        assert!(k > 0, "key {k:#x} must be positive and not IPC_PRIVATE");
        assert_eq!(k as u32 >> 24, 0x4a);
        assert_eq!(
            k,
            key_for(2049, ino),
            "the key is a function of the directory"
        );
        seen.insert(k);
    }
    assert!(
        seen.len() >= 999,
        "1000 directories gave {} keys",
        seen.len()
    );
    assert_ne!(key_for(1, 7), key_for(7, 1));
}

#[test]
fn a_reader_follows_jitds_counts_and_sees_it_close() {
    if !private_ipc() {
        return;
    }
    let d = temp_dir("life");
    assert_eq!(Attached::attach(&d.1).err(), Some(Refused::Absent));
    let c = Counter::open(&d.1).unwrap();
    let r = Attached::attach(&d.1).unwrap();
    let first = r.counter();
    assert!(is_open(first));
    assert_eq!(first, c.value());
    c.bump();
    c.bump();
    assert_eq!(r.counter(), first + 4);
    assert!(is_open(r.counter()));
    drop(c);
    // Closed and removed: the attached reader sees an odd value; a new one finds nothing.
    assert!(!is_open(r.counter()));
    assert_eq!(Attached::attach(&d.1).err(), Some(Refused::Absent));
    assert!(!segment_exists(&d));
}

#[test]
fn a_jitd_started_after_a_crash_counts_on_above_every_value_seen() {
    if !private_ipc() {
        return;
    }
    let d = temp_dir("crash");
    let c = Counter::open(&d.1).unwrap();
    for _ in 0..5 {
        c.bump();
    }
    let before = c.value();
    let r = Attached::attach(&d.1).unwrap();
    std::mem::forget(c); // killed: no close, the segment stays
    let c = Counter::open(&d.1).unwrap();
    assert!(
        c.value() > before && is_open(c.value()),
        "{} after {before}",
        c.value()
    );
    assert_eq!(
        r.counter(),
        c.value(),
        "the reader attached before the crash follows on"
    );
}

#[test]
fn segments_not_made_by_root_for_this_directory_are_refused_and_replaced() {
    if !private_ipc() {
        return;
    }
    let d = temp_dir("squat");
    let (dev, ino) = dir_identity(&d.1).unwrap();

    // Writable by others: anyone could hold the counter still.
    let id = raw_segment(&d, 0o666);
    fill(id, MAGIC, dev, ino, 2);
    assert_eq!(Attached::attach(&d.1).err(), Some(Refused::Untrusted));
    let c = Counter::open(&d.1).unwrap();
    assert!(Attached::attach(&d.1).is_ok(), "jitd replaced the squatter");
    drop(c);

    // Created by an unprivileged user, who then hands the owner to root: cuid still says who
    // made it. The child does only async-signal-safe calls before _exit.
    // SAFETY: fork in a test; the child calls setuid, shmget, shmctl and _exit only.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        // SAFETY: plain syscalls in the child, then _exit.
        unsafe {
            if libc::setuid(65534) != 0 {
                libc::_exit(2);
            }
            let id = libc::shmget(
                key_for(dev, ino),
                SEGMENT_BYTES,
                libc::IPC_CREAT | libc::IPC_EXCL | 0o644,
            );
            if id < 0 {
                libc::_exit(3);
            }
            let p = libc::shmat(id, std::ptr::null(), 0);
            if p as isize == -1 {
                libc::_exit(4);
            }
            let w = p.cast::<u64>();
            w.write(MAGIC);
            w.add(1).write(dev);
            w.add(2).write(ino);
            w.add(3).write(2);
            let mut ds = std::mem::zeroed::<libc::shmid_ds>();
            if libc::shmctl(id, libc::IPC_STAT, &mut ds) != 0 {
                libc::_exit(5);
            }
            ds.shm_perm.uid = 0;
            ds.shm_perm.gid = 0;
            // The owner may give the segment away; it cannot change its creator.
            libc::_exit(if libc::shmctl(id, libc::IPC_SET, &mut ds) == 0 {
                0
            } else {
                6
            });
        }
    }
    let mut status = 0;
    // SAFETY: waits for our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "child status {status}"
    );
    assert_eq!(Attached::attach(&d.1).err(), Some(Refused::Untrusted));
    let c = Counter::open(&d.1).unwrap();
    let r = Attached::attach(&d.1).unwrap();
    assert_eq!(r.counter(), c.value());
    drop(c);

    // Root's, well protected, but set up for another directory (or not at all).
    for (magic, dev2, ino2) in [(MAGIC, dev, ino + 1), (MAGIC, dev + 1, ino), (0, dev, ino)] {
        let id = raw_segment(&d, 0o644);
        fill(id, magic, dev2, ino2, 2);
        assert_eq!(Attached::attach(&d.1).err(), Some(Refused::Untrusted));
        // SAFETY: IPC_RMID takes no buffer.
        unsafe { libc::shmctl(id, libc::IPC_RMID, std::ptr::null_mut()) };
    }
}

#[test]
fn a_trusted_counter_of_another_directory_under_the_same_key_is_left_alone() {
    if !private_ipc() {
        return;
    }
    let d = temp_dir("collide");
    let (dev, ino) = dir_identity(&d.1).unwrap();
    let id = raw_segment(&d, 0o644);
    fill(id, MAGIC, dev, ino + 1, 40);
    assert_eq!(Counter::open(&d.1).err(), Some(Refused::Untrusted));
    assert!(
        segment_exists(&d),
        "the other directory's counter is not removed"
    );
    // SAFETY: attach read-only to check the value was not touched.
    unsafe {
        let p = libc::shmat(id, std::ptr::null(), libc::SHM_RDONLY);
        assert_eq!(p.cast::<u64>().add(3).read(), 40);
        libc::shmdt(p);
        libc::shmctl(id, libc::IPC_RMID, std::ptr::null_mut());
    }
}

#[test]
fn a_directory_that_is_not_one_is_refused() {
    let f = CString::new("/proc/self/status").unwrap();
    assert_eq!(
        Attached::attach(&f).err(),
        Some(Refused::Dir(libc::ENOTDIR))
    );
    let missing = CString::new("/nonexistent-jit-dir").unwrap();
    assert_eq!(
        Attached::attach(&missing).err(),
        Some(Refused::Dir(libc::ENOENT))
    );
}
