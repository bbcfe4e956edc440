//! Crash-safe file replacement: temp file in the same directory, write, fchown/fchmod, fsync,
//! verify, rename, fsync the directory (docs/design.md#durable-writes). A crash at any step leaves the old
//! file or the new one, never a partial or zero-length file.

use std::ffi::CString;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Failpoints for crash tests: `JITD_FAILPOINT=<file name>:<step>[,<file name>:<step>...]` (e.g.
/// `state.json:after-fsync`) kills the process at that step of writing that file. Only compiled
/// with the `failpoints` feature; a normal build has none and never reads the variable.
#[cfg(feature = "failpoints")]
pub(crate) fn failpoint_set(path: &Path, step: &str) -> bool {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let want = format!("{name}:{step}");
    std::env::var("JITD_FAILPOINT").is_ok_and(|v| v.split(',').any(|f| f == want))
}

#[cfg(feature = "failpoints")]
pub(crate) fn failpoint(path: &Path, step: &str) {
    if failpoint_set(path, step) {
        // SAFETY: raising SIGKILL on ourselves; simulates a crash at this exact step.
        unsafe { libc::raise(libc::SIGKILL) };
    }
}

#[cfg(not(feature = "failpoints"))]
pub(crate) fn failpoint(_path: &Path, _step: &str) {}

/// Whether the failpoint `step` of `path` is set (always false without the feature).
#[cfg(not(feature = "failpoints"))]
pub(crate) fn failpoint_set(_path: &Path, _step: &str) -> bool {
    false
}

/// Like [`failpoint`], but the step pauses while the file `<path>.hold` exists (at most 30 s),
/// with `<path>.held` present meanwhile: a test can see a request stopped at this step and
/// check what else jitd still answers.
#[cfg(feature = "failpoints")]
pub(crate) fn failpoint_hold(path: &Path, step: &str) {
    let (hold, held) = (with_suffix(path, ".hold"), with_suffix(path, ".held"));
    if !failpoint_set(path, step) || !hold.exists() {
        return;
    }
    let _ = std::fs::write(&held, b"");
    let until = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while hold.exists() && std::time::Instant::now() < until {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let _ = std::fs::remove_file(&held);
}

#[cfg(not(feature = "failpoints"))]
pub(crate) fn failpoint_hold(_path: &Path, _step: &str) {}

/// Like [`failpoint`], but the step fails with an I/O error instead of killing the process
/// (a write that the disk refused), for the paths that must survive it.
#[cfg(feature = "failpoints")]
pub(crate) fn failpoint_error(path: &Path, step: &str) -> io::Result<()> {
    if failpoint_set(path, step) {
        return Err(io::Error::other(format!("failpoint {step}")));
    }
    Ok(())
}

#[cfg(not(feature = "failpoints"))]
pub(crate) fn failpoint_error(_path: &Path, _step: &str) -> io::Result<()> {
    Ok(())
}

/// `path` with `suffix` appended to its file name (`state.json` → `state.json.prev`).
pub fn with_suffix(path: &Path, suffix: &str) -> std::path::PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(suffix);
    std::path::PathBuf::from(p)
}

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

/// Reads the file at `path` in 64 KiB pieces, handing each to `visit` in order, and says
/// whether `visit` took every piece to the end (`false`: it stopped at one). The read-back
/// checks of a written file go through this, so none needs a second copy of a file of tens of
/// megabytes.
///
/// # Errors
/// open or read failure.
pub(crate) fn read_pieces(path: &Path, mut visit: impl FnMut(&[u8]) -> bool) -> io::Result<bool> {
    let mut f = File::open(path)?;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match f.read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let Some(piece) = buf.get(..n).filter(|_| n > 0) else {
            return Ok(true);
        };
        if !visit(piece) {
            return Ok(false);
        }
    }
}

/// Whether the file at `path` holds exactly `parts` back to back, without joining them.
fn reads_back_as(path: &Path, parts: &[&[u8]]) -> io::Result<bool> {
    let mut parts = parts.iter().copied();
    let mut rest: &[u8] = parts.next().unwrap_or_default();
    let same_so_far = read_pieces(path, |mut got| {
        while !got.is_empty() {
            while rest.is_empty() {
                match parts.next() {
                    Some(p) => rest = p,
                    None => return false, // longer than what was written
                }
            }
            let k = got.len().min(rest.len());
            let (g, g_after) = got.split_at(k);
            let (w, w_after) = rest.split_at(k);
            if g != w {
                return false;
            }
            got = g_after;
            rest = w_after;
        }
        true
    })?;
    Ok(same_so_far && rest.is_empty() && parts.all(<[u8]>::is_empty))
}

/// Replaces `path` with `data` atomically and durably, owned by root with `mode`.
/// With `keep_prev`, the replaced file is kept as `<path>.prev` (one previous generation).
///
/// # Errors
/// Any failure; the old file is then untouched. EIO from fsync is reported, never retried
/// (the kernel may have dropped the dirty pages: PostgreSQL's fsync lesson).
pub fn replace_file(path: &Path, data: &[u8], mode: u32, keep_prev: bool) -> io::Result<()> {
    replace_file_with(
        path,
        mode,
        keep_prev,
        |mut f| f.write_all(data),
        |tmp| reads_back_as(tmp, &[data]),
    )
}

/// As [`replace_file`] with the concatenation of `parts`, without making it (a sealed
/// `state.json`: its header line, then a body of megabytes).
///
/// # Errors
/// As [`replace_file`].
pub fn replace_file_parts(
    path: &Path,
    parts: &[&[u8]],
    mode: u32,
    keep_prev: bool,
) -> io::Result<()> {
    replace_file_with(
        path,
        mode,
        keep_prev,
        |mut f| parts.iter().try_for_each(|p| f.write_all(p)),
        |tmp| reads_back_as(tmp, parts),
    )
}

/// As [`replace_file`], for content too large to hold in memory whole: `fill` writes it into
/// the new file, and `reads_back` tells, from the new file's path after its fsync, whether it
/// holds what was meant (a snapshot checks its own length and checksum) before it replaces the
/// old one.
///
/// # Errors
/// As [`replace_file`], `fill`'s, or the new file not reading back.
pub fn replace_file_with(
    path: &Path,
    mode: u32,
    keep_prev: bool,
    fill: impl FnOnce(&File) -> io::Result<()>,
    reads_back: impl FnOnce(&Path) -> io::Result<bool>,
) -> io::Result<()> {
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
    let f = unsafe { File::from_raw_fd(fd) };
    let result = (|| -> io::Result<()> {
        fill(&f)?;
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
        if !reads_back(&tmp)? {
            return Err(io::Error::other(
                "written file does not read back identically",
            ));
        }
        if keep_prev && path.exists() {
            let prev = with_suffix(path, ".prev");
            // A hard link keeps the current file in place during the swap; the rename below then
            // replaces it atomically.
            let _ = std::fs::remove_file(&prev);
            std::fs::hard_link(path, &prev)?;
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
    let mut out = seal_line(header, body);
    out.extend_from_slice(body);
    out
}

/// The header line [`seal`] puts before `body`, for a caller that writes the two apart.
pub fn seal_line(header: &str, body: &[u8]) -> Vec<u8> {
    format!(
        "{header}{:08x} {}\n",
        jit_core::crc32c::crc32c(body),
        body.len()
    )
    .into_bytes()
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

/// Bytes per slot of a two-slot record file (see [`write_slotted`]).
pub const SLOT_BYTES: usize = 8192;
const SLOT_MAGIC: &[u8] = b"jitd-slot 1 ";
/// Magic, 20-digit generation, space, 10-digit length, newline.
const SLOT_HEAD: usize = 12 + 20 + 1 + 10 + 1;
/// The checksum (8 hex digits) and a newline end every slot.
const SLOT_CRC_AT: usize = SLOT_BYTES - 9;
/// The largest record a slot holds.
pub const SLOT_MAX_RECORD: usize = SLOT_CRC_AT - SLOT_HEAD;

fn slot_bytes(generation: u64, data: &[u8]) -> io::Result<Vec<u8>> {
    if data.len() > SLOT_MAX_RECORD {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("record of {} bytes exceeds {SLOT_MAX_RECORD}", data.len()),
        ));
    }
    let mut slot = vec![0u8; SLOT_BYTES];
    let head = format!("jitd-slot 1 {generation:020} {:010}\n", data.len());
    slot[..SLOT_HEAD].copy_from_slice(head.as_bytes());
    slot[SLOT_HEAD..SLOT_HEAD + data.len()].copy_from_slice(data);
    let crc = format!("{:08x}\n", jit_core::crc32c::crc32c(&slot[..SLOT_CRC_AT]));
    slot[SLOT_CRC_AT..].copy_from_slice(crc.as_bytes());
    Ok(slot)
}

/// The generation and record of one slot, if it is intact.
fn parse_slot(slot: &[u8]) -> Option<(u64, &[u8])> {
    if slot.len() != SLOT_BYTES || !slot.starts_with(SLOT_MAGIC) {
        return None;
    }
    let crc = std::str::from_utf8(slot.get(SLOT_CRC_AT..SLOT_CRC_AT + 8)?).ok()?;
    if u32::from_str_radix(crc, 16).ok()? != jit_core::crc32c::crc32c(slot.get(..SLOT_CRC_AT)?) {
        return None;
    }
    let head = std::str::from_utf8(slot.get(SLOT_MAGIC.len()..SLOT_HEAD - 1)?).ok()?;
    let (generation, len) = head.split_once(' ')?;
    let generation: u64 = generation.parse().ok()?;
    let len: usize = len.parse().ok()?;
    Some((
        generation,
        slot.get(SLOT_HEAD..SLOT_HEAD.checked_add(len)?)?,
    ))
}

/// Whether `bytes` (a whole file) is a two-slot record file (by its size: the records kept in
/// one are smaller than a slot when written whole).
pub fn is_slotted(bytes: &[u8]) -> bool {
    bytes.len() == 2 * SLOT_BYTES
}

/// The newest intact record of a two-slot record file, with its slot index and generation.
///
/// # Errors
/// Wrong size, or neither slot intact.
pub fn read_slotted(bytes: &[u8]) -> Result<(usize, u64, &[u8]), String> {
    if bytes.len() != 2 * SLOT_BYTES {
        return Err(format!(
            "size {} is not that of a two-slot record file",
            bytes.len()
        ));
    }
    let (a, b) = bytes.split_at(SLOT_BYTES);
    match (parse_slot(a), parse_slot(b)) {
        (Some((ga, ra)), Some((gb, rb))) => Ok(if ga >= gb { (0, ga, ra) } else { (1, gb, rb) }),
        (Some((ga, ra)), None) => Ok((0, ga, ra)),
        (None, Some((gb, rb))) => Ok((1, gb, rb)),
        (None, None) => Err("no intact slot".into()),
    }
}

/// Writes a record that must stay writable when its filesystem is full (a TOTP record: a code
/// for a grant that exists must still be checked, and spent, on a full disk).
///
/// The file has two fixed slots, each with a generation, a length and a CRC32C. A write goes in
/// place into the slot that does not hold the newest intact record, then `fdatasync`, then is
/// read back: overwriting blocks the file already owns needs no free space, and a write torn by
/// a crash leaves the newest acknowledged record intact in the other slot (a record is
/// acknowledged only after its sync, so the older slot never holds anything newer than what was
/// last acknowledged). A missing file, or one in another format, is made whole with
/// [`replace_file`], which needs space.
///
/// # Errors
/// Any failure; the newest acknowledged record is then still the one a reader finds.
pub fn write_slotted(path: &Path, data: &[u8], mode: u32) -> io::Result<()> {
    let fresh = |generation| -> io::Result<()> {
        let mut whole = slot_bytes(generation, data)?;
        whole.resize(2 * SLOT_BYTES, 0);
        replace_file(path, &whole, mode, false)
    };
    let c = cstr(path)?;
    // SAFETY: `c` is a valid C string; the fd is checked and then owned by `File`.
    let fd = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_RDWR | libc::O_CLOEXEC | libc::O_NOFOLLOW | libc::O_NONBLOCK,
        )
    };
    if fd < 0 {
        let e = io::Error::last_os_error();
        return if e.raw_os_error() == Some(libc::ENOENT) {
            fresh(1)
        } else {
            Err(e)
        };
    }
    // SAFETY: a fresh descriptor nothing else owns.
    let f = unsafe { File::from_raw_fd(fd) };
    let m = f.metadata()?;
    if !m.is_file() || m.len() != (2 * SLOT_BYTES) as u64 {
        drop(f);
        return fresh(1);
    }
    use std::os::unix::fs::FileExt;
    let mut cur = vec![0u8; 2 * SLOT_BYTES];
    f.read_exact_at(&mut cur, 0)?;
    let (target, generation) = match read_slotted(&cur) {
        Ok((i, g, _)) => (1 - i, g.saturating_add(1)),
        Err(_) => {
            drop(f);
            return fresh(1);
        }
    };
    let slot = slot_bytes(generation, data)?;
    let at = (target * SLOT_BYTES) as u64;
    f.write_all_at(&slot, at)?;
    f.sync_data()?;
    let mut back = vec![0u8; SLOT_BYTES];
    f.read_exact_at(&mut back, at)?;
    if back != slot {
        return Err(io::Error::other(
            "written slot does not read back identically",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn read_back_compares_every_byte_and_the_length() {
        let dir = std::env::temp_dir().join(format!("jitd-readback-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("f");
        // Longer than one 64 KiB piece, with the difference in the second piece.
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&p, &data).unwrap();
        assert!(reads_back_as(&p, &[&data]).unwrap());
        let mut other = data.clone();
        other[100_000] ^= 1;
        assert!(!reads_back_as(&p, &[&other]).unwrap());
        assert!(!reads_back_as(&p, &[&data[..data.len() - 1]]).unwrap());
        let mut longer = data.clone();
        longer.push(0);
        assert!(!reads_back_as(&p, &[&longer]).unwrap());
        // In parts: split anywhere (inside a piece, at its edge, with empty parts) it is the
        // same file; parts that differ anywhere, or add up to a different length, are not.
        for cut in [0, 1, 65_535, 65_536, 65_537, 150_000, data.len()] {
            let (a, b) = data.split_at(cut);
            assert!(reads_back_as(&p, &[a, b]).unwrap(), "cut {cut}");
            assert!(reads_back_as(&p, &[b"", a, b"", b]).unwrap(), "cut {cut}");
            let (x, y) = other.split_at(cut);
            assert!(!reads_back_as(&p, &[x, y]).unwrap(), "cut {cut}");
            assert!(!reads_back_as(&p, &[a, b, b"z"]).unwrap(), "cut {cut}");
            if !b.is_empty() {
                assert!(!reads_back_as(&p, &[a, &b[1..]]).unwrap(), "cut {cut}");
            }
        }
        std::fs::write(&p, b"").unwrap();
        assert!(reads_back_as(&p, &[b""]).unwrap());
        assert!(!reads_back_as(&p, &[b"x"]).unwrap());
        std::fs::remove_dir_all(&dir).unwrap();
    }

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

    #[test]
    fn slotted_writes_in_place_and_survive_a_torn_slot() {
        let dir = std::env::temp_dir().join(format!("jitd-slotted-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("rec");
        write_slotted(&p, b"one", 0o600).unwrap();
        let ino = std::fs::metadata(&p).unwrap().ino();
        write_slotted(&p, b"two", 0o600).unwrap();
        write_slotted(&p, b"three", 0o600).unwrap();
        let m = std::fs::metadata(&p).unwrap();
        assert_eq!(m.ino(), ino, "later writes are in place");
        assert_eq!(m.len(), (2 * SLOT_BYTES) as u64);
        assert_eq!(m.mode() & 0o777, 0o600);
        let bytes = std::fs::read(&p).unwrap();
        let (i, g, rec) = read_slotted(&bytes).unwrap();
        assert_eq!((g, rec), (3, &b"three"[..]));
        // A torn write of the newest slot: the previous acknowledged record is read.
        let mut torn = bytes.clone();
        torn[i * SLOT_BYTES + SLOT_HEAD] ^= 0xff;
        std::fs::write(&p, &torn).unwrap();
        let back = std::fs::read(&p).unwrap();
        assert_eq!(read_slotted(&back).unwrap().2, b"two");
        // The next write goes over the torn slot, never over the intact one.
        write_slotted(&p, b"four", 0o600).unwrap();
        let back = std::fs::read(&p).unwrap();
        assert_eq!(read_slotted(&back).unwrap().1, 3);
        assert_eq!(read_slotted(&back).unwrap().2, b"four");
        assert!(write_slotted(&p, &vec![b'x'; SLOT_MAX_RECORD + 1], 0o600).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
