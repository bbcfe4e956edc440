//! Builds a snapshot image in memory. Pure: no I/O, no clock; jitd writes the bytes atomically.
//!
//! The writer refuses anything the reader would refuse, so a snapshot jitd writes always reads.

use std::collections::{BTreeMap, HashMap};

use super::format::*;
use crate::constants::{MAX_NAME_LEN, MAX_SNAPSHOT_STRING};
use crate::crc32c::crc32c;
use crate::types::{Account, GateGrant, GroupEntry, Member, SnapshotData, GROUP_KIND_PRIVATE};
use crate::validate::{is_field_safe, is_line_safe, is_name_safe};

/// Why a snapshot could not be built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteError {
    /// A field holds a byte the passwd/group format cannot carry (NUL, `:`, newline) or is too long.
    UnsafeField(&'static str, String),
    /// Two group records with one name (jitd must merge members first).
    DuplicateGroup(String),
    /// More data than 32-bit offsets address.
    TooLarge,
    /// A delta naming no base, or more than `MAX_DELTA_BASES`.
    BadDeltaBases,
}

impl std::fmt::Display for WriteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WriteError::UnsafeField(what, v) => write!(f, "snapshot field {what} is unsafe: {v:?}"),
            WriteError::DuplicateGroup(g) => write!(f, "group {g:?} appears twice"),
            WriteError::TooLarge => write!(f, "snapshot exceeds the format's 4 GiB offsets"),
            WriteError::BadDeltaBases => {
                write!(
                    f,
                    "a delta names between 1 and {MAX_DELTA_BASES} non-zero base serials"
                )
            }
        }
    }
}

impl std::error::Error for WriteError {}

/// The STRINGS section being built: each distinct string once. Keys borrow from the data
/// being written (no copy per string) and are hashed with foldhash (feature `fast-build`,
/// which jitd turns on): jitd rebuilds the lookup index's thousands of small shards at every
/// change, and SipHash plus a `String` per key was a fifth of that time. The strings come
/// from jitd's own state, so a hash built for speed rather than flooding resistance is fine.
#[derive(Default)]
struct Strings<'a> {
    bytes: Vec<u8>,
    seen: HashMap<&'a str, (u32, u32), StringHash>,
}

#[cfg(feature = "fast-build")]
type StringHash = foldhash::fast::RandomState;
#[cfg(not(feature = "fast-build"))]
type StringHash = std::collections::hash_map::RandomState;

impl<'a> Strings<'a> {
    fn add(&mut self, s: &'a str) -> Result<[u8; 8], WriteError> {
        let (off, len) = match self.seen.get(s) {
            Some(&r) => r,
            None => {
                let off = u32::try_from(self.bytes.len()).map_err(|_| WriteError::TooLarge)?;
                let len = u32::try_from(s.len()).map_err(|_| WriteError::TooLarge)?;
                self.bytes.extend_from_slice(s.as_bytes());
                self.seen.insert(s, (off, len));
                (off, len)
            }
        };
        let mut r = [0u8; 8];
        r[..4].copy_from_slice(&off.to_le_bytes());
        r[4..].copy_from_slice(&len.to_le_bytes());
        Ok(r)
    }

    fn field(&mut self, what: &'static str, s: &'a str) -> Result<[u8; 8], WriteError> {
        if !is_field_safe(s, MAX_SNAPSHOT_STRING) {
            return Err(WriteError::UnsafeField(what, s.chars().take(64).collect()));
        }
        self.add(s)
    }

    /// A user or group name: what the reader accepts as a name (non-empty, at most
    /// `MAX_NAME_LEN`, no `/`), so a written snapshot always reads back.
    fn name(&mut self, what: &'static str, s: &'a str) -> Result<[u8; 8], WriteError> {
        if !is_name_safe(s, MAX_NAME_LEN) {
            return Err(WriteError::UnsafeField(what, s.chars().take(64).collect()));
        }
        self.add(s)
    }

    fn line(&mut self, what: &'static str, s: &'a str) -> Result<[u8; 8], WriteError> {
        if !is_line_safe(s, MAX_SNAPSHOT_STRING) {
            return Err(WriteError::UnsafeField(what, s.chars().take(64).collect()));
        }
        self.add(s)
    }
}

#[derive(Default)]
struct Lists {
    refs: Vec<u8>,
}

impl Lists {
    fn add<'a>(
        &mut self,
        strings: &mut Strings<'a>,
        what: &'static str,
        items: &'a [String],
    ) -> Result<[u8; 8], WriteError> {
        let start =
            u32::try_from(self.refs.len() / STRREF_SIZE).map_err(|_| WriteError::TooLarge)?;
        for it in items {
            let r = strings.line(what, it)?;
            self.refs.extend_from_slice(&r);
        }
        let count = u32::try_from(items.len()).map_err(|_| WriteError::TooLarge)?;
        let mut r = [0u8; 8];
        r[..4].copy_from_slice(&start.to_le_bytes());
        r[4..].copy_from_slice(&count.to_le_bytes());
        Ok(r)
    }
}

fn u32b(v: u32) -> [u8; 4] {
    v.to_le_bytes()
}

fn i64b(v: i64) -> [u8; 8] {
    v.to_le_bytes()
}

fn len_u32(n: usize) -> Result<u32, WriteError> {
    u32::try_from(n).map_err(|_| WriteError::TooLarge)
}

/// What a snapshot states besides `data`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BuildOptions {
    /// Write the lookup index (sections 12 to 16) that lets NSS read one small shard per
    /// query instead of the whole file.
    pub index: bool,
    /// Leave the gate records (GRANTS) and the managed list (MANAGED) out, written empty: the
    /// public snapshot, which any local user may read, built from the same data as the gates
    /// file without a copy of it.
    pub without_gates: bool,
    /// The base serial stated in the header (1.4): deltas naming it are read over this image.
    /// 0: none (no delta applies).
    pub serial: u32,
    /// Write a delta (1.4): the non-zero serials of the bases this image may be read over
    /// (section BASES). A delta holds only records added since those bases were projected.
    pub delta_of: Option<[u32; MAX_DELTA_BASES]>,
}

/// Builds the byte image of a snapshot from `data`, without the lookup index.
///
/// # Errors
/// A field the reader would refuse, a duplicated group name, or more than 4 GiB of data.
pub fn build_snapshot(data: &SnapshotData) -> Result<Vec<u8>, WriteError> {
    build_snapshot_with(data, &BuildOptions::default())
}

/// Builds the byte image of a snapshot (format 1.1) from `data` with `opts`.
///
/// # Errors
/// As [`build_snapshot`].
pub fn build_snapshot_with(
    data: &SnapshotData,
    opts: &BuildOptions,
) -> Result<Vec<u8>, WriteError> {
    // The index goes first, so its small tables sit in the file's first page, read together
    // with the header.
    let index = if opts.index {
        super::index::build_index(data)?
    } else {
        Vec::new()
    };
    let input = Input {
        generated_at: data.generated_at,
        uid_range: data.uid_range,
        accounts: data.accounts.iter().collect(),
        groups: data
            .groups
            .iter()
            .map(|entry| GroupIn {
                entry,
                members: entry.members.iter().collect(),
            })
            .collect(),
        grants: if opts.without_gates {
            Vec::new()
        } else {
            data.grants.iter().collect()
        },
        managed: if opts.without_gates {
            Vec::new()
        } else {
            data.managed.iter().collect()
        },
        blank_grant_ids: false,
        serial: opts.serial,
        bases: opts.delta_of.map(|b| {
            let mut v: Vec<u32> = b.into_iter().filter(|&s| s != 0).collect();
            v.sort_unstable();
            v.dedup();
            v
        }),
    };
    build_image(input, index)
}

/// One group as written: its record and the members written with it (all of them, or, in a
/// shard, only those its keys own).
pub(crate) struct GroupIn<'a> {
    pub entry: &'a GroupEntry,
    pub members: Vec<&'a Member>,
}

/// What one image holds, borrowed from the projection: the whole file borrows all of it, and
/// each of the index's shards a few records, without copying a string.
pub(crate) struct Input<'a> {
    pub generated_at: i64,
    pub uid_range: Option<(u32, u32)>,
    pub accounts: Vec<&'a Account>,
    pub groups: Vec<GroupIn<'a>>,
    pub grants: Vec<&'a GateGrant>,
    pub managed: Vec<&'a String>,
    /// Write grant ids empty (shards: NSS shows none, and each would be stored again in every
    /// shard that holds the record).
    pub blank_grant_ids: bool,
    /// Header serial (1.4); 0 for none.
    pub serial: u32,
    /// `Some`: a delta naming these bases (section BASES).
    pub bases: Option<Vec<u32>>,
}

/// The image of `input`, with the lookup index sections `index` (empty: none) first.
pub(crate) fn build_image<'a>(
    input: Input<'a>,
    index: super::index::IndexSections,
) -> Result<Vec<u8>, WriteError> {
    let with_index = !index.is_empty();
    let blank = input.blank_grant_ids;
    let grant_id = |id: &'a str| if blank { "" } else { id };
    let mut strings = Strings::default();
    let mut lists = Lists::default();

    // Accounts, sorted by (name, not_before) so that lookups find the earliest live one first.
    let mut accounts = input.accounts;
    accounts.sort_by(|a, b| (a.name.as_str(), a.not_before).cmp(&(b.name.as_str(), b.not_before)));
    let mut acc_sec = Vec::with_capacity(accounts.len() * ACCOUNT_SIZE);
    for &a in &accounts {
        acc_sec.extend_from_slice(&strings.name("account name", &a.name)?);
        acc_sec.extend_from_slice(&u32b(a.uid));
        acc_sec.extend_from_slice(&u32b(a.gid));
        acc_sec.extend_from_slice(&strings.field("gecos", &a.gecos)?);
        acc_sec.extend_from_slice(&strings.field("home", &a.home)?);
        acc_sec.extend_from_slice(&strings.field("shell", &a.shell)?);
        acc_sec.extend_from_slice(&strings.field("grant id", grant_id(&a.grant_id))?);
        acc_sec.extend_from_slice(&i64b(a.not_before));
        acc_sec.extend_from_slice(&i64b(a.not_after));
        acc_sec.extend_from_slice(&u32b(a.flags));
        acc_sec.extend_from_slice(&lists.add(&mut strings, "ssh key", &a.ssh_keys)?);
        acc_sec.extend_from_slice(&u32b(0));
    }
    let mut by_uid: Vec<u32> = (0..len_u32(accounts.len())?).collect();
    by_uid.sort_by_key(|&i| {
        let a = accounts.get(i as usize);
        (a.map_or(0, |a| a.uid), a.map_or(0, |a| a.not_before))
    });
    let uid_sec: Vec<u8> = by_uid.iter().flat_map(|i| i.to_le_bytes()).collect();

    // Groups sorted by name, names unique; members contiguous per group, sorted by name.
    let mut groups = input.groups;
    groups.sort_by(|a, b| a.entry.name.cmp(&b.entry.name));
    for w in groups.windows(2) {
        if let [a, b] = w {
            if a.entry.name == b.entry.name {
                return Err(WriteError::DuplicateGroup(a.entry.name.clone()));
            }
        }
    }
    let mut grp_sec = Vec::with_capacity(groups.len() * GROUP_SIZE);
    let mut mem_sec = Vec::new();
    // user name -> [(gid, nb, na)] for initgroups.
    let mut user_gids: BTreeMap<&str, Vec<(u32, i64, i64)>> = BTreeMap::new();
    for GroupIn { entry: g, members } in &mut groups {
        let g: &GroupEntry = g;
        let start = len_u32(mem_sec.len() / MEMBER_SIZE)?;
        members
            .sort_by(|a, b| (a.name.as_str(), a.not_before).cmp(&(b.name.as_str(), b.not_before)));
        for &m in members.iter() {
            mem_sec.extend_from_slice(&strings.name("member name", &m.name)?);
            mem_sec.extend_from_slice(&strings.field("grant id", grant_id(&m.grant_id))?);
            let nb = m.not_before.max(g.not_before);
            let na = m.not_after.min(g.not_after);
            mem_sec.extend_from_slice(&i64b(nb));
            mem_sec.extend_from_slice(&i64b(na));
            if g.kind != GROUP_KIND_PRIVATE {
                user_gids
                    .entry(m.name.as_str())
                    .or_default()
                    .push((g.gid, nb, na));
            }
        }
        grp_sec.extend_from_slice(&strings.name("group name", &g.name)?);
        grp_sec.extend_from_slice(&u32b(g.gid));
        grp_sec.extend_from_slice(&u32b(g.kind));
        grp_sec.extend_from_slice(&i64b(g.not_before));
        grp_sec.extend_from_slice(&i64b(g.not_after));
        grp_sec.extend_from_slice(&u32b(start));
        grp_sec.extend_from_slice(&u32b(len_u32(members.len())?));
    }
    let mut by_gid: Vec<u32> = (0..len_u32(groups.len())?).collect();
    by_gid.sort_by_key(|&i| groups.get(i as usize).map_or(0, |g| g.entry.gid));
    let gid_sec: Vec<u8> = by_gid.iter().flat_map(|i| i.to_le_bytes()).collect();

    let mut users_sec = Vec::with_capacity(user_gids.len() * USER_SIZE);
    let mut ugid_sec = Vec::new();
    for (name, gids) in &user_gids {
        let start = len_u32(ugid_sec.len() / USER_GID_SIZE)?;
        for (gid, nb, na) in gids {
            ugid_sec.extend_from_slice(&u32b(*gid));
            ugid_sec.extend_from_slice(&u32b(0));
            ugid_sec.extend_from_slice(&i64b(*nb));
            ugid_sec.extend_from_slice(&i64b(*na));
        }
        users_sec.extend_from_slice(&strings.name("user name", name)?);
        users_sec.extend_from_slice(&u32b(start));
        users_sec.extend_from_slice(&u32b(len_u32(gids.len())?));
    }

    let mut grants = input.grants;
    grants.sort_by(|a, b| {
        (a.user.as_str(), a.not_before, a.id.as_str()).cmp(&(
            b.user.as_str(),
            b.not_before,
            b.id.as_str(),
        ))
    });
    let mut grant_sec = Vec::with_capacity(grants.len() * GRANT_SIZE);
    for &g in &grants {
        grant_sec.extend_from_slice(&strings.field("grant id", &g.id)?);
        grant_sec.extend_from_slice(&strings.name("grant user", &g.user)?);
        grant_sec.extend_from_slice(&u32b(g.uid));
        grant_sec.extend_from_slice(&u32b(g.flags));
        grant_sec.extend_from_slice(&u32b(g.revoke_on));
        grant_sec.extend_from_slice(&u32b(0));
        grant_sec.extend_from_slice(&i64b(g.not_before));
        grant_sec.extend_from_slice(&i64b(g.not_after));
        grant_sec.extend_from_slice(&lists.add(&mut strings, "from", &g.from)?);
        grant_sec.extend_from_slice(&lists.add(&mut strings, "service", &g.services)?);
        grant_sec.extend_from_slice(&lists.add(&mut strings, "window", &g.windows)?);
        grant_sec.extend_from_slice(&lists.add(&mut strings, "sudo", &g.sudo)?);
        grant_sec.extend_from_slice(&lists.add(&mut strings, "runas", &g.runas)?);
    }

    let mut managed = input.managed;
    managed.sort();
    managed.dedup();
    let mut managed_sec = Vec::new();
    for m in managed {
        managed_sec.extend_from_slice(&strings.name("managed account", m)?);
    }

    let mut sections = index;
    let n_accounts = accounts.len();
    let mut base = vec![
        (section::STRINGS, strings.bytes, 0),
        (section::ACCOUNTS, acc_sec, n_accounts),
        (section::ACCOUNTS_BY_UID, uid_sec, n_accounts),
        (section::GROUPS, grp_sec, groups.len()),
        (section::GROUPS_BY_GID, gid_sec, groups.len()),
        (section::MEMBERS, mem_sec, 0),
        (section::USERS, users_sec, user_gids.len()),
        (section::USER_GIDS, ugid_sec, 0),
        (section::STRLIST, lists.refs, 0),
        (section::GRANTS, grant_sec, grants.len()),
        (section::MANAGED, managed_sec, 0),
    ];
    if with_index {
        // The accounts region (1.3) first: listing accounts reads and checks only it.
        base.sort_by_key(|(id, _, _)| !ACCOUNTS_REGION.contains(id));
    }
    sections.extend(base);
    if let Some(bases) = &input.bases {
        if bases.is_empty() || bases.len() > MAX_DELTA_BASES {
            return Err(WriteError::BadDeltaBases);
        }
        let bytes: Vec<u8> = bases.iter().flat_map(|s| s.to_le_bytes()).collect();
        sections.push((section::BASES, bytes, bases.len()));
    }

    let n_sections = sections.len();
    let table_len = n_sections * SECTION_ENTRY_SIZE;
    // The image is allocated whole once and each section freed as soon as it is copied in: the
    // sections and a growing copy of them were twice the image at once (tens of MB in jitd at
    // 10 000 grants, with reallocation copies on top).
    let total = HEADER_SIZE + table_len + sections.iter().map(|(_, b, _)| b.len()).sum::<usize>();
    let mut out = Vec::with_capacity(total);
    out.resize(HEADER_SIZE + table_len, 0u8);
    let mut table = Vec::with_capacity(table_len);
    // With the index, sections 1 to 11 (the base) follow it, back to back to the end of the
    // file; their own checksum lets enumeration read only them (1.2, `base_at`).
    let mut base_at = None;
    let mut accounts_end = 0;
    for (id, bytes, count) in sections {
        if with_index && id == section::STRINGS {
            base_at = Some(out.len());
        }
        if ACCOUNTS_REGION.contains(&id) {
            accounts_end = accounts_end.max(out.len() + bytes.len());
        }
        // Record counts for sections whose records are fixed-size are implied by the length;
        // the table states them anyway so the reader can cross-check.
        let count = match id {
            section::STRINGS => bytes.len(),
            section::MEMBERS => bytes.len() / MEMBER_SIZE,
            section::USER_GIDS => bytes.len() / USER_GID_SIZE,
            section::STRLIST | section::MANAGED => bytes.len() / STRREF_SIZE,
            section::SHARDS => bytes.len(),
            _ => count,
        };
        table.extend_from_slice(&u32b(id));
        table.extend_from_slice(&u32b(len_u32(out.len())?));
        table.extend_from_slice(&u32b(len_u32(bytes.len())?));
        table.extend_from_slice(&u32b(len_u32(count)?));
        out.extend_from_slice(&bytes);
        drop(bytes);
    }
    let file_len = out.len() as u64;
    let mut header = [0u8; HEADER_SIZE];
    header[0..8].copy_from_slice(&MAGIC);
    header[8..10].copy_from_slice(&MAJOR.to_le_bytes());
    header[10..12].copy_from_slice(&MINOR.to_le_bytes());
    header[16..24].copy_from_slice(&file_len.to_le_bytes());
    header[24..32].copy_from_slice(&input.generated_at.to_le_bytes());
    header[32..36].copy_from_slice(&len_u32(n_sections)?.to_le_bytes());
    header[SERIAL_AT..SERIAL_AT + 4].copy_from_slice(&input.serial.to_le_bytes());
    if let Some((lo, hi)) = input.uid_range {
        header[UID_MIN_AT..UID_MIN_AT + 4].copy_from_slice(&lo.to_le_bytes());
        header[UID_MAX_AT..UID_MAX_AT + 4].copy_from_slice(&hi.to_le_bytes());
    }
    if let Some(at) = base_at {
        let base_crc = crc32c(out.get(at..).unwrap_or(&[]));
        header[BASE_CRC_AT..BASE_CRC_AT + 4].copy_from_slice(&base_crc.to_le_bytes());
        header[BASE_AT_AT..BASE_AT_AT + 4].copy_from_slice(&len_u32(at)?.to_le_bytes());
        let accounts_crc = crc32c(out.get(at..accounts_end).ok_or(WriteError::TooLarge)?);
        header[ACCOUNTS_CRC_AT..ACCOUNTS_CRC_AT + 4].copy_from_slice(&accounts_crc.to_le_bytes());
    }
    let head = out
        .get_mut(..HEADER_SIZE + table_len)
        .ok_or(WriteError::TooLarge)?;
    let (h, t) = head.split_at_mut(HEADER_SIZE);
    h.copy_from_slice(&header);
    t.copy_from_slice(&table);
    let hcrc = super::index::head_crc(&out).ok_or(WriteError::TooLarge)?;
    if let Some(h) = out.get_mut(HEAD_CRC_AT..HEAD_CRC_AT + 4) {
        h.copy_from_slice(&hcrc.to_le_bytes());
    }
    let crc = crc32c(out.get(16..).unwrap_or(&[]));
    if let Some(h) = out.get_mut(12..16) {
        h.copy_from_slice(&crc.to_le_bytes());
    }
    Ok(out)
}
