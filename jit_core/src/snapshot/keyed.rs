//! One query's part of a trusted snapshot, read once and not kept: the header and section
//! table, the key's big-key entry or directory entry, and the one shard that holds the key
//! (docs/snapshot-format.md §10.3). For a process that answers one question and exits:
//! `jit-authorized-keys`, which sshd starts at every public-key login of every user, local
//! users included, and which read the whole base region before (a third of the file: ~4 MB
//! at 10 000 grants, ~19 MB at 50 000, every login).
//!
//! The checks are the lazy reader's (`index::IndexHead`, a private copy of every byte used,
//! each shard validated whole by `Snapshot::parse` and required to state the header's
//! `generated_at`); the NSS module sequences the same checks with its per-process cache
//! (nss_jit/src/shard.rs). A file without the index is read as its base region, as before.

use std::ffi::CStr;
use std::os::unix::fs::FileExt;

use crate::snapshot::file::{open_trusted, read_base, TrustError, TrustedImage};
use crate::snapshot::index::{IndexHead, Table, BIG_TABLE_MAX, FIRST_READ};
use crate::snapshot::{Snapshot, SnapshotError};

/// Why a keyed read gave nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyedError {
    /// The file failed the trust rules or a read failed.
    Trust(TrustError),
    /// The header, the table, an index entry or the shard failed a check.
    Corrupt(SnapshotError),
}

impl std::fmt::Display for KeyedError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyedError::Trust(e) => e.fmt(f),
            KeyedError::Corrupt(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for KeyedError {}

impl From<TrustError> for KeyedError {
    fn from(e: TrustError) -> Self {
        KeyedError::Trust(e)
    }
}

/// What a keyed read found.
pub enum Keyed {
    /// A file with the lookup index: the validated shard that holds the key (`None` when no
    /// shard can), and the file's base serial (format 1.4), which a delta must name to be read
    /// over the shard (`Snapshot::with_delta`).
    Shard {
        /// The shard's bytes, checked as a whole image (`Snapshot::parse`).
        shard: Option<Vec<u8>>,
        /// The base serial of the file the shard came from.
        serial: u32,
    },
    /// A file without the index (an older jitd's, or the gates file): its base region.
    Base(TrustedImage),
}

/// Reads, of the trusted snapshot at `path`, what answers queries about `key` in `table`.
///
/// # Errors
/// The trust rules or a read failed (`Trust`), or a check of the header, the table, an index
/// entry or the shard failed (`Corrupt`): the caller answers as if there were no snapshot.
pub fn read_trusted_key(path: &CStr, table: Table, key: u32) -> Result<Keyed, KeyedError> {
    let (fd, st) = open_trusted(path)?;
    let file = std::fs::File::from(fd);
    let size = u64::try_from(st.st_size).map_err(|_| TrustError::BadSize)?;
    let read_into = |at: u64, buf: &mut [u8]| -> Result<(), TrustError> {
        file.read_exact_at(buf, at)
            .map_err(|e| TrustError::Os(e.raw_os_error().unwrap_or(libc::EIO)))
    };
    let read = |at: u64, len: u64| -> Result<Vec<u8>, KeyedError> {
        let mut buf = vec![0; usize::try_from(len).map_err(|_| TrustError::BadSize)?];
        read_into(at, &mut buf)?;
        Ok(buf)
    };
    let first = read(0, size.min(FIRST_READ as u64))?;
    let Some(head) = IndexHead::parse(&first, size).map_err(KeyedError::Corrupt)? else {
        let len = usize::try_from(size).map_err(|_| TrustError::BadSize)?;
        return Ok(Keyed::Base(read_base(len, read_into)?));
    };
    // The big-key tables and the first directory entries usually lie in the first page.
    let bytes_at = |at: u64, len: u64| -> Result<Vec<u8>, KeyedError> {
        let held = usize::try_from(at).ok().and_then(|a| {
            let end = a.checked_add(usize::try_from(len).ok()?)?;
            first.get(a..end)
        });
        match held {
            Some(b) => Ok(b.to_vec()),
            None => read(at, len),
        }
    };
    let (big_at, big_len) = head.big_table(table);
    if big_len > BIG_TABLE_MAX {
        return Err(KeyedError::Corrupt(SnapshotError::Corrupt(
            "big-key table too large",
        )));
    }
    let range = match head.shard_of_big(&bytes_at(big_at, big_len)?, key) {
        Some(r) => Some(r),
        None => match head.dir_entry(table, key) {
            Some((at, len)) => head.shard_of_dir_entry(&bytes_at(at, len)?),
            None => None,
        },
    };
    let shard = match range {
        None => None,
        Some((at, len)) => {
            let bytes = read(at, len)?;
            let s = Snapshot::parse(&bytes).map_err(KeyedError::Corrupt)?;
            // A shard of another generation (bytes overwritten in place) is refused.
            if s.generated_at() != head.generated_at {
                return Err(KeyedError::Corrupt(SnapshotError::Corrupt(
                    "shard of another generation",
                )));
            }
            Some(bytes)
        }
    };
    Ok(Keyed::Shard {
        shard,
        serial: head.serial,
    })
}
