//! Converging local state to the server's signed set. Pure decisions against [`GrantSink`], the
//! narrow seam to the daemon (implemented once, in `effects/sync_adapter.rs`), so the rules are
//! unit-tested against a fake sink:
//!
//! * a server grant in the set and never seen here is admitted through the daemon's one
//!   admission (the same checks as `jitctl grant add`);
//! * a server grant seen before is never admitted again, even if it ended here first (ended by
//!   its session, a sudo revocation class, root, or a strict end while stale): an outage or a
//!   replayed set can shorten a grant, never extend or revive it;
//! * a live server grant missing from the set is ended through the daemon's one teardown;
//! * local grants are not in the sink's view at all.

use std::collections::HashSet;

use crate::audit::Event;
use jit_core::time::UnixTime;
use jit_proto::state_doc::DocGrant;

/// A server grant as the daemon holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldGrant {
    /// The daemon's grant id (`g-…`).
    pub local_id: String,
    /// The server's grant id (`sg-…`).
    pub server_id: String,
    /// Ended here (expired, revoked, torn down).
    pub ended: bool,
    /// Its role is strict: it ends when the host goes stale.
    pub strict: bool,
}

/// What the sync thread needs from the daemon; nothing else.
pub trait GrantSink: Send + Sync {
    /// Every server-sourced grant the daemon still holds, ended ones included.
    fn server_grants(&self) -> Vec<HeldGrant>;
    /// Admits `g` (from the document with sequence `seq`) through the same admission as a
    /// local grant; returns the local id.
    fn admit_server_grant(&self, g: &DocGrant, seq: u64, now: UnixTime) -> Result<String, String>;
    /// Ends server grants (local id each) through the same revocation and teardown as a local
    /// one, together: one durable write, one snapshot, one teardown pass for all of them.
    /// Returns each one's outcome in the order given.
    fn end_server_grants(
        &self,
        local_ids: &[String],
        reason: &str,
        now: UnixTime,
    ) -> Vec<Result<(), String>>;
    /// Records an audit event in the host's trail (`warning` for a refusal or a loss of link).
    fn record(&self, now: UnixTime, warning: bool, event: Event, fields: serde_json::Value);
    /// Holds the fleet TOTP secrets a verified document delivered (opened, in memory) in place
    /// of the previous ones, and raises each person's last used step to the relayed one.
    fn set_fleet_mfa(
        &self,
        _secrets: Vec<(String, u64, jit_core::host::secret::Secret)>,
        _used: &[jit_proto::mfa_seal::UsedStep],
        _now: UnixTime,
    ) {
    }
    /// Wipes the fleet secrets of people without a live server grant asking for a code.
    fn prune_fleet_mfa(&self, _now: UnixTime) {}
}

/// What one convergence did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// (server id, local id) admitted.
    pub admitted: Vec<(String, String)>,
    /// Server ids ended because the set no longer has them.
    pub ended: Vec<String>,
    /// (server id, why) refused by local admission.
    pub refused: Vec<(String, String)>,
}

/// Brings the daemon's server grants to `set` (the whole current set of a verified document).
/// A grant refused before (in `refused_before`) is tried again (the host may have changed:
/// space freed, a user added) but its refusal is audited only the first time, so a heartbeat
/// every 30 s does not repeat it in the trail.
pub fn converge(
    sink: &dyn GrantSink,
    set: &[DocGrant],
    seq: u64,
    now: UnixTime,
    refused_before: &std::collections::BTreeSet<String>,
) -> Outcome {
    let held = sink.server_grants();
    let mut out = Outcome::default();
    // Sets, not scans: a document of a few thousand grants against as many held ones was a few
    // times 10^7 string comparisons at every document (every change and every heartbeat).
    let wanted: HashSet<&str> = set.iter().map(|g| g.id.as_str()).collect();
    let gone: Vec<&HeldGrant> = held
        .iter()
        .filter(|h| !h.ended && !wanted.contains(h.server_id.as_str()))
        .collect();
    end_together(
        sink,
        &gone,
        "no longer in the server's set",
        now,
        &mut out.ended,
    );
    let seen: HashSet<&str> = held.iter().map(|h| h.server_id.as_str()).collect();
    for g in set {
        if seen.contains(g.id.as_str()) || g.not_after <= now {
            continue;
        }
        match sink.admit_server_grant(g, seq, now) {
            Ok(local) => out.admitted.push((g.id.clone(), local)),
            Err(e) if refused_before.contains(&g.id) => out.refused.push((g.id.clone(), e)),
            Err(e) => {
                sink.record(
                    now,
                    true,
                    Event::SyncGrantRefused,
                    serde_json::json!({ "server_grant": g.id, "user": g.user, "role": g.role, "seq": seq, "reason": e }),
                );
                out.refused.push((g.id.clone(), e));
            }
        }
    }
    out
}

/// Ends `grants` in one call to the sink, pushing the server id of each one ended to `ended`
/// and auditing each failure.
fn end_together(
    sink: &dyn GrantSink,
    grants: &[&HeldGrant],
    reason: &str,
    now: UnixTime,
    ended: &mut Vec<String>,
) {
    if grants.is_empty() {
        return;
    }
    let ids: Vec<String> = grants.iter().map(|h| h.local_id.clone()).collect();
    let mut results = sink.end_server_grants(&ids, reason, now).into_iter();
    for h in grants {
        // A sink that answered for fewer grants than asked: the rest are not known to have
        // ended, so they are audited as failures (and tried again with the next document).
        let r = results
            .next()
            .unwrap_or_else(|| Err("no outcome from the daemon".into()));
        match r {
            Ok(()) => ended.push(h.server_id.clone()),
            Err(e) => sink.record(
                now,
                true,
                Event::SyncEndFailed,
                serde_json::json!({ "grant": h.local_id, "server_grant": h.server_id, "error": e }),
            ),
        }
    }
}

/// The host went stale: grants of strict roles end now. Returns the server ids ended.
pub fn end_strict(sink: &dyn GrantSink, now: UnixTime) -> Vec<String> {
    let held = sink.server_grants();
    let strict: Vec<&HeldGrant> = held.iter().filter(|h| h.strict && !h.ended).collect();
    let mut ended = Vec::new();
    end_together(
        sink,
        &strict,
        "strict role and the host is stale",
        now,
        &mut ended,
    );
    ended
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::sync::Mutex;

    /// A daemon reduced to what the seam shows: a list of held grants and a refusal rule.
    #[derive(Default)]
    struct Fake {
        held: Mutex<Vec<HeldGrant>>,
        refuse_user: String,
        admitted: Mutex<Vec<String>>,
        audited: Mutex<Vec<String>>,
        /// The local ids of each call to end grants.
        end_calls: Mutex<Vec<Vec<String>>>,
        /// Ending a grant whose local id contains this fails (empty: none).
        fail_end: String,
    }

    impl GrantSink for Fake {
        fn server_grants(&self) -> Vec<HeldGrant> {
            self.held.lock().unwrap().clone()
        }
        fn admit_server_grant(
            &self,
            g: &DocGrant,
            _seq: u64,
            _now: UnixTime,
        ) -> Result<String, String> {
            if g.user == self.refuse_user {
                return Err("no local user".into());
            }
            let local = format!("g-{}", g.id);
            self.held.lock().unwrap().push(HeldGrant {
                local_id: local.clone(),
                server_id: g.id.clone(),
                ended: false,
                strict: g.strict,
            });
            self.admitted.lock().unwrap().push(g.id.clone());
            Ok(local)
        }
        fn end_server_grants(
            &self,
            local_ids: &[String],
            _r: &str,
            _now: UnixTime,
        ) -> Vec<Result<(), String>> {
            self.end_calls.lock().unwrap().push(local_ids.to_vec());
            let mut held = self.held.lock().unwrap();
            local_ids
                .iter()
                .map(|id| match held.iter_mut().find(|h| &h.local_id == id) {
                    Some(h) if h.local_id.contains(&self.fail_end) && !self.fail_end.is_empty() => {
                        Err(format!("cannot end {id}"))
                    }
                    Some(h) => {
                        h.ended = true;
                        Ok(())
                    }
                    None => Err(format!("no grant {id}")),
                })
                .collect()
        }
        fn record(&self, _now: UnixTime, _w: bool, event: Event, _f: serde_json::Value) {
            self.audited.lock().unwrap().push(event.name().to_string());
        }
    }

    fn converge_t(f: &Fake, set: &[DocGrant], seq: u64, now: UnixTime) -> Outcome {
        converge(f, set, seq, now, &std::collections::BTreeSet::new())
    }

    fn g(id: &str, user: &str, strict: bool) -> DocGrant {
        DocGrant {
            id: id.into(),
            user: user.into(),
            not_before: 100,
            not_after: 1000,
            strict,
            ..DocGrant::default()
        }
    }

    #[test]
    fn new_grants_are_admitted_and_missing_ones_ended() {
        let f = Fake::default();
        let o = converge_t(
            &f,
            &[g("sg-1", "alice", false), g("sg-2", "bob", false)],
            5,
            200,
        );
        assert_eq!(o.admitted.len(), 2);
        // The same set again changes nothing.
        let o = converge_t(
            &f,
            &[g("sg-1", "alice", false), g("sg-2", "bob", false)],
            6,
            201,
        );
        assert_eq!(o, Outcome::default());
        // sg-1 revoked on the server: ended here; sg-2 untouched.
        let o = converge_t(&f, &[g("sg-2", "bob", false)], 7, 202);
        assert_eq!(o.ended, vec!["sg-1".to_string()]);
        let held = f.server_grants();
        assert!(held.iter().any(|h| h.server_id == "sg-1" && h.ended));
        assert!(held.iter().any(|h| h.server_id == "sg-2" && !h.ended));
    }

    #[test]
    fn an_ended_grant_is_never_revived_by_a_later_set() {
        let f = Fake::default();
        converge_t(&f, &[g("sg-1", "alice", false)], 5, 200);
        let r = f.end_server_grants(&["g-sg-1".into()], "ended with its session", 210);
        assert_eq!(r, vec![Ok(())]);
        let o = converge_t(&f, &[g("sg-1", "alice", false)], 6, 220);
        assert!(o.admitted.is_empty(), "{o:?}");
        assert_eq!(f.admitted.lock().unwrap().len(), 1);
    }

    #[test]
    fn an_expired_grant_in_the_set_is_not_admitted() {
        let f = Fake::default();
        let o = converge_t(&f, &[g("sg-1", "alice", false)], 5, 1000);
        assert!(o.admitted.is_empty());
    }

    #[test]
    fn a_refused_grant_is_audited_and_does_not_stop_the_others() {
        let f = Fake {
            refuse_user: "mallory".into(),
            ..Fake::default()
        };
        let o = converge_t(
            &f,
            &[g("sg-1", "mallory", false), g("sg-2", "bob", false)],
            5,
            200,
        );
        assert_eq!(o.refused.len(), 1);
        assert_eq!(o.admitted.len(), 1);
        assert_eq!(
            *f.audited.lock().unwrap(),
            vec!["sync.grant_refused".to_string()]
        );
        // The next heartbeat tries again but does not audit the same refusal again.
        let before: std::collections::BTreeSet<String> =
            o.refused.iter().map(|(id, _)| id.clone()).collect();
        let set = [g("sg-1", "mallory", false), g("sg-2", "bob", false)];
        let o = converge(&f, &set, 6, 230, &before);
        assert_eq!(o.refused.len(), 1);
        assert_eq!(f.audited.lock().unwrap().len(), 1);
    }

    #[test]
    fn grants_dropped_by_one_document_end_in_one_call_and_a_failure_holds_back_none() {
        let f = Fake {
            fail_end: "sg-3".into(),
            ..Fake::default()
        };
        let all: Vec<DocGrant> = (1..=5).map(|i| g(&format!("sg-{i}"), "u", false)).collect();
        converge_t(&f, &all, 5, 200);
        // The server drops 2, 3 and 4: one call ends them, 3 fails (audited), 2 and 4 end.
        let o = converge_t(&f, &[all[0].clone(), all[4].clone()], 6, 201);
        assert_eq!(o.ended, vec!["sg-2".to_string(), "sg-4".to_string()]);
        assert_eq!(
            *f.end_calls.lock().unwrap(),
            vec![vec![
                "g-sg-2".to_string(),
                "g-sg-3".to_string(),
                "g-sg-4".to_string()
            ]]
        );
        assert_eq!(
            *f.audited.lock().unwrap(),
            vec!["sync.end_failed".to_string()]
        );
        // The one that failed is tried again with the next document, alone.
        converge_t(&f, &[all[0].clone(), all[4].clone()], 7, 202);
        assert_eq!(f.end_calls.lock().unwrap()[1], vec!["g-sg-3".to_string()]);
    }

    #[test]
    fn stale_ends_only_strict_grants() {
        let f = Fake::default();
        converge_t(
            &f,
            &[g("sg-1", "alice", true), g("sg-2", "bob", false)],
            5,
            200,
        );
        assert_eq!(end_strict(&f, 300), vec!["sg-1".to_string()]);
        assert!(end_strict(&f, 301).is_empty(), "ended once");
        assert!(f
            .server_grants()
            .iter()
            .any(|h| h.server_id == "sg-2" && !h.ended));
    }
}
