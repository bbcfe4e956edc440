//! jitd's link to a real jit-server over real TLS on loopback: `jitctl enroll`, grants approved
//! on the server visible to `getent` on the host (latency printed), server revocations torn
//! down, a join token spent once, local grants untouched, and a server outage: grants run to
//! their own end, the host goes stale (status and audit say so), strict grants end, a restarted
//! server is caught up with.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use jit_tests::fleet::Fleet;
use jit_tests::{code, poll, show, stdout, Sandbox, GETENT_NOT_FOUND};
use serde_json::Value;

const POLICY: &str = r#"
[[person]]
name = "pat"
groups = ["dev"]

[[person]]
name = "lee"
groups = ["dev"]

[[person]]
name = "ray"
groups = ["dev"]

[[person]]
name = "sam"
groups = ["sre"]

[[role]]
name = "ops"
hosts = { env = "prod" }
account = true
max = "2h"
[role.approval]
approvals = 1
approvers = ["sre"]
reason_min = 5

[[role]]
name = "ops-strict"
hosts = { env = "prod" }
account = true
max = "2h"
strict = true
[role.approval]
approvals = 1
approvers = ["sre"]
reason_min = 5

[[entitlement]]
who = ["dev"]
roles = ["ops", "ops-strict"]
"#;

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

fn enroll(sb: &Sandbox, f: &Fleet, token: &str) -> std::process::Output {
    sb.jitctl(&[
        "enroll",
        &f.url(),
        "--token",
        token,
        "--fingerprint",
        &f.fingerprint,
    ])
}

fn grants(sb: &Sandbox) -> Vec<Value> {
    let o = sb.jitctl(&["--json", "grant", "list", "--all"]);
    assert_eq!(code(&o), 0, "{}", show(&o));
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    v.as_array().cloned().unwrap_or_default()
}

#[test]
fn approved_grants_reach_getent_and_server_revocations_tear_them_down() {
    let mut f = Fleet::init("flow", "", POLICY);
    let (pat, sam) = (f.token("pat"), f.token("sam"));
    let join = f.join_token("web1");
    f.serve();
    let sb = Sandbox::new();
    sb.start_jitd();
    assert!(status(&sb).contains("server: none"), "{}", status(&sb));

    // A wrong fingerprint: the TLS handshake fails and nothing is stored or spent.
    let o = sb.jitctl(&[
        "enroll",
        &f.url(),
        "--token",
        &join,
        "--fingerprint",
        "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    ]);
    assert_eq!(code(&o), 1, "{}", show(&o));
    assert!(
        stdout(&o).is_empty() && show(&o).contains("pinned"),
        "{}",
        show(&o)
    );
    let o = enroll(&sb, &f, &join);
    assert_eq!(code(&o), 0, "{}\n{}", show(&o), sb.jitd_log());
    assert!(stdout(&o).contains("as host web1"), "{}", show(&o));
    // The host key stays in jitd's state directory, root-only.
    let key = sb.host_path("/var/lib/jitd/server/host.key");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&key).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    poll("status says connected", Duration::from_secs(20), || {
        status(&sb).contains(": connected").then_some(())
    });

    // The same join token on another host: refused by the server.
    let other = Sandbox::new();
    other.start_jitd();
    let o = enroll(&other, &f, &join);
    assert_eq!(code(&o), 1, "{}", show(&o));
    assert!(show(&o).contains("join token"), "{}", show(&o));
    assert!(status(&other).contains("server: none"));

    // A local grant made by root on the host: untouched by the server's set.
    let local = sb.grant(&["--account", "locl", "--for", "1h"]);

    let id = f.request(&pat, "ops", "web1", "1h");
    assert!(!visible(&sb, "pat"));
    let t0 = Instant::now();
    f.approve(&sam, &id);
    let approved = t0.elapsed();
    poll("pat visible to getent", Duration::from_secs(10), || {
        visible(&sb, "pat").then_some(())
    });
    let seen = t0.elapsed();
    println!(
        "approve -> getent passwd pat on the host: {} ms (the approve call itself {} ms)",
        seen.as_millis(),
        approved.as_millis()
    );
    let g = grants(&sb);
    let pg = g.iter().find(|g| g["user"] == "pat").unwrap();
    assert_eq!(pg["source"]["kind"], "server", "{pg}");
    assert_eq!(pg["source"]["role"], "ops");
    assert_eq!(pg["created_by"], "server");
    let lg = g.iter().find(|g| g["id"] == local.as_str()).unwrap();
    assert_eq!(lg["source"]["kind"], "local", "{lg}");

    let t1 = Instant::now();
    f.revoke(&pat, &id);
    poll("pat gone from getent", Duration::from_secs(10), || {
        (!visible(&sb, "pat")).then_some(())
    });
    println!(
        "server revoke -> getent passwd pat gone on the host: {} ms",
        t1.elapsed().as_millis()
    );
    let pg = poll("pat's grant torn down", Duration::from_secs(10), || {
        grants(&sb)
            .into_iter()
            .find(|g| g["user"] == "pat" && g["torn_down"] == true)
    });
    assert_eq!(pg["state"], "revoked", "{pg}");
    assert!(
        pg["end_reason"].as_str().unwrap().contains("by server"),
        "{pg}"
    );
    assert!(
        visible(&sb, "locl"),
        "the local grant is not the server's to end"
    );
    let audit = sb.audit();
    assert!(audit.iter().any(|r| r["event"] == "server.enrolled"));
    assert!(audit.iter().any(|r| r["event"] == "sync.applied"));
    // The host's events reach the server's audit.
    poll(
        "host events in the server audit",
        Duration::from_secs(10),
        || {
            let a = jit_tests::fleet::server_ok(&["audit", "--data", f.data.to_str().unwrap()]);
            (a.contains("host.event.grant_live") && a.contains("host.event.grant_revoked"))
                .then_some(())
        },
    );
    // The server saw the host confirm the revocation.
    let hosts = stdout(&f.jitctl(&sam, &["--json", "hosts"]));
    assert!(hosts.contains("web1"), "{hosts}");
    poll(
        "revocation confirmed by the host",
        Duration::from_secs(10),
        || {
            let h = stdout(&f.jitctl(&sam, &["--json", "hosts"]));
            (!h.contains("\"unconfirmed\":true")).then_some(())
        },
    );
}

#[test]
fn a_server_outage_ends_grants_on_time_goes_stale_and_catches_up() {
    // Short document lifetime and poll wait so the outage fits in a test.
    let mut f = Fleet::init("outage", "doc_ttl = 10\npoll_max_wait = 2\n", POLICY);
    let (pat, lee, ray, sam) = (
        f.token("pat"),
        f.token("lee"),
        f.token("ray"),
        f.token("sam"),
    );
    let join = f.join_token("web1");
    f.serve();
    let sb = Sandbox::new();
    sb.start_jitd();
    let o = enroll(&sb, &f, &join);
    assert_eq!(code(&o), 0, "{}", show(&o));

    let short = f.request(&pat, "ops", "web1", "20s");
    let long = f.request(&lee, "ops", "web1", "1h");
    let strict = f.request(&ray, "ops-strict", "web1", "1h");
    for id in [&short, &long, &strict] {
        f.approve(&sam, id);
    }
    let approved_at = jit_tests::now();
    for u in ["pat", "lee", "ray"] {
        poll(&format!("{u} visible"), Duration::from_secs(10), || {
            visible(&sb, u).then_some(())
        });
    }

    f.kill();
    let killed = Instant::now();
    poll("status offline or stale", Duration::from_secs(10), || {
        let s = status(&sb);
        (s.contains(": offline") || s.contains(": stale")).then_some(())
    });
    poll("status stale", Duration::from_secs(20), || {
        status(&sb).contains(": stale").then_some(())
    });
    println!(
        "server killed -> host stale after {} ms",
        killed.elapsed().as_millis()
    );
    // Strict role: ended when stale. Others: run on.
    poll("ray's strict grant ended", Duration::from_secs(5), || {
        (!visible(&sb, "ray")).then_some(())
    });
    assert!(
        visible(&sb, "lee"),
        "a non-strict grant runs to its own end"
    );
    // pat's 20 s grant ends on time with nobody to tell it.
    poll("pat's grant expired", Duration::from_secs(30), || {
        (!visible(&sb, "pat")).then_some(())
    });
    let ended = jit_tests::now();
    assert!(
        ended <= approved_at + 20 + 3,
        "ended {}s after approval",
        ended - approved_at
    );
    // Nothing new arrives, root's local grants still work.
    sb.grant(&["--account", "locl", "--for", "10m"]);
    assert!(visible(&sb, "locl"));
    let audit = sb.audit();
    assert_eq!(
        audit.iter().filter(|r| r["event"] == "sync.stale").count(),
        1,
        "stale audited once"
    );

    // The server comes back on the same address: the host catches up and gets new grants.
    f.serve();
    // jitd's back-off is at most 30 s, jittered up to 45 s.
    poll("status connected again", Duration::from_secs(60), || {
        status(&sb).contains(": connected").then_some(())
    });
    assert!(visible(&sb, "lee"));
    assert!(!visible(&sb, "ray"), "an ended strict grant is not revived");
    f.revoke(&lee, &long);
    poll(
        "lee revoked after the outage",
        Duration::from_secs(10),
        || (!visible(&sb, "lee")).then_some(()),
    );

    // jitd restarts: the applied sequence survives and it keeps syncing.
    let seq_before = status(&sb);
    sb.stop_jitd();
    sb.start_jitd();
    poll(
        "connected after a jitd restart",
        Duration::from_secs(20),
        || status(&sb).contains(": connected").then_some(()),
    );
    let seq = |s: &str| -> u64 {
        s.split("sequence ")
            .nth(1)
            .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    assert!(seq(&status(&sb)) > seq(&seq_before), "{seq_before}");
}

/// A TCP relay on loopback between jitd and the server that can swallow everything the server
/// sends (TLS stays end to end: it can only delay or drop, as an attacker on the path can).
struct Relay {
    addr: String,
    withhold: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

fn relay(target: &str) -> Relay {
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let withhold = Arc::new(AtomicBool::new(false));
    let (w, target) = (Arc::clone(&withhold), target.to_string());
    std::thread::spawn(move || {
        for c in l.incoming() {
            let Ok(c) = c else { return };
            let Ok(s) = TcpStream::connect(&target) else {
                continue;
            };
            let (mut c2, mut s2) = (c.try_clone().unwrap(), s.try_clone().unwrap());
            std::thread::spawn(move || {
                let mut b = [0u8; 16384];
                let mut c = c;
                let mut s = s;
                while let Ok(n @ 1..) = c.read(&mut b) {
                    if s.write_all(&b[..n]).is_err() {
                        break;
                    }
                }
            });
            let w = Arc::clone(&w);
            std::thread::spawn(move || {
                let mut b = [0u8; 16384];
                while let Ok(n @ 1..) = s2.read(&mut b) {
                    if !w.load(Ordering::SeqCst) && c2.write_all(&b[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    Relay { addr, withhold }
}

#[test]
fn withheld_answers_make_the_host_stale_and_end_strict_grants() {
    let mut f = Fleet::init("withheld", "doc_ttl = 10\npoll_max_wait = 2\n", POLICY);
    let (lee, ray, sam) = (f.token("lee"), f.token("ray"), f.token("sam"));
    let join = f.join_token("web1");
    f.serve();
    let r = relay(&f.addr);
    let sb = Sandbox::new();
    sb.start_jitd();
    let url = format!("https://{}", r.addr);
    let o = sb.jitctl(&[
        "enroll",
        &url,
        "--token",
        &join,
        "--fingerprint",
        &f.fingerprint,
    ]);
    assert_eq!(code(&o), 0, "{}", show(&o));
    let long = f.request(&lee, "ops", "web1", "1h");
    let strict = f.request(&ray, "ops-strict", "web1", "1h");
    f.approve(&sam, &long);
    f.approve(&sam, &strict);
    for u in ["lee", "ray"] {
        poll(&format!("{u} visible"), Duration::from_secs(10), || {
            visible(&sb, u).then_some(())
        });
    }
    // From now on the server's answers never arrive: the connection stays open, nothing comes.
    r.withhold.store(true, std::sync::atomic::Ordering::SeqCst);
    let t = Instant::now();
    poll(
        "stale while answers are withheld",
        Duration::from_secs(25),
        || status(&sb).contains(": stale").then_some(()),
    );
    println!(
        "answers withheld -> host stale after {} ms (document lifetime 10 s)",
        t.elapsed().as_millis()
    );
    poll("the strict grant ended", Duration::from_secs(5), || {
        (!visible(&sb, "ray")).then_some(())
    });
    assert!(
        visible(&sb, "lee"),
        "non-strict grants run to their own end"
    );
    // A revocation issued while answers are withheld cannot be delivered; the grant is not
    // extended either: it still ends at its own not_after (checked in the outage test).
    let g = grants(&sb);
    let rg = g.iter().find(|g| g["user"] == "ray").unwrap();
    assert!(rg["end_reason"].as_str().unwrap().contains("stale"), "{rg}");
}
