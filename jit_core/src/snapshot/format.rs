//! Byte layout of the snapshot, version 1.5 (docs/snapshot-format.md). All integers
//! little-endian.
//!
//! ```text
//! header (64 bytes)
//!   0  magic          b"JITSNAP\0"
//!   8  major u16      readers reject an unknown major
//!  10  minor u16      additive changes only
//!  12  crc32c u32     of bytes [16, file_len)
//!  16  file_len u64   must equal the file's size
//!  24  generated_at i64
//!  32  section_count u32
//!  36  serial u32     (1.4) the base's serial: deltas name the bases they apply to; 0 = none
//!  40  head_crc u32   (1.1) CRC32C of bytes [16, 40) and [44, 64 + 16 * section_count)
//!  44  uid_min u32    (1.1) jitd's configured uid_range, 0-0 if not stated
//!  48  uid_max u32
//!  52  base_crc u32   (1.2) CRC32C of bytes [base_at, file_len)
//!  56  base_at u32    (1.2) start of sections 1-11 in an indexed file; 0 = not stated
//!  60  accounts_crc   (1.3) CRC32C of the accounts region [base_at, end of STRINGS/ACCOUNTS/STRLIST)
//! section table at 64: section_count x { id u32, offset u32, len u32, count u32 }
//! ```
//! A string reference is `{ offset u32, len u32 }` into the STRINGS section. A list is
//! `{ start u32, count u32 }` into STRLIST (an array of string references). Record layouts are
//! the `*_SIZE` constants below with field offsets documented beside the reader.

/// File magic.
pub const MAGIC: [u8; 8] = *b"JITSNAP\0";
/// Major version this code writes and reads.
pub const MAJOR: u16 = 1;
/// Minor version this code writes (1.1: head_crc, uid range, the lookup index sections;
/// 1.2: the base region's checksum, `base_crc` and `base_at`; 1.3: the accounts region at the
/// start of the base and its checksum, `accounts_crc`; 1.4: the base serial and the delta files,
/// section BASES; 1.5: the account listing, section LISTING; 1.6: the gates file's own lookup
/// index; 1.7: in it, jit's groups by gid without members, each member's record by its name;
/// 1.8: in it, each person's account records by their name).
pub const MINOR: u16 = 8;
/// Header offset of the base serial (1.4, u32; the `flags` word of earlier minors, written 0):
/// which base a delta file may be read over (section BASES). 0: no delta applies.
pub const SERIAL_AT: usize = 36;
/// Most bases one delta names (section BASES): the base on disk and those being written.
pub const MAX_DELTA_BASES: usize = 4;
/// Header offset of `head_crc` (1.1).
pub const HEAD_CRC_AT: usize = 40;
/// Header offset of `uid_min` (1.1); `uid_max` follows.
pub const UID_MIN_AT: usize = 44;
/// Header offset of `uid_max` (1.1).
pub const UID_MAX_AT: usize = 48;
/// Header offset of `base_crc` (1.2): CRC32C of the base region `[base_at, file_len)`.
pub const BASE_CRC_AT: usize = 52;
/// Header offset of `base_at` (1.2, u32): where the base region (sections 1 to 11, back to
/// back at the end of an indexed file) starts; 0 = not stated, the file is read whole.
pub const BASE_AT_AT: usize = 56;
/// Header offset of `accounts_crc` (1.3): CRC32C of the accounts region, from `base_at` to
/// the end of the last of STRINGS, ACCOUNTS and STRLIST, which an indexed file puts first in
/// its base; what listing accounts reads. Meaningful only when `base_at` is stated.
pub const ACCOUNTS_CRC_AT: usize = 60;
/// The sections of the accounts region (1.3), in the order an indexed file writes them.
pub const ACCOUNTS_REGION: [u32; 3] = [section::STRINGS, section::ACCOUNTS, section::STRLIST];
/// Fixed header size.
pub const HEADER_SIZE: usize = 64;
/// One entry of the section table.
pub const SECTION_ENTRY_SIZE: usize = 16;
/// Most sections a reader accepts.
pub const MAX_SECTIONS: usize = 32;

/// Section ids.
pub mod section {
    /// String bytes (UTF-8, no terminators).
    pub const STRINGS: u32 = 1;
    /// Account records sorted by (name, not_before).
    pub const ACCOUNTS: u32 = 2;
    /// u32 indexes into ACCOUNTS sorted by (uid, not_before).
    pub const ACCOUNTS_BY_UID: u32 = 3;
    /// Group records sorted by name.
    pub const GROUPS: u32 = 4;
    /// u32 indexes into GROUPS sorted by gid.
    pub const GROUPS_BY_GID: u32 = 5;
    /// Member records, each group's members contiguous.
    pub const MEMBERS: u32 = 6;
    /// Per-user records sorted by name, pointing into USER_GIDS (for initgroups).
    pub const USERS: u32 = 7;
    /// Timed gids of a user.
    pub const USER_GIDS: u32 = 8;
    /// String references making up lists.
    pub const STRLIST: u32 = 9;
    /// Gate records sorted by (user, not_before).
    pub const GRANTS: u32 = 10;
    /// String references: managed local admin accounts, sorted.
    pub const MANAGED: u32 = 11;
    /// (1.1) Name-keyed lookup directory: `count` bucket entries `{ offset u32, len u32 }`
    /// pointing at a shard in SHARDS (0, 0 for an empty bucket).
    pub const NAME_DIR: u32 = 12;
    /// (1.1) Id-keyed lookup directory, as NAME_DIR.
    pub const ID_DIR: u32 = 13;
    /// (1.1) Keys too large for a bucket, name-keyed: `{ key u32, offset u32, len u32, crc u32 }`.
    pub const NAME_BIG: u32 = 14;
    /// (1.1) As NAME_BIG, id-keyed.
    pub const ID_BIG: u32 = 15;
    /// (1.1) The shards: self-contained snapshot images (format 1.0 sections only), back to back.
    pub const SHARDS: u32 = 16;
    /// (1.4) Only in a delta file: the serials (u32 each, non-zero) of the bases it may be read
    /// over, at most `MAX_DELTA_BASES`. A file with this section is a delta, never a base.
    pub const BASES: u32 = 17;
    /// (1.5) The account listing: every record of ACCOUNTS, in its order, with the strings a
    /// listing shows inline, in chunks that each carry their own CRC32C, so that `getpwent`
    /// reads the file a chunk at a time (`super::listing`). Only in an indexed file, between
    /// the index and the base.
    pub const LISTING: u32 = 18;
}

/// Head of a LISTING chunk: payload length u32, record count u32, CRC32C of the payload u32,
/// zero u32.
pub const LISTING_CHUNK_HEAD: usize = 16;
/// Most payload bytes in one LISTING chunk (a record never spans two chunks; the largest
/// record, names and fields at their limits, fits in one).
pub const LISTING_CHUNK_MAX: usize = 64 * 1024;
/// Fixed part of a LISTING record: uid 0, gid 4, nb 8, na 16, flags 24, then the lengths
/// (u16) of name 28, gecos 30, home 32, shell 34; the four strings follow in that order.
pub const LISTING_RECORD_FIXED: usize = 36;

/// Size of an entry of BASES.
pub const SERIAL_SIZE: usize = 4;

/// Size of a lookup directory entry.
pub const DIR_ENTRY_SIZE: usize = 8;
/// Size of a big-key entry.
pub const BIG_ENTRY_SIZE: usize = 16;

/// Size of a string reference.
pub const STRREF_SIZE: usize = 8;
/// Account: name 0, uid 8, gid 12, gecos 16, home 24, shell 32, grant_id 40, nb 48, na 56,
/// flags 64, keys_start 68, keys_count 72, reserved 76.
pub const ACCOUNT_SIZE: usize = 80;
/// Group: name 0, gid 8, kind 12, nb 16, na 24, members_start 32, members_count 36.
pub const GROUP_SIZE: usize = 40;
/// Member: name 0, grant_id 8, nb 16, na 24.
pub const MEMBER_SIZE: usize = 32;
/// User: name 0, gids_start 8, gids_count 12.
pub const USER_SIZE: usize = 16;
/// User gid: gid 0, reserved 4, nb 8, na 16.
pub const USER_GID_SIZE: usize = 24;
/// Gate grant: id 0, user 8, uid 16, flags 20, revoke_on 24, reserved 28, nb 32, na 40,
/// lists at 48 (from), 56 (services), 64 (windows), 72 (sudo), 80 (runas).
pub const GRANT_SIZE: usize = 88;
/// Size of an index entry.
pub const INDEX_SIZE: usize = 4;
