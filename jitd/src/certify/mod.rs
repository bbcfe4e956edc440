//! Certification at grant end. A worker thread takes a fingerprint of privilege-relevant host
//! state when a grant goes live (the baseline, kept in `<state_dir>/certify/<grant>.baseline`)
//! and again when its teardown has finished, and compares them. The tick collects the results
//! ([`Certifier::take_done`]) and stores them with the grant; nothing here runs on a login's,
//! sudo's or the tick's path.

pub mod diff;
pub mod fingerprint;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use crate::poison::lock;
use jit_proto::certification::Certification;

pub use fingerprint::{Fingerprint, Scope};

enum Job {
    Baseline(String, std::time::Instant),
    End(String, std::time::Instant),
}

/// The last fingerprint the worker took, reused for every job queued before it was started:
/// a burst of grants going live or ending together costs one walk, and one baseline file
/// (hard-linked for each grant).
struct Last {
    started: std::time::Instant,
    fp: Arc<Fingerprint>,
    baseline_file: Option<PathBuf>,
}

/// A finished piece of work, for the tick to record.
#[derive(Debug)]
pub enum Done {
    /// A baseline was taken and stored.
    Baseline {
        /// Grant id.
        grant: String,
        /// Items in it.
        items: usize,
        /// How long it took.
        elapsed_ms: u64,
        /// It could not be stored (the grant will certify `no_baseline`).
        error: Option<String>,
    },
    /// A grant is certified.
    Certified {
        /// Grant id.
        grant: String,
        /// The record.
        cert: Box<Certification>,
        /// How long the end fingerprint took.
        elapsed_ms: u64,
    },
}

/// The certification worker and its queue.
pub struct Certifier {
    dir: PathBuf,
    tx: Mutex<Option<mpsc::Sender<Job>>>,
    done: Arc<Mutex<Vec<Done>>>,
    /// Grants whose end fingerprint is queued in this process (queued once).
    ended: Mutex<HashSet<String>>,
}

/// A grant id is `g-` and hex only (checked by the daemon); refuse anything else as a file name.
fn safe_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

impl Certifier {
    /// Starts the worker. `dir` is made (0700) if missing.
    ///
    /// # Errors
    /// The directory cannot be made or is not root's alone.
    pub fn start(dir: PathBuf, scope: Scope) -> Result<Certifier, String> {
        crate::daemon::prepare_dir(&dir, 0o700)?;
        let (tx, rx) = mpsc::channel::<Job>();
        let done = Arc::new(Mutex::new(Vec::new()));
        let (d2, dir2) = (Arc::clone(&done), dir.clone());
        std::thread::Builder::new()
            .name("jitd-certify".into())
            .spawn(move || {
                // Runs until the daemon drops its sender.
                let mut last: Option<Last> = None;
                while let Ok(job) = rx.recv() {
                    let r = run(&dir2, &scope, job, &mut last);
                    lock(&d2).push(r);
                }
            })
            .map_err(|e| format!("cannot start the certification thread: {e}"))?;
        Ok(Certifier {
            dir,
            tx: Mutex::new(Some(tx)),
            done,
            ended: Mutex::new(HashSet::new()),
        })
    }

    fn send(&self, job: Job) {
        if let Some(tx) = lock(&self.tx).as_ref() {
            let _ = tx.send(job);
        }
    }

    /// Queues the baseline of a grant that went live.
    pub fn baseline(&self, grant: &str) {
        if safe_id(grant) {
            self.send(Job::Baseline(grant.to_string(), std::time::Instant::now()));
        }
    }

    /// Queues the end fingerprint of a grant whose teardown finished (once per process).
    pub fn end(&self, grant: &str) {
        if safe_id(grant) && lock(&self.ended).insert(grant.to_string()) {
            self.send(Job::End(grant.to_string(), std::time::Instant::now()));
        }
    }

    /// Whether a baseline is stored for `grant` (a restart resumes its certification).
    pub fn has_baseline(&self, grant: &str) -> bool {
        safe_id(grant) && baseline_path(&self.dir, grant).exists()
    }

    /// Results finished since the last call.
    pub fn take_done(&self) -> Vec<Done> {
        std::mem::take(&mut *lock(&self.done))
    }

    /// The certification is stored with the grant: its baseline is no longer needed.
    pub fn forget(&self, grant: &str) {
        if safe_id(grant) {
            let _ = std::fs::remove_file(baseline_path(&self.dir, grant));
        }
    }
}

impl Certifier {
    /// Stores a grant's full certification (state.json keeps a summary: it is rewritten at
    /// every change, so it must not grow with every file a grant touched).
    ///
    /// # Errors
    /// I/O.
    pub fn save_full(&self, grant: &str, c: &Certification) -> std::io::Result<()> {
        if !safe_id(grant) {
            return Err(std::io::Error::other("not a grant id"));
        }
        fingerprint::save_json(c, &self.dir.join(format!("{grant}.cert.json")))
    }

    /// The full certification of a grant, if stored.
    pub fn load_full(&self, grant: &str) -> Option<Certification> {
        if !safe_id(grant) {
            return None;
        }
        fingerprint::load_json(&self.dir.join(format!("{grant}.cert.json"))).ok()
    }

    /// Full certifications of grants jitd no longer keeps.
    pub fn prune(&self, keep: &dyn Fn(&str) -> bool) {
        let Ok(rd) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for e in rd.flatten() {
            let name = e.file_name();
            let Some(n) = name.to_str() else { continue };
            if let Some(g) = n.strip_suffix(".cert.json") {
                if !keep(g) {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
    }
}

/// Differences kept in the summary stored with the grant in state.json.
pub const SUMMARY_DIFFERENCES: usize = 10;

/// The summary of a certification kept in state.json: the first differences (root-equivalent
/// ones come first) and how many more there are.
pub fn summary(c: &Certification) -> Certification {
    let mut s = c.clone();
    let cut = s.differences.len().saturating_sub(SUMMARY_DIFFERENCES);
    s.differences.truncate(SUMMARY_DIFFERENCES);
    s.omitted += cut;
    s.unreadable.truncate(SUMMARY_DIFFERENCES);
    s
}

fn baseline_path(dir: &Path, grant: &str) -> PathBuf {
    dir.join(format!("{grant}.baseline"))
}

/// A fingerprint taken after `queued` (the last one if it qualifies, else a new one).
fn fresh(scope: &Scope, queued: std::time::Instant, last: &mut Option<Last>) -> Arc<Fingerprint> {
    match last {
        Some(l) if l.started >= queued => Arc::clone(&l.fp),
        _ => {
            let started = std::time::Instant::now();
            let fp = Arc::new(fingerprint::take(scope, jit_core::time::now()));
            *last = Some(Last {
                started,
                fp: Arc::clone(&fp),
                baseline_file: None,
            });
            fp
        }
    }
}

fn run(dir: &Path, scope: &Scope, job: Job, last: &mut Option<Last>) -> Done {
    match job {
        Job::Baseline(grant, queued) => {
            let fp = fresh(scope, queued, last);
            let path = baseline_path(dir, &grant);
            let _ = std::fs::remove_file(&path);
            let shared = last.as_ref().and_then(|l| l.baseline_file.clone());
            let linked = shared.is_some_and(|f| std::fs::hard_link(f, &path).is_ok());
            let error = if linked {
                None
            } else {
                let r = fingerprint::save(&fp, &path).err().map(|e| e.to_string());
                if r.is_none() {
                    if let Some(l) = last.as_mut() {
                        l.baseline_file = Some(path.clone());
                    }
                }
                r
            };
            Done::Baseline {
                grant,
                items: fp.items.len(),
                elapsed_ms: fp.elapsed_ms,
                error,
            }
        }
        Job::End(grant, queued) => {
            let base = fingerprint::load(&baseline_path(dir, &grant)).ok();
            let fp = fresh(scope, queued, last);
            Done::Certified {
                cert: Box::new(diff::certify(base.as_ref(), &fp)),
                grant,
                elapsed_ms: fp.elapsed_ms,
            }
        }
    }
}

/// The certification of a grant for people (`jitctl grant show ID --certification`).
pub fn render(g: &jit_proto::Grant) -> String {
    use jit_core::time::format_utc;
    let Some(c) = &g.certification else {
        return format!(
            "grant {}: no certification yet ({})\n",
            g.id,
            if g.torn_down {
                "being taken; it is stored within seconds of the teardown"
            } else if g.state.is_ended() {
                "taken when the teardown has finished"
            } else {
                "taken when the grant has ended and been torn down"
            }
        );
    };
    let mut s = format!(
        "grant {}: {}\nbaseline: {}\nend:      {}\nitems:    {}\n",
        g.id,
        c.status.as_str(),
        c.baseline_at.map_or("none".into(), format_utc),
        format_utc(c.taken_at),
        c.items
    );
    for d in &c.differences {
        s.push_str(&jit_proto::text::one_line(&diff::describe(d), 2048));
        s.push('\n');
    }
    if c.omitted > 0 {
        s.push_str(&format!("... and {} more differences\n", c.omitted));
    }
    if !c.unreadable.is_empty() {
        s.push_str(&format!(
            "not certified (unreadable): {}\n",
            c.unreadable.len()
        ));
        for u in &c.unreadable {
            s.push_str(&format!("  {}\n", jit_proto::text::one_line(u, 512)));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use jit_proto::certification::{CertificationStatus, ChangeKind, Difference};

    #[test]
    fn summary_keeps_the_first_differences_and_counts_the_rest() {
        let d = |i: usize| Difference {
            area: "cron".into(),
            item: format!("/etc/cron.d/{i}"),
            change: ChangeKind::Added,
            before: None,
            after: None,
            root_equivalent: i == 0,
        };
        let c = Certification {
            status: CertificationStatus::Changed,
            baseline_at: Some(1),
            taken_at: 2,
            items: 100,
            differences: (0..25).map(d).collect(),
            omitted: 3,
            unreadable: Vec::new(),
        };
        let s = summary(&c);
        assert_eq!(s.differences.len(), SUMMARY_DIFFERENCES);
        assert_eq!(s.omitted, 3 + 25 - SUMMARY_DIFFERENCES);
        assert!(s.differences[0].root_equivalent);
        assert_eq!(s.status, CertificationStatus::Changed);
    }

    #[test]
    fn full_record_round_trips_and_ids_are_checked() {
        let dir = std::env::temp_dir().join(format!("jitd-cert-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let scope = Scope {
            passwd_file: "/nonexistent".into(),
            group_file: "/nonexistent".into(),
            suid_roots: Vec::new(),
            exclude: Vec::new(),
            mountinfo: "/nonexistent".into(),
        };
        let c = Certifier::start(dir.clone(), scope).unwrap();
        let cert = Certification {
            status: CertificationStatus::Clean,
            baseline_at: Some(1),
            taken_at: 2,
            items: 3,
            differences: Vec::new(),
            omitted: 0,
            unreadable: Vec::new(),
        };
        c.save_full("g-0123456789ab", &cert).unwrap();
        assert_eq!(c.load_full("g-0123456789ab"), Some(cert.clone()));
        assert!(c.save_full("../etc/x", &cert).is_err());
        assert_eq!(c.load_full("../g-0123456789ab"), None);
        c.prune(&|_| false);
        assert_eq!(c.load_full("g-0123456789ab"), None);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
