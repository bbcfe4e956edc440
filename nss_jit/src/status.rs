//! NSS status codes and the one place where failures become `(nss_status, errno)`.
//!
//! The glibc manual ("NSS Module Function Internals") fixes the pairs: TRYAGAIN + ERANGE asks
//! glibc to retry with a bigger buffer, NOTFOUND + ENOENT means "no such entry here", and
//! UNAVAIL + ENOENT means the service has no usable data (here: no trusted snapshot). Callers
//! such as getpwnam_r turn UNAVAIL's errno into their return value, so it must be meaningful.

use crate::buffer::TooSmall;
use crate::source::SourceError;
use libc::c_int;

/// `enum nss_status` from `<nss.h>` (an `int` in the C ABI).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NssStatus {
    /// Temporary failure; with ERANGE: buffer too small.
    TryAgain = -2,
    /// The service is not usable.
    Unavail = -1,
    /// No such entry in this service.
    NotFound = 0,
    /// Answer written.
    Success = 1,
}

/// Why an entry point did not answer SUCCESS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// No such (live, answerable) entry: NOTFOUND + ENOENT.
    NotFound,
    /// Caller's buffer too small: TRYAGAIN + ERANGE (glibc retries with a bigger one).
    TooSmall,
    /// A null pointer or impossible argument: UNAVAIL + EINVAL.
    BadArgument,
    /// No trusted snapshot, lock contention, or a contained panic: UNAVAIL + ENOENT.
    Unavailable,
    /// realloc failed in initgroups_dyn: TRYAGAIN + ENOMEM, as glibc's nss_files answers.
    NoMemory,
}

impl From<TooSmall> for Failure {
    fn from(_: TooSmall) -> Failure {
        Failure::TooSmall
    }
}

impl From<SourceError> for Failure {
    // Every snapshot problem (missing, untrusted, corrupt, I/O) looks the same to the caller:
    // the jit service has nothing usable right now; local accounts are answered by `files`.
    fn from(_: SourceError) -> Failure {
        Failure::Unavailable
    }
}

impl Failure {
    /// The status and errno glibc expects for this failure.
    pub fn status_errno(self) -> (NssStatus, c_int) {
        match self {
            Failure::NotFound => (NssStatus::NotFound, libc::ENOENT),
            Failure::TooSmall => (NssStatus::TryAgain, libc::ERANGE),
            Failure::BadArgument => (NssStatus::Unavail, libc::EINVAL),
            Failure::Unavailable => (NssStatus::Unavail, libc::ENOENT),
            Failure::NoMemory => (NssStatus::TryAgain, libc::ENOMEM),
        }
    }
}

/// What an entry point's body produces.
pub type Answer = Result<NssStatus, Failure>;

/// Turns an answer into the status to return, storing errno through `errnop` on failure
/// (errno is left alone on success, as nss_files does).
///
/// # Safety
/// `errnop` must be null or point to a writable `int` (glibc passes `&errno`).
pub unsafe fn finish(answer: Answer, errnop: *mut c_int) -> NssStatus {
    match answer {
        Ok(status) => status,
        Err(f) => {
            let (status, errno) = f.status_errno();
            if !errnop.is_null() {
                // SAFETY: non-null, and the caller guarantees it points to a writable int.
                unsafe { errnop.write(errno) };
            }
            status
        }
    }
}

/// For the entry points without an `errnop` (set*ent, end*ent).
pub fn finish_no_errno(answer: Answer) -> NssStatus {
    match answer {
        Ok(status) => status,
        Err(f) => f.status_errno().0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_table() {
        let mut e: c_int = 0;
        // SAFETY: `e` is a writable int.
        let st = unsafe { finish(Err(Failure::TooSmall), &mut e) };
        assert_eq!((st, e), (NssStatus::TryAgain, libc::ERANGE));
        // SAFETY: as above.
        let st = unsafe { finish(Err(Failure::Unavailable), &mut e) };
        assert_eq!((st, e), (NssStatus::Unavail, libc::ENOENT));
        // SAFETY: as above.
        let st = unsafe { finish(Err(Failure::BadArgument), &mut e) };
        assert_eq!((st, e), (NssStatus::Unavail, libc::EINVAL));
        // SAFETY: as above.
        let st = unsafe { finish(Err(Failure::NotFound), &mut e) };
        assert_eq!((st, e), (NssStatus::NotFound, libc::ENOENT));
        e = 1234;
        // SAFETY: as above.
        let st = unsafe { finish(Ok(NssStatus::Success), &mut e) };
        assert_eq!(
            (st, e),
            (NssStatus::Success, 1234),
            "errno untouched on success"
        );
        // SAFETY: a null errnop is tolerated and not written.
        let st = unsafe { finish(Err(Failure::NotFound), std::ptr::null_mut()) };
        assert_eq!(st, NssStatus::NotFound);
        assert_eq!(
            std::mem::size_of::<NssStatus>(),
            std::mem::size_of::<c_int>()
        );
    }
}
