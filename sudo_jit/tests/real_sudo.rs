//! Real sudo 1.9.13 with `sudo_jit.so` loaded, inside a private mount namespace: /etc is an
//! overlay (test users, sudoers, sudo.conf naming the freshly built plugin), /run a tmpfs
//! holding the test snapshot. The host's /etc and /run are never touched.
//!
//! Needs root, `unshare`, `setpriv`, `useradd` and a setuid sudo; skipped (with a message)
//! otherwise. The test user `sjalice` (uid 70001, local) gets its sudo right from a sudoers rule
//! on gid 79001 (`%#79001`), the gid of `jit-sudo` in the snapshot, which is absent from
//! /etc/group as on a real host (jit-sudo comes from NSS). `sjbob` is a local sudoer (`%sudo`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use jit_core::snapshot::build_snapshot;
use jit_core::types::{GateGrant, GroupEntry, Member, SnapshotData, GROUP_KIND_JIT};
use std::path::PathBuf;
use std::process::Command;

const ALICE_UID: u32 = 70_001;
const JIT_SUDO_GID: u32 = 79_001;

fn plugin_path() -> Option<PathBuf> {
    // target/<profile>/deps/real_sudo-xxxx: the cdylib sits beside it in deps/ (cargo test
    // does not always copy it up to target/<profile>/).
    let exe = std::env::current_exe().ok()?;
    let deps = exe.parent()?;
    [
        deps.join("libsudo_jit.so"),
        deps.parent()?.join("libsudo_jit.so"),
    ]
    .into_iter()
    .find(|p| p.exists())
}

fn usable() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let tools = [
        "/usr/bin/unshare",
        "/usr/bin/setpriv",
        "/usr/sbin/useradd",
        "/usr/bin/sudo",
    ]
    .iter()
    .all(|p| std::path::Path::new(p).exists());
    // A real-client test that silently skips proves nothing: fail instead (scripts/test runs
    // as root and installs sudo).
    assert!(
        root && tools && plugin_path().is_some(),
        "real_sudo needs root, unshare, setpriv, useradd, sudo and the built libsudo_jit.so"
    );
    true
}

fn snapshot(not_after_offset: i64, sudo: &[&str]) -> Vec<u8> {
    snapshot_with(not_after_offset, sudo, |_| {})
}

fn snapshot_with(
    not_after_offset: i64,
    sudo: &[&str],
    edit: impl FnOnce(&mut SnapshotData),
) -> Vec<u8> {
    let now = jit_core::time::now();
    let sd = SnapshotData {
        generated_at: now,
        accounts: vec![],
        groups: vec![GroupEntry {
            name: "jit-sudo".into(),
            gid: JIT_SUDO_GID,
            kind: GROUP_KIND_JIT,
            not_before: i64::MIN,
            not_after: i64::MAX,
            members: vec![Member {
                name: "sjalice".into(),
                grant_id: "g-live".into(),
                not_before: now - 100,
                not_after: now + not_after_offset,
            }],
        }],
        grants: vec![GateGrant {
            id: "g-live".into(),
            user: "sjalice".into(),
            uid: 0,
            not_before: now - 100,
            not_after: now + not_after_offset,
            sudo: sudo.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }],
        managed: vec![],
    };
    let mut sd = sd;
    edit(&mut sd);
    build_snapshot(&sd).unwrap()
}

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs `sudo_cmd` (shell words, run by `sh`) in a fresh namespace. `who`: "alice", "bob" or
/// "root".
fn run(snap: Option<&[u8]>, plugin_opts: &str, who: &str, sudo_cmd: &str) -> Out {
    let dir = std::env::temp_dir().join(format!(
        "sudo_jit_rt_{}_{}",
        std::process::id(),
        rand_suffix()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let snap_file = dir.join("snapshot");
    if let Some(s) = snap {
        std::fs::write(&snap_file, s).unwrap();
    }
    let so = plugin_path().unwrap();
    let as_user = match who {
        "alice" => {
            format!("setpriv --reuid={ALICE_UID} --regid=100 --groups=100,{JIT_SUDO_GID} --")
        }
        "bob" => "setpriv --reuid=sjbob --regid=100 --init-groups --".to_string(),
        _ => String::new(),
    };
    let script = format!(
        r#"set -e
D={dir}
mkdir -p $D/u $D/w
mount -t overlay overlay -o lowerdir=/etc,upperdir=$D/u,workdir=$D/w /etc
mount -t tmpfs tmpfs /run
mkdir -p /run/jitd
if [ -f $D/snapshot ]; then install -o root -g root -m 0644 $D/snapshot /run/jitd/snapshot; fi
useradd -M -N -g 100 -u {ALICE_UID} sjalice 2>/dev/null
useradd -M -N -g 100 -G sudo -u 1500 sjbob 2>/dev/null
printf 'Plugin sudo_jit %s %s\n' '{so}' '{plugin_opts}' > /etc/sudo.conf
printf '%%#{JIT_SUDO_GID} ALL=(ALL:ALL) NOPASSWD: ALL\n%%sudo ALL=(ALL:ALL) NOPASSWD: ALL\n' > /etc/sudoers.d/zz-sudo-jit-test
chmod 0440 /etc/sudoers.d/zz-sudo-jit-test
set +e
cd /
{as_user} {sudo_cmd}
"#,
        dir = dir.display(),
        so = so.display(),
    );
    let out = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", &script])
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::SeqCst)
}

#[track_caller]
fn refused(o: &Out, needle: &str) {
    assert_ne!(o.code, 0, "stdout {:?} stderr {:?}", o.stdout, o.stderr);
    assert!(
        o.stderr
            .lines()
            .any(|l| l.starts_with("jit: ") && l.contains(needle)),
        "stderr {:?} lacks {needle:?}",
        o.stderr
    );
}

#[track_caller]
fn approved(o: &Out) {
    assert_eq!(o.code, 0, "stdout {:?} stderr {:?}", o.stdout, o.stderr);
}

#[test]
fn live_grant_scope() {
    if !usable() {
        return;
    }
    let snap = snapshot(3600, &["/usr/bin/id"]);
    let o = run(Some(&snap), "", "alice", "sudo -n /usr/bin/id -u");
    approved(&o);
    assert_eq!(o.stdout.trim(), "0");
    let o = run(Some(&snap), "", "alice", "sudo -n /usr/bin/whoami");
    refused(&o, "/usr/bin/whoami is outside grant g-live");
    assert_eq!(
        o.stderr.lines().filter(|l| l.starts_with("jit:")).count(),
        1
    );
    refused(
        &run(Some(&snap), "", "alice", "sudo -n -s /usr/bin/id"),
        "g-live",
    );
    refused(
        &run(Some(&snap), "", "alice", "sudo -n -u sjbob /usr/bin/id"),
        "running as sjbob is outside grant g-live",
    );
    // sudo 1.9.13 itself refuses `#-1` before the plugin is asked; either way nothing runs.
    let o = run(Some(&snap), "", "alice", "sudo -n -u '#-1' /usr/bin/id -u");
    assert!(o.code != 0 && o.stdout.is_empty(), "{:?}", o.stderr);
    // Bare `id` resolved through PATH: the resolved command is judged.
    approved(&run(
        Some(&snap),
        "timeout=1 debug",
        "alice",
        "sudo -n id -u",
    ));
    // 10 000 arguments to a command outside the scope: refused, no crash, one line.
    let o = run(
        Some(&snap),
        "",
        "alice",
        "sudo -n /usr/bin/true $(seq 1 10000)",
    );
    refused(&o, "/usr/bin/true is outside grant g-live");
    // -i and sudoedit need an ALL grant.
    refused(
        &run(Some(&snap), "", "alice", "sudo -n -i /usr/bin/id"),
        "(grant g-live)",
    );
    refused(
        &run(Some(&snap), "", "alice", "sudoedit -n /etc/hostname"),
        "sudoedit needs an ALL grant (grant g-live)",
    );
    // -R and -h: refused by sudo or by the plugin; nothing runs.
    for c in [
        "sudo -n -R / /usr/bin/id -u",
        "sudo -n -h otherhost /usr/bin/id -u",
    ] {
        let o = run(Some(&snap), "", "alice", c);
        assert!(o.code != 0 && o.stdout.is_empty(), "{c}: {:?}", o.stderr);
    }
    // The user's environment is not read (X13).
    let o = run(
        Some(&snap),
        "",
        "alice",
        "env JIT_BYPASS=1 JIT_SNAPSHOT=/nonexistent sudo -n /usr/bin/whoami",
    );
    refused(&o, "outside grant g-live");
    // Root and a local sudoer are unaffected.
    approved(&run(Some(&snap), "", "root", "sudo -n /usr/bin/whoami"));
    approved(&run(Some(&snap), "", "bob", "sudo -n /usr/bin/whoami"));
}

#[test]
fn expired_grant_with_kept_group() {
    if !usable() {
        return;
    }
    let snap = snapshot(-10, &["ALL"]);
    refused(
        &run(Some(&snap), "", "alice", "sudo -n /usr/bin/id"),
        "grant g-live has expired",
    );
}

#[test]
fn no_snapshot() {
    if !usable() {
        return;
    }
    refused(
        &run(None, "", "alice", "sudo -n /usr/bin/id"),
        "no trusted grant snapshot",
    );
    approved(&run(None, "", "root", "sudo -n true"));
    approved(&run(None, "", "bob", "sudo -n true"));
}

#[test]
fn bad_plugin_option() {
    if !usable() {
        return;
    }
    let snap = snapshot(3600, &["ALL"]);
    approved(&run(Some(&snap), "", "alice", "sudo -n /usr/bin/id"));
    refused(
        &run(Some(&snap), "bogus=1", "alice", "sudo -n /usr/bin/id"),
        "unknown plugin option",
    );
    refused(
        &run(Some(&snap), "timeout=0", "alice", "sudo -n /usr/bin/id"),
        "bad plugin option",
    );
    approved(&run(Some(&snap), "bogus=1", "root", "sudo -n true"));
    approved(&run(Some(&snap), "bogus=1", "bob", "sudo -n true"));
}

#[test]
fn revoke_on_class_and_managed_admin() {
    if !usable() {
        return;
    }
    let snap = snapshot_with(3600, &["ALL"], |sd| {
        sd.grants[0].revoke_on = jit_core::policy::classify::CLASS_ACCOUNT_CHANGE;
    });
    approved(&run(Some(&snap), "", "alice", "sudo -n /usr/bin/id"));
    refused(
        &run(
            Some(&snap),
            "",
            "alice",
            "sudo -n /usr/sbin/useradd -M sjeve",
        ),
        "ends grant g-live",
    );
    // sjbob managed: no --enable grant → refused even though sudoers (%sudo) allows.
    let snap = snapshot_with(3600, &["ALL"], |sd| sd.managed = vec!["sjbob".into()]);
    refused(&run(Some(&snap), "", "bob", "sudo -n true"), "--enable");
    let snap = snapshot_with(3600, &["ALL"], |sd| {
        sd.managed = vec!["sjbob".into()];
        sd.grants.push(GateGrant {
            id: "g-enable".into(),
            user: "sjbob".into(),
            not_before: sd.generated_at - 10,
            not_after: sd.generated_at + 3600,
            flags: jit_core::types::GATE_ENABLE,
            ..Default::default()
        });
    });
    approved(&run(Some(&snap), "", "bob", "sudo -n true"));
}
