//! The daemon's hooks for tokenization (`crate::tokenize`): which live grant lets a caller run
//! a program with capabilities, the started program joining the grant's cgroup, and, at
//! teardown, which processes still hold a capability the ended grant gave. Each hook is one
//! call from the server, `api` or `effects/teardown.rs`.

use std::collections::HashSet;

use jit_core::time::{format_utc, UnixTime};
use jit_proto::{ErrorCode, GrantState};

use crate::api::Peer;
use crate::daemon::Daemon;
use crate::engine::Refusal;
use crate::localdb::LocalDb;
use crate::procs::KillTargets;

/// The grant a `run_program` request runs under.
#[derive(Debug, Clone)]
pub struct RunGrant {
    /// Grant id.
    pub id: String,
    /// The person.
    pub user: String,
    /// The program's path, as the grant lists it.
    pub program: String,
    /// Canonical capability names.
    pub caps: Vec<String>,
}

/// Whether `asked` (an absolute path or a bare file name) names `listed`.
fn names(asked: &str, listed: &str) -> bool {
    if asked.starts_with('/') {
        asked == listed
    } else {
        listed.rsplit('/').next() == Some(asked)
    }
}

impl Daemon {
    /// The live grant of the caller that lists `program`, or a one-line reason why there is
    /// none (no grant, armed, pending, program not in the grant).
    pub(crate) fn tokenize_find(
        &self,
        peer_uid: u32,
        program: &str,
        now: UnixTime,
    ) -> Result<RunGrant, Refusal> {
        let denied = |m: String| (ErrorCode::PermissionDenied, m);
        if peer_uid == 0 {
            return Err(denied("root runs programs without jitctl run".into()));
        }
        if program.is_empty() || (!program.starts_with('/') && program.contains('/')) {
            return Err(denied(format!(
                "{program:?}: give the program's absolute path or its bare name"
            )));
        }
        let inner = self.lock();
        let Some(user) = self.peer_name(peer_uid, &inner) else {
            return Err(denied(format!(
                "uid {peer_uid} is neither a local user nor a jit account: no live grant"
            )));
        };
        let mine: Vec<_> = inner
            .state
            .grants
            .values()
            .filter(|g| g.user == user && !g.caps.is_empty() && !g.state_at(now).is_ended())
            .collect();
        let listing: Vec<_> = mine
            .iter()
            .filter(|g| g.programs.iter().any(|p| names(program, p)))
            .collect();
        let live: Vec<_> = listing
            .iter()
            .filter(|g| g.state_at(now) == GrantState::Live)
            .collect();
        if let Some(g) = live.iter().max_by_key(|g| g.not_after) {
            let paths: HashSet<&String> = live
                .iter()
                .flat_map(|g| g.programs.iter().filter(|p| names(program, p)))
                .collect();
            if paths.len() > 1 {
                return Err(denied(format!(
                    "{program:?} names more than one granted program: give the absolute path"
                )));
            }
            let path = g
                .programs
                .iter()
                .find(|p| names(program, p))
                .cloned()
                .unwrap_or_default();
            return Ok(RunGrant {
                id: g.id.to_string(),
                user,
                program: path,
                caps: g.caps.to_vec(),
            });
        }
        if let Some(g) = listing
            .iter()
            .find(|g| g.state_at(now) == GrantState::Armed)
        {
            return Err(denied(format!(
                "grant {} is armed: prove a TOTP code first (jitctl activate)",
                g.id
            )));
        }
        if let Some(g) = listing.first() {
            return Err(denied(format!(
                "grant {} gives {program} only from {}",
                g.id,
                format_utc(g.not_before)
            )));
        }
        if let Some(g) = mine.iter().find(|g| g.state_at(now) == GrantState::Live) {
            return Err(denied(format!(
                "{program} is not in grant {} (its programs: {})",
                g.id,
                g.programs.join(", ")
            )));
        }
        Err(denied(format!(
            "no live grant gives {user} a capability for {program}"
        )))
    }

    /// The started program joins its grant's cgroup (daemon/watch.rs), so the grant's
    /// teardown ends it and everything it started even if they leave its session.
    pub(crate) fn tokenize_started(&self, grant: &str, pid: i32, now: UnixTime) {
        self.watch_join(Peer { uid: 0, pid }, grant, "run", now);
    }

    /// Teardown: processes of an ended grant's holder that still carry one of its capabilities
    /// (permitted, effective or ambient) become targets, unless another live grant of the same
    /// person gives that capability too.
    pub(crate) fn tokenize_kill_targets(
        &self,
        ended: &[&str],
        now: UnixTime,
        local: &LocalDb,
        targets: &mut KillTargets,
    ) {
        let inner = self.lock();
        for id in ended {
            let Some(g) = inner.state.grants.get(*id).filter(|g| !g.caps.is_empty()) else {
                continue;
            };
            let still: HashSet<&String> = inner
                .state
                .grants
                .values()
                .filter(|o| o.user == g.user && o.id != g.id && o.state_at(now) == GrantState::Live)
                .flat_map(|o| o.caps.iter())
                .collect();
            let nums: Vec<u8> = g
                .caps
                .iter()
                .filter(|c| !still.contains(c))
                .filter_map(|c| jit_core::caps::parse(c).ok())
                .collect();
            let holder = local
                .user(&g.user)
                .map(|u| u.uid)
                .or_else(|| inner.state.uid_ledger.get(g.user.as_str()).copied());
            if let (Some(uid), false) = (holder.filter(|&u| u != 0), nums.is_empty()) {
                targets
                    .cap_holders
                    .insert((uid, jit_core::caps::mask(&nums)));
            }
        }
    }
}
