//! Durable state: grants, the uid ledger and counters, in `<state_dir>/state.json`.
//!
//! Layout: one header line `jitd-state 1 <crc32c> <length>` and the JSON body. Written with
//! [`crate::durable::replace_file`] keeping `state.json.prev`; a current file that fails its
//! checksum falls back to the previous one, and if both fail jitd refuses to start rather than
//! guessing (never "empty = allow", never "empty = drop everything").

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use jit_proto::{Grant, Session};
use serde::{Deserialize, Serialize};

use crate::durable::{remove_stale_temps, replace_file, seal, unseal};

/// Everything jitd must not forget.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// Grants by id, including ended ones until they are pruned.
    pub grants: BTreeMap<String, Grant>,
    /// Stable uid per ephemeral identity. Entries are never removed: a uid once used by an
    /// identity is never handed to another while its files may remain (docs/threat-model.md#t3).
    pub uid_ledger: BTreeMap<String, u32>,
    /// Login sessions pam_jit registered, by session id, until they close or their grant is
    /// torn down (teardown ends them; `--end-with-session` grants end with theirs).
    #[serde(default)]
    pub sessions: BTreeMap<String, Session>,
}

/// Why state could not be loaded or saved.
#[derive(Debug)]
pub enum StateError {
    /// I/O.
    Io(PathBuf, std::io::Error),
    /// Neither the current file nor the previous generation is intact.
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

fn encode(state: &State) -> Result<Vec<u8>, StateError> {
    let body = serde_json::to_vec(state).map_err(|e| StateError::Corrupt(e.to_string()))?;
    Ok(seal(HEADER, &body))
}

fn decode(bytes: &[u8]) -> Result<State, String> {
    serde_json::from_slice(unseal(HEADER, bytes)?).map_err(|e| format!("bad JSON: {e}"))
}

/// Where state lives and how it is written.
#[derive(Debug, Clone)]
pub struct StateStore {
    path: PathBuf,
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
}

impl StateStore {
    /// A store in `dir`.
    pub fn new(dir: &Path) -> Self {
        StateStore {
            path: dir.join("state.json"),
        }
    }

    /// The current file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Loads state, cleaning temp files a crash left behind.
    ///
    /// # Errors
    /// Both generations unreadable or damaged.
    pub fn load(&self) -> Result<Loaded, StateError> {
        remove_stale_temps(&self.path);
        let mut prev = self.path.as_os_str().to_owned();
        prev.push(".prev");
        let prev = PathBuf::from(prev);
        let read = |p: &Path| -> Result<Option<Vec<u8>>, StateError> {
            match std::fs::read(p) {
                Ok(b) => Ok(Some(b)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(StateError::Io(p.to_path_buf(), e)),
            }
        };
        let cur = read(&self.path)?;
        let problem = match &cur {
            Some(b) => match decode(b) {
                Ok(state) => {
                    return Ok(Loaded {
                        state,
                        recovered_from_prev: None,
                        fresh: false,
                    })
                }
                Err(e) => e,
            },
            None => "missing".to_string(),
        };
        match read(&prev)? {
            Some(b) => match decode(&b) {
                Ok(state) => Ok(Loaded {
                    state,
                    recovered_from_prev: Some(format!("{}: {problem}", self.path.display())),
                    fresh: false,
                }),
                Err(e) => Err(StateError::Corrupt(format!(
                    "{}: {problem}; {}: {e}",
                    self.path.display(),
                    prev.display()
                ))),
            },
            None if cur.is_none() => Ok(Loaded {
                state: State::default(),
                recovered_from_prev: None,
                fresh: true,
            }),
            None => Err(StateError::Corrupt(format!(
                "{}: {problem}, and no previous generation",
                self.path.display()
            ))),
        }
    }

    /// Persists `state` durably (before anything acts on it).
    ///
    /// # Errors
    /// Any write, fsync or rename failure; the previous durable state is then still in place.
    pub fn save(&self, state: &State) -> Result<(), StateError> {
        let bytes = encode(state)?;
        replace_file(&self.path, &bytes, 0o600, true)
            .map_err(|e| StateError::Io(self.path.clone(), e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_fallback() {
        let dir = std::env::temp_dir().join(format!("jitd-state-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let store = StateStore::new(&dir);
        assert!(store.load().unwrap().fresh);
        let mut s = State::default();
        s.uid_ledger.insert("alice".into(), 70_000);
        store.save(&s).unwrap();
        s.uid_ledger.insert("bob".into(), 70_001);
        store.save(&s).unwrap();
        assert_eq!(store.load().unwrap().state, s);
        // Corrupt the current generation: the previous one is used and reported.
        let mut b = std::fs::read(store.path()).unwrap();
        let n = b.len();
        b[n - 3] ^= 1;
        std::fs::write(store.path(), &b).unwrap();
        let l = store.load().unwrap();
        assert!(l.recovered_from_prev.is_some());
        assert_eq!(l.state.uid_ledger.len(), 1);
        // Truncated current with a damaged previous generation: refuse.
        std::fs::write(store.path(), &b[..n / 2]).unwrap();
        let mut prev = store.path().as_os_str().to_owned();
        prev.push(".prev");
        std::fs::write(&prev, b"jitd-state 1 00000000 2\n{}").unwrap();
        assert!(matches!(store.load(), Err(StateError::Corrupt(_))));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
