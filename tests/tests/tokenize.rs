//! Tokenization: a grant of a capability for one program (`jitctl grant add carol --cap
//! CAP_NET_BIND_SERVICE --program PATH`) lets carol start that program through `jitctl run`
//! with the capability in its ambient set and her own uid, and nothing else. Real `jitctl`
//! run as carol (through `setpriv`), a real jitd, a small C program that binds a privileged
//! port on 127.0.0.1 (tests/fixtures/bindport.c), /proc/PID/status read as the kernel shows it.
//!
//! The port is a privileged one derived from the sandbox's uid block rather than 80, so that
//! tests running side by side (or a web server on the host) never collide; the kernel treats
//! every port below 1024 alike (ip_unprivileged_port_start is checked to be 1024).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use jit_tests::sandbox::path_str;
use jit_tests::{
    artifacts, code, cprog, poll, poll_opt, procs, show, stderr, stdout, Sandbox, SandboxOptions,
};

/// The granted test program (root-owned, in root-owned directories under the target dir).
fn bindport() -> PathBuf {
    let p = cprog::program("bindport");
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

fn port(sb: &Sandbox) -> u16 {
    let unpriv: u32 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(unpriv >= 1024, "ip_unprivileged_port_start is {unpriv}: any user may bind low ports here, the test could not fail");
    600 + u16::try_from((sb.ids.base / 1000) % 300).unwrap()
}

/// `ARGS` run as carol (uid, gid and groups) in directory `dir`.
fn as_carol(sb: &Sandbox, dir: &str, args: &[&str]) -> std::process::Output {
    let c = sb.ids.carol.to_string();
    let mut v = vec![
        "setpriv",
        "--reuid",
        &c,
        "--regid",
        &c,
        "--init-groups",
        "--",
    ];
    v.extend_from_slice(args);
    let script = format!("cd {dir} && exec \"$@\"");
    let mut all = vec!["sh", "-c", script.as_str(), "sh"];
    all.extend_from_slice(&v);
    sb.run_full(&all, None, Duration::from_secs(30))
}

/// `jitctl run ARGS` as carol in /var/tmp.
fn run_as_carol(sb: &Sandbox, args: &[&str]) -> std::process::Output {
    let a = artifacts();
    let mut v = vec![path_str(&a.jitctl), "run"];
    v.extend_from_slice(args);
    as_carol(sb, "/var/tmp", &v)
}

fn events(sb: &Sandbox, event: &str) -> Vec<Value> {
    sb.audit()
        .into_iter()
        .filter(|e| e.get("event").and_then(Value::as_str) == Some(event))
        .collect()
}

fn status_field(pid: i32, key: &str) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(key).map(|v| v.trim().to_string()))
        .unwrap_or_default()
}

/// The bindport processes running as `uid`.
fn bindports(uid: u32) -> Vec<i32> {
    procs::live_where(|p| {
        p.uid == uid && p.cmdline.contains("bindport") && !p.cmdline.contains("jitctl")
    })
    .into_iter()
    .map(|p| p.pid)
    .collect()
}

#[test]
fn granted_program_binds_a_privileged_port_as_the_person_until_expiry() {
    let sb = Sandbox::new();
    let prog = bindport();
    let prog_s = path_str(&prog).to_string();
    let port = port(&sb);
    let port_s = port.to_string();
    sb.start_jitd();
    let carol = sb.ids.carol;

    // Without a grant: refused in one line that says why; the program never starts.
    let o = run_as_carol(&sb, &[&prog_s, &port_s, "0"]);
    assert!(
        code(&o) == 1
            && stderr(&o).contains("no live grant")
            && stderr(&o).lines().count() == 1
            && !stdout(&o).contains("bound"),
        "jitctl run without a grant: {}",
        show(&o)
    );
    // The program run directly by carol has no capability.
    let o = as_carol(&sb, "/var/tmp", &[&prog_s, &port_s, "0"]);
    assert!(
        code(&o) == 13 && stdout(&o).contains("Permission denied"),
        "carol binding port {port} directly must fail: {}",
        show(&o)
    );

    let id = sb.grant(&[
        "carol",
        "--cap",
        "CAP_NET_BIND_SERVICE",
        "--program",
        &prog_s,
        "--for",
        "20s",
    ]);
    let o = run_as_carol(&sb, &[&prog_s, &port_s, "0"]);
    assert!(
        code(&o) == 0 && stdout(&o).contains(&format!("bound {port} uid={carol}")),
        "jitctl run under the grant: {}\n{}",
        show(&o),
        sb.jitd_log()
    );
    // A bare name is the granted program (never looked up in the caller's PATH); the exit
    // status is relayed.
    let o = run_as_carol(&sb, &["bindport", &port_s, "0", "7"]);
    assert!(
        code(&o) == 7 && stdout(&o).contains("bound"),
        "bare name and exit status: {}",
        show(&o)
    );
    // The same program run directly still has nothing.
    let o = as_carol(&sb, "/var/tmp", &[&prog_s, &port_s, "0"]);
    assert_eq!(code(&o), 13, "direct run during the grant: {}", show(&o));
    let runs = events(&sb, "tokenize.run");
    assert!(
        runs.len() == 2
            && runs.iter().all(|e| e["grant"] == id.as_str()
                && e["uid"] == carol
                && e["program"] == prog_s.as_str()),
        "tokenize.run audited with the grant id: {runs:?}"
    );
    let exits = events(&sb, "tokenize.exit");
    assert!(
        exits
            .iter()
            .any(|e| e["grant"] == id.as_str() && e["status"] == 7),
        "tokenize.exit audited with the status: {exits:?}"
    );

    // A long-running one: /proc shows carol's uid everywhere and exactly the capability.
    let a = artifacts();
    let c = carol.to_string();
    let jitctl_pid = sb.spawn(
        "jitctl-run",
        &[
            "setpriv",
            "--reuid",
            &c,
            "--regid",
            &c,
            "--init-groups",
            "--",
            path_str(&a.jitctl),
            "run",
            &prog_s,
            &port_s,
            "120",
        ],
    );
    let pid = poll("the capable program runs", Duration::from_secs(10), || {
        bindports(carol).first().copied()
    });
    assert_eq!(
        status_field(pid, "Uid:")
            .split_whitespace()
            .collect::<Vec<_>>(),
        [c.as_str(); 4]
    );
    assert_eq!(
        status_field(pid, "Gid:")
            .split_whitespace()
            .collect::<Vec<_>>(),
        [c.as_str(); 4]
    );
    for key in ["CapAmb:", "CapPrm:", "CapEff:", "CapBnd:"] {
        assert_eq!(
            status_field(pid, key),
            "0000000000000400",
            "{key} of the program"
        );
    }
    assert_eq!(status_field(pid, "NoNewPrivs:"), "1");
    assert_eq!(status_field(pid, "CapInh:"), "0000000000000400");
    // carol's own shell (jitctl) holds nothing.
    assert_eq!(status_field(jitctl_pid, "CapEff:"), "0000000000000000");

    // Expiry ends it (a process still holding the granted capability), and jitctl reports
    // how it ended.
    sb.wait_audit(&id, "grant.teardown", Duration::from_secs(30));
    poll_opt(Duration::from_secs(10), || {
        (!procs::is_alive(pid)).then_some(())
    })
    .unwrap_or_else(|| panic!("the capable program outlived the grant\n{}", sb.jitd_log()));
    let st = sb
        .wait_exit(jitctl_pid, Duration::from_secs(10))
        .expect("jitctl run returns when its program is ended");
    assert!(
        st.code().is_some_and(|c| c > 128),
        "jitctl relays the ending signal: {st}"
    );
    let o = run_as_carol(&sb, &[&prog_s, &port_s, "0"]);
    assert!(
        code(&o) == 1 && stderr(&o).contains("no live grant") && !stdout(&o).contains("bound"),
        "after expiry: {}",
        show(&o)
    );
}

#[test]
fn root_equivalent_capabilities_and_untrusted_programs_are_refused() {
    let sb = Sandbox::new();
    let prog = bindport();
    let prog_s = path_str(&prog).to_string();
    sb.start_jitd();
    let add = |cap: &str, program: &str| {
        sb.jitctl(&[
            "grant",
            "add",
            "carol",
            "--cap",
            cap,
            "--program",
            program,
            "--for",
            "1h",
        ])
    };
    let refused = |o: &std::process::Output, want: &str| {
        assert!(
            code(o) == 1 && stderr(o).contains(want) && stderr(o).lines().count() == 1,
            "want a one-line refusal with {want:?}: {}",
            show(o)
        );
    };
    refused(
        &add("CAP_SYS_ADMIN", &prog_s),
        "CAP_SYS_ADMIN refused by policy",
    );
    refused(&add("cap_setuid", &prog_s), "CAP_SETUID refused by policy");
    refused(&add("CAP_DAC_OVERRIDE", &prog_s), "allow_caps");

    // A symbolic link to the program, a copy carol owns, a root-owned copy in a directory
    // others may write, a shell and a script.
    let dir = prog.parent().unwrap();
    let link = dir.join(format!("bindport-link-{}", sb.ids.base));
    let owned = dir.join(format!("bindport-carol-{}", sb.ids.base));
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(&prog, &link).unwrap();
    std::fs::copy(&prog, &owned).unwrap();
    std::os::unix::fs::chown(&owned, Some(sb.ids.carol), Some(sb.ids.carol)).unwrap();
    let open_dir = sb.root().join("opendir");
    std::fs::create_dir_all(&open_dir).unwrap();
    std::fs::set_permissions(&open_dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let in_open = open_dir.join("bindport");
    std::fs::copy(&prog, &in_open).unwrap();
    let script = dir.join(format!("bindport-script-{}", sb.ids.base));
    std::fs::write(&script, "#!/bin/sh\nexec id\n").unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    refused(
        &add("CAP_NET_BIND_SERVICE", path_str(&link)),
        "is a symbolic link",
    );
    refused(&add("CAP_NET_BIND_SERVICE", path_str(&owned)), "not root");
    refused(
        &add("CAP_NET_BIND_SERVICE", path_str(&in_open)),
        "writable by group or others",
    );
    refused(
        &add("CAP_NET_BIND_SERVICE", "/usr/bin/env"),
        "runs other programs",
    );
    refused(
        &add("CAP_NET_BIND_SERVICE", "/usr/bin/dash"),
        "runs other programs",
    );
    refused(
        &add("CAP_NET_BIND_SERVICE", path_str(&script)),
        "not an ELF executable",
    );
    refused(
        &add("CAP_NET_BIND_SERVICE", "bindport"),
        "not an absolute path",
    );
    let o = sb.jitctl(&[
        "grant",
        "add",
        "carol",
        "--cap",
        "CAP_NOPE",
        "--program",
        &prog_s,
        "--for",
        "1h",
    ]);
    assert_eq!(
        code(&o),
        2,
        "an unknown capability is a usage error: {}",
        show(&o)
    );
    // Nothing was granted.
    let o = sb.jitctl(&["grant", "list"]);
    assert!(!stdout(&o).contains("carol"), "{}", show(&o));
    for p in [&link, &owned, &script] {
        let _ = std::fs::remove_file(p);
    }
}

#[test]
fn operator_allows_a_root_equivalent_capability_by_name() {
    let sb = Sandbox::with(SandboxOptions {
        extra_config: "allow_caps = [\"CAP_DAC_READ_SEARCH\"]\n".into(),
        ..SandboxOptions::default()
    });
    let prog_s = path_str(&bindport()).to_string();
    sb.start_jitd();
    sb.grant(&[
        "carol",
        "--cap",
        "CAP_DAC_READ_SEARCH",
        "--program",
        &prog_s,
        "--for",
        "1h",
    ]);
    let o = sb.jitctl(&[
        "grant",
        "add",
        "dave",
        "--cap",
        "CAP_SYS_ADMIN",
        "--program",
        &prog_s,
        "--for",
        "1h",
    ]);
    assert!(
        code(&o) == 1 && stderr(&o).contains("refused by policy"),
        "{}",
        show(&o)
    );
}

#[test]
fn arguments_environment_and_descriptors_do_not_widen_what_runs() {
    let sb = Sandbox::new();
    let prog = bindport();
    let prog_s = path_str(&prog).to_string();
    sb.start_jitd();
    let id = sb.grant(&[
        "carol",
        "--cap",
        "CAP_NET_BIND_SERVICE",
        "--program",
        &prog_s,
        "--for",
        "1h",
    ]);
    // carol's own "bindport" first in her PATH, LD_PRELOAD set, in her own directory.
    sb.sh_ok(&format!(
        "mkdir -p /var/tmp/carolbin && printf '#!/bin/sh\\necho impostor\\n' > /var/tmp/carolbin/bindport && chmod 755 /var/tmp/carolbin/bindport && chown -R {c}:{c} /var/tmp/carolbin",
        c = sb.ids.carol
    ));
    let a = artifacts();
    let o = as_carol(
        &sb,
        "/var/tmp/carolbin",
        &[
            "env",
            "PATH=/var/tmp/carolbin:/usr/bin:/bin",
            "LD_PRELOAD=/var/tmp/carolbin/evil.so",
            "LD_LIBRARY_PATH=/var/tmp/carolbin",
            path_str(&a.jitctl),
            "run",
            "bindport",
            "env",
        ],
    );
    let out = stdout(&o);
    assert!(
        code(&o) == 0
            && out.contains(&format!("argv0={prog_s}\n"))
            && out.contains("LD_PRELOAD=(unset)\n")
            && out.contains("PATH=/usr/local/bin:/usr/bin:/bin\n")
            && out.contains("cwd=/var/tmp/carolbin\n")
            && out.contains("fds=\n")
            && !out.contains("impostor"),
        "the granted program with a clean environment, the caller's directory, no extra descriptors: {}",
        show(&o)
    );
    // Not in the grant; a relative path; a program named like the granted one elsewhere.
    for (p, want) in [
        ("/usr/bin/id", "is not in grant"),
        ("./bindport", "absolute path or its bare name"),
        ("/var/tmp/carolbin/bindport", "is not in grant"),
    ] {
        let o = run_as_carol(&sb, &[p]);
        assert!(
            code(&o) == 1 && stderr(&o).contains(want) && !stdout(&o).contains("impostor"),
            "jitctl run {p}: {}",
            show(&o)
        );
    }
    // A raw client: five descriptors instead of four, a file as the working directory, and
    // the request alone (no descriptors): each refused, nothing started.
    let client = r#"
import json, os, socket, struct, sys
def ask(fds, send=True):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect("/run/jitd/jitd.sock")
    body = json.dumps({"v": 1, "req": {"type": "run_program", "program": "bindport", "args": ["env"], "env": []}}).encode()
    s.sendall(struct.pack("<I", len(body)) + body)
    if send:
        socket.send_fds(s, [b"x"], fds)
    n = struct.unpack("<I", s.recv(4))[0]
    print(s.recv(n).decode())
f = os.open("/etc/hostname", os.O_RDONLY)
d = os.open(".", os.O_RDONLY)
ask([0, 1, 2, d, f])
ask([0, 1, 2, f])
ask([0, 1, 2], send=False)
"#;
    let o = as_carol(&sb, "/var/tmp", &["python3", "-c", client]);
    let out = stdout(&o);
    assert!(
        code(&o) == 0
            && out.matches("\"result\":\"error\"").count() == 3
            && out.contains("got 5")
            && out.contains("not a directory")
            && !out.contains("argv0="),
        "raw clients with descriptor tricks: {}",
        show(&o)
    );
    let runs = events(&sb, "tokenize.run");
    assert_eq!(
        runs.len(),
        1,
        "only the one real run started a program: {runs:?}"
    );
    assert_eq!(runs[0]["grant"], id.as_str());
}

/// An `--mfa` capability grant is armed until carol proves a TOTP code (`jitctl activate`, the
/// existing path; the code from `oathtool`, an implementation independent of jitd's): until
/// then `jitctl run` is refused and says what to do.
#[test]
fn mfa_grant_runs_nothing_until_activated() {
    let sb = Sandbox::new();
    let prog_s = path_str(&bindport()).to_string();
    let port_s = port(&sb).to_string();
    sb.start_jitd();
    let enroll = sb.jitctl(&["--json", "mfa", "enroll", "carol"]);
    assert_eq!(code(&enroll), 0, "{}", show(&enroll));
    let v: Value = serde_json::from_slice(&enroll.stdout).unwrap();
    let secret = v["secret"].as_str().unwrap().to_string();
    let g = sb.grant_json(&[
        "carol",
        "--cap",
        "CAP_NET_BIND_SERVICE",
        "--program",
        &prog_s,
        "--for",
        "10m",
        "--mfa",
    ]);
    assert_eq!(g["state"], "armed", "{g}");
    let o = run_as_carol(&sb, &[&prog_s, &port_s, "0"]);
    assert!(
        code(&o) == 1
            && stderr(&o).contains("is armed")
            && stderr(&o).contains("jitctl activate")
            && !stdout(&o).contains("bound"),
        "armed grant: {}",
        show(&o)
    );
    jit_tests::pam::step_with_margin(5.0);
    let totp = stdout(&sb.run(&["oathtool", "--totp", "-b", &secret]))
        .trim()
        .to_string();
    let c = sb.ids.carol.to_string();
    let o = sb.run_full(
        &[
            "setpriv",
            "--reuid",
            &c,
            "--regid",
            &c,
            "--init-groups",
            "--",
            path_str(&artifacts().jitctl),
            "activate",
        ],
        Some(format!("{totp}\n").as_bytes()),
        Duration::from_secs(10),
    );
    assert_eq!(code(&o), 0, "activate: {}", show(&o));
    let o = run_as_carol(&sb, &[&prog_s, &port_s, "0"]);
    assert!(
        code(&o) == 0 && stdout(&o).contains("bound"),
        "after activation: {}",
        show(&o)
    );
}

/// A process the granted program started and left behind (its own session, its parent gone)
/// still holds the capability (ambient capabilities are inherited): the grant's end finds it
/// by its capability sets and ends it, and leaves carol's other processes alone.
#[test]
fn a_left_behind_child_holding_the_capability_is_ended_when_the_grant_is_revoked() {
    let sb = Sandbox::new();
    let prog_s = path_str(&bindport()).to_string();
    sb.start_jitd();
    let carol = sb.ids.carol;
    let id = sb.grant(&[
        "carol",
        "--cap",
        "CAP_NET_BIND_SERVICE",
        "--program",
        &prog_s,
        "--for",
        "1h",
    ]);
    let o = run_as_carol(&sb, &[&prog_s, "daemon", "120"]);
    assert_eq!(code(&o), 0, "{}", show(&o));
    let child: i32 = stdout(&o)
        .trim()
        .strip_prefix("daemon ")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("{}", show(&o)));
    assert!(procs::is_alive(child), "the left-behind child runs");
    assert_eq!(status_field(child, "CapAmb:"), "0000000000000400");
    // carol's own long-running process without the capability.
    let c = carol.to_string();
    let plain = sb.spawn(
        "carol-sleep",
        &[
            "setpriv",
            "--reuid",
            &c,
            "--regid",
            &c,
            "--init-groups",
            "--",
            "sleep",
            "120",
        ],
    );
    let o = sb.jitctl(&["grant", "revoke", &id]);
    assert_eq!(code(&o), 0, "{}", show(&o));
    poll_opt(Duration::from_secs(10), || {
        (!procs::is_alive(child)).then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "the child holding the capability outlived the grant\n{}",
            sb.jitd_log()
        )
    });
    assert!(
        sb.try_wait(plain).is_none(),
        "carol's process without the capability must be left alone"
    );
    procs::signal(plain, libc::SIGKILL);
}

/// jitd can hand on only capabilities it holds itself. Started with CAP_NET_BIND_SERVICE out
/// of its bounding set (what a unit's `CapabilityBoundingSet=` leaving it out does), a grant of
/// it is refused at admission in one line and `jitctl status` names it; started without
/// CAP_SETUID, every `--cap` grant is refused and status says tokenization is unavailable.
/// (Such grants used to be admitted, and every `jitctl run` under them failed.)
#[test]
fn a_capability_outside_jitds_bounding_set_is_refused_at_grant_time() {
    let sb = Sandbox::new();
    let prog = bindport();
    let prog_s = path_str(&prog).to_string();
    let a = artifacts();
    let start = |drop: &str| -> i32 {
        let pid = sb.spawn(
            "jitd",
            &[
                "setpriv",
                "--bounding-set",
                drop,
                "--",
                path_str(&a.jitd),
                "--config",
                "/etc/jit/jitd.toml",
            ],
        );
        poll("jitd answers", Duration::from_secs(30), || {
            assert!(
                sb.try_wait(pid).is_none(),
                "jitd exited:\n{}",
                sb.jitd_log()
            );
            sb.jitctl(&["status"]).status.success().then_some(())
        });
        pid
    };
    let stop = |pid: i32| {
        procs::signal(pid, libc::SIGTERM);
        assert!(
            sb.wait_exit(pid, Duration::from_secs(15)).is_some(),
            "jitd did not stop"
        );
    };
    let add = |cap: &str| {
        sb.jitctl(&[
            "grant",
            "add",
            "carol",
            "--cap",
            cap,
            "--program",
            &prog_s,
            "--for",
            "1h",
        ])
    };

    let pid = start("-net_bind_service");
    let o = add("CAP_NET_BIND_SERVICE");
    assert!(
        code(&o) == 1
            && stderr(&o).contains("CAP_NET_BIND_SERVICE cannot be granted on this host: it is not in jitd's own capability bounding set")
            && stderr(&o).lines().count() == 1,
        "a capability jitd does not hold: {}",
        show(&o)
    );
    let st = sb.jitctl(&["status"]);
    assert!(
        stdout(&st).lines().any(|l| l.starts_with("tokenization: available; outside jitd's capability bounding set, so refused at grant: ")
            && l.contains("CAP_NET_BIND_SERVICE")),
        "status: {}",
        show(&st)
    );
    // A capability it holds is still granted.
    let o = add("CAP_NET_RAW");
    assert_eq!(code(&o), 0, "CAP_NET_RAW (held): {}", show(&o));
    stop(pid);

    let pid = start("-setuid");
    let o = add("CAP_NET_BIND_SERVICE");
    assert!(
        code(&o) == 1
            && stderr(&o)
                .contains("tokenization is unavailable on this host: jitd lacks CAP_SETUID")
            && stderr(&o).lines().count() == 1,
        "without CAP_SETUID: {}",
        show(&o)
    );
    let st = sb.jitctl(&["status"]);
    assert!(
        stdout(&st)
            .lines()
            .any(|l| l.starts_with("tokenization: unavailable: jitd lacks CAP_SETUID")),
        "status: {}",
        show(&st)
    );
    stop(pid);
}
