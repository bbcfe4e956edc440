//! What the gates file says about the one person logging in: whether the name is managed, has
//! an account record, and which gate records it holds. Answered by the whole file, or (format
//! 1.8) by the person's own shard of the file's index with the delta over it, which holds
//! exactly those records (docs/snapshot-format.md §10.7): a jit user's login then costs one
//! shard instead of a file that grows with every grant on the host.

use jit_core::snapshot::{GateView, Snapshot};

/// The gates file's records about one person (and, for the whole file, everyone else's, which
/// pam_jit never asks for).
pub struct Person<'a> {
    /// `None`: the file (a shard of it) knows nothing of the person.
    view: Option<Snapshot<'a>>,
}

impl<'a> Person<'a> {
    /// Answered by the whole file (with its delta over it).
    pub fn whole(s: Snapshot<'a>) -> Self {
        Person { view: Some(s) }
    }

    /// Answered by the person's shard (with the delta over it), `None` when no shard holds
    /// the name and the delta has nothing of it either.
    pub fn shard(view: Option<Snapshot<'a>>) -> Self {
        Person { view }
    }

    /// `name` is on the managed list.
    pub fn is_managed(&self, name: &str) -> bool {
        self.view.as_ref().is_some_and(|s| s.is_managed(name))
    }

    /// The file has an account record called `name`.
    pub fn has_account_record(&self, name: &str) -> bool {
        self.view
            .as_ref()
            .is_some_and(|s| s.has_account_record(name))
    }

    /// `user`'s gate records.
    pub fn grants_for_user<'s>(&'s self, user: &'s str) -> impl Iterator<Item = GateView<'a>> + 's {
        self.view
            .as_ref()
            .into_iter()
            .flat_map(move |s| s.grants_for_user(user))
    }
}
