//! The lookup index answers every query exactly as the whole image does.

use super::index::{id_key, name_key, IndexHead, Table, HEAD_PREFIX};
use super::*;
use crate::types::*;

pub(super) fn account(name: &str, uid: u32, nb: i64, na: i64) -> Account {
    Account {
        name: name.into(),
        uid,
        gid: uid,
        gecos: format!("jit grant {name}").into(),
        home: format!("/home/{name}").into(),
        shell: "/bin/bash".into(),
        grant_id: format!("g-{uid:012x}").into(),
        not_before: nb,
        not_after: na,
        flags: 0,
        ssh_keys: vec![],
    }
}

fn member(name: &str, nb: i64, na: i64) -> Member {
    Member {
        name: name.into(),
        grant_id: "g-000000000001".into(),
        not_before: nb,
        not_after: na,
    }
}

/// `n` identities, each with a private group, all in jit-users (a big key), every third in
/// the local group `ops`, one identity with two grants.
pub(super) fn data(n: u32) -> SnapshotData {
    let mut d = SnapshotData {
        generated_at: 77,
        uid_range: Some((70_000, 79_999)),
        ..Default::default()
    };
    let mut users = GroupEntry {
        name: "jit-users".into(),
        gid: 79_999,
        kind: GROUP_KIND_JIT,
        not_before: i64::MIN,
        not_after: i64::MAX,
        members: vec![],
    };
    let mut ops = GroupEntry {
        name: "ops".into(),
        gid: 1500,
        kind: GROUP_KIND_LOCAL,
        not_before: i64::MIN,
        not_after: i64::MAX,
        members: vec![],
    };
    for i in 0..n {
        let name = format!("u{i}");
        let (nb, na) = (100 + i64::from(i % 5), 1000);
        d.accounts.push(account(&name, 70_000 + i, nb, na));
        d.groups.push(GroupEntry {
            name: name.clone().into(),
            gid: 70_000 + i,
            kind: GROUP_KIND_PRIVATE,
            not_before: nb,
            not_after: na,
            members: vec![],
        });
        users.members.push(member(&name, nb, na));
        if i % 3 == 0 {
            ops.members.push(member(&name, nb, na));
        }
    }
    d.accounts.push(account("u1", 70_001, 2000, 3000));
    d.groups.push(users);
    d.groups.push(ops);
    d
}

/// The reader's path over an in-memory file: header, big table or directory entry, shard.
fn shard(file: &[u8], table: Table, key: u32) -> Option<Vec<u8>> {
    let prefix = file.get(..HEAD_PREFIX.min(file.len()))?;
    let head = IndexHead::parse(prefix, file.len() as u64)
        .unwrap()
        .unwrap();
    let (bo, bl) = head.big_table(table);
    let big = &file[bo as usize..(bo + bl) as usize];
    let (off, len) = match head.shard_of_big(big, key) {
        Some(s) => s,
        None => {
            let (eo, el) = head.dir_entry(table, key)?;
            head.shard_of_dir_entry(&file[eo as usize..(eo + el) as usize])?
        }
    };
    Some(file[off as usize..(off + len) as usize].to_vec())
}

pub(super) fn opts() -> BuildOptions {
    BuildOptions {
        index: true,
        ..Default::default()
    }
}

#[test]
fn every_query_matches_the_whole_image() {
    let d = data(300);
    let file = build_snapshot_with(&d, &opts()).unwrap();
    let whole = Snapshot::parse(&file).unwrap();
    assert_eq!(whole.uid_range(), Some((70_000, 79_999)));
    let names: Vec<String> = (0..310)
        .map(|i| format!("u{i}"))
        .chain(["jit-users", "ops", "root", "nosuch"].map(String::from))
        .collect();
    for now in [50, 101, 103, 999, 1000, 2500] {
        for n in &names {
            let img = shard(&file, Table::Name, name_key(n));
            let s = img.as_deref().map(|b| Snapshot::parse(b).unwrap());
            let acc = |s: &Snapshot<'_>| {
                s.account_by_name(n, now)
                    .map(|a| (a.uid(), a.home().to_string()))
            };
            assert_eq!(s.as_ref().and_then(acc), acc(&whole), "{n} at {now}");
            let grp = |s: &Snapshot<'_>| {
                s.group_by_name(n, now).map(|g| {
                    (
                        g.gid(),
                        g.live_members(now).map(String::from).collect::<Vec<_>>(),
                    )
                })
            };
            assert_eq!(s.as_ref().and_then(grp), grp(&whole), "group {n} at {now}");
            let gids = |s: &Snapshot<'_>| s.user_gids(n, now).collect::<Vec<_>>();
            assert_eq!(
                s.as_ref().map(gids).unwrap_or_default(),
                gids(&whole),
                "gids {n}"
            );
            if let Some(s) = &s {
                assert_eq!(s.generated_at(), 77);
            }
        }
        for id in (69_990..70_320).chain([1500, 79_999, 0, 65_534]) {
            let img = shard(&file, Table::Id, id_key(id));
            let s = img.as_deref().map(|b| Snapshot::parse(b).unwrap());
            let acc = |s: &Snapshot<'_>| s.account_by_uid(id, now).map(|a| a.name().to_string());
            assert_eq!(s.as_ref().and_then(acc), acc(&whole), "uid {id} at {now}");
            let grp = |s: &Snapshot<'_>| {
                s.group_by_gid(id, now)
                    .map(|g| (g.name().to_string(), g.live_members(now).count()))
            };
            assert_eq!(s.as_ref().and_then(grp), grp(&whole), "gid {id} at {now}");
        }
    }
}

#[test]
fn shards_stay_small_whatever_the_size() {
    let d = data(3000);
    let file = build_snapshot_with(&d, &opts()).unwrap();
    // jit-users (3000 members) has a shard of its own; every other key's shard is small.
    let big = shard(&file, Table::Name, name_key("jit-users")).unwrap();
    assert!(big.len() > 3000 * 32);
    for n in ["u0", "u1", "u1500", "nosuch", "root"] {
        if let Some(s) = shard(&file, Table::Name, name_key(n)) {
            assert!(s.len() < 16 * 1024, "{n}: {}", s.len());
        }
    }
    for id in [0u32, 27, 1499, 70_000, 71_234, 79_998] {
        if let Some(s) = shard(&file, Table::Id, id_key(id)) {
            assert!(s.len() < 16 * 1024, "{id}: {}", s.len());
        }
    }
}

#[test]
fn head_is_checked() {
    let file = build_snapshot_with(&data(10), &opts()).unwrap();
    let len = file.len() as u64;
    let prefix = &file[..HEAD_PREFIX.min(file.len())];
    assert!(IndexHead::parse(prefix, len).unwrap().is_some());
    assert_eq!(
        IndexHead::parse(prefix, len + 1),
        Err(SnapshotError::BadSize)
    );
    // Any byte of the header (outside the whole-file CRC and head_crc) or table flipped: refused.
    for at in (16..40).chain(44..64 + 16 * 16) {
        let mut p = prefix.to_vec();
        p[at] ^= 0x40;
        assert!(IndexHead::parse(&p, len).is_err(), "byte {at}");
    }
    let mut p = prefix.to_vec();
    p[0] = b'X';
    assert_eq!(IndexHead::parse(&p, len), Err(SnapshotError::BadMagic));
    // A 1.0 file (no index): Ok(None), the reader falls back to the whole file.
    let old = build_snapshot(&data(10)).unwrap();
    let mut old10 = old.clone();
    old10[10] = 0;
    assert_eq!(
        IndexHead::parse(&old10[..240], old10.len() as u64),
        Ok(None)
    );
    assert_eq!(IndexHead::parse(&old[..240], old.len() as u64), Ok(None));
    // The whole-image reader still accepts the indexed file and ignores the index sections.
    assert_eq!(Snapshot::parse(&file).unwrap().account_count(), 11);
}

#[test]
fn damaged_shards_and_entries_are_refused_not_torn() {
    let file = build_snapshot_with(&data(50), &opts()).unwrap();
    let head = IndexHead::parse(&file[..HEAD_PREFIX], file.len() as u64)
        .unwrap()
        .unwrap();
    let (eo, _) = head.dir_entry(Table::Name, name_key("u7")).unwrap();
    let (so, sl) = head
        .shard_of_dir_entry(&file[eo as usize..eo as usize + 8])
        .unwrap();
    // Every byte of the shard flipped in turn (but the minor version, which readers ignore): the
    // shard no longer parses.
    for at in (so..so + sl).filter(|&a| a != so + 10 && a != so + 11) {
        let mut f = file.clone();
        f[at as usize] ^= 0x01;
        assert!(Snapshot::parse(&f[so as usize..(so + sl) as usize]).is_err());
    }
    // A directory entry pointing past SHARDS is refused.
    let mut e = file[eo as usize..eo as usize + 8].to_vec();
    e[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
    assert_eq!(head.shard_of_dir_entry(&e), None);
    // A big entry whose own CRC fails is skipped.
    let (bo, bl) = head.big_table(Table::Name);
    let mut big = file[bo as usize..(bo + bl) as usize].to_vec();
    assert!(head.shard_of_big(&big, name_key("jit-users")).is_some());
    big[5] ^= 1;
    assert!(head.shard_of_big(&big, name_key("jit-users")).is_none());
}

/// The public image built with `without_gates` is byte for byte the image of the same data with
/// no gate records and no managed list, and holds none.
#[test]
fn without_gates_is_the_image_of_the_data_without_them() {
    let mut d = data(40);
    d.grants = d
        .accounts
        .iter()
        .map(|a| GateGrant {
            id: a.grant_id.clone(),
            user: a.name.clone(),
            uid: a.uid,
            not_before: a.not_before,
            not_after: a.not_after,
            flags: 1,
            revoke_on: 0,
            lists: GateLists {
                from: vec!["10.0.0.0/8".into()],
                services: vec!["sshd".into()],
                windows: vec![],
                sudo: vec!["/usr/bin/true".into()],
                runas: vec![],
            }
            .boxed(),
        })
        .collect();
    d.managed = vec!["opsadmin".into()];
    let stripped = SnapshotData {
        grants: vec![],
        managed: vec![],
        ..d.clone()
    };
    let public = build_snapshot_with(
        &d,
        &BuildOptions {
            index: true,
            without_gates: true,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(public, build_snapshot_with(&stripped, &opts()).unwrap());
    let s = Snapshot::parse(&public).unwrap();
    assert_eq!(s.grant_count(), 0);
    assert_eq!(s.grants_for_user("u1").count(), 0);
    // The whole image of the same data keeps them.
    let full = build_snapshot(&d).unwrap();
    assert_eq!(Snapshot::parse(&full).unwrap().grant_count(), 41);
}

/// A sink that refuses every byte past `limit`, as a full disk would.
struct Refusing {
    out: Vec<u8>,
    limit: usize,
}

impl writer::Sink for Refusing {
    fn append(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        if self.out.len() + bytes.len() > self.limit {
            return Err(std::io::Error::other("no space"));
        }
        self.out.extend_from_slice(bytes);
        Ok(())
    }

    fn place(&mut self, at: u64, bytes: &[u8]) -> std::io::Result<()> {
        writer::Sink::place(&mut self.out, at, bytes)
    }
}

/// Streaming an indexed image through a sink gives the bytes of the in-memory build, and a
/// sink that fails anywhere (inside the head, the directories, a batch of shards, the base)
/// fails the build with its error instead of finishing an image it did not write.
#[test]
fn a_sink_gets_the_image_or_its_own_error() {
    let d = data(2_000);
    let opts = BuildOptions {
        index: true,
        without_gates: true,
        serial: 3,
        ..Default::default()
    };
    let whole = build_snapshot_with(&d, &opts).unwrap();
    let mut all = Refusing {
        out: Vec::new(),
        limit: usize::MAX,
    };
    build_snapshot_into(&d, &opts, &mut all).unwrap();
    assert!(all.out == whole);
    for limit in [0, 100, 700, 5_000, whole.len() / 3, whole.len() - 10] {
        let mut s = Refusing {
            out: Vec::new(),
            limit,
        };
        let r = build_snapshot_into(&d, &opts, &mut s);
        assert!(
            matches!(&r, Err(WriteError::Io(e)) if e.contains("no space")),
            "limit {limit}: {r:?}"
        );
    }
}
