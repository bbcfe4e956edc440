//! The exported entry points called directly, without libpam running a stack (no `pam_start`,
//! no dlopen): their C signatures, their answers to handles and argument vectors PAM would
//! never pass, and the panic policy of every hook (docs/threat-model.md: X10, P1).
//!
//! Real stacks (pamtester, su, sshd) are exercised by `tests/tests/pam_*.rs` in the workspace's
//! test crate.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use pam::constants::{PamFlag, PamResultCode};
use pam::module::PamHandle;
use pam_jit::{contained, Code, Hook};
use std::os::raw::{c_char, c_int};
use std::ptr;

type HookFn =
    unsafe extern "C" fn(*mut PamHandle, PamFlag, c_int, *const *const c_char) -> PamResultCode;

/// All six `pam_sm_*` functions, with the signature Linux-PAM calls them with.
fn hooks() -> [(&'static str, HookFn); 6] {
    [
        ("pam_sm_authenticate", pam_jit::pam_sm_authenticate),
        ("pam_sm_setcred", pam_jit::pam_sm_setcred),
        ("pam_sm_acct_mgmt", pam_jit::pam_sm_acct_mgmt),
        ("pam_sm_open_session", pam_jit::pam_sm_open_session),
        ("pam_sm_close_session", pam_jit::pam_sm_close_session),
        ("pam_sm_chauthtok", pam_jit::pam_sm_chauthtok),
    ]
}

#[test]
fn impossible_handles_and_argv_never_succeed_or_ignore() {
    let one_null: [*const c_char; 1] = [ptr::null()];
    let bogus = ptr::NonNull::<PamHandle>::dangling().as_ptr();
    for (name, f) in hooks() {
        // SAFETY: a NULL handle, negative argc, a NULL argv with argc > 0 and a NULL element are
        // all refused by the entry point before anything is dereferenced.
        let results = unsafe {
            [
                f(ptr::null_mut(), 0, 0, ptr::null()),
                f(bogus, 0, -1, ptr::null()),
                f(bogus, 0, 1, ptr::null()),
                f(bogus, 0, 1, one_null.as_ptr()),
            ]
        };
        for r in results {
            assert_eq!(r, PamResultCode::PAM_ABORT, "{name}");
        }
    }
}

#[test]
fn panic_policy_per_hook() {
    let prev = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    for (hook, denial) in [
        (Hook::Authenticate, PamResultCode::PAM_AUTH_ERR),
        (Hook::Account, PamResultCode::PAM_PERM_DENIED),
        (Hook::OpenSession, PamResultCode::PAM_SESSION_ERR),
        (Hook::CloseSession, PamResultCode::PAM_SESSION_ERR),
    ] {
        // Classification interrupted (or a jit identity): the denial.
        assert_eq!(contained(hook, |_| panic!("boom")).to_pam(), denial);
        assert_eq!(
            contained(hook, |_| std::panic::panic_any(42_u32)).to_pam(),
            denial
        );
        // Already known to be none of jit's business: PAM_IGNORE.
        assert_eq!(
            contained(hook, |p| {
                p.ignored = true;
                panic!("boom")
            })
            .to_pam(),
            PamResultCode::PAM_IGNORE
        );
        assert_eq!(contained(hook, |_| Code::Success), Code::Success);
    }
    std::panic::set_hook(prev);
}

#[test]
fn module_data_keys_are_namespaced() {
    for key in [
        pam_jit::DATA_MFA_OK,
        pam_jit::DATA_BREAKGLASS,
        pam_jit::DATA_SESSION,
    ] {
        assert!(key.starts_with("pam_jit_"), "{key}");
    }
    assert_eq!(pam_jit::CODE_PROMPT, "Verification code: ");
}
