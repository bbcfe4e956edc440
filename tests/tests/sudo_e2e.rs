//! sudo end to end: jitd, libnss_jit (jit-sudo membership), real sudo with sudo_jit loaded from
//! the sandbox's /etc/sudo.conf and the sudoers drop-in of INTERFACE.md. A scoped grant lets
//! exactly its command through, everything else is refused with a one-line reason naming the
//! grant, a --revoke-on hit is refused and ends the grant, and root and local sudoers never
//! notice.

use std::time::Duration;

use serde_json::Value;

use jit_tests::sandbox::path_str;
use jit_tests::{artifacts, code, poll, show, stderr, stdout, Sandbox};

/// sudo.conf and sudoers as the packages will write them (INTERFACE.md), inside the sandbox.
fn install_sudo_config(sb: &Sandbox) {
    let plugin = artifacts().sudo_plugin;
    sb.sh_ok(&format!(
        "printf 'Plugin sudo_jit {}\\nSet group_source dynamic\\n' > /etc/sudo.conf && \
         printf '%%jit-sudo ALL=(ALL:ALL) NOPASSWD: ALL\\n' > /etc/sudoers.d/jit && \
         chmod 0440 /etc/sudoers.d/jit && visudo -c -q",
        path_str(&plugin)
    ));
}

fn as_carol(sb: &Sandbox, cmd: &str) -> std::process::Output {
    sb.run_full(&["su", "carol", "-c", cmd], None, Duration::from_secs(20))
}

#[test]
fn scoped_sudo_grant_and_revoke_on_class() {
    let sb = Sandbox::new();
    install_sudo_config(&sb);
    sb.start_jitd();
    let o = as_carol(&sb, "sudo -n /usr/bin/id -u");
    assert_ne!(code(&o), 0, "no grant, no sudo: {}", show(&o));

    let g = sb.grant_json(&[
        "carol",
        "--sudo",
        "/usr/bin/id -u",
        "--revoke-on",
        "software-install",
        "--for",
        "10m",
    ]);
    let id = g["id"].as_str().unwrap().to_string();
    assert!(
        stdout(&sb.run(&["id", "carol"])).contains("(jit-sudo)"),
        "jit-sudo through NSS"
    );

    let o = as_carol(&sb, "sudo -n /usr/bin/id -u");
    assert_eq!(
        (code(&o), stdout(&o).trim()),
        (0, "0"),
        "the granted command runs as root: {}",
        show(&o)
    );

    let o = as_carol(&sb, "sudo -n /usr/bin/whoami");
    assert_ne!(code(&o), 0, "{}", show(&o));
    assert!(
        stderr(&o).contains(&format!("jit: /usr/bin/whoami is outside grant {id}")),
        "one-line reason naming the grant: {}",
        show(&o)
    );
    let o = as_carol(&sb, "sudo -n -s true");
    assert_ne!(code(&o), 0, "a shell needs an ALL grant: {}", show(&o));

    // Root and a local sudoer are unaffected.
    let o = sb.run(&["sudo", "-n", "/usr/bin/true"]);
    assert_eq!(code(&o), 0, "root: {}", show(&o));

    // A software install under --revoke-on software-install: refused, and the grant ends.
    let o = as_carol(&sb, "sudo -n /usr/bin/apt-get install -y nmap");
    assert_ne!(code(&o), 0, "{}", show(&o));
    poll("grant revoked by policy", Duration::from_secs(10), || {
        let o = sb.jitctl(&["--json", "grant", "show", &id]);
        let v: Value = serde_json::from_slice(&o.stdout).ok()?;
        (v["state"] == "revoked").then_some(())
    });
    let o = as_carol(&sb, "sudo -n /usr/bin/id -u");
    assert_ne!(
        code(&o),
        0,
        "nothing left after the revocation: {}",
        show(&o)
    );
    assert!(!stdout(&sb.run(&["id", "carol"])).contains("jit-sudo"));
    let events = sb.audit_events(&id);
    for ev in [
        "sudo.allowed",
        "sudo.denied",
        "grant.policy_hit",
        "grant.revoked",
    ] {
        assert!(events.iter().any(|e| e == ev), "{ev} missing: {events:?}");
    }
    sb.assert_local_unaffected();
}
