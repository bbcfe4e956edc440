//! jitd's change counter (docs/snapshot-format.md §11) with the real jitd, jitctl and glibc
//! callers: a long-lived process that answers from its copy without a system call still sees a
//! revocation at its next lookup; jitd sets the segment up as root's 0644 and removes it at a
//! clean stop; a segment an unprivileged user made under the key first is replaced; a process
//! under a seccomp filter never makes the System V calls.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use jit_core::snapshot::generation::key_for;
use jit_tests::{code, cprog, poll, show, stdout, Sandbox};

fn now_ns() -> i64 {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    i64::try_from(d.as_nanos()).unwrap()
}

/// The key and directory identity of the sandbox's /run/jitd (the same inode seen from here).
fn key_of(sb: &Sandbox) -> (i32, u64, u64) {
    let m = std::fs::metadata(sb.host_path("/run/jitd")).expect("stat /run/jitd");
    (key_for(m.dev(), m.ino()), m.dev(), m.ino())
}

/// `counter_probe stat KEY` in the sandbox's IPC namespace.
fn stat_segment(sb: &Sandbox, prog: &str, key: i32) -> String {
    let o = sb.run(&[prog, "stat", &key.to_string()]);
    assert_eq!(code(&o), 0, "{}", show(&o));
    stdout(&o).trim().to_string()
}

/// Field `name=` of a `counter_probe stat` line.
fn field(line: &str, name: &str) -> String {
    line.split_whitespace()
        .find_map(|f| f.strip_prefix(&format!("{name}=")))
        .unwrap_or_else(|| panic!("no {name}= in {line:?}"))
        .to_string()
}

#[test]
fn a_process_answering_from_its_copy_sees_a_revocation_at_its_next_lookup() {
    let sb = Sandbox::new();
    let prog = cprog::program("counter_probe");
    let prog = prog.to_str().unwrap();
    sb.start_jitd();
    let id = sb.grant(&["alice", "--account", "--for", "1h"]);
    let (key, _, _) = key_of(&sb);

    // Root's, not writable by others, open (even).
    let st = stat_segment(&sb, prog, key);
    assert_eq!(field(&st, "cuid"), "0", "{st}");
    assert_eq!(field(&st, "uid"), "0", "{st}");
    assert_eq!(field(&st, "mode"), "644", "{st}");
    let counter: u64 = field(&st, "counter").parse().unwrap();
    assert_eq!(counter % 2, 0, "open: {st}");
    let o = sb.jitctl(&["status"]);
    let want = format!("nss counter: on (System V shared memory key {key:#010x}, counter ");
    assert!(stdout(&o).contains(&want), "jitctl status: {}", show(&o));

    let stop = sb.scratch("stop-follow");
    let pid = sb.spawn(
        "follow",
        &[prog, "follow", "alice", stop.to_str().unwrap(), "60"],
    );
    poll(
        "the follower attached the counter",
        Duration::from_secs(20),
        || {
            let log = sb.log_of(pid);
            assert!(!log.contains("attached no"), "never attached: {log}");
            (log.contains("attached yes") && log.contains("present ")).then_some(())
        },
    );

    // A process under a seccomp filter that kills at any System V call (a strict service
    // without systemd's @ipc set) never attaches, and keeps answering through the file.
    let o = sb.run(&[prog, "follow", "alice", "/nonexistent-stop", "2", "seccomp"]);
    assert_eq!(code(&o), 0, "killed by its filter? {}", show(&o));
    assert!(
        stdout(&o).contains("attached no") && stdout(&o).contains("present "),
        "{}",
        show(&o)
    );

    let before = now_ns();
    let o = sb.jitctl(&["grant", "revoke", &id]);
    let after = now_ns();
    assert_eq!(code(&o), 0, "{}", show(&o));
    let line = poll(
        "the follower saw the revocation",
        Duration::from_secs(20),
        || {
            sb.log_of(pid)
                .lines()
                .find(|l| l.starts_with("absent "))
                .map(str::to_string)
        },
    );
    let t: Vec<i64> = line
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse().unwrap())
        .collect();
    // The last lookup that still found alice started before `revoke` returned: no lookup made
    // after the acknowledgement answered from the old copy.
    assert!(
        t[1] < after,
        "a lookup started {} ns after the revoke returned still found alice",
        t[1] - after
    );
    assert!(
        t[0] >= before,
        "alice vanished before the revoke was sent: {line}"
    );
    std::fs::write(&stop, b"").unwrap();
    assert!(sb.wait_exit(pid, Duration::from_secs(10)).is_some());
    let log = sb.log_of(pid);
    assert!(!log.contains("error"), "{log}");
    let after_revoke: u64 = field(&stat_segment(&sb, prog, key), "counter")
        .parse()
        .unwrap();
    assert!(after_revoke > counter, "the revocation was counted");

    // A clean stop removes the segment.
    sb.stop_jitd();
    assert_eq!(stat_segment(&sb, prog, key), "absent");
}

#[test]
fn a_segment_an_unprivileged_user_made_under_the_key_is_replaced_by_jitds() {
    let sb = Sandbox::new();
    let prog = cprog::program("counter_probe");
    let prog = prog.to_str().unwrap();
    // The directory first, so its key is known before jitd runs.
    let dir = sb.host_path("/run/jitd");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let (key, dev, ino) = key_of(&sb);
    let o = sb.run(&[
        "setpriv",
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        prog,
        "squat",
        &key.to_string(),
        &dev.to_string(),
        &ino.to_string(),
    ]);
    assert_eq!(
        code(&o),
        0,
        "nobody creates a segment under the key: {}",
        show(&o)
    );
    let st = stat_segment(&sb, prog, key);
    assert_eq!(field(&st, "cuid"), "65534", "{st}");

    sb.start_jitd();
    sb.grant(&["alice", "--account", "--for", "1h"]);
    let st = stat_segment(&sb, prog, key);
    assert_eq!(
        (field(&st, "cuid"), field(&st, "uid"), field(&st, "mode")),
        ("0".into(), "0".into(), "644".into()),
        "jitd replaced the squatter: {st}"
    );
    // And the module still answers (through the counter or the file).
    let o = sb.run(&["getent", "passwd", "alice"]);
    assert_eq!(code(&o), 0, "{}", show(&o));
}
