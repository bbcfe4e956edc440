//! jitd-level tests through `jitctl`, real clients and /proc: the life of an account grant
//! (created → live → expired → torn down, audited), revocation, pending grants, stable uids
//! (B4/T3), rejected requests that must change nothing (B1–B4), `--check-config`,
//! `jit-authorized-keys`, jitd stopped (local users unaffected, live grants visible until
//! `not_after`), expired while down (F11) and processes that try to outlive teardown (F13).
//!
//! Ids in comments and test names (B1–B4, F11, F13, …) are rows of docs/threat-model.md.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use serde_json::Value;

use jit_tests::procs::{self, describe, live_of_uid};
use jit_tests::sandbox::{group_members, parse_id, path_str};
use jit_tests::{
    artifacts, code, now, now_f64, poll, poll_opt, show, sleep_until, stderr, stdout, Sandbox,
    SandboxOptions, GETENT_NOT_FOUND,
};

fn num(v: &Value, k: &str) -> i64 {
    v.get(k)
        .and_then(Value::as_i64)
        .unwrap_or_else(|| panic!("grant object lacks integer {k:?}: {v}"))
}

fn text<'a>(v: &'a Value, k: &str) -> &'a str {
    v.get(k)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("object lacks string {k:?}: {v}"))
}

fn visible(sb: &Sandbox, name: &str) -> bool {
    code(&sb.run(&["getent", "passwd", name])) == 0
}

/// Polls (≤ 5 s) until `name` resolves; returns how long it took.
fn wait_visible(sb: &Sandbox, name: &str) -> f64 {
    let t = now_f64();
    poll(
        &format!("{name} visible through NSS"),
        Duration::from_secs(5),
        || visible(sb, name).then_some(()),
    );
    now_f64() - t
}

fn uid_of(sb: &Sandbox, name: &str) -> u32 {
    let o = sb.run(&["id", "-u", name]);
    assert_eq!(code(&o), 0, "id -u {name}: {}", show(&o));
    stdout(&o).trim().parse().unwrap()
}

/// Starts `cmd` as `user` through su in the background, output detached; returns the pid of the
/// process whose command line contains `marker` (found in /proc).
fn start_as(sb: &Sandbox, user: &str, uid: u32, cmd: &str, marker: &str) -> i32 {
    let o = sb.run(&[
        "su",
        user,
        "-c",
        &format!("{cmd} </dev/null >/dev/null 2>&1 &"),
    ]);
    assert_eq!(code(&o), 0, "su {user} -c {cmd:?}: {}", show(&o));
    poll(
        &format!("process {marker:?} of {user}"),
        Duration::from_secs(5),
        || {
            procs::live_where(|p| p.uid == uid && p.cmdline.contains(marker))
                .first()
                .map(|p| p.pid)
        },
    )
}

#[test]
fn account_grant_lifecycle() {
    let sb = Sandbox::new();
    sb.start_jitd();
    let g = sb.grant_json(&[
        "alice",
        "--account",
        "--group",
        "sudo",
        "--for",
        "5s",
        "--reason",
        "lifecycle test",
    ]);
    let id = text(&g, "id").to_string();
    let (nb, na) = (num(&g, "not_before"), num(&g, "not_after"));
    assert_eq!(text(&g, "user"), "alice", "{g}");
    assert_eq!(
        na - nb,
        5,
        "--for 5s must give not_after = not_before + 5: {g}"
    );
    assert!((nb - now()).abs() <= 2, "not_before must be now: {g}");
    let uid = g
        .get("uid")
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("an --account grant has a uid: {g}")) as u32;
    assert!(
        uid >= sb.ids.jit_min && uid <= sb.ids.jit_max,
        "uid {uid} outside uid_range {}-{}",
        sb.ids.jit_min,
        sb.ids.jit_max
    );
    assert!(
        g.get("groups")
            .map(|v| v.to_string().contains("sudo"))
            .unwrap_or(false),
        "grant object must list its groups: {g}"
    );
    assert!(g.get("state").is_some(), "grant object lacks state: {g}");

    let lat = wait_visible(&sb, "alice");
    println!("lifecycle: alice visible {lat:.3} s after `jitctl grant add` returned");
    let o = sb.run(&["getent", "passwd", "alice"]);
    let line = stdout(&o).trim().to_string();
    assert!(
        line.starts_with(&format!("alice:*:{uid}:{uid}:jit grant {id}"))
            && line.ends_with(":/home/alice:/bin/bash"),
        "passwd line of the ephemeral account: {}",
        show(&o)
    );
    let o = sb.run(&["id", "alice"]);
    let m = parse_id(&stdout(&o));
    assert!(
        m.get("sudo") == Some(&sb.ids.sudo_gid) && m.contains_key("jit-users"),
        "id alice: {}",
        show(&o)
    );
    let o = sb.run(&["getent", "group", "sudo"]);
    let mem = group_members(&stdout(&o));
    assert!(
        mem.contains(&"alice".into()) && mem.contains(&"dave".into()),
        "{}",
        show(&o)
    );
    // Home from /etc/skel, owned by the account.
    let home = sb.host_path("/home/alice");
    let md = poll("home /home/alice created", Duration::from_secs(5), || {
        std::fs::metadata(&home).ok()
    });
    assert_eq!((md.uid(), md.gid()), (uid, uid), "home owner");
    if std::path::Path::new("/etc/skel/.bashrc").exists() {
        assert!(
            home.join(".bashrc").exists(),
            "home must be made from /etc/skel"
        );
    }
    let o = sb.run(&["su", "-", "alice", "-c", "id -un; pwd"]);
    assert!(
        code(&o) == 0 && stdout(&o) == "alice\n/home/alice\n",
        "su - alice: {}",
        show(&o)
    );
    let o = sb.jitctl(&["grant", "list"]);
    assert!(
        code(&o) == 0 && stdout(&o).contains(&id),
        "grant list: {}",
        show(&o)
    );
    let o = sb.jitctl(&["grant", "show", &id]);
    assert!(
        code(&o) == 0 && stdout(&o).contains("alice"),
        "grant show: {}",
        show(&o)
    );

    // Expiry: visible up to not_after, gone from not_after on.
    let mut last_seen = now_f64();
    let first_gone = poll("alice gone at not_after", Duration::from_secs(12), || {
        let t = now_f64();
        if visible(&sb, "alice") {
            last_seen = t;
            None
        } else {
            Some(t)
        }
    });
    println!(
        "lifecycle: not_after {na}; alice last seen at {last_seen:.3}, first gone at {first_gone:.3}"
    );
    assert!(
        first_gone >= na as f64 - 0.05,
        "alice vanished before not_after ({first_gone:.3} < {na})"
    );
    assert!(
        last_seen >= na as f64 - 1.5,
        "alice vanished early: last seen {last_seen:.3}, not_after {na}"
    );
    let o = sb.run(&["getent", "group", "sudo"]);
    assert!(
        !group_members(&stdout(&o)).contains(&"alice".into()),
        "{}",
        show(&o)
    );
    poll(
        "home removed (home_policy remove)",
        Duration::from_secs(5),
        || (!home.exists()).then_some(()),
    );
    for ev in [
        "grant.created",
        "grant.live",
        "grant.expired",
        "grant.teardown",
    ] {
        let e = sb.wait_audit(&id, ev, Duration::from_secs(5));
        assert!(
            e.get("ts").is_some() && e.get("user").and_then(Value::as_str) == Some("alice"),
            "audit {ev} must carry ts and user: {e}"
        );
    }
    println!("lifecycle: audit events {:?}", sb.audit_events(&id));
    // The same trail through `jitctl --json audit --grant ID`: one JSON object per line.
    let o = sb.jitctl(&["--json", "audit", "--grant", &id]);
    assert_eq!(code(&o), 0, "jitctl audit: {}", show(&o));
    let cli_events: Vec<String> = stdout(&o)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: Value = serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("jitctl --json audit line is not JSON ({e}): {l:?}"));
            assert_eq!(
                v.get("grant").and_then(Value::as_str),
                Some(id.as_str()),
                "{l}"
            );
            text(&v, "event").to_string()
        })
        .collect();
    for ev in [
        "grant.created",
        "grant.live",
        "grant.expired",
        "grant.teardown",
    ] {
        assert!(
            cli_events.iter().any(|e| e == ev),
            "jitctl --json audit --grant {id} lacks {ev}: {cli_events:?}"
        );
    }
    let o = sb.jitctl(&["--json", "status"]);
    let st: Value = serde_json::from_slice(&o.stdout).unwrap_or(Value::Null);
    assert!(
        code(&o) == 0 && st.is_object(),
        "jitctl --json status must print a JSON object: {}",
        show(&o)
    );
    let o = sb.jitctl(&["--json", "grant", "show", &id]);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap_or(Value::Null);
    assert!(
        code(&o) == 0 && v.get("state").and_then(Value::as_str) != Some("live"),
        "an expired grant must not show as live: {}",
        show(&o)
    );
    assert!(
        sb.grant_list()
            .iter()
            .any(|g| g.get("id").and_then(Value::as_str) == Some(&id)),
        "grant list --all must still show the ended grant"
    );
    sb.assert_local_unaffected();
}

#[test]
fn pending_grant_goes_live_at_start_in() {
    let sb = Sandbox::new();
    sb.start_jitd();
    let g = sb.grant_json(&["alice", "--account", "--start-in", "2s", "--for", "2s"]);
    let id = text(&g, "id").to_string();
    let (nb, na) = (num(&g, "not_before"), num(&g, "not_after"));
    assert_eq!(na - nb, 2, "{g}");
    if now() < nb {
        assert!(
            !visible(&sb, "alice"),
            "a pending grant must not be visible"
        );
    }
    let o = sb.jitctl(&["grant", "list"]);
    println!(
        "pending: `jitctl grant list` before not_before: {}",
        stdout(&o).trim()
    );
    sleep_until(nb as f64 + 0.05);
    assert!(
        visible(&sb, "alice"),
        "alice must be visible from not_before on"
    );
    sb.wait_audit(&id, "grant.live", Duration::from_secs(5));
    sleep_until(na as f64 + 0.05);
    assert!(
        !visible(&sb, "alice"),
        "alice must be gone from not_after on"
    );
    sb.wait_audit(&id, "grant.teardown", Duration::from_secs(5));
    sb.assert_local_unaffected();
}

#[test]
fn revoke_tears_down_at_once() {
    let sb = Sandbox::new();
    sb.start_jitd();
    let id = sb.grant(&["alice", "--account", "--group", "sudo", "--for", "1h"]);
    wait_visible(&sb, "alice");
    let uid = uid_of(&sb, "alice");
    let pid = start_as(&sb, "alice", uid, "sleep 1999", "sleep 1999");
    let t = now_f64();
    let o = sb.jitctl(&["grant", "revoke", &id, "--reason", "test revoke"]);
    assert_eq!(code(&o), 0, "revoke: {}", show(&o));
    // NSS: gone as soon as revoke returned.
    let o = sb.run(&["getent", "passwd", "alice"]);
    assert_eq!(
        code(&o),
        GETENT_NOT_FOUND,
        "alice must be gone when `jitctl grant revoke` returns: {}",
        show(&o)
    );
    let o = sb.run(&["getent", "group", "sudo"]);
    assert!(
        !group_members(&stdout(&o)).contains(&"alice".into()),
        "{}",
        show(&o)
    );
    poll(
        "alice's processes killed after revoke",
        Duration::from_secs(5),
        || live_of_uid(uid).is_empty().then_some(()),
    );
    println!(
        "revoke: processes of uid {uid} gone {:.3} s after revoke was called (pid {pid})",
        now_f64() - t
    );
    sb.wait_audit(&id, "grant.revoked", Duration::from_secs(5));
    sb.wait_audit(&id, "grant.teardown", Duration::from_secs(5));
    let home = sb.host_path("/home/alice");
    poll("home removed after revoke", Duration::from_secs(5), || {
        (!home.exists()).then_some(())
    });
    let o = sb.jitctl(&["grant", "revoke", &id]);
    assert_ne!(
        code(&o),
        0,
        "revoking an ended grant again must fail: {}",
        show(&o)
    );
    let o = sb.jitctl(&["grant", "revoke", "g-0000dead0000"]);
    assert_eq!(code(&o), 1, "revoking an unknown id: {}", show(&o));
    sb.assert_local_unaffected();
}

/// B4/T3: an identity keeps its uid across grants; another identity never gets it.
#[test]
fn stable_uid_per_identity() {
    let sb = Sandbox::new();
    sb.start_jitd();
    let g1 = sb.grant_json(&["alice", "--account", "--for", "1h"]);
    let u1 = num(&g1, "uid");
    let g2 = sb.grant_json(&["bob", "--account", "--for", "1h"]);
    let u2 = num(&g2, "uid");
    assert_ne!(u1, u2, "two identities got one uid");
    let o = sb.jitctl(&["grant", "revoke", text(&g1, "id")]);
    assert_eq!(code(&o), 0, "{}", show(&o));
    let g3 = sb.grant_json(&["carl", "--account", "--for", "1h"]);
    let u3 = num(&g3, "uid");
    assert_ne!(
        u3, u1,
        "alice's uid was handed to carl after alice's grant ended"
    );
    let g4 = sb.grant_json(&["alice", "--account", "--for", "1h"]);
    assert_eq!(num(&g4, "uid"), u1, "alice must get her recorded uid again");
    let passwd = sb.sh_ok("cat /etc/passwd");
    for u in [u1, u2, u3] {
        assert!(
            u >= i64::from(sb.ids.jit_min) && u <= i64::from(sb.ids.jit_max),
            "uid {u} outside uid_range"
        );
        assert!(
            !passwd
                .lines()
                .any(|l| l.split(':').nth(2) == Some(&*u.to_string())),
            "uid {u} collides with a local user"
        );
    }
    // Restart: the ledger survives.
    sb.stop_jitd();
    sb.start_jitd();
    let o = sb.jitctl(&["grant", "revoke", text(&g4, "id")]);
    assert_eq!(code(&o), 0, "{}", show(&o));
    let g5 = sb.grant_json(&["alice", "--account", "--for", "1h"]);
    assert_eq!(num(&g5, "uid"), u1, "alice's uid must survive a restart");
    sb.assert_local_unaffected();
}

/// What must not change when a request is refused.
fn world(sb: &Sandbox) -> (Option<Vec<String>>, Vec<String>, String) {
    let mut ids: Vec<String> = sb
        .grant_list()
        .iter()
        .map(|g| text(g, "id").to_string())
        .collect();
    ids.sort();
    let files = sb.sh_ok("cat /etc/passwd /etc/group /etc/shadow; ls -A /home /etc");
    (sb.snapshot_summary(), ids, files)
}

/// A request that must be refused: raw jitctl arguments, accepted exit codes, description.
type Refusal = (Vec<Vec<u8>>, &'static [i32], String);

/// B1–B4 through jitctl: each refused with exit 1 (2 where noted) and a message, nothing changes.
#[test]
fn rejected_requests_change_nothing() {
    let sb = Sandbox::new();
    sb.start_jitd();
    sb.grant(&["bob", "--account", "--group", "sudo", "--for", "1h"]);
    wait_visible(&sb, "bob");
    let before = world(&sb);

    let long33 = "a".repeat(33);
    let long256 = "b".repeat(256);
    let long16385 = "c".repeat(16385);
    let root_prefixed = format!("root{}", "x".repeat(16380));
    let mut cases: Vec<Refusal> = Vec::new();
    let mut add =
        |args: Vec<Vec<u8>>, ok: &'static [i32], why: &str| cases.push((args, ok, why.to_string()));
    let s = |v: &[&str]| v.iter().map(|x| x.as_bytes().to_vec()).collect::<Vec<_>>();
    for name in [
        "evil:0:0",
        "a\nroot:x:0:0",
        "a\tb",
        "+nis",
        "@grp",
        "../etc/evil",
        "../../etc/shadow",
        "a/b",
        ".hidden",
        "a.b",
        "a~",
        "Alice",
        "ALICE",
        "a b",
        "\u{430}dmin",
        "\u{ff41}lice",
        "al\u{200f}ice",
        "",
        &long33,
        &long256,
        &long16385,
        &root_prefixed,
        "root",
        "daemon",
        "nobody",
        "sudo",
        "jit-users",
        "carol",
        "devs",
        "Carol",
    ] {
        add(
            s(&["grant", "add", "--account", "--for", "1h", "--", name]),
            &[1],
            &format!("account name {name:?}"),
        );
    }
    add(
        s(&[
            "grant",
            "add",
            "--account",
            "--for",
            "1h",
            "--",
            "-oProxyCommand=x",
        ]),
        &[1],
        "leading dash",
    );
    add(
        vec![
            b"grant".to_vec(),
            b"add".to_vec(),
            b"--account".to_vec(),
            b"--for".to_vec(),
            b"1h".to_vec(),
            b"--".to_vec(),
            b"a\xffb".to_vec(),
        ],
        &[1, 2],
        "invalid UTF-8 name",
    );
    for (grp, why) in [
        ("root", "group root (gid 0)"),
        ("nosuchgroup", "group that does not exist"),
        ("evil:x", "group name with ':'"),
        ("../etc", "group name with '/'"),
        ("nogroup", "group nogroup (65534)"),
    ] {
        add(
            s(&["grant", "add", "carol", "--group", grp, "--for", "1h"]),
            &[1],
            why,
        );
    }
    for (dur, ok) in [
        ("13h", &[1][..]),
        ("12h1s", &[1][..]),
        ("0s", &[1, 2][..]),
        ("-5s", &[1, 2][..]),
        ("5x", &[1, 2][..]),
        ("", &[1, 2][..]),
    ] {
        add(
            s(&["grant", "add", "alice", "--account", "--for", dur]),
            ok,
            &format!("duration {dur:?}"),
        );
    }
    add(
        s(&[
            "grant",
            "add",
            "alice",
            "--account",
            "--for",
            "1h",
            "--start-in",
            "soon",
        ]),
        &[1, 2],
        "bad --start-in",
    );
    let mut problems = Vec::new();
    for (args, ok, why) in &cases {
        let os: Vec<&OsStr> = args.iter().map(|a| OsStr::from_bytes(a)).collect();
        let o = sb.jitctl_os(&os);
        if !ok.contains(&code(&o)) {
            problems.push(format!("{why}: want exit {ok:?}: {}", show(&o)));
        } else if stderr(&o).trim().is_empty() || !stdout(&o).trim().is_empty() {
            problems.push(format!(
                "{why}: a refusal needs a message on stderr and nothing on stdout: {}",
                show(&o)
            ));
        }
    }
    // Login conditions refused with the reason (nothing stored half-checked). A malformed
    // --from or --window is a usage error jitctl finds itself (exit 2) before asking jitd.
    for (flags, why, want) in [
        (vec!["--mfa"], "no TOTP secret", 1),
        (vec!["--mfa-sudo"], "--mfa-sudo needs --sudo", 1),
        (vec!["--from", "10.0.0.0/33"], "--from", 2),
        (vec!["--window", "Mon-Fri 18:00-09:00x"], "--window", 2),
        (vec!["--enable"], "choose one", 1),
    ] {
        let mut v = vec!["grant", "add", "alice", "--account", "--for", "1h"];
        v.extend_from_slice(&flags);
        let o = sb.jitctl(&v);
        if code(&o) != want || !stderr(&o).contains(why) {
            problems.push(format!("{flags:?}: must be refused ({why}): {}", show(&o)));
        }
    }
    // A sudo scope while sudo.conf does not load sudo_jit: the jit-sudo rule would give ALL.
    let o = sb.jitctl(&["grant", "add", "carol", "--sudo", "ALL", "--for", "1h"]);
    if code(&o) != 1 || !stderr(&o).contains("sudo_jit plugin") {
        problems.push(format!(
            "--sudo without the plugin must be refused: {}",
            show(&o)
        ));
    }
    let after = world(&sb);
    println!("B1-B4: {} refused requests checked", cases.len() + 4);
    assert!(
        problems.is_empty(),
        "refusals wrong:\n{}",
        problems.join("\n")
    );
    assert_eq!(
        before.0, after.0,
        "the snapshot changed after refused requests"
    );
    assert_eq!(
        before.1, after.1,
        "the grant list changed after refused requests"
    );
    assert_eq!(before.2, after.2, "files changed after refused requests");
    let o = sb.sh(
        "find /home /var/lib/jitd /var/log/jit /run /etc /tmp -maxdepth 3 \\
         -newer /etc/jit/jitd.toml \\( -name '*evil*' -o -name '*ProxyCommand*' \\
         -o -name '.hidden' -o -name 'a.b' -o -name 'a~' -o -name '+nis' -o -name '@grp' \\) \\
         2>/dev/null",
    );
    assert!(
        stdout(&o).trim().is_empty(),
        "a refused name was used as a file name: {}",
        show(&o)
    );
    let o = sb.run(&["getent", "passwd", "evil"]);
    assert_eq!(code(&o), GETENT_NOT_FOUND);
    sb.assert_local_unaffected();
}

#[test]
fn check_config() {
    let a = artifacts();
    let sb = Sandbox::new();
    let jitd = path_str(&a.jitd);
    let o = sb.run(&[jitd, "--config", "/etc/jit/jitd.toml", "--check-config"]);
    assert_eq!(
        code(&o),
        0,
        "the sandbox config must pass --check-config: {}",
        show(&o)
    );
    let base = std::fs::read_to_string(sb.host_path("/etc/jit/jitd.toml")).unwrap();
    let cases = [
        (
            "unknown key",
            format!("{base}no_such_key = 1\n"),
            "no_such_key",
        ),
        (
            "root in managed_accounts",
            base.replace("managed_accounts = []", "managed_accounts = [\"root\"]"),
            "root",
        ),
        (
            "uid_range holding local user carol",
            base.replace(
                &format!("uid_range = \"{}-{}\"", sb.ids.jit_min, sb.ids.jit_max),
                &format!("uid_range = \"{}-{}\"", sb.ids.jit_min, sb.ids.carol + 5),
            ),
            "",
        ),
        (
            "uid_range with uid 0",
            base.replace(
                &format!("uid_range = \"{}-{}\"", sb.ids.jit_min, sb.ids.jit_max),
                "uid_range = \"0-999\"",
            ),
            "",
        ),
        (
            "bad home_policy",
            base.replace("\"remove\"", "\"shred\""),
            "",
        ),
        (
            "bad duration",
            base.replace("max_grant = \"12h\"", "max_grant = \"forever\""),
            "",
        ),
        ("not TOML", "uid_range = [\n".to_string(), ""),
    ];
    let mut problems = Vec::new();
    for (why, content, needle) in cases {
        let p = sb.host_path("/etc/jit/bad.toml");
        std::fs::write(&p, &content).unwrap();
        let o = sb.run(&[jitd, "--config", "/etc/jit/bad.toml", "--check-config"]);
        let msg = format!("{}{}", stdout(&o), stderr(&o));
        if code(&o) != 1 || msg.trim().is_empty() || !msg.contains(needle) {
            problems.push(format!(
                "{why}: want exit 1 and a message naming {needle:?}: {}",
                show(&o)
            ));
        }
    }
    let o = sb.run(&[jitd, "--config", "/etc/jit/missing.toml", "--check-config"]);
    if code(&o) == 0 {
        problems.push(format!("missing config file accepted: {}", show(&o)));
    }
    // The host around the config: a pam.d service naming a pam_jit.so that is not there would
    // fail that stack for everyone (P11); managed accounts with no service loading pam_jit are
    // not enforced.
    sb.sh_ok("printf 'account required /nonexistent/pam_jit.so\\n' > /etc/pam.d/jit-check");
    let o = sb.run(&[jitd, "--config", "/etc/jit/jitd.toml", "--check-config"]);
    if code(&o) != 1 || !format!("{}{}", stdout(&o), stderr(&o)).contains("does not exist") {
        problems.push(format!(
            "missing pam_jit.so in pam.d/jit-check: {}",
            show(&o)
        ));
    }
    sb.sh_ok("rm /etc/pam.d/jit-check && useradd -M -u 4242 opscheck");
    let p = sb.host_path("/etc/jit/bad.toml");
    std::fs::write(
        &p,
        base.replace("managed_accounts = []", "managed_accounts = [\"opscheck\"]"),
    )
    .unwrap();
    let o = sb.run(&[jitd, "--config", "/etc/jit/bad.toml", "--check-config"]);
    if code(&o) != 1 || !format!("{}{}", stdout(&o), stderr(&o)).contains("not enforced at login") {
        problems.push(format!("managed account without pam_jit: {}", show(&o)));
    }
    assert!(
        problems.is_empty(),
        "--check-config:\n{}",
        problems.join("\n")
    );
}

#[test]
fn authorized_keys_follow_the_grant() {
    let a = artifacts();
    let sb = Sandbox::new();
    sb.start_jitd();
    let keygen = |name: &str| {
        let p = sb.scratch(name);
        let o = sb.run(&[
            "ssh-keygen",
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            name,
            "-f",
            path_str(&p),
        ]);
        assert_eq!(code(&o), 0, "ssh-keygen: {}", show(&o));
        std::fs::read_to_string(p.with_extension("pub"))
            .unwrap()
            .trim()
            .to_string()
    };
    let key = keygen("alice1");
    let key = key.as_str();
    let key2 = keygen("alice2");
    let key2 = key2.as_str();
    let kf = sb.scratch("alice2.pub");
    let id = sb.grant(&[
        "alice",
        "--account",
        "--for",
        "1h",
        "--ssh-key",
        key,
        "--ssh-key-file",
        path_str(&kf),
    ]);
    wait_visible(&sb, "alice");
    // Added just now: alice is in the snapshot's delta, not yet in its base.
    assert!(
        sb.host_path("/run/jitd/snapshot.delta").exists(),
        "an added grant goes to the delta"
    );
    let ak = path_str(&a.authorized_keys);
    let nobody_run = |user: &str| {
        sb.run(&[
            "setpriv",
            "--reuid",
            "nobody",
            "--regid",
            "nogroup",
            "--clear-groups",
            "--",
            ak,
            user,
        ])
    };
    let o = nobody_run("alice");
    assert!(
        code(&o) == 0 && stdout(&o).contains(key) && stdout(&o).contains(key2),
        "jit-authorized-keys alice (as nobody, like sshd's AuthorizedKeysCommandUser): {}",
        show(&o)
    );
    for user in ["carol", "root", "nosuchuser", "../etc/passwd"] {
        let o = nobody_run(user);
        assert!(
            code(&o) == 0 && stdout(&o).is_empty(),
            "jit-authorized-keys {user:?} must print nothing and exit 0: {}",
            show(&o)
        );
    }
    // Works with jitd stopped (reads only the snapshot).
    sb.stop_jitd();
    let o = nobody_run("alice");
    assert!(
        code(&o) == 0 && stdout(&o).contains(key),
        "with jitd stopped: {}",
        show(&o)
    );
    sb.start_jitd();
    // jitd wrote whole files at start: alice's keys now come from the shard of the snapshot's
    // index that holds her name (no delta is left to carry them).
    assert!(
        !sb.host_path("/run/jitd/snapshot.delta").exists(),
        "a delta after jitd's start"
    );
    let o = nobody_run("alice");
    assert!(
        code(&o) == 0 && stdout(&o).contains(key) && stdout(&o).contains(key2),
        "from the base's shard: {}",
        show(&o)
    );
    let o = sb.jitctl(&["grant", "revoke", &id]);
    assert_eq!(code(&o), 0, "{}", show(&o));
    let o = nobody_run("alice");
    assert!(
        code(&o) == 0 && stdout(&o).is_empty(),
        "after revoke no keys: {}",
        show(&o)
    );
    let o = sb.jitctl(&[
        "grant",
        "add",
        "alice",
        "--account",
        "--for",
        "1h",
        "--ssh-key",
        "not a key",
    ]);
    assert_eq!(code(&o), 1, "a malformed key must be refused: {}", show(&o));
}

/// docs/design.md#fail-closed, row "jitd down": local users unaffected; live grants stay visible until not_after and
/// vanish then without the daemon; jitctl says it cannot reach jitd (exit 3).
#[test]
fn jitd_stopped_grants_live_until_not_after() {
    let sb = Sandbox::new();
    sb.start_jitd();
    let g = sb.grant_json(&["alice", "--account", "--group", "sudo", "--for", "4s"]);
    let gc = sb.grant_json(&["carol", "--group", "sudo", "--for", "4s"]);
    let na = num(&g, "not_after");
    // carol's grant may have been made in the next second: its own end, not alice's.
    let nc = num(&gc, "not_after");
    wait_visible(&sb, "alice");
    let st = sb.stop_jitd();
    assert!(
        st.success(),
        "SIGTERM must be a clean stop (exit 0), got {st}\n{}",
        sb.jitd_log()
    );
    let o = sb.jitctl(&["status"]);
    assert_eq!(
        code(&o),
        3,
        "jitctl with jitd down must exit 3: {}",
        show(&o)
    );
    assert!(!stderr(&o).trim().is_empty(), "and say why: {}", show(&o));
    if now_f64() < na as f64 - 0.5 {
        assert!(
            visible(&sb, "alice"),
            "a live grant must stay visible while jitd is down"
        );
        let o = sb.run(&["id", "carol"]);
        assert!(
            stdout(&o).contains("(sudo)"),
            "carol's live group grant: {}",
            show(&o)
        );
    }
    sb.assert_local_unaffected();
    sleep_until(na as f64 + 0.05);
    assert!(
        !visible(&sb, "alice"),
        "alice must vanish at not_after without jitd"
    );
    sleep_until(nc as f64 + 0.05);
    let o = sb.run(&["id", "carol"]);
    assert!(
        code(&o) == 0 && !stdout(&o).contains("(sudo)"),
        "carol's membership must end at not_after without jitd: {}",
        show(&o)
    );
    sb.assert_local_unaffected();
}

/// F11: expired while jitd was down → torn down (processes killed, audited) before the socket
/// answers again.
#[test]
fn f11_expired_while_down_torn_down_before_socket() {
    let sb = Sandbox::new();
    sb.start_jitd();
    let g = sb.grant_json(&["alice", "--account", "--for", "3s"]);
    let id = text(&g, "id").to_string();
    let na = num(&g, "not_after");
    wait_visible(&sb, "alice");
    let uid = uid_of(&sb, "alice");
    let pid = start_as(&sb, "alice", uid, "setsid sleep 1777", "sleep 1777");
    let st = sb.stop_jitd();
    assert!(
        st.success(),
        "SIGTERM must be a clean stop, got {st}\n{}",
        sb.jitd_log()
    );
    sleep_until(na as f64 + 1.2);
    assert!(
        !visible(&sb, "alice"),
        "NSS must drop alice at not_after even with jitd down"
    );
    assert!(
        procs::is_alive(pid),
        "precondition: the escaped process runs until jitd tears down"
    );
    let events_before = sb.audit_events(&id);
    assert!(
        !events_before.iter().any(|e| e == "grant.teardown"),
        "teardown audited while jitd was down? {events_before:?}"
    );
    sb.start_jitd();
    // start_jitd returned at the first `jitctl status` that answered: teardown must be done.
    let events = sb.audit_events(&id);
    let dead_now = !procs::is_alive(pid);
    let t = now_f64();
    let dead_soon = poll_opt(Duration::from_secs(3), || {
        (!procs::is_alive(pid)).then_some(())
    });
    let expired = sb
        .audit()
        .into_iter()
        .find(|e| {
            e.get("grant").and_then(Value::as_str) == Some(id.as_str())
                && e.get("event").and_then(Value::as_str) == Some("grant.expired")
        })
        .unwrap_or(Value::Null);
    println!("F11: not_after {na}; expired event: {expired}");
    assert_eq!(
        expired.get("not_after").and_then(Value::as_i64),
        Some(na),
        "the expired-while-down audit line must record the original not_after: {expired}"
    );
    println!(
        "F11: events when the socket answered: {events:?}; escaped process dead then: {dead_now}; \
         dead {:.3} s later: {}",
        now_f64() - t,
        dead_soon.is_some()
    );
    assert!(
        events.iter().any(|e| e == "grant.expired"),
        "the expiry must be audited before the socket answers: {events:?}\n{}",
        sb.jitd_log()
    );
    // The teardown record follows the set-id sweep, which runs on its own thread (a /tmp full
    // of files must not hold the socket closed): written soon after, not necessarily before.
    poll("the teardown audited", Duration::from_secs(30), || {
        sb.audit_events(&id)
            .iter()
            .any(|e| e == "grant.teardown")
            .then_some(())
    });
    assert!(
        dead_now,
        "the setsid process of alice must be dead when the socket answers: {}",
        describe(&live_of_uid(uid))
    );
    assert!(
        live_of_uid(uid).is_empty(),
        "{}",
        describe(&live_of_uid(uid))
    );
    let home = sb.host_path("/home/alice");
    assert!(
        !home.exists(),
        "home must be removed before the socket answers"
    );
    sb.assert_local_unaffected();
}

/// F13: processes that try to outlive the grant (setsid, nohup, plain background, a held su
/// session) are all dead within ~3 s of not_after.
#[test]
fn f13_processes_do_not_survive_teardown() {
    let sb = Sandbox::new();
    sb.start_jitd();
    let g = sb.grant_json(&["alice", "--account", "--group", "sudo", "--for", "4s"]);
    let na = num(&g, "not_after");
    wait_visible(&sb, "alice");
    let uid = uid_of(&sb, "alice");
    start_as(&sb, "alice", uid, "setsid sleep 1501", "sleep 1501");
    start_as(&sb, "alice", uid, "nohup sleep 1502", "sleep 1502");
    start_as(&sb, "alice", uid, "sleep 1503", "sleep 1503");
    start_as(
        &sb,
        "alice",
        uid,
        "setsid sh -c 'trap \"\" TERM HUP; while :; do sleep 1; done; : 1504'",
        ": 1504",
    );
    let held = sb.spawn(
        "held-session",
        &["su", "-", "alice", "-c", "exec sleep 1505"],
    );
    poll("held session running", Duration::from_secs(5), || {
        procs::live_where(|p| p.uid == uid && p.cmdline.contains("sleep 1505"))
            .first()
            .map(|_| ())
    });
    let before = live_of_uid(uid);
    assert!(
        before.len() >= 5,
        "precondition: alice's processes: {}",
        describe(&before)
    );
    assert!(now_f64() < na as f64, "setup took longer than the grant");
    let done = poll_opt(Duration::from_secs((na - now()).max(0) as u64 + 10), || {
        (now_f64() >= na as f64 && live_of_uid(uid).is_empty()).then(now_f64)
    });
    let left = live_of_uid(uid);
    let latency = done.map(|t| t - na as f64);
    println!(
        "F13: {} processes of uid {uid} (one ignoring SIGTERM); all dead {:?} s after not_after",
        before.len(),
        latency
    );
    let latency = latency.unwrap_or_else(|| {
        panic!(
            "processes of alice survived teardown: {}\n{}",
            describe(&left),
            sb.jitd_log()
        )
    });
    assert!(
        latency <= 3.5,
        "teardown took {latency:.3} s after not_after (bound ~3 s with kill_grace 1s)"
    );
    let _ = sb.wait_exit(held, Duration::from_secs(5));
    sb.assert_local_unaffected();
}

/// F13 for a group grant: a process of the grantee that carries the granted gid dies at expiry;
/// one started before the grant (without that gid) keeps running; the local user stays.
#[test]
fn f13_group_grant_kills_only_privileged_processes() {
    let sb = Sandbox::new();
    sb.start_jitd();
    let carol = sb.ids.carol;
    let sg = sb.ids.sudo_gid;
    let plain = start_as(&sb, "carol", carol, "setsid sleep 1601", "sleep 1601");
    let g = sb.grant_json(&["carol", "--group", "sudo", "--for", "3s"]);
    let na = num(&g, "not_after");
    poll("carol in sudo", Duration::from_secs(5), || {
        stdout(&sb.run(&["id", "carol"]))
            .contains("(sudo)")
            .then_some(())
    });
    let privileged = start_as(&sb, "carol", carol, "setsid sleep 1602", "sleep 1602");
    let pi = procs::info(privileged).unwrap();
    assert!(
        pi.groups.contains(&sg),
        "precondition: a session opened during the grant carries sudo: {pi:?}"
    );
    assert!(!procs::info(plain).unwrap().groups.contains(&sg));
    let done = poll_opt(Duration::from_secs(15), || {
        (!procs::is_alive(privileged)).then(now_f64)
    });
    let latency = done.map(|t| t - na as f64);
    println!("F13 group grant: privileged process of carol dead {latency:?} s after not_after");
    let latency = latency.unwrap_or_else(|| {
        panic!(
            "carol's process holding gid {sg} survived the grant: {}\n{}",
            describe(&live_of_uid(carol)),
            sb.jitd_log()
        )
    });
    assert!(latency >= -0.05, "killed before not_after ({latency:.3} s)");
    assert!(latency <= 3.5, "took {latency:.3} s");
    assert!(
        procs::is_alive(plain),
        "carol's process without the granted gid must keep running"
    );
    assert!(
        sb.host_path("/home/carol").exists(),
        "a local user's home is never touched"
    );
    sb.assert_local_unaffected();
}

/// Config variants: home_policy keep and archive.
#[test]
fn home_policy_keep_and_archive() {
    for policy in ["keep", "archive"] {
        let sb = Sandbox::with(SandboxOptions {
            home_policy: policy.into(),
            ..SandboxOptions::default()
        });
        sb.start_jitd();
        let id = sb.grant(&["alice", "--account", "--for", "1h"]);
        wait_visible(&sb, "alice");
        let home = sb.host_path("/home/alice");
        poll("home created", Duration::from_secs(5), || {
            home.exists().then_some(())
        });
        std::fs::write(home.join("work.txt"), "data").unwrap();
        let o = sb.jitctl(&["grant", "revoke", &id]);
        assert_eq!(code(&o), 0, "{}", show(&o));
        sb.wait_audit(&id, "grant.teardown", Duration::from_secs(5));
        let o = sb.sh("ls -laR /home /var/lib/jitd 2>&1 | head -50");
        println!("home_policy {policy}: after teardown:\n{}", stdout(&o));
        match policy {
            "keep" => assert!(
                home.join("work.txt").exists(),
                "home_policy keep must keep the home: {}",
                show(&o)
            ),
            _ => {
                assert!(
                    !home.exists(),
                    "home_policy archive must move the home away"
                );
                let found = sb.sh(
                    "find /home /var/lib/jitd /var/backups /var/lib /srv -maxdepth 5 \\
                     \\( -name work.txt -o -name '*alice*' \\) -newer /etc/jit/jitd.toml 2>/dev/null",
                );
                assert!(
                    !stdout(&found).trim().is_empty(),
                    "home_policy archive: the archived home is nowhere: {}",
                    show(&found)
                );
            }
        }
        sb.assert_local_unaffected();
    }
}

/// B5 / N14: a merged group always carries the gid /etc/group gives it, never another one.
/// jitd takes the gid from /etc/group when it writes the snapshot (never from a grant) and
/// rewrites the snapshot within a second when /etc/group changes; the module trusts only that
/// root-written snapshot.
#[test]
fn merged_group_gid_follows_etc_group() {
    let sb = Sandbox::new();
    sb.start_jitd();
    let sg = sb.ids.sudo_gid;
    sb.grant(&["carol", "--group", "sudo", "--for", "1h"]);
    let o = sb.run(&["getent", "group", &sg.to_string()]);
    assert!(
        stdout(&o).starts_with(&format!("sudo:x:{sg}:"))
            && group_members(&stdout(&o)).contains(&"carol".to_string()),
        "carol merged into sudo at the /etc/group gid: {}",
        show(&o)
    );
    // The admin renumbers sudo in /etc/group while the grant is live.
    let moved = sg + 7;
    sb.sh_ok(&format!(
        "sed -i 's/^sudo:x:{sg}:/sudo:x:{moved}:/' /etc/group"
    ));
    poll(
        "jit's sudo entry moves to the new gid",
        Duration::from_secs(5),
        || {
            let o = sb.run(&["getent", "-s", "jit", "group", "sudo"]);
            stdout(&o)
                .starts_with(&format!("sudo:*:{moved}:"))
                .then_some(())
        },
    );
    let o = sb.run(&["getent", "-s", "jit", "group", &sg.to_string()]);
    assert_eq!(
        code(&o),
        GETENT_NOT_FOUND,
        "the old gid is no longer answered: {}",
        show(&o)
    );
    let o = sb.run(&["getent", "group", "sudo"]);
    let line = stdout(&o);
    assert!(
        line.starts_with(&format!("sudo:x:{moved}:"))
            && group_members(&line).contains(&"carol".to_string()),
        "merged entry at the new gid: {}",
        show(&o)
    );
    sb.assert_local_unaffected();
}

/// TOTP activation through the real clients: `jitctl mfa enroll`, an `--mfa` group grant that
/// gives nothing while armed, `jitctl activate` run as the user with a code from `oathtool`
/// (the independent implementation); a wrong code and a replayed code are refused.
#[test]
fn mfa_grant_is_armed_until_the_user_proves_a_code() {
    let sb = Sandbox::new();
    sb.start_jitd();
    let carol = sb.ids.carol;
    let enroll = sb.jitctl(&["--json", "mfa", "enroll", "carol"]);
    assert_eq!(code(&enroll), 0, "{}", show(&enroll));
    let v: Value = serde_json::from_slice(&enroll.stdout).unwrap();
    let secret = v["secret"].as_str().unwrap().to_string();
    assert!(
        v["uri"].as_str().unwrap().starts_with("otpauth://totp/"),
        "{v}"
    );
    let g = sb.grant_json(&["carol", "--group", "sudo", "--for", "10m", "--mfa"]);
    assert_eq!(g["state"], "armed", "{g}");
    assert!(
        !stdout(&sb.run(&["id", "carol"])).contains("(sudo)"),
        "armed: no membership yet"
    );

    let jitctl = artifacts().jitctl;
    let as_carol = |input: &str| {
        sb.run_full(
            &[
                "setpriv",
                &format!("--reuid={carol}"),
                &format!("--regid={carol}"),
                "--clear-groups",
                path_str(&jitctl),
                "activate",
            ],
            Some(input.as_bytes()),
            Duration::from_secs(10),
        )
    };
    let now_code = || {
        stdout(&sb.run(&["oathtool", "--totp", "-b", &secret]))
            .trim()
            .to_string()
    };
    let good = now_code();
    let wrong = if good == "000000" {
        "000001\n"
    } else {
        "000000\n"
    };
    let o = as_carol(wrong);
    assert_eq!(code(&o), 1, "wrong code refused: {}", show(&o));
    assert!(
        stderr(&o).contains("wrong verification code"),
        "{}",
        show(&o)
    );
    let o = as_carol(&format!("{good}\n"));
    assert_eq!(code(&o), 0, "right code accepted: {}", show(&o));
    assert!(
        stdout(&sb.run(&["id", "carol"])).contains("(sudo)"),
        "live after activation"
    );

    // A second armed grant cannot reuse the code just accepted.
    let g2 = sb.grant_json(&["carol", "--group", "adm", "--for", "10m", "--mfa"]);
    let o = as_carol(&format!("{good}\n"));
    assert_eq!(code(&o), 1, "replayed code refused: {}", show(&o));
    assert!(stderr(&o).contains("already used"), "{}", show(&o));
    let events: Vec<String> = sb.audit_events(g["id"].as_str().unwrap());
    assert!(events.iter().any(|e| e == "grant.activated"), "{events:?}");
    let show2 = sb.jitctl(&["--json", "grant", "show", g2["id"].as_str().unwrap()]);
    let v2: Value = serde_json::from_slice(&show2.stdout).unwrap();
    assert_eq!(v2["state"], "armed", "still armed after the replay: {v2}");
    sb.assert_local_unaffected();
}

/// Snapshot format 1.4 through glibc: a grant added after the last whole write lives in the
/// delta files, an identity can have grants in both the base and the delta, and every client
/// sees each name once with the memberships of both (`getent passwd`, `getent group` merged
/// with /etc/group, `id`, lookups by id); a revocation then writes whole files and the revoked
/// account is gone from every view at once.
#[test]
fn grants_in_the_base_and_the_delta_are_seen_once_through_glibc() {
    let sb = Sandbox::new();
    sb.start_jitd();
    let bob1 = sb.grant(&["bob", "--account", "--group", "sudo", "--for", "1h"]);
    let zed = sb.grant(&["zed", "--account", "--for", "1h"]);
    // An end writes whole files: bob's first grant moves into the base.
    let o = sb.jitctl(&["grant", "revoke", &zed]);
    assert_eq!(code(&o), 0, "{}", show(&o));
    assert!(
        !sb.host_path("/run/jitd/snapshot.delta").exists(),
        "nothing outside the base after a whole write"
    );
    // Added now: alice, and a second grant of bob's (in the delta, bob also in the base).
    let alice = sb.grant(&["alice", "--account", "--group", "sudo", "--for", "1h"]);
    let bob2 = sb.grant(&["bob", "--account", "--for", "2h"]);
    let delta = std::fs::read(sb.host_path("/run/jitd/snapshot.delta")).expect("a delta");
    let d = jit_core::snapshot::Snapshot::parse(&delta).unwrap();
    assert!(d.is_delta() && d.has_account_record("bob") && d.has_account_record("alice"));
    let o = sb.run(&["getent", "passwd"]);
    let listing = stdout(&o);
    let mut names: Vec<&str> = listing
        .lines()
        .filter_map(|l| l.split(':').next())
        .filter(|n| ["alice", "bob", "zed"].contains(n))
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["alice", "bob"], "each live name once: {}", show(&o));
    for (group, want) in [
        ("sudo", vec!["alice", "bob"]),
        ("jit-users", vec!["alice", "bob"]),
    ] {
        let o = sb.run(&["getent", "group", group]);
        let mut mem = group_members(&stdout(&o));
        mem.retain(|m| ["alice", "bob", "zed"].contains(&m.as_str()));
        let n = mem.len();
        mem.sort();
        mem.dedup();
        assert_eq!(
            mem.len(),
            n,
            "a member listed twice in {group}: {}",
            show(&o)
        );
        assert_eq!(mem, want, "{group}: {}", show(&o));
    }
    let o = sb.run(&["id", "alice"]);
    let ids = parse_id(&stdout(&o));
    assert_eq!(
        ids.get("sudo"),
        Some(&sb.ids.sudo_gid),
        "id alice: {}",
        show(&o)
    );
    let uid = ids
        .get("alice")
        .copied()
        .unwrap_or_else(|| panic!("{}", show(&o)));
    let o = sb.run(&["getent", "passwd", &uid.to_string()]);
    assert!(stdout(&o).starts_with("alice:"), "by uid: {}", show(&o));
    // bob keeps sudo from his first grant (base) while his second (delta) adds nothing more.
    let o = sb.run(&["id", "bob"]);
    assert!(
        parse_id(&stdout(&o)).contains_key("sudo"),
        "id bob: {}",
        show(&o)
    );
    // Revoking alice (only in the delta) writes whole files: gone everywhere at once.
    let o = sb.jitctl(&["grant", "revoke", &alice]);
    assert_eq!(code(&o), 0, "{}", show(&o));
    let o = sb.run(&["getent", "passwd", "alice"]);
    assert_eq!(code(&o), GETENT_NOT_FOUND, "{}", show(&o));
    let o = sb.run(&["getent", "group", "sudo"]);
    assert!(
        !group_members(&stdout(&o)).contains(&"alice".into()),
        "{}",
        show(&o)
    );
    let o = sb.run(&["getent", "passwd", &uid.to_string()]);
    assert_eq!(code(&o), GETENT_NOT_FOUND, "{}", show(&o));
    // bob stays, with both grants.
    let o = sb.run(&["getent", "passwd", "bob"]);
    assert!(stdout(&o).starts_with("bob:"), "{}", show(&o));
    let list = sb.grant_list();
    for id in [&bob1, &bob2] {
        assert!(list
            .iter()
            .any(|g| g["id"] == id.as_str() && g["state"] == "live"));
    }
}
