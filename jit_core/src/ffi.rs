//! Helpers for C entry points and raw system calls: panic containment, logging without global
//! state, `errno`, `lstat`.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};

static QUIET: AtomicBool = AtomicBool::new(false);

/// Replaces the panic hook with one that prints nothing, once. Only the shared-library modules
/// call this: std is linked into each cdylib, so the hook is the library's own and never the
/// host program's, and a module must not write to the host's stderr even when it panics (the
/// panic itself is still contained by [`guard`]). An atomic flag, not a `Once`, so no call ever
/// waits on another thread (or on one that vanished in a `fork`).
pub fn silence_panic_messages() {
    // A plain load first: this runs at every NSS call, and the swap is a locked instruction.
    if !QUIET.load(Ordering::Relaxed) && !QUIET.swap(true, Ordering::SeqCst) {
        std::panic::set_hook(Box::new(|_| {}));
    }
}

/// Runs `f`, turning a panic into `fallback`. The first statement of every `extern "C"` function
/// in the modules: no panic may unwind into C (it would abort the host process).
pub fn guard<T>(fallback: T, f: impl FnOnce() -> T) -> T {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(v) => v,
        Err(_) => fallback,
    }
}

/// The calling thread's `errno` after a failed call (EIO if there is none to read).
pub fn errno() -> i32 {
    std::io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

/// `lstat(path)`, without allocating (a symlink is described, not followed).
///
/// # Errors
/// The `errno` of a failed call.
pub fn lstat(path: &std::ffi::CStr) -> Result<libc::stat, i32> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: `path` is NUL-terminated; `st` is writable storage for one `struct stat`.
    if unsafe { libc::lstat(path.as_ptr(), st.as_mut_ptr()) } != 0 {
        return Err(errno());
    }
    // SAFETY: lstat returned 0, so it filled the whole struct.
    Ok(unsafe { st.assume_init() })
}

/// Logs one line to syslog `authpriv` without `openlog`/`closelog`, which would change the host
/// process's own logging identity. The message is passed as an argument to a constant `%s`
/// format, never as the format.
pub fn syslog_authpriv(priority: libc::c_int, msg: &str) {
    let mut bytes: Vec<u8> = msg.bytes().filter(|&b| b != 0).take(1024).collect();
    bytes.push(0);
    // SAFETY: both pointers are NUL-terminated C strings that live across the call; the format
    // consumes exactly one `%s` argument.
    unsafe {
        libc::syslog(
            libc::LOG_AUTHPRIV | priority,
            c"%s".as_ptr(),
            bytes.as_ptr().cast::<libc::c_char>(),
        )
    };
}

#[cfg(test)]
mod tests {
    use super::guard;

    #[test]
    fn guard_contains_panics() {
        assert_eq!(guard(7, || 1), 1);
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
        let r = guard(7, || -> i32 { panic!("boom") });
        std::panic::set_hook(prev);
        assert_eq!(r, 7);
    }
}
