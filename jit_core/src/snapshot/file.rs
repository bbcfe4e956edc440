//! Opening the snapshot file the way every reader must: no symlinks, regular file, owned by
//! root, not writable by group or others, within the size cap. A file that fails any check is
//! not read at all (docs/threat-model.md#trusted-files).

use std::ffi::CStr;

use crate::constants::MAX_SNAPSHOT_BYTES;
use crate::snapshot::format::HEADER_SIZE;

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
    /// Smaller than a header or above the cap.
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
    if size < HEADER_SIZE as u64 || size > MAX_SNAPSHOT_BYTES {
        return Err(TrustError::BadSize);
    }
    Ok(())
}

fn errno() -> i32 {
    std::io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
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
    let mut f = std::fs::File::from(fd);
    let mut buf = Vec::with_capacity(usize::try_from(st.st_size).unwrap_or(0));
    f.read_to_end(&mut buf)
        .map_err(|e| TrustError::Os(e.raw_os_error().unwrap_or(libc::EIO)))?;
    if buf.len() as u64 > MAX_SNAPSHOT_BYTES {
        return Err(TrustError::BadSize);
    }
    Ok(buf)
}
