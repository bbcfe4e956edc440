//! The class names and bits, and the operator's `ioc_commands` entries.

use super::super::sudo::parse_path_and_args;
use super::super::PolicyError;

/// Indicator of compromise: reverse shells, disabling audit or firewalls, clearing logs or
/// shell history, `setenforce 0`, and the operator's own `ioc_commands`.
pub const CLASS_IOC: u32 = 1;
/// Installing, upgrading or removing software (apt, dpkg, rpm, dnf, pip, snap, npm -g, ...).
pub const CLASS_SOFTWARE_INSTALL: u32 = 2;
/// Changing accounts, groups or sudo rights (useradd, passwd, editing /etc/sudoers, ...).
pub const CLASS_ACCOUNT_CHANGE: u32 = 4;
/// Reading password hashes, sudo rules, ssh host private keys or anything under /root.
pub const CLASS_SENSITIVE_READ: u32 = 8;
/// Every class.
pub const CLASS_ALL: u32 =
    CLASS_IOC | CLASS_SOFTWARE_INSTALL | CLASS_ACCOUNT_CHANGE | CLASS_SENSITIVE_READ;

const CLASS_TABLE: [(u32, &str); 4] = [
    (CLASS_IOC, "ioc"),
    (CLASS_SOFTWARE_INSTALL, "software-install"),
    (CLASS_ACCOUNT_CHANGE, "account-change"),
    (CLASS_SENSITIVE_READ, "sensitive-read"),
];

/// `ioc` | `software-install` | `account-change` | `sensitive-read` to its bit.
pub fn parse_class(s: &str) -> Option<u32> {
    CLASS_TABLE.iter().find(|(_, n)| *n == s).map(|(b, _)| *b)
}

/// The names of the classes set in `bits`, in a fixed order (unknown bits are ignored).
pub fn class_names(bits: u32) -> Vec<&'static str> {
    CLASS_TABLE
        .iter()
        .filter(|(b, _)| bits & b != 0)
        .map(|(_, n)| *n)
        .collect()
}

/// One operator-configured IOC command (jitd's `ioc_commands`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum IocEntry {
    /// A basename such as `tcpdump`: that program wherever it lives, any arguments.
    Name(String),
    /// An absolute path: any arguments (`None`), or arguments starting with these
    /// (`Some(prefix)`; `Some([])` from `path ""` means exactly no arguments).
    Command {
        /// Absolute, normalised path.
        path: String,
        /// Argument prefix, if any.
        args: Option<Vec<String>>,
    },
}

/// Parses an `ioc_commands` entry: a basename (`tcpdump`), a path (`/usr/sbin/tcpdump`), or a
/// path with leading arguments (`/usr/bin/curl -T`). `ALL` is refused: it would end every grant
/// at its first command.
pub fn parse_ioc_entry(s: &str) -> Result<IocEntry, PolicyError> {
    const WHAT: &str = "IOC command";
    let t = s.trim_matches(' ');
    if t.is_empty() {
        return Err(PolicyError::Empty(WHAT));
    }
    if t == "ALL" {
        return Err(PolicyError::invalid(
            WHAT,
            s,
            "ALL would match every command; name a program or a path",
        ));
    }
    if !t.starts_with('/') {
        let ok = t.len() <= 255
            && t != "."
            && t != ".."
            && t.bytes().all(|b| {
                b.is_ascii_graphic()
                    && !matches!(b, b'/' | b'"' | b'\'' | b'\\' | b'*' | b'?' | b'[')
            });
        if !ok {
            return Err(PolicyError::invalid(
                WHAT,
                s,
                "expected a program name (tcpdump) or an absolute path with optional arguments",
            ));
        }
        return Ok(IocEntry::Name(t.to_string()));
    }
    let (path, args) = parse_path_and_args(WHAT, t)?;
    Ok(IocEntry::Command {
        path: path.to_string(),
        args,
    })
}
