//! How many bytes one more grant may add to each snapshot file, before it is projected: what
//! admission counts against the readers' size cap (`engine::capacity`) for the grants admitted
//! since the files were last written whole, whose bytes are not on disk yet.
//!
//! An upper bound, not a forecast: a grant's strings appear in a file up to four times (the
//! base region, the account listing, the shard of its name and the shard of its uid), and each
//! group it joins adds fixed-size records in the same places. Overcounting only moves the
//! refusal earlier by the few grants between two whole writes; the next whole write replaces
//! every estimate by the files' real sizes. `weight_tests.rs` builds the real images and checks
//! the bound against them.

use jit_proto::GrantSpec;

/// Records a grant adds whatever its strings (account, private group, member and user-gid
/// records, gate record, index and directory entries, string references), per file.
const FIXED: u64 = 4096;
/// Each string byte of the request, counted this many times.
const PER_STRING_BYTE: u64 = 4;
/// Each group joined: a member record, a user-gid record and the group's record in the
/// person's own shard, in each place they are written.
const PER_GROUP: u64 = 768;

/// The most bytes the grant `spec` asks for may add to either snapshot file.
pub fn spec_weight(spec: &GrantSpec) -> u64 {
    let lists = [
        &spec.groups,
        &spec.ssh_keys,
        &spec.sudo,
        &spec.runas,
        &spec.from,
        &spec.services,
        &spec.windows,
        &spec.revoke_on,
        &spec.caps,
        &spec.programs,
    ];
    // Each element also costs a string reference (8 bytes) and its terminator where written.
    let listed: u64 = lists
        .iter()
        .flat_map(|l| l.iter())
        .map(|s| s.len() as u64 + 16)
        .sum();
    let strings = spec.user.len() as u64
        + spec.reason.len() as u64
        + spec.ticket.len() as u64
        + spec.requested_by.len() as u64
        + listed;
    FIXED + PER_STRING_BYTE * strings + PER_GROUP * spec.groups.len() as u64
}
