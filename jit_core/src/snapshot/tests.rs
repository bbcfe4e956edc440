//! Round-trip, boundary and corruption tests of the snapshot format.

use super::*;
use crate::types::*;

fn account(name: &str, uid: u32, nb: i64, na: i64) -> Account {
    Account {
        name: name.into(),
        uid,
        gid: uid,
        gecos: format!("jit grant g-{uid:04x} (test)").into(),
        home: format!("/home/{name}").into(),
        shell: "/bin/bash".into(),
        grant_id: format!("g-{uid:04x}").into(),
        not_before: nb,
        not_after: na,
        flags: 0,
        ssh_keys: vec![format!(
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA{name} {name}@test"
        )],
    }
}

fn member(name: &str, nb: i64, na: i64) -> Member {
    Member {
        name: name.into(),
        grant_id: "g-0001".into(),
        not_before: nb,
        not_after: na,
    }
}

fn sample() -> SnapshotData {
    SnapshotData {
        generated_at: 1234,
        // Deliberately unsorted: the writer sorts.
        accounts: vec![
            account("zed", 70003, 100, 200),
            account("alice", 70001, 100, 200),
            account("bob", 70002, 150, 300),
            account("alice", 70001, 500, 600),
        ],
        groups: vec![
            GroupEntry {
                name: "sudo".into(),
                gid: 27,
                kind: GROUP_KIND_LOCAL,
                not_before: i64::MIN,
                not_after: i64::MAX,
                members: vec![member("carol", 100, 200), member("alice", 100, 200)],
            },
            GroupEntry {
                name: "alice".into(),
                gid: 70001,
                kind: GROUP_KIND_PRIVATE,
                // jitd widens a private group's record over all grants of the identity.
                not_before: 100,
                not_after: 600,
                members: vec![],
            },
            GroupEntry {
                name: "jit-users".into(),
                gid: 79999,
                kind: GROUP_KIND_JIT,
                not_before: i64::MIN,
                not_after: i64::MAX,
                members: vec![
                    member("alice", 100, 200),
                    member("bob", 150, 300),
                    member("alice", 150, 250),
                ],
            },
        ],
        grants: vec![GateGrant {
            id: "g-0001".into(),
            user: "alice".into(),
            uid: 70001,
            not_before: 100,
            not_after: 200,
            flags: GATE_ACCOUNT,
            lists: GateLists {
                sudo: vec!["/usr/bin/systemctl restart nginx".into()],
                from: vec!["10.0.0.0/8".into()],
                ..Default::default()
            }
            .boxed(),
            ..Default::default()
        }],
        managed: vec!["admin".into(), "ops".into()],
        uid_range: Some((70_000, 79_999)),
    }
}

#[test]
fn round_trip_lookups() {
    let img = build_snapshot(&sample()).unwrap();
    let s = Snapshot::parse(&img).unwrap();
    assert_eq!(s.generated_at(), 1234);
    assert_eq!(s.uid_range(), Some((70_000, 79_999)));
    assert_eq!(s.account_count(), 4);

    let a = s.account_by_name("alice", 150).unwrap();
    assert_eq!(
        (a.uid(), a.gid(), a.home(), a.shell()),
        (70001, 70001, "/home/alice", "/bin/bash")
    );
    assert_eq!(a.ssh_keys().count(), 1);
    assert!(
        s.account_by_name("alice", 300).is_none(),
        "between the two windows"
    );
    assert_eq!(s.account_by_name("alice", 550).unwrap().not_before(), 500);
    assert!(s.account_by_name("alic", 150).is_none(), "no prefix match");
    assert!(s.account_by_name("alicex", 150).is_none());
    assert_eq!(s.account_by_uid(70002, 299).unwrap().name(), "bob");
    assert!(s.account_by_uid(70002, 300).is_none());
    assert!(s.account_by_uid(0, 150).is_none());
    assert!(s.has_account_record("zed"));
    assert!(!s.has_account_record("nobody"));

    let g = s.group_by_name("sudo", 150).unwrap();
    assert_eq!(g.gid(), 27);
    assert_eq!(g.live_members(150).collect::<Vec<_>>(), ["alice", "carol"]);
    assert!(
        s.group_by_name("sudo", 250).is_none(),
        "local group hidden with no live member"
    );
    assert_eq!(
        s.group_record("sudo").unwrap().gid(),
        27,
        "the record stays findable"
    );
    assert!(s.group_record("nosuch").is_none());
    assert_eq!(s.group_by_gid(70001, 150).unwrap().name(), "alice");
    assert!(s.group_by_gid(70001, 200).is_none());
    // The private group follows its account exactly: its record spans 100..600, her accounts
    // are live 100..200 and 500..600; between them the group is gone too.
    assert!(s.group_by_name("alice", 300).is_none());
    assert_eq!(s.group_by_name("alice", 550).unwrap().gid(), 70001);
    let ju = s.group_by_name("jit-users", 175).unwrap();
    assert_eq!(
        ju.live_members(175).collect::<Vec<_>>(),
        ["alice", "bob"],
        "alice once"
    );

    let mut gids: Vec<u32> = s.user_gids("alice", 150).collect();
    gids.sort();
    assert_eq!(gids, [27, 79999, 79999]);
    assert_eq!(s.user_gids("carol", 150).collect::<Vec<_>>(), [27]);
    assert_eq!(s.user_gids("carol", 250).count(), 0);
    assert_eq!(s.user_gids("nobody", 150).count(), 0);

    let gr: Vec<_> = s.grants_for_user("alice").collect();
    assert_eq!(gr.len(), 1);
    assert_eq!(
        gr[0].sudo().collect::<Vec<_>>(),
        ["/usr/bin/systemctl restart nginx"]
    );
    assert_eq!(gr[0].from().collect::<Vec<_>>(), ["10.0.0.0/8"]);
    assert_eq!(gr[0].services().count(), 0);
    assert_eq!(s.grants_for_user("bob").count(), 0);
    assert!(s.is_managed("admin") && s.is_managed("ops") && !s.is_managed("adm"));
}

#[test]
fn expiry_boundaries() {
    let img = build_snapshot(&sample()).unwrap();
    let s = Snapshot::parse(&img).unwrap();
    for (now, live) in [(99, false), (100, true), (199, true), (200, false)] {
        assert_eq!(s.account_by_name("zed", now).is_some(), live, "now={now}");
        assert_eq!(s.account_by_uid(70003, now).is_some(), live, "now={now}");
    }
}

#[test]
fn empty_snapshot() {
    let img = build_snapshot(&SnapshotData::default()).unwrap();
    let s = Snapshot::parse(&img).unwrap();
    assert!(s.account_by_name("alice", 0).is_none());
    assert!(s.group_by_gid(27, 0).is_none());
    assert_eq!(s.user_gids("alice", 0).count(), 0);
}

#[test]
fn writer_refuses_unsafe_fields() {
    for bad in ["evil:0:0", "a\nb", "a\0b"] {
        let mut d = sample();
        d.accounts[0].gecos = bad.into();
        assert!(
            matches!(build_snapshot(&d), Err(WriteError::UnsafeField(..))),
            "{bad:?}"
        );
    }
    for bad in ["", "a/b", &"x".repeat(33)] {
        let mut d = sample();
        d.accounts[0].name = bad.into();
        assert!(
            matches!(build_snapshot(&d), Err(WriteError::UnsafeField(..))),
            "{bad:?}"
        );
    }
    let mut d = sample();
    d.groups.push(d.groups[0].clone());
    assert_eq!(
        build_snapshot(&d),
        Err(WriteError::DuplicateGroup("sudo".into()))
    );
}

#[test]
fn every_truncation_is_refused() {
    let img = build_snapshot(&sample()).unwrap();
    for n in 0..img.len() {
        assert!(
            Snapshot::parse(&img[..n]).is_err(),
            "truncated at {n} accepted"
        );
    }
}

#[test]
fn every_single_byte_flip_is_refused_or_harmless() {
    let img = build_snapshot(&sample()).unwrap();
    for i in 0..img.len() {
        let mut c = img.clone();
        c[i] ^= 0x41;
        match Snapshot::parse(&c) {
            Err(_) => {}
            // Only the minor version, flags and reserved header bytes are outside the checksum
            // and not otherwise checked.
            Ok(_) => assert!((10..12).contains(&i), "flip at {i} accepted"),
        }
    }
}

/// Rewrites the checksum after a deliberate corruption, to reach the structural checks.
fn reseal(img: &mut [u8]) {
    let crc = crate::crc32c::crc32c(&img[16..]);
    img[12..16].copy_from_slice(&crc.to_le_bytes());
}

#[test]
fn structural_corruption_behind_a_valid_checksum() {
    let img = build_snapshot(&sample()).unwrap();
    // Wrong magic and future major.
    let mut c = img.clone();
    c[0] = b'X';
    assert_eq!(Snapshot::parse(&c).err(), Some(SnapshotError::BadMagic));
    let mut c = img.clone();
    c[8] = 2;
    assert_eq!(
        Snapshot::parse(&c).err(),
        Some(SnapshotError::UnsupportedVersion(2))
    );
    // Random garbage over every 4-byte word after the header, resealed: never a panic, and
    // whatever parses must still answer lookups without panicking.
    for i in (64..img.len() - 4).step_by(4) {
        for v in [0u32, 1, 0xffff_ffff, 0x7fff_fff0, 0x0000_ff00] {
            let mut c = img.clone();
            c[i..i + 4].copy_from_slice(&v.to_le_bytes());
            reseal(&mut c);
            if let Ok(s) = Snapshot::parse(&c) {
                let _ = s.account_by_name("alice", 150).map(|a| a.home().len());
                let _ = s.group_by_gid(27, 150).map(|g| g.live_members(150).count());
                let _ = s.user_gids("alice", 150).count();
                let _ = s
                    .grants_for_user("alice")
                    .map(|g| g.sudo().count())
                    .sum::<usize>();
            }
        }
    }
}

#[test]
fn big_snapshot_lookups() {
    let mut d = SnapshotData::default();
    let mut members = Vec::new();
    for i in 0..10_000u32 {
        let name = format!("user{i:05}");
        d.accounts.push(account(&name, 70_000 + i, 0, 1000));
        if i < 5000 {
            members.push(member(&name, 0, 1000));
        }
    }
    d.groups.push(GroupEntry {
        name: "big".into(),
        gid: 5000,
        kind: GROUP_KIND_LOCAL,
        not_before: i64::MIN,
        not_after: i64::MAX,
        members,
    });
    let img = build_snapshot(&d).unwrap();
    let s = Snapshot::parse(&img).unwrap();
    for i in [0u32, 1, 4999, 9999] {
        let n = format!("user{i:05}");
        assert_eq!(s.account_by_name(&n, 1).unwrap().uid(), 70_000 + i);
        assert_eq!(s.account_by_uid(70_000 + i, 1).unwrap().name(), n);
    }
    assert_eq!(
        s.group_by_gid(5000, 1).unwrap().live_members(1).count(),
        5000
    );
    assert_eq!(s.user_gids("user04999", 1).collect::<Vec<_>>(), [5000]);
    assert_eq!(s.user_gids("user05000", 1).count(), 0);
}

/// STRINGS is checked as UTF-8 once, and each string reference must start and end on a
/// character boundary: bytes that are not UTF-8, or a reference splitting a character, are
/// refused even behind a valid checksum.
#[test]
fn strings_must_be_utf8_and_references_must_not_split_a_character() {
    let mut d = sample();
    let gecos = "jit grant g-0001 (Zoë)";
    d.accounts[0].gecos = gecos.into();
    let img = build_snapshot(&d).unwrap();
    let s = Snapshot::parse(&img).unwrap();
    assert!((0..s.account_count()).any(|i| s.account_at(i).unwrap().gecos() == gecos));

    let at = img
        .windows(gecos.len())
        .position(|w| w == gecos.as_bytes())
        .unwrap();
    // Not UTF-8: the second byte of "ë" replaced by an ASCII letter.
    let mut c = img.clone();
    c[at + gecos.len() - 2] = b'A';
    reseal(&mut c);
    assert_eq!(
        Snapshot::parse(&c).err(),
        Some(SnapshotError::Corrupt("strings not UTF-8"))
    );

    // A reference two bytes short ends inside "ë" (the last byte is ")").
    let count = u32::from_le_bytes(img[32..36].try_into().unwrap()) as usize;
    let strings_at = (0..count)
        .map(|i| 64 + 16 * i)
        .find(|&e| u32::from_le_bytes(img[e..e + 4].try_into().unwrap()) == 1)
        .map(|e| u32::from_le_bytes(img[e + 4..e + 8].try_into().unwrap()) as usize)
        .unwrap();
    let mut strref = Vec::new();
    strref.extend_from_slice(&u32::try_from(at - strings_at).unwrap().to_le_bytes());
    strref.extend_from_slice(&u32::try_from(gecos.len()).unwrap().to_le_bytes());
    let r = img.windows(8).position(|w| w == strref.as_slice()).unwrap();
    let mut c = img.clone();
    c[r + 4..r + 8].copy_from_slice(&u32::try_from(gecos.len() - 2).unwrap().to_le_bytes());
    reseal(&mut c);
    assert_eq!(
        Snapshot::parse(&c).err(),
        Some(SnapshotError::Corrupt(
            "string past end or splitting a character"
        ))
    );
}
