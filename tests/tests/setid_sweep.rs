//! Privilege must not outlive a grant through files: a set-uid copy of a binary an ephemeral
//! account left in /tmp and /dev/shm, and a set-gid file a group grantee left for the granted
//! group, and one a managed admin left while a grant enabled it, lose their set-id bits at
//! teardown and are audited by path at `warning`. A local user's own set-uid file is left
//! alone. Real `su`, `cp`, `chmod`, `chgrp` in the sandbox.
//!
//! /tmp and /dev/shm are the host's (the sandbox does not replace them); every file this test
//! makes there has a name unique to the sandbox and is owned by ids only this sandbox uses,
//! and it is removed at the end.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use jit_tests::pam::{add_admin, set_managed_accounts, ADMIN};
use jit_tests::{code, poll, show, stdout, Sandbox};

/// Removes the files on drop, so a failed assertion leaves nothing set-uid in the host's /tmp.
struct Cleanup(Vec<PathBuf>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = std::fs::remove_file(p);
        }
    }
}

fn mode(p: &PathBuf) -> u32 {
    std::fs::symlink_metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .mode()
        & 0o7777
}

fn stripped_paths(sb: &Sandbox, grant: &str) -> Vec<String> {
    sb.audit()
        .iter()
        .filter(|e| {
            e.get("event").and_then(Value::as_str) == Some("file.setid_stripped")
                && e.get("grant").and_then(Value::as_str) == Some(grant)
                && e.get("severity").and_then(Value::as_str) == Some("warning")
        })
        .filter_map(|e| e.get("path").and_then(Value::as_str).map(str::to_string))
        .collect()
}

#[test]
fn setid_files_left_by_grantees_lose_their_bits_at_expiry() {
    let sb = Sandbox::new();
    let tag = sb
        .root()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let gid = sb.ids.base + 971;
    sb.sh_ok(&format!("groupadd -g {gid} sweepgrp"));
    let suid_tmp = PathBuf::from(format!("/tmp/{tag}-suid"));
    let suid_shm = PathBuf::from(format!("/dev/shm/{tag}-suid"));
    let sgid_tmp = PathBuf::from(format!("/tmp/{tag}-sgid"));
    let carols = PathBuf::from(format!("/tmp/{tag}-carol"));
    let admins = PathBuf::from(format!("/var/tmp/{tag}-admin"));
    let _cleanup = Cleanup(vec![
        suid_tmp.clone(),
        suid_shm.clone(),
        sgid_tmp.clone(),
        carols.clone(),
    ]);
    add_admin(&sb);
    set_managed_accounts(&sb, &[ADMIN]);
    sb.start_jitd();
    let acct = sb.grant(&["alice", "--account", "--for", "8s"]);
    let group = sb.grant(&["dave", "--group", "sweepgrp", "--for", "8s"]);
    let enable = sb.grant(&[ADMIN, "--enable", "--for", "8s"]);
    poll("alice visible", Duration::from_secs(5), || {
        (code(&sb.run(&["getent", "passwd", "alice"])) == 0).then_some(())
    });
    let o = sb.run(&[
        "su",
        "alice",
        "-c",
        &format!(
            "cp /bin/true {a} && chmod 4755 {a} && cp /bin/true {b} && chmod 4755 {b}",
            a = suid_tmp.display(),
            b = suid_shm.display()
        ),
    ]);
    assert_eq!(code(&o), 0, "alice leaves set-uid copies: {}", show(&o));
    let o = sb.run(&[
        "su",
        "dave",
        "-c",
        &format!(
            "cp /bin/cat {f} && chgrp sweepgrp {f} && chmod 2755 {f}",
            f = sgid_tmp.display()
        ),
    ]);
    assert_eq!(
        code(&o),
        0,
        "dave leaves a set-gid file for sweepgrp: {}",
        show(&o)
    );
    let o = sb.run(&[
        "su",
        "carol",
        "-c",
        &format!("cp /bin/true {f} && chmod 4755 {f}", f = carols.display()),
    ]);
    assert_eq!(code(&o), 0, "carol's own set-uid file: {}", show(&o));
    // The managed admin, enabled for a while, leaves one in /var/tmp (the sandbox's own).
    let o = sb.run(&[
        "su",
        ADMIN,
        "-c",
        &format!("cp /bin/true {f} && chmod 4755 {f}", f = admins.display()),
    ]);
    assert_eq!(
        code(&o),
        0,
        "the enabled admin's set-uid file: {}",
        show(&o)
    );
    let admin_mode = || {
        let o = sb.run(&["stat", "-c", "%a", &admins.display().to_string()]);
        stdout(&o).trim().to_string()
    };
    assert_eq!(admin_mode(), "4755");
    assert_eq!(mode(&suid_tmp), 0o4755);
    assert_eq!(mode(&suid_shm), 0o4755);
    assert_eq!(mode(&sgid_tmp), 0o2755);
    assert_eq!(std::fs::metadata(&sgid_tmp).unwrap().gid(), gid);

    sb.wait_audit(&acct, "grant.teardown", Duration::from_secs(30));
    sb.wait_audit(&group, "grant.teardown", Duration::from_secs(30));
    sb.wait_audit(&enable, "grant.teardown", Duration::from_secs(30));
    assert_eq!(
        admin_mode(),
        "755",
        "the managed admin's set-uid file survived its grant"
    );
    assert_eq!(
        stripped_paths(&sb, &enable),
        [admins.display().to_string()],
        "audit of the admin's file"
    );
    let after = [
        (&suid_tmp, mode(&suid_tmp)),
        (&suid_shm, mode(&suid_shm)),
        (&sgid_tmp, mode(&sgid_tmp)),
    ];
    assert!(
        after.iter().all(|(_, m)| *m == 0o755),
        "set-id bits survived the grants: {after:?}\n{}",
        sb.jitd_log()
    );
    assert_eq!(
        mode(&carols),
        0o4755,
        "a local user's own set-uid file was touched"
    );
    let mut a = stripped_paths(&sb, &acct);
    a.sort();
    let mut want = vec![
        suid_shm.display().to_string(),
        suid_tmp.display().to_string(),
    ];
    want.sort();
    assert_eq!(a, want, "audit of the account's files");
    assert_eq!(
        stripped_paths(&sb, &group),
        [sgid_tmp.display().to_string()],
        "audit of the group grantee's file"
    );
}
