//! Opening the snapshot file the way every reader must: no symlinks, regular file, owned by
//! root, not writable by group or others, at most `MAX_SNAPSHOT_FILE_BYTES`. A file that
//! fails any check is not read at all (docs/threat-model.md#trusted-files). Whatever the
//! file's size, no reader copies more than `MAX_SNAPSHOT_BYTES` of it at once ([`copy_len`]).

use crate::ffi::errno;
use std::ffi::CStr;

use crate::constants::{MAX_SNAPSHOT_BYTES, MAX_SNAPSHOT_FILE_BYTES};
use crate::snapshot::format::HEADER_SIZE;
use crate::snapshot::index::HEAD_PREFIX;
use crate::snapshot::{Snapshot, SnapshotError};

/// Why a snapshot file is not trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrustError {
    /// open/fstat failed with this errno (ENOENT when absent, ELOOP for a symlink).
    Os(i32),
    /// Not a regular file.
    NotRegular,
    /// Not owned by root.
    NotRootOwned,
    /// Writable by group or others.
    Writable,
    /// Smaller than a header, above the cap, or a part to copy above what a reader copies.
    BadSize,
}

impl std::fmt::Display for TrustError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TrustError::Os(e) => write!(f, "{}", std::io::Error::from_raw_os_error(*e)),
            TrustError::NotRegular => write!(f, "not a regular file"),
            TrustError::NotRootOwned => write!(f, "not owned by root"),
            TrustError::Writable => write!(f, "writable by group or others"),
            TrustError::BadSize => write!(f, "size outside the accepted range"),
        }
    }
}

impl std::error::Error for TrustError {}

impl From<crate::host::trust::Untrusted> for TrustError {
    fn from(e: crate::host::trust::Untrusted) -> Self {
        match e {
            crate::host::trust::Untrusted::NotRootOwned { .. } => TrustError::NotRootOwned,
            crate::host::trust::Untrusted::Mode { .. } => TrustError::Writable,
        }
    }
}

/// Checks the `fstat` result of an opened snapshot.
///
/// # Errors
/// The first failed rule.
pub fn check_stat(st: &libc::stat) -> Result<(), TrustError> {
    if st.st_mode & libc::S_IFMT != libc::S_IFREG {
        return Err(TrustError::NotRegular);
    }
    crate::host::trust::check_stat(st, crate::host::trust::Access::ReadableByAll)?;
    let size = u64::try_from(st.st_size).unwrap_or(u64::MAX);
    if size < HEADER_SIZE as u64 || size > MAX_SNAPSHOT_FILE_BYTES {
        return Err(TrustError::BadSize);
    }
    Ok(())
}

/// `len` bytes as a length to copy into memory: at most `MAX_SNAPSHOT_BYTES`, whatever part
/// of the file they are (the whole file, a region, a shard). Above it the file is too large for
/// this reader: refused, never copied.
///
/// # Errors
/// `BadSize` above the cap.
pub fn copy_len(len: u64) -> Result<usize, TrustError> {
    if len > MAX_SNAPSHOT_BYTES {
        return Err(TrustError::BadSize);
    }
    usize::try_from(len).map_err(|_| TrustError::BadSize)
}

/// Opens `path` with O_RDONLY|O_CLOEXEC|O_NOFOLLOW|O_NONBLOCK (a FIFO planted there cannot
/// block us) and checks it. Returns the descriptor and its stat.
///
/// # Errors
/// Any failed open or rule.
pub fn open_trusted(path: &CStr) -> Result<(std::os::fd::OwnedFd, libc::stat), TrustError> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    // SAFETY: `path` is a valid C string; the descriptor is checked and then owned.
    let fd = unsafe {
        libc::open(
            path.as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC | libc::O_NOFOLLOW | libc::O_NONBLOCK,
        )
    };
    if fd < 0 {
        return Err(TrustError::Os(errno()));
    }
    // SAFETY: a fresh descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: an all-zero stat is a valid value to be overwritten.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: open descriptor and a writable stat.
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } != 0 {
        return Err(TrustError::Os(errno()));
    }
    check_stat(&st)?;
    Ok((fd, st))
}

/// Reads a trusted snapshot into memory (for tools; the NSS module maps it instead).
///
/// # Errors
/// Any failed rule or read error.
pub fn read_trusted(path: &CStr) -> Result<Vec<u8>, TrustError> {
    use std::io::Read;
    let (fd, st) = open_trusted(path)?;
    let len = copy_len(u64::try_from(st.st_size).map_err(|_| TrustError::BadSize)?)?;
    let f = std::fs::File::from(fd);
    let mut buf = Vec::with_capacity(len);
    // One byte past the cap is enough to tell a file that grew after the fstat.
    f.take(MAX_SNAPSHOT_BYTES + 1)
        .read_to_end(&mut buf)
        .map_err(|e| TrustError::Os(e.raw_os_error().unwrap_or(libc::EIO)))?;
    if buf.len() as u64 > MAX_SNAPSHOT_BYTES {
        return Err(TrustError::BadSize);
    }
    Ok(buf)
}

/// Reads the delta at `path` (format 1.4) if there is a trusted one of at most
/// `MAX_DELTA_BYTES`; `None` otherwise (no delta, or one no reader may use: the base alone is
/// then read, which can only miss grants added since it was written, never show an ended one).
pub fn read_trusted_delta(path: &CStr) -> Option<Vec<u8>> {
    let (fd, st) = open_trusted(path).ok()?;
    if u64::try_from(st.st_size).ok()? > crate::constants::MAX_DELTA_BYTES {
        return None;
    }
    use std::io::Read;
    let mut buf = Vec::with_capacity(usize::try_from(st.st_size).ok()?);
    std::fs::File::from(fd)
        .take(crate::constants::MAX_DELTA_BYTES + 1)
        .read_to_end(&mut buf)
        .ok()?;
    (buf.len() as u64 <= crate::constants::MAX_DELTA_BYTES).then_some(buf)
}

/// A trusted snapshot file and the delta next to it, read for one decision (pam_jit, sudo_jit,
/// jit-authorized-keys). The delta is read after the base: jitd renames a new base into place
/// before it removes the delta of the old one, and a delta that names another base is ignored.
pub struct Layers<B> {
    /// The base file.
    pub base: B,
    /// The delta's bytes, if a trusted one was there.
    pub delta: Option<Vec<u8>>,
}

impl<B> Layers<B> {
    /// The delta, validated as a delta; `None` if there is none or it is refused.
    pub fn parse_delta(&self) -> Option<Snapshot<'_>> {
        self.delta.as_deref().and_then(parse_delta)
    }
}

/// `bytes` validated as a delta (a whole image naming the bases it applies to); `None` if
/// it is not one.
pub fn parse_delta(bytes: &[u8]) -> Option<Snapshot<'_>> {
    Snapshot::parse(bytes).ok().filter(Snapshot::is_delta)
}

/// Reads the trusted file at `path` whole, then the delta at `delta_path`.
///
/// # Errors
/// As [`read_trusted`], for the base; a delta that cannot be read is left out.
pub fn read_trusted_layers(path: &CStr, delta_path: &CStr) -> Result<Layers<Vec<u8>>, TrustError> {
    let base = read_trusted(path)?;
    Ok(Layers {
        base,
        delta: read_trusted_delta(delta_path),
    })
}

/// One image that answers as `base` with `delta` read over it (tests and diagnostics compare
/// what the modules see with it): `base` unchanged when no delta applies.
///
/// # Errors
/// The base does not parse, or the union cannot be written (it always can for jitd's files).
pub fn merged_image(base: &[u8], delta: Option<&[u8]>) -> Result<Vec<u8>, String> {
    let b = Snapshot::parse(base).map_err(|e| e.to_string())?;
    let d = delta
        .and_then(|d| Snapshot::parse(d).ok())
        .filter(Snapshot::is_delta);
    let layered = b.over(d.as_ref());
    if !layered.has_delta() {
        return Ok(base.to_vec());
    }
    crate::snapshot::build_snapshot(&layered.to_data()).map_err(|e| e.to_string())
}

/// What of a trusted snapshot was read besides its header and section table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Region {
    /// The whole file.
    Whole,
    /// The base region (format 1.2, docs/snapshot-format.md §10.5).
    Base,
    /// The accounts region at the start of the base (format 1.3): enough to list accounts.
    Accounts,
}

/// A trusted snapshot in memory, read whole or, for a file that states its base region
/// (format 1.2), only its header, table and base (docs/snapshot-format.md §10.5), or only the
/// accounts region of the base (1.3, for listing accounts).
pub struct TrustedImage {
    bytes: Vec<u8>,
    region: Region,
}

impl TrustedImage {
    /// Whether only the header, the table and the base region were read.
    pub fn base_only(&self) -> bool {
        self.region == Region::Base
    }

    /// What was read.
    pub fn region(&self) -> Region {
        self.region
    }

    /// The bytes (the file's length; unread parts zero), for a reader that keeps them.
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }

    /// Validates the image with the check that matches what was read.
    ///
    /// # Errors
    /// As [`Snapshot::parse`] / [`Snapshot::parse_base`].
    pub fn parse(&self) -> Result<Snapshot<'_>, SnapshotError> {
        match self.region {
            Region::Whole => Snapshot::parse(&self.bytes),
            Region::Base => Snapshot::parse_base(&self.bytes),
            Region::Accounts => Snapshot::parse_accounts_region(&self.bytes),
        }
    }
}

/// Reads what a reader of accounts, groups and keys needs of a trusted snapshot: the base
/// region of an indexed public snapshot (about a third of it), any other file whole.
///
/// # Errors
/// Any failed rule or read error, or a file that shrank while it was read.
pub fn read_trusted_base(path: &CStr) -> Result<TrustedImage, TrustError> {
    use std::os::unix::fs::FileExt;
    let (fd, st) = open_trusted(path)?;
    let f = std::fs::File::from(fd);
    let len = usize::try_from(st.st_size).map_err(|_| TrustError::BadSize)?;
    read_base(len, |at, buf| {
        f.read_exact_at(buf, at)
            .map_err(|e| TrustError::Os(e.raw_os_error().unwrap_or(libc::EIO)))
    })
}

/// The one layout of a base read, for any reader's I/O: of a trusted file of `len` bytes,
/// `read(at, buf)` fills `buf` from offset `at`. The header and table are read first; if they
/// state a base region, only it follows, else the rest of the file. The buffer has the file's
/// size; the parts not read stay zero pages the kernel never backs.
///
/// # Errors
/// What `read` returns.
pub fn read_base<E: From<TrustError>>(
    len: usize,
    read: impl FnMut(u64, &mut [u8]) -> Result<(), E>,
) -> Result<TrustedImage, E> {
    read_part(len, false, read)
}

/// As [`read_base`], for listing accounts: of a file that states its accounts region
/// (format 1.3) only that region follows the header and table; else as [`read_base`].
///
/// # Errors
/// What `read` returns.
pub fn read_accounts<E: From<TrustError>>(
    len: usize,
    read: impl FnMut(u64, &mut [u8]) -> Result<(), E>,
) -> Result<TrustedImage, E> {
    read_part(len, true, read)
}

fn read_part<E: From<TrustError>>(
    len: usize,
    accounts_only: bool,
    mut read: impl FnMut(u64, &mut [u8]) -> Result<(), E>,
) -> Result<TrustedImage, E> {
    let head_len = len.min(HEAD_PREFIX);
    let mut head = [0u8; HEAD_PREFIX];
    let head = head.get_mut(..head_len).ok_or(TrustError::BadSize)?;
    read(0, head)?;
    let size = len as u64;
    let to_usize = |v: u64| usize::try_from(v).ok();
    let accounts = accounts_only
        .then(|| Snapshot::stated_accounts_region(head, size))
        .flatten()
        .and_then(|(at, end)| Some((to_usize(at)?, to_usize(end)?)));
    let base = Snapshot::stated_base_at(head, size).and_then(to_usize);
    let (range, region) = match (accounts, base) {
        (Some((at, end)), _) => (at..end, Region::Accounts),
        (None, Some(at)) => (at..len, Region::Base),
        (None, None) => (0..len, Region::Whole),
    };
    // Checked before anything is allocated: a region (or a file read whole) above what a
    // reader copies is refused, whatever the file's size.
    copy_len(range.len() as u64)?;
    let mut bytes = vec![0u8; len];
    bytes
        .get_mut(..head_len)
        .ok_or(TrustError::BadSize)?
        .copy_from_slice(head);
    let range = range.start.max(head_len)..range.end.max(head_len);
    let from = range.start as u64;
    let rest = bytes.get_mut(range).ok_or(TrustError::BadSize)?;
    populate(rest);
    read(from, rest)?;
    Ok(TrustedImage { bytes, region })
}

/// Backs the whole pages of `buf` (fresh zero pages of a large allocation) in one call before
/// `pread` fills them: a megabyte-sized read otherwise takes a page fault per 4 KiB while the
/// kernel copies. Linux 5.14 and later (`MADV_POPULATE_WRITE`); elsewhere the call fails and
/// the faults happen as before. The 2 MiB-aligned part is asked for as huge pages first: at
/// 50 000 grants a listing copies a ~9 MB accounts region, and allocating, zeroing and freeing
/// it page by page was a quarter of `getent passwd` (huge pages: 29.4 → 24.7 ms, 10 000:
/// 7.6 → 6.5 ms, bench/results.md). Only where the kernel leaves huge pages to `madvise`
/// (Debian's default) does this change anything; a refusal changes nothing either.
fn populate(buf: &mut [u8]) {
    const PAGE: usize = 4096;
    const HUGE: usize = 2 << 20;
    let start = buf.as_mut_ptr() as usize;
    let end = start + buf.len();
    let inside = |align: usize| (start.div_ceil(align) * align, end / align * align);
    // Huge pages first, so the populate below backs the aligned part with them; both calls
    // only say how to back pages of `buf` (fresh zero memory this process owns and is about
    // to write), neither changes content or mapping.
    advise(inside(HUGE), libc::MADV_HUGEPAGE);
    advise(inside(PAGE), libc::MADV_POPULATE_WRITE);
}

/// `madvise(advice)` over the page-aligned range `[from, to)` of a buffer of `populate`, if
/// it is not empty; a refusal (an older kernel, huge pages off) changes nothing.
fn advise((from, to): (usize, usize), advice: libc::c_int) {
    if to > from {
        // SAFETY: `populate` passes a page-aligned range inside the buffer it was given; the
        // advice it passes changes no content and no mapping.
        unsafe { libc::madvise(from as *mut libc::c_void, to - from, advice) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::{build_snapshot, build_snapshot_with, BuildOptions};
    use crate::types::{Account, SnapshotData};
    use std::os::unix::fs::{FileExt, PermissionsExt};

    fn data(n: u32) -> SnapshotData {
        SnapshotData {
            generated_at: 5,
            accounts: (0..n)
                .map(|i| Account {
                    name: format!("u{i:03}").into(),
                    uid: 70_000 + i,
                    gid: 70_000 + i,
                    gecos: String::new().into(),
                    home: format!("/home/u{i:03}").into(),
                    shell: "/bin/sh".into(),
                    grant_id: format!("g-{i:012x}").into(),
                    not_before: 0,
                    not_after: i64::MAX,
                    flags: 0,
                    ssh_keys: vec![format!("ssh-ed25519 AAAA{i} u{i:03}")],
                })
                .collect(),
            ..Default::default()
        }
    }

    fn names(image: &TrustedImage) -> Vec<String> {
        let s = image.parse().unwrap();
        (0..s.account_count())
            .map(|i| s.account_at(i).unwrap().name().to_string())
            .collect()
    }

    #[test]
    fn the_base_of_an_indexed_file_is_enough_and_is_checked() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: needs a root-owned file");
            return;
        }
        let dir = std::env::temp_dir().join(format!("jit_core-base-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("snapshot");
        let cpath = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
        let want: Vec<String> = (0..150).map(|i| format!("u{i:03}")).collect();

        let indexed = build_snapshot_with(
            &data(150),
            &BuildOptions {
                index: true,
                ..Default::default()
            },
        )
        .unwrap();
        std::fs::write(&path, &indexed).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let image = read_trusted_base(&cpath).unwrap();
        assert!(image.base_only());
        assert_eq!(names(&image), want);
        let keys: Vec<String> = image
            .parse()
            .unwrap()
            .account_by_name("u007", 1)
            .unwrap()
            .ssh_keys()
            .map(String::from)
            .collect();
        assert_eq!(keys, ["ssh-ed25519 AAAA7 u007"]);

        // Listing accounts reads the accounts region alone: the rest of the base is not read.
        let (at, end) = Snapshot::stated_accounts_region(&indexed, indexed.len() as u64).unwrap();
        {
            let f = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .unwrap();
            let tail = indexed.len() as u64 - end;
            f.write_all_at(&vec![0x3c; tail as usize], end).unwrap();
            let image = read_accounts(indexed.len(), |at, buf| {
                f.read_exact_at(buf, at).map_err(|_| TrustError::BadSize)
            })
            .unwrap();
            assert_eq!(image.region(), Region::Accounts);
            assert_eq!(names(&image), want);
            assert!(read_trusted_base(&cpath).unwrap().parse().is_err());
            // A byte of the region changed in place: refused.
            f.write_all_at(&[indexed[at as usize + 5] ^ 2], at + 5)
                .unwrap();
            let image = read_accounts(indexed.len(), |at, buf| {
                f.read_exact_at(buf, at).map_err(|_| TrustError::BadSize)
            })
            .unwrap();
            assert!(image.parse().is_err());
            f.write_all_at(&indexed, 0).unwrap();
        }

        // Bytes between the table and the base (index, shards) are not read.
        let base_at = Snapshot::stated_base_at(&indexed, indexed.len() as u64).unwrap() as usize;
        let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        f.write_all_at(&vec![0x5a; base_at - HEAD_PREFIX], HEAD_PREFIX as u64)
            .unwrap();
        assert_eq!(names(&read_trusted_base(&cpath).unwrap()), want);
        // A byte of the base changed in place: refused.
        f.write_all_at(&[indexed[base_at + 9] ^ 4], (base_at + 9) as u64)
            .unwrap();
        assert!(read_trusted_base(&cpath).unwrap().parse().is_err());
        drop(f);

        // A file without the index (the gates file) is read whole.
        std::fs::write(&path, build_snapshot(&data(150)).unwrap()).unwrap();
        let image = read_trusted_base(&cpath).unwrap();
        assert!(!image.base_only());
        assert_eq!(names(&image), want);
        let f = std::fs::File::open(&path).unwrap();
        let len = f.metadata().unwrap().len() as usize;
        let image = read_accounts(len, |at, buf| {
            f.read_exact_at(buf, at).map_err(|_| TrustError::BadSize)
        })
        .unwrap();
        assert_eq!(image.region(), Region::Whole);
        assert_eq!(names(&image), want);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
