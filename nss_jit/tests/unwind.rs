//! The built `libnss_jit.so` carries its own, statically linked unwinder (build.rs). This test
//! loads the library the way glibc does (`dlopen`, not the rlib the unit tests use) and makes
//! an entry point panic: the guard must turn it into UNAVAIL, the calling process must go on,
//! and the library must keep answering afterwards. Without a working unwinder the panic would
//! abort the process, which no process that loaded the module may suffer.
//!
//! Needs the `panic-probe` feature (scripts/test builds it into a target directory of its own,
//! so no shipped or tested library carries the probe).
#![cfg(feature = "panic-probe")]
#![allow(clippy::expect_used)] // test set-up: a missing library is the failure to report

use std::ffi::{c_char, c_int, c_void, CStr};
use std::path::PathBuf;

type GetPwNam = unsafe extern "C" fn(
    *const c_char,
    *mut libc::passwd,
    *mut c_char,
    libc::size_t,
    *mut c_int,
) -> c_int;

/// `target/<profile>/libnss_jit.so`, next to the `deps` directory this test runs from.
fn built_library() -> PathBuf {
    let exe = std::env::current_exe().expect("the test knows its own path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("the test runs from target/<profile>/deps");
    profile_dir.join("libnss_jit.so")
}

fn getpwnam(f: GetPwNam, name: &CStr) -> (c_int, c_int) {
    // SAFETY: all-zero bytes are a valid `struct passwd` (null pointers and zero ids).
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut buf = vec![0 as c_char; 1024];
    let mut err: c_int = 0;
    // SAFETY: the NSS contract: a C string, a writable passwd, a writable buffer of the stated
    // length and a writable errno, all alive across the call.
    let status = unsafe {
        f(
            name.as_ptr(),
            &mut pwd,
            buf.as_mut_ptr(),
            buf.len(),
            &mut err,
        )
    };
    (status, err)
}

#[test]
fn a_panic_inside_the_loaded_library_is_caught_by_its_own_unwinder() {
    let path = built_library();
    let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
        .expect("a target path has no NUL");
    // SAFETY: a NUL-terminated path; the library's constructors are Rust std's (argv capture).
    let handle = unsafe { libc::dlopen(c_path.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
    assert!(!handle.is_null(), "dlopen {} failed", path.display());
    // SAFETY: a valid handle and a NUL-terminated symbol name.
    let sym: *mut c_void = unsafe { libc::dlsym(handle, c"_nss_jit_getpwnam_r".as_ptr()) };
    assert!(!sym.is_null(), "the library exports _nss_jit_getpwnam_r");
    // SAFETY: the symbol is the NSS entry point with exactly this C signature (nss_jit/src/lib.rs).
    let f: GetPwNam = unsafe { std::mem::transmute::<*mut c_void, GetPwNam>(sym) };

    for round in 0..3 {
        let (status, err) = getpwnam(f, c"jit-panic-probe");
        assert_eq!(
            status, -1,
            "round {round}: a contained panic answers UNAVAIL"
        );
        assert_eq!(
            err,
            libc::ENOENT,
            "round {round}: errno of a contained panic"
        );
        // An ordinary query after the panic still gets an ordinary answer: root is refused
        // before any snapshot is read (NOTFOUND), so the answer does not depend on this host.
        let (status, _) = getpwnam(f, c"root");
        assert_eq!(
            status, 0,
            "round {round}: the library still answers after a panic"
        );
    }
}
