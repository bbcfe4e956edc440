//! Writes the lookup index (format 1.1, read by [`super::index`]) of a projection, shard by
//! shard, straight onto the image's sink.
//!
//! What a key owns. The name key of a name `n` owns the accounts called `n`, the group called
//! `n` with all its members, `n`'s own memberships of every non-private group (so `initgroups`
//! of `n` is answered), and for each private group it holds, the accounts whose uid is its gid
//! (the group is visible exactly while such an account is live). The id key of `i` owns the
//! accounts with uid `i` and the groups with gid `i` (and, for private groups, the accounts with
//! that uid). The gates file's index (format 1.6, `IndexKind::Gates`) is another: the name key
//! of `n` owns only the gate records of the person `n`, `n`'s managed-list entry and (1.7)
//! `n`'s own member records of jit's groups, the id key of `i` only jit's own groups with gid
//! `i`, without their members (1.7; whole in 1.6, which put every member of `jit-users` in the
//! shard every jit user's `sudo` read). So pam_jit and sudo_jit decide a person from a few
//! small shards, and the file stays well under the readers' size cap (a full index made it
//! 70 MB at 50 000 grants).
//!
//! Memory. Each table is one flat, sorted vector of `(key, record)` pairs (16 bytes each); a
//! key's records are a run of it, a bucket's the run of its keys once the pairs are renumbered
//! by bucket. A tree of per-key vectors was ~9 MiB at 10 000 grants. The shards are built in
//! batches, by this thread and one other (`par::in_order`), and appended to the sink as each
//! batch is done: the directories and big-key tables before them, whose sizes are known once
//! the keys are counted, are reserved and placed at the end. Only a few batches of shards are
//! ever in memory, where the whole SHARDS section (~6 MiB at 10 000 grants) used to be.

use std::ops::Range;

use super::format::*;
use super::index::{id_key, name_key, BIG_KEY_RECORDS};
use super::writer::{build_image, GroupIn, IndexKind, Input, Placer, Sink, WriteError};
use crate::constants::GROUP_JIT_SUDO;
use crate::crc32c::crc32c;
use crate::types::{Account, GateGrant, SnapshotData, GROUP_KIND_JIT, GROUP_KIND_PRIVATE};

/// Average number of keys the writer puts in one bucket: each shard's fixed cost (a 240-byte
/// header and table) is spread over this many keys, and a shard stays a few KiB.
const KEYS_PER_BUCKET: usize = 8;
/// Shards built per batch: enough work per batch that handing batches between threads costs
/// nothing measurable, few enough that a batch stays a few hundred KiB.
const SHARDS_PER_BATCH: usize = 64;

/// One record a key owns, in the order a shard lists them: accounts, whole groups, then single
/// memberships `(group, member)` that make a user's gids answerable without the whole group.
/// Indexes into the projection's accounts and groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Rec {
    Account(u32),
    Group(u32),
    Stub(u32, u32),
    /// A group's record without its members (gates file only, by gid): its members are found
    /// by their names.
    Bare(u32),
    /// A gate record (gates file only), by its person's name.
    Gate(u32),
    /// A managed-list entry (gates file only), by its name.
    Managed(u32),
}

/// `(key, record)`, or once renumbered, `(bucket, record)`.
type Pair = (u32, Rec);

fn idx(i: usize) -> Result<u32, WriteError> {
    u32::try_from(i).map_err(|_| WriteError::TooLarge)
}

/// The pairs of the name table and of the id table, each sorted and without repeats (a
/// private group's closure repeats the accounts of its name). The gates file's index is
/// [`gates_pairs`] (`with_gates`: the image carries gate records and the managed list); the
/// public one never owns either.
fn pairs(
    data: &SnapshotData,
    kind: IndexKind,
    with_gates: bool,
) -> Result<(Vec<Pair>, Vec<Pair>), WriteError> {
    if kind == IndexKind::Gates {
        return gates_pairs(data, with_gates);
    }
    let mut by_uid: Vec<(u32, u32)> = Vec::with_capacity(data.accounts.len());
    for (i, a) in data.accounts.iter().enumerate() {
        by_uid.push((a.uid, idx(i)?));
    }
    by_uid.sort_unstable();
    let with_uid = |uid: u32| {
        let lo = by_uid.partition_point(|&(u, _)| u < uid);
        let hi = by_uid.partition_point(|&(u, _)| u <= uid);
        by_uid.get(lo..hi).unwrap_or(&[])
    };
    let mut names = Vec::with_capacity(2 * data.accounts.len() + data.groups.len());
    let mut ids = Vec::with_capacity(2 * data.accounts.len() + data.groups.len());
    for (i, a) in data.accounts.iter().enumerate() {
        names.push((name_key(&a.name), Rec::Account(idx(i)?)));
        ids.push((id_key(a.uid), Rec::Account(idx(i)?)));
    }
    for (g, e) in data.groups.iter().enumerate() {
        let gi = idx(g)?;
        let nk = name_key(&e.name);
        names.push((nk, Rec::Group(gi)));
        ids.push((id_key(e.gid), Rec::Group(gi)));
        if e.kind == GROUP_KIND_PRIVATE {
            for &(_, j) in with_uid(e.gid) {
                names.push((nk, Rec::Account(j)));
                ids.push((id_key(e.gid), Rec::Account(j)));
            }
        } else {
            for (m, mem) in e.members.iter().enumerate() {
                names.push((name_key(&mem.name), Rec::Stub(gi, idx(m)?)));
            }
        }
    }
    for v in [&mut names, &mut ids] {
        v.sort_unstable();
        v.dedup();
    }
    Ok((names, ids))
}

/// The pairs of the gates file's index (1.6): the name key of each person owns their gate
/// records and managed entry (when the image carries them), (1.8) their account records, and
/// (1.7) their own member records of the groups sudo_jit's jit-group test looks at (kind JIT,
/// or named `jit-sudo`); the id key of such a group's gid owns its record without members. So
/// a person's shard holds all pam_jit asks of the file about that person.
fn gates_pairs(
    data: &SnapshotData,
    with_gates: bool,
) -> Result<(Vec<Pair>, Vec<Pair>), WriteError> {
    let mut names = Vec::new();
    let mut ids = Vec::new();
    if with_gates {
        for (i, g) in data.grants.iter().enumerate() {
            names.push((name_key(&g.user), Rec::Gate(idx(i)?)));
        }
        for (i, m) in data.managed.iter().enumerate() {
            names.push((name_key(m), Rec::Managed(idx(i)?)));
        }
        for (i, a) in data.accounts.iter().enumerate() {
            names.push((name_key(&a.name), Rec::Account(idx(i)?)));
        }
    }
    for (g, e) in data.groups.iter().enumerate() {
        if e.kind == GROUP_KIND_JIT || e.name.as_str() == GROUP_JIT_SUDO {
            let gi = idx(g)?;
            ids.push((id_key(e.gid), Rec::Bare(gi)));
            for (m, mem) in e.members.iter().enumerate() {
                names.push((name_key(&mem.name), Rec::Stub(gi, idx(m)?)));
            }
        }
    }
    for v in [&mut names, &mut ids] {
        v.sort_unstable();
        v.dedup();
    }
    Ok((names, ids))
}

/// The name a record is found by (its key's name when the record is there by its own name).
fn name_of(data: &SnapshotData, r: Rec) -> Option<&str> {
    match r {
        Rec::Account(i) => data.accounts.get(i as usize).map(|a| a.name.as_str()),
        Rec::Group(g) | Rec::Bare(g) => data.groups.get(g as usize).map(|e| e.name.as_str()),
        Rec::Stub(g, m) => data
            .groups
            .get(g as usize)
            .and_then(|e| e.members.get(m as usize))
            .map(|m| m.name.as_str()),
        Rec::Gate(i) => data.grants.get(i as usize).map(|g| g.user.as_str()),
        Rec::Managed(i) => data.managed.get(i as usize).map(String::as_str),
    }
}

/// Records a run of pairs stands for: accounts, plus every member of each whole group, plus
/// memberships.
fn weight(data: &SnapshotData, run: &[Pair]) -> usize {
    run.iter()
        .map(|&(_, r)| match r {
            Rec::Group(g) => data.groups.get(g as usize).map_or(0, |e| e.members.len()),
            Rec::Account(_) | Rec::Stub(..) | Rec::Bare(_) | Rec::Gate(_) | Rec::Managed(_) => 1,
        })
        .sum()
}

/// Whether two different names of `run` (all of key `key`) share that name key. Only such
/// names are counted (a private group's closure may bring an account of another name).
fn key_clash(data: &SnapshotData, key: u32, run: &[Pair]) -> bool {
    let mut first: Option<&str> = None;
    for &(_, r) in run {
        let Some(n) = name_of(data, r) else { continue };
        if name_key(n) != key {
            continue;
        }
        match first {
            None => first = Some(n),
            Some(f) if f != n => return true,
            Some(_) => {}
        }
    }
    false
}

/// The runs of equal first elements of sorted `pairs`.
fn runs(pairs: &[Pair]) -> impl Iterator<Item = Range<usize>> + '_ {
    let mut start = 0;
    std::iter::from_fn(move || {
        let &(k, _) = pairs.get(start)?;
        let len = pairs
            .get(start..)
            .map_or(0, |rest| rest.partition_point(|&(x, _)| x == k));
        let r = start..start + len.max(1);
        start = r.end;
        Some(r)
    })
}

/// One table laid out: its big keys (each its own shard, in key order) and its buckets.
struct Plan {
    /// Pairs of the big keys, key order.
    big: Vec<Pair>,
    /// `(key, range in big)` of each big key.
    big_keys: Vec<(u32, Range<usize>)>,
    /// The other pairs renumbered `(bucket, record)`, sorted, without repeats.
    small: Vec<Pair>,
    buckets: u32,
}

impl Plan {
    /// Splits a table's sorted pairs into big keys and buckets. `may_be_big(key, run)` says
    /// whether a heavy key may get its own shard.
    fn of(
        data: &SnapshotData,
        pairs: Vec<Pair>,
        may_be_big: impl Fn(u32, &[Pair]) -> bool,
    ) -> Result<Plan, WriteError> {
        let mut big = Vec::new();
        let mut big_keys: Vec<(u32, Range<usize>)> = Vec::new();
        let mut small_keys = 0usize;
        for r in runs(&pairs) {
            let run = pairs.get(r).unwrap_or(&[]);
            let key = run.first().map_or(0, |p| p.0);
            if weight(data, run) > BIG_KEY_RECORDS && may_be_big(key, run) {
                big_keys.push((key, big.len()..big.len() + run.len()));
                big.extend_from_slice(run);
            } else {
                small_keys += 1;
            }
        }
        let buckets = idx(small_keys.div_ceil(KEYS_PER_BUCKET).max(1))?;
        // The rest renumbered by bucket in place (big keys are few, found by key order).
        let mut small = pairs;
        small.retain(|p| big_keys.binary_search_by_key(&p.0, |(k, _)| *k).is_err());
        for p in &mut small {
            p.0 = p.0.checked_rem(buckets).unwrap_or(0);
        }
        small.sort_unstable();
        small.dedup();
        Ok(Plan {
            big,
            big_keys,
            small,
            buckets,
        })
    }

    /// The shards of this table in file order: each big key's, then each bucket's (an empty
    /// bucket has none).
    fn jobs(&self, table: u8) -> Vec<Job> {
        let mut jobs: Vec<Job> = self
            .big_keys
            .iter()
            .map(|(key, r)| Job {
                table,
                slot: Slot::Big(*key),
                range: r.clone(),
            })
            .collect();
        let mut at = 0;
        for b in 0..self.buckets {
            let n = self
                .small
                .get(at..)
                .map_or(0, |rest| rest.partition_point(|&(x, _)| x == b));
            jobs.push(Job {
                table,
                slot: Slot::Bucket,
                range: at..at + n,
            });
            at += n;
        }
        jobs
    }

    fn recs(&self, job: &Job) -> &[Pair] {
        let v = match job.slot {
            Slot::Big(_) => &self.big,
            Slot::Bucket => &self.small,
        };
        v.get(job.range.clone()).unwrap_or(&[])
    }
}

#[derive(Clone, Copy)]
enum Slot {
    Big(u32),
    Bucket,
}

/// One shard to build: of table 0 (names) or 1 (ids).
struct Job {
    table: u8,
    slot: Slot,
    range: Range<usize>,
}

/// A batch of built shards: their bytes back to back and each one's length (0: an empty
/// bucket, no shard).
type Batch = Result<(Vec<u8>, Vec<usize>), WriteError>;

/// Appends the self-contained image (1.0 sections only) of the records `recs` (sorted:
/// accounts, whole groups, memberships, gate records, managed entries) to `out`; returns its
/// length. A shard of the gates file keeps grant ids; a public one writes them empty.
fn shard(
    data: &SnapshotData,
    with_gates: bool,
    recs: &[Pair],
    out: &mut Vec<u8>,
) -> Result<usize, WriteError> {
    let mut accounts: Vec<&Account> = Vec::new();
    let mut groups: Vec<(u32, GroupIn<'_>)> = Vec::new();
    let mut grants: Vec<&GateGrant> = Vec::new();
    let mut managed: Vec<&String> = Vec::new();
    let mut whole = 0;
    for &(_, r) in recs {
        match r {
            Rec::Gate(i) => grants.extend(data.grants.get(i as usize)),
            Rec::Managed(i) => managed.extend(data.managed.get(i as usize)),
            Rec::Account(i) => accounts.extend(data.accounts.get(i as usize)),
            Rec::Group(g) => {
                if let Some(entry) = data.groups.get(g as usize) {
                    groups.push((
                        g,
                        GroupIn {
                            entry,
                            members: entry.members.iter().collect(),
                        },
                    ));
                    whole = groups.len();
                }
            }
            // Its memberships, if any are here, join it below (a bare group is not whole).
            Rec::Bare(g) => {
                if let Some(entry) = data.groups.get(g as usize) {
                    groups.push((
                        g,
                        GroupIn {
                            entry,
                            members: Vec::new(),
                        },
                    ));
                }
            }
            Rec::Stub(g, m) => {
                // A group already here whole needs none of its memberships again.
                if groups
                    .get(..whole)
                    .is_some_and(|w| w.binary_search_by_key(&g, |(x, _)| *x).is_ok())
                {
                    continue;
                }
                let Some((entry, m_rec)) = data
                    .groups
                    .get(g as usize)
                    .and_then(|e| e.members.get(m as usize).map(|r| (e, r)))
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
        }
    }
    groups.sort_by_key(|(g, _)| *g);
    let start = out.len();
    build_image(
        Input {
            generated_at: data.generated_at,
            uid_range: None,
            accounts,
            groups: groups.into_iter().map(|(_, gi)| gi).collect(),
            grants,
            managed,
            blank_grant_ids: !with_gates,
            serial: 0,
            bases: None,
        },
        None,
        &mut Tail::new(out),
    )?;
    Ok(out.len() - start)
}

/// Writes the five index sections of `data` (NAME_BIG, ID_BIG, NAME_DIR, ID_DIR, SHARDS, in
/// that order) through `placer`; `with_gates`: the image carries the gate records and the
/// managed list, and the name keys own them too.
///
/// # Errors
/// As [`super::build_snapshot`], or more shard data than 32-bit offsets address.
pub(crate) fn write_index(
    data: &SnapshotData,
    kind: IndexKind,
    with_gates: bool,
    placer: &mut Placer<'_>,
) -> Result<(), WriteError> {
    let (names, ids) = pairs(data, kind, with_gates)?;
    // A big key must not share its hash with another name: a lookup of the other name would
    // land in the big key's shard and miss the bucket that holds it.
    let plans = [
        Plan::of(data, names, |k, run| !key_clash(data, k, run))?,
        Plan::of(data, ids, |_, _| true)?,
    ];
    let [name_plan, id_plan] = &plans;
    let (n_name_big, n_id_big) = (name_plan.big_keys.len(), id_plan.big_keys.len());
    let mut reserved = Vec::with_capacity(4);
    for (id, len, count) in [
        (section::NAME_BIG, n_name_big * BIG_ENTRY_SIZE, n_name_big),
        (section::ID_BIG, n_id_big * BIG_ENTRY_SIZE, n_id_big),
        (
            section::NAME_DIR,
            name_plan.buckets as usize * DIR_ENTRY_SIZE,
            name_plan.buckets as usize,
        ),
        (
            section::ID_DIR,
            id_plan.buckets as usize * DIR_ENTRY_SIZE,
            id_plan.buckets as usize,
        ),
    ] {
        let off = placer.at();
        placer.entry(id, off, len, count)?;
        reserved.push(placer.reserve(len)?);
    }

    let mut jobs = name_plan.jobs(0);
    jobs.extend(id_plan.jobs(1));
    let shards_at = placer.at();
    let mut tables: [(Vec<u8>, Vec<u8>); 2] = Default::default(); // (big, dir) per table
    let mut done = 0;
    let batches = jobs.len().div_ceil(SHARDS_PER_BATCH);
    crate::par::in_order(
        batches,
        |b| -> Batch {
            let mut out = Vec::new();
            let mut lens = Vec::new();
            for job in jobs
                .iter()
                .skip(b * SHARDS_PER_BATCH)
                .take(SHARDS_PER_BATCH)
            {
                let recs = plans
                    .get(job.table as usize)
                    .map_or(&[][..], |p| p.recs(job));
                lens.push(if recs.is_empty() {
                    0
                } else {
                    shard(data, with_gates, recs, &mut out)?
                });
            }
            Ok((out, lens))
        },
        |batch| -> Result<(), WriteError> {
            let (bytes, lens) = batch?;
            let mut rel = placer.at() - shards_at;
            placer.append(&bytes)?;
            for len in lens {
                let job = jobs
                    .get(done)
                    .ok_or(WriteError::Layout("more shards than jobs"))?;
                done += 1;
                let (big, dir) = tables
                    .get_mut(job.table as usize)
                    .ok_or(WriteError::Layout("no such table"))?;
                match job.slot {
                    Slot::Big(key) => {
                        let mut e = [0u8; BIG_ENTRY_SIZE];
                        e[0..4].copy_from_slice(&key.to_le_bytes());
                        e[4..8].copy_from_slice(&idx(rel)?.to_le_bytes());
                        e[8..12].copy_from_slice(&idx(len)?.to_le_bytes());
                        let crc = crc32c(&e[..12]);
                        e[12..16].copy_from_slice(&crc.to_le_bytes());
                        big.extend_from_slice(&e);
                    }
                    Slot::Bucket if len == 0 => dir.extend_from_slice(&[0u8; DIR_ENTRY_SIZE]),
                    Slot::Bucket => {
                        dir.extend_from_slice(&idx(rel)?.to_le_bytes());
                        dir.extend_from_slice(&idx(len)?.to_le_bytes());
                    }
                }
                rel += len;
            }
            Ok(())
        },
    )?;
    let shards_len = placer.at() - shards_at;
    placer.entry(section::SHARDS, shards_at, shards_len, shards_len)?;
    let [(name_big, name_dir), (id_big, id_dir)] = tables;
    for (r, bytes) in reserved
        .into_iter()
        .zip([name_big, id_big, name_dir, id_dir])
    {
        placer.place(r, &bytes)?;
    }
    Ok(())
}

/// A sink that appends to the end of a `Vec` holding other images before it: offsets it is
/// given count from where it started. Each shard of a batch is written straight onto the end
/// of the batch.
struct Tail<'v> {
    out: &'v mut Vec<u8>,
    start: usize,
}

impl<'v> Tail<'v> {
    fn new(out: &'v mut Vec<u8>) -> Tail<'v> {
        let start = out.len();
        Tail { out, start }
    }
}

impl Sink for Tail<'_> {
    fn append(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        Sink::append(&mut *self.out, bytes)
    }

    fn place(&mut self, at: u64, bytes: &[u8]) -> std::io::Result<()> {
        let at = at
            .checked_add(self.start as u64)
            .ok_or_else(|| std::io::Error::other("placed past the end of the image"))?;
        Sink::place(&mut *self.out, at, bytes)
    }
}
