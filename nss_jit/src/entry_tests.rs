//! Entry-point checks that never reach the snapshot (the host's /run/jitd is not touched;
//! whole lookups are covered in the modules and by the namespace tests).
use crate::*;
use std::ptr::{null, null_mut};

#[test]
fn null_pointers_are_einval() {
    let mut pw = std::mem::MaybeUninit::<libc::passwd>::uninit();
    let mut gr = std::mem::MaybeUninit::<libc::group>::uninit();
    let mut buf = [0 as c_char; 64];
    let mut e: c_int = 0;
    // SAFETY: every non-null pointer is valid; the null ones are the case under test.
    unsafe {
        let st = _nss_jit_getpwnam_r(null(), pw.as_mut_ptr(), buf.as_mut_ptr(), 64, &mut e);
        assert_eq!((st, e), (NssStatus::Unavail, libc::EINVAL));
        e = 0;
        let st = _nss_jit_getpwnam_r(c"alice".as_ptr(), null_mut(), buf.as_mut_ptr(), 64, &mut e);
        assert_eq!((st, e), (NssStatus::Unavail, libc::EINVAL));
        e = 0;
        let st = _nss_jit_getpwuid_r(70001, pw.as_mut_ptr(), null_mut(), 64, &mut e);
        assert_eq!((st, e), (NssStatus::Unavail, libc::EINVAL));
        e = 0;
        let st = _nss_jit_getgrgid_r(27, gr.as_mut_ptr(), null_mut(), 64, &mut e);
        assert_eq!((st, e), (NssStatus::Unavail, libc::EINVAL));
        e = 0;
        let st = _nss_jit_getgrnam_r(c"sudo".as_ptr(), null_mut(), buf.as_mut_ptr(), 64, &mut e);
        assert_eq!((st, e), (NssStatus::Unavail, libc::EINVAL));
        e = 0;
        let st = _nss_jit_getpwent_r(null_mut(), buf.as_mut_ptr(), 64, &mut e);
        assert_eq!((st, e), (NssStatus::Unavail, libc::EINVAL));
        e = 0;
        let st = _nss_jit_getgrent_r(gr.as_mut_ptr(), null_mut(), 64, &mut e);
        assert_eq!((st, e), (NssStatus::Unavail, libc::EINVAL));
        let (mut s, mut z) = (0 as c_long, 0 as c_long);
        e = 0;
        let st =
            _nss_jit_initgroups_dyn(c"alice".as_ptr(), 1, &mut s, &mut z, null_mut(), 0, &mut e);
        assert_eq!((st, e), (NssStatus::Unavail, libc::EINVAL));
        // A null errnop is never written.
        let st = _nss_jit_getpwnam_r(null(), pw.as_mut_ptr(), buf.as_mut_ptr(), 64, null_mut());
        assert_eq!(st, NssStatus::Unavail);
    }
}

#[test]
fn root_and_bad_names_are_notfound_without_the_snapshot() {
    let mut pw = std::mem::MaybeUninit::<libc::passwd>::uninit();
    let mut gr = std::mem::MaybeUninit::<libc::group>::uninit();
    let mut buf = [0 as c_char; 64];
    let long = std::ffi::CString::new(vec![b'a'; 16385]).unwrap();
    let mut e: c_int = 0;
    // SAFETY: all pointers valid for the call.
    unsafe {
        for name in [c"root", c"", c"Bad", c"a:b", c"-x", long.as_c_str()] {
            let st =
                _nss_jit_getpwnam_r(name.as_ptr(), pw.as_mut_ptr(), buf.as_mut_ptr(), 64, &mut e);
            assert_eq!((st, e), (NssStatus::NotFound, libc::ENOENT), "{name:?}");
            let st =
                _nss_jit_getgrnam_r(name.as_ptr(), gr.as_mut_ptr(), buf.as_mut_ptr(), 64, &mut e);
            assert_eq!(st, NssStatus::NotFound);
            let mut g: *mut gid_t = null_mut();
            let (mut s, mut z) = (0 as c_long, 0 as c_long);
            let st = _nss_jit_initgroups_dyn(name.as_ptr(), 1, &mut s, &mut z, &mut g, 0, &mut e);
            assert_eq!(st, NssStatus::NotFound);
            assert!(g.is_null() && s == 0);
        }
        for id in [0, 65_534, u32::MAX, 1 << 31] {
            e = 0;
            let st = _nss_jit_getpwuid_r(id, pw.as_mut_ptr(), buf.as_mut_ptr(), 64, &mut e);
            assert_eq!((st, e), (NssStatus::NotFound, libc::ENOENT), "uid {id}");
            let st = _nss_jit_getgrgid_r(id, gr.as_mut_ptr(), buf.as_mut_ptr(), 64, &mut e);
            assert_eq!(st, NssStatus::NotFound, "gid {id}");
        }
    }
}

/// On a host without jitd (no /run/jitd/snapshot) a valid name is UNAVAIL + ENOENT, at once.
#[test]
fn no_snapshot_is_unavail() {
    if std::path::Path::new(jit_core::constants::DEFAULT_SNAPSHOT_PATH).exists() {
        return;
    }
    let mut pw = std::mem::MaybeUninit::<libc::passwd>::uninit();
    let mut buf = [0 as c_char; 64];
    let mut e: c_int = 0;
    // SAFETY: all pointers valid for the call.
    let st = unsafe {
        _nss_jit_getpwnam_r(
            c"alice".as_ptr(),
            pw.as_mut_ptr(),
            buf.as_mut_ptr(),
            64,
            &mut e,
        )
    };
    assert_eq!((st, e), (NssStatus::Unavail, libc::ENOENT));
    let mut g: *mut gid_t = null_mut();
    let (mut s, mut z) = (0 as c_long, 0 as c_long);
    e = 0;
    // SAFETY: as above; the empty array may be grown with realloc (it is not).
    let st =
        unsafe { _nss_jit_initgroups_dyn(c"alice".as_ptr(), 1, &mut s, &mut z, &mut g, 0, &mut e) };
    assert_eq!((st, e, s), (NssStatus::Unavail, libc::ENOENT, 0));
    // SAFETY: no preconditions.
    assert_eq!(unsafe { _nss_jit_setpwent(0) }, NssStatus::Unavail);
    e = 0;
    // SAFETY: as above.
    let st = unsafe { _nss_jit_getpwent_r(pw.as_mut_ptr(), buf.as_mut_ptr(), 64, &mut e) };
    assert_eq!((st, e), (NssStatus::Unavail, libc::ENOENT));
    // SAFETY: no preconditions.
    assert_eq!(unsafe { _nss_jit_endpwent() }, NssStatus::Success);
}
