//! Times lookups, for checking the module's cost by hand (run it inside the test namespace).
//!
//! `nss_timing NAME...` prints the mean cost of `getpwnam_r(NAME)` through glibc (whatever
//! /etc/nsswitch.conf says) and of a direct call to `_nss_jit_getpwnam_r` (the module alone).

use std::ffi::CString;
use std::time::Instant;

const ROUNDS: u32 = 200_000;

fn main() {
    let mut buf = vec![0 as libc::c_char; 4096];
    for name in std::env::args().skip(1) {
        let Ok(c) = CString::new(name.clone()) else {
            continue;
        };
        let mut pw = std::mem::MaybeUninit::<libc::passwd>::uninit();
        let mut res: *mut libc::passwd = std::ptr::null_mut();
        let t = Instant::now();
        let mut found = false;
        for _ in 0..ROUNDS {
            // SAFETY: valid name, struct, buffer and result pointers for the call.
            unsafe {
                libc::getpwnam_r(
                    c.as_ptr(),
                    pw.as_mut_ptr(),
                    buf.as_mut_ptr(),
                    buf.len(),
                    &mut res,
                )
            };
            found = !res.is_null();
        }
        let glibc = t.elapsed().as_nanos() as f64 / f64::from(ROUNDS);
        let mut e = 0;
        let t = Instant::now();
        let mut st = nss_jit::status::NssStatus::Unavail;
        for _ in 0..ROUNDS {
            // SAFETY: as above.
            st = unsafe {
                nss_jit::_nss_jit_getpwnam_r(
                    c.as_ptr(),
                    pw.as_mut_ptr(),
                    buf.as_mut_ptr(),
                    buf.len(),
                    &mut e,
                )
            };
        }
        let module = t.elapsed().as_nanos() as f64 / f64::from(ROUNDS);
        println!(
            "{name:>12}: getpwnam_r {glibc:8.0} ns (found: {found}), _nss_jit_getpwnam_r {module:8.0} ns ({st:?})"
        );
    }
}
