//! The fingerprint of privilege-relevant host state: local accounts and groups, the account
//! files, sudoers, every local account's `authorized_keys`, set-uid/set-gid files on the local
//! filesystems, systemd units, cron, `/etc/ld.so.preload`, PAM, NSS, sudo.conf and sshd's
//! configuration. Each item is a path (or `account:`/`group:` name) with owner, group, mode,
//! size and SHA-256 of the content.
//!
//! Everything is read as root without following links (`O_NOFOLLOW|O_NONBLOCK`, `lstat`): a
//! user who points their `authorized_keys` at /etc/shadow or makes it a FIFO gets a `symlink`
//! or `other` item, never a read of the target or a hang. Files are hashed up to a cap.

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Instant;

use jit_proto::certification::ItemState;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Content beyond this is not hashed (the size still is compared).
const HASH_CAP: u64 = 64 << 20;
/// Directory depth followed in configuration trees and in the set-uid walk.
const MAX_DEPTH: usize = 64;
/// Entries a single configuration tree may contribute (a hostile directory cannot make the
/// fingerprint unbounded; the cap is reported as unreadable).
const TREE_CAP: usize = 100_000;

/// Filesystems whose files can never be set-uid programs of this host (kernel views) or are
/// not local.
const SKIP_FSTYPES: &[&str] = &[
    "proc",
    "sysfs",
    "cgroup",
    "cgroup2",
    "devpts",
    "debugfs",
    "tracefs",
    "securityfs",
    "pstore",
    "bpf",
    "mqueue",
    "hugetlbfs",
    "configfs",
    "fusectl",
    "autofs",
    "binfmt_misc",
    "efivarfs",
    "rpc_pipefs",
    "nsfs",
    "nfs",
    "nfs4",
    "cifs",
    "smb3",
    "smbfs",
    "ceph",
    "9p",
    "afs",
    "glusterfs",
    "lustre",
    "gpfs",
    "fuse.sshfs",
    "fuse.s3fs",
    "fuse.gvfsd-fuse",
];

/// What to fingerprint.
#[derive(Debug, Clone)]
pub struct Scope {
    /// Local account file (the daemon's `passwd_file`).
    pub passwd_file: PathBuf,
    /// Local group file.
    pub group_file: PathBuf,
    /// Roots of the set-uid/set-gid walk (each local, suid-capable mount under them).
    pub suid_roots: Vec<PathBuf>,
    /// Paths never walked (and their subtrees).
    pub exclude: Vec<PathBuf>,
    /// Mount table.
    pub mountinfo: PathBuf,
}

/// One fingerprint.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Fingerprint {
    /// When it was taken.
    pub taken_at: i64,
    /// Milliseconds it took.
    pub elapsed_ms: u64,
    /// Item key -> (area, state).
    pub items: BTreeMap<String, (String, ItemState)>,
    /// What could not be read (path: error).
    pub unreadable: Vec<String>,
}

/// The fixed configuration paths and the area each belongs to.
const CONFIG_PATHS: &[(&str, &str)] = &[
    ("sudoers", "/etc/sudoers"),
    ("sudoers", "/etc/sudoers.d"),
    ("sudo_conf", "/etc/sudo.conf"),
    ("ld_preload", "/etc/ld.so.preload"),
    ("ld_preload", "/etc/ld.so.conf"),
    ("ld_preload", "/etc/ld.so.conf.d"),
    ("pam", "/etc/pam.conf"),
    ("pam", "/etc/pam.d"),
    ("pam", "/etc/security"),
    ("nss", "/etc/nsswitch.conf"),
    ("ssh", "/etc/ssh/sshd_config"),
    ("ssh", "/etc/ssh/sshd_config.d"),
    ("systemd", "/etc/systemd/system"),
    ("systemd", "/etc/systemd/user"),
    ("systemd", "/run/systemd/system"),
    ("systemd", "/usr/lib/systemd/system"),
    ("systemd", "/usr/lib/systemd/user"),
    ("systemd", "/lib/systemd/system"),
    ("cron", "/etc/crontab"),
    ("cron", "/etc/cron.d"),
    ("cron", "/etc/cron.hourly"),
    ("cron", "/etc/cron.daily"),
    ("cron", "/etc/cron.weekly"),
    ("cron", "/etc/cron.monthly"),
    ("cron", "/var/spool/cron"),
    ("accounts_file", "/etc/shadow"),
    ("accounts_file", "/etc/gshadow"),
];

struct Builder {
    fp: Fingerprint,
}

impl Builder {
    fn unreadable(&mut self, p: &Path, e: impl std::fmt::Display) {
        if self.fp.unreadable.len() < 1000 {
            self.fp.unreadable.push(format!("{}: {e}", p.display()));
        }
    }

    /// Records `p` (never following a link at `p`); regular files are hashed.
    fn item(&mut self, area: &str, p: &Path, md: &std::fs::Metadata) {
        let ft = md.file_type();
        let mut st = ItemState {
            kind: if ft.is_file() {
                "file"
            } else if ft.is_dir() {
                "dir"
            } else if ft.is_symlink() {
                "symlink"
            } else {
                "other"
            }
            .into(),
            owner: Some(md.uid()),
            group: Some(md.gid()),
            mode: Some(format!("{:04o}", md.mode() & 0o7777)),
            size: ft.is_file().then_some(md.len()),
            sha256: None,
            detail: None,
        };
        if ft.is_symlink() {
            match std::fs::read_link(p) {
                Ok(t) => st.detail = Some(t.display().to_string()),
                Err(e) => self.unreadable(p, e),
            }
        } else if ft.is_file() {
            match hash_file(p, md) {
                Ok(h) => st.sha256 = h,
                Err(e) => self.unreadable(p, e),
            }
        }
        self.fp
            .items
            .insert(p.display().to_string(), (area.to_string(), st));
    }

    /// Records `root` and, for a directory, everything below it (depth- and count-bounded).
    fn tree(&mut self, area: &str, root: &Path) {
        let md = match std::fs::symlink_metadata(root) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
            Err(e) => return self.unreadable(root, e),
        };
        self.item(area, root, &md);
        if !md.is_dir() {
            return;
        }
        let mut stack = vec![(root.to_path_buf(), 0usize)];
        let mut count = 0usize;
        while let Some((dir, depth)) = stack.pop() {
            let rd = match std::fs::read_dir(&dir) {
                Ok(r) => r,
                Err(e) => {
                    self.unreadable(&dir, e);
                    continue;
                }
            };
            for ent in rd.flatten() {
                count += 1;
                if count > TREE_CAP {
                    self.unreadable(root, format!("more than {TREE_CAP} entries"));
                    return;
                }
                let p = ent.path();
                let Ok(md) = std::fs::symlink_metadata(&p) else {
                    continue;
                };
                self.item(area, &p, &md);
                if md.is_dir() && depth < MAX_DEPTH {
                    stack.push((p, depth + 1));
                }
            }
        }
    }
}

/// SHA-256 of a regular file's content (None beyond the cap), opened without following a link
/// or blocking on a FIFO, and only if it is still the file `md` describes.
fn hash_file(p: &Path, md: &std::fs::Metadata) -> std::io::Result<Option<String>> {
    if md.len() > HASH_CAP {
        return Ok(None);
    }
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(p)?;
    let fm = f.metadata()?;
    if !fm.is_file() || fm.ino() != md.ino() || fm.dev() != md.dev() {
        return Err(std::io::Error::other("replaced while being read"));
    }
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut left = HASH_CAP;
    let mut r = f.take(HASH_CAP);
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        left = left.saturating_sub(n as u64);
        if left == 0 {
            return Ok(None);
        }
    }
    Ok(Some(hex(&h.finalize())))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// One passwd line: name, uid, gid, home, shell.
struct PwLine {
    name: String,
    uid: String,
    gid: String,
    home: String,
    shell: String,
}

fn passwd_lines(text: &str) -> Vec<PwLine> {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            let at = |i: usize| f.get(i).copied().unwrap_or("").to_string();
            PwLine {
                name: at(0),
                uid: at(2),
                gid: at(3),
                home: at(5),
                shell: at(6),
            }
        })
        .collect()
}

/// Where the set-uid walk starts: each root (on its own device, if the mount holding it is
/// local and not `nosuid`) and every such mount below a root; none excluded.
fn suid_mounts(scope: &Scope, b: &mut Builder) -> Vec<PathBuf> {
    let text = match std::fs::read_to_string(&scope.mountinfo) {
        Ok(t) => t,
        Err(e) => {
            b.unreadable(&scope.mountinfo, e);
            // Without the table, walk the roots themselves (one device each).
            return scope.suid_roots.clone();
        }
    };
    let mut mounts: BTreeMap<PathBuf, bool> = BTreeMap::new();
    for line in text.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let lf: Vec<&str> = left.split(' ').collect();
        let fstype = right.split(' ').next().unwrap_or("");
        let (Some(mp), Some(opts)) = (lf.get(4), lf.get(5)) else {
            continue;
        };
        let eligible = !SKIP_FSTYPES.contains(&fstype)
            && !fstype.starts_with("fuse.")
            && !opts.split(',').any(|o| o == "nosuid");
        // A later mount on the same point hides the earlier one.
        mounts.insert(PathBuf::from(crate::mountinfo::unescape(mp)), eligible);
    }
    let excluded = |p: &Path| scope.exclude.iter().any(|x| p.starts_with(x));
    let mut starts: Vec<PathBuf> = Vec::new();
    for r in &scope.suid_roots {
        // The mount holding the root itself: the longest mount point it lies under.
        let holder = mounts
            .iter()
            .filter(|(mp, _)| r.starts_with(mp))
            .max_by_key(|(mp, _)| mp.as_os_str().len())
            .is_none_or(|(_, ok)| *ok);
        if holder && !excluded(r) {
            starts.push(r.clone());
        }
        for (mp, ok) in &mounts {
            if *ok && mp.starts_with(r) && mp != r && !excluded(mp) {
                starts.push(mp.clone());
            }
        }
    }
    starts.sort();
    starts.dedup();
    starts
}

/// Walks one mount (never leaving its device) and records set-uid/set-gid regular files.
fn suid_walk(b: &mut Builder, mount: &Path, exclude: &[PathBuf]) {
    let dev = match std::fs::symlink_metadata(mount) {
        Ok(m) if m.is_dir() => m.dev(),
        Ok(_) => return,
        Err(e) => return b.unreadable(mount, e),
    };
    let mut stack = vec![(mount.to_path_buf(), 0usize)];
    while let Some((dir, depth)) = stack.pop() {
        let rd = match std::fs::read_dir(&dir) {
            Ok(r) => r,
            Err(e) => {
                b.unreadable(&dir, e);
                continue;
            }
        };
        for ent in rd.flatten() {
            let Ok(ft) = ent.file_type() else { continue };
            let p = ent.path();
            if ft.is_dir() {
                if depth >= MAX_DEPTH || exclude.iter().any(|x| p.starts_with(x)) {
                    continue;
                }
                match std::fs::symlink_metadata(&p) {
                    Ok(m) if m.dev() == dev => stack.push((p, depth + 1)),
                    _ => {}
                }
            } else if ft.is_file() {
                let Ok(md) = std::fs::symlink_metadata(&p) else {
                    continue;
                };
                if md.mode() & (libc::S_ISUID | libc::S_ISGID) != 0 {
                    b.item("setuid", &p, &md);
                }
            } else if ft.is_block_device() || ft.is_char_device() {
                // Device nodes outside /dev give raw access to disks and memory.
                if !p.starts_with("/dev") {
                    if let Ok(md) = std::fs::symlink_metadata(&p) {
                        b.item("device", &p, &md);
                    }
                }
            }
        }
    }
}

/// Takes a fingerprint now.
pub fn take(scope: &Scope, now: i64) -> Fingerprint {
    let t0 = Instant::now();
    let mut b = Builder {
        fp: Fingerprint {
            taken_at: now,
            ..Fingerprint::default()
        },
    };
    // Accounts and groups, line by line (uid 0 entries are flagged by the diff).
    for (area, file) in [
        ("accounts_file", &scope.passwd_file),
        ("accounts_file", &scope.group_file),
    ] {
        b.tree(area, file);
    }
    let passwd = match std::fs::read_to_string(&scope.passwd_file) {
        Ok(t) => t,
        Err(e) => {
            b.unreadable(&scope.passwd_file, e);
            String::new()
        }
    };
    let users = passwd_lines(&passwd);
    for u in &users {
        b.fp.items.insert(
            format!("account:{}", u.name),
            (
                "account".into(),
                ItemState {
                    kind: "account".into(),
                    owner: u.uid.parse().ok(),
                    group: u.gid.parse().ok(),
                    mode: None,
                    size: None,
                    sha256: None,
                    detail: Some(format!(
                        "uid={} gid={} home={} shell={}",
                        u.uid, u.gid, u.home, u.shell
                    )),
                },
            ),
        );
    }
    match std::fs::read_to_string(&scope.group_file) {
        Ok(t) => {
            for l in t
                .lines()
                .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
            {
                let f: Vec<&str> = l.split(':').collect();
                let name = f.first().copied().unwrap_or("");
                let gid = f.get(2).copied().unwrap_or("");
                let members = f.get(3).copied().unwrap_or("");
                b.fp.items.insert(
                    format!("group:{name}"),
                    (
                        "group".into(),
                        ItemState {
                            kind: "group".into(),
                            owner: None,
                            group: gid.parse().ok(),
                            mode: None,
                            size: None,
                            sha256: None,
                            detail: Some(format!("gid={gid} members={members}")),
                        },
                    ),
                );
            }
        }
        Err(e) => b.unreadable(&scope.group_file, e),
    }
    for (area, p) in CONFIG_PATHS {
        b.tree(area, Path::new(p));
    }
    // Every local account's keys; a home shared by several accounts is read once.
    let mut homes: Vec<&str> = users
        .iter()
        .map(|u| u.home.as_str())
        .filter(|h| h.starts_with('/') && *h != "/" && !h.starts_with("/nonexistent"))
        .collect();
    homes.sort_unstable();
    homes.dedup();
    for h in homes {
        for f in [".ssh/authorized_keys", ".ssh/authorized_keys2"] {
            b.tree("authorized_keys", &Path::new(h).join(f));
        }
    }
    let mounts = suid_mounts(scope, &mut b);
    for m in &mounts {
        suid_walk(&mut b, m, &scope.exclude);
    }
    b.fp.elapsed_ms = u64::try_from(t0.elapsed().as_millis()).unwrap_or(u64::MAX);
    b.fp
}

/// Writes a fingerprint to `path` (root-only, replaced atomically).
///
/// # Errors
/// I/O.
pub fn save(fp: &Fingerprint, path: &Path) -> std::io::Result<()> {
    save_json(fp, path)
}

/// Writes any record as JSON to `path` (0600, `O_NOFOLLOW`, fsynced, renamed into place).
///
/// # Errors
/// I/O.
pub fn save_json(v: &impl Serialize, path: &Path) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let body = serde_json::to_vec(v).map_err(std::io::Error::other)?;
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)?;
        f.write_all(&body)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)
}

/// Reads a fingerprint written by [`save`].
///
/// # Errors
/// I/O or a damaged file.
pub fn load(path: &Path) -> std::io::Result<Fingerprint> {
    load_json(path)
}

/// Reads a record written by [`save_json`] (at most 512 MiB, never through a link).
///
/// # Errors
/// I/O or a damaged file.
pub fn load_json<T: serde::de::DeserializeOwned>(path: &Path) -> std::io::Result<T> {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    let mut body = Vec::new();
    f.take(512 << 20).read_to_end(&mut body)?;
    serde_json::from_slice(&body).map_err(std::io::Error::other)
}

#[cfg(test)]
mod measure {
    use super::*;

    /// The fingerprint of this host as jitd's defaults would take it, timed (a figure, not an
    /// assertion): `cargo test -p jitd --lib certify::fingerprint::measure -- --ignored
    /// --nocapture` (JIT_CERTIFY_EXCLUDE=/a:/b leaves trees out).
    #[test]
    #[ignore = "walks the whole host; run by hand to measure"]
    fn host_fingerprint_time() {
        let exclude = std::env::var("JIT_CERTIFY_EXCLUDE")
            .map(|v| {
                v.split(':')
                    .filter(|s| !s.is_empty())
                    .map(PathBuf::from)
                    .collect()
            })
            .unwrap_or_default();
        let scope = Scope {
            passwd_file: "/etc/passwd".into(),
            group_file: "/etc/group".into(),
            suid_roots: vec!["/".into()],
            exclude,
            mountinfo: "/proc/self/mountinfo".into(),
        };
        for _ in 0..2 {
            let fp = take(&scope, 0);
            let suid = fp.items.values().filter(|(a, _)| a == "setuid").count();
            println!(
                "fingerprint: {} items ({suid} set-uid/set-gid), {} unreadable, {} ms",
                fp.items.len(),
                fp.unreadable.len(),
                fp.elapsed_ms
            );
        }
    }
}
