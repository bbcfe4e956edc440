//! Daemon-level faults: F10 (kill -9 of jitd at random moments while grants are added: restart
//! works, state is old-or-new, no temp files, every acknowledged grant survives) and F14 (nscd
//! running in the sandbox: jitd invalidates it on every change, and a control run with
//! `nscd = "off"` shows the stale answer, proving the test can fail).
//!
//! Ids in comments and test names (F10, F14, …) are rows of docs/threat-model.md.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::Value;

use jit_tests::sandbox::group_members;
use jit_tests::{code, procs, show, stdout, Sandbox, SandboxOptions};

/// xorshift64*: enough randomness for kill timing without a dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Files under /var/lib/jitd that look like leftovers of an interrupted write.
fn temp_files(sb: &Sandbox) -> Vec<String> {
    let out = sb.sh_ok("cd /var/lib/jitd && find . -mindepth 1");
    out.lines()
        .map(str::to_string)
        .filter(|p| {
            let base = p.rsplit('/').next().unwrap_or("").to_lowercase();
            base.contains("tmp")
                || base.contains("temp")
                || base.ends_with(".new")
                || base.ends_with(".part")
                || base.ends_with('~')
                || base.contains(".partial")
        })
        .collect()
}

fn listed_ids(sb: &Sandbox) -> BTreeSet<String> {
    sb.grant_list()
        .iter()
        .filter_map(|g| g.get("id").and_then(Value::as_str).map(str::to_string))
        .collect()
}

#[test]
fn f10_kill9_during_grant_adds() {
    let sb = Sandbox::new();
    sb.start_jitd();
    let seed = std::process::id() as u64 ^ (jit_tests::now() as u64).rotate_left(17) | 1;
    println!("F10: seed {seed}");
    let mut rng = Rng(seed);
    let mut acked: Vec<(String, String)> = Vec::new(); // (user, id)
    let mut unknown: Vec<String> = Vec::new(); // users whose add was interrupted
    let mut kills = 0;
    let mut restart_times = Vec::new();
    for i in 0..50 {
        let user = format!("u{i:02}");
        let kill = rng.below(3) == 0;
        let delay = Duration::from_micros(rng.below(30_000));
        let out = std::thread::scope(|s| {
            let h = s.spawn(|| sb.jitctl(&["grant", "add", &user, "--account", "--for", "1h"]));
            if kill {
                std::thread::sleep(delay);
                sb.kill_jitd();
            }
            h.join().unwrap()
        });
        match code(&out) {
            0 => acked.push((user.clone(), stdout(&out).trim().to_string())),
            _ if kill => unknown.push(user.clone()),
            _ => panic!("grant add {user} failed without a kill: {}", show(&out)),
        }
        if kill {
            kills += 1;
            let t = Instant::now();
            sb.start_jitd();
            restart_times.push(t.elapsed().as_secs_f64());
            let tmp = temp_files(&sb);
            assert!(
                tmp.is_empty(),
                "temp files left in /var/lib/jitd after restart #{kills}: {tmp:?}"
            );
            let ids = listed_ids(&sb);
            for (u, id) in &acked {
                assert!(
                    ids.contains(id),
                    "acknowledged grant {id} for {u} lost after kill -9 #{kills}\n{}",
                    sb.jitd_log()
                );
            }
        }
    }
    // Final clean restart too.
    sb.stop_jitd();
    sb.start_jitd();
    let ids = listed_ids(&sb);
    let list = sb.grant_list();
    for (u, id) in &acked {
        assert!(ids.contains(id), "acknowledged grant {id} ({u}) lost");
        let o = sb.run(&["getent", "passwd", u]);
        assert_eq!(
            code(&o),
            0,
            "acknowledged account {u} not visible: {}",
            show(&o)
        );
    }
    // Interrupted adds: old or new, never half. If present, the account must resolve.
    let mut present = 0;
    for u in &unknown {
        let in_list = list
            .iter()
            .filter(|g| g.get("user").and_then(Value::as_str) == Some(u))
            .count();
        assert!(
            in_list <= 1,
            "interrupted add of {u} recorded {in_list} times"
        );
        let o = sb.run(&["getent", "passwd", u]);
        assert_eq!(
            in_list == 1,
            code(&o) == 0,
            "{u}: grant list and NSS disagree after an interrupted add: {}",
            show(&o)
        );
        present += in_list;
    }
    assert!(
        temp_files(&sb).is_empty(),
        "temp files: {:?}",
        temp_files(&sb)
    );
    // uids stay unique.
    let o = sb.sh_ok("getent passwd | cut -d: -f3 | sort | uniq -d");
    assert!(o.trim().is_empty(), "duplicate uids after crashes: {o}");
    restart_times.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!(
        "F10: 50 adds, {kills} kill -9, {} acknowledged, {} interrupted ({present} of them \
         present after restart); restart-to-ready median {:.3} s, max {:.3} s",
        acked.len(),
        unknown.len(),
        restart_times
            .get(restart_times.len() / 2)
            .copied()
            .unwrap_or(0.0),
        restart_times.last().copied().unwrap_or(0.0)
    );
    assert!(kills > 0, "the random schedule made no kill (seed {seed})");
    sb.assert_local_unaffected();
}

/// nscd caching passwd and group (what the shipped nscd.conf forbids, and what `jitd
/// --check-config` refuses): jitd still flushes it at every change.
fn start_nscd(sb: &Sandbox) -> i32 {
    sb.set_nscd_identity_cache(true);
    sb.start_nscd()
}

fn sudo_members(sb: &Sandbox) -> Vec<String> {
    let o = sb.run(&["getent", "group", "sudo"]);
    assert_eq!(code(&o), 0, "{}", show(&o));
    group_members(&stdout(&o))
}

fn carol_in_sudo(sb: &Sandbox) -> bool {
    sudo_members(sb).contains(&"carol".to_string())
}

#[test]
fn f14_nscd_is_invalidated_on_every_change() {
    // Control: jitd told not to touch nscd → nscd serves stale answers. If it does not, nscd is
    // not caching in this sandbox and the real run below would prove nothing.
    let control = Sandbox::with(SandboxOptions {
        nscd: "off".into(),
        ..SandboxOptions::default()
    });
    let nscd_pid = start_nscd(&control);
    control.start_jitd();
    assert!(!carol_in_sudo(&control), "precondition");
    let id = control.grant(&["carol", "--group", "sudo", "--for", "1h"]);
    let stale_on_grant = !carol_in_sudo(&control);
    let o = control.run(&["nscd", "-i", "group"]);
    assert_eq!(code(&o), 0, "{}", show(&o));
    assert!(
        carol_in_sudo(&control),
        "after a manual invalidation carol shows in sudo"
    );
    let o = control.jitctl(&["grant", "revoke", &id]);
    assert_eq!(code(&o), 0, "{}", show(&o));
    let stale_on_revoke = carol_in_sudo(&control);
    let o = control.run(&["getent", "-s", "files [SUCCESS=merge] jit", "group", "sudo"]);
    println!(
        "F14 control (nscd = \"off\"): stale after grant {stale_on_grant}, stale after revoke \
         {stale_on_revoke}; without nscd: {}",
        stdout(&o).trim()
    );
    assert!(
        stale_on_grant && stale_on_revoke,
        "control run: nscd did not serve a stale answer, so this test could not fail"
    );
    assert!(procs::is_alive(nscd_pid));
    drop(control);

    // Real run: nscd = "auto".
    let sb = Sandbox::new();
    start_nscd(&sb);
    sb.start_jitd();
    assert!(!carol_in_sudo(&sb), "precondition");
    let o = sb.run(&["id", "carol"]);
    assert!(!stdout(&o).contains("(sudo)"), "{}", show(&o));
    let id = sb.grant(&["carol", "--group", "sudo", "--for", "1h"]);
    assert!(
        carol_in_sudo(&sb),
        "nscd still serves sudo without carol right after `jitctl grant add` returned: {:?}\n{}",
        sudo_members(&sb),
        sb.jitd_log()
    );
    let o = sb.run(&["id", "carol"]);
    assert!(
        stdout(&o).contains("(sudo)"),
        "id carol through nscd: {}",
        show(&o)
    );
    let t = Instant::now();
    let o = sb.jitctl(&["grant", "revoke", &id]);
    assert_eq!(code(&o), 0, "{}", show(&o));
    let revoke_took = t.elapsed();
    assert!(
        !carol_in_sudo(&sb),
        "nscd still lists carol in sudo right after `jitctl grant revoke` returned: {:?}\n{}",
        sudo_members(&sb),
        sb.jitd_log()
    );
    let o = sb.run(&["id", "carol"]);
    assert!(
        !stdout(&o).contains("(sudo)"),
        "id carol through nscd after revoke: {}",
        show(&o)
    );
    // An ephemeral account through nscd too: passwd cache.
    assert_eq!(code(&sb.run(&["getent", "passwd", "alice"])), 2);
    let id = sb.grant(&["alice", "--account", "--for", "1h"]);
    let o = sb.run(&["getent", "passwd", "alice"]);
    assert_eq!(
        code(&o),
        0,
        "alice through nscd after grant (negative entry invalidated?): {}",
        show(&o)
    );
    let o = sb.jitctl(&["grant", "revoke", &id]);
    assert_eq!(code(&o), 0, "{}", show(&o));
    let o = sb.run(&["getent", "passwd", "alice"]);
    assert_eq!(code(&o), 2, "alice through nscd after revoke: {}", show(&o));
    println!(
        "F14: revoke with nscd invalidation took {:.3} s",
        revoke_took.as_secs_f64()
    );
    sb.assert_local_unaffected();
}
