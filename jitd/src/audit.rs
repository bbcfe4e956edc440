//! The audit trail: one JSON object per line in the audit log (0600 root), each line fsynced,
//! mirrored to syslog `authpriv` with a stable event name. serde_json escapes control
//! characters, so a hostile reason or name cannot forge lines (TEST-CATALOGUE S7).

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use jit_core::time::{format_utc, UnixTime};
use serde_json::{json, Map, Value};

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
}

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
        })
    }

    /// Records one event. Never fails the caller: a record that cannot be written goes to
    /// syslog with an error instead.
    pub fn record(&self, now: UnixTime, sev: Severity, event: &str, fields: Value) {
        let mut obj = Map::new();
        obj.insert("ts".into(), json!(now));
        obj.insert("time".into(), json!(format_utc(now)));
        obj.insert("event".into(), json!(event));
        obj.insert("severity".into(), json!(sev.as_str()));
        if let Value::Object(m) = fields {
            obj.extend(m);
        }
        let line = Value::Object(obj).to_string();
        let written = match self.file.lock() {
            Ok(mut guard) => match guard.as_mut() {
                Some(f) => f
                    .write_all(format!("{line}\n").as_bytes())
                    .and_then(|()| f.sync_data())
                    .is_ok(),
                None => false,
            },
            Err(_) => false,
        };
        jit_core::ffi::syslog_authpriv(sev.syslog(), &format!("jitd: {line}"));
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
        let start = after_offset.unwrap_or(0);
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
