//! The policy file applied with `jit-server apply`: people, roles (a method bundle with
//! `jitctl grant add`'s vocabulary, a label selector and a maximum), entitlements and the
//! approval policy per role. Parsed strictly, validated whole, then swapped in one transaction.

use std::collections::{BTreeMap, BTreeSet};

use jit_core::time::parse_duration;
use serde::{Deserialize, Serialize};
use sqlx::Row;

use crate::db::{audit, get_i64, get_str, Db};
use crate::error::{Error, Result};
use crate::util::{valid_account_name, valid_object_name};

/// Actors the server writes into the audit for itself; no person may be called so.
pub const RESERVED_ACTORS: &[&str] = &["operator", "server", "ticket"];

/// Longest reason accepted anywhere.
pub const MAX_REASON: usize = 1024;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyFile {
    #[serde(default)]
    pub person: Vec<PersonDef>,
    #[serde(default)]
    pub role: Vec<RoleDef>,
    #[serde(default)]
    pub entitlement: Vec<EntitlementDef>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PersonDef {
    pub name: String,
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default)]
    pub email: String,
    #[serde(default)]
    pub ssh_keys: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleDef {
    pub name: String,
    /// Label selector of the hosts this role may ever be granted on (labels set on the server).
    pub hosts: BTreeMap<String, String>,
    #[serde(default)]
    pub account: bool,
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default)]
    pub sudo: Vec<String>,
    #[serde(default)]
    pub runas: Vec<String>,
    #[serde(default)]
    pub enable: bool,
    #[serde(default)]
    pub from: Vec<String>,
    #[serde(default)]
    pub services: Vec<String>,
    #[serde(default)]
    pub windows: Vec<String>,
    #[serde(default)]
    pub mfa: bool,
    #[serde(default)]
    pub mfa_sudo: bool,
    #[serde(default)]
    pub end_with_session: bool,
    #[serde(default)]
    pub revoke_on: Vec<String>,
    /// End the grant on a host that goes stale.
    #[serde(default)]
    pub strict: bool,
    /// Tokenization (`jitctl grant add --cap`): capabilities the role's `programs` run with
    /// through `jitctl run`, as the person, never as root.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub caps: Vec<String>,
    /// Tokenization (`--program`): absolute paths of the programs that get `caps`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub programs: Vec<String>,
    /// Root-equivalent capabilities this role may carry anyway (refused otherwise); each
    /// host's own `allow_caps` in jitd.toml must allow them too.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_root_caps: Vec<String>,
    /// Longest grant (`2h`); every path that sets a duration clamps to it.
    pub max: String,
    #[serde(default)]
    pub approval: ApprovalDef,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApprovalDef {
    /// Distinct approvers needed (never the requester).
    pub approvals: u32,
    /// Groups whose current members may approve or deny.
    pub approvers: Vec<String>,
    /// Denials that end the request.
    pub deny: u32,
    /// Shortest reason (after trimming).
    pub reason_min: usize,
    /// Ticket pattern, full-matched; absent: no ticket needed.
    pub ticket: Option<String>,
    /// How long a request may wait for review.
    pub pending_ttl: String,
    /// Groups whose requests are approved without review (audited as such).
    pub auto_approve: Vec<String>,
    /// Check the ticket with the configured ticket service when filed and while live.
    pub ticket_check: bool,
}

impl Default for ApprovalDef {
    fn default() -> Self {
        ApprovalDef {
            approvals: 1,
            approvers: Vec::new(),
            deny: 1,
            reason_min: 10,
            ticket: None,
            pending_ttl: "1h".into(),
            auto_approve: Vec::new(),
            ticket_check: false,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntitlementDef {
    /// People or groups.
    pub who: Vec<String>,
    pub roles: Vec<String>,
    /// Optional further label selector the hosts must match.
    #[serde(default)]
    pub hosts: BTreeMap<String, String>,
}

/// Most capabilities and programs one role may name (jitd's own limit per grant).
pub const MAX_TOKENIZE_ITEMS: usize = 16;

impl RoleDef {
    /// The role's capabilities in canonical form (`CAP_NET_RAW`), checked as jitd's admission
    /// checks them where that can be done centrally: every name a Linux capability, no
    /// root-equivalent one unless `allow_root_caps` names it, caps and programs together, at most
    /// 16 of each, programs absolute normal paths. What only the host can check (the program
    /// is root-owned, not writable, not a launcher; the host's own `allow_caps`) jitd's
    /// admission checks when the grant arrives, and refuses the grant there if it fails.
    pub fn cap_names(&self) -> Result<Vec<String>> {
        let bad = |m: String| Error::bad(format!("role {}: {m}", self.name));
        if self.caps.is_empty() != self.programs.is_empty() {
            return Err(bad(
                "caps and programs go together (the programs that run with the capabilities)"
                    .into(),
            ));
        }
        if self.caps.len() > MAX_TOKENIZE_ITEMS || self.programs.len() > MAX_TOKENIZE_ITEMS {
            return Err(bad(format!(
                "at most {MAX_TOKENIZE_ITEMS} caps and {MAX_TOKENIZE_ITEMS} programs"
            )));
        }
        let canon = |c: &str| -> Result<String> {
            let n = jit_core::caps::parse(c).map_err(|e| bad(e.to_string()))?;
            Ok(jit_core::caps::name(n).unwrap_or_default().to_string())
        };
        let allowed = self
            .allow_root_caps
            .iter()
            .map(|c| canon(c))
            .collect::<Result<Vec<_>>>()?;
        let mut out = Vec::new();
        for c in &self.caps {
            let name = canon(c)?;
            if let Some(why) = jit_core::caps::root_equivalent(&name) {
                if !allowed.contains(&name) {
                    return Err(bad(format!(
                        "{name} amounts to root ({why}); refused unless allow_root_caps names it"
                    )));
                }
            }
            if !out.contains(&name) {
                out.push(name);
            }
        }
        out.sort();
        for p in &self.programs {
            let normal = p.starts_with('/')
                && p != "/"
                && p.len() <= 4096
                && !p.chars().any(char::is_control)
                && !p[1..]
                    .split('/')
                    .any(|c| c.is_empty() || c == "." || c == "..");
            if !normal {
                return Err(bad(format!(
                    "program {:?} is not an absolute normal path",
                    p.chars().take(80).collect::<String>()
                )));
            }
        }
        Ok(out)
    }

    pub fn max_secs(&self) -> Result<i64> {
        parse_duration(&self.max).map_err(|e| Error::bad(format!("role {}: max: {e}", self.name)))
    }
    pub fn pending_ttl_secs(&self) -> Result<i64> {
        parse_duration(&self.approval.pending_ttl)
            .map_err(|e| Error::bad(format!("role {}: pending_ttl: {e}", self.name)))
    }
    /// The compiled ticket pattern, anchored so it must match the whole ticket.
    pub fn ticket_regex(&self) -> Result<Option<regex::Regex>> {
        match &self.approval.ticket {
            None => Ok(None),
            Some(p) => regex::Regex::new(&format!("^(?:{p})$"))
                .map(Some)
                .map_err(|e| Error::bad(format!("role {}: ticket pattern: {e}", self.name))),
        }
    }
}

fn check_list(what: &str, items: &[String], max_len: usize) -> Result<()> {
    if items.len() > 64 {
        return Err(Error::bad(format!("{what}: more than 64 entries")));
    }
    for i in items {
        if i.is_empty() || i.len() > max_len || i.chars().any(char::is_control) {
            return Err(Error::bad(format!(
                "{what}: entry {i:?} empty, too long or with control characters"
            )));
        }
    }
    Ok(())
}

impl PolicyFile {
    pub fn parse(text: &str) -> Result<PolicyFile> {
        if text.len() > 4 << 20 {
            return Err(Error::bad("policy file larger than 4 MiB"));
        }
        let mut p: PolicyFile =
            toml::from_str(text).map_err(|e| Error::bad(format!("policy: {e}")))?;
        // Group order carries no meaning: stored sorted, so an unchanged file shows no diff.
        for person in &mut p.person {
            person.groups.sort();
            person.groups.dedup();
        }
        p.validate()?;
        Ok(p)
    }

    /// Whole-file validation: nothing is applied unless all of it is sound.
    pub fn validate(&self) -> Result<()> {
        let mut people = BTreeSet::new();
        let mut groups = BTreeSet::new();
        for p in &self.person {
            // Names the server itself uses as audit actors.
            if RESERVED_ACTORS.contains(&p.name.as_str()) {
                return Err(Error::bad(format!(
                    "person {:?}: the name is reserved for the server's own audit records",
                    p.name
                )));
            }
            if !valid_account_name(&p.name) {
                return Err(Error::bad(format!(
                    "person {:?}: names are lower-case account names",
                    p.name
                )));
            }
            if !people.insert(p.name.clone()) {
                return Err(Error::bad(format!("person {} defined twice", p.name)));
            }
            for g in &p.groups {
                if !valid_account_name(g) {
                    return Err(Error::bad(format!(
                        "person {}: group {g:?} is not a valid name",
                        p.name
                    )));
                }
                groups.insert(g.clone());
            }
            check_list(&format!("person {} ssh_keys", p.name), &p.ssh_keys, 8192)?;
            if p.email.len() > 256 || p.email.chars().any(char::is_control) {
                return Err(Error::bad(format!("person {}: bad email", p.name)));
            }
        }
        let mut roles = BTreeSet::new();
        for r in &self.role {
            if !valid_object_name(&r.name) {
                return Err(Error::bad(format!("role {:?}: bad name", r.name)));
            }
            if !roles.insert(r.name.clone()) {
                return Err(Error::bad(format!("role {} defined twice", r.name)));
            }
            if r.hosts.is_empty() {
                return Err(Error::bad(format!(
                    "role {}: hosts selector is empty (an empty selector never means every host)",
                    r.name
                )));
            }
            for (k, v) in &r.hosts {
                if !valid_object_name(k) || !valid_object_name(v) {
                    return Err(Error::bad(format!("role {}: bad label {k}={v}", r.name)));
                }
            }
            r.max_secs()?;
            r.cap_names()?;
            r.pending_ttl_secs()?;
            r.ticket_regex()?;
            let a = &r.approval;
            if a.approvals == 0 && a.auto_approve.is_empty() {
                return Err(Error::bad(format!(
                    "role {}: approvals must be at least 1",
                    r.name
                )));
            }
            if a.approvals > 0 && a.approvers.is_empty() {
                return Err(Error::bad(format!("role {}: approvers is empty", r.name)));
            }
            if a.ticket_check && a.ticket.is_none() {
                return Err(Error::bad(format!(
                    "role {}: ticket_check needs a ticket pattern",
                    r.name
                )));
            }
            if a.deny == 0 {
                return Err(Error::bad(format!(
                    "role {}: deny threshold must be at least 1",
                    r.name
                )));
            }
            if a.reason_min == 0 || a.reason_min > MAX_REASON {
                return Err(Error::bad(format!(
                    "role {}: reason_min must be 1..{MAX_REASON}",
                    r.name
                )));
            }
            for g in a.approvers.iter().chain(&a.auto_approve).chain(&r.groups) {
                if !valid_account_name(g) {
                    return Err(Error::bad(format!(
                        "role {}: group {g:?} is not a valid name",
                        r.name
                    )));
                }
            }
            for list in [
                &r.sudo,
                &r.runas,
                &r.from,
                &r.services,
                &r.windows,
                &r.revoke_on,
            ] {
                check_list(&format!("role {}", r.name), list, 512)?;
            }
        }
        for (i, e) in self.entitlement.iter().enumerate() {
            if e.who.is_empty() || e.roles.is_empty() {
                return Err(Error::bad(format!(
                    "entitlement {}: who and roles must not be empty",
                    i + 1
                )));
            }
            for w in &e.who {
                if !people.contains(w) && !groups.contains(w) {
                    return Err(Error::bad(format!(
                        "entitlement {}: {w:?} is no person or group",
                        i + 1
                    )));
                }
            }
            for r in &e.roles {
                if !roles.contains(r) {
                    return Err(Error::bad(format!("entitlement {}: no role {r:?}", i + 1)));
                }
            }
        }
        Ok(())
    }
}

/// The policy as the database holds it now (people flagged admin by `init` included).
pub async fn current(db: &Db) -> Result<PolicyFile> {
    let mut p = PolicyFile::default();
    for row in sqlx::query("SELECT name, email, ssh_keys FROM person ORDER BY name")
        .fetch_all(&db.pool)
        .await?
    {
        let name = get_str(&row, "name")?;
        let groups = sqlx::query("SELECT grp FROM person_group WHERE person = $1 ORDER BY grp")
            .bind(&name)
            .fetch_all(&db.pool)
            .await?
            .iter()
            .map(|r| get_str(r, "grp"))
            .collect::<Result<Vec<_>>>()?;
        p.person.push(PersonDef {
            name,
            groups,
            email: get_str(&row, "email")?,
            ssh_keys: serde_json::from_str(&get_str(&row, "ssh_keys")?)?,
        });
    }
    for row in sqlx::query("SELECT spec FROM role ORDER BY name")
        .fetch_all(&db.pool)
        .await?
    {
        p.role.push(serde_json::from_str(&get_str(&row, "spec")?)?);
    }
    for row in sqlx::query("SELECT spec FROM entitlement ORDER BY idx")
        .fetch_all(&db.pool)
        .await?
    {
        p.entitlement
            .push(serde_json::from_str(&get_str(&row, "spec")?)?);
    }
    Ok(p)
}

/// Human diff between the current and the new policy, one line per change.
pub fn diff(old: &PolicyFile, new: &PolicyFile, admins: &BTreeSet<String>) -> Vec<String> {
    let mut out = Vec::new();
    let old_p: BTreeMap<_, _> = old.person.iter().map(|p| (p.name.clone(), p)).collect();
    let new_p: BTreeMap<_, _> = new.person.iter().map(|p| (p.name.clone(), p)).collect();
    for (n, p) in &new_p {
        match old_p.get(n) {
            None => out.push(format!("+ person {n} groups={:?}", p.groups)),
            Some(o) if *o != *p => out.push(format!("~ person {n} groups={:?}", p.groups)),
            _ => {}
        }
    }
    for n in old_p.keys() {
        if !new_p.contains_key(n) && !admins.contains(n) {
            out.push(format!("- person {n}"));
        }
    }
    let old_r: BTreeMap<_, _> = old.role.iter().map(|r| (r.name.clone(), r)).collect();
    let new_r: BTreeMap<_, _> = new.role.iter().map(|r| (r.name.clone(), r)).collect();
    for (n, r) in &new_r {
        match old_r.get(n) {
            None => out.push(format!("+ role {n}")),
            Some(o) if *o != *r => out.push(format!("~ role {n}")),
            _ => {}
        }
    }
    for n in old_r.keys() {
        if !new_r.contains_key(n) {
            out.push(format!("- role {n}"));
        }
    }
    if old.entitlement != new.entitlement {
        for e in &old.entitlement {
            if !new.entitlement.contains(e) {
                out.push(format!("- entitlement who={:?} roles={:?}", e.who, e.roles));
            }
        }
        for e in &new.entitlement {
            if !old.entitlement.contains(e) {
                out.push(format!("+ entitlement who={:?} roles={:?}", e.who, e.roles));
            }
        }
    }
    out
}

pub async fn admins(db: &Db) -> Result<BTreeSet<String>> {
    sqlx::query("SELECT name FROM person WHERE admin = 1")
        .fetch_all(&db.pool)
        .await?
        .iter()
        .map(|r| get_str(r, "name"))
        .collect()
}

/// Replaces people (except admins the file does not name), roles and entitlements in one
/// transaction, audited with the diff. Returns the diff lines.
pub async fn apply(db: &Db, new: &PolicyFile, dry_run: bool, now: i64) -> Result<Vec<String>> {
    new.validate()?;
    let old = current(db).await?;
    let admins = admins(db).await?;
    let changes = diff(&old, new, &admins);
    if dry_run || changes.is_empty() {
        return Ok(changes);
    }
    let mut tx = db.write_tx().await?;
    sqlx::query("DELETE FROM person WHERE admin = 0")
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM person_group")
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM role").execute(&mut *tx).await?;
    sqlx::query("DELETE FROM entitlement")
        .execute(&mut *tx)
        .await?;
    for p in &new.person {
        let keys = serde_json::to_string(&p.ssh_keys)?;
        let n = sqlx::query("UPDATE person SET email = $2, ssh_keys = $3 WHERE name = $1")
            .bind(&p.name)
            .bind(&p.email)
            .bind(&keys)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if n == 0 {
            sqlx::query("INSERT INTO person (name, email, ssh_keys, admin) VALUES ($1, $2, $3, 0)")
                .bind(&p.name)
                .bind(&p.email)
                .bind(&keys)
                .execute(&mut *tx)
                .await?;
        }
        for g in &p.groups {
            sqlx::query("INSERT INTO person_group (person, grp) VALUES ($1, $2)")
                .bind(&p.name)
                .bind(g)
                .execute(&mut *tx)
                .await?;
        }
    }
    // Tokens belong to the person record, not to the name: a person removed by this apply
    // loses every token now, so someone added later under the same name does not inherit them.
    let dropped = sqlx::query(
        "UPDATE token SET revoked_at = $1 WHERE revoked_at IS NULL \
         AND person NOT IN (SELECT name FROM person)",
    )
    .bind(now)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if dropped > 0 {
        audit(
            &mut tx,
            now,
            "operator",
            "token.revoke",
            "policy",
            &format!("{dropped} tokens of removed people"),
        )
        .await?;
    }
    for r in &new.role {
        sqlx::query("INSERT INTO role (name, spec) VALUES ($1, $2)")
            .bind(&r.name)
            .bind(serde_json::to_string(r)?)
            .execute(&mut *tx)
            .await?;
    }
    for (i, e) in new.entitlement.iter().enumerate() {
        sqlx::query("INSERT INTO entitlement (idx, spec) VALUES ($1, $2)")
            .bind(i as i64)
            .bind(serde_json::to_string(e)?)
            .execute(&mut *tx)
            .await?;
    }
    audit(
        &mut tx,
        now,
        "operator",
        "policy.apply",
        "policy",
        &changes.join("; "),
    )
    .await?;
    tx.commit().await?;
    Ok(changes)
}

/// A role as stored.
pub async fn role(db: &Db, name: &str) -> Result<Option<RoleDef>> {
    let row = sqlx::query("SELECT spec FROM role WHERE name = $1")
        .bind(name)
        .fetch_optional(&db.pool)
        .await?;
    match row {
        Some(r) => Ok(Some(serde_json::from_str(&get_str(&r, "spec")?)?)),
        None => Ok(None),
    }
}

pub async fn entitlements(db: &Db) -> Result<Vec<EntitlementDef>> {
    sqlx::query("SELECT spec FROM entitlement ORDER BY idx")
        .fetch_all(&db.pool)
        .await?
        .iter()
        .map(|r| Ok(serde_json::from_str(&get_str(r, "spec")?)?))
        .collect()
}

/// A person's current groups.
pub async fn groups_of(conn: &mut sqlx::AnyConnection, person: &str) -> Result<BTreeSet<String>> {
    sqlx::query("SELECT grp FROM person_group WHERE person = $1")
        .bind(person)
        .fetch_all(conn)
        .await?
        .iter()
        .map(|r| get_str(r, "grp"))
        .collect()
}

/// Whether `name` is an admin.
pub async fn is_admin(db: &Db, name: &str) -> Result<bool> {
    let row = sqlx::query("SELECT admin FROM person WHERE name = $1")
        .bind(name)
        .fetch_optional(&db.pool)
        .await?;
    Ok(match row {
        Some(r) => get_i64(&r, "admin")? == 1,
        None => false,
    })
}

/// Used by `init`: the first admin.
pub async fn add_admin(db: &Db, name: &str, now: i64) -> Result<()> {
    let mut tx = db.write_tx().await?;
    sqlx::query("INSERT INTO person (name, email, ssh_keys, admin) VALUES ($1, '', '[]', 1)")
        .bind(name)
        .execute(&mut *tx)
        .await?;
    audit(
        &mut tx,
        now,
        "operator",
        "person.admin",
        name,
        "first admin",
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// `jit-server token issue NAME`: a new bearer token for a person, stored hashed.
pub async fn issue_token(db: &Db, name: &str, now: i64) -> Result<String> {
    let exists = sqlx::query("SELECT name FROM person WHERE name = $1")
        .bind(name)
        .fetch_optional(&db.pool)
        .await?
        .is_some();
    if !exists {
        return Err(Error::not_found(format!(
            "no person {name:?} (apply a policy naming them first)"
        )));
    }
    let token = crate::util::new_secret("jitp")?;
    let mut tx = db.write_tx().await?;
    sqlx::query("INSERT INTO token (hash, person, created_at) VALUES ($1, $2, $3)")
        .bind(crate::util::sha256_hex(token.as_bytes()))
        .bind(name)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    audit(&mut tx, now, "operator", "token.issue", name, "").await?;
    tx.commit().await?;
    Ok(token)
}

/// `jit-server token revoke NAME`: every token of the person stops working.
pub async fn revoke_tokens(db: &Db, name: &str, now: i64) -> Result<u64> {
    let mut tx = db.write_tx().await?;
    let n =
        sqlx::query("UPDATE token SET revoked_at = $2 WHERE person = $1 AND revoked_at IS NULL")
            .bind(name)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
    audit(
        &mut tx,
        now,
        "operator",
        "token.revoke",
        name,
        &format!("{n} tokens"),
    )
    .await?;
    tx.commit().await?;
    Ok(n)
}

/// The person a bearer token belongs to, if it is live and the person still exists.
pub async fn person_for_token(db: &Db, token: &str) -> Result<Option<String>> {
    let row = sqlx::query(
        "SELECT p.name AS name FROM token t JOIN person p ON p.name = t.person \
         WHERE t.hash = $1 AND t.revoked_at IS NULL",
    )
    .bind(crate::util::sha256_hex(token.as_bytes()))
    .fetch_optional(&db.read)
    .await?;
    Ok(match row {
        Some(r) => Some(r.try_get::<String, _>("name")?),
        None => None,
    })
}
