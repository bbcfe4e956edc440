//! Projects jitd's state onto the snapshot the modules read, and writes it atomically.
//!
//! Two files come out of one projection. The gates file (`gates`, next to the snapshot, 0600
//! root) holds the whole image: the gate records pam_jit and sudo_jit decide on (sudo scope,
//! run-as targets, `--from`, `--service`, `--window`, flags) and the managed list. The
//! snapshot (0644) is what NSS and jit-authorized-keys read and any local user can read too:
//! the same image without the gate records and without the managed list, so one user cannot
//! learn another's sudo scope, source networks, time windows or the managed accounts.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use jit_core::policy::classify::parse_class;
use jit_core::types::*;
use jit_core::validate::sanitize_gecos;
use jit_core::UnixTime;

use crate::config::Config;
use crate::durable::{replace_file, replace_file_with};
use crate::localdb::LocalDb;
use crate::state::State;

mod weight;
pub use weight::spec_weight;

/// Identity of a written snapshot file, to notice if someone replaced or damaged it. Owner
/// and mode are part of it: a gates file made readable by others, or handed to another owner
/// (which the modules then refuse), is rewritten like a damaged one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileId {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i64,
    uid: u32,
    mode: u32,
}

impl FileId {
    /// The identity of `path` now, if it exists.
    pub fn of(path: &Path) -> Option<FileId> {
        let m = std::fs::symlink_metadata(path).ok()?;
        Some(FileId {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime_ns: m.mtime() * 1_000_000_000 + m.mtime_nsec(),
            uid: m.uid(),
            mode: m.mode(),
        })
    }
}

/// An account that could not be shown because a local user or group now has its name or id.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Collision {
    /// Grant id.
    pub grant: String,
    /// Account name.
    pub user: String,
    /// What collides.
    pub with: String,
}

/// Builds the snapshot content for `now`. Ended grants and grants already past `not_after`
/// are left out; pending ones are included so the modules flip at `not_before` by themselves.
pub fn project(
    cfg: &Config,
    state: &State,
    local: &LocalDb,
    now: UnixTime,
) -> (SnapshotData, Vec<Collision>) {
    project_grants(cfg, state.grants.values().map(Box::as_ref), local, now)
}

/// [`project`] of `grants` alone: for a delta, the grants added since the base was projected.
/// The projection of a union of grants is the union of their projections (each grant adds
/// only its own records, and groups of one name merge), which is what a reader of a base and
/// its delta relies on (docs/snapshot-format.md §12).
pub fn project_grants<'g>(
    cfg: &Config,
    grants: impl Iterator<Item = &'g jit_proto::Grant> + Clone,
    local: &LocalDb,
    now: UnixTime,
) -> (SnapshotData, Vec<Collision>) {
    let shown = |g: &&jit_proto::Grant| !g.state.is_ended() && g.not_after > now;
    // Sized once from a count (cheap next to the projection itself): grown by doubling, the
    // vectors of a 10 000-grant projection held up to half again in slack at once, the peak
    // of jitd's memory at a whole write.
    let (n, n_accounts) = grants
        .clone()
        .filter(shown)
        .fold((0, 0), |(n, a), g| (n + 1, a + usize::from(g.account)));
    let mut data = SnapshotData {
        generated_at: now,
        accounts: Vec::with_capacity(n_accounts),
        grants: Vec::with_capacity(n),
        // jit-sudo, one private group per account and jit's two other groups; the local
        // groups (a few) grow it once at the end.
        groups: Vec::with_capacity(n_accounts + 3),
        managed: cfg.managed_accounts.clone(),
        uid_range: Some((cfg.uid_min, cfg.uid_max)),
    };
    let mut collisions = Vec::new();
    // The private groups go straight into `data.groups`, one per account, then sorted by name
    // with the groups of one name merged (as a map by name would, without its nodes).
    let mut locals: BTreeMap<String, GroupEntry> = BTreeMap::new();
    let mut jit_users = GroupEntry {
        name: cfg.group_users.as_str().into(),
        gid: cfg.gid_users(),
        kind: GROUP_KIND_JIT,
        not_before: i64::MIN,
        not_after: i64::MAX,
        members: Vec::with_capacity(n_accounts),
    };
    let mut jit_sudo = GroupEntry {
        name: cfg.group_sudo.as_str().into(),
        gid: cfg.gid_sudo(),
        kind: GROUP_KIND_JIT,
        not_before: i64::MIN,
        not_after: i64::MAX,
        members: Vec::new(),
    };
    // Users whose login needs a TOTP code, for sshd's `Match Group jit-mfa` (docs/design.md#paths).
    let mut jit_mfa = GroupEntry {
        name: cfg.group_mfa.as_str().into(),
        gid: cfg.gid_mfa(),
        kind: GROUP_KIND_JIT,
        not_before: i64::MIN,
        not_after: i64::MAX,
        members: Vec::new(),
    };
    // The grant's own name and id (shared with the state, no copy) in every record that
    // carries them (an account, its private group, each membership, the gate record); one
    // shell for all.
    let shell = Text::from(cfg.shell.as_str());
    for g in grants.filter(shown) {
        let user = g.user.clone();
        let id = g.id.clone();
        let mut flags = 0;
        let mut uid = 0;
        if g.account {
            let Some(u) = g.uid else { continue };
            // A local user or group created after the grant wins: local names are never shadowed.
            if let Some(other) = local.name_taken(&g.user) {
                collisions.push(Collision {
                    grant: g.id.to_string(),
                    user: g.user.to_string(),
                    with: format!("local name {other:?}"),
                });
                continue;
            }
            if local.id_taken(u) {
                collisions.push(Collision {
                    grant: g.id.to_string(),
                    user: g.user.to_string(),
                    with: format!("local id {u}"),
                });
                continue;
            }
            flags |= GATE_ACCOUNT;
            uid = u;
            let reason = if g.reason.is_empty() {
                String::new()
            } else {
                format!(" ({})", g.reason)
            };
            data.accounts.push(Account {
                name: user.clone(),
                uid: u,
                gid: u,
                gecos: sanitize_gecos(&format!("jit grant {}{reason}", g.id)).into(),
                home: format!("{}/{}", cfg.home_root.display(), g.user).into(),
                shell: shell.clone(),
                grant_id: id.clone(),
                not_before: g.not_before,
                not_after: g.not_after,
                flags: if g.mfa { ACCOUNT_MFA_REQUIRED } else { 0 },
                ssh_keys: g.ssh_keys.to_vec(),
            });
            // One private group per identity; overlapping or successive grants widen its
            // window (merged below).
            data.groups.push(GroupEntry {
                name: user.clone(),
                gid: u,
                kind: GROUP_KIND_PRIVATE,
                not_before: g.not_before,
                not_after: g.not_after,
                members: Vec::new(),
            });
            jit_users.members.push(Member {
                name: user.clone(),
                grant_id: id.clone(),
                not_before: g.not_before,
                not_after: g.not_after,
            });
        }
        if g.mfa && (g.account || g.enable) {
            jit_mfa.members.push(Member {
                name: user.clone(),
                grant_id: id.clone(),
                not_before: g.not_before,
                not_after: g.not_after,
            });
        }
        // An --mfa grant gives no privilege until its holder proves a code (armed).
        let armed = g.mfa && g.activated_at.is_none();
        for gname in g.groups.iter().filter(|_| !armed) {
            // The gid always comes from /etc/group (NSS merge needs name and gid identical).
            let Some(lg) = local.group(gname) else {
                continue;
            };
            if lg.gid == 0 {
                continue;
            }
            locals
                .entry(gname.clone())
                .or_insert_with(|| GroupEntry {
                    name: gname.as_str().into(),
                    gid: lg.gid,
                    kind: GROUP_KIND_LOCAL,
                    not_before: i64::MIN,
                    not_after: i64::MAX,
                    members: Vec::new(),
                })
                .members
                .push(Member {
                    name: user.clone(),
                    grant_id: id.clone(),
                    not_before: g.not_before,
                    not_after: g.not_after,
                });
        }
        for (set, bit) in [
            (g.mfa, GATE_MFA),
            (armed, GATE_ARMED),
            (g.mfa_sudo, GATE_MFA_SUDO),
            (g.enable, GATE_ENABLE),
            (g.end_with_session, GATE_END_WITH_SESSION),
        ] {
            if set {
                flags |= bit;
            }
        }
        let revoke_on = g
            .revoke_on
            .iter()
            .filter_map(|c| parse_class(c))
            .fold(0, |a, b| a | b);
        if !g.sudo.is_empty() && !armed {
            jit_sudo.members.push(Member {
                name: user.clone(),
                grant_id: id.clone(),
                not_before: g.not_before,
                not_after: g.not_after,
            });
        }
        data.grants.push(GateGrant {
            id,
            user,
            uid,
            not_before: g.not_before,
            not_after: g.not_after,
            flags,
            revoke_on,
            lists: GateLists {
                from: g.from.to_vec(),
                services: g.services.to_vec(),
                windows: g.windows.to_vec(),
                sudo: g.sudo.to_vec(),
                runas: g.runas.to_vec(),
            }
            .boxed(),
        });
    }
    // The private groups by name (stable: the first grant of a name gives its gid), one per
    // name, its window the union of its grants'.
    data.groups.sort_by(|a, b| a.name.cmp(&b.name));
    data.groups.dedup_by(|later, first| {
        let same = later.name == first.name;
        if same {
            first.not_before = first.not_before.min(later.not_before);
            first.not_after = first.not_after.max(later.not_after);
        }
        same
    });
    // jit-sudo is always present (hidden while it has no live member), so the sudo plugin can
    // recognise its gid in a session that kept it after the grant ended.
    data.groups.insert(0, jit_sudo);
    data.groups.extend(locals.into_values());
    if !jit_users.members.is_empty() {
        data.groups.push(jit_users);
    }
    if !jit_mfa.members.is_empty() {
        data.groups.push(jit_mfa);
    }
    // A private group whose name equals a local group is impossible (name_taken above), but a
    // private group named like jit's own groups is refused at grant time; drop it defensively.
    let own = [
        cfg.group_users.as_str(),
        cfg.group_sudo.as_str(),
        cfg.group_mfa.as_str(),
    ];
    data.groups
        .retain(|g| g.kind != GROUP_KIND_PRIVATE || !own.contains(&g.name.as_str()));
    // Slack left despite the sizing above (grants skipped for a collision, private groups
    // merged, the local groups' and jit-sudo's member lists grown by doubling) would be held
    // through the whole write that follows. Large vectors shrink in place (glibc's realloc of
    // an mmap'ed block is an mremap, no copy).
    data.accounts.shrink_to_fit();
    data.grants.shrink_to_fit();
    data.groups.shrink_to_fit();
    for g in &mut data.groups {
        g.members.shrink_to_fit();
    }
    (data, collisions)
}

/// Identities of the two files jitd writes, to notice if either was replaced or removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotFiles {
    public: FileId,
    gates: FileId,
}

impl SnapshotFiles {
    /// The sizes of the public snapshot and of the gates file, in bytes.
    pub fn sizes(&self) -> (u64, u64) {
        (self.public.size, self.gates.size)
    }

    /// The identities of the snapshot at `snapshot_path` and of its gates file, if both exist.
    pub fn of(snapshot_path: &Path) -> Option<SnapshotFiles> {
        SnapshotFiles::at(snapshot_path, &gates_path(snapshot_path))
    }

    /// The identities of the two delta files that go with the snapshot at `snapshot_path`, if
    /// both exist.
    pub fn of_deltas(snapshot_path: &Path) -> Option<SnapshotFiles> {
        SnapshotFiles::at(
            &delta_path(snapshot_path),
            &delta_path(&gates_path(snapshot_path)),
        )
    }

    /// The identities of a snapshot and a gates file at the paths given, if both exist.
    pub fn at(snapshot_path: &Path, gates_path: &Path) -> Option<SnapshotFiles> {
        Some(SnapshotFiles {
            public: FileId::of(snapshot_path)?,
            gates: FileId::of(gates_path)?,
        })
    }
}

/// The gates file that goes with `snapshot_path`: `gates` in the same directory (by default
/// `/run/jitd/gates`, the path pam_jit and sudo_jit read).
pub fn gates_path(snapshot_path: &Path) -> PathBuf {
    snapshot_path.with_file_name(jit_core::constants::GATES_FILE_NAME)
}

/// The delta file read over `path` (`<path>.delta`).
pub fn delta_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(jit_core::constants::DELTA_SUFFIX);
    PathBuf::from(p)
}

/// Writes the gates file `gates` (0600 root; jitd passes [`gates_path`] of `path`) and then
/// the snapshot `path` (0644 root), each atomically and durably, stating base `serial`;
/// returns their identities. The gates file goes first: it is what ends a sudo scope or a
/// login condition, so a revocation reaches it before anything else.
///
/// # Errors
/// Build or write failure; a file not yet replaced keeps its previous content, and the caller
/// retries both at its next tick.
pub fn write(
    path: &Path,
    gates: &Path,
    mut data: SnapshotData,
    serial: u32,
) -> Result<Option<SnapshotFiles>, String> {
    // One path for both would publish the gate records world-readable.
    if gates == path {
        return Err(format!(
            "{}: the snapshot cannot be the gates file itself (snapshot_path must not be named {})",
            path.display(),
            jit_core::constants::GATES_FILE_NAME
        ));
    }
    // One image at a time, each freed once written: built side by side they were both in
    // memory at once (at 10 000 grants the peak of jitd's memory). Only whole writes pay the
    // extra time (ends, revocations, the timer folding a delta), not adds. The gates file goes
    // first. The public file carries the lookup index: NSS answers a query from one small
    // shard. It is what any local user may read: `data` without the gate records and the
    // managed list; accounts (names, ids, GECOS, home, shell, public ssh keys, times) and group
    // memberships stay, as NSS and sshd's AuthorizedKeysCommand (run as `nobody`) need them.
    let stream =
        |data: &SnapshotData, to: &Path, opts: jit_core::snapshot::BuildOptions, mode: u32| {
            replace_file_with(
                to,
                mode,
                false,
                |f| {
                    let mut sink = FileSink {
                        out: std::io::BufWriter::with_capacity(SINK_BUFFER, f),
                    };
                    jit_core::snapshot::build_snapshot_into(data, &opts, &mut sink)
                        .map_err(std::io::Error::other)?;
                    std::io::Write::flush(&mut sink.out)
                },
                image_reads_back,
            )
            .map_err(|e| format!("{}: {e}", to.display()))
        };
    // The gates file carries its own lookup index (format 1.6: each person's gate records and
    // managed entry by name, jit's groups by gid): pam_jit and sudo_jit tell a local user apart
    // by reading a shard or two, not the whole file, at every login and sudo.
    stream(&data, gates, gates_options(serial), 0o600)?;
    // The public file leaves the gate records and the managed list out: free them first (a
    // few MiB at 10 000 grants, off the peak of the build that follows).
    data.grants = Vec::new();
    data.managed = Vec::new();
    stream(&data, path, public_options(serial), 0o644)?;
    Ok(SnapshotFiles::at(path, gates))
}

/// How the gates file is built: the whole image, with the gates file's own lookup index.
fn gates_options(serial: u32) -> jit_core::snapshot::BuildOptions {
    jit_core::snapshot::BuildOptions {
        index: true,
        gates_index: true,
        serial,
        ..Default::default()
    }
}

/// How the public snapshot is built: without gate records and managed list, with the NSS
/// lookup index.
fn public_options(serial: u32) -> jit_core::snapshot::BuildOptions {
    jit_core::snapshot::BuildOptions {
        index: true,
        without_gates: true,
        serial,
        ..Default::default()
    }
}

/// Bytes the image is written in: the sections are built in memory and go out in these.
const SINK_BUFFER: usize = 256 * 1024;

/// A snapshot image written straight into jitd's temporary file (see `durable`), so no whole
/// image is ever in jitd's memory: at 10 000 grants the public image is about 10 MiB, and it
/// and its assembly were the largest part of jitd's peak at a whole write.
struct FileSink<'f> {
    out: std::io::BufWriter<&'f std::fs::File>,
}

impl jit_core::snapshot::Sink for FileSink<'_> {
    fn append(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        std::io::Write::write_all(&mut self.out, bytes)
    }

    fn place(&mut self, at: u64, bytes: &[u8]) -> std::io::Result<()> {
        use std::os::unix::fs::FileExt;
        std::io::Write::flush(&mut self.out)?;
        self.out.get_ref().write_all_at(bytes, at)
    }
}

/// Whether the image at `path` is whole: as long as its header states, and its bytes after
/// the first 16 matching the header's CRC32C, read back in pieces. What the byte-for-byte
/// comparison of [`replace_file`] checks for content held in memory (a short, empty or
/// damaged write), for an image that never was.
fn image_reads_back(path: &Path) -> std::io::Result<bool> {
    /// The header's CRC32C is at 12, and covers everything from 16; `file_len` is at 16.
    const COVERED_FROM: u64 = 16;
    const HEAD: usize = 24;
    let mut head = Vec::with_capacity(HEAD);
    let (mut crc, mut read) = (0u32, 0u64);
    crate::durable::read_pieces(path, |piece| {
        let take = (HEAD - head.len()).min(piece.len());
        head.extend_from_slice(piece.get(..take).unwrap_or_default());
        let skip = usize::try_from(COVERED_FROM.saturating_sub(read)).unwrap_or(usize::MAX);
        crc = jit_core::crc32c::crc32c_append(crc, piece.get(skip..).unwrap_or_default());
        read += piece.len() as u64;
        true
    })?;
    let field = |at: usize, len: usize| {
        let mut b = [0u8; 8];
        if let (Some(to), Some(from)) = (b.get_mut(..len), head.get(at..at + len)) {
            to.copy_from_slice(from);
        }
        u64::from_le_bytes(b)
    };
    Ok(head.len() == HEAD && read == field(16, 8) && u64::from(crc) == field(12, 4))
}

/// Writes the deltas of the gates file and of the snapshot (format 1.4, small: the grants
/// added since the bases were projected), gates first, each atomically; they are read over a
/// base whose serial is one of `bases`. Returns the gates delta's size (the larger).
///
/// # Errors
/// Build or write failure, or a delta above `MAX_DELTA_BYTES` (which readers would ignore):
/// the caller then writes whole files.
pub fn write_delta(
    path: &Path,
    gates: &Path,
    data: &SnapshotData,
    bases: [u32; jit_core::snapshot::format::MAX_DELTA_BASES],
) -> Result<usize, String> {
    if gates == path {
        return Err("the snapshot cannot be the gates file itself".into());
    }
    crate::durable::failpoint_error(path, "fail-delta").map_err(|e| e.to_string())?;
    let opts = |without_gates| jit_core::snapshot::BuildOptions {
        without_gates,
        delta_of: Some(bases),
        ..Default::default()
    };
    let full =
        jit_core::snapshot::build_snapshot_with(data, &opts(false)).map_err(|e| e.to_string())?;
    let public =
        jit_core::snapshot::build_snapshot_with(data, &opts(true)).map_err(|e| e.to_string())?;
    if full.len() as u64 > jit_core::constants::MAX_DELTA_BYTES {
        return Err(format!(
            "delta of {} bytes is above the readers' limit",
            full.len()
        ));
    }
    let (gd, pd) = (delta_path(gates), delta_path(path));
    replace_file(&gd, &full, 0o600, false).map_err(|e| format!("{}: {e}", gd.display()))?;
    replace_file(&pd, &public, 0o644, false).map_err(|e| format!("{}: {e}", pd.display()))?;
    // The gates delta holds what the public one does and the gate records: the larger, read
    // whole by pam_jit and sudo_jit at every decision, as the public one is by every process's
    // first lookup.
    Ok(full.len())
}

/// Removes both deltas (after a whole write that holds everything they held): the snapshot's
/// first, as a reader of it would otherwise read it over a base it does not name, which it
/// ignores anyway.
pub fn remove_deltas(path: &Path, gates: &Path) {
    for p in [delta_path(path), delta_path(gates)] {
        // Any failure is harmless: a delta that names no base on disk is ignored by every
        // reader, and one that is not there needs no removing.
        let _ = std::fs::remove_file(&p);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jit_core::snapshot::{build_snapshot_with, BuildOptions};

    fn scratch(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("jitd-snapout-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// Enough records for several shards, a big group (all accounts are members of `ops`),
    /// gate records and the managed list.
    fn data(n: u32) -> SnapshotData {
        let name = |i: u32| format!("jx{i:05}");
        SnapshotData {
            generated_at: 1_800_000_000,
            accounts: (0..n)
                .map(|i| Account {
                    name: name(i).into(),
                    uid: 70_000 + i,
                    gid: 70_000 + i,
                    gecos: format!("jit grant g{i} (bench)").into(),
                    home: format!("/home/jit/{}", name(i)).into(),
                    shell: "/bin/bash".into(),
                    grant_id: format!("g{i}").into(),
                    not_before: 1_799_999_000,
                    not_after: 1_800_003_600,
                    flags: 0,
                    ssh_keys: vec![format!("ssh-ed25519 AAAA{i} k")],
                })
                .collect(),
            groups: vec![GroupEntry {
                name: "ops".into(),
                gid: 60_001,
                kind: GROUP_KIND_LOCAL,
                not_before: 0,
                not_after: i64::MAX,
                members: (0..n)
                    .map(|i| Member {
                        name: name(i).into(),
                        grant_id: format!("g{i}").into(),
                        not_before: 1_799_999_000,
                        not_after: 1_800_003_600,
                    })
                    .collect(),
            }],
            grants: (0..n)
                .map(|i| GateGrant {
                    id: format!("g{i}").into(),
                    user: name(i).into(),
                    uid: 70_000 + i,
                    not_before: 1_799_999_000,
                    not_after: 1_800_003_600,
                    flags: GATE_ACCOUNT,
                    lists: GateLists {
                        sudo: vec!["ALL".into()],
                        ..Default::default()
                    }
                    .boxed(),
                    ..Default::default()
                })
                .collect(),
            managed: vec!["admin".into()],
            uid_range: Some((70_000, 79_999)),
        }
    }

    /// The files streamed to disk are, byte for byte, the images built in memory (the gates
    /// file whole, the snapshot indexed and without gates), with the modes the modules demand
    /// and no temporary left beside them.
    #[test]
    fn streamed_files_are_the_images_built_in_memory() {
        let d = scratch("stream");
        let (path, gates) = (d.join("snapshot"), d.join("gates"));
        let data = data(3_000);
        write(&path, &gates, data.clone(), 7).unwrap();
        let want_gates = build_snapshot_with(
            &data,
            &BuildOptions {
                index: true,
                gates_index: true,
                serial: 7,
                ..Default::default()
            },
        )
        .unwrap();
        let want_public = build_snapshot_with(
            &data,
            &BuildOptions {
                index: true,
                without_gates: true,
                serial: 7,
                ..Default::default()
            },
        )
        .unwrap();
        assert!(want_public.len() > 2 * SINK_BUFFER, "spans several buffers");
        assert!(std::fs::read(&gates).unwrap() == want_gates);
        assert!(std::fs::read(&path).unwrap() == want_public);
        let mode = |p: &Path| std::fs::metadata(p).unwrap().mode() & 0o7777;
        assert_eq!((mode(&gates), mode(&path)), (0o600, 0o644));
        let names: Vec<_> = std::fs::read_dir(&d)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
        let _ = std::fs::remove_dir_all(&d);
    }

    /// A build that fails half-way (a field the format cannot carry) leaves the files as they
    /// were and no partial temporary.
    #[test]
    fn a_failed_stream_leaves_the_old_files() {
        let d = scratch("fail");
        let (path, gates) = (d.join("snapshot"), d.join("gates"));
        let good = data(50);
        write(&path, &gates, good.clone(), 1).unwrap();
        let before = (
            std::fs::read(&gates).unwrap(),
            std::fs::read(&path).unwrap(),
        );
        let mut bad = good.clone();
        if let Some(a) = bad.accounts.last_mut() {
            a.shell = "/bin/sh\nroot::0:0::/:/bin/sh".into();
        }
        let err = write(&path, &gates, bad, 2).unwrap_err();
        assert!(err.contains("unsafe"), "{err}");
        assert!(std::fs::read(&gates).unwrap() == before.0);
        assert!(std::fs::read(&path).unwrap() == before.1);
        assert_eq!(std::fs::read_dir(&d).unwrap().count(), 2);
        let _ = std::fs::remove_dir_all(&d);
    }

    /// The read-back check accepts the image as written and refuses it one byte short, one
    /// byte long, with any one of a spread of bytes changed (header, table, shards, base), or
    /// empty.
    #[test]
    fn the_read_back_check_refuses_any_damage() {
        let d = scratch("readback");
        let f = d.join("img");
        let img = build_snapshot_with(
            &data(500),
            &BuildOptions {
                index: true,
                ..Default::default()
            },
        )
        .unwrap();
        std::fs::write(&f, &img).unwrap();
        assert!(image_reads_back(&f).unwrap());
        std::fs::write(&f, &img[..img.len() - 1]).unwrap();
        assert!(!image_reads_back(&f).unwrap());
        let mut long = img.clone();
        long.push(0);
        std::fs::write(&f, &long).unwrap();
        assert!(!image_reads_back(&f).unwrap());
        for at in [12, 16, 30, 70, img.len() / 3, img.len() / 2, img.len() - 1] {
            let mut bad = img.clone();
            bad[at] ^= 0x20;
            std::fs::write(&f, &bad).unwrap();
            assert!(!image_reads_back(&f).unwrap(), "byte {at} changed");
        }
        std::fs::write(&f, b"").unwrap();
        assert!(!image_reads_back(&f).unwrap());
        let _ = std::fs::remove_dir_all(&d);
    }
}

#[cfg(test)]
mod projection_tests;
#[cfg(test)]
mod weight_tests;
