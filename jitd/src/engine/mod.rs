//! The grant engine: what jitd decides, with no I/O. Every function here takes the state, the
//! configuration, a copy of /etc/passwd and /etc/group and the clock as values and returns a
//! decision or a plan; the executor (`crate::effects`) carries it out (persists, writes the
//! snapshot, ends processes, audits). So every rule can be tested from a table, without a
//! daemon, a state directory or root.
//!
//! * [`admit`]: may this grant exist? ([`admit::validate`], then [`admit::place`] against
//!   the grants already held). Every grant, whatever its source ([`GrantSource`]), goes
//!   through it.
//! * [`tick`]: how grants move through their life at a given time (pending → live → expired),
//!   revocation, the next deadline, pruning, ends replayed from the revocation journal.
//! * [`teardown`]: for every ended grant not yet torn down, which processes, set-id files and
//!   home directories go ([`teardown::plan_teardown`]).

pub mod admit;
pub mod teardown;
pub mod tick;

use jit_proto::ErrorCode;

/// A refusal: the error code the client sees and a one-line message.
pub type Refusal = (ErrorCode, String);

/// Builds a [`Refusal`].
pub fn refuse(code: ErrorCode, msg: impl Into<String>) -> Refusal {
    (code, msg.into())
}

/// Where a grant request came from. Both go through the same admission; the source is recorded
/// as the grant's `created_by` and in the audit trail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantSource {
    /// root on this host, over the local socket (`jitctl grant add`).
    Local,
    /// The central service (a signed state document).
    Server,
}

impl GrantSource {
    /// `created_by` of the grant and `by` of its audit record.
    pub fn as_str(self) -> &'static str {
        match self {
            GrantSource::Local => "root",
            GrantSource::Server => "server",
        }
    }
}
