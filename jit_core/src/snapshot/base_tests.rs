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

#[test]
fn a_table_that_points_a_base_section_outside_the_base_is_refused() {
    let mut file = build_snapshot_with(&data(10), &opts()).unwrap();
    let nsec = u32::from_le_bytes(file[32..36].try_into().unwrap()) as usize;
    let table_end = HEADER_SIZE + nsec * SECTION_ENTRY_SIZE;
    // Point ACCOUNTS (id 2) at the start of the index region, re-sign the head.
    let entry = (0..nsec)
        .map(|i| HEADER_SIZE + i * SECTION_ENTRY_SIZE)
        .find(|&e| u32::from_le_bytes(file[e..e + 4].try_into().unwrap()) == 2)
        .unwrap();
    file[entry + 4..entry + 8].copy_from_slice(&(table_end as u32).to_le_bytes());
    let h = head_crc(&file).unwrap();
    file[HEAD_CRC_AT..HEAD_CRC_AT + 4].copy_from_slice(&h.to_le_bytes());
    assert_eq!(
        Snapshot::parse_base(&base_only(&file)).err(),
        Some(SnapshotError::Corrupt("section outside the base region"))
    );
}
