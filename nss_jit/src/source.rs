//! The snapshot source: open, check, copy and validate `/run/jitd/snapshot`, with a process-wide
//! cache of the last validated copy.
//!
//! Trust comes from the file itself: a regular file (not a symlink), owned by root, not group- or
//! other-writable, between a header and `MAX_SNAPSHOT_BYTES` long; the content is then fully
//! validated by `Snapshot::parse`. No file descriptor is kept (callers may `closefrom(3)`;
//! the one exception, an account listing's between `getpwent` and `endpwent`, checks that its
//! descriptor still names its file before each read: `crate::listing`), no lock is ever
//! waited for, nothing is logged, and the path is compile-time.
//!
//! Cache. Parsing checks every byte (CRC32C and all references), which is far too slow to repeat
//! per lookup, so the validated copy is kept in [`CACHE`] and revalidated per call with one
//! `lstat()`: if the file's identity (device, inode, size, mtime, ctime, mode, owner) equals the
//! cached one, the cached copy still shows that same file. This is sound because the cached
//! entry pins its inode (a never-read PROT_NONE mapping), so while it is cached no new file can be given the
//! same (device, inode) pair; jitd replaces the snapshot by rename, which always yields a new
//! inode. An in-place change of the same inode (only root can make one) moves mtime/ctime or the
//! size, and a chmod/chown moves ctime, so those are seen as well and trigger a fresh validation.
//!
//! The cache lock is only ever `try_lock`ed, a bounded number of times: on contention, or if a
//! `fork()` happened while another thread held it (the child then inherits a lock no one will
//! release), the call reads, validates, uses and frees its own copy instead of waiting.

use jit_core::ffi::errno;
use jit_core::snapshot::file::{
    check_stat, copy_len, open_trusted, read_accounts, read_base, Region, TrustError,
};
use jit_core::snapshot::index::{IndexHead, SectionRef, HEAD_PREFIX};
use jit_core::snapshot::{Snapshot, SnapshotError};
use std::ffi::CStr;
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};

/// How many times a lock is tried before giving up (each try is a few nanoseconds when free).
const LOCK_TRIES: u32 = 64;

/// The only path the module reads (compile-time, NUL-terminated: a lookup allocates nothing).
pub const SNAPSHOT_PATH: &CStr = jit_core::constants::DEFAULT_SNAPSHOT_PATH_C;

/// Why there is no usable snapshot. Every variant becomes UNAVAIL at the entry points; the
/// detail exists for tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceError {
    /// The file failed the shared trust rules of `jit_core::snapshot::file` (absent, symlink,
    /// not regular, not root's, writable by others, bad size).
    Untrusted(TrustError),
    /// `mmap` (of the inode pin) or `pread` failed with this errno.
    Io(i32),
    /// The content failed validation.
    Corrupt,
}

impl From<TrustError> for SourceError {
    fn from(e: TrustError) -> Self {
        SourceError::Untrusted(e)
    }
}

/// The identity of the file a copy was read from (see the module comment).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Identity {
    dev: u64,
    ino: u64,
    pub(crate) size: i64,
    mtime: (i64, i64),
    ctime: (i64, i64),
    mode: libc::mode_t,
    uid: libc::uid_t,
}

impl Identity {
    // The casts only widen (or keep) the platform's stat field types, which vary by target.
    #[allow(clippy::unnecessary_cast)]
    pub(crate) fn of(st: &libc::stat) -> Identity {
        Identity {
            dev: st.st_dev as u64,
            ino: st.st_ino as u64,
            size: st.st_size as i64,
            mtime: (st.st_mtime as i64, st.st_mtime_nsec as i64),
            ctime: (st.st_ctime as i64, st.st_ctime_nsec as i64),
            mode: st.st_mode,
            uid: st.st_uid,
        }
    }
}

/// `lstat(path)`: the per-call identity check. A symlink is refused here already.
pub(crate) fn lstat_identity(path: &CStr) -> Result<Identity, SourceError> {
    let st = jit_core::ffi::lstat(path).map_err(TrustError::Os)?;
    check_stat(&st)?;
    Ok(Identity::of(&st))
}

/// A `PROT_NONE` mapping of the snapshot file's first page, never read: it only holds a
/// reference to the inode, so no other file can be given the same (device, inode) pair while the
/// copy is cached (see the module comment). Never touching it means a file truncated in place
/// cannot raise SIGBUS here.
pub(crate) struct InodePin {
    ptr: *mut libc::c_void,
    len: usize,
}

// SAFETY: the pin is never read or written through; it only owns a mapping to unmap.
unsafe impl Send for InodePin {}
// SAFETY: as above.
unsafe impl Sync for InodePin {}

impl InodePin {
    /// Pins the inode behind `fd` (a `PROT_NONE` mapping of its first page, never touched).
    pub(crate) fn of(fd: &std::os::fd::OwnedFd) -> Result<InodePin, SourceError> {
        // SAFETY: a PROT_NONE private mapping of one page of an open regular file; the kernel
        // picks the address and nothing ever reads or writes through it.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                PIN_LEN,
                libc::PROT_NONE,
                libc::MAP_PRIVATE,
                fd.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(SourceError::Io(errno()));
        }
        Ok(InodePin { ptr, len: PIN_LEN })
    }
}

impl Drop for InodePin {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` are exactly what a successful mmap returned; this is the only owner
        // and nothing ever reads through it.
        unsafe { libc::munmap(self.ptr, self.len) };
    }
}

/// A validated private copy of the snapshot and the identity of the file it came from.
pub struct SnapshotCopy {
    /// Borrows `_bytes`. Declared before it so it is dropped first; it is only ever handed out
    /// with a lifetime tied to `&self` (see [`SnapshotCopy::snapshot`]), never as `'static`.
    snap: Snapshot<'static>,
    /// The copy; a boxed slice never moves its heap data when the `SnapshotCopy` moves.
    _bytes: Box<[u8]>,
    /// The whole-file copy pins its inode itself; a shard's pin is held by the shard cache.
    _pin: Option<InodePin>,
    ident: Identity,
}

// SAFETY: the copy is never written after validation and the pin is never accessed; the snapshot
// view is plain borrowed data. Sharing or moving it across threads is as safe as a `&[u8]`.
unsafe impl Send for SnapshotCopy {}
// SAFETY: as above: no interior mutability.
unsafe impl Sync for SnapshotCopy {}

impl SnapshotCopy {
    /// The validated snapshot, borrowed for as long as the copy lives.
    pub fn snapshot(&self) -> Snapshot<'_> {
        self.snap
    }

    /// The validated snapshot by reference (a delta is read over a base by reference).
    pub fn view(&self) -> &Snapshot<'_> {
        &self.snap
    }

    /// The identity of the file it was read from.
    pub(crate) fn ident(&self) -> Identity {
        self.ident
    }

    /// Validates `bytes` (a whole image or one shard) and keeps them.
    pub(crate) fn from_bytes(
        bytes: Box<[u8]>,
        ident: Identity,
        pin: Option<InodePin>,
    ) -> Result<SnapshotCopy, SourceError> {
        SnapshotCopy::validated(bytes, ident, pin, Snapshot::parse)
    }

    /// Keeps `bytes` once `parse` (the whole-image or the base-region check) accepts them.
    fn validated(
        bytes: Box<[u8]>,
        ident: Identity,
        pin: Option<InodePin>,
        parse: fn(&'static [u8]) -> Result<Snapshot<'static>, SnapshotError>,
    ) -> Result<SnapshotCopy, SourceError> {
        // SAFETY: `bytes` is a heap slice owned by the `SnapshotCopy` built below and never mutated or
        // freed before it; the `'static` view is confined to that `SnapshotCopy`.
        let view: &'static [u8] =
            unsafe { std::slice::from_raw_parts(bytes.as_ptr(), bytes.len()) };
        let snap = parse(view).map_err(|_| SourceError::Corrupt)?;
        Ok(SnapshotCopy {
            snap,
            _bytes: bytes,
            _pin: pin,
            ident,
        })
    }

    /// Opens, checks, copies and validates `path`. The descriptor is closed before returning,
    /// whatever happens.
    ///
    /// The content is read into private memory rather than mapped: a mapping of a file that
    /// someone truncates or rewrites in place raises SIGBUS in, or feeds torn records to, every
    /// process resolving names (SSSD bz 2226021). The copy is checked whole (CRC32C) after the
    /// read, so a concurrent in-place write yields a refused copy, never a mixed one.
    fn open(path: &CStr) -> Result<SnapshotCopy, SourceError> {
        // open_trusted: O_NOFOLLOW refuses a symlink, O_NONBLOCK keeps a FIFO swapped in between
        // lstat and open from blocking us, and fstat applies the trust rules.
        let (fd, st) = open_trusted(path)?;
        SnapshotCopy::whole(&fd, Identity::of(&st))
    }

    /// Opens and checks `path` for enumeration, which needs sections 1 to 11 only: of an
    /// indexed file that states its base region (format 1.2) only the header, the section
    /// table and that region are read (`jit_core::snapshot::file::read_base`), about a third
    /// of the file; any other file is read whole. Listing accounts reads only the accounts
    /// region at the start of the base where the file states one (format 1.3,
    /// `jit_core::snapshot::file::read_accounts`, about half of the base), and validates and
    /// keeps only the accounts (`Snapshot::parse_accounts_region`, `parse_base_accounts`).
    fn open_for_enumeration(path: &CStr, listing: Listing) -> Result<SnapshotCopy, SourceError> {
        let (fd, st) = open_trusted(path)?;
        let ident = Identity::of(&st);
        let len = usize::try_from(ident.size).map_err(|_| TrustError::BadSize)?;
        let pin = InodePin::of(&fd)?;
        let at = |at, buf: &mut [u8]| read_into(&fd, at, buf);
        let image = match listing {
            Listing::Accounts => read_accounts(len, at)?,
            Listing::Groups => read_base(len, at)?,
        };
        let parse = match (image.region(), listing) {
            (Region::Accounts, _) => Snapshot::parse_accounts_region,
            (Region::Base, Listing::Accounts) => Snapshot::parse_base_accounts,
            (Region::Base, Listing::Groups) => Snapshot::parse_base,
            (Region::Whole, Listing::Accounts) => Snapshot::parse_accounts,
            (Region::Whole, Listing::Groups) => Snapshot::parse,
        };
        SnapshotCopy::validated(
            image.into_bytes().into_boxed_slice(),
            ident,
            Some(pin),
            parse,
        )
    }

    /// Copies and validates the whole file behind `fd`, whose identity is `ident`.
    pub(crate) fn whole(
        fd: &std::os::fd::OwnedFd,
        ident: Identity,
    ) -> Result<SnapshotCopy, SourceError> {
        let size = u64::try_from(ident.size).map_err(|_| TrustError::BadSize)?;
        let len = copy_len(size)?;
        let pin = InodePin::of(fd)?;
        let bytes = read_at(fd, 0, len)?;
        SnapshotCopy::from_bytes(bytes, ident, Some(pin))
    }
}

/// Length of the inode pin (one page on every Linux target we build for).
const PIN_LEN: usize = 4096;

/// Reads exactly `len` bytes at `at` in `fd` with `pread`, refusing a file that shrank
/// meanwhile.
pub(crate) fn read_at(
    fd: &std::os::fd::OwnedFd,
    at: u64,
    len: usize,
) -> Result<Box<[u8]>, SourceError> {
    let mut buf = vec![0u8; len].into_boxed_slice();
    read_into(fd, at, &mut buf)?;
    Ok(buf)
}

#[cfg(test)]
thread_local! {
    /// `read_into` calls made by this thread (tests count a lookup's reads).
    pub(crate) static READS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Fills `buf` from offset `at` of `fd` with `pread`, refusing a file that shrank meanwhile.
pub(crate) fn read_into(
    fd: &std::os::fd::OwnedFd,
    at: u64,
    buf: &mut [u8],
) -> Result<(), SourceError> {
    #[cfg(test)]
    READS.with(|r| r.set(r.get() + 1));
    let len = buf.len();
    let mut done = 0usize;
    while done < len {
        let rest = buf.get_mut(done..).ok_or(SourceError::Corrupt)?;
        let off = u64::try_from(done)
            .ok()
            .and_then(|d| d.checked_add(at))
            .and_then(|o| libc::off_t::try_from(o).ok())
            .ok_or(SourceError::Corrupt)?;
        // SAFETY: `rest` is writable for `rest.len()` bytes; pread writes at most that many.
        let n = unsafe { libc::pread(fd.as_raw_fd(), rest.as_mut_ptr().cast(), rest.len(), off) };
        if n < 0 {
            let e = errno();
            if e == libc::EINTR {
                continue;
            }
            return Err(SourceError::Io(e));
        }
        if n == 0 {
            return Err(SourceError::Corrupt); // truncated while reading
        }
        done += n as usize;
    }
    Ok(())
}

/// The process-wide cache: the last validated copy of the snapshot.
pub type Cache = Mutex<Option<Arc<SnapshotCopy>>>;

/// The one cache of the process (the exported functions' snapshot).
pub static CACHE: Cache = Mutex::new(None);

/// Takes `m` if it can do so within a few tries; never waits. A poisoned lock is still used:
/// the data behind our locks is always consistent (an `Option<Arc>` or plain indexes).
pub fn lock_nonblocking<T>(m: &Mutex<T>) -> Option<MutexGuard<'_, T>> {
    for _ in 0..LOCK_TRIES {
        match m.try_lock() {
            Ok(g) => return Some(g),
            Err(TryLockError::Poisoned(p)) => return Some(p.into_inner()),
            Err(TryLockError::WouldBlock) => std::hint::spin_loop(),
        }
    }
    None
}

/// The current snapshot of the module (`SNAPSHOT_PATH`, process cache).
pub fn current() -> Result<Arc<SnapshotCopy>, SourceError> {
    acquire(SNAPSHOT_PATH, &CACHE)
}

/// What an enumeration lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listing {
    /// `getpwent`: the copy holds the accounts alone.
    Accounts,
    /// `getgrent`: the whole base (a private group is visible while its account is live).
    Groups,
}

/// A validated copy of the snapshot's base (sections 1 to 11; the whole file if it states no
/// base region), limited to what `listing` needs, that is not cached: enumeration pins it in
/// its cursor until `end*ent`, after which the process holds nothing that grows with the file.
///
/// Listing accounts of a file with an account listing (format 1.5) opens a walk over it
/// instead ([`crate::listing`]): nothing is copied up front.
pub fn for_enumeration(listing: Listing) -> Result<crate::enumerate::Listed, SourceError> {
    for_enumeration_at(SNAPSHOT_PATH, crate::delta::DELTA_PATH, listing)
}

/// [`for_enumeration`] of the snapshot at `path` and the delta at `delta_path` (tests).
pub fn for_enumeration_at(
    path: &CStr,
    delta_path: &CStr,
    listing: Listing,
) -> Result<crate::enumerate::Listed, SourceError> {
    use crate::enumerate::Listed;
    // The delta is read after the base is opened: jitd renames a new base into place before
    // it removes the old delta, and a delta naming another base is not read over this one.
    let delta = || crate::delta::current(delta_path, &crate::delta::DELTA, true);
    if listing == Listing::Accounts {
        if let Some((fd, st, serial, section)) = open_with_listing(path)? {
            let walk = crate::listing::AccountWalk::new(fd, &st, serial, section, delta());
            return Ok(Listed::Walk(Box::new(walk)));
        }
    }
    let base = SnapshotCopy::open_for_enumeration(path, listing).map(Arc::new)?;
    Ok(Listed::Copy {
        base,
        delta: delta(),
    })
}

/// Opens `path` and checks its header and section table; if the file states an account
/// listing (format 1.5), the descriptor, its stat, the base serial and the listing's section
/// `(offset, length, records)`; `None` for any other file.
fn open_with_listing(
    path: &CStr,
) -> Result<Option<(std::os::fd::OwnedFd, libc::stat, u32, SectionRef)>, SourceError> {
    let (fd, st) = open_trusted(path)?;
    let size = u64::try_from(st.st_size).map_err(|_| TrustError::BadSize)?;
    let mut prefix = vec![
        0u8;
        usize::try_from(size)
            .unwrap_or(HEAD_PREFIX)
            .min(HEAD_PREFIX)
    ];
    read_into(&fd, 0, &mut prefix)?;
    match IndexHead::parse(&prefix, size) {
        Ok(Some(IndexHead {
            listing: Some(section),
            serial,
            ..
        })) => Ok(Some((fd, st, serial, section))),
        Ok(_) => Ok(None),
        Err(_) => Err(SourceError::Corrupt),
    }
}

/// The validated copy of `path`, from `cache` when the file is unchanged.
pub fn acquire(path: &CStr, cache: &Cache) -> Result<Arc<SnapshotCopy>, SourceError> {
    let seen = match lstat_identity(path) {
        Ok(ident) => ident,
        Err(e) => {
            // The snapshot is gone or untrusted: release the old one so the process does not
            // pin a deleted file's memory. Dropped after the lock is released.
            let old = lock_nonblocking(cache).and_then(|mut g| g.take());
            drop(old);
            return Err(e);
        }
    };
    match lock_nonblocking(cache) {
        Some(guard) => {
            if let Some(m) = guard.as_ref().filter(|m| m.ident == seen) {
                return Ok(Arc::clone(m));
            }
            // Validate without holding the lock: parsing a large file takes a while and other
            // threads must not be pushed onto the uncached path meanwhile.
            drop(guard);
            let fresh = match SnapshotCopy::open(path) {
                Ok(m) => Arc::new(m),
                Err(e) => {
                    // The file changed into something unusable: the cached copy is stale and
                    // is never served again, so release it now.
                    let old = lock_nonblocking(cache).and_then(|mut g| g.take());
                    drop(old);
                    return Err(e);
                }
            };
            let old = lock_nonblocking(cache).and_then(|mut g| g.replace(Arc::clone(&fresh)));
            drop(old); // freed here, outside the lock, once no other call still uses it
            Ok(fresh)
        }
        // Contended or inherited locked through fork(): a private, uncached copy for this call.
        None => Ok(Arc::new(SnapshotCopy::open(path)?)),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use jit_core::snapshot::{build_snapshot_with, BuildOptions};
    use jit_core::types::{Account, SnapshotData};
    use std::ffi::CString;
    use std::os::unix::fs::{symlink, PermissionsExt};
    use std::path::{Path, PathBuf};

    pub(crate) fn account(name: &str, uid: u32, nb: i64, na: i64) -> Account {
        Account {
            name: name.into(),
            uid,
            gid: uid,
            gecos: format!("jit grant g-{uid:04x} (test)").into(),
            home: format!("/home/{name}").into(),
            shell: "/bin/bash".into(),
            grant_id: format!("g-{uid:04x}").into(),
            not_before: nb,
            not_after: na,
            flags: 0,
            ssh_keys: vec![],
        }
    }

    fn image(names: &[&str]) -> Vec<u8> {
        image_with(names, &BuildOptions::default())
    }

    /// One live account per name (uids from 70001), built with `opts`.
    fn image_with(names: &[&str], opts: &BuildOptions) -> Vec<u8> {
        let d = SnapshotData {
            generated_at: 1,
            accounts: names
                .iter()
                .zip(70_001u32..)
                .map(|(n, uid)| account(n, uid, 0, i64::MAX))
                .collect(),
            ..Default::default()
        };
        build_snapshot_with(&d, opts).unwrap()
    }

    /// A private temporary directory (removed on drop).
    pub(crate) struct TempDir(pub PathBuf);
    impl TempDir {
        pub(crate) fn new(tag: &str) -> TempDir {
            static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
            let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let p =
                std::env::temp_dir().join(format!("nss_jit-test-{}-{tag}-{n}", std::process::id()));
            let _ = std::fs::remove_dir_all(&p);
            std::fs::create_dir(&p).unwrap();
            TempDir(p)
        }
    }
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn cpath(p: &Path) -> CString {
        CString::new(p.as_os_str().as_encoded_bytes()).unwrap()
    }

    /// Writes `bytes` to `dir/name` with `mode`, atomically (temp + rename), like jitd.
    pub(crate) fn install(dir: &Path, name: &str, bytes: &[u8], mode: u32) -> PathBuf {
        let tmp = dir.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, bytes).unwrap();
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode)).unwrap();
        let dst = dir.join(name);
        std::fs::rename(&tmp, &dst).unwrap();
        dst
    }

    pub(crate) fn is_root() -> bool {
        // SAFETY: geteuid has no preconditions.
        unsafe { libc::geteuid() == 0 }
    }

    fn names(m: &SnapshotCopy) -> Vec<String> {
        let s = m.snapshot();
        (0..s.account_count())
            .map(|i| s.account_at(i).unwrap().name().to_string())
            .collect()
    }

    #[test]
    fn enumeration_reads_only_the_base_of_an_indexed_file() {
        use jit_core::snapshot::format::BASE_AT_AT;
        use std::os::unix::fs::FileExt;
        if !is_root() {
            eprintln!("skipped: needs a root-owned file");
            return;
        }
        let all: Vec<String> = (0..200).map(|i| format!("u{i:03}")).collect();
        let refs: Vec<&str> = all.iter().map(String::as_str).collect();
        let plain = image(&refs);
        let indexed = image_with(
            &refs,
            &BuildOptions {
                index: true,
                ..Default::default()
            },
        );
        let base_at = u32::from_le_bytes(indexed[BASE_AT_AT..BASE_AT_AT + 4].try_into().unwrap());
        let base_at = base_at as usize;
        assert!(base_at > 1024 && base_at < indexed.len());

        let dir = TempDir::new("enum-base");
        let path = install(&dir.0, "snapshot", &indexed, 0o644);
        let p = cpath(&path);
        assert_eq!(
            names(&SnapshotCopy::open_for_enumeration(&p, Listing::Groups).unwrap()),
            all
        );
        // Listing accounts keeps the accounts alone.
        let accounts = SnapshotCopy::open_for_enumeration(&p, Listing::Accounts).unwrap();
        assert_eq!(names(&accounts), all);
        assert_eq!(accounts.snapshot().group_count(), 0);
        drop(accounts);

        // The index and shards are not read: garbage written over them in place (by root)
        // changes nothing for enumeration.
        let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        f.write_all_at(&vec![0xa5; base_at - 1024], 1024).unwrap();
        assert_eq!(
            names(&SnapshotCopy::open_for_enumeration(&p, Listing::Groups).unwrap()),
            all
        );
        // One byte of the base changed in place, or the file cut short: refused, never a torn
        // or partial listing.
        f.write_all_at(&[indexed[base_at + 3] ^ 1], (base_at + 3) as u64)
            .unwrap();
        assert!(SnapshotCopy::open_for_enumeration(&p, Listing::Groups).is_err());
        assert!(SnapshotCopy::open_for_enumeration(&p, Listing::Accounts).is_err());
        f.write_all_at(&indexed[base_at + 3..base_at + 4], (base_at + 3) as u64)
            .unwrap();
        f.set_len((indexed.len() - 8) as u64).unwrap();
        assert!(SnapshotCopy::open_for_enumeration(&p, Listing::Groups).is_err());
        assert!(SnapshotCopy::open_for_enumeration(&p, Listing::Accounts).is_err());
        drop(f);

        // Listing accounts reads only the accounts region at the start of the base (1.3):
        // garbage over the rest of the base spoils the group listing, not the account one.
        install(&dir.0, "snapshot", &indexed, 0o644);
        let (_, end) = Snapshot::stated_accounts_region(&indexed, indexed.len() as u64).unwrap();
        let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        f.write_all_at(&vec![0x77; indexed.len() - end as usize], end)
            .unwrap();
        assert_eq!(
            names(&SnapshotCopy::open_for_enumeration(&p, Listing::Accounts).unwrap()),
            all
        );
        assert!(SnapshotCopy::open_for_enumeration(&p, Listing::Groups).is_err());
        drop(f);

        // A file without the index (or from an older jitd) is read whole.
        install(&dir.0, "snapshot", &plain, 0o644);
        assert_eq!(
            names(&SnapshotCopy::open_for_enumeration(&p, Listing::Groups).unwrap()),
            all
        );
        assert_eq!(
            names(&SnapshotCopy::open_for_enumeration(&p, Listing::Accounts).unwrap()),
            all
        );
    }

    #[test]
    fn trusted_file_is_mapped_and_cached() {
        if !is_root() {
            eprintln!("skipped: needs a root-owned file");
            return;
        }
        let d = TempDir::new("cache");
        let p = cpath(&install(&d.0, "snapshot", &image(&["alice"]), 0o644));
        let cache: Cache = Mutex::new(None);
        let a = acquire(&p, &cache).unwrap();
        assert_eq!(names(&a), ["alice"]);
        let b = acquire(&p, &cache).unwrap();
        assert!(Arc::ptr_eq(&a, &b), "unchanged file: cached mapping reused");

        // jitd-style replacement (new inode) is seen at the next call.
        install(&d.0, "snapshot", &image(&["alice", "bob"]), 0o644);
        let c = acquire(&p, &cache).unwrap();
        assert!(!Arc::ptr_eq(&a, &c));
        assert_eq!(names(&c), ["alice", "bob"]);
        // The old mapping stays valid for whoever still holds it.
        assert_eq!(names(&a), ["alice"]);

        // A chmod in place changes ctime and mode: revalidated, and now refused.
        std::fs::set_permissions(d.0.join("snapshot"), std::fs::Permissions::from_mode(0o666))
            .unwrap();
        assert_eq!(
            acquire(&p, &cache).err(),
            Some(SourceError::Untrusted(TrustError::Writable))
        );
        assert!(
            cache.lock().unwrap().is_none(),
            "refused file evicts the cache"
        );

        // Gone: UNAVAIL (ENOENT), no panic.
        std::fs::remove_file(d.0.join("snapshot")).unwrap();
        assert_eq!(
            acquire(&p, &cache).err(),
            Some(SourceError::Untrusted(TrustError::Os(libc::ENOENT)))
        );
    }

    #[test]
    fn locked_cache_falls_back_to_an_uncached_mapping() {
        if !is_root() {
            return;
        }
        let d = TempDir::new("locked");
        let p = cpath(&install(&d.0, "snapshot", &image(&["alice"]), 0o600));
        let cache: Cache = Mutex::new(None);
        let held = cache.lock().unwrap(); // as if inherited locked through fork()
        let m = acquire(&p, &cache).unwrap();
        assert_eq!(names(&m), ["alice"]);
        assert!(held.is_none(), "the cache was not touched");
        drop(held);
        assert!(cache.lock().unwrap().is_none());
    }

    #[test]
    fn untrusted_files_are_refused() {
        if !is_root() {
            return;
        }
        let d = TempDir::new("refuse");
        let img = image(&["alice"]);
        let cache: Cache = Mutex::new(None);

        let p = cpath(&install(&d.0, "ww", &img, 0o666));
        assert_eq!(
            acquire(&p, &cache).err(),
            Some(SourceError::Untrusted(TrustError::Writable))
        );
        let p = cpath(&install(&d.0, "gw", &img, 0o620));
        assert_eq!(
            acquire(&p, &cache).err(),
            Some(SourceError::Untrusted(TrustError::Writable))
        );

        let good = install(&d.0, "good", &img, 0o644);
        let link = d.0.join("link");
        symlink(&good, &link).unwrap();
        assert_eq!(
            acquire(&cpath(&link), &cache).err(),
            Some(SourceError::Untrusted(TrustError::NotRegular))
        );
        // Even past the lstat check, open(O_NOFOLLOW) refuses a symlink.
        assert_eq!(
            SnapshotCopy::open(&cpath(&link)).err(),
            Some(SourceError::Untrusted(TrustError::Os(libc::ELOOP)))
        );

        let owned = install(&d.0, "owned", &img, 0o644);
        std::os::unix::fs::chown(&owned, Some(1000), Some(1000)).unwrap();
        assert_eq!(
            acquire(&cpath(&owned), &cache).err(),
            Some(SourceError::Untrusted(TrustError::NotRootOwned))
        );

        let p = cpath(&install(&d.0, "short", &img[..63], 0o644));
        assert_eq!(
            acquire(&p, &cache).err(),
            Some(SourceError::Untrusted(TrustError::BadSize))
        );
        let p = cpath(&install(&d.0, "empty", &[], 0o644));
        assert_eq!(
            acquire(&p, &cache).err(),
            Some(SourceError::Untrusted(TrustError::BadSize))
        );

        // A trusted file replaced by a corrupt one: refused, and the cache is emptied.
        let _ = acquire(&cpath(&good), &cache).unwrap();
        assert!(cache.lock().unwrap().is_some());
        let mut bad = img.clone();
        let last = bad.len() - 1;
        bad[last] ^= 0xff;
        install(&d.0, "good", &bad, 0o644);
        assert_eq!(
            acquire(&cpath(&good), &cache).err(),
            Some(SourceError::Corrupt)
        );
        assert!(cache.lock().unwrap().is_none());

        let mut bad = img.clone();
        let last = bad.len() - 1;
        bad[last] ^= 0xff;
        let p = cpath(&install(&d.0, "corrupt", &bad, 0o644));
        assert_eq!(acquire(&p, &cache).err(), Some(SourceError::Corrupt));
        let p = cpath(&install(&d.0, "garbage", &[0x5a; 4096], 0o644));
        assert_eq!(acquire(&p, &cache).err(), Some(SourceError::Corrupt));

        assert_eq!(
            acquire(&cpath(&d.0), &cache).err(),
            Some(SourceError::Untrusted(TrustError::NotRegular)),
            "a directory"
        );
        assert_eq!(
            acquire(&cpath(&d.0.join("missing")), &cache).err(),
            Some(SourceError::Untrusted(TrustError::Os(libc::ENOENT)))
        );
        assert!(cache.lock().unwrap().is_none());

        // A FIFO is refused without blocking.
        let fifo = cpath(&d.0.join("fifo"));
        // SAFETY: NUL-terminated path; creates a FIFO in our private temp dir.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
        assert_eq!(
            acquire(&fifo, &cache).err(),
            Some(SourceError::Untrusted(TrustError::NotRegular))
        );
        assert_eq!(
            SnapshotCopy::open(&fifo).err(),
            Some(SourceError::Untrusted(TrustError::NotRegular))
        );
    }

    #[test]
    fn no_descriptor_is_left_open() {
        if !is_root() {
            return;
        }
        let d = TempDir::new("fd");
        let p = cpath(&install(&d.0, "snapshot", &image(&["alice"]), 0o644));
        // Other tests run in parallel threads, so instead of counting descriptors check that
        // the lowest free one has not crept up after a thousand mappings.
        let cache: Cache = Mutex::new(None);
        for _ in 0..1000 {
            let m = SnapshotCopy::open(&p).unwrap();
            drop(m);
            let _ = acquire(&p, &cache).unwrap();
        }
        let probe = std::fs::File::open("/dev/null").unwrap();
        use std::os::fd::AsRawFd;
        assert!(probe.as_raw_fd() < 200, "descriptors leaked");
    }

    /// Many threads look up while the file is replaced over and over: every answer comes from
    /// one whole, valid snapshot (old or new), nothing panics, blocks or fails.
    #[test]
    fn concurrent_lookups_during_replacement() {
        if !is_root() {
            return;
        }
        let d = TempDir::new("threads");
        let p = cpath(&install(&d.0, "snapshot", &image(&["alice"]), 0o644));
        let cache: Cache = Mutex::new(None);
        let a = image(&["alice"]);
        let b = image(&["alice", "bob"]);
        std::thread::scope(|sc| {
            for _ in 0..4 {
                sc.spawn(|| {
                    for _ in 0..2000 {
                        let m = acquire(&p, &cache).unwrap();
                        let s = m.snapshot();
                        assert_eq!(s.account_by_name("alice", 1).unwrap().uid(), 70_001);
                        let n = s.account_count();
                        assert!(n == 1 || n == 2);
                        assert_eq!(s.account_by_name("bob", 1).is_some(), n == 2);
                    }
                });
            }
            sc.spawn(|| {
                for i in 0..200 {
                    install(&d.0, "snapshot", if i % 2 == 0 { &b } else { &a }, 0o644);
                }
            });
        });
    }
}
