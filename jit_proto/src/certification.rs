//! The certification of a grant: what privilege-relevant host state looked like when the grant
//! went live and when its teardown finished, compared. Stored with the grant (state, `jitctl
//! grant show --certification`, the audit trail).

use jit_core::time::UnixTime;
use serde::{Deserialize, Serialize};

/// The verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CertificationStatus {
    /// Nothing in the fingerprinted state differs.
    Clean,
    /// Something differs (listed in `differences`).
    Changed,
    /// No baseline could be compared (jitd was down when the grant went live, or the baseline
    /// was lost): nothing is certified.
    NoBaseline,
}

impl CertificationStatus {
    /// Lower-case name as shown to people.
    pub fn as_str(self) -> &'static str {
        match self {
            CertificationStatus::Clean => "clean",
            CertificationStatus::Changed => "changed",
            CertificationStatus::NoBaseline => "no_baseline",
        }
    }
}

/// How one item of host state changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    /// Present at the end only.
    Added,
    /// Present at the start only.
    Removed,
    /// Present at both, different.
    Changed,
}

/// One fingerprinted item as it was (a file, directory, link, account or group).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemState {
    /// `file`, `dir`, `symlink`, `other`, `account`, `group`.
    pub kind: String,
    /// Owner uid (files) or uid (accounts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<u32>,
    /// Group gid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<u32>,
    /// Permission bits including set-uid/set-gid/sticky, octal (`4755`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// Size in bytes (files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// SHA-256 of the content (regular files up to the hashing cap), hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Link target (symlinks) or the account/group line's fields (accounts, groups).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// One difference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Difference {
    /// What kind of state: `account`, `group`, `sudoers`, `authorized_keys`, `setuid`,
    /// `systemd`, `cron`, `ld_preload`, `pam`, `nss`, `sudo_conf`, `ssh`, `accounts_file`.
    pub area: String,
    /// The path, or `account:<name>` / `group:<name>`.
    pub item: String,
    /// Added, removed or changed.
    pub change: ChangeKind,
    /// Before (absent for `added`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<ItemState>,
    /// After (absent for `removed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<ItemState>,
    /// A root-equivalent change (uid/gid 0 account, set-uid root file, root's keys, sudoers).
    #[serde(default)]
    pub root_equivalent: bool,
}

/// The record written when a grant's teardown has finished.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Certification {
    /// Verdict.
    pub status: CertificationStatus,
    /// When the baseline was taken (Unix seconds), if there was one.
    #[serde(default)]
    pub baseline_at: Option<UnixTime>,
    /// When the end fingerprint was taken.
    pub taken_at: UnixTime,
    /// Items compared at the end.
    pub items: usize,
    /// The differences, at most [`MAX_DIFFERENCES`], root-equivalent ones first.
    #[serde(default)]
    pub differences: Vec<Difference>,
    /// Differences left out beyond the cap.
    #[serde(default)]
    pub omitted: usize,
    /// Paths that could not be read at either end (they are not certified).
    #[serde(default)]
    pub unreadable: Vec<String>,
}

/// Differences kept in a certification; beyond this only their number is kept.
pub const MAX_DIFFERENCES: usize = 200;
