//! The account listing (format 1.5, section LISTING): what `getpwent` reads.
//!
//! Listing accounts from the base means copying its accounts region (STRINGS, ACCOUNTS and
//! STRLIST: about 8 MB at 50 000 grants) into fresh memory and checking all of it before the
//! first entry: the kernel zeroing and filling those pages and the checks were most of what
//! `getent passwd` cost beyond `files` (bench/results.md). LISTING holds the same records, in
//! the same order, with the four strings a listing shows (name, GECOS, home, shell) inline, in
//! chunks of at most [`LISTING_CHUNK_MAX`] payload bytes that each carry their own CRC32C. A
//! reader goes through the section with one small buffer: it reads a chunk, checks it whole
//! (checksum, then every record) before it shows anything of it, and never holds more than one.
//!
//! ```text
//! chunk   = head (16 bytes: payload len u32, count u32, crc32c(payload) u32, 0 u32) + payload
//! payload = count records back to back
//! record  = uid u32, gid u32, not_before i64, not_after i64, flags u32,
//!           name_len u16, gecos_len u16, home_len u16, shell_len u16, then the four strings
//! ```
//!
//! The section's table entry (covered by `head_crc`) states its bytes and the number of
//! records; chunks fill it exactly. The checks of a chunk are those [`super::Snapshot::parse`]
//! makes of the same accounts: a name is a *name*, GECOS, home and shell are *fields*, records
//! sorted by `(name, not_before)` (across chunks too). [`Walk`] is the reader's side without I/O:
//! which bytes to read next, and the check of what was read.

use super::format::*;
use super::reader::{rd_i64, rd_u16, rd_u32};
use super::writer::{Placer, WriteError};
use super::SnapshotError;
use crate::constants::{MAX_NAME_LEN, MAX_SNAPSHOT_STRING};
use crate::crc32c::{crc32c, crc32c_in_pieces, HW_MIN_LEN};
use crate::policy::is_live;
use crate::time::UnixTime;
use crate::types::Account;
use crate::validate::{field_bytes_safe, is_field_safe, is_name_safe, is_name_safe_bytes};

/// One account as a listing shows it. The strings are bytes: [`Walk::take`] checked them
/// (UTF-8, and what a name or a field may hold) once, and the module copies them out as bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListedAccount<'a> {
    /// Login name.
    pub name: &'a [u8],
    /// uid.
    pub uid: u32,
    /// Primary gid.
    pub gid: u32,
    /// GECOS.
    pub gecos: &'a [u8],
    /// Home directory.
    pub home: &'a [u8],
    /// Shell.
    pub shell: &'a [u8],
    /// Start.
    pub not_before: UnixTime,
    /// End (exclusive).
    pub not_after: UnixTime,
    /// `ACCOUNT_*` flags.
    pub flags: u32,
}

impl ListedAccount<'_> {
    /// Live at `now`.
    pub fn is_live(&self, now: UnixTime) -> bool {
        is_live(self.not_before, self.not_after, now)
    }
}

// ---------------------------------------------------------------------------------------------
// Writing

/// Appends LISTING for `accounts` (in ACCOUNTS' order) to `placer` and states it.
pub(crate) fn write(placer: &mut Placer<'_>, accounts: &[&Account]) -> Result<(), WriteError> {
    let off = placer.at();
    let mut payload = Vec::with_capacity(LISTING_CHUNK_MAX.min(accounts.len().saturating_mul(128)));
    let mut count = 0u32;
    for &a in accounts {
        let len = record_len(a);
        if count > 0 && payload.len() + len > LISTING_CHUNK_MAX {
            flush(placer, &mut payload, &mut count)?;
        }
        encode(&mut payload, a)?;
        count += 1;
    }
    if count > 0 {
        flush(placer, &mut payload, &mut count)?;
    }
    let len = placer.at() - off;
    placer.entry(section::LISTING, off, len, accounts.len())
}

fn record_len(a: &Account) -> usize {
    LISTING_RECORD_FIXED + a.name.len() + a.gecos.len() + a.home.len() + a.shell.len()
}

fn flush(
    placer: &mut Placer<'_>,
    payload: &mut Vec<u8>,
    count: &mut u32,
) -> Result<(), WriteError> {
    let mut head = [0u8; LISTING_CHUNK_HEAD];
    let len = u32::try_from(payload.len()).map_err(|_| WriteError::TooLarge)?;
    head[0..4].copy_from_slice(&len.to_le_bytes());
    head[4..8].copy_from_slice(&count.to_le_bytes());
    head[8..12].copy_from_slice(&crc32c(payload).to_le_bytes());
    placer.append(&head)?;
    placer.append(payload)?;
    payload.clear();
    *count = 0;
    Ok(())
}

/// One record; refuses what a reader would refuse (the writer has checked the same strings
/// for ACCOUNTS already, so this never fires for jitd's data).
fn encode(out: &mut Vec<u8>, a: &Account) -> Result<(), WriteError> {
    let unsafe_field =
        |what: &'static str, s: &str| WriteError::UnsafeField(what, s.chars().take(64).collect());
    if !is_name_safe(&a.name, MAX_NAME_LEN) {
        return Err(unsafe_field("account name", &a.name));
    }
    for (what, s) in [("gecos", &a.gecos), ("home", &a.home), ("shell", &a.shell)] {
        if !is_field_safe(s, MAX_SNAPSHOT_STRING) {
            return Err(unsafe_field(what, s));
        }
    }
    if record_len(a) > LISTING_CHUNK_MAX {
        return Err(WriteError::Layout("a listing record larger than a chunk"));
    }
    let len16 = |s: &str| u16::try_from(s.len()).map_err(|_| WriteError::TooLarge);
    out.extend_from_slice(&a.uid.to_le_bytes());
    out.extend_from_slice(&a.gid.to_le_bytes());
    out.extend_from_slice(&a.not_before.to_le_bytes());
    out.extend_from_slice(&a.not_after.to_le_bytes());
    out.extend_from_slice(&a.flags.to_le_bytes());
    for s in [&a.name, &a.gecos, &a.home, &a.shell] {
        out.extend_from_slice(&len16(s)?.to_le_bytes());
    }
    for s in [&a.name, &a.gecos, &a.home, &a.shell] {
        out.extend_from_slice(s.as_bytes());
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Reading

/// The record at byte `at` of a chunk's payload and where the next one starts; `None` if the
/// bytes there are not a complete record. Meant for payloads a [`Walk::take`] accepted (whose
/// strings it checked); on any other bytes it is still memory-safe and answers `None` or some
/// record.
pub fn record_at(payload: &[u8], at: usize) -> Option<(ListedAccount<'_>, usize)> {
    let fixed = payload.get(at..at.checked_add(LISTING_RECORD_FIXED)?)?;
    let lens = [
        rd_u16(fixed, 28),
        rd_u16(fixed, 30),
        rd_u16(fixed, 32),
        rd_u16(fixed, 34),
    ];
    let mut next = at + LISTING_RECORD_FIXED;
    let mut strs: [&[u8]; 4] = [&[]; 4];
    for (s, len) in strs.iter_mut().zip(lens) {
        let end = next.checked_add(usize::from(len))?;
        *s = payload.get(next..end)?;
        next = end;
    }
    let [name, gecos, home, shell] = strs;
    Some((
        ListedAccount {
            name,
            uid: rd_u32(fixed, 0),
            gid: rd_u32(fixed, 4),
            gecos,
            home,
            shell,
            not_before: rd_i64(fixed, 8),
            not_after: rd_i64(fixed, 16),
            flags: rd_u32(fixed, 24),
        },
        next,
    ))
}

/// A chunk [`Walk::take`] accepted: `payload` is `count` checked records.
#[derive(Debug, Clone, Copy)]
pub struct Chunk<'a> {
    /// The records' bytes.
    pub payload: &'a [u8],
    /// How many records.
    pub count: u32,
}

/// Where a reader stands in a LISTING section, without I/O: which bytes to read next
/// ([`Walk::next_read`]) and the check of what was read ([`Walk::take`]).
#[derive(Debug, Clone, Default)]
pub struct Walk {
    /// The section's length.
    len: u64,
    /// Offset in the section of the next chunk.
    at: u64,
    /// Records the section states that no chunk read so far has brought.
    left: u32,
    /// The key `(name, not_before)` of the last record read (records are sorted across chunks).
    after: Option<(Vec<u8>, i64)>,
}

impl Walk {
    /// A walk over a section of `len` bytes holding `count` records (its table entry).
    pub fn new(len: u64, count: u32) -> Walk {
        Walk {
            len,
            at: 0,
            left: count,
            after: None,
        }
    }

    /// What to read for the next chunk: `(offset in the section, length)`, enough for the
    /// whole chunk (a head and at most [`LISTING_CHUNK_MAX`] bytes, less at the end of the
    /// section); `None` once every chunk was read.
    ///
    /// # Errors
    /// The section ended with records it states still missing.
    pub fn next_read(&self) -> Result<Option<(u64, usize)>, SnapshotError> {
        let rest = self.len.saturating_sub(self.at);
        if rest == 0 {
            return if self.left == 0 {
                Ok(None)
            } else {
                Err(SnapshotError::Corrupt(
                    "listing holds fewer records than stated",
                ))
            };
        }
        let want = (LISTING_CHUNK_HEAD + LISTING_CHUNK_MAX) as u64;
        Ok(Some((self.at, rest.min(want) as usize)))
    }

    /// Checks the chunk at the start of `bytes` (what [`Walk::next_read`] said to read) and
    /// moves past it: its head, its CRC32C, then every record (complete, UTF-8, the name a
    /// name and the rest fields, sorted after everything read before), exactly `count` of them
    /// filling the payload.
    ///
    /// # Errors
    /// The first check that fails; the walk does not move.
    pub fn take<'b>(&mut self, bytes: &'b [u8]) -> Result<Chunk<'b>, SnapshotError> {
        let bad = SnapshotError::Corrupt;
        let head = bytes
            .get(..LISTING_CHUNK_HEAD)
            .ok_or(bad("listing chunk past end"))?;
        let len = rd_u32(head, 0) as usize;
        let count = rd_u32(head, 4);
        if len > LISTING_CHUNK_MAX
            || count == 0
            || count > self.left
            || rd_u32(head, 12) != 0
            || (count as usize).saturating_mul(LISTING_RECORD_FIXED) > len
        {
            return Err(bad("bad listing chunk head"));
        }
        let end = LISTING_CHUNK_HEAD + len;
        if end as u64 > self.len - self.at {
            return Err(bad("listing chunk past end"));
        }
        let payload = bytes
            .get(LISTING_CHUNK_HEAD..end)
            .ok_or(bad("listing chunk past end"))?;
        // A listing of more than a few records repays asking the CPU for its CRC32
        // instruction (each chunk is below the length at which `crc32c` asks by itself).
        let sum = if self.len >= HW_MIN_LEN as u64 {
            crc32c_in_pieces(payload)
        } else {
            crc32c(payload)
        };
        if sum != rd_u32(head, 8) {
            return Err(SnapshotError::BadChecksum);
        }
        let mut prev: Option<(&[u8], i64)> = self.after.as_ref().map(|(n, nb)| (n.as_slice(), *nb));
        let mut at = 0;
        for _ in 0..count {
            let (a, next) = record_at(payload, at).ok_or(bad("listing record past its chunk"))?;
            if !strings_ok(&a, payload.get(at + LISTING_RECORD_FIXED..next)) {
                return Err(bad("string has a forbidden byte or length"));
            }
            let key = (a.name, a.not_before);
            if prev.is_some_and(|p| p > key) {
                return Err(bad("listing not sorted"));
            }
            prev = Some(key);
            at = next;
        }
        if at != len {
            return Err(bad("listing chunk longer than its records"));
        }
        self.after = prev.map(|(n, nb)| (n.to_vec(), nb));
        self.at += end as u64;
        self.left -= count;
        Ok(Chunk { payload, count })
    }
}

/// The checks of a record's strings, `all` being the four back to back: UTF-8 with each one
/// starting on a character, the name a *name*, the others *fields* within their limit. The
/// three fields are checked for forbidden bytes in one call and the text in one (a listing
/// checks tens of thousands of records: four calls each were a tenth of `getent passwd`).
fn strings_ok(a: &ListedAccount<'_>, all: Option<&[u8]>) -> bool {
    let Some(all) = all else { return false };
    let starts_char = |b: &[u8]| b.first().is_none_or(|&c| !(0x80..0xC0).contains(&c));
    let fields = all.get(a.name.len()..).unwrap_or_default();
    std::str::from_utf8(all).is_ok()
        && [a.gecos, a.home, a.shell]
            .iter()
            .all(|f| starts_char(f) && f.len() <= MAX_SNAPSHOT_STRING)
        && is_name_safe_bytes(a.name, MAX_NAME_LEN)
        && field_bytes_safe(fields)
}

/// Every record of a LISTING section held whole in `section` (tests, tools and the fuzz
/// targets; the NSS module reads chunk by chunk with [`Walk`]).
///
/// # Errors
/// As [`Walk::take`] and [`Walk::next_read`].
pub fn read_all(section: &[u8], count: u32) -> Result<Vec<ListedAccount<'_>>, SnapshotError> {
    let mut walk = Walk::new(section.len() as u64, count);
    let mut out = Vec::new();
    while let Some((at, len)) = walk.next_read()? {
        let at = usize::try_from(at).map_err(|_| SnapshotError::BadSize)?;
        let bytes = section
            .get(at..at.saturating_add(len))
            .ok_or(SnapshotError::Corrupt("listing chunk past end"))?;
        let chunk = walk.take(bytes)?;
        let mut off = 0;
        for _ in 0..chunk.count {
            let (a, next) = record_at(chunk.payload, off)
                .ok_or(SnapshotError::Corrupt("listing record past its chunk"))?;
            out.push(a);
            off = next;
        }
    }
    Ok(out)
}
