//! The host's local account and group files, read directly with jit_core's one parser
//! ([`jit_core::host::accounts`], whose rules pam_jit and sudo_jit share).
//!
//! jitd never resolves names through NSS: the stack may contain jit itself or a hung sssd,
//! and a lookup from the daemon could recurse or block (docs/threat-model.md#n1).

use std::path::Path;

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
}
