//! Monitoring and certification with real clients: a `--sudo ALL` grantee (local user carol,
//! real sudo with sudo_jit) plants persistence through sudo; the grant's certification lists
//! every piece of it (path, owner, mode, hash; the uid-0 account), audited at `warning`; a
//! grantee who only does allowed work certifies `clean`. A detached root process started with
//! `sudo sh -c 'setsid … &'` joins the grant's cgroup and dies with the grant, while root's and
//! local users' own processes live on. Cgroups are made only under a directory the test owns
//! and removes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use serde_json::Value;

use jit_tests::cgroup::TestCgroup;
use jit_tests::sandbox::{path_str, SandboxOptions};
use jit_tests::{artifacts, code, poll, poll_opt, procs, show, stdout, Sandbox};

const JIT_SUDOERS: &str = "%jit-sudo ALL=(ALL:ALL) NOPASSWD: ALL";

/// sudo.conf loading sudo_jit and the sudoers drop-in, as the packages write them; root gets a
/// private home (its authorized_keys are the grantee's target, never the host's).
fn setup(sb: &Sandbox) {
    sb.sh_ok(&format!(
        "printf 'Plugin sudo_jit {}\\nSet group_source dynamic\\n' > /etc/sudo.conf && \
         printf '%s\\n' '{JIT_SUDOERS}' > /etc/sudoers.d/jit && chmod 0440 /etc/sudoers.d/jit && \
         visudo -c -q && mkdir -p /var/lib/jit-test-root && chmod 0700 /var/lib/jit-test-root && \
         mount --bind /var/lib/jit-test-root /root",
        path_str(&artifacts().sudo_plugin)
    ));
}

fn sandbox(cg: Option<&TestCgroup>) -> Sandbox {
    let sb = Sandbox::with(SandboxOptions {
        cgroup_dir: cg.map_or("off".into(), |c| path_str(c.path()).to_string()),
        ..SandboxOptions::default()
    });
    setup(&sb);
    sb
}

fn as_carol(sb: &Sandbox, cmd: &str) -> std::process::Output {
    sb.run_full(&["su", "carol", "-c", cmd], None, Duration::from_secs(20))
}

/// A `--sudo ALL` grant for carol whose baseline fingerprint has been taken.
fn sudo_all_grant(sb: &Sandbox, extra: &[&str]) -> String {
    let mut args = vec!["carol", "--sudo", "ALL", "--for", "1h"];
    args.extend_from_slice(extra);
    let id = sb.grant(&args);
    let b = sb.wait_audit(&id, "certify.baseline", Duration::from_secs(60));
    eprintln!("baseline: {b}");
    id
}

fn certification(sb: &Sandbox, id: &str) -> Value {
    sb.wait_audit(id, "grant.certification", Duration::from_secs(60));
    let o = sb.jitctl(&["--json", "grant", "show", id, "--certification"]);
    assert_eq!(code(&o), 0, "{}", show(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

fn diff<'a>(cert: &'a Value, item: &str) -> &'a Value {
    cert["differences"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["item"] == item)
        .unwrap_or_else(|| panic!("no difference for {item} in {cert:#}"))
}

/// A root process and a local user's process, started outside any grant: never ended by it.
fn bystanders(sb: &Sandbox) -> (i32, i32) {
    let root = sb.spawn("root-sleep", &["sleep", "600"]);
    let dave = sb.spawn("dave-sleep", &["su", "dave", "-c", "exec sleep 600"]);
    (root, dave)
}

#[test]
fn certification_lists_what_a_sudo_all_grantee_planted() {
    let cg = TestCgroup::new();
    let sb = sandbox(Some(&cg));
    sb.start_jitd();
    let (root_pid, dave_pid) = bystanders(&sb);
    let id = sudo_all_grant(&sb, &[]);

    let o = as_carol(
        &sb,
        "sudo -n sh -c 'cp /bin/sh /var/tmp/rootsh && chmod 4755 /var/tmp/rootsh && \
         mkdir -p /root/.ssh && echo \"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMonitorTestKeyOnly x\" >> /root/.ssh/authorized_keys && \
         echo \"toor:x:0:0:x:/root:/bin/sh\" >> /etc/passwd && \
         echo \"carol ALL=(ALL) NOPASSWD: ALL\" > /etc/sudoers.d/zz-keep && chmod 0440 /etc/sudoers.d/zz-keep && \
         for i in 1 2 3 4 5 6 7 8 9 10 11 12; do echo \"* * * * * root true\" > /etc/cron.d/jit-test-$i; done'",
    );
    assert_eq!(code(&o), 0, "the grant allows all of it: {}", show(&o));

    let o = sb.jitctl(&["grant", "revoke", &id, "--reason", "test"]);
    assert_eq!(code(&o), 0, "{}", show(&o));
    let cert = certification(&sb, &id);
    assert_eq!(cert["status"], "changed", "{cert:#}");

    let suid = diff(&cert, "/var/tmp/rootsh");
    assert_eq!(
        (&suid["area"], &suid["change"], &suid["root_equivalent"]),
        (
            &Value::from("setuid"),
            &Value::from("added"),
            &Value::from(true)
        ),
        "{suid:#}"
    );
    assert_eq!(
        (&suid["after"]["owner"], &suid["after"]["mode"]),
        (&Value::from(0), &Value::from("4755"))
    );
    assert_eq!(suid["after"]["sha256"].as_str().map(str::len), Some(64));

    let keys = diff(&cert, "/root/.ssh/authorized_keys");
    assert_eq!(keys["area"], "authorized_keys");
    assert_eq!(keys["root_equivalent"], true);

    let toor = diff(&cert, "account:toor");
    assert_eq!(
        (&toor["change"], &toor["root_equivalent"]),
        (&Value::from("added"), &Value::from(true))
    );
    assert!(toor["after"]["detail"].as_str().unwrap().contains("uid=0"));
    assert_eq!(diff(&cert, "/etc/passwd")["change"], "changed");

    let drop_in = diff(&cert, "/etc/sudoers.d/zz-keep");
    assert_eq!(
        (&drop_in["area"], &drop_in["after"]["mode"]),
        (&Value::from("sudoers"), &Value::from("0440"))
    );

    // All of them in `grant show`; state.json keeps the first ten (root-equivalent ones first)
    // and the number of the others, so it does not grow with what a grant touched.
    assert_eq!(diff(&cert, "/etc/cron.d/jit-test-12")["area"], "cron");
    let total = cert["differences"].as_array().unwrap().len();
    assert!(total >= 17 && cert["omitted"] == 0, "{cert:#}");

    // The audit record: warning, with the differences spelled out.
    let rec = sb
        .audit()
        .into_iter()
        .find(|e| e["event"] == "grant.certification" && e["grant"] == id.as_str())
        .unwrap();
    assert_eq!(rec["severity"], "warning", "{rec:#}");
    let lines = rec["differences"].to_string();
    for needle in [
        "/var/tmp/rootsh",
        "account:toor",
        "/etc/sudoers.d/zz-keep",
        "/root/.ssh/authorized_keys",
    ] {
        assert!(
            lines.contains(needle),
            "{needle} not in the audit record: {rec:#}"
        );
    }
    // And for people.
    let o = sb.jitctl(&["grant", "show", &id, "--certification"]);
    assert!(
        stdout(&o).contains(&format!("grant {id}: changed"))
            && stdout(&o).contains("ROOT added setuid /var/tmp/rootsh"),
        "{}",
        show(&o)
    );
    assert!(
        procs::is_alive(root_pid) && procs::is_alive(dave_pid),
        "bystanders live on"
    );
    // A clean stop writes state.json whole (the state journal folded in).
    sb.stop_jitd();
    let state = std::fs::read_to_string(sb.host_path("/var/lib/jitd/state.json")).unwrap();
    let json = &state[state.find('\n').unwrap() + 1..];
    let v: Value = serde_json::from_str(json).unwrap();
    let stored = &v["grants"][id.as_str()]["certification"];
    assert_eq!(
        stored["differences"].as_array().map(Vec::len),
        Some(10),
        "{stored:#}"
    );
    assert_eq!(stored["omitted"].as_u64(), Some(total as u64 - 10));
    assert_eq!(stored["differences"][0]["root_equivalent"], true);
}

#[test]
fn allowed_work_certifies_clean() {
    let sb = sandbox(None);
    sb.start_jitd();
    let id = sudo_all_grant(&sb, &[]);
    let o = as_carol(
        &sb,
        "sudo -n id -u && sudo -n ls /etc >/dev/null && sudo -n cat /etc/hostname",
    );
    assert_eq!(code(&o), 0, "{}", show(&o));
    let o = sb.jitctl(&["grant", "revoke", &id]);
    assert_eq!(code(&o), 0, "{}", show(&o));
    let cert = certification(&sb, &id);
    assert_eq!(cert["status"], "clean", "{cert:#}");
    assert!(cert["items"].as_u64().unwrap() > 50, "{cert:#}");
    let rec = sb.wait_audit(&id, "grant.certification", Duration::from_secs(1));
    assert_eq!(rec["severity"], "info");
    let o = sb.jitctl(&["grant", "show", &id, "--certification"]);
    assert!(
        stdout(&o).contains(&format!("grant {id}: clean")),
        "{}",
        show(&o)
    );
}

/// The pid written by the detached process, once it is there.
fn detached_pid(sb: &Sandbox) -> i32 {
    poll("detached pid file", Duration::from_secs(10), || {
        stdout(&sb.sh("cat /var/tmp/detached.pid 2>/dev/null"))
            .trim()
            .parse()
            .ok()
    })
}

const DETACH: &str =
    "sudo -n sh -c 'setsid sleep 600 </dev/null >/dev/null 2>&1 & echo $! > /var/tmp/detached.pid'";

#[test]
fn detached_root_process_started_through_sudo_ends_with_the_grant() {
    let cg = TestCgroup::new();
    let sb = sandbox(Some(&cg));
    sb.start_jitd();
    let o = sb.jitctl(&["status"]);
    assert!(
        stdout(&o).contains(&format!(
            "cgroups: cgroup v2 per grant under {}",
            cg.path().display()
        )),
        "{}",
        show(&o)
    );
    let (root_pid, dave_pid) = bystanders(&sb);
    let id = sudo_all_grant(&sb, &[]);
    let o = as_carol(&sb, DETACH);
    assert_eq!(code(&o), 0, "{}", show(&o));
    let pid = detached_pid(&sb);
    let info = procs::info(pid).expect("the detached process runs");
    assert_eq!(info.euid, 0, "it runs as root");
    let cgroup = TestCgroup::of_pid(pid).unwrap_or_default();
    assert!(
        cgroup.ends_with(&format!("/{id}")),
        "in the grant's cgroup: {cgroup}"
    );

    let o = sb.jitctl(&["grant", "revoke", &id]);
    assert_eq!(code(&o), 0, "{}", show(&o));
    let dead = poll_opt(Duration::from_secs(5), || {
        (!procs::is_alive(pid)).then_some(())
    });
    assert!(
        dead.is_some(),
        "the detached root process outlived the grant"
    );
    let td = sb.wait_audit(&id, "grant.teardown", Duration::from_secs(10));
    assert!(td["cgroup_killed"].as_u64().unwrap_or(0) >= 1, "{td:#}");
    assert!(!cg.grant(&id).exists(), "the grant's cgroup is removed");
    assert!(
        procs::is_alive(root_pid) && procs::is_alive(dave_pid),
        "bystanders live on"
    );
}

/// Without cgroup v2 jitd says so; teardown falls back to the /proc scan, which cannot tell a
/// detached root process from root's own (so it lives on: the gap the cgroup closes).
#[test]
fn without_cgroups_status_says_so() {
    let sb = sandbox(None);
    sb.start_jitd();
    let o = sb.jitctl(&["status"]);
    assert!(
        stdout(&o).contains("cgroups: no per-grant cgroups (turned off in the configuration); teardown finds processes by the /proc scan only"),
        "{}",
        show(&o)
    );
    let o = sb.jitctl(&["--json", "status"]);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(v["cgroups"]
        .as_str()
        .unwrap()
        .starts_with("no per-grant cgroups"));
}

/// A login session (su to a managed admin under an `--enable` grant, pam_jit in su's session
/// stack) joins the grant's cgroup at session open: what the session starts is the grant's,
/// and the cgroup goes with the grant.
#[test]
fn a_login_session_joins_the_grant_cgroup() {
    use jit_tests::pam::{
        add_admin, install_pam_jit, pam_service, require_tools, set_managed_accounts, su_from,
        ADMIN, ADMIN_PASSWORD, TIMEOUT,
    };
    require_tools(&["su", "setpriv"]);
    let cg = TestCgroup::new();
    let sb = sandbox(Some(&cg));
    let module = install_pam_jit(&sb);
    add_admin(&sb);
    set_managed_accounts(&sb, &[ADMIN]);
    let t = format!("timeout={TIMEOUT}");
    pam_service(
        &sb,
        "su",
        &format!(
            "auth    sufficient pam_rootok.so\n\
             auth    [success=done ignore=ignore default=die] {module} {t}\n\
             auth    required pam_unix.so\n\
             account required {module} {t}\n\
             account required pam_unix.so\n\
             session required {module} {t}\n\
             session required pam_unix.so\n"
        ),
    );
    sb.start_jitd();
    let id = sb.grant(&[ADMIN, "--enable", "--for", "1h"]);
    let (o, _) = su_from(
        &sb,
        sb.ids.carol,
        ADMIN,
        "setsid sleep 600 </dev/null >/dev/null 2>&1 & echo $! > /var/tmp/session-child.pid",
        &format!("{ADMIN_PASSWORD}\n"),
    );
    assert_eq!(code(&o), 0, "{}", show(&o));
    let pid: i32 = poll("session child pid", Duration::from_secs(10), || {
        stdout(&sb.sh("cat /var/tmp/session-child.pid 2>/dev/null"))
            .trim()
            .parse()
            .ok()
    });
    let cgroup = TestCgroup::of_pid(pid).unwrap_or_default();
    assert!(
        cgroup.ends_with(&format!("/{id}")),
        "the session's child is in the grant's cgroup: {cgroup}"
    );
    let o = sb.jitctl(&["grant", "revoke", &id]);
    assert_eq!(code(&o), 0, "{}", show(&o));
    poll("session child ends", Duration::from_secs(5), || {
        (!procs::is_alive(pid)).then_some(())
    });
    assert!(!cg.grant(&id).exists(), "the grant's cgroup is removed");
}

/// An ssh login of an ephemeral account (real sshd on 127.0.0.1, pam_jit in its session
/// stack): sshd's session process is the module's peer and joins the grant's cgroup, so the
/// login's shell and what it starts are the grant's.
#[test]
fn an_ssh_session_runs_in_the_grant_cgroup() {
    use jit_tests::pam::{
        install_pam_jit, jit_service, pam_service, permit_service, require_tools, Sshd, TIMEOUT,
    };
    require_tools(&["sshd", "ssh"]);
    let cg = TestCgroup::new();
    let sb = sandbox(Some(&cg));
    let module = install_pam_jit(&sb);
    pam_service(&sb, "jit-login", &permit_service(&module, "timeout=2"));
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
    sb.start_jitd();
    let sshd = Sshd::start(&sb, true);
    let (key, public) = sshd.keypair("alice");
    let id = sb.grant(&["alice", "--account", "--ssh-key", &public, "--for", "10m"]);
    let r = sshd.ssh("alice", &key, None, "cat /proc/self/cgroup");
    assert_eq!(code(&r.out), 0, "{}\n{}", r.show(), sshd.log());
    let line = stdout(&r.out);
    assert!(
        line.lines()
            .any(|l| l.starts_with("0::") && l.trim_end().ends_with(&format!("/{id}"))),
        "the login's command runs in the grant's cgroup: {line}"
    );
    let o = sb.jitctl(&["grant", "revoke", &id]);
    assert_eq!(code(&o), 0, "{}", show(&o));
    assert!(!cg.grant(&id).exists(), "the grant's cgroup is removed");
    assert!(
        procs::is_alive(sshd.pid),
        "sshd's listener is not the session process and lives on"
    );
}

/// A grantee with root who makes a sub-cgroup inside the grant's and moves a detached process
/// there does not keep it: `cgroup.kill` covers the subtree, and the grant's cgroup is removed.
#[test]
fn a_sub_cgroup_made_by_the_grantee_dies_with_the_grant() {
    let cg = TestCgroup::new();
    let sb = sandbox(Some(&cg));
    sb.start_jitd();
    let id = sudo_all_grant(&sb, &[]);
    let sub = cg.grant(&id).join("hide");
    let o = as_carol(
        &sb,
        &format!(
            "sudo -n sh -c 'mkdir {sub} && setsid sh -c \"echo \\$\\$ > {sub}/cgroup.procs; echo \\$\\$ > /var/tmp/hidden.pid; exec sleep 600\" </dev/null >/dev/null 2>&1 &'",
            sub = sub.display()
        ),
    );
    assert_eq!(code(&o), 0, "{}", show(&o));
    let pid: i32 = poll("hidden pid", Duration::from_secs(10), || {
        stdout(&sb.sh("cat /var/tmp/hidden.pid 2>/dev/null"))
            .trim()
            .parse()
            .ok()
    });
    poll("moved into the sub-cgroup", Duration::from_secs(5), || {
        TestCgroup::of_pid(pid)
            .unwrap_or_default()
            .ends_with(&format!("/{id}/hide"))
            .then_some(())
    });
    let o = sb.jitctl(&["grant", "revoke", &id]);
    assert_eq!(code(&o), 0, "{}", show(&o));
    poll("hidden process ends", Duration::from_secs(5), || {
        (!procs::is_alive(pid)).then_some(())
    });
    let td = sb.wait_audit(&id, "grant.teardown", Duration::from_secs(10));
    assert!(td["cgroup_killed"].as_u64().unwrap_or(0) >= 1, "{td:#}");
    assert!(
        !cg.grant(&id).exists(),
        "the grant's cgroup and its sub-cgroup are removed"
    );
}
