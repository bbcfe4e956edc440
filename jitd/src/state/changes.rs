//! The state journal: `<state_dir>/state.journal`, the changes made since `state.json` was last
//! written whole, so that making one grant durable costs one appended record and one
//! `fdatasync` instead of a rewrite of every grant (docs/architecture.md, "State journal").
//!
//! File: the line `jitd-state-journal 1\n`, then records back to back:
//!
//! | bytes | field |
//! |---|---|
//! | 4 | body length, u32 LE |
//! | 4 | CRC32C of the sequence number's 8 bytes followed by the body, u32 LE |
//! | 8 | sequence number, u64 LE: 1 more than the record before (across compactions) |
//! | length | body: a [`Change`] as JSON |
//!
//! Reading is fail-closed in the middle and forgiving only at the very end: a record cut short
//! by the end of the file, or the last record with a bad checksum, is a write that was never
//! acknowledged (jitd answers only after the `fdatasync`) and is dropped; a bad record with
//! anything after it is damage, and loading stops rather than skip a change (skipping an end
//! could bring a grant back).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use jit_proto::{Grant, Session};
use serde::{Deserialize, Serialize};

use super::State;
use crate::durable::{failpoint, failpoint_error, failpoint_set, fsync_dir};

/// The first line of a journal file (format and version).
const MAGIC: &[u8] = b"jitd-state-journal 1\n";
/// Bytes before a record's body.
const RECORD_HEAD: usize = 16;
/// Largest body a reader accepts (a change holds at most the whole state; state.json is far
/// smaller than this at any supported size). Guards the allocation against a damaged length.
const MAX_BODY: usize = 1 << 30;

/// What changed: each changed key with its new value, or `null` when it was removed.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    /// Grants by id.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub grants: BTreeMap<String, Option<Box<Grant>>>,
    /// uid ledger entries by identity.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub uid_ledger: BTreeMap<String, Option<u32>>,
    /// Sessions by id.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sessions: BTreeMap<String, Option<Session>>,
}

impl Change {
    /// The changes recorded in `state`'s maps since they were last taken (and forgets them).
    pub fn take(state: &mut State) -> Change {
        fn pick<V: Clone + PartialEq>(t: &mut super::Tracked<V>) -> BTreeMap<String, Option<V>> {
            t.take_changed()
                .into_iter()
                .map(|k| {
                    let v = t.get(&k).cloned();
                    (k.to_string(), v)
                })
                .collect()
        }
        Change {
            grants: pick(&mut state.grants),
            uid_ledger: pick(&mut state.uid_ledger),
            sessions: pick(&mut state.sessions),
        }
    }

    /// Applies this change to `state` (at load; nothing is recorded as changed).
    pub fn apply(self, state: &mut State) {
        fn put<V: Clone + PartialEq>(
            t: &mut super::Tracked<V>,
            changes: BTreeMap<String, Option<V>>,
        ) {
            for (k, v) in changes {
                match v {
                    Some(v) => {
                        t.insert(k.into(), v);
                    }
                    None => {
                        t.remove(&k);
                    }
                }
            }
            t.clear_changed();
        }
        put(&mut state.grants, self.grants);
        put(&mut state.uid_ledger, self.uid_ledger);
        put(&mut state.sessions, self.sessions);
    }
}

/// One record as read back.
#[derive(Debug)]
pub struct Record {
    /// Its sequence number.
    pub seq: u64,
    /// What it changed.
    pub change: Change,
}

/// What a journal file held.
#[derive(Debug, Default)]
pub struct Contents {
    /// The intact records, in file order.
    pub records: Vec<Record>,
    /// Set when an unacknowledged write at the end was dropped (its offset).
    pub torn_at: Option<u64>,
}

/// Frames one record.
pub fn encode(seq: u64, change: &Change) -> Result<Vec<u8>, String> {
    let body = serde_json::to_vec(change).map_err(|e| e.to_string())?;
    let len = u32::try_from(body.len())
        .ok()
        .filter(|&l| (l as usize) <= MAX_BODY)
        .ok_or("change too large for one journal record")?;
    let mut out = Vec::with_capacity(RECORD_HEAD + body.len());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&checksum(seq, &body).to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

fn checksum(seq: u64, body: &[u8]) -> u32 {
    let mut b = Vec::with_capacity(8 + body.len());
    b.extend_from_slice(&seq.to_le_bytes());
    b.extend_from_slice(body);
    jit_core::crc32c::crc32c(&b)
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// Decodes a journal file's bytes. Error texts never quote the content.
///
/// # Errors
/// Not a journal, a damaged record with more after it, or records out of order.
pub fn decode(bytes: &[u8]) -> Result<Contents, String> {
    let mut out = Contents::default();
    if bytes.is_empty() {
        return Ok(out);
    }
    if !bytes.starts_with(MAGIC) {
        // A file cut inside its first line was being created: nothing was ever acknowledged.
        if MAGIC.starts_with(bytes) {
            out.torn_at = Some(0);
            return Ok(out);
        }
        return Err("not a state journal (unknown first line or version)".into());
    }
    let mut at = MAGIC.len();
    while at < bytes.len() {
        let rest = &bytes[at..];
        let head = (u32_at(rest, 0), u32_at(rest, 4), u64_at(rest, 8));
        let (Some(len), Some(crc), Some(seq)) = head else {
            out.torn_at = Some(at as u64); // header cut short by the end of the file
            break;
        };
        let len = len as usize;
        let end = RECORD_HEAD.saturating_add(len);
        if len > MAX_BODY || end > rest.len() {
            out.torn_at = Some(at as u64); // body cut short by the end of the file
            break;
        }
        let body = &rest[RECORD_HEAD..end];
        let last = at + end == bytes.len();
        if checksum(seq, body) != crc {
            if last {
                out.torn_at = Some(at as u64);
                break;
            }
            return Err(format!(
                "record at byte {at} fails its checksum and is followed by more records"
            ));
        }
        let change: Change = serde_json::from_slice(body)
            .map_err(|e| format!("record {seq} at byte {at}: bad JSON: {e}"))?;
        if let Some(prev) = out.records.last() {
            if seq != prev.seq + 1 {
                return Err(format!(
                    "record {seq} at byte {at} follows record {} (out of order)",
                    prev.seq
                ));
            }
        }
        out.records.push(Record { seq, change });
        at += end;
    }
    Ok(out)
}

/// Reads a journal file; a missing file is an empty journal.
///
/// # Errors
/// I/O other than not-found, or [`decode`]'s.
pub fn read(path: &Path) -> Result<Contents, String> {
    match std::fs::read(path) {
        Ok(b) => decode(&b).map_err(|e| format!("{}: {e}", path.display())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Contents::default()),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// The journal file being appended to.
#[derive(Debug)]
pub struct Appender {
    file: File,
    path: PathBuf,
    /// Bytes known good (everything acknowledged).
    len: u64,
}

impl Appender {
    /// Starts a new, empty journal at `path`: the current one (if any) becomes `<path>.prev`
    /// (its records are older than the `state.json` just written, but the previous generation
    /// of `state.json` may still need them), then the new file is made durable.
    ///
    /// # Errors
    /// Any step; the caller then writes `state.json` whole again next time.
    pub fn rotate(path: &Path) -> io::Result<Appender> {
        let dir = path
            .parent()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no parent directory"))?;
        match std::fs::rename(path, prev_path(path)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        failpoint(path, "after-rotate");
        use std::os::unix::fs::OpenOptionsExt;
        let mut file = std::fs::OpenOptions::new()
            .create_new(true)
            .append(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path)?;
        file.write_all(MAGIC)?;
        file.sync_all()?;
        fsync_dir(dir)?;
        Ok(Appender {
            file,
            path: path.to_path_buf(),
            len: MAGIC.len() as u64,
        })
    }

    /// Its size in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Appends one framed record and makes it durable (`fdatasync`: the data and the new size).
    ///
    /// # Errors
    /// Any failure. The file is cut back to its last good length where possible; either way
    /// the caller must not append to it again (a torn record followed by good ones would be
    /// damage at the next load), and writes `state.json` whole instead.
    pub fn append(&mut self, frame: &[u8]) -> io::Result<()> {
        let r = (|| {
            failpoint_error(&self.path, "fail-append")?;
            if failpoint_set(&self.path, "torn") {
                // A crash in the middle of the write: half a record reaches the file.
                self.file.write_all(&frame[..frame.len() / 2])?;
                failpoint(&self.path, "torn");
            }
            self.file.write_all(frame)?;
            failpoint(&self.path, "after-append");
            self.file.sync_data()?;
            failpoint(&self.path, "after-sync");
            Ok(())
        })();
        match r {
            Ok(()) => {
                self.len += frame.len() as u64;
                Ok(())
            }
            Err(e) => {
                // SAFETY: ftruncate on our own descriptor; a failure is ignored on purpose
                // (the caller stops appending to this file either way).
                let _ = unsafe { libc::ftruncate(self.file.as_raw_fd(), self.len as libc::off_t) };
                Err(e)
            }
        }
    }
}

/// Offset of the first record's body in a journal file (for tests that damage it).
#[cfg(test)]
pub fn tests_first_body_offset() -> usize {
    MAGIC.len() + RECORD_HEAD
}

/// `<path>.prev`: the previous generation, as [`crate::durable::replace_file`] keeps it.
pub fn prev_path(path: &Path) -> PathBuf {
    crate::durable::with_suffix(path, ".prev")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(n: u32) -> Change {
        let mut c = Change::default();
        c.uid_ledger.insert(format!("u{n}"), Some(70_000 + n));
        c
    }

    fn file(records: &[(u64, Change)]) -> Vec<u8> {
        let mut b = MAGIC.to_vec();
        for (seq, c) in records {
            b.extend(encode(*seq, c).unwrap());
        }
        b
    }

    #[test]
    fn records_read_back_in_order() {
        let b = file(&[(5, change(1)), (6, change(2))]);
        let c = decode(&b).unwrap();
        assert_eq!(c.torn_at, None);
        assert_eq!(c.records.len(), 2);
        assert_eq!(c.records[1].seq, 6);
        assert_eq!(c.records[1].change, change(2));
    }

    #[test]
    fn a_write_cut_anywhere_at_the_end_is_dropped_and_nothing_before_it() {
        let good = file(&[(1, change(1))]);
        let full = file(&[(1, change(1)), (2, change(2))]);
        for cut in good.len()..full.len() {
            let c = decode(&full[..cut]).unwrap();
            assert_eq!(c.records.len(), 1, "cut at {cut}");
            assert_eq!(
                c.torn_at,
                (cut > good.len()).then_some(good.len() as u64),
                "cut at {cut}"
            );
        }
        // A file cut inside its first line was never acknowledged either.
        assert!(decode(&MAGIC[..7]).unwrap().records.is_empty());
    }

    #[test]
    fn a_damaged_last_record_is_dropped_but_damage_in_the_middle_stops_loading() {
        let mut b = file(&[(1, change(1)), (2, change(2))]);
        let n = b.len();
        b[n - 2] ^= 1;
        let c = decode(&b).unwrap();
        assert_eq!(c.records.len(), 1);
        assert!(c.torn_at.is_some());

        let mut b = file(&[(1, change(1)), (2, change(2))]);
        b[MAGIC.len() + RECORD_HEAD + 3] ^= 1; // first record's body
        let e = decode(&b).unwrap_err();
        assert!(e.contains("followed by more records"), "{e}");
        assert!(!e.contains("u1"), "errors never quote content: {e}");
    }

    #[test]
    fn a_gap_or_a_foreign_file_is_refused() {
        let e = decode(&file(&[(1, change(1)), (3, change(2))])).unwrap_err();
        assert!(e.contains("out of order"), "{e}");
        assert!(decode(b"jitd-state 1 0 0\n{}").is_err());
    }

    #[test]
    fn rotate_keeps_the_old_file_as_prev_and_appends_are_read_back() {
        let dir = std::env::temp_dir().join(format!("jitd-changes-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("state.journal");
        let mut a = Appender::rotate(&path).unwrap();
        a.append(&encode(1, &change(1)).unwrap()).unwrap();
        a.append(&encode(2, &change(2)).unwrap()).unwrap();
        assert_eq!(a.len(), std::fs::metadata(&path).unwrap().len());
        let mut b = Appender::rotate(&path).unwrap();
        b.append(&encode(3, &change(3)).unwrap()).unwrap();
        assert_eq!(read(&prev_path(&path)).unwrap().records.len(), 2);
        let now = read(&path).unwrap();
        assert_eq!(now.records.len(), 1);
        assert_eq!(now.records[0].seq, 3);
        assert!(read(&dir.join("missing")).unwrap().records.is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
