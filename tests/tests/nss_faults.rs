//! Fail-closed behaviour of `libnss_jit.so.2` when the snapshot is broken or gone (B9, F1):
//! every JIT lookup must fail quietly with getent's "not found" (exit 2, no crash, no output on
//! stderr), local users and root must resolve as before, and a good snapshot written afterwards
//! must be picked up again (so the test can tell "broken" from "module never works").
//!
//! Ids in comments and test names (B9, F1, …) are rows of docs/threat-model.md.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use jit_tests::sandbox::group_members;
use jit_tests::snap::live_alice_in_sudo;
use jit_tests::{code, now, show, stderr, stdout, Sandbox, GETENT_NOT_FOUND};

fn good_snapshot(sb: &Sandbox, filler: usize) -> Vec<u8> {
    good_builder(sb, filler).bytes()
}

fn good_builder(sb: &Sandbox, filler: usize) -> jit_tests::snap::SnapBuilder {
    let ids = sb.ids;
    let t = now();
    let (mut b, _) = live_alice_in_sudo(ids);
    // Filler accounts make the file span several 4 KiB pages.
    for i in 0..filler {
        b.account(
            &format!("fill{i:04}"),
            ids.jit_min + 200 + i as u32,
            &[],
            t - 60,
            t + 3600,
            Some("filler account with a longish gecos to take some room in the string table"),
        );
    }
    b
}

/// JIT visible (positive control).
fn assert_jit_visible(sb: &Sandbox, when: &str) {
    let o = sb.run(&["getent", "passwd", "alice"]);
    assert_eq!(
        code(&o),
        0,
        "{when}: alice must be visible with a good snapshot (positive control): {}",
        show(&o)
    );
}

/// Returns a list of problems (empty = JIT absent, local fine, nothing crashed or printed).
fn jit_absent_problems(sb: &Sandbox, case: &str) -> Vec<String> {
    let mut bad = Vec::new();
    let limit = Duration::from_secs(10);
    let checks: [(&[&str], i32); 5] = [
        (&["getent", "passwd", "alice"], GETENT_NOT_FOUND),
        (
            &["getent", "-s", "jit", "passwd", "alice"],
            GETENT_NOT_FOUND,
        ),
        (&["getent", "group", "jit-users"], GETENT_NOT_FOUND),
        (&["getent", "initgroups", "alice"], 0),
        (&["id", "alice"], 1),
    ];
    for (args, want) in checks {
        let o = sb.run_full(args, None, limit);
        if code(&o) != want {
            bad.push(format!("[{case}] {args:?}: want exit {want}: {}", show(&o)));
        }
        if args[0] == "getent" && !stderr(&o).is_empty() {
            bad.push(format!("[{case}] {args:?} printed on stderr: {}", show(&o)));
        }
    }
    let o = sb.run_full(&["getent", "initgroups", "alice"], None, limit);
    if stdout(&o)
        .split_whitespace()
        .skip(1)
        .any(|g| g == sb.ids.sudo_gid.to_string())
    {
        bad.push(format!(
            "[{case}] initgroups alice still has sudo: {}",
            show(&o)
        ));
    }
    let o = sb.run_full(&["getent", "group", "sudo"], None, limit);
    if code(&o) != 0 || group_members(&stdout(&o)) != ["dave"] {
        bad.push(format!(
            "[{case}] getent group sudo must be the local entry alone (dave): {}",
            show(&o)
        ));
    }
    let o = sb.run_full(&["getent", "passwd"], None, limit);
    if code(&o) != 0 || stdout(&o).lines().any(|l| l.starts_with("alice:")) {
        bad.push(format!("[{case}] getent passwd enumeration: {}", show(&o)));
    }
    let o = sb.run_full(&["getent", "passwd", "carol"], None, limit);
    if code(&o) != 0 {
        bad.push(format!("[{case}] local carol lost: {}", show(&o)));
    }
    let o = sb.run_full(&["getent", "passwd", "root"], None, limit);
    if code(&o) != 0 || !stdout(&o).starts_with("root:x:0:0:") {
        bad.push(format!("[{case}] root lost: {}", show(&o)));
    }
    let o = sb.run_full(&["id", "carol"], None, limit);
    if code(&o) != 0 {
        bad.push(format!("[{case}] id carol: {}", show(&o)));
    }
    bad
}

fn recrc(b: &mut [u8]) {
    let crc = jit_core::crc32c::crc32c(&b[16..]);
    b[12..16].copy_from_slice(&crc.to_le_bytes());
}

/// Changes the metadata of a good snapshot file in place.
type Mangle = Box<dyn Fn(&Path)>;

/// B9: every kind of broken snapshot makes the jit part answer nothing.
#[test]
fn corrupt_snapshots_fail_closed() {
    let sb = Sandbox::new();
    let good = good_snapshot(&sb, 120);
    assert!(good.len() > 3 * 4096, "filler too small: {}", good.len());
    sb.write_snapshot_bytes(&good);
    assert_jit_visible(&sb, "start");

    let mut cases: Vec<(String, Vec<u8>)> = vec![("zero length".into(), Vec::new())];
    for cut in [
        1usize,
        8,
        12,
        16,
        63,
        64,
        65,
        64 + 16 * 11 - 1,
        good.len() / 2,
        good.len() - 1,
    ] {
        cases.push((format!("truncated at {cut}"), good[..cut].to_vec()));
    }
    let mut page = 4096;
    while page < good.len() {
        cases.push((
            format!("truncated at the 4 KiB boundary {page}"),
            good[..page].to_vec(),
        ));
        page += 4096;
    }
    let mut v = good.clone();
    v[0] ^= 0xff;
    cases.push(("wrong magic".into(), v));
    let mut v = good.clone();
    v[8..10].copy_from_slice(&2u16.to_le_bytes());
    cases.push(("future major version 2".into(), v));
    let mut v = good.clone();
    v[8..10].copy_from_slice(&0u16.to_le_bytes());
    cases.push(("major version 0".into(), v));
    let mut v = good.clone();
    let last = v.len() - 1;
    v[last] ^= 0x01;
    cases.push(("bad checksum (last byte flipped)".into(), v));
    let mut v = good.clone();
    v[200] ^= 0x40;
    cases.push(("bad checksum (section byte flipped)".into(), v));
    let mut v = good.clone();
    v.extend_from_slice(&[0u8; 16]);
    cases.push(("trailing bytes (file_len mismatch)".into(), v));
    // Valid checksum, broken structure.
    let mut v = good.clone();
    v[64 + 4..64 + 8].copy_from_slice(&0x7fff_fff0u32.to_le_bytes()); // first section offset
    recrc(&mut v);
    cases.push(("section offset out of range, checksum valid".into(), v));
    let mut v = good.clone();
    v[64 + 8..64 + 12].copy_from_slice(&u32::MAX.to_le_bytes()); // first section length
    recrc(&mut v);
    cases.push(("section length overflow, checksum valid".into(), v));
    let mut v = good.clone();
    v[32..36].copy_from_slice(&1000u32.to_le_bytes()); // section count
    recrc(&mut v);
    cases.push(("section count 1000, checksum valid".into(), v));
    let mut v = good.clone();
    v[32..36].copy_from_slice(&0u32.to_le_bytes());
    recrc(&mut v);
    cases.push(("no sections, checksum valid".into(), v));
    // A string reference pointing past the string table (first account's name offset).
    if let Some(acc_off) = (0..11).find_map(|i| {
        let e = 64 + i * 16;
        let id = u32::from_le_bytes(good[e..e + 4].try_into().unwrap());
        (id == jit_core::snapshot::format::section::ACCOUNTS)
            .then(|| u32::from_le_bytes(good[e + 4..e + 8].try_into().unwrap()) as usize)
    }) {
        let mut v = good.clone();
        v[acc_off..acc_off + 4].copy_from_slice(&0x00ff_ffffu32.to_le_bytes());
        recrc(&mut v);
        cases.push(("account name offset out of range, checksum valid".into(), v));
    }
    let mut v = vec![0u8; 64];
    v[..8].copy_from_slice(b"JITSNAP\0");
    cases.push(("header only, all zero".into(), v));
    let mut v = vec![0xffu8; 8192];
    v[..8].copy_from_slice(b"JITSNAP\0");
    cases.push(("magic then 0xff".into(), v));

    let mut problems = Vec::new();
    for (name, bytes) in &cases {
        sb.write_snapshot_bytes(bytes);
        problems.extend(jit_absent_problems(&sb, name));
    }

    // Metadata the reader must refuse even with good content.
    let snap = sb.host_path("/run/jitd/snapshot");
    let meta_cases: Vec<(&str, Mangle)> = vec![
        (
            "mode 0666",
            Box::new(|p: &Path| fs::set_permissions(p, fs::Permissions::from_mode(0o666)).unwrap()),
        ),
        (
            "mode 0664 (group-writable)",
            Box::new(|p: &Path| fs::set_permissions(p, fs::Permissions::from_mode(0o664)).unwrap()),
        ),
        (
            "mode 0646 (world-writable)",
            Box::new(|p: &Path| fs::set_permissions(p, fs::Permissions::from_mode(0o646)).unwrap()),
        ),
        ("owner non-root (carol)", {
            let c = sb.ids.carol;
            Box::new(move |p: &Path| std::os::unix::fs::chown(p, Some(c), Some(c)).unwrap())
        }),
        (
            "symlink to a good root-owned file",
            Box::new(|p: &Path| {
                let real = p.with_file_name("real-snapshot");
                fs::rename(p, &real).unwrap();
                std::os::unix::fs::symlink("real-snapshot", p).unwrap();
            }),
        ),
        (
            "directory",
            Box::new(|p: &Path| {
                fs::remove_file(p).unwrap();
                fs::create_dir(p).unwrap();
            }),
        ),
        (
            "FIFO (must not block)",
            Box::new(|p: &Path| {
                fs::remove_file(p).unwrap();
                let c = std::ffi::CString::new(p.to_str().unwrap()).unwrap();
                // SAFETY: c is a valid NUL-terminated path.
                assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
            }),
        ),
    ];
    for (name, mangle) in &meta_cases {
        let _ = fs::remove_dir(&snap);
        let _ = fs::remove_file(&snap);
        sb.write_snapshot_bytes(&good);
        assert_jit_visible(&sb, &format!("before {name}"));
        mangle(&snap);
        problems.extend(jit_absent_problems(&sb, name));
        let _ = fs::remove_dir(&snap);
        let _ = fs::remove_file(&snap);
        let _ = fs::remove_file(snap.with_file_name("real-snapshot"));
    }
    println!(
        "B9: {} content cases and {} metadata cases checked",
        cases.len(),
        meta_cases.len()
    );
    sb.write_snapshot_bytes(&good);
    assert_jit_visible(&sb, "after all corrupt cases");
    assert!(
        problems.is_empty(),
        "broken snapshots were not handled fail-closed ({} problems):\n{}",
        problems.len(),
        problems.join("\n")
    );
    sb.assert_local_unaffected();
}

/// The indexed file jitd writes: a truncation anywhere, or any damaged byte of the header or
/// section table, makes every jit answer disappear (the header no longer matches the file or
/// its `head_crc`); a damaged byte in the shard that holds alice makes alice unresolvable
/// (its CRC fails) without touching local users. Never a crash, never output on stderr.
#[test]
fn corrupt_indexed_snapshots_fail_closed() {
    use jit_core::snapshot::index::{name_key, IndexHead, Table, HEAD_PREFIX};
    let sb = Sandbox::new();
    let good = good_builder(&sb, 120).indexed_bytes();
    assert!(good.len() > 3 * 4096, "filler too small: {}", good.len());
    sb.write_snapshot_bytes(&good);
    assert_jit_visible(&sb, "start");

    let nsec = u32::from_le_bytes(good[32..36].try_into().unwrap()) as usize;
    let table_end = 64 + 16 * nsec;
    let mut cases: Vec<(String, Vec<u8>)> = Vec::new();
    for cut in [
        1usize,
        16,
        63,
        64,
        table_end - 1,
        table_end,
        good.len() / 2,
        good.len() - 1,
    ] {
        cases.push((format!("truncated at {cut}"), good[..cut].to_vec()));
    }
    let mut page = 4096;
    while page < good.len() {
        cases.push((format!("truncated at {page}"), good[..page].to_vec()));
        page += 4096;
    }
    // Not 10..12: the minor version is read but not trusted for anything (a 0 there only sends
    // the reader down the whole-file path, which checks the whole-file CRC).
    for at in (8..10).chain(16..40).chain(44..table_end).step_by(3) {
        let mut v = good.clone();
        v[at] ^= 0x20;
        cases.push((format!("header or table byte {at} flipped"), v));
    }
    let mut v = good.clone();
    v.extend_from_slice(&[0u8; 16]);
    cases.push(("trailing bytes (file_len mismatch)".into(), v));
    let mut problems = Vec::new();
    for (name, bytes) in &cases {
        sb.write_snapshot_bytes(bytes);
        problems.extend(jit_absent_problems(&sb, name));
    }

    // A byte of alice's name shard flipped: alice is not resolved by name, local users are.
    let head = IndexHead::parse(&good[..HEAD_PREFIX.min(good.len())], good.len() as u64)
        .unwrap()
        .unwrap();
    let (eo, _) = head.dir_entry(Table::Name, name_key("alice")).unwrap();
    let (so, sl) = head
        .shard_of_dir_entry(&good[eo as usize..eo as usize + 8])
        .unwrap();
    for at in [so, so + 20, so + sl / 2, so + sl - 1] {
        let mut v = good.clone();
        v[at as usize] ^= 0x01;
        sb.write_snapshot_bytes(&v);
        for args in [
            &["getent", "passwd", "alice"][..],
            &["getent", "initgroups", "alice"],
        ] {
            let o = sb.run(args);
            let found_sudo = stdout(&o)
                .split_whitespace()
                .skip(1)
                .any(|g| g == sb.ids.sudo_gid.to_string());
            if (args[1] == "passwd" && code(&o) != GETENT_NOT_FOUND)
                || found_sudo
                || !stderr(&o).is_empty()
            {
                problems.push(format!("[shard byte {at}] {args:?}: {}", show(&o)));
            }
        }
        for args in [&["getent", "passwd", "carol"][..], &["id", "carol"]] {
            let o = sb.run(args);
            if code(&o) != 0 {
                problems.push(format!("[shard byte {at}] {args:?}: {}", show(&o)));
            }
        }
    }
    sb.write_snapshot_bytes(&good);
    assert_jit_visible(&sb, "after all corrupt indexed cases");
    assert!(
        problems.is_empty(),
        "broken indexed snapshots were not handled fail-closed ({} problems):\n{}",
        problems.len(),
        problems.join("\n")
    );
    sb.assert_local_unaffected();
}

/// F1: snapshot missing, /run/jitd missing, snapshot unreadable (mode 000) for a non-root caller.
#[test]
fn snapshot_missing_or_unreadable() {
    let sb = Sandbox::new();
    let good = good_snapshot(&sb, 0);
    sb.write_snapshot_bytes(&good);
    assert_jit_visible(&sb, "start");

    let snap = sb.host_path("/run/jitd/snapshot");
    let mut problems = Vec::new();
    fs::remove_file(&snap).unwrap();
    problems.extend(jit_absent_problems(&sb, "snapshot missing"));
    fs::remove_dir(sb.host_path("/run/jitd")).unwrap();
    problems.extend(jit_absent_problems(&sb, "/run/jitd missing"));
    sb.assert_local_unaffected();

    // Mode 000: root could still read it (DAC override); a user cannot. Either way no crash,
    // and for the user the jit part is simply unavailable.
    sb.write_snapshot_bytes(&good);
    fs::set_permissions(&snap, fs::Permissions::from_mode(0o000)).unwrap();
    let c = sb.ids.carol.to_string();
    let as_carol = |args: &[&str]| {
        let mut v = vec![
            "setpriv",
            "--reuid",
            &c,
            "--regid",
            &c,
            "--clear-groups",
            "--",
        ];
        v.extend_from_slice(args);
        sb.run(&v)
    };
    let o = as_carol(&["getent", "passwd", "alice"]);
    if code(&o) != GETENT_NOT_FOUND || !stderr(&o).is_empty() {
        problems.push(format!(
            "mode 000, as carol: getent passwd alice: {}",
            show(&o)
        ));
    }
    let o = as_carol(&["getent", "passwd", "carol"]);
    if code(&o) != 0 {
        problems.push(format!(
            "mode 000, as carol: getent passwd carol: {}",
            show(&o)
        ));
    }
    let o = as_carol(&["id"]);
    if code(&o) != 0 || !stdout(&o).contains("(carol)") {
        problems.push(format!("mode 000, as carol: id: {}", show(&o)));
    }
    let o = sb.run(&["getent", "passwd", "alice"]);
    if code(&o) != 0 && code(&o) != GETENT_NOT_FOUND {
        problems.push(format!(
            "mode 000, as root: getent passwd alice crashed: {}",
            show(&o)
        ));
    }
    println!(
        "F1: mode 000 snapshot as root: getent passwd alice exit {}",
        code(&o)
    );
    assert!(problems.is_empty(), "F1 problems:\n{}", problems.join("\n"));
    sb.assert_local_unaffected();
}

/// The account listing (format 1.5) through real `getent passwd`: every account of a listing
/// several chunks long, once; then a byte changed in its third chunk: the listing shows the
/// accounts of the chunks before it and stops (whole lines only, nothing on stderr), local
/// users are all still listed, and lookups by name, which read the index, are unaffected.
#[test]
fn a_damaged_listing_chunk_ends_the_listing_there() {
    use jit_core::snapshot::format::{LISTING_CHUNK_HEAD, LISTING_CHUNK_MAX};
    use jit_core::snapshot::index::{IndexHead, HEAD_PREFIX};
    let sb = Sandbox::new();
    let filler = 1500;
    let good = good_builder(&sb, filler).indexed_bytes();
    let head = IndexHead::parse(&good[..HEAD_PREFIX.min(good.len())], good.len() as u64)
        .unwrap()
        .unwrap();
    let (at, len, count) = head.listing.expect("an indexed file states its listing");
    assert_eq!(count as usize, filler + 1, "alice and the fillers");
    assert!(
        len as usize > 3 * (LISTING_CHUNK_HEAD + LISTING_CHUNK_MAX),
        "listing too short for four chunks: {len}"
    );
    sb.write_snapshot_bytes(&good);
    let local = {
        let o = sb.run(&["getent", "-s", "files", "passwd"]);
        assert_eq!(code(&o), 0, "{}", show(&o));
        stdout(&o)
    };
    let o = sb.run(&["getent", "passwd"]);
    assert_eq!(code(&o), 0, "{}", show(&o));
    assert!(stderr(&o).is_empty(), "{}", show(&o));
    let all = stdout(&o);
    let jit: Vec<&str> = all.lines().filter(|l| !local.contains(*l)).collect();
    assert_eq!(jit.len(), filler + 1, "every account once");
    assert!(jit.iter().any(|l| l.starts_with("alice:")));

    // A byte in the middle of the third chunk's payload, with the file written whole again
    // (as a root intruder or a disk error would leave it).
    let mut bad = good.clone();
    let third = at as usize + 2 * (LISTING_CHUNK_HEAD + LISTING_CHUNK_MAX) + 1000;
    bad[third] ^= 0x08;
    sb.write_snapshot_bytes(&bad);
    let o = sb.run(&["getent", "passwd"]);
    assert_eq!(code(&o), 0, "{}", show(&o));
    assert!(stderr(&o).is_empty(), "{}", show(&o));
    let out = stdout(&o);
    for l in local.lines() {
        assert!(out.contains(l), "local user lost: {l}");
    }
    let shown: Vec<&str> = out.lines().filter(|l| !local.contains(*l)).collect();
    assert!(
        shown.len() > 100 && shown.len() < filler,
        "the listing stops at the damaged chunk: {} entries",
        shown.len()
    );
    assert_eq!(shown[..], jit[..shown.len()], "whole entries, in order");
    // Lookups read the index's shards, not the listing.
    assert_jit_visible(&sb, "listing damaged");
    let o = sb.run(&["getent", "passwd", "fill1499"]);
    assert_eq!(code(&o), 0, "{}", show(&o));
    sb.assert_local_unaffected();
}
