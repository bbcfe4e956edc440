//! getpwent/getgrent: the enumeration cursors.
//!
//! `set*ent` resets a cursor and pins the current copy (an `Arc`, not a lock), so one
//! enumeration walks one consistent snapshot even if jitd replaces the file meanwhile; liveness
//! is still decided per call with the current time (the kernel's cached clock, a few ms behind
//! at most: `jit_core::time::now_coarse`). `get*ent_r` without `set*ent` starts
//! implicitly. A short buffer (ERANGE) does not advance the cursor, so glibc's retry with a bigger
//! buffer gets the same entry. The cursors sit in static mutexes taken only with a bounded
//! `try_lock` (contention, or a lock inherited through `fork()`, gives UNAVAIL, never a wait);
//! glibc already serialises `getpwent` callers with its own lock.

use crate::buffer::CallerBuf;
use crate::lookup::{account_listable, format_group, format_passwd, group_listable};
use crate::source::{lock_nonblocking, SnapshotCopy, SourceError};
use crate::status::Failure;
use jit_core::snapshot::Snapshot;
use jit_core::UnixTime;
use std::sync::{Arc, Mutex};

/// Where an enumeration stands within its pinned snapshot.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Position {
    /// Next record index to consider.
    pub next: usize,
    /// Index of the last record yielded (accounts: to skip a second grant of the same user).
    pub last: Option<usize>,
}

/// What one enumeration walks: the base's copy and the delta read over it (format 1.4), or,
/// listing the accounts of a file with an account listing (format 1.5), a walk over it.
pub enum Listed {
    /// A checked copy of the base region (or the file), with the delta.
    Copy {
        /// The base region (or the file).
        base: Arc<SnapshotCopy>,
        /// The delta, if there is one.
        delta: Option<Arc<SnapshotCopy>>,
    },
    /// The accounts read a chunk at a time ([`crate::listing`]).
    Walk(Box<crate::listing::AccountWalk>),
}

impl Listed {
    /// The base with the delta over it if the delta names it; `None` for a walk.
    pub fn snapshot(&self) -> Option<Snapshot<'_>> {
        match self {
            Listed::Copy { base, delta } => Some(
                base.snapshot()
                    .over(delta.as_deref().map(SnapshotCopy::view)),
            ),
            Listed::Walk(_) => None,
        }
    }
}

/// One enumeration: the pinned copy and the position in it.
pub struct Cursor {
    pin: Option<Listed>,
    pos: Position,
}

impl Cursor {
    /// Not started.
    pub const fn new() -> Cursor {
        Cursor {
            pin: None,
            pos: Position {
                next: 0,
                last: None,
            },
        }
    }
}

impl Default for Cursor {
    fn default() -> Cursor {
        Cursor::new()
    }
}

/// The getpwent cursor of the process.
pub static PW_CURSOR: Mutex<Cursor> = Mutex::new(Cursor::new());
/// The getgrent cursor of the process.
pub static GR_CURSOR: Mutex<Cursor> = Mutex::new(Cursor::new());

/// `set*ent`: restart at the beginning of the current snapshot.
pub fn start(
    cursor: &Mutex<Cursor>,
    source: impl FnOnce() -> Result<Listed, SourceError>,
) -> Result<(), Failure> {
    let copy = source();
    let mut c = lock_nonblocking(cursor).ok_or(Failure::Unavailable)?;
    let old = std::mem::take(&mut *c);
    let res = match copy {
        Ok(m) => {
            c.pin = Some(m);
            Ok(())
        }
        Err(e) => Err(Failure::from(e)),
    };
    drop(c);
    drop(old); // may free the copy: done outside the lock
    res
}

/// `end*ent`: forget the cursor and release the pinned copy.
pub fn end(cursor: &Mutex<Cursor>) -> Result<(), Failure> {
    let mut c = lock_nonblocking(cursor).ok_or(Failure::Unavailable)?;
    let old = std::mem::take(&mut *c);
    drop(c);
    drop(old);
    Ok(())
}

/// `get*ent_r`: runs `step` on what the cursor pins (pinning the current snapshot if
/// enumeration was not started) and stores the advanced position only if `step` succeeded.
pub fn next<T>(
    cursor: &Mutex<Cursor>,
    source: impl FnOnce() -> Result<Listed, SourceError>,
    step: impl FnOnce(&mut Listed, &mut Position) -> Result<T, Failure>,
) -> Result<T, Failure> {
    let mut c = lock_nonblocking(cursor).ok_or(Failure::Unavailable)?;
    // The pinned copy is used under the cursor lock, which keeps it alive: no reference count
    // is taken per entry.
    let Cursor { pin, pos } = &mut *c;
    let copy = match pin {
        Some(m) => m,
        None => {
            // Implicit start. Reading a copy under the cursor lock is fine: set/get/end*ent are
            // serialised by glibc anyway, and nothing here waits.
            let m = source().map_err(Failure::from)?;
            *pos = Position::default();
            pin.insert(m)
        }
    };
    let mut next = *pos;
    let out = step(copy, &mut next)?;
    *pos = next;
    Ok(out)
}

/// `getpwent_r`'s step: over a walk, its next account; over a copy, [`step_passwd`].
pub fn step_accounts(
    listed: &mut Listed,
    pos: &mut Position,
    now: UnixTime,
    buf: &mut CallerBuf<'_>,
) -> Result<libc::passwd, Failure> {
    match listed {
        Listed::Walk(w) => w.step(now, buf),
        Listed::Copy { .. } => {
            let snap = listed.snapshot().ok_or(Failure::Unavailable)?;
            step_passwd(&snap, pos, now, buf)
        }
    }
}

/// `getgrent_r`'s step: [`step_group`] over the copy (groups are always listed from one).
pub fn step_groups(
    listed: &mut Listed,
    pos: &mut Position,
    now: UnixTime,
    buf: &mut CallerBuf<'_>,
) -> Result<libc::group, Failure> {
    let snap = listed.snapshot().ok_or(Failure::Unavailable)?;
    step_group(&snap, pos, now, buf)
}

/// The next live account from `pos`, formatted into `buf`; `pos` moves only on success.
/// A user with overlapping grants has adjacent records (sorted by name): only the first live one
/// is yielded; a delta's record of a name the base lists live is not yielded again.
pub fn step_passwd(
    snap: &Snapshot<'_>,
    pos: &mut Position,
    now: UnixTime,
    buf: &mut CallerBuf<'_>,
) -> Result<libc::passwd, Failure> {
    let last_name = pos.last.and_then(|i| snap.account_at(i)).map(|a| a.name());
    let mut i = pos.next;
    while let Some(a) = snap.account_at(i) {
        if account_listable(&a, now)
            && Some(a.name()) != last_name
            && !snap.account_listed_in_base(i, now)
        {
            let pw = format_passwd(&a, buf)?;
            *pos = Position {
                next: i.saturating_add(1),
                last: Some(i),
            };
            return Ok(pw);
        }
        i = i.saturating_add(1);
    }
    // At the end: remember it so that further calls are cheap and still NOTFOUND.
    pos.next = i;
    Err(Failure::NotFound)
}

/// The next visible group from `pos`, formatted into `buf`; `pos` moves only on success. A
/// group in both the base and the delta is listed once, with the members of both.
pub fn step_group(
    snap: &Snapshot<'_>,
    pos: &mut Position,
    now: UnixTime,
    buf: &mut CallerBuf<'_>,
) -> Result<libc::group, Failure> {
    let mut i = pos.next;
    while let Some(g) = snap.group_at(i) {
        if group_listable(&g, now) && !snap.group_listed_in_base(i) {
            let gr = format_group(&g, now, buf)?;
            *pos = Position {
                next: i.saturating_add(1),
                last: Some(i),
            };
            return Ok(gr);
        }
        i = i.saturating_add(1);
    }
    pos.next = i;
    Err(Failure::NotFound)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lookup::tests::{members, pw_fields, sample};
    use std::ffi::CStr;

    fn all_passwd(snap: &Snapshot<'_>, now: UnixTime) -> Vec<String> {
        let mut pos = Position::default();
        let mut out = Vec::new();
        let mut b = vec![0u8; 512];
        loop {
            match step_passwd(snap, &mut pos, now, &mut CallerBuf::new(&mut b)) {
                Ok(pw) => out.push(pw_fields(&pw).0),
                Err(Failure::NotFound) => return out,
                Err(e) => panic!("{e:?}"),
            }
        }
    }

    #[test]
    fn passwd_enumeration_dedups_and_filters() {
        let img = sample();
        let s = Snapshot::parse(&img).unwrap();
        // alice twice (overlapping) -> once; carol not yet live; root/uid 0/65534/gid 0 hidden.
        assert_eq!(all_passwd(&s, 175), ["alice", "bob", "zed"]);
        assert_eq!(all_passwd(&s, 220), ["alice"]);
        assert_eq!(all_passwd(&s, 350), ["carol"]);
        assert!(all_passwd(&s, 0).is_empty());
    }

    #[test]
    fn erange_does_not_advance() {
        let img = sample();
        let s = Snapshot::parse(&img).unwrap();
        let mut pos = Position::default();
        let mut small = vec![0u8; 8];
        let mut big = vec![0u8; 512];
        let mut got = Vec::new();
        loop {
            let before = pos;
            match step_passwd(&s, &mut pos, 175, &mut CallerBuf::new(&mut small)) {
                Err(Failure::TooSmall) => assert_eq!(pos, before, "ERANGE must not advance"),
                // The end is NOTFOUND whatever the buffer size.
                Err(Failure::NotFound) => break,
                other => panic!("8 bytes cannot hold an entry: {:?}", other.err()),
            }
            match step_passwd(&s, &mut pos, 175, &mut CallerBuf::new(&mut big)) {
                Ok(pw) => got.push(pw_fields(&pw).0),
                Err(Failure::NotFound) => break,
                Err(e) => panic!("{e:?}"),
            }
        }
        assert_eq!(got, ["alice", "bob", "zed"]);
        // Past the end it stays NOTFOUND.
        let mut b = vec![0u8; 512];
        assert_eq!(
            step_passwd(&s, &mut pos, 175, &mut CallerBuf::new(&mut b)).err(),
            Some(Failure::NotFound)
        );
    }

    #[test]
    fn group_enumeration() {
        let img = sample();
        let s = Snapshot::parse(&img).unwrap();
        let mut pos = Position::default();
        let mut b = vec![0u64; 64];
        let mut got = Vec::new();
        loop {
            let before = pos;
            // SAFETY: test-only; 4 bytes of `b`, too small for any group.
            let mut tiny = unsafe { CallerBuf::from_raw(b.as_mut_ptr().cast(), 4) }.unwrap();
            match step_group(&s, &mut pos, 175, &mut tiny) {
                Err(Failure::TooSmall) => assert_eq!(pos, before, "ERANGE must not advance"),
                Err(Failure::NotFound) => {}
                other => panic!("{:?}", other.err()),
            }
            // SAFETY: test-only; 512 bytes of `b`.
            let mut buf = unsafe { CallerBuf::from_raw(b.as_mut_ptr().cast(), 512) }.unwrap();
            match step_group(&s, &mut pos, 175, &mut buf) {
                Ok(gr) => {
                    // SAFETY: written by format_group into `b`.
                    let name = unsafe { CStr::from_ptr(gr.gr_name) }.to_str().unwrap();
                    got.push(format!("{name}:{}:{}", gr.gr_gid, members(&gr).join(",")));
                }
                Err(Failure::NotFound) => break,
                Err(e) => panic!("{e:?}"),
            }
        }
        // Sorted by name; "empty" has no live member, root/wheel have gid 0.
        assert_eq!(
            got,
            [
                "adm:4:alice",
                "alice:70001:",
                "jit-users:79999:alice,bob",
                "sudo:27:alice,dave"
            ]
        );
    }

    /// The wrapper: implicit start, pinning across a file replacement, ERANGE, end*ent.
    #[test]
    fn cursor_pins_and_restarts() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return;
        }
        use crate::source::tests::{install, TempDir};
        use crate::source::{acquire, Cache};
        let d = TempDir::new("cursor");
        let path = install(&d.0, "snapshot", &sample(), 0o644);
        let cpath = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
        let cache: Cache = Mutex::new(None);
        let src = || acquire(&cpath, &cache).map(|base| Listed::Copy { base, delta: None });
        let cursor: Mutex<Cursor> = Mutex::new(Cursor::new());
        let mut b = vec![0u8; 512];
        let mut get = |len: usize| {
            next(&cursor, src, |l, p| {
                step_accounts(l, p, 175, &mut CallerBuf::new(&mut b[..len]))
                    .map(|pw| pw_fields(&pw).0)
            })
        };
        assert_eq!(get(512).unwrap(), "alice", "implicit start");
        assert_eq!(get(3).err(), Some(Failure::TooSmall));
        // jitd replaces the file mid-enumeration: the pinned snapshot is still walked.
        install(
            &d.0,
            "snapshot",
            &jit_core::snapshot::build_snapshot(&Default::default()).unwrap(),
            0o644,
        );
        assert_eq!(get(512).unwrap(), "bob", "same entry after ERANGE");
        assert_eq!(get(512).unwrap(), "zed");
        assert_eq!(get(512).err(), Some(Failure::NotFound));
        assert_eq!(get(512).err(), Some(Failure::NotFound));
        // set*ent pins the new (empty) snapshot.
        start(&cursor, src).unwrap();
        let mut b = vec![0u8; 512];
        let r = next(&cursor, src, |l, p| {
            step_accounts(l, p, 175, &mut CallerBuf::new(&mut b)).map(|_| ())
        });
        assert_eq!(r.err(), Some(Failure::NotFound));
        end(&cursor).unwrap();
        assert!(cursor.lock().unwrap().pin.is_none());
        // A snapshot that disappears: set*ent answers UNAVAIL, get*ent too.
        std::fs::remove_file(&path).unwrap();
        assert_eq!(start(&cursor, src).err(), Some(Failure::Unavailable));
        let r = next(&cursor, src, |_, _| Ok(()));
        assert_eq!(r.err(), Some(Failure::Unavailable));
        // A held lock (e.g. inherited through fork) gives UNAVAIL at once.
        let held = cursor.lock().unwrap();
        assert_eq!(end(&cursor).err(), Some(Failure::Unavailable));
        drop(held);
    }
}
