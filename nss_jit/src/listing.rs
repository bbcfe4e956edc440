//! `getpwent` over a file with an account listing (format 1.5, `jit_core::snapshot::listing`):
//! the accounts are read a chunk at a time into one small buffer, each chunk checked whole
//! before any entry of it is shown, then the delta's accounts.
//!
//! Reading the accounts region whole (the way for older files, [`crate::enumerate`]) copied
//! megabytes into fresh pages the kernel had to zero first, and checked all of them before the
//! first entry; a chunk of at most 64 KiB is read into the same buffer each time.
//!
//! The walk keeps the file open from the first `getpwent` to `endpwent` (as glibc's `files`
//! keeps its stream open between `setpwent` and `endpwent`): the open descriptor holds the
//! inode, so one listing reads one file even when jitd renames a new one into place meanwhile.
//! It is `O_CLOEXEC`, and before each read its identity (device and inode) is compared with the
//! file's: if the caller closed it and the number now names something else, the listing ends
//! with UNAVAIL instead of reading that.

use crate::buffer::CallerBuf;
use crate::lookup::{format_listed, listed_answerable};
use crate::source::{read_into, SnapshotCopy};
use crate::status::Failure;
use jit_core::snapshot::listing::{record_at, Walk};
use jit_core::UnixTime;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;

/// A listing of accounts over a file's LISTING section, then its delta's accounts.
pub struct AccountWalk {
    fd: OwnedFd,
    /// Device and inode of the file `fd` was opened on.
    ident: (u64, u64),
    /// Where LISTING starts in the file.
    section_at: u64,
    walk: Walk,
    /// The last read: a chunk at its start (`payload_len` bytes of records after its head).
    buf: Vec<u8>,
    payload_len: usize,
    /// The next record of the current chunk (offset in its payload) and how many are left.
    rec_at: usize,
    rec_left: u32,
    /// The name shown last: a user with overlapping grants has adjacent records (sorted by
    /// name), and is shown once.
    last: Option<Vec<u8>>,
    /// The delta read over this file, if it names the file's serial.
    delta: Option<Arc<SnapshotCopy>>,
    /// Per account record of the delta: the base showed that name live (not shown again).
    shown_in_base: Vec<bool>,
    /// The delta's next account record, once the base's are done.
    delta_next: Option<usize>,
}

impl AccountWalk {
    /// A walk over the `len` bytes and `count` records of LISTING at `section_at` of the file
    /// open as `fd` (trusted, `st` its stat, `serial` its base serial), with `delta` read over
    /// it if the delta names that serial.
    pub(crate) fn new(
        fd: OwnedFd,
        st: &libc::stat,
        serial: u32,
        (section_at, len, count): (u64, u64, u32),
        delta: Option<Arc<SnapshotCopy>>,
    ) -> AccountWalk {
        let delta = delta.filter(|d| d.snapshot().applies_over(serial));
        let n_delta = delta.as_ref().map_or(0, |d| d.snapshot().account_count());
        AccountWalk {
            fd,
            ident: identity(st),
            section_at,
            walk: Walk::new(len, count),
            buf: Vec::new(),
            payload_len: 0,
            rec_at: 0,
            rec_left: 0,
            last: None,
            delta,
            shown_in_base: vec![false; n_delta],
            delta_next: None,
        }
    }

    /// The next live, answerable account, formatted into `buf`. A short buffer (ERANGE) does
    /// not move the walk, so glibc's retry with a bigger one gets the same entry.
    ///
    /// # Errors
    /// NOTFOUND at the end; UNAVAIL for a read that fails or a chunk that fails its checks
    /// (the listing then ends there); TRYAGAIN for a short buffer.
    pub fn step(
        &mut self,
        now: UnixTime,
        buf: &mut CallerBuf<'_>,
    ) -> Result<libc::passwd, Failure> {
        while self.delta_next.is_none() {
            if self.rec_left == 0 && !self.next_chunk()? {
                self.delta_next = Some(0);
                break;
            }
            let payload = self
                .buf
                .get(jit_core::snapshot::format::LISTING_CHUNK_HEAD..)
                .and_then(|b| b.get(..self.payload_len))
                .ok_or(Failure::Unavailable)?;
            let (a, next) = record_at(payload, self.rec_at).ok_or(Failure::Unavailable)?;
            let show = a.is_live(now)
                && listed_answerable(a.name, a.uid, a.gid)
                && self.last.as_deref() != Some(a.name);
            if show {
                let pw = format_listed(&a, buf)?;
                mark(&self.delta, &mut self.shown_in_base, a.name);
                let last = self.last.get_or_insert_with(Vec::new);
                last.clear();
                last.extend_from_slice(a.name);
                self.rec_at = next;
                self.rec_left -= 1;
                return Ok(pw);
            }
            self.rec_at = next;
            self.rec_left -= 1;
        }
        self.step_delta(now, buf)
    }

    /// After the base: the delta's accounts, each name once and none the base showed.
    fn step_delta(
        &mut self,
        now: UnixTime,
        buf: &mut CallerBuf<'_>,
    ) -> Result<libc::passwd, Failure> {
        let Some(delta) = self.delta.as_ref() else {
            return Err(Failure::NotFound);
        };
        let snap = delta.snapshot();
        let mut j = self.delta_next.unwrap_or(0);
        while let Some(a) = snap.account_at(j) {
            let show = a.is_live(now)
                && listed_answerable(a.name().as_bytes(), a.uid(), a.gid())
                && self.last.as_deref() != Some(a.name().as_bytes())
                && !self.shown_in_base.get(j).copied().unwrap_or(false);
            if show {
                let pw = crate::lookup::format_passwd(&a, buf)?;
                let last = self.last.get_or_insert_with(Vec::new);
                last.clear();
                last.extend_from_slice(a.name().as_bytes());
                self.delta_next = Some(j + 1);
                return Ok(pw);
            }
            j += 1;
        }
        self.delta_next = Some(j);
        Err(Failure::NotFound)
    }

    /// Reads and checks the next chunk; `false` at the end of the section.
    fn next_chunk(&mut self) -> Result<bool, Failure> {
        let Some((at, len)) = self.walk.next_read().map_err(|_| Failure::Unavailable)? else {
            return Ok(false);
        };
        self.same_file()?;
        self.buf.resize(len, 0);
        let from = self
            .section_at
            .checked_add(at)
            .ok_or(Failure::Unavailable)?;
        read_into(&self.fd, from, &mut self.buf).map_err(Failure::from)?;
        let chunk = self
            .walk
            .take(&self.buf)
            .map_err(|_| Failure::Unavailable)?;
        self.payload_len = chunk.payload.len();
        self.rec_left = chunk.count;
        self.rec_at = 0;
        Ok(true)
    }

    /// The descriptor still names the file the walk started on.
    fn same_file(&self) -> Result<(), Failure> {
        // SAFETY: an all-zero stat is a valid value to be overwritten.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: `fd` is owned by this walk (if the caller closed the number behind our back,
        // fstat fails or describes another file, which the comparison refuses); `st` is
        // writable.
        if unsafe { libc::fstat(self.fd.as_raw_fd(), &mut st) } != 0 || identity(&st) != self.ident
        {
            return Err(Failure::Unavailable);
        }
        Ok(())
    }
}

// The casts only widen (or keep) the platform's stat field types, which vary by target.
#[allow(clippy::unnecessary_cast)]
fn identity(st: &libc::stat) -> (u64, u64) {
    (st.st_dev as u64, st.st_ino as u64)
}

/// Marks the delta's records of `name`: the base showed it live.
fn mark(delta: &Option<Arc<SnapshotCopy>>, shown: &mut [bool], name: &[u8]) {
    let Some(d) = delta else { return };
    // The walk checked the name is UTF-8; were it not, nothing is marked and the delta's
    // record of it is shown once more (a repeated line, never a hidden one).
    let Ok(name) = std::str::from_utf8(name) else {
        return;
    };
    for j in d.snapshot().own_account_records_named(name) {
        if let Some(s) = shown.get_mut(j) {
            *s = true;
        }
    }
}

#[cfg(test)]
impl AccountWalk {
    /// The descriptor the walk reads (tests swap another file in behind it).
    pub(crate) fn raw_fd(&self) -> i32 {
        self.fd.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::enumerate::{step_passwd, Listed, Position};
    use crate::lookup::tests::pw_fields;
    use crate::source::tests::{account, install, is_root, TempDir};
    use crate::source::{for_enumeration_at, Listing};
    use jit_core::snapshot::{build_snapshot_with, BuildOptions};
    use jit_core::types::SnapshotData;
    use std::ffi::CString;
    use std::path::Path;

    /// `n` users (every fifth with a second, overlapping grant; every ninth not yet live at
    /// 175) and the records a listing must never show.
    fn data(n: u32) -> SnapshotData {
        let mut accounts = vec![
            account("root", 69_001, 100, 200),
            account("zero", 0, 100, 200),
            account("nobody2", 65_534, 100, 200),
        ];
        for i in 0..n {
            let name = format!("u{i:05}");
            let nb = if i % 9 == 0 { 300 } else { 100 };
            accounts.push(account(&name, 70_000 + i, nb, 400));
            if i % 5 == 0 {
                accounts.push(account(&name, 70_000 + i, 50, 250));
            }
        }
        SnapshotData {
            generated_at: 1,
            accounts,
            ..Default::default()
        }
    }

    fn indexed(d: &SnapshotData, serial: u32) -> Vec<u8> {
        build_snapshot_with(
            d,
            &BuildOptions {
                index: true,
                without_gates: true,
                serial,
                ..Default::default()
            },
        )
        .unwrap()
    }

    fn c(p: &Path) -> CString {
        CString::new(p.as_os_str().as_encoded_bytes()).unwrap()
    }

    /// A walk over the snapshot in `dir` (and its delta, if any).
    fn walk(dir: &Path) -> Box<AccountWalk> {
        let l = for_enumeration_at(
            &c(&dir.join("snapshot")),
            &c(&dir.join("snapshot.delta")),
            Listing::Accounts,
        )
        .unwrap();
        match l {
            Listed::Walk(w) => w,
            Listed::Copy { .. } => panic!("a file with a listing was copied"),
        }
    }

    /// Every entry from here on, or the failure that ended the listing.
    fn rest(w: &mut AccountWalk, now: UnixTime) -> (Vec<String>, Failure) {
        let mut b = vec![0u8; 1024];
        let mut out = Vec::new();
        loop {
            match w.step(now, &mut CallerBuf::new(&mut b)) {
                Ok(pw) => out.push(pw_fields(&pw).0),
                Err(e) => return (out, e),
            }
        }
    }

    /// What the copy path lists of the same image.
    fn copied(img: &[u8], now: UnixTime) -> Vec<String> {
        let s = jit_core::snapshot::Snapshot::parse(img).unwrap();
        let mut pos = Position::default();
        let mut b = vec![0u8; 1024];
        let mut out = Vec::new();
        while let Ok(pw) = step_passwd(&s, &mut pos, now, &mut CallerBuf::new(&mut b)) {
            out.push(pw_fields(&pw).0);
        }
        out
    }

    #[test]
    fn a_walk_lists_what_a_copy_lists() {
        if !is_root() {
            eprintln!("skipped: needs root (trusted files are root-owned)");
            return;
        }
        let d = TempDir::new("walk");
        let img = indexed(&data(3000), 0);
        install(&d.0, "snapshot", &img, 0o644);
        for now in [0, 75, 175, 275, 350, 400] {
            let (got, end) = rest(&mut walk(&d.0), now);
            assert_eq!(end, Failure::NotFound);
            assert_eq!(got, copied(&img, now), "now = {now}");
            if now == 175 {
                // Not live: every ninth user (334), but those that are also every fifth (67)
                // have their second grant live.
                assert_eq!(
                    got.len(),
                    3000 - 334 + 67,
                    "every live user once, none refused"
                );
                assert!(!got
                    .iter()
                    .any(|n| ["root", "zero", "nobody2"].contains(&n.as_str())));
            }
        }
        // Past the end it stays NOTFOUND.
        let mut w = walk(&d.0);
        let _ = rest(&mut w, 175);
        assert_eq!(rest(&mut w, 175), (vec![], Failure::NotFound));
    }

    #[test]
    fn a_walk_keeps_its_file_and_a_short_buffer_does_not_move_it() {
        if !is_root() {
            eprintln!("skipped: needs root (trusted files are root-owned)");
            return;
        }
        let d = TempDir::new("walk-pin");
        let img = indexed(&data(2000), 0);
        install(&d.0, "snapshot", &img, 0o644);
        let mut w = walk(&d.0);
        let mut small = vec![0u8; 8];
        assert_eq!(
            w.step(175, &mut CallerBuf::new(&mut small)).err(),
            Some(Failure::TooSmall)
        );
        // jitd renames an empty snapshot into place: the walk reads the file it started on.
        install(
            &d.0,
            "snapshot",
            &indexed(&SnapshotData::default(), 0),
            0o644,
        );
        let (got, end) = rest(&mut w, 175);
        assert_eq!(end, Failure::NotFound);
        assert_eq!(
            got,
            copied(&img, 175),
            "the same first entry after ERANGE, then all"
        );
        assert_eq!(rest(&mut walk(&d.0), 175).0, Vec::<String>::new());
    }

    #[test]
    fn the_delta_follows_the_base_without_repeating_a_name() {
        if !is_root() {
            eprintln!("skipped: needs root (trusted files are root-owned)");
            return;
        }
        let d = TempDir::new("walk-delta");
        let img = indexed(&data(300), 77);
        install(&d.0, "snapshot", &img, 0o644);
        let delta = |bases: [u32; 4]| {
            let dd = SnapshotData {
                generated_at: 2,
                accounts: vec![
                    account("u00007", 70_007, 100, 400), // live in the base too
                    account("u00009", 70_009, 100, 400), // in the base, not live at 175
                    account("zz-new", 79_000, 100, 400),
                    account("zz-new", 79_000, 120, 400),
                ],
                ..Default::default()
            };
            let opts = BuildOptions {
                delta_of: Some(bases),
                ..Default::default()
            };
            build_snapshot_with(&dd, &opts).unwrap()
        };
        install(&d.0, "snapshot.delta", &delta([77, 0, 0, 0]), 0o644);
        let mut want = copied(&img, 175);
        want.extend(["u00009".to_string(), "zz-new".to_string()]);
        assert_eq!(rest(&mut walk(&d.0), 175), (want, Failure::NotFound));
        // A delta naming another base is not read over this one.
        install(&d.0, "snapshot.delta", &delta([78, 0, 0, 0]), 0o644);
        let (got, _) = rest(&mut walk(&d.0), 175);
        assert_eq!(got, copied(&img, 175));
    }

    #[test]
    fn a_file_changed_in_place_ends_the_walk_without_a_torn_entry() {
        if !is_root() {
            eprintln!("skipped: needs root (trusted files are root-owned)");
            return;
        }
        use std::os::unix::fs::FileExt;
        let d = TempDir::new("walk-damage");
        let img = indexed(&data(3000), 0);
        let path = install(&d.0, "snapshot", &img, 0o644);
        let all = copied(&img, 175);
        // A byte of the third chunk changed in place after the walk started: the entries of
        // the first two chunks, then UNAVAIL, and UNAVAIL again.
        let (sec_at, _, _) = jit_core::snapshot::index::IndexHead::parse(
            &img[..jit_core::snapshot::index::HEAD_PREFIX],
            img.len() as u64,
        )
        .unwrap()
        .unwrap()
        .listing
        .unwrap();
        let mut w = walk(&d.0);
        let mut b = vec![0u8; 1024];
        w.step(175, &mut CallerBuf::new(&mut b)).unwrap();
        let per_chunk = jit_core::snapshot::format::LISTING_CHUNK_MAX as u64;
        let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        f.write_all_at(b"#", sec_at + 2 * per_chunk + 100).unwrap();
        let (got, end) = rest(&mut w, 175);
        assert_eq!(end, Failure::Unavailable);
        assert!(
            got.len() > 100 && got.len() + 1 < all.len(),
            "{}",
            got.len()
        );
        assert_eq!(
            got[..],
            all[1..got.len() + 1],
            "entries before the damage are whole"
        );
        assert_eq!(rest(&mut w, 175), (vec![], Failure::Unavailable));
        // Truncated in place under a walk: UNAVAIL, no signal, nothing torn.
        let path = install(&d.0, "snapshot", &img, 0o644);
        let mut w = walk(&d.0);
        w.step(175, &mut CallerBuf::new(&mut b)).unwrap();
        f.set_len(0).unwrap();
        drop(f);
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(sec_at + 1000)
            .unwrap();
        let (got, end) = rest(&mut w, 175);
        assert_eq!(end, Failure::Unavailable);
        assert_eq!(got[..], all[1..got.len() + 1]);
    }

    #[test]
    fn another_file_behind_the_walks_descriptor_is_not_read() {
        if !is_root() {
            eprintln!("skipped: needs root (trusted files are root-owned)");
            return;
        }
        use std::os::fd::AsRawFd;
        let d = TempDir::new("walk-fd");
        let img = indexed(&data(3000), 0);
        install(&d.0, "snapshot", &img, 0o644);
        // The same bytes in another file: only its identity differs.
        let other = std::fs::File::open(install(&d.0, "other", &img, 0o644)).unwrap();
        let mut w = walk(&d.0);
        let mut b = vec![0u8; 1024];
        w.step(175, &mut CallerBuf::new(&mut b)).unwrap();
        // The caller closes "its" descriptors and the number comes back naming another file.
        // SAFETY: both descriptors are open; dup2 replaces the walk's with a copy of `other`.
        assert!(unsafe { libc::dup2(other.as_raw_fd(), w.raw_fd()) } >= 0);
        let (got, end) = rest(&mut w, 175);
        assert_eq!(end, Failure::Unavailable);
        assert!(got.len() < copied(&img, 175).len());
    }
}
