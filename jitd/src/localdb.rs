//! The host's local account and group files, read directly with jit_core's one parser
//! ([`jit_core::host::accounts`], whose rules pam_jit and sudo_jit share).
//!
//! jitd never resolves names through NSS: the stack may contain jit itself or a hung sssd,
//! and a lookup from the daemon could recurse or block (docs/threat-model.md#n1).

use std::path::Path;
use std::sync::{Arc, Mutex};

use jit_core::host::accounts;

/// A usable local user line.
pub type LocalUser = accounts::PasswdEntry;

/// A usable local group line.
pub type LocalGroup = accounts::GroupEntry;

/// Both files, read at one moment.
#[derive(Debug, Clone, Default)]
pub struct LocalDb {
    /// `/etc/passwd`.
    pub users: Vec<LocalUser>,
    /// `/etc/group`.
    pub groups: Vec<LocalGroup>,
}

fn read(p: &Path) -> std::io::Result<Vec<u8>> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(p.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?;
    accounts::read_account_file(&c).map_err(|e| match e {
        jit_core::localfile::FileError::Os(n) => std::io::Error::from_raw_os_error(n),
        other => std::io::Error::other(other.to_string()),
    })
}

impl LocalDb {
    /// Reads both files.
    ///
    /// # Errors
    /// Either file unreadable: jitd must not decide collisions on a partial view.
    ///
    /// Bytes that are not UTF-8 (any user can put them in their own GECOS field with `chfn`)
    /// hide nothing: refusing the whole file would let one user stop jitd's snapshot and
    /// teardowns. Lines the C library skips (no numeric uid or gid) are skipped here too.
    pub fn read(passwd: &Path, group: &Path) -> std::io::Result<LocalDb> {
        Ok(LocalDb {
            users: accounts::parse_passwd(&read(passwd)?),
            groups: accounts::parse_group(&read(group)?),
        })
    }

    /// A local user by exact name.
    pub fn user(&self, name: &str) -> Option<&LocalUser> {
        self.users.iter().find(|u| u.name == name)
    }

    /// A local user or group whose name equals `name` ignoring ASCII case (look-alike check).
    pub fn name_taken(&self, name: &str) -> Option<String> {
        self.users
            .iter()
            .map(|u| &u.name)
            .chain(self.groups.iter().map(|g| &g.name))
            .find(|n| n.eq_ignore_ascii_case(name))
            .cloned()
    }

    /// A local group by exact name.
    pub fn group(&self, name: &str) -> Option<&LocalGroup> {
        self.groups.iter().find(|g| g.name == name)
    }

    /// Whether any local user or group uses `id`.
    pub fn id_taken(&self, id: u32) -> bool {
        self.users.iter().any(|u| u.uid == id || u.gid == id)
            || self.groups.iter().any(|g| g.gid == id)
    }
}

/// What identifies one version of a local file's content: a write changes its mtime and ctime
/// (ctime cannot be set back), a replacement its inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Sig {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

impl Sig {
    fn of(p: &Path) -> Option<Sig> {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(p).ok()?;
        let ns = |s: i64, n: i64| i128::from(s) * 1_000_000_000 + i128::from(n);
        Some(Sig {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime_ns: ns(m.mtime(), m.mtime_nsec()),
            ctime_ns: ns(m.ctime(), m.ctime_nsec()),
        })
    }

    /// Written within the last [`RACY_NS`] (or in the future): a second write in the same tick
    /// of the file system's clock could leave size and times as they are, so such a read is
    /// not kept.
    fn recent(&self) -> bool {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i128);
        now - self.mtime_ns < RACY_NS
    }
}

/// See [`Sig::recent`]: far above any file system's timestamp granularity.
const RACY_NS: i128 = 2_000_000_000;

/// The last parse of both files, reused while neither changed: every grant add, every whole
/// snapshot and every request that names its caller read them, and parsing grows with the
/// host's local users.
#[derive(Debug, Default)]
pub struct LocalCache(Mutex<Option<Kept>>);

/// A parse and the identities of the two files it was read from.
type Kept = ((Sig, Sig), Arc<LocalDb>);

impl LocalCache {
    /// Both files as [`LocalDb::read`] would read them now.
    ///
    /// # Errors
    /// As [`LocalDb::read`].
    pub fn read(&self, passwd: &Path, group: &Path) -> std::io::Result<Arc<LocalDb>> {
        let lock = || crate::poison::lock(&self.0);
        let before = Sig::of(passwd).zip(Sig::of(group));
        if let (Some(sigs), Some((kept, db))) = (before, lock().as_ref()) {
            if *kept == sigs {
                return Ok(Arc::clone(db));
            }
        }
        let db = Arc::new(LocalDb::read(passwd, group)?);
        // Kept only if neither file changed while it was read, and neither was written just
        // now (see `Sig::recent`).
        let after = Sig::of(passwd).zip(Sig::of(group));
        *lock() = match before {
            Some(sigs) if after == before && !sigs.0.recent() && !sigs.1.recent() => {
                Some((sigs, Arc::clone(&db)))
            }
            _ => None,
        };
        Ok(db)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gecos_that_is_not_utf8_does_not_hide_the_file() {
        let dir = std::env::temp_dir().join(format!("jitd-localdb-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (p, g) = (dir.join("passwd"), dir.join("group"));
        std::fs::write(
            &p,
            b"jos:x:1005:1005:Jos\xe9,,,:/home/jos:/bin/sh\ncarol:x:1001:1001::/h:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(&g, b"adm:x:4:carol\n").unwrap();
        let db = LocalDb::read(&p, &g);
        let _ = std::fs::remove_dir_all(&dir);
        let db = db.unwrap();
        assert_eq!(db.user("jos").map(|u| u.uid), Some(1005));
        assert_eq!(db.user("carol").map(|u| u.uid), Some(1001));
    }

    #[test]
    fn lookups_over_parsed_files() {
        let users = accounts::parse_passwd(b"root:x:0:0:root:/root:/bin/bash\n#c\n+nis\nbad\ncarol:x:1001:1001::/home/carol:/bin/sh\nx:x:notanumber:1::/:/\n");
        assert_eq!(users.len(), 2);
        let groups = accounts::parse_group(b"sudo:x:27:carol,dave\nadm:x:4:\n");
        let db = LocalDb { users, groups };
        assert_eq!(db.user("carol").map(|u| (u.uid, u.gid)), Some((1001, 1001)));
        assert!(db.user("x").is_none());
        assert_eq!(db.group("sudo").map(|g| g.members.len()), Some(2));
        assert_eq!(db.name_taken("CAROL").as_deref(), Some("carol"));
        assert_eq!(db.name_taken("Sudo").as_deref(), Some("sudo"));
        assert!(db.name_taken("alice").is_none());
        assert!(db.id_taken(27) && db.id_taken(1001) && !db.id_taken(70_000));
    }

    /// The cache answers with the same parse while the files are unchanged, reads again after
    /// a same-size rewrite that even put the old mtime back (ctime), after a replacement, and
    /// never keeps a read of a file written within the last two seconds.
    #[test]
    fn the_cache_rereads_exactly_when_a_file_may_have_changed() {
        use std::time::{Duration, SystemTime};
        let dir = std::env::temp_dir().join(format!("jitd-localcache-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (p, g) = (dir.join("passwd"), dir.join("group"));
        let old = SystemTime::now() - Duration::from_secs(60);
        let write = |path: &Path, text: &str, mtime: Option<SystemTime>| {
            std::fs::write(path, text).unwrap();
            if let Some(t) = mtime {
                std::fs::File::options()
                    .write(true)
                    .open(path)
                    .unwrap()
                    .set_modified(t)
                    .unwrap();
            }
        };
        write(&p, "carol:x:1001:1001::/h:/bin/sh\n", Some(old));
        write(&g, "adm:x:4:carol\n", Some(old));
        let cache = LocalCache::default();
        let a = cache.read(&p, &g).unwrap();
        let b = cache.read(&p, &g).unwrap();
        assert!(Arc::ptr_eq(&a, &b), "unchanged files: the same parse");
        // Same size, same (old) mtime put back: ctime still moved.
        write(&p, "alice:x:1001:1001::/h:/bin/sh\n", Some(old));
        let c = cache.read(&p, &g).unwrap();
        assert!(!Arc::ptr_eq(&b, &c));
        assert!(c.user("alice").is_some() && c.user("carol").is_none());
        // Replaced by rename (a new inode), as useradd and vipw do.
        let tmp = dir.join("group+");
        write(&tmp, "sudo:x:27:alice\n", Some(old));
        std::fs::rename(&tmp, &g).unwrap();
        let d = cache.read(&p, &g).unwrap();
        assert!(d.group("sudo").is_some() && d.group("adm").is_none());
        assert!(Arc::ptr_eq(&d, &cache.read(&p, &g).unwrap()));
        // Written just now: read every time until it is older.
        write(&p, "bob:x:1002:1002::/h:/bin/sh\n", None);
        let e = cache.read(&p, &g).unwrap();
        let f = cache.read(&p, &g).unwrap();
        assert!(!Arc::ptr_eq(&e, &f), "a file written just now is not kept");
        assert!(f.user("bob").is_some());
        // Unreadable: an error, and nothing kept.
        std::fs::remove_file(&p).unwrap();
        assert!(cache.read(&p, &g).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
