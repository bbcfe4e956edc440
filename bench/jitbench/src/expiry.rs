//! The mass-expiry benchmark's two halves (bench/expiry): seeding jitd's state with a storm of
//! grants that end in the same second plus one that ends a second later, and running one
//! `sleep` per grant under its uid while timing, to the millisecond, when each one dies.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use jit_core::UnixTime;
use jitd::state::{State, StateStore};

/// First uid of the storm accounts (the same range as the other bench data).
const UID_BASE: u32 = 70_000;

fn grant(i: usize, nb: UnixTime, na: UnixTime) -> Result<(String, jit_proto::Grant), String> {
    let name = format!("jx{i:05}");
    let g = serde_json::from_value(serde_json::json!({
        "id": format!("g-ex{i:010x}"), "user": name, "state": "live",
        "not_before": nb, "not_after": na, "created_at": nb, "created_by": "root",
        "account": true, "uid": UID_BASE + i as u32, "groups": [],
        "ssh_keys": [], "reason": "bench", "ticket": "", "requested_by": "",
        "went_live_at": nb,
    }))
    .map_err(|e| format!("grant JSON no longer matches jit_proto::Grant: {e}"))?;
    Ok((name, g))
}

/// `seed-expiry N STATE_DIR AT [HOME_ROOT]`: N live account grants ending at AT (uids
/// 70000..), and one more (uid 70000+N) ending at AT+1, written through jitd's StateStore;
/// with HOME_ROOT, each account's home made as jitd makes it when a grant goes live (from
/// /etc/skel), so the storm's teardown removes N real homes.
pub fn seed(n: usize, dir: &Path, at: UnixTime, homes: Option<&Path>) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut st = State::default();
    for i in 0..=n {
        let na = if i == n { at + 1 } else { at };
        let (name, g) = grant(i, at - 3600, na)?;
        if let Some(root) = homes {
            let uid = UID_BASE + i as u32;
            jitd::home::create(root, &name, uid, uid, Path::new("/etc/skel"))
                .map_err(|e| format!("home of {name}: {e}"))?;
        }
        st.uid_ledger.insert(name.into(), UID_BASE + i as u32);
        st.grants.insert(g.id.clone(), g);
    }
    StateStore::new(dir)
        .save(&mut st)
        .map_err(|e| e.to_string())?;
    println!("seeded={} at={at}", n + 1);
    Ok(())
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// `storm N AT`: one `sleep` under each of the N+1 uids of `seed`, then waits for them (they
/// are this process's children, so each exit is seen at once) and prints when the first and the
/// last of the storm died after AT and when the late one died after AT+1. Bounded: whatever is
/// still alive 30 s after AT+1 is killed and reported.
pub fn storm(n: usize, at: UnixTime) -> Result<(), String> {
    let mut kids: Vec<Child> = Vec::with_capacity(n + 1);
    for i in 0..=n {
        let uid = UID_BASE + i as u32;
        let c = Command::new("sleep")
            .arg("600")
            .uid(uid)
            .gid(uid)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        match c {
            Ok(c) => kids.push(c),
            Err(e) => {
                for k in &mut kids {
                    let _ = k.kill();
                    let _ = k.wait();
                }
                return Err(format!("spawning sleeper {i}: {e}"));
            }
        }
    }
    let ready = unix_now();
    println!(
        "spawned={} ready_before_at_s={:.3}",
        n + 1,
        at as f64 - ready
    );
    if ready > at as f64 - 1.0 {
        eprintln!(
            "jitbench: the sleepers were ready only {:.3} s before AT",
            at as f64 - ready
        );
    }
    let deadline = Instant::now() + Duration::from_secs_f64((at as f64 + 31.0 - ready).max(1.0));
    let index: std::collections::HashMap<i32, usize> = kids
        .iter()
        .enumerate()
        .map(|(i, k)| (k.id() as i32, i))
        .collect();
    let mut gone: Vec<Option<f64>> = vec![None; kids.len()];
    let mut left = kids.len();
    // One waitpid(-1) per exit: polling each child in turn cost thousands of syscalls every few
    // milliseconds, CPU taken from the jitd being measured.
    while left > 0 && Instant::now() < deadline {
        let mut status = 0;
        // SAFETY: waitpid with a valid status pointer; WNOHANG never blocks.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if pid > 0 {
            if let Some(g) = index.get(&pid).and_then(|&i| gone.get_mut(i)) {
                if g.is_none() {
                    *g = Some(unix_now());
                    left -= 1;
                }
            }
            continue;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let mut survivors = 0;
    for (k, g) in kids.iter_mut().zip(&gone) {
        if g.is_none() {
            survivors += 1;
            let _ = k.kill();
            let _ = k.wait();
        }
    }
    let storm: Vec<f64> = gone[..n].iter().flatten().map(|t| t - at as f64).collect();
    let first = storm.iter().copied().fold(f64::INFINITY, f64::min);
    let last = storm.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let late = gone[n].map_or(f64::NAN, |t| t - (at + 1) as f64);
    println!(
        "storm_first_gone_s={first:.3} storm_all_gone_s={last:.3} late_gone_s={late:.3} survivors={survivors}"
    );
    Ok(())
}
