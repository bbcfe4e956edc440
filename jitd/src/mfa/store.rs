//! The skeleton both second-factor stores share: one directory under the state directory
//! (root, 0700), one record file per person (root, 0600, never a symlink, bounded in size),
//! one mutex that serializes every read-modify-write (so failure counters and spent codes are
//! global across connections), and temp files a crash left removed at open. What a record
//! holds and how it is framed is each store's own (`totp.rs`, `breakglass.rs`); both keep
//! per-source failure counters (`strikes.rs`).

use std::fs::OpenOptions;
use std::io::{self, Read};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use jit_core::host::trust::{self, Access};
use jit_core::validate::validate_name;

use crate::durable::fsync_dir;

/// Mode of a store directory.
pub const DIR_MODE: u32 = 0o700;
/// Mode of a record file.
pub const FILE_MODE: u32 = 0o600;

/// Why the store could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// A directory or record others could read or replace (not root's, group/other bits, a
    /// symlink, not the expected type): jitd must not trust it.
    Insecure(String),
    /// I/O, or a record larger than allowed.
    Io(String),
    /// A name that is not a valid user or account name (never used as a file name).
    BadName(String),
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::Insecure(m) | StoreError::Io(m) | StoreError::BadName(m) => f.write_str(m),
        }
    }
}

fn io_err(path: &Path, e: &io::Error) -> StoreError {
    StoreError::Io(format!("{}: {e}", path.display()))
}

/// What [`check_secure`] expects.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    /// The store directory.
    Dir,
    /// A record file.
    File,
}

/// Of the expected type (never a symlink), and root-only by `jit_core::host::trust`.
///
/// # Errors
/// [`StoreError::Insecure`] saying what is wrong.
pub fn check_secure(meta: &std::fs::Metadata, path: &Path, kind: Kind) -> Result<(), StoreError> {
    let ft = meta.file_type();
    let (ok_type, want, want_mode) = match kind {
        Kind::Dir => (ft.is_dir(), "a directory", DIR_MODE),
        Kind::File => (ft.is_file(), "a regular file", FILE_MODE),
    };
    if !ok_type {
        return Err(StoreError::Insecure(format!(
            "{} is not {want} (symlinks are refused)",
            path.display()
        )));
    }
    trust::check_metadata(meta, Access::RootOnly).map_err(|e| {
        StoreError::Insecure(format!("{} is {e} (want {want_mode:04o})", path.display()))
    })?;
    Ok(())
}

/// One store directory and its lock.
pub struct RecordDir {
    dir: PathBuf,
    lock: Mutex<()>,
}

impl std::fmt::Debug for RecordDir {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordDir")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl RecordDir {
    /// Opens `<state_dir>/<name>`, making it (root, 0700) if missing, and refuses one that is
    /// not root's own. Temp files a crash left (`.<record>.tmp.<pid>`) are removed; with
    /// `check_records`, every remaining file must be a root-only regular file too.
    ///
    /// # Errors
    /// [`StoreError::Insecure`] (jitd must refuse to start), [`StoreError::Io`].
    pub fn open(
        state_dir: &Path,
        name: &str,
        check_records: bool,
    ) -> Result<RecordDir, StoreError> {
        let dir = state_dir.join(name);
        match std::fs::DirBuilder::new().mode(DIR_MODE).create(&dir) {
            Ok(()) => fsync_dir(state_dir).map_err(|e| io_err(state_dir, &e))?,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io_err(&dir, &e)),
        }
        let meta = std::fs::symlink_metadata(&dir).map_err(|e| io_err(&dir, &e))?;
        check_secure(&meta, &dir, Kind::Dir)?;
        for entry in std::fs::read_dir(&dir).map_err(|e| io_err(&dir, &e))? {
            let entry = entry.map_err(|e| io_err(&dir, &e))?;
            let path = entry.path();
            let fname = entry.file_name();
            let fname = fname.to_string_lossy();
            // `.<record>.tmp.<pid>`: a write interrupted by a crash (durable.rs naming).
            if fname.starts_with('.') && fname.contains(".tmp.") {
                let _ = std::fs::remove_file(&path);
                continue;
            }
            if check_records {
                let meta = std::fs::symlink_metadata(&path).map_err(|e| io_err(&path, &e))?;
                check_secure(&meta, &path, Kind::File)?;
            }
        }
        Ok(RecordDir {
            dir,
            lock: Mutex::new(()),
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Serializes a read-modify-write of any record. A panic elsewhere cannot leave a
    /// half-written record (every write is atomic), so a poisoned lock is still safe to use.
    pub fn guard(&self) -> MutexGuard<'_, ()> {
        crate::poison::lock(&self.lock)
    }

    /// The record file of `name` (`what`: "user name", "account", for the error). The
    /// allow-list (`[a-z_][a-z0-9_-]*`, at most 32) makes the name safe as a file name.
    ///
    /// # Errors
    /// [`StoreError::BadName`].
    pub fn record_path(&self, what: &'static str, name: &str) -> Result<PathBuf, StoreError> {
        validate_name(what, name).map_err(|e| StoreError::BadName(e.to_string()))?;
        Ok(self.dir.join(format!("{name}.json")))
    }

    /// Reads the record at `path`: `None` if there is none. Never follows a symlink; the file
    /// must be root-only and at most `max_bytes` long.
    ///
    /// # Errors
    /// [`StoreError::Insecure`], [`StoreError::Io`].
    pub fn read(&self, path: &Path, max_bytes: u64) -> Result<Option<Vec<u8>>, StoreError> {
        let mut f = match OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
                return Err(StoreError::Insecure(format!(
                    "{} is a symlink",
                    path.display()
                )))
            }
            Err(e) => return Err(io_err(path, &e)),
        };
        let meta = f.metadata().map_err(|e| io_err(path, &e))?;
        check_secure(&meta, path, Kind::File)?;
        let mut buf = Vec::new();
        (&mut f)
            .take(max_bytes + 1)
            .read_to_end(&mut buf)
            .map_err(|e| io_err(path, &e))?;
        if buf.len() as u64 > max_bytes {
            return Err(StoreError::Io(format!(
                "{}: record larger than {max_bytes} bytes",
                path.display()
            )));
        }
        Ok(Some(buf))
    }

    /// Removes the record at `path`, durably. `Ok(false)` if there was none.
    ///
    /// # Errors
    /// [`StoreError::Io`].
    pub fn remove(&self, path: &Path) -> Result<bool, StoreError> {
        match std::fs::remove_file(path) {
            Ok(()) => {
                fsync_dir(&self.dir).map_err(|e| io_err(&self.dir, &e))?;
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io_err(path, &e)),
        }
    }
}
