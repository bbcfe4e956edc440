//! The account listing (format 1.5): what it holds, and that a reader refuses it damaged or
//! forged, chunk by chunk.

use super::format::*;
use super::index::{head_crc, IndexHead, HEAD_PREFIX};
use super::listing::{read_all, record_at, ListedAccount, Walk};
use super::{build_snapshot_with, BuildOptions, Snapshot, SnapshotError};
use crate::constants::{MAX_NAME_LEN, MAX_SNAPSHOT_STRING};
use crate::crc32c::crc32c;
use crate::types::{Account, SnapshotData};

fn account(name: &str, uid: u32, nb: i64, na: i64, gecos: usize) -> Account {
    Account {
        name: name.into(),
        uid,
        gid: uid,
        gecos: format!("jit grant g-{uid:x} ({})", "r".repeat(gecos)).into(),
        home: format!("/home/{name}").into(),
        shell: "/bin/bash".into(),
        grant_id: format!("g-{uid:x}").into(),
        not_before: nb,
        not_after: na,
        flags: uid % 2,
        ssh_keys: vec![format!("ssh-ed25519 AAAA{uid}")],
    }
}

/// `n` accounts given out of order, every seventh user with a second, overlapping grant.
fn data(n: u32, gecos: usize) -> SnapshotData {
    let mut accounts = Vec::new();
    for i in (0..n).rev() {
        let name = format!("u{i:05}");
        accounts.push(account(&name, 70_000 + i, 100, 200 + i64::from(i), gecos));
        if i % 7 == 0 {
            accounts.push(account(&name, 70_000 + i, 50, 150, gecos));
        }
    }
    SnapshotData {
        generated_at: 9,
        accounts,
        ..Default::default()
    }
}

/// The public snapshot of `d`: its index and listing, without the gate records and the
/// managed list.
pub(super) fn indexed(d: &SnapshotData) -> Vec<u8> {
    build_snapshot_with(
        d,
        &BuildOptions {
            index: true,
            without_gates: true,
            ..Default::default()
        },
    )
    .unwrap()
}

/// LISTING's `(offset, length, count)` in `img`, as a reader finds it.
fn section(img: &[u8]) -> Option<(usize, usize, u32)> {
    let head = IndexHead::parse(&img[..img.len().min(HEAD_PREFIX)], img.len() as u64)
        .unwrap()?
        .listing?;
    Some((head.0 as usize, head.1 as usize, head.2))
}

fn listing(img: &[u8]) -> (&[u8], u32) {
    let (at, len, count) = section(img).expect("an indexed image states a listing");
    (&img[at..at + len], count)
}

fn owned(a: &ListedAccount<'_>) -> (String, u32, u32, String, String, String, i64, i64, u32) {
    let s = |b: &[u8]| String::from_utf8(b.to_vec()).unwrap();
    (
        s(a.name),
        a.uid,
        a.gid,
        s(a.gecos),
        s(a.home),
        s(a.shell),
        a.not_before,
        a.not_after,
        a.flags,
    )
}

/// The chunks of a listing section: `(offset in the section, payload length)`.
fn chunks(sec: &[u8], count: u32) -> Vec<(usize, usize)> {
    let mut walk = Walk::new(sec.len() as u64, count);
    let mut out = Vec::new();
    while let Some((at, len)) = walk.next_read().unwrap() {
        assert!(len <= LISTING_CHUNK_HEAD + LISTING_CHUNK_MAX);
        let c = walk.take(&sec[at as usize..at as usize + len]).unwrap();
        out.push((at as usize, c.payload.len()));
    }
    out
}

#[test]
fn the_listing_is_the_accounts_in_their_order() {
    for (n, gecos) in [(0, 0), (1, 0), (7, 3), (3000, 60)] {
        let img = indexed(&data(n, gecos));
        let whole = Snapshot::parse(&img).unwrap();
        let (sec, count) = listing(&img);
        assert_eq!(count as usize, whole.account_count());
        let listed: Vec<_> = read_all(sec, count).unwrap().iter().map(owned).collect();
        let accounts: Vec<_> = (0..whole.account_count())
            .map(|i| {
                let a = whole.account_at(i).unwrap();
                (
                    a.name().to_string(),
                    a.uid(),
                    a.gid(),
                    a.gecos().to_string(),
                    a.home().to_string(),
                    a.shell().to_string(),
                    a.not_before(),
                    a.not_after(),
                    a.flags(),
                )
            })
            .collect();
        assert_eq!(listed, accounts, "n = {n}");
        if n == 3000 {
            let c = chunks(sec, count);
            assert!(c.len() > 3, "{} chunks", c.len());
            assert!(c.iter().all(|&(_, len)| len <= LISTING_CHUNK_MAX));
        }
    }
}

#[test]
fn records_at_their_limits_fill_a_chunk_each() {
    let big = "x".repeat(MAX_SNAPSHOT_STRING);
    let accounts = (0..5u32)
        .map(|i| Account {
            name: format!("{i}{}", "n".repeat(MAX_NAME_LEN - 1)).into(),
            gecos: big.clone().into(),
            home: format!("/{}", &big[1..]).into(),
            shell: big.clone().into(),
            ..account("x", 70_000 + i, 0, i64::MAX, 0)
        })
        .collect();
    let img = indexed(&SnapshotData {
        accounts,
        ..Default::default()
    });
    let (sec, count) = listing(&img);
    assert_eq!(read_all(sec, count).unwrap().len(), 5);
    assert_eq!(chunks(sec, count).len(), 5);
}

#[test]
fn whole_and_base_readers_read_a_file_with_a_listing_as_before() {
    let d = data(500, 10);
    let img = indexed(&d);
    let plain = build_snapshot_with(&d, &BuildOptions::default()).unwrap();
    let all = |s: &Snapshot<'_>| -> Vec<String> {
        (0..s.account_count())
            .map(|i| s.account_at(i).unwrap().name().to_string())
            .collect()
    };
    let want = all(&Snapshot::parse(&plain).unwrap());
    assert_eq!(all(&Snapshot::parse(&img).unwrap()), want);
    assert_eq!(all(&Snapshot::parse_base(&img).unwrap()), want);
    assert_eq!(all(&Snapshot::parse_accounts_region(&img).unwrap()), want);
    // The listing lies outside the base region (which `getgrent` reads whole).
    let (at, len, _) = section(&img).unwrap();
    let base_at = u32::from_le_bytes(img[BASE_AT_AT..BASE_AT_AT + 4].try_into().unwrap());
    assert!(at + len <= base_at as usize);
    // Files without the index state none, and nor does a shard (each is such a file).
    assert!(
        IndexHead::parse(&plain[..plain.len().min(HEAD_PREFIX)], plain.len() as u64)
            .unwrap()
            .is_none_or(|h| h.listing.is_none())
    );
}

#[test]
fn a_file_of_an_earlier_minor_states_no_listing() {
    let mut img = indexed(&data(50, 0));
    img[10..12].copy_from_slice(&4u16.to_le_bytes());
    let crc = head_crc(&img).unwrap();
    img[HEAD_CRC_AT..HEAD_CRC_AT + 4].copy_from_slice(&crc.to_le_bytes());
    let head = IndexHead::parse(&img[..HEAD_PREFIX], img.len() as u64).unwrap();
    assert!(head.unwrap().listing.is_none());
}

#[test]
fn any_changed_byte_is_refused() {
    let img = indexed(&data(2000, 20));
    let (sec, count) = listing(&img);
    let starts: Vec<usize> = chunks(sec, count).iter().map(|c| c.0).collect();
    let mut spots: Vec<usize> = (0..sec.len()).step_by(397).collect();
    for &s in &starts {
        spots.extend(s..s + LISTING_CHUNK_HEAD + 2);
    }
    spots.push(sec.len() - 1);
    for at in spots {
        for flip in [0x01u8, 0x80] {
            let mut bad = sec.to_vec();
            bad[at] ^= flip;
            assert!(
                read_all(&bad, count).is_err(),
                "byte {at} ^ {flip:#x} accepted"
            );
        }
    }
    // Cut short anywhere, or with a byte more: refused.
    for cut in [1, 100, LISTING_CHUNK_HEAD, sec.len() / 2] {
        assert!(read_all(&sec[..sec.len() - cut], count).is_err());
    }
    let mut longer = sec.to_vec();
    longer.push(0);
    assert!(read_all(&longer, count).is_err());
    // The table's count must be the records'.
    assert!(read_all(sec, count + 1).is_err());
    assert!(read_all(sec, count - 1).is_err());
}

/// A listing section of one chunk holding `records` (each the fixed part and its four
/// strings), with a checksum that matches: a forgery only the checks can refuse.
fn forged(records: &[(i64, [&[u8]; 4])]) -> (Vec<u8>, u32) {
    let mut payload = Vec::new();
    for (nb, strs) in records {
        payload.extend_from_slice(&70_000u32.to_le_bytes());
        payload.extend_from_slice(&70_000u32.to_le_bytes());
        payload.extend_from_slice(&nb.to_le_bytes());
        payload.extend_from_slice(&i64::MAX.to_le_bytes());
        payload.extend_from_slice(&0u32.to_le_bytes());
        for s in strs {
            payload.extend_from_slice(&(s.len() as u16).to_le_bytes());
        }
        for s in strs {
            payload.extend_from_slice(s);
        }
    }
    let mut sec = Vec::new();
    sec.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    sec.extend_from_slice(&(records.len() as u32).to_le_bytes());
    sec.extend_from_slice(&crc32c(&payload).to_le_bytes());
    sec.extend_from_slice(&0u32.to_le_bytes());
    sec.extend_from_slice(&payload);
    (sec, records.len() as u32)
}

#[test]
fn forged_records_with_good_checksums_are_refused() {
    let ok: [&[u8]; 4] = [b"alice", b"gecos", b"/home/alice", b"/bin/sh"];
    let (sec, n) = forged(&[(1, ok)]);
    assert_eq!(
        read_all(&sec, n).unwrap().len(),
        1,
        "the forger's baseline reads"
    );
    let cases: Vec<(&str, [&[u8]; 4])> = vec![
        (
            "colon in gecos",
            [b"alice", b"ge:cos", b"/home/a", b"/bin/sh"],
        ),
        (
            "newline in home",
            [b"alice", b"g", b"/home/a\nroot", b"/bin/sh"],
        ),
        ("NUL in shell", [b"alice", b"g", b"/h", b"/bin/sh\0"]),
        ("slash in name", [b"al/ice", b"g", b"/h", b"/bin/sh"]),
        ("empty name", [b"", b"g", b"/h", b"/bin/sh"]),
        (
            "long name",
            [&[b'a'; MAX_NAME_LEN + 1], b"g", b"/h", b"/bin/sh"],
        ),
        ("not UTF-8", [b"alice", b"g\xff", b"/h", b"/bin/sh"]),
        // Valid UTF-8 as a whole, but the name ends inside a character.
        ("split character", [b"ali\xc3", b"\xa9g", b"/h", b"/bin/sh"]),
    ];
    for (what, strs) in cases {
        let (sec, n) = forged(&[(1, strs)]);
        assert!(
            matches!(read_all(&sec, n), Err(SnapshotError::Corrupt(_))),
            "{what} accepted"
        );
    }
    // Out of order within a chunk.
    let b: [&[u8]; 4] = [b"bob", b"g", b"/h", b"/bin/sh"];
    let (sec, n) = forged(&[(1, b), (1, ok)]);
    assert!(matches!(read_all(&sec, n), Err(SnapshotError::Corrupt(_))));
    // A field over its limit (the length field allows more than a field may hold).
    let long = vec![b'x'; MAX_SNAPSHOT_STRING + 1];
    let (sec, n) = forged(&[(1, [b"alice", &long, b"/h", b"/bin/sh"])]);
    assert!(read_all(&sec, n).is_err());
}

#[test]
fn chunks_swapped_whole_are_refused() {
    let img = indexed(&data(2000, 20));
    let (sec, count) = listing(&img);
    let c = chunks(sec, count);
    let (a, b) = (c[0], c[1]);
    let first = &sec[a.0..a.0 + LISTING_CHUNK_HEAD + a.1];
    let second = &sec[b.0..b.0 + LISTING_CHUNK_HEAD + b.1];
    let mut swapped = Vec::new();
    swapped.extend_from_slice(second);
    swapped.extend_from_slice(first);
    swapped.extend_from_slice(&sec[b.0 + LISTING_CHUNK_HEAD + b.1..]);
    assert_eq!(
        read_all(&swapped, count).err(),
        Some(SnapshotError::Corrupt("listing not sorted"))
    );
}

#[test]
fn a_refused_chunk_does_not_move_the_walk() {
    let img = indexed(&data(2000, 20));
    let (sec, count) = listing(&img);
    let mut walk = Walk::new(sec.len() as u64, count);
    let (at, len) = walk.next_read().unwrap().unwrap();
    let mut bad = sec[at as usize..at as usize + len].to_vec();
    bad[LISTING_CHUNK_HEAD + 3] ^= 1;
    assert_eq!(walk.take(&bad).err(), Some(SnapshotError::BadChecksum));
    assert_eq!(walk.next_read().unwrap(), Some((at, len)));
    let good = walk.take(&sec[at as usize..at as usize + len]).unwrap();
    let (first, _) = record_at(good.payload, 0).unwrap();
    assert_eq!(first.name, b"u00000");
}
