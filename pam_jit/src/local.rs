//! The local files pam_jit reads besides the snapshot: `/etc/passwd` (is this name a local
//! user, and with which uid) and jitd's durable managed-account list (which local accounts are
//! managed when the snapshot cannot be read).
//!
//! Both are read by jit_core's host primitives, under the rules jitd and sudo_jit use too:
//! `/etc/passwd` through [`jit_core::host::accounts`] (directly, never through NSS; names
//! compared whole and exactly; a line the C library skips reported without a uid), the list
//! through [`jit_core::managed`] (root-owned, not writable by group or others). Files are
//! opened non-blocking and must be regular files, so a FIFO planted at a path cannot hang a
//! login; reads are capped.

use std::ffi::CStr;

use jit_core::host::accounts::{self, Passwd};

/// What `/etc/passwd` says about a name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalUser {
    /// No line has this name.
    Absent,
    /// A line has this name; its uid if the line is one the C library uses (numeric uid and
    /// gid).
    Present {
        /// The uid of a usable line.
        uid: Option<u32>,
    },
    /// The file could not be read.
    Unreadable,
}

impl From<Option<Passwd>> for LocalUser {
    fn from(p: Option<Passwd>) -> Self {
        match p {
            None => LocalUser::Unreadable,
            Some(Passwd::Absent) => LocalUser::Absent,
            Some(Passwd::Present { uid }) => LocalUser::Present { uid },
        }
    }
}

/// What jitd's durable managed-account list says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManagedFile {
    /// The names listed (comments and blank lines dropped).
    Names(Vec<String>),
    /// There is no such file: jitd has never written one, so no account is managed.
    Missing,
    /// The file exists but is not trusted or not readable (why).
    Unusable(String),
}

pub use jit_core::localfile::{read_file, FileError};

/// Looks `name` up in a passwd-format file.
pub fn passwd_lookup(path: &CStr, name: &str) -> LocalUser {
    accounts::passwd_lookup(path, name).into()
}

/// Reads jitd's durable managed-account list, trusted only if it is a regular file owned by
/// root and not writable by group or others (the same rules as the snapshot).
pub fn read_managed(path: &CStr) -> ManagedFile {
    match jit_core::managed::read_managed_list(path) {
        Ok(names) => ManagedFile::Names(names),
        Err(FileError::Os(libc::ENOENT)) => ManagedFile::Missing,
        Err(e) => ManagedFile::Unusable(e.to_string()),
    }
}

/// The pure part of [`read_managed`] (shared with sudo_jit).
pub fn parse_managed(data: &[u8]) -> Vec<String> {
    jit_core::managed::parse_managed_list(data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    const PASSWD: &[u8] = b"root:x:0:0:root:/root:/bin/bash\n\
        alice:x:1000:1000:Alice:/home/alice:/bin/bash\n\
        bad:x:notanumber:1::/:/bin/sh\n";

    /// The rules themselves are tabled in `jit_core::host::accounts`; here, the mapping.
    #[test]
    fn lookup_maps_to_local_user() {
        use jit_core::host::accounts::lookup_passwd;
        let m = |name| LocalUser::from(Some(lookup_passwd(PASSWD, name)));
        assert_eq!(m("root"), LocalUser::Present { uid: Some(0) });
        assert_eq!(m("bad"), LocalUser::Present { uid: None });
        assert_eq!(m("roott"), LocalUser::Absent);
        assert_eq!(LocalUser::from(None), LocalUser::Unreadable);
    }

    #[test]
    fn managed_list_format() {
        let names = parse_managed(
            b"# managed local admins, written by jitd\n\
              admin\n\
              \n\
              ops   # the on-call account\n\
              \t backup-admin \r\n\
              Bad.Name\n\
              -dash\n\
              a:b\n\
              #commented\n\
              \xff\xfe\n",
        );
        assert_eq!(names, ["admin", "ops", "backup-admin"]);
        assert!(parse_managed(b"").is_empty());
    }

    #[test]
    fn files_on_disk() {
        let dir = std::env::temp_dir().join(format!("pam_jit_local_{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let c = |p: &std::path::Path| std::ffi::CString::new(p.to_str().unwrap()).unwrap();
        // The passwd reader's own rules (FIFO, directory, cap) are tested in
        // jit_core::host::accounts; here, that an unreadable file is Unreadable.
        assert_eq!(
            passwd_lookup(&c(&dir.join("missing")), "alice"),
            LocalUser::Unreadable
        );
        assert_eq!(read_file(&c(&dir), 10, false), Err(FileError::NotRegular));
        // Managed list: missing is Missing; a symlink is refused; mode and owner are checked.
        assert_eq!(read_managed(&c(&dir.join("none"))), ManagedFile::Missing);
        let list = dir.join("managed");
        std::fs::write(&list, "admin\nops\n").unwrap();
        std::fs::set_permissions(&list, std::fs::Permissions::from_mode(0o644)).unwrap();
        // SAFETY: getuid has no preconditions.
        let root = unsafe { libc::getuid() } == 0;
        if root {
            assert_eq!(
                read_managed(&c(&list)),
                ManagedFile::Names(vec!["admin".into(), "ops".into()])
            );
            std::fs::set_permissions(&list, std::fs::Permissions::from_mode(0o664)).unwrap();
            assert!(
                matches!(read_managed(&c(&list)), ManagedFile::Unusable(w) if w.contains("writable"))
            );
            std::fs::set_permissions(&list, std::fs::Permissions::from_mode(0o646)).unwrap();
            assert!(matches!(read_managed(&c(&list)), ManagedFile::Unusable(_)));
            std::fs::set_permissions(&list, std::fs::Permissions::from_mode(0o644)).unwrap();
            let cl = c(&list);
            // SAFETY: a valid path string.
            assert_eq!(unsafe { libc::chown(cl.as_ptr(), 1000, 0) }, 0);
            assert!(matches!(read_managed(&cl), ManagedFile::Unusable(w) if w.contains("root")));
        } else {
            assert!(
                matches!(read_managed(&c(&list)), ManagedFile::Unusable(w) if w.contains("root"))
            );
        }
        let link = dir.join("link");
        std::os::unix::fs::symlink(&list, &link).unwrap();
        assert!(matches!(read_managed(&c(&link)), ManagedFile::Unusable(_)));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
