//! The audit trail: one JSON object per line in the audit log (0600 root), each line fsynced,
//! mirrored to syslog `authpriv` with a stable event name. serde_json escapes control
//! characters, so a hostile reason or name cannot forge lines, and every field is cut to a
//! fixed size before it is written ([`MAX_FIELD`]), so a client cannot fill the disk with one.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use jit_core::time::{format_utc, UnixTime};
use serde_json::{json, Map, Value};

pub mod events;
pub use events::Event;

/// syslog severities used by the audit trail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// Routine (grant created, live, expired).
    Info,
    /// Something a person should look at (revocation by policy, repaired snapshot).
    Notice,
    /// Refusals and failed steps.
    Warning,
    /// Failures that threaten guarantees (state not writable, teardown incomplete).
    Error,
    /// Break-glass and the like.
    Crit,
}

impl Severity {
    fn syslog(self) -> libc::c_int {
        match self {
            Severity::Info => libc::LOG_INFO,
            Severity::Notice => libc::LOG_NOTICE,
            Severity::Warning => libc::LOG_WARNING,
            Severity::Error => libc::LOG_ERR,
            Severity::Crit => libc::LOG_CRIT,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Notice => "notice",
            Severity::Warning => "warning",
            Severity::Error => "error",
            Severity::Crit => "crit",
        }
    }
}

/// Appends audit records.
pub struct Audit {
    path: PathBuf,
    file: Mutex<Option<File>>,
    /// Sees every record written (the link to jit-server forwards some as host events).
    forward: std::sync::OnceLock<Forward>,
}

/// A hook called with every record the trail writes; it must not take the daemon's lock.
pub type Forward = Box<dyn Fn(UnixTime, Event, &Value) + Send + Sync>;

impl Audit {
    /// Opens (creating) the audit log, 0600, in a directory created 0700 if missing.
    ///
    /// # Errors
    /// The log cannot be opened: jitd refuses to run without an audit trail.
    pub fn open(path: &Path) -> std::io::Result<Audit> {
        if let Some(dir) = path.parent() {
            if !dir.exists() {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode_0700()
                    .create(dir)?;
            }
        }
        let f = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
            .open(path)?;
        Ok(Audit {
            path: path.to_path_buf(),
            file: Mutex::new(Some(f)),
            forward: std::sync::OnceLock::new(),
        })
    }

    /// Sets the hook that sees every record (once; later calls are ignored).
    pub fn set_forward(&self, f: Forward) {
        let _ = self.forward.set(f);
    }

    /// Records one event. Never fails the caller: a record that cannot be written goes to
    /// syslog with an error instead. In debug builds (every test), a field the event does not
    /// declare in [`Event`] is a bug and panics, so the reference cannot miss one.
    pub fn record(&self, now: UnixTime, sev: Severity, event: Event, fields: Value) {
        self.record_all(now, vec![(sev, event, fields)]);
    }

    /// Records many events with one write and ONE fsync (group commit), e.g. the expiry and
    /// teardown records of every grant ending in the same tick: each is as durable as with
    /// [`Audit::record`] (on disk when this returns), without one fsync per grant delaying the
    /// teardown of the next.
    pub fn record_all(&self, now: UnixTime, records: Vec<(Severity, Event, Value)>) {
        let mut lines = Vec::with_capacity(records.len());
        for (sev, event, fields) in records {
            #[cfg(debug_assertions)]
            if let Value::Object(m) = &fields {
                for k in m.keys() {
                    assert!(
                        event.fields().contains(&k.as_str()),
                        "audit event {} has no field {k:?}: declare it in jitd/src/audit/events.rs",
                        event.name()
                    );
                }
            }
            if let Some(f) = self.forward.get() {
                f(now, event, &fields);
            }
            lines.push((sev, line_of(now, sev, event.name(), fields)));
        }
        self.write_lines(&lines);
    }

    /// Writes one record, its fields cut to size, without the check of its fields against
    /// [`Event`] (tests feed hostile fields through it).
    #[cfg(test)]
    fn write(&self, now: UnixTime, sev: Severity, event: &str, fields: Value) {
        self.write_lines(&[(sev, line_of(now, sev, event, fields))]);
    }

    /// Appends `lines` (one record each) with one write and one `fdatasync`; each also goes
    /// to syslog.
    fn write_lines(&self, lines: &[(Severity, String)]) {
        if lines.is_empty() {
            return;
        }
        let mut buf = String::with_capacity(lines.iter().map(|(_, l)| l.len() + 1).sum());
        for (_, line) in lines {
            buf.push_str(line);
            buf.push('\n');
        }
        let written = match self.file.lock() {
            Ok(mut guard) => match guard.as_mut() {
                Some(f) => f
                    .write_all(buf.as_bytes())
                    .and_then(|()| f.sync_data())
                    .is_ok(),
                None => false,
            },
            Err(_) => false,
        };
        for (sev, line) in lines {
            jit_core::ffi::syslog_authpriv(sev.syslog(), &format!("jitd: {line}"));
        }
        if !written {
            jit_core::ffi::syslog_authpriv(
                libc::LOG_ERR,
                "jitd: JIT-E010 audit log write failed; the record above exists only in syslog",
            );
        }
    }

    /// Reads records, optionally only one grant's, from `since`, after byte `after_offset`.
    /// Returns the records and the offset after the last complete line.
    ///
    /// # Errors
    /// The log cannot be read.
    pub fn read(
        &self,
        grant: Option<&str>,
        since: Option<i64>,
        after_offset: Option<u64>,
    ) -> std::io::Result<(Vec<Value>, u64)> {
        let mut f = File::open(&self.path)?;
        let len = f.metadata()?.len();
        let start = after_offset.unwrap_or(0);
        if start >= len {
            // At or past the end (a follower that is up to date, a log that was truncated, or
            // a hostile offset near 2^63 or 2^64, which lseek refuses): an empty page, and the
            // offset of the end, from which a follower can go on.
            return Ok((Vec::new(), start.min(len)));
        }
        f.seek(SeekFrom::Start(start))?;
        let mut reader = BufReader::new(f);
        let mut offset = start;
        let mut out = Vec::new();
        let mut line = String::new();
        let mut bytes = 0usize;
        // Stop well under the frame cap; the client pages on with the returned offset.
        while bytes < jit_proto::MAX_FRAME / 2 {
            line.clear();
            let n = reader.read_line(&mut line)?;
            if n == 0 || !line.ends_with('\n') {
                break;
            }
            offset += n as u64;
            let Ok(v) = serde_json::from_str::<Value>(line.trim_end()) else {
                continue;
            };
            if let Some(g) = grant {
                if v.get("grant").and_then(Value::as_str) != Some(g) {
                    continue;
                }
            }
            if let Some(s) = since {
                if v.get("ts").and_then(Value::as_i64).unwrap_or(0) < s {
                    continue;
                }
            }
            bytes += n;
            out.push(v);
        }
        Ok((out, offset))
    }
}

/// One record as a JSON line (without the newline), its fields cut to size.
fn line_of(now: UnixTime, sev: Severity, event: &str, fields: Value) -> String {
    let mut obj = Map::new();
    obj.insert("ts".into(), json!(now));
    obj.insert("time".into(), json!(format_utc(now)));
    obj.insert("event".into(), json!(event));
    obj.insert("severity".into(), json!(sev.as_str()));
    if let Value::Object(m) = fields {
        obj.extend(m.into_iter().map(|(k, v)| (k, bounded(v, 0))));
    }
    Value::Object(obj).to_string()
}

/// Longest string value kept in an audit record, in bytes; longer ones are cut and say so.
/// Legitimate fields are far shorter (names 32, reasons 256, a sudo command line 4096): only a
/// hostile or broken client sends more, and it must not be able to fill the disk through the
/// trail.
pub const MAX_FIELD: usize = 4096;

/// Most elements of one array kept in an audit record.
pub const MAX_ITEMS: usize = 256;

/// Nesting kept in an audit record (records are flat objects with small arrays).
const MAX_DEPTH: usize = 4;

/// `v` with every string cut to [`MAX_FIELD`] bytes, every array to [`MAX_ITEMS`] elements and
/// nesting to [`MAX_DEPTH`] levels, so one record is bounded whatever a client sent. Each cut
/// is marked with how much was left out.
fn bounded(v: Value, depth: usize) -> Value {
    match v {
        Value::String(s) if s.len() > MAX_FIELD => {
            let mut end = MAX_FIELD;
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            let left_out = s.len() - end;
            let mut s = s;
            s.truncate(end);
            Value::String(format!("{s}… ({left_out} more bytes)"))
        }
        Value::Array(_) | Value::Object(_) if depth >= MAX_DEPTH => {
            Value::String("(nested too deep; left out)".into())
        }
        Value::Array(a) => {
            let n = a.len();
            let mut out: Vec<Value> = a
                .into_iter()
                .take(MAX_ITEMS)
                .map(|x| bounded(x, depth + 1))
                .collect();
            if n > MAX_ITEMS {
                out.push(Value::String(format!("… ({} more items)", n - MAX_ITEMS)));
            }
            Value::Array(out)
        }
        Value::Object(m) => {
            let n = m.len();
            let mut out: Map<String, Value> = m
                .into_iter()
                .take(MAX_ITEMS)
                .map(|(k, x)| {
                    let k = if k.len() > 64 {
                        jit_proto::text::one_line(&k, 64)
                    } else {
                        k
                    };
                    (k, bounded(x, depth + 1))
                })
                .collect();
            if n > MAX_ITEMS {
                out.insert("…".into(), json!(format!("{} more keys", n - MAX_ITEMS)));
            }
            Value::Object(out)
        }
        other => other,
    }
}

trait DirBuilderExt0700 {
    fn mode_0700(&mut self) -> &mut Self;
}

impl DirBuilderExt0700 for std::fs::DirBuilder {
    fn mode_0700(&mut self) -> &mut Self {
        use std::os::unix::fs::DirBuilderExt;
        self.mode(0o700)
    }
}

/// Opens syslog for the daemon itself (jitd owns its process, unlike the modules).
pub fn open_syslog() {
    // SAFETY: the identity is a static NUL-terminated string that outlives the process.
    unsafe {
        libc::openlog(
            c"jitd".as_ptr(),
            libc::LOG_PID | libc::LOG_NDELAY,
            libc::LOG_AUTHPRIV,
        )
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(tag: &str) -> (PathBuf, Audit) {
        let dir = std::env::temp_dir().join(format!("jitd-audit-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let p = dir.join("audit.jsonl");
        let a = Audit::open(&p).unwrap();
        (dir, a)
    }

    #[test]
    fn huge_fields_are_cut_before_they_are_written() {
        let (dir, a) = log("cut");
        let mb = "x".repeat(1 << 20);
        let many: Vec<String> = (0..10_000).map(|i| i.to_string()).collect();
        // Below `record`'s field check: these fields are hostile on purpose.
        a.write(
            1,
            Severity::Warning,
            "request.denied",
            json!({ "user": mb, "argv": many, "deep": [[[[[["x"]]]]]], &"k".repeat(5000): 1 }),
        );
        let text = std::fs::read_to_string(dir.join("audit.jsonl")).unwrap();
        assert!(text.len() < 3 * MAX_FIELD, "{} bytes", text.len());
        let v: Value = serde_json::from_str(text.trim_end()).unwrap();
        let user = v["user"].as_str().unwrap();
        assert!(user.ends_with(&format!("… ({} more bytes)", (1 << 20) - MAX_FIELD)));
        assert_eq!(v["argv"].as_array().unwrap().len(), MAX_ITEMS + 1);
        let _ = std::fs::remove_dir_all(dir);
    }

    /// `after_offset` near 2^63 or 2^64 made lseek fail and the reply `internal`.
    #[test]
    fn offsets_past_the_end_give_an_empty_page() {
        let (dir, a) = log("off");
        a.record(1, Severity::Info, Event::DaemonStop, json!({}));
        let len = std::fs::metadata(dir.join("audit.jsonl")).unwrap().len();
        for off in [
            len,
            len + 1,
            1 << 40,
            (1 << 63) - 1,
            1 << 63,
            u64::MAX - 1,
            u64::MAX,
        ] {
            let (recs, next) = a.read(None, None, Some(off)).unwrap();
            assert!(recs.is_empty(), "{off}");
            assert_eq!(next, len, "{off}");
        }
        let (recs, next) = a.read(None, None, Some(0)).unwrap();
        assert_eq!((recs.len(), next), (1, len));
        let _ = std::fs::remove_dir_all(dir);
    }
}
