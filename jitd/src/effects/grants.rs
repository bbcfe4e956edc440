//! Grants changed: admitted (the engine's checks, then durability, snapshot, audit), revoked,
//! activated by a proved code, or opened by a break-glass code. Each change is durable (or
//! journaled, for ends) before it is acted on or acknowledged.

use jit_core::time::UnixTime;
use jit_proto::{ErrorCode, Grant, GrantSpec, GrantState};
use serde_json::json;

use super::boottime;
use super::persist::{reserve_for_open_grants, Durable};
use crate::audit::{Event, Severity};
use crate::daemon::{Daemon, Inner};
use crate::engine::admit::{self, HostFacts};
use crate::engine::tick::{self, as_of};
use crate::engine::{refuse, GrantSource, Refusal};
use crate::journal::EndKind;
use crate::nscd;

/// What admission asks of this host, read when asked.
struct Host<'a>(&'a Daemon);

impl HostFacts for Host<'_> {
    fn sudo_guarded(&self) -> Result<(), String> {
        crate::sudoconf::check(&self.0.cfg.sudo_conf).map(|_| ())
    }

    fn mfa_enrolled(&self, user: &str) -> bool {
        // A fleet identity's secret arrives sealed with the document that grants it.
        self.0.totp.is_enrolled(user) || self.0.fleet.has(user)
    }

    fn monitoring(&self, classes: &[String]) -> Result<(), String> {
        self.0.watch_available(classes) // effects/watch.rs
    }
}

impl Daemon {
    /// Admits a grant from `source`: the engine's checks ([`admit::validate`],
    /// [`admit::place`]), then only with state writable and room to record its end; durable
    /// before it is acknowledged, then in the snapshot, audited `grant.created`, and its home
    /// made if it starts now. The one way a grant is added, whatever its source.
    ///
    /// # Errors
    /// The refusal the client sees; nothing changed then.
    pub fn admit(
        &self,
        source: GrantSource,
        spec: &GrantSpec,
        now: UnixTime,
    ) -> Result<Grant, Refusal> {
        let local = self.local_db();
        let adm = admit::validate(
            &self.cfg,
            local.as_deref().map_err(String::as_str),
            spec,
            &Host(self),
            now,
        )?;
        let local = local.map_err(|e| refuse(ErrorCode::Internal, e))?;
        let mut inner = self.lock();
        if !inner.state_writable {
            // Try once more; refuse new privilege while state cannot be made durable.
            self.persist(&mut inner, now).map_err(|e| {
                refuse(
                    ErrorCode::Internal,
                    format!("state is not writable, no new grants: {e}"),
                )
            })?;
        }
        // New privilege only with room to audit it and to record its end later, and room in
        // the snapshot files: past the modules' cap every grant on the host would stop working.
        self.room_for_new_grant(&mut inner)?;
        let weight = crate::snapshot_out::spec_weight(&adm.spec);
        self.room_in_snapshot(&mut inner, weight, now)?;
        let mut id = super::random_id().map_err(|e| refuse(ErrorCode::Internal, e.to_string()))?;
        while inner.state.grants.contains_key(id.as_str()) {
            id = super::random_id().map_err(|e| refuse(ErrorCode::Internal, e.to_string()))?;
        }
        // What `place` may change besides the grant: a new identity's uid in the ledger (the
        // only thing undone if the grant cannot be made durable; a copy of the whole ledger
        // per add cost milliseconds at 50 000 identities).
        let new_identity = !inner.state.uid_ledger.contains_key(adm.spec.user.as_str());
        let grant = admit::place(
            &self.cfg,
            &local,
            &mut inner.state,
            adm,
            id.clone(),
            source,
            now,
        )?;
        // A grant that starts now is live from its first durable write, so adding it costs one
        // state write and one snapshot write, and its home exists when the caller returns.
        let starts_now = grant.state == GrantState::Live;
        let cap = starts_now.then(|| (boottime(), grant.not_after - now));
        if let Some(c) = cap {
            inner.boot_cap.insert(grant.id.clone(), c);
        }
        let before = inner.state.grants.version();
        inner.state.grants.insert(grant.id.clone(), grant.clone());
        // The tick's due times take the new grant in without a walk over every grant.
        let Inner {
            due,
            state,
            teardown_clear,
            ..
        } = &mut *inner;
        if let Some(d) = due {
            d.added(before, state, &grant, cap);
        }
        // A grant that has not ended awaits no teardown: still nothing to tear down.
        if *teardown_clear == Some(before) && !grant.state.is_ended() {
            *teardown_clear = Some(state.grants.version());
        }
        if let Err(e) = self.persist(&mut inner, now) {
            inner.state.grants.remove(&id);
            if new_identity {
                if let Some(user) = grant.uid.map(|_| &grant.user) {
                    inner.state.uid_ledger.remove(user);
                }
            }
            inner.boot_cap.remove(id.as_str());
            return Err(refuse(
                ErrorCode::Internal,
                format!("could not make the grant durable, nothing changed: {e}"),
            ));
        }
        self.count_unmeasured(&mut inner, weight);
        // An added grant only adds records: the deltas carry it (format 1.4).
        self.delta_and_unlock(inner, &id, now);
        let created = (
            Severity::Info,
            Event::GrantCreated,
            json!({
                "grant": id, "user": grant.user.as_str(), "by": grant.created_by, "source": grant.source, "account": grant.account, "uid": grant.uid,
                "groups": grant.groups, "not_before": grant.not_before, "not_after": grant.not_after,
                "reason": grant.reason, "ticket": grant.ticket, "requested_by": grant.requested_by,
                "ssh_keys": grant.ssh_keys.len(), "mfa": grant.mfa, "mfa_sudo": grant.mfa_sudo,
                "enable": grant.enable, "from": grant.from, "services": grant.services,
                "windows": grant.windows, "end_with_session": grant.end_with_session,
                "sudo": grant.sudo, "runas": grant.runas, "revoke_on": grant.revoke_on,
                "caps": grant.caps, "programs": grant.programs, // tokenize
            }),
        );
        // One group commit for the grant's records: created, then live (or armed) with its
        // home, each on disk before the add is acknowledged, with one fsync (not two). The
        // grant in hand is the one admitted: no second lookup and copy under the state lock.
        let mut records = vec![created];
        if starts_now {
            records.extend(self.went_live(&grant, now));
        }
        self.audit.record_all(now, records);
        nscd::invalidate(self.cfg.nscd);
        self.wake.notify_all();
        let inner = self.lock();
        Ok(inner
            .state
            .grants
            .get(id.as_str())
            .map_or(grant, |g| as_of(g, now)))
    }

    /// Ends grant `id` now on behalf of `by` (`root`, `policy`, `session`): durable, out of the
    /// snapshot, caches flushed, then torn down before returning.
    pub(crate) fn revoke_as(
        &self,
        id: &str,
        reason: &str,
        by: &str,
        now: UnixTime,
    ) -> Result<Grant, Refusal> {
        let mut out = self.revoke_many(&[(id.to_string(), reason.to_string())], by, now);
        // One end asked, one outcome given.
        out.pop()
            .unwrap_or_else(|| Err(refuse(ErrorCode::NotFound, format!("no grant {id}"))))
    }

    /// Ends each of `ends` (grant id, reason) now on behalf of `by`, together: one durable
    /// write for all of them, one snapshot write, their `grant.revoked` records in one group
    /// commit, then one teardown pass (one walk of /proc, one set-id sweep) for all. A
    /// document from the server that drops many grants of this host ends them in the time of
    /// one: one by one, each paid its own snapshot rewrite and sweep of every home (~0.35 s
    /// each at 4 096 grants), and the last one ended minutes after the document arrived.
    /// Returns each grant's outcome in the order of `ends`; a refusal (unknown, already ended)
    /// changes nothing for that grant and does not hold back the others.
    pub(crate) fn revoke_many(
        &self,
        ends: &[(String, String)],
        by: &str,
        now: UnixTime,
    ) -> Vec<Result<Grant, Refusal>> {
        let mut out: Vec<Result<Grant, Refusal>> = Vec::with_capacity(ends.len());
        let durable = {
            let mut inner = self.lock();
            let mut ended = Vec::new();
            for (id, reason) in ends {
                let r = tick::revoke(&mut inner.state, id, reason, by, now);
                if r.is_ok() {
                    ended.push((id.clone(), EndKind::Revoked));
                    inner.boot_cap.remove(id.as_str());
                }
                out.push(r);
            }
            if ended.is_empty() {
                return out;
            }
            // Durable before acknowledged: in state.json, or else in the revocation journal.
            // Either way the revocations apply in memory and in the snapshot at once (they only
            // remove privilege), and a failed state write is retried at each tick.
            let durable = self.persist_ends(&mut inner, &ended, now);
            self.snapshot_and_unlock(inner, now);
            durable
        };
        let severity = if by == "root" {
            Severity::Notice
        } else {
            Severity::Warning
        };
        let records = ends
            .iter()
            .zip(&out)
            .filter_map(|((id, reason), r)| {
                let g = r.as_ref().ok()?;
                Some((
                    severity,
                    Event::GrantRevoked,
                    json!({ "grant": id, "user": g.user.as_str(), "by": by, "reason": reason, "durable": durable.as_str() }),
                ))
            })
            .collect();
        self.audit.record_all(now, records);
        nscd::invalidate(self.cfg.nscd);
        // What the time budget leaves is finished by the timer (it comes back at once).
        let _ = self.run_teardowns(now);
        self.wake.notify_all();
        let inner = self.lock();
        for ((id, _), r) in ends.iter().zip(&mut out) {
            let Ok(g) = r else { continue };
            if let Durable::No(why) = &durable {
                *r = Err(refuse(
                    ErrorCode::Internal,
                    format!(
                        "grant {id} is revoked now (gone from NSS, its processes ended) but the revocation is NOT durable: {why}; \
                         if jitd restarts before {} can be written the grant comes back: free space there and keep jitd running",
                        self.cfg.state_dir.display()
                    ),
                ));
            } else if let Some(now_g) = inner.state.grants.get(id.as_str()) {
                *g = as_of(now_g.as_ref(), now);
            }
        }
        out
    }

    /// Marks `ids` (armed grants of `user`) activated, durably, then rewrites the snapshot.
    pub(crate) fn mark_activated(
        &self,
        user: &str,
        ids: &[String],
        how: &str,
        now: UnixTime,
    ) -> Result<(), Refusal> {
        if ids.is_empty() {
            return Ok(());
        }
        let durable = {
            let mut inner = self.lock();
            tick::activate(&mut inner.state, ids, now);
            // Armed until now: the monitor watches them from the next tick.
            self.watch_changed(ids.iter().map(String::as_str));
            // A code proved for a grant that exists keeps working on a full state filesystem:
            // the activation then lives in memory (written at the first tick that can), and a
            // restart before that only re-arms the grant, which asks for a new code.
            let durable = self.persist(&mut inner, now).is_ok();
            self.snapshot_and_unlock(inner, now);
            durable
        };
        for id in ids {
            self.audit.record(
                now,
                Severity::Info,
                Event::GrantActivated,
                json!({ "grant": id, "user": user, "mfa": "totp", "by": how, "durable": durable }),
            );
        }
        nscd::invalidate(self.cfg.nscd);
        Ok(())
    }

    /// Opens the emergency grant of a spent break-glass code. The code is already spent
    /// durably; if the grant cannot be made durable it is still applied in memory and in the
    /// snapshot (the person is locked out otherwise, in an emergency) and the write is retried
    /// at each tick.
    pub(crate) fn open_emergency(
        &self,
        account: &str,
        reason: String,
        now: UnixTime,
    ) -> Result<Grant, Refusal> {
        let id = loop {
            let id = super::random_id().map_err(|e| refuse(ErrorCode::Internal, e.to_string()))?;
            if !self.lock().state.grants.contains_key(id.as_str()) {
                break id;
            }
        };
        let grant =
            admit::breakglass_grant(id.clone(), account, reason, self.cfg.breakglass_secs, now);
        let mut inner = self.lock();
        inner.state.grants.insert(grant.id.clone(), grant.clone());
        inner
            .boot_cap
            .insert(grant.id.clone(), (boottime(), grant.not_after - now));
        let _ = self.persist(&mut inner, now);
        // Best effort: room to record its end if state.json cannot take it then (an emergency
        // grant is not refused for want of it).
        let _ = reserve_for_open_grants(&mut inner, 0);
        self.snapshot_and_unlock(inner, now);
        nscd::invalidate(self.cfg.nscd);
        self.wake.notify_all();
        Ok(grant)
    }
}
