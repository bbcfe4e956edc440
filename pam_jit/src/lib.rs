//! `pam_jit.so`: logins of jit identities and managed local admins only under a live grant,
//! with the verification code checked by jitd and sessions registered with it.
//!
//! This file holds the PAM entry points (through `pam::pam_hooks!`) and the four hook flows;
//! the decisions live in [`identity`] (is this login jit's business), [`gate`] (which grant
//! admits it) and `jit_core::policy::login` (its conditions); [`jitd`] talks to the daemon,
//! [`local`] reads local files, [`options`] the pam.d options, [`host`] adapts the PAM handle
//! and the system behind two traits so every flow is tested with fakes.
//!
//! Return codes (docs/threat-model.md#p1, docs/design.md#fail-closed): `PAM_IGNORE` only for identities that are not jit's
//! business (root, local users, invalid names, unknown names) and, in `auth`, for a jit or
//! managed identity whose grant admits the login without a code, or a managed admin whose code
//! was right (pam_jit is then a gate, not the authenticator: the password or key is checked by
//! the other modules). Every error on the
//! path of a jit or managed identity — bad options, no snapshot, jitd unreachable, too slow or
//! an impostor, a conversation failure, a panic — is the hook's denial code. `setcred` and
//! `chauthtok` are always `PAM_IGNORE` (the trait's defaults; they do no work).
//!
//! Each hook reads the snapshot afresh (break-glass or an activation changes it between `auth`
//! and `account`), keeps nothing between calls but PAM module data on the handle, starts no
//! thread, writes nothing to stdout/stderr, and logs every decision about a jit or managed
//! identity to syslog `authpriv` (never a code).

pub mod gate;
pub mod host;
pub mod identity;
pub mod jitd;
pub mod local;
pub mod options;
pub mod person;

use gate::{Context, NoFit};
use host::{Pam, World};
use identity::{Identity, Kind};
use jit_core::policy::sudo::shown;
use jit_core::snapshot::keyed::GATES_ACCOUNTS_MINOR;
use jit_core::snapshot::Snapshot;
use jit_proto::message::SessionSpec;
use jit_proto::{Request, Response};
use options::Options;
use pam::constants::{PamFlag, PamResultCode, PAM_SILENT};
use pam::module::{PamHandle, PamHooks};
use person::Person;
use std::ffi::CStr;

/// Module data: the user whose verification code `auth` accepted on this handle. `account`
/// requires it for a grant that needs a code (docs/threat-model.md#p12: a caller that skipped `auth` must not pass).
pub const DATA_MFA_OK: &str = "pam_jit_mfa_ok";
/// Module data: the id of the emergency grant a break-glass code opened.
pub const DATA_BREAKGLASS: &str = "pam_jit_breakglass";
/// Module data: the id of the session jitd registered at `open_session`.
pub const DATA_SESSION: &str = "pam_jit_session";
/// The prompt for a verification code.
pub const CODE_PROMPT: &str = "Verification code: ";

/// The hooks that do work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    /// `pam_sm_authenticate`.
    Authenticate,
    /// `pam_sm_acct_mgmt`.
    Account,
    /// `pam_sm_open_session`.
    OpenSession,
    /// `pam_sm_close_session`.
    CloseSession,
}

impl Hook {
    /// The name in log lines (`pam_jit(sshd:auth)`), as Linux-PAM's modules write it.
    pub fn name(self) -> &'static str {
        match self {
            Hook::Authenticate => "auth",
            Hook::Account => "account",
            Hook::OpenSession | Hook::CloseSession => "session",
        }
    }

    /// What this hook answers a jit or managed identity on any failure.
    pub fn denial(self) -> Code {
        match self {
            Hook::Authenticate => Code::AuthErr,
            Hook::Account => Code::PermDenied,
            Hook::OpenSession | Hook::CloseSession => Code::SessionErr,
        }
    }
}

/// The answers pam_jit gives (a `Copy` mirror of the PAM codes it uses).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// `PAM_SUCCESS`.
    Success,
    /// `PAM_IGNORE`.
    Ignore,
    /// `PAM_AUTH_ERR`.
    AuthErr,
    /// `PAM_PERM_DENIED`.
    PermDenied,
    /// `PAM_ACCT_EXPIRED`.
    AcctExpired,
    /// `PAM_SESSION_ERR`.
    SessionErr,
}

impl Code {
    /// The PAM return value.
    pub fn to_pam(self) -> PamResultCode {
        match self {
            Code::Success => PamResultCode::PAM_SUCCESS,
            Code::Ignore => PamResultCode::PAM_IGNORE,
            Code::AuthErr => PamResultCode::PAM_AUTH_ERR,
            Code::PermDenied => PamResultCode::PAM_PERM_DENIED,
            Code::AcctExpired => PamResultCode::PAM_ACCT_EXPIRED,
            Code::SessionErr => PamResultCode::PAM_SESSION_ERR,
        }
    }

    /// The PAM name, for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Code::Success => "PAM_SUCCESS",
            Code::Ignore => "PAM_IGNORE",
            Code::AuthErr => "PAM_AUTH_ERR",
            Code::PermDenied => "PAM_PERM_DENIED",
            Code::AcctExpired => "PAM_ACCT_EXPIRED",
            Code::SessionErr => "PAM_SESSION_ERR",
        }
    }
}

/// How far a hook got: decides the answer if it panics.
#[derive(Debug, Default)]
pub struct Progress {
    /// The user was classified as not jit's business.
    pub ignored: bool,
}

/// Runs a hook body with panics contained (docs/design.md#module-rules, docs/threat-model.md#x10).
///
/// After a panic the answer is `PAM_IGNORE` only if the body had already classified the user
/// as not jit's business; otherwise, including a panic during classification itself, it is the
/// hook's denial code. A bug may then refuse a local user whose classification it interrupted,
/// but it can never admit a jit or managed identity (docs/threat-model.md#p1). Root is decided by name before any
/// file is read, so this window is as small as it can be.
pub fn contained(hook: Hook, body: impl FnOnce(&mut Progress) -> Code) -> Code {
    let mut progress = Progress::default();
    let r = jit_core::ffi::guard(None, || Some(body(&mut progress)));
    match r {
        Some(code) => code,
        None if progress.ignored => Code::Ignore,
        None => hook.denial(),
    }
}

/// The PAM entry points.
struct PamJit;

pam::pam_hooks!(PamJit);

impl PamHooks for PamJit {
    fn sm_authenticate(pamh: &mut PamHandle, args: Vec<&CStr>, flags: PamFlag) -> PamResultCode {
        entry(Hook::Authenticate, pamh, &args, flags)
    }

    fn acct_mgmt(pamh: &mut PamHandle, args: Vec<&CStr>, flags: PamFlag) -> PamResultCode {
        entry(Hook::Account, pamh, &args, flags)
    }

    fn sm_open_session(pamh: &mut PamHandle, args: Vec<&CStr>, flags: PamFlag) -> PamResultCode {
        entry(Hook::OpenSession, pamh, &args, flags)
    }

    fn sm_close_session(pamh: &mut PamHandle, args: Vec<&CStr>, flags: PamFlag) -> PamResultCode {
        entry(Hook::CloseSession, pamh, &args, flags)
    }
}

/// One entry point: pam-bindings has checked the handle and argv (and catches panics too, but
/// maps them to `PAM_ABORT` whoever the user is); this guard decides by the user.
fn entry(hook: Hook, pamh: &mut PamHandle, args: &[&CStr], flags: PamFlag) -> PamResultCode {
    // The module's own panic hook prints nothing (unit tests keep the default one).
    #[cfg(not(test))]
    jit_core::ffi::silence_panic_messages();
    contained(hook, |progress| {
        let words: Vec<&[u8]> = args.iter().map(|a| a.to_bytes()).collect();
        let opts = options::parse(&words);
        run(hook, pamh, &host::System, &opts, flags, progress)
    })
    .to_pam()
}

/// Everything one hook call knows about a jit or managed identity.
struct Login<'a, P: Pam + ?Sized, W: World + ?Sized> {
    hook: Hook,
    pam: &'a mut P,
    world: &'a W,
    opts: &'a Options,
    silent: bool,
    user: String,
    kind: Kind,
    service: String,
    rhost: Option<String>,
    snapshot: Result<Person<'a>, String>,
}

/// Runs `hook` for the user on `pam`: classification, then the hook's flow. Public so that
/// tests drive it with fake handles and a fake world.
pub fn run<P: Pam + ?Sized, W: World + ?Sized>(
    hook: Hook,
    pam: &mut P,
    world: &W,
    opts: &Options,
    flags: PamFlag,
    progress: &mut Progress,
) -> Code {
    let service = pam.service();
    let tag = format!("pam_jit({}:{})", shown(&service, 64), hook.name());
    if let Some(why) = &opts.broken {
        world.log(
            libc::LOG_ERR,
            &format!("{tag}: {why}: jit and managed identities are refused"),
        );
    }
    let ignore = |progress: &mut Progress, who: &str, why: &str| {
        progress.ignored = true;
        if opts.debug {
            world.log(
                libc::LOG_DEBUG,
                &format!("{tag}: {who}: {} ({why})", Code::Ignore.as_str()),
            );
        }
        Code::Ignore
    };
    let Some(user) = pam.user() else {
        return ignore(progress, "(no user)", "no user name");
    };
    if let Some(why) = identity::precheck(&user) {
        return ignore(progress, &shown(&user, 64), why.as_str());
    }
    let local = world.passwd(&user);
    // A uid-0 account is never gated (`identity::classify`): nothing of the gates file is read
    // for it.
    if matches!(local, local::LocalUser::Present { uid: Some(0) }) {
        return ignore(progress, &user, identity::Why::Uid0.as_str());
    }
    // The user's own shard of the gates file (and the delta over it), through one descriptor.
    let part = world.gates_part(&user);
    let part_delta = part.as_ref().and_then(|p| p.parse_delta());
    let own = part.as_ref().and_then(|p| p.own(part_delta.as_ref()).ok());
    // A local user with a uid other than 0 is gated only if managed (`identity::classify`);
    // the shard says whether.
    if matches!(local, local::LocalUser::Present { uid: Some(_) })
        && own
            .as_ref()
            .is_some_and(|v| !v.as_ref().is_some_and(|s| s.is_managed(&user)))
    {
        return ignore(progress, &user, identity::Why::LocalUser.as_str());
    }
    // Everyone else the gates file may gate: from the shard when the file's shards hold all
    // of a person's records (1.8), else from the whole file, whose size grows with the grants
    // on the host.
    let (layers, delta);
    let snapshot = match own {
        Some(view)
            if part
                .as_ref()
                .is_some_and(|p| p.minor() >= GATES_ACCOUNTS_MINOR) =>
        {
            Ok(Person::shard(view))
        }
        _ => {
            layers = world.snapshot();
            // Grants added since the gates file was written are in its delta.
            delta = layers.as_ref().ok().and_then(|l| l.parse_delta());
            match &layers {
                Ok(l) => Snapshot::parse(&l.base)
                    .map(|s| Person::whole(s.over(delta.as_ref())))
                    .map_err(|e| format!("snapshot rejected: {e}")),
                Err(e) => Err(format!("snapshot unreadable: {e}")),
            }
        }
    };
    let classified = identity::classify(&user, local, snapshot.as_ref().ok(), || {
        world.managed_file()
    });
    if let Some(w) = &classified.warning {
        world.log(libc::LOG_WARNING, &format!("{tag}: {user}: {w}"));
    }
    let kind = match classified.identity {
        // Not local and unknown to the gates file (or no usable gates file), but NSS may still
        // show the account from the public snapshot: jitd writes the gates file first, so for
        // a moment after a revocation the public file still has it, and an unusable gates file
        // hides it entirely. A jit account then, refused below for want of a live grant.
        Identity::Ignore(identity::Why::NoSnapshot | identity::Why::Unknown)
            if world.public_account(&user) =>
        {
            Kind::Jit
        }
        Identity::Ignore(why) => return ignore(progress, &user, why.as_str()),
        Identity::Gated(kind) => kind,
    };
    let mut login = Login {
        hook,
        pam,
        world,
        opts,
        silent: flags & PAM_SILENT != 0,
        user,
        kind,
        rhost: None,
        service,
        snapshot,
    };
    login.rhost = login.pam.rhost().filter(|r| !r.is_empty());
    match hook {
        Hook::Authenticate => login.authenticate(),
        Hook::Account => login.account(),
        Hook::OpenSession => login.open_session(),
        Hook::CloseSession => login.close_session(),
    }
}

impl<P: Pam + ?Sized, W: World + ?Sized> Login<'_, P, W> {
    /// A decision line: `pam_jit(sshd:auth): eve (jit): PAM_AUTH_ERR: why`.
    fn log(&self, priority: libc::c_int, code: Code, what: &str) {
        self.note(priority, &format!("{}: {what}", code.as_str()));
    }

    /// Any other line about this identity.
    fn note(&self, priority: libc::c_int, what: &str) {
        self.world.log(
            priority,
            &format!(
                "{}: {} ({}): {what}",
                self.tag(),
                self.user,
                self.kind.as_str()
            ),
        );
    }

    fn tag(&self) -> String {
        format!("pam_jit({}:{})", shown(&self.service, 64), self.hook.name())
    }

    /// One line to the person, unless the application asked for silence.
    fn say(&mut self, msg: &str) {
        if !self.silent {
            self.pam.error_msg(&format!("jit: {msg}"));
        }
    }

    /// Logs a decision that admits (or passes the login on to the other modules).
    fn allow(&self, code: Code, what: &str) -> Code {
        self.log(libc::LOG_INFO, code, what);
        code
    }

    /// Refuses with `code`: `shown` to the person, `detail` appended in the log.
    fn refuse(&mut self, code: Code, shown: &str, detail: Option<&str>) -> Code {
        let what = match detail {
            Some(d) => format!("{shown} ({d})"),
            None => shown.to_string(),
        };
        self.log(libc::LOG_NOTICE, code, &what);
        self.say(shown);
        code
    }

    /// The checks every flow starts with: usable options and a trusted snapshot.
    fn preflight(&mut self) -> Result<(), Code> {
        let denial = self.hook.denial();
        if let Some(why) = self.opts.broken.clone() {
            return Err(self.refuse(
                denial,
                "pam_jit is misconfigured; login refused",
                Some(&why),
            ));
        }
        if let Err(e) = &self.snapshot {
            let e = e.clone();
            return Err(self.refuse(
                denial,
                "no trusted grant snapshot (is jitd running?); login refused",
                Some(&e),
            ));
        }
        Ok(())
    }

    /// The fitting grant for this login now (see [`gate::select`]).
    fn fitting(&self) -> Result<gate::Fit, NoFit> {
        let Ok(snap) = &self.snapshot else {
            return Err(NoFit::NoGrant);
        };
        let now = self.world.now();
        let local_time = || self.world.local_time(now);
        let ctx = Context {
            service: &self.service,
            rhost: self.rhost.as_deref(),
            now,
            local_time: &local_time,
        };
        gate::select(snap, &self.user, self.kind, &ctx)
    }

    fn call(&self, req: &Request) -> Result<Response, jit_proto::ClientError> {
        self.world.call(req, self.opts.timeout)
    }

    /// Asks for a secret; `Err` carries the denial already logged and shown.
    fn ask(&mut self, prompt: &str, what: &str) -> Result<jitd::Secret, Code> {
        match self.pam.prompt_secret(prompt) {
            Ok(Some(s)) if !s.is_empty() => Ok(s),
            Ok(_) => Err(self.refuse(Code::AuthErr, &format!("no {what} given"), None)),
            Err(_) => Err(self.refuse(
                Code::AuthErr,
                &format!("could not ask for a {what}"),
                Some("conversation failed"),
            )),
        }
    }

    fn authenticate(&mut self) -> Code {
        // A code proved earlier on this handle never carries over to this attempt.
        if !self.pam.set_data(DATA_MFA_OK, String::new()) {
            return self.refuse(
                Code::AuthErr,
                "internal error; login refused",
                Some("cannot reset module data"),
            );
        }
        if let Err(code) = self.preflight() {
            return code;
        }
        match self.fitting() {
            Ok(fit) if fit.mfa => self.verify_code(&fit),
            Ok(fit) => self.allow(
                Code::Ignore,
                &format!(
                    "grant {} admits this login without a code; the other modules authenticate",
                    fit.id
                ),
            ),
            Err(nofit) => match self.kind {
                Kind::Jit => {
                    let msg = nofit.message(&self.user, self.kind);
                    self.refuse(Code::AuthErr, &msg, Some(nofit.code()))
                }
                Kind::Managed => self.breakglass(&nofit),
            },
        }
    }

    fn verify_code(&mut self, fit: &gate::Fit) -> Code {
        let code = match self.ask(CODE_PROMPT, "verification code") {
            Ok(c) => c,
            Err(denial) => return denial,
        };
        // Where the code comes from: jitd counts failures per source, so someone else's wrong
        // codes (another local user at `su alice`) lock only that someone.
        let caller = jit_proto::MfaCaller {
            uid: Some(self.world.caller_uid()),
            ruser: self.pam.ruser().unwrap_or_default(),
            rhost: self.rhost.clone().unwrap_or_default(),
        };
        let r = jitd::verify_mfa(
            &|req: &Request| self.call(req),
            &self.user,
            &code,
            &self.service,
            &fit.id,
            caller,
        );
        drop(code);
        match r {
            Ok(activated) => {
                if !self.pam.set_data(DATA_MFA_OK, self.user.clone()) {
                    return self.refuse(
                        Code::AuthErr,
                        "internal error; login refused",
                        Some("cannot store module data"),
                    );
                }
                let mut what = format!("verification code accepted for grant {}", fit.id);
                if !activated.is_empty() {
                    what.push_str(&format!("; activated {}", activated.join(", ")));
                }
                // A managed admin has a password: the code adds to it (pam_unix still checks
                // it), it does not replace it. A jit account has none: its code, after the
                // ssh key, completes authentication.
                if self.kind == Kind::Managed {
                    what.push_str("; the other modules check the password");
                    return self.allow(Code::Ignore, &what);
                }
                self.allow(Code::Success, &what)
            }
            Err(e @ jitd::JitdError::Daemon { .. }) => self.refuse(
                Code::AuthErr,
                &format!("verification code refused: {e}"),
                Some(&format!("grant {}", fit.id)),
            ),
            Err(e) => self.refuse(
                Code::AuthErr,
                &format!("cannot verify the code: {e}"),
                Some(&format!("grant {}", fit.id)),
            ),
        }
    }

    /// A managed admin without a fitting grant: one break-glass code may open an emergency
    /// grant (jitd audits it loudly).
    fn breakglass(&mut self, nofit: &NoFit) -> Code {
        if !matches!(nofit, NoFit::NoGrant) {
            let msg = nofit.message(&self.user, self.kind);
            self.say(&msg);
        }
        self.note(
            libc::LOG_NOTICE,
            &format!(
                "{}; asking for a break-glass code",
                nofit.message(&self.user, self.kind)
            ),
        );
        let prompt = format!(
            "jit: no grant enables {}. Break-glass code (empty to cancel): ",
            self.user
        );
        let code = match self.ask(&prompt, "break-glass code") {
            Ok(c) => c,
            Err(denial) => return denial,
        };
        let rhost = self.rhost.clone().unwrap_or_default();
        let r = jitd::use_breakglass(
            &|req: &Request| self.call(req),
            &self.user,
            &code,
            &self.service,
            &rhost,
            self.world.caller_uid(),
        );
        drop(code);
        match r {
            Ok(g) => {
                if !self.pam.set_data(DATA_BREAKGLASS, g.id.to_string()) {
                    self.note(
                        libc::LOG_WARNING,
                        "cannot store the break-glass grant id in module data",
                    );
                }
                self.allow(
                    Code::Success,
                    &format!("break-glass code accepted: emergency grant {}", g.id),
                )
            }
            Err(e @ jitd::JitdError::Daemon { .. }) => self.refuse(
                Code::AuthErr,
                &format!("break-glass code refused: {e}"),
                None,
            ),
            Err(e) => self.refuse(
                Code::AuthErr,
                &format!("cannot check the break-glass code: {e}"),
                None,
            ),
        }
    }

    fn account(&mut self) -> Code {
        if let Err(code) = self.preflight() {
            return code;
        }
        match self.fitting() {
            Ok(fit) if fit.mfa => {
                if self.pam.get_data(DATA_MFA_OK).as_deref() == Some(self.user.as_str()) {
                    self.allow(
                        Code::Success,
                        &format!("grant {} (verification code given at login)", fit.id),
                    )
                } else {
                    self.refuse(
                        Code::PermDenied,
                        &format!(
                            "grant {} needs a verification code at login",
                            shown(&fit.id, 64)
                        ),
                        Some("no verified code on this handle"),
                    )
                }
            }
            Ok(fit) => self.allow(Code::Success, &format!("grant {}", fit.id)),
            Err(nofit) => {
                let code = match nofit {
                    NoFit::Ended { .. } => Code::AcctExpired,
                    _ => Code::PermDenied,
                };
                let msg = nofit.message(&self.user, self.kind);
                // After a break-glass code in auth, say why the account step still refuses.
                let detail = match self.pam.get_data(DATA_BREAKGLASS) {
                    Some(id) if !id.is_empty() => format!(
                        "{}; break-glass grant {id} from auth is not in the snapshot",
                        nofit.code()
                    ),
                    _ => nofit.code().to_string(),
                };
                self.refuse(code, &msg, Some(&detail))
            }
        }
    }

    fn open_session(&mut self) -> Code {
        if let Err(code) = self.preflight() {
            return code;
        }
        let fit = match self.fitting() {
            Ok(fit) => fit,
            Err(nofit) => {
                let msg = nofit.message(&self.user, self.kind);
                return self.refuse(Code::SessionErr, &msg, Some(nofit.code()));
            }
        };
        let spec = SessionSpec {
            user: self.user.clone(),
            grant: fit.id.clone(),
            service: jitd::capped(&self.service, jitd::MAX_SERVICE_BYTES),
            tty: jitd::capped(&self.pam.tty().unwrap_or_default(), jitd::MAX_TTY_BYTES),
            rhost: jitd::capped(
                self.rhost.as_deref().unwrap_or_default(),
                jitd::MAX_RHOST_BYTES,
            ),
        };
        match jitd::open_session(&|req: &Request| self.call(req), spec) {
            Ok(s) => {
                if !self.pam.set_data(DATA_SESSION, s.id.clone()) {
                    // jitd still tracks the session; close_session then names no id.
                    self.note(
                        libc::LOG_WARNING,
                        "cannot store the session id in module data",
                    );
                }
                self.allow(
                    Code::Success,
                    &format!("session {} opened under grant {}", s.id, fit.id),
                )
            }
            Err(e) => self.refuse(
                Code::SessionErr,
                &format!("cannot register the session with jitd: {e}"),
                Some(&format!("grant {}", fit.id)),
            ),
        }
    }

    fn close_session(&mut self) -> Code {
        if let Some(why) = self.opts.broken.clone() {
            self.log(
                libc::LOG_NOTICE,
                Code::SessionErr,
                &format!("not closed: {why}"),
            );
            return Code::SessionErr;
        }
        let id = self.pam.get_data(DATA_SESSION).filter(|s| !s.is_empty());
        let shown_id = id.clone().unwrap_or_else(|| "(no id)".to_string());
        match jitd::close_session(&|req: &Request| self.call(req), &self.user, id) {
            Ok(()) => self.allow(Code::Success, &format!("session {shown_id} closed")),
            Err(e) => {
                // Nothing to show: the session is ending anyway; jitd's teardown still ends it.
                self.log(
                    libc::LOG_WARNING,
                    Code::SessionErr,
                    &format!("telling jitd that session {shown_id} closed failed: {e}"),
                );
                Code::SessionErr
            }
        }
    }
}

#[cfg(test)]
mod tests;
