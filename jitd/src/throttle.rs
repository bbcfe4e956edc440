//! Fair use of the local socket and of the audit trail by peers that are not root.
//!
//! Any local user can connect to jitd. Without limits, a few connections that each trickle a
//! byte a second held every worker (root's `jitctl grant revoke` and the modules then got no
//! answer), and every refused request was written to the audit trail in full. This module keeps,
//! per peer uid: how many connections it has open (capped for uids other than 0), whether it is
//! in a throttling episode (audited once when it starts, summarized once when it ends), and a
//! window of denied requests (the first recorded in full, the rest counted and summarized).
//! Both periods double (up to an hour) while a uid keeps it up, so a sustained attack costs the
//! audit trail a few records an hour, not a few a minute.
//!
//! It decides and counts; the caller writes the [`Record`]s it returns to the audit trail.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use jit_core::time::UnixTime;
use serde_json::{json, Value};

use crate::audit::{Event, Severity};

/// An episode ends when the uid has caused no incident for this long (doubled for each episode
/// that starts within that time of the last one's end).
pub const EPISODE_QUIET: Duration = Duration::from_secs(10);

/// One denied request per uid is recorded in full per window of this length; the others in the
/// window are counted and summarized when it closes (doubled after each window that had more
/// than its first denial).
pub const DENIAL_WINDOW: Duration = Duration::from_secs(10);

/// The longest a quiet period or a denial window grows to.
pub const MAX_PERIOD: Duration = Duration::from_secs(3600);

/// A period that doubles while what it measures keeps recurring, and falls back to its base
/// after a stretch as long as itself without it.
#[derive(Clone, Copy)]
struct Backoff {
    base: Duration,
    len: Duration,
    ended: Option<Instant>,
}

impl Backoff {
    fn new(base: Duration) -> Backoff {
        Backoff {
            base,
            len: base,
            ended: None,
        }
    }

    /// The length of a period starting now.
    fn start(&mut self) -> Duration {
        if self.ended.is_some_and(|e| e.elapsed() >= self.len) {
            self.len = self.base;
        }
        self.len
    }

    /// A period ended; if it was busy the next one (if it comes soon) is twice as long.
    fn end(&mut self, busy: bool) {
        self.ended = Some(Instant::now());
        self.len = if busy {
            (self.len * 2).min(MAX_PERIOD.max(self.base))
        } else {
            self.base
        };
    }

    /// Back at its base (nothing to remember).
    fn settled(&self) -> bool {
        self.len == self.base || self.ended.is_some_and(|e| e.elapsed() >= self.len)
    }
}

/// Distinct request types named in a denial summary (the rest are counted as `other`).
const MAX_KINDS: usize = 16;

/// An audit record to write: severity, event, fields.
pub type Record = (Severity, Event, Value);

/// Why a connection counted against its uid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Incident {
    /// Refused at accept: the uid already had its share of connections open.
    OverLimit,
    /// Its request did not arrive whole before the request deadline.
    Deadline,
}

impl Incident {
    fn as_str(self) -> &'static str {
        match self {
            Incident::OverLimit => "connection limit",
            Incident::Deadline => "request deadline",
        }
    }
}

struct Episode {
    started_at: UnixTime,
    quiet: Duration,
    last: Instant,
    over_limit: u64,
    deadline: u64,
}

struct Denials {
    length: Duration,
    opened: Instant,
    opened_at: UnixTime,
    suppressed: u64,
    kinds: BTreeMap<&'static str, u64>,
}

struct PerUid {
    open: usize,
    episode: Option<Episode>,
    quiet: Backoff,
    denials: Option<Denials>,
    window: Backoff,
}

impl PerUid {
    fn idle(&self) -> bool {
        self.open == 0
            && self.episode.is_none()
            && self.denials.is_none()
            && self.quiet.settled()
            && self.window.settled()
    }
}

/// Per-uid accounting of the socket's peers.
pub struct Throttle {
    per_uid: usize,
    quiet: Duration,
    window: Duration,
    uids: Mutex<HashMap<u32, PerUid>>,
}

/// A connection's place in its uid's count; dropping it gives the place back.
pub struct Slot {
    throttle: Arc<Throttle>,
    uid: u32,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut m = self.throttle.lock();
        if let Some(u) = m.get_mut(&self.uid) {
            u.open = u.open.saturating_sub(1);
        }
    }
}

impl Throttle {
    /// A throttle letting each uid other than 0 hold `per_uid` connections open at once.
    pub fn new(per_uid: usize) -> Arc<Throttle> {
        Self::with_periods(per_uid, EPISODE_QUIET, DENIAL_WINDOW)
    }

    /// As [`Throttle::new`] with other episode and denial-window lengths (tests).
    pub fn with_periods(per_uid: usize, quiet: Duration, window: Duration) -> Arc<Throttle> {
        Arc::new(Throttle {
            per_uid: per_uid.max(1),
            quiet,
            window,
            uids: Mutex::new(HashMap::new()),
        })
    }

    /// Connections one uid other than 0 may hold open at once.
    pub fn per_uid(&self) -> usize {
        self.per_uid
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<u32, PerUid>> {
        crate::poison::lock(&self.uids)
    }

    fn fresh(&self) -> PerUid {
        PerUid {
            open: 0,
            episode: None,
            quiet: Backoff::new(self.quiet),
            denials: None,
            window: Backoff::new(self.window),
        }
    }

    /// Admits a new connection from `uid`, or refuses it (the uid has its share open) and
    /// returns the episode's opening record if this refusal starts one. Root (the modules and
    /// root's jitctl) is never refused here.
    pub fn admit(
        self: &Arc<Self>,
        uid: u32,
        pid: i32,
        now: UnixTime,
    ) -> (Option<Slot>, Option<Record>) {
        let mut m = self.lock();
        let u = m.entry(uid).or_insert_with(|| self.fresh());
        if uid != 0 && u.open >= self.per_uid {
            let ev = Self::incident(u, uid, pid, Incident::OverLimit, self.per_uid, now);
            return (None, ev);
        }
        u.open += 1;
        drop(m);
        (
            Some(Slot {
                throttle: Arc::clone(self),
                uid,
            }),
            None,
        )
    }

    /// Counts a request from `uid` that missed the request deadline; returns the episode's
    /// opening record if this starts one.
    pub fn missed_deadline(&self, uid: u32, pid: i32, now: UnixTime) -> Option<Record> {
        let mut m = self.lock();
        let u = m.entry(uid).or_insert_with(|| self.fresh());
        Self::incident(u, uid, pid, Incident::Deadline, self.per_uid, now)
    }

    fn incident(
        u: &mut PerUid,
        uid: u32,
        pid: i32,
        what: Incident,
        per_uid: usize,
        now: UnixTime,
    ) -> Option<Record> {
        let started = u.episode.is_none();
        if started {
            u.episode = Some(Episode {
                started_at: now,
                quiet: u.quiet.start(),
                last: Instant::now(),
                over_limit: 0,
                deadline: 0,
            });
        }
        let e = u.episode.as_mut()?;
        e.last = Instant::now();
        match what {
            Incident::OverLimit => e.over_limit += 1,
            Incident::Deadline => e.deadline += 1,
        }
        started.then(|| {
            (
                Severity::Warning,
                Event::SocketThrottled,
                json!({
                    "peer_uid": uid, "peer_pid": pid, "cause": what.as_str(),
                    "connection_limit": per_uid, "quiet_secs": e.quiet.as_secs(),
                    "action": "connections over the limit refused busy; requests not sent whole in time closed; root's requests are served by their own workers",
                }),
            )
        })
    }

    /// Records a refused request from `uid`: the first in a window is returned in full (after
    /// the summary of the previous window, if it had more); later ones in the window are only
    /// counted.
    pub fn denied(
        &self,
        uid: u32,
        pid: i32,
        kind: &'static str,
        request: &str,
        now: UnixTime,
    ) -> Vec<Record> {
        let mut out = Vec::new();
        let mut m = self.lock();
        let u = m.entry(uid).or_insert_with(|| self.fresh());
        if let Some(d) = &mut u.denials {
            if d.opened.elapsed() < d.length {
                d.suppressed += 1;
                let n = d.kinds.len();
                let key = if d.kinds.contains_key(kind) || n < MAX_KINDS {
                    kind
                } else {
                    "other"
                };
                *d.kinds.entry(key).or_insert(0) += 1;
                return out;
            }
        }
        if let Some(d) = u.denials.take() {
            u.window.end(d.suppressed > 0);
            out.extend(Self::denial_summary(uid, d, now));
        }
        u.denials = Some(Denials {
            length: u.window.start(),
            opened: Instant::now(),
            opened_at: now,
            suppressed: 0,
            kinds: BTreeMap::new(),
        });
        out.push((
            Severity::Warning,
            Event::RequestDenied,
            json!({ "peer_uid": uid, "peer_pid": pid, "request": request }),
        ));
        out
    }

    fn denial_summary(uid: u32, d: Denials, now: UnixTime) -> Option<Record> {
        (d.suppressed > 0).then(|| {
            (
                Severity::Warning,
                Event::RequestDeniedSummary,
                json!({
                    "peer_uid": uid, "count": d.suppressed, "since": d.opened_at, "until": now,
                    "window_secs": d.length.as_secs(),
                    "requests": d.kinds,
                    "note": "further denied requests from this uid after the one recorded in full",
                }),
            )
        })
    }

    /// Closes what has gone quiet: episodes without an incident for their quiet period (one
    /// summary record each) and denial windows past their length (a summary if they counted
    /// any). Called about once a second.
    pub fn sweep(&self, now: UnixTime) -> Vec<Record> {
        let mut out = Vec::new();
        let mut m = self.lock();
        for (&uid, u) in m.iter_mut() {
            if u.episode
                .as_ref()
                .is_some_and(|e| e.last.elapsed() >= e.quiet)
            {
                if let Some(e) = u.episode.take() {
                    u.quiet.end(true);
                    out.push((
                        Severity::Notice,
                        Event::SocketThrottledEnd,
                        json!({
                            "peer_uid": uid, "since": e.started_at, "until": now,
                            "refused_over_limit": e.over_limit, "closed_at_deadline": e.deadline,
                            "quiet_secs": e.quiet.as_secs(),
                        }),
                    ));
                }
            }
            if u.denials
                .as_ref()
                .is_some_and(|d| d.opened.elapsed() >= d.length)
            {
                if let Some(d) = u.denials.take() {
                    u.window.end(d.suppressed > 0);
                    out.extend(Self::denial_summary(uid, d, now));
                }
            }
        }
        m.retain(|_, u| !u.idle());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_applies_to_users_not_root_and_slots_come_back() {
        let t = Throttle::new(2);
        let a = t.admit(1000, 1, 0);
        let b = t.admit(1000, 1, 0);
        assert!(a.0.is_some() && b.0.is_some());
        let (c, ev) = t.admit(1000, 1, 0);
        assert!(c.is_none());
        assert_eq!(ev.map(|e| e.1), Some(Event::SocketThrottled));
        let (d, ev) = t.admit(1000, 1, 0);
        assert!(d.is_none() && ev.is_none(), "one record per episode");
        assert!(t.missed_deadline(1000, 1, 0).is_none(), "same episode");
        let roots: Vec<_> = (0..100).map(|_| t.admit(0, 1, 0)).collect();
        assert!(roots.iter().all(|r| r.0.is_some() && r.1.is_none()));
        drop(a);
        assert!(
            t.admit(1000, 1, 0).0.is_some(),
            "a closed connection frees its place"
        );
    }

    #[test]
    fn the_first_denial_is_kept_the_rest_counted() {
        let t = Throttle::new(2);
        let first = t.denied(1000, 1, "add_grant", "add_grant user=\"x\"", 5);
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].1, Event::RequestDenied);
        for _ in 0..99 {
            assert!(t.denied(1000, 1, "add_grant", "add_grant", 5).is_empty());
        }
        assert!(
            !t.denied(1001, 1, "add_grant", "x", 5).is_empty(),
            "per uid"
        );
        assert!(t.sweep(6).is_empty(), "the window is still open");
    }

    #[test]
    fn windows_and_episodes_close_with_one_summary() {
        let ms = Duration::from_millis(300);
        let t = Throttle::with_periods(1, ms, ms);
        let _held = t.admit(1000, 1, 0);
        assert!(t.admit(1000, 1, 0).1.is_some());
        t.denied(1000, 1, "add_grant", "a", 0);
        t.denied(1000, 1, "add_grant", "a", 0);
        t.denied(1000, 1, "revoke_grant", "a", 0);
        std::thread::sleep(ms * 2);
        let ev = t.sweep(1);
        let names: Vec<Event> = ev.iter().map(|e| e.1).collect();
        assert_eq!(
            names,
            [Event::SocketThrottledEnd, Event::RequestDeniedSummary]
        );
        assert_eq!(ev[1].2["count"], 2);
        assert_eq!(ev[1].2["requests"]["add_grant"], 1);
        assert_eq!(ev[1].2["requests"]["revoke_grant"], 1);
        assert!(t.sweep(2).is_empty(), "summarized once");
        assert_eq!(
            t.denied(1000, 1, "add_grant", "a", 3).len(),
            1,
            "a new window"
        );
        // It kept on: the next window and quiet period are twice as long.
        t.denied(1000, 1, "add_grant", "a", 3);
        assert!(t.admit(1000, 1, 3).1.is_some(), "a new episode");
        std::thread::sleep(ms * 3 / 2);
        let ev = t.sweep(4);
        assert!(ev.is_empty(), "doubled: still open: {ev:?}");
        std::thread::sleep(ms);
        let ev = t.sweep(5);
        let names: Vec<Event> = ev.iter().map(|e| e.1).collect();
        assert_eq!(
            names,
            [Event::SocketThrottledEnd, Event::RequestDeniedSummary]
        );
        // A stretch as long as the period without anything: back to the base.
        drop(_held);
        std::thread::sleep(ms * 5);
        assert!(t.sweep(6).is_empty());
        assert!(t.lock().is_empty(), "nothing left to remember");
    }
}
