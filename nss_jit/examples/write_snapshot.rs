//! Writes a jit snapshot for by-hand and namespace tests of `libnss_jit.so.2`.
//!
//! ```text
//! write_snapshot PATH SPEC...
//!   user=NAME:UID[:SECS]          account live from now-60 s for SECS (default 3600) seconds,
//!                                 with its private group and membership of jit-users (79999)
//!   expired=NAME:UID              an account whose grant ended 10 s ago
//!   group=NAME:GID:MEMBER[:SECS]  MEMBER in group NAME (a local group below 70000, else a jit one)
//!   many=N                        N filler accounts fillNNNNN (uids 71000..) for timing runs
//!   long=NAME:UID:LEN             an account whose GECOS is LEN bytes (buffer-retry checks)
//!   index=1                       write the lookup index and the base region, as jitd writes
//!                                 the public snapshot (default: neither, as the gates file)
//! ```
//! The file is written like jitd does it: temp file in the same directory, mode 0644, fsync,
//! rename. It is owned by whoever runs this (root, for the module to trust it).
//! Not part of the library: an example binary, allowed to print and to exit with an error.

use jit_core::snapshot::{build_snapshot_with, BuildOptions};
use jit_core::time::now;
use jit_core::types::{
    Account, GroupEntry, Member, SnapshotData, GROUP_KIND_JIT, GROUP_KIND_LOCAL, GROUP_KIND_PRIVATE,
};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::PathBuf;

fn account(name: &str, uid: u32, nb: i64, na: i64) -> Account {
    Account {
        name: name.into(),
        uid,
        gid: uid,
        gecos: format!("jit grant g-{uid:x} (by hand)").into(),
        home: format!("/home/{name}").into(),
        shell: "/bin/bash".into(),
        grant_id: format!("g-{uid:x}").into(),
        not_before: nb,
        not_after: na,
        flags: 0,
        ssh_keys: vec![],
    }
}

fn member(name: &str, uid_hint: u32, nb: i64, na: i64) -> Member {
    Member {
        name: name.into(),
        grant_id: format!("g-{uid_hint:x}").into(),
        not_before: nb,
        not_after: na,
    }
}

fn group_mut<'a>(d: &'a mut SnapshotData, name: &str, gid: u32, kind: u32) -> &'a mut GroupEntry {
    if let Some(i) = d.groups.iter().position(|g| *g.name == *name) {
        return &mut d.groups[i];
    }
    d.groups.push(GroupEntry {
        name: name.into(),
        gid,
        kind,
        not_before: i64::MIN,
        not_after: i64::MAX,
        members: vec![],
    });
    let last = d.groups.len() - 1;
    &mut d.groups[last]
}

fn add_user(d: &mut SnapshotData, name: &str, uid: u32, nb: i64, na: i64) {
    d.accounts.push(account(name, uid, nb, na));
    let private = group_mut(d, name, uid, GROUP_KIND_PRIVATE);
    private.not_before = nb;
    private.not_after = na;
    group_mut(d, "jit-users", 79_999, GROUP_KIND_JIT)
        .members
        .push(member(name, uid, nb, na));
}

fn run() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let path = PathBuf::from(args.next().ok_or("usage: write_snapshot PATH SPEC...")?);
    let t = now();
    let mut d = SnapshotData {
        generated_at: t,
        ..Default::default()
    };
    let mut opts = BuildOptions::default();
    for spec in args {
        let (kind, rest) = spec.split_once('=').ok_or(format!("bad spec {spec:?}"))?;
        let f: Vec<&str> = rest.split(':').collect();
        let num = |i: usize, what: &str| -> Result<u64, String> {
            f.get(i)
                .ok_or(format!("{spec}: missing {what}"))?
                .parse::<u64>()
                .map_err(|e| format!("{spec}: {what}: {e}"))
        };
        let secs = |i: usize| -> Result<i64, String> {
            Ok(if f.len() > i {
                num(i, "secs")? as i64
            } else {
                3600
            })
        };
        match kind {
            "user" => add_user(&mut d, f[0], num(1, "uid")? as u32, t - 60, t + secs(2)?),
            "expired" => add_user(&mut d, f[0], num(1, "uid")? as u32, t - 3600, t - 10),
            "group" => {
                let gid = num(1, "gid")? as u32;
                let kind = if gid < 70_000 {
                    GROUP_KIND_LOCAL
                } else {
                    GROUP_KIND_JIT
                };
                let m = *f.get(2).ok_or(format!("{spec}: missing member"))?;
                let na = t + secs(3)?;
                group_mut(&mut d, f[0], gid, kind)
                    .members
                    .push(member(m, gid, t - 60, na));
            }
            "long" => {
                add_user(&mut d, f[0], num(1, "uid")? as u32, t - 60, t + 3600);
                if let Some(a) = d.accounts.last_mut() {
                    a.gecos = "g".repeat(num(2, "len")? as usize).into();
                }
            }
            "many" => {
                for i in 0..num(0, "count")? as u32 {
                    add_user(&mut d, &format!("fill{i:05}"), 71_000 + i, t - 60, t + 3600);
                }
            }
            "index" => opts.index = num(0, "flag")? != 0,
            _ => return Err(format!("unknown spec {spec:?}")),
        }
    }
    let bytes = build_snapshot_with(&d, &opts).map_err(|e| e.to_string())?;
    let dir = path.parent().ok_or("path has no directory")?;
    let tmp = dir.join(format!(".snapshot.{}.tmp", std::process::id()));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(&tmp)
        .map_err(|e| format!("{}: {e}", tmp.display()))?;
    f.write_all(&bytes).map_err(|e| e.to_string())?;
    f.set_permissions(std::fs::Permissions::from_mode(0o644))
        .map_err(|e| e.to_string())?;
    f.sync_all().map_err(|e| e.to_string())?;
    std::fs::rename(&tmp, &path).map_err(|e| e.to_string())?;
    println!(
        "wrote {} ({} bytes, {} accounts, {} groups)",
        path.display(),
        bytes.len(),
        d.accounts.len(),
        d.groups.len()
    );
    Ok(())
}

fn main() {
    if let Err(e) = run() {
        eprintln!("write_snapshot: {e}");
        std::process::exit(2);
    }
}
