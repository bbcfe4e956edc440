//! Lost events. Both sources can drop events under load: the proc connector when its socket
//! buffer is full (`recv` fails with `ENOBUFS`), fanotify when its queue (16384 events) is
//! full (one `FAN_Q_OVERFLOW` event stands for what was dropped). A loss is never silent:
//!
//! * at once (at most every 250 ms while losses go on), the monitor **rescans** every watched
//!   grant: its cgroup is re-read (members whose fork was lost are found) and every member
//!   whose exec was not seen is classified from what it runs now (`/proc/PID/exe` and its
//!   command line), as its exec event would have been; connections are polled anyway;
//! * the losses of one source are gathered into an **episode** (from the first loss until
//!   five seconds without one, at most 60 s) and audited once per episode, with the number of
//!   loss reports, how long it lasted, the grants watched meanwhile (the first 100, and how
//!   many others) and how many members the rescans classified (`monitor.events_lost`,
//!   warning). Someone who fills a queue on and off gets at most one record per source every
//!   five seconds;
//! * each grant watched during an episode counts it, and its certification record in the
//!   audit carries that count (`monitor_events_lost`): file events (a read of a sensitive
//!   file, a write of an account file) dropped by fanotify cannot be recovered by a rescan,
//!   so the live watch of that grant had a gap; what the gap hid among account, sudo, key,
//!   package and set-id changes is in the certification's differences all the same.
//!
//! A loss does not end grants: any local user can fill the queues (every write on a watched
//! mount is an event), and ending every watched grant when someone does would hand any user a
//! way to cut administrators off in the middle of their work.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// A source that lost events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The netlink proc connector (fork, exec, exit).
    ProcConnector,
    /// fanotify (file events).
    Fanotify,
}

impl Source {
    /// Name in the audit.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::ProcConnector => "proc connector",
            Source::Fanotify => "fanotify",
        }
    }
}

/// One finished episode of losses of one source.
#[derive(Debug, Clone)]
pub struct Loss {
    /// Which source.
    pub source: Source,
    /// Loss reports read (ENOBUFS returns or FAN_Q_OVERFLOW events; each stands for one or
    /// more dropped events, the kernel does not say how many).
    pub reports: u64,
    /// From the first loss to the last, in milliseconds.
    pub lasted_ms: u64,
    /// Grants watched during the episode (all of them: each counts the episode; the audit
    /// record names the first [`GRANTS_LISTED`]).
    pub grants: Vec<String>,
    /// Members the rescans classified (their exec was not seen).
    pub rescanned: usize,
}

struct Open {
    first: Instant,
    last: Instant,
    reports: u64,
    grants: BTreeSet<String>,
    rescanned: usize,
}

/// Episodes being gathered, one per source.
pub(super) struct Episodes {
    open: Vec<(Source, Open)>,
    last_rescan: Option<Instant>,
    /// How long without a loss ends an episode ([`QUIET`]; shorter in tests).
    pub(super) quiet: Duration,
}

impl Default for Episodes {
    fn default() -> Self {
        Episodes {
            open: Vec::new(),
            last_rescan: None,
            quiet: QUIET,
        }
    }
}

/// Five seconds without a loss end an episode.
const QUIET: Duration = Duration::from_secs(5);
/// Grants named in one record (with thousands of grants live, the rest are counted).
pub const GRANTS_LISTED: usize = 100;
/// A longer episode is reported and a new one begins (a host that overflows without pause is
/// still reported every minute).
const LONGEST: Duration = Duration::from_secs(60);
/// Rescans at most this often while losses go on.
const RESCAN_EVERY: Duration = Duration::from_millis(250);

impl Episodes {
    /// `reports` losses of `source` were read at `now` with `grants` watched. True when a
    /// rescan is due.
    pub(super) fn lost<'a>(
        &mut self,
        source: Source,
        reports: u64,
        grants: impl Iterator<Item = &'a str>,
        now: Instant,
    ) -> bool {
        if reports == 0 {
            return false;
        }
        let i = match self.open.iter().position(|(s, _)| *s == source) {
            Some(i) => i,
            None => {
                self.open.push((
                    source,
                    Open {
                        first: now,
                        last: now,
                        reports: 0,
                        grants: BTreeSet::new(),
                        rescanned: 0,
                    },
                ));
                self.open.len() - 1
            }
        };
        let o = &mut self.open[i].1;
        o.last = now;
        o.reports += reports;
        o.grants.extend(grants.map(str::to_string));
        let due = self
            .last_rescan
            .is_none_or(|t| now.duration_since(t) >= RESCAN_EVERY);
        if due {
            self.last_rescan = Some(now);
        }
        due
    }

    /// A rescan classified `n` members: counted in every open episode.
    pub(super) fn rescanned(&mut self, n: usize) {
        for (_, o) in &mut self.open {
            o.rescanned += n;
        }
    }

    /// Whether an episode is open (losses within the last second).
    pub(super) fn losing(&self) -> bool {
        !self.open.is_empty()
    }

    /// Episodes that ended by `now` (quiet for [`QUIET`], or open for a minute).
    pub(super) fn finished(&mut self, now: Instant) -> Vec<Loss> {
        let mut out = Vec::new();
        let quiet = self.quiet;
        self.open.retain(|(source, o)| {
            let done =
                now.duration_since(o.last) >= quiet || now.duration_since(o.first) >= LONGEST;
            if done {
                out.push(Loss {
                    source: *source,
                    reports: o.reports,
                    lasted_ms: u64::try_from(o.last.duration_since(o.first).as_millis())
                        .unwrap_or(u64::MAX),
                    grants: o.grants.iter().cloned().collect(),
                    rescanned: o.rescanned,
                });
            }
            !done
        });
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_report_per_episode_with_counts() {
        let mut e = Episodes::default();
        let t0 = Instant::now();
        let g = ["g-1", "g-2"];
        assert!(e.lost(Source::Fanotify, 1, g.iter().copied(), t0));
        // Within 250 ms: counted, no second rescan.
        assert!(!e.lost(
            Source::Fanotify,
            3,
            g[..1].iter().copied(),
            t0 + Duration::from_millis(100)
        ));
        assert!(e.lost(
            Source::ProcConnector,
            2,
            std::iter::empty(),
            t0 + Duration::from_millis(300)
        ));
        e.rescanned(4);
        assert!(e.finished(t0 + Duration::from_millis(4900)).is_empty());
        let done = e.finished(t0 + Duration::from_millis(5200));
        assert_eq!(done.len(), 1, "fanotify quiet for a second: {done:?}");
        assert_eq!(done[0].source, Source::Fanotify);
        assert_eq!(done[0].reports, 4);
        assert_eq!(done[0].lasted_ms, 100);
        assert_eq!(done[0].grants, ["g-1", "g-2"]);
        assert_eq!(done[0].rescanned, 4);
        assert!(e.losing());
        let done = e.finished(t0 + Duration::from_millis(5400));
        assert_eq!(
            (done.len(), done[0].source, done[0].reports),
            (1, Source::ProcConnector, 2)
        );
        assert!(!e.losing());
        // Nothing lost: nothing to report.
        assert!(!e.lost(Source::Fanotify, 0, std::iter::empty(), t0));
        assert!(e.finished(t0 + Duration::from_secs(10)).is_empty());
    }

    #[test]
    fn a_loss_without_pause_is_still_reported_every_minute() {
        let mut e = Episodes::default();
        let t0 = Instant::now();
        let mut reported = 0;
        for ms in (0..130_000).step_by(500) {
            let now = t0 + Duration::from_millis(ms);
            e.lost(Source::ProcConnector, 1, std::iter::empty(), now);
            reported += e.finished(now).len();
        }
        assert_eq!(reported, 2);
    }
}
