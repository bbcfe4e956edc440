//! The host's local account and group files, read directly.
//!
//! jitd never resolves names through NSS: the stack may contain jit itself or a hung sssd,
//! and a lookup from the daemon could recurse or block (TEST-CATALOGUE N1, X14).

use std::path::Path;

/// A local user line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalUser {
    /// Login name.
    pub name: String,
    /// uid.
    pub uid: u32,
    /// Primary gid.
    pub gid: u32,
}

/// A local group line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalGroup {
    /// Group name.
    pub name: String,
    /// gid.
    pub gid: u32,
    /// Members listed in the file.
    pub members: Vec<String>,
}

/// Both files, read at one moment.
#[derive(Debug, Clone, Default)]
pub struct LocalDb {
    /// `/etc/passwd`.
    pub users: Vec<LocalUser>,
    /// `/etc/group`.
    pub groups: Vec<LocalGroup>,
}

fn parse_passwd(text: &str) -> Vec<LocalUser> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with('+') && !l.starts_with('-'))
        .filter_map(|l| {
            let mut f = l.split(':');
            let name = f.next()?;
            let _pw = f.next()?;
            let uid = f.next()?.parse().ok()?;
            let gid = f.next()?.parse().ok()?;
            (!name.is_empty()).then(|| LocalUser {
                name: name.to_string(),
                uid,
                gid,
            })
        })
        .collect()
}

fn parse_group(text: &str) -> Vec<LocalGroup> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with('+') && !l.starts_with('-'))
        .filter_map(|l| {
            let mut f = l.split(':');
            let name = f.next()?;
            let _pw = f.next()?;
            let gid = f.next()?.parse().ok()?;
            let members = f
                .next()
                .unwrap_or("")
                .split(',')
                .filter(|m| !m.is_empty())
                .map(str::to_string)
                .collect();
            (!name.is_empty()).then(|| LocalGroup {
                name: name.to_string(),
                gid,
                members,
            })
        })
        .collect()
}

impl LocalDb {
    /// Reads both files.
    ///
    /// # Errors
    /// Either file unreadable: jitd must not decide collisions on a partial view.
    ///
    /// Bytes that are not UTF-8 (any user can put them in their own GECOS field with `chfn`)
    /// are read as U+FFFD: such a field never equals a valid name, and the rest of the file
    /// still counts. Refusing the whole file would let one user stop jitd's snapshot and
    /// teardowns.
    pub fn read(passwd: &Path, group: &Path) -> std::io::Result<LocalDb> {
        let text = |p: &Path| -> std::io::Result<String> {
            Ok(String::from_utf8_lossy(&std::fs::read(p)?).into_owned())
        };
        Ok(LocalDb {
            users: parse_passwd(&text(passwd)?),
            groups: parse_group(&text(group)?),
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
    fn parses_and_skips_junk() {
        let users = parse_passwd("root:x:0:0:root:/root:/bin/bash\n#c\n+nis\nbad\ncarol:x:1001:1001::/home/carol:/bin/sh\nx:x:notanumber:1::/:/\n");
        assert_eq!(users.len(), 2);
        assert_eq!(
            users[1],
            LocalUser {
                name: "carol".into(),
                uid: 1001,
                gid: 1001
            }
        );
        let groups = parse_group("sudo:x:27:carol,dave\nadm:x:4:\n");
        assert_eq!(groups[0].members, ["carol", "dave"]);
        assert!(groups[1].members.is_empty());
        let db = LocalDb { users, groups };
        assert_eq!(db.name_taken("CAROL").as_deref(), Some("carol"));
        assert_eq!(db.name_taken("Sudo").as_deref(), Some("sudo"));
        assert!(db.name_taken("alice").is_none());
        assert!(db.id_taken(27) && db.id_taken(1001) && !db.id_taken(70_000));
    }
}
