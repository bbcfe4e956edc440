//! Per-query reading of an indexed snapshot (format 1.1): the header, one directory entry and
//! one small shard, each with `pread`, instead of the whole file. A process's first lookup then
//! costs the same at 100 grants as at 50 000, and the module's memory does not grow with them.
//!
//! Trust and integrity are those of the whole-file path ([`crate::source`]): the same
//! `lstat`/`open`/`fstat` rules, a private copy of every byte used (never a shared mapping, so a
//! file truncated in place cannot raise SIGBUS), the header and table checked against
//! `head_crc`, and each shard validated whole by `Snapshot::parse` (its own CRC32C) and required
//! to state the header's `generated_at` before any of its records is used. A shard read while
//! the file is overwritten in place fails its CRC and the query answers UNAVAIL; it is never
//! used torn.
//!
//! Cache. [`SHARDS`] keeps, for the file identity last seen, the parsed header, the big-key
//! tables and the last few shards used (at most [`CACHE_BYTES`] of them), and pins the inode as
//! the whole-file cache does; every call still `lstat`s the path, so a replaced, changed or
//! removed file is noticed at the next lookup (a revocation is visible at once). A file without
//! the index (written by an older jitd) is read whole, as before.

use crate::counter::{coarse_now, still_fresh, Counter, Stamp, ATTACH_AFTER, COUNTER};
use crate::delta::Answer;
use crate::source::{lock_nonblocking, read_at, Identity, InodePin, SnapshotCopy, SourceError};
use crate::status::Failure;
use jit_core::snapshot::file::open_trusted;
use jit_core::snapshot::index::{id_key, name_key, IndexHead, Table, BIG_TABLE_MAX, FIRST_READ};
use std::ffi::CStr;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex};

/// Most bytes of shards kept per process.
pub const CACHE_BYTES: usize = 96 * 1024;
/// A shard larger than this (a big group's) is used for its call only, never kept.
const CACHE_ONE_MAX: usize = 16 * 1024;

/// Which shard slot of the index a query lands in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    /// Its own shard (the key is in the big-key table).
    Big(Table, u32),
    /// A bucket of the directory.
    Bucket(Table, u64),
}

/// What is known about the file of one identity (opaque outside this module).
pub struct Known {
    ident: Identity,
    /// The change counter read before the file was last confirmed to be `ident`, and when.
    stamp: Option<Stamp>,
    checked_at: Option<u64>,
    /// Lookups confirmed by `lstat` against this file while no counter was attached.
    confirmations: u32,
    /// Whether this process already tried to attach the counter for this file.
    attach_tried: bool,
    _pin: InodePin,
    /// `None`: the file has no index; `whole` holds it.
    head: Option<IndexHead>,
    whole: Option<Arc<SnapshotCopy>>,
    big_name: Box<[u8]>,
    big_id: Box<[u8]>,
    /// Most recently used last; `None` for an empty bucket.
    shards: Vec<(Slot, Option<Arc<SnapshotCopy>>, usize)>,
}

impl Known {
    /// The file's base serial (format 1.4).
    fn serial(&self) -> u32 {
        match (&self.head, &self.whole) {
            (Some(h), _) => h.serial,
            (None, Some(w)) => w.snapshot().serial(),
            (None, None) => 0,
        }
    }

    fn big(&self, table: Table) -> &[u8] {
        match table {
            Table::Name => &self.big_name,
            Table::Id => &self.big_id,
        }
    }

    fn slot_of(&self, head: &IndexHead, table: Table, key: u32) -> Option<Slot> {
        if head.shard_of_big(self.big(table), key).is_some() {
            return Some(Slot::Big(table, key));
        }
        head.dir_entry(table, key)
            .map(|(at, _)| Slot::Bucket(table, at))
    }

    /// The answer for `key` from what is cached, if that is enough.
    fn answer(&mut self, table: Table, key: u32) -> Option<Result<Arc<SnapshotCopy>, Failure>> {
        if let Some(w) = &self.whole {
            return Some(Ok(Arc::clone(w)));
        }
        let head = self.head?;
        match self.slot_of(&head, table, key) {
            Some(slot) => self.cached(slot).map(|hit| hit.ok_or(Failure::NotFound)),
            None => Some(Err(Failure::NotFound)),
        }
    }

    fn cached(&mut self, slot: Slot) -> Option<Option<Arc<SnapshotCopy>>> {
        let i = self.shards.iter().position(|(s, _, _)| *s == slot)?;
        let e = self.shards.remove(i);
        let m = e.1.clone();
        self.shards.push(e);
        Some(m)
    }

    fn keep(&mut self, slot: Slot, m: Option<Arc<SnapshotCopy>>, size: usize) {
        if size > CACHE_ONE_MAX || self.shards.iter().any(|(s, _, _)| *s == slot) {
            return;
        }
        self.shards.push((slot, m, size));
        while self.shards.iter().map(|e| e.2).sum::<usize>() > CACHE_BYTES {
            self.shards.remove(0);
        }
    }
}

/// The shard cache of a process.
pub type ShardCache = Mutex<Option<Known>>;

/// The one shard cache of the process.
pub static SHARDS: ShardCache = Mutex::new(None);

/// What answers every query about `name` (account by name, group by name, the user's gids):
/// the validated shard of the snapshot that holds it (or the whole file if it has no index) and
/// the delta read over it.
///
/// # Errors
/// `Unavailable` for any problem with the snapshot file (a missing or unusable delta is only
/// left out). A name no shard holds still has an answer: the delta may hold it.
pub fn by_name(name: &str) -> Result<Answer, Failure> {
    with_delta(fetch_base(
        crate::source::SNAPSHOT_PATH,
        &SHARDS,
        &COUNTER,
        Table::Name,
        name_key(name),
    ))
}

/// As [`by_name`] for a uid or gid.
///
/// # Errors
/// As [`by_name`].
pub fn by_id(id: u32) -> Result<Answer, Failure> {
    with_delta(fetch_base(
        crate::source::SNAPSHOT_PATH,
        &SHARDS,
        &COUNTER,
        Table::Id,
        id_key(id),
    ))
}

/// The base's part of an answer with the process's delta added.
fn with_delta(base: Result<Found, Failure>) -> Result<Answer, Failure> {
    let found = base?;
    Ok(Answer {
        base: found.copy,
        delta: crate::delta::current(
            crate::delta::DELTA_PATH,
            &crate::delta::DELTA,
            found.checked,
        ),
        serial: found.serial,
    })
}

/// The base's part of an answer.
pub struct Found {
    /// The shard (or whole file) holding the key; `None` if none can.
    pub copy: Option<Arc<SnapshotCopy>>,
    /// The file's base serial (format 1.4; 0: no delta applies).
    pub serial: u32,
    /// Whether this call checked the file (`lstat`) rather than trusting the change counter:
    /// the delta is checked exactly then.
    pub checked: bool,
}

/// The snapshot for `key` in `table` of the file at `path`, through `cache`; `counter` is
/// jitd's change counter for the file's directory. `NotFound` if no shard holds the key.
pub fn fetch(
    path: &CStr,
    cache: &ShardCache,
    counter: &Counter,
    table: Table,
    key: u32,
) -> Result<Arc<SnapshotCopy>, Failure> {
    fetch_base(path, cache, counter, table, key)?
        .copy
        .ok_or(Failure::NotFound)
}

/// As [`fetch`], with the file's serial and whether it was checked.
pub fn fetch_base(
    path: &CStr,
    cache: &ShardCache,
    counter: &Counter,
    table: Table,
    key: u32,
) -> Result<Found, Failure> {
    let found = |r: Result<Arc<SnapshotCopy>, Failure>, serial, checked| match r {
        Ok(c) => Ok(Found {
            copy: Some(c),
            serial,
            checked,
        }),
        Err(Failure::NotFound) => Ok(Found {
            copy: None,
            serial,
            checked,
        }),
        Err(e) => Err(e),
    };
    // Read before the lstat below: a snapshot published after that lstat moves the counter
    // past this value, so the copy is checked again at the next lookup.
    let stamp = counter.read();
    // The clock matters only with a counter attached (no stamp, nothing is fresh).
    let now = stamp.and_then(|_| coarse_now());
    if let Some(mut g) = lock_nonblocking(cache) {
        if let Some(k) = g
            .as_mut()
            .filter(|k| still_fresh(stamp, k.stamp, k.checked_at, now))
        {
            if let Some(answer) = k.answer(table, key) {
                return found(answer, k.serial(), false);
            }
        }
    }
    let seen = match crate::source::lstat_identity(path) {
        Ok(i) => i,
        Err(e) => {
            // Gone or untrusted: release what we hold for the old file.
            let old = lock_nonblocking(cache).and_then(|mut g| g.take());
            drop(old);
            return Err(e.into());
        }
    };
    let mut attach = false;
    let mut cached = None;
    let mut serial = 0;
    if let Some(mut g) = lock_nonblocking(cache) {
        if let Some(k) = g.as_mut().filter(|k| k.ident == seen) {
            k.stamp = stamp;
            k.checked_at = now;
            // A process that keeps looking names up in one file: worth attaching the counter
            // (tried once per file).
            if stamp.is_none() && !k.attach_tried {
                k.confirmations = k.confirmations.saturating_add(1);
                if k.confirmations >= ATTACH_AFTER {
                    k.attach_tried = true;
                    attach = true;
                }
            }
            cached = k.answer(table, key);
            serial = k.serial();
        }
    }
    if attach {
        counter.attach();
    }
    if let Some(answer) = cached {
        return found(answer, serial, true);
    }
    // Not cached: read without holding the lock.
    let (fd, st) = open_trusted(path).map_err(SourceError::from)?;
    let ident = Identity::of(&st);
    let fresh = load(&fd, ident, cache, table, key);
    drop(fd);
    match fresh {
        Ok((m, serial)) => {
            // Confirmed by the open just made, after `stamp` was read.
            if let Some(mut g) = lock_nonblocking(cache) {
                if let Some(k) = g.as_mut().filter(|k| k.ident == ident) {
                    k.stamp = stamp;
                    k.checked_at = now;
                }
            }
            found(m.ok_or(Failure::NotFound), serial, true)
        }
        Err(e) => {
            let old = lock_nonblocking(cache).and_then(|mut g| g.take());
            drop(old);
            Err(e.into())
        }
    }
}

/// Reads what `key` needs from the open file `fd` and records it in `cache`; with the file's
/// base serial.
fn load(
    fd: &OwnedFd,
    ident: Identity,
    cache: &ShardCache,
    table: Table,
    key: u32,
) -> Result<(Option<Arc<SnapshotCopy>>, u32), SourceError> {
    let size = u64::try_from(ident.size).map_err(|_| SourceError::Corrupt)?;
    // Reuse the header and big tables if the cache already describes this very file.
    let known = lock_nonblocking(cache).and_then(|g| {
        g.as_ref()
            .filter(|k| k.ident == ident)
            .map(|k| (k.head, k.big_name.clone(), k.big_id.clone()))
    });
    // The file's first bytes, when this call read them: the writer puts the big tables right
    // after the section table and the name directory next, so they often hold what follows.
    let mut first: Option<Box<[u8]>> = None;
    // `len` bytes at `at`, from `first` when they lie in it, else with one more `pread`.
    let bytes_at =
        |first: &Option<Box<[u8]>>, at: u64, len: u64| -> Result<Box<[u8]>, SourceError> {
            let n = usize::try_from(len).map_err(|_| SourceError::Corrupt)?;
            let held = usize::try_from(at)
                .ok()
                .and_then(|a| first.as_ref()?.get(a..a.checked_add(n)?));
            match held {
                Some(b) => Ok(b.into()),
                None => read_at(fd, at, n),
            }
        };
    let (head, big_name, big_id) = match known {
        Some((Some(h), n, i)) => (h, n, i),
        _ => {
            // One page: the header and table need at most HEAD_PREFIX bytes, and a page costs
            // the same `pread`.
            let want = usize::try_from(size.min(FIRST_READ as u64)).unwrap_or(FIRST_READ);
            let prefix = first.insert(read_at(fd, 0, want)?);
            let Some(head) = IndexHead::parse(prefix, size).map_err(|_| SourceError::Corrupt)?
            else {
                // No index: the whole file, cached as before.
                let whole = Arc::new(SnapshotCopy::whole(fd, ident)?);
                install(
                    cache,
                    ident,
                    fd,
                    None,
                    Some(Arc::clone(&whole)),
                    [].into(),
                    [].into(),
                )?;
                let serial = whole.snapshot().serial();
                return Ok((Some(whole), serial));
            };
            let big = |t: Table| -> Result<Box<[u8]>, SourceError> {
                let (at, len) = head.big_table(t);
                if len > BIG_TABLE_MAX {
                    return Err(SourceError::Corrupt);
                }
                bytes_at(&first, at, len)
            };
            let (n, i) = (big(Table::Name)?, big(Table::Id)?);
            install(cache, ident, fd, Some(head), None, n.clone(), i.clone())?;
            (head, n, i)
        }
    };
    let big = match table {
        Table::Name => &big_name,
        Table::Id => &big_id,
    };
    let (slot, range) = match head.shard_of_big(big, key) {
        Some(r) => (Slot::Big(table, key), Some(r)),
        None => {
            let Some((at, len)) = head.dir_entry(table, key) else {
                return Ok((None, head.serial));
            };
            let entry = bytes_at(&first, at, len)?;
            (Slot::Bucket(table, at), head.shard_of_dir_entry(&entry))
        }
    };
    let copy = match range {
        None => None,
        Some((at, len)) => {
            let len = usize::try_from(len).map_err(|_| SourceError::Corrupt)?;
            let m = SnapshotCopy::from_bytes(read_at(fd, at, len)?, ident, None)?;
            if m.snapshot().generated_at() != head.generated_at {
                return Err(SourceError::Corrupt);
            }
            Some(Arc::new(m))
        }
    };
    if let Some(mut g) = lock_nonblocking(cache) {
        if let Some(k) = g.as_mut().filter(|k| k.ident == ident) {
            let size = range.map_or(0, |r| usize::try_from(r.1).unwrap_or(usize::MAX));
            k.keep(slot, copy.clone(), size);
        }
    }
    Ok((copy, head.serial))
}

/// Makes `cache` describe the file `ident` (dropping what it held for another file).
fn install(
    cache: &ShardCache,
    ident: Identity,
    fd: &OwnedFd,
    head: Option<IndexHead>,
    whole: Option<Arc<SnapshotCopy>>,
    big_name: Box<[u8]>,
    big_id: Box<[u8]>,
) -> Result<(), SourceError> {
    let pin = InodePin::of(fd)?;
    let fresh = Known {
        ident,
        stamp: None,
        checked_at: None,
        confirmations: 0,
        attach_tried: false,
        _pin: pin,
        head,
        whole,
        big_name,
        big_id,
        shards: Vec::new(),
    };
    let old = lock_nonblocking(cache).and_then(|mut g| g.replace(fresh));
    drop(old); // released outside the lock
    Ok(())
}

/// The identity of the file the cache describes (tests).
#[cfg(test)]
pub(crate) fn cached_shards(cache: &ShardCache) -> Option<usize> {
    lock_nonblocking(cache).and_then(|g| g.as_ref().map(|k| k.shards.len()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lookup;
    use crate::source::tests::{account, install, TempDir};
    use jit_core::snapshot::index::HEAD_PREFIX;
    use jit_core::snapshot::{build_snapshot, build_snapshot_with, BuildOptions};
    use jit_core::types::{GroupEntry, Member, SnapshotData, GROUP_KIND_JIT};
    use std::ffi::CString;

    fn is_root() -> bool {
        // SAFETY: geteuid has no preconditions.
        unsafe { libc::geteuid() == 0 }
    }

    /// `n` live accounts `u0..`, all in jit-users (a big key with n > 32).
    fn data(n: u32, generated_at: i64) -> SnapshotData {
        let mut d = SnapshotData {
            generated_at,
            ..Default::default()
        };
        let mut users = GroupEntry {
            name: "jit-users".into(),
            gid: 79_999,
            kind: GROUP_KIND_JIT,
            not_before: i64::MIN,
            not_after: i64::MAX,
            members: vec![],
        };
        for i in 0..n {
            let name = format!("u{i}");
            d.accounts.push(account(&name, 70_000 + i, 0, i64::MAX));
            users.members.push(Member {
                name: name.into(),
                grant_id: "g-1".into(),
                not_before: 0,
                not_after: i64::MAX,
            });
        }
        d.groups.push(users);
        d
    }

    fn indexed(d: &SnapshotData) -> Vec<u8> {
        build_snapshot_with(
            d,
            &BuildOptions {
                index: true,
                ..Default::default()
            },
        )
        .unwrap()
    }

    /// A counter that never attaches (no such directory): every lookup checks the file.
    static NO_COUNTER: Counter = Counter::new(c"/nonexistent-jit-test-dir");

    fn name_of(path: &CStr, cache: &ShardCache, name: &str) -> Result<Option<u32>, Failure> {
        name_via(path, cache, &NO_COUNTER, name)
    }

    fn name_via(
        path: &CStr,
        cache: &ShardCache,
        counter: &Counter,
        name: &str,
    ) -> Result<Option<u32>, Failure> {
        match fetch(path, cache, counter, Table::Name, name_key(name)) {
            Ok(m) => Ok(lookup::account_by_name(&m.snapshot(), name, 10).map(|a| a.uid())),
            Err(Failure::NotFound) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// A first lookup reads one page at the start of the file (header, table, both big
    /// tables and the directory entry when it lies there) and then the shard: two reads, not
    /// five; three when the directory entry lies beyond that page.
    #[test]
    fn a_first_lookup_reads_the_first_page_and_then_the_shard() {
        if !is_root() {
            return;
        }
        let reads = || crate::source::READS.with(|r| r.get());
        let d = TempDir::new("first-page");
        let n = 20_000u32;
        let file = indexed(&data(n, 5));
        let head = IndexHead::parse(&file[..HEAD_PREFIX], file.len() as u64)
            .unwrap()
            .unwrap();
        let entry_end = |name: &str| {
            let (at, len) = head.dir_entry(Table::Name, name_key(name)).unwrap();
            at + len
        };
        let names: Vec<String> = (0..n).map(|i| format!("u{i}")).collect();
        let inside = names
            .iter()
            .find(|u| entry_end(u) <= FIRST_READ as u64)
            .unwrap();
        let beyond = names
            .iter()
            .find(|u| entry_end(u) > FIRST_READ as u64)
            .unwrap();
        let p = CString::new(
            install(&d.0, "snapshot", &file, 0o644)
                .into_os_string()
                .into_encoded_bytes(),
        )
        .unwrap();
        for (name, want) in [(inside, 2usize), (beyond, 3)] {
            let uid = 70_000 + name[1..].parse::<u32>().unwrap();
            let cache: ShardCache = Mutex::new(None);
            let before = reads();
            assert_eq!(name_of(&p, &cache, name), Ok(Some(uid)));
            assert_eq!(reads() - before, want, "reads of a first lookup of {name}");
        }
        // The big group is found through the big table read with the first page.
        let cache: ShardCache = Mutex::new(None);
        let before = reads();
        let m = fetch(&p, &cache, &NO_COUNTER, Table::Id, id_key(79_999)).unwrap();
        let g = lookup::group_by_gid(&m.snapshot(), 79_999, 10).unwrap();
        assert_eq!(g.live_members(10).count(), n as usize);
        assert_eq!(reads() - before, 2, "first page and the big group's shard");
    }

    #[test]
    fn answers_from_shards_and_caches_them() {
        if !is_root() {
            return;
        }
        let d = TempDir::new("shard");
        let p = CString::new(
            install(&d.0, "snapshot", &indexed(&data(200, 5)), 0o644)
                .into_os_string()
                .into_encoded_bytes(),
        )
        .unwrap();
        let cache: ShardCache = Mutex::new(None);
        assert_eq!(name_of(&p, &cache, "u7"), Ok(Some(70_007)));
        assert_eq!(cached_shards(&cache), Some(1));
        assert_eq!(name_of(&p, &cache, "u7"), Ok(Some(70_007)));
        assert_eq!(
            cached_shards(&cache),
            Some(1),
            "second lookup served from the cache"
        );
        assert_eq!(name_of(&p, &cache, "u199"), Ok(Some(70_199)));
        assert_eq!(name_of(&p, &cache, "nosuch"), Ok(None));
        let m = fetch(&p, &cache, &NO_COUNTER, Table::Id, id_key(79_999)).unwrap();
        let g = lookup::group_by_gid(&m.snapshot(), 79_999, 10).unwrap();
        assert_eq!(g.live_members(10).count(), 200);
        let m = fetch(&p, &cache, &NO_COUNTER, Table::Id, id_key(70_100)).unwrap();
        assert_eq!(
            lookup::account_by_uid(&m.snapshot(), 70_100, 10).map(|a| a.name()),
            Some("u100")
        );
        // The process keeps little: shards up to CACHE_BYTES, the big group's never.
        let kept: usize = lock_nonblocking(&cache)
            .unwrap()
            .as_ref()
            .unwrap()
            .shards
            .iter()
            .map(|e| e.2)
            .sum();
        assert!(kept <= CACHE_BYTES, "{kept}");
    }

    /// A private IPC namespace for this test's thread: its counters never reach the host's.
    fn private_ipc() {
        // SAFETY: unshare only changes this thread's namespaces.
        let rc = unsafe { libc::unshare(libc::CLONE_NEWIPC) };
        assert_eq!(
            rc,
            0,
            "unshare(CLONE_NEWIPC): {}",
            std::io::Error::last_os_error()
        );
    }

    fn leaked_cstr(p: &std::path::Path) -> &'static CStr {
        Box::leak(
            CString::new(p.as_os_str().as_encoded_bytes())
                .unwrap()
                .into_boxed_c_str(),
        )
    }

    /// With jitd's counter attached, lookups answer from the copy without looking at the file
    /// until the counter moves (a publication, a stop) or the copy is TRUST_NS old.
    #[test]
    fn with_jitds_counter_the_file_is_checked_only_when_the_counter_moves() {
        if !is_root() {
            return;
        }
        private_ipc();
        let dir = TempDir::new("counter");
        let dirc = leaked_cstr(&dir.0);
        let counter = Counter::new(dirc);
        let jitd = jit_core::snapshot::generation::Counter::open(dirc).unwrap();
        let path = install(&dir.0, "snapshot", &indexed(&data(50, 5)), 0o644);
        let p = CString::new(path.into_os_string().into_encoded_bytes()).unwrap();
        let cache: ShardCache = Mutex::new(None);
        let mut gone = data(50, 6);
        gone.accounts.retain(|a| a.name != "u3");

        // The first lookup reads; the next ATTACH_AFTER confirm by lstat, the last of them
        // attaches the counter.
        for _ in 0..ATTACH_AFTER {
            assert_eq!(name_via(&p, &cache, &counter, "u3"), Ok(Some(70_003)));
            assert_eq!(
                counter.read(),
                None,
                "a process making few lookups never attaches"
            );
        }
        assert_eq!(name_via(&p, &cache, &counter, "u3"), Ok(Some(70_003)));
        assert!(counter.read().is_some(), "attached");
        assert_eq!(name_via(&p, &cache, &counter, "u3"), Ok(Some(70_003)));

        // Replaced behind jitd's back (not counted): the copy still answers, which shows the
        // lookup did not look at the file.
        install(&dir.0, "snapshot", &indexed(&gone), 0o644);
        assert_eq!(name_via(&p, &cache, &counter, "u3"), Ok(Some(70_003)));
        // jitd counts what it renamed into place: the revocation is seen at the next lookup.
        jitd.bump();
        assert_eq!(name_via(&p, &cache, &counter, "u3"), Ok(None));

        // A change nobody counted is seen once the confirmation is TRUST_NS old.
        install(&dir.0, "snapshot", &indexed(&data(50, 7)), 0o644);
        assert_eq!(name_via(&p, &cache, &counter, "u3"), Ok(None));
        std::thread::sleep(std::time::Duration::from_nanos(
            jit_core::snapshot::generation::TRUST_NS + 50_000_000,
        ));
        assert_eq!(name_via(&p, &cache, &counter, "u3"), Ok(Some(70_003)));

        // jitd stops: the counter closes, and every lookup checks the file again.
        drop(jitd);
        assert_eq!(counter.read(), None);
        install(&dir.0, "snapshot", &indexed(&gone), 0o644);
        assert_eq!(name_via(&p, &cache, &counter, "u3"), Ok(None));
        // A jitd started again sets up a new segment, which the process attaches in turn.
        let jitd = jit_core::snapshot::generation::Counter::open(dirc).unwrap();
        install(&dir.0, "snapshot", &indexed(&data(50, 8)), 0o644);
        jitd.bump();
        for _ in 0..=ATTACH_AFTER {
            assert_eq!(name_via(&p, &cache, &counter, "u3"), Ok(Some(70_003)));
        }
        assert!(counter.read().is_some(), "attached the new segment");
    }

    /// A segment under the counter's key that anyone could write is never attached: lookups
    /// keep checking the file, so holding such a counter still cannot hide a revocation.
    #[test]
    fn a_counter_others_can_write_is_ignored() {
        if !is_root() {
            return;
        }
        private_ipc();
        let dir = TempDir::new("squat");
        let dirc = leaked_cstr(&dir.0);
        let (dev, ino) = jit_core::snapshot::generation::dir_identity(dirc).unwrap();
        use jit_core::snapshot::generation::{key_for, MAGIC, SEGMENT_BYTES};
        // SAFETY: creates a segment, writes its first 32 bytes as a set-up counter, detaches.
        unsafe {
            let id = libc::shmget(
                key_for(dev, ino),
                SEGMENT_BYTES,
                libc::IPC_CREAT | libc::IPC_EXCL | 0o666,
            );
            assert!(id >= 0);
            let w = libc::shmat(id, std::ptr::null(), 0).cast::<u64>();
            assert_ne!(w as isize, -1);
            for (i, v) in [MAGIC, dev, ino, 2].into_iter().enumerate() {
                w.add(i).write(v);
            }
            libc::shmdt(w.cast());
        }
        let counter = Counter::new(dirc);
        let path = install(&dir.0, "snapshot", &indexed(&data(50, 5)), 0o644);
        let p = CString::new(path.into_os_string().into_encoded_bytes()).unwrap();
        let cache: ShardCache = Mutex::new(None);
        for _ in 0..ATTACH_AFTER + 3 {
            assert_eq!(name_via(&p, &cache, &counter, "u3"), Ok(Some(70_003)));
        }
        assert_eq!(counter.read(), None, "refused");
        let mut gone = data(50, 6);
        gone.accounts.retain(|a| a.name != "u3");
        install(&dir.0, "snapshot", &indexed(&gone), 0o644);
        assert_eq!(name_via(&p, &cache, &counter, "u3"), Ok(None));
    }

    /// A revocation (the account gone from a replaced file) is visible at the very next lookup,
    /// though the shard that held it is cached.
    #[test]
    fn revocation_is_visible_at_the_next_lookup() {
        if !is_root() {
            return;
        }
        let dir = TempDir::new("revoke");
        let path = install(&dir.0, "snapshot", &indexed(&data(50, 5)), 0o644);
        let p = CString::new(path.into_os_string().into_encoded_bytes()).unwrap();
        let cache: ShardCache = Mutex::new(None);
        for _ in 0..3 {
            assert_eq!(name_of(&p, &cache, "u3"), Ok(Some(70_003)));
        }
        let mut gone = data(50, 6);
        gone.accounts.retain(|a| a.name != "u3");
        install(&dir.0, "snapshot", &indexed(&gone), 0o644);
        assert_eq!(name_of(&p, &cache, "u3"), Ok(None));
        // The same file rewritten in place by root (same inode, new mtime): seen as well.
        std::fs::write(dir.0.join("snapshot"), indexed(&data(50, 7))).unwrap();
        assert_eq!(name_of(&p, &cache, "u3"), Ok(Some(70_003)));
        // Removed: UNAVAIL, and the cache is released.
        std::fs::remove_file(dir.0.join("snapshot")).unwrap();
        assert_eq!(name_of(&p, &cache, "u3"), Err(Failure::Unavailable));
        assert!(lock_nonblocking(&cache).unwrap().is_none());
    }

    /// Any byte of the header, the big tables, the directory or a shard damaged: the lookups
    /// that read it answer UNAVAIL or NOTFOUND, or the right answer, never a wrong record.
    #[test]
    fn damaged_index_never_gives_a_wrong_answer() {
        if !is_root() {
            return;
        }
        let dir = TempDir::new("damage");
        let good = indexed(&data(40, 5));
        let head = IndexHead::parse(&good[..HEAD_PREFIX.min(good.len())], good.len() as u64)
            .unwrap()
            .unwrap();
        let (eo, _) = head.dir_entry(Table::Name, name_key("u9")).unwrap();
        let (so, sl) = head
            .shard_of_dir_entry(&good[eo as usize..eo as usize + 8])
            .unwrap();
        let interesting = (0..HEAD_PREFIX.min(good.len()) as u64)
            .chain(eo..eo + 8)
            .chain(so..so + sl);
        for at in interesting {
            let mut bad = good.clone();
            bad[at as usize] ^= 0x5a;
            let p = CString::new(
                install(&dir.0, "snapshot", &bad, 0o644)
                    .into_os_string()
                    .into_encoded_bytes(),
            )
            .unwrap();
            let cache: ShardCache = Mutex::new(None);
            match name_of(&p, &cache, "u9") {
                Ok(Some(uid)) => assert_eq!(uid, 70_009, "byte {at}"),
                Ok(None) | Err(Failure::Unavailable) => {}
                Err(e) => panic!("byte {at}: {e:?}"),
            }
        }
    }

    /// A file without the index (an older jitd) is read whole, as before.
    /// A file above what a reader copies at once (64 MiB) is used when it has the index: a
    /// lookup copies one shard. The same data without the index would be copied whole: it is
    /// refused (UNAVAIL), never copied.
    #[test]
    fn a_file_above_the_copy_cap_answers_from_shards_only_if_indexed() {
        if !is_root() {
            return;
        }
        let heavy = |n| {
            let mut d = data(n, 5);
            for a in &mut d.accounts {
                a.ssh_keys = (0..16)
                    .map(|k| format!("ssh-rsa {} {}-{k}", "A".repeat(16 * 1024 - 32), a.name))
                    .collect();
            }
            d
        };
        let dir = TempDir::new("large");
        let file = indexed(&heavy(100));
        assert!(file.len() as u64 > jit_core::constants::MAX_SNAPSHOT_BYTES);
        let p = CString::new(
            install(&dir.0, "snapshot", &file, 0o644)
                .into_os_string()
                .into_encoded_bytes(),
        )
        .unwrap();
        drop(file);
        let cache: ShardCache = Mutex::new(None);
        assert_eq!(name_of(&p, &cache, "u77"), Ok(Some(70_077)));
        assert_eq!(name_of(&p, &cache, "u100"), Ok(None));
        let m = fetch(&p, &cache, &NO_COUNTER, Table::Id, id_key(79_999)).unwrap();
        let g = lookup::group_by_gid(&m.snapshot(), 79_999, 10).unwrap();
        assert_eq!(g.live_members(10).count(), 100);

        let file = build_snapshot(&heavy(270)).unwrap();
        assert!(file.len() as u64 > jit_core::constants::MAX_SNAPSHOT_BYTES);
        let q = CString::new(
            install(&dir.0, "unindexed", &file, 0o644)
                .into_os_string()
                .into_encoded_bytes(),
        )
        .unwrap();
        drop(file);
        let cache: ShardCache = Mutex::new(None);
        let r = name_of(&q, &cache, "u77");
        assert!(matches!(r, Err(ref e) if *e != Failure::NotFound), "{r:?}");
    }

    #[test]
    fn unindexed_file_is_read_whole() {
        if !is_root() {
            return;
        }
        let dir = TempDir::new("old");
        let path = install(
            &dir.0,
            "snapshot",
            &build_snapshot(&data(5, 5)).unwrap(),
            0o644,
        );
        let p = CString::new(path.into_os_string().into_encoded_bytes()).unwrap();
        let cache: ShardCache = Mutex::new(None);
        assert_eq!(name_of(&p, &cache, "u2"), Ok(Some(70_002)));
        assert_eq!(name_of(&p, &cache, "u9"), Ok(None));
        assert!(lock_nonblocking(&cache)
            .unwrap()
            .as_ref()
            .unwrap()
            .whole
            .is_some());
    }
}
