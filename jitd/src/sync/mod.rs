//! jitd's side of the central service (jit-server): enrolment, one long-poll, verification of
//! the signed state document, convergence of local state to it, signed acknowledgements, host
//! events and stale handling. Synchronous: two threads (the poller and a one-second stale
//! watch), ureq with rustls. See docs/server.md "jitd's side".
//!
//! The daemon is reached only through [`apply::GrantSink`] (one adapter,
//! `effects/sync_adapter.rs`).
//!
//! Order of effects for each document: verify the raw bytes (`state_doc::verify_document`:
//! root-certified signature, host name and key, nonce echo, expiry, `seq` above the durable
//! applied one) → write the new `seq` durably → converge → acknowledge. A document that fails
//! any check changes nothing and is audited.

pub mod apply;
pub mod client;
pub mod events;
pub mod pins;
pub mod state;

use crate::audit::Event;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use jit_core::time::{format_utc, UnixTime};
use jit_proto::state_doc::verify_document;
use serde_json::json;

use crate::remote::client::CallError;
use apply::GrantSink;
use client::{HostClient, HostEvent};
use state::{Applied, Enrolment, LinkStore};

/// Seconds the server may hold a poll.
pub const POLL_WAIT: u64 = 30;
/// Longest pause between failed polls.
const BACKOFF_MAX: u64 = 30;

/// The link's state, shared by the sync threads and `jitctl status`.
#[derive(Debug, Default)]
pub struct Link {
    state: Mutex<LinkState>,
    wake: Condvar,
    /// Held while a document's fleet secrets and grants are applied, so the one-second prune
    /// never wipes a secret between its delivery and the admission of the grant asking for it.
    applying: Mutex<()>,
    /// Signalled when an event or certification is queued (the reporter thread waits on it).
    report: Condvar,
}

#[derive(Debug, Default)]
struct LinkState {
    /// (url, host name) once enrolled.
    enrolled: Option<(String, String)>,
    /// The last call reached the server and its answer verified.
    connected: bool,
    last_sync: Option<UnixTime>,
    seq: u64,
    /// `expires_at` of the newest applied document (0: none).
    expires_at: UnixTime,
    /// Set when the host went stale (audited once per episode).
    stale_since: Option<UnixTime>,
    last_error: Option<String>,
    events: Vec<HostEvent>,
    /// Events dropped from the full queue since the last report.
    dropped: events::Dropped,
    /// Certifications waiting for the server.
    certs: Vec<events::PendingCert>,
    /// Grants whose incomplete teardown was reported (once until it completes).
    incomplete: std::collections::HashSet<String>,
    /// Server grants the host refused at the last document (audited once, retried each time).
    refused: std::collections::BTreeSet<String>,
    /// TOTP steps accepted here for fleet identities, not yet reported to the server.
    used: Vec<(String, u64)>,
}

impl Link {
    fn lock(&self) -> MutexGuard<'_, LinkState> {
        crate::poison::lock(&self.state)
    }

    /// One line for `jitctl status`: `none (local grants only)`, or the server, whether the
    /// link is connected, offline (unreachable, grants still valid) or stale (no valid document:
    /// nothing new arrives, strict grants ended), the last sync and the sequence.
    pub fn status_line(&self, now: UnixTime) -> String {
        let s = self.lock();
        let Some((url, host)) = &s.enrolled else {
            return "none (local grants only)".into();
        };
        let link = if s.seq == 0 {
            "waiting for the first document"
        } else if s.expires_at <= now {
            "stale"
        } else if s.connected {
            "connected"
        } else {
            "offline"
        };
        let last = s.last_sync.map_or("never".to_string(), format_utc);
        let mut line = format!(
            "{url} as {host}: {link}, last sync {last}, sequence {}",
            s.seq
        );
        if s.expires_at > now {
            line.push_str(&format!(", valid until {}", format_utc(s.expires_at)));
        }
        if let (false, Some(e)) = (s.connected, &s.last_error) {
            line.push_str(&format!(
                ", last error: {}",
                jit_proto::text::one_line(e, 160)
            ));
        }
        line
    }

    /// Whether this host is enrolled.
    pub fn is_enrolled(&self) -> bool {
        self.lock().enrolled.is_some()
    }

    /// Queues a TOTP step accepted here for a fleet identity; the reporter thread sends it to
    /// the server at once, which relays it to the person's other hosts.
    pub fn report_used(&self, user: &str, step: u64) {
        {
            // One entry per person, the highest step: bounded while the server is unreachable.
            let mut s = self.lock();
            match s.used.iter_mut().find(|(u, _)| u == user) {
                Some(e) => e.1 = e.1.max(step),
                None => s.used.push((user.to_string(), step)),
            }
        }
        self.wake.notify_all();
    }
}

/// Enrols this host: makes (or reuses) the host key, registers its public half with the join
/// token over a connection pinned to `fingerprint`, stores the enrolment and wakes the poller.
///
/// # Errors
/// Bad arguments, already enrolled, server refused or unreachable, state not writable.
pub fn enroll(
    store: &LinkStore,
    link: &Link,
    url: &str,
    token: &str,
    fingerprint: &str,
    now: UnixTime,
) -> Result<Enrolment, String> {
    let ok_fp = fingerprint.len() <= 100
        && fingerprint.strip_prefix("SHA256:").is_some_and(|b| {
            !b.is_empty()
                && b.bytes()
                    .all(|c| c.is_ascii_alphanumeric() || c == b'+' || c == b'/')
        });
    if !ok_fp {
        return Err("--fingerprint must be SHA256:… as jit-server init prints it".into());
    }
    if token.is_empty() || token.len() > 128 || token.chars().any(char::is_control) {
        return Err("--token: the join token jit-server host add printed".into());
    }
    if url.len() > 512 || url.chars().any(char::is_control) || !url.starts_with("https://") {
        return Err("URL must be https://HOST:PORT".into());
    }
    if let Some(e) = store.enrolment()? {
        return Err(format!(
            "already enrolled with {} as {} (since {})",
            e.url,
            e.host,
            format_utc(e.enrolled_at)
        ));
    }
    let key = store.host_key(true)?;
    store.seal_key(true)?;
    let ans = client::enroll(url, fingerprint, token, &key).map_err(|e| match e {
        CallError::Refused(code, m) => format!("the server refused the enrolment ({code}): {m}"),
        CallError::Unreachable(m) => format!("cannot reach {url}: {m}"),
    })?;
    let ours = state::fingerprint_of(&key);
    if ans.host_key != ours {
        return Err(format!(
            "the server registered key {} but this host's key is {ours}",
            ans.host_key
        ));
    }
    jit_core::validate::validate_name("host name", &ans.host)
        .map_err(|e| format!("server answered a bad host name: {e}"))?;
    let mut pins = vec![fingerprint.to_string()];
    if ans.tls_fingerprint != fingerprint && ans.tls_fingerprint.starts_with("SHA256:") {
        // Said by the server over the connection pinned to `fingerprint`: its configured
        // certificate (e.g. behind a name that resolves to another replica).
        pins.push(ans.tls_fingerprint.clone());
    }
    // The next key, said over the same pinned connection: the pin set is current + next.
    if let Some(next) = ans.tls_next_fingerprint.as_ref() {
        if next.starts_with("SHA256:") && next.len() <= 80 && !pins.contains(next) {
            pins.push(next.clone());
        }
    }
    let e = Enrolment {
        url: url.trim_end_matches('/').to_string(),
        host: ans.host,
        host_key: ours,
        root_key: ans.root_key,
        tls_pins: pins,
        enrolled_at: now,
    };
    e.pins()?;
    store.save_enrolment(&e)?;
    {
        let mut s = link.lock();
        s.enrolled = Some((e.url.clone(), e.host.clone()));
    }
    link.wake.notify_all();
    Ok(e)
}

/// Starts the poller and the stale watch. They idle until the host is enrolled.
pub fn spawn(
    sink: Arc<dyn GrantSink>,
    link: Arc<Link>,
    store: LinkStore,
    stop: &'static AtomicBool,
) {
    // What is on disk decides the first status: a restarted jitd whose last document expired
    // is stale until a new one verifies.
    if let (Ok(Some(e)), Ok(a)) = (store.enrolment(), store.applied()) {
        let mut s = link.lock();
        s.enrolled = Some((e.url, e.host));
        s.seq = a.seq;
        s.expires_at = a.expires_at;
        s.last_sync = (a.at > 0).then_some(a.at);
    }
    {
        let (sink, link) = (Arc::clone(&sink), Arc::clone(&link));
        std::thread::spawn(move || stale_watch(&*sink, &link, stop));
    }
    {
        let (link, store) = (Arc::clone(&link), store.clone());
        std::thread::spawn(move || mfa_reporter(&link, &store, stop));
    }
    {
        let (sink, link, store) = (Arc::clone(&sink), Arc::clone(&link), store.clone());
        std::thread::spawn(move || reporter(&*sink, &link, &store, stop));
    }
    std::thread::spawn(move || poller(&*sink, &link, &store, stop));
}

/// Sends the TOTP steps accepted here for fleet identities to the server as soon as they are
/// queued (its own connection: the poller is usually inside a long-poll). A step the server
/// cannot be told now is kept and retried; the window in which another host could still accept
/// the same code is what this delay adds to the server's relay (docs/server.md "Fleet MFA").
/// Sends the TOTP steps accepted here at once (not batched with the host events: every
/// moment a used step is not relayed, the same code still works on the person's other hosts).
fn mfa_reporter(link: &Link, store: &LinkStore, stop: &AtomicBool) {
    let mut client: Option<(Enrolment, HostClient)> = None;
    while !stop.load(Ordering::SeqCst) {
        let batch: Vec<(String, u64)> = {
            let mut s = link.lock();
            if s.used.is_empty() {
                s = link
                    .wake
                    .wait_timeout(s, Duration::from_secs(1))
                    .map(|(g, _)| g)
                    .unwrap_or_else(|p| p.into_inner().0);
            }
            std::mem::take(&mut s.used)
        };
        if batch.is_empty() {
            continue;
        }
        let Ok(Some(e)) = store.enrolment() else {
            continue;
        };
        if client.as_ref().map(|(c, _)| c) != Some(&e) {
            match store.host_key(false).and_then(|key| {
                HostClient::new(&e.url, &e.tls_pins, &e.host, key, Duration::from_secs(10))
            }) {
                Ok(c) => client = Some((e.clone(), c)),
                Err(_) => {
                    link.lock().used.extend(batch);
                    sleep_unless_stopped(2, stop);
                    continue;
                }
            }
        }
        let Some((_, c)) = client.as_ref() else {
            continue;
        };
        let mut retry = Vec::new();
        for (user, step) in batch {
            // Refused (the grant ended meanwhile, a step the server finds too far ahead): dropped,
            // nothing to relay. Unreachable: kept for the next round.
            if let Err(CallError::Unreachable(_)) = c.mfa_used(&user, step) {
                retry.push((user, step));
            }
        }
        if !retry.is_empty() {
            link.lock().used.splice(0..0, retry);
            sleep_unless_stopped(2, stop);
        }
    }
}

/// Every second: a host whose newest document expired is stale (audited once per episode,
/// strict grants ended, nothing new arrives until a newer document verifies).
fn stale_watch(sink: &dyn GrantSink, link: &Link, stop: &AtomicBool) {
    while !stop.load(Ordering::SeqCst) {
        let now = jit_core::time::now();
        let newly = {
            let mut s = link.lock();
            // Stale means "had a valid document, it expired": before the first document the
            // host holds no server grants and the status says it is waiting for one.
            if s.enrolled.is_some() && s.seq > 0 && s.expires_at <= now && s.stale_since.is_none() {
                s.stale_since = Some(now);
                s.connected = false;
                Some(s.expires_at)
            } else {
                None
            }
        };
        if let Some(exp) = newly {
            sink.record(
                now,
                true,
                Event::SyncStale,
                json!({ "document_expired_at": exp, "effect": "strict grants end; no new server grants until a valid document arrives; local grants unaffected" }),
            );
            let ended = apply::end_strict(sink, now);
            link.push_event(HostEvent {
                at: now,
                kind: "stale",
                grant: String::new(),
                detail: format!(
                    "document expired at {exp}; {} strict grant(s) ended",
                    ended.len()
                ),
                local_grant: String::new(),
            });
        }
        // A fleet TOTP secret lives no longer than the grant that asks for it, with or without
        // the server.
        {
            let _applying = crate::poison::lock(&link.applying);
            sink.prune_fleet_mfa(jit_core::time::now());
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

fn sleep_unless_stopped(secs: u64, stop: &AtomicBool) {
    for _ in 0..secs * 10 {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Jitter in [0.5, 1.5) × `secs`, from getrandom (no RNG crate for one number).
fn jittered(secs: u64) -> u64 {
    let mut b = [0u8; 1];
    // SAFETY: `b` is writable for its length.
    unsafe { libc::getrandom(b.as_mut_ptr().cast(), 1, 0) };
    (secs * (128 + u64::from(b[0])) / 256).max(1)
}

fn poller(sink: &dyn GrantSink, link: &Link, store: &LinkStore, stop: &AtomicBool) {
    let mut backoff = 1u64;
    let mut client: Option<(Enrolment, HostClient)> = None;
    let mut seal_key_registered = false;
    // When the pin set was last fetched (none yet: at the first answer).
    let mut pins_at: Option<UnixTime> = None;
    while !stop.load(Ordering::SeqCst) {
        let enrolment = match store.enrolment() {
            Ok(Some(e)) => e,
            Ok(None) => {
                let s = link.lock();
                let _ = link.wake.wait_timeout(s, Duration::from_secs(1));
                continue;
            }
            Err(e) => {
                fail(sink, link, &format!("enrolment unreadable: {e}"));
                sleep_unless_stopped(BACKOFF_MAX, stop);
                continue;
            }
        };
        // One client per enrolment: ureq's agent keeps the TLS connection for the next poll,
        // the acknowledgement and the events.
        if client.as_ref().map(|(e, _)| e) != Some(&enrolment) {
            let made = store.host_key(false).and_then(|key| {
                HostClient::new(
                    &enrolment.url,
                    &enrolment.tls_pins,
                    &enrolment.host,
                    key,
                    Duration::from_secs(POLL_WAIT + 15),
                )
            });
            match made {
                Ok(c) => {
                    client = Some((enrolment.clone(), c));
                    seal_key_registered = false;
                }
                Err(e) => {
                    fail(sink, link, &e);
                    sleep_unless_stopped(BACKOFF_MAX, stop);
                    continue;
                }
            }
        }
        let Some((_, c)) = client.as_ref() else {
            continue;
        };
        if !seal_key_registered {
            // A host enrolled before fleet MFA makes its sealing key now; an older server
            // without the endpoint only means no fleet secrets arrive (MFA grants refused).
            seal_key_registered = store
                .seal_key(true)
                .map(|k| {
                    c.register_seal_key(&jit_proto::mfa_seal::public_key(&k))
                        .is_ok()
                })
                .unwrap_or(false);
        }
        match poll_once(sink, link, store, &enrolment, c) {
            Ok(()) => {
                backoff = 1;
                // The pin set at start, then once per document lifetime (at most an hour):
                // cheap, and a `tls-next` reaches every host long before anyone promotes it.
                let now = jit_core::time::now();
                let every = {
                    let s = link.lock();
                    (s.expires_at - s.last_sync.unwrap_or(s.expires_at))
                        .clamp(5, pins::PINS_EVERY_MAX)
                };
                if pins_at.is_none_or(|t| now - t >= every) {
                    pins_at = Some(now);
                    if let Err(e) = pins::refresh(sink, store, &enrolment, c, now) {
                        link.lock().last_error = Some(e);
                    }
                }
            }
            Err(e) => {
                fail(sink, link, &e);
                sleep_unless_stopped(jittered(backoff), stop);
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }
}

/// A TLS error from the pinned verifier, said plainly (the transport's text around it is long):
/// `server certificate SHA256:… is not the pinned one`.
fn pin_failure(m: &str) -> String {
    match (m.find("server certificate "), m.find("not the pinned one")) {
        (Some(i), Some(j)) if j > i => m[i..j + "not the pinned one".len()].to_string(),
        _ => m.to_string(),
    }
}

/// Records a failed poll: offline (audited when the link drops, not at every retry).
fn fail(sink: &dyn GrantSink, link: &Link, why: &str) {
    let was = {
        let mut s = link.lock();
        let was = s.connected;
        s.connected = false;
        s.last_error = Some(why.to_string());
        was
    };
    if was {
        sink.record(
            jit_core::time::now(),
            true,
            Event::SyncOffline,
            json!({ "error": why, "effect": "grants run to their own end; stale when the last document expires" }),
        );
    }
}

fn poll_once(
    sink: &dyn GrantSink,
    link: &Link,
    store: &LinkStore,
    e: &Enrolment,
    client: &HostClient,
) -> Result<(), String> {
    let pins = e.pins()?;
    let applied = store.applied()?;
    let nonce = client::nonce()?;
    // A host whose document expired asks for an answer at once; so does one not connected in
    // this run yet (just started, or after a failure): fleet TOTP secrets live in memory only
    // and come with the next document.
    let connected = link.lock().connected;
    let wait = if !connected || applied.expires_at <= jit_core::time::now() {
        0
    } else {
        POLL_WAIT
    };
    let raw = client
        .poll(applied.seq, wait, &nonce)
        .map_err(|e| match e {
            CallError::Refused(c, m) => format!("server refused the poll ({c}): {m}"),
            CallError::Unreachable(m) => format!("server unreachable: {}", pin_failure(&m)),
        })?;
    let now = jit_core::time::now();
    // What the document admitted and ended reaches the server through the audit trail's
    // records (grant.live, grant.revoked, teardown), forwarded by `events`.
    let (body, _out) = accept_document(sink, link, store, &pins, &raw, &nonce, now)?;
    // The acknowledgement is best effort: the next poll repeats the state.
    let _ = client.ack(body.seq);
    Ok(())
}

/// Sends host events and certifications as they are queued, on a connection of its own (the
/// poller's is held by the long-poll): a short pause gathers a burst into one report; while
/// the server cannot be reached, retries back off like the poller (the queue stays bounded).
fn reporter(sink: &dyn GrantSink, link: &Link, store: &LinkStore, stop: &AtomicBool) {
    let mut client: Option<(Enrolment, HostClient)> = None;
    let mut backoff = 0u64;
    while !stop.load(Ordering::SeqCst) {
        if !link.wait_report(Duration::from_secs(1)) {
            continue;
        }
        std::thread::sleep(Duration::from_millis(200));
        let enrolment = match store.enrolment() {
            Ok(Some(e)) => e,
            _ => {
                sleep_unless_stopped(1, stop);
                continue;
            }
        };
        if client.as_ref().map(|(e, _)| e) != Some(&enrolment) {
            let made = store.host_key(false).and_then(|key| {
                HostClient::new(
                    &enrolment.url,
                    &enrolment.tls_pins,
                    &enrolment.host,
                    key,
                    Duration::from_secs(20),
                )
            });
            match made {
                Ok(c) => client = Some((enrolment.clone(), c)),
                Err(_) => {
                    sleep_unless_stopped(5, stop);
                    continue;
                }
            }
        }
        let Some((_, c)) = client.as_ref() else {
            continue;
        };
        if send_reports(sink, link, c, jit_core::time::now()) {
            backoff = 0;
        } else {
            backoff = (backoff * 2).clamp(1, BACKOFF_MAX);
            sleep_unless_stopped(jittered(backoff), stop);
        }
    }
}

/// Largest certification sent (the server takes bodies up to 64 KiB).
const CERT_BODY_MAX: usize = 60 << 10;

/// Sends queued events (one report) and certifications. A report the server refuses (4xx) is
/// dropped and audited here (it would be refused again); one that did not arrive goes back.
/// Returns false when the server could not be reached.
fn send_reports(sink: &dyn GrantSink, link: &Link, client: &HostClient, now: UnixTime) -> bool {
    let mut reached = true;
    let ids: std::collections::HashMap<String, String> = sink
        .server_grants()
        .into_iter()
        .map(|h| (h.local_id, h.server_id))
        .collect();
    let server_id = |local: &str| ids.get(local).cloned().unwrap_or_else(|| local.to_string());
    let mut report = link.take_events(now);
    for e in &mut report {
        if e.grant.is_empty() && !e.local_grant.is_empty() {
            e.grant = server_id(&e.local_grant);
        }
    }
    if !report.is_empty() {
        match client.events(&report) {
            Ok(()) => {}
            Err(CallError::Refused(code, m)) => sink.record(
                now,
                true,
                Event::SyncReportRefused,
                json!({ "what": "events", "count": report.len(), "error": format!("{code}: {m}") }),
            ),
            Err(CallError::Unreachable(_)) => {
                link.requeue_events(report);
                return false;
            }
        }
    }
    // A few certifications per poll: each is one call.
    for _ in 0..10 {
        let Some(c) = link.take_cert() else { break };
        let sid = ids.get(&c.local_grant).cloned();
        let c = events::fit(c, CERT_BODY_MAX);
        let body = json!({
            "grant": sid.clone().unwrap_or_else(|| c.local_grant.clone()),
            "local_grant": c.local_grant,
            "source": if sid.is_some() { "server" } else { "local" },
            "user": c.user,
            "certification": c.cert,
        });
        match client.certification(&body) {
            Ok(()) => {}
            Err(CallError::Refused(code, m)) => sink.record(
                now,
                true,
                Event::SyncReportRefused,
                json!({ "what": format!("certification of {}", c.local_grant), "count": 1, "error": format!("{code}: {m}") }),
            ),
            Err(CallError::Unreachable(_)) => {
                link.requeue_cert(c);
                reached = false;
                break;
            }
        }
    }
    reached
}

/// Verifies `raw` (the answer to the poll that sent `nonce`) against the pins and the durable
/// applied sequence, records its sequence durably, then converges. A refused document changes
/// nothing (audited, reported to the server as `refused_document`).
fn accept_document(
    sink: &dyn GrantSink,
    link: &Link,
    store: &LinkStore,
    pins: &jit_proto::state_doc::HostPins,
    raw: &[u8],
    nonce: &str,
    now: UnixTime,
) -> Result<(jit_proto::state_doc::StateBody, apply::Outcome), String> {
    let applied = store.applied()?;
    let body = match verify_document(raw, pins, now, applied.seq, nonce) {
        Ok(b) => b,
        Err(err) => {
            sink.record(
                now,
                true,
                Event::SyncDocumentRefused,
                json!({ "error": err.to_string(), "applied_seq": applied.seq, "bytes": raw.len() }),
            );
            link.push_event(HostEvent {
                at: now,
                kind: "refused_document",
                grant: String::new(),
                detail: jit_proto::text::one_line(&err.to_string(), 200),
                local_grant: String::new(),
            });
            return Err(format!("document refused: {err}"));
        }
    };
    // Durable before anything activates: a crash after this line never lets this or an older
    // document be applied again.
    let next = Applied {
        seq: body.seq,
        expires_at: body.expires_at,
        at: now,
    };
    store.save_applied(&next).map_err(|e| {
        format!(
            "cannot record sequence {} durably, nothing applied: {e}",
            body.seq
        )
    })?;
    let was_stale = {
        let mut s = link.lock();
        s.connected = true;
        s.last_sync = Some(now);
        s.seq = body.seq;
        s.expires_at = body.expires_at;
        s.last_error = None;
        s.stale_since.take()
    };
    if was_stale.is_some() {
        sink.record(
            now,
            false,
            Event::SyncFresh,
            json!({ "seq": body.seq, "expires_at": body.expires_at }),
        );
    }
    // Secrets first: admission of an MFA grant needs its person's secret here.
    let _applying = crate::poison::lock(&link.applying);
    let secrets = open_mfa(sink, store, &pins.host, &body, now);
    sink.set_fleet_mfa(secrets, &body.mfa_used, now);
    let refused_before = std::mem::take(&mut link.lock().refused);
    let out = apply::converge(sink, &body.grants, body.seq, now, &refused_before);
    sink.prune_fleet_mfa(now);
    let new_refusal = out
        .refused
        .iter()
        .any(|(id, _)| !refused_before.contains(id));
    link.lock().refused = out.refused.iter().map(|(id, _)| id.clone()).collect();
    if !out.admitted.is_empty() || !out.ended.is_empty() || new_refusal {
        sink.record(
            now,
            false,
            Event::SyncApplied,
            json!({ "seq": body.seq, "grants": body.grants.len(), "admitted": out.admitted, "ended": out.ended, "refused": out.refused.len() }),
        );
    }
    Ok((body, out))
}

#[cfg(test)]
mod tests;

/// Opens the fleet TOTP secrets of a verified document with this host's sealing key, each bound
/// to (person, this host, version). One that does not open (sealed to another host, moved to
/// another person or version, changed) is audited and left out; the rest are used.
fn open_mfa(
    sink: &dyn GrantSink,
    store: &LinkStore,
    host: &str,
    body: &jit_proto::state_doc::StateBody,
    now: UnixTime,
) -> Vec<(String, u64, jit_core::host::secret::Secret)> {
    if body.mfa.is_empty() {
        return Vec::new();
    }
    let key = match store.seal_key(false) {
        Ok(k) => k,
        Err(e) => {
            sink.record(
                now,
                true,
                Event::SyncMfaRefused,
                json!({ "user": null, "version": null, "seq": body.seq, "error": format!("no sealing key: {e}") }),
            );
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    for s in &body.mfa {
        let opened = jit_core::validate::validate_name("user name", &s.user)
            .map_err(|e| e.to_string())
            .and_then(|()| jit_proto::mfa_seal::open(&key, host, s).map_err(|e| e.to_string()));
        match opened {
            Ok(secret) => out.push((s.user.clone(), s.version, secret)),
            Err(e) => sink.record(
                now,
                true,
                Event::SyncMfaRefused,
                json!({ "user": jit_proto::text::one_line(&s.user, 64), "version": s.version, "seq": body.seq, "error": e }),
            ),
        }
    }
    out
}
