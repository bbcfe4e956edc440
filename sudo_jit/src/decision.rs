//! The approval decision, pure: invocation + command + snapshot + clock → allow or deny with a
//! one-line reason. No I/O here (the caller reads the snapshot, /etc/passwd and /etc/group).
//!
//! Rules (docs/design.md#traps):
//! * root (uid 0) is always approved;
//! * a user with no jit involvement is approved (sudoers decided);
//! * a jit user is refused when the plugin is broken (bad options), the snapshot is missing or
//!   corrupt, or sudo's information does not parse;
//! * a managed admin needs a live, non-armed `--enable` grant;
//! * otherwise some live, non-armed grant of the user with a sudo scope must allow the command
//!   and the run-as target ([`sudo_allows`]); a command in a class the grant revokes on is
//!   refused (and reported so that jitd revokes);
//! * a grant with `--mfa-sudo` that allows the command gives [`Verdict::StepUp`]: the caller
//!   must ask for a TOTP code through sudo's conversation and have jitd verify it before it
//!   approves (only a grant without `--mfa-sudo` that allows the command approves at once).

use crate::cinfo::{Command, InfoError, Invocation};
use jit_core::constants::{DEFAULT_UID_MAX, DEFAULT_UID_MIN, GROUP_JIT_SUDO};
use jit_core::policy::classify::{class_names, classify};
use jit_core::policy::sudo::{
    parse_runas, parse_scope_entry, shown, sudo_allows, RunAs, ScopeEntry, SudoRequest,
};
use jit_core::snapshot::{GateView, Snapshot};
use jit_core::time::UnixTime;
use jit_core::types::{GATE_ARMED, GATE_ENABLE, GATE_MFA_SUDO, GROUP_KIND_JIT};

/// The verdict. Distant discriminants: no single bit flip turns a denial (or a step-up still to
/// be proved) into an approval (docs/threat-model.md#s2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Verdict {
    /// Approve (check returns exactly 1).
    Allow = 0x5A3C_96A5,
    /// Refuse (check returns 0 and prints the reason).
    Deny = 0x0F0F_0000,
    /// Allowed by a `--mfa-sudo` grant (`Decision::grant`) once a TOTP code for it is verified
    /// by jitd; until then it is a refusal (check returns 0 unless the step-up succeeds).
    StepUp = 0x00F0_3C0F,
}

/// The outcome of one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Allow or deny.
    pub verdict: Verdict,
    /// Whether the user is a jit user (only their decisions are printed and reported).
    pub jit: bool,
    /// The one-line reason (denials), `jit: ...`.
    pub reason: String,
    /// The grant the decision was made under.
    pub grant: Option<String>,
    /// Classes of the command (`CLASS_*` bits), when it was classified.
    pub classes: u32,
}

impl Decision {
    fn allow(jit: bool, grant: Option<String>, classes: u32) -> Self {
        Decision {
            verdict: Verdict::Allow,
            jit,
            reason: String::new(),
            grant,
            classes,
        }
    }

    fn step_up(grant: String, classes: u32) -> Self {
        Decision {
            verdict: Verdict::StepUp,
            jit: true,
            reason: String::new(),
            grant: Some(grant),
            classes,
        }
    }

    /// The decision after a step-up: a [`Verdict::StepUp`] becomes `Allow` only with `Ok`
    /// (the code was verified for its grant) and `Deny` with the refusal line otherwise; any
    /// other verdict is returned unchanged (a step-up never turns a denial into an approval).
    pub fn after_step_up(self, outcome: Result<(), String>) -> Self {
        if self.verdict != Verdict::StepUp {
            return self;
        }
        match outcome {
            Ok(()) => Decision {
                verdict: Verdict::Allow,
                ..self
            },
            Err(reason) => Decision {
                verdict: Verdict::Deny,
                reason,
                ..self
            },
        }
    }

    fn deny(reason: String, grant: Option<String>, classes: u32) -> Self {
        Decision {
            verdict: Verdict::Deny,
            jit: true,
            reason,
            grant,
            classes,
        }
    }
}

/// Everything one decision looks at.
pub struct Input<'a> {
    /// Who invoked sudo (from `open`).
    pub inv: &'a Invocation,
    /// What sudo is about to run, or why it could not be read.
    pub cmd: Result<&'a Command, &'a InfoError>,
    /// The command's canonical path when it differs (merged /usr: /bin → /usr/bin).
    pub alt_command: Option<&'a str>,
    /// The gates file (whole, or the parts of it that hold everything about this user and
    /// these groups), `None` when missing, untrusted or corrupt.
    pub snapshot: Option<&'a dyn Gates>,
    /// Why the plugin is broken (bad options, failed open), if it is.
    pub broken: Option<&'a str>,
    /// The daemon-free test ([`looks_jit_by_ids`]) said jit.
    pub jit_by_ids: bool,
    /// The clock.
    pub now: UnixTime,
}

/// The daemon-free "is this a jit identity" test (docs/design.md#traps): a uid in jit's reserved range
/// absent from /etc/passwd, or a process group in the range absent from /etc/group (jit's own
/// groups such as `jit-sudo` come from the range and exist only through NSS).
pub fn looks_jit_by_ids(
    uid: u32,
    groups: &[u32],
    local_uid: impl Fn(u32) -> bool,
    local_gid: impl Fn(u32) -> bool,
) -> bool {
    looks_jit_in_range(
        (DEFAULT_UID_MIN, DEFAULT_UID_MAX),
        uid,
        groups,
        local_uid,
        local_gid,
    )
}

/// [`looks_jit_by_ids`] with jitd's configured uid range `(min, max)` (the snapshot header's
/// `uid_min`/`uid_max`) instead of the default one.
pub fn looks_jit_in_range(
    (min, max): (u32, u32),
    uid: u32,
    groups: &[u32],
    local_uid: impl Fn(u32) -> bool,
    local_gid: impl Fn(u32) -> bool,
) -> bool {
    let in_range = |id: u32| (min..=max).contains(&id);
    (in_range(uid) && !local_uid(uid)) || groups.iter().any(|&g| in_range(g) && !local_gid(g))
}

/// The three things a decision asks of the gates file, for the invoking user and the groups
/// its process holds. Answered by the whole file (a [`Snapshot`]) or by [`Parts`] of it.
pub trait Gates {
    /// `user`'s gate records (with the delta), in the file's order.
    fn grants_of(&self, user: &str) -> Vec<GateView<'_>>;
    /// Whether `user` is a managed account.
    fn managed(&self, user: &str) -> bool;
    /// Whether the process holds the gid of `jit-sudo` ([`holds_jit_sudo`]).
    fn holds_jit_sudo(&self, inv: &Invocation, now: UnixTime) -> bool;
}

impl Gates for Snapshot<'_> {
    fn grants_of(&self, user: &str) -> Vec<GateView<'_>> {
        self.grants_for_user(user).collect()
    }

    fn managed(&self, user: &str) -> bool {
        self.is_managed(user)
    }

    fn holds_jit_sudo(&self, inv: &Invocation, now: UnixTime) -> bool {
        holds_jit_sudo(self, inv, now)
    }
}

/// The parts of an indexed gates file (format 1.6, `GatesPart`) that hold everything a
/// decision about one user and one set of groups reads: `own`, the view of the invoking user's
/// shard (their gate records, managed entry and, since 1.7, their member records of jit's
/// groups, with the delta; `None`: the file has none for them), and `held`, the views of the
/// shards of the groups the process holds (each of jit's groups among them: since 1.7 its
/// record without members, in 1.6 whole; with the delta). So each [`Gates`] answer is the
/// whole file's (tests: `the_gates_shards_decide_exactly_as_the_whole_file`), at the cost of a
/// few small shards instead of a file, or a `jit-users` group, that grows with every grant on
/// the host.
pub struct Parts<'p, 'a> {
    /// The user's shard.
    pub own: Option<&'p Snapshot<'a>>,
    /// The held groups' shards.
    pub held: &'p [Snapshot<'a>],
}

impl Gates for Parts<'_, '_> {
    fn grants_of(&self, user: &str) -> Vec<GateView<'_>> {
        self.own
            .map(|s| s.grants_for_user(user).collect())
            .unwrap_or_default()
    }

    fn managed(&self, user: &str) -> bool {
        self.own.is_some_and(|s| s.is_managed(user))
    }

    fn holds_jit_sudo(&self, inv: &Invocation, now: UnixTime) -> bool {
        let views: Vec<&Snapshot<'_>> = self.held.iter().chain(self.own).collect();
        holds_jit_sudo_in(&views, inv, now)
    }
}

/// Whether the gates make `inv`'s user one whose sudo right comes from a jit sudo scope:
/// a grant with a sudo scope (in any state: an expired or armed one still confines), a managed
/// account, or a process still holding the `jit-sudo` gid ([`holds_jit_sudo`]). A user whose
/// grants only add group memberships or an account is left to sudoers: those memberships are
/// live in NSS (sudo.conf sets `group_source dynamic`) and the sessions that kept them are
/// ended at teardown.
pub fn is_jit(gates: &dyn Gates, inv: &Invocation, now: UnixTime) -> bool {
    gates
        .grants_of(&inv.user)
        .iter()
        .any(|g| g.sudo().next().is_some())
        || gates.managed(&inv.user)
        || gates.holds_jit_sudo(inv, now)
}

/// Without a trusted gates file: whether the world-readable snapshot (which NSS still serves,
/// so sudoers may still see the `jit-sudo` membership) marks the invoking user as jit: an
/// ephemeral account of that name, or a process holding one of jit's own groups. The id
/// heuristic alone knows only the default uid range; this covers any `uid_range`.
pub fn jit_in_public_snapshot(snap: &Snapshot<'_>, inv: &Invocation, now: UnixTime) -> bool {
    snap.has_account_record(&inv.user) || holds_jit_sudo(snap, inv, now)
}

/// Whether the process holds the gid of `jit-sudo`. jitd's `[groups] sudo` may give that group
/// another name, and the snapshot does not say which of jit's own groups (kind
/// `GROUP_KIND_JIT`) it is, so any jit group the user holds without being its live member
/// counts too: a session that kept it after its grant ended. (jit-users and jit-mfa are held
/// by their live members; only jit-sudo gives a sudo right through the sudoers drop-in.)
fn holds_jit_sudo(snap: &Snapshot<'_>, inv: &Invocation, now: UnixTime) -> bool {
    holds_jit_sudo_in(&[snap], inv, now)
}

/// [`holds_jit_sudo`] over the group records of `views` together: a group's membership is the
/// union of every record of its gid they hold. A delta holds its own record of a group with
/// the members it adds, and a gates file's shards (1.7) hold a jit group's record by gid
/// without members and each member's record by name; no one record says who is not a member.
fn holds_jit_sudo_in(views: &[&Snapshot<'_>], inv: &Invocation, now: UnixTime) -> bool {
    let groups = || {
        views
            .iter()
            .flat_map(|s| (0..s.group_count()).filter_map(|i| s.group_at(i)))
            .filter(|g| inv.groups.contains(&g.gid()))
    };
    let member = |gid: u32| {
        groups()
            .filter(|g| g.gid() == gid)
            .any(|g| g.members().any(|m| m.name() == inv.user && m.is_live(now)))
    };
    groups().any(|g| g.name() == GROUP_JIT_SUDO || (g.kind() == GROUP_KIND_JIT && !member(g.gid())))
}

/// Decides one `check` call.
pub fn decide(input: &Input<'_>) -> Decision {
    let inv = input.inv;
    if inv.uid == 0 {
        return Decision::allow(false, None, 0);
    }
    // With a trusted snapshot it decides; without one, the id heuristic fails closed for
    // anything that looks like a jit identity.
    let jit = match input.snapshot {
        Some(s) => is_jit(s, inv, input.now),
        None => input.jit_by_ids,
    };
    if !jit {
        return Decision::allow(false, None, 0);
    }
    if let Some(why) = input.broken {
        return Decision::deny(
            format!("jit: sudo_jit is not usable ({why}); sudo refused for jit users"),
            None,
            0,
        );
    }
    let Some(snap) = input.snapshot else {
        return Decision::deny(
            "jit: no trusted grant snapshot (is jitd running?); sudo refused for jit users"
                .to_string(),
            None,
            0,
        );
    };
    let cmd = match input.cmd {
        Ok(c) => c,
        Err(e) => return Decision::deny(format!("jit: sudo refused: {e}"), None, 0),
    };
    let runas_user = match (&inv.runas_user, &inv.runas_group) {
        (Some(u), _) => u.as_str(),
        (None, Some(_)) => inv.user.as_str(),
        (None, None) => "root",
    };
    let runas_gid = match (&inv.runas_group, cmd.runas_gid) {
        (Some(_), Some(g)) => Some(g),
        (Some(_), None) => {
            return Decision::deny("jit: sudo refused: runas_gid missing".to_string(), None, 0)
        }
        (None, _) => None,
    };
    let argv: Vec<&str> = cmd.argv.iter().map(String::as_str).collect();
    let req = SudoRequest {
        user: &inv.user,
        uid: inv.uid,
        command: &cmd.command,
        argv: &argv,
        runas_user,
        runas_uid: cmd.runas_uid,
        runas_group: inv.runas_group.as_deref(),
        runas_gid,
        shell: inv.shell,
        edit: inv.edit || cmd.edit,
        chroot: inv.chroot.as_deref().or(cmd.chroot.as_deref()),
        remote_host: inv.remote_host.as_deref(),
    };
    judge(snap, inv, &req, input.alt_command, input.now)
}

fn judge(
    snap: &dyn Gates,
    inv: &Invocation,
    req: &SudoRequest<'_>,
    alt_command: Option<&str>,
    now: UnixTime,
) -> Decision {
    let classes = classify(req, &[]);
    let grants: Vec<GateView<'_>> = snap
        .grants_of(&inv.user)
        .into_iter()
        .filter(|g| g.uid() == 0 || g.uid() == inv.uid)
        .collect();
    let usable = |g: &GateView<'_>| g.is_live(now) && g.flags() & GATE_ARMED == 0;
    let has_scope = |g: &GateView<'_>| g.sudo().next().is_some();
    let managed = snap.managed(&inv.user);
    let enabling = grants
        .iter()
        .find(|g| usable(g) && g.flags() & GATE_ENABLE != 0)
        .map(|g| g.id().to_string());
    if managed && enabling.is_none() {
        return Decision::deny(
            format!(
                "jit: managed account {} has no live --enable grant",
                shown(&inv.user, 64)
            ),
            None,
            classes,
        );
    }
    let mut refusal: Option<(String, String)> = None;
    let mut mfa: Option<String> = None;
    let mut armed: Option<String> = None;
    for g in grants.iter().filter(|g| g.is_live(now) && has_scope(g)) {
        if g.flags() & GATE_ARMED != 0 {
            armed.get_or_insert_with(|| g.id().to_string());
            continue;
        }
        // Entries that do not parse are skipped: they can only narrow what the grant allows.
        let scope: Vec<ScopeEntry> = g.sudo().filter_map(|s| parse_scope_entry(s).ok()).collect();
        let mut runas: Vec<RunAs> = g.runas().filter_map(|s| parse_runas(s).ok()).collect();
        if g.runas().next().is_none() {
            runas.push(RunAs::root());
        }
        let mut verdict = sudo_allows(&scope, &runas, req);
        // `VAR=value`, -E, --preserve-env: under the sudoers rule's implied SETENV, sudo hands
        // the command whatever the user set (LD_PRELOAD...), which makes any allowed command
        // run any code. Only an ALL scope, which allows that anyway, may do it.
        let env_refused = inv.sets_env && !scope.contains(&ScopeEntry::All);
        if let (Err(_), Some(alt)) = (&verdict, alt_command) {
            let alt_req = SudoRequest {
                command: alt,
                ..*req
            };
            if sudo_allows(&scope, &runas, &alt_req).is_ok() {
                verdict = Ok(());
            }
        }
        match verdict {
            // Outside the scope but in a class the grant revokes on: jitd ends the grant on
            // the report, so the line says that, not only "outside".
            Err(_) if classes & g.revoke_on() != 0 => {
                refusal.get_or_insert_with(|| {
                    (
                        revoke_message(req, classes & g.revoke_on(), g.id()),
                        g.id().to_string(),
                    )
                });
            }
            Err(r) => {
                refusal.get_or_insert_with(|| (r.message(g.id()), g.id().to_string()));
            }
            Ok(()) if classes & g.revoke_on() != 0 => {
                return Decision::deny(
                    revoke_message(req, classes & g.revoke_on(), g.id()),
                    Some(g.id().to_string()),
                    classes,
                );
            }
            Ok(()) if env_refused => {
                refusal.get_or_insert_with(|| {
                    (
                        format!(
                            "jit: setting the command's environment (VAR=value, -E, \
                             --preserve-env) needs an ALL grant (grant {})",
                            shown(g.id(), 64)
                        ),
                        g.id().to_string(),
                    )
                });
            }
            Ok(()) if g.flags() & GATE_MFA_SUDO != 0 => {
                mfa.get_or_insert_with(|| g.id().to_string());
            }
            Ok(()) => return Decision::allow(true, Some(g.id().to_string()), classes),
        }
    }
    if let Some(id) = mfa {
        return Decision::step_up(id, classes);
    }
    if let Some((msg, id)) = refusal {
        return Decision::deny(msg, Some(id), classes);
    }
    if let Some(id) = armed {
        return Decision::deny(
            format!("jit: grant {} is armed: activate it first", shown(&id, 64)),
            Some(id),
            classes,
        );
    }
    if managed && !snap.holds_jit_sudo(inv, now) {
        // A managed admin re-enabled by a live --enable grant, whose sudo right comes from
        // the local sudoers (not from jit-sudo): sudoers decided, under the enabling grant.
        return Decision::allow(true, enabling, classes);
    }
    // Not live any more (or never had a sudo scope): name the latest such grant.
    let last = grants
        .iter()
        .filter(|g| has_scope(g))
        .max_by_key(|g| g.not_after());
    match last {
        Some(g) if g.not_after() <= now => Decision::deny(
            format!("jit: grant {} has expired", shown(g.id(), 64)),
            Some(g.id().to_string()),
            classes,
        ),
        Some(g) => Decision::deny(
            format!("jit: grant {} is not valid yet", shown(g.id(), 64)),
            Some(g.id().to_string()),
            classes,
        ),
        None => Decision::deny(
            format!(
                "jit: {} has no live grant with a sudo scope",
                shown(&inv.user, 64)
            ),
            None,
            classes,
        ),
    }
}

/// The line for a command in one of the grant's `--revoke-on` classes.
fn revoke_message(req: &SudoRequest<'_>, hit: u32, grant: &str) -> String {
    format!(
        "jit: {} is in class {}, which ends grant {}: refused",
        shown(req.command, 256),
        class_names(hit).join(", "),
        shown(grant, 64)
    )
}

#[cfg(test)]
mod tests;
