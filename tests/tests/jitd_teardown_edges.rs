//! Teardown edge cases with real processes: a home deeper than PATH_MAX (made by the grantee
//! with a mkdir/chdir loop) is removed, and a local user created later with a live jit uid
//! (`useradd -o -u`) keeps its processes when the jit grant ends (local always wins).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use serde_json::Value;

use jit_tests::procs;
use jit_tests::{code, poll, show, stdout, Sandbox, GETENT_NOT_FOUND};

fn visible(sb: &Sandbox, name: &str) -> bool {
    code(&sb.run(&["getent", "passwd", name])) == 0
}

fn uid_of(sb: &Sandbox, name: &str) -> u32 {
    let o = sb.run(&["id", "-u", name]);
    assert_eq!(code(&o), 0, "id -u {name}: {}", show(&o));
    stdout(&o).trim().parse().unwrap()
}

/// The grant's teardown audit record (complete or not).
fn teardown_record(sb: &Sandbox, id: &str) -> Value {
    poll(
        &format!("teardown of {id} audited"),
        Duration::from_secs(20),
        || {
            sb.audit().into_iter().find(|e| {
                e["grant"] == id
                    && matches!(
                        e["event"].as_str(),
                        Some("grant.teardown" | "grant.teardown_incomplete")
                    )
            })
        },
    )
}

#[test]
fn home_deeper_than_path_max_is_removed() {
    let sb = Sandbox::new();
    sb.start_jitd();
    let id = sb.grant(&["alice", "--account", "--for", "1h"]);
    poll("alice visible", Duration::from_secs(5), || {
        visible(&sb, "alice").then_some(())
    });
    poll("alice's home made", Duration::from_secs(5), || {
        sb.host_path("/home/alice").is_dir().then_some(())
    });
    // 400 levels of 24-byte names: about 10 000 bytes of path (PATH_MAX is 4096) and deeper
    // than any per-level recursion limit; made by the grantee, relative chdir at each level.
    let o = sb.run(&[
        "su",
        "alice",
        "-c",
        "cd && perl -e 'for my $i (1..400) { mkdir(q(n) x 24) or die $!; chdir(q(n) x 24) or die $!; \
         if ($i % 50 == 0) { open(my $f, q(>), q(f)) or die $! } }'",
    ]);
    assert_eq!(code(&o), 0, "building the deep tree as alice: {}", show(&o));
    let depth = sb.sh_ok("find /home/alice -type d | wc -l");
    assert!(
        depth.trim().parse::<u32>().unwrap() > 400,
        "precondition: deep tree: {depth}"
    );

    let t = jit_tests::now_f64();
    let o = sb.jitctl(&["grant", "revoke", &id]);
    println!(
        "deep home: revoke with the removal of a 400-level home took {:.3} s",
        jit_tests::now_f64() - t
    );
    assert_eq!(code(&o), 0, "{}", show(&o));
    let rec = teardown_record(&sb, &id);
    assert_eq!(
        rec["home"], "removed",
        "the deep home must be removed at teardown: {rec}"
    );
    assert!(
        !sb.host_path("/home/alice").exists(),
        "the deep home is still there: {rec}"
    );
    assert_eq!(rec["severity"], "info", "{rec}");
    sb.assert_local_unaffected();
}

#[test]
fn local_user_with_a_jit_uid_keeps_its_processes_at_teardown() {
    let sb = Sandbox::new();
    sb.start_jitd();
    let id = sb.grant(&["alice", "--account", "--for", "1h"]);
    poll("alice visible", Duration::from_secs(5), || {
        visible(&sb, "alice").then_some(())
    });
    let uid = uid_of(&sb, "alice");
    // An administrator creates a local user with alice's uid while her grant is live.
    let o = sb.run(&[
        "useradd",
        "-o",
        "-u",
        &uid.to_string(),
        "-N",
        "-g",
        "users",
        "-M",
        "-d",
        "/nonexistent",
        "-s",
        "/bin/sh",
        "bobby",
    ]);
    assert_eq!(code(&o), 0, "useradd -o: {}", show(&o));
    // Local always wins: jitd notices /etc/passwd changed and hides alice.
    poll(
        "alice hidden after the collision",
        Duration::from_secs(5),
        || (!visible(&sb, "alice")).then_some(()),
    );
    let o = sb.run(&["getent", "passwd", "bobby"]);
    assert_eq!(code(&o), 0, "{}", show(&o));
    // bobby, the local user, runs something.
    let o = sb.run(&[
        "su",
        "bobby",
        "-c",
        "setsid sleep 1919 </dev/null >/dev/null 2>&1 &",
    ]);
    assert_eq!(code(&o), 0, "su bobby: {}", show(&o));
    let pid = poll("bobby's sleep", Duration::from_secs(5), || {
        procs::live_where(|p| p.uid == uid && p.cmdline.contains("sleep 1919"))
            .first()
            .map(|p| p.pid)
    });

    let o = sb.jitctl(&["grant", "revoke", &id]);
    assert_eq!(code(&o), 0, "{}", show(&o));
    let rec = teardown_record(&sb, &id);
    // Give a wrong teardown the time it would need to kill (kill_grace 1s).
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        procs::is_alive(pid),
        "the jit teardown killed a local user's process (uid {uid}): {rec}"
    );
    assert_eq!(rec["severity"], "warning", "{rec}");
    assert!(
        rec["collision"].as_str().unwrap_or("").contains("bobby"),
        "the teardown record must name the collision: {rec}"
    );
    let o = sb.run(&["getent", "passwd", "alice"]);
    assert_eq!(code(&o), GETENT_NOT_FOUND, "{}", show(&o));
    procs::signal(pid, libc::SIGKILL);
    sb.assert_local_unaffected();
}

/// A filesystem mounted inside a jit home (by root, e.g. a bind mount for a task) is not the
/// grantee's: home removal stops there, audited at warning, and the mounted files survive.
#[test]
fn home_removal_does_not_cross_a_mount_point() {
    let sb = Sandbox::new();
    sb.start_jitd();
    let id = sb.grant(&["alice", "--account", "--for", "1h"]);
    poll("alice's home made", Duration::from_secs(5), || {
        sb.host_path("/home/alice").is_dir().then_some(())
    });
    sb.sh_ok(
        "mkdir /home/alice/mnt && mount -t tmpfs -o size=1m jit-inner /home/alice/mnt && \
         echo precious > /home/alice/mnt/keep",
    );
    let o = sb.jitctl(&["grant", "revoke", &id]);
    assert_eq!(code(&o), 0, "{}", show(&o));
    let rec = teardown_record(&sb, &id);
    assert_eq!(
        sb.sh_ok("cat /home/alice/mnt/keep").trim(),
        "precious",
        "home removal deleted files of a mounted filesystem: {rec}"
    );
    assert_eq!(rec["severity"], "warning", "{rec}");
    assert!(
        rec["home_error"].as_str().unwrap_or("").contains("mounted"),
        "{rec}"
    );
    sb.sh_ok("umount /home/alice/mnt");
}
