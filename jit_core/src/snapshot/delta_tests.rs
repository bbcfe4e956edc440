//! A delta read over its base answers exactly as one image of both would (format 1.4, §12 of
//! docs/snapshot-format.md), and is read only over a base it names.

use super::format::section;
use super::*;
use crate::types::*;

/// A grant as jitd projects it: an account, its private group, jit-users and optionally a
/// local group, and its gate record (the shape of `jitd::snapshot_out::project`).
struct G {
    user: String,
    uid: u32,
    id: String,
    nb: i64,
    na: i64,
    local: bool,
}

/// Deterministic grants: names repeat (one identity with several grants, some split between
/// base and delta), windows overlap and have gaps.
fn grants(n: usize, seed: u64) -> Vec<G> {
    let mut x = seed;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    (0..n)
        .map(|i| {
            let who = (next() % 24) as u32;
            let nb = 100 + (next() % 50) as i64 * 10;
            G {
                user: format!("u{who}"),
                uid: 70_000 + who,
                id: format!("g-{i:012x}"),
                nb,
                na: nb + 20 + (next() % 30) as i64 * 10,
                local: next() % 2 == 0,
            }
        })
        .collect()
}

fn member(g: &G) -> Member {
    Member {
        name: g.user.clone().into(),
        grant_id: g.id.clone().into(),
        not_before: g.nb,
        not_after: g.na,
    }
}

/// What jitd projects for `gs`.
fn project(gs: &[&G], at: i64) -> SnapshotData {
    let mut d = SnapshotData {
        generated_at: at,
        managed: vec!["admin".into()],
        uid_range: Some((70_000, 79_999)),
        ..Default::default()
    };
    let mut private: std::collections::BTreeMap<&str, GroupEntry> = Default::default();
    let jit = |name: &str, gid| GroupEntry {
        name: name.into(),
        gid,
        kind: GROUP_KIND_JIT,
        not_before: i64::MIN,
        not_after: i64::MAX,
        members: vec![],
    };
    let (mut users, mut sudo) = (jit("jit-users", 79_999), jit("jit-sudo", 79_998));
    let mut adm = GroupEntry {
        kind: GROUP_KIND_LOCAL,
        ..jit("adm", 4)
    };
    for g in gs {
        d.accounts.push(Account {
            name: g.user.clone().into(),
            uid: g.uid,
            gid: g.uid,
            gecos: format!("jit grant {}", g.id).into(),
            home: format!("/home/{}", g.user).into(),
            shell: "/bin/sh".into(),
            grant_id: g.id.clone().into(),
            not_before: g.nb,
            not_after: g.na,
            flags: 0,
            ssh_keys: vec![],
        });
        let p = private.entry(&g.user).or_insert_with(|| GroupEntry {
            name: g.user.clone().into(),
            gid: g.uid,
            kind: GROUP_KIND_PRIVATE,
            not_before: g.nb,
            not_after: g.na,
            members: vec![],
        });
        p.not_before = p.not_before.min(g.nb);
        p.not_after = p.not_after.max(g.na);
        users.members.push(member(g));
        if g.local {
            adm.members.push(member(g));
            sudo.members.push(member(g));
        }
        d.grants.push(GateGrant {
            id: g.id.clone().into(),
            user: g.user.clone().into(),
            uid: g.uid,
            not_before: g.nb,
            not_after: g.na,
            flags: GATE_ACCOUNT,
            ..Default::default()
        });
    }
    d.groups.push(sudo);
    d.groups.extend(private.into_values());
    if !adm.members.is_empty() {
        d.groups.push(adm);
    }
    if !users.members.is_empty() {
        d.groups.push(users);
    }
    d
}

fn base_image(d: &SnapshotData, serial: u32, index: bool) -> Vec<u8> {
    build_snapshot_with(
        d,
        &BuildOptions {
            index,
            serial,
            ..Default::default()
        },
    )
    .unwrap()
}

fn delta_image(d: &SnapshotData, bases: &[u32]) -> Vec<u8> {
    let mut b = [0u32; format::MAX_DELTA_BASES];
    b[..bases.len()].copy_from_slice(bases);
    build_snapshot_with(
        d,
        &BuildOptions {
            delta_of: Some(b),
            ..Default::default()
        },
    )
    .unwrap()
}

/// Every answer a module asks for, for every identity and group, at `now`.
fn answers(s: &Snapshot<'_>, now: i64) -> Vec<String> {
    let mut out = Vec::new();
    let mut names: Vec<String> = (0..30).map(|i| format!("u{i}")).collect();
    names.extend(["adm", "jit-users", "jit-sudo", "nobody"].map(String::from));
    for n in &names {
        out.push(format!(
            "pw {n}: {:?}",
            s.account_by_name(n, now).map(|a| (a.uid(), a.home()))
        ));
        let mut gids: Vec<u32> = s.user_gids(n, now).collect();
        gids.sort_unstable();
        gids.dedup();
        out.push(format!("gids {n}: {gids:?}"));
        let mut ids: Vec<&str> = s.grants_for_user(n).map(|g| g.id()).collect();
        ids.sort_unstable();
        out.push(format!("grants {n}: {ids:?}"));
        out.push(format!("rec {n}: {}", s.has_account_record(n)));
        let grp = s.group_by_name(n, now).map(|g| {
            let mut m: Vec<&str> = g.live_members(now).collect();
            m.sort_unstable();
            let len = m.len();
            m.dedup();
            assert_eq!(m.len(), len, "a member listed twice in {n}");
            (g.gid(), m)
        });
        out.push(format!("gr {n}: {grp:?}"));
        out.push(format!(
            "known {n}: {:?}",
            s.group_record(n).map(|g| g.gid())
        ));
    }
    for id in (69_999..70_030).chain([4, 79_998, 79_999]) {
        out.push(format!(
            "uid {id}: {:?}",
            s.account_by_uid(id, now).map(|a| a.name())
        ));
        out.push(format!(
            "gid {id}: {:?}",
            s.group_by_gid(id, now).map(|g| {
                let mut m: Vec<&str> = g.live_members(now).collect();
                m.sort_unstable();
                (g.name(), m)
            })
        ));
    }
    out.push(format!("listing: {:?}", listing(s, now)));
    out
}

/// What getpwent and getgrent list at `now` (as nss_jit's enumeration steps do).
fn listing(s: &Snapshot<'_>, now: i64) -> (Vec<String>, Vec<String>) {
    let mut pw = Vec::new();
    let mut last = None;
    for i in 0..s.account_count() {
        let a = s.account_at(i).unwrap();
        if a.is_live(now) && Some(a.name()) != last && !s.account_listed_in_base(i, now) {
            pw.push(a.name().to_string());
            last = Some(a.name());
        }
    }
    pw.sort();
    let mut gr = Vec::new();
    for i in 0..s.group_count() {
        let g = s.group_at(i).unwrap();
        if g.is_visible(now) && !s.group_listed_in_base(i) {
            let mut m: Vec<&str> = g.live_members(now).collect();
            m.sort_unstable();
            gr.push(format!("{}:{}:{}", g.name(), g.gid(), m.join(",")));
        }
    }
    gr.sort();
    (pw, gr)
}

#[test]
fn a_delta_over_its_base_answers_as_one_image_of_both() {
    for seed in [1u64, 7, 42, 2026, 0xdead_beef] {
        let all = grants(60, seed);
        for split in [0, 1, 20, 45, 59, 60] {
            let (old, new) = all.split_at(split);
            let old: Vec<&G> = old.iter().collect();
            let new: Vec<&G> = new.iter().collect();
            let every: Vec<&G> = all.iter().collect();
            let whole = build_snapshot(&project(&every, 10)).unwrap();
            let whole = Snapshot::parse(&whole).unwrap();
            let base = base_image(&project(&old, 10), 77, false);
            let delta = delta_image(&project(&new, 11), &[5, 77]);
            let base = Snapshot::parse(&base).unwrap();
            let delta = Snapshot::parse(&delta).unwrap();
            assert!(delta.is_delta() && !base.is_delta());
            let layered = base.with_delta(&delta, base.serial());
            assert!(layered.has_delta());
            // One image of what the two show answers as they do.
            let one = build_snapshot(&layered.to_data()).unwrap();
            let one = Snapshot::parse(&one).unwrap();
            for now in (90..700).step_by(15) {
                assert_eq!(
                    answers(&layered, now),
                    answers(&whole, now),
                    "seed {seed}, split {split}, now {now}"
                );
                assert_eq!(answers(&one, now), answers(&whole, now));
            }
        }
    }
}

#[test]
fn a_delta_is_read_only_over_a_base_it_names() {
    let all = grants(10, 3);
    let (old, new) = all.split_at(5);
    let old: Vec<&G> = old.iter().collect();
    let new: Vec<&G> = new.iter().collect();
    let base_bytes = base_image(&project(&old, 10), 9, false);
    let base = Snapshot::parse(&base_bytes).unwrap();
    let delta_bytes = delta_image(&project(&new, 11), &[8]);
    let delta = Snapshot::parse(&delta_bytes).unwrap();
    assert_eq!(base.serial(), 9);
    assert!(delta.applies_over(8) && !delta.applies_over(9) && !delta.applies_over(0));
    let over = base.with_delta(&delta, base.serial());
    assert!(!over.has_delta(), "a delta naming another base is ignored");
    assert_eq!(answers(&over, 150), answers(&base, 150));
    // A base without a serial takes no delta, even one naming 0 cannot exist.
    let plain_bytes = base_image(&project(&old, 10), 0, false);
    let plain = Snapshot::parse(&plain_bytes).unwrap();
    assert!(!plain.with_delta(&delta, 0).has_delta());
    // A delta is never read over a delta, nor a base as a delta.
    assert!(!delta.with_delta(&delta, 8).has_delta());
    assert!(!base.with_delta(&base, 9).has_delta());
    // A shard states no serial: the caller passes the file's.
    let indexed = base_image(&project(&old, 10), 8, true);
    let file = Snapshot::parse(&indexed).unwrap();
    assert_eq!(file.serial(), 8);
    assert!(file.with_delta(&delta, file.serial()).has_delta());
}

#[test]
fn bad_bases_sections_are_refused() {
    let d = project(&[], 1);
    let good = delta_image(&d, &[3]);
    assert!(Snapshot::parse(&good).unwrap().is_delta());
    // The writer refuses a delta naming no base or too many.
    let too_many = [1u32, 2, 3, 4];
    assert!(build_snapshot_with(
        &d,
        &BuildOptions {
            delta_of: Some([0; format::MAX_DELTA_BASES]),
            ..Default::default()
        }
    )
    .is_err());
    assert!(Snapshot::parse(&delta_image(&d, &too_many)).is_ok());
    // Hand-made damage, re-checksummed so that only the section's content is wrong.
    let at = |img: &[u8]| -> (usize, usize) {
        let n = u32::from_le_bytes(img[32..36].try_into().unwrap()) as usize;
        (0..n)
            .map(|i| 64 + 16 * i)
            .find(|&e| u32::from_le_bytes(img[e..e + 4].try_into().unwrap()) == section::BASES)
            .map(|e| {
                (
                    e,
                    u32::from_le_bytes(img[e + 4..e + 8].try_into().unwrap()) as usize,
                )
            })
            .unwrap()
    };
    let reseal = |img: &mut Vec<u8>| {
        let h = index::head_crc(img).unwrap();
        img[format::HEAD_CRC_AT..format::HEAD_CRC_AT + 4].copy_from_slice(&h.to_le_bytes());
        let c = crate::crc32c::crc32c(&img[16..]);
        img[12..16].copy_from_slice(&c.to_le_bytes());
    };
    // A zero serial.
    let mut zero = good.clone();
    let (_, off) = at(&zero);
    zero[off..off + 4].copy_from_slice(&0u32.to_le_bytes());
    reseal(&mut zero);
    assert_eq!(
        Snapshot::parse(&zero).err(),
        Some(SnapshotError::Corrupt("bad delta bases"))
    );
    // A count that disagrees with the length.
    let mut count = good.clone();
    let (e, _) = at(&count);
    count[e + 12..e + 16].copy_from_slice(&2u32.to_le_bytes());
    reseal(&mut count);
    assert_eq!(
        Snapshot::parse(&count).err(),
        Some(SnapshotError::Corrupt("bad delta bases"))
    );
    // Twice.
    let mut twice = good.clone();
    let (e, _) = at(&twice);
    let entry: Vec<u8> = twice[e..e + 16].to_vec();
    // Turn the MANAGED entry (empty in both) into a second BASES: the table keeps its size.
    let n = u32::from_le_bytes(twice[32..36].try_into().unwrap()) as usize;
    let managed = (0..n)
        .map(|i| 64 + 16 * i)
        .find(|&x| u32::from_le_bytes(twice[x..x + 4].try_into().unwrap()) == section::MANAGED)
        .unwrap();
    twice[managed..managed + 16].copy_from_slice(&entry);
    reseal(&mut twice);
    assert!(Snapshot::parse(&twice).is_err());
}
