//! What pam_jit and sudo_jit ask of jitd, driven through `Daemon::handle_peer` with real child
//! processes as session peers: login and sudo TOTP verification (activation, replay, root
//! only), sessions (tracked, ended by teardown, ending `--end-with-session` grants, reaped when
//! their process dies), managed admins (`--enable`) and break-glass codes.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure is the assertion

mod common;
use common::*;

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use jit_core::snapshot::Snapshot;
use jit_core::types::{ACCOUNT_MFA_REQUIRED, GATE_ARMED, GATE_ENABLE, GATE_MFA};
use jit_proto::message::{MfaPurpose, Payload, SessionSpec};
use jit_proto::{ErrorCode, GrantSpec, GrantState, Request, Response};
use jitd::config::Config;
use jitd::daemon::{Daemon, Peer};

const ROOT: Peer = Peer { uid: 0, pid: 0 };

fn ask(d: &Daemon, peer: Peer, req: Request, now: i64) -> Result<Payload, (ErrorCode, String)> {
    match d.handle_peer(peer, req, now) {
        Response::Ok { payload, .. } => Ok(payload),
        Response::Error { code, message, .. } => Err((code, message)),
    }
}

fn enroll(d: &Daemon, user: &str) -> String {
    match ask(
        d,
        ROOT,
        Request::EnrollMfa {
            user: user.into(),
            replace: false,
        },
        T0,
    ) {
        Ok(Payload::Enrollment { secret, .. }) => secret,
        r => panic!("{r:?}"),
    }
}

fn verify(
    d: &Daemon,
    peer: Peer,
    user: &str,
    code: &str,
    purpose: MfaPurpose,
    grant: Option<&str>,
    now: i64,
) -> Result<Payload, (ErrorCode, String)> {
    ask(
        d,
        peer,
        Request::VerifyMfa {
            user: user.into(),
            code: code.into(),
            purpose,
            service: "sshd".into(),
            grant: grant.map(str::to_string),
            caller: None,
        },
        now,
    )
}

fn state_of(d: &Daemon, id: &str, now: i64) -> GrantState {
    match ask(d, ROOT, Request::ShowGrant { id: id.into() }, now) {
        Ok(Payload::Grant(g)) => g.state,
        r => panic!("{r:?}"),
    }
}

fn open_session(
    d: &Daemon,
    pid: u32,
    user: &str,
    grant: &str,
    now: i64,
) -> Result<Payload, (ErrorCode, String)> {
    ask(
        d,
        Peer {
            uid: 0,
            pid: pid as i32,
        },
        Request::OpenSession {
            session: Box::new(SessionSpec {
                user: user.into(),
                grant: grant.into(),
                service: "sshd".into(),
                tty: "pts/3".into(),
                rhost: "192.0.2.7".into(),
            }),
        },
        now,
    )
}

#[test]
fn a_login_code_activates_an_armed_account_grant_once() {
    let env = Env::new("loginmfa");
    let d = env.daemon(T0);
    let secret = enroll(&d, "alice");
    let g = add(
        &d,
        GrantSpec {
            mfa: true,
            ..spec("alice", 600)
        },
        T0,
    )
    .unwrap();
    assert_eq!(g.state, GrantState::Armed);
    assert!(
        env.path("home/alice").is_dir(),
        "the first login (the one that proves the code) must find the home"
    );
    {
        let img = env.snapshot();
        let s = Snapshot::parse(&img).unwrap();
        let acct = s
            .account_by_name("alice", T0)
            .expect("armed account visible for sshd");
        assert_eq!(acct.flags() & ACCOUNT_MFA_REQUIRED, ACCOUNT_MFA_REQUIRED);
        let mfa = s.group_by_name("jit-mfa", T0).expect("jit-mfa group");
        assert_eq!(mfa.live_members(T0).collect::<Vec<_>>(), ["alice"]);
        let gate = s.grants_for_user("alice").next().unwrap();
        assert_eq!(
            gate.flags() & (GATE_MFA | GATE_ARMED),
            GATE_MFA | GATE_ARMED
        );
    }
    let right = oathtool(&secret, T0);
    // Only root peers (the modules run as root) may ask; identity from SO_PEERCRED.
    let e = verify(
        &d,
        Peer { uid: 1001, pid: 0 },
        "alice",
        &right,
        MfaPurpose::Login,
        None,
        T0,
    )
    .unwrap_err();
    assert_eq!(e.0, ErrorCode::PermissionDenied);
    let wrong = if right == "000000" {
        "000001"
    } else {
        "000000"
    };
    let e = verify(&d, ROOT, "alice", wrong, MfaPurpose::Login, Some(&g.id), T0).unwrap_err();
    assert_eq!(e, (ErrorCode::Refused, "wrong verification code".into()));
    // A sudo code is not a login code: alice's grant has no --mfa-sudo.
    let e = verify(&d, ROOT, "alice", &right, MfaPurpose::Sudo, Some(&g.id), T0).unwrap_err();
    assert!(e.1.contains("does not ask for a sudo code"), "{e:?}");
    match verify(
        &d,
        ROOT,
        "alice",
        &right,
        MfaPurpose::Login,
        Some(&g.id),
        T0,
    )
    .unwrap()
    {
        Payload::Verified { user, activated } => {
            assert_eq!(user, "alice");
            assert_eq!(activated, vec![g.id.clone()]);
        }
        p => panic!("{p:?}"),
    }
    assert_eq!(state_of(&d, &g.id, T0), GrantState::Live);
    {
        let img = env.snapshot();
        let s = Snapshot::parse(&img).unwrap();
        let gate = s.grants_for_user("alice").next().unwrap();
        assert_eq!(
            gate.flags() & (GATE_MFA | GATE_ARMED),
            GATE_MFA,
            "activated, but every login still needs a code"
        );
    }
    // The same code again (another service, same step): replay refused.
    let e = verify(&d, ROOT, "alice", &right, MfaPurpose::Login, None, T0 + 5).unwrap_err();
    assert!(e.1.contains("already used"), "{e:?}");
    // Someone with no grant that asks for a code: jitd is no TOTP oracle.
    let e = verify(&d, ROOT, "carol", "123456", MfaPurpose::Login, None, T0).unwrap_err();
    assert!(e.1.contains("no grant of carol"), "{e:?}");
    let audit = env.audit();
    assert!(audit.contains("\"mfa.ok\"") && audit.contains("\"mfa.fail\""));
    assert!(audit.contains("\"grant.activated\""));
    assert!(!audit.contains(&secret) && !audit.contains(&right));
}

#[test]
fn a_sudo_code_needs_a_mfa_sudo_grant() {
    let env = Env::new("sudomfa");
    env.install_sudo_conf();
    let d = env.daemon(T0);
    let secret = enroll(&d, "carol");
    let g = add(
        &d,
        GrantSpec {
            account: false,
            sudo: vec!["/usr/bin/id".into()],
            mfa_sudo: true,
            ..spec("carol", 600)
        },
        T0,
    )
    .unwrap();
    assert_eq!(
        g.state,
        GrantState::Live,
        "--mfa-sudo alone does not arm the grant"
    );
    let code = oathtool(&secret, T0);
    let e = verify(&d, ROOT, "carol", &code, MfaPurpose::Login, None, T0).unwrap_err();
    assert!(e.1.contains("login code"), "{e:?}");
    match verify(&d, ROOT, "carol", &code, MfaPurpose::Sudo, Some(&g.id), T0).unwrap() {
        Payload::Verified { activated, .. } => assert!(activated.is_empty()),
        p => panic!("{p:?}"),
    }
    // Every sudo needs a fresh code.
    assert!(verify(
        &d,
        ROOT,
        "carol",
        &code,
        MfaPurpose::Sudo,
        Some(&g.id),
        T0 + 1
    )
    .is_err());
    let next = oathtool(&secret, T0 + 30);
    assert!(verify(
        &d,
        ROOT,
        "carol",
        &next,
        MfaPurpose::Sudo,
        Some(&g.id),
        T0 + 30
    )
    .is_ok());
}

#[test]
fn sessions_are_tracked_and_ended_by_teardown() {
    let env = Env::new("sessions");
    let d = env.daemon(T0);
    let g = add(&d, spec("alice", 600), T0).unwrap();
    let mut child = sleeper(None);
    // Pid from the peer, never 0; a grant that is not alice's is refused.
    let e = ask(
        &d,
        ROOT,
        Request::OpenSession {
            session: Box::new(SessionSpec {
                user: "alice".into(),
                grant: g.id.to_string(),
                ..Default::default()
            }),
        },
        T0,
    )
    .unwrap_err();
    assert!(e.1.contains("pid is unknown"), "{e:?}");
    assert_eq!(
        open_session(&d, child.id(), "bob", &g.id, T0)
            .unwrap_err()
            .0,
        ErrorCode::NotFound
    );
    let e = ask(
        &d,
        Peer {
            uid: 1001,
            pid: child.id() as i32,
        },
        Request::ListSessions { page: None },
        T0,
    );
    assert!(matches!(e, Ok(Payload::Sessions { ref sessions, .. }) if sessions.is_empty()));
    let s = match open_session(&d, child.id(), "alice", &g.id, T0).unwrap() {
        Payload::Session(s) => s,
        p => panic!("{p:?}"),
    };
    assert_eq!(s.pid, child.id() as i32);
    assert!(s.pid_start > 0);
    match ask(&d, ROOT, Request::ListSessions { page: None }, T0).unwrap() {
        Payload::Sessions { sessions, .. } => assert_eq!(sessions, vec![*s.clone()]),
        p => panic!("{p:?}"),
    }
    // Paged (jitctl's form): the same list, then nothing after the last session.
    let page = |after| Request::ListSessions {
        page: Some(jit_proto::message::ListPage { after }),
    };
    let next = match ask(&d, ROOT, page(None), T0).unwrap() {
        Payload::Sessions { sessions, next } => {
            assert_eq!(sessions, vec![*s.clone()]);
            next
        }
        p => panic!("{p:?}"),
    };
    assert_eq!(next, None, "one page");
    let after = jit_proto::message::Cursor {
        at: s.opened_at,
        id: s.id.clone(),
    };
    match ask(&d, ROOT, page(Some(after)), T0).unwrap() {
        Payload::Sessions { sessions, next } => assert!(sessions.is_empty() && next.is_none()),
        p => panic!("{p:?}"),
    }
    // Durable: a restarted jitd still knows the session.
    drop(d);
    let d = env.daemon(T0 + 1);
    match ask(&d, ROOT, Request::ListSessions { page: None }, T0 + 1).unwrap() {
        Payload::Sessions { sessions, .. } => assert_eq!(sessions.len(), 1),
        p => panic!("{p:?}"),
    }
    // Revocation ends the session's process (here a root process: only the registered pid
    // is targeted, by pidfd after checking its start time).
    ask(
        &d,
        ROOT,
        Request::RevokeGrant {
            id: g.id.to_string(),
            reason: None,
        },
        T0 + 2,
    )
    .unwrap();
    assert!(ended_by_jitd(&mut child));
    // No longer listed at once; named by the teardown record, written after the set-id sweep.
    match ask(&d, ROOT, Request::ListSessions { page: None }, T0 + 2).unwrap() {
        Payload::Sessions { sessions, .. } => assert!(sessions.is_empty()),
        p => panic!("{p:?}"),
    }
    settle(&d, T0 + 2);
    assert!(
        env.audit()
            .contains(&format!("\"sessions\":[\"{}\"]", s.id)),
        "{}",
        env.audit()
    );
}

#[test]
fn end_with_session_grants_end_when_the_session_closes_or_dies() {
    let env = Env::new("ews");
    let d = env.daemon(T0);
    let g = add(
        &d,
        GrantSpec {
            end_with_session: true,
            ..spec("bob", 600)
        },
        T0,
    )
    .unwrap();
    let mut child = sleeper(None);
    let s = match open_session(&d, child.id(), "bob", &g.id, T0).unwrap() {
        Payload::Session(s) => s,
        p => panic!("{p:?}"),
    };
    let e = ask(
        &d,
        ROOT,
        Request::CloseSession {
            user: "bob".into(),
            session: Some("s-000000000000".into()),
        },
        T0 + 1,
    )
    .unwrap_err();
    assert_eq!(e.0, ErrorCode::NotFound);
    assert_eq!(state_of(&d, &g.id, T0 + 1), GrantState::Live);
    ask(
        &d,
        ROOT,
        Request::CloseSession {
            user: "bob".into(),
            session: Some(s.id.clone()),
        },
        T0 + 5,
    )
    .unwrap();
    assert_eq!(state_of(&d, &g.id, T0 + 5), GrantState::Revoked);
    assert!(Snapshot::parse(&env.snapshot())
        .unwrap()
        .account_by_name("bob", T0 + 5)
        .is_none());
    let _ = child.kill();
    let _ = child.wait();

    // A session whose process dies without a close (kill -9 of sshd's session process) counts
    // as closed at the next tick.
    let g2 = add(
        &d,
        GrantSpec {
            end_with_session: true,
            ..spec("dan", 600)
        },
        T0 + 10,
    )
    .unwrap();
    let mut child = sleeper(None);
    open_session(&d, child.id(), "dan", &g2.id, T0 + 10).unwrap();
    d.tick(T0 + 11);
    assert_eq!(state_of(&d, &g2.id, T0 + 11), GrantState::Live);
    child.kill().unwrap();
    child.wait().unwrap();
    d.tick(T0 + 12);
    assert_eq!(state_of(&d, &g2.id, T0 + 12), GrantState::Revoked);
    assert!(env
        .audit()
        .contains("lost (its process exited without closing it)"));
}

const MANAGED: &str = r#"managed_accounts = ["opsadm"]"#;
/// A uid no real process on the test host uses (teardown kills by uid).
const OPSADM_UID: u32 = 4_100_500;

fn managed_env(tag: &str) -> Env {
    let env = Env::new(tag);
    let mut passwd = std::fs::read_to_string(env.path("passwd")).unwrap();
    passwd.push_str(&format!(
        "opsadm:x:{OPSADM_UID}:{OPSADM_UID}::/home/opsadm:/bin/bash\n"
    ));
    std::fs::write(env.path("passwd"), passwd).unwrap();
    env
}

#[test]
fn managed_admins_need_an_enable_grant_and_lose_their_processes_after_it() {
    let env = managed_env("enable");
    let d = env.daemon_with(T0, MANAGED);
    let list = std::fs::read_to_string(env.path("state/managed-accounts")).unwrap();
    assert!(list.lines().any(|l| l == "opsadm"), "{list}");
    let e = add(
        &d,
        GrantSpec {
            account: false,
            groups: vec!["adm".into()],
            ..spec("opsadm", 60)
        },
        T0,
    )
    .unwrap_err();
    assert!(e.1.contains("must --enable"), "{e:?}");
    let g = add(
        &d,
        GrantSpec {
            account: false,
            enable: true,
            services: vec!["su".into(), "sshd".into()],
            from: vec!["192.0.2.0/24".into()],
            windows: vec!["Mon-Sun 00:00-24:00".into()],
            ..spec("opsadm", 600)
        },
        T0,
    )
    .unwrap();
    assert_eq!(g.state, GrantState::Live);
    {
        let img = env.snapshot();
        let s = Snapshot::parse(&img).unwrap();
        assert!(s.is_managed("opsadm"));
        let gate = s.grants_for_user("opsadm").next().unwrap();
        assert_eq!(gate.flags() & GATE_ENABLE, GATE_ENABLE);
        assert_eq!(gate.services().collect::<Vec<_>>(), ["sshd", "su"]);
        assert_eq!(gate.from().collect::<Vec<_>>(), ["192.0.2.0/24"]);
    }
    let mut shell = sleeper(Some(OPSADM_UID));
    ask(
        &d,
        ROOT,
        Request::RevokeGrant {
            id: g.id.to_string(),
            reason: Some("done".into()),
        },
        T0 + 5,
    )
    .unwrap();
    assert!(
        ended_by_jitd(&mut shell),
        "the admin account is disabled again: its processes end"
    );
}

#[test]
fn break_glass_codes_open_one_emergency_grant_each() {
    let env = managed_env("bg");
    let d = env.daemon_with(T0, MANAGED);
    let init = |peer: Peer, account: &str, count: u32| {
        ask(
            &d,
            peer,
            Request::InitBreakglass {
                account: account.into(),
                count,
                replace: false,
            },
            T0,
        )
    };
    assert_eq!(
        init(Peer { uid: 1001, pid: 0 }, "opsadm", 2).unwrap_err().0,
        ErrorCode::PermissionDenied
    );
    assert!(init(ROOT, "carol", 2)
        .unwrap_err()
        .1
        .contains("not a managed account"));
    assert!(init(ROOT, "opsadm", 0).is_err());
    assert!(init(ROOT, "opsadm", 21).is_err());
    let codes = match init(ROOT, "opsadm", 2).unwrap() {
        Payload::BreakglassCodes { account, codes } => {
            assert_eq!(account, "opsadm");
            codes
        }
        p => panic!("{p:?}"),
    };
    assert_eq!(codes.len(), 2);
    assert!(init(ROOT, "opsadm", 2)
        .unwrap_err()
        .1
        .contains("already exist"));
    let spend = |code: &str, now: i64| {
        ask(
            &d,
            ROOT,
            Request::UseBreakglass {
                account: "opsadm".into(),
                code: code.into(),
                service: "su".into(),
                rhost: String::new(),
                caller_uid: None,
            },
            now,
        )
    };
    let e = spend("01-00000-00000-00000", T0 + 1).unwrap_err();
    assert!(e.1.contains("wrong break-glass code"), "{e:?}");
    let g = match spend(&codes[1], T0 + 2).unwrap() {
        Payload::Grant(g) => g,
        p => panic!("{p:?}"),
    };
    assert!(g.enable && g.user == "opsadm" && g.created_by == "break-glass");
    assert_eq!(g.not_after, T0 + 2 + 3600, "breakglass_for defaults to 1h");
    assert_eq!(state_of(&d, &g.id, T0 + 3), GrantState::Live);
    let img = env.snapshot();
    let s = Snapshot::parse(&img).unwrap();
    let gate = s.grants_for_user("opsadm").next().unwrap();
    assert_eq!(gate.id(), g.id);
    assert_eq!(gate.flags() & GATE_ENABLE, GATE_ENABLE);
    let e = spend(&codes[1], T0 + 4).unwrap_err();
    assert!(e.1.contains("already used"), "{e:?}");
    let audit = env.audit();
    let used: Vec<&str> = audit
        .lines()
        .filter(|l| l.contains("\"breakglass.used\""))
        .collect();
    assert_eq!(used.len(), 1);
    assert!(used[0].contains("\"severity\":\"crit\""), "{}", used[0]);
    assert!(!audit.contains(&codes[0][3..]) && !audit.contains(&codes[1][3..]));
    // No code in the clear anywhere in the state directory.
    for e in walk(&env.path("state")) {
        let bytes = std::fs::read(&e).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        assert!(!text.contains(&codes[0][3..]), "{}", e.display());
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// Carol (local) with `--sudo ALL --revoke-on ioc` for 10 minutes from T0.
fn carol_sudo_all_revoking_ioc(d: &Daemon) -> jit_proto::Grant {
    add(
        d,
        GrantSpec {
            account: false,
            sudo: vec!["ALL".into()],
            revoke_on: vec!["ioc".into()],
            ..spec("carol", 600)
        },
        T0,
    )
    .unwrap()
}

fn report(
    d: &Daemon,
    grant: &str,
    command: &str,
    argv: &[&str],
    now: i64,
) -> Result<Payload, (ErrorCode, String)> {
    ask(
        d,
        ROOT,
        Request::ReportSudo {
            report: Box::new(jit_proto::message::SudoReport {
                user: "carol".into(),
                uid: 1001,
                grant: Some(grant.into()),
                command: command.into(),
                argv: argv.iter().map(|a| a.to_string()).collect(),
                runas: "root".into(),
                allowed: true,
                ..Default::default()
            }),
        },
        now,
    )
}

#[test]
fn jitd_confirms_sudo_approvals_with_its_own_state_and_ioc_commands() {
    let env = Env::new("confirm");
    env.install_sudo_conf();
    let d = env.daemon_with(T0, r#"ioc_commands = ["tcpdump", "/usr/bin/curl -T"]"#);
    let g = carol_sudo_all_revoking_ioc(&d);
    assert!(report(&d, &g.id, "/usr/bin/id", &[], T0).is_ok());
    // An uploading curl is in the operator's IOC list: the approval becomes a refusal and the
    // grant ends, though the plugin (which reads no config) approved it.
    let e = report(
        &d,
        &g.id,
        "/usr/bin/curl",
        &["-T", "/etc/shadow", "http://x"],
        T0 + 1,
    )
    .unwrap_err();
    assert_eq!(e.0, ErrorCode::Refused);
    assert!(e.1.contains("revoke-on ioc"), "{e:?}");
    assert_eq!(state_of(&d, &g.id, T0 + 1), GrantState::Revoked);
    // After the grant ended, an approval from a stale snapshot is not confirmed.
    let e = report(&d, &g.id, "/usr/bin/id", &[], T0 + 2).unwrap_err();
    assert!(e.1.contains("is not live"), "{e:?}");
    let audit = env.audit();
    assert_eq!(audit.matches("\"sudo.allowed\"").count(), 1, "{audit}");
    assert_eq!(audit.matches("\"sudo.denied\"").count(), 2, "{audit}");
    // A bad IOC entry is a configuration error, not silently ignored.
    assert!(Config::parse(r#"ioc_commands = ["ALL"]"#, None).is_err());
}

/// A copy of `sleep` whose file name (and so the process's comm, shown raw in
/// /proc/PID/status and /proc/PID/stat) is not UTF-8, run as `uid` with `groups`.
fn odd_named_sleeper(env: &Env, uid: u32, groups: &[u32]) -> Child {
    use std::os::unix::ffi::OsStrExt;
    let dir = env.path("bin");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let exe = dir.join(std::ffi::OsStr::from_bytes(b"\xff\xfeodd"));
    if !exe.exists() {
        std::fs::copy("/bin/sleep", &exe).unwrap();
    }
    let mut c = Command::new("setpriv");
    c.arg(format!("--reuid={uid}"))
        .arg(format!("--regid={uid}"));
    if groups.is_empty() {
        c.arg("--clear-groups");
    } else {
        let g: Vec<String> = groups.iter().map(u32::to_string).collect();
        c.arg(format!("--groups={}", g.join(",")));
    }
    let child = c.arg(&exe).arg("600").spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        let st = std::fs::read(format!("/proc/{}/status", child.id())).unwrap_or_default();
        if st.windows(5).any(|w| w == b"\xff\xfeodd") {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    child
}

fn enable_opsadm(d: &Daemon, now: i64) -> String {
    add(
        d,
        GrantSpec {
            account: false,
            enable: true,
            ..spec("opsadm", 600)
        },
        now,
    )
    .unwrap()
    .id
    .to_string()
}

#[test]
fn a_process_whose_name_is_not_utf8_does_not_survive_teardown() {
    // Review finding: /proc/PID/status and /proc/PID/stat show the comm raw; a user who runs
    // a program named with a byte that is not UTF-8 made read_to_string fail, so the scan
    // skipped the process and the teardown was recorded complete.
    let env = managed_env("oddname");
    let d = env.daemon_with(T0, MANAGED);
    let id = enable_opsadm(&d, T0);
    let mut shell = odd_named_sleeper(&env, OPSADM_UID, &[]);
    ask(&d, ROOT, Request::RevokeGrant { id, reason: None }, T0 + 5).unwrap();
    assert!(
        ended_by_jitd(&mut shell),
        "a comm that is not UTF-8 must not hide a process from teardown"
    );
}

#[test]
fn a_passwd_file_that_is_not_utf8_does_not_stop_revocation() {
    // Review finding: any local user can put a byte that is not UTF-8 into /etc/passwd with
    // chfn (shadow's chfn only warns about non-ASCII). jitd then could not read the local
    // files at all: a revocation never reached the snapshot, and the teardown of a managed
    // admin found no uid to end and was recorded complete.
    let env = managed_env("latin1");
    let d = env.daemon_with(T0, MANAGED);
    let id = enable_opsadm(&d, T0);
    let mut shell = sleeper(Some(OPSADM_UID));
    let mut passwd = std::fs::read(env.path("passwd")).unwrap();
    passwd.extend_from_slice(b"jos:x:4100700:4100700:Jos\xe9 Ruiz,,,:/home/jos:/bin/sh\n");
    std::fs::write(env.path("passwd"), passwd).unwrap();
    d.tick(T0 + 1);
    ask(
        &d,
        ROOT,
        Request::RevokeGrant {
            id: id.clone(),
            reason: None,
        },
        T0 + 5,
    )
    .unwrap();
    {
        let img = env.snapshot();
        let s = Snapshot::parse(&img).unwrap();
        assert!(
            s.grants_for_user("opsadm").next().is_none(),
            "the revoked grant must leave the snapshot"
        );
    }
    assert!(ended_by_jitd(&mut shell));
}

#[test]
fn a_grant_that_is_not_live_yet_does_not_shield_a_gid_from_teardown() {
    // Review finding: teardown spared processes holding a granted gid whenever another grant
    // of the person named the group and was not ended, even one still pending (or armed):
    // the process kept the group until that grant began, with no live grant giving it.
    let env = Env::new("pendinggid");
    const ERIN: u32 = 4_100_800;
    let mut passwd = std::fs::read_to_string(env.path("passwd")).unwrap();
    passwd.push_str(&format!("erin:x:{ERIN}:{ERIN}::/home/erin:/bin/sh\n"));
    std::fs::write(env.path("passwd"), passwd).unwrap();
    let d = env.daemon(T0);
    let grant = |start_in: i64| GrantSpec {
        account: false,
        groups: vec!["devs".into()],
        start_in_secs: start_in,
        ..spec("erin", 600)
    };
    let now_g = add(&d, grant(0), T0).unwrap();
    let later = add(&d, grant(3600), T0).unwrap();
    assert_eq!(later.state, GrantState::Pending);
    let mut shell = sleeper_with_groups(ERIN, &[50]);
    ask(
        &d,
        ROOT,
        Request::RevokeGrant {
            id: now_g.id.to_string(),
            reason: None,
        },
        T0 + 5,
    )
    .unwrap();
    assert!(
        ended_by_jitd(&mut shell),
        "gid 50 was held with no live grant for it"
    );
    // An armed (--mfa, not yet activated) grant gives no membership either.
    enroll(&d, "erin");
    let now_g = add(&d, grant(0), T0 + 10).unwrap();
    let armed = add(
        &d,
        GrantSpec {
            mfa: true,
            ..grant(0)
        },
        T0 + 10,
    )
    .unwrap();
    assert_eq!(state_of(&d, &armed.id, T0 + 10), GrantState::Armed);
    let mut shell = sleeper_with_groups(ERIN, &[50]);
    ask(
        &d,
        ROOT,
        Request::RevokeGrant {
            id: now_g.id.to_string(),
            reason: None,
        },
        T0 + 15,
    )
    .unwrap();
    assert!(
        ended_by_jitd(&mut shell),
        "an armed grant gives no membership"
    );
}

fn sleeper_with_groups(uid: u32, groups: &[u32]) -> Child {
    let g: Vec<String> = groups.iter().map(u32::to_string).collect();
    let child = Command::new("setpriv")
        .args([
            &format!("--reuid={uid}"),
            &format!("--regid={uid}"),
            &format!("--groups={}", g.join(",")),
            "sleep",
            "600",
        ])
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        let st =
            std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap_or_default();
        if st.contains(&format!("Uid:\t{uid}\t")) && st.contains("sleep") {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    child
}

#[test]
fn a_revocation_without_the_local_files_still_ends_everything() {
    // Review finding: with /etc/passwd unreadable the teardown of an --enable grant found no
    // uid to end and was recorded complete, and the snapshot was not rewritten.
    let env = managed_env("nopasswd");
    let d = env.daemon_with(T0, MANAGED);
    let id = enable_opsadm(&d, T0);
    let mut shell = sleeper(Some(OPSADM_UID));
    let saved = std::fs::read(env.path("passwd")).unwrap();
    std::fs::remove_file(env.path("passwd")).unwrap();
    ask(
        &d,
        ROOT,
        Request::RevokeGrant {
            id: id.clone(),
            reason: None,
        },
        T0 + 5,
    )
    .unwrap();
    // The last copy of /etc/passwd jitd read names the admin's uid: the processes end now,
    // and the revocation reaches the snapshot although the file is gone.
    assert!(ended_by_jitd(&mut shell));
    let img = env.snapshot();
    assert!(Snapshot::parse(&img)
        .unwrap()
        .grants_for_user("opsadm")
        .next()
        .is_none());
    let audit = env.audit();
    assert_eq!(
        audit.matches("\"snapshot.local_files_unreadable\"").count(),
        1,
        "audited once per episode: {audit}"
    );
    std::fs::write(env.path("passwd"), saved).unwrap();
    d.tick(T0 + 6);
}

#[test]
fn a_policy_revocation_keeps_terminal_escapes_out_of_the_end_reason() {
    // Review finding: the end reason of a revoke-on hit quoted the user's command and argv
    // raw; `jitctl grant show` printed it to root's terminal, escape sequences and all.
    let env = Env::new("escreason");
    env.install_sudo_conf();
    let d = env.daemon_with(T0, r#"ioc_commands = ["tcpdump"]"#);
    let g = carol_sudo_all_revoking_ioc(&d);
    let e = report(
        &d,
        &g.id,
        "/usr/sbin/tcpdump",
        &["-i", "any\u{1b}]0;owned\u{7}\u{1b}[2J\n"],
        T0 + 1,
    )
    .unwrap_err();
    assert_eq!(e.0, ErrorCode::Refused);
    let shown = match ask(
        &d,
        ROOT,
        Request::ShowGrant {
            id: g.id.to_string(),
        },
        T0 + 1,
    ) {
        Ok(Payload::Grant(g)) => g,
        r => panic!("{r:?}"),
    };
    assert_eq!(shown.state, GrantState::Revoked);
    let why = shown.end_reason.unwrap();
    assert!(why.contains("tcpdump"), "{why}");
    assert!(!why.chars().any(char::is_control), "{why:?}");
}

#[test]
fn an_armed_grant_keeps_the_account_but_not_the_sessions_of_an_ended_one() {
    let env = Env::new("armednext");
    let d = env.daemon(T0);
    enroll(&d, "alice");
    let first = add(&d, spec("alice", 600), T0).unwrap();
    let next = add(
        &d,
        GrantSpec {
            mfa: true,
            ..spec("alice", 1200)
        },
        T0,
    )
    .unwrap();
    assert_eq!(next.state, GrantState::Armed);
    let uid = first.uid.unwrap();
    assert_eq!(next.uid, Some(uid), "one identity, one uid");
    let mut shell = sleeper(Some(uid));
    ask(
        &d,
        ROOT,
        Request::RevokeGrant {
            id: first.id.to_string(),
            reason: None,
        },
        T0 + 5,
    )
    .unwrap();
    // The session logged in under the ended grant ends; the armed grant (no login yet: its
    // first code would have activated it) shields nobody.
    assert!(ended_by_jitd(&mut shell));
    // The account and its home stay for the armed grant's first login.
    let img = env.snapshot();
    assert!(Snapshot::parse(&img)
        .unwrap()
        .account_by_name("alice", T0 + 5)
        .is_some());
    assert!(env.path("home/alice").is_dir());
}
