//! `libnss_jit.so.2`: the glibc NSS module that shows jit's ephemeral accounts and group
//! memberships while their grant is live.
//!
//! This file holds only the C entry points. Each one does the same four things: its first
//! statement is `jit_core::ffi::guard` (no panic may unwind into the host process), it checks
//! its arguments (null pointers → UNAVAIL/EINVAL; root, reserved ids and invalid names →
//! NOTFOUND before the snapshot is touched), it asks the pure functions in [`lookup`] /
//! [`enumerate`] for the answer on the current snapshot from [`source`], and it stores the
//! result; [`status::finish`] maps failures to `(nss_status, errno)`.
//!
//! The module never talks to jitd, never logs on success or not-found, never writes to
//! stdout/stderr, never blocks and starts no thread. It keeps no file descriptor, except one
//! (`O_CLOEXEC`) from the first `getpwent` to `endpwent` over a file with an account listing,
//! as glibc's `files` keeps its stream open between `setpwent` and `endpwent`
//! ([`listing`]). It is loaded into sshd, login, sudo and every process that resolves a name
//! (docs/design.md#module-rules).
#![warn(clippy::indexing_slicing)]

pub mod buffer;
pub mod counter;
pub mod delta;
pub mod enumerate;
pub mod listing;
pub mod lookup;
pub mod shard;
pub mod source;
pub mod status;

use buffer::CallerBuf;
use enumerate::{GR_CURSOR, PW_CURSOR};
use jit_core::time::{now, now_coarse};
use libc::{c_char, c_int, c_long, gid_t, size_t, uid_t};
use source::Listing;
use status::{finish, finish_no_errno, Failure, NssStatus};

/// `jit_core::ffi::guard` with the panic message silenced (a module never writes to the host's
/// stderr). Unit tests keep the messages so that their own failures stay readable.
fn entry_guard<T>(fallback: T, f: impl FnOnce() -> T) -> T {
    #[cfg(not(test))]
    jit_core::ffi::silence_panic_messages();
    jit_core::ffi::guard(fallback, f)
}

/// `getpwnam_r` for the jit service.
///
/// # Safety
/// glibc's NSS contract: `name` is a C string, `pwd` a writable `struct passwd`, `buffer` holds
/// `buflen` writable bytes, `errnop` points to errno. Null pointers are tolerated (EINVAL).
#[no_mangle]
pub unsafe extern "C" fn _nss_jit_getpwnam_r(
    name: *const c_char,
    pwd: *mut libc::passwd,
    buffer: *mut c_char,
    buflen: size_t,
    errnop: *mut c_int,
) -> NssStatus {
    let answer = entry_guard(Err(Failure::Unavailable), || {
        if name.is_null() || pwd.is_null() {
            return Err(Failure::BadArgument);
        }
        // SAFETY: glibc passes `buffer`/`buflen` as one writable buffer owned by this call.
        let mut buf = unsafe { CallerBuf::from_raw(buffer, buflen) }.ok_or(Failure::BadArgument)?;
        // SAFETY: non-null and NUL-terminated (NSS contract); at most 33 bytes are read.
        let name = lookup::query_name(unsafe { lookup::name_bytes(name) })?;
        // Test builds only: a panic inside the built library, to show the guard still catches
        // it with the statically linked unwinder (build.rs, tests/unwind.rs).
        #[cfg(feature = "panic-probe")]
        #[allow(clippy::panic)] // the probe's whole point
        if name == "jit-panic-probe" {
            panic!("panic probe");
        }
        let answer = shard::by_name(name)?;
        let snap = answer.snapshot().ok_or(Failure::NotFound)?;
        let acc = lookup::account_by_name(&snap, name, now()).ok_or(Failure::NotFound)?;
        let out = lookup::format_passwd(&acc, &mut buf)?;
        // SAFETY: `pwd` is non-null and points to a writable `struct passwd` (NSS contract);
        // `write` does not read the old, possibly uninitialised, contents.
        unsafe { pwd.write(out) };
        Ok(NssStatus::Success)
    });
    // SAFETY: `errnop` is null or glibc's `&errno`.
    unsafe { finish(answer, errnop) }
}

/// `getpwuid_r` for the jit service.
///
/// # Safety
/// As [`_nss_jit_getpwnam_r`].
#[no_mangle]
pub unsafe extern "C" fn _nss_jit_getpwuid_r(
    uid: uid_t,
    pwd: *mut libc::passwd,
    buffer: *mut c_char,
    buflen: size_t,
    errnop: *mut c_int,
) -> NssStatus {
    let answer = entry_guard(Err(Failure::Unavailable), || {
        if pwd.is_null() {
            return Err(Failure::BadArgument);
        }
        // SAFETY: glibc passes `buffer`/`buflen` as one writable buffer owned by this call.
        let mut buf = unsafe { CallerBuf::from_raw(buffer, buflen) }.ok_or(Failure::BadArgument)?;
        if lookup::refused_id(uid) {
            return Err(Failure::NotFound);
        }
        let answer = shard::by_id(uid)?;
        let snap = answer.snapshot().ok_or(Failure::NotFound)?;
        let acc = lookup::account_by_uid(&snap, uid, now()).ok_or(Failure::NotFound)?;
        let out = lookup::format_passwd(&acc, &mut buf)?;
        // SAFETY: `pwd` is non-null and writable (NSS contract).
        unsafe { pwd.write(out) };
        Ok(NssStatus::Success)
    });
    // SAFETY: `errnop` is null or glibc's `&errno`.
    unsafe { finish(answer, errnop) }
}

/// `setpwent`: restart the account enumeration on the current snapshot.
///
/// # Safety
/// None beyond the C ABI; `stayopen` is ignored (no descriptor is ever kept).
#[no_mangle]
pub unsafe extern "C" fn _nss_jit_setpwent(_stayopen: c_int) -> NssStatus {
    let answer = entry_guard(Err(Failure::Unavailable), || {
        enumerate::start(&PW_CURSOR, || source::for_enumeration(Listing::Accounts))
            .map(|()| NssStatus::Success)
    });
    finish_no_errno(answer)
}

/// `getpwent_r`: the next live account, NOTFOUND at the end.
///
/// # Safety
/// As [`_nss_jit_getpwnam_r`].
#[no_mangle]
pub unsafe extern "C" fn _nss_jit_getpwent_r(
    pwd: *mut libc::passwd,
    buffer: *mut c_char,
    buflen: size_t,
    errnop: *mut c_int,
) -> NssStatus {
    let answer = entry_guard(Err(Failure::Unavailable), || {
        if pwd.is_null() {
            return Err(Failure::BadArgument);
        }
        // SAFETY: glibc passes `buffer`/`buflen` as one writable buffer owned by this call.
        let mut buf = unsafe { CallerBuf::from_raw(buffer, buflen) }.ok_or(Failure::BadArgument)?;
        // Listing: the kernel's cached clock (a few ms behind at most) saves a full clock read
        // per entry; no access decision is made on a listing.
        let now = now_coarse();
        let out = enumerate::next(
            &PW_CURSOR,
            || source::for_enumeration(Listing::Accounts),
            |listed, pos| enumerate::step_accounts(listed, pos, now, &mut buf),
        )?;
        // SAFETY: `pwd` is non-null and writable (NSS contract).
        unsafe { pwd.write(out) };
        Ok(NssStatus::Success)
    });
    // SAFETY: `errnop` is null or glibc's `&errno`.
    unsafe { finish(answer, errnop) }
}

/// `endpwent`: forget the account enumeration.
///
/// # Safety
/// None beyond the C ABI.
#[no_mangle]
pub unsafe extern "C" fn _nss_jit_endpwent() -> NssStatus {
    let answer = entry_guard(Err(Failure::Unavailable), || {
        enumerate::end(&PW_CURSOR).map(|()| NssStatus::Success)
    });
    finish_no_errno(answer)
}

/// `getgrnam_r` for the jit service (with `[SUCCESS=merge]`, glibc adds these members to the
/// `/etc/group` entry of the same name and gid).
///
/// # Safety
/// glibc's NSS contract: `name` is a C string, `grp` a writable `struct group`, `buffer` holds
/// `buflen` writable bytes, `errnop` points to errno. Null pointers are tolerated (EINVAL).
#[no_mangle]
pub unsafe extern "C" fn _nss_jit_getgrnam_r(
    name: *const c_char,
    grp: *mut libc::group,
    buffer: *mut c_char,
    buflen: size_t,
    errnop: *mut c_int,
) -> NssStatus {
    let answer = entry_guard(Err(Failure::Unavailable), || {
        if name.is_null() || grp.is_null() {
            return Err(Failure::BadArgument);
        }
        // SAFETY: glibc passes `buffer`/`buflen` as one writable buffer owned by this call.
        let mut buf = unsafe { CallerBuf::from_raw(buffer, buflen) }.ok_or(Failure::BadArgument)?;
        // SAFETY: non-null and NUL-terminated (NSS contract); at most 33 bytes are read.
        let name = lookup::query_name(unsafe { lookup::name_bytes(name) })?;
        let answer = shard::by_name(name)?;
        let snap = answer.snapshot().ok_or(Failure::NotFound)?;
        let now = now();
        let g = lookup::group_by_name(&snap, name, now).ok_or(Failure::NotFound)?;
        let out = lookup::format_group(&g, now, &mut buf)?;
        // SAFETY: `grp` is non-null and points to a writable `struct group` (NSS contract).
        unsafe { grp.write(out) };
        Ok(NssStatus::Success)
    });
    // SAFETY: `errnop` is null or glibc's `&errno`.
    unsafe { finish(answer, errnop) }
}

/// `getgrgid_r` for the jit service.
///
/// # Safety
/// As [`_nss_jit_getgrnam_r`].
#[no_mangle]
pub unsafe extern "C" fn _nss_jit_getgrgid_r(
    gid: gid_t,
    grp: *mut libc::group,
    buffer: *mut c_char,
    buflen: size_t,
    errnop: *mut c_int,
) -> NssStatus {
    let answer = entry_guard(Err(Failure::Unavailable), || {
        if grp.is_null() {
            return Err(Failure::BadArgument);
        }
        // SAFETY: glibc passes `buffer`/`buflen` as one writable buffer owned by this call.
        let mut buf = unsafe { CallerBuf::from_raw(buffer, buflen) }.ok_or(Failure::BadArgument)?;
        if lookup::refused_id(gid) {
            return Err(Failure::NotFound);
        }
        let answer = shard::by_id(gid)?;
        let snap = answer.snapshot().ok_or(Failure::NotFound)?;
        let now = now();
        let g = lookup::group_by_gid(&snap, gid, now).ok_or(Failure::NotFound)?;
        let out = lookup::format_group(&g, now, &mut buf)?;
        // SAFETY: `grp` is non-null and writable (NSS contract).
        unsafe { grp.write(out) };
        Ok(NssStatus::Success)
    });
    // SAFETY: `errnop` is null or glibc's `&errno`.
    unsafe { finish(answer, errnop) }
}

/// `setgrent`: restart the group enumeration on the current snapshot.
///
/// # Safety
/// None beyond the C ABI; `stayopen` is ignored (no descriptor is ever kept).
#[no_mangle]
pub unsafe extern "C" fn _nss_jit_setgrent(_stayopen: c_int) -> NssStatus {
    let answer = entry_guard(Err(Failure::Unavailable), || {
        enumerate::start(&GR_CURSOR, || source::for_enumeration(Listing::Groups))
            .map(|()| NssStatus::Success)
    });
    finish_no_errno(answer)
}

/// `getgrent_r`: the next visible group, NOTFOUND at the end.
///
/// # Safety
/// As [`_nss_jit_getgrnam_r`].
#[no_mangle]
pub unsafe extern "C" fn _nss_jit_getgrent_r(
    grp: *mut libc::group,
    buffer: *mut c_char,
    buflen: size_t,
    errnop: *mut c_int,
) -> NssStatus {
    let answer = entry_guard(Err(Failure::Unavailable), || {
        if grp.is_null() {
            return Err(Failure::BadArgument);
        }
        // SAFETY: glibc passes `buffer`/`buflen` as one writable buffer owned by this call.
        let mut buf = unsafe { CallerBuf::from_raw(buffer, buflen) }.ok_or(Failure::BadArgument)?;
        // Listing: the kernel's cached clock (a few ms behind at most) saves a full clock read
        // per entry; no access decision is made on a listing.
        let now = now_coarse();
        let out = enumerate::next(
            &GR_CURSOR,
            || source::for_enumeration(Listing::Groups),
            |listed, pos| enumerate::step_groups(listed, pos, now, &mut buf),
        )?;
        // SAFETY: `grp` is non-null and writable (NSS contract).
        unsafe { grp.write(out) };
        Ok(NssStatus::Success)
    });
    // SAFETY: `errnop` is null or glibc's `&errno`.
    unsafe { finish(answer, errnop) }
}

/// `endgrent`: forget the group enumeration.
///
/// # Safety
/// None beyond the C ABI.
#[no_mangle]
pub unsafe extern "C" fn _nss_jit_endgrent() -> NssStatus {
    let answer = entry_guard(Err(Failure::Unavailable), || {
        enumerate::end(&GR_CURSOR).map(|()| NssStatus::Success)
    });
    finish_no_errno(answer)
}

/// `initgroups_dyn`: appends the user's live jit gids (not `skipgroup`, not already present) to
/// glibc's growable array. SUCCESS if anything was added, NOTFOUND otherwise.
///
/// # Safety
/// glibc's NSS contract: `user` is a C string; `start`/`size` point to the array's fill and
/// capacity; `*groupsp` is a malloc'ed array of `*size` gids of which `*start` are filled;
/// `errnop` points to errno. Null pointers are tolerated (EINVAL).
#[no_mangle]
pub unsafe extern "C" fn _nss_jit_initgroups_dyn(
    user: *const c_char,
    skipgroup: gid_t,
    start: *mut c_long,
    size: *mut c_long,
    groupsp: *mut *mut gid_t,
    limit: c_long,
    errnop: *mut c_int,
) -> NssStatus {
    let answer = entry_guard(Err(Failure::Unavailable), || {
        if user.is_null() || start.is_null() || size.is_null() || groupsp.is_null() {
            return Err(Failure::BadArgument);
        }
        // SAFETY: non-null, and glibc gives us exclusive use of these three for the call.
        let (start, size, groupsp) = unsafe { (&mut *start, &mut *size, &mut *groupsp) };
        // SAFETY: glibc's array is malloc'ed with `*size` slots and `*start` filled.
        let mut groups = unsafe { lookup::GidArray::new(start, size, groupsp, limit) }?;
        // SAFETY: non-null and NUL-terminated (NSS contract); at most 33 bytes are read.
        let user = lookup::query_name(unsafe { lookup::name_bytes(user) })?;
        let answer = match shard::by_name(user) {
            Err(Failure::NotFound) => return Ok(NssStatus::NotFound),
            other => other?,
        };
        let Some(snap) = answer.snapshot() else {
            return Ok(NssStatus::NotFound);
        };
        let added = lookup::initgroups(&snap, user, skipgroup, now(), &mut groups)?;
        Ok(if added {
            NssStatus::Success
        } else {
            NssStatus::NotFound
        })
    });
    // SAFETY: `errnop` is null or glibc's `&errno`.
    unsafe { finish(answer, errnop) }
}

#[cfg(test)]
mod entry_tests;
