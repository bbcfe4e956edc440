//! Snapshot-level types: what jitd hands to the modules.
//!
//! The full grant object (reason, ticket, approvals) is a protocol and state type and lives in
//! `jit_proto`, which may use serde. These are the projections the modules decide on; every
//! record carries absolute `not_before`/`not_after` so a module can decide liveness itself.

use crate::time::UnixTime;

/// Account flag: the grant needs a TOTP code at login (the account is visible while armed).
pub const ACCOUNT_MFA_REQUIRED: u32 = 1;

/// Group kind: an existing local group (`/etc/group`) that jit adds members to by NSS merge.
pub const GROUP_KIND_LOCAL: u32 = 1;
/// Group kind: a group jit provides itself (`jit-users`, `jit-sudo`, `jit-mfa`).
pub const GROUP_KIND_JIT: u32 = 2;
/// Group kind: the private group of an ephemeral account (same name and id as the account).
pub const GROUP_KIND_PRIVATE: u32 = 3;

/// Gate flag: TOTP needed at login / activation.
pub const GATE_MFA: u32 = 1;
/// Gate flag: TOTP needed at every sudo.
pub const GATE_MFA_SUDO: u32 = 1 << 1;
/// Gate flag: enables a managed local admin account.
pub const GATE_ENABLE: u32 = 1 << 2;
/// Gate flag: the grant ends when its first session closes.
pub const GATE_END_WITH_SESSION: u32 = 1 << 3;
/// Gate flag: the grant carries an ephemeral account.
pub const GATE_ACCOUNT: u32 = 1 << 4;
/// Gate flag: an `--mfa` grant that has not been activated yet (armed, not live for privilege).
pub const GATE_ARMED: u32 = 1 << 5;

/// A string of a snapshot record: shared, so that one projection holds a name or a grant id
/// once however many records carry it (an account, its private group, its memberships and
/// its gate record; every account's shell), and a clone costs no allocation.
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Text(std::sync::Arc<str>);

impl Text {
    /// The string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::ops::Deref for Text {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Text {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl std::borrow::Borrow<str> for Text {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl From<&str> for Text {
    fn from(s: &str) -> Text {
        Text(s.into())
    }
}

impl From<String> for Text {
    fn from(s: String) -> Text {
        Text(s.into())
    }
}

impl From<&String> for Text {
    fn from(s: &String) -> Text {
        Text(s.as_str().into())
    }
}

impl PartialEq<str> for Text {
    fn eq(&self, other: &str) -> bool {
        *self.0 == *other
    }
}

impl PartialEq<&str> for Text {
    fn eq(&self, other: &&str) -> bool {
        *self.0 == **other
    }
}

impl PartialEq<String> for Text {
    fn eq(&self, other: &String) -> bool {
        *self.0 == **other
    }
}

impl PartialEq<Text> for str {
    fn eq(&self, other: &Text) -> bool {
        *self == *other.0
    }
}

impl PartialEq<Text> for &str {
    fn eq(&self, other: &Text) -> bool {
        **self == *other.0
    }
}

impl PartialEq<Text> for String {
    fn eq(&self, other: &Text) -> bool {
        **self == *other.0
    }
}

impl std::fmt::Debug for Text {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&*self.0, f)
    }
}

impl std::fmt::Display for Text {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&*self.0, f)
    }
}

/// An ephemeral account, visible through NSS while `not_before <= now < not_after`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// Login name (validated).
    pub name: Text,
    /// Stable uid from the reserved range.
    pub uid: u32,
    /// Primary gid: the private group, equal to the uid.
    pub gid: u32,
    /// GECOS: `jit grant <id> (<reason>)`, sanitized.
    pub gecos: Text,
    /// `<home_root>/<name>`.
    pub home: Text,
    /// Login shell.
    pub shell: Text,
    /// The grant that makes this account exist.
    pub grant_id: Text,
    /// First second the account exists.
    pub not_before: UnixTime,
    /// First second the account no longer exists.
    pub not_after: UnixTime,
    /// `ACCOUNT_*` flags.
    pub flags: u32,
    /// Public keys printed by `jit-authorized-keys`.
    pub ssh_keys: Vec<String>,
}

/// One member of a group for a time window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// User name (local or ephemeral).
    pub name: Text,
    /// Grant that gives the membership.
    pub grant_id: Text,
    /// First second of membership.
    pub not_before: UnixTime,
    /// First second after membership.
    pub not_after: UnixTime,
}

/// A group jit answers for: a local group it adds members to, one of its own, or a private group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupEntry {
    /// Group name.
    pub name: Text,
    /// For local groups, the gid from `/etc/group` (NSS merge needs name and gid identical).
    pub gid: u32,
    /// `GROUP_KIND_*`.
    pub kind: u32,
    /// The group itself exists from here (private groups follow their account).
    pub not_before: UnixTime,
    /// ... until here.
    pub not_after: UnixTime,
    /// Timed members.
    pub members: Vec<Member>,
}

/// What pam_jit and sudo_jit gate on: one record per grant, with its conditions and scope as
/// validated strings (parsed by `policy`).
#[derive(Debug, Clone, Default)]
pub struct GateGrant {
    /// Grant id.
    pub id: Text,
    /// The person (local or ephemeral user name).
    pub user: Text,
    /// The account's uid when the grant carries an ephemeral account, else 0.
    pub uid: u32,
    /// Start.
    pub not_before: UnixTime,
    /// End.
    pub not_after: UnixTime,
    /// `GATE_*` flags.
    pub flags: u32,
    /// Bit set of revocation classes.
    pub revoke_on: u32,
    /// The grant's conditions and scope; `None` when every list is empty, as for most grants
    /// (an account or a group alone). Read with [`GateGrant::lists`]: five vectors in every
    /// record were 120 of its 184 bytes, and jitd holds one record per live grant while it
    /// writes the snapshot (about 1 MiB at 10 000 grants).
    pub lists: Option<Box<GateLists>>,
}

/// A gate record's lists, each as the grant states it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GateLists {
    /// Allowed source networks (CIDR).
    pub from: Vec<String>,
    /// Allowed PAM services.
    pub services: Vec<String>,
    /// Allowed time windows (`Mon-Fri 09:00-18:00`).
    pub windows: Vec<String>,
    /// Sudo scope: `ALL`, a path, or a path with arguments.
    pub sudo: Vec<String>,
    /// Allowed run-as targets (`user[:group]`).
    pub runas: Vec<String>,
}

/// What a record without lists reads as.
static NO_LISTS: GateLists = GateLists {
    from: Vec::new(),
    services: Vec::new(),
    windows: Vec::new(),
    sudo: Vec::new(),
    runas: Vec::new(),
};

impl GateLists {
    /// Whether every list is empty.
    pub fn is_empty(&self) -> bool {
        self.from.is_empty()
            && self.services.is_empty()
            && self.windows.is_empty()
            && self.sudo.is_empty()
            && self.runas.is_empty()
    }

    /// As a record holds them: nothing when every list is empty.
    pub fn boxed(self) -> Option<Box<GateLists>> {
        (!self.is_empty()).then(|| Box::new(self))
    }
}

impl GateGrant {
    /// The record's lists (all empty when it has none).
    pub fn lists(&self) -> &GateLists {
        self.lists.as_deref().unwrap_or(&NO_LISTS)
    }

    /// The record's lists, to change (allocated on first use).
    pub fn lists_mut(&mut self) -> &mut GateLists {
        self.lists.get_or_insert_with(Box::default)
    }
}

/// Records are equal when their fields and lists are: a record whose lists were allocated and
/// left empty equals one without.
impl PartialEq for GateGrant {
    fn eq(&self, other: &Self) -> bool {
        // Destructured whole: a field added later must be compared here or the build fails.
        let GateGrant {
            id,
            user,
            uid,
            not_before,
            not_after,
            flags,
            revoke_on,
            lists: _,
        } = self;
        *id == other.id
            && *user == other.user
            && *uid == other.uid
            && *not_before == other.not_before
            && *not_after == other.not_after
            && *flags == other.flags
            && *revoke_on == other.revoke_on
            && self.lists() == other.lists()
    }
}

impl Eq for GateGrant {}

/// Everything a snapshot holds.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SnapshotData {
    /// When jitd wrote it.
    pub generated_at: UnixTime,
    /// Ephemeral accounts (any order; the writer sorts).
    pub accounts: Vec<Account>,
    /// Groups (any order; the writer sorts).
    pub groups: Vec<GroupEntry>,
    /// Gate records (any order; the writer sorts).
    pub grants: Vec<GateGrant>,
    /// Managed local admin accounts (disabled unless a grant enables them).
    pub managed: Vec<String>,
    /// jitd's configured `uid_range`, stated in the header so the modules' "is this a jit
    /// identity" checks follow the configuration (`None`: not stated).
    pub uid_range: Option<(u32, u32)>,
}

#[cfg(test)]
mod text_tests {
    use super::Text;

    #[test]
    fn a_text_reads_compares_and_prints_as_its_string() {
        let t = Text::from("alice");
        assert_eq!(t, "alice");
        assert_eq!(t, *"alice");
        assert_eq!(t, String::from("alice"));
        assert_ne!(t, "alic");
        assert_eq!(t.as_str(), "alice");
        assert_eq!(t.len(), 5);
        assert_eq!(format!("{t} {t:?}"), "alice \"alice\"");
        assert_eq!(Text::default(), "");
        let (a, b) = (Text::from("a"), Text::from("b"));
        assert!(a < b);
    }

    /// What a projection relies on: a clone is the same allocation, not a copy.
    #[test]
    fn a_clone_shares_the_string() {
        let t = Text::from(String::from("g-000000000001"));
        let u = t.clone();
        assert!(std::ptr::eq(t.as_str(), u.as_str()));
    }
}

#[cfg(test)]
mod gate_lists_tests {
    use super::{GateGrant, GateLists};

    #[test]
    fn a_record_without_lists_reads_as_empty_lists() {
        let g = GateGrant::default();
        assert!(g.lists.is_none());
        assert!(g.lists().is_empty());
        assert!(g.lists().sudo.is_empty() && g.lists().from.is_empty());
        assert_eq!(GateLists::default().boxed(), None);
    }

    #[test]
    fn any_non_empty_list_is_kept() {
        let one = |set: fn(&mut GateLists)| {
            let mut l = GateLists::default();
            set(&mut l);
            l.boxed().map(|b| *b)
        };
        let all: [fn(&mut GateLists); 5] = [
            |l| l.from = vec!["10.0.0.0/8".into()],
            |l| l.services = vec!["sshd".into()],
            |l| l.windows = vec!["Mon-Fri 09:00-18:00".into()],
            |l| l.sudo = vec!["ALL".into()],
            |l| l.runas = vec!["root".into()],
        ];
        for set in all {
            let kept = one(set).expect("a list that is set is kept");
            assert!(!kept.is_empty());
        }
    }

    #[test]
    fn records_compare_by_their_lists_not_by_the_allocation() {
        let plain = GateGrant {
            id: "g-1".into(),
            ..Default::default()
        };
        let mut allocated = plain.clone();
        allocated.lists_mut();
        assert!(allocated.lists.is_some());
        assert_eq!(plain, allocated);
        allocated.lists_mut().sudo = vec!["ALL".into()];
        assert_ne!(plain, allocated);
        let mut other = plain.clone();
        other.lists_mut().runas = vec!["ALL".into()];
        assert_ne!(allocated, other);
        let mut renamed = plain.clone();
        renamed.id = "g-2".into();
        assert_ne!(plain, renamed);
    }

    #[test]
    fn the_lists_are_one_pointer_in_the_record() {
        assert_eq!(
            std::mem::size_of::<Option<Box<GateLists>>>(),
            std::mem::size_of::<usize>()
        );
        assert!(std::mem::size_of::<GateGrant>() <= 72);
    }
}
