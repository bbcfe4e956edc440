//! Crash-safe file replacement: temp file in the same directory, write, fchown/fchmod, fsync,
//! verify, rename, fsync the directory (TEST-CATALOGUE §3.1). A crash at any step leaves the old
//! file or the new one, never a partial or zero-length file.

use std::ffi::CString;
use std::fs::File;
use std::io::{self, Read, Seek, Write};
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Failpoints for crash tests: `JITD_FAILPOINT=<file name>:<step>` (e.g. `state.json:after-fsync`)
/// kills the process at that step of writing that file. Only compiled with the `failpoints`
/// feature; a normal build has none and never reads the variable.
#[cfg(feature = "failpoints")]
fn failpoint(path: &Path, step: &str) {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if std::env::var("JITD_FAILPOINT").ok() == Some(format!("{name}:{step}")) {
        // SAFETY: raising SIGKILL on ourselves; simulates a crash at this exact step.
        unsafe { libc::raise(libc::SIGKILL) };
    }
}

#[cfg(not(feature = "failpoints"))]
fn failpoint(_path: &Path, _step: &str) {}

fn cstr(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path has NUL"))
}

/// fsyncs a directory so a rename in it is durable.
///
/// # Errors
/// open or fsync failure.
pub fn fsync_dir(dir: &Path) -> io::Result<()> {
    let f = File::open(dir)?;
    f.sync_all()
}

/// Replaces `path` with `data` atomically and durably, owned by root with `mode`.
/// With `keep_prev`, the replaced file is kept as `<path>.prev` (one previous generation).
///
/// # Errors
/// Any failure; the old file is then untouched. EIO from fsync is reported, never retried
/// (the kernel may have dropped the dirty pages: PostgreSQL's fsync lesson).
pub fn replace_file(path: &Path, data: &[u8], mode: u32, keep_prev: bool) -> io::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no parent directory"))?;
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no file name"))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".tmp.{}", std::process::id()));
    let tmp = dir.join(&tmp_name);
    let ctmp = cstr(&tmp)?;
    // A stale temp of ours from a crashed earlier run with the same pid would make O_EXCL fail.
    let _ = std::fs::remove_file(&tmp);
    // SAFETY: `ctmp` is a valid C string; the returned fd is checked and owned by `File`.
    let fd = unsafe {
        libc::open(
            ctmp.as_ptr(),
            libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY | libc::O_CLOEXEC | libc::O_NOFOLLOW,
            0o600 as libc::c_uint,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a freshly opened descriptor that nothing else owns.
    let mut f = unsafe { File::from_raw_fd(fd) };
    let result = (|| -> io::Result<()> {
        f.write_all(data)?;
        // SAFETY: plain fchown/fchmod on our own descriptor.
        if unsafe { libc::fchown(f.as_raw_fd(), 0, 0) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: as above.
        if unsafe { libc::fchmod(f.as_raw_fd(), mode as libc::mode_t) } != 0 {
            return Err(io::Error::last_os_error());
        }
        failpoint(path, "after-write");
        f.sync_all()?;
        failpoint(path, "after-fsync");
        // Verify what reached the file before it replaces the good one (google-authenticator
        // f661059: a zero-length secrets file locked root out).
        let mut back = Vec::with_capacity(data.len());
        let mut rf = File::open(&tmp)?;
        rf.rewind()?;
        rf.read_to_end(&mut back)?;
        if back != data {
            return Err(io::Error::other(
                "written file does not read back identically",
            ));
        }
        if keep_prev && path.exists() {
            let mut prev = path.as_os_str().to_owned();
            prev.push(".prev");
            // A hard link keeps the current file in place during the swap; the rename below then
            // replaces it atomically.
            let prev = Path::new(&prev);
            let _ = std::fs::remove_file(prev);
            std::fs::hard_link(path, prev)?;
        }
        std::fs::rename(&tmp, path)?;
        failpoint(path, "after-rename");
        fsync_dir(dir)?;
        failpoint(path, "after-dir-fsync");
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Removes temp files a crash may have left beside `path` (`.<name>.tmp.<pid>`).
pub fn remove_stale_temps(path: &Path) {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return;
    };
    let prefix = format!(".{}.tmp.", name.to_string_lossy());
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_name().to_string_lossy().starts_with(&prefix) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

/// Frames `body` for a state file: one header line `<header><crc32c hex> <length>` (the header
/// names the format and version, e.g. `jitd-state 1 `), then the body. The checksum and length
/// let a reader tell a torn or damaged file from a good one.
pub fn seal(header: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "{header}{:08x} {}\n",
        jit_core::crc32c::crc32c(body),
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

/// The body of a file framed by [`seal`] with the same `header`, if its length and checksum
/// hold. Error texts never quote the content.
///
/// # Errors
/// Unknown header, truncation, checksum mismatch.
pub fn unseal<'a>(header: &str, bytes: &'a [u8]) -> Result<&'a [u8], String> {
    let nl = bytes
        .iter()
        .position(|&b| b == b'\n')
        .ok_or("no header line")?;
    let (head, body) = bytes.split_at(nl);
    let body = body.get(1..).unwrap_or(&[]);
    let head = std::str::from_utf8(head).map_err(|_| "header not UTF-8")?;
    let rest = head
        .strip_prefix(header)
        .ok_or("unknown header or version")?;
    let (crc, len) = rest.split_once(' ').ok_or("bad header")?;
    let crc = u32::from_str_radix(crc, 16).map_err(|_| "bad checksum field")?;
    let len: usize = len.parse().map_err(|_| "bad length field")?;
    if body.len() != len {
        return Err(format!(
            "length {} != recorded {len} (truncated?)",
            body.len()
        ));
    }
    if jit_core::crc32c::crc32c(body) != crc {
        return Err("checksum mismatch".into());
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn replace_keeps_previous_generation() {
        let dir = std::env::temp_dir().join(format!("jitd-durable-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("state");
        replace_file(&p, b"one", 0o600, true).unwrap();
        replace_file(&p, b"two", 0o600, true).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        assert_eq!(std::fs::read(dir.join("state.prev")).unwrap(), b"one");
        assert_eq!(std::fs::metadata(&p).unwrap().mode() & 0o777, 0o600);
        std::fs::write(dir.join(".state.tmp.1"), b"junk").unwrap();
        remove_stale_temps(&p);
        assert!(!dir.join(".state.tmp.1").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
