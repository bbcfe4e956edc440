//! The module's answers, as pure functions of a validated `Snapshot` and `now`.
//!
//! Everything here is testable without a file, glibc or a clock: the entry points in `lib.rs`
//! only decode arguments, fetch the current snapshot and store what these functions return.
//! The refusal rules live here too: jit never answers for root (name, uid 0, gid 0), `nobody`
//! (65534), or ids above `i32::MAX` that callers may treat as negative (docs/threat-model.md: N10, N11),
//! neither in a query nor in what it returns, even if a snapshot said otherwise.

use crate::buffer::{CallerBuf, TooSmall};
use crate::status::Failure;
use jit_core::constants::MAX_NAME_LEN;
use jit_core::snapshot::listing::ListedAccount;
use jit_core::snapshot::{AccountView, GroupView, Snapshot};
use jit_core::validate::validate_name;
use jit_core::UnixTime;
use libc::{c_char, c_long, gid_t};

/// The password field of every jit entry. `*` and not `x`: there is no shadow entry, and with
/// `x` pam_unix's account phase refuses the user (docs/design.md#traps).
const NO_PASSWORD: &str = "*";

/// Ids jit never answers for: root, `nobody`/`nogroup`, and anything that is negative as an
/// `int` (polkit CVE-2018-19788), which includes `(uid_t)-1`.
pub fn refused_id(id: u32) -> bool {
    id == 0 || id == 65_534 || id > i32::MAX as u32
}

/// Checks a queried name before the snapshot is touched: a cheap length test first (the bytes
/// reach us already bounded by `MAX_NAME_LEN + 1`), then root, then the name allow-list.
pub fn query_name(raw: &[u8]) -> Result<&str, Failure> {
    if raw.is_empty() || raw.len() > MAX_NAME_LEN {
        return Err(Failure::NotFound);
    }
    let name = std::str::from_utf8(raw).map_err(|_| Failure::NotFound)?;
    if name == "root" || validate_name("name", name).is_err() {
        return Err(Failure::NotFound);
    }
    Ok(name)
}

/// Whether an account record may be shown at all.
fn answerable_account(a: &AccountView<'_>) -> bool {
    listed_answerable(a.name().as_bytes(), a.uid(), a.gid())
}

/// Whether an account called `name` with `uid` and primary `gid` may be shown at all.
pub fn listed_answerable(name: &[u8], uid: u32, gid: u32) -> bool {
    name != b"root" && !refused_id(uid) && !refused_id(gid)
}

/// Whether a group record may be shown at all.
fn answerable_group(g: &GroupView<'_>) -> bool {
    g.name() != "root" && !refused_id(g.gid())
}

/// The live account called `name`.
pub fn account_by_name<'a>(
    snap: &Snapshot<'a>,
    name: &str,
    now: UnixTime,
) -> Option<AccountView<'a>> {
    snap.account_by_name(name, now).filter(answerable_account)
}

/// The live account with `uid` (refused ids are never looked up).
pub fn account_by_uid<'a>(snap: &Snapshot<'a>, uid: u32, now: UnixTime) -> Option<AccountView<'a>> {
    if refused_id(uid) {
        return None;
    }
    snap.account_by_uid(uid, now).filter(answerable_account)
}

/// The visible group called `name`.
pub fn group_by_name<'a>(snap: &Snapshot<'a>, name: &str, now: UnixTime) -> Option<GroupView<'a>> {
    snap.group_by_name(name, now).filter(answerable_group)
}

/// The visible group with `gid` (refused ids are never looked up).
pub fn group_by_gid<'a>(snap: &Snapshot<'a>, gid: u32, now: UnixTime) -> Option<GroupView<'a>> {
    if refused_id(gid) {
        return None;
    }
    snap.group_by_gid(gid, now).filter(answerable_group)
}

/// Whether enumeration may yield account record `a` (live and answerable).
pub fn account_listable(a: &AccountView<'_>, now: UnixTime) -> bool {
    a.is_live(now) && answerable_account(a)
}

/// Whether enumeration may yield group record `g` (visible and answerable).
pub fn group_listable(g: &GroupView<'_>, now: UnixTime) -> bool {
    g.is_visible(now) && answerable_group(g)
}

/// Formats `a` as a `struct passwd` whose strings live in `buf`.
pub fn format_passwd(
    a: &AccountView<'_>,
    buf: &mut CallerBuf<'_>,
) -> Result<libc::passwd, TooSmall> {
    Ok(libc::passwd {
        pw_name: buf.put_str(a.name())?,
        pw_passwd: buf.put_str(NO_PASSWORD)?,
        pw_uid: a.uid(),
        pw_gid: a.gid(),
        pw_gecos: buf.put_str(a.gecos())?,
        pw_dir: buf.put_str(a.home())?,
        pw_shell: buf.put_str(a.shell())?,
    })
}

/// Formats a record of the account listing (format 1.5) as [`format_passwd`] does an account.
pub fn format_listed(
    a: &ListedAccount<'_>,
    buf: &mut CallerBuf<'_>,
) -> Result<libc::passwd, TooSmall> {
    Ok(libc::passwd {
        pw_name: buf.put_bytes(a.name)?,
        pw_passwd: buf.put_str(NO_PASSWORD)?,
        pw_uid: a.uid,
        pw_gid: a.gid,
        pw_gecos: buf.put_bytes(a.gecos)?,
        pw_dir: buf.put_bytes(a.home)?,
        pw_shell: buf.put_bytes(a.shell)?,
    })
}

/// Formats `g` as a `struct group` with its members live at `now`, strings in `buf`. For a
/// local group this is the same name and gid as `/etc/group`, which `[SUCCESS=merge]` requires.
pub fn format_group(
    g: &GroupView<'_>,
    now: UnixTime,
    buf: &mut CallerBuf<'_>,
) -> Result<libc::group, TooSmall> {
    let mem = buf.put_str_array(|| g.live_members(now))?;
    Ok(libc::group {
        gr_name: buf.put_str(g.name())?,
        gr_passwd: buf.put_str(NO_PASSWORD)?,
        gr_gid: g.gid(),
        gr_mem: mem,
    })
}

/// Why a gid could not be appended to the caller's group array.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushError {
    /// `limit` reached: stop quietly, as nss_files does.
    Full,
    /// realloc failed.
    NoMemory,
}

/// The caller's growable gid array of `initgroups_dyn`: `groups[0..start]` are filled, `size`
/// slots are allocated (with malloc: glibc frees or reallocs it), `limit > 0` caps the count.
pub struct GidArray<'a> {
    start: &'a mut c_long,
    size: &'a mut c_long,
    groups: &'a mut *mut gid_t,
    limit: c_long,
}

impl<'a> GidArray<'a> {
    /// Wraps the caller's array after checking that its counters are consistent.
    ///
    /// # Safety
    /// `*groups` must be null or a malloc'ed array of at least `*size` gids whose first
    /// `*start` are initialised, as glibc's `internal_getgrouplist` provides.
    pub unsafe fn new(
        start: &'a mut c_long,
        size: &'a mut c_long,
        groups: &'a mut *mut gid_t,
        limit: c_long,
    ) -> Result<GidArray<'a>, Failure> {
        if *start < 0 || *size < 0 || *start > *size || (groups.is_null() && *size > 0) {
            return Err(Failure::BadArgument);
        }
        Ok(GidArray {
            start,
            size,
            groups,
            limit,
        })
    }

    fn filled(&self) -> &[gid_t] {
        let n = usize::try_from(*self.start).unwrap_or(0);
        if self.groups.is_null() || n == 0 {
            return &[];
        }
        // SAFETY: `new` checked `0 <= start <= size` and non-null; the caller guarantees the
        // first `start` entries are initialised; we hold the only reference to the array.
        unsafe { std::slice::from_raw_parts(*self.groups, n) }
    }

    /// Whether `gid` is already in the filled part.
    pub fn contains(&self, gid: gid_t) -> bool {
        self.filled().contains(&gid)
    }

    /// Number of gids filled in.
    pub fn len(&self) -> usize {
        self.filled().len()
    }

    /// Whether nothing is filled in.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends `gid`, growing the array like nss_files: double it (capped at `limit` when that
    /// is positive), and stop once `limit` entries are there.
    pub fn push(&mut self, gid: gid_t) -> Result<(), PushError> {
        if self.limit > 0 && *self.start >= self.limit {
            return Err(PushError::Full);
        }
        if *self.start >= *self.size {
            let doubled = self.size.checked_mul(2).ok_or(PushError::NoMemory)?.max(16);
            let new_size = if self.limit > 0 {
                doubled.min(self.limit)
            } else {
                doubled
            };
            let bytes = usize::try_from(new_size)
                .ok()
                .and_then(|n| n.checked_mul(std::mem::size_of::<gid_t>()))
                .ok_or(PushError::NoMemory)?;
            // SAFETY: `*groups` is null or came from malloc/realloc (the contract of `new`);
            // realloc either returns a new block holding the old contents or null and leaves
            // the old block untouched.
            let grown = unsafe { libc::realloc(self.groups.cast::<libc::c_void>(), bytes) };
            if grown.is_null() {
                return Err(PushError::NoMemory);
            }
            *self.groups = grown.cast::<gid_t>();
            *self.size = new_size;
        }
        let at = usize::try_from(*self.start).map_err(|_| PushError::NoMemory)?;
        // SAFETY: `start < size` now holds and the array has `size` slots.
        unsafe { self.groups.add(at).write(gid) };
        *self.start += 1;
        Ok(())
    }
}

/// `initgroups_dyn`: appends `user`'s live jit gids that are new and not `skip`. Returns whether
/// anything was added (SUCCESS) or not (NOTFOUND).
pub fn initgroups(
    snap: &Snapshot<'_>,
    user: &str,
    skip: gid_t,
    now: UnixTime,
    groups: &mut GidArray<'_>,
) -> Result<bool, Failure> {
    let mut added = false;
    for gid in snap.user_gids(user, now) {
        if gid == skip || refused_id(gid) || groups.contains(gid) {
            continue;
        }
        match groups.push(gid) {
            Ok(()) => added = true,
            Err(PushError::Full) => break,
            Err(PushError::NoMemory) => return Err(Failure::NoMemory),
        }
    }
    Ok(added)
}

/// Reads a C name argument, looking at no more than `MAX_NAME_LEN + 1` bytes, so a huge string
/// costs nothing (`CStr::from_ptr` would scan all of it first).
///
/// # Safety
/// `ptr` must be non-null and point to a NUL-terminated string.
pub unsafe fn name_bytes<'a>(ptr: *const c_char) -> &'a [u8] {
    // SAFETY: the string is NUL-terminated, and strnlen reads at most MAX_NAME_LEN + 1 bytes
    // and stops at the first NUL.
    let n = unsafe { libc::strnlen(ptr, MAX_NAME_LEN + 1) };
    // SAFETY: the first `n` bytes were just read by strnlen, so they are readable; the caller
    // keeps the string alive for the call.
    unsafe { std::slice::from_raw_parts(ptr.cast::<u8>(), n) }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::source::tests::account;
    use jit_core::snapshot::build_snapshot;
    use jit_core::types::*;
    use std::ffi::CStr;

    fn member(name: &str, nb: i64, na: i64) -> Member {
        Member {
            name: name.into(),
            grant_id: "g-0001".into(),
            not_before: nb,
            not_after: na,
        }
    }

    fn group(name: &str, gid: u32, kind: u32, members: Vec<Member>) -> GroupEntry {
        GroupEntry {
            name: name.into(),
            gid,
            kind,
            not_before: i64::MIN,
            not_after: i64::MAX,
            members,
        }
    }

    /// Live window 100..200 for most records.
    pub(crate) fn sample() -> Vec<u8> {
        let d = SnapshotData {
            generated_at: 1,
            accounts: vec![
                account("alice", 70001, 100, 200),
                account("alice", 70001, 150, 250), // overlapping second grant
                account("bob", 70002, 100, 200),
                account("carol", 70003, 300, 400), // not yet live
                account("root", 70004, 100, 200),  // a bad snapshot must not answer root
                account("zero", 0, 100, 200),
                account("nobody2", 65_534, 100, 200),
                account("rootgrp", 70005, 100, 200),
                account("zed", 70006, 100, 200),
            ]
            .into_iter()
            .map(|mut a| {
                if a.name == "rootgrp" {
                    a.gid = 0;
                }
                a
            })
            .collect(),
            groups: vec![
                group(
                    "sudo",
                    27,
                    GROUP_KIND_LOCAL,
                    vec![member("alice", 100, 200), member("dave", 100, 200)],
                ),
                group("alice", 70001, GROUP_KIND_PRIVATE, vec![]),
                group(
                    "jit-users",
                    79999,
                    GROUP_KIND_JIT,
                    vec![
                        member("alice", 100, 200),
                        member("alice", 150, 250),
                        member("bob", 100, 200),
                    ],
                ),
                group("empty", 5000, GROUP_KIND_LOCAL, vec![member("x", 300, 400)]),
                group("root", 0, GROUP_KIND_LOCAL, vec![member("alice", 100, 200)]),
                group(
                    "wheel",
                    0,
                    GROUP_KIND_LOCAL,
                    vec![member("alice", 100, 200)],
                ),
                group("adm", 4, GROUP_KIND_LOCAL, vec![member("alice", 100, 200)]),
            ],
            ..Default::default()
        };
        build_snapshot(&d).unwrap()
    }

    fn cstr(p: *mut c_char) -> String {
        // SAFETY: test-only; every pointer checked here was written by CallerBuf.
        unsafe { CStr::from_ptr(p) }.to_str().unwrap().to_string()
    }

    pub(crate) fn members(g: &libc::group) -> Vec<String> {
        let mut out = Vec::new();
        for i in 0.. {
            // SAFETY: test-only; gr_mem is NULL-terminated.
            let p = unsafe { *g.gr_mem.add(i) };
            if p.is_null() {
                break;
            }
            out.push(cstr(p));
        }
        out
    }

    pub(crate) fn pw_fields(
        pw: &libc::passwd,
    ) -> (String, String, u32, u32, String, String, String) {
        (
            cstr(pw.pw_name),
            cstr(pw.pw_passwd),
            pw.pw_uid,
            pw.pw_gid,
            cstr(pw.pw_gecos),
            cstr(pw.pw_dir),
            cstr(pw.pw_shell),
        )
    }

    #[test]
    fn query_names() {
        assert_eq!(query_name(b"alice"), Ok("alice"));
        for bad in [
            &b"root"[..],
            b"",
            b"Alice",
            b"-x",
            b"a:b",
            b"a/b",
            b"\xff",
            &[b'a'; 33][..],
        ] {
            assert_eq!(query_name(bad), Err(Failure::NotFound), "{bad:?}");
        }
        assert!(query_name(&[b'a'; 32]).is_ok());
    }

    #[test]
    fn name_bytes_reads_at_most_33_bytes() {
        let long = std::ffi::CString::new(vec![b'a'; 16385]).unwrap();
        // SAFETY: NUL-terminated test string.
        let b = unsafe { name_bytes(long.as_ptr()) };
        assert_eq!(b.len(), MAX_NAME_LEN + 1);
        assert_eq!(query_name(b), Err(Failure::NotFound));
        // SAFETY: as above.
        assert_eq!(unsafe { name_bytes(c"bob".as_ptr()) }, b"bob");
    }

    #[test]
    fn passwd_entries() {
        let img = sample();
        let s = Snapshot::parse(&img).unwrap();
        let a = account_by_name(&s, "alice", 150).unwrap();
        let need: usize = ["alice", "*", a.gecos(), "/home/alice", "/bin/bash"]
            .iter()
            .map(|x| x.len() + 1)
            .sum();
        for len in 0..need {
            let mut b = vec![0u8; len];
            assert_eq!(
                format_passwd(&a, &mut CallerBuf::new(&mut b)).err(),
                Some(TooSmall)
            );
        }
        let mut b = vec![0u8; need];
        let pw = format_passwd(&a, &mut CallerBuf::new(&mut b)).unwrap();
        assert_eq!(
            pw_fields(&pw),
            (
                "alice".into(),
                "*".into(),
                70001,
                70001,
                "jit grant g-11171 (test)".into(),
                "/home/alice".into(),
                "/bin/bash".into()
            )
        );
        assert_eq!(account_by_uid(&s, 70001, 249).unwrap().name(), "alice");
        assert!(
            account_by_uid(&s, 70001, 250).is_none(),
            "expired at not_after"
        );
        assert!(account_by_name(&s, "alice", 99).is_none(), "not yet");
        assert!(account_by_name(&s, "carol", 150).is_none());
        assert!(account_by_name(&s, "carol", 300).is_some());
    }

    #[test]
    fn root_and_reserved_ids_are_never_answered() {
        let img = sample();
        let s = Snapshot::parse(&img).unwrap();
        assert!(account_by_name(&s, "root", 150).is_none());
        assert!(
            account_by_uid(&s, 70004, 150).is_none(),
            "record named root"
        );
        assert!(account_by_name(&s, "zero", 150).is_none(), "uid 0");
        assert!(account_by_uid(&s, 0, 150).is_none());
        assert!(account_by_name(&s, "nobody2", 150).is_none(), "uid 65534");
        assert!(account_by_uid(&s, 65_534, 150).is_none());
        assert!(account_by_name(&s, "rootgrp", 150).is_none(), "gid 0");
        assert!(account_by_uid(&s, u32::MAX, 150).is_none());
        assert!(account_by_uid(&s, 1 << 31, 150).is_none());
        assert!(group_by_name(&s, "root", 150).is_none());
        assert!(group_by_name(&s, "wheel", 150).is_none(), "gid 0");
        assert!(group_by_gid(&s, 0, 150).is_none());
        assert!(group_by_name(&s, "adm", 150).is_some());
    }

    #[test]
    fn group_entries() {
        let img = sample();
        let s = Snapshot::parse(&img).unwrap();
        let g = group_by_name(&s, "sudo", 150).unwrap();
        let mut b = vec![0u8; 256];
        let gr = format_group(&g, 150, &mut CallerBuf::new(&mut b)).unwrap();
        assert_eq!(cstr(gr.gr_name), "sudo");
        assert_eq!(cstr(gr.gr_passwd), "*");
        assert_eq!(gr.gr_gid, 27);
        assert_eq!(members(&gr), ["alice", "dave"]);

        let g = group_by_gid(&s, 79999, 175).unwrap();
        let gr = format_group(&g, 175, &mut CallerBuf::new(&mut b)).unwrap();
        assert_eq!(
            members(&gr),
            ["alice", "bob"],
            "overlapping grants listed once"
        );
        let gr = format_group(&g, 220, &mut CallerBuf::new(&mut b)).unwrap();
        assert_eq!(members(&gr), ["alice"]);

        let g = group_by_name(&s, "alice", 150).unwrap();
        let gr = format_group(&g, 150, &mut CallerBuf::new(&mut b)).unwrap();
        assert!(members(&gr).is_empty(), "private group, no members");
        assert!(
            group_by_name(&s, "alice", 250).is_none(),
            "a private group lives exactly as long as its account"
        );

        assert!(group_by_name(&s, "empty", 150).is_none(), "no live member");
        assert!(group_by_name(&s, "sudo", 200).is_none());
    }

    #[test]
    fn group_buffer_every_length() {
        let img = sample();
        let s = Snapshot::parse(&img).unwrap();
        let g = group_by_name(&s, "sudo", 150).unwrap();
        let mut backing = vec![0u64; 64];
        let base = backing.as_mut_ptr().cast::<c_char>();
        let ptr = std::mem::size_of::<*mut c_char>();
        let need = 3 * ptr
            + ["alice", "dave", "sudo", "*"]
                .iter()
                .map(|x| x.len() + 1)
                .sum::<usize>();
        for len in 0..=need {
            // SAFETY: test-only; `len <= need < 512` bytes of `backing`.
            let mut b = unsafe { CallerBuf::from_raw(base, len) }.unwrap();
            let r = format_group(&g, 150, &mut b);
            if len < need {
                assert_eq!(r.err(), Some(TooSmall), "len {len}");
            } else {
                let gr = r.unwrap();
                assert_eq!(gr.gr_mem as usize % std::mem::align_of::<*mut c_char>(), 0);
                assert_eq!(members(&gr), ["alice", "dave"]);
            }
        }
    }

    /// Allocates a C gid array the way glibc does (malloc) holding `gids`, `size` slots.
    fn c_array(gids: &[gid_t], size: usize) -> *mut gid_t {
        // SAFETY: test-only allocation freed by `free_array`.
        let p = unsafe { libc::malloc(size.max(1) * 4) }.cast::<gid_t>();
        for (i, g) in gids.iter().enumerate() {
            // SAFETY: i < gids.len() <= size slots.
            unsafe { p.add(i).write(*g) };
        }
        p
    }

    fn read_array(p: *mut gid_t, n: c_long) -> Vec<gid_t> {
        // SAFETY: test-only; `n` filled entries.
        unsafe { std::slice::from_raw_parts(p, n as usize) }.to_vec()
    }

    #[test]
    fn initgroups_appends_grows_and_dedups() {
        let img = sample();
        let s = Snapshot::parse(&img).unwrap();
        // Caller already has the primary group and adm; array is full (size == start).
        let mut groups = c_array(&[70001, 4], 2);
        let (mut start, mut size) = (2 as c_long, 2 as c_long);
        // SAFETY: malloc'ed array of `size` gids, `start` filled.
        let mut arr = unsafe { GidArray::new(&mut start, &mut size, &mut groups, 0) }.unwrap();
        assert_eq!(initgroups(&s, "alice", 70001, 175, &mut arr), Ok(true));
        let mut got = read_array(groups, start);
        got.sort();
        assert_eq!(
            got,
            [4, 27, 70001, 79999],
            "adm not repeated, jit-users once"
        );
        assert!(size >= start && size >= 16, "grown with realloc");

        // Nothing new: NOTFOUND semantics.
        // SAFETY: as above (the array was grown by realloc).
        let mut arr = unsafe { GidArray::new(&mut start, &mut size, &mut groups, 0) }.unwrap();
        assert_eq!(initgroups(&s, "alice", 70001, 175, &mut arr), Ok(false));
        assert_eq!(arr.len(), 4);
        // SAFETY: allocated by malloc/realloc above.
        unsafe { libc::free(groups.cast()) };

        // skipgroup is not added; an unknown or expired user adds nothing.
        let mut groups = c_array(&[], 0);
        let (mut start, mut size) = (0 as c_long, 0 as c_long);
        // SAFETY: as above.
        let mut arr = unsafe { GidArray::new(&mut start, &mut size, &mut groups, 0) }.unwrap();
        assert_eq!(initgroups(&s, "bob", 79999, 150, &mut arr), Ok(false));
        assert_eq!(initgroups(&s, "nobody", 0, 150, &mut arr), Ok(false));
        assert_eq!(initgroups(&s, "alice", 0, 300, &mut arr), Ok(false));
        assert_eq!(initgroups(&s, "bob", 0, 150, &mut arr), Ok(true));
        assert!(arr.contains(79999) && arr.len() == 1);
        // SAFETY: malloc'ed above.
        unsafe { libc::free(groups.cast()) };

        // gid 0 memberships (root, wheel-with-gid-0) are never handed out.
        let mut groups = c_array(&[], 0);
        let (mut start, mut size) = (0 as c_long, 0 as c_long);
        // SAFETY: as above.
        let mut arr = unsafe { GidArray::new(&mut start, &mut size, &mut groups, 0) }.unwrap();
        assert_eq!(initgroups(&s, "alice", 1, 150, &mut arr), Ok(true));
        assert!(!arr.contains(0));
        // SAFETY: malloc'ed above.
        unsafe { libc::free(groups.cast()) };
    }

    #[test]
    fn initgroups_respects_limit() {
        // A user in 40 groups, a limit of 10, starting from one filled slot of one.
        let groups_data: Vec<GroupEntry> = (0..40)
            .map(|i| {
                group(
                    &format!("g{i:02}"),
                    6000 + i,
                    GROUP_KIND_JIT,
                    vec![member("bob", 0, 10)],
                )
            })
            .collect();
        let img = build_snapshot(&SnapshotData {
            groups: groups_data,
            ..Default::default()
        })
        .unwrap();
        let s = Snapshot::parse(&img).unwrap();
        for limit in [1 as c_long, 2, 10, 0, -1] {
            let mut groups = c_array(&[70002], 1);
            let (mut start, mut size) = (1 as c_long, 1 as c_long);
            // SAFETY: malloc'ed array of `size` gids, `start` filled.
            let mut arr =
                unsafe { GidArray::new(&mut start, &mut size, &mut groups, limit) }.unwrap();
            let r = initgroups(&s, "bob", 70002, 5, &mut arr);
            let want = if limit > 0 { limit } else { 41 };
            assert_eq!(start, want, "limit {limit}");
            assert_eq!(r, Ok(limit != 1), "limit {limit}");
            if limit > 0 {
                assert!(size <= limit.max(1), "never allocates past the limit");
            }
            let got = read_array(groups, start);
            assert_eq!(got[0], 70002);
            let mut sorted = got.clone();
            sorted.dedup();
            assert_eq!(sorted.len(), got.len());
            // SAFETY: malloc/realloc'ed above.
            unsafe { libc::free(groups.cast()) };
        }
    }

    #[test]
    fn gid_array_rejects_inconsistent_counters() {
        let mut g: *mut gid_t = std::ptr::null_mut();
        for (start, size) in [(-1, 0), (0, -1), (3, 2)] {
            let (mut s1, mut s2) = (start as c_long, size as c_long);
            // SAFETY: refused before any access.
            let r = unsafe { GidArray::new(&mut s1, &mut s2, &mut g, 0) };
            assert_eq!(r.err(), Some(Failure::BadArgument));
        }
        let (mut s1, mut s2) = (0 as c_long, 4 as c_long);
        // SAFETY: null array with size > 0 is refused before any access.
        let r = unsafe { GidArray::new(&mut s1, &mut s2, &mut g, 0) };
        assert_eq!(r.err(), Some(Failure::BadArgument));
    }
}
