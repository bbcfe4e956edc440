//! The revocation journal: where a grant's end goes when `state.json` cannot be rewritten
//! (the state filesystem is full, or failing), so that a revocation or expiry holds across a
//! restart.
//!
//! `state.json` is replaced whole (temp file, rename), which needs free space. The journal
//! needs none at the moment it matters: `<state_dir>/revocations` is a file of fixed 128-byte
//! slots, written with zeros when it is made or grown, so recording an end is an in-place
//! overwrite of blocks the file already owns (`pwrite` + `fdatasync`). Space is reserved before
//! privilege is given: a grant is accepted only once the journal has a free slot for every
//! grant that has not ended yet plus the new one ([`Journal::reserve`]), and each grant ends
//! once, so an end always finds a slot.
//!
//! A slot is one line: `jrev1 <grant id> <revoked|expired> <ended_at> <created_at>`, padded
//! with spaces to 119 bytes, the CRC32C of those bytes in hex, `\n`. An all-zero slot is free;
//! a slot whose checksum fails (a write torn by a crash, which was never acknowledged) is
//! ignored. At start the entries are applied to the state just loaded (a grant not yet ended
//! there is ended); after every successful write of `state.json` the journal is cleared, since
//! the state file then holds every end.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use jit_core::host::trust::{self, Access};
use jit_core::time::UnixTime;

/// Bytes per slot.
const SLOT: usize = 128;
/// Bytes of a slot covered by its checksum.
const BODY: usize = SLOT - 9;
/// Slots added at a time when the journal grows.
const CHUNK: usize = 256;
/// The journal never grows beyond this many slots (16 MiB); beyond it new grants are refused.
/// A host holding 50 000 live grants (a bastion) needs 50 000: the file only grows as far as
/// the grants not yet ended need, a chunk at a time.
const MAX_SLOTS: usize = 131_072;
const MAGIC: &str = "jrev1";

/// How a grant ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndKind {
    /// Revoked (by root, by policy or with its session).
    Revoked,
    /// Expired (at `not_after`, or by the boot-time cap).
    Expired,
}

impl EndKind {
    fn as_str(self) -> &'static str {
        match self {
            EndKind::Revoked => "revoked",
            EndKind::Expired => "expired",
        }
    }
}

/// One recorded end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct End {
    /// Grant id.
    pub grant: String,
    /// How it ended.
    pub kind: EndKind,
    /// When.
    pub ended_at: UnixTime,
    /// The grant's `created_at`, so an entry never ends a different grant with the same id.
    pub created_at: UnixTime,
}

fn encode(e: &End) -> Option<[u8; SLOT]> {
    let text = format!(
        "{MAGIC} {} {} {} {}",
        e.grant,
        e.kind.as_str(),
        e.ended_at,
        e.created_at
    );
    if text.len() > BODY || jit_core::validate::validate_grant_id(&e.grant).is_err() {
        return None;
    }
    let mut slot = [b' '; SLOT];
    slot.get_mut(..text.len())?.copy_from_slice(text.as_bytes());
    let crc = format!("{:08x}", jit_core::crc32c::crc32c(slot.get(..BODY)?));
    slot.get_mut(BODY..BODY + 8)?
        .copy_from_slice(crc.as_bytes());
    *slot.last_mut()? = b'\n';
    Some(slot)
}

/// The entry in a slot; `None` for a free, torn or foreign slot (fail closed: only an intact,
/// well-formed entry ends anything, and ending is the only thing an entry can do).
fn decode(slot: &[u8]) -> Option<End> {
    let body = slot.get(..BODY)?;
    let crc = std::str::from_utf8(slot.get(BODY..BODY + 8)?).ok()?;
    if u32::from_str_radix(crc, 16).ok()? != jit_core::crc32c::crc32c(body) {
        return None;
    }
    let text = std::str::from_utf8(body).ok()?.trim_end_matches(' ');
    let mut f = text.split(' ');
    if f.next()? != MAGIC {
        return None;
    }
    let grant = f.next()?.to_string();
    jit_core::validate::validate_grant_id(&grant).ok()?;
    let kind = match f.next()? {
        "revoked" => EndKind::Revoked,
        "expired" => EndKind::Expired,
        _ => return None,
    };
    let ended_at = f.next()?.parse().ok()?;
    let created_at = f.next()?.parse().ok()?;
    if f.next().is_some() {
        return None;
    }
    Some(End {
        grant,
        kind,
        ended_at,
        created_at,
    })
}

/// The journal file and which of its slots hold entries.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    file: Option<File>,
    /// One flag per slot: true when it holds an entry not yet cleared.
    used: Vec<bool>,
}

fn open_existing(path: &Path) -> io::Result<File> {
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path has NUL"))?;
    // SAFETY: `c` is a valid C string; the fd is checked and then owned by `File`.
    let fd = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_RDWR | libc::O_CLOEXEC | libc::O_NOFOLLOW | libc::O_NONBLOCK,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor nothing else owns.
    let f = unsafe { File::from_raw_fd(fd) };
    let m = f.metadata()?;
    if !m.is_file() || trust::check_metadata(&m, Access::RootOnly).is_err() {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "{} must be a regular file owned by root, mode 0600 (uid {}, mode {:o})",
                path.display(),
                m.uid(),
                m.mode() & 0o7777
            ),
        ));
    }
    Ok(f)
}

impl Journal {
    /// Opens `<state_dir>/revocations` and returns it with the entries it holds. A missing
    /// journal is not an error (it is made by [`Journal::reserve`]); one that cannot be read
    /// is (jitd must not start without the ends it may hold).
    ///
    /// # Errors
    /// The file exists but is not root's own 0600 regular file, or cannot be read.
    pub fn open(state_dir: &Path) -> io::Result<(Journal, Vec<End>)> {
        let path = state_dir.join("revocations");
        // A journal being made when a crash came never got its name: start that over.
        let _ = std::fs::remove_file(state_dir.join(".revocations.new"));
        let file = match open_existing(&path) {
            Ok(f) => f,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                return Ok((
                    Journal {
                        path,
                        file: None,
                        used: Vec::new(),
                    },
                    Vec::new(),
                ))
            }
            Err(e) => return Err(io::Error::new(e.kind(), format!("{}: {e}", path.display()))),
        };
        let len = usize::try_from(file.metadata()?.len()).unwrap_or(usize::MAX);
        // A size that is not whole slots, or too large, is cut down to what is usable; the
        // part beyond is never read.
        let slots = (len / SLOT).min(MAX_SLOTS);
        let mut buf = vec![0u8; slots * SLOT];
        file.read_exact_at(&mut buf, 0)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        let mut used = vec![false; slots];
        let mut ends = Vec::new();
        for (i, slot) in buf.chunks_exact(SLOT).enumerate() {
            if slot.iter().all(|&b| b == 0) {
                continue;
            }
            // A torn or damaged slot stays marked used until the next clear rewrites it.
            if let Some(u) = used.get_mut(i) {
                *u = true;
            }
            if let Some(e) = decode(slot) {
                ends.push(e);
            }
        }
        Ok((
            Journal {
                path,
                file: Some(file),
                used,
            },
            ends,
        ))
    }

    /// The journal's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Free slots now.
    pub fn free(&self) -> usize {
        self.used.iter().filter(|u| !**u).count()
    }

    /// Makes sure at least `needed` slots are free, creating or growing the file with zeros
    /// (written, not sparse, so later overwrites need no new blocks), fsynced.
    ///
    /// # Errors
    /// The file cannot be made or grown (the state filesystem is full), or `needed` is beyond
    /// the journal's size limit.
    pub fn reserve(&mut self, needed: usize) -> io::Result<()> {
        let free = self.free();
        if free >= needed {
            return Ok(());
        }
        let grow = (needed - free).div_ceil(CHUNK) * CHUNK;
        if self.used.len() + grow > MAX_SLOTS {
            return Err(io::Error::other(format!(
                "{} would need more than {MAX_SLOTS} slots",
                self.path.display()
            )));
        }
        let fresh = self.file.is_none();
        if fresh {
            let tmp = self.path.with_file_name(".revocations.new");
            let _ = std::fs::remove_file(&tmp);
            let f = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
                .mode(0o600)
                .open(&tmp)?;
            let made = (|| {
                // SAFETY: plain fchown on our own descriptor.
                if unsafe { libc::fchown(f.as_raw_fd(), 0, 0) } != 0 {
                    return Err(io::Error::last_os_error());
                }
                f.write_all_at(&vec![0u8; grow * SLOT], 0)?;
                f.sync_all()?;
                std::fs::rename(&tmp, &self.path)?;
                crate::durable::fsync_dir(self.path.parent().unwrap_or(Path::new("/")))
            })();
            if let Err(e) = made {
                let _ = std::fs::remove_file(&tmp);
                return Err(e);
            }
            self.file = Some(f);
        } else if let Some(f) = &self.file {
            let at = (self.used.len() * SLOT) as u64;
            let grown = f
                .write_all_at(&vec![0u8; grow * SLOT], at)
                .and_then(|()| f.sync_all());
            if let Err(e) = grown {
                // Give back what was added: the slots were not recorded as usable.
                let _ = f.set_len(at);
                return Err(e);
            }
        }
        self.used.extend(std::iter::repeat_n(false, grow));
        Ok(())
    }

    /// Records `ends` in free slots, durably, in place.
    ///
    /// # Errors
    /// No journal, not enough free slots, or a write/fdatasync failure (then nothing written
    /// by this call is relied upon).
    pub fn record(&mut self, ends: &[End]) -> io::Result<()> {
        let Some(f) = &self.file else {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{} does not exist", self.path.display()),
            ));
        };
        let free: Vec<usize> = self
            .used
            .iter()
            .enumerate()
            .filter(|(_, u)| !**u)
            .map(|(i, _)| i)
            .take(ends.len())
            .collect();
        if free.len() < ends.len() {
            return Err(io::Error::other(format!(
                "{} has {} free slots for {} ends",
                self.path.display(),
                free.len(),
                ends.len()
            )));
        }
        crate::durable::failpoint(&self.path, "before-write");
        for (e, &i) in ends.iter().zip(&free) {
            let slot = encode(e).ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidInput, "entry does not fit a slot")
            })?;
            f.write_all_at(&slot, (i * SLOT) as u64)?;
            // Marked before the sync: a slot written but not synced is not free either.
            if let Some(u) = self.used.get_mut(i) {
                *u = true;
            }
        }
        crate::durable::failpoint(&self.path, "after-write");
        f.sync_data()?;
        crate::durable::failpoint(&self.path, "after-sync");
        Ok(())
    }

    /// Whether any slot holds an entry.
    pub fn has_entries(&self) -> bool {
        self.used.iter().any(|u| *u)
    }

    /// Frees every slot (after `state.json` was written with every end in it).
    ///
    /// # Errors
    /// A write or fdatasync failure; the entries then stay and are re-applied at the next
    /// start, which is harmless (an ended grant stays ended).
    pub fn clear(&mut self) -> io::Result<()> {
        let Some(f) = &self.file else {
            return Ok(());
        };
        let zero = [0u8; SLOT];
        for (i, u) in self.used.iter().enumerate() {
            if *u {
                f.write_all_at(&zero, (i * SLOT) as u64)?;
            }
        }
        f.sync_data()?;
        self.used.iter_mut().for_each(|u| *u = false);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("jitd-journal-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn end(id: &str, kind: EndKind) -> End {
        End {
            grant: id.into(),
            kind,
            ended_at: 1_700_000_000,
            created_at: 1_699_999_000,
        }
    }

    #[test]
    fn reserve_record_reopen_clear() {
        let d = dir("a");
        let (mut j, ends) = Journal::open(&d).unwrap();
        assert!(ends.is_empty());
        assert!(j
            .record(&[end("g-0123456789ab", EndKind::Revoked)])
            .is_err());
        j.reserve(3).unwrap();
        assert_eq!(j.free(), CHUNK);
        let size = std::fs::metadata(j.path()).unwrap().len();
        assert_eq!(size, (CHUNK * SLOT) as u64);
        let a = end("g-0123456789ab", EndKind::Revoked);
        let b = end(&format!("g-{}", "f".repeat(32)), EndKind::Expired);
        j.record(&[a.clone(), b.clone()]).unwrap();
        assert_eq!(j.free(), CHUNK - 2);
        assert_eq!(
            std::fs::metadata(j.path()).unwrap().len(),
            size,
            "recording never grows the file"
        );
        let (j2, ends) = Journal::open(&d).unwrap();
        assert_eq!(ends, vec![a, b]);
        assert_eq!(j2.free(), CHUNK - 2);
        drop(j2);
        j.clear().unwrap();
        let (_, ends) = Journal::open(&d).unwrap();
        assert!(ends.is_empty());
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn torn_and_foreign_slots_end_nothing() {
        let d = dir("b");
        let (mut j, _) = Journal::open(&d).unwrap();
        j.reserve(1).unwrap();
        j.record(&[end("g-0123456789ab", EndKind::Revoked)])
            .unwrap();
        let p = j.path().to_path_buf();
        drop(j);
        let mut bytes = std::fs::read(&p).unwrap();
        bytes[10] ^= 1; // torn first slot
        let forged = b"jrev1 ../../etc revoked 1 1";
        bytes[SLOT..SLOT + forged.len()].copy_from_slice(forged);
        std::fs::write(&p, &bytes).unwrap();
        let (j, ends) = Journal::open(&d).unwrap();
        assert!(ends.is_empty(), "{ends:?}");
        assert_eq!(
            j.free(),
            CHUNK - 2,
            "damaged slots are not reused before a clear"
        );
        // Others may not plant a journal.
        drop(j);
        std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
        assert!(Journal::open(&d).is_err());
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn slot_round_trip_and_limits() {
        let e = end(&format!("g-{}", "a".repeat(32)), EndKind::Expired);
        let s = encode(&e).unwrap();
        assert_eq!(decode(&s), Some(e));
        assert!(encode(&end("g-xyz", EndKind::Revoked)).is_none());
        assert!(decode(&[0u8; SLOT]).is_none());
    }
    #[test]
    fn a_bastion_s_worth_of_open_grants_fits_and_the_limit_still_holds() {
        let d = dir("bastion");
        let (mut j, ends) = Journal::open(&d).unwrap();
        assert!(ends.is_empty());
        j.reserve(50_001).unwrap();
        assert!(j.free() >= 50_001);
        let len = std::fs::metadata(d.join("revocations")).unwrap().len();
        assert!(len >= 50_001 * SLOT as u64, "{len}");
        assert!(j.reserve(MAX_SLOTS + 1).is_err());
        let _ = std::fs::remove_dir_all(&d);
    }
}
