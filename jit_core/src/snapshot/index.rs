//! The lookup index (format 1.1): lets a reader answer one NSS query by reading the header, one
//! directory entry and one small shard, instead of copying and validating the whole file.
//!
//! Every query has a 32-bit key: [`name_key`] for a user or group name, [`id_key`] for a uid or
//! gid. Each key owns the records needed to answer every query with that key (see
//! [`super::index_writer`]); keys are grouped into `count` buckets by `key % count`, and each bucket's
//! records are written as a *shard*: a complete, self-contained snapshot image (1.0 sections
//! only, its own CRC32C) that the ordinary [`Snapshot::parse`](super::Snapshot::parse)
//! validates. A key whose records are large (a group with many members, such as `jit-users`) gets
//! a shard of its own, listed in a small "big" table, so the bucket it hashes to stays small and
//! every other key in that bucket stays cheap.
//!
//! Integrity: the header and section table carry `head_crc`; each shard carries its own CRC and
//! must state the same `generated_at` as the header. A directory entry is not checksummed: a
//! damaged one points at bytes that fail the shard's CRC (refused) or at another valid shard of
//! the file, which does not hold the key (not found). Either way no record is ever torn.

use super::format::*;
use super::reader::rd_u32;
use super::SnapshotError;
use crate::crc32c::crc32c;

/// A key whose records exceed this many account and member records gets its own shard.
pub const BIG_KEY_RECORDS: usize = 32;

/// The key of a user or group name query.
pub fn name_key(name: &str) -> u32 {
    crc32c(name.as_bytes())
}

/// The key of a uid or gid query.
pub fn id_key(id: u32) -> u32 {
    id
}

/// Which of the two tables a query uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Table {
    /// Account by name, group by name, a user's gids (initgroups).
    Name,
    /// Account by uid, group by gid.
    Id,
}

/// The CRC32C that covers the header and section table (`head_crc`): bytes `[16, 40)` and
/// `[44, 64 + 16 * section_count)`. `None` if `data` is too short for its table.
pub fn head_crc(data: &[u8]) -> Option<u32> {
    let nsec = rd_u32(data, 32) as usize;
    if nsec > MAX_SECTIONS {
        return None;
    }
    let end = HEADER_SIZE + nsec * SECTION_ENTRY_SIZE;
    let a = data.get(16..HEAD_CRC_AT)?;
    let b = data.get(HEAD_CRC_AT + 4..end)?;
    let mut joined = [0u8; HEADER_SIZE + MAX_SECTIONS * SECTION_ENTRY_SIZE];
    let n = a.len() + b.len();
    joined.get_mut(..a.len())?.copy_from_slice(a);
    joined.get_mut(a.len()..n)?.copy_from_slice(b);
    Some(crc32c(joined.get(..n)?))
}

/// Where one section is in the file: `(absolute offset, length, count)`.
pub type SectionRef = (u64, u64, u32);

/// What a lazy reader learns from the header and section table of an indexed file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexHead {
    /// The file's `generated_at`; every shard must state the same.
    pub generated_at: i64,
    /// jitd's configured uid range, if the header states one.
    pub uid_range: Option<(u32, u32)>,
    /// The base serial (1.4, covered by `head_crc`): which delta may be read over the file.
    pub serial: u32,
    /// The format minor the header states (not covered by `head_crc`; readers use it only to
    /// know what a writer of that minor promised, docs/snapshot-format.md §7).
    pub minor: u16,
    name_dir: SectionRef,
    id_dir: SectionRef,
    name_big: SectionRef,
    id_big: SectionRef,
    shards: SectionRef,
    /// The account listing (1.5): `(absolute offset, length, records)`.
    pub listing: Option<SectionRef>,
}

/// How many bytes at the start of the file hold the header and the largest table a reader
/// accepts.
pub const HEAD_PREFIX: usize = HEADER_SIZE + MAX_SECTIONS * SECTION_ENTRY_SIZE;

/// What a lazy reader reads first: one page, which holds the header, the largest table a
/// reader accepts and, as jitd writes the file, the big-key tables and often the directory
/// entry (a page costs the same `pread` as the header alone).
pub const FIRST_READ: usize = 4096;
// The page holds the header and the largest section table a reader accepts.
const _: () = assert!(FIRST_READ >= HEAD_PREFIX);

/// The largest big-key table a lazy reader accepts (one 16-byte entry per key with a shard of
/// its own: 4 096 of them); a larger one is refused as corrupt.
pub const BIG_TABLE_MAX: u64 = 64 * 1024;

impl IndexHead {
    /// Checks the header and section table in `prefix` (the file's first bytes, up to
    /// [`HEAD_PREFIX`]) of a file whose size is `file_size`.
    ///
    /// `Ok(None)`: a valid header of a file without the index (format 1.0); the reader then
    /// reads the whole file as before.
    ///
    /// # Errors
    /// Bad magic, unknown major, a `file_len` that is not the file's size, a table that does not
    /// fit or fails `head_crc`, or an index section out of bounds or with the wrong size.
    pub fn parse(prefix: &[u8], file_size: u64) -> Result<Option<IndexHead>, SnapshotError> {
        if prefix.len() < HEADER_SIZE {
            return Err(SnapshotError::BadSize);
        }
        if prefix.get(0..8) != Some(&MAGIC[..]) {
            return Err(SnapshotError::BadMagic);
        }
        let major = u16::from_le_bytes([
            prefix.get(8).copied().unwrap_or(0),
            prefix.get(9).copied().unwrap_or(0),
        ]);
        if major != MAJOR {
            return Err(SnapshotError::UnsupportedVersion(major));
        }
        let file_len = u64::from(rd_u32(prefix, 16)) | (u64::from(rd_u32(prefix, 20)) << 32);
        if file_len != file_size {
            return Err(SnapshotError::BadSize);
        }
        let minor = u16::from_le_bytes([
            prefix.get(10).copied().unwrap_or(0),
            prefix.get(11).copied().unwrap_or(0),
        ]);
        if minor == 0 {
            return Ok(None);
        }
        let nsec = rd_u32(prefix, 32) as usize;
        if nsec > MAX_SECTIONS {
            return Err(SnapshotError::Corrupt("too many sections"));
        }
        let table_end = HEADER_SIZE + nsec * SECTION_ENTRY_SIZE;
        let crc = head_crc(prefix).ok_or(SnapshotError::Corrupt("section table past end"))?;
        if crc != rd_u32(prefix, HEAD_CRC_AT) {
            return Err(SnapshotError::BadChecksum);
        }
        let mut found: [Option<SectionRef>; 5] = [None; 5];
        let mut listing: Option<SectionRef> = None;
        for i in 0..nsec {
            let e = HEADER_SIZE + i * SECTION_ENTRY_SIZE;
            let id = rd_u32(prefix, e);
            let off = u64::from(rd_u32(prefix, e + 4));
            let len = u64::from(rd_u32(prefix, e + 8));
            let count = rd_u32(prefix, e + 12);
            if off < table_end as u64 || off + len > file_size {
                return Err(SnapshotError::Corrupt("section past end"));
            }
            let slot = id
                .checked_sub(section::NAME_DIR)
                .and_then(|k| found.get_mut(k as usize));
            let slot = match slot {
                Some(slot) => Some(slot),
                None if id == section::LISTING && minor >= 5 => Some(&mut listing),
                None => None,
            };
            if let Some(slot) = slot {
                if slot.is_some() {
                    return Err(SnapshotError::Corrupt("duplicate section"));
                }
                *slot = Some((off, len, count));
            }
        }
        let [Some(name_dir), Some(id_dir), Some(name_big), Some(id_big), Some(shards)] = found
        else {
            return Ok(None);
        };
        for (s, size) in [
            (name_dir, DIR_ENTRY_SIZE),
            (id_dir, DIR_ENTRY_SIZE),
            (name_big, BIG_ENTRY_SIZE),
            (id_big, BIG_ENTRY_SIZE),
        ] {
            if s.1 != u64::from(s.2) * size as u64 {
                return Err(SnapshotError::Corrupt(
                    "section size disagrees with its count",
                ));
            }
        }
        let lo = rd_u32(prefix, UID_MIN_AT);
        let hi = rd_u32(prefix, UID_MAX_AT);
        Ok(Some(IndexHead {
            generated_at: i64::from(rd_u32(prefix, 24)) | (i64::from(rd_u32(prefix, 28)) << 32),
            serial: rd_u32(prefix, SERIAL_AT),
            minor,
            uid_range: (lo != 0 && lo <= hi).then_some((lo, hi)),
            name_dir,
            id_dir,
            name_big,
            id_big,
            shards,
            listing,
        }))
    }

    /// Where the big-key table of `table` is: `(absolute offset, length)`.
    pub fn big_table(&self, table: Table) -> (u64, u64) {
        let s = match table {
            Table::Name => self.name_big,
            Table::Id => self.id_big,
        };
        (s.0, s.1)
    }

    /// Where the directory of `table` is: `(absolute offset, length)`.
    pub fn dir_table(&self, table: Table) -> (u64, u64) {
        let d = match table {
            Table::Name => self.name_dir,
            Table::Id => self.id_dir,
        };
        (d.0, u64::from(d.2) * DIR_ENTRY_SIZE as u64)
    }

    /// Where the directory entry for `key` is: `(absolute offset, DIR_ENTRY_SIZE)`, or `None`
    /// if the directory is empty (no shard can hold the key).
    pub fn dir_entry(&self, table: Table, key: u32) -> Option<(u64, u64)> {
        let d = match table {
            Table::Name => self.name_dir,
            Table::Id => self.id_dir,
        };
        let bucket = key.checked_rem(d.2)?;
        Some((
            d.0 + u64::from(bucket) * DIR_ENTRY_SIZE as u64,
            DIR_ENTRY_SIZE as u64,
        ))
    }

    /// The shard a directory entry (as read) points at, `(absolute offset, length)`; `None` for
    /// an empty bucket or an entry pointing outside SHARDS.
    pub fn shard_of_dir_entry(&self, entry: &[u8]) -> Option<(u64, u64)> {
        self.shard_at(rd_u32(entry, 0), rd_u32(entry, 4))
    }

    /// The shard of `key` in a big-key table (as read), if the key has one. Entries whose own
    /// CRC fails are skipped.
    pub fn shard_of_big(&self, big: &[u8], key: u32) -> Option<(u64, u64)> {
        big.chunks_exact(BIG_ENTRY_SIZE)
            .filter(|e| rd_u32(e, 0) == key)
            .find(|e| e.get(..12).map(crc32c) == Some(rd_u32(e, 12)))
            .and_then(|e| self.shard_at(rd_u32(e, 4), rd_u32(e, 8)))
    }

    fn shard_at(&self, rel: u32, len: u32) -> Option<(u64, u64)> {
        let (rel, len) = (u64::from(rel), u64::from(len));
        // A shard is copied whole: never more than a reader copies at once (jitd's are KBs,
        // a big group's a few MB).
        (len >= HEADER_SIZE as u64
            && len <= crate::constants::MAX_SNAPSHOT_BYTES
            && rel + len <= self.shards.1)
            .then_some((self.shards.0 + rel, len))
    }
}
