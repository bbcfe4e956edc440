//! One-shot keyed reads of a trusted file answer as the whole file does, read nothing of the
//! base, and refuse what fails a check.

use super::file::TrustError;
use super::index::{name_key, Table};
use super::index_tests::{data, opts};
use super::keyed::{read_trusted_key, GatesPart, Keyed, KeyedError, GATES_PART_MAX_GIDS};
use super::listing_tests::indexed;
use super::*;
use std::ffi::CString;
use std::os::unix::fs::PermissionsExt;

pub(super) fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// `bytes` in a fresh file under the temporary directory, with `mode`; removed on drop.
pub(super) struct File(std::path::PathBuf);

impl File {
    pub(super) fn new(tag: &str, bytes: &[u8], mode: u32) -> File {
        let p = std::env::temp_dir().join(format!("jit-keyed-{tag}-{}", std::process::id()));
        std::fs::write(&p, bytes).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        File(p)
    }

    pub(super) fn c(&self) -> CString {
        CString::new(self.0.as_os_str().as_encoded_bytes()).unwrap()
    }
}

impl Drop for File {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The test data with ssh keys on every account, so the keys' strings must come with a shard.
fn keyed_data() -> crate::types::SnapshotData {
    let mut d = data(300);
    for a in &mut d.accounts {
        a.ssh_keys = vec![
            format!("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA{} {}", a.uid, a.name),
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAsecond".into(),
        ];
    }
    d
}

/// What `name`'s account shows at `now` through a keyed read of `path`: name, uid, keys.
fn account_via_key(path: &CString, name: &str, now: i64) -> Option<(String, u32, Vec<String>)> {
    match read_trusted_key(path, Table::Name, name_key(name)).unwrap() {
        Keyed::Shard { shard, serial, .. } => {
            assert_eq!(serial, 0);
            let bytes = shard?;
            let s = Snapshot::parse(&bytes).unwrap();
            let a = s.account_by_name(name, now)?;
            Some((
                a.name().to_string(),
                a.uid(),
                a.ssh_keys().map(str::to_string).collect(),
            ))
        }
        Keyed::Base(_) => panic!("an indexed file read as its base"),
    }
}

fn account_in(s: &Snapshot<'_>, name: &str, now: i64) -> Option<(String, u32, Vec<String>)> {
    let a = s.account_by_name(name, now)?;
    Some((
        a.name().to_string(),
        a.uid(),
        a.ssh_keys().map(str::to_string).collect(),
    ))
}

#[test]
fn a_keyed_read_answers_as_the_whole_file() {
    if !is_root() {
        return;
    }
    let file = build_snapshot_with(&keyed_data(), &opts()).unwrap();
    let whole = Snapshot::parse(&file).unwrap();
    let f = File::new("answers", &file, 0o644);
    let mut found = 0;
    for name in (0..310)
        .map(|i| format!("u{i}"))
        .chain(["jit-users".into(), "ops".into()])
    {
        for now in [150, 2500] {
            let want = account_in(&whole, &name, now);
            found += usize::from(want.is_some());
            assert_eq!(account_via_key(&f.c(), &name, now), want, "{name} at {now}");
        }
    }
    // Every account at 150 and the second grant of u1 at 2500.
    assert_eq!(found, 301);
}

#[test]
fn a_keyed_read_reads_nothing_of_the_base() {
    if !is_root() {
        return;
    }
    let mut file = build_snapshot_with(&keyed_data(), &opts()).unwrap();
    let whole = Snapshot::parse(&file).unwrap();
    let want = account_in(&whole, "u42", 150);
    assert!(want.is_some());
    // Garble the whole base region (a third of the file): the whole-file and base checks now
    // fail, and the keyed read still answers, so it never read those bytes.
    let base_at = Snapshot::stated_base_at(&file, file.len() as u64).unwrap() as usize;
    assert!(base_at > 0 && base_at < file.len());
    for b in &mut file[base_at..] {
        *b ^= 0x5a;
    }
    assert!(Snapshot::parse(&file).is_err());
    let f = File::new("no-base", &file, 0o644);
    assert_eq!(account_via_key(&f.c(), "u42", 150), want);
}

#[test]
fn a_damaged_shard_or_index_is_refused_never_misread() {
    if !is_root() {
        return;
    }
    let good = build_snapshot_with(&keyed_data(), &opts()).unwrap();
    let want = account_in(&Snapshot::parse(&good).unwrap(), "u7", 150);
    let f = File::new("damaged", &good, 0o644);
    let Keyed::Shard {
        shard: Some(shard), ..
    } = read_trusted_key(&f.c(), Table::Name, name_key("u7")).unwrap()
    else {
        panic!("no shard for u7");
    };
    let at = good
        .windows(shard.len())
        .position(|w| w == shard.as_slice())
        .unwrap();
    // Every byte of the shard, and every byte of the first page (header, table, big tables,
    // directory), flipped in turn: either the same answer or an error, never another answer.
    let mut refused = 0;
    for i in (0..4096.min(good.len())).chain(at..at + shard.len()) {
        let mut bad = good.clone();
        bad[i] ^= 0x01;
        let f = File::new("damaged-one", &bad, 0o644);
        match read_trusted_key(&f.c(), Table::Name, name_key("u7")) {
            Err(KeyedError::Corrupt(_) | KeyedError::Trust(TrustError::Os(_))) => refused += 1,
            Err(e) => panic!("byte {i}: unexpected {e}"),
            Ok(Keyed::Base(_)) => {} // a table no longer stating the index: read whole elsewhere
            Ok(Keyed::Shard { shard: None, .. }) => {} // the entry now points nowhere: no key
            Ok(Keyed::Shard {
                shard: Some(bytes), ..
            }) => {
                let s = Snapshot::parse(&bytes).unwrap();
                let got = account_in(&s, "u7", 150);
                assert!(got.is_none() || got == want, "byte {i}: {got:?}");
            }
        }
    }
    // Flipping a byte of the shard itself always fails its checksum.
    assert!(refused >= shard.len(), "{refused} refused");
}

#[test]
fn a_file_without_the_index_is_read_as_its_base() {
    if !is_root() {
        return;
    }
    let d = keyed_data();
    let file = build_snapshot(&d).unwrap();
    let f = File::new("unindexed", &file, 0o644);
    let Keyed::Base(image) = read_trusted_key(&f.c(), Table::Name, name_key("u3")).unwrap() else {
        panic!("an unindexed file gave a shard");
    };
    let s = image.parse().unwrap();
    assert_eq!(
        account_in(&s, "u3", 150),
        account_in(&Snapshot::parse(&file).unwrap(), "u3", 150)
    );
}

#[test]
fn an_untrusted_file_is_not_read() {
    if !is_root() {
        return;
    }
    let file = build_snapshot_with(&keyed_data(), &opts()).unwrap();
    let f = File::new("writable", &file, 0o666);
    assert!(matches!(
        read_trusted_key(&f.c(), Table::Name, name_key("u3")),
        Err(KeyedError::Trust(TrustError::Writable))
    ));
    let missing = CString::new("/nonexistent/jit-keyed").unwrap();
    assert!(matches!(
        read_trusted_key(&missing, Table::Name, name_key("u3")),
        Err(KeyedError::Trust(TrustError::Os(libc::ENOENT)))
    ));
}

/// A gate record of `user` from 100 to 1000, with the sudo scope `sudo` (none if empty).
fn gate(id: &str, user: &str, uid: u32, sudo: &[&str]) -> crate::types::GateGrant {
    crate::types::GateGrant {
        id: id.into(),
        user: user.into(),
        uid,
        not_before: 100,
        not_after: 1000,
        flags: 0,
        revoke_on: 0,
        lists: (!sudo.is_empty()).then(|| {
            Box::new(crate::types::GateLists {
                sudo: sudo.iter().map(|s| s.to_string()).collect(),
                ..Default::default()
            })
        }),
    }
}

/// Gates data: the test data's identities, gate records for most of them and for local users
/// (`alice` with a group grant, `bob` with a sudo scope), a managed list, and jit-sudo.
fn gates_data() -> crate::types::SnapshotData {
    use crate::types::{GroupEntry, Member, GROUP_KIND_JIT};
    let mut d = data(200);
    for i in (0..200).step_by(2) {
        d.grants.push(gate(
            &format!("g-{i:012x}"),
            &format!("u{i}"),
            70_000 + i,
            &[],
        ));
    }
    d.grants.push(gate("g-a11ce0000001", "alice", 0, &[]));
    d.grants
        .push(gate("g-b0b000000001", "bob", 0, &["/usr/bin/id"]));
    d.grants.push(gate("g-b0b000000002", "bob", 0, &[]));
    d.managed = vec!["admin".into(), "ops".into(), "u7".into()];
    d.groups.push(GroupEntry {
        name: "jit-sudo".into(),
        gid: 79_998,
        kind: GROUP_KIND_JIT,
        not_before: i64::MIN,
        not_after: i64::MAX,
        members: vec![Member {
            name: "u4".into(),
            grant_id: "g-000000000004".into(),
            not_before: 100,
            not_after: 1000,
        }],
    });
    d.grants.sort_by(|a, b| a.user.cmp(&b.user));
    d
}

fn gates_opts() -> BuildOptions {
    BuildOptions {
        index: true,
        gates_index: true,
        serial: 9,
        ..Default::default()
    }
}

/// What the whole-file tests of pam_jit and sudo_jit look at for `user` and `gids`: the gate
/// records' ids and sudo scopes, the managed flag, and jit's own groups with one of the gids
/// (name, gid, whether `user` is one of its members), from a whole view, or from a person's
/// view and the groups' views together (1.7: a group's record by gid has no members; each
/// member's record is in the member's own shard).
type GateFacts = (
    Vec<(String, Vec<String>)>,
    bool,
    Vec<(String, u32, bool)>,
    bool,
);

fn gate_facts(
    own: Option<&Snapshot<'_>>,
    held: &[Snapshot<'_>],
    user: &str,
    gids: &[u32],
) -> GateFacts {
    let grants = own.map_or(vec![], |s| {
        s.grants_for_user(user)
            .map(|g| (g.id().to_string(), g.sudo().map(str::to_string).collect()))
            .collect()
    });
    let managed = own.is_some_and(|s| s.is_managed(user));
    let views: Vec<&Snapshot<'_>> = held.iter().chain(own).collect();
    let all = || {
        views
            .iter()
            .flat_map(|s| (0..s.group_count()).filter_map(|i| s.group_at(i)))
            .filter(|g| gids.contains(&g.gid()))
    };
    let mut groups: Vec<(String, u32, bool)> = all()
        // What sudo_jit's jit-group test looks at: jit's own groups.
        .filter(|g| g.kind() == crate::types::GROUP_KIND_JIT || g.name() == "jit-sudo")
        .map(|g| {
            let member = all()
                .filter(|o| o.gid() == g.gid())
                .any(|o| o.members().any(|m| m.name() == user));
            (g.name().to_string(), g.gid(), member)
        })
        .collect();
    groups.sort();
    groups.dedup();
    // pam_jit also asks whether the person has an account record (1.8: in their shard).
    let account = own.is_some_and(|s| s.has_account_record(user));
    (grants, managed, groups, account)
}

#[test]
fn the_gates_index_gives_each_person_and_group_what_the_whole_file_does() {
    if !is_root() {
        return;
    }
    let d = gates_data();
    let file = build_snapshot_with(&d, &gates_opts()).unwrap();
    let whole = Snapshot::parse(&file).unwrap();
    let f = File::new("gates", &file, 0o600);
    // The last set: a process with 300 groups (a directory-service user), jit's among them:
    // the id directory read whole, many gids sharing a shard.
    let wide: Vec<u32> = (70_000..70_290).chain([79_998, 79_999, 1500, 27]).collect();
    let gid_sets: [&[u32]; 5] = [
        &[],
        &[100, 27],
        &[79_998, 79_999, 1500],
        &[70_004, 70_005],
        &wide,
    ];
    let mut seen_grants = 0;
    let mut seen_managed = 0;
    let mut seen_accounts = 0;
    let (mut members, mut not_members) = (0, 0);
    for user in (0..205)
        .map(|i| format!("u{i}"))
        .chain(["alice", "bob", "admin", "ops", "carol", "jit-users"].map(String::from))
    {
        for gids in gid_sets {
            let part = GatesPart::read(&f.c(), c"/nonexistent/delta", &user, gids).unwrap();
            let got = part
                .answer(|own, held| gate_facts(own, held, &user, gids))
                .unwrap();
            let want = gate_facts(Some(&whole), std::slice::from_ref(&whole), &user, gids);
            assert_eq!(got, want, "{user} {gids:?}");
            seen_grants += want.0.len();
            seen_managed += usize::from(want.1);
            seen_accounts += usize::from(want.3);
            members += want.2.iter().filter(|g| g.2).count();
            not_members += want.2.iter().filter(|g| !g.2).count();
        }
    }
    // 100 identities' records, alice's and bob's two, each under five gid sets; three managed.
    assert_eq!(seen_grants, (100 + 3) * 5);
    assert_eq!(seen_managed, 3 * 5);
    assert_eq!(seen_accounts, 200 * 5);
    // Memberships were compared both ways: jit-users' members, and everyone else.
    assert!(
        members >= 100 && not_members >= 100,
        "{members} {not_members}"
    );
}

#[test]
fn the_public_index_owns_no_gate_record_or_managed_entry() {
    // Built from the same data without the gates: no shard may carry them.
    let d = gates_data();
    let file = indexed(&d);
    let needle = b"g-b0b000000001";
    assert!(!file.windows(needle.len()).any(|w| w == needle));
    assert!(!file.windows(5).any(|w| w == b"admin"));
}

#[test]
fn a_gates_part_reads_the_delta_over_the_shards_and_refuses_what_cannot_say() {
    if !is_root() {
        return;
    }
    let d = gates_data();
    let file = build_snapshot_with(&d, &gates_opts()).unwrap();
    let f = File::new("gates-delta", &file, 0o600);
    // A delta of the file (serial 9) with a new sudo grant of carol's.
    let mut added = crate::types::SnapshotData {
        generated_at: 78,
        ..Default::default()
    };
    added
        .grants
        .push(gate("g-ca201000001", "carol", 0, &["ALL"]));
    added
        .accounts
        .push(super::index_tests::account("carol", 70_500, 0, 1000));
    let delta = |serial: u32| {
        build_snapshot_with(
            &added,
            &BuildOptions {
                delta_of: Some([serial, 0, 0, 0]),
                ..Default::default()
            },
        )
        .unwrap()
    };
    let grants_of = |p: &GatesPart, user: &str| {
        p.answer(|own, _| own.map_or(0, |s| s.grants_for_user(user).count()))
            .unwrap()
    };
    let df = File::new("gates-delta-d", &delta(9), 0o600);
    let p = GatesPart::read(&f.c(), &df.c(), "carol", &[]).unwrap();
    assert_eq!(
        grants_of(&p, "carol"),
        1,
        "carol's grant from the delta alone"
    );
    let d_own = p.parse_delta();
    let own = p.own(d_own.as_ref()).unwrap().unwrap();
    assert!(
        own.has_account_record("carol"),
        "carol's account from the delta"
    );
    assert_eq!(p.minor(), super::format::MINOR);
    let p = GatesPart::read(&f.c(), &df.c(), "bob", &[]).unwrap();
    assert_eq!(
        grants_of(&p, "bob"),
        2,
        "bob's from his shard, none in the delta"
    );
    // A delta of another base is not read over this file.
    let other = File::new("gates-delta-o", &delta(10), 0o600);
    let p = GatesPart::read(&f.c(), &other.c(), "carol", &[]).unwrap();
    assert_eq!(grants_of(&p, "carol"), 0);
    // A file written before 1.6 (minor 5: no promise about its shards) cannot say.
    let mut old = file.clone();
    old[10..12].copy_from_slice(&5u16.to_le_bytes());
    let o = File::new("gates-old", &old, 0o600);
    assert!(GatesPart::read(&o.c(), &df.c(), "bob", &[]).is_none());
    // Nor can an unindexed file, an untrusted one, or too many groups.
    let u = File::new("gates-unindexed", &build_snapshot(&d).unwrap(), 0o600);
    assert!(GatesPart::read(&u.c(), &df.c(), "bob", &[]).is_none());
    let w = File::new("gates-writable", &file, 0o666);
    assert!(GatesPart::read(&w.c(), &df.c(), "bob", &[]).is_none());
    let many: Vec<u32> = (0..=GATES_PART_MAX_GIDS as u32).collect();
    assert!(GatesPart::read(&f.c(), &df.c(), "bob", &many).is_none());
    assert!(GatesPart::read(&f.c(), &df.c(), "bob", &many[1..]).is_some());
}

#[test]
fn the_gates_index_holds_no_account_listing_and_stays_small() {
    let d = gates_data();
    let gates = build_snapshot_with(&d, &gates_opts()).unwrap();
    let plain = build_snapshot(&d).unwrap();
    let public = indexed(&d);
    assert!(Snapshot::parse(&gates).is_ok());
    let head = super::index::IndexHead::parse(&gates[..4096.min(gates.len())], gates.len() as u64)
        .unwrap()
        .unwrap();
    assert!(
        head.listing.is_none(),
        "an account listing in the gates file"
    );
    assert_eq!(head.minor, super::format::MINOR);
    // Its index costs less than the file without it (the public one costs more than that).
    assert!(
        gates.len() < 2 * plain.len(),
        "{} vs {}",
        gates.len(),
        plain.len()
    );
    assert!(gates.len() < public.len() + plain.len() / 2);
}

/// A name's part of the public snapshot (its shard, or the base region of a file without the
/// index) with the delta over it says whether the name has an account record, as the whole
/// file with the delta does: for every name of an indexed file, one added by a delta, one of
/// no one, and through an unindexed file.
#[test]
fn a_name_part_with_its_delta_answers_as_the_whole_file() {
    use super::keyed::NamePart;
    if !is_root() {
        return;
    }
    let d = keyed_data();
    let mut added = crate::types::SnapshotData {
        generated_at: 78,
        ..Default::default()
    };
    added
        .accounts
        .push(super::index_tests::account("newbie", 70_900, 0, 5000));
    let delta = build_snapshot_with(
        &added,
        &BuildOptions {
            delta_of: Some([9, 0, 0, 0]),
            ..Default::default()
        },
    )
    .unwrap();
    let df = File::new("namepart-delta", &delta, 0o644);
    let delta_view = Snapshot::parse(&delta).unwrap();
    for (tag, file) in [
        (
            "indexed",
            build_snapshot_with(
                &d,
                &BuildOptions {
                    serial: 9,
                    ..opts()
                },
            )
            .unwrap(),
        ),
        (
            "unindexed",
            build_snapshot_with(
                &d,
                &BuildOptions {
                    serial: 9,
                    ..Default::default()
                },
            )
            .unwrap(),
        ),
    ] {
        let f = File::new(&format!("namepart-{tag}"), &file, 0o644);
        let whole = Snapshot::parse(&file).unwrap().over(Some(&delta_view));
        let mut found = 0;
        for name in (0..310)
            .map(|i| format!("u{i}"))
            .chain(["newbie", "jit-users", "nobody-here"].map(String::from))
        {
            let part = NamePart::read(&f.c(), &df.c(), &name).unwrap();
            let got = part
                .answer(|v| v.is_some_and(|s| s.has_account_record(&name)))
                .unwrap();
            assert_eq!(got, whole.has_account_record(&name), "{tag} {name}");
            found += usize::from(got);
        }
        // The 300 accounts and the delta's.
        assert_eq!(found, 301, "{tag}");
    }
}
