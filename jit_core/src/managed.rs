//! jitd's durable list of managed local admin accounts (`/var/lib/jitd/managed-accounts`), read
//! by pam_jit and sudo_jit when the snapshot is missing: a managed admin must stay refused then
//! (docs/design.md#fail-closed), and the snapshot lives on tmpfs while this file survives a reboot.

/// Largest managed-account list read.
pub const MAX_MANAGED_BYTES: u64 = 1024 * 1024;

/// Reads the list at `path`, trusted only if it is a regular file owned by root and not
/// writable by group or others.
///
/// # Errors
/// The file is missing (`Os(ENOENT)`), untrusted or unreadable.
pub fn read_managed_list(
    path: &std::ffi::CStr,
) -> Result<Vec<String>, crate::localfile::FileError> {
    crate::localfile::read_file(path, MAX_MANAGED_BYTES, true).map(|d| parse_managed_list(&d))
}

/// One name per line; `#` starts a comment; surrounding blanks are dropped. Lines that are not
/// valid names are skipped (a user name is validated before it is compared, so such a line
/// could never match one).
pub fn parse_managed_list(data: &[u8]) -> Vec<String> {
    data.split(|&b| b == b'\n')
        .filter_map(|line| {
            let line = std::str::from_utf8(line).ok()?;
            let name = line.split('#').next()?.trim();
            crate::validate::validate_name("managed account", name).ok()?;
            Some(name.to_string())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn format() {
        let names = parse_managed_list(
            b"# managed local admins, written by jitd\n\nopsadmin\n  admin  # trailing\nBad:Name\n\xff\nops-2\n",
        );
        assert_eq!(names, ["opsadmin", "admin", "ops-2"]);
        assert!(parse_managed_list(b"").is_empty());
    }
}
