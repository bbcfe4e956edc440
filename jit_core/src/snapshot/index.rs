//! The lookup index (format 1.1): lets a reader answer one NSS query by reading the header, one
//! directory entry and one small shard, instead of copying and validating the whole file.
//!
//! Every query has a 32-bit key: [`name_key`] for a user or group name, [`id_key`] for a uid or
//! gid. Each key owns the records needed to answer every query with that key (see
//! [`build_index`]); keys are grouped into `count` buckets by `key % count`, and each bucket's
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
use super::writer::{build_image, GroupIn, Input, WriteError};
use super::SnapshotError;
use crate::crc32c::crc32c;
use crate::types::{Account, SnapshotData, GROUP_KIND_PRIVATE};
use std::collections::{BTreeMap, HashMap};

/// A key whose records exceed this many account and member records gets its own shard.
pub const BIG_KEY_RECORDS: usize = 32;
/// Average number of keys the writer puts in one bucket: each shard's fixed cost (a 240-byte
/// header and table) is spread over this many keys, and a shard stays a few KiB.
const KEYS_PER_BUCKET: usize = 8;

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

fn rd_u32(b: &[u8], off: usize) -> u32 {
    b.get(off..off.saturating_add(4))
        .and_then(|s| <[u8; 4]>::try_from(s).ok())
        .map_or(0, u32::from_le_bytes)
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
    name_dir: SectionRef,
    id_dir: SectionRef,
    name_big: SectionRef,
    id_big: SectionRef,
    shards: SectionRef,
}

/// How many bytes at the start of the file hold the header and the largest table a reader
/// accepts.
pub const HEAD_PREFIX: usize = HEADER_SIZE + MAX_SECTIONS * SECTION_ENTRY_SIZE;

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
            uid_range: (lo != 0 && lo <= hi).then_some((lo, hi)),
            name_dir,
            id_dir,
            name_big,
            id_big,
            shards,
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
        (len >= HEADER_SIZE as u64 && rel + len <= self.shards.1)
            .then_some((self.shards.0 + rel, len))
    }
}

/// What one key owns: indexes into the data's accounts and groups, and single memberships
/// `(group, member)` that make a user's gids answerable without the whole group. Plain
/// vectors, sorted and deduplicated by [`Owned::settle`] before use: most keys own one or two
/// records, and a tree set per key was most of the index's memory and allocations.
#[derive(Default)]
struct Owned {
    accounts: Vec<usize>,
    groups: Vec<usize>,
    stubs: Vec<(usize, usize)>,
}

impl Owned {
    /// Sorts and deduplicates (a private group's closure repeats the accounts of its name).
    fn settle(&mut self) {
        for v in [&mut self.accounts, &mut self.groups] {
            v.sort_unstable();
            v.dedup();
        }
        self.stubs.sort_unstable();
        self.stubs.dedup();
    }

    /// Records these keys own (settled).
    fn weight(&self, data: &SnapshotData) -> usize {
        let members: usize = self
            .groups
            .iter()
            .filter_map(|&g| data.groups.get(g))
            .map(|g| g.members.len())
            .sum();
        self.accounts.len() + members + self.stubs.len()
    }

    fn absorb(&mut self, other: &Owned) {
        self.accounts.extend_from_slice(&other.accounts);
        self.groups.extend_from_slice(&other.groups);
        self.stubs.extend_from_slice(&other.stubs);
    }

    /// The self-contained image of these records (settled), borrowing them from `data`.
    fn image(&self, data: &SnapshotData) -> Result<Vec<u8>, WriteError> {
        let accounts: Vec<&Account> = self
            .accounts
            .iter()
            .filter_map(|&i| data.accounts.get(i))
            .collect();
        // Whole groups, then each stub's group with only the stubs' members, in group order.
        let mut groups: Vec<(usize, GroupIn<'_>)> = self
            .groups
            .iter()
            .filter_map(|&g| {
                data.groups.get(g).map(|entry| {
                    (
                        g,
                        GroupIn {
                            entry,
                            members: entry.members.iter().collect(),
                        },
                    )
                })
            })
            .collect();
        let whole = groups.len();
        for &(g, m) in &self.stubs {
            if self.groups.binary_search(&g).is_ok() {
                continue; // the whole group is here already
            }
            let Some((entry, m_rec)) = data
                .groups
                .get(g)
                .and_then(|e| e.members.get(m).map(|r| (e, r)))
            else {
                continue;
            };
            match groups.get_mut(whole..).and_then(|t| t.last_mut()) {
                Some((last, gi)) if *last == g => gi.members.push(m_rec),
                _ => groups.push((
                    g,
                    GroupIn {
                        entry,
                        members: vec![m_rec],
                    },
                )),
            }
        }
        groups.sort_by_key(|(g, _)| *g);
        build_image(
            Input {
                generated_at: data.generated_at,
                uid_range: None,
                accounts,
                groups: groups.into_iter().map(|(_, gi)| gi).collect(),
                grants: Vec::new(),
                managed: Vec::new(),
                blank_grant_ids: true,
                serial: 0,
                bases: None,
            },
            Vec::new(),
        )
    }
}

/// The five index sections, ready to be placed: `(id, bytes, count)`.
pub(crate) type IndexSections = Vec<(u32, Vec<u8>, usize)>;

/// Builds the lookup index of `data` (accounts and groups; gate records are not indexed).
///
/// Name key of a name `n` owns: the accounts called `n`, the group called `n` with all its
/// members, `n`'s own memberships of every non-private group (so `initgroups` of `n` is
/// answered), and for each private group it holds, the accounts whose uid is its gid (the group
/// is visible exactly while such an account is live). Id key of `i` owns the accounts with uid
/// `i` and the groups with gid `i` (and, for private groups, the accounts with that uid).
///
/// # Errors
/// As [`super::build_snapshot`], or more shard data than 32-bit offsets address.
pub(crate) fn build_index(data: &SnapshotData) -> Result<IndexSections, WriteError> {
    let mut by_uid: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
    for (i, a) in data.accounts.iter().enumerate() {
        by_uid.entry(a.uid).or_default().push(i);
    }
    let mut names: BTreeMap<u32, Owned> = BTreeMap::new();
    let mut ids: BTreeMap<u32, Owned> = BTreeMap::new();
    // Per name key, one name and whether another name has the same key: a big key must not
    // share its hash with another name.
    let mut names_of_key: HashMap<u32, (&str, bool)> = HashMap::new();
    for (i, a) in data.accounts.iter().enumerate() {
        names.entry(name_key(&a.name)).or_default().accounts.push(i);
        note_name(&mut names_of_key, &a.name);
        ids.entry(id_key(a.uid)).or_default().accounts.push(i);
    }
    for (g, e) in data.groups.iter().enumerate() {
        let closure: &[usize] = if e.kind == GROUP_KIND_PRIVATE {
            by_uid.get(&e.gid).map_or(&[], Vec::as_slice)
        } else {
            &[]
        };
        let n = names.entry(name_key(&e.name)).or_default();
        n.groups.push(g);
        n.accounts.extend(closure.iter().copied());
        note_name(&mut names_of_key, &e.name);
        let d = ids.entry(id_key(e.gid)).or_default();
        d.groups.push(g);
        d.accounts.extend(closure.iter().copied());
        if e.kind != GROUP_KIND_PRIVATE {
            for (m, mem) in e.members.iter().enumerate() {
                names
                    .entry(name_key(&mem.name))
                    .or_default()
                    .stubs
                    .push((g, m));
                note_name(&mut names_of_key, &mem.name);
            }
        }
    }
    for o in names.values_mut().chain(ids.values_mut()) {
        o.settle();
    }
    let (by_name, by_id) = crate::par::join(
        || {
            tables(data, &names, |k| {
                names_of_key.get(&k).is_none_or(|&(_, clash)| !clash)
            })
        },
        || tables(data, &ids, |_| true),
    );
    let (name_dir, name_big, name_shards) = by_name?;
    let (id_dir, id_big, id_shards) = by_id?;
    // Shard offsets are relative to the start of SHARDS: the id table's come after the name's.
    let base = len_u32(name_shards.len())?;
    let rebase = |mut table: Vec<u8>, entry: usize, at: usize| -> Result<Vec<u8>, WriteError> {
        for e in table.chunks_exact_mut(entry) {
            let len = rd_u32(e, at + 4);
            if len == 0 {
                continue;
            }
            let off = rd_u32(e, at)
                .checked_add(base)
                .ok_or(WriteError::TooLarge)?;
            if let Some(s) = e.get_mut(at..at + 4) {
                s.copy_from_slice(&off.to_le_bytes());
            }
            if entry == BIG_ENTRY_SIZE {
                let crc = crc32c(e.get(..12).unwrap_or(&[]));
                if let Some(s) = e.get_mut(12..16) {
                    s.copy_from_slice(&crc.to_le_bytes());
                }
            }
        }
        Ok(table)
    };
    let id_dir = rebase(id_dir, DIR_ENTRY_SIZE, 0)?;
    let id_big = rebase(id_big, BIG_ENTRY_SIZE, 4)?;
    let mut shards = name_shards;
    shards.extend_from_slice(&id_shards);
    let n_name_dir = name_dir.len() / DIR_ENTRY_SIZE;
    let n_id_dir = id_dir.len() / DIR_ENTRY_SIZE;
    let n_name_big = name_big.len() / BIG_ENTRY_SIZE;
    let n_id_big = id_big.len() / BIG_ENTRY_SIZE;
    Ok(vec![
        (section::NAME_BIG, name_big, n_name_big),
        (section::ID_BIG, id_big, n_id_big),
        (section::NAME_DIR, name_dir, n_name_dir),
        (section::ID_DIR, id_dir, n_id_dir),
        (section::SHARDS, shards, 0),
    ])
}

/// Records that `name` has a name key; marks the key if another name already had it.
fn note_name<'a>(seen: &mut HashMap<u32, (&'a str, bool)>, name: &'a str) {
    let e = seen.entry(name_key(name)).or_insert((name, false));
    if e.0 != name {
        e.1 = true;
    }
}

fn len_u32(n: usize) -> Result<u32, WriteError> {
    u32::try_from(n).map_err(|_| WriteError::TooLarge)
}

/// One table's bytes: its directory, its big-key table and its shards.
type TableBytes = (Vec<u8>, Vec<u8>, Vec<u8>);

/// One table: its directory, its big-key table and its shards (offsets relative to the first
/// shard). `may_be_big(key)` says whether a heavy key may get its own shard.
fn tables(
    data: &SnapshotData,
    keys: &BTreeMap<u32, Owned>,
    may_be_big: impl Fn(u32) -> bool,
) -> Result<TableBytes, WriteError> {
    let mut shards = Vec::new();
    let mut big = Vec::new();
    let mut small: Vec<(u32, &Owned)> = Vec::new();
    for (&k, o) in keys {
        if o.weight(data) > BIG_KEY_RECORDS && may_be_big(k) {
            let img = o.image(data)?;
            let off = len_u32(shards.len())?;
            let mut e = [0u8; BIG_ENTRY_SIZE];
            e[0..4].copy_from_slice(&k.to_le_bytes());
            e[4..8].copy_from_slice(&off.to_le_bytes());
            e[8..12].copy_from_slice(&len_u32(img.len())?.to_le_bytes());
            let crc = crc32c(&e[..12]);
            e[12..16].copy_from_slice(&crc.to_le_bytes());
            big.extend_from_slice(&e);
            shards.extend_from_slice(&img);
        } else {
            small.push((k, o));
        }
    }
    let count = len_u32(small.len().div_ceil(KEYS_PER_BUCKET).max(1))?;
    let mut buckets: Vec<Owned> = (0..count).map(|_| Owned::default()).collect();
    for (k, o) in small {
        if let Some(b) = k
            .checked_rem(count)
            .and_then(|b| buckets.get_mut(b as usize))
        {
            b.absorb(o);
        }
    }
    let mut dir = Vec::with_capacity(buckets.len() * DIR_ENTRY_SIZE);
    for b in &mut buckets {
        if b.accounts.is_empty() && b.groups.is_empty() && b.stubs.is_empty() {
            dir.extend_from_slice(&[0u8; DIR_ENTRY_SIZE]);
            continue;
        }
        b.settle();
        let img = b.image(data)?;
        dir.extend_from_slice(&len_u32(shards.len())?.to_le_bytes());
        dir.extend_from_slice(&len_u32(img.len())?.to_le_bytes());
        shards.extend_from_slice(&img);
    }
    Ok((dir, big, shards))
}
