//! The snapshot's change counter: one page of System V shared memory in which jitd counts the
//! snapshots it publishes, so a process that already holds a checked copy can skip the `lstat`
//! it would otherwise make per lookup (docs/snapshot-format.md §11).
//!
//! Why System V shared memory and not a file: a mapping of a file raises SIGBUS in every reader
//! once the file is truncated, and a process that loaded the NSS module must never crash. A
//! segment has a fixed size for its whole life; removing it (`IPC_RMID`) only destroys it after
//! the last process detached, so a mapped counter can always be read.
//!
//! Layout (four little-endian `u64`, read and written as atomics):
//!
//! | off | field | meaning |
//! |----:|-------|---------|
//! | 0 | magic | [`MAGIC`], stored last when a segment is set up |
//! | 8 | dir_dev | `st_dev` of the snapshot's directory |
//! | 16 | dir_ino | `st_ino` of the snapshot's directory |
//! | 24 | counter | even: jitd is publishing through it, and adds 2 after every snapshot it renames into place; odd: closed (jitd stopped), readers go back to `lstat` |
//!
//! Finding it. The key is derived from the directory's (device, inode) ([`key_for`]), so two
//! jitds with different snapshot directories (tests, chroots) never share one; a reader checks
//! the stored directory against its own `lstat` of it as well.
//!
//! Trust. Only a segment created by root (`cuid` 0), owned by root, not writable by group or
//! others, of at least [`SEGMENT_BYTES`] and not being destroyed is used. Anyone can create a
//! segment under the key first; jitd removes such a squatter (root may) and readers refuse it,
//! so the worst an unprivileged user achieves is the old `lstat` per lookup.
//!
//! Staleness. jitd adds to the counter after the rename and before it acknowledges the change,
//! so a revocation is visible at the next lookup. Changes made behind jitd's back (root editing
//! the file by hand, a jitd killed between rename and count) are seen at the latest
//! [`TRUST_NS`] later, because a reader checks the file itself at least that often.

use crate::ffi::errno;
use std::ffi::CStr;
use std::sync::atomic::{AtomicU64, Ordering};

/// `"JITGEN1\0"`.
pub const MAGIC: u64 = u64::from_le_bytes(*b"JITGEN1\0");
/// Size of a segment (one page; only the first 32 bytes are used).
pub const SEGMENT_BYTES: usize = 4096;
/// Longest time a reader answers from its copy on an unchanged counter without looking at the
/// file (1 s).
pub const TRUST_NS: u64 = 1_000_000_000;
/// Set in `shm_perm.mode` of a segment marked for destruction (Linux `SHM_DEST`).
const SHM_DEST: u16 = 0o1000;

const MAGIC_AT: usize = 0;
const DEV_AT: usize = 1;
const INO_AT: usize = 2;
const COUNTER_AT: usize = 3;

type Words = [AtomicU64; 4];

/// The key of the segment that counts the snapshots published in the directory `(dev, ino)`:
/// `'J'` in the top byte (positive, never `IPC_PRIVATE`), 24 bits of FNV-1a below.
pub fn key_for(dev: u64, ino: u64) -> libc::key_t {
    let mut h: u32 = 0x811c_9dc5;
    for b in dev.to_le_bytes().iter().chain(ino.to_le_bytes().iter()) {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    let k = (0x4a_u32 << 24) | (h & 0x00ff_ffff);
    libc::key_t::try_from(k).unwrap_or(0x4a00_0001)
}

/// Whether a segment with these permissions may be trusted (see the module comment).
// The casts only widen the platform's field types.
#[allow(clippy::unnecessary_cast)]
pub fn trusted(ds: &libc::shmid_ds) -> bool {
    let p = &ds.shm_perm;
    let mode = p.mode as u16;
    p.cuid == 0
        && p.uid == 0
        && mode & 0o022 == 0
        && mode & SHM_DEST == 0
        && (ds.shm_segsz as usize) >= SEGMENT_BYTES
}

/// Why no counter is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The directory could not be examined (errno).
    Dir(i32),
    /// No segment under the key (jitd not running, or an older jitd).
    Absent,
    /// A segment exists but fails [`trusted`], or names another directory, or is not set up.
    Untrusted,
    /// A System V call failed (errno).
    Os(i32),
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let os = |e: i32| std::io::Error::from_raw_os_error(e);
        match self {
            Refused::Dir(e) => write!(f, "snapshot directory: {}", os(*e)),
            Refused::Absent => write!(f, "no counter segment for the snapshot directory"),
            Refused::Untrusted => write!(
                f,
                "the segment under the counter's key is not jitd's for this directory \
                 (not root's, writable by others, or another directory's)"
            ),
            Refused::Os(e) => write!(f, "System V shared memory: {}", os(*e)),
        }
    }
}

impl std::error::Error for Refused {}

/// `(st_dev, st_ino)` of the directory `dir` (a symlink is refused).
// The casts only widen the platform's stat field types.
#[allow(clippy::unnecessary_cast)]
pub fn dir_identity(dir: &CStr) -> Result<(u64, u64), Refused> {
    let st = crate::ffi::lstat(dir).map_err(Refused::Dir)?;
    if st.st_mode & libc::S_IFMT != libc::S_IFDIR {
        return Err(Refused::Dir(libc::ENOTDIR));
    }
    Ok((st.st_dev as u64, st.st_ino as u64))
}

fn stat_segment(id: libc::c_int) -> Result<libc::shmid_ds, Refused> {
    let mut ds = std::mem::MaybeUninit::<libc::shmid_ds>::uninit();
    // SAFETY: IPC_STAT writes one `shmid_ds` into the storage we pass.
    if unsafe { libc::shmctl(id, libc::IPC_STAT, ds.as_mut_ptr()) } != 0 {
        return Err(Refused::Os(errno()));
    }
    // SAFETY: shmctl returned 0, so it filled the struct.
    Ok(unsafe { ds.assume_init() })
}

/// A counter attached read-only by a reader.
///
/// It is never detached: another thread of the process may be reading it at any moment, and
/// a read of an unmapped address would crash the process. A reader that must move to a new
/// segment leaks the old attachment (one page of address space; the NSS module bounds how many).
pub struct Attached {
    words: *const Words,
}

// SAFETY: the words are only accessed through atomics; the mapping is never unmapped.
unsafe impl Send for Attached {}
// SAFETY: as above.
unsafe impl Sync for Attached {}

impl Attached {
    /// Attaches the counter of the snapshot directory `dir`, if root set one up for it.
    ///
    /// # Errors
    /// [`Refused`] says why not; the caller then checks the file on every lookup.
    pub fn attach(dir: &CStr) -> Result<Attached, Refused> {
        let (dev, ino) = dir_identity(dir)?;
        // SAFETY: shmget with size 0 and no flags only looks an existing segment up.
        let id = unsafe { libc::shmget(key_for(dev, ino), 0, 0) };
        if id < 0 {
            return Err(match errno() {
                libc::ENOENT => Refused::Absent,
                e => Refused::Os(e),
            });
        }
        if !trusted(&stat_segment(id)?) {
            return Err(Refused::Untrusted);
        }
        // SAFETY: attaching read-only: the kernel picks the address; the segment is at least
        // SEGMENT_BYTES long (checked above) and cannot shrink.
        let p = unsafe { libc::shmat(id, std::ptr::null(), libc::SHM_RDONLY) };
        if p as isize == -1 {
            return Err(Refused::Os(errno()));
        }
        let a = Attached {
            words: p.cast::<Words>(),
        };
        let w = a.words();
        let ok = w[MAGIC_AT].load(Ordering::Acquire) == MAGIC
            && w[DEV_AT].load(Ordering::Relaxed) == dev
            && w[INO_AT].load(Ordering::Relaxed) == ino;
        if !ok {
            // Not yet published anywhere: detaching cannot race a reader.
            // SAFETY: `p` is the address shmat returned, attached once, read by no one else.
            unsafe { libc::shmdt(p) };
            return Err(Refused::Untrusted);
        }
        Ok(a)
    }

    fn words(&self) -> &Words {
        // SAFETY: `words` points at the start of a live, page-aligned mapping of at least
        // SEGMENT_BYTES (never unmapped); `AtomicU64` has the size and alignment of `u64`.
        unsafe { &*self.words }
    }

    /// The counter now: even while jitd publishes through it, odd once it stopped.
    pub fn counter(&self) -> u64 {
        self.words()[COUNTER_AT].load(Ordering::Acquire)
    }
}

/// Whether a counter value says jitd is publishing through the segment.
pub fn is_open(counter: u64) -> bool {
    counter & 1 == 0
}

/// jitd's side: the segment, attached read-write. Dropping it closes the counter and removes
/// the segment (readers go back to `lstat`).
pub struct Counter {
    id: libc::c_int,
    words: *mut Words,
    dir: (u64, u64),
}

// SAFETY: the words are only accessed through atomics; the mapping lives as long as `Counter`.
unsafe impl Send for Counter {}
// SAFETY: as above.
unsafe impl Sync for Counter {}

impl Counter {
    /// Sets up the counter of the directory `dir` (starting at 2), or takes over the one a
    /// killed jitd left (moving past its value). A segment under the key that is not trusted is
    /// removed first.
    ///
    /// # Errors
    /// The directory cannot be examined, a System V call fails, or the key is held by a
    /// trusted segment of another directory.
    pub fn open(dir: &CStr) -> Result<Counter, Refused> {
        let (dev, ino) = dir_identity(dir)?;
        let key = key_for(dev, ino);
        for _ in 0..3 {
            // SAFETY: creates a new segment of SEGMENT_BYTES under `key`, or fails.
            let id = unsafe {
                libc::shmget(key, SEGMENT_BYTES, libc::IPC_CREAT | libc::IPC_EXCL | 0o644)
            };
            if id >= 0 {
                return Counter::set_up(id, (dev, ino), true);
            }
            let e = errno();
            if e != libc::EEXIST {
                return Err(Refused::Os(e));
            }
            // SAFETY: looks the existing segment up.
            let id = unsafe { libc::shmget(key, 0, 0) };
            if id < 0 {
                continue; // removed meanwhile: create again
            }
            if trusted(&stat_segment(id)?) {
                return Counter::set_up(id, (dev, ino), false);
            }
            // A squatter: someone else's segment under our key. Root may remove it.
            // SAFETY: IPC_RMID takes no buffer.
            unsafe { libc::shmctl(id, libc::IPC_RMID, std::ptr::null_mut()) };
        }
        Err(Refused::Untrusted)
    }

    fn set_up(id: libc::c_int, dir: (u64, u64), fresh: bool) -> Result<Counter, Refused> {
        // SAFETY: attaches read-write at an address the kernel picks; the segment is
        // SEGMENT_BYTES long (created so, or checked by `trusted`).
        let p = unsafe { libc::shmat(id, std::ptr::null(), 0) };
        if p as isize == -1 {
            return Err(Refused::Os(errno()));
        }
        let c = Counter {
            id,
            words: p.cast::<Words>(),
            dir,
        };
        let w = c.words();
        let set_up = !fresh && w[MAGIC_AT].load(Ordering::Acquire) == MAGIC;
        let stored = (
            w[DEV_AT].load(Ordering::Relaxed),
            w[INO_AT].load(Ordering::Relaxed),
        );
        if set_up && stored != dir {
            // Another directory's counter under the same 24-bit key: leave it alone (detach
            // only; dropping `c` would close and remove it).
            std::mem::forget(c);
            // SAFETY: `p` is the address shmat returned above, attached once, used no more.
            unsafe { libc::shmdt(p) };
            return Err(Refused::Untrusted);
        }
        if set_up {
            // Taken over after a crash: continue above every value a reader may hold.
            let now = w[COUNTER_AT].load(Ordering::Relaxed);
            w[COUNTER_AT].store((now | 1).wrapping_add(1), Ordering::Release);
        } else {
            w[DEV_AT].store(dir.0, Ordering::Relaxed);
            w[INO_AT].store(dir.1, Ordering::Relaxed);
            w[COUNTER_AT].store(2, Ordering::Relaxed);
            w[MAGIC_AT].store(MAGIC, Ordering::Release);
        }
        Ok(c)
    }

    fn words(&self) -> &Words {
        // SAFETY: `words` points at the start of our live, page-aligned mapping of
        // SEGMENT_BYTES; `AtomicU64` has the size and alignment of `u64`.
        unsafe { &*self.words }
    }

    /// The directory `(dev, ino)` this counter is for.
    pub fn dir(&self) -> (u64, u64) {
        self.dir
    }

    /// Counts one published snapshot. Call after the rename, before acknowledging the change.
    pub fn bump(&self) {
        self.words()[COUNTER_AT].fetch_add(2, Ordering::AcqRel);
    }

    /// The counter now (tests and `status`).
    pub fn value(&self) -> u64 {
        self.words()[COUNTER_AT].load(Ordering::Acquire)
    }
}

impl Drop for Counter {
    fn drop(&mut self) {
        // Odd: closed. Readers still attached see it and check the file again.
        self.words()[COUNTER_AT].fetch_add(1, Ordering::AcqRel);
        // SAFETY: IPC_RMID takes no buffer; the segment is destroyed after the last detach.
        unsafe { libc::shmctl(self.id, libc::IPC_RMID, std::ptr::null_mut()) };
        // SAFETY: `words` is the address shmat returned for this Counter; nothing reads it after.
        unsafe { libc::shmdt(self.words.cast::<libc::c_void>()) };
    }
}

#[cfg(test)]
#[path = "generation_tests.rs"]
mod tests;
