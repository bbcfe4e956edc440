//! Validation of every string and id that reaches a passwd/group entry, a path or the snapshot.
//!
//! Names come from PAM, sudo, jitctl and the network, so they are checked against an ASCII
//! allow-list in O(1) before anything else looks at them (docs/threat-model.md: B1, B2, P8).

use crate::constants::{GROUP_JIT_MFA, GROUP_JIT_SUDO, GROUP_JIT_USERS, MAX_NAME_LEN};

/// Why a value was refused. The messages are shown to operators as they are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValidationError {
    /// Empty name.
    Empty(&'static str),
    /// Longer than allowed.
    TooLong(&'static str, usize),
    /// A character outside the allow-list (shown escaped).
    BadChar(&'static str, String),
    /// Names starting with `-` look like options to the programs they are passed to.
    LeadingDash(&'static str),
    /// A name the system or jit keeps for itself.
    Reserved(&'static str, String),
    /// An id outside what jit may hand out.
    BadId(&'static str, u64),
    /// A path or other free-form value that is not acceptable.
    Invalid(&'static str, String),
}

impl std::fmt::Display for ValidationError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ValidationError::Empty(what) => write!(f, "{what} is empty"),
            ValidationError::TooLong(what, max) => {
                write!(f, "{what} is longer than {max} characters")
            }
            ValidationError::BadChar(what, shown) => write!(
                f,
                "{what} {shown} has a character outside [a-z0-9_-] (names are lower-case ASCII, \
                 starting with a letter or '_')"
            ),
            ValidationError::LeadingDash(what) => write!(f, "{what} must not start with '-'"),
            ValidationError::Reserved(what, name) => write!(f, "{what} {name:?} is reserved"),
            ValidationError::BadId(what, id) => write!(f, "{what} {id} is not allowed"),
            ValidationError::Invalid(what, why) => write!(f, "invalid {what}: {why}"),
        }
    }
}

impl std::error::Error for ValidationError {}

/// Shows an untrusted value safely in a message: control and non-ASCII bytes escaped, capped.
pub fn escape_for_display(s: &str) -> String {
    let mut out = String::from("\"");
    for (i, c) in s.chars().enumerate() {
        if i >= 40 {
            out.push_str("...");
            break;
        }
        out.extend(c.escape_default());
    }
    out.push('"');
    out
}

/// Names jit never hands out: root and the accounts every Debian system has, plus jit's own groups.
const RESERVED_NAMES: &[&str] = &[
    "root",
    "daemon",
    "bin",
    "sys",
    "sync",
    "games",
    "man",
    "lp",
    "mail",
    "news",
    "uucp",
    "proxy",
    "www-data",
    "backup",
    "list",
    "irc",
    "gnats",
    "nobody",
    "nogroup",
    "systemd-network",
    "systemd-resolve",
    "messagebus",
    "sshd",
    "_apt",
    "sudo",
    "wheel",
    "adm",
    "shadow",
    "staff",
    "users",
    "disk",
    "kmem",
    "tty",
    GROUP_JIT_USERS,
    GROUP_JIT_SUDO,
    GROUP_JIT_MFA,
];

/// Checks a user or group name against the allow-list `^[a-z_][a-z0-9_-]{0,31}$`.
///
/// No `:`, newline, NUL, `/`, `.`, `~`, upper case or non-ASCII: those break passwd lines,
/// paths, sudoers.d file names or look-alike checks. Length is checked first, in O(1).
pub fn validate_name(what: &'static str, name: &str) -> Result<(), ValidationError> {
    let b = name.as_bytes();
    if b.is_empty() {
        return Err(ValidationError::Empty(what));
    }
    if b.len() > MAX_NAME_LEN {
        return Err(ValidationError::TooLong(what, MAX_NAME_LEN));
    }
    if b.first() == Some(&b'-') {
        return Err(ValidationError::LeadingDash(what));
    }
    for (i, &c) in b.iter().enumerate() {
        let ok = match c {
            b'a'..=b'z' | b'_' => true,
            b'0'..=b'9' | b'-' => i > 0,
            _ => false,
        };
        if !ok {
            return Err(ValidationError::BadChar(what, escape_for_display(name)));
        }
    }
    Ok(())
}

/// A name for a new ephemeral account: allowed characters and not reserved.
pub fn validate_account_name(name: &str) -> Result<(), ValidationError> {
    validate_name("user name", name)?;
    if RESERVED_NAMES.contains(&name) {
        return Err(ValidationError::Reserved("user name", name.to_string()));
    }
    Ok(())
}

/// Grant ids are `g-` followed by 4 to 32 lower-case hex digits.
pub fn validate_grant_id(id: &str) -> Result<(), ValidationError> {
    let b = id.as_bytes();
    let ok = b.len() >= 6
        && b.len() <= 34
        && b.starts_with(b"g-")
        && b.iter()
            .skip(2)
            .all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'));
    if ok {
        Ok(())
    } else {
        Err(ValidationError::Invalid("grant id", escape_for_display(id)))
    }
}

/// An id jit may hand to an account or group: never 0, the system range, `nobody` (65534),
/// or anything at or above 2^31 (callers treat those as negative: polkit CVE-2018-19788).
pub fn validate_id(what: &'static str, id: u64) -> Result<u32, ValidationError> {
    if id < 1000 || id == 65_534 || id == 65_535 || id > i32::MAX as u64 {
        return Err(ValidationError::BadId(what, id));
    }
    u32::try_from(id).map_err(|_| ValidationError::BadId(what, id))
}

/// Text for a passwd GECOS field: `:`, control characters and non-ASCII are replaced, capped at
/// 128 bytes. Free text (a reason) is sanitized rather than refused.
pub fn sanitize_gecos(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if out.len() >= 128 {
            break;
        }
        let c = if c == ':' || c.is_control() || !c.is_ascii() {
            '_'
        } else {
            c
        };
        out.push(c);
    }
    out
}

/// Free text such as a reason or a ticket: printable, one line, capped. Refused, not mangled,
/// because it ends up in the audit trail as the approver wrote it.
pub fn validate_text(what: &'static str, s: &str, max: usize) -> Result<(), ValidationError> {
    if s.len() > max {
        return Err(ValidationError::TooLong(what, max));
    }
    if s.chars().any(|c| c.is_control()) {
        return Err(ValidationError::Invalid(
            what,
            "contains control characters".into(),
        ));
    }
    Ok(())
}

/// An absolute path that may go into a passwd entry or be used as a directory root: starts with
/// `/`, no `..` or `.` component, no `:`, no control characters, at most 256 bytes.
pub fn validate_abs_path(what: &'static str, p: &str) -> Result<(), ValidationError> {
    if !p.starts_with('/') {
        return Err(ValidationError::Invalid(
            what,
            format!("{} is not absolute", escape_for_display(p)),
        ));
    }
    if p.len() > 256 {
        return Err(ValidationError::TooLong(what, 256));
    }
    if p.chars()
        .any(|c| c == ':' || c.is_control() || !c.is_ascii() || c == ' ')
    {
        return Err(ValidationError::Invalid(
            what,
            format!("{} has a forbidden character", escape_for_display(p)),
        ));
    }
    if p.split('/').any(|c| c == ".." || c == ".") {
        return Err(ValidationError::Invalid(
            what,
            format!("{} has a . or .. component", escape_for_display(p)),
        ));
    }
    Ok(())
}

/// Key types sshd accepts in an authorized_keys line.
const SSH_KEY_TYPES: &[&str] = &[
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
];

/// An OpenSSH public key line `TYPE BASE64 [comment]`, with no authorized_keys options (an
/// option such as `command=` would change what the key allows, and is not a grant's to set).
pub fn validate_ssh_key(key: &str) -> Result<(), ValidationError> {
    let key = key.trim();
    if key.len() > 16 * 1024 {
        return Err(ValidationError::TooLong("ssh key", 16 * 1024));
    }
    if key.chars().any(|c| c.is_control() || !c.is_ascii()) {
        return Err(ValidationError::Invalid(
            "ssh key",
            "must be one line of printable ASCII".into(),
        ));
    }
    let mut parts = key.split_whitespace();
    let kind = parts.next().unwrap_or("");
    let blob = parts.next().unwrap_or("");
    if !SSH_KEY_TYPES.contains(&kind) {
        return Err(ValidationError::Invalid(
            "ssh key",
            format!(
                "unknown key type {} (options before the key are not accepted)",
                escape_for_display(kind)
            ),
        ));
    }
    let b64 = blob.len() >= 16
        && blob
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'+' || c == b'/' || c == b'=');
    if !b64 {
        return Err(ValidationError::Invalid(
            "ssh key",
            "the key data is not base64".into(),
        ));
    }
    Ok(())
}

/// What the snapshot reader demands of a stored field (names, GECOS, paths): no NUL, `:` or
/// newline, bounded. Used by the writer too, so a snapshot that the writer accepts always reads.
pub fn is_field_safe(s: &str, max: usize) -> bool {
    s.len() <= max && field_bytes_safe(s.as_bytes())
}

/// The bytes of [`is_field_safe`] without its length limit: fields stored back to back (a
/// record of the account listing) are checked in one call.
pub fn field_bytes_safe(s: &[u8]) -> bool {
    !contains_any(s, [0, b':', b'\n', 0])
}

/// What the snapshot reader demands of a name: a safe field of at most `max` bytes, not empty,
/// without `/`.
pub fn is_name_safe(s: &str, max: usize) -> bool {
    is_name_safe_bytes(s.as_bytes(), max)
}

/// [`is_name_safe`] of bytes (the account listing's names).
pub fn is_name_safe_bytes(s: &[u8], max: usize) -> bool {
    !s.is_empty() && s.len() <= max && !contains_any(s, [0, b':', b'\n', b'/'])
}

/// What the snapshot reader demands of a free-text line (ssh keys, sudo commands): no NUL or
/// newline, bounded.
pub fn is_line_safe(s: &str, max: usize) -> bool {
    s.len() <= max && !contains_any(s.as_bytes(), [0, b'\n', 0, 0])
}

/// Whether `s` holds any of the four bytes `set` (repeat one to look for fewer). Eight bytes
/// at a time: the NSS module checks every field of every account it lists, and a byte loop was
/// most of that check.
fn contains_any(s: &[u8], set: [u8; 4]) -> bool {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
    // Some byte of `v` is zero: exact as a yes/no answer (the classic bit trick; it may only
    // misplace which byte, which this does not ask).
    let has_zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGH != 0;
    let masks = set.map(|b| u64::from(b) * ONES);
    let mut chunks = s.chunks_exact(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        let v = u64::from_ne_bytes(w);
        if masks.iter().any(|&m| has_zero(v ^ m)) {
            return true;
        }
    }
    chunks.remainder().iter().any(|b| set.contains(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contains_any_agrees_with_a_byte_loop() {
        let sets = [
            [0, b':', b'\n', 0],
            [0, b':', b'\n', b'/'],
            [0, b'\n', 0, 0],
        ];
        // Every length up to three words, every position, every byte value at that position.
        for len in 0..24 {
            for pos in 0..len.max(1) {
                for b in 0..=255u8 {
                    let mut v = vec![b'a'; len];
                    if let Some(x) = v.get_mut(pos) {
                        *x = b;
                    }
                    for set in sets {
                        assert_eq!(
                            contains_any(&v, set),
                            v.iter().any(|c| set.contains(c)),
                            "len {len} pos {pos} byte {b} set {set:?}"
                        );
                    }
                }
            }
        }
        // High bytes next to a forbidden one (the trick's borrow must not hide or invent one).
        assert!(contains_any(
            &[0xff, 0x80, 0x01, 0x00, 0xff, 0xff, 0xff, 0xff],
            [0, 0, 0, 0]
        ));
        assert!(!contains_any(&[0x81; 16], [0, b':', b'\n', b'/']));
        assert!(contains_any("ab/cdefgh".as_bytes(), [0, b':', b'\n', b'/']));
    }

    #[test]
    fn names_accepted() {
        for ok in [
            "alice",
            "a",
            "_svc",
            "bob-2",
            "x_y",
            "abcdefghijklmnopqrstuvwxyz012345",
        ] {
            assert_eq!(validate_name("n", ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn names_refused() {
        let long33 = "a".repeat(33);
        let long16385 = "a".repeat(16385);
        let root_prefixed = format!("root{}", "a".repeat(16380));
        for bad in [
            "",
            "evil:0:0",
            "a\nroot:x:0:0",
            "a\0b",
            "a\tb",
            "-oProxyCommand",
            "+nis",
            "@grp",
            "../../bin/ls",
            "a/b",
            ".hidden",
            "a.b",
            "a~",
            "Alice",
            "аdmin",
            "ａlice",
            "a\u{202e}b",
            "9lives",
            "a b",
            long33.as_str(),
            long16385.as_str(),
            root_prefixed.as_str(),
        ] {
            assert!(validate_name("n", bad).is_err(), "{bad:?} accepted");
        }
        assert!(matches!(
            validate_name("n", &long16385),
            Err(ValidationError::TooLong(_, 32))
        ));
    }

    #[test]
    fn reserved_names() {
        for r in ["root", "daemon", "nobody", "jit-sudo", "sudo"] {
            assert!(
                matches!(validate_account_name(r), Err(ValidationError::Reserved(..))),
                "{r}"
            );
        }
        assert_eq!(validate_account_name("alice"), Ok(()));
    }

    #[test]
    fn ids() {
        for bad in [
            0u64,
            1,
            999,
            65_534,
            65_535,
            1 << 31,
            u64::from(u32::MAX),
            u64::MAX,
        ] {
            assert!(validate_id("uid", bad).is_err(), "{bad}");
        }
        assert_eq!(validate_id("uid", 70_000), Ok(70_000));
        assert_eq!(validate_id("uid", (1 << 31) - 1), Ok(i32::MAX as u32));
    }

    #[test]
    fn grant_ids() {
        assert!(validate_grant_id("g-0123abcd").is_ok());
        for bad in [
            "",
            "g-",
            "g-12",
            "G-1234",
            "g-12345z",
            "x-1234",
            "g-1234/",
            &format!("g-{}", "a".repeat(33)),
        ] {
            assert!(validate_grant_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn gecos_is_sanitized() {
        assert_eq!(sanitize_gecos("a:b\nc\x1b[31m"), "a_b_c_[31m");
        assert_eq!(sanitize_gecos(&"x".repeat(500)).len(), 128);
        assert!(is_field_safe(&sanitize_gecos("evil:0:0\n"), 128));
    }

    #[test]
    fn paths() {
        assert!(validate_abs_path("home", "/home").is_ok());
        assert!(validate_abs_path("shell", "/bin/bash").is_ok());
        for bad in [
            "",
            "home",
            "/home/../etc",
            "/a/./b",
            "/a:b",
            "/a\nb",
            "/a b",
        ] {
            assert!(validate_abs_path("p", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn ssh_keys() {
        let k = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBsjRCqRUWnTIaWeRBbXiaJw8UtFqDvmrm7YF4TK0E5P alice@laptop";
        assert!(validate_ssh_key(k).is_ok());
        for bad in [
            "command=\"/bin/sh\" ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBsjRCqRUWnT",
            "ssh-ed25519",
            "ssh-ed25519 not*base64*at*all!!",
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBsjRCqRUWnT\nssh-rsa AAAA",
            "garbage AAAAC3NzaC1lZDI1NTE5AAAAIBsjRCqRUWnT",
        ] {
            assert!(validate_ssh_key(bad).is_err(), "{bad:?}");
        }
    }
}
