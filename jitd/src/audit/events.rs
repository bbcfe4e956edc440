//! Every event jitd writes to the audit trail, with the fields its records may carry. The
//! audit reference (`docs/audit-events.md`) is generated from this table and checked against
//! it by a test, and in debug builds [`super::Audit::record`] refuses a field not listed here,
//! so the list, the code and the doc cannot drift apart.
//!
//! Every record also has `ts` (unix seconds), `time` (UTC), `event` and `severity`.

/// Declares [`Event`]: variant, event name, fields, and the doc lines that describe it.
macro_rules! events {
    ($( $(#[doc = $doc:literal])+ $variant:ident = $name:literal [ $($field:ident),* $(,)? ] ),+ $(,)?) => {
        /// An audit event (see the module notes).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Event {
            $( $(#[doc = $doc])+ $variant ),+
        }

        impl Event {
            /// Every event, in the order of the reference.
            pub const ALL: &'static [Event] = &[$(Event::$variant),+];

            /// The stable name in the audit log and syslog (`grant.created`).
            pub fn name(self) -> &'static str {
                match self { $(Event::$variant => $name),+ }
            }

            /// The fields its records may carry (besides `ts`, `time`, `event`, `severity`).
            pub fn fields(self) -> &'static [&'static str] {
                match self { $(Event::$variant => &[$(stringify!($field)),*]),+ }
            }

            /// What it means, for the reference.
            pub fn about(self) -> &'static str {
                match self { $(Event::$variant => concat!($($doc, "\n"),+)),+ }
            }
        }
    };
}

events! {
    /// `info`. jitd started (after loading state, before the first tick).
    DaemonStart = "daemon.start" [pid, version],
    /// `info`. jitd stopped on SIGTERM/SIGINT.
    DaemonStop = "daemon.stop" [pid],

    /// `info`. This host enrolled with the central service (`jitctl enroll`): its host key's
    /// public half registered, the server's TLS and root keys pinned.
    ServerEnrolled = "server.enrolled" [url, host, host_key, tls_pins],
    /// `warning`. An enrolment failed (the join token is never recorded).
    ServerEnrolFailed = "server.enrol_failed" [url, error],
    /// `warning`. The last state document expired: the host is stale; grants of `strict`
    /// roles end, other grants run to their own end.
    SyncStale = "sync.stale" [document_expired_at, effect],
    /// `warning`. The central service could not be reached (once per episode).
    SyncOffline = "sync.offline" [error, effect],
    /// `warning`. A state document failed verification (signature, host binding, sequence,
    /// nonce or expiry) and changed nothing.
    SyncDocumentRefused = "sync.document_refused" [error, applied_seq, bytes],
    /// `info`. A valid document arrived again after the host was offline or stale.
    SyncFresh = "sync.fresh" [seq, expires_at],
    /// `info`. A state document was applied: server grants admitted and ended to match it.
    SyncApplied = "sync.applied" [seq, grants, admitted, ended, refused],
    /// `warning`. A server grant the set lost could not be ended.
    SyncEndFailed = "sync.end_failed" [grant, server_grant, error],
    /// `warning`. A server grant was refused by this host's admission (audited once).
    SyncGrantRefused = "sync.grant_refused" [server_grant, user, role, seq, reason],
    /// `warning`. A fleet TOTP secret in a verified document did not open with this host's
    /// sealing key for its identity and version (another host's, tampered); it is not used.
    SyncMfaRefused = "sync.mfa_refused" [user, version, seq, error],
    /// `info`. Fleet TOTP secrets held in memory changed: `received` delivered sealed by the
    /// server, `wiped` zeroed because no live grant of the person asks for a code any more.
    MfaFleetSecrets = "mfa.fleet_secrets" [received, wiped],
    /// `info`. The TLS pin set changed: the server's signed pin document named a new current
    /// or next certificate (`jit-server key tls-next` / `tls-promote`); stored before use.
    SyncTlsPins = "sync.tls_pins" [previous, current, next],
    /// `warning`. A TLS pin document failed verification and changed nothing.
    SyncPinsRefused = "sync.pins_refused" [error, bytes],
    /// `warning`. The server refused a report of host events or a certification (`what`); it
    /// is dropped (it would be refused again), the host's own trail keeps the records.
    SyncReportRefused = "sync.report_refused" [what, count, error],

    /// `info`. A grant was admitted, made durable and written to the snapshot; `by` is its
    /// source (`root` over the local socket, `server` from the central service).
    GrantCreated = "grant.created" [grant, user, by, source, account, uid, groups, not_before, not_after,
        reason, ticket, requested_by, ssh_keys, mfa, mfa_sudo, enable, from, services, windows,
        end_with_session, sudo, runas, revoke_on, caps, programs],
    /// `warning`. A grant request was refused (`code`, `reason` as the client saw them).
    GrantRejected = "grant.rejected" [user, code, reason],
    /// `info`. A grant's window began: it gives privilege now; `home` says whether the
    /// account's home was made.
    GrantLive = "grant.live" [grant, user, not_after, home],
    /// `info`. An `--mfa` grant's window began; it gives privilege after a TOTP code (`needs`).
    GrantArmed = "grant.armed" [grant, user, not_after, home, needs],
    /// `info`. An armed grant was activated by a proved code (`by`: the PAM service or
    /// `jitctl activate`; `durable`: whether state.json took it at once).
    GrantActivated = "grant.activated" [grant, user, mfa, by, durable],
    /// `info`. A grant reached its end (`not_after` is the original end; `late_secs` how late
    /// jitd saw it, e.g. after being down; `boot_time_cap`: ended by elapsed time because the
    /// wall clock moved back).
    GrantExpired = "grant.expired" [grant, user, not_after, late_secs, boot_time_cap],
    /// `notice` (by root) or `warning` (by `policy` or `session`). A grant was revoked;
    /// `durable`: `state`, `revocation journal` or `no`.
    GrantRevoked = "grant.revoked" [grant, user, by, reason, durable],
    /// `warning`. A sudo command fell in one of the grant's `revoke_on` classes; the grant is
    /// revoked next.
    GrantPolicyHit = "grant.policy_hit" [grant, user, reason],
    /// `info`, or `warning` when a local user holds the uid now or the home could not be
    /// removed. An ended grant's privilege is gone: processes ended, set-id files swept, home
    /// removed/archived/kept, nscd flushed.
    GrantTeardown = "grant.teardown" [grant, user, ended, processes_found, terminated, killed,
        kill_ms, nscd_flushed, setid_sweep, gids, sessions, local_files_error, collision, home,
        home_error, survivors, cgroup_killed, cgroup_error],
    /// `error`. A teardown left survivors or lacked the local files; it is retried every tick.
    GrantTeardownIncomplete = "grant.teardown_incomplete" [grant, user, ended, processes_found,
        terminated, killed, kill_ms, nscd_flushed, setid_sweep, gids, sessions,
        local_files_error, collision, home, home_error, survivors, cgroup_killed, cgroup_error],
    /// `error`. Ends that neither state.json nor the revocation journal could take: they hold
    /// until jitd restarts.
    GrantEndNotDurable = "grant.end_not_durable" [grants, error, effect],

    /// `info` (clean), `notice` (no baseline) or `warning` (changed). The grant's end
    /// fingerprint compared with its baseline: what changed on the host while it was live
    /// (first differences listed, the rest counted in `omitted`).
    GrantCertification = "grant.certification" [grant, user, status, baseline_at, items,
        differences, omitted, root_equivalent, unreadable, elapsed_ms, monitor_events_lost],
    /// `warning`. The process monitor saw a live grant's process do something in one of the
    /// grant's `revoke_on` classes; the grant is revoked next.
    GrantMonitorHit = "grant.monitor_hit" [grant, user, class, pid, uid, cmdline, act, queued_ms],

    /// `info`. A grant's baseline fingerprint was taken (when it went live).
    CertifyBaseline = "certify.baseline" [grant, items, elapsed_ms, error],
    /// `warning`. A grant's baseline fingerprint could not be taken.
    CertifyBaselineFailed = "certify.baseline_failed" [grant, items, elapsed_ms, error],
    /// `error`. Certification could not start (its directory); grants end uncertified.
    CertifyUnavailable = "certify.unavailable" [error],
    /// `warning`. A grant's cgroup could not be made.
    CgroupCreateFailed = "cgroup.create_failed" [grant, error],
    /// `warning`. A module's process (`for`: session or sudo) could not join its grant's cgroup.
    CgroupJoinFailed = "cgroup.join_failed" [grant, pid, for, error],
    /// `notice`. At start, the cgroup of a grant that is gone or torn down was killed and removed.
    CgroupStaleRemoved = "cgroup.stale_removed" [grant, killed, error],
    /// `notice`. A process the monitor saw leave its grant's cgroup was ended at teardown.
    MonitorEscapedEnded = "monitor.escaped_ended" [grant, found, ended, survivors],
    /// `info`. From a monitored event to its grant's revocation (`event_to_ended_ms`).
    MonitorLatency = "monitor.latency" [grant, class, event_to_ended_ms, queued_ms, revoked],
    /// `notice`. A grant's process did something in a watched class the grant does not revoke
    /// on (at most 50 per grant; the last one says so in `note`).
    MonitorEvent = "monitor.event" [grant, user, class, pid, uid, cmdline, act, note],
    /// `notice` or `error`. Live monitoring could not start (`why`): no per-grant cgroups, or a
    /// source that failed.
    MonitorUnavailable = "monitor.unavailable" [why, cgroups],
    /// `warning`. A monitor source lost events (its queue overflowed), once per episode:
    /// `reports` loss reports over `lasted_ms`, the `grants` watched meanwhile (the first 100;
    /// `grants_omitted` the others), the members the rescans classified (`rescanned`), and
    /// what a rescan cannot recover (`note`).
    MonitorEventsLost = "monitor.events_lost" [source, reports, lasted_ms, grants,
        grants_omitted, rescanned, note],

    /// `warning`. An account is left out of the snapshot: a local name or id collides with it.
    AccountCollision = "account.collision" [grant, user, with, action],
    /// `warning`. The home of an account that went live could not be made.
    HomeCreateFailed = "home.create_failed" [grant, user, error],
    /// `warning`. A home moved aside at teardown (under `<home_root>/.jit-removing`,
    /// root-only) could not be deleted: it stays there, out of the account's reach, and is
    /// tried again at the next teardown that removes a home and after a restart. Reported once.
    HomePurgeFailed = "home.purge_failed" [path, error],

    /// `notice`. A TOTP secret was enrolled (never the secret itself).
    MfaEnrolled = "mfa.enrolled" [user, by, replaced],
    /// `notice`. A TOTP secret was removed.
    MfaRemoved = "mfa.removed" [user, by],
    /// `info`. A TOTP code was accepted (`purpose`: login or sudo; `source`: whose failure
    /// counter the attempt used).
    MfaOk = "mfa.ok" [user, purpose, service, grants, caller_uid, ruser, rhost, source],
    /// `warning`. A TOTP code was refused (wrong, replayed, locked out, bad format);
    /// `failures` counts the source's consecutive failures.
    MfaFail = "mfa.fail" [user, purpose, service, grants, error, failures, caller_uid, ruser,
        rhost, source],

    /// `notice`. Break-glass codes were made for a managed account (shown once, never logged).
    BreakglassInit = "breakglass.init" [account, count, replaced],
    /// `crit`. A break-glass code was spent: an emergency `--enable` grant is open.
    BreakglassUsed = "breakglass.used" [grant, account, code, service, rhost, not_after,
        remaining_codes],
    /// `crit`. A break-glass code was refused.
    BreakglassFail = "breakglass.fail" [account, service, rhost, caller_uid, source, error],

    /// `info`. pam_jit registered a login session under a live grant.
    SessionOpen = "session.open" [session, grant, user, pid, service, tty, rhost],
    /// `info`. A session closed or was lost (`how`); an `--end-with-session` grant ends with it.
    SessionClose = "session.close" [session, grant, user, how, secs],

    /// `info`. sudo_jit approved a command for a jit user.
    SudoAllowed = "sudo.allowed" [grant, user, uid, command, argv, argc, runas, runas_group,
        reason, classes],
    /// `warning`. sudo_jit refused a command for a jit user, or jitd turned its approval into a
    /// refusal (grant not live, `revoke_on` hit, operator's `ioc_commands`).
    SudoDenied = "sudo.denied" [grant, user, uid, command, argv, argc, runas, runas_group,
        reason, classes],

    /// `warning`. A set-uid/set-gid file an ended grant left behind lost those bits.
    FileSetidStripped = "file.setid_stripped" [grant, path, uid, gid, mode_before, mode_after],
    /// `warning`. More stripped files than are recorded one by one in a sweep (`count`).
    FileSetidStrippedMore = "file.setid_stripped_more" [count],
    /// `error`. A set-id file could not be changed.
    FileSetidStripFailed = "file.setid_strip_failed" [path, error],
    /// `error`. A sweep path could not be searched (a symbolic link, not a directory, …).
    SweepUnsearched = "sweep.unsearched" [path, reason],

    /// `error`. The current state.json was damaged; the previous generation was used.
    StateRecovered = "state.recovered" [problem, used],
    /// `error`. state.json could not be written (once per episode): no new grants; ends go to
    /// the revocation journal.
    StateWriteFailed = "state.write_failed" [error, effect],
    /// `notice`. state.json can be written again.
    StateWriteRecovered = "state.write_recovered" [path],
    /// `warning`. Ends recorded in the revocation journal were applied at start.
    StateJournalApplied = "state.journal_applied" [grants, why],
    /// `notice`. A write at the end of the state journal that was never acknowledged (jitd
    /// stopped during it) was dropped at start (`at`: file and byte).
    StateJournalTornDropped = "state.journal_torn_dropped" [at],
    /// `error`. No slot could be reserved in the revocation journal: new grants are refused.
    StateJournalUnavailable = "state.journal_unavailable" [path, error, effect],
    /// `error`. The managed-accounts fallback list could not be rewritten at start.
    StateManagedListWriteFailed = "state.managed_list_write_failed" [error, effect],

    /// `error`. The snapshot could not be written (retried every tick). With `file` `delta`: a
    /// grant add's delta files could not be written; `then` says the whole files were written
    /// instead, before the add was acknowledged.
    SnapshotWriteFailed = "snapshot.write_failed" [error, file, then],
    /// `notice`. The snapshot was missing or changed by someone else and was written again.
    SnapshotRepaired = "snapshot.repaired" [path, problem],
    /// `warning`. The change counter the NSS module reads instead of checking the snapshot
    /// per lookup (docs/snapshot-format.md §11) could not be set up (once per episode); the
    /// module then checks the file on every lookup, as before. `error` says why.
    SnapshotCounterUnavailable = "snapshot.counter_unavailable" [error],
    /// `error`. /etc/passwd or /etc/group could not be read for the snapshot (once per
    /// episode); `using` says which copy was used.
    SnapshotLocalFilesUnreadable = "snapshot.local_files_unreadable" [error, using],
    /// `warning`. With the grant just admitted, `file` could reach `bytes`, `percent` of the
    /// `limit_bytes` the jit modules read (once per episode, from 75 %); new grants are
    /// refused from `refuse_at` percent. Sizes are the last whole write's plus a bound for
    /// each grant admitted since.
    SnapshotRoomLow = "snapshot.room_low" [file, percent, bytes, limit_bytes, public_bytes,
        gates_bytes, refuse_at],
    /// `error`. A snapshot file was written larger than the modules read (`limit_bytes`): they
    /// refuse it, so no jit account resolves and every jit login and sudo is refused until it
    /// fits again (ended grants leave it at once). Admission keeps the files below it; this
    /// means they grew another way (grants admitted by a jitd without the check).
    SnapshotOverLimit = "snapshot.over_limit" [file, bytes, limit_bytes, effect],
    /// `notice`. A missing run directory was made again.
    RundirRepaired = "rundir.repaired" [path, problem],
    /// `error`. A missing run directory could not be made again (once per episode).
    RundirRepairFailed = "rundir.repair_failed" [path, error],
    /// `notice`. Tokenization: `jitctl run` started a granted program as the person (`uid`) with
    /// the grant's capabilities (`caps`); `args` each cut to 256 bytes, `caller_pid` is jitctl.
    TokenizeRun = "tokenize.run" [grant, user, uid, caller_pid, program, args, caps, pid],
    /// `info`. A program started by `jitctl run` ended: its `status` (128 + `signal` when a
    /// signal ended it) and how long it ran (`ms`).
    TokenizeExit = "tokenize.exit" [grant, user, program, pid, status, signal, ms],
    /// `notice`. The socket was missing or replaced and was bound again.
    SocketRepaired = "socket.repaired" [path, problem],
    /// `error`. The socket could not be bound again, or another process listens on its path
    /// (once per episode).
    SocketRepairFailed = "socket.repair_failed" [path, problem, error],
    /// `warning`. A uid went over its connection share or missed the request deadline (once
    /// per episode).
    SocketThrottled = "socket.throttled" [peer_uid, peer_pid, cause, connection_limit,
        quiet_secs, action],
    /// `notice`. A throttling episode ended: what was refused or closed during it.
    SocketThrottledEnd = "socket.throttled.end" [peer_uid, since, until, refused_over_limit,
        closed_at_deadline, quiet_secs],
    /// `warning`. A request was refused `permission_denied` (the first per uid and window in
    /// full; names cut and escaped).
    RequestDenied = "request.denied" [peer_uid, peer_pid, request],
    /// `warning`. How many more requests a uid had refused in a window, by kind.
    RequestDeniedSummary = "request.denied.summary" [peer_uid, count, since, until, window_secs,
        requests, note],
    /// `warning`. A module's request was dropped unanswered: the module had stopped waiting.
    RequestAbandoned = "request.abandoned" [peer_uid, peer_pid, request],
}

/// The reference, as `docs/audit-events.md` holds it.
pub fn reference() -> String {
    let mut out = String::from(
        "# Audit events\n\n\
         <!-- Generated from jitd/src/audit/events.rs by the test audit::events::tests::\n\
         reference_is_current (JIT_UPDATE_DOCS=1 cargo test -p jitd --lib reference_is_current\n\
         rewrites it). Do not edit by hand. -->\n\n\
         jitd writes one JSON object per line to its audit log (`/var/log/jit/audit.jsonl`, 0600\n\
         root) and mirrors it to syslog `authpriv` as `jitd: {json}`. Every record has `ts`\n\
         (unix seconds), `time` (UTC), `event` and `severity`, plus the fields listed for its\n\
         event; a field with nothing to say may be absent or null. Every field is cut to a fixed\n\
         size before it is written.\n\n",
    );
    for e in Event::ALL {
        out.push_str(&format!("## `{}`\n\n", e.name()));
        for line in e.about().lines() {
            out.push_str(line.trim());
            out.push('\n');
        }
        out.push_str("\nFields: ");
        let f: Vec<String> = e.fields().iter().map(|f| format!("`{f}`")).collect();
        out.push_str(&f.join(", "));
        out.push_str(".\n\n");
    }
    out.truncate(out.trim_end().len());
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn names_are_unique_and_well_formed() {
        let mut seen = HashSet::new();
        for e in Event::ALL {
            assert!(seen.insert(e.name()), "{} twice", e.name());
            assert!(
                e.name()
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c == '.' || c == '_')
                    && e.name().contains('.'),
                "{}",
                e.name()
            );
            let mut f = HashSet::new();
            for field in e.fields() {
                assert!(f.insert(field), "{}: field {field} twice", e.name());
                assert!(
                    !["ts", "time", "event", "severity"].contains(field),
                    "{}: {field} is set by the audit log itself",
                    e.name()
                );
            }
            assert!(!e.about().trim().is_empty());
        }
    }

    /// The reference in docs/ is this table: a new event, field or description fails here
    /// until the doc is regenerated.
    #[test]
    fn reference_is_current() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/audit-events.md");
        let want = reference();
        if std::env::var_os("JIT_UPDATE_DOCS").is_some() {
            std::fs::write(&path, &want).unwrap();
        }
        let have = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            have == want,
            "{} is not the reference generated from jitd/src/audit/events.rs: run \
             JIT_UPDATE_DOCS=1 cargo test -p jitd --lib reference_is_current",
            path.display()
        );
        for e in Event::ALL {
            assert!(
                have.contains(&format!("## `{}`", e.name())),
                "{} missing",
                e.name()
            );
        }
    }
}
