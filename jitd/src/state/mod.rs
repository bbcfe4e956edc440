//! Durable state: grants, the uid ledger and sessions, in `<state_dir>/state.json` plus the
//! state journal `<state_dir>/state.journal` (`changes.rs`) of what changed since.
//!
//! `state.json`: one header line `jitd-state 1 <crc32c> <length>` and the JSON body, which
//! also names the last journal record it already contains (`journal_seq`). Written whole with
//! [`crate::durable::replace_file`] keeping `state.json.prev` when the journal grows large, when
//! a change touches much of the state, after a journal write failed, and at the first save
//! after start; any other save appends the changed entries to the journal. Loading: the
//! current `state.json` (or, if it fails its checksum, the previous one), then every journal
//! record after its `journal_seq`. If no generation is intact, or the journal is damaged
//! before its end, jitd refuses to start rather than guessing (never "empty = allow", never
//! "empty = drop everything").

mod changes;
mod tracked;

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use jit_proto::{Grant, Session};
use serde::{Deserialize, Serialize};

pub use tracked::Tracked;

use crate::durable::{remove_stale_temps, replace_file_parts, seal_line, unseal};

/// Everything jitd must not forget.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// Grants by id, including ended ones until they are pruned.
    pub grants: Tracked<Box<Grant>>,
    /// Stable uid per ephemeral identity. Entries are never removed: a uid once used by an
    /// identity is never handed to another while its files may remain (docs/threat-model.md#t3).
    pub uid_ledger: Tracked<u32>,
    /// Login sessions pam_jit registered, by session id, until they close or their grant is
    /// torn down (teardown ends them; `--end-with-session` grants end with theirs).
    #[serde(default)]
    pub sessions: Tracked<Session>,
    /// No uid in the ledger is above this, as of one ledger version (not stored, not content).
    #[serde(skip)]
    pub uid_ceiling: UidCeiling,
}

/// A cache: the highest uid of `uid_ledger` at one version of it, so the next identity's uid
/// is found without a walk over every recorded one (an add at 50 000 identities spent ~0.5 ms
/// on that walk). Any change to the ledger other than [`State::record_uid`] moves its version
/// and the cache is taken again.
#[derive(Debug, Clone, Copy, Default)]
pub struct UidCeiling(Option<(u64, u32)>);

/// Two states are equal by content; a cache is not content.
impl PartialEq for UidCeiling {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl State {
    /// After loading: each grant's key becomes the grant's own id, and each identity's in the
    /// uid ledger the name a grant of it holds, so a host's ids and names are in memory once
    /// (each was read three times: a key, a field, a ledger key). Content unchanged.
    pub fn share_strings(&mut self) {
        // `share_keys` takes a string only where it equals the key.
        self.grants.share_keys(|_, g| Some(g.id.clone()));
        let users: std::collections::HashMap<&str, &jit_core::types::Text> = self
            .grants
            .values()
            .map(|g| (g.user.as_str(), &g.user))
            .collect();
        self.uid_ledger
            .share_keys(|name, _| users.get(name).map(|&u| u.clone()));
    }

    /// No uid recorded in the ledger is above the returned one (`None`: the ledger is empty).
    pub fn uid_ceiling(&mut self) -> Option<u32> {
        let v = self.uid_ledger.version();
        if let Some((at, top)) = self.uid_ceiling.0 {
            if at == v {
                return Some(top);
            }
        }
        let top = self.uid_ledger.values().copied().max()?;
        self.uid_ceiling.0 = Some((v, top));
        Some(top)
    }

    /// Records `uid` as `name`'s in the ledger, keeping the ceiling without a walk.
    pub fn record_uid(&mut self, name: String, uid: u32) {
        let before = self.uid_ledger.version();
        let top = self.uid_ceiling.0.filter(|&(at, _)| at == before);
        self.uid_ledger.insert(name.into(), uid);
        // Still a ceiling: entries are only ever added here (a replaced entry's old uid may
        // stay counted, which only makes the ceiling higher than it must be).
        self.uid_ceiling.0 = top.map(|(_, t)| (self.uid_ledger.version(), t.max(uid)));
    }

    /// Entries changed since the last save.
    pub fn changed_len(&self) -> usize {
        self.grants.changed_len() + self.uid_ledger.changed_len() + self.sessions.changed_len()
    }

    fn len(&self) -> usize {
        self.grants.len() + self.uid_ledger.len() + self.sessions.len()
    }

    fn clear_changed(&mut self) {
        self.grants.clear_changed();
        self.uid_ledger.clear_changed();
        self.sessions.clear_changed();
    }
}

/// Why state could not be loaded or saved.
#[derive(Debug)]
pub enum StateError {
    /// I/O.
    Io(PathBuf, std::io::Error),
    /// Neither the current file nor the previous generation is intact, or the journal is
    /// damaged.
    Corrupt(String),
}

impl std::fmt::Display for StateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StateError::Io(p, e) => write!(f, "{}: {e}", p.display()),
            StateError::Corrupt(m) => write!(f, "state is corrupt: {m}"),
        }
    }
}

impl std::error::Error for StateError {}

const HEADER: &str = "jitd-state 1 ";

/// `state.json`'s body: the state and the last journal record folded into it (absent in files
/// written before the journal existed, and ignored by them: an older jitd reads the state).
#[derive(Serialize)]
struct Stored<'a> {
    grants: &'a Tracked<Box<Grant>>,
    uid_ledger: &'a Tracked<u32>,
    sessions: &'a Tracked<Session>,
    journal_seq: u64,
}

// Fields listed rather than `#[serde(flatten)]`: flatten buffers the whole document once more.
#[derive(Deserialize)]
struct StoredOwned {
    grants: Tracked<Box<Grant>>,
    uid_ledger: Tracked<u32>,
    #[serde(default)]
    sessions: Tracked<Session>,
    #[serde(default)]
    journal_seq: u64,
}

/// `state.json`'s header line and body (sealed: [`crate::durable::seal`]), apart: joined, the
/// body was copied whole (5 MiB at 10 000 grants) beside itself at every whole write.
fn encode(state: &State, journal_seq: u64) -> Result<(Vec<u8>, Vec<u8>), StateError> {
    let body = serde_json::to_vec(&Stored {
        grants: &state.grants,
        uid_ledger: &state.uid_ledger,
        sessions: &state.sessions,
        journal_seq,
    })
    .map_err(|e| StateError::Corrupt(e.to_string()))?;
    Ok((seal_line(HEADER, &body), body))
}

fn decode(bytes: &[u8]) -> Result<(State, u64), String> {
    let s: StoredOwned =
        serde_json::from_slice(unseal(HEADER, bytes)?).map_err(|e| format!("bad JSON: {e}"))?;
    let state = State {
        grants: s.grants,
        uid_ledger: s.uid_ledger,
        sessions: s.sessions,
        uid_ceiling: UidCeiling::default(),
    };
    Ok((state, s.journal_seq))
}

/// The journal may grow to this, or to the size of `state.json` if larger, before the next
/// save writes `state.json` whole (compaction: amortized, each grant's bytes are rewritten
/// about once per its own size in appends).
const JOURNAL_MIN_BYTES: u64 = 4 << 20;

/// A change touching more than this many entries, and more than a quarter of them, is written
/// as a whole `state.json` (cheaper than a record nearly its size, and it empties the journal).
const BIG_CHANGE: usize = 256;

/// How saves are going.
#[derive(Debug, Default)]
struct Writer {
    /// The journal being appended to; `None` until a whole write has started one.
    journal: Option<changes::Appender>,
    /// The last sequence number used (a failed append uses one up too: its record may have
    /// reached the disk, and no later record may share its number).
    seq: u64,
    /// Set at load and after any failure: the next save writes `state.json` whole.
    whole_next: bool,
    /// Changes were taken for a record that failed: only a whole write holds them.
    unjournaled: bool,
    /// Size of the last `state.json` written.
    state_len: u64,
}

/// Where state lives and how it is written.
#[derive(Debug)]
pub struct StateStore {
    path: PathBuf,
    journal: PathBuf,
    writer: Mutex<Writer>,
}

/// What loading found.
#[derive(Debug)]
pub struct Loaded {
    /// The state.
    pub state: State,
    /// Set when the current file was damaged and the previous generation was used.
    pub recovered_from_prev: Option<String>,
    /// True when no state existed (first start).
    pub fresh: bool,
    /// Journal records applied on top of `state.json`.
    pub journal_records: usize,
    /// Set when an unacknowledged write at a journal's end was dropped (where).
    pub journal_torn: Option<String>,
}

impl StateStore {
    /// A store in `dir`.
    pub fn new(dir: &Path) -> Self {
        StateStore {
            path: dir.join("state.json"),
            journal: dir.join("state.journal"),
            writer: Mutex::new(Writer {
                whole_next: true,
                ..Writer::default()
            }),
        }
    }

    /// The current file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The journal's path.
    pub fn journal_path(&self) -> &Path {
        &self.journal
    }

    fn writer(&self) -> std::sync::MutexGuard<'_, Writer> {
        // A panic while saving leaves `whole_next` set or the last good values: usable.
        crate::poison::lock(&self.writer)
    }

    /// Loads state, cleaning temp files a crash left behind.
    ///
    /// # Errors
    /// Both generations unreadable or damaged, or a journal damaged before its end.
    pub fn load(&self) -> Result<Loaded, StateError> {
        remove_stale_temps(&self.path);
        let prev = changes::prev_path(&self.path);
        let read = |p: &Path| -> Result<Option<Vec<u8>>, StateError> {
            match std::fs::read(p) {
                Ok(b) => Ok(Some(b)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(StateError::Io(p.to_path_buf(), e)),
            }
        };
        let cur = read(&self.path)?;
        let (state, base_seq, recovered_from_prev, fresh) = match cur.as_deref().map(decode) {
            Some(Ok((state, seq))) => (state, seq, None, false),
            other => {
                let problem = match other {
                    Some(Err(e)) => e,
                    _ => "missing".to_string(),
                };
                match read(&prev)? {
                    Some(b) => match decode(&b) {
                        Ok((state, seq)) => (
                            state,
                            seq,
                            Some(format!("{}: {problem}", self.path.display())),
                            false,
                        ),
                        Err(e) => {
                            return Err(StateError::Corrupt(format!(
                                "{}: {problem}; {}: {e}",
                                self.path.display(),
                                prev.display()
                            )))
                        }
                    },
                    None if cur.is_none() => (State::default(), 0, None, true),
                    None => {
                        return Err(StateError::Corrupt(format!(
                            "{}: {problem}, and no previous generation",
                            self.path.display()
                        )))
                    }
                }
            }
        };
        let mut loaded = Loaded {
            state,
            recovered_from_prev,
            fresh,
            journal_records: 0,
            journal_torn: None,
        };
        // Records from the journal before the last rotation, then the current one: only the
        // previous generation of state.json needs the first.
        let older =
            changes::read(&changes::prev_path(&self.journal)).map_err(StateError::Corrupt)?;
        let newer = changes::read(&self.journal).map_err(StateError::Corrupt)?;
        for (c, p) in [
            (&older, changes::prev_path(&self.journal)),
            (&newer, self.journal.clone()),
        ] {
            if let Some(at) = c.torn_at {
                loaded.journal_torn = Some(format!("{} at byte {at}", p.display()));
            }
        }
        let mut last = base_seq;
        let mut max_seen = base_seq;
        for r in older.records.into_iter().chain(newer.records) {
            max_seen = max_seen.max(r.seq);
            if r.seq <= base_seq {
                continue;
            }
            if r.seq != last + 1 {
                let gap = if r.seq <= last {
                    format!("journal record {} is repeated or out of order", r.seq)
                } else {
                    format!("journal records {} to {} are missing", last + 1, r.seq - 1)
                };
                match &mut loaded.recovered_from_prev {
                    // The previous generation is already a step back; say how far.
                    Some(why) => {
                        why.push_str(&format!("; {gap}: changes after record {last} are lost"));
                        break;
                    }
                    None => return Err(StateError::Corrupt(gap)),
                }
            }
            r.change.apply(&mut loaded.state);
            loaded.journal_records += 1;
            last = r.seq;
        }
        loaded.state.share_strings();
        let mut w = self.writer();
        w.seq = max_seen;
        w.whole_next = true;
        w.journal = None;
        Ok(loaded)
    }

    /// Makes `state`'s changes durable (before anything acts on them): appended to the journal,
    /// or `state.json` written whole (see the module documentation for when).
    ///
    /// # Errors
    /// Any write, fsync or rename failure; the previous durable state is then still in place,
    /// and the next save writes `state.json` whole.
    pub fn save(&self, state: &mut State) -> Result<(), StateError> {
        let mut w = self.writer();
        let changed = state.changed_len();
        let big = changed > BIG_CHANGE && changed * 4 > state.len();
        if changed > 0 && !w.whole_next && !big {
            self.append(&mut w, state)?;
        }
        let journal_full = w
            .journal
            .as_ref()
            .is_none_or(|j| j.len() > JOURNAL_MIN_BYTES.max(w.state_len));
        if w.whole_next || journal_full || big {
            return self.save_whole(&mut w, state);
        }
        Ok(())
    }

    /// Appends `state`'s changes as one record.
    fn append(&self, w: &mut Writer, state: &mut State) -> Result<(), StateError> {
        w.seq += 1;
        let seq = w.seq;
        let change = changes::Change::take(state);
        let frame = changes::encode(seq, &change).map_err(StateError::Corrupt);
        let r = match (frame, w.journal.as_mut()) {
            (Ok(frame), Some(j)) => j
                .append(&frame)
                .map_err(|e| StateError::Io(self.journal.clone(), e)),
            (Err(e), _) => Err(e),
            (Ok(_), None) => Err(StateError::Corrupt("no journal open".into())),
        };
        if r.is_err() {
            // The taken changes are only in memory now: the next save writes them all.
            w.journal = None;
            w.whole_next = true;
            w.unjournaled = true;
        }
        r
    }

    /// Writes `state.json` whole now, folding the journal in (at a clean stop, so the next
    /// start, or an older jitd after a downgrade, reads everything from one file).
    ///
    /// # Errors
    /// As [`StateStore::save`].
    pub fn save_whole_now(&self, state: &mut State) -> Result<(), StateError> {
        let mut w = self.writer();
        if state.changed_len() > 0 && w.journal.is_some() && !w.whole_next {
            // Journaled first, so the whole write below adds nothing the journal lacks.
            let _ = self.append(&mut w, state);
        }
        self.save_whole(&mut w, state)
    }

    fn save_whole(&self, w: &mut Writer, state: &mut State) -> Result<(), StateError> {
        // A whole write that holds changes no journal record has (after a failed append, a
        // change too big to journal, or changes made before the first write after a start)
        // takes a sequence number of its own: loading the previous generation then stops at
        // that gap and says what is lost. One that only folds the journal in takes none, so
        // the previous generation plus `state.journal.prev` and `state.journal` is still the
        // whole state.
        if w.unjournaled || state.changed_len() > 0 {
            w.seq += 1;
        }
        let (line, body) = encode(state, w.seq)?;
        if let Err(e) = replace_file_parts(&self.path, &[&line, &body], 0o600, true) {
            w.whole_next = true;
            return Err(StateError::Io(self.path.clone(), e));
        }
        state.clear_changed();
        w.unjournaled = false;
        w.state_len = (line.len() + body.len()) as u64;
        // state.json holds everything now; a journal that cannot be started only means the
        // next save writes it whole again.
        match changes::Appender::rotate(&self.journal) {
            Ok(j) => {
                w.journal = Some(j);
                w.whole_next = false;
            }
            Err(_) => {
                w.journal = None;
                w.whole_next = true;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
