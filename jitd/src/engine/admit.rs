//! Admission: whether a grant may exist, in two pure steps. [`validate`] checks the request
//! against the configuration and the local files; [`place`] checks it against the grants
//! already held (an account grant covering the window, group memberships) and allocates the
//! account's uid. Between the two the executor makes sure the grant can be made durable and
//! audited (`crate::effects::grants`). A grant from the local socket and one from the central
//! service go through the same two steps ([`super::GrantSource`]).

use std::collections::HashSet;

use jit_core::time::UnixTime;
use jit_core::validate::{
    validate_account_name, validate_name, validate_ssh_key, validate_text, ValidationError,
};
use jit_proto::ThinVec;
use jit_proto::{ErrorCode, Grant, GrantSpec, GrantState};

use super::{refuse, GrantSource, Refusal};
use crate::config::Config;
use crate::localdb::LocalDb;
use crate::state::State;

/// What admission asks of the host beyond the local files, answered by the executor (these
/// read files). Asked at most once each, at the point of the checks where the answer matters.
pub trait HostFacts {
    /// Whether sudo_jit guards sudo here (sudo.conf); the error says why not.
    fn sudo_guarded(&self) -> Result<(), String>;
    /// Whether `user` has a TOTP secret.
    fn mfa_enrolled(&self, user: &str) -> bool;
    /// Whether jitd's process monitor runs here and sees `classes` (per-grant cgroups and the
    /// event sources those classes come from); the error says why not. Asked only for
    /// `--revoke-on` classes that only the monitor can see.
    fn monitoring(&self, classes: &[String]) -> Result<(), String>;
    /// Tokenization: whether `path` is a program no user can change (`--program`); the error
    /// says why not. The default is the real check (it opens the path from `/`).
    fn program_trusted(&self, cfg: &Config, path: &str) -> Result<(), String> {
        crate::tokenize::policy::open_trusted(path, cfg).map(drop)
    }
    /// Tokenization: whether jitd itself holds `cap` (a canonical name) and can hand it on;
    /// the error says why not. The default reads jitd's own capability sets.
    fn cap_holdable(&self, cap: &str) -> Result<(), String> {
        crate::tokenize::holdable::check_self(cap)
    }
}

/// A request that passed [`validate`]: canonical spellings and the window it covers.
#[derive(Debug, Clone)]
pub struct Admission {
    /// The request as sent.
    pub spec: GrantSpec,
    /// Group names, sorted, without duplicates (checked by [`place`]).
    pub groups: Vec<String>,
    /// The validated sudo scope.
    pub scope: SudoScopeSpec,
    /// The validated login conditions.
    pub login: LoginConditions,
    /// Tokenization: `--cap`/`--program` (tokenize/policy.rs).
    pub tokens: crate::tokenize::policy::Tokens,
    /// Start of the window.
    pub not_before: UnixTime,
    /// End of the window.
    pub not_after: UnixTime,
}

/// Validated login conditions, in canonical spelling.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoginConditions {
    /// `--from` networks.
    pub from: Vec<String>,
    /// `--service` PAM services.
    pub services: Vec<String>,
    /// `--window` time windows.
    pub windows: Vec<String>,
}

/// A validated sudo scope, in canonical spelling.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SudoScopeSpec {
    /// `--sudo` entries.
    pub sudo: Vec<String>,
    /// `--runas` targets.
    pub runas: Vec<String>,
    /// `--revoke-on` classes.
    pub revoke_on: Vec<String>,
}

fn refused(m: impl Into<String>) -> Refusal {
    refuse(ErrorCode::Refused, m)
}

fn bad(e: ValidationError) -> Refusal {
    refused(e.to_string())
}

/// jit's own group names: never a user name, never granted.
fn own_groups(cfg: &Config) -> [&String; 3] {
    [&cfg.group_users, &cfg.group_sudo, &cfg.group_mfa]
}

fn config_name(cfg: &Config, default: &str) -> String {
    cfg.source
        .as_ref()
        .map_or(default.to_string(), |p| p.display().to_string())
}

/// Checks a grant request against the configuration and the local files (`local`: their
/// contents, or why they could not be read). No state is consulted: see [`place`].
///
/// # Errors
/// The refusal the client sees (`refused` for a request that may not be granted, `internal`
/// for local files that cannot be read).
pub fn validate(
    cfg: &Config,
    local: Result<&LocalDb, &str>,
    spec: &GrantSpec,
    facts: &dyn HostFacts,
    now: UnixTime,
) -> Result<Admission, Refusal> {
    if spec.user == "root" {
        return Err(refused("root is never managed by jit"));
    }
    if spec.account {
        validate_account_name(&spec.user).map_err(bad)?;
    } else {
        validate_name("user name", &spec.user).map_err(bad)?;
    }
    if spec.duration_secs <= 0 {
        return Err(refused("--for must be a positive duration"));
    }
    if spec.duration_secs > cfg.max_grant_secs {
        return Err(refused(format!(
            "--for {} exceeds max_grant {}",
            jit_core::time::format_duration(spec.duration_secs),
            jit_core::time::format_duration(cfg.max_grant_secs)
        )));
    }
    if !(0..=31 * 86_400).contains(&spec.start_in_secs) {
        return Err(refused("--start-in must be between 0s and 31d"));
    }
    validate_text("reason", &spec.reason, 256).map_err(bad)?;
    validate_text("ticket", &spec.ticket, 64).map_err(bad)?;
    validate_text("requested-by", &spec.requested_by, 64).map_err(bad)?;
    if !spec.ssh_keys.is_empty() && !spec.account {
        return Err(refused(
            "--ssh-key needs --account (keys are served only for ephemeral accounts)",
        ));
    }
    if spec.ssh_keys.len() > 16 {
        return Err(refused("at most 16 ssh keys per grant"));
    }
    for k in &spec.ssh_keys {
        validate_ssh_key(k).map_err(bad)?;
    }
    let mut groups = spec.groups.clone();
    groups.sort();
    groups.dedup();
    if groups.len() > 32 {
        return Err(refused("at most 32 groups per grant"));
    }
    // tokenize: --cap/--program admitted by policy (tokenize/policy.rs).
    let tokens = crate::tokenize::policy::admit_caps(spec, cfg).map_err(refused)?;
    for p in &tokens.programs {
        facts.program_trusted(cfg, p).map_err(refused)?;
    }
    for c in &tokens.caps {
        facts.cap_holdable(c).map_err(refused)?;
    }
    if !spec.account
        && !spec.enable
        && groups.is_empty()
        && spec.sudo.is_empty()
        && tokens.caps.is_empty()
    {
        return Err(refused(
            "nothing to grant: give --account, --enable, --group, --sudo and/or --cap",
        ));
    }
    if own_groups(cfg).contains(&&spec.user) {
        return Err(refused(format!(
            "{:?} is one of jit's own group names",
            spec.user
        )));
    }
    let local = local.map_err(|e| refuse(ErrorCode::Internal, e))?;
    if spec.account {
        if let Some(other) = local.name_taken(&spec.user) {
            return Err(refused(format!(
                "{:?} exists locally (as {other:?} in {} or {}): jit never shadows a local name",
                spec.user,
                cfg.passwd_file.display(),
                cfg.group_file.display()
            )));
        }
    }
    let scope = check_sudo_scope(spec, facts)?;
    let login = check_login_conditions(cfg, spec, local)?;
    if (spec.mfa || spec.mfa_sudo) && !facts.mfa_enrolled(&spec.user) {
        return Err(refused(format!(
            "--mfa{}: {} has no TOTP secret yet (jitctl mfa enroll {})",
            if spec.mfa { "" } else { "-sudo" },
            spec.user,
            spec.user
        )));
    }
    let not_before = now + spec.start_in_secs;
    Ok(Admission {
        spec: spec.clone(),
        groups,
        scope,
        login,
        tokens,
        not_before,
        not_after: not_before + spec.duration_secs,
    })
}

/// Checks an admitted request against the grants `state` holds, allocates an account's uid
/// (recorded in the uid ledger) and returns the grant under id `id`: live at once if its
/// window has begun, else pending. The caller inserts it and makes it durable, and restores
/// the ledger if that fails.
///
/// # Errors
/// The refusal the client sees; `state` is unchanged then.
pub fn place(
    cfg: &Config,
    local: &LocalDb,
    state: &mut State,
    adm: Admission,
    id: String,
    source: GrantSource,
    now: UnixTime,
) -> Result<Grant, Refusal> {
    let Admission {
        spec,
        groups,
        scope,
        login,
        tokens,
        not_before,
        not_after,
    } = adm;
    if !spec.account && local.user(&spec.user).is_none() {
        let has_account = state.grants.values().any(|g| {
            g.account
                && g.user == spec.user
                && !g.state.is_ended()
                && g.not_before <= not_before
                && g.not_after >= not_after
        });
        if !has_account {
            return Err(refused(format!("no local user {:?} (and no account grant for it covering this window): add --account to create one", spec.user)));
        }
    }
    for gname in &groups {
        check_group(cfg, local, &spec.user, gname)?;
    }
    let uid = if spec.account {
        Some(allocate_uid(cfg, state, &spec.user, local)?)
    } else {
        None
    };
    let starts_now = not_before <= now;
    Ok(Grant {
        id: id.into(),
        user: spec.user.clone().into(),
        state: if starts_now {
            GrantState::Live
        } else {
            GrantState::Pending
        },
        not_before,
        not_after,
        created_at: now,
        created_by: source.as_str().into(),
        source,
        account: spec.account,
        uid,
        groups: groups.into(),
        ssh_keys: spec.ssh_keys.iter().map(|k| k.trim().to_string()).collect(),
        reason: spec.reason,
        ticket: spec.ticket,
        requested_by: spec.requested_by,
        sudo: scope.sudo.into(),
        runas: scope.runas.into(),
        enable: spec.enable,
        from: login.from.into(),
        services: login.services.into(),
        windows: login.windows.into(),
        mfa: spec.mfa,
        mfa_sudo: spec.mfa_sudo,
        end_with_session: spec.end_with_session,
        revoke_on: scope.revoke_on.into(),
        activated_at: None,
        went_live_at: starts_now.then_some(now),
        ended_at: None,
        end_reason: None,
        torn_down: false,
        certification: None,
        caps: tokens.caps.into(), // tokenize
        programs: tokens.programs.into(),
    })
}

/// The grant a spent break-glass code opens: `--enable` for `account`, live for `secs` from
/// `now`. It is not admitted through [`validate`]: the code is the authorization, and an
/// emergency must not be refused for want of room (the executor applies it even then).
pub fn breakglass_grant(
    id: String,
    account: &str,
    reason: String,
    secs: i64,
    now: UnixTime,
) -> Grant {
    Grant {
        id: id.into(),
        user: account.to_string().into(),
        state: GrantState::Live,
        not_before: now,
        not_after: now + secs,
        created_at: now,
        created_by: "break-glass".into(),
        account: false,
        uid: None,
        groups: ThinVec::new(),
        ssh_keys: ThinVec::new(),
        reason,
        ticket: String::new(),
        requested_by: account.to_string(),
        sudo: ThinVec::new(),
        runas: ThinVec::new(),
        enable: true,
        from: ThinVec::new(),
        services: ThinVec::new(),
        windows: ThinVec::new(),
        mfa: false,
        mfa_sudo: false,
        end_with_session: false,
        revoke_on: ThinVec::new(),
        activated_at: None,
        went_live_at: Some(now),
        ended_at: None,
        end_reason: None,
        torn_down: false,
        source: GrantSource::Local,
        certification: None,
        caps: ThinVec::new(),
        programs: ThinVec::new(),
    }
}

/// One `--group`: a local group, not jit's own, not root-equivalent, not a reserved gid, and
/// not one `user` already belongs to locally.
fn check_group(cfg: &Config, local: &LocalDb, user: &str, gname: &str) -> Result<(), Refusal> {
    validate_name("group name", gname).map_err(bad)?;
    if own_groups(cfg).iter().any(|g| g.as_str() == gname) {
        return Err(refused(format!("{gname:?} is managed by jit itself")));
    }
    let lg = local.group(gname).ok_or_else(|| {
        refused(format!(
            "no local group {gname:?} in {}",
            cfg.group_file.display()
        ))
    })?;
    check_not_denied(cfg, gname, lg.gid, local)?;
    if lg.gid == 0 || lg.gid == 65_534 || lg.gid > i32::MAX as u32 {
        return Err(refused(format!(
            "group {gname:?} has gid {}: never granted (0, 65534 and ids above 2^31-1 are refused)",
            lg.gid
        )));
    }
    if lg.members.iter().any(|m| m == user) || local.user(user).is_some_and(|u| u.gid == lg.gid) {
        return Err(refused(format!(
            "{user} is already a local member of {gname}"
        )));
    }
    Ok(())
}

/// Validates the login side of a grant: `--enable` (a managed local admin), `--from`,
/// `--service`, `--window`, `--end-with-session`, `--mfa-sudo`. Conditions apply to logins,
/// so they need a login identity (`--account` or `--enable`): a local user's own logins are
/// never jit's to gate.
fn check_login_conditions(
    cfg: &Config,
    spec: &GrantSpec,
    local: &LocalDb,
) -> Result<LoginConditions, Refusal> {
    use jit_core::policy::{net, window};
    let managed = cfg.managed_accounts.iter().any(|m| m == &spec.user);
    if spec.enable {
        if spec.account {
            return Err(refused(
                "--enable is for a managed local admin account; --account makes an ephemeral one: choose one",
            ));
        }
        if !managed {
            return Err(refused(format!(
                "--enable: {:?} is not in managed_accounts of {}",
                spec.user,
                config_name(cfg, "jitd's configuration")
            )));
        }
        if local.user(&spec.user).is_none() {
            return Err(refused(format!(
                "--enable: managed account {:?} is not in {}",
                spec.user,
                cfg.passwd_file.display()
            )));
        }
    } else if managed {
        return Err(refused(format!(
            "{:?} is a managed admin account: its grants must --enable it",
            spec.user
        )));
    }
    let login = spec.account || spec.enable;
    for (set, flag) in [
        (!spec.from.is_empty(), "--from"),
        (!spec.services.is_empty(), "--service"),
        (!spec.windows.is_empty(), "--window"),
        (spec.end_with_session, "--end-with-session"),
    ] {
        if set && !login {
            return Err(refused(format!(
                "{flag} applies to logins: it needs --account or --enable (a local user's own logins are not jit's to gate)"
            )));
        }
    }
    if spec.mfa_sudo && spec.sudo.is_empty() {
        return Err(refused("--mfa-sudo needs --sudo"));
    }
    if spec.from.len() > 32 || spec.services.len() > 16 || spec.windows.len() > 16 {
        return Err(refused(
            "at most 32 --from, 16 --service and 16 --window entries per grant",
        ));
    }
    let mut out = LoginConditions::default();
    for f in &spec.from {
        let c = net::parse_cidr(f).map_err(|e| refused(format!("--from {f:?}: {e}")))?;
        out.from.push(c.to_string());
    }
    for sv in &spec.services {
        validate_name("service", sv).map_err(|e| refused(format!("--service: {e}")))?;
        out.services.push(sv.clone());
    }
    for w in &spec.windows {
        window::parse_window(w).map_err(|e| refused(format!("--window {w:?}: {e}")))?;
        out.windows.push(w.trim().to_string());
    }
    for v in [&mut out.from, &mut out.services, &mut out.windows] {
        v.sort();
        v.dedup();
    }
    Ok(out)
}

/// Validates `--sudo`, `--runas` and `--revoke-on` and makes sure sudo_jit guards sudo here
/// (without it the jit-sudo sudoers rule would give everything).
fn check_sudo_scope(spec: &GrantSpec, facts: &dyn HostFacts) -> Result<SudoScopeSpec, Refusal> {
    use jit_core::policy::sudo;
    let bad = |e: jit_core::policy::PolicyError| refused(e.to_string());
    if spec.sudo.is_empty() {
        if !spec.runas.is_empty() {
            return Err(refused("--runas applies to sudo: it needs --sudo"));
        }
        return Ok(SudoScopeSpec {
            revoke_on: check_revoke_on(spec, facts)?,
            ..SudoScopeSpec::default()
        });
    }
    if spec.sudo.len() > 64 || spec.runas.len() > 16 {
        return Err(refused(
            "at most 64 --sudo and 16 --runas entries per grant",
        ));
    }
    let mut out = SudoScopeSpec::default();
    for s in &spec.sudo {
        out.sudo
            .push(sudo::parse_scope_entry(s).map_err(bad)?.to_string());
    }
    for r in &spec.runas {
        out.runas
            .push(sudo::parse_runas(r).map_err(bad)?.to_string());
    }
    out.revoke_on = check_revoke_on(spec, facts)?;
    facts.sudo_guarded().map_err(|e| {
        refused(format!(
            "--sudo needs the sudo_jit plugin to guard sudo on this host: {e}"
        ))
    })?;
    Ok(out)
}

/// Validates `--revoke-on` classes. Two watchers can act on them: sudo_jit classifies the
/// commands of a `--sudo` grant itself, with or without jitd's monitor; everything else (what a
/// login of an `--account` or `--enable` grant does, `lateral-movement`, which sudo_jit does
/// not know) is seen only by jitd's process monitor, which watches the processes in the
/// grant's cgroup. So a grant whose processes never join a cgroup (a local user's `--group` or
/// `--cap` grant: their logins are their own) cannot name classes, and neither can a grant
/// that would rely on the monitor where it does not run: both would be watched by nothing.
fn check_revoke_on(spec: &GrantSpec, facts: &dyn HostFacts) -> Result<Vec<String>, Refusal> {
    use jit_core::policy::classify;
    let mut out = Vec::new();
    for c in &spec.revoke_on {
        // lateral-movement is seen by jitd's process monitor only (crate::monitor).
        if classify::parse_class(c).is_none() && c != crate::monitor::LATERAL_MOVEMENT {
            return Err(refused(format!(
                "--revoke-on {:?}: use ioc, software-install, account-change, sensitive-read or lateral-movement",
                c
            )));
        }
        out.push(c.clone());
    }
    out.sort();
    out.dedup();
    if out.is_empty() {
        return Ok(out);
    }
    if spec.sudo.is_empty() && !spec.account && !spec.enable {
        return Err(refused(
            "--revoke-on watches the grant's processes: its logins (--account, --enable) and \
             its sudo commands (--sudo); this grant has neither (a local user's own logins are \
             not the grant's)",
        ));
    }
    let lateral = out.iter().any(|c| c == crate::monitor::LATERAL_MOVEMENT);
    if spec.sudo.is_empty() || lateral {
        let watched = if spec.sudo.is_empty() {
            out.clone()
        } else {
            vec![crate::monitor::LATERAL_MOVEMENT.to_string()]
        };
        facts.monitoring(&watched).map_err(|e| {
            refused(format!(
                "--revoke-on {}: {} seen only by jitd's process monitor, which is not running on \
                 this host: {e}",
                if lateral && !spec.sudo.is_empty() {
                    crate::monitor::LATERAL_MOVEMENT.to_string()
                } else {
                    out.join(",")
                },
                if spec.sudo.is_empty() {
                    "without --sudo the grant's processes are"
                } else {
                    "this class is"
                }
            ))
        })?;
    }
    Ok(out)
}

/// Refuses a root-equivalent group (the configured deny list), by name and by gid, so a
/// second name for a denied gid in /etc/group does not slip through.
fn check_not_denied(cfg: &Config, gname: &str, gid: u32, local: &LocalDb) -> Result<(), Refusal> {
    let denied = cfg
        .deny_groups
        .iter()
        .find(|d| d.as_str() == gname || local.group(d).is_some_and(|dg| dg.gid == gid));
    let Some(d) = denied else {
        return Ok(());
    };
    let config = config_name(cfg, "jitd.toml");
    let via = if d == gname {
        String::new()
    } else {
        format!(" (gid {gid} is also {d:?})")
    };
    Err(refused(format!(
        "group {gname:?}{via} is root-equivalent and on jitd's deny list (deny_groups in {config}); an operator who must grant it lists it in allow_groups"
    )))
}

/// The uid of ephemeral account `name`: the one the ledger recorded for it, else the lowest
/// in the range that no identity ever had and no local user or group has (recorded now).
fn allocate_uid(
    cfg: &Config,
    state: &mut State,
    name: &str,
    local: &LocalDb,
) -> Result<u32, Refusal> {
    if let Some(&u) = state.uid_ledger.get(name) {
        if local.id_taken(u) {
            return Err(refused(format!("{name}'s recorded uid {u} is now used by a local user or group; resolve that first")));
        }
        return Ok(u);
    }
    // Ids are handed out upwards and never again: the first free id above the highest one
    // recorded (a cached ceiling, `State::uid_ceiling`), found without building a set of every
    // recorded id (an add at 50 000 identities spent most of its time on that set). Only when
    // the top of the range is used up are the ids below searched for one never recorded (a
    // gap a local id once held).
    let free = |u: &u32| !local.id_taken(*u);
    let above = state
        .uid_ceiling()
        .map_or(cfg.uid_min, |m| m.saturating_add(1).max(cfg.uid_min));
    let uid = match (above..=cfg.account_uid_max()).find(free) {
        Some(u) => u,
        None => {
            let used: HashSet<u32> = state.uid_ledger.values().copied().collect();
            (cfg.uid_min..=cfg.account_uid_max())
                .find(|u| !used.contains(u) && free(u))
                .ok_or_else(|| {
                    refused("uid_range is exhausted: every id has been used by an identity")
                })?
        }
    };
    state.record_uid(name.to_string(), uid);
    Ok(uid)
}

#[cfg(test)]
mod tests;
