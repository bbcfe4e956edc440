//! Checks glibc's short-buffer negotiation against the real NSS stack, by hand.
//!
//! `buflen_probe passwd NAME` / `buflen_probe group NAME` calls `getpwnam_r`/`getgrnam_r` with a
//! 1-byte buffer and then one byte more each time, and reports that every size below the first
//! success gave ERANGE (and no other error), and what the first success returned.

use std::ffi::{CStr, CString};

/// Copies a C string out.
///
/// # Safety
/// `p` must point to a NUL-terminated string.
unsafe fn text(p: *const libc::c_char) -> String {
    // SAFETY: guaranteed by the caller.
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(db), Some(name)) = (args.first(), args.get(1)) else {
        eprintln!("usage: buflen_probe passwd|group NAME");
        std::process::exit(2);
    };
    let Ok(c) = CString::new(name.as_str()) else {
        std::process::exit(2);
    };
    let mut erange = 0usize;
    for len in 1..65_536usize {
        let mut buf = vec![0 as libc::c_char; len];
        let (rc, line) = if db == "passwd" {
            let mut pw = std::mem::MaybeUninit::<libc::passwd>::uninit();
            let mut res: *mut libc::passwd = std::ptr::null_mut();
            // SAFETY: valid pointers and a buffer of `len` bytes.
            let rc = unsafe {
                libc::getpwnam_r(c.as_ptr(), pw.as_mut_ptr(), buf.as_mut_ptr(), len, &mut res)
            };
            let line = (!res.is_null()).then(|| {
                // SAFETY: on success every field points into `buf`.
                let p = unsafe { &*res };
                // SAFETY: on success every string field points into `buf`, NUL-terminated.
                let s = |q: *mut libc::c_char| unsafe { text(q) };
                format!(
                    "{}:{}:{}:{}:{}:{}:{}",
                    s(p.pw_name),
                    s(p.pw_passwd),
                    p.pw_uid,
                    p.pw_gid,
                    if s(p.pw_gecos).len() > 40 {
                        format!("<{} bytes>", s(p.pw_gecos).len())
                    } else {
                        s(p.pw_gecos)
                    },
                    s(p.pw_dir),
                    s(p.pw_shell)
                )
            });
            (rc, line)
        } else {
            let mut gr = std::mem::MaybeUninit::<libc::group>::uninit();
            let mut res: *mut libc::group = std::ptr::null_mut();
            // SAFETY: valid pointers and a buffer of `len` bytes.
            let rc = unsafe {
                libc::getgrnam_r(c.as_ptr(), gr.as_mut_ptr(), buf.as_mut_ptr(), len, &mut res)
            };
            let line = (!res.is_null()).then(|| {
                // SAFETY: on success every field points into `buf`; gr_mem is NULL-terminated.
                let g = unsafe { &*res };
                // SAFETY: on success every string field points into `buf`, NUL-terminated.
                let s = |q: *mut libc::c_char| unsafe { text(q) };
                let mut mem = Vec::new();
                let mut i = 0;
                // SAFETY: as above.
                while let Some(p) = Some(unsafe { *g.gr_mem.add(i) }).filter(|p| !p.is_null()) {
                    mem.push(s(p));
                    i += 1;
                }
                format!(
                    "{}:{}:{}:{}",
                    s(g.gr_name),
                    s(g.gr_passwd),
                    g.gr_gid,
                    mem.join(",")
                )
            });
            (rc, line)
        };
        match (rc, line) {
            (libc::ERANGE, _) => erange += 1,
            (0, Some(l)) => {
                println!("buflen 1..{}: ERANGE x{erange}; buflen {len}: {l}", len - 1);
                return;
            }
            (rc, _) => {
                println!("buflen {len}: rc {rc}, no entry (after {erange} x ERANGE)");
                std::process::exit(1);
            }
        }
    }
}
