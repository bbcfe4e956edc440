//! Teardown plans: for every ended grant whose teardown has not finished, what must go — the
//! processes (by uid, by held gid, by registered session), the set-id files the sweep looks
//! for, the home directory — and what must stay because a local user or another grant is
//! still entitled to it. Pure: the executor (`crate::effects::teardown`) ends the processes,
//! sweeps, removes or archives the home, audits each grant and marks it torn down.

use std::collections::{HashMap, HashSet};

use jit_core::time::UnixTime;
use jit_proto::GrantState;

use crate::localdb::LocalDb;
use crate::procs::KillTargets;
use crate::state::State;
use crate::sweep;

/// What happens to an ended account's home.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HomeStep {
    /// Not an account grant: no home of jit's.
    NoAccount,
    /// The uid now belongs to local user `local_user` (`useradd -o -u`): its home (whose files
    /// are that user's as much) and its processes are left alone.
    Collided {
        /// The account's uid.
        uid: u32,
        /// The local user who has it now.
        local_user: String,
    },
    /// Another grant for the account is live or armed: the home stays.
    KeptForOtherGrant,
    /// The configured home policy (remove, archive, keep) applies to the home of `uid`.
    ApplyPolicy {
        /// The account's uid (the home must still be its).
        uid: u32,
    },
}

/// One grant to tear down.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    /// Grant id.
    pub id: String,
    /// Its user.
    pub user: String,
    /// How it ended.
    pub state: GrantState,
    /// The grant enabled a managed local admin account.
    pub enable: bool,
    /// Its `--group` names.
    pub groups: Vec<String>,
    /// Gids whose holders lose them (memberships nobody else entitles the user to).
    pub gids: Vec<u32>,
    /// Sessions pam_jit registered under it: (session id, pid, pid start time).
    pub sessions: Vec<(String, i32, u64)>,
    /// Its home.
    pub home: HomeStep,
}

/// Everything one teardown pass does.
#[derive(Debug, Default, Clone)]
pub struct TeardownPlan {
    /// One per ended grant not yet torn down.
    pub jobs: Vec<Job>,
    /// Processes to end.
    pub kill: KillTargets,
    /// Set-id files to strip, after the processes are gone.
    pub sweep: sweep::Targets,
    /// Uid → the grant its set-id files are audited under.
    pub uid_grant: HashMap<u32, String>,
    /// (owner uid, gid) → the grant its set-gid files are audited under.
    pub pair_grant: HashMap<(u32, u32), String>,
}

/// Whether any ended grant awaits teardown (cheap: a tick asks it every second).
pub fn pending(state: &State) -> bool {
    state
        .grants
        .values()
        .any(|g| g.state.is_ended() && !g.torn_down)
}

/// Plans the teardown of every ended grant of `state` not yet torn down, with the local files
/// `local` (the last copy read if they cannot be read now) at `now`.
pub fn plan_teardown(state: &State, local: &LocalDb, now: UnixTime) -> TeardownPlan {
    let ending = || {
        state
            .grants
            .values()
            .filter(|g| g.state.is_ended() && !g.torn_down)
    };
    // Only the users of the grants being torn down matter below: the sets of what other live
    // grants keep hold their names alone, borrowed (built from every live grant, with owned
    // names, they were a MiB of jitd's memory at 10 000 grants for a teardown of one).
    let users: HashSet<&str> = ending().map(|g| g.user.as_str()).collect();
    let live = state
        .grants
        .values()
        .filter(|g| !g.state.is_ended() && users.contains(g.user.as_str()));
    // Memberships still held by grants that remain live must not be torn away. Only a live
    // (activated) grant gives a membership: a pending one has not begun and an armed one gives
    // its groups only after the code, so neither shields a process that kept the gid.
    let still_granted: HashSet<(&str, &str)> = live
        .clone()
        .filter(|g| g.state_at(now) == GrantState::Live)
        .flat_map(|g| {
            g.groups
                .iter()
                .map(move |gr| (g.user.as_str(), gr.as_str()))
        })
        .collect();
    // The account stays (and its home is kept) while another grant for it is live or armed;
    // its processes stay only under a live one: an armed grant has had no login yet (the code
    // that would have activated it), so it shields nobody's session.
    let still_account: HashSet<&str> = live
        .clone()
        .filter(|g| g.account && matches!(g.state_at(now), GrantState::Live | GrantState::Armed))
        .map(|g| g.user.as_str())
        .collect();
    let still_logged_in: HashSet<&str> = live
        .clone()
        .filter(|g| g.account && g.state_at(now) == GrantState::Live)
        .map(|g| g.user.as_str())
        .collect();
    let still_enabled: HashSet<&str> = live
        .filter(|g| g.enable && g.state_at(now) == GrantState::Live)
        .map(|g| g.user.as_str())
        .collect();
    // Local always wins, at teardown too: a local user made later with the account's uid
    // (`useradd -o -u`) owns every process with that uid now, so none is ended by uid and the
    // home (whose files are that user's as much) is left.
    let uid_collision = |uid: u32| {
        local
            .users
            .iter()
            .find(|u| u.uid == uid)
            .map(|u| u.name.clone())
    };
    let mut plan = TeardownPlan::default();
    for g in ending() {
        let uid = if g.account { g.uid } else { None };
        let mut job = Job {
            id: g.id.to_string(),
            user: g.user.to_string(),
            state: g.state,
            enable: g.enable,
            groups: g.groups.to_vec(),
            gids: Vec::new(),
            sessions: state
                .sessions
                .values()
                .filter(|s| s.grant == g.id)
                .map(|s| (s.id.clone(), s.pid, s.pid_start))
                .collect(),
            home: HomeStep::NoAccount,
        };
        if let Some(uid) = uid {
            job.home = match uid_collision(uid) {
                Some(local_user) => HomeStep::Collided { uid, local_user },
                None if still_account.contains(g.user.as_str()) => HomeStep::KeptForOtherGrant,
                None => HomeStep::ApplyPolicy { uid },
            };
            if !still_logged_in.contains(g.user.as_str()) && uid_collision(uid).is_none() {
                plan.kill.uids.insert(uid);
                plan.uid_grant.insert(uid, g.id.to_string());
            }
        }
        // A managed admin account is disabled again: every process running as it ends (its
        // sessions held the enabled privilege), unless another grant still enables it.
        if g.enable && !still_enabled.contains(g.user.as_str()) {
            if let Some(u) = local.user(&g.user).filter(|u| u.uid != 0) {
                plan.kill.uids.insert(u.uid);
                // A set-uid file it made while enabled would let anyone act as it while it is
                // disabled: swept like an ephemeral account's.
                plan.uid_grant.insert(u.uid, g.id.to_string());
            }
        }
        for (_, pid, start) in &job.sessions {
            plan.kill.sessions.insert((*pid, *start));
        }
        // The grantee's uid: a local user, or the ephemeral account itself.
        let holder = local
            .user(&g.user)
            .map(|u| u.uid)
            .or(uid.filter(|&u| uid_collision(u).is_none()));
        // Not the jit-sudo gid: it is no privilege by itself (sudoers' %jit-sudo rule is
        // narrowed by sudo_jit, which checks for a live grant at every sudo), and ending every
        // session a local user opened during a sudo grant would log them out of their normal
        // access at each expiry.
        for gname in &g.groups {
            let Some(lg) = local.group(gname) else {
                continue;
            };
            // Never kill for a membership the user holds locally or through another live
            // grant: those processes are entitled to the gid.
            if lg.members.iter().any(|m| m == &g.user)
                || still_granted.contains(&(g.user.as_str(), gname.as_str()))
                || local.user(&g.user).is_some_and(|u| u.gid == lg.gid)
            {
                continue;
            }
            job.gids.push(lg.gid);
            if let Some(h) = holder.filter(|&h| h != 0) {
                plan.kill.group_holders.insert((h, lg.gid));
                plan.pair_grant.insert((h, lg.gid), g.id.to_string());
            }
        }
        plan.jobs.push(job);
    }
    plan.sweep = sweep::Targets {
        uids: plan.uid_grant.keys().copied().collect(),
        owner_gids: plan.pair_grant.keys().copied().collect(),
    };
    plan
}

#[cfg(test)]
mod tests;
