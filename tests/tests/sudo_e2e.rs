//! sudo end to end: jitd, libnss_jit (jit-sudo membership), real sudo with sudo_jit loaded from
//! the sandbox's /etc/sudo.conf and the sudoers drop-in of docs/design.md#paths. A scoped grant lets
//! exactly its command through, everything else is refused with a one-line reason naming the
//! grant, a --revoke-on hit is refused and ends the grant, an --mfa-sudo grant asks for a TOTP
//! code (made by `oathtool`) at every sudo, a jit user's approval needs a jitd that answers, a
//! session that kept jit-sudo after expiry cannot sudo, and root and local sudoers never notice.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use serde_json::Value;

use jit_tests::pam::{mfa_enroll, oathtool, step_with_margin};
use jit_tests::sandbox::path_str;
use jit_tests::{artifacts, code, poll, procs, show, stderr, stdout, Sandbox};

/// The sudoers drop-in as the README gives it: intercept, so every command an allowed program
/// starts is checked by sudo_jit too, and the rule.
const JIT_SUDOERS: [&str; 2] = [
    "Defaults:%jit-sudo intercept, log_subcmds",
    "%jit-sudo ALL=(ALL:ALL) NOPASSWD: ALL",
];

/// sudo.conf (`Plugin sudo_jit …`, with or without `Set group_source dynamic`) and sudoers as
/// the packages will write them, inside the sandbox; `extra_sudoers` goes into its own drop-in.
/// dave, a local member of `sudo`, gets a NOPASSWD rule: the local admin jit must never break.
fn write_sudo_config(sb: &Sandbox, dynamic: bool, extra_sudoers: &str) {
    let plugin = artifacts().sudo_plugin;
    let set = if dynamic {
        "Set group_source dynamic\\n"
    } else {
        ""
    };
    sb.sh_ok(&format!(
        "printf 'Plugin sudo_jit {}\\n{set}' > /etc/sudo.conf && \
         printf '%s\\n' '{}' '{}' > /etc/sudoers.d/jit && \
         printf '%s\\n' 'dave ALL=(ALL:ALL) NOPASSWD: ALL' '{extra_sudoers}' > /etc/sudoers.d/local && \
         chmod 0440 /etc/sudoers.d/jit /etc/sudoers.d/local && visudo -c -q",
        path_str(&plugin),
        JIT_SUDOERS[0],
        JIT_SUDOERS[1],
    ));
}

/// sudo.conf and sudoers as the packages will write them (docs/design.md#paths).
fn install_sudo_config(sb: &Sandbox) {
    write_sudo_config(sb, true, "");
}

fn as_carol(sb: &Sandbox, cmd: &str) -> std::process::Output {
    sb.run_full(&["su", "carol", "-c", cmd], None, Duration::from_secs(20))
}

/// What one timed command printed, and how long it took by itself (measured inside `su`).
struct Timed {
    code: i32,
    stdout: String,
    stderr: String,
    elapsed: Duration,
}

impl Timed {
    fn show(&self) -> String {
        format!(
            "code={} elapsed={:?} stdout={:?} stderr={:?}",
            self.code, self.elapsed, self.stdout, self.stderr
        )
    }
}

/// Runs `cmd` as `user` through `su -c`, with `input` on its stdin; the time is taken around
/// `cmd` inside the shell, so su's own PAM start-up is not counted.
fn timed_as(sb: &Sandbox, user: &str, cmd: &str, input: Option<&str>) -> Timed {
    let script = format!(
        "t0=$(date +%s%N); {cmd}; rc=$?; echo \"elapsed_ns=$(( $(date +%s%N) - t0 ))\" >&2; exit $rc"
    );
    let o = sb.run_full(
        &["su", user, "-c", &script],
        input.map(str::as_bytes),
        Duration::from_secs(30),
    );
    let mut err = String::new();
    let mut elapsed = Duration::MAX;
    for line in stderr(&o).lines() {
        match line.strip_prefix("elapsed_ns=") {
            Some(ns) => elapsed = Duration::from_nanos(ns.parse().unwrap_or(u64::MAX)),
            None => {
                err.push_str(line);
                err.push('\n');
            }
        }
    }
    Timed {
        code: code(&o),
        stdout: stdout(&o),
        stderr: err,
        elapsed,
    }
}

/// The lines sudo_jit printed (`jit: …`); with `sudo -S` the step-up prompt ends no line, so a
/// refusal can follow it on the same line.
fn jit_lines(stderr: &str) -> Vec<String> {
    stderr
        .lines()
        .map(|l| match l.rfind("jit: ") {
            Some(i) if l[..i].is_empty() || l[..i].starts_with("Verification code for grant ") => {
                l[i..].to_string()
            }
            _ => String::new(),
        })
        .filter(|l| !l.is_empty())
        .collect()
}

#[track_caller]
fn assert_refused(t: &Timed, needle: &str) {
    assert_ne!(t.code, 0, "refused expected: {}", t.show());
    assert!(
        jit_lines(&t.stderr).iter().any(|l| l.contains(needle)),
        "no `jit: …{needle}…` line: {}",
        t.show()
    );
}

#[track_caller]
fn assert_approved(t: &Timed) {
    assert_eq!(t.code, 0, "approved expected: {}", t.show());
}

fn needs_tools(tools: &[&str]) {
    for t in tools {
        assert!(
            ["/usr/bin", "/usr/sbin", "/bin", "/sbin"]
                .iter()
                .any(|d| std::path::Path::new(d).join(t).is_file()),
            "`{t}` is not installed (scripts/test installs it; apt-get install -y {t})"
        );
    }
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
    assert!(
        stderr(&o).contains(&format!(
            "jit: /usr/bin/apt-get is in class software-install, which ends grant {id}: refused"
        )),
        "outside the scope, but the line says the grant ends: {}",
        show(&o)
    );
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

/// Every revocation class, with real sudo: the command is refused with a one-line reason, the
/// grant is revoked at once (`jitctl grant list` no longer shows it) and carol leaves jit-sudo.
/// The `ioc` class is tested twice: a built-in indicator (emptying a log) that sudo_jit refuses
/// itself, and an operator's `ioc_commands` entry that only jitd knows (sudo_jit approves,
/// jitd's confirmation refuses).
#[test]
fn every_revocation_class_refuses_and_ends_the_grant() {
    let sb = Sandbox::with(jit_tests::sandbox::SandboxOptions {
        extra_config: "ioc_commands = [\"/usr/bin/nproc\"]\n".into(),
        ..Default::default()
    });
    install_sudo_config(&sb);
    sb.start_jitd();
    for (class, cmd, reason) in [
        ("ioc", "/usr/bin/truncate -s 0 /var/log/auth.log", "jit: "),
        ("ioc", "/usr/bin/nproc", "revoke-on ioc"),
        (
            "software-install",
            "/usr/bin/apt-get install -y nmap",
            "jit: ",
        ),
        ("account-change", "/usr/sbin/useradd mallory", "jit: "),
        ("sensitive-read", "/usr/bin/cat /etc/shadow", "jit: "),
    ] {
        let g = sb.grant_json(&[
            "carol",
            "--sudo",
            "ALL",
            "--revoke-on",
            class,
            "--for",
            "10m",
        ]);
        let id = g["id"].as_str().unwrap().to_string();
        let members = |sb: &Sandbox| {
            jit_tests::sandbox::group_members(&stdout(&sb.run(&["getent", "group", "jit-sudo"])))
        };
        assert!(
            members(&sb).contains(&"carol".to_string()),
            "{class}: in jit-sudo"
        );
        assert_approved(&timed_as(&sb, "carol", "sudo -n /usr/bin/id -u", None));
        let r = timed_as(&sb, "carol", &format!("sudo -n {cmd}"), None);
        assert_refused(&r, reason);
        assert!(
            jit_lines(&r.stderr).len() == 1,
            "{class}: one line: {}",
            r.show()
        );
        let listed: Vec<Value> =
            serde_json::from_slice(&sb.jitctl(&["--json", "grant", "list"]).stdout).unwrap();
        assert!(
            !listed.iter().any(|v| v["id"] == id.as_str()),
            "{class} ({cmd}): the grant is gone from `jitctl grant list`: {listed:?}"
        );
        let v: Value =
            serde_json::from_slice(&sb.jitctl(&["--json", "grant", "show", &id]).stdout).unwrap();
        assert_eq!(v["state"], "revoked", "{class}: {v}");
        assert!(
            v["end_reason"]
                .as_str()
                .is_some_and(|r| r.contains(&format!("revoke-on {class}"))),
            "{v}"
        );
        assert!(
            !members(&sb).contains(&"carol".to_string()),
            "{class}: out of jit-sudo"
        );
        let r = timed_as(&sb, "carol", "sudo -n /usr/bin/id -u", None);
        assert_ne!(r.code, 0, "{class}: nothing left: {}", r.show());
    }
    // Nothing ran: no account was added, the log was not emptied by carol.
    assert!(!stdout(&sb.run(&["getent", "passwd", "mallory"])).contains("mallory"));
    sb.assert_local_unaffected();
}

/// A managed admin with a sudoers rule of its own: refused without a grant, allowed while an
/// `--enable` grant is live, refused after its revocation, and refused while the snapshot is
/// missing (jitd's durable managed list still names it, docs/design.md#fail-closed), while root and dave are not.
#[test]
fn managed_admin_needs_an_enable_grant_even_without_a_snapshot() {
    use jit_tests::pam::{add_admin, set_managed_accounts, ADMIN};
    let sb = Sandbox::new();
    add_admin(&sb);
    set_managed_accounts(&sb, &[ADMIN]);
    write_sudo_config(&sb, true, &format!("{ADMIN} ALL=(ALL:ALL) NOPASSWD: ALL"));
    sb.start_jitd();
    let r = timed_as(&sb, ADMIN, "sudo -n /usr/bin/id -u", None);
    assert_refused(&r, "jit: ");
    let id = sb.grant(&[ADMIN, "--enable", "--for", "10m"]);
    let r = timed_as(&sb, ADMIN, "sudo -n /usr/bin/id -u", None);
    assert_approved(&r);
    assert_eq!(r.stdout.trim(), "0");
    assert_eq!(code(&sb.jitctl(&["grant", "revoke", &id])), 0);
    assert_refused(
        &timed_as(&sb, ADMIN, "sudo -n /usr/bin/id -u", None),
        "jit: ",
    );
    // jitd stopped and the snapshot gone (a reboot before jitd starts: /run is tmpfs).
    sb.stop_jitd();
    sb.sh_ok("rm -f /run/jitd/snapshot /run/jitd/gates");
    let r = timed_as(&sb, ADMIN, "sudo -n /usr/bin/id -u", None);
    assert_refused(&r, "no trusted grant snapshot");
    for who in ["root", "dave"] {
        let r = timed_as(&sb, who, "sudo -n /usr/bin/id -u", None);
        assert_approved(&r);
    }
    sb.assert_local_unaffected();
}

/// `--mfa-sudo`: every sudo asks for a code through sudo's conversation (`sudo -S` reads it
/// from stdin), jitd verifies it; a code works once; a wrong code, a replayed code and
/// `sudo -n` are refused; root and dave are never asked.
#[test]
fn step_up_mfa_at_every_sudo() {
    needs_tools(&["oathtool"]);
    let sb = Sandbox::new();
    install_sudo_config(&sb);
    sb.start_jitd();
    let secret = mfa_enroll(&sb, "carol");
    let g = sb.grant_json(&[
        "carol",
        "--sudo",
        "/usr/bin/id -u",
        "--mfa-sudo",
        "--for",
        "10m",
    ]);
    let id = g["id"].as_str().unwrap().to_string();
    assert_eq!(g["mfa_sudo"], true, "{g}");
    let prompt = format!("Verification code for grant {id}: ");

    let t = step_with_margin(10.0);
    let now_code = oathtool(&secret, t);
    let r = timed_as(
        &sb,
        "carol",
        "sudo -S /usr/bin/id -u",
        Some(&format!("{now_code}\n")),
    );
    assert_approved(&r);
    assert_eq!(r.stdout.trim(), "0", "{}", r.show());
    assert!(r.stderr.contains(&prompt), "the prompt: {}", r.show());

    // The same code again: a replay, refused (by jitd, shared with logins).
    let r = timed_as(
        &sb,
        "carol",
        "sudo -S /usr/bin/id -u",
        Some(&format!("{now_code}\n")),
    );
    assert_refused(
        &r,
        &format!("jit: verification code refused for grant {id}: "),
    );
    assert!(!r.stdout.contains('0'), "nothing ran: {}", r.show());

    // Every sudo asks: the next step's code (inside jitd's ±1 window, later than the last
    // accepted step) is accepted once more.
    let next_code = oathtool(&secret, t + 30);
    let r = timed_as(
        &sb,
        "carol",
        "sudo -S /usr/bin/id -u",
        Some(&format!("{next_code}\n")),
    );
    assert_approved(&r);
    assert!(r.stderr.contains(&prompt), "asked again: {}", r.show());

    // A wrong code (from ten minutes ago), and no code at all.
    let wrong = oathtool(&secret, t - 600);
    let r = timed_as(
        &sb,
        "carol",
        "sudo -S /usr/bin/id -u",
        Some(&format!("{wrong}\n")),
    );
    assert_refused(
        &r,
        &format!("jit: verification code refused for grant {id}: "),
    );
    let r = timed_as(&sb, "carol", "sudo -n /usr/bin/id -u", None);
    assert_refused(&r, &format!("grant {id} needs a verification code"));
    let r = timed_as(&sb, "carol", "sudo -S /usr/bin/id -u", Some("\n"));
    assert_refused(
        &r,
        &format!("jit: no verification code given for grant {id}"),
    );
    // Outside the scope: refused before any code is asked.
    let r = timed_as(&sb, "carol", "sudo -S /usr/bin/whoami", Some("123456\n"));
    assert_refused(&r, &format!("/usr/bin/whoami is outside grant {id}"));
    assert!(!r.stderr.contains(&prompt), "{}", r.show());

    // Root and a local sudoer: no prompt, no jitd.
    for who in ["root", "dave"] {
        let r = timed_as(&sb, who, "sudo -n /usr/bin/true", None);
        assert_approved(&r);
        assert!(!r.stderr.contains("Verification"), "{who}: {}", r.show());
    }
    let events = sb.audit_events(&id);
    assert_eq!(
        events.iter().filter(|e| *e == "sudo.allowed").count(),
        2,
        "two approved sudos: {events:?}"
    );
    assert!(events.iter().any(|e| e == "sudo.denied"), "{events:?}");
    // jitd's own TOTP trail: two codes accepted for sudo, the replay and the wrong code not.
    let mfa = |event: &str| {
        sb.audit()
            .iter()
            .filter(|e| e["event"] == event && e["purpose"] == "sudo" && e["service"] == "sudo")
            .filter(|e| e["user"] == "carol")
            .count()
    };
    assert_eq!(mfa("mfa.ok"), 2, "{:?}", sb.audit());
    assert_eq!(mfa("mfa.fail"), 2, "{:?}", sb.audit());
    sb.assert_local_unaffected();
}

/// jitd stopped: a jit user's sudo is refused at once; jitd stopped by SIGSTOP (hung): refused
/// within the plugin's timeout (2 s) + 0.5 s; root and dave are unaffected and not delayed.
#[test]
fn jitd_down_or_hung_refuses_jit_users_only() {
    let sb = Sandbox::new();
    install_sudo_config(&sb);
    sb.start_jitd();
    let id = sb.grant(&["carol", "--sudo", "ALL", "--for", "10m"]);
    let ok = timed_as(&sb, "carol", "sudo -n /usr/bin/id -u", None);
    assert_approved(&ok);

    sb.stop_jitd();
    let r = timed_as(&sb, "carol", "sudo -n /usr/bin/id -u", None);
    assert_refused(&r, "jit: cannot reach jitd (");
    assert_refused(&r, &format!("); sudo refused for grant {id}"));
    assert!(r.elapsed < Duration::from_secs(1), "quickly: {}", r.show());
    for who in ["root", "dave"] {
        let r = timed_as(&sb, who, "sudo -n /usr/bin/id -u", None);
        assert_approved(&r);
        assert_eq!(r.stdout.trim(), "0");
    }

    // Back up: approved again.
    sb.start_jitd();
    assert_approved(&timed_as(&sb, "carol", "sudo -n /usr/bin/id -u", None));

    // Hung: the socket accepts into its backlog but nobody answers.
    let pid = sb.jitd_pid().expect("jitd runs");
    procs::signal(pid, libc::SIGSTOP);
    let r = timed_as(&sb, "carol", "sudo -n /usr/bin/id -u", None);
    let root = timed_as(&sb, "root", "sudo -n /usr/bin/id -u", None);
    let dave = timed_as(&sb, "dave", "sudo -n /usr/bin/id -u", None);
    procs::signal(pid, libc::SIGCONT);
    assert_refused(
        &r,
        &format!("jit: cannot reach jitd (no answer within 2 s); sudo refused for grant {id}"),
    );
    assert!(
        r.elapsed >= Duration::from_millis(1900) && r.elapsed <= Duration::from_millis(2500),
        "refused within timeout + 0.5 s: {}",
        r.show()
    );
    for t in [&root, &dave] {
        assert_approved(t);
        assert!(
            t.elapsed < Duration::from_secs(1),
            "not delayed: {}",
            t.show()
        );
    }
    assert_approved(&timed_as(&sb, "carol", "sudo -n /usr/bin/id -u", None));
    // The report queued while jitd was stopped was abandoned by the plugin: jitd, resumed,
    // does not record an approval nobody got. Approvals recorded: before the stop, after the
    // restart, and the last one.
    let allowed = sb
        .audit()
        .iter()
        .filter(|e| e["event"] == "sudo.allowed" && e["user"] == "carol")
        .count();
    assert_eq!(allowed, 3, "{:?}", sb.audit());
    assert!(sb.audit().iter().any(|e| e["event"] == "request.abandoned"));
    sb.assert_local_unaffected();
}

/// A session opened during a sudo grant keeps the jit-sudo gid after the grant expired (jitd's
/// teardown ends processes holding granted *local* groups; jit-sudo is the plugin's to guard).
/// It cannot sudo, whether sudo decides on the process's groups (default) or on the group
/// database (`Set group_source dynamic`). sudoers also names the gid numerically here, so that
/// in the default mode sudoers lets the kept gid through and the plugin's own grant check is
/// what refuses.
#[test]
fn kept_jit_sudo_group_after_expiry_cannot_sudo() {
    for dynamic in [false, true] {
        let sb = Sandbox::new();
        let jit_sudo_gid = sb.ids.jit_max - 1;
        write_sudo_config(
            &sb,
            dynamic,
            &format!("%#{jit_sudo_gid} ALL=(ALL:ALL) NOPASSWD: ALL"),
        );
        sb.start_jitd();
        let g = sb.grant_json(&["carol", "--sudo", "ALL", "--for", "8s"]);
        let id = g["id"].as_str().unwrap().to_string();
        let not_after = g["not_after"].as_i64().unwrap();
        let gid_line = stdout(&sb.run(&["getent", "group", "jit-sudo"]));
        assert!(
            gid_line.starts_with("jit-sudo:")
                && gid_line.contains(&format!(":{jit_sudo_gid}:carol")),
            "{gid_line:?}"
        );

        // A session opened during the grant (groups from initgroups through NSS).
        let session = sb.spawn("kept", &["su", "carol", "-c", "exec sleep 1000"]);
        let sleeper = poll("carol's session", Duration::from_secs(10), || {
            procs::live_where(|p| p.uid == sb.ids.carol && p.cmdline.starts_with("sleep"))
                .into_iter()
                .next()
        });
        assert!(
            sleeper.groups.contains(&jit_sudo_gid),
            "the session holds jit-sudo: {:?}",
            sleeper.groups
        );
        let groups: Vec<String> = sleeper.groups.iter().map(u32::to_string).collect();
        let in_session = |cmd: &str| {
            let script = format!(
                "exec setpriv --reuid={c} --regid={c} --groups={g} -- {cmd}",
                c = sb.ids.carol,
                g = groups.join(",")
            );
            sb.run_full(&["sh", "-c", &script], None, Duration::from_secs(20))
        };
        let o = in_session("sudo -n /usr/bin/id -u");
        assert_eq!(
            (code(&o), stdout(&o).trim()),
            (0, "0"),
            "dynamic={dynamic}: during the grant: {}",
            show(&o)
        );

        while jit_tests::now() < not_after + 1 {
            std::thread::sleep(Duration::from_millis(200));
        }
        sb.wait_audit(&id, "grant.expired", Duration::from_secs(10));
        // The session keeps the gid (jit-sudo is no privilege by itself, so teardown leaves
        // the session alone) and cannot use it.
        assert!(procs::is_alive(sleeper.pid), "the session survives expiry");
        let o = in_session("sudo -n /usr/bin/id -u");
        assert_ne!(
            code(&o),
            0,
            "dynamic={dynamic}: kept group after expiry: {}",
            show(&o)
        );
        assert!(!stdout(&o).contains('0'), "nothing ran: {}", show(&o));
        if dynamic {
            // sudo asks NSS, which no longer lists carol in jit-sudo: sudoers refuses first.
            assert!(
                !stderr(&o).contains("jit: "),
                "sudoers decided: {}",
                show(&o)
            );
        } else {
            // sudoers let the kept gid through; sudo_jit refused on the snapshot.
            let lines = jit_lines(&stderr(&o));
            assert!(
                lines
                    .iter()
                    .any(|l| l == &format!("jit: grant {id} has expired")
                        || l == "jit: carol has no live grant with a sudo scope"),
                "{}",
                show(&o)
            );
        }
        // The same from a session whose groups NSS computes now (no jit-sudo any more).
        let o = as_carol(&sb, "sudo -n /usr/bin/id -u");
        assert_ne!(code(&o), 0, "dynamic={dynamic}: {}", show(&o));
        procs::signal(sleeper.pid, libc::SIGKILL);
        let _ = sb.wait_exit(session, Duration::from_secs(5));
        sb.assert_local_unaffected();
    }
}

/// The step-up prompt on a terminal (no `-S`): `script` gives sudo a pty, the code is typed
/// into it; the prompt goes to the terminal and the code is read from it with echo off.
#[test]
fn step_up_mfa_on_a_terminal() {
    needs_tools(&["oathtool", "script"]);
    let sb = Sandbox::new();
    install_sudo_config(&sb);
    sb.start_jitd();
    let secret = mfa_enroll(&sb, "carol");
    let id = sb.grant(&["carol", "--sudo", "ALL", "--mfa-sudo", "--for", "10m"]);
    let code = oathtool(&secret, step_with_margin(10.0));
    let r = timed_as(
        &sb,
        "carol",
        "script -qec 'sudo /usr/bin/id -u' /dev/null",
        Some(&format!("{code}\n")),
    );
    assert_approved(&r);
    assert!(
        r.stdout
            .contains(&format!("Verification code for grant {id}: ")),
        "the prompt is on the terminal: {}",
        r.show()
    );
    // The pty echoes the code as typed ahead (before sudo asked); nothing after the prompt.
    let after = r
        .stdout
        .split("Verification code for grant ")
        .nth(1)
        .unwrap_or_default();
    assert!(
        !after.contains(&code),
        "no echo at the prompt: {}",
        r.show()
    );
    assert_eq!(
        r.stdout.lines().last().map(str::trim),
        Some("0"),
        "{}",
        r.show()
    );
}

/// sudo's intercept mode asks the approval plugin again for every command the allowed shell
/// runs (docs/threat-model.md: S11, X12): under an --mfa-sudo grant for `/usr/bin/sh` and
/// `/usr/bin/id`, one code is asked (for the shell), `/usr/bin/id` runs without a second
/// prompt, `/usr/bin/whoami` is outside the grant and refused.
#[test]
fn intercepted_sub_commands_under_step_up() {
    needs_tools(&["oathtool"]);
    let sb = Sandbox::new();
    install_sudo_config(&sb);
    sb.sh_ok(
        "printf '%s\\n' 'Defaults intercept' > /etc/sudoers.d/zz-intercept && \
         chmod 0440 /etc/sudoers.d/zz-intercept && visudo -c -q",
    );
    sb.start_jitd();
    let secret = mfa_enroll(&sb, "carol");
    let id = sb.grant(&[
        "carol",
        "--sudo",
        "/usr/bin/sh",
        "--sudo",
        "/usr/bin/id",
        "--mfa-sudo",
        "--for",
        "10m",
    ]);
    let code = oathtool(&secret, step_with_margin(10.0));
    let r = timed_as(
        &sb,
        "carol",
        "sudo -S /usr/bin/sh -c '/usr/bin/id -u; /usr/bin/whoami; true'",
        Some(&format!("{code}\n")),
    );
    assert_eq!(r.stdout.trim(), "0", "id ran, whoami did not: {}", r.show());
    assert!(
        jit_lines(&r.stderr)
            .iter()
            .any(|l| l == &format!("jit: /usr/bin/whoami is outside grant {id}")),
        "{}",
        r.show()
    );
    assert_eq!(
        r.stderr.matches("Verification code").count(),
        1,
        "one prompt: {}",
        r.show()
    );
    let events = sb.audit_events(&id);
    assert_eq!(
        events.iter().filter(|e| *e == "sudo.allowed").count(),
        2,
        "sh and id: {events:?}"
    );
    assert_eq!(
        events.iter().filter(|e| *e == "sudo.denied").count(),
        1,
        "whoami: {events:?}"
    );
}

/// What the world-readable snapshot shows a local user: accounts and memberships (NSS works
/// for them), but no one's sudo scope, source networks, time windows or managed accounts. Those
/// are in the root-only gates file, which dave cannot read and from which sudo_jit still
/// enforces the scope.
#[test]
fn public_snapshot_shows_no_one_elses_gates() {
    use jit_tests::pam::{add_admin, set_managed_accounts, ADMIN};
    let sb = Sandbox::new();
    add_admin(&sb);
    set_managed_accounts(&sb, &[ADMIN]);
    install_sudo_config(&sb);
    sb.start_jitd();
    sb.grant(&["carol", "--sudo", "/usr/bin/id -u", "--for", "10m"]);
    sb.grant(&[
        "alice",
        "--account",
        "--from",
        "198.51.100.0/24",
        "--window",
        "* 00:00-23:59",
        "--for",
        "10m",
    ]);
    // dave (a local user) reads the snapshot as NSS does, and resolves the account through it.
    let o = sb.run(&["su", "dave", "-c", "wc -c < /run/jitd/snapshot"]);
    let size: u64 = stdout(&o).trim().parse().unwrap_or(0);
    assert!(size > 64, "dave can read the snapshot: {}", show(&o));
    let o = sb.run(&["su", "dave", "-c", "getent passwd alice"]);
    assert!(
        stdout(&o).starts_with("alice:"),
        "NSS for dave: {}",
        show(&o)
    );
    // The two grants were added after jitd wrote the files: they are in the deltas (format
    // 1.4), which follow the same split.
    for file in ["/run/jitd/snapshot", "/run/jitd/snapshot.delta"] {
        for secret in ["/usr/bin/id", "00:00-23:59", "198.51.100.0/24", ADMIN] {
            let o = sb.run(&[
                "su",
                "dave",
                "-c",
                &format!("grep -a -c -F -e '{secret}' {file}"),
            ]);
            assert_eq!(
                stdout(&o).trim(),
                "0",
                "{secret:?} readable by dave in {file}: {}",
                show(&o)
            );
        }
    }
    let o = sb.run(&[
        "su",
        "dave",
        "-c",
        "grep -a -c -F -e alice /run/jitd/snapshot.delta",
    ]);
    assert_eq!(
        stdout(&o).trim(),
        "1",
        "the delta holds alice: {}",
        show(&o)
    );
    for file in ["/run/jitd/gates", "/run/jitd/gates.delta"] {
        let o = sb.run(&["su", "dave", "-c", &format!("cat {file}")]);
        assert_ne!(code(&o), 0, "dave reads {file}: {}", show(&o));
    }
    assert!(
        sb.sh_ok(
            "stat -c '%u %a' /run/jitd/gates /run/jitd/snapshot /run/jitd/gates.delta \
             /run/jitd/snapshot.delta"
        )
        .lines()
        .eq(["0 600", "0 644", "0 600", "0 644"]),
        "modes"
    );
    // The scope is still enforced, from the gates file.
    let r = timed_as(&sb, "carol", "sudo -n /usr/bin/id -u", None);
    assert_approved(&r);
    assert_eq!(r.stdout.trim(), "0");
    assert_refused(
        &timed_as(&sb, "carol", "sudo -n /usr/bin/id", None),
        "outside grant",
    );
}

/// A gates file sudo_jit cannot trust (writable by others, or not root's) refuses every jit
/// user, as a missing one does, while root and the local sudoer dave are untouched; jitd
/// rewrites such a file at its next tick.
#[test]
fn untrusted_gates_file_refuses_jit_users_only() {
    let sb = Sandbox::new();
    install_sudo_config(&sb);
    sb.start_jitd();
    sb.grant(&["carol", "--sudo", "/usr/bin/id -u", "--for", "10m"]);
    assert_approved(&timed_as(&sb, "carol", "sudo -n /usr/bin/id -u", None));
    // jitd stopped so that it does not repair the file under the test: carol is then refused
    // anyway (no jitd to confirm), but not for an untrusted gates file while it is intact.
    sb.stop_jitd();
    let r = timed_as(&sb, "carol", "sudo -n /usr/bin/id -u", None);
    assert_ne!(r.code, 0, "{}", r.show());
    assert!(
        !r.stderr.contains("no trusted grant snapshot"),
        "intact gates file: {}",
        r.show()
    );
    let dave = sb.sh_ok("id -u dave").trim().to_string();
    for (what, tamper, undo) in [
        (
            "writable by others",
            "chmod 0606 /run/jitd/gates".to_string(),
            "chmod 0600 /run/jitd/gates".to_string(),
        ),
        (
            "owned by dave",
            format!("chown {dave} /run/jitd/gates"),
            "chown 0 /run/jitd/gates".to_string(),
        ),
        (
            "a symlink to the snapshot",
            "mv /run/jitd/gates /run/jitd/gates.keep && ln -s snapshot /run/jitd/gates".to_string(),
            "rm /run/jitd/gates && mv /run/jitd/gates.keep /run/jitd/gates".to_string(),
        ),
    ] {
        sb.sh_ok(&tamper);
        let r = timed_as(&sb, "carol", "sudo -n /usr/bin/id -u", None);
        assert_refused(&r, "no trusted grant snapshot");
        for who in ["root", "dave"] {
            let r = timed_as(&sb, who, "sudo -n /usr/bin/id -u", None);
            assert_approved(&r);
            assert_eq!(r.stdout.trim(), "0", "{who} with a gates file {what}");
        }
        sb.sh_ok(&undo);
    }
    sb.start_jitd();
    assert_approved(&timed_as(&sb, "carol", "sudo -n /usr/bin/id -u", None));
    sb.sh_ok("chmod 0644 /run/jitd/gates");
    poll(
        "jitd restores the gates file's mode",
        Duration::from_secs(5),
        || (sb.sh_ok("stat -c %a /run/jitd/gates").trim() == "600").then_some(()),
    );
    sb.assert_local_unaffected();
}

/// A grant of a program that starts others (`--sudo /usr/bin/find`, no argument restriction)
/// does not give a root shell: under the drop-in's `intercept`, sudo hands the `/bin/sh` that
/// `find -exec` starts to sudo_jit, which refuses it (outside the grant) and audits it.
#[test]
fn allowed_program_cannot_escape_to_a_shell() {
    let sb = Sandbox::new();
    install_sudo_config(&sb);
    sb.start_jitd();
    // jitctl warns (stderr, and in --json output) that find without fixed arguments escapes.
    let o = sb.jitctl(&[
        "grant",
        "add",
        "carol",
        "--sudo",
        "/usr/bin/find",
        "--for",
        "10m",
    ]);
    assert_eq!(code(&o), 0, "{}", show(&o));
    let id = stdout(&o).trim().to_string();
    assert!(
        stderr(&o).contains("warning: --sudo \"/usr/bin/find\"")
            && stderr(&o).contains("find -exec"),
        "{}",
        show(&o)
    );
    let g = sb.grant_json(&[
        "dave",
        "--sudo",
        "/usr/bin/perl",
        "--sudo",
        "/usr/bin/id -u",
        "--for",
        "10m",
    ]);
    let w = g["warnings"].as_array().cloned().unwrap_or_default();
    assert!(
        w.len() == 1 && w[0].as_str().unwrap_or("").contains("/usr/bin/perl"),
        "{g}"
    );
    let g = sb.grant_json(&[
        "dave",
        "--sudo",
        "/usr/bin/find /tmp -name x",
        "--for",
        "10m",
    ]);
    assert!(
        g.get("warnings").is_none(),
        "fixed arguments: no warning: {g}"
    );
    let r = timed_as(
        &sb,
        "carol",
        "sudo -n /usr/bin/find /etc/passwd -maxdepth 0",
        None,
    );
    assert_approved(&r);
    assert_eq!(r.stdout.trim(), "/etc/passwd", "{}", r.show());
    let r = timed_as(
        &sb,
        "carol",
        "sudo -n /usr/bin/find /etc/passwd -maxdepth 0 -exec /bin/sh -c 'echo ESCAPED; id -u' ';'",
        None,
    );
    assert!(
        !r.stdout.contains("ESCAPED") && !r.stdout.lines().any(|l| l.trim() == "0"),
        "find -exec ran a shell as root: {}",
        r.show()
    );
    assert!(
        jit_lines(&r.stderr)
            .iter()
            .any(|l| l.contains("/sh is outside grant") && l.contains(&id)),
        "the intercepted shell is refused by sudo_jit: {}",
        r.show()
    );
    let events = sb.audit_events(&id);
    assert!(
        events.iter().any(|e| e == "sudo.denied"),
        "audited: {events:?}"
    );
}

/// `jitd --check-config` fails while the members of jit-sudo do not run under sudo's
/// `intercept`: no Defaults line, a line for another group, or one that a more specific line
/// turns off again.
#[test]
fn check_config_requires_intercept_for_jit_sudo() {
    let sb = Sandbox::new();
    install_sudo_config(&sb);
    let jitd = path_str(&artifacts().jitd).to_string();
    let check = |sb: &Sandbox| sb.run(&[&jitd, "--config", "/etc/jit/jitd.toml", "--check-config"]);
    let o = check(&sb);
    assert_eq!(code(&o), 0, "the README drop-in passes: {}", show(&o));
    for (why, dropin) in [
        ("no Defaults line", vec![JIT_SUDOERS[1]]),
        (
            "intercept for another group",
            vec!["Defaults:%sudo intercept", JIT_SUDOERS[1]],
        ),
        (
            "turned off for jit-sudo after a global one",
            vec![
                "Defaults:%jit-sudo !intercept",
                "Defaults intercept",
                JIT_SUDOERS[1],
            ],
        ),
    ] {
        let lines: Vec<String> = dropin.iter().map(|l| format!("'{l}'")).collect();
        sb.sh_ok(&format!(
            "printf '%s\\n' {} > /etc/sudoers.d/jit && visudo -c -q",
            lines.join(" ")
        ));
        let o = check(&sb);
        assert_eq!(code(&o), 1, "{why}: {}", show(&o));
        assert!(
            format!("{}{}", stdout(&o), stderr(&o)).contains("Defaults:%jit-sudo intercept"),
            "{why}: the message names the line to add: {}",
            show(&o)
        );
    }
}

/// The daemon-free check (jitd down, no gates file) takes jit's uid range from the public
/// snapshot's header, where jitd writes its configured `uid_range` (this sandbox's range is not
/// the default 70000-79999): a process holding a gid of that range that /etc/group does not
/// know is refused; the same local sudoer without it is let through.
#[test]
fn daemon_free_check_uses_the_configured_uid_range() {
    let sb = Sandbox::new();
    // Without `group_source dynamic` sudo passes the process's own groups, which is what a
    // session that kept a jit gid has.
    write_sudo_config(&sb, false, "");
    sb.start_jitd();
    sb.stop_jitd();
    sb.sh_ok("rm -f /run/jitd/gates && test -f /run/jitd/snapshot");
    let dave = sb.sh_ok("id -u dave").trim().to_string();
    let jit_gid = (sb.ids.jit_max - 7).to_string();
    assert!(
        !(70_000..=79_999).contains(&(sb.ids.jit_max - 7)),
        "the sandbox range must differ from the default for this test to mean anything"
    );
    let sudo_as_dave = |groups: &str| {
        sb.run_full(
            &[
                "setpriv",
                "--reuid",
                &dave,
                "--regid",
                &dave,
                "--groups",
                groups,
                "sudo",
                "-n",
                "/usr/bin/id",
                "-u",
            ],
            None,
            Duration::from_secs(30),
        )
    };
    let o = sudo_as_dave(&dave);
    assert_eq!(code(&o), 0, "dave without a jit gid: {}", show(&o));
    assert_eq!(stdout(&o).trim(), "0");
    let o = sudo_as_dave(&format!("{dave},{jit_gid}"));
    assert_ne!(
        code(&o),
        0,
        "a process holding gid {jit_gid} of jitd's uid_range must be refused: {}",
        show(&o)
    );
    assert!(stderr(&o).contains("jit: "), "{}", show(&o));
    sb.assert_local_unaffected();
}
