//! The one error type of the policy parsers.
//!
//! Grant conditions arrive as strings (from `jitctl`, the central service, the snapshot), so a
//! refusal must say which value was wrong and why, in words an operator can act on. The value is
//! always shown through [`escape_for_display`]: it may hold control characters meant for a
//! terminal or a log line.

use crate::validate::escape_for_display;

/// Why a grant condition (network, time window, sudo scope, run-as target, class) was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyError {
    /// Nothing to parse (`what` names the kind of value, e.g. `"CIDR"`).
    Empty(&'static str),
    /// Longer than the limit, in bytes.
    TooLong(&'static str, usize),
    /// A malformed value: what kind, the value (already escaped and capped), and why.
    Invalid {
        /// The kind of value, e.g. `"time window"`.
        what: &'static str,
        /// The offending value, escaped for display.
        value: String,
        /// What is wrong with it.
        why: String,
    },
}

impl PolicyError {
    /// Builds [`PolicyError::Invalid`], escaping the raw value once, here.
    pub(crate) fn invalid(what: &'static str, raw: &str, why: impl Into<String>) -> Self {
        PolicyError::Invalid {
            what,
            value: escape_for_display(raw),
            why: why.into(),
        }
    }
}

impl std::fmt::Display for PolicyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PolicyError::Empty(what) => write!(f, "empty {what}"),
            PolicyError::TooLong(what, max) => write!(f, "{what} is longer than {max} bytes"),
            PolicyError::Invalid { what, value, why } => write!(f, "invalid {what} {value}: {why}"),
        }
    }
}

impl std::error::Error for PolicyError {}

#[cfg(test)]
mod tests {
    use super::PolicyError;

    #[test]
    fn messages_name_the_value_escaped() {
        let e = PolicyError::invalid("CIDR", "10.0.0.0/33\x1b[2J", "prefix is longer than 32");
        assert_eq!(
            e.to_string(),
            "invalid CIDR \"10.0.0.0/33\\u{1b}[2J\": prefix is longer than 32"
        );
        assert_eq!(PolicyError::Empty("CIDR").to_string(), "empty CIDR");
        assert_eq!(
            PolicyError::TooLong("sudo command", 4096).to_string(),
            "sudo command is longer than 4096 bytes"
        );
    }
}
