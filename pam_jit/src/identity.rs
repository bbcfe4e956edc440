//! Is this login any of jit's business? Pure: given the PAM user name, what `/etc/passwd` says
//! about it, the snapshot (if trusted) and the durable managed list, decide without a daemon or
//! a network (docs/design.md#traps, docs/threat-model.md#t5):
//!
//! | name | answer |
//! |---|---|
//! | invalid (length capped first; `:`, `\n`, NUL, `/`, leading `-`, anything outside `[a-z0-9_-]`) | ignore |
//! | `root`, or a local line with uid 0 | ignore |
//! | local, in the managed list (snapshot; the durable file only when the snapshot is unreadable) | **managed** |
//! | local, not managed | ignore |
//! | a line without a numeric uid (glibc skips it), not managed, with an account record | **jit** |
//! | not local, with an account record or gate records in the snapshot | **jit** |
//! | not local, no snapshot or nothing in it | ignore (NSS cannot show the user either) |
//!
//! When `/etc/passwd` cannot be read, a managed name is still managed and a name with an
//! account record is still jit (jitd never issues an account under a local name), but gate
//! records alone do not make a name jit: a local user with a group grant must not be refused
//! for a broken file (pam_unix will refuse everyone then anyway).
//!
//! Ignore means `PAM_IGNORE` from every hook and no socket I/O: root and local users never
//! depend on jitd.

use crate::local::{LocalUser, ManagedFile};
use crate::person::Person;

/// The two kinds of identity pam_jit gates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An ephemeral account that exists only through a grant.
    Jit,
    /// A local admin account listed as managed: refused unless a grant enables it.
    Managed,
}

impl Kind {
    /// Lower-case name for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Jit => "jit",
            Kind::Managed => "managed",
        }
    }
}

/// Why a name is left alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// Not a valid name: jit never issues or manages it.
    InvalidName,
    /// `root` by name.
    Root,
    /// A local account with uid 0.
    Uid0,
    /// A local account that is not managed.
    LocalUser,
    /// Not local, and the snapshot knows nothing about it.
    Unknown,
    /// Not local, and the snapshot cannot be read (NSS cannot show the user either).
    NoSnapshot,
}

impl Why {
    /// Short reason for debug logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Why::InvalidName => "not a valid jit name",
            Why::Root => "root",
            Why::Uid0 => "uid 0",
            Why::LocalUser => "local user, not managed",
            Why::Unknown => "no jit record",
            Why::NoSnapshot => "not local and no snapshot",
        }
    }
}

/// The classification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Identity {
    /// Not jit's business: `PAM_IGNORE`, no I/O.
    Ignore(Why),
    /// Gated by pam_jit.
    Gated(Kind),
}

/// A classification and, when something looked wrong on the way, a warning for syslog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classified {
    /// The answer.
    pub identity: Identity,
    /// A problem worth logging even when the answer is ignore.
    pub warning: Option<String>,
}

impl Classified {
    fn of(identity: Identity) -> Self {
        Classified {
            identity,
            warning: None,
        }
    }
}

/// The checks that need no file at all: an invalid name or `root` is never jit's business.
/// Every hook runs this before it reads anything (the length is capped before any lookup).
pub fn precheck(name: &str) -> Option<Why> {
    if jit_core::validate::validate_name("user name", name).is_err() {
        return Some(Why::InvalidName);
    }
    if name == "root" {
        return Some(Why::Root);
    }
    None
}

/// Classifies `name` (see the module documentation). `managed_file` is read only when it is
/// needed: a local, non-root name and no trusted snapshot.
pub fn classify(
    name: &str,
    local: LocalUser,
    snapshot: Option<&Person<'_>>,
    managed_file: impl FnOnce() -> ManagedFile,
) -> Classified {
    if let Some(why) = precheck(name) {
        return Classified::of(Identity::Ignore(why));
    }
    // Whether the name is managed, and a warning when the durable list could not be used.
    let managed = || -> (bool, Option<String>) {
        match snapshot {
            Some(s) => (s.is_managed(name), None),
            None => match managed_file() {
                ManagedFile::Names(names) => (names.iter().any(|n| n == name), None),
                ManagedFile::Missing => (false, None),
                ManagedFile::Unusable(why) => (
                    false,
                    Some(format!(
                        "the managed-account list {} is not usable ({why}) and there is no \
                         snapshot: managed accounts are not recognised",
                        jit_core::constants::DEFAULT_MANAGED_LIST
                    )),
                ),
            },
        }
    };
    let (identity, warning) = match local {
        LocalUser::Present { uid: Some(0) } => (Identity::Ignore(Why::Uid0), None),
        LocalUser::Present { uid } => match managed() {
            (true, w) => (Identity::Gated(Kind::Managed), w),
            // A line without a numeric uid is skipped by glibc's files module and by jitd's
            // view of /etc/passwd (which then issues the account): NSS answers the name from
            // the jit module, so an account record keeps it jit (gate records alone do not,
            // as below: a local user's group grant).
            (false, w) if uid.is_none() && snapshot.is_some_and(|s| s.has_account_record(name)) => {
                (Identity::Gated(Kind::Jit), w)
            }
            (false, w) => (Identity::Ignore(Why::LocalUser), w),
        },
        LocalUser::Absent => match snapshot {
            None => (Identity::Ignore(Why::NoSnapshot), None),
            Some(s) if s.has_account_record(name) || s.grants_for_user(name).next().is_some() => {
                (Identity::Gated(Kind::Jit), None)
            }
            Some(_) => (Identity::Ignore(Why::Unknown), None),
        },
        LocalUser::Unreadable => {
            let (is_managed, w) = managed();
            let mut warning = "/etc/passwd cannot be read".to_string();
            if let Some(w) = w {
                warning = format!("{warning}; {w}");
            }
            let identity = if is_managed {
                Identity::Gated(Kind::Managed)
            } else if snapshot.is_some_and(|s| s.has_account_record(name)) {
                Identity::Gated(Kind::Jit)
            } else {
                Identity::Ignore(Why::Unknown)
            };
            (identity, Some(warning))
        }
    };
    Classified { identity, warning }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use jit_core::snapshot::{build_snapshot, Snapshot};
    use jit_core::types::*;

    fn account(name: &str, uid: u32) -> Account {
        Account {
            name: name.into(),
            uid,
            gid: uid,
            gecos: "jit".into(),
            home: format!("/home/{name}").into(),
            shell: "/bin/bash".into(),
            grant_id: "g-0001".into(),
            not_before: 100,
            not_after: 200,
            flags: 0,
            ssh_keys: vec![],
        }
    }

    fn gate(id: &str, user: &str, flags: u32) -> GateGrant {
        GateGrant {
            id: id.into(),
            user: user.into(),
            not_before: 100,
            not_after: 200,
            flags,
            ..Default::default()
        }
    }

    fn data() -> SnapshotData {
        SnapshotData {
            generated_at: 1,
            // An expired-looking record still classifies: close_session must work after the
            // grant ended, as long as jitd still lists the record.
            accounts: vec![account("eve", 70001)],
            groups: vec![],
            grants: vec![
                gate("g-0001", "eve", GATE_ACCOUNT),
                gate("g-0002", "gina", 0),
                gate("g-0003", "admin", GATE_ENABLE),
                gate("g-0004", "bob", 0),
            ],
            managed: vec!["admin".into(), "ops".into(), "toor".into()],
            uid_range: None,
        }
    }

    fn never() -> ManagedFile {
        panic!("the durable managed list must not be read when a snapshot exists")
    }

    fn present(uid: u32) -> LocalUser {
        LocalUser::Present { uid: Some(uid) }
    }

    #[test]
    fn with_a_snapshot() {
        let bytes = build_snapshot(&data()).unwrap();
        let s = Person::whole(Snapshot::parse(&bytes).unwrap());
        let c = |name: &str, local| classify(name, local, Some(&s), never).identity;
        assert_eq!(c("root", present(0)), Identity::Ignore(Why::Root));
        assert_eq!(c("root", LocalUser::Absent), Identity::Ignore(Why::Root));
        assert_eq!(
            c("toor", present(0)),
            Identity::Ignore(Why::Uid0),
            "uid 0 is never managed"
        );
        assert_eq!(c("admin", present(1001)), Identity::Gated(Kind::Managed));
        assert_eq!(
            c("admin", LocalUser::Present { uid: None }),
            Identity::Gated(Kind::Managed)
        );
        assert_eq!(c("ops", present(1002)), Identity::Gated(Kind::Managed));
        assert_eq!(c("alice", present(1000)), Identity::Ignore(Why::LocalUser));
        assert_eq!(
            c("bob", present(1003)),
            Identity::Ignore(Why::LocalUser),
            "a local user with a group grant is not gated"
        );
        assert_eq!(c("eve", LocalUser::Absent), Identity::Gated(Kind::Jit));
        assert_eq!(
            c("gina", LocalUser::Absent),
            Identity::Gated(Kind::Jit),
            "gate records only"
        );
        assert_eq!(
            c("nobody", LocalUser::Absent),
            Identity::Ignore(Why::Unknown)
        );
        // A managed name absent from /etc/passwd is not a local admin: without jit records it
        // is nobody (the account does not exist for pam_unix either).
        assert_eq!(c("ops", LocalUser::Absent), Identity::Ignore(Why::Unknown));
        // passwd unreadable: managed and account records still count, gate records alone not.
        assert_eq!(
            c("admin", LocalUser::Unreadable),
            Identity::Gated(Kind::Managed)
        );
        assert_eq!(c("eve", LocalUser::Unreadable), Identity::Gated(Kind::Jit));
        assert_eq!(
            c("bob", LocalUser::Unreadable),
            Identity::Ignore(Why::Unknown)
        );
        assert_eq!(
            c("gina", LocalUser::Unreadable),
            Identity::Ignore(Why::Unknown)
        );
        assert!(classify("eve", LocalUser::Unreadable, Some(&s), never)
            .warning
            .is_some());
    }

    #[test]
    fn a_malformed_passwd_line_does_not_hide_a_jit_account() {
        // glibc's files module skips a line whose uid or gid is not a number, and so does
        // jitd's own view of /etc/passwd (it then issues the account): NSS answers the name
        // from the jit module. pam_jit must gate it, not ignore it as a local user.
        let bytes = build_snapshot(&data()).unwrap();
        let s = Person::whole(Snapshot::parse(&bytes).unwrap());
        let odd = LocalUser::Present { uid: None };
        assert_eq!(
            classify("eve", odd, Some(&s), never).identity,
            Identity::Gated(Kind::Jit)
        );
        // Gate records alone (a local user's group grant) do not make it jit, as with an
        // unreadable /etc/passwd; a managed name stays managed; nothing else changes.
        assert_eq!(
            classify("bob", odd, Some(&s), never).identity,
            Identity::Ignore(Why::LocalUser)
        );
        assert_eq!(
            classify("admin", odd, Some(&s), never).identity,
            Identity::Gated(Kind::Managed)
        );
        assert_eq!(
            classify("alice", odd, Some(&s), never).identity,
            Identity::Ignore(Why::LocalUser)
        );
        assert_eq!(
            classify("eve", odd, None, || ManagedFile::Missing).identity,
            Identity::Ignore(Why::LocalUser)
        );
    }

    #[test]
    fn invalid_names_are_never_ours() {
        let bytes = build_snapshot(&data()).unwrap();
        let s = Person::whole(Snapshot::parse(&bytes).unwrap());
        let long = "a".repeat(16385);
        let root_long = format!("root{}", "t".repeat(16380));
        for bad in [
            "",
            "evil:0:0",
            "a\nroot:x:0:0",
            "a\0b",
            "a\tb",
            "-oProxyCommand",
            "+nis",
            "@grp",
            "../../bin/ls",
            "a/b",
            ".hidden",
            "a.b",
            "a~",
            "Admin",
            "ADMIN",
            "аdmin",
            long.as_str(),
            root_long.as_str(),
            "admin ",
            " admin",
        ] {
            assert_eq!(precheck(bad), Some(Why::InvalidName), "{bad:?}");
            for local in [LocalUser::Absent, present(1000), LocalUser::Unreadable] {
                assert_eq!(
                    classify(bad, local, Some(&s), never).identity,
                    Identity::Ignore(Why::InvalidName),
                    "{bad:?}"
                );
            }
        }
        assert_eq!(precheck("root"), Some(Why::Root));
        assert_eq!(precheck("admin"), None);
        assert_eq!(precheck(&"a".repeat(32)), None);
        assert_eq!(precheck(&"a".repeat(33)), Some(Why::InvalidName));
    }

    #[test]
    fn without_a_snapshot() {
        let names = || ManagedFile::Names(vec!["admin".into()]);
        let c = |name: &str, local, f: &dyn Fn() -> ManagedFile| classify(name, local, None, f);
        assert_eq!(
            c("admin", present(1001), &names).identity,
            Identity::Gated(Kind::Managed)
        );
        assert_eq!(
            c("alice", present(1000), &names).identity,
            Identity::Ignore(Why::LocalUser)
        );
        assert_eq!(
            c("eve", LocalUser::Absent, &names).identity,
            Identity::Ignore(Why::NoSnapshot)
        );
        assert_eq!(
            c("admin", present(1001), &|| ManagedFile::Missing).identity,
            Identity::Ignore(Why::LocalUser)
        );
        let r = c("admin", present(1001), &|| {
            ManagedFile::Unusable("writable by group or others".into())
        });
        assert_eq!(r.identity, Identity::Ignore(Why::LocalUser));
        assert!(r.warning.unwrap().contains("writable"));
        assert_eq!(
            c("admin", LocalUser::Unreadable, &names).identity,
            Identity::Gated(Kind::Managed)
        );
        assert_eq!(
            c("alice", LocalUser::Unreadable, &names).identity,
            Identity::Ignore(Why::Unknown)
        );
        assert_eq!(
            c("root", present(0), &|| panic!("root reads nothing")).identity,
            Identity::Ignore(Why::Root)
        );
        assert_eq!(
            c("toor", present(0), &|| panic!("uid 0 reads nothing")).identity,
            Identity::Ignore(Why::Uid0)
        );
        assert_eq!(
            c("eve", LocalUser::Absent, &|| panic!("not local: no list")).identity,
            Identity::Ignore(Why::NoSnapshot)
        );
    }
}
