//! kill -9 at every step of a durable state write (docs/threat-model.md: F10, C1-C3), with failpoints
//! compiled in only by the `failpoints` feature:
//! `cargo test -p jitd --features failpoints --test crash` (scripts/test runs it).
//! After each crash jitd restarts; the state is the old one or the new one, never a partial
//! file, temp files are gone, and the grant is present exactly when the rename had happened.
//! Also checks the syscall order of a write with strace.

#![cfg(feature = "failpoints")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure is the assertion

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn setup(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("jitd-crash-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("home")).unwrap();
    std::fs::write(dir.join("passwd"), "root:x:0:0::/root:/bin/bash\n").unwrap();
    std::fs::write(dir.join("group"), "root:x:0:\n").unwrap();
    let d = dir.display();
    std::fs::write(
        dir.join("jitd.toml"),
        format!("uid_range = \"4300000-4300099\"\nnscd = \"off\"\nhome_root = \"{d}/home\"\nstate_dir = \"{d}/state\"\nsnapshot_path = \"{d}/run/snapshot\"\nsocket_path = \"{d}/run/jitd.sock\"\naudit_log = \"{d}/log/audit.jsonl\"\npasswd_file = \"{d}/passwd\"\ngroup_file = \"{d}/group\"\ncgroup_dir = \"off\"\ncertify_suid_roots = [\"{d}\"]\n"),
    )
    .unwrap();
    dir
}

fn jitctl(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_jitctl"))
        .arg("--socket")
        .arg(dir.join("run/jitd.sock"))
        .args(args)
        .output()
        .unwrap()
}

/// A jitd started by a test: killed and reaped when dropped, so a failing assertion does not
/// leave it running (holding its socket, and a `snapshot:hold` failpoint waiting forever).
struct Running(Child);

impl std::ops::Deref for Running {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Running {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // Already killed and reaped by the test on success: both then fail harmlessly.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(dir: &Path, failpoint: Option<&str>, wrapper: &[&str]) -> Running {
    let mut cmd = if wrapper.is_empty() {
        Command::new(env!("CARGO_BIN_EXE_jitd"))
    } else {
        let mut c = Command::new(wrapper[0]);
        c.args(&wrapper[1..]).arg(env!("CARGO_BIN_EXE_jitd"));
        c
    };
    cmd.arg("--config")
        .arg(dir.join("jitd.toml"))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    match failpoint {
        Some(f) => cmd.env("JITD_FAILPOINT", f),
        None => cmd.env_remove("JITD_FAILPOINT"),
    };
    let mut child = cmd.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if jitctl(dir, &["status"]).status.success() {
            return Running(child);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("jitd did not start");
}

/// Starts jitd with `failpoint` and expects it to be killed by it before it answers (the
/// first save after a start writes state.json whole and starts a new state journal).
fn start_dies(dir: &Path, failpoint: &str) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_jitd"))
        .arg("--config")
        .arg(dir.join("jitd.toml"))
        .env("JITD_FAILPOINT", failpoint)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Some(st) = child.try_wait().unwrap() {
            assert_eq!(
                std::os::unix::process::ExitStatusExt::signal(&st),
                Some(libc::SIGKILL),
                "{failpoint}"
            );
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("{failpoint}: jitd did not reach the failpoint");
}

/// A jitd that added `alice` (an append to the state journal, after the whole write at start)
/// and was then killed: alice is in the journal, not in state.json.
fn alice_in_journal_only(dir: &Path) {
    let mut j = start(dir, None, &[]);
    let add = jitctl(dir, &["grant", "add", "alice", "--for", "1h", "--account"]);
    assert!(add.status.success(), "{add:?}");
    j.kill().unwrap();
    j.wait().unwrap();
    let whole = std::fs::read_to_string(dir.join("state/state.json")).unwrap();
    assert!(!whole.contains("\"alice\""), "{whole}");
}

fn users(dir: &Path) -> Vec<String> {
    let out = jitctl(dir, &["--json", "grant", "list", "--all"]);
    assert!(out.status.success(), "{out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut u: Vec<String> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["user"].as_str().unwrap().to_string())
        .collect();
    u.sort();
    u
}

/// kill -9 at every step of writing state.json whole (the first save after a start, which
/// folds the state journal in): state.json is the old file or the new one, never partial, no
/// temp file is left, and after a restart the grant only the journal held is there either way.
#[test]
fn kill_at_every_write_step_leaves_old_or_new_state() {
    for (step, new_in_place) in [
        ("after-write", false),
        ("after-fsync", false),
        ("after-rename", true),
        ("after-dir-fsync", true),
    ] {
        let dir = setup(step);
        alice_in_journal_only(&dir);
        start_dies(&dir, &format!("state.json:{step}"));
        let whole = std::fs::read_to_string(dir.join("state/state.json")).unwrap();
        assert_eq!(whole.contains("\"alice\""), new_in_place, "{step}: {whole}");

        let mut j = start(&dir, None, &[]);
        assert_eq!(users(&dir), ["alice"], "{step}");
        let leftovers: Vec<_> = std::fs::read_dir(dir.join("state"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(".tmp."))
            .collect();
        assert!(
            leftovers.is_empty(),
            "{step}: temp files left: {leftovers:?}"
        );
        // The snapshot agrees with the recovered state.
        let snap = std::fs::read(dir.join("run/snapshot")).unwrap();
        let s = jit_core::snapshot::Snapshot::parse(&snap).unwrap();
        let now = jit_core::time::now();
        assert!(s.account_by_name("alice", now).is_some(), "{step}");
        j.kill().unwrap();
        j.wait().unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// A revocation that state.json cannot take goes to the revocation journal; kill -9 at each
/// step of that write: jitd starts again, and the grant is revoked exactly when the journal
/// write had happened (a process crash leaves written pages in the page cache), never half.
#[test]
fn kill_while_journaling_a_revocation() {
    for (step, revoked) in [
        ("before-write", false),
        ("after-write", true),
        ("after-sync", true),
    ] {
        let dir = setup(&format!("journal-{step}"));
        alice_in_journal_only(&dir);
        // The start writes state.json whole; the revocation's append to the state journal is
        // then made to fail, and state.json is blocked below.
        let mut j = start(
            &dir,
            Some(&format!("revocations:{step},state.journal:fail-append")),
            &[],
        );
        let list = jitctl(&dir, &["--json", "grant", "list"]);
        let list: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
        let id = list[0]["id"].as_str().unwrap().to_string();
        // state.json cannot be written by this jitd: a directory where its temp file goes.
        let blocker = dir.join(format!("state/.state.json.tmp.{}", j.id()));
        std::fs::create_dir(&blocker).unwrap();
        let revoke = jitctl(&dir, &["grant", "revoke", &id]);
        assert!(
            !revoke.status.success(),
            "{step}: killed before answering: {revoke:?}"
        );
        let st = j.wait().unwrap();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&st),
            Some(libc::SIGKILL),
            "{step}"
        );
        std::fs::remove_dir(&blocker).unwrap();

        let mut j = start(&dir, None, &[]);
        let show = jitctl(&dir, &["--json", "grant", "show", &id]);
        let g: serde_json::Value = serde_json::from_slice(&show.stdout).unwrap();
        assert_eq!(
            g["state"] == "revoked",
            revoked,
            "{step}: grant after restart: {g}"
        );
        // State was writable at this start: the end is in state.json, the journal is cleared.
        let journal = std::fs::read(dir.join("state/revocations")).unwrap();
        assert!(
            journal.iter().all(|&b| b == 0),
            "{step}: journal not cleared"
        );
        j.kill().unwrap();
        j.wait().unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// kill -9 at each step of appending a grant to the state journal (`state.journal:<step>`):
/// jitd starts again with the grant there exactly when its whole record had been written (a
/// half-written record is dropped and audited, never half-applied), later grants are kept, and
/// a third start still loads (the torn file, now `state.journal.prev`, is read the same way).
#[test]
fn kill_while_appending_to_the_state_journal() {
    for (step, visible) in [
        ("torn", false),
        ("after-append", true),
        ("after-sync", true),
        ("after-rotate", true),
    ] {
        let dir = setup(&format!("sj-{step}"));
        if step == "after-rotate" {
            // The whole write at start, then killed between moving the old journal aside and
            // making the new one.
            alice_in_journal_only(&dir);
            start_dies(&dir, "state.journal:after-rotate");
        } else {
            let mut j = start(&dir, Some(&format!("state.journal:{step}")), &[]);
            let add = jitctl(&dir, &["grant", "add", "alice", "--for", "1h", "--account"]);
            assert!(!add.status.success(), "{step}: not acknowledged: {add:?}");
            let st = j.wait().unwrap();
            assert_eq!(
                std::os::unix::process::ExitStatusExt::signal(&st),
                Some(libc::SIGKILL),
                "{step}"
            );
        }
        let mut j = start(&dir, None, &[]);
        let expect: Vec<&str> = if visible { vec!["alice"] } else { vec![] };
        assert_eq!(users(&dir), expect, "{step}");
        let audit = std::fs::read_to_string(dir.join("log/audit.jsonl")).unwrap();
        assert_eq!(
            audit.contains("state.journal_torn_dropped"),
            step == "torn",
            "{step}: {audit}"
        );
        for who in ["carol", "dave"] {
            let add = jitctl(&dir, &["grant", "add", who, "--for", "1h", "--account"]);
            assert!(add.status.success(), "{step}: {add:?}");
        }
        j.kill().unwrap();
        j.wait().unwrap();
        let mut j = start(&dir, None, &[]);
        let mut expect = expect;
        expect.extend(["carol", "dave"]);
        assert_eq!(users(&dir), expect, "{step}: third start");
        j.kill().unwrap();
        j.wait().unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// Building and writing the snapshot does not hold the state lock: while a grant add is
/// stopped in the middle of writing it (failpoint `snapshot:hold`), jitd still answers
/// `status` and `grant list` (the grant is already durable and listed), and the add returns
/// only once the snapshot holding the account is in place. With the build under the state
/// lock, as before, `status` waited for it.
#[test]
fn a_snapshot_being_written_does_not_stall_other_requests() {
    let dir = setup("hold");
    let mut j = start(&dir, Some("snapshot:hold"), &[]);
    let hold = dir.join("run/snapshot.hold");
    let held = dir.join("run/snapshot.held");
    std::fs::write(&hold, b"").unwrap();
    let d2 = dir.clone();
    let add = std::thread::spawn(move || {
        jitctl(&d2, &["grant", "add", "bob", "--for", "1h", "--account"])
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while !held.exists() {
        assert!(
            Instant::now() < deadline,
            "the add never reached the snapshot write"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let st = jitctl(&dir, &["--json", "status"]);
    assert!(
        st.status.success(),
        "status while a snapshot is written: {st:?}"
    );
    assert_eq!(
        users(&dir),
        ["bob"],
        "durable and listed before the snapshot"
    );
    assert!(
        !add.is_finished(),
        "the add answered before its snapshot was written"
    );
    // What NSS reads: the snapshot with the delta of added grants over it (format 1.4).
    let nss_view = || {
        let base = std::fs::read(dir.join("run/snapshot")).unwrap();
        let delta = std::fs::read(dir.join("run/snapshot.delta")).ok();
        jit_core::snapshot::file::merged_image(&base, delta.as_deref()).unwrap()
    };
    let snap = nss_view();
    let s = jit_core::snapshot::Snapshot::parse(&snap).unwrap();
    assert!(s.account_by_name("bob", jit_core::time::now()).is_none());
    std::fs::remove_file(&hold).unwrap();
    let out = add.join().unwrap();
    assert!(out.status.success(), "{out:?}");
    let snap = nss_view();
    let s = jit_core::snapshot::Snapshot::parse(&snap).unwrap();
    assert!(s.account_by_name("bob", jit_core::time::now()).is_some());
    j.kill().unwrap();
    j.wait().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn durable_write_syscall_order() {
    if Command::new("strace").arg("-V").output().is_err() {
        panic!("strace is required (scripts/test installs it)");
    }
    let dir = setup("strace");
    // A first grant; then jitd restarts under strace, and its first save (a whole write at
    // start, which must keep the replaced file as the previous generation) is traced, then
    // the adds' appends to the state journal.
    let mut j = start(&dir, None, &[]);
    assert!(
        jitctl(&dir, &["grant", "add", "bob", "--for", "1h", "--account"])
            .status
            .success()
    );
    j.kill().unwrap();
    j.wait().unwrap();
    let log = dir.join("strace.log");
    let log_s = log.display().to_string();
    let mut j = start(
        &dir,
        None,
        &[
            "strace",
            "-f",
            "-qq",
            "-y",
            "-s",
            "4096",
            "-o",
            &log_s,
            "-e",
            "trace=openat,fsync,fdatasync,rename,renameat,renameat2,link,linkat,write",
        ],
    );
    for who in ["alice", "carol"] {
        assert!(
            jitctl(&dir, &["grant", "add", who, "--for", "1h", "--account"])
                .status
                .success()
        );
    }
    // Stop jitd itself: killing strace would leave the traced daemon running.
    let status = jitctl(&dir, &["--json", "status"]);
    let pid = serde_json::from_slice::<serde_json::Value>(&status.stdout).unwrap()["pid"]
        .as_i64()
        .unwrap();
    // SAFETY: signalling the jitd this test started.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    j.wait().unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let pos = |pred: &dyn Fn(&str) -> bool, from: usize| {
        lines
            .iter()
            .skip(from)
            .position(|l| pred(l))
            .map(|p| p + from)
    };
    let open_tmp = pos(
        &|l: &str| l.contains("openat(") && l.contains(".state.json.tmp.") && l.contains("O_EXCL"),
        0,
    )
    .expect("temp opened with O_EXCL");
    let fsync_file = pos(&|l: &str| l.contains("fsync("), open_tmp).expect("file fsync");
    let link_prev = pos(
        &|l: &str| l.contains("link") && l.contains("state.json.prev"),
        fsync_file,
    )
    .expect("previous generation kept");
    let rename = pos(
        &|l: &str| {
            l.contains("rename") && l.contains(".state.json.tmp.") && l.contains("state.json\"")
        },
        link_prev,
    )
    .expect("rename into place");
    let fsync_dir =
        pos(&|l: &str| l.contains("fsync("), rename).expect("directory fsync after rename");
    assert!(
        open_tmp < fsync_file && fsync_file < link_prev && link_prev < rename && rename < fsync_dir,
        "{text}"
    );
    println!("durable write order: open(O_EXCL) {open_tmp} < fsync {fsync_file} < link .prev {link_prev} < rename {rename} < fsync(dir) {fsync_dir}");
    // The next add: one record appended to the state journal, then fdatasync of that file;
    // state.json is not written again.
    let append = pos(
        &|l: &str| l.contains("write(") && l.contains("state.journal>") && l.contains("carol"),
        fsync_dir,
    )
    .expect("record appended to the state journal");
    let sync = pos(
        &|l: &str| l.contains("fdatasync(") && l.contains("state.journal>"),
        append,
    )
    .expect("state journal fdatasync after the append");
    assert!(
        pos(&|l: &str| l.contains(".state.json.tmp."), fsync_dir).is_none_or(|p| p > sync),
        "state.json rewritten for a small change:\n{text}"
    );
    println!("state journal: write {append} < fdatasync {sync}");
    // A clean stop folds the journal into state.json (an older jitd, or the next start, reads
    // everything from one file).
    let whole = std::fs::read_to_string(dir.join("state/state.json")).unwrap();
    assert!(whole.contains("\"carol\""), "{whole}");
    assert_eq!(
        std::fs::read(dir.join("state/state.journal")).unwrap(),
        b"jitd-state-journal 1\n"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A delta that cannot be written (failpoint `snapshot:fail-delta`: the write refused, as for
/// a delta too large for readers) never leaves an add acknowledged and unseen: jitd writes the
/// whole files before it answers, and audits why.
#[test]
fn an_add_whose_delta_fails_is_in_the_whole_files_when_it_returns() {
    let dir = setup("faildelta");
    let mut j = start(&dir, Some("snapshot:fail-delta"), &[]);
    let out = jitctl(&dir, &["grant", "add", "bob", "--for", "1h", "--account"]);
    assert!(out.status.success(), "{out:?}");
    assert!(
        !dir.join("run/snapshot.delta").exists(),
        "no delta was written"
    );
    let snap = std::fs::read(dir.join("run/snapshot")).unwrap();
    let s = jit_core::snapshot::Snapshot::parse(&snap).unwrap();
    assert!(s.account_by_name("bob", jit_core::time::now()).is_some());
    let gates = std::fs::read(dir.join("run/gates")).unwrap();
    let g = jit_core::snapshot::Snapshot::parse(&gates).unwrap();
    assert!(g.grants_for_user("bob").next().is_some());
    let audit = std::fs::read_to_string(dir.join("log/audit.jsonl")).unwrap();
    assert!(
        audit.contains("whole files written instead"),
        "the failure is audited: {audit}"
    );
    j.kill().unwrap();
    j.wait().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
