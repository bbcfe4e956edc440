//! The base region (format 1.2): enumeration reads the header, the section table and sections
//! 1 to 11 only, and gets exactly what the whole image holds; a damaged byte it reads is
//! refused, a byte it does not read cannot change its answers.

use super::format::{BASE_AT_AT, BASE_CRC_AT, HEADER_SIZE, HEAD_CRC_AT, SECTION_ENTRY_SIZE};
use super::index::head_crc;
use super::index_tests::{data, opts};
use super::*;

/// What enumeration reads: the file's length, with only the header, the table and the base
/// region filled in (the index and shards left zero, as the NSS module leaves them unread).
fn base_only(file: &[u8]) -> Vec<u8> {
    let base_at = u32::from_le_bytes(file[BASE_AT_AT..BASE_AT_AT + 4].try_into().unwrap()) as usize;
    let nsec = u32::from_le_bytes(file[32..36].try_into().unwrap()) as usize;
    let table_end = HEADER_SIZE + nsec * SECTION_ENTRY_SIZE;
    let mut out = vec![0u8; file.len()];
    out[..table_end].copy_from_slice(&file[..table_end]);
    out[base_at..].copy_from_slice(&file[base_at..]);
    out
}

/// Everything enumeration and the lookups can see, as text, to compare two parses.
fn contents(s: &Snapshot<'_>, now: i64) -> Vec<String> {
    let mut out = vec![format!("{} {:?}", s.generated_at(), s.uid_range())];
    for i in 0..s.account_count() {
        let a = s.account_at(i).unwrap();
        out.push(format!(
            "a {} {} {} {} {}",
            a.name(),
            a.uid(),
            a.home(),
            a.not_before(),
            a.is_live(now)
        ));
    }
    for i in 0..s.group_count() {
        let g = s.group_at(i).unwrap();
        let members: Vec<_> = g.live_members(now).map(String::from).collect();
        out.push(format!(
            "g {} {} {} {members:?}",
            g.name(),
            g.gid(),
            g.kind()
        ));
    }
    out
}

#[test]
fn the_base_alone_holds_what_the_whole_image_holds() {
    let file = build_snapshot_with(&data(400), &opts()).unwrap();
    let whole = Snapshot::parse(&file).unwrap();
    let base_at = u32::from_le_bytes(file[BASE_AT_AT..BASE_AT_AT + 4].try_into().unwrap()) as usize;
    // The base is the end of the file and well under half of it: the index and shards come first.
    assert!(
        base_at > file.len() / 2,
        "base at {base_at} of {}",
        file.len()
    );
    let partial = base_only(&file);
    let base = Snapshot::parse_base(&partial).unwrap();
    for now in [50, 101, 999, 1000] {
        assert_eq!(contents(&base, now), contents(&whole, now), "at {now}");
    }
    assert!(base.account_count() > 400);
}

#[test]
fn every_byte_the_base_reader_uses_is_checked() {
    let file = build_snapshot_with(&data(30), &opts()).unwrap();
    let base_at = u32::from_le_bytes(file[BASE_AT_AT..BASE_AT_AT + 4].try_into().unwrap()) as usize;
    let nsec = u32::from_le_bytes(file[32..36].try_into().unwrap()) as usize;
    let table_end = HEADER_SIZE + nsec * SECTION_ENTRY_SIZE;
    let good = base_only(&file);
    let want = contents(&Snapshot::parse_base(&good).unwrap(), 500);
    // Header after the file checksum (except head_crc itself, which then disagrees), the
    // table, and a spread of base bytes: each flip is refused.
    let used = (16..table_end)
        .filter(|i| !(HEAD_CRC_AT..HEAD_CRC_AT + 4).contains(i))
        .chain((base_at..file.len()).step_by(7));
    for at in used {
        let mut bad = good.clone();
        bad[at] ^= 0x10;
        assert!(Snapshot::parse_base(&bad).is_err(), "flip at {at} accepted");
    }
    for at in HEAD_CRC_AT..HEAD_CRC_AT + 4 {
        let mut bad = good.clone();
        bad[at] ^= 0x10;
        assert!(
            Snapshot::parse_base(&bad).is_err(),
            "head_crc flip at {at} accepted"
        );
    }
    // Bytes the base reader never uses (the index and shards, the whole-file checksum) change
    // nothing: not even garbage there makes a different answer.
    let mut noise = good.clone();
    for (i, b) in noise[table_end..base_at].iter_mut().enumerate() {
        *b = (i * 31 % 251) as u8;
    }
    noise[12] ^= 0xff;
    assert_eq!(contents(&Snapshot::parse_base(&noise).unwrap(), 500), want);
}

#[test]
fn a_file_without_a_base_region_is_read_whole() {
    // The gates file (no index) and a 1.1 file state no base region.
    let plain = build_snapshot(&data(10)).unwrap();
    assert_eq!(
        Snapshot::parse_base(&plain).err(),
        Some(SnapshotError::Corrupt("no base region"))
    );
    assert!(Snapshot::parse(&plain).is_ok());
    let mut old = build_snapshot_with(&data(10), &opts()).unwrap();
    old[10..12].copy_from_slice(&1u16.to_le_bytes());
    old[BASE_CRC_AT..BASE_AT_AT + 4].fill(0);
    let h = head_crc(&old).unwrap();
    old[HEAD_CRC_AT..HEAD_CRC_AT + 4].copy_from_slice(&h.to_le_bytes());
    assert_eq!(
        Snapshot::parse_base(&old).err(),
        Some(SnapshotError::Corrupt("no base region"))
    );
}

/// An indexed image whose table points section `id` at the end of the table (before the
/// base, where the index lies), with `head_crc` made right again as only root could.
fn section_moved_to_table_end(id: u32) -> Vec<u8> {
    let mut file = build_snapshot_with(&data(10), &opts()).unwrap();
    let nsec = u32::from_le_bytes(file[32..36].try_into().unwrap()) as usize;
    let table_end = HEADER_SIZE + nsec * SECTION_ENTRY_SIZE;
    let entry = (0..nsec)
        .map(|i| HEADER_SIZE + i * SECTION_ENTRY_SIZE)
        .find(|&e| u32::from_le_bytes(file[e..e + 4].try_into().unwrap()) == id)
        .unwrap();
    file[entry + 4..entry + 8].copy_from_slice(&(table_end as u32).to_le_bytes());
    let h = head_crc(&file).unwrap();
    file[HEAD_CRC_AT..HEAD_CRC_AT + 4].copy_from_slice(&h.to_le_bytes());
    file
}

#[test]
fn a_table_that_points_a_base_section_outside_the_base_is_refused() {
    // Point ACCOUNTS (id 2) at the start of the index region, re-sign the head.
    let file = section_moved_to_table_end(2);
    assert_eq!(
        Snapshot::parse_base(&base_only(&file)).err(),
        Some(SnapshotError::Corrupt("section outside the base region"))
    );
}

/// `getpwent`'s view: the accounts of the whole image, checked, and nothing else reachable.
#[test]
fn the_accounts_view_lists_every_account_and_holds_nothing_else() {
    let file = build_snapshot_with(&data(300), &opts()).unwrap();
    let now = 500;
    let whole = Snapshot::parse(&file).unwrap();
    let partial = base_only(&file);
    for view in [
        Snapshot::parse_accounts(&file).unwrap(),
        Snapshot::parse_base_accounts(&partial).unwrap(),
    ] {
        let want = contents(&whole, now);
        let got = contents(&view, now);
        // The same header and accounts, no group line.
        let accounts_only: Vec<_> = want
            .iter()
            .filter(|l| !l.starts_with("g "))
            .cloned()
            .collect();
        assert_eq!(got, accounts_only);
        assert!(want.len() > got.len());
        assert_eq!(view.group_count(), 0);
        assert!(view.group_by_name("jit-users", now).is_none());
        assert!(view.group_by_gid(79_999, now).is_none());
        assert!(
            view.account_by_uid(70_001, now).is_none(),
            "no uid index in the view"
        );
        assert_eq!(view.user_gids("u3", now).count(), 0);
    }
}

/// A damaged account is refused by the accounts view; a damaged group record (checksums made
/// right again, as only root could) is refused by the whole parse, and the accounts view,
/// which never holds it, still lists the accounts.
#[test]
fn the_accounts_view_checks_the_accounts_and_only_them() {
    use super::format::{section, ACCOUNT_SIZE, GROUP_SIZE};
    let plain = build_snapshot(&data(50)).unwrap();
    let section_at = |id: u32| -> usize {
        let n = u32::from_le_bytes(plain[32..36].try_into().unwrap()) as usize;
        (0..n)
            .map(|i| HEADER_SIZE + i * SECTION_ENTRY_SIZE)
            .find(|&e| u32::from_le_bytes(plain[e..e + 4].try_into().unwrap()) == id)
            .map(|e| u32::from_le_bytes(plain[e + 4..e + 8].try_into().unwrap()) as usize)
            .unwrap()
    };
    let recrc = |mut f: Vec<u8>| {
        let crc = crate::crc32c::crc32c(&f[16..]);
        f[12..16].copy_from_slice(&crc.to_le_bytes());
        f
    };
    // A group of an unknown kind (offset 12 of the group record).
    let mut bad_group = plain.clone();
    let g = section_at(section::GROUPS);
    assert!(bad_group.len() >= g + GROUP_SIZE);
    bad_group[g + 12] = 9;
    let bad_group = recrc(bad_group);
    assert!(Snapshot::parse(&bad_group).is_err());
    let view = Snapshot::parse_accounts(&bad_group).unwrap();
    assert_eq!(
        view.account_count(),
        Snapshot::parse(&plain).unwrap().account_count()
    );
    // An account name pointing past STRINGS (offset 0, the name's offset).
    let mut bad_account = plain.clone();
    let a = section_at(section::ACCOUNTS);
    assert!(bad_account.len() >= a + ACCOUNT_SIZE);
    bad_account[a..a + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    let bad_account = recrc(bad_account);
    assert!(Snapshot::parse_accounts(&bad_account).is_err());
    assert!(Snapshot::parse(&bad_account).is_err());
}

/// What listing accounts reads of a 1.3 file: the header, the table and the accounts region
/// (STRINGS, ACCOUNTS and STRLIST, first in the base), the rest left zero.
fn accounts_only(file: &[u8]) -> (Vec<u8>, usize, usize) {
    let (at, end) = Snapshot::stated_accounts_region(file, file.len() as u64).unwrap();
    let (at, end) = (at as usize, end as usize);
    let nsec = u32::from_le_bytes(file[32..36].try_into().unwrap()) as usize;
    let table_end = HEADER_SIZE + nsec * SECTION_ENTRY_SIZE;
    let mut out = vec![0u8; file.len()];
    out[..table_end].copy_from_slice(&file[..table_end]);
    out[at..end].copy_from_slice(&file[at..end]);
    (out, at, end)
}

#[test]
fn the_accounts_region_alone_lists_the_accounts_and_every_byte_of_it_is_checked() {
    use super::format::ACCOUNTS_CRC_AT;
    let mut d = data(120);
    d.accounts[3].ssh_keys = vec!["ssh-ed25519 AAAAC3 key".into()];
    let file = build_snapshot_with(&d, &opts()).unwrap();
    assert!(
        u16::from_le_bytes([file[10], file[11]]) >= 3,
        "minor 1.3 or later"
    );
    let base_at = u32::from_le_bytes(file[BASE_AT_AT..BASE_AT_AT + 4].try_into().unwrap()) as usize;
    let (good, at, end) = accounts_only(&file);
    // The region starts the base and is well under all of it.
    assert_eq!(at, base_at);
    assert!(end < file.len() && end - at < (file.len() - base_at) * 3 / 4);
    let whole = Snapshot::parse_accounts(&file).unwrap();
    let view = Snapshot::parse_accounts_region(&good).unwrap();
    assert_eq!(contents(&view, 500), contents(&whole, 500));
    assert_eq!(view.group_count(), 0);
    let keys: Vec<_> = view
        .account_by_name("u3", 500)
        .unwrap()
        .ssh_keys()
        .map(String::from)
        .collect();
    assert_eq!(keys, ["ssh-ed25519 AAAAC3 key"]);
    // Any flip in the region, the table or the header after the file checksum: refused.
    let nsec = u32::from_le_bytes(file[32..36].try_into().unwrap()) as usize;
    let table_end = HEADER_SIZE + nsec * SECTION_ENTRY_SIZE;
    for at in (16..table_end).chain((at..end).step_by(5)) {
        let mut bad = good.clone();
        bad[at] ^= 0x10;
        assert!(
            Snapshot::parse_accounts_region(&bad).is_err(),
            "flip at {at} accepted"
        );
    }
    // Garbage after the region (the rest of the base) and before it changes nothing.
    let mut noise = good.clone();
    for (i, b) in noise[end..].iter_mut().enumerate() {
        *b = (i * 13 % 251) as u8;
    }
    for (i, b) in noise[table_end..at].iter_mut().enumerate() {
        *b = (i * 7 % 251) as u8;
    }
    assert_eq!(
        contents(&Snapshot::parse_accounts_region(&noise).unwrap(), 500),
        contents(&whole, 500)
    );
    // The region's checksum is its own: the base's still covers everything.
    assert_ne!(file[ACCOUNTS_CRC_AT..ACCOUNTS_CRC_AT + 4], [0; 4]);
    assert!(Snapshot::parse_base(&base_only(&file)).is_ok());
}

#[test]
fn a_file_without_an_accounts_region_is_read_by_its_base() {
    // A 1.2 file (an older jitd): no accounts region stated; readers fall back to the base.
    let mut old = build_snapshot_with(&data(10), &opts()).unwrap();
    old[10..12].copy_from_slice(&2u16.to_le_bytes());
    let h = head_crc(&old).unwrap();
    old[HEAD_CRC_AT..HEAD_CRC_AT + 4].copy_from_slice(&h.to_le_bytes());
    assert!(Snapshot::stated_accounts_region(&old, old.len() as u64).is_none());
    assert_eq!(
        Snapshot::parse_accounts_region(&old).err(),
        Some(SnapshotError::Corrupt("no accounts region"))
    );
    assert!(Snapshot::parse_base_accounts(&old).is_ok());
    // The gates file (no index) states no region either.
    let plain = build_snapshot(&data(10)).unwrap();
    assert!(Snapshot::stated_accounts_region(&plain, plain.len() as u64).is_none());
    assert!(Snapshot::parse_accounts_region(&plain).is_err());
}

#[test]
fn a_table_that_moves_an_accounts_section_out_of_the_region_is_refused() {
    // STRLIST (id 9) pointed before the base, head re-signed (only root could): the region it
    // would span is refused as a whole, never read past.
    let file = section_moved_to_table_end(9);
    assert!(Snapshot::stated_accounts_region(&file, file.len() as u64).is_none());
    assert_eq!(
        Snapshot::parse_accounts_region(&file).err(),
        Some(SnapshotError::Corrupt("no accounts region"))
    );
}
