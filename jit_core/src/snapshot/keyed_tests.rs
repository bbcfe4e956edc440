//! One-shot keyed reads of a trusted file answer as the whole file does, read nothing of the
//! base, and refuse what fails a check.

use super::file::TrustError;
use super::index::{name_key, Table};
use super::index_tests::{data, opts};
use super::keyed::{read_trusted_key, Keyed, KeyedError};
use super::*;
use std::ffi::CString;
use std::os::unix::fs::PermissionsExt;

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// `bytes` in a fresh file under the temporary directory, with `mode`; removed on drop.
struct File(std::path::PathBuf);

impl File {
    fn new(tag: &str, bytes: &[u8], mode: u32) -> File {
        let p = std::env::temp_dir().join(format!("jit-keyed-{tag}-{}", std::process::id()));
        std::fs::write(&p, bytes).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        File(p)
    }

    fn c(&self) -> CString {
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
        Keyed::Shard { shard, serial } => {
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
