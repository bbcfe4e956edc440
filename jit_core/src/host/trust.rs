//! "Only root can change this": the owner and mode rule every trusted file and directory must
//! pass before jit believes what it holds — the snapshot and gates file, the managed-account
//! list, jitd's state, journal and MFA stores, the sudo plugin, the configuration.
//!
//! A file owned by another user, or writable by group or others, could be replaced or edited
//! by someone other than root between jitd writing it and a module reading it
//! (docs/threat-model.md#trusted-files). The file type (regular file, directory) and symlink
//! rules stay with each caller, which knows what it opened.

/// What group and others may not do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone may read, only root may write: no group or other write bit (mask 0o022).
    ReadableByAll,
    /// Root only: no group or other bit at all (mask 0o077).
    RootOnly,
}

impl Access {
    /// The mode bits that must be clear.
    pub const fn forbidden_bits(self) -> u32 {
        match self {
            Access::ReadableByAll => 0o022,
            Access::RootOnly => 0o077,
        }
    }
}

/// Why an owner and mode are not trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Untrusted {
    /// Owned by this uid, not root.
    NotRootOwned {
        /// The owner.
        uid: u32,
    },
    /// Group or others have a bit [`Access`] forbids.
    Mode {
        /// The permission bits (`mode & 0o7777`).
        mode: u32,
        /// What was required.
        access: Access,
    },
}

impl std::fmt::Display for Untrusted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Untrusted::NotRootOwned { uid } => write!(f, "owned by uid {uid}, not root"),
            Untrusted::Mode {
                mode,
                access: Access::ReadableByAll,
            } => write!(f, "mode {mode:04o}: writable by group or others"),
            Untrusted::Mode {
                mode,
                access: Access::RootOnly,
            } => write!(
                f,
                "mode {mode:04o}: group or others have access (root only)"
            ),
        }
    }
}

impl std::error::Error for Untrusted {}

/// Every rule `uid` and `mode` break, owner first (an operator report lists them all).
pub fn violations(uid: u32, mode: u32, access: Access) -> Vec<Untrusted> {
    let mut out = Vec::new();
    if uid != 0 {
        out.push(Untrusted::NotRootOwned { uid });
    }
    if mode & access.forbidden_bits() != 0 {
        out.push(Untrusted::Mode {
            mode: mode & 0o7777,
            access,
        });
    }
    out
}

/// Root-owned and no forbidden bit.
///
/// # Errors
/// The first rule broken (owner first).
pub fn check(uid: u32, mode: u32, access: Access) -> Result<(), Untrusted> {
    match violations(uid, mode, access).into_iter().next() {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// [`check`] on a `stat`/`fstat` result.
///
/// # Errors
/// As [`check`].
pub fn check_stat(st: &libc::stat, access: Access) -> Result<(), Untrusted> {
    check(st.st_uid, st.st_mode, access)
}

/// [`check`] on `std::fs` metadata (of the path itself when it came from `symlink_metadata`).
///
/// # Errors
/// As [`check`].
pub fn check_metadata(m: &std::fs::Metadata, access: Access) -> Result<(), Untrusted> {
    use std::os::unix::fs::MetadataExt;
    check(m.uid(), m.mode(), access)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn owner_and_mode_table() {
        use Access::{ReadableByAll as All, RootOnly as Root};
        let not_root = |uid| Untrusted::NotRootOwned { uid };
        let mode = |mode, access| Untrusted::Mode { mode, access };
        let table: &[(u32, u32, Access, Result<(), Untrusted>)] = &[
            (0, 0o100644, All, Ok(())),
            (0, 0o100600, All, Ok(())),
            (0, 0o040755, All, Ok(())),
            (0, 0o041777, All, Err(mode(0o1777, All))), // sticky /tmp is not safe either
            (0, 0o100664, All, Err(mode(0o664, All))),
            (0, 0o100646, All, Err(mode(0o646, All))),
            (0, 0o100604, All, Ok(())),
            (1000, 0o100644, All, Err(not_root(1000))),
            (1000, 0o100666, All, Err(not_root(1000))),
            (0, 0o100600, Root, Ok(())),
            (0, 0o040700, Root, Ok(())),
            (0, 0o104700, Root, Ok(())),
            (0, 0o100640, Root, Err(mode(0o640, Root))),
            (0, 0o100604, Root, Err(mode(0o604, Root))),
            (0, 0o100601, Root, Err(mode(0o601, Root))),
            (0, 0o100644, Root, Err(mode(0o644, Root))),
            (65534, 0o100600, Root, Err(not_root(65534))),
        ];
        for (uid, m, access, want) in table {
            assert_eq!(check(*uid, *m, *access), *want, "{uid} {m:o} {access:?}");
        }
        assert_eq!(
            violations(5, 0o100666, All),
            [not_root(5), mode(0o666, All)]
        );
        assert_eq!(not_root(1000).to_string(), "owned by uid 1000, not root");
        assert!(mode(0o664, All)
            .to_string()
            .contains("writable by group or others"));
        assert!(mode(0o640, Root).to_string().contains("0640"));
    }

    #[test]
    fn on_real_files() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("jit_core_trust_{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("f");
        std::fs::write(&f, "x").unwrap();
        // SAFETY: getuid has no preconditions.
        let uid = unsafe { libc::getuid() };
        for (bits, all_ok, root_ok) in [
            (0o600, true, true),
            (0o644, true, false),
            (0o664, false, false),
        ] {
            std::fs::set_permissions(&f, std::fs::Permissions::from_mode(bits)).unwrap();
            let m = std::fs::symlink_metadata(&f).unwrap();
            assert_eq!(
                check_metadata(&m, Access::ReadableByAll).is_ok(),
                all_ok && uid == 0,
                "{bits:o}"
            );
            assert_eq!(
                check_metadata(&m, Access::RootOnly).is_ok(),
                root_ok && uid == 0
            );
            let c = std::ffi::CString::new(f.to_str().unwrap()).unwrap();
            // SAFETY: an all-zero stat is valid to overwrite; `c` is a valid path.
            let mut st: libc::stat = unsafe { std::mem::zeroed() };
            // SAFETY: as above.
            assert_eq!(unsafe { libc::stat(c.as_ptr(), &mut st) }, 0);
            assert_eq!(
                check_stat(&st, Access::ReadableByAll),
                check_metadata(&m, Access::ReadableByAll)
            );
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
