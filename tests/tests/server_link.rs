//! jitd's link to a real jit-server beyond delivery: the TLS pin set learnt signed and kept
//! across `tls-next` / `tls-promote` without re-enrolling (a certificate outside the set
//! refused); host events (sessions through pamtester, real sudo allowed and denied, grants,
//! revocations, teardown) in the server's audit under the host's recorded name, also after an
//! outage; roles carrying capabilities (`caps`/`programs`) admitted through jitd's tokenization
//! admission and used with `jitctl run`; the certification of a server grant whose holder
//! planted a change, shown by the server. Real TLS on loopback, real jitd in the namespace
//! harness.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use jit_tests::fleet::Fleet;
use jit_tests::pam::{install_pam_jit, pam_service, pamtester, permit_service, require_tools};
use jit_tests::sandbox::path_str;
use jit_tests::{
    artifacts, code, cprog, poll, poll_opt, show, stderr, stdout, Sandbox, GETENT_NOT_FOUND,
};
use serde_json::Value;

/// How long a test waits for an approved or revoked grant to reach the host before failing. A
/// bound on failure, not a latency figure (`bench/fleet` measures delivery): CI runs other
/// tests' servers and jitds on the same two cores at the same time.
const DELIVERY: Duration = Duration::from_secs(30);

/// Waits for a server change to show on the host; on time-out, fails with what jitd said
/// (status and log) and what the server logged, so a slow or lost delivery can be told apart.
fn delivered<T>(sb: &Sandbox, fleet: &Fleet, what: &str, f: impl FnMut() -> Option<T>) -> T {
    let start = std::time::Instant::now();
    match poll_opt(DELIVERY, f) {
        Some(v) => {
            eprintln!("{what}: {:.2} s", start.elapsed().as_secs_f64());
            v
        }
        None => panic!(
            "timed out after {DELIVERY:?} waiting for: {what}\njitctl status:\n{}\njitd log:\n{}\nserver log:\n{}\njitd's sync and grant records:\n{}",
            show(&sb.jitctl(&["status"])),
            sb.jitd_log(),
            fleet.server_log(),
            sb.audit()
                .iter()
                .filter(|e| e["event"]
                    .as_str()
                    .is_some_and(|n| n.starts_with("sync.") || n.starts_with("grant.")))
                .map(Value::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        ),
    }
}

fn visible(sb: &Sandbox, user: &str) -> bool {
    let o = sb.run(&["getent", "passwd", user]);
    match code(&o) {
        0 => true,
        GETENT_NOT_FOUND => false,
        _ => panic!("getent passwd {user}: {}", show(&o)),
    }
}

fn status(sb: &Sandbox) -> String {
    let o = sb.jitctl(&["status"]);
    assert_eq!(code(&o), 0, "{}", show(&o));
    stdout(&o)
}

fn enroll(sb: &Sandbox, f: &Fleet, host: &str) {
    let join = f.join_token(host);
    let o = sb.jitctl(&[
        "enroll",
        &f.url(),
        "--token",
        &join,
        "--fingerprint",
        &f.fingerprint,
    ]);
    assert_eq!(code(&o), 0, "{}\n{}", show(&o), sb.jitd_log());
    poll("status says connected", Duration::from_secs(20), || {
        status(sb).contains(": connected").then_some(())
    });
}

fn events(sb: &Sandbox, event: &str) -> Vec<Value> {
    sb.audit()
        .into_iter()
        .filter(|e| e["event"] == event)
        .collect()
}

/// The server's audit rows (JSON).
fn server_audit(f: &Fleet) -> Vec<Value> {
    let out = f.cmd(&["audit", "--limit", "5000", "--json"]);
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    v["audit"].as_array().cloned().unwrap()
}

/// The local grant of `user` on the host (the newest).
fn local_grant(sb: &Sandbox, user: &str) -> Value {
    let o = sb.jitctl(&["--json", "grant", "list", "--all"]);
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .rfind(|g| g["user"] == user)
        .cloned()
        .unwrap_or_else(|| panic!("no grant for {user}: {v}"))
}

const PEOPLE: &str = r#"
[[person]]
name = "pat"
groups = ["dev"]

[[person]]
name = "lee"
groups = ["dev"]

[[person]]
name = "sam"
groups = ["sre"]
"#;

fn role(name: &str, extra: &str) -> String {
    format!(
        r#"
[[role]]
name = "{name}"
hosts = {{ env = "prod" }}
max = "2h"
{extra}
[role.approval]
approvals = 1
approvers = ["sre"]
reason_min = 5
"#
    )
}

const ENTITLE: &str = r#"
[[entitlement]]
who = ["dev"]
roles = ["ops"]
"#;

#[test]
fn the_tls_pin_set_follows_tls_next_and_promote_and_a_foreign_certificate_is_refused() {
    let policy = format!("{PEOPLE}{}{ENTITLE}", role("ops", "account = true"));
    let mut f = Fleet::init("pins", "doc_ttl = 10\npoll_max_wait = 2\n", &policy);
    let (pat, lee, sam) = (f.token("pat"), f.token("lee"), f.token("sam"));
    f.serve();
    let first = f.fingerprint.clone();
    let sb = Sandbox::new();
    sb.start_jitd();
    enroll(&sb, &f, "web1");

    // The next key, published after SIGHUP: jitd learns it from the signed pin document.
    let out = f.cmd(&["key", "tls-next"]);
    let next = out.split_whitespace().nth(3).unwrap().trim_end_matches(';');
    assert!(next.starts_with("SHA256:") && next != first, "{out}");
    f.sighup();
    let ev = poll("jitd pins the next key", Duration::from_secs(40), || {
        events(&sb, "sync.tls_pins")
            .into_iter()
            .find(|e| e["next"] == next)
    });
    assert_eq!(ev["current"], first.as_str(), "{ev}");
    // Stored durably with the enrolment, before use.
    let enrolment = std::fs::read(sb.host_path("/var/lib/jitd/server/enrolment.json")).unwrap();
    assert!(
        String::from_utf8_lossy(&enrolment).contains(next),
        "the next pin is in the stored enrolment"
    );

    // Promote and restart with the new certificate: the host keeps syncing, no re-enrolment.
    f.cmd(&["key", "tls-promote"]);
    f.kill();
    f.serve();
    assert_eq!(f.fingerprint, next, "serve uses the promoted certificate");
    let id = f.request(&pat, "ops", "web1", "1h");
    f.approve(&sam, &id);
    // jitd's back-off after the restart is at most 30 s, jittered up to 45 s.
    poll(
        "pat visible through the promoted certificate",
        Duration::from_secs(60),
        || visible(&sb, "pat").then_some(()),
    );
    // The old pin is dropped at the next fetch: the set is the new key alone.
    let ev = poll("jitd drops the old pin", Duration::from_secs(40), || {
        events(&sb, "sync.tls_pins")
            .into_iter()
            .find(|e| e["current"] == next && e["next"].is_null())
    });
    assert!(ev["previous"].to_string().contains(&first), "{ev}");

    // A server with a certificate outside the pin set (the TLS key of another installation):
    // refused, nothing new arrives.
    let other = Fleet::init("pins-other", "", &policy);
    f.kill();
    for file in ["tls.key", "tls.crt"] {
        std::fs::copy(other.data.join(file), f.data.join(file)).unwrap();
    }
    f.serve();
    assert_ne!(f.fingerprint, next);
    let id2 = f.request(&lee, "ops", "web1", "1h");
    f.approve(&sam, &id2);
    let st = poll(
        "the foreign certificate is refused",
        Duration::from_secs(60),
        || {
            let s = status(&sb);
            s.contains("not the pinned one").then_some(s)
        },
    );
    assert!(!st.contains(": connected"), "{st}");
    assert!(
        !visible(&sb, "lee"),
        "nothing arrives from an unpinned server"
    );
    assert!(visible(&sb, "pat"), "grants already held run on");
}

/// sudo.conf loading sudo_jit and a sudoers drop-in for jit users, as the packages write them.
fn sudo_setup(sb: &Sandbox, rule: &str) {
    sb.sh_ok(&format!(
        "printf 'Plugin sudo_jit {}\\nSet group_source dynamic\\n' > /etc/sudo.conf && \
         printf '%s\\n' '{rule}' > /etc/sudoers.d/jit && chmod 0440 /etc/sudoers.d/jit && \
         visudo -c -q",
        path_str(&artifacts().sudo_plugin)
    ));
}

fn as_user(sb: &Sandbox, user: &str, cmd: &str) -> std::process::Output {
    sb.run_full(&["su", user, "-c", cmd], None, Duration::from_secs(20))
}

#[test]
fn host_events_reach_the_server_audit_under_the_hosts_recorded_name_also_after_an_outage() {
    require_tools(&["pamtester", "sudo"]);
    let policy = format!(
        "{PEOPLE}{}{ENTITLE}",
        role("ops", "account = true\nsudo = [\"/usr/bin/id\"]")
    );
    let mut f = Fleet::init("events", "doc_ttl = 10\npoll_max_wait = 2\n", &policy);
    let (pat, sam) = (f.token("pat"), f.token("sam"));
    f.serve();
    let sb = Sandbox::new();
    sudo_setup(&sb, "%jit-sudo ALL=(ALL:ALL) NOPASSWD: ALL");
    let module = install_pam_jit(&sb);
    pam_service(&sb, "jit-login", &permit_service(&module, "timeout=2"));
    sb.start_jitd();
    enroll(&sb, &f, "web1");

    let id = f.request(&pat, "ops", "web1", "1h");
    f.approve(&sam, &id);
    delivered(&sb, &f, "pat visible", || visible(&sb, "pat").then_some(()));
    let local = local_grant(&sb, "pat");
    let sid = local["source"]["id"].as_str().unwrap().to_string();
    // A session (real PAM through pamtester) and sudo, allowed and denied.
    let r = pamtester(
        &sb,
        "jit-login",
        "pat",
        &["acct_mgmt", "open_session", "close_session"],
        &[],
        "",
    );
    assert!(r.ok(), "{}", r.show());
    let o = as_user(&sb, "pat", "sudo -n /usr/bin/id -u");
    assert_eq!(code(&o), 0, "allowed sudo: {}", show(&o));
    assert_eq!(stdout(&o).trim(), "0");
    let o = as_user(&sb, "pat", "sudo -n /usr/bin/whoami");
    let denied_at = std::time::Instant::now();
    assert_ne!(code(&o), 0, "sudo outside the scope: {}", show(&o));
    // Sent as it happens (not held until the next poll answer): printed, not asserted.
    poll(
        "the denial in the server's audit",
        Duration::from_secs(40),
        || {
            server_audit(&f)
                .iter()
                .any(|r| r["action"] == "host.event.sudo_denied")
                .then_some(())
        },
    );
    println!(
        "sudo denied on the host -> host.event.sudo_denied in the server's audit: {} ms",
        denied_at.elapsed().as_millis()
    );
    // A local grant made by root is reported too.
    sb.grant(&["--account", "locl", "--for", "1h"]);

    let want = |rows: &[Value], action: &str, subject: &str| {
        rows.iter().any(|r| {
            r["action"] == action
                && r["actor"] == "host:web1"
                && r["subject"].as_str().unwrap().starts_with(subject)
        })
    };
    poll(
        "host events in the server's audit",
        Duration::from_secs(40),
        || {
            let rows = server_audit(&f);
            [
                ("host.event.grant_live", sid.as_str()),
                ("host.event.session_open", sid.as_str()),
                ("host.event.session_close", sid.as_str()),
                ("host.event.sudo_allowed", sid.as_str()),
                ("host.event.sudo_denied", sid.as_str()),
                ("host.event.local_grant", "g-"),
            ]
            .iter()
            .all(|(a, s)| want(&rows, a, s))
            .then_some(())
        },
    );
    let rows = server_audit(&f);
    let denied = rows
        .iter()
        .find(|r| r["action"] == "host.event.sudo_denied")
        .unwrap();
    assert!(
        denied["detail"].as_str().unwrap().contains("whoami"),
        "{denied}"
    );

    // The server is down: events wait on the host (bounded) and arrive once it is back.
    f.kill();
    poll("offline", Duration::from_secs(20), || {
        let s = status(&sb);
        (s.contains(": offline") || s.contains(": stale")).then_some(())
    });
    let o = as_user(&sb, "pat", "sudo -n /usr/bin/id -g");
    assert_eq!(code(&o), 0, "sudo while the server is down: {}", show(&o));
    f.serve();
    poll(
        "the outage's sudo reaches the server",
        Duration::from_secs(60),
        || {
            server_audit(&f)
                .iter()
                .any(|r| {
                    r["action"] == "host.event.sudo_allowed"
                        && r["detail"].as_str().unwrap().contains("-g")
                })
                .then_some(())
        },
    );

    // Revoked on the server: the revocation and the teardown's result come back.
    f.revoke(&pat, &id);
    poll(
        "revocation and teardown reported",
        Duration::from_secs(40),
        || {
            let rows = server_audit(&f);
            (want(&rows, "host.event.grant_revoked", &sid)
                && want(&rows, "host.event.teardown_complete", &sid))
            .then_some(())
        },
    );
    // Every host event names the host as the server recorded it.
    for r in server_audit(&f) {
        if r["action"].as_str().unwrap().starts_with("host.event.") {
            assert_eq!(r["actor"], "host:web1", "{r}");
        }
    }
}

#[test]
fn a_role_with_capabilities_is_checked_centrally_and_runs_through_jitctl_run() {
    let prog = cprog::program("bindport");
    std::fs::set_permissions(&prog, std::fs::Permissions::from_mode(0o755)).unwrap();
    let prog_s = path_str(&prog).to_string();
    // Root-equivalent capabilities are refused by the server unless the role allows them.
    let bad = format!(
        "{PEOPLE}{}{ENTITLE}",
        role(
            "ops",
            &format!("caps = [\"CAP_SYS_ADMIN\"]\nprograms = [\"{prog_s}\"]")
        )
    );
    let f0 = Fleet::init(
        "caps-bad",
        "",
        &format!("{PEOPLE}{ENTITLE}{}", role("ops", "")),
    );
    let p = f0.data.join("bad.toml");
    std::fs::write(&p, &bad).unwrap();
    let o = std::process::Command::new(jit_tests::fleet::server_bin())
        .args([
            "apply",
            p.to_str().unwrap(),
            "--data",
            f0.data.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        !o.status.success() && stderr(&o).contains("amounts to root"),
        "{}",
        show(&o)
    );
    for (caps, progs, why) in [
        (
            "[\"CAP_NOT_A_CAP\"]",
            format!("[\"{prog_s}\"]"),
            "capability",
        ),
        ("[\"CAP_NET_RAW\"]", "[]".to_string(), "together"),
        ("[\"CAP_NET_RAW\"]", "[\"bin/x\"]".to_string(), "absolute"),
    ] {
        let text = format!(
            "{PEOPLE}{}{ENTITLE}",
            role("ops", &format!("caps = {caps}\nprograms = {progs}"))
        );
        std::fs::write(&p, &text).unwrap();
        let o = std::process::Command::new(jit_tests::fleet::server_bin())
            .args([
                "apply",
                p.to_str().unwrap(),
                "--data",
                f0.data.to_str().unwrap(),
            ])
            .output()
            .unwrap();
        assert!(
            !o.status.success() && stderr(&o).contains(why),
            "{caps} {progs}: {}",
            show(&o)
        );
    }

    // carol, a local user, gets CAP_NET_BIND_SERVICE for bindport from the server.
    let policy = format!(
        "{PEOPLE}
[[person]]
name = \"carol\"
groups = [\"dev\"]
{}{}
[[entitlement]]
who = [\"dev\"]
roles = [\"bind\", \"admin-cap\"]
",
        role(
            "bind",
            &format!("caps = [\"net_bind_service\"]\nprograms = [\"{prog_s}\"]")
        ),
        role(
            "admin-cap",
            &format!(
                "caps = [\"CAP_SYS_ADMIN\"]\nallow_root_caps = [\"CAP_SYS_ADMIN\"]\nprograms = [\"{prog_s}\"]"
            )
        ),
    );
    let mut f = Fleet::init("caps", "", &policy);
    let (carol, sam) = (f.token("carol"), f.token("sam"));
    f.serve();
    let sb = Sandbox::new();
    let port = (600 + (sb.ids.base / 1000) % 300).to_string();
    sb.start_jitd();
    enroll(&sb, &f, "web1");

    let c = sb.ids.carol.to_string();
    let run = |args: &[&str]| {
        let a = artifacts();
        let mut v = vec![
            "setpriv",
            "--reuid",
            &c,
            "--regid",
            &c,
            "--init-groups",
            "--",
            path_str(&a.jitctl),
            "run",
        ];
        v.extend_from_slice(args);
        let script = "cd /var/tmp && exec \"$@\"";
        let mut all = vec!["sh", "-c", script, "sh"];
        all.extend_from_slice(&v);
        sb.run_full(&all, None, Duration::from_secs(30))
    };
    let o = run(&[&prog_s, &port, "0"]);
    assert!(
        code(&o) != 0 && stderr(&o).contains("no live grant"),
        "{}",
        show(&o)
    );
    let id = f.request(&carol, "bind", "web1", "1h");
    f.approve(&sam, &id);
    let g = delivered(&sb, &f, "carol's server grant", || {
        let o = sb.jitctl(&["--json", "grant", "list", "--all"]);
        let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
        v.as_array()
            .unwrap()
            .iter()
            .find(|g| g["user"] == "carol" && g["source"]["kind"] == "server")
            .cloned()
    });
    assert_eq!(
        g["caps"],
        serde_json::json!(["CAP_NET_BIND_SERVICE"]),
        "{g}"
    );
    let o = run(&[&prog_s, &port, "0"]);
    assert_eq!(code(&o), 0, "jitctl run under a server grant: {}", show(&o));
    assert!(stdout(&o).contains("bound"), "{}", show(&o));

    // A root-equivalent capability the role allows is still refused by the host's own policy
    // (no allow_caps in this jitd.toml): audited on the host, never admitted.
    let id = f.request(&carol, "admin-cap", "web1", "1h");
    f.approve(&sam, &id);
    let ev = poll(
        "the host refuses CAP_SYS_ADMIN",
        Duration::from_secs(20),
        || {
            events(&sb, "sync.grant_refused")
                .into_iter()
                .find(|e| e["role"] == "admin-cap")
        },
    );
    assert!(
        ev["reason"].as_str().unwrap().contains("CAP_SYS_ADMIN"),
        "{ev}"
    );
    // The server hears of the refusal, under the grant's server id.
    let sg = ev["server_grant"].as_str().unwrap().to_string();
    poll(
        "the refusal reaches the server",
        Duration::from_secs(40),
        || {
            server_audit(&f)
                .iter()
                .any(|r| r["action"] == "host.event.grant_refused" && r["subject"] == sg.as_str())
                .then_some(())
        },
    );
    drop(f0);
}

#[test]
fn a_server_grant_whose_holder_plants_a_change_shows_a_changed_certification_on_the_server() {
    require_tools(&["sudo"]);
    let policy = format!(
        "{PEOPLE}{}{ENTITLE}",
        role("ops", "account = true\nsudo = [\"ALL\"]")
    );
    let mut f = Fleet::init("certify", "", &policy);
    let (pat, sam) = (f.token("pat"), f.token("sam"));
    f.serve();
    let sb = Sandbox::new();
    sudo_setup(&sb, "%jit-sudo ALL=(ALL:ALL) NOPASSWD: ALL");
    sb.start_jitd();
    enroll(&sb, &f, "web1");

    let id = f.request(&pat, "ops", "web1", "1h");
    f.approve(&sam, &id);
    delivered(&sb, &f, "pat visible", || visible(&sb, "pat").then_some(()));
    let local = local_grant(&sb, "pat");
    let lid = local["id"].as_str().unwrap().to_string();
    let sid = local["source"]["id"].as_str().unwrap().to_string();
    sb.wait_audit(&lid, "certify.baseline", Duration::from_secs(60));
    // The holder plants a sudoers drop-in through sudo.
    let o = as_user(
        &sb,
        "pat",
        "sudo -n sh -c 'echo \"# planted\" > /etc/sudoers.d/planted && chmod 0440 /etc/sudoers.d/planted'",
    );
    assert_eq!(code(&o), 0, "{}", show(&o));
    f.revoke(&pat, &id);
    sb.wait_audit(&lid, "grant.certification", Duration::from_secs(60));

    // The server has it, by request id and by grant id.
    let shown = poll(
        "the server shows the certification",
        Duration::from_secs(40),
        || {
            let out = f.cmd(&["certification", &id, "--json"]);
            let v: Value = serde_json::from_str(out.trim()).unwrap();
            let c = v["certifications"].as_array().unwrap().first().cloned()?;
            Some(c)
        },
    );
    assert_eq!(shown["status"], "changed", "{shown}");
    assert_eq!(shown["host"], "web1");
    assert_eq!(shown["grant"], sid.as_str());
    assert_eq!(shown["local_grant"], lid.as_str());
    assert_eq!(shown["source"], "server");
    assert!(
        shown["certification"]["differences"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["item"] == "/etc/sudoers.d/planted" && d["change"] == "added"),
        "{shown}"
    );
    let text = f.cmd(&["certification", &sid]);
    assert!(
        text.contains("changed") && text.contains("/etc/sudoers.d/planted"),
        "{text}"
    );
    assert!(server_audit(&f)
        .iter()
        .any(|r| r["action"] == "host.certification" && r["subject"] == sid.as_str()));
    // The holder sees it with jitctl's remote verb; another person (not an admin) does not.
    let o = f.jitctl(&pat, &["certification", &id]);
    assert_eq!(code(&o), 0, "{}", show(&o));
    assert!(
        stdout(&o).contains(": changed")
            && stdout(&o).contains("added sudoers /etc/sudoers.d/planted"),
        "{}",
        show(&o)
    );
    let lee = f.token("lee");
    let o = f.jitctl(&lee, &["--json", "certification", &id]);
    assert_eq!(code(&o), 0, "{}", show(&o));
    assert!(stdout(&o).contains("\"certifications\":[]"), "{}", show(&o));
}
