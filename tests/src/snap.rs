//! Snapshot contents for NSS-level tests, built the way jitd projects grants: an account grant
//! gives the ephemeral account, its private group, membership of `jit-users` and of any listed
//! groups; a group grant adds an existing user to groups. Groups are merged by name, as the
//! writer requires.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};

use jit_core::types::{
    Account, GateGrant, GroupEntry, Member, SnapshotData, GATE_ACCOUNT, GROUP_KIND_JIT,
    GROUP_KIND_LOCAL, GROUP_KIND_PRIVATE,
};

use crate::sandbox::Ids;

/// A fresh, valid grant id (`g-` + 12 hex digits).
pub fn grant_id() -> String {
    static N: AtomicU32 = AtomicU32::new(1);
    format!(
        "g-{:04x}{:08x}",
        std::process::id() & 0xffff,
        N.fetch_add(1, Ordering::SeqCst)
    )
}

/// gid the NSS-level tests give `jit-users` (inside the sandbox's jit range).
pub fn jit_users_gid(ids: &Ids) -> u32 {
    ids.jit_min + 1
}

/// A group a grant names: an existing local one (gid from /etc/group) or one of jit's own.
#[derive(Debug, Clone)]
pub struct GroupRef {
    /// Name.
    pub name: String,
    /// gid.
    pub gid: u32,
    /// `GROUP_KIND_LOCAL` or `GROUP_KIND_JIT`.
    pub kind: u32,
}

impl GroupRef {
    /// An existing /etc/group group.
    pub fn local(name: &str, gid: u32) -> GroupRef {
        GroupRef {
            name: name.into(),
            gid,
            kind: GROUP_KIND_LOCAL,
        }
    }
    /// A group jit provides.
    pub fn jit(name: &str, gid: u32) -> GroupRef {
        GroupRef {
            name: name.into(),
            gid,
            kind: GROUP_KIND_JIT,
        }
    }
}

/// Accumulates grants into a [`SnapshotData`].
#[derive(Debug, Clone)]
pub struct SnapBuilder {
    ids: Ids,
    accounts: Vec<Account>,
    groups: BTreeMap<String, GroupEntry>,
    grants: Vec<GateGrant>,
    generated_at: i64,
}

/// The snapshot most NSS tests start from: ephemeral `alice`, uid `jit_min + 100`, live from a
/// minute ago for an hour, member of `sudo`. Returns the builder (to add more) and alice's uid.
pub fn live_alice_in_sudo(ids: Ids) -> (SnapBuilder, u32) {
    let t = crate::now();
    let ua = ids.jit_min + 100;
    let mut b = SnapBuilder::new(ids);
    b.account(
        "alice",
        ua,
        &[GroupRef::local("sudo", ids.sudo_gid)],
        t - 60,
        t + 3600,
        None,
    );
    (b, ua)
}

impl SnapBuilder {
    /// Empty snapshot for a sandbox's ids.
    pub fn new(ids: Ids) -> SnapBuilder {
        SnapBuilder {
            ids,
            accounts: Vec::new(),
            groups: BTreeMap::new(),
            grants: Vec::new(),
            generated_at: crate::now(),
        }
    }

    fn add_member(&mut self, g: &GroupRef, user: &str, grant: &str, nb: i64, na: i64) {
        let e = self
            .groups
            .entry(g.name.clone())
            .or_insert_with(|| GroupEntry {
                name: g.name.clone().into(),
                gid: g.gid,
                kind: g.kind,
                not_before: nb,
                not_after: na,
                members: Vec::new(),
            });
        e.not_before = e.not_before.min(nb);
        e.not_after = e.not_after.max(na);
        e.members.push(Member {
            name: user.into(),
            grant_id: grant.into(),
            not_before: nb,
            not_after: na,
        });
    }

    /// An ephemeral account `name` with `uid` (= its private gid) live in `[nb, na)`, member of
    /// `jit-users` and of `groups`. GECOS is `gecos` or `jit grant <id> (test)`. Returns the id.
    pub fn account(
        &mut self,
        name: &str,
        uid: u32,
        groups: &[GroupRef],
        nb: i64,
        na: i64,
        gecos: Option<&str>,
    ) -> String {
        let id = grant_id();
        self.accounts.push(Account {
            name: name.into(),
            uid,
            gid: uid,
            gecos: gecos
                .map(str::to_string)
                .unwrap_or_else(|| format!("jit grant {id} (test)"))
                .into(),
            home: format!("/home/{name}").into(),
            shell: "/bin/bash".into(),
            grant_id: id.clone().into(),
            not_before: nb,
            not_after: na,
            flags: 0,
            ssh_keys: Vec::new(),
        });
        self.groups.insert(
            name.into(),
            GroupEntry {
                name: name.into(),
                gid: uid,
                kind: GROUP_KIND_PRIVATE,
                not_before: nb,
                not_after: na,
                members: Vec::new(),
            },
        );
        let ju = GroupRef::jit("jit-users", jit_users_gid(&self.ids));
        self.add_member(&ju, name, &id, nb, na);
        for g in groups {
            self.add_member(g, name, &id, nb, na);
        }
        self.grants.push(GateGrant {
            id: id.clone().into(),
            user: name.into(),
            uid,
            not_before: nb,
            not_after: na,
            flags: GATE_ACCOUNT,
            ..GateGrant::default()
        });
        id
    }

    /// Sets the ssh keys of the most recently added account.
    pub fn with_keys(&mut self, keys: &[&str]) -> &mut Self {
        if let Some(a) = self.accounts.last_mut() {
            a.ssh_keys = keys.iter().map(|k| k.to_string()).collect();
        }
        self
    }

    /// A group grant: existing user `user` gains `groups` in `[nb, na)`. Returns the grant id.
    pub fn group_grant(&mut self, user: &str, groups: &[GroupRef], nb: i64, na: i64) -> String {
        let id = grant_id();
        for g in groups {
            self.add_member(g, user, &id, nb, na);
        }
        self.grants.push(GateGrant {
            id: id.clone().into(),
            user: user.into(),
            uid: 0,
            not_before: nb,
            not_after: na,
            ..GateGrant::default()
        });
        id
    }

    /// The raw data (to tweak before building).
    pub fn data(&self) -> SnapshotData {
        SnapshotData {
            generated_at: self.generated_at,
            accounts: self.accounts.clone(),
            groups: self.groups.values().cloned().collect(),
            grants: self.grants.clone(),
            managed: Vec::new(),
            uid_range: None,
        }
    }

    /// The file image.
    pub fn bytes(&self) -> Vec<u8> {
        jit_core::snapshot::build_snapshot(&self.data())
            .unwrap_or_else(|e| panic!("build_snapshot refused the test data: {e}"))
    }

    /// The file image with the lookup index, as jitd writes the public snapshot: NSS then reads
    /// one shard per query instead of the whole file.
    pub fn indexed_bytes(&self) -> Vec<u8> {
        jit_core::snapshot::build_snapshot_with(
            &self.data(),
            &jit_core::snapshot::BuildOptions {
                index: true,
                ..Default::default()
            },
        )
        .unwrap_or_else(|e| panic!("build_snapshot refused the test data: {e}"))
    }
}

/// The passwd line libnss_jit must produce for an account made by [`SnapBuilder::account`].
pub fn passwd_line(name: &str, uid: u32, gecos: &str) -> String {
    format!("{name}:*:{uid}:{uid}:{gecos}:/home/{name}:/bin/bash")
}
