//! The TOTP store's tests: RFC 6238 vectors, replay, lockout per source, storage checks,
//! crash and full-disk behaviour.

use super::*;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Barrier};

/// Middle of a step, so ±k·30 s stays inside step t±k.
const T0: i64 = 1_700_000_015;

/// A record with every source counter in use, each key at its longest and every number at
/// its widest, still fits one in-place slot: otherwise a flood of sources would stop the
/// record being written and so stop codes being checked.
#[test]
fn fullest_record_fits_one_slot() {
    let mut sources = Sources::new();
    for i in 0..=strikes::MAX_SOURCES {
        let key = strikes::source_key(&format!("{i:04}\u{1b}{}", "\u{2028}".repeat(400)));
        let wide = Strikes {
            failures: u32::MAX,
            locked_until: i64::MIN,
            last: i64::MIN,
        };
        sources.insert(key, wide);
    }
    let rec = UserRecord {
        secret: "A".repeat(64),
        enrolled_at: i64::MIN,
        last_step: u64::MAX,
        failures: u32::MAX,
        locked_until: i64::MIN,
        sources,
    };
    let bytes = encode(&rec).unwrap();
    assert!(
        bytes.len() <= crate::durable::SLOT_MAX_RECORD,
        "{} bytes",
        bytes.len()
    );
}

/// A private, root-owned 0700 state directory, removed on drop.
struct TestDir(PathBuf);

impl TestDir {
    fn new(tag: &str) -> TestDir {
        let p = std::env::temp_dir().join(format!("jitd-totp-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o700)).unwrap();
        TestDir(p)
    }
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn open(d: &TestDir) -> TotpStore {
    TotpStore::open(d.path(), TotpConfig::default()).unwrap()
}

/// Our code for unix time `t`.
fn code(secret: &str, t: i64) -> String {
    let totp = build_totp(secret).unwrap();
    String::from_utf8(code_at_step(&totp, (t / STEP_SECS) as u64).to_vec()).unwrap()
}

/// oathtool's code for unix time `t` (secret on stdin, not argv).
fn oathtool(secret: &str, t: i64) -> String {
    use std::io::Write;
    let mut child = Command::new("oathtool")
        .args(["--totp", "-b", "-N", &format!("@{t}"), "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run oathtool ({e}): install oath-toolkit (apt-get install oathtool)")
        });
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{secret}\n").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "oathtool failed: {out:?}");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// Both implementations agree, then the code.
fn checked_code(secret: &str, t: i64) -> String {
    let ours = code(secret, t);
    assert_eq!(
        ours,
        oathtool(secret, t),
        "totp-rs and oathtool disagree at {t}"
    );
    ours
}

fn record(store: &TotpStore, user: &str) -> UserRecord {
    store.load(&store.user_path(user).unwrap()).unwrap()
}

fn wrong(secret: &str, t: i64) -> String {
    // A code that is wrong for every step of the window around t.
    let used: Vec<String> = (-3..=3).map(|k| code(secret, t + k * STEP_SECS)).collect();
    (0..1_000_000)
        .map(|n| format!("{n:06}"))
        .find(|c| !used.contains(c))
        .unwrap()
}

#[test]
fn rfc6238_sha1_vectors() {
    // RFC 6238 Appendix B (8 digits there; the last 6 are the 6-digit code).
    let secret = Secret::from(b"12345678901234567890".to_vec()).to_base32();
    for (t, want) in [
        (59, "287082"),
        (1_111_111_109, "081804"),
        (1_111_111_111, "050471"),
        (1_234_567_890, "005924"),
        (2_000_000_000, "279037"),
        (20_000_000_000, "353130"),
    ] {
        assert_eq!(code(&secret, t), want, "t={t}");
    }
}

#[test]
fn window_minus1_0_plus1_accepted_pm2_refused_no_skew_learning() {
    let d = TestDir::new("window");
    let s = open(&d);
    let e = s.enroll("alice", "host1", T0, false).unwrap();
    let sec = &e.secret_base32;
    let t = T0 / STEP_SECS;
    for (n, k) in [-2i64, 2, -3, 3].into_iter().enumerate() {
        let c = checked_code(sec, T0 + k * STEP_SECS);
        assert_eq!(
            s.verify("alice", &c, T0),
            Err(TotpError::WrongCode {
                failures: n as u32 + 1
            }),
            "k={k}"
        );
    }
    // Ascending order, so the replay rule does not interfere.
    for k in [-1i64, 0, 1] {
        let c = checked_code(sec, T0 + k * STEP_SECS);
        assert_eq!(s.verify("alice", &c, T0), Ok((t + k) as u64), "k={k}");
    }
    // Having accepted t+1 does not widen or shift the window: t+2 is still refused.
    let c = checked_code(sec, T0 + 2 * STEP_SECS);
    assert!(matches!(
        s.verify("alice", &c, T0),
        Err(TotpError::WrongCode { .. })
    ));
    // Window 0 accepts the current step only.
    let s0 = TotpStore::open(
        d.path(),
        TotpConfig {
            window_steps: 0,
            ..TotpConfig::default()
        },
    )
    .unwrap();
    let e = s0.enroll("bob", "host1", T0, false).unwrap();
    let prev = checked_code(&e.secret_base32, T0 - STEP_SECS);
    assert!(matches!(
        s0.verify("bob", &prev, T0),
        Err(TotpError::WrongCode { .. })
    ));
    let cur = checked_code(&e.secret_base32, T0);
    assert_eq!(s0.verify("bob", &cur, T0), Ok(t as u64));
}

#[test]
fn same_code_twice_refused_and_counted() {
    let d = TestDir::new("twice");
    let s = open(&d);
    let e = s.enroll("alice", "h", T0, false).unwrap();
    let c = checked_code(&e.secret_base32, T0);
    assert!(s.verify("alice", &c, T0).is_ok());
    assert_eq!(s.verify("alice", &c, T0 + 5), Err(TotpError::Replayed));
    assert_eq!(record(&s, "alice").failures, 1);
    // Still refused later in the window (t is now t-1 of the next step).
    assert_eq!(
        s.verify("alice", &c, T0 + STEP_SECS),
        Err(TotpError::Replayed)
    );
    // The next step's code works and resets the counter.
    let next = checked_code(&e.secret_base32, T0 + STEP_SECS);
    assert!(s.verify("alice", &next, T0 + STEP_SECS).is_ok());
    assert_eq!(record(&s, "alice").failures, 0);
}

#[test]
fn older_step_after_newer_refused() {
    let d = TestDir::new("older");
    let s = open(&d);
    let e = s.enroll("alice", "h", T0, false).unwrap();
    let now_code = checked_code(&e.secret_base32, T0);
    let prev_code = checked_code(&e.secret_base32, T0 - STEP_SECS);
    assert_eq!(
        s.verify("alice", &now_code, T0),
        Ok((T0 / STEP_SECS) as u64)
    );
    assert_eq!(s.verify("alice", &prev_code, T0), Err(TotpError::Replayed));
}

#[test]
fn replay_after_restart_refused() {
    let d = TestDir::new("restart");
    let (sec, c) = {
        let s = open(&d);
        let e = s.enroll("alice", "h", T0, false).unwrap();
        let c = checked_code(&e.secret_base32, T0);
        assert!(s.verify("alice", &c, T0).is_ok());
        (e.secret_base32, c)
    };
    let s = open(&d);
    assert_eq!(s.verify("alice", &c, T0), Err(TotpError::Replayed));
    let next = code(&sec, T0 + STEP_SECS);
    assert!(s.verify("alice", &next, T0 + STEP_SECS).is_ok());
}

#[test]
fn concurrent_same_code_exactly_one_accepted() {
    let d = TestDir::new("race");
    let s = Arc::new(open(&d));
    let e = s.enroll("alice", "h", T0, false).unwrap();
    let c = checked_code(&e.secret_base32, T0);
    let barrier = Arc::new(Barrier::new(10));
    let handles: Vec<_> = (0..10)
        .map(|_| {
            let (s, b, c) = (Arc::clone(&s), Arc::clone(&barrier), c.clone());
            std::thread::spawn(move || {
                b.wait();
                s.verify("alice", &c, T0)
            })
        })
        .collect();
    let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let count = |want: &Result<u64, TotpError>| results.iter().filter(|r| *r == want).count();
    // The first thread through the lock wins; the next five are replays (counted, the fifth
    // locks the user), the last four meet the lockout.
    assert_eq!(count(&Ok((T0 / STEP_SECS) as u64)), 1, "{results:?}");
    assert_eq!(count(&Err(TotpError::Replayed)), 5, "{results:?}");
    assert_eq!(
        count(&Err(TotpError::LockedOut { until: T0 + 30 })),
        4,
        "{results:?}"
    );
    let r = record(&s, "alice");
    assert_eq!(r.failures, 9);
    assert!(r.locked_until > T0);
}

#[test]
fn parallel_wrong_codes_share_one_counter() {
    let d = TestDir::new("parallel-wrong");
    let s = Arc::new(
        TotpStore::open(
            d.path(),
            TotpConfig {
                max_failures: 100,
                ..TotpConfig::default()
            },
        )
        .unwrap(),
    );
    let e = s.enroll("alice", "h", T0, false).unwrap();
    let w = wrong(&e.secret_base32, T0);
    let handles: Vec<_> = (0..10)
        .map(|_| {
            let (s, w) = (Arc::clone(&s), w.clone());
            std::thread::spawn(move || s.verify("alice", &w, T0))
        })
        .collect();
    let mut seen: Vec<u32> = handles
        .into_iter()
        .map(|h| match h.join().unwrap() {
            Err(TotpError::WrongCode { failures }) => failures,
            other => panic!("{other:?}"),
        })
        .collect();
    seen.sort_unstable();
    assert_eq!(seen, (1..=10).collect::<Vec<_>>());
    assert_eq!(record(&s, "alice").failures, 10);
}

#[test]
fn bad_formats_rejected_and_counted() {
    let d = TestDir::new("formats");
    let cfg = TotpConfig {
        max_failures: 100,
        ..TotpConfig::default()
    };
    let s = TotpStore::open(d.path(), cfg).unwrap();
    let e = s.enroll("alice", "h", T0, false).unwrap();
    let good = checked_code(&e.secret_base32, T0);
    let huge = "1".repeat(1 << 20);
    let bad: Vec<String> = vec![
        String::new(),
        good[..5].to_string(),
        format!("{good}0"),
        format!(" {good}"),
        format!("{good} "),
        format!("{good}\n"),
        format!("{}\0", &good[..5]),
        "１２３４５６".to_string(),
        "12345a".to_string(),
        "+12345".to_string(),
        "-12345".to_string(),
        "abcdef".to_string(),
        "12 456".to_string(),
        "١٢٣٤٥٦".to_string(),
        huge,
    ];
    for (i, b) in bad.iter().enumerate() {
        let started = std::time::Instant::now();
        assert_eq!(
            s.verify("alice", b, T0),
            Err(TotpError::BadCodeFormat),
            "input #{i}"
        );
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
        assert_eq!(record(&s, "alice").failures, i as u32 + 1, "input #{i}");
    }
    // The good code is still accepted afterwards (it was never consumed) and resets.
    assert!(s.verify("alice", &good, T0).is_ok());
    assert_eq!(record(&s, "alice").failures, 0);
    // With the default policy, five malformed codes lock the user.
    let s = open(&d);
    let e = s.enroll("bob", "h", T0, false).unwrap();
    for _ in 0..5 {
        assert_eq!(s.verify("bob", "x", T0), Err(TotpError::BadCodeFormat));
    }
    let c = code(&e.secret_base32, T0);
    assert_eq!(
        s.verify("bob", &c, T0),
        Err(TotpError::LockedOut { until: T0 + 30 })
    );
}

#[test]
fn lockout_is_per_source_and_survives_restart() {
    let d = TestDir::new("sources");
    let s = open(&d);
    let e = s.enroll("alice", "h", T0, false).unwrap();
    let sec = e.secret_base32;
    let w = wrong(&sec, T0);
    // Another local user (uid 1001) types five wrong codes at `su alice`.
    for n in 1..=5 {
        assert_eq!(
            s.verify_from("alice", &w, Some("uid:1001"), T0),
            Err(TotpError::WrongCode { failures: n })
        );
    }
    assert_eq!(
        s.verify_from("alice", &code(&sec, T0), Some("uid:1001"), T0 + 1),
        Err(TotpError::LockedOut { until: T0 + 30 }),
        "the nuisance's own source is locked"
    );
    // alice over ssh from elsewhere: not locked, and her code works.
    let s = open(&d);
    assert_eq!(
        s.verify_from("alice", &code(&sec, T0), Some("rhost:192.0.2.7"), T0 + 2),
        Ok((T0 / STEP_SECS) as u64)
    );
    let r = record(&s, "alice");
    assert_eq!((r.failures, r.locked_until), (0, 0), "the person's counter");
    assert_eq!(r.sources.get("uid:1001").map(|x| x.failures), Some(6));
    assert!(
        !r.sources.contains_key("rhost:192.0.2.7"),
        "a success leaves no entry"
    );
    // Replay is per person whatever the source.
    assert_eq!(
        s.verify_from("alice", &code(&sec, T0), Some("uid:0"), T0 + 3),
        Err(TotpError::Replayed)
    );
    // No source: the person's own counter, untouched by the sources above.
    assert_eq!(
        s.verify("alice", &w, T0 + 4),
        Err(TotpError::WrongCode { failures: 1 })
    );
}

#[test]
fn sources_are_bounded_without_freeing_a_locked_one() {
    let d = TestDir::new("sources-cap");
    let s = open(&d);
    let e = s.enroll("alice", "h", T0, false).unwrap();
    let w = wrong(&e.secret_base32, T0);
    let lock = |src: &str, t: i64| {
        for _ in 0..5 {
            let _ = s.verify_from("alice", &w, Some(src), t);
        }
    };
    for i in 0..strikes::MAX_SOURCES {
        lock(&format!("rhost:10.0.0.{i}"), T0);
    }
    assert_eq!(record(&s, "alice").sources.len(), strikes::MAX_SOURCES);
    // Every slot is locked: a new source counts on the shared overflow counter and the
    // locked sources stay locked.
    lock("rhost:10.9.9.9", T0);
    let r = record(&s, "alice");
    assert_eq!(r.sources.get("overflow").map(|x| x.failures), Some(5));
    assert!(r
        .sources
        .get("rhost:10.0.0.0")
        .is_some_and(|x| x.locked_until > T0));
    // Idle and unlocked for longer than lockout_max: a source makes room for a new one.
    let later = T0 + TotpConfig::default().lockout_max_secs + 60;
    assert_eq!(
        s.verify_from("alice", &w, Some("rhost:10.8.8.8"), later),
        Err(TotpError::WrongCode { failures: 1 })
    );
    let r = record(&s, "alice");
    assert!(
        r.sources.len() <= strikes::MAX_SOURCES + 1,
        "{}",
        r.sources.len()
    );
    assert!(r.sources.contains_key("rhost:10.8.8.8"));
    // The record stays far below its size cap.
    let bytes = encode(&r).unwrap();
    assert!(
        (bytes.len() as u64) < MAX_RECORD_BYTES / 2,
        "{}",
        bytes.len()
    );
}

#[test]
fn lockout_backoff_and_persistence() {
    let d = TestDir::new("lockout");
    let sec = {
        let s = open(&d);
        let e = s.enroll("alice", "h", T0, false).unwrap();
        let w = wrong(&e.secret_base32, T0);
        for n in 1..=5 {
            assert_eq!(
                s.verify("alice", &w, T0),
                Err(TotpError::WrongCode { failures: n })
            );
        }
        // Locked: even the correct code is refused, without being consumed.
        let c = checked_code(&e.secret_base32, T0);
        assert_eq!(
            s.verify("alice", &c, T0 + 1),
            Err(TotpError::LockedOut { until: T0 + 30 })
        );
        e.secret_base32
    };
    // Restart: the lockout and the counter (5 + 1 attempt while locked) survive.
    let s = open(&d);
    assert_eq!(record(&s, "alice").failures, 6);
    let c = code(&sec, T0 + 29);
    assert_eq!(
        s.verify("alice", &c, T0 + 29),
        Err(TotpError::LockedOut { until: T0 + 30 })
    );
    assert_eq!(record(&s, "alice").failures, 7);
    // A wrong code after the lockout: 8 failures → 30·2^3 = 240 s.
    let t1 = T0 + 30;
    assert_eq!(
        s.verify("alice", &wrong(&sec, t1), t1),
        Err(TotpError::WrongCode { failures: 8 })
    );
    assert_eq!(record(&s, "alice").locked_until, t1 + 240);
    // Doubling stops at lockout_max_secs.
    let mut t = t1 + 240;
    for want in [480, 900, 900, 900, 900] {
        assert!(matches!(
            s.verify("alice", &wrong(&sec, t), t),
            Err(TotpError::WrongCode { .. })
        ));
        let until = record(&s, "alice").locked_until;
        assert_eq!(until - t, want);
        t = until;
    }
    assert_eq!(record(&s, "alice").failures, 13);
    // The correct code after the lockout: accepted, counter reset.
    let c = checked_code(&sec, t);
    assert_eq!(s.verify("alice", &c, t), Ok((t / STEP_SECS) as u64));
    let r = record(&s, "alice");
    assert_eq!((r.failures, r.locked_until), (0, 0));
    assert_eq!(
        s.verify("alice", &wrong(&sec, t + 60), t + 60),
        Err(TotpError::WrongCode { failures: 1 })
    );
}

#[test]
fn lockout_schedule() {
    let c = TotpConfig::default();
    let got: Vec<i64> = (5..=12).map(|f| c.lockout_secs(f)).collect();
    assert_eq!(got, [30, 60, 120, 240, 480, 900, 900, 900]);
    assert_eq!(c.lockout_secs(u32::MAX), 900);
    assert!(TotpConfig::default().validate().is_ok());
    for bad in [
        TotpConfig {
            window_steps: 4,
            ..c
        },
        TotpConfig {
            max_failures: 0,
            ..c
        },
        TotpConfig {
            lockout_base_secs: 0,
            ..c
        },
        TotpConfig {
            lockout_max_secs: 10,
            ..c
        },
    ] {
        assert!(
            matches!(bad.validate(), Err(TotpError::Config(_))),
            "{bad:?}"
        );
    }
}

#[test]
fn insecure_storage_refused() {
    // Directory mode 0755.
    let d = TestDir::new("insecure-dir");
    drop(open(&d));
    let dir = d.path().join(TOTP_DIR);
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let e = TotpStore::open(d.path(), TotpConfig::default()).unwrap_err();
    assert!(matches!(e, TotpError::InsecureStorage(_)), "{e}");
    assert!(e.to_string().contains("0755"), "{e}");
    // Directory not owned by root.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::os::unix::fs::chown(&dir, Some(1001), None).unwrap();
    assert!(matches!(
        TotpStore::open(d.path(), TotpConfig::default()),
        Err(TotpError::InsecureStorage(_))
    ));
    std::os::unix::fs::chown(&dir, Some(0), None).unwrap();

    // Secret file 0644, 0640, not root-owned, a symlink.
    let s = open(&d);
    s.enroll("alice", "h", T0, false).unwrap();
    let file = dir.join("alice.json");
    for mode in [0o644, 0o640, 0o604] {
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).unwrap();
        let e = TotpStore::open(d.path(), TotpConfig::default()).unwrap_err();
        assert!(matches!(e, TotpError::InsecureStorage(_)), "{mode:o}: {e}");
        // An already open store re-checks on every read.
        assert!(matches!(
            s.verify("alice", "123456", T0),
            Err(TotpError::InsecureStorage(_))
        ));
    }
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::os::unix::fs::chown(&file, Some(1001), Some(1001)).unwrap();
    let e = TotpStore::open(d.path(), TotpConfig::default()).unwrap_err();
    assert!(e.to_string().contains("uid 1001"), "{e}");
    assert!(matches!(
        s.verify("alice", "123456", T0),
        Err(TotpError::InsecureStorage(_))
    ));
    std::os::unix::fs::chown(&file, Some(0), Some(0)).unwrap();
    assert!(TotpStore::open(d.path(), TotpConfig::default()).is_ok());
    std::fs::rename(&file, dir.join("real")).unwrap();
    std::os::unix::fs::symlink(dir.join("real"), &file).unwrap();
    assert!(matches!(
        TotpStore::open(d.path(), TotpConfig::default()),
        Err(TotpError::InsecureStorage(_))
    ));
    assert!(matches!(
        s.verify("alice", "123456", T0),
        Err(TotpError::InsecureStorage(_))
    ));

    // The totp directory itself a symlink; a group-writable state directory.
    let d2 = TestDir::new("insecure-link");
    std::os::unix::fs::symlink(&dir, d2.path().join(TOTP_DIR)).unwrap();
    assert!(matches!(
        TotpStore::open(d2.path(), TotpConfig::default()),
        Err(TotpError::InsecureStorage(_))
    ));
    let d3 = TestDir::new("insecure-parent");
    std::fs::set_permissions(d3.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    assert!(matches!(
        TotpStore::open(d3.path(), TotpConfig::default()),
        Err(TotpError::InsecureStorage(_))
    ));
}

#[test]
fn open_creates_root_only_dir_and_files() {
    let d = TestDir::new("create");
    let s = open(&d);
    let m = std::fs::symlink_metadata(s.dir()).unwrap();
    assert!(m.is_dir());
    assert_eq!((m.uid(), m.mode() & 0o777), (0, 0o700));
    let e = s.enroll("alice", "h", T0, false).unwrap();
    s.verify("alice", &code(&e.secret_base32, T0), T0).unwrap();
    let m = std::fs::metadata(s.dir().join("alice.json")).unwrap();
    assert_eq!((m.uid(), m.gid(), m.mode() & 0o777), (0, 0, 0o600));
    // A stale temp from a crash is removed at open; nothing else is left behind.
    std::fs::write(s.dir().join(".alice.json.tmp.4242"), b"x").unwrap();
    let s = open(&d);
    let names: Vec<_> = std::fs::read_dir(s.dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, ["alice.json"]);
}

#[test]
fn enroll_remove_and_not_enrolled() {
    let d = TestDir::new("enroll");
    let s = open(&d);
    assert!(!s.is_enrolled("alice"));
    assert_eq!(s.verify("alice", "123456", T0), Err(TotpError::NotEnrolled));
    let e = s.enroll("alice", "web-1.example.org", T0, false).unwrap();
    assert_eq!(e.user, "alice");
    assert_eq!(e.secret_base32.len(), 32);
    assert_eq!(
        Secret::try_from_base32(&e.secret_base32)
            .unwrap()
            .as_bytes()
            .len(),
        SECRET_BYTES
    );
    assert_eq!(
        e.uri,
        format!(
            "otpauth://totp/jit:alice@web-1.example.org?secret={}&issuer=jit&algorithm=SHA1&digits=6&period=30",
            e.secret_base32
        )
    );
    assert!(s.is_enrolled("alice"));
    assert_eq!(
        s.enroll("alice", "h", T0, false).unwrap_err(),
        TotpError::AlreadyEnrolled
    );
    // Replacing: new secret, old codes dead, counter cleared, last step kept.
    s.verify("alice", &code(&e.secret_base32, T0), T0).unwrap();
    let _ = s.verify("alice", "000000", T0 + 30);
    let e2 = s.enroll("alice", "h", T0 + 30, true).unwrap();
    assert_ne!(e2.secret_base32, e.secret_base32);
    let r = record(&s, "alice");
    assert_eq!((r.failures, r.last_step), (0, (T0 / STEP_SECS) as u64));
    let t = T0 + 60;
    if code(&e.secret_base32, t) != code(&e2.secret_base32, t) {
        assert!(matches!(
            s.verify("alice", &code(&e.secret_base32, t), t),
            Err(TotpError::WrongCode { .. })
        ));
    }
    assert!(s.verify("alice", &code(&e2.secret_base32, t), t).is_ok());
    // Odd host names are percent-encoded in the URI.
    let e3 = s.enroll("bob", "a b&c?d", T0, false).unwrap();
    assert!(e3
        .uri
        .starts_with("otpauth://totp/jit:bob@a%20b%26c%3Fd?secret="));
    // Invalid names never reach the file system.
    for bad in [
        "",
        "../etc",
        "Alice",
        "a/b",
        "-x",
        "a.json",
        &"a".repeat(33),
    ] {
        assert!(
            matches!(
                s.enroll(bad, "h", T0, false),
                Err(TotpError::InvalidUser(_))
            ),
            "{bad:?}"
        );
        assert!(matches!(
            s.verify(bad, "123456", T0),
            Err(TotpError::InvalidUser(_))
        ));
        assert!(!s.is_enrolled(bad));
    }
    assert_eq!(s.remove("alice"), Ok(true));
    assert_eq!(s.remove("alice"), Ok(false));
    assert!(!s.is_enrolled("alice"));
    assert_eq!(
        s.verify("alice", &code(&e2.secret_base32, t), t),
        Err(TotpError::NotEnrolled)
    );
}

#[test]
fn damaged_record_denies_not_skips() {
    let d = TestDir::new("damaged");
    let s = open(&d);
    let e = s.enroll("alice", "h", T0, false).unwrap();
    let path = s.user_path("alice").unwrap();
    let good = std::fs::read(&path).unwrap();
    let c = code(&e.secret_base32, T0);
    for damaged in [
        Vec::new(),
        good[..good.len() / 2].to_vec(),
        {
            // A bit flipped inside the record (the only intact slot after enrollment).
            let mut b = good.clone();
            b[60] ^= 1;
            b
        },
        vec![b'x'; 10_000],
        vec![0u8; good.len()],
    ] {
        std::fs::write(&path, &damaged).unwrap();
        let err = s.verify("alice", &c, T0).unwrap_err();
        assert!(matches!(err, TotpError::Io(_)), "{err}");
        assert_ne!(err, TotpError::NotEnrolled);
        assert!(!err.to_string().contains(&e.secret_base32));
    }
    // Without replace, a damaged record is not silently overwritten; with it, it is.
    assert_eq!(
        s.enroll("alice", "h", T0, false).unwrap_err(),
        TotpError::AlreadyEnrolled
    );
    let e2 = s.enroll("alice", "h", T0, true).unwrap();
    assert!(s.verify("alice", &code(&e2.secret_base32, T0), T0).is_ok());
}

#[test]
fn secrets_and_codes_never_in_messages() {
    let d = TestDir::new("redact");
    let s = open(&d);
    let e = s.enroll("alice", "h", T0, false).unwrap();
    let sec = e.secret_base32.clone();
    let c = code(&sec, T0);
    let path = s.user_path("alice").unwrap();
    // A well-formed record (valid checksum) whose JSON puts the secret where serde_json
    // would quote it in its error message.
    let body = format!(
        r#"{{"secret":"{sec}","enrolled_at":"{sec}","last_step":0,"failures":0,"locked_until":0}}"#
    );
    std::fs::write(&path, seal(HEADER, body.as_bytes())).unwrap();
    let err = s.verify("alice", &c, T0).unwrap_err();
    let mut texts = vec![
        format!("{err}"),
        format!("{err:?}"),
        format!("{e:?}"),
        format!("{s:?}"),
    ];
    let e2 = s.enroll("alice", "h", T0, true).unwrap();
    let sec2 = e2.secret_base32.clone();
    texts.push(format!("{:?}", record(&s, "alice")));
    for r in [
        s.verify("alice", &wrong(&sec2, T0), T0),
        s.verify("alice", "12345", T0),
        s.verify("alice", &code(&sec2, T0), T0),
        s.verify("alice", &code(&sec2, T0), T0),
    ] {
        texts.push(format!("{r:?}"));
        if let Err(e) = r {
            texts.push(e.to_string());
        }
    }
    for t in &texts {
        for secret in [&sec, &sec2] {
            assert!(!t.contains(secret.as_str()), "secret leaked in {t:?}");
            assert!(!t.contains(&secret[..8]), "secret prefix leaked in {t:?}");
        }
        assert!(!t.contains(&code(&sec2, T0)), "code leaked in {t:?}");
    }
    assert!(texts[0].contains("damaged record"), "{}", texts[0]);
}

#[test]
fn persist_failure_refuses_and_does_not_consume() {
    let d = TestDir::new("persist");
    let s = open(&d);
    let e = s.enroll("alice", "h", T0, false).unwrap();
    let c = checked_code(&e.secret_base32, T0);
    let path = s.user_path("alice").unwrap();
    let before = std::fs::read(&path).unwrap();

    // Injected: the durable write fails.
    s.fail_writes.store(true, Ordering::SeqCst);
    assert!(matches!(s.verify("alice", &c, T0), Err(TotpError::Io(_))));
    // A wrong code gives the same answer: no right/wrong oracle while writes fail.
    assert!(matches!(
        s.verify("alice", &wrong(&e.secret_base32, T0), T0),
        Err(TotpError::Io(_))
    ));
    assert!(matches!(
        s.enroll("bob", "h", T0, false),
        Err(TotpError::Io(_))
    ));
    s.fail_writes.store(false, Ordering::SeqCst);
    assert_eq!(std::fs::read(&path).unwrap(), before);

    // Real fault: a record in the older whole-file format is rewritten whole (temp file,
    // rename); a directory where that temp file goes makes the write fail.
    let legacy = encode(&record(&s, "alice")).unwrap();
    std::fs::write(&path, &legacy).unwrap();
    let tmp = s
        .dir()
        .join(format!(".alice.json.tmp.{}", std::process::id()));
    std::fs::create_dir(&tmp).unwrap();
    let err = s.verify("alice", &c, T0).unwrap_err();
    assert!(matches!(err, TotpError::Io(_)), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), legacy);
    std::fs::remove_dir(&tmp).unwrap();

    // The code was never consumed: it is accepted now, exactly once.
    assert_eq!(s.verify("alice", &c, T0), Ok((T0 / STEP_SECS) as u64));
    assert_eq!(s.verify("alice", &c, T0), Err(TotpError::Replayed));
}

/// A full 64 KiB tmpfs as the state directory, in a private mount namespace (a child run
/// of this test binary under `unshare -m`): codes of an enrolled user are still checked,
/// spent once and counted; a new enrollment is refused.
#[test]
fn disk_full_still_verifies_enrolled_users() {
    let probe = Command::new("unshare")
        .args(["-m", "true"])
        .stderr(Stdio::null())
        .status();
    if !matches!(probe, Ok(st) if st.success()) {
        eprintln!(
            "SKIPPED disk_full_still_verifies_enrolled_users: `unshare -m` is not permitted \
             here"
        );
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let my_ns = std::fs::read_link("/proc/self/ns/mnt").unwrap();
    let out = Command::new("unshare")
        .arg("-m")
        .arg(exe)
        .args([
            "--exact",
            "mfa::totp::tests::disk_full_child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("JITD_TOTP_DISK_FULL_PARENT_NS", my_ns)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "child failed:\n{text}");
    assert!(
        text.contains("DISK-FULL-CHECKED"),
        "child did not run:\n{text}"
    );
}

#[test]
#[ignore = "run by disk_full_still_verifies_enrolled_users inside `unshare -m`"]
fn disk_full_child() {
    // Only ever mount when started by the parent test, in a namespace other than its own.
    let parent_ns = std::env::var_os("JITD_TOTP_DISK_FULL_PARENT_NS");
    let my_ns = std::fs::read_link("/proc/self/ns/mnt").ok();
    if parent_ns.is_none() || my_ns.is_none() || my_ns.map(PathBuf::into_os_string) == parent_ns {
        eprintln!("disk_full_child: not in a private mount namespace; doing nothing");
        return;
    }
    let d = TestDir::new("diskfull");
    let target = std::ffi::CString::new(d.path().as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: mount(2) with valid NUL-terminated strings, in our private mount namespace.
    let rc = unsafe {
        libc::mount(
            c"tmpfs".as_ptr(),
            target.as_ptr(),
            c"tmpfs".as_ptr(),
            0,
            c"size=64k,mode=0700".as_ptr().cast(),
        )
    };
    assert_eq!(rc, 0, "mount: {}", io::Error::last_os_error());
    // Declared after `d`, so dropped first: unmount, then the (host) directory is removed.
    struct Unmount(std::ffi::CString);
    impl Drop for Unmount {
        fn drop(&mut self) {
            // SAFETY: umount2(2) with a valid NUL-terminated path.
            unsafe { libc::umount2(self.0.as_ptr(), libc::MNT_DETACH) };
        }
    }
    let _unmount = Unmount(target);
    let s = open(&d);
    let e = s.enroll("alice", "h", T0, false).unwrap();
    let c = checked_code(&e.secret_base32, T0);
    let path = s.user_path("alice").unwrap();
    let before = std::fs::read(&path).unwrap();
    // Fill the file system.
    let filler = d.path().join("filler");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&filler).unwrap();
        let chunk = [0u8; 4096];
        let err = loop {
            if let Err(e) = f.write_all(&chunk) {
                break e;
            }
        };
        assert_eq!(err.raw_os_error(), Some(libc::ENOSPC), "{err}");
    }
    // A wrong code is counted, the right one accepted once, then refused as a replay.
    assert_eq!(
        s.verify("alice", &wrong(&e.secret_base32, T0), T0),
        Err(TotpError::WrongCode { failures: 1 })
    );
    assert_eq!(s.verify("alice", &c, T0), Ok((T0 / STEP_SECS) as u64));
    assert_eq!(s.verify("alice", &c, T0), Err(TotpError::Replayed));
    assert_eq!(record(&s, "alice").failures, 1);
    assert_eq!(
        std::fs::metadata(&path).unwrap().len(),
        before.len() as u64,
        "updated in place"
    );
    // New privilege needs space: a new enrollment is refused, and leaves no temp file.
    let err = s.enroll("bob", "h", T0, false).unwrap_err();
    assert!(err.to_string().contains("No space left"), "{err}");
    assert_eq!(std::fs::read_dir(s.dir()).unwrap().count(), 1);
    // Space back: nothing was lost.
    std::fs::remove_file(&filler).unwrap();
    assert_eq!(s.verify("alice", &c, T0), Err(TotpError::Replayed));
    println!("DISK-FULL-CHECKED");
}

#[test]
fn fleet_records_hold_no_secret_and_keep_replay_and_relayed_steps() {
    let d = TestDir::new("fleet");
    let s = TotpStore::open_fleet(d.path(), TotpConfig::default()).unwrap();
    let raw = [0x42u8; SECRET_BYTES];
    let b32 = Secret::from(raw).to_base32();
    let t = 1_800_000_015;
    let c = checked_code(&b32, t);
    assert_eq!(
        s.verify_with_secret("alice", &c, None, t, &raw),
        Ok((t / 30) as u64)
    );
    assert_eq!(
        s.verify_with_secret("alice", &c, None, t, &raw),
        Err(TotpError::Replayed)
    );
    let file = std::fs::read(d.path().join(FLEET_TOTP_DIR).join("alice.json")).unwrap();
    assert!(
        !String::from_utf8_lossy(&file).contains(&b32),
        "no secret on disk"
    );
    assert!(!file.windows(raw.len()).any(|w| w == raw));
    // A step relayed from another host raises the floor: the next step's code is then spent.
    let next = checked_code(&b32, t + 30);
    assert_eq!(s.raise_step("alice", (t + 30) as u64 / 30, t), Ok(true));
    assert_eq!(s.raise_step("alice", 1, t), Ok(false), "never lowered");
    assert_eq!(
        s.verify_with_secret("alice", &next, None, t + 30, &raw),
        Err(TotpError::Replayed)
    );
    // A relayed step for a person never seen here makes a record without a secret.
    assert_eq!(s.raise_step("bob", 5, t), Ok(true));
    assert_eq!(
        s.verify_with_secret("alice", "123456", None, t, &[1u8; 3]),
        Err(TotpError::Io("fleet secret is not 160 bits".into()))
    );
    // The local store never takes a fleet record's empty secret for one.
    let local = open(&d);
    assert_eq!(local.verify("alice", &c, t), Err(TotpError::NotEnrolled));
}
