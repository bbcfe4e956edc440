//! Validating snapshot reader: a pure function over `&[u8]`.
//!
//! [`Snapshot::parse`] checks the whole image once (header, checksum, every section bound,
//! every string and list reference, every index, sort order); afterwards lookups are binary
//! searches that cannot fail. Accessors still go through `get()`, so even a reader bug yields
//! an empty answer, never a panic or an out-of-bounds read (docs/threat-model.md: B9, N6).

use super::format::*;
use crate::constants::{
    MAX_NAME_LEN, MAX_SNAPSHOT_BYTES, MAX_SNAPSHOT_FILE_BYTES, MAX_SNAPSHOT_STRING,
};
use crate::crc32c::crc32c;
use crate::policy::is_live;
use crate::time::UnixTime;
use crate::types::{GROUP_KIND_JIT, GROUP_KIND_LOCAL, GROUP_KIND_PRIVATE};
use crate::validate::{is_field_safe, is_line_safe, is_name_safe};
use std::cmp::Ordering;

/// Why an image was refused. Any of these makes the whole file unusable (modules: UNAVAIL).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotError {
    /// Shorter than a header, longer than the cap, or `file_len` disagrees with the size.
    BadSize,
    /// Not a jit snapshot.
    BadMagic,
    /// A major version this reader does not know.
    UnsupportedVersion(u16),
    /// The body does not match its checksum (torn or corrupted).
    BadChecksum,
    /// A section, record, string, list or index points outside the file or is inconsistent.
    Corrupt(&'static str),
}

impl std::fmt::Display for SnapshotError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SnapshotError::BadSize => write!(f, "snapshot has a bad size"),
            SnapshotError::BadMagic => write!(f, "not a jit snapshot (bad magic)"),
            SnapshotError::UnsupportedVersion(v) => {
                write!(f, "unsupported snapshot major version {v}")
            }
            SnapshotError::BadChecksum => write!(f, "snapshot checksum mismatch"),
            SnapshotError::Corrupt(what) => write!(f, "corrupt snapshot: {what}"),
        }
    }
}

impl std::error::Error for SnapshotError {}

// The snapshot's little-endian field readers (the index and the listing use them too): a
// field past the end of `b` reads as 0, which every check then refuses.
pub(super) fn rd_u32(b: &[u8], off: usize) -> u32 {
    b.get(off..off.saturating_add(4))
        .and_then(|s| <[u8; 4]>::try_from(s).ok())
        .map_or(0, u32::from_le_bytes)
}

pub(super) fn rd_i64(b: &[u8], off: usize) -> i64 {
    b.get(off..off.saturating_add(8))
        .and_then(|s| <[u8; 8]>::try_from(s).ok())
        .map_or(0, i64::from_le_bytes)
}

pub(super) fn rd_u64(b: &[u8], off: usize) -> u64 {
    b.get(off..off.saturating_add(8))
        .and_then(|s| <[u8; 8]>::try_from(s).ok())
        .map_or(0, u64::from_le_bytes)
}

pub(super) fn rd_u16(b: &[u8], off: usize) -> u16 {
    b.get(off..off.saturating_add(2))
        .and_then(|s| <[u8; 2]>::try_from(s).ok())
        .map_or(0, u16::from_le_bytes)
}

/// A validated snapshot image.
#[derive(Clone, Copy)]
pub struct Snapshot<'a> {
    generated_at: UnixTime,
    uid_range: Option<(u32, u32)>,
    /// STRINGS, checked as UTF-8 once; a string reference is a `get(range)` of it, which also
    /// refuses a range that splits a character.
    strings: &'a str,
    accounts: &'a [u8],
    accounts_by_uid: &'a [u8],
    groups: &'a [u8],
    groups_by_gid: &'a [u8],
    members: &'a [u8],
    users: &'a [u8],
    user_gids: &'a [u8],
    strlist: &'a [u8],
    grants: &'a [u8],
    managed: &'a [u8],
    /// The base serial of the header (1.4; 0: no delta applies).
    serial: u32,
    /// BASES (1.4): the serials of the bases this image is a delta of; empty for a base.
    bases: &'a [u8],
    /// The delta read over this base, if any ([`Snapshot::with_delta`]). Lookups answer from
    /// both: a delta only ever adds records.
    delta: Option<&'a Snapshot<'a>>,
}

/// Which checksum vouches for the bytes a parse uses.
#[derive(Clone, Copy)]
enum Integrity {
    /// `crc32c`: the whole file after the first 16 bytes.
    Whole,
    /// `head_crc` for the header and table, `base_crc` for `[base_at, file_len)` (1.2).
    Base,
    /// `head_crc` for the header and table, `accounts_crc` for the accounts region (1.3).
    AccountsRegion,
}

/// Which records a parse validates and keeps.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Part {
    /// Every section.
    All,
    /// Accounts only (with the strings and string lists they use): `getpwent`.
    Accounts,
}

/// How a string field is checked: passwd-safe field or free-text line.
#[derive(Clone, Copy)]
enum Kind {
    Field,
    Name,
    Line,
}

/// For the readers of a part of the base: the header and table checked against `head_crc`,
/// then `base_at` if the file states one ([`Snapshot::stated_base_at`]) and its minor is at
/// least `min_minor`. `None`: the part is not stated (the caller says which); `Some(Err)`: the
/// header or table is damaged.
fn checked_head_base_at(data: &[u8], min_minor: u16) -> Option<Result<usize, SnapshotError>> {
    let Some(head) = super::index::head_crc(data) else {
        return Some(Err(SnapshotError::Corrupt("section table past end")));
    };
    if head != rd_u32(data, HEAD_CRC_AT) {
        return Some(Err(SnapshotError::BadChecksum));
    }
    Snapshot::stated_base_at(data, data.len() as u64)
        .filter(|_| rd_u16(data, 10) >= min_minor)
        .and_then(|at| usize::try_from(at).ok())
        .map(Ok)
}

/// The end of the accounts region (1.3) of a file whose base starts at `base_at`: the end of
/// the last of its sections (`ACCOUNTS_REGION`), as the table in `data` states them. `None` if
/// one is missing, repeated, or starts before `base_at`, or the table does not fit.
fn accounts_region_end(data: &[u8], base_at: u64) -> Option<u64> {
    let nsec = rd_u32(data, 32) as usize;
    if nsec > MAX_SECTIONS || data.len() < HEADER_SIZE + nsec * SECTION_ENTRY_SIZE {
        return None;
    }
    let mut seen = [false; 3];
    let mut end = base_at;
    for i in 0..nsec {
        let e = HEADER_SIZE + i * SECTION_ENTRY_SIZE;
        let Some(k) = ACCOUNTS_REGION.iter().position(|&id| id == rd_u32(data, e)) else {
            continue;
        };
        let off = u64::from(rd_u32(data, e + 4));
        let len = u64::from(rd_u32(data, e + 8));
        let slot = seen.get_mut(k)?;
        if *slot || off < base_at {
            return None;
        }
        *slot = true;
        end = end.max(off + len);
    }
    seen.iter().all(|&s| s).then_some(end)
}

impl<'a> Snapshot<'a> {
    /// Validates `data` completely and returns a view over it.
    ///
    /// # Errors
    /// Any inconsistency at all; the caller treats the file as unavailable.
    pub fn parse(data: &'a [u8]) -> Result<Snapshot<'a>, SnapshotError> {
        Snapshot::parse_as(data, Integrity::Whole, Part::All)
    }

    /// Like [`Snapshot::parse`], but validates and keeps only the accounts (and the string
    /// lists they use): the view holds no group, membership, gate or managed record, and no
    /// uid index, so nothing it can answer went unchecked. Listing accounts (`getpwent`) needs
    /// nothing else, and checking the rest was about half of what listing them cost.
    ///
    /// # Errors
    /// As [`Snapshot::parse`], for the parts it checks.
    pub fn parse_accounts(data: &'a [u8]) -> Result<Snapshot<'a>, SnapshotError> {
        Snapshot::parse_as(data, Integrity::Whole, Part::Accounts)
    }

    /// Validates the accounts region of an indexed image (format 1.3): STRINGS, ACCOUNTS and
    /// STRLIST, which the writer puts first in the base under their own `accounts_crc`, and
    /// returns the accounts view of [`Snapshot::parse_accounts`]. Only the header, the section
    /// table and the region need be the file's (about half of the base, a sixth of the file).
    ///
    /// # Errors
    /// As [`Snapshot::parse_base`], and `Corrupt("no accounts region")` for a file that states
    /// none (minor below 3, or no base region): the caller then reads the base.
    pub fn parse_accounts_region(data: &'a [u8]) -> Result<Snapshot<'a>, SnapshotError> {
        Snapshot::parse_as(data, Integrity::AccountsRegion, Part::Accounts)
    }

    /// Where the accounts region of the file whose first bytes are `prefix` lies,
    /// `[base_at, end)`, if its header states one (format 1.3, an indexed file of `file_size`
    /// bytes). Not a check: [`Snapshot::parse_accounts_region`] verifies the header, the table
    /// and the region.
    pub fn stated_accounts_region(prefix: &[u8], file_size: u64) -> Option<(u64, u64)> {
        let at = Snapshot::stated_base_at(prefix, file_size)?;
        if rd_u16(prefix, 10) < 3 {
            return None;
        }
        let end = accounts_region_end(prefix, at)?;
        (end <= file_size).then_some((at, end))
    }

    /// [`Snapshot::parse_base`] limited to the accounts, as [`Snapshot::parse_accounts`].
    ///
    /// # Errors
    /// As [`Snapshot::parse_base`], for the parts it checks.
    pub fn parse_base_accounts(data: &'a [u8]) -> Result<Snapshot<'a>, SnapshotError> {
        Snapshot::parse_as(data, Integrity::Base, Part::Accounts)
    }

    /// Validates the base of an indexed image (format 1.2): sections 1 to 11, which the writer
    /// puts back to back from `base_at` to the end of the file under their own `base_crc`.
    /// Enumeration needs only them, and they are about a third of an indexed file.
    ///
    /// `data` has the file's length, but only the header, the section table and the bytes
    /// from `base_at` need be the file's: nothing else is read (the index sections' bounds are
    /// checked, not their bytes). The header and table are vouched for by `head_crc`, the base
    /// by `base_crc`, and every section this reader uses must lie inside the base.
    ///
    /// # Errors
    /// As [`Snapshot::parse`], and `Corrupt("no base region")` for a file that states none
    /// (minor below 2, or `base_at` 0): the caller then reads the file whole.
    pub fn parse_base(data: &'a [u8]) -> Result<Snapshot<'a>, SnapshotError> {
        Snapshot::parse_as(data, Integrity::Base, Part::All)
    }

    /// Where the base region of the file whose first bytes are `prefix` starts, if its header
    /// states one (format 1.2, `base_at` inside a file of `file_size` bytes). Not a check:
    /// [`Snapshot::parse_base`] verifies the header, the table and the region.
    pub fn stated_base_at(prefix: &[u8], file_size: u64) -> Option<u64> {
        let at = u64::from(rd_u32(prefix, BASE_AT_AT));
        (prefix.get(0..8) == Some(&MAGIC[..])
            && rd_u16(prefix, 10) >= 2
            && at >= HEADER_SIZE as u64
            && at <= file_size)
            .then_some(at)
    }

    fn parse_as(
        data: &'a [u8],
        integrity: Integrity,
        part: Part,
    ) -> Result<Snapshot<'a>, SnapshotError> {
        // A file checked whole is one a reader copied whole; of a base or accounts read only
        // that region was copied (at most MAX_SNAPSHOT_BYTES, checked below), the rest of the
        // buffer is zero pages standing for a file of up to MAX_SNAPSHOT_FILE_BYTES.
        let cap = match integrity {
            Integrity::Whole => MAX_SNAPSHOT_BYTES,
            Integrity::Base | Integrity::AccountsRegion => MAX_SNAPSHOT_FILE_BYTES,
        };
        if data.len() < HEADER_SIZE || data.len() as u64 > cap {
            return Err(SnapshotError::BadSize);
        }
        if data.get(0..8) != Some(&MAGIC[..]) {
            return Err(SnapshotError::BadMagic);
        }
        let major = rd_u16(data, 8);
        if major != MAJOR {
            return Err(SnapshotError::UnsupportedVersion(major));
        }
        if rd_u64(data, 16) != data.len() as u64 {
            return Err(SnapshotError::BadSize);
        }
        // The lowest offset a section this reader uses may start at.
        let first_used = match integrity {
            Integrity::Whole => {
                let body = data.get(16..).ok_or(SnapshotError::BadSize)?;
                if crc32c(body) != rd_u32(data, 12) {
                    return Err(SnapshotError::BadChecksum);
                }
                0
            }
            Integrity::Base => {
                let no_base = SnapshotError::Corrupt("no base region");
                let base_at = checked_head_base_at(data, 2).ok_or(no_base)??;
                let base = data.get(base_at..).ok_or(no_base)?;
                if base.len() as u64 > MAX_SNAPSHOT_BYTES {
                    return Err(SnapshotError::BadSize);
                }
                if crc32c(base) != rd_u32(data, BASE_CRC_AT) {
                    return Err(SnapshotError::BadChecksum);
                }
                base_at
            }
            Integrity::AccountsRegion => {
                let none = SnapshotError::Corrupt("no accounts region");
                let base_at = checked_head_base_at(data, 3).ok_or(none)??;
                let end = accounts_region_end(data, base_at as u64)
                    .and_then(|e| usize::try_from(e).ok())
                    .ok_or(none)?;
                let region = data.get(base_at..end).ok_or(none)?;
                if region.len() as u64 > MAX_SNAPSHOT_BYTES {
                    return Err(SnapshotError::BadSize);
                }
                if crc32c(region) != rd_u32(data, ACCOUNTS_CRC_AT) {
                    return Err(SnapshotError::BadChecksum);
                }
                base_at
            }
        };
        if matches!(integrity, Integrity::AccountsRegion) && part != Part::Accounts {
            return Err(SnapshotError::Corrupt(
                "only accounts are checked by this read",
            ));
        }
        let nsec = rd_u32(data, 32) as usize;
        if nsec > MAX_SECTIONS {
            return Err(SnapshotError::Corrupt("too many sections"));
        }
        let table_end = HEADER_SIZE + nsec * SECTION_ENTRY_SIZE;
        if table_end > data.len() {
            return Err(SnapshotError::Corrupt("section table past end"));
        }
        let mut found: [Option<(&'a [u8], u32)>; 12] = [None; 12];
        let mut bases: Option<(&'a [u8], u32)> = None;
        for i in 0..nsec {
            let e = HEADER_SIZE + i * SECTION_ENTRY_SIZE;
            let id = rd_u32(data, e) as usize;
            let off = rd_u32(data, e + 4) as usize;
            let len = rd_u32(data, e + 8) as usize;
            let count = rd_u32(data, e + 12);
            if off < table_end {
                return Err(SnapshotError::Corrupt("section overlaps the header"));
            }
            let bytes = data
                .get(
                    off..off
                        .checked_add(len)
                        .ok_or(SnapshotError::Corrupt("section length"))?,
                )
                .ok_or(SnapshotError::Corrupt("section past end"))?;
            if id == section::BASES as usize {
                if bases.replace((bytes, count)).is_some() {
                    return Err(SnapshotError::Corrupt("duplicate section"));
                }
                continue;
            }
            match found.get_mut(id) {
                // Ids this version does not know come from a newer minor version: ignored.
                None => {}
                Some(_) if off < first_used => {
                    return Err(SnapshotError::Corrupt("section outside the base region"));
                }
                Some(slot) => {
                    if slot.is_some() {
                        return Err(SnapshotError::Corrupt("duplicate section"));
                    }
                    *slot = Some((bytes, count));
                }
            }
        }
        let sec = |id: u32, size: usize| -> Result<&'a [u8], SnapshotError> {
            let (bytes, count) = found
                .get(id as usize)
                .copied()
                .flatten()
                .ok_or(SnapshotError::Corrupt("missing section"))?;
            if size > 0 && (bytes.len() % size != 0 || bytes.len() / size != count as usize) {
                return Err(SnapshotError::Corrupt(
                    "section size disagrees with its count",
                ));
            }
            Ok(bytes)
        };
        let snap = Snapshot {
            generated_at: rd_i64(data, 24),
            uid_range: {
                let (lo, hi) = (rd_u32(data, UID_MIN_AT), rd_u32(data, UID_MAX_AT));
                (lo != 0 && lo <= hi).then_some((lo, hi))
            },
            strings: std::str::from_utf8(sec(section::STRINGS, 0)?)
                .map_err(|_| SnapshotError::Corrupt("strings not UTF-8"))?,
            accounts: sec(section::ACCOUNTS, ACCOUNT_SIZE)?,
            accounts_by_uid: sec(section::ACCOUNTS_BY_UID, INDEX_SIZE)?,
            groups: sec(section::GROUPS, GROUP_SIZE)?,
            groups_by_gid: sec(section::GROUPS_BY_GID, INDEX_SIZE)?,
            members: sec(section::MEMBERS, MEMBER_SIZE)?,
            users: sec(section::USERS, USER_SIZE)?,
            user_gids: sec(section::USER_GIDS, USER_GID_SIZE)?,
            strlist: sec(section::STRLIST, STRREF_SIZE)?,
            grants: sec(section::GRANTS, GRANT_SIZE)?,
            managed: sec(section::MANAGED, STRREF_SIZE)?,
            serial: rd_u32(data, SERIAL_AT),
            bases: match bases {
                None => &[],
                Some((b, count)) => {
                    let n = b.len() / SERIAL_SIZE;
                    if b.len() % SERIAL_SIZE != 0
                        || n != count as usize
                        || n == 0
                        || n > MAX_DELTA_BASES
                        || (0..n).any(|k| rd_u32(b, k * SERIAL_SIZE) == 0)
                    {
                        return Err(SnapshotError::Corrupt("bad delta bases"));
                    }
                    b
                }
            },
            delta: None,
        };
        match part {
            Part::All => {
                snap.validate()?;
                Ok(snap)
            }
            Part::Accounts => {
                snap.validate_accounts()?;
                Ok(Snapshot {
                    accounts_by_uid: &[],
                    groups: &[],
                    groups_by_gid: &[],
                    members: &[],
                    users: &[],
                    user_gids: &[],
                    grants: &[],
                    managed: &[],
                    ..snap
                })
            }
        }
    }

    fn validate(&self) -> Result<(), SnapshotError> {
        let bad = SnapshotError::Corrupt;
        let n_acc = self.validate_accounts()?;
        self.check_index(self.accounts_by_uid, n_acc, |s, i| {
            let r = s.rec(s.accounts, i, ACCOUNT_SIZE);
            (rd_u32(r, 8), rd_i64(r, 48))
        })?;

        let n_grp = self.groups.len() / GROUP_SIZE;
        let n_mem = (self.members.len() / MEMBER_SIZE) as u64;
        let mut prev_g: Option<&str> = None;
        for i in 0..n_grp {
            let r = self.rec(self.groups, i, GROUP_SIZE);
            let name = self.check_str(r, 0, Kind::Name)?;
            if !matches!(
                rd_u32(r, 12),
                GROUP_KIND_LOCAL | GROUP_KIND_JIT | GROUP_KIND_PRIVATE
            ) {
                return Err(bad("unknown group kind"));
            }
            if u64::from(rd_u32(r, 32)) + u64::from(rd_u32(r, 36)) > n_mem {
                return Err(bad("members past end"));
            }
            if prev_g.is_some_and(|p| p >= name) {
                return Err(bad("groups not sorted or duplicated"));
            }
            prev_g = Some(name);
        }
        self.check_index(self.groups_by_gid, n_grp, |s, i| {
            (rd_u32(s.rec(s.groups, i, GROUP_SIZE), 8), 0)
        })?;
        for i in 0..n_mem as usize {
            let r = self.rec(self.members, i, MEMBER_SIZE);
            self.check_str(r, 0, Kind::Name)?;
            self.check_str(r, 8, Kind::Field)?;
        }

        let n_ug = (self.user_gids.len() / USER_GID_SIZE) as u64;
        let mut prev_u: Option<&str> = None;
        for i in 0..self.users.len() / USER_SIZE {
            let r = self.rec(self.users, i, USER_SIZE);
            let name = self.check_str(r, 0, Kind::Name)?;
            if u64::from(rd_u32(r, 8)) + u64::from(rd_u32(r, 12)) > n_ug {
                return Err(bad("user gids past end"));
            }
            if prev_u.is_some_and(|p| p >= name) {
                return Err(bad("users not sorted"));
            }
            prev_u = Some(name);
        }

        let mut prev_gr: Option<(&str, i64)> = None;
        for i in 0..self.grants.len() / GRANT_SIZE {
            let r = self.rec(self.grants, i, GRANT_SIZE);
            self.check_str(r, 0, Kind::Field)?;
            let user = self.check_str(r, 8, Kind::Name)?;
            for off in [48, 56, 64, 72, 80] {
                self.check_list(r, off)?;
            }
            let key = (user, rd_i64(r, 32));
            if prev_gr.is_some_and(|p| p > key) {
                return Err(bad("grants not sorted"));
            }
            prev_gr = Some(key);
        }

        let mut prev_m: Option<&str> = None;
        for i in 0..self.managed.len() / STRREF_SIZE {
            let m = self.check_str(self.managed, i * STRREF_SIZE, Kind::Name)?;
            if prev_m.is_some_and(|p| p >= m) {
                return Err(bad("managed list not sorted"));
            }
            prev_m = Some(m);
        }
        Ok(())
    }

    /// The checks of the accounts and of the string lists they use; the number of accounts.
    fn validate_accounts(&self) -> Result<usize, SnapshotError> {
        let bad = SnapshotError::Corrupt;
        // Every string list entry must be a valid line.
        for i in 0..self.strlist.len() / STRREF_SIZE {
            self.check_str(self.strlist, i * STRREF_SIZE, Kind::Line)?;
        }

        let n_acc = self.accounts.len() / ACCOUNT_SIZE;
        let mut prev: Option<(&str, i64)> = None;
        for i in 0..n_acc {
            let r = self.rec(self.accounts, i, ACCOUNT_SIZE);
            let name = self.check_str(r, 0, Kind::Name)?;
            for off in [16, 24, 32, 40] {
                self.check_str(r, off, Kind::Field)?;
            }
            self.check_list(r, 68)?;
            let key = (name, rd_i64(r, 48));
            if prev.is_some_and(|p| p > key) {
                return Err(bad("accounts not sorted"));
            }
            prev = Some(key);
        }
        Ok(n_acc)
    }

    /// A list reference at `off` of `rec` must lie inside STRLIST.
    fn check_list(&self, rec: &[u8], off: usize) -> Result<(), SnapshotError> {
        let n_lists = (self.strlist.len() / STRREF_SIZE) as u64;
        let start = u64::from(rd_u32(rec, off));
        let count = u64::from(rd_u32(rec, off + 4));
        if start + count > n_lists {
            return Err(SnapshotError::Corrupt("list past end"));
        }
        Ok(())
    }

    /// An index section must be a permutation sorted by `key`.
    fn check_index(
        &self,
        index: &[u8],
        n: usize,
        key: impl Fn(&Self, usize) -> (u32, i64),
    ) -> Result<(), SnapshotError> {
        let mut seen = vec![false; n];
        let mut prev: Option<(u32, i64)> = None;
        for k in 0..index.len() / INDEX_SIZE {
            let i = rd_u32(index, k * INDEX_SIZE) as usize;
            match seen.get_mut(i) {
                Some(s) if !*s => *s = true,
                _ => {
                    return Err(SnapshotError::Corrupt(
                        "index entry out of range or repeated",
                    ))
                }
            }
            let kv = key(self, i);
            if prev.is_some_and(|p| p > kv) {
                return Err(SnapshotError::Corrupt("index not sorted"));
            }
            prev = Some(kv);
        }
        if seen.iter().any(|s| !s) {
            return Err(SnapshotError::Corrupt("index does not cover every record"));
        }
        Ok(())
    }

    fn check_str(&self, rec: &'a [u8], off: usize, kind: Kind) -> Result<&'a str, SnapshotError> {
        let o = rd_u32(rec, off) as usize;
        let l = rd_u32(rec, off + 4) as usize;
        let s = self
            .strings
            .get(o..o.saturating_add(l))
            .ok_or(SnapshotError::Corrupt(
                "string past end or splitting a character",
            ))?;
        let ok = match kind {
            Kind::Field => is_field_safe(s, MAX_SNAPSHOT_STRING),
            Kind::Name => is_name_safe(s, MAX_NAME_LEN),
            Kind::Line => is_line_safe(s, MAX_SNAPSHOT_STRING),
        };
        if ok {
            Ok(s)
        } else {
            Err(SnapshotError::Corrupt(
                "string has a forbidden byte or length",
            ))
        }
    }

    fn rec(&self, sec: &'a [u8], i: usize, size: usize) -> &'a [u8] {
        let start = i.saturating_mul(size);
        sec.get(start..start.saturating_add(size)).unwrap_or(&[])
    }

    /// A string already validated by `parse`; empty if anything is off.
    fn str_at(&self, rec: &[u8], off: usize) -> &'a str {
        self.text().str_at(rec, off)
    }

    /// What a view of one record reads besides the record.
    fn text(&self) -> Text<'a> {
        Text {
            strings: self.strings,
            strlist: self.strlist,
        }
    }

    /// When jitd wrote the file (of a base read with a delta: the base's).
    pub fn generated_at(&self) -> UnixTime {
        self.generated_at
    }

    /// jitd's configured uid range as the header states it (format 1.1); `None` in a 1.0 file
    /// or one written without it (0-0, or a minimum above the maximum).
    pub fn uid_range(&self) -> Option<(u32, u32)> {
        self.uid_range
    }

    /// The base serial the header states (1.4); 0: no delta applies to this image.
    pub fn serial(&self) -> u32 {
        self.serial
    }

    /// Whether this image is a delta (it names the bases it applies to, section BASES).
    pub fn is_delta(&self) -> bool {
        !self.bases.is_empty()
    }

    /// Whether this delta may be read over the base whose header states `serial`: it names it,
    /// and it is not 0.
    pub fn applies_over(&self, serial: u32) -> bool {
        serial != 0
            && (0..self.bases.len() / SERIAL_SIZE)
                .any(|k| rd_u32(self.bases, k * SERIAL_SIZE) == serial)
    }

    /// This base with `delta` read over it, if the delta names `base_serial` (the serial of
    /// the file this view comes from: a shard states none of its own) and this view is not a
    /// delta itself; otherwise this view alone. Lookups then answer from both: an account or a
    /// gate record of either, a group's members of both, a user's gids of both. jitd writes
    /// into a delta only grants added since the base, so the union is exactly its state
    /// (docs/snapshot-format.md §12).
    pub fn with_delta(self, delta: &'a Snapshot<'a>, base_serial: u32) -> Snapshot<'a> {
        if self.is_delta() || !delta.is_delta() || !delta.applies_over(base_serial) {
            return self;
        }
        Snapshot {
            delta: Some(delta),
            ..self
        }
    }

    /// This base with `delta` over it if there is one and it names this file's serial (for a
    /// view of a whole file; a shard's caller passes the file's serial to
    /// [`Snapshot::with_delta`]).
    pub fn over(self, delta: Option<&'a Snapshot<'a>>) -> Snapshot<'a> {
        match delta {
            Some(d) => self.with_delta(d, self.serial),
            None => self,
        }
    }

    /// Whether a delta is read over this view.
    pub fn has_delta(&self) -> bool {
        self.delta.is_some()
    }

    /// This view without its delta.
    fn layer(&self) -> Snapshot<'a> {
        Snapshot {
            delta: None,
            ..*self
        }
    }

    /// Number of account records (live or not), the delta's after the base's.
    pub fn account_count(&self) -> usize {
        self.own_accounts() + self.delta.map_or(0, |d| d.own_accounts())
    }

    fn own_accounts(&self) -> usize {
        self.accounts.len() / ACCOUNT_SIZE
    }

    /// Number of group records, the delta's after the base's.
    pub fn group_count(&self) -> usize {
        self.own_groups() + self.delta.map_or(0, |d| d.own_groups())
    }

    fn own_groups(&self) -> usize {
        self.groups.len() / GROUP_SIZE
    }

    /// Number of gate records, the delta's after the base's.
    pub fn grant_count(&self) -> usize {
        self.own_grants() + self.delta.map_or(0, |d| d.own_grants())
    }

    fn own_grants(&self) -> usize {
        self.grants.len() / GRANT_SIZE
    }

    /// Account record `i`, live or not: the base's in name order, then the delta's.
    pub fn account_at(&self, i: usize) -> Option<AccountView<'a>> {
        match i.checked_sub(self.own_accounts()) {
            None => self.own_account_at(i),
            Some(j) => self.delta?.own_account_at(j),
        }
    }

    fn own_account_at(&self, i: usize) -> Option<AccountView<'a>> {
        (i < self.own_accounts()).then(|| AccountView {
            text: self.text(),
            rec: self.rec(self.accounts, i, ACCOUNT_SIZE),
        })
    }

    /// Whether account record `i` of [`Snapshot::account_at`] is a delta record for a name the
    /// base already shows live at `now` (a listing shows each name once).
    pub fn account_listed_in_base(&self, i: usize, now: UnixTime) -> bool {
        i >= self.own_accounts()
            && self
                .account_at(i)
                .is_some_and(|a| self.own_account_by_name(a.name(), now).is_some())
    }

    /// Group record `i`, visible or not: the base's in name order (with the members the delta
    /// adds to a group of the same name), then the delta's.
    pub fn group_at(&self, i: usize) -> Option<GroupView<'a>> {
        match i.checked_sub(self.own_groups()) {
            None => {
                let g = self.own_group_at(i)?;
                Some(self.merged(g))
            }
            Some(j) => self.delta?.own_group_at(j),
        }
    }

    fn own_group_at(&self, i: usize) -> Option<GroupView<'a>> {
        (i < self.own_groups()).then(|| GroupView {
            snap: self.layer(),
            rec: self.rec(self.groups, i, GROUP_SIZE),
            also: None,
        })
    }

    /// Whether group record `i` of [`Snapshot::group_at`] is a delta record of a group the base
    /// also has (it was listed with the base's, members merged).
    pub fn group_listed_in_base(&self, i: usize) -> bool {
        i >= self.own_groups()
            && self
                .group_at(i)
                .is_some_and(|g| self.own_group_record(g.name()).is_some())
    }

    /// `g`, a base record, with the delta's record of the same name read with it.
    fn merged(&self, g: GroupView<'a>) -> GroupView<'a> {
        GroupView {
            also: self
                .delta
                .and_then(|d| d.own_group_record(g.name()))
                .map(|dg| dg.rec),
            snap: Snapshot {
                delta: self.delta,
                ..g.snap
            },
            ..g
        }
    }

    /// Gate record `i`: the base's in user order, then the delta's.
    pub fn grant_at(&self, i: usize) -> Option<GateView<'a>> {
        match i.checked_sub(self.own_grants()) {
            None => (i < self.own_grants()).then(|| GateView {
                text: self.text(),
                rec: self.rec(self.grants, i, GRANT_SIZE),
            }),
            Some(j) => self.delta?.grant_at(j),
        }
    }

    /// First index in `0..n` whose key is not less than the target (`cmp` gives key vs target).
    fn lower_bound(n: usize, cmp: impl Fn(usize) -> Ordering) -> usize {
        let (mut lo, mut hi) = (0usize, n);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if cmp(mid) == Ordering::Less {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }

    /// The live account called `name` at `now` (exact, whole-name match).
    pub fn account_by_name(&self, name: &str, now: UnixTime) -> Option<AccountView<'a>> {
        self.own_account_by_name(name, now)
            .or_else(|| self.delta?.own_account_by_name(name, now))
    }

    fn own_account_by_name(&self, name: &str, now: UnixTime) -> Option<AccountView<'a>> {
        (self.first_own_account_named(name)..self.own_accounts())
            .map_while(|i| self.own_account_at(i).filter(|a| a.name() == name))
            .find(|a| a.is_live(now))
    }

    /// The live account with `uid` at `now`.
    pub fn account_by_uid(&self, uid: u32, now: UnixTime) -> Option<AccountView<'a>> {
        self.own_account_by_uid(uid, now)
            .or_else(|| self.delta?.own_account_by_uid(uid, now))
    }

    fn own_account_by_uid(&self, uid: u32, now: UnixTime) -> Option<AccountView<'a>> {
        let n = self.accounts_by_uid.len() / INDEX_SIZE;
        let at =
            |k: usize| self.own_account_at(rd_u32(self.accounts_by_uid, k * INDEX_SIZE) as usize);
        let first = Self::lower_bound(n, |k| {
            at(k).map_or(Ordering::Greater, |a| a.uid().cmp(&uid))
        });
        (first..n)
            .map_while(|k| at(k).filter(|a| a.uid() == uid))
            .find(|a| a.is_live(now))
    }

    /// Any account record called `name`, live or not (jit-authorized-keys and jitd use this to
    /// tell "not jit" from "jit but expired").
    pub fn has_account_record(&self, name: &str) -> bool {
        self.own_has_account_record(name)
            || self.delta.is_some_and(|d| d.own_has_account_record(name))
    }

    fn own_has_account_record(&self, name: &str) -> bool {
        self.own_account_at(self.first_own_account_named(name))
            .is_some_and(|a| a.name() == name)
    }

    /// Where this file's own account records called `name` start (live or not; they are
    /// adjacent, sorted by name), or where they would.
    fn first_own_account_named(&self, name: &str) -> usize {
        Self::lower_bound(self.own_accounts(), |i| {
            self.own_account_at(i)
                .map_or(Ordering::Greater, |a| a.name().cmp(name))
        })
    }

    /// The indexes ([`Snapshot::account_at`]) of this file's own account records called `name`,
    /// live or not (a delta's, read alone: the records a listing of its base may already have
    /// shown).
    pub fn own_account_records_named(&self, name: &str) -> std::ops::Range<usize> {
        let first = self.first_own_account_named(name);
        let n = (first..self.own_accounts())
            .take_while(|&i| self.own_account_at(i).is_some_and(|a| a.name() == name))
            .count();
        first..first + n
    }

    /// The group called `name` if it is visible at `now`.
    pub fn group_by_name(&self, name: &str, now: UnixTime) -> Option<GroupView<'a>> {
        self.group_record(name).filter(|g| g.is_visible(now))
    }

    /// The group record called `name` whether or not it is visible now (sudo_jit uses it to know
    /// the gid of `jit-sudo` even while nobody holds it).
    pub fn group_record(&self, name: &str) -> Option<GroupView<'a>> {
        match self.own_group_record(name) {
            Some(g) => Some(self.merged(g)),
            None => self.delta?.own_group_record(name),
        }
    }

    fn own_group_record(&self, name: &str) -> Option<GroupView<'a>> {
        let n = self.own_groups();
        let i = Self::lower_bound(n, |i| {
            self.own_group_at(i)
                .map_or(Ordering::Greater, |g| g.name().cmp(name))
        });
        self.own_group_at(i).filter(|g| g.name() == name)
    }

    /// The group with `gid` if it is visible at `now`. Gids are unique among visible groups:
    /// jitd never gives two records one gid, but if a corrupt writer did, the first visible wins.
    pub fn group_by_gid(&self, gid: u32, now: UnixTime) -> Option<GroupView<'a>> {
        self.own_groups_with_gid(gid)
            .map(|g| self.merged(g))
            .chain(
                self.delta
                    .into_iter()
                    .flat_map(move |d| d.own_groups_with_gid(gid)),
            )
            .find(|g| g.is_visible(now))
    }

    fn own_groups_with_gid(&self, gid: u32) -> impl Iterator<Item = GroupView<'a>> + 'a {
        let snap = self.layer();
        let n = self.groups_by_gid.len() / INDEX_SIZE;
        let at =
            move |k: usize| snap.own_group_at(rd_u32(snap.groups_by_gid, k * INDEX_SIZE) as usize);
        let first = Self::lower_bound(n, |k| {
            at(k).map_or(Ordering::Greater, |g| g.gid().cmp(&gid))
        });
        (first..n).map_while(move |k| at(k).filter(|g| g.gid() == gid))
    }

    /// The gids `user` holds through jit at `now` (for `initgroups_dyn`), without duplicates
    /// removed: the caller dedups against what it already has.
    pub fn user_gids(&self, user: &str, now: UnixTime) -> impl Iterator<Item = u32> + 'a {
        self.own_user_gids(user, now).chain(
            self.delta
                .map(|d| d.own_user_gids(user, now))
                .into_iter()
                .flatten(),
        )
    }

    fn own_user_gids(&self, user: &str, now: UnixTime) -> impl Iterator<Item = u32> + 'a {
        let n = self.users.len() / USER_SIZE;
        let snap = self.layer();
        let i = Self::lower_bound(n, |i| {
            snap.str_at(snap.rec(snap.users, i, USER_SIZE), 0).cmp(user)
        });
        let r = self.rec(self.users, i, USER_SIZE);
        let (start, count) = if self.str_at(r, 0) == user && !r.is_empty() {
            (rd_u32(r, 8) as usize, rd_u32(r, 12) as usize)
        } else {
            (0, 0)
        };
        (start..start.saturating_add(count)).filter_map(move |k| {
            let g = snap.rec(snap.user_gids, k, USER_GID_SIZE);
            (!g.is_empty() && is_live(rd_i64(g, 8), rd_i64(g, 16), now)).then(|| rd_u32(g, 0))
        })
    }

    /// Gate records of `user` (any state; callers check liveness and flags): the base's, then
    /// the delta's.
    pub fn grants_for_user(&self, user: &str) -> impl Iterator<Item = GateView<'a>> + 'a {
        self.own_grants_for_user(user).chain(
            self.delta
                .map(|d| d.own_grants_for_user(user))
                .into_iter()
                .flatten(),
        )
    }

    fn own_grants_for_user(&self, user: &str) -> impl Iterator<Item = GateView<'a>> + 'a {
        let snap = self.layer();
        let n = snap.own_grants();
        let first = Self::lower_bound(n, |i| {
            snap.grant_at(i)
                .map_or(Ordering::Greater, |g| g.user().cmp(user))
        });
        let user = user.to_string();
        (first..n).map_while(move |i| snap.grant_at(i).filter(|g| g.user() == user))
    }

    /// The managed local admin accounts, sorted (the base's list).
    pub fn managed_names(&self) -> impl Iterator<Item = &'a str> + 'a {
        let snap = self.layer();
        (0..self.managed.len() / STRREF_SIZE)
            .map(move |i| snap.str_at(snap.managed, i * STRREF_SIZE))
    }

    /// What this view shows, as the data a writer takes: every record of the base and the
    /// delta read over it, a group of one name once with the members of both. Building an
    /// image of it gives one file that answers as the two do (tests and diagnostics compare
    /// what the modules see with it).
    pub fn to_data(&self) -> crate::types::SnapshotData {
        use crate::types::{Account, GateGrant, GateLists, GroupEntry, Member, SnapshotData};
        let list = |l: StrList<'a>| l.map(str::to_string).collect::<Vec<_>>();
        let mut d = SnapshotData {
            generated_at: self.generated_at,
            uid_range: self.uid_range,
            managed: self.managed_names().map(str::to_string).collect(),
            ..Default::default()
        };
        for i in 0..self.account_count() {
            if let Some(a) = self.account_at(i) {
                d.accounts.push(Account {
                    name: a.name().into(),
                    uid: a.uid(),
                    gid: a.gid(),
                    gecos: a.gecos().into(),
                    home: a.home().into(),
                    shell: a.shell().into(),
                    grant_id: a.grant_id().into(),
                    not_before: a.not_before(),
                    not_after: a.not_after(),
                    flags: a.flags(),
                    ssh_keys: list(a.ssh_keys()),
                });
            }
        }
        for i in 0..self.group_count() {
            if self.group_listed_in_base(i) {
                continue;
            }
            if let Some(g) = self.group_at(i) {
                d.groups.push(GroupEntry {
                    name: g.name().into(),
                    gid: g.gid(),
                    kind: g.kind(),
                    not_before: g.not_before(),
                    not_after: g.not_after(),
                    members: g
                        .members()
                        .map(|m| Member {
                            name: m.name().into(),
                            grant_id: m.grant_id().into(),
                            not_before: m.not_before(),
                            not_after: m.not_after(),
                        })
                        .collect(),
                });
            }
        }
        for i in 0..self.grant_count() {
            if let Some(g) = self.grant_at(i) {
                d.grants.push(GateGrant {
                    id: g.id().into(),
                    user: g.user().into(),
                    uid: g.uid(),
                    flags: g.flags(),
                    revoke_on: g.revoke_on(),
                    not_before: g.not_before(),
                    not_after: g.not_after(),
                    lists: GateLists {
                        from: list(g.from()),
                        services: list(g.services()),
                        windows: list(g.windows()),
                        sudo: list(g.sudo()),
                        runas: list(g.runas()),
                    }
                    .boxed(),
                });
            }
        }
        d
    }

    /// Whether `name` is a managed local admin account (the base's list: a delta carries the
    /// same configuration).
    pub fn is_managed(&self, name: &str) -> bool {
        let n = self.managed.len() / STRREF_SIZE;
        let i = Self::lower_bound(n, |i| self.str_at(self.managed, i * STRREF_SIZE).cmp(name));
        i < n && self.str_at(self.managed, i * STRREF_SIZE) == name
    }
}

/// Iterator over a string list.
#[derive(Clone)]
pub struct StrList<'a> {
    text: Text<'a>,
    next: usize,
    end: usize,
}

impl<'a> Iterator for StrList<'a> {
    type Item = &'a str;
    fn next(&mut self) -> Option<&'a str> {
        if self.next >= self.end {
            return None;
        }
        let off = self.next.saturating_mul(STRREF_SIZE);
        self.next += 1;
        let r = self
            .text
            .strlist
            .get(off..off.saturating_add(STRREF_SIZE))?;
        Some(self.text.str_at(r, 0))
    }
}

/// The string table and string lists that records point into: all a view of an account,
/// member or gate record needs besides the record. (Views held a copy of the whole `Snapshot`,
/// about 200 bytes copied per record a listing visits.)
#[derive(Clone, Copy)]
struct Text<'a> {
    strings: &'a str,
    strlist: &'a [u8],
}

impl<'a> Text<'a> {
    /// The string a reference at `off` of `rec` points at; empty if anything is off.
    fn str_at(&self, rec: &[u8], off: usize) -> &'a str {
        let o = rd_u32(rec, off) as usize;
        let l = rd_u32(rec, off + 4) as usize;
        self.strings.get(o..o.saturating_add(l)).unwrap_or("")
    }

    /// The list a reference at `off` of `rec` points at.
    fn list_at(&self, rec: &[u8], off: usize) -> StrList<'a> {
        let start = rd_u32(rec, off) as usize;
        let count = rd_u32(rec, off + 4) as usize;
        StrList {
            text: *self,
            next: start,
            end: start.saturating_add(count),
        }
    }
}

/// An account record.
#[derive(Clone, Copy)]
pub struct AccountView<'a> {
    text: Text<'a>,
    rec: &'a [u8],
}

impl<'a> AccountView<'a> {
    /// Login name.
    pub fn name(&self) -> &'a str {
        self.text.str_at(self.rec, 0)
    }
    /// uid.
    pub fn uid(&self) -> u32 {
        rd_u32(self.rec, 8)
    }
    /// Primary gid.
    pub fn gid(&self) -> u32 {
        rd_u32(self.rec, 12)
    }
    /// GECOS.
    pub fn gecos(&self) -> &'a str {
        self.text.str_at(self.rec, 16)
    }
    /// Home directory.
    pub fn home(&self) -> &'a str {
        self.text.str_at(self.rec, 24)
    }
    /// Shell.
    pub fn shell(&self) -> &'a str {
        self.text.str_at(self.rec, 32)
    }
    /// Grant id.
    pub fn grant_id(&self) -> &'a str {
        self.text.str_at(self.rec, 40)
    }
    /// Start.
    pub fn not_before(&self) -> UnixTime {
        rd_i64(self.rec, 48)
    }
    /// End (exclusive).
    pub fn not_after(&self) -> UnixTime {
        rd_i64(self.rec, 56)
    }
    /// `ACCOUNT_*` flags.
    pub fn flags(&self) -> u32 {
        rd_u32(self.rec, 64)
    }
    /// Public ssh keys.
    pub fn ssh_keys(&self) -> StrList<'a> {
        self.text.list_at(self.rec, 68)
    }
    /// Live at `now`.
    pub fn is_live(&self, now: UnixTime) -> bool {
        is_live(self.not_before(), self.not_after(), now)
    }
}

/// A member record.
#[derive(Clone, Copy)]
pub struct MemberView<'a> {
    text: Text<'a>,
    rec: &'a [u8],
}

impl<'a> MemberView<'a> {
    /// User name.
    pub fn name(&self) -> &'a str {
        self.text.str_at(self.rec, 0)
    }
    /// Start (clamped to the group's window by the writer).
    pub fn not_before(&self) -> UnixTime {
        rd_i64(self.rec, 16)
    }
    /// End (exclusive).
    pub fn not_after(&self) -> UnixTime {
        rd_i64(self.rec, 24)
    }
    /// Grant id.
    pub fn grant_id(&self) -> &'a str {
        self.text.str_at(self.rec, 8)
    }
    /// Live at `now`.
    pub fn is_live(&self, now: UnixTime) -> bool {
        is_live(rd_i64(self.rec, 16), rd_i64(self.rec, 24), now)
    }
}

/// A group record, with the record of the same name in the delta read over its snapshot, if
/// any (its members are the group's too).
#[derive(Clone, Copy)]
pub struct GroupView<'a> {
    /// The record's own snapshot (the base, with the delta attached when `also` is set).
    snap: Snapshot<'a>,
    rec: &'a [u8],
    /// The delta's record of this name (in `snap.delta`).
    also: Option<&'a [u8]>,
}

impl<'a> GroupView<'a> {
    /// Name.
    pub fn name(&self) -> &'a str {
        self.snap.str_at(self.rec, 0)
    }
    /// gid.
    pub fn gid(&self) -> u32 {
        rd_u32(self.rec, 8)
    }
    /// `GROUP_KIND_*`.
    pub fn kind(&self) -> u32 {
        rd_u32(self.rec, 12)
    }
    /// The record's window: start (with a delta's record of the name, the earlier start).
    pub fn not_before(&self) -> UnixTime {
        let own = rd_i64(self.rec, 16);
        self.also.map_or(own, |d| own.min(rd_i64(d, 16)))
    }
    /// The record's window: end, exclusive (with a delta's record, the later end).
    pub fn not_after(&self) -> UnixTime {
        let own = rd_i64(self.rec, 24);
        self.also.map_or(own, |d| own.max(rd_i64(d, 24)))
    }
    /// The delta's record of this group, as a view of the delta alone.
    fn delta_part(&self) -> Option<GroupView<'a>> {
        Some(GroupView {
            snap: self.snap.delta?.layer(),
            rec: self.also?,
            also: None,
        })
    }
    /// This record's own members, without the delta's.
    fn own_members(&self) -> impl Iterator<Item = MemberView<'a>> + 'a {
        let start = rd_u32(self.rec, 32) as usize;
        let count = rd_u32(self.rec, 36) as usize;
        let snap = self.snap;
        (start..start.saturating_add(count)).filter_map(move |k| {
            let off = k.saturating_mul(MEMBER_SIZE);
            let rec = snap.members.get(off..off.saturating_add(MEMBER_SIZE))?;
            Some(MemberView {
                text: snap.text(),
                rec,
            })
        })
    }
    /// All member records, live or not (the base's, then the delta's).
    pub fn members(&self) -> impl Iterator<Item = MemberView<'a>> + 'a {
        let delta = self.delta_part();
        self.own_members()
            .chain(delta.into_iter().flat_map(|d| d.own_members()))
    }
    /// The names of this record's own members live at `now`, each once (members are sorted by
    /// name, so a user's records are adjacent).
    fn own_live_members(&self, now: UnixTime) -> impl Iterator<Item = &'a str> + 'a {
        let mut last: Option<&'a str> = None;
        self.own_members()
            .filter(move |m| m.is_live(now))
            .filter_map(move |m| {
                let n = m.name();
                if last == Some(n) {
                    None
                } else {
                    last = Some(n);
                    Some(n)
                }
            })
    }
    /// Whether this record (not the delta's) has a live member called `name`.
    fn has_own_live_member(&self, name: &str, now: UnixTime) -> bool {
        let start = rd_u32(self.rec, 32) as usize;
        let count = rd_u32(self.rec, 36) as usize;
        let at = |k: usize| {
            let off = start.saturating_add(k).saturating_mul(MEMBER_SIZE);
            self.snap
                .members
                .get(off..off.saturating_add(MEMBER_SIZE))
                .map(|rec| MemberView {
                    text: self.snap.text(),
                    rec,
                })
        };
        let first = Snapshot::lower_bound(count, |k| {
            at(k).map_or(Ordering::Greater, |m| m.name().cmp(name))
        });
        (first..count)
            .map_while(|k| at(k).filter(|m| m.name() == name))
            .any(|m| m.is_live(now))
    }
    /// Names of the members live at `now`, each once: a user with two overlapping grants, or
    /// with records in both the base and the delta, appears once.
    pub fn live_members(&self, now: UnixTime) -> impl Iterator<Item = &'a str> + 'a {
        let own = *self;
        let visible = is_live(rd_i64(self.rec, 16), rd_i64(self.rec, 24), now);
        let delta = self
            .delta_part()
            .filter(|d| is_live(rd_i64(d.rec, 16), rd_i64(d.rec, 24), now));
        self.own_live_members(now).filter(move |_| visible).chain(
            delta
                .into_iter()
                .flat_map(move |d| d.own_live_members(now))
                .filter(move |n| !(visible && own.has_own_live_member(n, now))),
        )
    }
    /// Whether NSS shows the group at `now`: a private group while its account lives; a local
    /// or jit group only while it has a live member (otherwise the local entry stands alone).
    /// With a delta: while either record would be shown.
    pub fn is_visible(&self, now: UnixTime) -> bool {
        self.own_visible(now) || self.delta_part().is_some_and(|d| d.own_visible(now))
    }
    fn own_visible(&self, now: UnixTime) -> bool {
        if !is_live(rd_i64(self.rec, 16), rd_i64(self.rec, 24), now) {
            return false;
        }
        match self.kind() {
            // Exactly while its account lives: the record's window may span several grants of
            // the identity, with gaps in between.
            GROUP_KIND_PRIVATE => self
                .snap
                .layer()
                .account_by_uid(self.gid(), now)
                .is_some_and(|a| a.name() == self.name()),
            _ => self.own_members().any(|m| m.is_live(now)),
        }
    }
}

/// A gate record (pam_jit, sudo_jit).
#[derive(Clone, Copy)]
pub struct GateView<'a> {
    text: Text<'a>,
    rec: &'a [u8],
}

impl<'a> GateView<'a> {
    /// Grant id.
    pub fn id(&self) -> &'a str {
        self.text.str_at(self.rec, 0)
    }
    /// User.
    pub fn user(&self) -> &'a str {
        self.text.str_at(self.rec, 8)
    }
    /// Account uid or 0.
    pub fn uid(&self) -> u32 {
        rd_u32(self.rec, 16)
    }
    /// `GATE_*` flags.
    pub fn flags(&self) -> u32 {
        rd_u32(self.rec, 20)
    }
    /// Revocation class bits.
    pub fn revoke_on(&self) -> u32 {
        rd_u32(self.rec, 24)
    }
    /// Start.
    pub fn not_before(&self) -> UnixTime {
        rd_i64(self.rec, 32)
    }
    /// End (exclusive).
    pub fn not_after(&self) -> UnixTime {
        rd_i64(self.rec, 40)
    }
    /// Live at `now`.
    pub fn is_live(&self, now: UnixTime) -> bool {
        is_live(self.not_before(), self.not_after(), now)
    }
    /// Allowed source networks.
    pub fn from(&self) -> StrList<'a> {
        self.text.list_at(self.rec, 48)
    }
    /// Allowed services.
    pub fn services(&self) -> StrList<'a> {
        self.text.list_at(self.rec, 56)
    }
    /// Allowed time windows.
    pub fn windows(&self) -> StrList<'a> {
        self.text.list_at(self.rec, 64)
    }
    /// Sudo scope.
    pub fn sudo(&self) -> StrList<'a> {
        self.text.list_at(self.rec, 72)
    }
    /// Run-as targets.
    pub fn runas(&self) -> StrList<'a> {
        self.text.list_at(self.rec, 80)
    }
}
