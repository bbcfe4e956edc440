//! The delta read over the snapshot (format 1.4, docs/snapshot-format.md §12): the grants jitd
//! added since it last wrote the whole file, small, read and validated whole like a shard.
//!
//! It is checked again exactly when the snapshot is (`lstat`, every lookup without jitd's change
//! counter, else when the counter moved or a second passed): jitd renames a delta into place
//! before it counts, so a grant it acknowledged is seen at the next lookup. A delta is used only
//! over a base whose serial it names ([`Answer::snapshot`]); one that names another base, is
//! missing, untrusted, too large or damaged is not used, which can only hide grants added since
//! the base was written (jitd puts nothing else in a delta), never show an ended one.

use crate::source::{lock_nonblocking, lstat_identity, read_at, Identity, InodePin, SnapshotCopy};
use jit_core::constants::MAX_DELTA_BYTES;
use jit_core::snapshot::file::open_trusted;
use jit_core::snapshot::Snapshot;
use std::ffi::CStr;
use std::sync::{Arc, Mutex};

/// The delta the NSS module reads.
pub const DELTA_PATH: &CStr = jit_core::constants::DEFAULT_SNAPSHOT_DELTA_PATH_C;

/// What a process last saw at the delta's path.
pub struct Held {
    /// `None`: no usable file there.
    ident: Option<Identity>,
    /// The validated delta (`None` for a file that was refused: not read again until it changes).
    copy: Option<Arc<SnapshotCopy>>,
}

/// A delta cache.
pub type DeltaCache = Mutex<Option<Held>>;

/// The process's delta cache.
pub static DELTA: DeltaCache = Mutex::new(None);

/// The delta at `path`: as last seen unless `recheck`, else after an `lstat` (read again only if
/// the file changed).
pub fn current(path: &CStr, cache: &DeltaCache, recheck: bool) -> Option<Arc<SnapshotCopy>> {
    if !recheck {
        if let Some(Some(h)) = lock_nonblocking(cache).as_deref() {
            return h.copy.clone();
        }
    }
    let seen = lstat_identity(path).ok();
    if let Some(Some(h)) = lock_nonblocking(cache).as_deref() {
        if h.ident == seen {
            return h.copy.clone();
        }
    }
    let copy = seen.and_then(|_| load(path));
    // The identity of what was read (a file replaced between the lstat and the open is read
    // with the open's identity and checked again at the next recheck).
    let held = Held {
        ident: copy.as_ref().map_or(seen, |c| Some(c.ident())),
        copy: copy.clone(),
    };
    let old = lock_nonblocking(cache).and_then(|mut g| g.replace(held));
    drop(old);
    copy
}

/// Opens, checks, copies and validates the delta; `None` if anything is off.
fn load(path: &CStr) -> Option<Arc<SnapshotCopy>> {
    let (fd, st) = open_trusted(path).ok()?;
    let ident = Identity::of(&st);
    let len = u64::try_from(st.st_size).ok()?;
    if len > MAX_DELTA_BYTES {
        return None;
    }
    let pin = InodePin::of(&fd).ok()?;
    let bytes = read_at(&fd, 0, usize::try_from(len).ok()?).ok()?;
    let copy = SnapshotCopy::from_bytes(bytes, ident, Some(pin)).ok()?;
    copy.snapshot().is_delta().then(|| Arc::new(copy))
}

/// What answers one query: the base's shard (or whole file) that holds the key, if any, and the
/// delta, with the serial of the base file it must name.
pub struct Answer {
    /// The base's part; `None` when no shard of it holds the key.
    pub base: Option<Arc<SnapshotCopy>>,
    /// The delta, if there is one.
    pub delta: Option<Arc<SnapshotCopy>>,
    /// The base file's serial.
    pub serial: u32,
}

impl Answer {
    /// The view that answers: the base with the delta over it if the delta names the base's
    /// serial, the delta alone when no shard of the base holds the key, `None` if neither.
    pub fn snapshot(&self) -> Option<Snapshot<'_>> {
        let delta = self
            .delta
            .as_deref()
            .map(SnapshotCopy::view)
            .filter(|d| d.applies_over(self.serial));
        match &self.base {
            Some(b) => Some(match delta {
                Some(d) => b.snapshot().with_delta(d, self.serial),
                None => b.snapshot(),
            }),
            None => delta.copied(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::tests::{account, install, TempDir};
    use jit_core::snapshot::{build_snapshot_with, BuildOptions};
    use jit_core::types::SnapshotData;
    use std::ffi::CString;

    fn is_root() -> bool {
        // SAFETY: geteuid has no preconditions.
        unsafe { libc::geteuid() == 0 }
    }

    fn delta(names: &[&str], bases: [u32; 4]) -> Vec<u8> {
        let d = SnapshotData {
            generated_at: 5,
            accounts: names
                .iter()
                .enumerate()
                .map(|(i, n)| account(n, 71_000 + i as u32, 0, i64::MAX))
                .collect(),
            ..Default::default()
        };
        build_snapshot_with(
            &d,
            &BuildOptions {
                delta_of: Some(bases),
                ..Default::default()
            },
        )
        .unwrap()
    }

    #[test]
    fn the_delta_is_read_again_only_on_a_recheck_and_only_if_it_changed() {
        if !is_root() {
            eprintln!("skipped: needs root (trusted files are root-owned)");
            return;
        }
        let dir = TempDir::new("delta");
        let cache: DeltaCache = Mutex::new(None);
        let path = CString::new(
            dir.0
                .join("snapshot.delta")
                .into_os_string()
                .into_encoded_bytes(),
        )
        .unwrap();
        assert!(current(&path, &cache, true).is_none(), "no file, no delta");
        install(
            &dir.0,
            "snapshot.delta",
            &delta(&["zed"], [7, 0, 0, 0]),
            0o644,
        );
        assert!(
            current(&path, &cache, false).is_none(),
            "not rechecked: as last seen"
        );
        let d = current(&path, &cache, true).expect("read on a recheck");
        assert!(d.snapshot().account_by_name("zed", 1).is_some());
        let again = current(&path, &cache, true).unwrap();
        assert!(Arc::ptr_eq(&d, &again), "unchanged: not read again");
        // Replaced: read again.
        install(
            &dir.0,
            "snapshot.delta",
            &delta(&["amy"], [7, 0, 0, 0]),
            0o644,
        );
        let new = current(&path, &cache, true).unwrap();
        assert!(new.snapshot().account_by_name("amy", 1).is_some());
        // A base image is not a delta; a writable or oversized file is not read.
        install(&dir.0, "snapshot.delta", &delta_as_base(), 0o644);
        assert!(current(&path, &cache, true).is_none());
        install(
            &dir.0,
            "snapshot.delta",
            &delta(&["eve"], [7, 0, 0, 0]),
            0o666,
        );
        assert!(
            current(&path, &cache, true).is_none(),
            "group/other writable"
        );
        let mut big = delta(&["eve"], [7, 0, 0, 0]);
        big.resize(MAX_DELTA_BYTES as usize + 1, 0);
        install(&dir.0, "snapshot.delta", &big, 0o644);
        assert!(current(&path, &cache, true).is_none(), "above the limit");
        std::fs::remove_file(dir.0.join("snapshot.delta")).unwrap();
        assert!(current(&path, &cache, true).is_none(), "removed");
    }

    fn delta_as_base() -> Vec<u8> {
        build_snapshot_with(
            &SnapshotData {
                accounts: vec![account("zed", 71_000, 0, i64::MAX)],
                ..Default::default()
            },
            &BuildOptions {
                serial: 7,
                ..Default::default()
            },
        )
        .unwrap()
    }

    #[test]
    fn an_answer_uses_the_delta_only_over_the_base_it_names() {
        let base = build_snapshot_with(
            &SnapshotData {
                accounts: vec![account("amy", 70_000, 0, i64::MAX)],
                ..Default::default()
            },
            &BuildOptions {
                serial: 7,
                ..Default::default()
            },
        )
        .unwrap();
        let ident = Identity::default();
        let base = Arc::new(SnapshotCopy::from_bytes(base.into(), ident, None).unwrap());
        let d = Arc::new(
            SnapshotCopy::from_bytes(delta(&["zed"], [3, 7, 0, 0]).into(), ident, None).unwrap(),
        );
        let a = Answer {
            base: Some(Arc::clone(&base)),
            delta: Some(Arc::clone(&d)),
            serial: 7,
        };
        let s = a.snapshot().unwrap();
        assert!(s.account_by_name("zed", 1).is_some() && s.account_by_name("amy", 1).is_some());
        let other = Answer { serial: 8, ..a };
        let s = other.snapshot().unwrap();
        assert!(s.account_by_name("zed", 1).is_none() && s.account_by_name("amy", 1).is_some());
        // No shard of the base holds the key: the delta alone, if it names the base.
        let alone = Answer {
            base: None,
            delta: Some(Arc::clone(&d)),
            serial: 3,
        };
        assert!(alone
            .snapshot()
            .unwrap()
            .account_by_name("zed", 1)
            .is_some());
        let not = Answer { serial: 4, ..alone };
        assert!(not.snapshot().is_none());
    }
}
