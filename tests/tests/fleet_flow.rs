//! The whole fleet flow with real clients on one host: a person enrols TOTP against a real
//! jit-server (SQLite, real TLS on loopback) and asks for a role with `jitctl request`; two other
//! people approve with `jitctl approve`; the host's jitd (enrolled with the server) receives the
//! signed grant and the person's secret sealed to its key; `ssh` to 127.0.0.1 with the key from
//! the person's server record plus a TOTP code from `oathtool`; an allowed `sudo` inside that
//! session; `jitctl revoke` on the server ends the session on the host.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use jit_tests::fleet::Fleet;
use jit_tests::pam::{
    install_pam_jit, jit_service, oathtool, pam_service, require_tools, step_with_margin, Sshd,
    CODE_PROMPT, TIMEOUT,
};
use jit_tests::sandbox::path_str;
use jit_tests::{artifacts, code, poll, procs, show, stdout, Sandbox};
use serde_json::Value;

fn policy(public_key: &str) -> String {
    format!(
        r#"
[[person]]
name = "pat"
groups = ["dev"]
ssh_keys = ["{public_key}"]

[[person]]
name = "sam"
groups = ["sre"]

[[person]]
name = "kim"
groups = ["sre"]

[[role]]
name = "web-admin"
hosts = {{ env = "prod" }}
account = true
mfa = true
sudo = ["/usr/bin/id"]
max = "2h"
[role.approval]
approvals = 2
approvers = ["sre"]
reason_min = 10
ticket = "^OPS-[0-9]+$"

[[entitlement]]
who = ["dev"]
roles = ["web-admin"]
"#
    )
}

/// pam_jit before pam_unix in sshd's stack, sudo_jit guarding sudo, jitd running.
fn host() -> Sandbox {
    require_tools(&["oathtool", "sshd", "ssh", "sudo"]);
    let sb = Sandbox::new();
    let module = install_pam_jit(&sb);
    pam_service(
        &sb,
        "sshd",
        &jit_service(
            &module,
            &format!("timeout={TIMEOUT}"),
            "pam_unix.so",
            "pam_unix.so",
            "pam_unix.so",
        ),
    );
    sb.sh_ok(&format!(
        "printf 'Plugin sudo_jit {}\\nSet group_source dynamic\\n' > /etc/sudo.conf && \
         printf '%s\\n' '%jit-sudo ALL=(ALL:ALL) NOPASSWD: ALL' > /etc/sudoers.d/jit && \
         chmod 0440 /etc/sudoers.d/jit && visudo -c -q",
        path_str(&artifacts().sudo_plugin),
    ));
    sb.start_jitd();
    sb
}

#[test]
fn request_two_approvals_ssh_with_key_and_totp_sudo_then_server_revoke_ends_the_session() {
    let sb = host();
    let sshd = Sshd::start(&sb, true);
    let (key, public) = sshd.keypair("pat");
    let mut f = Fleet::init("flow-e2e", "", &policy(&public));
    let (pat, sam, kim) = (f.token("pat"), f.token("sam"), f.token("kim"));
    let join = f.join_token("web1");
    f.serve();
    let o = sb.jitctl(&[
        "enroll",
        &f.url(),
        "--token",
        &join,
        "--fingerprint",
        &f.fingerprint,
    ]);
    assert_eq!(code(&o), 0, "{}\n{}", show(&o), sb.jitd_log());

    // pat enrols TOTP against the server (confirmed with the previous step's code, so the
    // current one stays unused for the login).
    let o = f.jitctl(&pat, &["--json", "mfa", "enroll"]);
    assert_eq!(code(&o), 0, "{}", show(&o));
    let secret = serde_json::from_str::<Value>(stdout(&o).trim()).unwrap()["secret"]
        .as_str()
        .unwrap()
        .to_string();
    let t = step_with_margin(5.0);
    let o = f.jitctl(&pat, &["mfa", "confirm", &oathtool(&secret, t - 30)]);
    assert_eq!(code(&o), 0, "{}", show(&o));

    // Request, then two approvals by two different people (one is not enough).
    let o = f.jitctl(
        &pat,
        &[
            "--json",
            "request",
            "web-admin",
            "--host",
            "web1",
            "--for",
            "30m",
            "--reason",
            "restart the web tier after OPS-7",
            "--ticket",
            "OPS-7",
        ],
    );
    assert_eq!(code(&o), 0, "{}", show(&o));
    let id = serde_json::from_str::<Value>(stdout(&o).trim()).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let o = f.jitctl(&pat, &["approve", &id]);
    assert_eq!(code(&o), 1, "self-approval must be refused: {}", show(&o));
    f.approve(&sam, &id);
    assert_eq!(
        code(&sb.run(&["getent", "passwd", "pat"])),
        2,
        "one approval of two grants nothing"
    );
    let t0 = Instant::now();
    f.approve(&kim, &id);
    poll("pat's account on the host", Duration::from_secs(20), || {
        (code(&sb.run(&["getent", "passwd", "pat"])) == 0).then_some(())
    });
    println!(
        "second approval → getent sees pat: {:.3} s",
        t0.elapsed().as_secs_f64()
    );

    // ssh with the key from pat's server record and a TOTP code; inside the session an allowed
    // sudo, then a long-running command that the revocation must end.
    let t = step_with_margin(8.0);
    let c = oathtool(&secret, t);
    let marker = "6007";
    let (client, prompts) = sshd.ssh_spawn(
        "pat",
        &key,
        Some(&c),
        &format!("sudo -n /usr/bin/id -u && exec sleep {marker}"),
    );
    let uid: u32 = stdout(&sb.run(&["id", "-u", "pat"]))
        .trim()
        .parse()
        .unwrap();
    poll(
        "pat's session running after sudo",
        Duration::from_secs(20),
        || {
            if sb.try_wait(client).is_some() {
                panic!(
                    "ssh ended early: {}\n{}\n{}",
                    sb.log_of(client),
                    sshd.log(),
                    sb.jitd_log()
                );
            }
            procs::live_where(|p| p.uid == uid && p.cmdline.contains(marker))
                .first()
                .map(|_| ())
        },
    );
    assert!(
        std::fs::read_to_string(&prompts)
            .unwrap_or_default()
            .contains(CODE_PROMPT),
        "the TOTP prompt was shown"
    );
    let log = sshd.log();
    assert!(
        log.contains("Partial publickey for pat")
            && log.contains("Accepted keyboard-interactive/pam for pat"),
        "sshd must have used the key and the code:\n{log}"
    );
    // `sleep` runs only after `sudo` succeeded (`&&`); its `id -u` printed 0 (the client may
    // write it a moment after the remote side started sleeping).
    poll("sudo's output: uid 0", Duration::from_secs(5), || {
        sb.log_of(client)
            .lines()
            .any(|l| l.trim() == "0")
            .then_some(())
    });

    // Revoked on the server: the session on the host ends.
    let t0 = Instant::now();
    f.revoke(&sam, &id);
    let ended = jit_tests::poll_opt(Duration::from_secs(15), || sb.try_wait(client).map(|_| ()));
    assert!(
        ended.is_some(),
        "pat's ssh session still runs 15 s after the server revoke:\n{}",
        sb.jitd_log()
    );
    println!(
        "server revoke → pat's ssh session ended: {:.3} s",
        t0.elapsed().as_secs_f64()
    );
    assert_eq!(code(&sb.run(&["getent", "passwd", "pat"])), 2);
    sb.assert_local_unaffected();
}
