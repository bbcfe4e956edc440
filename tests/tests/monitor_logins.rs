//! `--revoke-on` for grants without sudo: the processes of a grant's logins (su to a managed
//! admin under `--enable`, an ssh login of an `--account`) run in the grant's cgroup and are
//! watched like its sudo commands, so a grant that only gives a login can name classes. A
//! lateral move (ssh to a local port) or a read of a sensitive file the grantee may read ends
//! the grant and what the login left running, while root's and other users' processes live on.
//! Where the monitor cannot run (here: jitd cannot make its cgroup directory) `jitctl status`
//! says so and why, such a grant is refused with that reason, and teardown ends processes by
//! the /proc scan.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use serde_json::Value;

use jit_tests::cgroup::TestCgroup;
use jit_tests::pam::{
    add_admin, install_pam_jit, jit_service, pam_service, permit_service, require_tools,
    set_managed_accounts, su_from, Sshd, ADMIN, ADMIN_PASSWORD, TIMEOUT,
};
use jit_tests::sandbox::{path_str, SandboxOptions};
use jit_tests::{code, poll, poll_opt, procs, show, stdout, Sandbox};

/// A free port on 127.0.0.1 for the test's own listener.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A TCP listener on 127.0.0.1:PORT that accepts and says nothing.
fn listen(sb: &Sandbox, port: u16) {
    sb.spawn(
        "listener",
        &[
            "python3",
            "-c",
            &format!(
                "import socket\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n\
                 s.bind(('127.0.0.1',{port}))\ns.listen(8)\nc=[]\nwhile True:\n  c.append(s.accept())\n"
            ),
        ],
    );
    poll("listener up", Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).ok()
    });
}

fn state(sb: &Sandbox, id: &str) -> String {
    let o = sb.jitctl(&["--json", "grant", "show", id]);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap_or(Value::Null);
    v["state"].as_str().unwrap_or("").to_string()
}

/// Waits for the grant to be revoked by the monitor; the warning it wrote.
fn revoked_by_monitor(sb: &Sandbox, id: &str, class: &str) -> Value {
    let ended = poll_opt(Duration::from_secs(10), || {
        (state(sb, id) == "revoked").then_some(())
    });
    assert!(
        ended.is_some(),
        "grant {id} was not ended; audit: {:#?}\njitd: {}",
        sb.audit()
            .iter()
            .filter(|e| e["grant"] == id)
            .collect::<Vec<_>>(),
        sb.jitd_log()
    );
    let hit = sb.wait_audit(id, "grant.monitor_hit", Duration::from_secs(5));
    assert_eq!(
        (&hit["severity"], &hit["class"]),
        (&Value::from("warning"), &Value::from(class)),
        "{hit:#}"
    );
    let lat = sb.wait_audit(id, "monitor.latency", Duration::from_secs(5));
    eprintln!(
        "figure: {class} without sudo ({}): event -> grant ended {} ms (queued {} ms)",
        hit["act"], lat["event_to_ended_ms"], lat["queued_ms"]
    );
    hit
}

/// carol (a local user, no grant) runs `su opsadmin` with the admin's password; su's session
/// stack has pam_jit, so the su process joins the `--enable` grant's cgroup at session open.
#[test]
fn a_login_grant_without_sudo_ends_on_lateral_movement() {
    require_tools(&["su", "setpriv", "ssh"]);
    let cg = TestCgroup::new();
    let port = free_port();
    let sb = Sandbox::with(SandboxOptions {
        cgroup_dir: path_str(cg.path()).to_string(),
        extra_config: format!("lateral_ports = [22, {port}]\n"),
        ..SandboxOptions::default()
    });
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
    listen(&sb, port);
    let root_pid = sb.spawn("root-sleep", &["sleep", "600"]);
    let dave_pid = sb.spawn("dave-sleep", &["su", "dave", "-c", "exec sleep 600"]);
    // No --sudo: the grant gives the admin's login only.
    let id = sb.grant(&[
        ADMIN,
        "--enable",
        "--revoke-on",
        "lateral-movement",
        "--for",
        "1h",
    ]);
    let (o, _) = su_from(
        &sb,
        sb.ids.carol,
        ADMIN,
        &format!(
            "setsid sleep 600 </dev/null >/dev/null 2>&1 & echo $! > /var/tmp/session-child.pid; \
             timeout 3 ssh -o BatchMode=yes -o StrictHostKeyChecking=no -p {port} 127.0.0.1 true; exit 0"
        ),
        &format!("{ADMIN_PASSWORD}\n"),
    );
    // su itself is in the grant's cgroup: the grant's end may kill it before it returns.
    assert!([0, -9].contains(&code(&o)), "{}", show(&o));
    let child: i32 = poll("session child pid", Duration::from_secs(10), || {
        stdout(&sb.sh("cat /var/tmp/session-child.pid 2>/dev/null"))
            .trim()
            .parse()
            .ok()
    });
    let hit = revoked_by_monitor(&sb, &id, "lateral-movement");
    let act = hit["act"].as_str().unwrap();
    assert!(
        act == "exec /usr/bin/ssh" || act == format!("tcp connect to 127.0.0.1:{port}"),
        "{hit:#}"
    );
    assert!(hit["cmdline"].as_str().unwrap().contains("ssh"), "{hit:#}");
    poll(
        "the login's detached child ends",
        Duration::from_secs(5),
        || (!procs::is_alive(child)).then_some(()),
    );
    assert!(
        procs::is_alive(root_pid) && procs::is_alive(dave_pid),
        "bystanders live on"
    );
}

/// An ephemeral account logs in over ssh (real sshd on 127.0.0.1, pam_jit in its session
/// stack) and reads a configured sensitive file it is allowed to read.
#[test]
fn an_ssh_account_grant_without_sudo_ends_on_a_sensitive_read() {
    require_tools(&["sshd", "ssh"]);
    let cg = TestCgroup::new();
    let sb = Sandbox::with(SandboxOptions {
        cgroup_dir: path_str(cg.path()).to_string(),
        extra_config: "sensitive_paths = [\"/var/tmp/jit-secret\"]\n".into(),
        ..SandboxOptions::default()
    });
    // Readable by everyone: the class is about the act, not about permission.
    sb.sh_ok("echo token > /var/tmp/jit-secret && chmod 0644 /var/tmp/jit-secret");
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
    let id = sb.grant(&[
        "alice",
        "--account",
        "--ssh-key",
        &public,
        "--revoke-on",
        "sensitive-read",
        "--for",
        "10m",
    ]);
    let root_pid = sb.spawn("root-sleep", &["sleep", "600"]);
    let r = sshd.ssh(
        "alice",
        &key,
        None,
        "setsid sleep 600 </dev/null >/dev/null 2>&1 & echo $! > /var/tmp/jit-child; f=/var/tmp/jit-sec; read l < ${f}ret",
    );
    // The login is the grant's: its end may close the connection before the command returns
    // (ssh then exits 255). The child's pid goes to a file before the read, because the
    // monitor can end the session before anything printed after the read reaches ssh.
    assert!(
        [0, 255].contains(&code(&r.out)),
        "{}\n{}",
        r.show(),
        sshd.log()
    );
    let child: i32 = sb
        .sh_ok("cat /var/tmp/jit-child")
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("{}\n{}", r.show(), sshd.log()));
    let hit = revoked_by_monitor(&sb, &id, "sensitive-read");
    assert_eq!(hit["act"], "open /var/tmp/jit-secret", "{hit:#}");
    assert_eq!(hit["user"], "alice", "{hit:#}");
    poll(
        "the login's detached child ends",
        Duration::from_secs(5),
        || (!procs::is_alive(child)).then_some(()),
    );
    assert!(procs::is_alive(root_pid), "root's process lives on");
    assert!(procs::is_alive(sshd.pid), "sshd's listener lives on");
}

/// jitd cannot make its cgroup directory (its parent does not exist): status says that
/// per-grant cgroups and monitoring are unavailable and why (text and `--json`), a grant
/// without sudo that names classes is refused with that reason, and teardown still ends an
/// account's processes through the /proc scan.
#[test]
fn without_a_cgroup_directory_status_says_why_and_teardown_scans_proc() {
    let cg = TestCgroup::new();
    let dir = cg.path().join("missing").join("jit.slice");
    let sb = Sandbox::with(SandboxOptions {
        cgroup_dir: path_str(&dir).to_string(),
        ..SandboxOptions::default()
    });
    sb.start_jitd();
    let why = format!(
        "no per-grant cgroups (cannot make {}: No such file or directory (os error 2))",
        dir.display()
    );
    let o = sb.jitctl(&["status"]);
    let text = stdout(&o);
    assert!(
        text.contains(&format!(
            "cgroups: {why}; teardown finds processes by the /proc scan only"
        )),
        "{}",
        show(&o)
    );
    assert!(
        text.contains(&format!(
            "monitoring: unavailable: {why}; grants' processes are not watched and --revoke-on needs --sudo"
        )),
        "{}",
        show(&o)
    );
    let o = sb.jitctl(&["--json", "status"]);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(v["cgroups"].as_str().unwrap().starts_with(&why), "{v:#}");
    assert!(
        v["monitoring"]
            .as_str()
            .unwrap()
            .starts_with(&format!("unavailable: {why}")),
        "{v:#}"
    );
    // Named classes that nothing would watch: refused, with the reason.
    let o = sb.jitctl(&[
        "grant",
        "add",
        "alice",
        "--account",
        "--revoke-on",
        "sensitive-read",
        "--for",
        "1h",
    ]);
    assert_ne!(code(&o), 0, "{}", show(&o));
    assert!(
        show(&o).contains(&format!(
            "without --sudo the grant's processes are seen only by jitd's process monitor, which is not running on this host: {why}"
        )),
        "{}",
        show(&o)
    );
    // The /proc scan: a process of the account's uid ends with the grant.
    let g = sb.grant_json(&["alice", "--account", "--for", "1h"]);
    let id = g["id"].as_str().unwrap().to_string();
    let uid = g["uid"].as_u64().unwrap().to_string();
    let pid = sb.spawn(
        "alice-sleep",
        &[
            "setpriv",
            "--reuid",
            &uid,
            "--regid",
            &uid,
            "--clear-groups",
            "sleep",
            "600",
        ],
    );
    poll("alice's process runs", Duration::from_secs(5), || {
        procs::info(pid)
            .filter(|i| i.euid.to_string() == uid)
            .map(|_| ())
    });
    let o = sb.jitctl(&["grant", "revoke", &id]);
    assert_eq!(code(&o), 0, "{}", show(&o));
    poll("alice's process ends", Duration::from_secs(10), || {
        (!procs::is_alive(pid)).then_some(())
    });
    let td = sb.wait_audit(&id, "grant.teardown", Duration::from_secs(10));
    assert!(td["processes_found"].as_u64().unwrap() >= 1, "{td:#}");
    assert!(td.get("cgroup_killed").is_none(), "{td:#}");
}
