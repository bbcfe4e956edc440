//! Parsing and matching of `--sudo` scope entries (`ALL`, `/abs/path`, `/abs/path args...`).

use crate::policy::PolicyError;

const WHAT_SCOPE: &str = "sudo command";
/// PATH_MAX: a longer scope entry cannot name a command sudo would run.
pub const MAX_SCOPE_ENTRY_LEN: usize = 4096;

/// One `--sudo` entry.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ScopeEntry {
    /// `ALL`: any command, and the only scope under which a shell or sudoedit is allowed.
    All,
    /// `/usr/bin/systemctl`: that command with any arguments.
    AnyArgs {
        /// Absolute, normalised path.
        path: String,
    },
    /// `/usr/bin/systemctl restart nginx`: that command with exactly these arguments;
    /// `/usr/bin/id ""` means exactly no arguments.
    ExactArgs {
        /// Absolute, normalised path.
        path: String,
        /// The arguments, in order (empty: no arguments allowed).
        args: Vec<String>,
    },
}

impl ScopeEntry {
    /// The command path, or `None` for `ALL`.
    pub fn path(&self) -> Option<&str> {
        match self {
            ScopeEntry::All => None,
            ScopeEntry::AnyArgs { path } | ScopeEntry::ExactArgs { path, .. } => Some(path),
        }
    }

    /// Whether this entry allows `command` with `argv` (flags such as shell or sudoedit are
    /// judged by [`scope_allows`], not here).
    pub fn matches(&self, command: &str, argv: &[&str]) -> bool {
        match self {
            ScopeEntry::All => true,
            ScopeEntry::AnyArgs { path } => path == command,
            ScopeEntry::ExactArgs { path, args } => {
                path == command
                    && args.len() == argv.len()
                    && args.iter().zip(argv).all(|(a, b)| a == b)
            }
        }
    }
}

/// The canonical form, which [`parse_scope_entry`] reads back.
impl std::fmt::Display for ScopeEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ScopeEntry::All => f.write_str("ALL"),
            ScopeEntry::AnyArgs { path } => f.write_str(path),
            ScopeEntry::ExactArgs { path, args } if args.is_empty() => write!(f, "{path} \"\""),
            ScopeEntry::ExactArgs { path, args } => write!(f, "{path} {}", args.join(" ")),
        }
    }
}

/// Checks an absolute command path as sudo would resolve it: `/`-rooted, normalised (no `.`,
/// `..` or empty components, no trailing `/`), printable ASCII without glob characters, quotes
/// or backslashes. A path that breaks these could never equal sudo's resolved command, or would
/// look to a reader as if it matched more than it does (`/usr/bin/*`, `/usr/bin/../bin/sh`).
pub(crate) fn check_command_path(what: &'static str, p: &str) -> Result<(), PolicyError> {
    if !p.starts_with('/') {
        return Err(PolicyError::invalid(
            what,
            p,
            "the command must be ALL or an absolute path such as /usr/bin/systemctl",
        ));
    }
    if p.len() > MAX_SCOPE_ENTRY_LEN {
        return Err(PolicyError::TooLong(what, MAX_SCOPE_ENTRY_LEN));
    }
    if let Some(c) = p.chars().find(|c| !c.is_ascii_graphic()) {
        return Err(PolicyError::invalid(
            what,
            p,
            format!("the path has a character that is not printable ASCII ({c:?})"),
        ));
    }
    if p.contains(['*', '?', '[', ']', '{', '}']) {
        return Err(PolicyError::invalid(
            what,
            p,
            "wildcards are not supported: name each command by its full path",
        ));
    }
    if p.contains(['"', '\'', '\\']) {
        return Err(PolicyError::invalid(
            what,
            p,
            "quotes and backslashes are not allowed in a command path",
        ));
    }
    if p.ends_with('/') {
        return Err(PolicyError::invalid(
            what,
            p,
            "a directory is not a command (name each command by its full path)",
        ));
    }
    // Skip the empty piece before the leading '/'.
    if p.split('/')
        .skip(1)
        .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return Err(PolicyError::invalid(
            what,
            p,
            "the path must be normalised (no '.', '..' or '//')",
        ));
    }
    Ok(())
}

/// Splits `PATH [ARGS...]` for scope entries and IOC entries alike: returns the path and
/// `None` (any arguments) or `Some(args)` (`""` alone: no arguments).
pub(crate) fn parse_path_and_args<'s>(
    what: &'static str,
    s: &'s str,
) -> Result<(&'s str, Option<Vec<String>>), PolicyError> {
    if s.len() > MAX_SCOPE_ENTRY_LEN {
        return Err(PolicyError::TooLong(what, MAX_SCOPE_ENTRY_LEN));
    }
    if s.chars().any(|c| c.is_control()) {
        return Err(PolicyError::invalid(
            what,
            s,
            "contains a control character",
        ));
    }
    if s.chars().any(|c| c.is_whitespace() && c != ' ') {
        return Err(PolicyError::invalid(
            what,
            s,
            "arguments are separated by plain spaces only",
        ));
    }
    let mut words = s.split(' ').filter(|w| !w.is_empty());
    let Some(path) = words.next() else {
        return Err(PolicyError::Empty(what));
    };
    check_command_path(what, path)?;
    let rest: Vec<&str> = words.collect();
    if rest.is_empty() {
        return Ok((path, None));
    }
    if rest == [r#""""#] {
        return Ok((path, Some(Vec::new())));
    }
    if rest.iter().any(|w| w.contains(['"', '\''])) {
        return Err(PolicyError::invalid(
            what,
            s,
            "quoting is not supported: arguments are separated by spaces and compared exactly \
             (a lone \"\" means no arguments)",
        ));
    }
    Ok((path, Some(rest.into_iter().map(str::to_string).collect())))
}

/// Parses one `--sudo` entry: `ALL`, `/abs/path` (any arguments), `/abs/path arg ...` (exactly
/// those arguments, separated by spaces, compared literally) or `/abs/path ""` (no arguments).
///
/// Refused: relative paths and bare names (sudo's resolved command is always absolute),
/// `.`/`..`/`//` in the path (`/usr/bin/../bin/sh`), wildcards, quotes (there is no quoting:
/// an argument cannot contain a space), control characters, more than 4096 bytes.
pub fn parse_scope_entry(s: &str) -> Result<ScopeEntry, PolicyError> {
    if s.trim_matches(' ').is_empty() {
        return Err(PolicyError::Empty(WHAT_SCOPE));
    }
    if s.trim_matches(' ') == "ALL" {
        return Ok(ScopeEntry::All);
    }
    if s.split(' ').find(|w| !w.is_empty()) == Some("ALL") {
        return Err(PolicyError::invalid(
            WHAT_SCOPE,
            s,
            "ALL takes no arguments",
        ));
    }
    let (path, args) = parse_path_and_args(WHAT_SCOPE, s)?;
    let path = path.to_string();
    Ok(match args {
        None => ScopeEntry::AnyArgs { path },
        Some(args) => ScopeEntry::ExactArgs { path, args },
    })
}
