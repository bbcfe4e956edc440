//! The host's account files, `/etc/passwd` and `/etc/group`, read directly and parsed under one
//! set of rules for jitd, pam_jit and sudo_jit.
//!
//! Never through NSS: the stack contains jit's own module (the very thing being decided) and
//! may contain a directory service that hangs (docs/threat-model.md#n1). The rules
//! follow what the C library's files module shows, because NSS answers from it first:
//!
//! * a line is split at `:`; empty lines, `#` comments and NIS compat lines (`+…`, `-…`) are
//!   not entries;
//! * an entry needs a non-empty name and, in the id fields (uid and gid of passwd, gid of
//!   group), one or more ASCII digits that fit in 32 bits — a line with anything else there
//!   (`notanumber`, `-1`, `+5`, `4294967296`, empty) is skipped, as glibc skips it, so NSS
//!   never shows it and jitd may issue that name to a jit account;
//! * [`passwd_lookup`] still reports such a line for its name ([`Passwd::Present`] without a
//!   uid): pam_jit then gates the name when jitd has an account record for it and treats it as
//!   local otherwise;
//! * names are compared as whole fields, byte for byte (`roott` is not `root`); the first line
//!   of a name wins, as in glibc;
//! * bytes that are not UTF-8 (any user can put them in their own GECOS field with `chfn`)
//!   never hide the file or a line: only the name field is decoded, lossily, and a name with
//!   U+FFFD never equals a valid name.
//!
//! Files are read with [`crate::localfile::read_file`]: non-blocking open, regular files only
//! (a FIFO cannot hang a login), capped at [`MAX_ACCOUNT_FILE_BYTES`].

use std::ffi::CStr;

use crate::localfile::{read_file, FileError};

/// Largest `/etc/passwd` or `/etc/group` read (far above any real one).
pub const MAX_ACCOUNT_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// The host's passwd file.
pub const PASSWD_PATH: &CStr = crate::constants::DEFAULT_PASSWD_FILE_C;
/// The host's group file.
pub const GROUP_PATH: &CStr = crate::constants::DEFAULT_GROUP_FILE_C;

/// A usable `/etc/passwd` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswdEntry {
    /// Login name (lossily decoded).
    pub name: String,
    /// uid.
    pub uid: u32,
    /// Primary gid.
    pub gid: u32,
}

/// A usable `/etc/group` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupEntry {
    /// Group name (lossily decoded).
    pub name: String,
    /// gid.
    pub gid: u32,
    /// Members listed in the file (empty names dropped).
    pub members: Vec<String>,
}

/// What a passwd file says about one name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Passwd {
    /// No line has this name.
    Absent,
    /// The first line with this name; its uid when the line is a usable entry (numeric uid
    /// and gid), `None` for a line the C library skips.
    Present {
        /// The uid of a usable line.
        uid: Option<u32>,
    },
}

/// Reads a passwd- or group-format file under the rules above (not the trust rules: the
/// account files are root's, and a module must still work when an operator's mode differs).
///
/// # Errors
/// Missing, unreadable, not a regular file, or above the cap.
pub fn read_account_file(path: &CStr) -> Result<Vec<u8>, FileError> {
    read_file(path, MAX_ACCOUNT_FILE_BYTES, false)
}

/// The `:`-separated fields after the name.
type Rest<'a> = std::slice::Split<'a, u8, fn(&u8) -> bool>;

/// The name and remaining fields of a line that can be an entry: not empty, not a comment,
/// not NIS compat, with a non-empty name.
fn fields(line: &[u8]) -> Option<(&[u8], Rest<'_>)> {
    if matches!(line.first(), None | Some(b'#' | b'+' | b'-')) {
        return None;
    }
    let colon: fn(&u8) -> bool = |&b| b == b':';
    let mut f = line.split(colon);
    let name = f.next().filter(|n| !n.is_empty())?;
    Some((name, f))
}

/// An id field: one or more ASCII digits that fit in 32 bits.
pub fn parse_id(field: &[u8]) -> Option<u32> {
    if field.is_empty() || !field.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(field).ok()?.parse().ok()
}

fn lines(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    data.split(|&b| b == b'\n')
}

/// A passwd line that can be an entry: its name, and its uid and gid when both are numeric.
struct PasswdLine<'a> {
    name: &'a [u8],
    ids: Option<(u32, u32)>,
}

fn passwd_line(line: &[u8]) -> Option<PasswdLine<'_>> {
    let (name, mut f) = fields(line)?;
    let _password = f.next();
    let ids = f.next().and_then(parse_id).zip(f.next().and_then(parse_id));
    Some(PasswdLine { name, ids })
}

/// Every usable entry of a passwd file, in file order.
pub fn parse_passwd(data: &[u8]) -> Vec<PasswdEntry> {
    lines(data)
        .filter_map(passwd_line)
        .filter_map(|l| {
            let (uid, gid) = l.ids?;
            Some(PasswdEntry {
                name: String::from_utf8_lossy(l.name).into_owned(),
                uid,
                gid,
            })
        })
        .collect()
}

/// Every usable entry of a group file, in file order.
pub fn parse_group(data: &[u8]) -> Vec<GroupEntry> {
    lines(data)
        .filter_map(|line| {
            let (name, mut f) = fields(line)?;
            let _password = f.next();
            let gid = f.next().and_then(parse_id)?;
            let members = f
                .next()
                .unwrap_or_default()
                .split(|&b| b == b',')
                .filter(|m| !m.is_empty())
                .map(|m| String::from_utf8_lossy(m).into_owned())
                .collect();
            Some(GroupEntry {
                name: String::from_utf8_lossy(name).into_owned(),
                gid,
                members,
            })
        })
        .collect()
}

/// What the first line named exactly `name` says (see [`Passwd`]).
pub fn lookup_passwd(data: &[u8], name: &str) -> Passwd {
    lines(data)
        .filter_map(passwd_line)
        .find(|l| l.name == name.as_bytes())
        .map_or(Passwd::Absent, |l| Passwd::Present {
            uid: l.ids.map(|(uid, _)| uid),
        })
}

/// Reads `path` and looks `name` up in it; `None` when the file cannot be read.
pub fn passwd_lookup(path: &CStr, name: &str) -> Option<Passwd> {
    read_account_file(path)
        .ok()
        .map(|d| lookup_passwd(&d, name))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    const PASSWD: &[u8] = b"root:x:0:0:root:/root:/bin/bash\n\
        daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n\
        toor:x:0:0::/root:/bin/sh\n\
        alice:x:1000:1000:Alice:/home/alice:/bin/bash\n\
        bad:x:notanumber:1::/:/bin/sh\n\
        badgid:x:1003:zz::/:/bin/sh\n\
        short:x\n\
        +nisuser::::::\n\
        -nisout::::::\n\
        #comment:x:5:5::/:/bin/sh\n\
        \n\
        :x:6:6::/:/bin/sh\n\
        jos:x:1005:1005:Jos\xe9,,,:/home/jos:/bin/sh\n\
        alice:x:2000:2000:second:/:/bin/sh\n\
        admin:x:1001:1001::/home/admin:/bin/bash";

    /// One table for the lookup (pam_jit) and the entries (jitd, sudo_jit): a name is usable
    /// exactly when the lookup gives it a uid.
    #[test]
    fn passwd_rules_table() {
        let present = |uid| Passwd::Present { uid };
        let table: &[(&str, Passwd)] = &[
            ("root", present(Some(0))),
            ("toor", present(Some(0))),
            ("alice", present(Some(1000))), // the first line wins
            ("admin", present(Some(1001))), // last line without a newline
            ("jos", present(Some(1005))),   // non-UTF-8 GECOS hides nothing
            ("bad", present(None)),         // glibc skips it; the name is still there
            ("badgid", present(None)),      // a bad gid is skipped by glibc too
            ("short", present(None)),
            ("roo", Passwd::Absent),
            ("roott", Passwd::Absent),
            ("Root", Passwd::Absent),
            ("root ", Passwd::Absent),
            ("alicex", Passwd::Absent),
            ("nisuser", Passwd::Absent),
            ("+nisuser", Passwd::Absent),
            ("-nisout", Passwd::Absent),
            ("#comment", Passwd::Absent),
            ("", Passwd::Absent),
        ];
        let entries = parse_passwd(PASSWD);
        for (name, want) in table {
            assert_eq!(lookup_passwd(PASSWD, name), *want, "{name:?}");
            let first = entries.iter().find(|e| e.name == *name).map(|e| e.uid);
            match want {
                Passwd::Present { uid } => assert_eq!(first, *uid, "{name:?}"),
                Passwd::Absent => assert_eq!(first, None, "{name:?}"),
            }
        }
        assert_eq!(
            entries.iter().map(|e| e.name.as_str()).collect::<Vec<_>>(),
            ["root", "daemon", "toor", "alice", "jos", "alice", "admin"]
        );
        assert_eq!(
            entries[3],
            PasswdEntry {
                name: "alice".into(),
                uid: 1000,
                gid: 1000
            }
        );
        assert_eq!(lookup_passwd(b"", "root"), Passwd::Absent);
    }

    #[test]
    fn id_fields() {
        for (field, want) in [
            (&b"0"[..], Some(0)),
            (b"70005", Some(70005)),
            (b"4294967295", Some(u32::MAX)),
            (b"007", Some(7)),
            (b"4294967296", None),
            (b"-1", None),
            (b"+5", None),
            (b" 5", None),
            (b"5 ", None),
            (b"", None),
            (b"0x10", None),
            (b"\xd9\xa5", None), // an Arabic-Indic digit is not an ASCII digit
        ] {
            assert_eq!(parse_id(field), want, "{field:?}");
        }
        for line in [
            &b"x:x:-1:0::/:/bin/sh"[..],
            b"x:x:+5:0::/:/bin/sh",
            b"x:x:4294967296:0::/:/x",
        ] {
            assert_eq!(lookup_passwd(line, "x"), Passwd::Present { uid: None });
            assert!(parse_passwd(line).is_empty());
        }
    }

    #[test]
    fn long_names_are_not_prefix_matched() {
        let long = format!("root{}", "t".repeat(16380));
        assert_eq!(lookup_passwd(PASSWD, &long), Passwd::Absent);
        let data = format!("{long}:x:1:1::/:/bin/sh\n");
        assert_eq!(lookup_passwd(data.as_bytes(), "root"), Passwd::Absent);
    }

    #[test]
    fn group_rules_table() {
        let groups = parse_group(
            b"sudo:x:27:carol,dave\nadm:x:4:\nwheel:x:10\n#c:x:5:\n+nis:::\nbad:x:zz:carol\n\
              :x:7:\nodd\xff:x:8:carol,,\xffeve\n",
        );
        let view: Vec<(&str, u32, Vec<&str>)> = groups
            .iter()
            .map(|g| {
                (
                    g.name.as_str(),
                    g.gid,
                    g.members.iter().map(String::as_str).collect(),
                )
            })
            .collect();
        assert_eq!(
            view,
            [
                ("sudo", 27, vec!["carol", "dave"]),
                ("adm", 4, vec![]),
                ("wheel", 10, vec![]),
                ("odd\u{fffd}", 8, vec!["carol", "\u{fffd}eve"]),
            ]
        );
    }

    #[test]
    fn files_on_disk() {
        let dir = std::env::temp_dir().join(format!("jit_core_accounts_{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("passwd");
        std::fs::write(&file, PASSWD).unwrap();
        let c = |p: &std::path::Path| std::ffi::CString::new(p.to_str().unwrap()).unwrap();
        assert_eq!(
            passwd_lookup(&c(&file), "alice"),
            Some(Passwd::Present { uid: Some(1000) })
        );
        assert_eq!(
            passwd_lookup(&c(&file), "nobody-here"),
            Some(Passwd::Absent)
        );
        assert_eq!(passwd_lookup(&c(&dir.join("missing")), "alice"), None);
        assert_eq!(passwd_lookup(&c(&dir), "alice"), None, "a directory");
        let fifo = dir.join("fifo");
        let cf = c(&fifo);
        // SAFETY: a valid path string.
        assert_eq!(unsafe { libc::mkfifo(cf.as_ptr(), 0o600) }, 0);
        assert_eq!(passwd_lookup(&cf, "alice"), None, "a FIFO never blocks");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
