//! Host events for the server's audit: which of jitd's own audit records also go to jit-server
//! (`POST /v1/host/events`, signed with the host key), and the bounded queue they wait in.
//!
//! The audit trail calls [`Link::forward`] for every record it writes (one hook, so no record
//! type can be forgotten at its call site); the records chosen here are queued while the host
//! is enrolled, whatever the grant's source (local grants too: the server's audit covers the
//! fleet). The queue holds at most [`EVENTS_KEPT`] events; when it is full the OLDEST is
//! dropped and counted, and the next report starts with one `events_dropped` event saying how
//! many were lost and over which span of host time. The host's own audit trail keeps every
//! record either way. The queue is in memory: it survives a server outage, not a jitd restart.

use jit_core::time::UnixTime;
use serde_json::Value;

use super::client::HostEvent;
use super::Link;
use crate::audit::Event;

/// Events kept for the server while it cannot be reached (oldest dropped first).
pub const EVENTS_KEPT: usize = 1000;
/// Events in one report (the server's cap).
pub const EVENTS_PER_CALL: usize = 100;
/// Certification records kept for the server while it cannot be reached.
pub const CERTS_KEPT: usize = 100;

/// The server's kind for a record of `event`, if it goes to the server.
fn kind_of(event: Event, fields: &Value) -> Option<&'static str> {
    Some(match event {
        Event::GrantLive | Event::GrantActivated => "grant_live",
        Event::GrantCreated
            if fields
                .pointer("/source/kind")
                .and_then(Value::as_str)
                .is_none_or(|k| k == "local") =>
        {
            "local_grant"
        }
        Event::GrantExpired => "grant_ended",
        Event::GrantRevoked => "grant_revoked",
        Event::SessionOpen => "session_open",
        Event::SessionClose => "session_close",
        Event::SudoAllowed => "sudo_allowed",
        Event::SudoDenied => "sudo_denied",
        Event::GrantTeardown => "teardown_complete",
        Event::GrantTeardownIncomplete => "teardown_incomplete",
        Event::GrantMonitorHit => "monitor_hit",
        Event::SyncGrantRefused => "grant_refused",
        _ => return None,
    })
}

/// Detail text of a forwarded record: its fields as compact JSON on one line, cut to the
/// server's field cap (the host's own trail keeps the record whole).
fn detail_of(fields: &Value) -> String {
    jit_proto::text::one_line(&fields.to_string(), 900)
}

/// The record as a host event, if it is one the server gets.
pub fn host_event_of(now: UnixTime, event: Event, fields: &Value) -> Option<HostEvent> {
    let kind = kind_of(event, fields)?;
    let local = fields
        .get("grant")
        .and_then(Value::as_str)
        .filter(|g| g.len() <= 64)
        .unwrap_or_default()
        .to_string();
    // A server grant this host refused has no local id: it is named by the server's.
    let grant = if event == Event::SyncGrantRefused {
        fields
            .get("server_grant")
            .and_then(Value::as_str)
            .filter(|g| g.len() <= 64)
            .unwrap_or_default()
            .to_string()
    } else {
        String::new()
    };
    Some(HostEvent {
        at: now,
        kind,
        grant,
        detail: detail_of(fields),
        local_grant: local,
    })
}

/// A certification waiting to be sent.
#[derive(Debug, Clone)]
pub struct PendingCert {
    /// The daemon's grant id.
    pub local_grant: String,
    /// The grant's user.
    pub user: String,
    /// The record (the summary kept with the grant: first differences and a count of the rest).
    pub cert: jit_proto::certification::Certification,
}

/// Drops beyond the cap, oldest first.
#[derive(Debug, Default)]
pub struct Dropped {
    /// Events lost since the last report.
    pub count: u64,
    /// Host time of the first and last one lost.
    pub first: UnixTime,
    pub last: UnixTime,
}

impl Link {
    /// Called by the audit trail for every record: queues the ones the server gets, while
    /// enrolled. Takes only the link's lock (never the daemon's), so it is safe under any lock
    /// the caller of the audit trail holds.
    pub fn forward(&self, now: UnixTime, event: Event, fields: &Value) {
        if event == Event::GrantCertification {
            // The full record is queued by the certification's owner (`queue_certification`);
            // this summary line needs no event of its own.
            return;
        }
        if kind_of(event, fields).is_none() {
            return;
        }
        let mut s = self.lock();
        if s.enrolled.is_none() {
            return;
        }
        if let Some(e) = host_event_of(now, event, fields) {
            // An incomplete teardown is retried (and audited) every tick: the server hears of
            // it once per grant, and again when it completes.
            match e.kind {
                "teardown_incomplete" => {
                    if s.incomplete.len() >= EVENTS_KEPT {
                        s.incomplete.clear();
                    }
                    if !s.incomplete.insert(e.local_grant.clone()) {
                        return;
                    }
                }
                "teardown_complete" => {
                    s.incomplete.remove(&e.local_grant);
                }
                _ => {}
            }
            s.push_bounded(e);
            drop(s);
            self.report.notify_one();
        }
    }

    /// Queues a grant's certification for the server (while enrolled; bounded, oldest dropped).
    pub fn queue_certification(&self, c: PendingCert) {
        let mut s = self.lock();
        if s.enrolled.is_none() {
            return;
        }
        if s.certs.len() >= CERTS_KEPT {
            let old = s.certs.remove(0);
            let e = HostEvent {
                at: old.cert.taken_at,
                kind: "certification_dropped",
                grant: String::new(),
                detail: format!(
                    "certification of {} ({}) not delivered: queue of {CERTS_KEPT} full",
                    old.local_grant,
                    old.cert.status.as_str()
                ),
                local_grant: old.local_grant,
            };
            s.push_bounded(e);
        }
        s.certs.push(c);
        drop(s);
        self.report.notify_one();
    }

    pub(super) fn push_event(&self, e: HostEvent) {
        self.lock().push_bounded(e);
        self.report.notify_one();
    }

    /// Waits up to `limit` for something to send; whether there is.
    pub(super) fn wait_report(&self, limit: std::time::Duration) -> bool {
        let s = self.lock();
        let pending = |s: &super::LinkState| {
            !s.events.is_empty() || !s.certs.is_empty() || s.dropped.count > 0
        };
        if pending(&s) {
            return true;
        }
        let (s, _) = self
            .report
            .wait_timeout(s, limit)
            .unwrap_or_else(|p| p.into_inner());
        pending(&s)
    }

    /// Takes the next report: an `events_dropped` note first if any were lost, then queued
    /// events, at most [`EVENTS_PER_CALL`] in all.
    pub(super) fn take_events(&self, now: UnixTime) -> Vec<HostEvent> {
        let mut s = self.lock();
        let mut out = Vec::new();
        if s.dropped.count > 0 {
            out.push(HostEvent {
                at: now,
                kind: "events_dropped",
                grant: String::new(),
                detail: format!(
                    "{} event(s) from host time {} to {} dropped: the queue of {EVENTS_KEPT} was full while the server could not be reached (the host's audit trail has them)",
                    s.dropped.count, s.dropped.first, s.dropped.last
                ),
                local_grant: String::new(),
            });
            s.dropped = Dropped::default();
        }
        let n = s.events.len().min(EVENTS_PER_CALL - out.len());
        out.extend(s.events.drain(..n));
        out
    }

    /// Puts back a report that did not reach the server (in front, still bounded).
    pub(super) fn requeue_events(&self, report: Vec<HostEvent>) {
        let mut g = self.lock();
        let s = &mut *g;
        let mut back = Vec::with_capacity(report.len() + s.events.len());
        for e in report {
            if e.kind == "events_dropped" {
                // Counted again below from what is dropped now; the note itself is rebuilt.
                if let Some(n) = e
                    .detail
                    .split_whitespace()
                    .next()
                    .and_then(|n| n.parse::<u64>().ok())
                {
                    s.dropped.count += n;
                    if s.dropped.first == 0 {
                        s.dropped.first = e.at;
                    }
                    s.dropped.last = s.dropped.last.max(e.at);
                }
                continue;
            }
            back.push(e);
        }
        back.append(&mut s.events);
        let over = back.len().saturating_sub(EVENTS_KEPT);
        for e in back.drain(..over) {
            note_drop(&mut s.dropped, e.at);
        }
        s.events = back;
    }

    /// Takes the oldest queued certification.
    pub(super) fn take_cert(&self) -> Option<PendingCert> {
        let mut s = self.lock();
        (!s.certs.is_empty()).then(|| s.certs.remove(0))
    }

    /// Puts back a certification that did not reach the server.
    pub(super) fn requeue_cert(&self, c: PendingCert) {
        let mut s = self.lock();
        if s.certs.len() < CERTS_KEPT {
            s.certs.insert(0, c);
        }
    }
}

/// `c` cut until its record serializes within `max` bytes: differences dropped from the end
/// (root-equivalent ones come first, so they stay), counted in `omitted`; unreadable paths too.
pub fn fit(mut c: PendingCert, max: usize) -> PendingCert {
    let size = |c: &PendingCert| serde_json::to_vec(&c.cert).map_or(usize::MAX, |v| v.len());
    while size(&c) > max && !c.cert.unreadable.is_empty() {
        c.cert.unreadable.pop();
    }
    while size(&c) > max && c.cert.differences.pop().is_some() {
        c.cert.omitted += 1;
    }
    c
}

fn note_drop(d: &mut Dropped, at: UnixTime) {
    if d.count == 0 {
        d.first = at;
    }
    d.count += 1;
    d.last = d.last.max(at);
}

impl super::LinkState {
    fn push_bounded(&mut self, e: HostEvent) {
        if self.events.len() >= EVENTS_KEPT {
            let old = self.events.remove(0);
            note_drop(&mut self.dropped, old.at);
        }
        self.events.push(e);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn enrolled() -> Link {
        let l = Link::default();
        l.lock().enrolled = Some(("https://x".into(), "web1".into()));
        l
    }

    #[test]
    fn chosen_records_are_queued_only_while_enrolled() {
        let l = Link::default();
        let f = json!({"grant": "g-1", "user": "pat", "command": "/bin/true"});
        l.forward(5, Event::SudoAllowed, &f);
        assert!(l.take_events(6).is_empty(), "not enrolled: nothing queued");
        let l = enrolled();
        l.forward(5, Event::SudoAllowed, &f);
        l.forward(5, Event::DaemonStart, &json!({"pid": 1, "version": "x"}));
        l.forward(
            5,
            Event::GrantCreated,
            &json!({"grant": "g-2", "source": {"kind": "server", "id": "sg-1"}}),
        );
        l.forward(
            5,
            Event::GrantCreated,
            &json!({"grant": "g-3", "source": {"kind": "local"}}),
        );
        let r = l.take_events(6);
        let kinds: Vec<_> = r.iter().map(|e| (e.kind, e.local_grant.as_str())).collect();
        assert_eq!(kinds, [("sudo_allowed", "g-1"), ("local_grant", "g-3")]);
        assert!(r[0].detail.contains("/bin/true"));
    }

    #[test]
    fn an_incomplete_teardown_retried_every_tick_is_reported_once_until_it_completes() {
        let l = enrolled();
        let f = json!({"grant": "g-1", "survivors": [42]});
        for t in 0..30 {
            l.forward(t, Event::GrantTeardownIncomplete, &f);
        }
        l.forward(31, Event::GrantTeardown, &json!({"grant": "g-1"}));
        l.forward(32, Event::GrantTeardownIncomplete, &json!({"grant": "g-2"}));
        let kinds: Vec<_> = l
            .take_events(40)
            .iter()
            .map(|e| (e.kind, e.local_grant.clone()))
            .collect();
        assert_eq!(
            kinds,
            [
                ("teardown_incomplete", "g-1".to_string()),
                ("teardown_complete", "g-1".to_string()),
                ("teardown_incomplete", "g-2".to_string())
            ]
        );
    }

    #[test]
    fn a_certification_too_large_for_one_call_keeps_its_first_differences_and_counts_the_rest() {
        use jit_proto::certification::{
            Certification, CertificationStatus, ChangeKind, Difference,
        };
        let d = |i: usize| Difference {
            area: "setuid".into(),
            item: format!("/var/{}{i}", "x".repeat(3000)),
            change: ChangeKind::Added,
            before: None,
            after: None,
            root_equivalent: i == 0,
        };
        let c = PendingCert {
            local_grant: "g-1".into(),
            user: "pat".into(),
            cert: Certification {
                status: CertificationStatus::Changed,
                baseline_at: Some(1),
                taken_at: 2,
                items: 3,
                differences: (0..40).map(d).collect(),
                omitted: 5,
                unreadable: vec![],
            },
        };
        let f = fit(c, 60 << 10);
        assert!(serde_json::to_vec(&f.cert).unwrap().len() <= 60 << 10);
        assert!(f.cert.differences[0].root_equivalent, "the first stay");
        assert_eq!(
            f.cert.differences.len() + f.cert.omitted,
            45,
            "none lost uncounted"
        );
    }

    #[test]
    fn a_full_queue_drops_the_oldest_and_says_so_once() {
        let l = enrolled();
        for i in 0..(EVENTS_KEPT as i64 + 250) {
            l.forward(i, Event::SessionOpen, &json!({"grant": "g-1"}));
        }
        assert_eq!(l.lock().events.len(), EVENTS_KEPT, "bounded");
        let r = l.take_events(9999);
        assert_eq!(r.len(), EVENTS_PER_CALL);
        assert_eq!(r[0].kind, "events_dropped");
        assert!(
            r[0].detail
                .starts_with("250 event(s) from host time 0 to 249"),
            "{}",
            r[0].detail
        );
        assert_eq!(r[1].at, 250, "the oldest kept follows");
        // A report that fails goes back in front; the note is rebuilt, not duplicated.
        l.requeue_events(r);
        let r = l.take_events(9999);
        assert_eq!(r[0].kind, "events_dropped");
        assert!(r[0].detail.starts_with("250 event(s)"), "{}", r[0].detail);
        assert_eq!(r.iter().filter(|e| e.kind == "events_dropped").count(), 1);
        let mut total = r.len() - 1;
        loop {
            let r = l.take_events(9999);
            if r.is_empty() {
                break;
            }
            total += r.len();
        }
        assert_eq!(total, EVENTS_KEPT);
    }
}
