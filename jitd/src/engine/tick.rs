//! How grants move through their life, as pure functions of the state and the clock:
//! pending → live (or armed, while an `--mfa` grant waits for its code) → expired, revoked at
//! any time; ends replayed from the revocation journal; pruning of old ended grants; the next
//! deadline. The executor persists and acts on what these return (`crate::effects::tick`).

use std::collections::HashMap;

use jit_core::time::{format_utc, UnixTime};
use jit_core::types::Text;
use jit_proto::{ErrorCode, Grant, GrantState};

use super::{refuse, Refusal};
use crate::journal::{End, EndKind};
use crate::state::State;

/// Grants kept after they ended, for `grant list --all` and reports; older ones are pruned.
pub const ENDED_KEEP: usize = 10_000;

/// Boot-time caps: grant id → (CLOCK_BOOTTIME seconds when first seen live, seconds it had
/// left then). A wall clock set back must not stretch a grant.
pub type BootCaps = HashMap<Text, (i64, i64)>;

/// A grant [`advance`] ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expired {
    /// Grant id.
    pub id: String,
    /// Its user.
    pub user: String,
    /// Its original end (the expiry happened at or after it, e.g. when jitd was down).
    pub not_after: UnixTime,
    /// Ended by the boot-time cap before its wall-clock end (the clock moved back).
    pub by_boot_cap: bool,
}

/// What [`advance`] changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Transitions {
    /// Grants that became live (or armed) now.
    pub went_live: Vec<String>,
    /// Grants that expired now.
    pub expired: Vec<Expired>,
}

impl Transitions {
    /// Whether anything changed.
    pub fn changed(&self) -> bool {
        !self.went_live.is_empty() || !self.expired.is_empty()
    }

    /// The ends, for the revocation journal.
    pub fn ends(&self) -> Vec<(String, EndKind)> {
        self.expired
            .iter()
            .map(|e| (e.id.clone(), EndKind::Expired))
            .collect()
    }
}

/// Moves every grant along at wall-clock `now` and boot-clock `boot` (seconds on
/// CLOCK_BOOTTIME): ends what reached its end or its boot-time cap, starts what reached its
/// start, and records the boot-time cap of every grant that is live or armed.
pub fn advance(state: &mut State, caps: &mut BootCaps, now: UnixTime, boot: i64) -> Transitions {
    let mut out = Transitions::default();
    // Only the grants changed here count as changed (and reach the state journal).
    state.grants.update_each(|id, g| {
        if g.state.is_ended() {
            return false;
        }
        // Boot-time cap: a wall clock set back must not stretch a grant.
        let cap = caps.get(id).copied();
        let capped = cap.is_some_and(|(b0, left)| boot - b0 >= left);
        let st = g.state_at(now);
        if st == GrantState::Expired || capped {
            let by_boot_cap = capped && st != GrantState::Expired;
            g.state = GrantState::Expired;
            g.ended_at = Some(now);
            g.end_reason = Some(if by_boot_cap {
                "expired (elapsed time since activation reached its duration; the wall clock moved back)".into()
            } else {
                "expired".into()
            });
            caps.remove(id);
            out.expired.push(Expired {
                id: g.id.to_string(),
                user: g.user.to_string(),
                not_after: g.not_after,
                by_boot_cap,
            });
            true
        } else if matches!(st, GrantState::Live | GrantState::Armed) {
            // Recorded once: this runs for every live grant at every tick. The key is the
            // grant's own id (shared, no copy).
            if cap.is_none() {
                caps.insert(g.id.clone(), (boot, g.not_after - now));
            }
            if g.state == GrantState::Pending {
                g.state = GrantState::Live;
                g.went_live_at = Some(now);
                out.went_live.push(id.to_string());
                return true;
            }
            false
        } else {
            false
        }
    });
    out
}

/// Ends grant `id` now as revoked by `by` (`root`, `policy`, `session`) for `reason`.
///
/// # Errors
/// No such grant (`not_found`), or it has already ended (`refused`).
pub fn revoke(
    state: &mut State,
    id: &str,
    reason: &str,
    by: &str,
    now: UnixTime,
) -> Result<Grant, Refusal> {
    let g = state
        .grants
        .get_mut(id)
        .ok_or_else(|| refuse(ErrorCode::NotFound, format!("no grant {id}")))?;
    let st = g.state_at(now);
    if st.is_ended() {
        let when = g.ended_at.unwrap_or(g.not_after);
        return Err(refuse(
            ErrorCode::Refused,
            format!(
                "grant {id} already ended ({} at {})",
                st.as_str(),
                format_utc(when)
            ),
        ));
    }
    g.state = GrantState::Revoked;
    g.ended_at = Some(now);
    g.end_reason = Some(if reason.is_empty() {
        format!("revoked by {by}")
    } else {
        format!("revoked by {by}: {reason}")
    });
    Ok(Grant::clone(g))
}

/// Marks `ids` activated (their code was proved) at `now`.
pub fn activate(state: &mut State, ids: &[String], now: UnixTime) {
    for id in ids {
        if let Some(g) = state.grants.get_mut(id) {
            g.activated_at = Some(now);
        }
    }
}

/// `g` with the state it has at `now` (stored states lag between ticks).
pub fn as_of(g: &Grant, now: UnixTime) -> Grant {
    let mut g = g.clone();
    g.state = g.state_at(now);
    g
}

/// Drops the oldest ended, torn-down grants beyond [`ENDED_KEEP`].
pub fn prune(state: &mut State) {
    let mut ended: Vec<(UnixTime, String)> = state
        .grants
        .values()
        .filter(|g| g.state.is_ended() && g.torn_down)
        .map(|g| (g.ended_at.unwrap_or(0), g.id.to_string()))
        .collect();
    if ended.len() > ENDED_KEEP {
        ended.sort();
        for (_, id) in ended.iter().take(ended.len() - ENDED_KEEP) {
            state.grants.remove(id);
        }
    }
}

/// The earliest `not_before`/`not_after` still ahead.
pub fn next_deadline(state: &State) -> Option<UnixTime> {
    state
        .grants
        .values()
        .filter(|g| !g.state.is_ended())
        .map(|g| {
            if g.state == GrantState::Pending {
                g.not_before.min(g.not_after)
            } else {
                g.not_after
            }
        })
        .min()
}

/// When [`advance`] next has something to do, as of one version of the grants: the earliest
/// `not_before`/`not_after` ahead (wall clock) and the earliest boot-time cap (`CLOCK_BOOTTIME`).
/// While the grants are unchanged and neither moment has come, a tick has nothing to move, and
/// the walk over every grant (tens of milliseconds under the state lock at 50 000 grants, every
/// second) is skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Due {
    version: u64,
    wall: Option<UnixTime>,
    boot: Option<i64>,
}

impl Due {
    /// Computed from `state` and `caps` as they are now.
    pub fn of(state: &State, caps: &BootCaps) -> Due {
        Due {
            version: state.grants.version(),
            wall: next_deadline(state),
            boot: caps
                .values()
                .map(|(b0, left)| b0.saturating_add(*left))
                .min(),
        }
    }

    /// Whether [`advance`] at `now` (wall) and `boot` would change nothing.
    pub fn nothing_due(&self, state: &State, now: UnixTime, boot: i64) -> bool {
        self.version == state.grants.version()
            && self.wall.is_none_or(|w| now < w)
            && self.boot.is_none_or(|b| boot < b)
    }

    /// The earliest wall-clock deadline, if this is still current for `state`.
    pub fn deadline(&self, state: &State) -> Option<Option<UnixTime>> {
        (self.version == state.grants.version()).then_some(self.wall)
    }

    /// Grant `g` was just added to `state`, whose version before was `before`, with boot-time
    /// cap `cap` if it started live: folded in, if this was current then.
    pub fn added(&mut self, before: u64, state: &State, g: &Grant, cap: Option<(i64, i64)>) {
        if self.version != before {
            return;
        }
        self.version = state.grants.version();
        if !g.state.is_ended() {
            let d = if g.state == GrantState::Pending {
                g.not_before.min(g.not_after)
            } else {
                g.not_after
            };
            self.wall = Some(self.wall.map_or(d, |w| w.min(d)));
        }
        if let Some((b0, left)) = cap {
            let b = b0.saturating_add(left);
            self.boot = Some(self.boot.map_or(b, |x| x.min(b)));
        }
    }
}

/// Ends the grants the journal names that `state` still has as not ended; returns their ids.
/// An entry whose grant is gone or was created at another time (a different grant with the
/// same id) is ignored.
pub fn apply_journal(state: &mut State, ends: &[End]) -> Vec<String> {
    let mut applied = Vec::new();
    for e in ends {
        let Some(g) = state.grants.get_mut(&e.grant) else {
            continue;
        };
        if g.created_at != e.created_at || g.state.is_ended() {
            continue;
        }
        g.state = match e.kind {
            EndKind::Revoked => GrantState::Revoked,
            EndKind::Expired => GrantState::Expired,
        };
        g.ended_at = Some(e.ended_at);
        g.end_reason = Some(format!(
            "{} (recorded in the revocation journal while state.json could not be written)",
            match e.kind {
                EndKind::Revoked => "revoked",
                EndKind::Expired => "expired",
            }
        ));
        g.torn_down = false;
        applied.push(e.grant.clone());
    }
    applied
}

#[cfg(test)]
pub(crate) mod tests;
