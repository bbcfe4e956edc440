//! Every hook flow driven through [`run`] with a fake PAM handle and a fake world: the return
//! code per situation (the table in the crate documentation and the report), what is sent to
//! jitd, what is shown and what is logged.
//!
//! Ids in comments and test names (P1, X11, …) are rows of docs/threat-model.md.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;
use crate::host::{ConvError, UNKNOWN_TIME};
use crate::jitd::Secret;
use crate::local::{LocalUser, ManagedFile};
use jit_core::policy::window::LocalTime;
use jit_core::snapshot::build_snapshot;
use jit_core::types::*;
use jit_proto::client::ClientError;
use jit_proto::message::{ErrorCode, MfaPurpose, Payload};
use jit_proto::{Grant, Session};
use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::time::Duration;

const NOW: i64 = 1_800_000_000;

// ---------------------------------------------------------------- fakes

#[derive(Default)]
struct FakePam {
    user: Option<String>,
    service: String,
    rhost: Option<String>,
    tty: Option<String>,
    ruser: Option<String>,
    replies: VecDeque<Result<Option<Vec<u8>>, ConvError>>,
    prompts: Vec<String>,
    messages: Vec<String>,
    data: HashMap<&'static str, String>,
    refuse_data: bool,
}

impl FakePam {
    fn new(user: &str) -> Self {
        FakePam {
            user: Some(user.to_string()),
            service: "sshd".into(),
            rhost: Some("10.1.2.3".into()),
            tty: Some("ssh".into()),
            ..Default::default()
        }
    }

    fn reply(mut self, r: &str) -> Self {
        self.replies.push_back(Ok(Some(r.as_bytes().to_vec())));
        self
    }
}

impl Pam for FakePam {
    fn user(&mut self) -> Option<String> {
        self.user.clone()
    }
    fn service(&self) -> String {
        self.service.clone()
    }
    fn rhost(&self) -> Option<String> {
        self.rhost.clone()
    }
    fn tty(&self) -> Option<String> {
        self.tty.clone()
    }
    fn ruser(&self) -> Option<String> {
        self.ruser.clone()
    }
    fn prompt_secret(&mut self, prompt: &str) -> Result<Option<Secret>, ConvError> {
        self.prompts.push(prompt.to_string());
        match self.replies.pop_front() {
            Some(Ok(r)) => Ok(r.map(Secret::new)),
            Some(Err(e)) => Err(e),
            None => Err(ConvError),
        }
    }
    fn error_msg(&mut self, msg: &str) {
        self.messages.push(msg.to_string());
    }
    fn set_data(&mut self, key: &'static str, value: String) -> bool {
        if self.refuse_data {
            return false;
        }
        self.data.insert(key, value);
        true
    }
    fn get_data(&self, key: &'static str) -> Option<String> {
        self.data.get(key).cloned()
    }
}

type Responder = Box<dyn FnMut(&Request) -> Result<Response, ClientError>>;

struct FakeWorld {
    now: i64,
    local_time: LocalTime,
    snapshot: RefCell<Result<Vec<u8>, String>>,
    /// The gates delta next to it (grants added since), if any.
    delta: RefCell<Option<Vec<u8>>>,
    /// Account names the world-readable snapshot has.
    public_accounts: Vec<String>,
    passwd: HashMap<String, LocalUser>,
    managed: ManagedFile,
    responder: RefCell<Responder>,
    calls: RefCell<Vec<Request>>,
    timeouts: RefCell<Vec<Duration>>,
    logs: RefCell<Vec<(libc::c_int, String)>>,
    passwd_reads: Cell<usize>,
    snapshot_reads: Cell<usize>,
    managed_reads: Cell<usize>,
    /// Whether `gates_part` answers (an indexed gates file), with the minor the file states
    /// (its shard: the whole image, which answers as a shard of it does), and how often it
    /// was asked.
    by_shard: Cell<bool>,
    shard_minor: Cell<u16>,
    shard_reads: Cell<usize>,
}

impl FakeWorld {
    fn new(snapshot: Option<SnapshotData>) -> Self {
        let mut passwd = HashMap::new();
        passwd.insert("root".to_string(), LocalUser::Present { uid: Some(0) });
        passwd.insert("toor".to_string(), LocalUser::Present { uid: Some(0) });
        passwd.insert("alice".to_string(), LocalUser::Present { uid: Some(1000) });
        passwd.insert("admin".to_string(), LocalUser::Present { uid: Some(1001) });
        FakeWorld {
            now: NOW,
            local_time: LocalTime::new(0, 12, 0),
            snapshot: RefCell::new(match snapshot {
                Some(d) => Ok(build_snapshot(&d).unwrap()),
                None => Err("No such file or directory (os error 2)".into()),
            }),
            delta: RefCell::new(None),
            public_accounts: vec![],
            passwd,
            managed: ManagedFile::Missing,
            responder: RefCell::new(Box::new(|r| panic!("unexpected call to jitd: {r:?}"))),
            calls: RefCell::new(vec![]),
            timeouts: RefCell::new(vec![]),
            logs: RefCell::new(vec![]),
            passwd_reads: Cell::new(0),
            snapshot_reads: Cell::new(0),
            managed_reads: Cell::new(0),
            by_shard: Cell::new(false),
            shard_minor: Cell::new(jit_core::snapshot::format::MINOR),
            shard_reads: Cell::new(0),
        }
    }

    fn answer(self, f: impl FnMut(&Request) -> Result<Response, ClientError> + 'static) -> Self {
        *self.responder.borrow_mut() = Box::new(f);
        self
    }

    fn set_snapshot(&self, d: &SnapshotData) {
        *self.snapshot.borrow_mut() = Ok(build_snapshot(d).unwrap());
    }

    fn calls(&self) -> Vec<Request> {
        self.calls.borrow().clone()
    }

    fn log_text(&self) -> String {
        self.logs
            .borrow()
            .iter()
            .map(|(_, l)| l.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl World for FakeWorld {
    fn now(&self) -> i64 {
        self.now
    }
    fn local_time(&self, _now: i64) -> LocalTime {
        self.local_time
    }
    fn snapshot(&self) -> Result<jit_core::snapshot::file::Layers<Vec<u8>>, String> {
        self.snapshot_reads.set(self.snapshot_reads.get() + 1);
        self.snapshot
            .borrow()
            .clone()
            .map(|base| jit_core::snapshot::file::Layers {
                base,
                delta: self.delta.borrow().clone(),
            })
    }
    fn gates_part(&self, _name: &str) -> Option<jit_core::snapshot::keyed::GatesPart> {
        self.shard_reads.set(self.shard_reads.get() + 1);
        if !self.by_shard.get() {
            return None;
        }
        let bytes = self.snapshot.borrow().clone().ok()?;
        let serial = Snapshot::parse(&bytes).ok()?.serial();
        Some(jit_core::snapshot::keyed::GatesPart::from_parts(
            Some(bytes),
            self.delta.borrow().clone(),
            serial,
            self.shard_minor.get(),
        ))
    }
    fn public_account(&self, name: &str) -> bool {
        self.public_accounts.iter().any(|n| n == name)
    }
    fn passwd(&self, name: &str) -> LocalUser {
        self.passwd_reads.set(self.passwd_reads.get() + 1);
        self.passwd.get(name).copied().unwrap_or(LocalUser::Absent)
    }
    fn managed_file(&self) -> ManagedFile {
        self.managed_reads.set(self.managed_reads.get() + 1);
        self.managed.clone()
    }
    fn call(&self, req: &Request, timeout: Duration) -> Result<Response, ClientError> {
        self.calls.borrow_mut().push(req.clone());
        self.timeouts.borrow_mut().push(timeout);
        (self.responder.borrow_mut())(req)
    }
    fn log(&self, priority: libc::c_int, msg: &str) {
        self.logs.borrow_mut().push((priority, msg.to_string()));
    }
    fn caller_uid(&self) -> u32 {
        1001
    }
}

// ---------------------------------------------------------------- snapshots and replies

fn gate_grant(id: &str, user: &str, flags: u32) -> GateGrant {
    GateGrant {
        id: id.into(),
        user: user.into(),
        uid: if flags & GATE_ACCOUNT != 0 { 70001 } else { 0 },
        not_before: NOW - 60,
        not_after: NOW + 3600,
        flags,
        ..Default::default()
    }
}

fn account(name: &str, grant: &str) -> Account {
    Account {
        name: name.into(),
        uid: 70001,
        gid: 70001,
        gecos: "jit".into(),
        home: format!("/home/{name}").into(),
        shell: "/bin/bash".into(),
        grant_id: grant.into(),
        not_before: NOW - 60,
        not_after: NOW + 3600,
        flags: 0,
        ssh_keys: vec![],
    }
}

/// eve: a jit account (`g-e0e0`), no MFA. mia: a jit account that needs a code (`g-a1a1`).
/// admin: managed, no grant. ops: managed with an enable grant (`g-0909`).
fn data() -> SnapshotData {
    SnapshotData {
        generated_at: NOW - 1,
        accounts: vec![account("eve", "g-e0e0"), account("mia", "g-a1a1")],
        groups: vec![],
        grants: vec![
            gate_grant("g-e0e0", "eve", GATE_ACCOUNT),
            gate_grant("g-a1a1", "mia", GATE_ACCOUNT | GATE_MFA | GATE_ARMED),
            gate_grant("g-0909", "ops", GATE_ENABLE),
        ],
        managed: vec!["admin".into(), "ops".into()],
        uid_range: None,
    }
}

fn world() -> FakeWorld {
    let mut w = FakeWorld::new(Some(data()));
    w.passwd
        .insert("ops".into(), LocalUser::Present { uid: Some(1002) });
    w
}

fn ok(p: Payload) -> Result<Response, ClientError> {
    Ok(Response::ok(p))
}

fn verified(user: &str) -> Result<Response, ClientError> {
    ok(Payload::Verified {
        user: user.into(),
        activated: vec!["g-a1a1".into()],
    })
}

fn session_reply(req: &Request) -> Result<Response, ClientError> {
    match req {
        Request::OpenSession { session } => ok(Payload::Session(Box::new(Session {
            id: "s-5e5510000001".into(),
            user: session.user.clone(),
            grant: session.grant.clone(),
            pid: 42,
            pid_start: 7,
            service: session.service.clone(),
            tty: session.tty.clone(),
            rhost: session.rhost.clone(),
            opened_at: NOW,
        }))),
        Request::CloseSession { .. } => ok(Payload::Done {
            message: "closed".into(),
        }),
        other => panic!("{other:?}"),
    }
}

fn breakglass_grant(id: &str, user: &str) -> Grant {
    serde_json::from_value(serde_json::json!({
        "id": id, "user": user, "state": "live",
        "not_before": NOW, "not_after": NOW + 1800, "created_at": NOW,
        "created_by": "breakglass", "account": false, "uid": null, "groups": [],
        "ssh_keys": [], "reason": "break-glass", "ticket": "", "requested_by": "",
        "enable": true
    }))
    .unwrap()
}

fn go(hook: Hook, pam: &mut FakePam, w: &FakeWorld) -> Code {
    go_with(hook, pam, w, &Options::default(), 0)
}

fn go_with(hook: Hook, pam: &mut FakePam, w: &FakeWorld, opts: &Options, flags: u32) -> Code {
    contained(hook, |p| run(hook, pam, w, opts, flags, p))
}

const HOOKS: [Hook; 4] = [
    Hook::Authenticate,
    Hook::Account,
    Hook::OpenSession,
    Hook::CloseSession,
];

fn broken() -> Options {
    options::parse(&[b"bogus"])
}

// ---------------------------------------------------------------- not jit's business

#[test]
fn root_and_local_users_are_ignored_without_any_io() {
    for opts in [Options::default(), broken()] {
        for w in [world(), FakeWorld::new(None)] {
            for user in ["root", "toor", "alice"] {
                for hook in HOOKS {
                    let mut pam = FakePam::new(user);
                    assert_eq!(
                        go_with(hook, &mut pam, &w, &opts, 0),
                        Code::Ignore,
                        "{user}"
                    );
                    assert!(pam.prompts.is_empty() && pam.messages.is_empty(), "{user}");
                    assert!(pam.data.is_empty(), "{user}");
                }
            }
            assert!(
                w.calls().is_empty(),
                "no socket I/O for root or local users"
            );
        }
    }
    // root is decided by name: no file is read at all.
    let w = world();
    for hook in HOOKS {
        assert_eq!(go(hook, &mut FakePam::new("root"), &w), Code::Ignore);
    }
    assert_eq!(w.passwd_reads.get() + w.snapshot_reads.get(), 0);
}

#[test]
fn invalid_and_unknown_names_are_ignored() {
    let long = "a".repeat(16385);
    let root_long = format!("root{}", "t".repeat(16380));
    let w = world();
    for user in [
        "evil:0:0",
        "a\nroot:x:0:0:",
        "-oProxyCommand",
        "../../bin/ls",
        "a/b",
        "Eve",
        "",
        long.as_str(),
        root_long.as_str(),
        "nobody-known",
    ] {
        for hook in HOOKS {
            assert_eq!(
                go(hook, &mut FakePam::new(user), &w),
                Code::Ignore,
                "{user:?}"
            );
        }
    }
    assert!(w.calls().is_empty());
    // No user name at all.
    let mut pam = FakePam::new("x");
    pam.user = None;
    assert_eq!(go(Hook::Authenticate, &mut pam, &w), Code::Ignore);
    // A jit name the snapshot cannot vouch for: NSS cannot show it either.
    let w = FakeWorld::new(None);
    for hook in HOOKS {
        assert_eq!(go(hook, &mut FakePam::new("eve"), &w), Code::Ignore);
    }
    assert!(w.calls().is_empty());
}

#[test]
fn ignore_decisions_are_logged_only_with_debug() {
    let w = world();
    go(Hook::Authenticate, &mut FakePam::new("alice"), &w);
    assert!(w.logs.borrow().is_empty());
    let debug = options::parse(&[b"debug"]);
    go_with(
        Hook::Authenticate,
        &mut FakePam::new("alice"),
        &w,
        &debug,
        0,
    );
    let text = w.log_text();
    assert!(
        text.contains("pam_jit(sshd:auth): alice: PAM_IGNORE (local user, not managed)"),
        "{text}"
    );
}

#[test]
fn broken_options_are_logged_and_refuse_jit_identities() {
    let w = world();
    assert_eq!(
        go_with(
            Hook::Authenticate,
            &mut FakePam::new("alice"),
            &w,
            &broken(),
            0
        ),
        Code::Ignore
    );
    assert!(w.log_text().contains("unknown module option \"bogus\""));
    for (user, hook, want) in [
        ("eve", Hook::Authenticate, Code::AuthErr),
        ("eve", Hook::Account, Code::PermDenied),
        ("eve", Hook::OpenSession, Code::SessionErr),
        ("eve", Hook::CloseSession, Code::SessionErr),
        ("ops", Hook::Authenticate, Code::AuthErr),
        ("ops", Hook::Account, Code::PermDenied),
        ("admin", Hook::Authenticate, Code::AuthErr),
    ] {
        let mut pam = FakePam::new(user).reply("123456");
        assert_eq!(
            go_with(hook, &mut pam, &w, &broken(), 0),
            want,
            "{user} {hook:?}"
        );
        assert!(pam.prompts.is_empty(), "no prompt with broken options");
    }
    assert!(w.calls().is_empty());
}

// ---------------------------------------------------------------- jit identities

#[test]
fn jit_login_without_mfa() {
    let w = world().answer(session_reply);
    let mut pam = FakePam::new("eve");
    assert_eq!(
        go(Hook::Authenticate, &mut pam, &w),
        Code::Ignore,
        "a gate, not an authenticator"
    );
    assert!(pam.prompts.is_empty());
    assert_eq!(go(Hook::Account, &mut pam, &w), Code::Success);
    assert_eq!(go(Hook::OpenSession, &mut pam, &w), Code::Success);
    assert_eq!(
        pam.data.get(DATA_SESSION).map(String::as_str),
        Some("s-5e5510000001")
    );
    assert_eq!(go(Hook::CloseSession, &mut pam, &w), Code::Success);
    let calls = w.calls();
    assert_eq!(calls.len(), 2);
    match &calls[0] {
        Request::OpenSession { session } => assert_eq!(
            **session,
            SessionSpec {
                user: "eve".into(),
                grant: "g-e0e0".into(),
                service: "sshd".into(),
                tty: "ssh".into(),
                rhost: "10.1.2.3".into(),
            }
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        calls[1],
        Request::CloseSession {
            user: "eve".into(),
            session: Some("s-5e5510000001".into())
        }
    );
    assert!(w
        .timeouts
        .borrow()
        .iter()
        .all(|t| *t == Duration::from_secs(2)));
    let text = w.log_text();
    assert!(
        text.contains("pam_jit(sshd:auth): eve (jit): PAM_IGNORE: grant g-e0e0"),
        "{text}"
    );
    assert!(
        text.contains(
            "pam_jit(sshd:session): eve (jit): PAM_SUCCESS: session s-5e5510000001 opened"
        ),
        "{text}"
    );
    assert!(pam.messages.is_empty());
}

#[test]
fn session_items_absent() {
    let w = world().answer(session_reply);
    let mut pam = FakePam::new("eve");
    pam.tty = None;
    pam.rhost = None;
    pam.service = "su".into();
    assert_eq!(go(Hook::OpenSession, &mut pam, &w), Code::Success);
    match &w.calls()[0] {
        Request::OpenSession { session } => {
            assert_eq!((session.tty.as_str(), session.rhost.as_str()), ("", ""));
            assert_eq!(session.service, "su");
        }
        other => panic!("{other:?}"),
    }
    // Close without a stored id still tells jitd who.
    let mut fresh = FakePam::new("eve");
    assert_eq!(go(Hook::CloseSession, &mut fresh, &w), Code::Success);
    assert_eq!(
        w.calls()[1],
        Request::CloseSession {
            user: "eve".into(),
            session: None
        }
    );
}

#[test]
fn jit_login_with_mfa() {
    let w = world().answer(|r| match r {
        Request::VerifyMfa { code, .. } if code == "123456" => verified("mia"),
        Request::VerifyMfa { .. } => Ok(Response::error(ErrorCode::Refused, "wrong code")),
        other => session_reply(other),
    });
    let mut pam = FakePam::new("mia").reply("123456");
    assert_eq!(go(Hook::Authenticate, &mut pam, &w), Code::Success);
    assert_eq!(pam.prompts, [CODE_PROMPT]);
    assert_eq!(pam.data.get(DATA_MFA_OK).map(String::as_str), Some("mia"));
    match &w.calls()[0] {
        Request::VerifyMfa {
            user,
            code,
            purpose,
            service,
            grant,
            caller,
        } => {
            assert_eq!(
                caller.as_ref(),
                Some(&jit_proto::MfaCaller {
                    uid: Some(1001),
                    ruser: String::new(),
                    rhost: "10.1.2.3".into(),
                }),
                "the caller goes to jitd for lockout keying"
            );
            assert_eq!((user.as_str(), code.as_str()), ("mia", "123456"));
            assert_eq!(*purpose, MfaPurpose::Login);
            assert_eq!(service, "sshd");
            assert_eq!(grant.as_deref(), Some("g-a1a1"));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(go(Hook::Account, &mut pam, &w), Code::Success);
    assert_eq!(go(Hook::OpenSession, &mut pam, &w), Code::Success);
    assert!(!w.log_text().contains("123456"), "the code is never logged");

    // A wrong code: refused, nothing remembered, and the account phase refuses.
    let mut pam = FakePam::new("mia").reply("424242");
    assert_eq!(go(Hook::Authenticate, &mut pam, &w), Code::AuthErr);
    assert_eq!(pam.messages, ["jit: verification code refused: wrong code"]);
    assert_eq!(go(Hook::Account, &mut pam, &w), Code::PermDenied);
    assert!(!w.log_text().contains("424242"));
}

#[test]
fn account_without_auth_is_refused_p12() {
    let w = world();
    let mut pam = FakePam::new("mia");
    assert_eq!(go(Hook::Account, &mut pam, &w), Code::PermDenied);
    assert_eq!(
        pam.messages,
        ["jit: grant g-a1a1 needs a verification code at login"]
    );
    // Proof for another user on the same handle does not count.
    let mut pam = FakePam::new("mia");
    pam.data.insert(DATA_MFA_OK, "eve".into());
    assert_eq!(go(Hook::Account, &mut pam, &w), Code::PermDenied);
    assert!(w.calls().is_empty());
}

#[test]
fn a_second_auth_forgets_the_first_proof() {
    let answers = RefCell::new(VecDeque::from([verified("mia"), Err(ClientError::Timeout)]));
    let w = world().answer(move |_| answers.borrow_mut().pop_front().unwrap());
    let mut pam = FakePam::new("mia").reply("123456").reply("654321");
    assert_eq!(go(Hook::Authenticate, &mut pam, &w), Code::Success);
    assert_eq!(go(Hook::Authenticate, &mut pam, &w), Code::AuthErr);
    assert_eq!(go(Hook::Account, &mut pam, &w), Code::PermDenied);
}

#[test]
fn mfa_failures_never_admit_p1() {
    type Reply = Box<dyn Fn() -> Result<Response, ClientError>>;
    let failures: Vec<(&str, Reply)> = vec![
        ("timeout", Box::new(|| Err(ClientError::Timeout))),
        (
            "impostor",
            Box::new(|| Err(ClientError::ImpostorPeer(1001))),
        ),
        (
            "unreachable",
            Box::new(|| {
                Err(ClientError::Unreachable(std::io::Error::from_raw_os_error(
                    libc::ENOENT,
                )))
            }),
        ),
        (
            "bad reply",
            Box::new(|| Err(ClientError::BadResponse("x".into()))),
        ),
        (
            "busy",
            Box::new(|| Ok(Response::error(ErrorCode::Busy, "busy"))),
        ),
        (
            "internal",
            Box::new(|| Ok(Response::error(ErrorCode::Internal, "disk full"))),
        ),
        ("other user", Box::new(|| verified("eve"))),
        (
            "wrong payload",
            Box::new(|| {
                ok(Payload::Done {
                    message: "ok".into(),
                })
            }),
        ),
    ];
    for (what, f) in failures {
        let w = world().answer(move |_| f());
        let mut pam = FakePam::new("mia").reply("123456");
        assert_eq!(
            go(Hook::Authenticate, &mut pam, &w),
            Code::AuthErr,
            "{what}"
        );
        assert_eq!(
            pam.data.get(DATA_MFA_OK).map(String::as_str),
            Some(""),
            "{what}"
        );
        assert_eq!(pam.messages.len(), 1, "{what}");
        assert!(pam.messages[0].starts_with("jit: "), "{what}");
        assert_eq!(go(Hook::Account, &mut pam, &w), Code::PermDenied, "{what}");
    }
    let w = world().answer(|_| Err(ClientError::ImpostorPeer(1001)));
    let mut pam = FakePam::new("mia").reply("123456");
    go(Hook::Authenticate, &mut pam, &w);
    assert!(pam.messages[0].contains("not root"), "{:?}", pam.messages);
}

#[test]
fn no_code_no_call() {
    let w = world();
    let mut replies: Vec<Result<Option<Vec<u8>>, ConvError>> =
        vec![Ok(Some(vec![])), Ok(None), Err(ConvError)];
    for r in replies.drain(..) {
        let mut pam = FakePam::new("mia");
        pam.replies.push_back(r);
        assert_eq!(go(Hook::Authenticate, &mut pam, &w), Code::AuthErr);
        assert_eq!(pam.prompts.len(), 1);
    }
    // No conversation reply queued at all (the fake fails the conversation).
    assert_eq!(
        go(Hook::Authenticate, &mut FakePam::new("mia"), &w),
        Code::AuthErr
    );
    assert!(w.calls().is_empty());
}

#[test]
fn a_huge_code_is_cut_and_still_sent() {
    let w = world().answer(|r| match r {
        Request::VerifyMfa { code, .. } => {
            assert_eq!(code.len(), jitd::MAX_CODE_BYTES);
            Ok(Response::error(ErrorCode::Refused, "wrong code"))
        }
        other => panic!("{other:?}"),
    });
    let mut pam = FakePam::new("mia");
    pam.replies.push_back(Ok(Some(vec![b'7'; 1 << 20])));
    assert_eq!(go(Hook::Authenticate, &mut pam, &w), Code::AuthErr);
    assert_eq!(w.calls().len(), 1, "jitd counts it as a failure");
}

#[test]
fn module_data_refused_means_no_login() {
    let w = world().answer(|_| verified("mia"));
    let mut pam = FakePam::new("mia").reply("123456");
    pam.refuse_data = true;
    assert_eq!(go(Hook::Authenticate, &mut pam, &w), Code::AuthErr);
    assert!(w.calls().is_empty(), "refused before the code is spent");
}

#[test]
fn ended_not_yet_and_conditions() {
    let mut d = data();
    d.grants[0].not_after = NOW; // eve's grant ends exactly now
    let w = FakeWorld::new(Some(d.clone()));
    let mut pam = FakePam::new("eve");
    assert_eq!(go(Hook::Authenticate, &mut pam, &w), Code::AuthErr);
    assert_eq!(go(Hook::Account, &mut pam, &w), Code::AcctExpired);
    assert_eq!(go(Hook::OpenSession, &mut pam, &w), Code::SessionErr);
    assert_eq!(pam.messages, ["jit: grant g-e0e0 has ended"; 3]);

    d.grants[0].not_after = NOW + 10;
    d.grants[0].not_before = NOW + 1;
    let w = FakeWorld::new(Some(d.clone()));
    let mut pam = FakePam::new("eve");
    assert_eq!(go(Hook::Account, &mut pam, &w), Code::PermDenied);
    assert_eq!(pam.messages, ["jit: grant g-e0e0 is not valid yet"]);

    d.grants[0].not_before = NOW - 1;
    d.grants[0].lists_mut().from = vec!["192.0.2.0/24".into()];
    let w = FakeWorld::new(Some(d.clone()));
    let mut pam = FakePam::new("eve");
    assert_eq!(go(Hook::Authenticate, &mut pam, &w), Code::AuthErr);
    assert_eq!(
        pam.messages,
        ["jit: grant g-e0e0 allows logins from 192.0.2.0/24 only (this client: 10.1.2.3)"]
    );
    assert_eq!(go(Hook::Account, &mut pam, &w), Code::PermDenied);
    let mut pam = FakePam::new("eve");
    pam.rhost = Some("192.0.2.9".into());
    assert_eq!(go(Hook::Account, &mut pam, &w), Code::Success);

    d.grants[0].lists_mut().from = vec![];
    d.grants[0].lists_mut().services = vec!["login".into()];
    d.grants[0].lists_mut().windows = vec!["Mon-Fri 09:00-18:00".into()];
    let mut w = FakeWorld::new(Some(d.clone()));
    let mut pam = FakePam::new("eve");
    assert_eq!(
        go(Hook::Account, &mut pam, &w),
        Code::PermDenied,
        "sshd is not login"
    );
    pam.service = "login".into();
    assert_eq!(go(Hook::Account, &mut pam, &w), Code::Success);
    w.local_time = LocalTime::new(6, 12, 0);
    assert_eq!(go(Hook::Account, &mut pam, &w), Code::PermDenied, "Sunday");
    w.local_time = UNKNOWN_TIME;
    assert_eq!(
        go(Hook::Account, &mut pam, &w),
        Code::PermDenied,
        "unknown time"
    );
    assert!(w.calls().is_empty());
}

#[test]
fn pam_silent_shows_nothing() {
    let w = world();
    let mut pam = FakePam::new("mia");
    let code = go_with(Hook::Account, &mut pam, &w, &Options::default(), PAM_SILENT);
    assert_eq!(code, Code::PermDenied);
    assert!(pam.messages.is_empty());
    assert!(
        w.log_text().contains("needs a verification code"),
        "still logged"
    );
}

#[test]
fn sessions_fail_closed_when_jitd_fails() {
    let failures: [fn() -> Result<Response, ClientError>; 4] = [
        || Err(ClientError::Timeout),
        || Err(ClientError::ImpostorPeer(1001)),
        || Ok(Response::error(ErrorCode::Internal, "state not writable")),
        || {
            ok(Payload::Done {
                message: "?".into(),
            })
        },
    ];
    for f in failures {
        let w = world().answer(move |_| f());
        let mut pam = FakePam::new("eve");
        assert_eq!(go(Hook::OpenSession, &mut pam, &w), Code::SessionErr);
        assert!(!pam.data.contains_key(DATA_SESSION));
        assert_eq!(pam.messages.len(), 1);
        assert!(pam.messages[0].starts_with("jit: cannot register the session with jitd"));
        // Close accepts any `ok` reply; the rest fail.
        let want = match f() {
            Ok(Response::Ok { .. }) => Code::Success,
            _ => Code::SessionErr,
        };
        let mut pam = FakePam::new("eve");
        assert_eq!(go(Hook::CloseSession, &mut pam, &w), want);
        assert!(pam.messages.is_empty(), "nothing shown at close");
        if want == Code::SessionErr {
            assert!(w.log_text().contains("session (no id) closed failed"));
        }
    }
}

#[test]
fn snapshot_replaced_by_garbage() {
    let w = world();
    *w.snapshot.borrow_mut() = Ok(b"not a snapshot".to_vec());
    // eve can no longer be classified (no trusted snapshot): ignored, as NSS cannot show her.
    assert_eq!(
        go(Hook::Account, &mut FakePam::new("eve"), &w),
        Code::Ignore
    );
    // If the world-readable snapshot still has her account (NSS shows her), she is a jit
    // account without gate records: refused, in every hook that decides.
    let mut w = w;
    w.public_accounts = vec!["eve".into()];
    for hook in [Hook::Authenticate, Hook::Account] {
        let mut pam = FakePam::new("eve");
        assert_ne!(go(hook, &mut pam, &w), Code::Ignore, "{hook:?}");
        assert_ne!(
            go(hook, &mut FakePam::new("eve"), &w),
            Code::Success,
            "{hook:?}"
        );
    }
    assert_eq!(
        go(Hook::Account, &mut FakePam::new("carol"), &w),
        Code::Ignore,
        "a name the public snapshot does not have stays ignored"
    );
    // admin is in the durable list: managed, and refused.
    w.managed = ManagedFile::Names(vec!["admin".into()]);
    let mut pam = FakePam::new("admin");
    assert_eq!(go(Hook::Account, &mut pam, &w), Code::PermDenied);
    assert!(pam.messages[0].contains("no trusted grant snapshot"));
    assert!(
        w.log_text().contains("snapshot rejected"),
        "{}",
        w.log_text()
    );
}

#[test]
fn a_malformed_passwd_line_does_not_bypass_the_gate() {
    // /etc/passwd has a line for mia that glibc skips (no numeric uid): NSS shows mia's jit
    // account, so her grant's code is still required.
    let mut w = world();
    w.passwd
        .insert("mia".into(), LocalUser::Present { uid: None });
    let mut pam = FakePam::new("mia");
    assert_eq!(go(Hook::Account, &mut pam, &w), Code::PermDenied);
    assert_eq!(go(Hook::Authenticate, &mut pam, &w), Code::AuthErr);
}

// ---------------------------------------------------------------- managed admins

#[test]
fn managed_with_an_enable_grant() {
    let w = world().answer(session_reply);
    let mut pam = FakePam::new("ops");
    assert_eq!(
        go(Hook::Authenticate, &mut pam, &w),
        Code::Ignore,
        "pam_unix checks the password"
    );
    assert_eq!(go(Hook::Account, &mut pam, &w), Code::Success);
    assert_eq!(go(Hook::OpenSession, &mut pam, &w), Code::Success);
    assert_eq!(go(Hook::CloseSession, &mut pam, &w), Code::Success);
    // With MFA on the enable grant, a code is asked.
    let mut d = data();
    d.grants[2].flags |= GATE_MFA;
    let mut w = FakeWorld::new(Some(d)).answer(|_| verified("ops"));
    w.passwd
        .insert("ops".into(), LocalUser::Present { uid: Some(1002) });
    let mut pam = FakePam::new("ops").reply("123456");
    assert_eq!(go(Hook::Account, &mut pam, &w), Code::PermDenied);
    // The code adds to the admin's password, it does not replace it: auth passes the login
    // on to pam_unix (PAM_IGNORE), and account then sees the code proved on this handle.
    assert_eq!(go(Hook::Authenticate, &mut pam, &w), Code::Ignore);
    assert_eq!(go(Hook::Account, &mut pam, &w), Code::Success);
    // A jit account has no password: its code (after the ssh key) completes auth.
    let w = world().answer(|_| verified("mia"));
    let mut pam = FakePam::new("mia").reply("123456");
    assert_eq!(go(Hook::Authenticate, &mut pam, &w), Code::Success);
}

#[test]
fn managed_without_a_grant_x11() {
    let w = world();
    let mut pam = FakePam::new("admin");
    assert_eq!(go(Hook::Account, &mut pam, &w), Code::PermDenied);
    assert_eq!(pam.messages, ["jit: no grant enables admin"]);
    assert_eq!(go(Hook::OpenSession, &mut pam, &w), Code::SessionErr);
    // auth: the break-glass prompt; cancelled.
    let mut pam = FakePam::new("admin").reply("");
    assert_eq!(go(Hook::Authenticate, &mut pam, &w), Code::AuthErr);
    assert_eq!(
        pam.prompts,
        ["jit: no grant enables admin. Break-glass code (empty to cancel): "]
    );
    assert_eq!(pam.messages, ["jit: no break-glass code given"]);
    assert!(w.calls().is_empty());
    // A managed admin is refused without a snapshot too (the durable list), with no prompt.
    let mut w = FakeWorld::new(None);
    w.managed = ManagedFile::Names(vec!["admin".into()]);
    for (hook, want) in [
        (Hook::Authenticate, Code::AuthErr),
        (Hook::Account, Code::PermDenied),
        (Hook::OpenSession, Code::SessionErr),
    ] {
        let mut pam = FakePam::new("admin").reply("CODE");
        assert_eq!(go(hook, &mut pam, &w), want);
        assert!(pam.prompts.is_empty());
    }
    assert!(w.calls().is_empty());
    assert!(w.managed_reads.get() > 0);
}

#[test]
fn breakglass() {
    let w = world().answer(|r| match r {
        Request::UseBreakglass {
            account,
            code,
            service,
            rhost,
            caller_uid,
        } => {
            assert_eq!(
                (
                    account.as_str(),
                    service.as_str(),
                    rhost.as_str(),
                    *caller_uid
                ),
                ("admin", "sshd", "10.1.2.3", Some(1001))
            );
            if code == "WXYZ-1234" {
                ok(Payload::Grant(Box::new(breakglass_grant(
                    "g-b6b6", "admin",
                ))))
            } else {
                Ok(Response::error(
                    ErrorCode::Refused,
                    "no such break-glass code",
                ))
            }
        }
        other => panic!("{other:?}"),
    });
    let mut pam = FakePam::new("admin").reply("nope");
    assert_eq!(go(Hook::Authenticate, &mut pam, &w), Code::AuthErr);
    assert_eq!(
        pam.messages,
        ["jit: break-glass code refused: no such break-glass code"]
    );

    let mut pam = FakePam::new("admin").reply("WXYZ-1234");
    assert_eq!(go(Hook::Authenticate, &mut pam, &w), Code::Success);
    assert_eq!(
        pam.data.get(DATA_BREAKGLASS).map(String::as_str),
        Some("g-b6b6")
    );
    assert!(!w.log_text().contains("WXYZ-1234"));
    // Until jitd's snapshot shows the emergency grant, the account phase still refuses ...
    assert_eq!(go(Hook::Account, &mut pam, &w), Code::PermDenied);
    assert!(w
        .log_text()
        .contains("break-glass grant g-b6b6 from auth is not in the snapshot"));
    // ... and once it does (an enable grant without MFA), it passes: read fresh per hook.
    let mut d = data();
    d.grants.push(gate_grant("g-b6b6", "admin", GATE_ENABLE));
    w.set_snapshot(&d);
    assert_eq!(go(Hook::Account, &mut pam, &w), Code::Success);

    // jitd down: refused.
    let w = world().answer(|_| Err(ClientError::Timeout));
    let mut pam = FakePam::new("admin").reply("WXYZ-1234");
    assert_eq!(go(Hook::Authenticate, &mut pam, &w), Code::AuthErr);
    assert!(pam.messages[0].starts_with("jit: cannot check the break-glass code"));
    // A grant for someone else is not accepted.
    let w = world().answer(|_| ok(Payload::Grant(Box::new(breakglass_grant("g-b6b6", "ops")))));
    let mut pam = FakePam::new("admin").reply("WXYZ-1234");
    assert_eq!(go(Hook::Authenticate, &mut pam, &w), Code::AuthErr);
}

#[test]
fn managed_with_a_refused_grant_hears_why_before_break_glass() {
    let mut d = data();
    d.grants[2].lists_mut().services = vec!["login".into()];
    let mut w = FakeWorld::new(Some(d));
    w.passwd
        .insert("ops".into(), LocalUser::Present { uid: Some(1002) });
    let mut pam = FakePam::new("ops").reply("");
    assert_eq!(go(Hook::Authenticate, &mut pam, &w), Code::AuthErr);
    assert_eq!(
        pam.messages[0],
        "jit: grant g-0909 allows logins through login only (this login: sshd)"
    );
    assert_eq!(pam.prompts.len(), 1);
}

// ---------------------------------------------------------------- panics (docs/threat-model.md#x10)

#[test]
fn panics_map_to_the_safe_answer() {
    let prev = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    for hook in HOOKS {
        // Before classification: denied.
        assert_eq!(contained(hook, |_| panic!("boom")), hook.denial());
        // After an ignore classification: ignored.
        assert_eq!(
            contained(hook, |p| {
                p.ignored = true;
                panic!("boom")
            }),
            Code::Ignore
        );
        assert_eq!(contained(hook, |_| Code::Success), Code::Success);
    }
    // A panic deep inside a jit flow (jitd's answer) is a denial.
    let w = world().answer(|_| panic!("boom"));
    let mut pam = FakePam::new("mia").reply("123456");
    assert_eq!(go(Hook::Authenticate, &mut pam, &w), Code::AuthErr);
    let mut pam = FakePam::new("eve");
    assert_eq!(go(Hook::OpenSession, &mut pam, &w), Code::SessionErr);
    std::panic::set_hook(prev);
    assert_eq!(Hook::Authenticate.denial(), Code::AuthErr);
    assert_eq!(Hook::Account.denial(), Code::PermDenied);
    assert_eq!(Hook::OpenSession.denial(), Code::SessionErr);
    assert_eq!(Hook::CloseSession.denial(), Code::SessionErr);
}

#[test]
fn codes_map_to_pam() {
    assert_eq!(Code::Ignore.to_pam(), PamResultCode::PAM_IGNORE);
    assert_eq!(Code::Success.to_pam(), PamResultCode::PAM_SUCCESS);
    assert_eq!(Code::AuthErr.to_pam(), PamResultCode::PAM_AUTH_ERR);
    assert_eq!(Code::PermDenied.to_pam(), PamResultCode::PAM_PERM_DENIED);
    assert_eq!(Code::AcctExpired.to_pam(), PamResultCode::PAM_ACCT_EXPIRED);
    assert_eq!(Code::SessionErr.to_pam(), PamResultCode::PAM_SESSION_ERR);
}

#[test]
fn timeout_option_reaches_jitd_calls() {
    let w = world().answer(session_reply);
    let opts = options::parse(&[b"timeout=0.5"]);
    let mut pam = FakePam::new("eve");
    assert_eq!(
        go_with(Hook::OpenSession, &mut pam, &w, &opts, 0),
        Code::Success
    );
    assert_eq!(*w.timeouts.borrow(), [Duration::from_millis(500)]);
}

/// jitd writes the gates file before the public snapshot: right after a revocation NSS may
/// still show an account the gates file no longer has. Such a name is a jit account without a
/// grant (refused), not an unknown name (ignored, which would leave the login to pam_unix).
#[test]
fn account_only_in_the_public_snapshot_is_refused() {
    let mut w = world();
    w.public_accounts = vec!["zed".into()];
    assert_eq!(
        go(Hook::Authenticate, &mut FakePam::new("zed"), &w),
        Code::AuthErr
    );
    assert_eq!(
        go(Hook::Account, &mut FakePam::new("zed"), &w),
        Code::PermDenied
    );
    assert_eq!(
        go(Hook::Account, &mut FakePam::new("nosuchuser"), &w),
        Code::Ignore
    );
}

/// A grant added since the gates file was written is in its delta: pam_jit reads it over a
/// base it names, and ignores one that names another base (a newer base then holds it).
#[test]
fn a_grant_in_the_gates_delta_is_gated_like_one_in_the_file() {
    use jit_core::snapshot::{build_snapshot_with, BuildOptions};
    let base = |serial| {
        build_snapshot_with(
            &data(),
            &BuildOptions {
                serial,
                ..Default::default()
            },
        )
        .unwrap()
    };
    let mut zed = account("zed", "g-2ed0");
    zed.uid = 70002;
    zed.gid = 70002;
    let mut gate = gate_grant("g-2ed0", "zed", GATE_ACCOUNT);
    gate.uid = 70002;
    gate.lists_mut().from = vec!["192.0.2.0/24".into()];
    let delta = build_snapshot_with(
        &SnapshotData {
            accounts: vec![zed],
            grants: vec![gate],
            managed: vec!["admin".into(), "ops".into()],
            ..data()
        }
        .without_records_of(&["eve", "mia", "ops"]),
        &BuildOptions {
            delta_of: Some([5, 0, 0, 0]),
            ..Default::default()
        },
    )
    .unwrap();
    // From the whole file, and from zed's shard with the delta over it (the fake's shard is
    // the whole image, which answers as a shard does: jit_core's keyed tests show that).
    for by_shard in [false, true] {
        let w = world();
        w.by_shard.set(by_shard);
        *w.snapshot.borrow_mut() = Ok(base(5));
        *w.delta.borrow_mut() = Some(delta.clone());
        let mut pam = FakePam::new("zed");
        pam.rhost = Some("192.0.2.9".into());
        assert_eq!(go(Hook::Account, &mut pam, &w), Code::Success);
        // The delta's conditions hold like the file's.
        let mut far = FakePam::new("zed");
        far.rhost = Some("10.1.2.3".into());
        assert_eq!(go(Hook::Account, &mut far, &w), Code::PermDenied);
        // eve (in the base) is unchanged by the delta.
        assert_eq!(
            go(Hook::Account, &mut FakePam::new("eve"), &w),
            Code::Success
        );
        // Over another base (serial 6) the delta is not read: zed is unknown to jit here.
        *w.snapshot.borrow_mut() = Ok(base(6));
        let mut pam = FakePam::new("zed");
        pam.rhost = Some("192.0.2.9".into());
        assert_ne!(go(Hook::Account, &mut pam, &w), Code::Success);
        // Garbage in place of the delta: the base alone.
        *w.snapshot.borrow_mut() = Ok(base(5));
        *w.delta.borrow_mut() = Some(b"not a delta".to_vec());
        assert_ne!(go(Hook::Account, &mut pam, &w), Code::Success);
        assert_eq!(
            go(Hook::Account, &mut FakePam::new("eve"), &w),
            Code::Success
        );
        if by_shard {
            assert_eq!(w.snapshot_reads.get(), 0, "the whole gates file was read");
        }
    }
}

trait WithoutRecords {
    fn without_records_of(self, users: &[&str]) -> Self;
}

impl WithoutRecords for SnapshotData {
    /// The data without the named users' accounts and gate records (a delta holds only what
    /// was added).
    fn without_records_of(mut self, users: &[&str]) -> Self {
        self.accounts.retain(|a| !users.contains(&a.name.as_ref()));
        self.grants.retain(|g| !users.contains(&g.user.as_ref()));
        self
    }
}

/// A login costs the person's shard of the gates file, not the whole file (which grows with
/// the grants on the host): a local user is told apart from the managed ones by it, and (format
/// 1.8, whose shards hold a person's account records too) a jit user's or managed admin's login
/// is decided from it. A file written before 1.8 decides gated people from the whole file; one
/// without the index (or unreadable that way) everyone.
#[test]
fn a_login_costs_the_persons_shard_not_the_whole_gates_file() {
    let w = world().answer(session_reply);
    w.by_shard.set(true);
    for hook in HOOKS {
        assert_eq!(go(hook, &mut FakePam::new("alice"), &w), Code::Ignore);
    }
    assert_eq!(w.shard_reads.get(), HOOKS.len());
    // A managed admin without a grant, one with an enable grant, a jit user: from the shard.
    assert_eq!(
        go(Hook::Authenticate, &mut FakePam::new("admin"), &w),
        Code::AuthErr
    );
    assert_eq!(
        go(Hook::Account, &mut FakePam::new("ops"), &w),
        Code::Success
    );
    // A whole login of eve's on one handle: auth, account, session open and close.
    let mut eve = FakePam::new("eve");
    let want = [Code::Ignore, Code::Success, Code::Success, Code::Success];
    for (hook, want) in HOOKS.into_iter().zip(want) {
        assert_eq!(go(hook, &mut eve, &w), want, "{hook:?}");
    }
    assert_eq!(w.calls().len(), 2, "the session opened and closed");
    assert_eq!(w.snapshot_reads.get(), 0, "the whole gates file was read");
    // root and uid-0 accounts never ask the shard; a name nobody knows does, and is ignored.
    let before = w.shard_reads.get();
    for user in ["root", "toor"] {
        go(Hook::Authenticate, &mut FakePam::new(user), &w);
    }
    assert_eq!(w.shard_reads.get(), before);
    assert_eq!(
        go(Hook::Authenticate, &mut FakePam::new("nosuchuser"), &w),
        Code::Ignore
    );
    assert_eq!(w.snapshot_reads.get(), 0);
    // A 1.7 file: its shards tell a local user (ignored at once) but not the rest of a
    // person's records: the whole file decides the gated, the same way.
    w.shard_minor.set(7);
    assert_eq!(
        go(Hook::Authenticate, &mut FakePam::new("alice"), &w),
        Code::Ignore
    );
    assert_eq!(w.snapshot_reads.get(), 0);
    assert_eq!(
        go(Hook::Account, &mut FakePam::new("eve"), &w),
        Code::Success
    );
    assert_eq!(w.snapshot_reads.get(), 1);
    // No shard to be had: the whole file, the same decisions.
    w.by_shard.set(false);
    assert_eq!(
        go(Hook::Authenticate, &mut FakePam::new("alice"), &w),
        Code::Ignore
    );
    assert_eq!(
        go(Hook::Account, &mut FakePam::new("eve"), &w),
        Code::Success
    );
    assert_eq!(w.snapshot_reads.get(), 3);
}

/// Every login the tests above decide from the whole file is decided the same from the
/// person's shard: each kind of person, each hook, with a code, without one.
#[test]
fn the_shard_decides_every_login_as_the_whole_file_does() {
    let people = [
        "eve",
        "mia",
        "admin",
        "ops",
        "alice",
        "root",
        "toor",
        "nosuchuser",
        "bob",
    ];
    let codes = |by_shard: bool| -> Vec<(String, Code)> {
        let mut out = Vec::new();
        for user in people {
            for hook in HOOKS {
                for code in [None, Some("123456")] {
                    let w = world().answer(move |req| match req {
                        Request::VerifyMfa { user, .. } => verified(user),
                        other => session_reply(other),
                    });
                    w.by_shard.set(by_shard);
                    let mut pam = FakePam::new(user);
                    if let Some(c) = code {
                        pam = pam.reply(c);
                    }
                    out.push((format!("{user} {hook:?} {code:?}"), go(hook, &mut pam, &w)));
                }
            }
        }
        out
    };
    let whole = codes(false);
    assert_eq!(codes(true), whole);
    // Not a check that cannot fail: the people were told apart.
    let admitted = whole.iter().filter(|(_, c)| *c == Code::Success).count();
    let ignored = whole.iter().filter(|(_, c)| *c == Code::Ignore).count();
    assert!(admitted > 0 && ignored > 0 && admitted + ignored < whole.len());
}
