//! Builds a snapshot image. Pure: no clock, and no I/O but through a [`Sink`] the caller
//! gives (a `Vec<u8>`, or jitd's temporary file, which it then renames into place).
//!
//! The writer refuses anything the reader would refuse, so a snapshot jitd writes always reads.

use std::collections::HashMap;

use super::format::*;
use crate::constants::{MAX_NAME_LEN, MAX_SNAPSHOT_STRING};
use crate::crc32c::{crc32c, crc32c_append, crc32c_combine};
use crate::types::{
    Account, GateGrant, GroupEntry, Member, SnapshotData, GATE_ACCOUNT, GROUP_KIND_PRIVATE,
};
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
    /// The sink refused the bytes (jitd: writing its temporary file failed).
    Io(String),
    /// The writer's own layout went wrong (a bug: sections or reserved parts miscounted).
    Layout(&'static str),
}

impl std::fmt::Display for WriteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WriteError::UnsafeField(what, v) => write!(f, "snapshot field {what} is unsafe: {v:?}"),
            WriteError::DuplicateGroup(g) => write!(f, "group {g:?} appears twice"),
            WriteError::TooLarge => write!(f, "snapshot exceeds the format's 4 GiB offsets"),
            WriteError::Io(e) => write!(f, "writing the snapshot: {e}"),
            WriteError::Layout(e) => write!(f, "snapshot layout error: {e}"),
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

/// Where an image's bytes go, in file order. The head (header and section table, whose size is
/// known before any section is written) is appended as zeros first and placed last, once every
/// offset and checksum is known. jitd writes its images straight into their files through
/// this: a whole image in memory (and the copy that assembled it) was the largest part of its
/// peak memory at a whole rewrite.
pub trait Sink {
    /// Appends `bytes`.
    ///
    /// # Errors
    /// The sink's own (a failed write).
    fn append(&mut self, bytes: &[u8]) -> std::io::Result<()>;
    /// Overwrites bytes already appended, from offset `at`.
    ///
    /// # Errors
    /// The sink's own; `at` past what was appended.
    fn place(&mut self, at: u64, bytes: &[u8]) -> std::io::Result<()>;
}

impl Sink for Vec<u8> {
    fn append(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.extend_from_slice(bytes);
        Ok(())
    }

    fn place(&mut self, at: u64, bytes: &[u8]) -> std::io::Result<()> {
        let at = usize::try_from(at).unwrap_or(usize::MAX);
        self.get_mut(at..at.saturating_add(bytes.len()))
            .ok_or_else(|| std::io::Error::other("placed past the end of the image"))?
            .copy_from_slice(bytes);
        Ok(())
    }
}

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
        Ok(strref(off, len))
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
        Ok(strref(start, count))
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
    /// With `index`: the gates file's index (1.6, docs/snapshot-format.md §10.7) instead of
    /// the public one: name keys own only gate records and managed entries, id keys only
    /// jit's own groups (whole), and no account listing is written.
    pub gates_index: bool,
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
    let mut out = Vec::new();
    build_snapshot_into(data, opts, &mut out)?;
    Ok(out)
}

/// Writes the image of `data` with `opts` to `sink` (as [`build_snapshot_with`] returns it,
/// byte for byte), each section freed once it is out.
///
/// # Errors
/// As [`build_snapshot`], or the sink's [`WriteError::Io`]; what reached the sink is then not
/// an image.
pub fn build_snapshot_into(
    data: &SnapshotData,
    opts: &BuildOptions,
    sink: &mut dyn Sink,
) -> Result<(), WriteError> {
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
    // The index goes first, so its small tables sit in the file's first page, read together
    // with the header.
    let kind = if opts.gates_index {
        IndexKind::Gates
    } else {
        IndexKind::Public
    };
    build_image(input, opts.index.then_some((data, kind)), sink)
}

/// Which lookup index an image carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IndexKind {
    /// The public snapshot's (§10): what NSS and jit-authorized-keys look up, and the listing.
    Public,
    /// The gates file's (1.6, §10.7): what pam_jit and sudo_jit need to tell whether a person
    /// is jit's business.
    Gates,
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

/// Writes the image of `input` to `sink`; with `index`, the lookup index of that data first
/// (the data `input` borrows).
///
/// The base sections are built in two passes over the sorted records. The first adds every
/// string and list, in the order the sections use them, so that STRINGS and STRLIST are
/// complete; the second builds each section from the same records, looking each string up in
/// the table the first made (lists are numbered in the order the first pass added them), and
/// writes it out before the next is built. STRINGS comes first in the base (and in the accounts region), so a
/// single pass had to hold every section until the last string was known: at 10 000 grants a
/// quarter of jitd's heap peak at a whole write. The bytes are the single pass's, in the same
/// order.
pub(crate) fn build_image<'a>(
    input: Input<'a>,
    index: Option<(&SnapshotData, IndexKind)>,
    sink: &mut dyn Sink,
) -> Result<(), WriteError> {
    let with_index = index.is_some();
    let with_listing = matches!(index, Some((_, IndexKind::Public)));
    if let Some(bases) = &input.bases {
        if bases.is_empty() || bases.len() > MAX_DELTA_BASES {
            return Err(WriteError::BadDeltaBases);
        }
    }
    let n_sections = if with_index { INDEX_SECTIONS } else { 0 }
        + usize::from(with_listing)
        + BASE_SECTIONS
        + usize::from(input.bases.is_some());
    let mut placer = Placer::new(sink, n_sections, with_index)?;
    if let Some((data, kind)) = index {
        // Gate records and managed entries are owned only in an image that carries them (the
        // gates file): never in the public snapshot, whatever `data` holds.
        let with_gates = !input.grants.is_empty() || !input.managed.is_empty();
        super::index_writer::write_index(data, kind, with_gates, &mut placer)?;
    }
    let base = Base::sorted(
        input.accounts,
        input.groups,
        input.grants,
        input.managed,
        input.blank_grant_ids,
    )?;

    // Pass 1: every string and list. The table is sized for the strings an image usually
    // has (an account brings its name, GECOS, home and grant id; a group other than a private
    // one, named as its account, its name; a gate record without an account its id and
    // user): grown by doubling from empty, it held its old and new halves at once, at the peak
    // of jitd's memory at 10 000 grants. More strings than that (lists, members who are local
    // users) only grow it as before.
    let shared = base
        .groups
        .iter()
        .filter(|g| g.entry.kind != GROUP_KIND_PRIVATE);
    let expected = 4 * base.accounts.len()
        + shared.clone().count()
        + 2 * base
            .grants
            .iter()
            .filter(|g| g.flags & GATE_ACCOUNT == 0)
            .count()
        + base.managed.len()
        + 1;
    let expected_bytes: usize = base
        .accounts
        .iter()
        .map(|a| a.name.len() + a.gecos.len() + a.home.len() + a.grant_id.len())
        .chain(shared.map(|g| g.entry.name.len()))
        .sum();
    let mut strings = Strings {
        bytes: Vec::with_capacity(expected_bytes),
        seen: HashMap::with_capacity_and_hasher(expected, StringHash::default()),
    };
    let mut lists = Lists::default();
    let mut n_refs = 0;
    {
        let mut collect = Collect {
            strings: &mut strings,
            lists: &mut lists,
            n_refs: &mut n_refs,
        };
        base.accounts(&mut collect, &mut Out::none())?;
        base.groups(&mut collect, &mut Out::none(), &mut Out::none())?;
        base.users(&mut collect, &mut Out::none(), &mut Out::none())?;
        base.grants(&mut collect, &mut Out::none())?;
        base.managed(&mut collect, &mut Out::none())?;
    }

    if with_listing {
        // The account listing (1.5) between the index and the base: outside the base region,
        // which `getgrent` reads whole, and read a chunk at a time by `getpwent`.
        super::listing::write(&mut placer, &base.accounts)?;
    }
    // Pass 2, in file order. With the index the accounts region (1.3) comes first: STRINGS,
    // ACCOUNTS, STRLIST (readers of files without a listing read and check only it to list
    // accounts); without, the sections go in id order.
    let order: [u32; BASE_SECTIONS] = if with_index {
        [
            section::STRINGS,
            section::ACCOUNTS,
            section::STRLIST,
            section::ACCOUNTS_BY_UID,
            section::GROUPS,
            section::GROUPS_BY_GID,
            section::MEMBERS,
            section::USERS,
            section::USER_GIDS,
            section::GRANTS,
            section::MANAGED,
        ]
    } else {
        [
            section::STRINGS,
            section::ACCOUNTS,
            section::ACCOUNTS_BY_UID,
            section::GROUPS,
            section::GROUPS_BY_GID,
            section::MEMBERS,
            section::USERS,
            section::USER_GIDS,
            section::STRLIST,
            section::GRANTS,
            section::MANAGED,
        ]
    };
    // The table's bytes go out first; its map stays for the second pass's lookups.
    let mut strings_bytes = Some(std::mem::take(&mut strings.bytes));
    let mut replay = Replay {
        seen: &strings.seen,
        n_refs: 0,
        next_list: 0,
    };
    let n_lists = lists.refs.len() / STRREF_SIZE;
    let mut strlist = Some(std::mem::take(&mut lists.refs));
    // Sections made together (a group's record states where its members start; a user's where
    // its gids start), kept until their turn.
    let mut members: Option<Vec<u8>> = None;
    let mut user_gids: Option<Vec<u8>> = None;
    let n_accounts = base.accounts.len();
    for id in order {
        let (bytes, count) = match id {
            section::STRINGS => (strings_bytes.take().unwrap_or_default(), 0),
            section::STRLIST => (strlist.take().unwrap_or_default(), 0),
            section::ACCOUNTS => {
                let mut out = Out::with_capacity(n_accounts * ACCOUNT_SIZE);
                base.accounts(&mut replay, &mut out)?;
                (out.into_bytes(), n_accounts)
            }
            section::ACCOUNTS_BY_UID => (base.accounts_by_uid()?, n_accounts),
            section::GROUPS => {
                let mut grp = Out::with_capacity(base.groups.len() * GROUP_SIZE);
                let mut mem = Out::with_capacity(base.n_members * MEMBER_SIZE);
                base.groups(&mut replay, &mut grp, &mut mem)?;
                members = Some(mem.into_bytes());
                (grp.into_bytes(), base.groups.len())
            }
            section::GROUPS_BY_GID => (base.groups_by_gid()?, base.groups.len()),
            section::MEMBERS => (members.take().unwrap_or_default(), 0),
            section::USERS => {
                let mut users = Out::with_capacity(base.n_users * USER_SIZE);
                let mut gids = Out::with_capacity(base.user_gids.len() * USER_GID_SIZE);
                base.users(&mut replay, &mut users, &mut gids)?;
                user_gids = Some(gids.into_bytes());
                (users.into_bytes(), base.n_users)
            }
            section::USER_GIDS => (user_gids.take().unwrap_or_default(), 0),
            section::GRANTS => {
                let mut out = Out::with_capacity(base.grants.len() * GRANT_SIZE);
                base.grants(&mut replay, &mut out)?;
                (out.into_bytes(), base.grants.len())
            }
            _ => {
                let mut out = Out::with_capacity(base.managed.len() * STRREF_SIZE);
                base.managed(&mut replay, &mut out)?;
                (out.into_bytes(), 0)
            }
        };
        placer.section(id, bytes, count)?;
    }
    if replay.n_refs != n_refs || replay.next_list as usize != n_lists {
        return Err(WriteError::Layout("the passes disagree on the references"));
    }
    if let Some(bases) = &input.bases {
        let bytes: Vec<u8> = bases.iter().flat_map(|s| s.to_le_bytes()).collect();
        placer.section(section::BASES, bytes, bases.len())?;
    }
    placer.finish(input.generated_at, input.serial, input.uid_range)
}

/// What a base's records take from the string table and the string lists.
trait Refs<'a> {
    /// The reference of `s`, checked as `kind` would have it.
    fn string(&mut self, kind: Text, what: &'static str, s: &'a str)
        -> Result<[u8; 8], WriteError>;
    /// The reference of a list of `items` (each a line).
    fn list(&mut self, what: &'static str, items: &'a [String]) -> Result<[u8; 8], WriteError>;
}

/// How a string is checked.
#[derive(Clone, Copy)]
enum Text {
    Name,
    Field,
}

/// The first pass: adds every string (checked) and list.
struct Collect<'s, 'a> {
    strings: &'s mut Strings<'a>,
    lists: &'s mut Lists,
    /// String references handed out, to check the second pass asks for as many.
    n_refs: &'s mut usize,
}

impl<'a> Refs<'a> for Collect<'_, 'a> {
    fn string(
        &mut self,
        kind: Text,
        what: &'static str,
        s: &'a str,
    ) -> Result<[u8; 8], WriteError> {
        let r = match kind {
            Text::Name => self.strings.name(what, s),
            Text::Field => self.strings.field(what, s),
        }?;
        *self.n_refs += 1;
        Ok(r)
    }

    fn list(&mut self, what: &'static str, items: &'a [String]) -> Result<[u8; 8], WriteError> {
        self.lists.add(self.strings, what, items)
    }
}

/// The second pass: each string's reference looked up in the table the first pass made (it
/// holds every string the sections ask for), lists numbered in the order the first pass added
/// them (the sections ask in the same order). Looking up again costs a few ms at 10 000 grants;
/// a log of every reference handed out was a MiB of jitd's peak.
struct Replay<'s, 'a> {
    seen: &'s HashMap<&'a str, (u32, u32), StringHash>,
    n_refs: usize,
    next_list: u32,
}

/// A string reference (or a list's): offset and length, little-endian.
fn strref(off: u32, len: u32) -> [u8; 8] {
    let mut r = [0u8; 8];
    r[..4].copy_from_slice(&off.to_le_bytes());
    r[4..].copy_from_slice(&len.to_le_bytes());
    r
}

impl<'a> Refs<'a> for Replay<'_, 'a> {
    fn string(&mut self, _: Text, _: &'static str, s: &'a str) -> Result<[u8; 8], WriteError> {
        let &(off, len) = self
            .seen
            .get(s)
            .ok_or(WriteError::Layout("a string the first pass did not add"))?;
        self.n_refs += 1;
        Ok(strref(off, len))
    }

    fn list(&mut self, _: &'static str, items: &'a [String]) -> Result<[u8; 8], WriteError> {
        let start = self.next_list;
        let count = len_u32(items.len())?;
        self.next_list = start.checked_add(count).ok_or(WriteError::TooLarge)?;
        Ok(strref(start, count))
    }
}

/// A section's bytes, or nowhere (the first pass builds no section).
struct Out(Option<Vec<u8>>);

impl Out {
    fn none() -> Out {
        Out(None)
    }

    fn with_capacity(n: usize) -> Out {
        Out(Some(Vec::with_capacity(n)))
    }

    fn put(&mut self, bytes: &[u8]) {
        if let Some(v) = self.0.as_mut() {
            v.extend_from_slice(bytes);
        }
    }

    fn into_bytes(self) -> Vec<u8> {
        self.0.unwrap_or_default()
    }
}

/// One membership as USER_GIDS holds it, with the order it was met in.
struct UserGid<'a> {
    user: &'a str,
    /// The order met: with it an unstable sort (no merge buffer as big as half the vector)
    /// keeps a user's memberships in that order; it fills what would be padding.
    seq: u32,
    gid: u32,
    not_before: i64,
    not_after: i64,
}

/// The records of one image's base, sorted as the sections hold them.
struct Base<'a> {
    accounts: Vec<&'a Account>,
    groups: Vec<GroupIn<'a>>,
    grants: Vec<&'a GateGrant>,
    managed: Vec<&'a String>,
    /// Each membership for initgroups (private groups left out), sorted by user.
    user_gids: Vec<UserGid<'a>>,
    /// Distinct users in `user_gids`.
    n_users: usize,
    n_members: usize,
    /// Write grant ids empty (shards).
    blank: bool,
}

impl<'a> Base<'a> {
    fn sorted(
        mut accounts: Vec<&'a Account>,
        mut groups: Vec<GroupIn<'a>>,
        mut grants: Vec<&'a GateGrant>,
        mut managed: Vec<&'a String>,
        blank: bool,
    ) -> Result<Base<'a>, WriteError> {
        // Accounts by (name, not_before), so that lookups find the earliest live one first.
        accounts
            .sort_by(|a, b| (a.name.as_str(), a.not_before).cmp(&(b.name.as_str(), b.not_before)));
        // Groups by name, names unique; members contiguous per group, sorted by name.
        groups.sort_by(|a, b| a.entry.name.cmp(&b.entry.name));
        for w in groups.windows(2) {
            if let [a, b] = w {
                if a.entry.name == b.entry.name {
                    return Err(WriteError::DuplicateGroup(a.entry.name.to_string()));
                }
            }
        }
        let mut user_gids: Vec<UserGid<'a>> = Vec::new();
        let mut n_members = 0;
        for GroupIn { entry: g, members } in &mut groups {
            members.sort_by(|a, b| {
                (a.name.as_str(), a.not_before).cmp(&(b.name.as_str(), b.not_before))
            });
            n_members += members.len();
            if g.kind != GROUP_KIND_PRIVATE {
                for &m in members.iter() {
                    let (nb, na) = member_window(g, m);
                    let seq = len_u32(user_gids.len())?;
                    user_gids.push(UserGid {
                        user: m.name.as_str(),
                        seq,
                        gid: g.gid,
                        not_before: nb,
                        not_after: na,
                    });
                }
            }
        }
        // By user, and for one user in the order met (groups by name, then members): one flat
        // vector instead of a map of small vectors (at 10 000 grants ~1.7 MiB of jitd's peak
        // for what these 40-byte entries hold in 0.4).
        user_gids.sort_unstable_by(|a, b| (a.user, a.seq).cmp(&(b.user, b.seq)));
        user_gids.shrink_to_fit();
        let n_users = user_gids.chunk_by(|a, b| a.user == b.user).count();
        grants.sort_by(|a, b| {
            (a.user.as_str(), a.not_before, a.id.as_str()).cmp(&(
                b.user.as_str(),
                b.not_before,
                b.id.as_str(),
            ))
        });
        managed.sort();
        managed.dedup();
        Ok(Base {
            accounts,
            groups,
            grants,
            managed,
            user_gids,
            n_users,
            n_members,
            blank,
        })
    }

    fn grant_id(&self, id: &'a str) -> &'a str {
        if self.blank {
            ""
        } else {
            id
        }
    }

    fn accounts(&self, refs: &mut dyn Refs<'a>, out: &mut Out) -> Result<(), WriteError> {
        for &a in &self.accounts {
            out.put(&refs.string(Text::Name, "account name", &a.name)?);
            out.put(&u32b(a.uid));
            out.put(&u32b(a.gid));
            out.put(&refs.string(Text::Field, "gecos", &a.gecos)?);
            out.put(&refs.string(Text::Field, "home", &a.home)?);
            out.put(&refs.string(Text::Field, "shell", &a.shell)?);
            out.put(&refs.string(Text::Field, "grant id", self.grant_id(&a.grant_id))?);
            out.put(&i64b(a.not_before));
            out.put(&i64b(a.not_after));
            out.put(&u32b(a.flags));
            out.put(&refs.list("ssh key", &a.ssh_keys)?);
            out.put(&u32b(0));
        }
        Ok(())
    }

    fn accounts_by_uid(&self) -> Result<Vec<u8>, WriteError> {
        permutation(self.accounts.len(), |i| {
            let a = self.accounts.get(i);
            (a.map_or(0, |a| a.uid), a.map_or(0, |a| a.not_before))
        })
    }

    /// GROUPS into `grp` and MEMBERS into `mem`.
    fn groups(
        &self,
        refs: &mut dyn Refs<'a>,
        grp: &mut Out,
        mem: &mut Out,
    ) -> Result<(), WriteError> {
        let mut start = 0u32;
        for GroupIn { entry: g, members } in &self.groups {
            let g: &'a GroupEntry = g;
            for &m in members {
                mem.put(&refs.string(Text::Name, "member name", &m.name)?);
                mem.put(&refs.string(Text::Field, "grant id", self.grant_id(&m.grant_id))?);
                let (nb, na) = member_window(g, m);
                mem.put(&i64b(nb));
                mem.put(&i64b(na));
            }
            grp.put(&refs.string(Text::Name, "group name", &g.name)?);
            grp.put(&u32b(g.gid));
            grp.put(&u32b(g.kind));
            grp.put(&i64b(g.not_before));
            grp.put(&i64b(g.not_after));
            grp.put(&u32b(start));
            let n = len_u32(members.len())?;
            grp.put(&u32b(n));
            start = start.checked_add(n).ok_or(WriteError::TooLarge)?;
        }
        Ok(())
    }

    fn groups_by_gid(&self) -> Result<Vec<u8>, WriteError> {
        permutation(self.groups.len(), |i| {
            self.groups.get(i).map_or(0, |g| g.entry.gid)
        })
    }

    /// USERS into `users` and USER_GIDS into `gids`.
    fn users(
        &self,
        refs: &mut dyn Refs<'a>,
        users: &mut Out,
        gids: &mut Out,
    ) -> Result<(), WriteError> {
        let mut start = 0u32;
        for list in self.user_gids.chunk_by(|a, b| a.user == b.user) {
            let Some(first) = list.first() else { continue };
            for ug in list {
                gids.put(&u32b(ug.gid));
                gids.put(&u32b(0));
                gids.put(&i64b(ug.not_before));
                gids.put(&i64b(ug.not_after));
            }
            users.put(&refs.string(Text::Name, "user name", first.user)?);
            users.put(&u32b(start));
            let n = len_u32(list.len())?;
            users.put(&u32b(n));
            start = start.checked_add(n).ok_or(WriteError::TooLarge)?;
        }
        Ok(())
    }

    fn grants(&self, refs: &mut dyn Refs<'a>, out: &mut Out) -> Result<(), WriteError> {
        for &g in &self.grants {
            out.put(&refs.string(Text::Field, "grant id", &g.id)?);
            out.put(&refs.string(Text::Name, "grant user", &g.user)?);
            out.put(&u32b(g.uid));
            out.put(&u32b(g.flags));
            out.put(&u32b(g.revoke_on));
            out.put(&u32b(0));
            out.put(&i64b(g.not_before));
            out.put(&i64b(g.not_after));
            let l = g.lists();
            out.put(&refs.list("from", &l.from)?);
            out.put(&refs.list("service", &l.services)?);
            out.put(&refs.list("window", &l.windows)?);
            out.put(&refs.list("sudo", &l.sudo)?);
            out.put(&refs.list("runas", &l.runas)?);
        }
        Ok(())
    }

    fn managed(&self, refs: &mut dyn Refs<'a>, out: &mut Out) -> Result<(), WriteError> {
        for &m in &self.managed {
            out.put(&refs.string(Text::Name, "managed account", m)?);
        }
        Ok(())
    }
}

/// The record numbers 0..n ordered by `key` (stable: equal keys keep record order), as the
/// little-endian u32s of a by-id section.
fn permutation<K: Ord>(n: usize, key: impl Fn(usize) -> K) -> Result<Vec<u8>, WriteError> {
    let mut order: Vec<u32> = (0..len_u32(n)?).collect();
    order.sort_by_key(|&i| key(i as usize));
    Ok(order.iter().flat_map(|i| i.to_le_bytes()).collect())
}

/// A member's window inside its group's.
fn member_window(g: &GroupEntry, m: &Member) -> (i64, i64) {
    (m.not_before.max(g.not_before), m.not_after.min(g.not_after))
}

/// Sections of the lookup index (NAME_BIG, ID_BIG, NAME_DIR, ID_DIR, SHARDS); an indexed
/// image also holds LISTING (1.5).
const INDEX_SECTIONS: usize = 5;
/// Sections 1 to 11 (the base), in every image.
const BASE_SECTIONS: usize = 11;

/// A CRC32C being joined from pieces in file order ([`crc32c_combine`]).
#[derive(Clone, Copy, Default)]
struct Sum {
    crc: u32,
    len: u64,
}

impl Sum {
    fn then(self, crc: u32, len: u64) -> Sum {
        Sum {
            crc: crc32c_combine(self.crc, crc, len),
            len: self.len + len,
        }
    }
}

fn io_error(e: std::io::Error) -> WriteError {
    WriteError::Io(e.to_string())
}

/// Lays an image out on a sink, in file order: a head reserved first (its size follows from
/// the number of sections), then sections as they come, each checksummed once, then the head
/// with every offset and checksum. Parts of a section may be reserved and placed later (the
/// index's directories, which only its shards written after them fill in).
pub(crate) struct Placer<'s> {
    sink: &'s mut dyn Sink,
    n_sections: usize,
    with_index: bool,
    /// End of what was appended.
    at: usize,
    table: Vec<u8>,
    /// The checksum of `[head, at)`: closed pieces (a reserved one `None` until placed) and
    /// the open run of appended bytes after them.
    pieces: Vec<(Option<u32>, u64)>,
    run: Sum,
    /// With the index, where the base (sections 1 to 11) starts, and the sums of the base and
    /// of its accounts region (1.3, written first in it).
    base_at: Option<usize>,
    base: Sum,
    accounts: Sum,
}

/// A reserved part of a section, to be placed with [`Placer::place`].
pub(crate) struct Reserved {
    at: usize,
    len: usize,
    piece: usize,
}

impl<'s> Placer<'s> {
    /// Reserves the head of an image of `n_sections` sections on `sink`.
    pub(crate) fn new(
        sink: &'s mut dyn Sink,
        n_sections: usize,
        with_index: bool,
    ) -> Result<Placer<'s>, WriteError> {
        let head_len = HEADER_SIZE + n_sections * SECTION_ENTRY_SIZE;
        sink.append(&vec![0u8; head_len]).map_err(io_error)?;
        Ok(Placer {
            sink,
            n_sections,
            with_index,
            at: head_len,
            table: Vec::with_capacity(n_sections * SECTION_ENTRY_SIZE),
            pieces: Vec::new(),
            run: Sum::default(),
            base_at: None,
            base: Sum::default(),
            accounts: Sum::default(),
        })
    }

    /// Where the next appended byte goes.
    pub(crate) fn at(&self) -> usize {
        self.at
    }

    /// Appends bytes of the section being written (see [`Placer::entry`]); the file's
    /// checksum runs on over them.
    pub(crate) fn append(&mut self, bytes: &[u8]) -> Result<(), WriteError> {
        self.append_summed(bytes, None)
    }

    /// As `append`, with the bytes' own CRC when the caller has it (joined instead of run over
    /// the bytes a second time).
    fn append_summed(&mut self, bytes: &[u8], crc: Option<u32>) -> Result<(), WriteError> {
        self.sink.append(bytes).map_err(io_error)?;
        self.run = match crc {
            Some(crc) => self.run.then(crc, bytes.len() as u64),
            None => Sum {
                crc: crc32c_append(self.run.crc, bytes),
                len: self.run.len + bytes.len() as u64,
            },
        };
        self.at = self
            .at
            .checked_add(bytes.len())
            .ok_or(WriteError::TooLarge)?;
        len_u32(self.at)?;
        Ok(())
    }

    /// Appends `len` zero bytes to be placed later.
    pub(crate) fn reserve(&mut self, len: usize) -> Result<Reserved, WriteError> {
        let r = Reserved {
            at: self.at,
            len,
            piece: self.pieces.len() + 1,
        };
        self.sink.append(&vec![0u8; len]).map_err(io_error)?;
        self.pieces.push((Some(self.run.crc), self.run.len));
        self.pieces.push((None, len as u64));
        self.run = Sum::default();
        self.at = self.at.checked_add(len).ok_or(WriteError::TooLarge)?;
        len_u32(self.at)?;
        Ok(r)
    }

    /// Places the bytes of a reserved part (exactly its length).
    pub(crate) fn place(&mut self, r: Reserved, bytes: &[u8]) -> Result<(), WriteError> {
        if bytes.len() != r.len {
            return Err(WriteError::Layout("placed part is not its reserved length"));
        }
        self.sink.place(r.at as u64, bytes).map_err(io_error)?;
        if let Some(p) = self.pieces.get_mut(r.piece) {
            p.0 = Some(crc32c(bytes));
        }
        Ok(())
    }

    /// States a section of `len` bytes from `off` in the table. Record counts for sections
    /// whose records are fixed-size are implied by the length; the table states them anyway
    /// so the reader can cross-check.
    pub(crate) fn entry(
        &mut self,
        id: u32,
        off: usize,
        len: usize,
        count: usize,
    ) -> Result<(), WriteError> {
        if self.table.len() >= self.n_sections * SECTION_ENTRY_SIZE {
            return Err(WriteError::Layout("more sections than reserved"));
        }
        let count = match id {
            section::STRINGS => len,
            section::MEMBERS => len / MEMBER_SIZE,
            section::USER_GIDS => len / USER_GID_SIZE,
            section::STRLIST | section::MANAGED => len / STRREF_SIZE,
            section::SHARDS => len,
            _ => count,
        };
        self.table.extend_from_slice(&u32b(id));
        self.table.extend_from_slice(&u32b(len_u32(off)?));
        self.table.extend_from_slice(&u32b(len_u32(len)?));
        self.table.extend_from_slice(&u32b(len_u32(count)?));
        Ok(())
    }

    /// Appends a whole section and states it; its bytes are freed once out. With the index,
    /// sections 1 to 11 (the base) follow it, back to back to the end of the file; their own
    /// checksum lets enumeration read only them (1.2, `base_at`), and the accounts region
    /// (1.3) is the start of the base.
    pub(crate) fn section(
        &mut self,
        id: u32,
        bytes: Vec<u8>,
        count: usize,
    ) -> Result<(), WriteError> {
        if self.with_index && id == section::STRINGS {
            self.base_at = Some(self.at);
        }
        let off = self.at;
        let crc = crc32c(&bytes);
        self.append_summed(&bytes, Some(crc))?;
        if self.base_at.is_some() {
            self.base = self.base.then(crc, bytes.len() as u64);
            if ACCOUNTS_REGION.contains(&id) {
                self.accounts = self.accounts.then(crc, bytes.len() as u64);
            }
        }
        self.entry(id, off, bytes.len(), count)
    }

    /// Places the head: header, section table, their checksum and the whole file's.
    pub(crate) fn finish(
        mut self,
        generated_at: i64,
        serial: u32,
        uid_range: Option<(u32, u32)>,
    ) -> Result<(), WriteError> {
        let head_len = HEADER_SIZE + self.n_sections * SECTION_ENTRY_SIZE;
        if self.table.len() != self.n_sections * SECTION_ENTRY_SIZE {
            return Err(WriteError::Layout("fewer sections than reserved"));
        }
        self.pieces.push((Some(self.run.crc), self.run.len));
        let mut rest = Sum::default();
        for &(crc, len) in &self.pieces {
            let crc = crc.ok_or(WriteError::Layout("a reserved part was never placed"))?;
            rest = rest.then(crc, len);
        }
        let mut header = [0u8; HEADER_SIZE];
        header[0..8].copy_from_slice(&MAGIC);
        header[8..10].copy_from_slice(&MAJOR.to_le_bytes());
        header[10..12].copy_from_slice(&MINOR.to_le_bytes());
        header[16..24].copy_from_slice(&(self.at as u64).to_le_bytes());
        header[24..32].copy_from_slice(&generated_at.to_le_bytes());
        header[32..36].copy_from_slice(&len_u32(self.n_sections)?.to_le_bytes());
        header[SERIAL_AT..SERIAL_AT + 4].copy_from_slice(&serial.to_le_bytes());
        if let Some((lo, hi)) = uid_range {
            header[UID_MIN_AT..UID_MIN_AT + 4].copy_from_slice(&lo.to_le_bytes());
            header[UID_MAX_AT..UID_MAX_AT + 4].copy_from_slice(&hi.to_le_bytes());
        }
        if let Some(b) = self.base_at {
            header[BASE_CRC_AT..BASE_CRC_AT + 4].copy_from_slice(&self.base.crc.to_le_bytes());
            header[BASE_AT_AT..BASE_AT_AT + 4].copy_from_slice(&len_u32(b)?.to_le_bytes());
            header[ACCOUNTS_CRC_AT..ACCOUNTS_CRC_AT + 4]
                .copy_from_slice(&self.accounts.crc.to_le_bytes());
        }
        let mut head = Vec::with_capacity(head_len);
        head.extend_from_slice(&header);
        head.extend_from_slice(&self.table);
        let hcrc = super::index::head_crc(&head).ok_or(WriteError::TooLarge)?;
        if let Some(h) = head.get_mut(HEAD_CRC_AT..HEAD_CRC_AT + 4) {
            h.copy_from_slice(&hcrc.to_le_bytes());
        }
        let crc = Sum {
            crc: crc32c(head.get(16..).unwrap_or(&[])),
            len: 0,
        }
        .then(rest.crc, rest.len)
        .crc;
        if let Some(h) = head.get_mut(12..16) {
            h.copy_from_slice(&crc.to_le_bytes());
        }
        self.sink.place(0, &head).map_err(io_error)
    }
}
