//! Reading a small local file whole without letting it block or trick the caller: opened
//! with `O_NONBLOCK|O_NOCTTY|O_CLOEXEC` and required to be a regular file (a FIFO planted at
//! the path cannot hang a login), size-capped; a *trusted* file must also not be a
//! symlink and pass [`crate::host::trust`]. Used for `/etc/passwd` and `/etc/group`
//! ([`crate::host::accounts`]) and by pam_jit and sudo_jit for jitd's managed-account list.

use crate::ffi::errno;
use std::ffi::CStr;

/// Why a file was not read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileError {
    /// open/fstat/read failed with this errno.
    Os(i32),
    /// Not a regular file.
    NotRegular,
    /// Not owned by root (only checked where trust is required).
    NotRootOwned,
    /// Writable by group or others (only checked where trust is required).
    Writable,
    /// Above the size cap.
    TooBig,
}

impl std::fmt::Display for FileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FileError::Os(e) => write!(f, "{}", std::io::Error::from_raw_os_error(*e)),
            FileError::NotRegular => write!(f, "not a regular file"),
            FileError::NotRootOwned => write!(f, "not owned by root"),
            FileError::Writable => write!(f, "writable by group or others"),
            FileError::TooBig => write!(f, "larger than accepted"),
        }
    }
}

impl From<crate::host::trust::Untrusted> for FileError {
    fn from(e: crate::host::trust::Untrusted) -> Self {
        match e {
            crate::host::trust::Untrusted::NotRootOwned { .. } => FileError::NotRootOwned,
            crate::host::trust::Untrusted::Mode { .. } => FileError::Writable,
        }
    }
}

/// Reads a whole file under the rules above. With `trusted`, also refuses symlinks, files not
/// owned by root and files writable by group or others.
///
/// # Errors
/// The first failed rule.
pub fn read_file(path: &CStr, cap: u64, trusted: bool) -> Result<Vec<u8>, FileError> {
    use std::io::Read;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    let mut flags = libc::O_RDONLY | libc::O_CLOEXEC | libc::O_NONBLOCK | libc::O_NOCTTY;
    if trusted {
        flags |= libc::O_NOFOLLOW;
    }
    // SAFETY: `path` is a valid NUL-terminated string; the result is checked before use.
    let fd = unsafe { libc::open(path.as_ptr(), flags) };
    if fd < 0 {
        return Err(FileError::Os(errno()));
    }
    // SAFETY: a fresh descriptor nothing else owns; OwnedFd closes it on every path.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: an all-zero stat is a valid value for fstat to overwrite.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: an open descriptor and a writable stat buffer.
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } != 0 {
        return Err(FileError::Os(errno()));
    }
    if st.st_mode & libc::S_IFMT != libc::S_IFREG {
        return Err(FileError::NotRegular);
    }
    if trusted {
        crate::host::trust::check_stat(&st, crate::host::trust::Access::ReadableByAll)?;
    }
    if u64::try_from(st.st_size).unwrap_or(u64::MAX) > cap {
        return Err(FileError::TooBig);
    }
    let mut buf = Vec::new();
    std::fs::File::from(fd)
        .take(cap.saturating_add(1))
        .read_to_end(&mut buf)
        .map_err(|e| FileError::Os(e.raw_os_error().unwrap_or(libc::EIO)))?;
    if buf.len() as u64 > cap {
        return Err(FileError::TooBig);
    }
    Ok(buf)
}
