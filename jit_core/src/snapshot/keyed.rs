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

use crate::snapshot::file::{
    open_trusted, parse_delta, read_base, read_trusted_delta, TrustError, TrustedImage,
};
use crate::snapshot::index::{id_key, name_key, IndexHead, Table, BIG_TABLE_MAX, FIRST_READ};
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
        /// The format minor the file states: what its writer promised its shards hold (1.6:
        /// in the gates file, a name's gate records and managed entry too).
        minor: u16,
    },
    /// A file without the index (an older jitd's): its base region.
    Base(TrustedImage),
}

/// What a read of several keys found, all from one open file (one generation of it).
pub enum KeyedMany {
    /// A file with the lookup index: for each query, the validated shard that holds its key
    /// (`None` when no shard can); the file's base serial and format minor.
    Shards {
        /// One entry per query, in order.
        shards: Vec<Option<Vec<u8>>>,
        /// As in [`Keyed::Shard`].
        serial: u32,
        /// As in [`Keyed::Shard`].
        minor: u16,
    },
    /// A file without the index: its base region.
    Base(TrustedImage),
}

/// Reads, of the trusted snapshot at `path`, what answers queries about `key` in `table`.
///
/// # Errors
/// The trust rules or a read failed (`Trust`), or a check of the header, the table, an index
/// entry or the shard failed (`Corrupt`): the caller answers as if there were no snapshot.
pub fn read_trusted_key(path: &CStr, table: Table, key: u32) -> Result<Keyed, KeyedError> {
    Ok(match read_trusted_keys(path, &[(table, key)])? {
        KeyedMany::Shards {
            mut shards,
            serial,
            minor,
        } => Keyed::Shard {
            shard: shards.pop().flatten(),
            serial,
            minor,
        },
        KeyedMany::Base(image) => Keyed::Base(image),
    })
}

/// A batch with more keys of one table than this reads that table's directory whole (if it
/// is at most [`DIR_WHOLE_MAX`]) instead of one entry per key.
const DIR_WHOLE_FROM_KEYS: usize = 16;
/// The largest directory read whole for a batch: 8192 buckets.
const DIR_WHOLE_MAX: u64 = 64 * 1024;

/// What a batch has read of one table: its big-key table (read, or copied from the first
/// page, once, when a query first needs it) and, for a batch with many keys of the table (the
/// groups of a process), its whole directory when it is small, instead of one read per key.
struct TableCache {
    big: Option<Vec<u8>>,
    dir: Option<Vec<u8>>,
    many: bool,
}

impl TableCache {
    fn new(keys: usize) -> TableCache {
        TableCache {
            big: None,
            dir: None,
            many: keys > DIR_WHOLE_FROM_KEYS,
        }
    }
}

/// As [`read_trusted_key`] for several queries, through one descriptor: every shard comes
/// from the same file, so answers put together from several keys never mix two generations
/// of it. A shard that holds several of the keys is read and checked once (a process's
/// groups: most of their gids fall into the few buckets of jit's own groups).
///
/// # Errors
/// As [`read_trusted_key`], for any of the queries.
pub fn read_trusted_keys(path: &CStr, queries: &[(Table, u32)]) -> Result<KeyedMany, KeyedError> {
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
        return Ok(KeyedMany::Base(read_base(len, read_into)?));
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
    let count = |t: Table| queries.iter().filter(|q| q.0 == t).count();
    let mut by_name = TableCache::new(count(Table::Name));
    let mut by_id = TableCache::new(count(Table::Id));
    // Each shard read and checked once, however many keys of the batch it holds.
    let mut seen: Vec<((u64, u64), Vec<u8>)> = Vec::new();
    let mut shards = Vec::with_capacity(queries.len());
    for &(table, key) in queries {
        let c = match table {
            Table::Name => &mut by_name,
            Table::Id => &mut by_id,
        };
        let big = match &mut c.big {
            Some(b) => b,
            slot @ None => {
                let (big_at, big_len) = head.big_table(table);
                if big_len > BIG_TABLE_MAX {
                    return Err(KeyedError::Corrupt(SnapshotError::Corrupt(
                        "big-key table too large",
                    )));
                }
                slot.insert(bytes_at(big_at, big_len)?)
            }
        };
        let range = match head.shard_of_big(big, key) {
            Some(r) => Some(r),
            None => match head.dir_entry(table, key) {
                Some((at, len)) => {
                    let (dir_at, dir_len) = head.dir_table(table);
                    if c.dir.is_none() && c.many && dir_len <= DIR_WHOLE_MAX {
                        c.dir = Some(bytes_at(dir_at, dir_len)?);
                    }
                    let held = c.dir.as_deref().and_then(|d| {
                        let from = usize::try_from(at.checked_sub(dir_at)?).ok()?;
                        d.get(from..from.checked_add(usize::try_from(len).ok()?)?)
                    });
                    match held {
                        Some(entry) => head.shard_of_dir_entry(entry),
                        None => head.shard_of_dir_entry(&bytes_at(at, len)?),
                    }
                }
                None => None,
            },
        };
        shards.push(match range {
            None => None,
            Some(r) => match seen.iter().find(|(at, _)| *at == r) {
                Some((_, bytes)) => Some(bytes.clone()),
                None => {
                    let bytes = read(r.0, r.1)?;
                    let s = Snapshot::parse(&bytes).map_err(KeyedError::Corrupt)?;
                    // A shard of another generation (bytes overwritten in place) is refused.
                    if s.generated_at() != head.generated_at {
                        return Err(KeyedError::Corrupt(SnapshotError::Corrupt(
                            "shard of another generation",
                        )));
                    }
                    seen.push((r, bytes.clone()));
                    Some(bytes)
                }
            },
        });
    }
    Ok(KeyedMany::Shards {
        shards,
        serial: head.serial,
        minor: head.minor,
    })
}

/// The view that answers for a key read by [`read_trusted_key`] or [`read_trusted_keys`]:
/// its `shard` with `delta` over it if the delta names `serial`, the file's base serial (a
/// shard states none of its own); the delta alone when no shard holds the key; `None` when
/// neither does (the file knows nothing of the key).
///
/// # Errors
/// The shard does not parse (it was checked when read: not expected).
pub fn layered<'s>(
    shard: Option<&'s [u8]>,
    delta: Option<&'s Snapshot<'s>>,
    serial: u32,
) -> Result<Option<Snapshot<'s>>, SnapshotError> {
    let delta = delta.filter(|d| d.applies_over(serial));
    Ok(match shard.map(Snapshot::parse).transpose()? {
        Some(s) => Some(match delta {
            Some(d) => s.with_delta(d, serial),
            None => s,
        }),
        None => delta.copied(),
    })
}

/// What of a trusted snapshot and its delta answers for one name (`jit-authorized-keys` at
/// every public-key login, pam_jit for a name it finds nowhere else): the name's shard, or the
/// base region of a file without the index, and the delta read after it (jitd renames a new
/// base into place before it removes the delta of the old one).
pub struct NamePart {
    keyed: Keyed,
    delta: Option<Vec<u8>>,
}

impl NamePart {
    /// Reads `name`'s part of the trusted snapshot at `path`, then the delta at `delta_path`.
    ///
    /// # Errors
    /// As [`read_trusted_key`].
    pub fn read(path: &CStr, delta_path: &CStr, name: &str) -> Result<NamePart, KeyedError> {
        let keyed = read_trusted_key(path, Table::Name, name_key(name))?;
        Ok(NamePart {
            keyed,
            delta: read_trusted_delta(delta_path),
        })
    }

    /// Answers `f` with the view that holds `name`'s records: the shard with the delta over it
    /// (the delta alone when no shard holds the name; `None` when neither does), or the base
    /// region with the delta over it.
    ///
    /// # Errors
    /// The base region or the shard does not parse.
    pub fn answer<T>(
        &self,
        f: impl FnOnce(Option<&Snapshot<'_>>) -> T,
    ) -> Result<T, SnapshotError> {
        let delta = self.delta.as_deref().and_then(parse_delta);
        match &self.keyed {
            Keyed::Shard { shard, serial, .. } => {
                let view = layered(shard.as_deref(), delta.as_ref(), *serial)?;
                Ok(f(view.as_ref()))
            }
            Keyed::Base(image) => {
                let s = image.parse()?.over(delta.as_ref());
                Ok(f(Some(&s)))
            }
        }
    }
}

/// The first format minor whose gates file carries the lookup index with, in each name's
/// shard, that person's gate records and managed-list entry (docs/snapshot-format.md §10.7).
pub const GATES_INDEX_MINOR: u16 = 6;

/// The first format minor whose gates file holds, in each name's shard, that person's account
/// records too: the shard then answers everything pam_jit asks of the file about the person
/// (account records, gate records, managed entry), and its login is decided from it.
pub const GATES_ACCOUNTS_MINOR: u16 = 8;

/// Most groups of a process looked up one by one ([`GatesPart::read`]); a process holding
/// more is answered from the whole file. Each gid costs ~0.3 µs once the id directory is read
/// (4096 gids ~1.2 ms; the whole gates file at 50 000 grants ~44 ms): users of directory
/// services often hold hundreds of groups, and were charged the whole file above 64.
pub const GATES_PART_MAX_GIDS: usize = 4096;

/// What of the trusted gates file answers for one person and for the groups a process holds,
/// read without the rest of the file (pam_jit and sudo_jit, at every login and sudo of any
/// user): the person's shard and each group's, through one descriptor (one generation of
/// the file), then the delta, read after them as every reader of the two files does.
pub struct GatesPart {
    name: Option<Vec<u8>>,
    gids: Vec<Option<Vec<u8>>>,
    delta: Option<Vec<u8>>,
    serial: u32,
    minor: u16,
}

impl GatesPart {
    /// Reads `name`'s shard and the shards of `gids` from the gates file at `path`, then the
    /// delta at `delta_path`. `None` unless the file carries the index of
    /// [`GATES_INDEX_MINOR`] or later, there are at most [`GATES_PART_MAX_GIDS`] distinct
    /// gids, and every read and check succeeds: the caller then reads the whole file, as
    /// before.
    pub fn read(path: &CStr, delta_path: &CStr, name: &str, gids: &[u32]) -> Option<GatesPart> {
        let mut ids: Vec<u32> = gids.to_vec();
        ids.sort_unstable();
        ids.dedup();
        if ids.len() > GATES_PART_MAX_GIDS {
            return None;
        }
        let queries: Vec<(Table, u32)> = std::iter::once((Table::Name, name_key(name)))
            .chain(ids.iter().map(|&g| (Table::Id, id_key(g))))
            .collect();
        let KeyedMany::Shards {
            mut shards,
            serial,
            minor,
        } = read_trusted_keys(path, &queries).ok()?
        else {
            return None;
        };
        if minor < GATES_INDEX_MINOR || shards.is_empty() {
            return None;
        }
        let name = shards.remove(0);
        // Many gids share a shard (or none): each view once.
        shards.sort_unstable();
        shards.dedup();
        Some(GatesPart {
            name,
            gids: shards,
            delta: read_trusted_delta(delta_path),
            serial,
            minor,
        })
    }

    /// A part made of bytes read elsewhere: `name` the person's shard (a whole image answers
    /// the same), `delta` the delta file's bytes, `serial` the base serial, `minor` what the
    /// file states. For tests of the modules' decisions.
    pub fn from_parts(
        name: Option<Vec<u8>>,
        delta: Option<Vec<u8>>,
        serial: u32,
        minor: u16,
    ) -> GatesPart {
        GatesPart {
            name,
            gids: Vec::new(),
            delta,
            serial,
            minor,
        }
    }

    /// The format minor the file states.
    pub fn minor(&self) -> u16 {
        self.minor
    }

    /// The delta read with the shards, parsed (`None`: none, or damaged: ignored, as every
    /// reader of the two files does).
    pub fn parse_delta(&self) -> Option<Snapshot<'_>> {
        self.delta.as_deref().and_then(parse_delta)
    }

    /// The view of the person's own shard with `delta` (this part's, from
    /// [`Self::parse_delta`]) over it; `None` when the file knows nothing of the person.
    ///
    /// # Errors
    /// As [`Self::answer`].
    pub fn own<'s>(
        &'s self,
        delta: Option<&'s Snapshot<'s>>,
    ) -> Result<Option<Snapshot<'s>>, SnapshotError> {
        layered(self.name.as_deref(), delta, self.serial)
    }

    /// Answers `f` with the view of the person's own shard (their accounts, gate records,
    /// managed entry and memberships, with the delta) and the views of each held group's shard
    /// (each group with all its members, with the delta).
    ///
    /// # Errors
    /// A shard that no longer parses (it was checked when read: not expected).
    pub fn answer<T>(
        &self,
        f: impl FnOnce(Option<&Snapshot<'_>>, &[Snapshot<'_>]) -> T,
    ) -> Result<T, SnapshotError> {
        let delta = self.parse_delta();
        let name = self.own(delta.as_ref())?;
        let mut groups = Vec::with_capacity(self.gids.len());
        for g in &self.gids {
            groups.extend(layered(g.as_deref(), delta.as_ref(), self.serial)?);
        }
        Ok(f(name.as_ref(), &groups))
    }
}
