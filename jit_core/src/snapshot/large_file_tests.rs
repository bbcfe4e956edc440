//! A file larger than a reader copies at once (`MAX_SNAPSHOT_BYTES`) is still used when it has
//! the lookup index: lookups, keyed reads and the base read copy parts within the cap, and
//! whatever would copy more (the same data without an index, read whole) is refused.

use super::file::{check_stat, read_trusted, read_trusted_base, Region, TrustError};
use super::index::{name_key, Table};
use super::index_tests::data;
use super::keyed::{read_trusted_key, Keyed, KeyedError};
use super::keyed_tests::{is_root, File};
use super::listing_tests::indexed;
use super::*;
use crate::constants::{MAX_SNAPSHOT_BYTES, MAX_SNAPSHOT_FILE_BYTES};

/// `n` identities with sixteen 16 KiB ssh keys each, the most a grant may carry: the keys are
/// once in the base and twice in the shards (name and uid), so the indexed image of 100 is
/// ~80 MB while its base region is ~27 MB.
fn heavy(n: u32) -> crate::types::SnapshotData {
    let mut d = data(n);
    for a in &mut d.accounts {
        a.ssh_keys = (0..16)
            .map(|k| format!("ssh-rsa {} {}-{k}", "A".repeat(16 * 1024 - 32), a.name))
            .collect();
    }
    d
}

fn keys_of(s: &Snapshot<'_>, name: &str) -> usize {
    s.account_by_name(name, 500)
        .map_or(0, |a| a.ssh_keys().count())
}

#[test]
fn an_indexed_file_above_the_copy_cap_is_read_in_parts() {
    if !is_root() {
        return; // the trust rules want a root-owned file
    }
    let bytes = indexed(&heavy(100));
    assert!(bytes.len() as u64 > MAX_SNAPSHOT_BYTES, "{}", bytes.len());
    let f = File::new("large-indexed", &bytes, 0o644);
    drop(bytes);
    // Read whole: more than a reader copies.
    assert_eq!(read_trusted(&f.c()).err(), Some(TrustError::BadSize));
    // The base region (enumeration, jit-authorized-keys on an old file) fits.
    let base = read_trusted_base(&f.c()).unwrap();
    assert_eq!(base.region(), Region::Base);
    assert_eq!(keys_of(&base.parse().unwrap(), "u77"), 16);
    // A keyed read (NSS, jit-authorized-keys) copies one shard.
    match read_trusted_key(&f.c(), Table::Name, name_key("u77")).unwrap() {
        Keyed::Shard { shard, .. } => {
            let shard = shard.expect("u77's shard");
            // A bucket of a few identities' records, not the file.
            assert!(shard.len() < 4 * 1024 * 1024, "{}", shard.len());
            assert_eq!(keys_of(&Snapshot::parse(&shard).unwrap(), "u77"), 16);
        }
        Keyed::Base(_) => panic!("an indexed file read as its base"),
    }
}

#[test]
fn the_same_data_without_the_index_is_refused() {
    if !is_root() {
        return;
    }
    let bytes = build_snapshot(&heavy(270)).unwrap();
    assert!(bytes.len() as u64 > MAX_SNAPSHOT_BYTES);
    let f = File::new("large-whole", &bytes, 0o644);
    drop(bytes);
    assert_eq!(read_trusted(&f.c()).err(), Some(TrustError::BadSize));
    assert_eq!(read_trusted_base(&f.c()).err(), Some(TrustError::BadSize));
    assert!(matches!(
        read_trusted_key(&f.c(), Table::Name, name_key("u77")),
        Err(KeyedError::Trust(TrustError::BadSize))
    ));
}

#[test]
fn no_file_above_the_file_cap_is_opened() {
    // SAFETY: an all-zero stat is a valid value to fill in.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    st.st_mode = libc::S_IFREG | 0o644;
    for (size, ok) in [
        (64, true),
        (MAX_SNAPSHOT_BYTES + 1, true),
        (MAX_SNAPSHOT_FILE_BYTES, true),
        (MAX_SNAPSHOT_FILE_BYTES + 1, false),
        (63, false),
    ] {
        st.st_size = size as libc::off_t;
        assert_eq!(check_stat(&st).is_ok(), ok, "{size}");
    }
}
