//! The local files pam_jit reads besides the snapshot: `/etc/passwd` (is this name a local
//! user, and with which uid) and jitd's durable managed-account list (which local accounts are
//! managed when the snapshot cannot be read).
//!
//! `/etc/passwd` is read directly, never through NSS: `getpwnam` would ask `libnss_jit` (the
//! very thing being decided) and could hang on a dead directory service (TEST-CATALOGUE N1,
//! X14). Names are compared whole and exactly (P8: `roott` is not `root`). Files are opened
//! with `O_NONBLOCK` and must be regular files, so a FIFO planted at a path cannot hang a login
//! (P10); reads are capped.

use std::ffi::CStr;

/// Largest `/etc/passwd` read (far above any real one).
pub const MAX_PASSWD_BYTES: u64 = 16 * 1024 * 1024;

/// What `/etc/passwd` says about a name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalUser {
    /// No line has this name.
    Absent,
    /// A line has this name; its uid if the uid field reads as one.
    Present {
        /// The third field, when it is a number.
        uid: Option<u32>,
    },
    /// The file could not be read.
    Unreadable,
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
    match read_file(path, MAX_PASSWD_BYTES, false) {
        Ok(data) => parse_passwd(&data, name),
        Err(_) => LocalUser::Unreadable,
    }
}

/// The pure part of [`passwd_lookup`]: the first line whose first field is exactly `name`
/// (glibc's files module also takes the first). NIS compat lines (`+name`, `-name`) never
/// match a valid name. A matching line with a malformed uid still makes the name local.
pub fn parse_passwd(data: &[u8], name: &str) -> LocalUser {
    let want = name.as_bytes();
    for line in data.split(|&b| b == b'\n') {
        let mut fields = line.split(|&b| b == b':');
        if fields.next() != Some(want) {
            continue;
        }
        let uid = fields
            .nth(1)
            .and_then(|f| std::str::from_utf8(f).ok())
            .filter(|f| !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|f| f.parse::<u32>().ok());
        return LocalUser::Present { uid };
    }
    LocalUser::Absent
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
        daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n\
        toor:x:0:0::/root:/bin/sh\n\
        alice:x:1000:1000:Alice:/home/alice:/bin/bash\n\
        bad:x:notanumber:1::/:/bin/sh\n\
        short:x\n\
        +nisuser::::::\n\
        alice:x:2000:2000:second:/:/bin/sh\n\
        admin:x:1001:1001::/home/admin:/bin/bash";

    #[test]
    fn exact_name_match() {
        assert_eq!(
            parse_passwd(PASSWD, "root"),
            LocalUser::Present { uid: Some(0) }
        );
        assert_eq!(
            parse_passwd(PASSWD, "toor"),
            LocalUser::Present { uid: Some(0) }
        );
        assert_eq!(
            parse_passwd(PASSWD, "alice"),
            LocalUser::Present { uid: Some(1000) },
            "first line wins"
        );
        assert_eq!(
            parse_passwd(PASSWD, "admin"),
            LocalUser::Present { uid: Some(1001) },
            "last line without a newline"
        );
        for absent in [
            "roo", "roott", "Root", "root ", "ali", "alicex", "nisuser", "x", "ro", "",
        ] {
            assert_eq!(
                parse_passwd(PASSWD, absent),
                LocalUser::Absent,
                "{absent:?}"
            );
        }
        assert_eq!(
            parse_passwd(PASSWD, "bad"),
            LocalUser::Present { uid: None }
        );
        assert_eq!(
            parse_passwd(PASSWD, "short"),
            LocalUser::Present { uid: None }
        );
        assert_eq!(parse_passwd(b"", "root"), LocalUser::Absent);
        assert_eq!(
            parse_passwd(
                b"x:x:-1:0::/:/bin/sh\ny:x:+5:0::/:/bin/sh\nz:x:4294967296:0::/:/x\n",
                "x"
            ),
            LocalUser::Present { uid: None }
        );
        assert_eq!(
            parse_passwd(b"y:x:+5:0::/:/bin/sh\n", "y"),
            LocalUser::Present { uid: None }
        );
        assert_eq!(
            parse_passwd(b"z:x:4294967296:0::/:/x\n", "z"),
            LocalUser::Present { uid: None }
        );
    }

    #[test]
    fn long_names_are_not_prefix_matched() {
        let long = format!("root{}", "t".repeat(16380));
        assert_eq!(parse_passwd(PASSWD, &long), LocalUser::Absent);
        let data = format!("{long}:x:1:1::/:/bin/sh\n");
        assert_eq!(
            parse_passwd(data.as_bytes(), "root"),
            LocalUser::Absent,
            "a long line starting with root is not root"
        );
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
        let file = dir.join("passwd");
        std::fs::write(&file, PASSWD).unwrap();
        let c = |p: &std::path::Path| std::ffi::CString::new(p.to_str().unwrap()).unwrap();
        assert_eq!(
            passwd_lookup(&c(&file), "alice"),
            LocalUser::Present { uid: Some(1000) }
        );
        assert_eq!(passwd_lookup(&c(&file), "nobody-here"), LocalUser::Absent);
        assert_eq!(
            passwd_lookup(&c(&dir.join("missing")), "alice"),
            LocalUser::Unreadable
        );
        // A directory is not a regular file.
        assert_eq!(passwd_lookup(&c(&dir), "alice"), LocalUser::Unreadable);
        assert_eq!(read_file(&c(&dir), 10, false), Err(FileError::NotRegular));
        // The cap.
        assert_eq!(read_file(&c(&file), 10, false), Err(FileError::TooBig));
        // A FIFO never blocks: it is opened non-blocking and refused as not regular.
        let fifo = dir.join("fifo");
        let cf = c(&fifo);
        // SAFETY: a valid path string.
        assert_eq!(unsafe { libc::mkfifo(cf.as_ptr(), 0o600) }, 0);
        assert_eq!(read_file(&cf, 10, false), Err(FileError::NotRegular));
        assert_eq!(passwd_lookup(&cf, "alice"), LocalUser::Unreadable);
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
