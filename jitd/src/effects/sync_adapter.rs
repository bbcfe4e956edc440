//! The one place the central service's grants meet the daemon: [`GrantSink`] on [`Daemon`] with
//! the daemon's own admission (`Daemon::admit`, the checks of `jitctl grant add`) and
//! revocation (`revoke_as`, the same teardown), plus the `enroll_server` request.

use crate::audit::Event;
use jit_core::time::UnixTime;
use jit_proto::message::Payload;
use jit_proto::state_doc::DocGrant;
use jit_proto::{ErrorCode, GrantSource, GrantSpec};
use serde_json::json;

use crate::audit::Severity;
use crate::daemon::Daemon;
use crate::engine::{refuse, Refusal};
use crate::sync::apply::{GrantSink, HeldGrant};
use crate::sync::state::LinkStore;

/// `s` cut to `max` bytes at a character boundary (the server allows longer free text than
/// the host's grant fields; the text is information only).
fn cut(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

/// The server's grant in `jitctl grant add`'s terms, with the same absolute end: admission at
/// `now` computes `not_after = now + start_in + duration = g.not_after`.
fn spec_of(g: &DocGrant, now: UnixTime) -> GrantSpec {
    let start = g.not_before.max(now);
    GrantSpec {
        user: g.user.clone(),
        duration_secs: g.not_after - start,
        start_in_secs: start - now,
        account: g.account,
        groups: g.groups.clone(),
        ssh_keys: g.ssh_keys.clone(),
        reason: cut(&g.reason, 256),
        ticket: cut(&g.ticket, 64),
        requested_by: cut(&g.user, 64),
        sudo: g.sudo.clone(),
        runas: g.runas.clone(),
        enable: g.enable,
        from: g.from.clone(),
        services: g.services.clone(),
        windows: g.windows.clone(),
        mfa: g.mfa,
        mfa_sudo: g.mfa_sudo,
        end_with_session: g.end_with_session,
        revoke_on: g.revoke_on.clone(),
        // Tokenization: the same admission as `--cap`/`--program` (this host's allow_caps,
        // the program's ownership and launcher checks) decides.
        caps: g.caps.clone(),
        programs: g.programs.clone(),
    }
}

impl GrantSink for Daemon {
    fn server_grants(&self) -> Vec<HeldGrant> {
        let now = jit_core::time::now();
        let inner = self.lock();
        inner
            .state
            .grants
            .values()
            .filter_map(|g| match &g.source {
                GrantSource::Server(s) => Some(HeldGrant {
                    local_id: g.id.to_string(),
                    server_id: s.id.clone(),
                    ended: g.state_at(now).is_ended(),
                    strict: s.strict,
                }),
                GrantSource::Local => None,
            })
            .collect()
    }

    fn admit_server_grant(&self, g: &DocGrant, seq: u64, now: UnixTime) -> Result<String, String> {
        let source = GrantSource::Server(Box::new(jit_proto::ServerSource {
            id: cut(&g.id, 64),
            request: cut(&g.request_id, 64),
            role: cut(&g.role, 64),
            strict: g.strict,
            seq,
        }));
        self.admit(source, &spec_of(g, now), now)
            .map(|granted| granted.id.to_string())
            .map_err(|(_, m)| m)
    }

    fn end_server_grants(
        &self,
        local_ids: &[String],
        reason: &str,
        now: UnixTime,
    ) -> Vec<Result<(), String>> {
        let ends: Vec<(String, String)> = local_ids
            .iter()
            .map(|id| (id.clone(), reason.to_string()))
            .collect();
        self.revoke_many(&ends, "server", now)
            .into_iter()
            .map(|r| r.map(|_| ()).map_err(|(_, m)| m))
            .collect()
    }

    fn set_fleet_mfa(
        &self,
        secrets: Vec<(String, u64, jit_core::host::secret::Secret)>,
        used: &[jit_proto::mfa_seal::UsedStep],
        now: UnixTime,
    ) {
        for u in used {
            // Relayed steps only ever raise the replay floor; a failure leaves the local one.
            if let Err(e) = self.fleet_totp.raise_step(&u.user, u.step, now) {
                self.audit(
                    now,
                    Severity::Warning,
                    Event::SyncMfaRefused,
                    json!({ "user": jit_proto::text::one_line(&u.user, 64), "version": null, "seq": null, "error": format!("relayed step not recorded: {e}") }),
                );
            }
        }
        let (received, wiped) = self.fleet.replace(secrets);
        if !received.is_empty() || !wiped.is_empty() {
            self.audit(
                now,
                Severity::Info,
                Event::MfaFleetSecrets,
                json!({ "received": received, "wiped": wiped }),
            );
        }
    }

    fn prune_fleet_mfa(&self, now: UnixTime) {
        let wanted: std::collections::BTreeSet<String> = {
            let inner = self.lock();
            inner
                .state
                .grants
                .values()
                .filter(|g| matches!(g.source, GrantSource::Server(_)))
                .filter(|g| g.mfa || g.mfa_sudo)
                .filter(|g| {
                    matches!(
                        g.state_at(now),
                        jit_proto::GrantState::Live | jit_proto::GrantState::Armed
                    )
                })
                .map(|g| g.user.to_string())
                .collect()
        };
        let wiped = self.fleet.retain(|u| wanted.contains(u));
        if !wiped.is_empty() {
            self.audit(
                now,
                Severity::Info,
                Event::MfaFleetSecrets,
                json!({ "received": [], "wiped": wiped }),
            );
        }
    }

    fn record(&self, now: UnixTime, warning: bool, event: Event, fields: serde_json::Value) {
        let sev = if warning {
            Severity::Warning
        } else {
            Severity::Info
        };
        self.audit(now, sev, event, fields);
    }
}

impl Daemon {
    /// `jitctl enroll` (root only): the host key is made and kept here, only its public half
    /// leaves jitd.
    pub(crate) fn enroll_server(
        &self,
        peer_uid: u32,
        url: &str,
        token: &str,
        fingerprint: &str,
        now: UnixTime,
    ) -> Result<Payload, Refusal> {
        if peer_uid != 0 {
            return Err(refuse(
                ErrorCode::PermissionDenied,
                "only root may enrol this host",
            ));
        }
        let store = LinkStore::new(&self.cfg.state_dir);
        match crate::sync::enroll(&store, &self.sync_link, url, token, fingerprint, now) {
            Ok(e) => {
                self.audit(
                    now,
                    Severity::Notice,
                    Event::ServerEnrolled,
                    json!({ "url": e.url, "host": e.host, "host_key": e.host_key, "tls_pins": e.tls_pins }),
                );
                Ok(Payload::Done {
                    message: format!(
                        "enrolled with {} as host {} (host key {}); syncing",
                        e.url, e.host, e.host_key
                    ),
                })
            }
            Err(m) => {
                self.audit(
                    now,
                    Severity::Warning,
                    Event::ServerEnrolFailed,
                    json!({ "url": jit_proto::text::one_line(url, 200), "error": m }),
                );
                Err(refuse(ErrorCode::Refused, m))
            }
        }
    }
}
