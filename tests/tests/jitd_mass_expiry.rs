//! Mass expiry with real processes: many account grants ending together are torn down as one
//! batch (one /proc pass, group-committed audit records), and the batch must still end every
//! grantee's process and audit every grant, each with its own expiry and teardown record.
//! Correctness only; the timing of a storm is measured by bench/expiry, not asserted here.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::time::Duration;

use serde_json::Value;

use jit_tests::procs;
use jit_tests::{code, poll, show, stdout, Sandbox};

/// Grants in the batch: enough that a per-grant shortcut (or a record lost from the batch)
/// shows, small enough for a shared test machine.
const GRANTS: usize = 24;

#[test]
fn batch_teardown_ends_every_process_and_audits_each_grant() {
    let sb = Sandbox::new();
    sb.start_jitd();
    let users: Vec<String> = (0..GRANTS).map(|i| format!("storm{i:02}")).collect();
    let mut ids = HashMap::new();
    for u in &users {
        // All end within a second or two of each other: one or two ticks tear them down.
        ids.insert(sb.grant(&[u, "--account", "--for", "12s"]), u.clone());
    }
    // Each grantee starts an escaped process (setsid: no session bookkeeping can find it),
    // through su and the real PAM stack.
    let script: String = users
        .iter()
        .map(|u| format!("su {u} -c 'setsid sleep 2411 </dev/null >/dev/null 2>&1 &' || exit 1\n"))
        .collect();
    let o = sb.sh(&script);
    assert_eq!(
        code(&o),
        0,
        "starting the grantees' processes: {}",
        show(&o)
    );
    let mut uids = HashMap::new();
    for u in &users {
        let o = sb.run(&["id", "-u", u]);
        assert_eq!(code(&o), 0, "id -u {u}: {}", show(&o));
        uids.insert(u.clone(), stdout(&o).trim().parse::<u32>().unwrap());
    }
    let pids = poll(
        "every grantee's sleep running",
        Duration::from_secs(10),
        || {
            let ps = procs::live_where(|p| {
                p.cmdline.contains("sleep 2411") && uids.values().any(|&u| u == p.uid)
            });
            (ps.len() == GRANTS).then_some(ps)
        },
    );

    // Every grant audited: its expiry and a complete teardown.
    let records = poll(
        "every grant's teardown audited",
        Duration::from_secs(40),
        || {
            let audit = sb.audit();
            let done: Vec<Value> = audit
                .iter()
                .filter(|e| {
                    e["grant"].as_str().is_some_and(|g| ids.contains_key(g))
                        && matches!(
                            e["event"].as_str(),
                            Some("grant.teardown" | "grant.teardown_incomplete")
                        )
                })
                .cloned()
                .collect();
            (done.len() >= GRANTS).then_some((audit, done))
        },
    );
    let (audit, done) = records;
    for (id, user) in &ids {
        let expired = audit
            .iter()
            .filter(|e| e["grant"] == id.as_str() && e["event"] == "grant.expired")
            .count();
        assert_eq!(expired, 1, "grant {id} ({user}) needs one expiry record");
        let t: Vec<&Value> = done.iter().filter(|e| e["grant"] == id.as_str()).collect();
        assert_eq!(
            t.len(),
            1,
            "grant {id} ({user}): one teardown record: {t:?}"
        );
        assert_eq!(
            t[0]["event"], "grant.teardown",
            "grant {id} ({user}) must be torn down completely: {}",
            t[0]
        );
        assert_eq!(t[0]["user"], user.as_str(), "{}", t[0]);
    }
    // The batch is visible in the records: one pass found the processes of several grants.
    let most = done
        .iter()
        .filter_map(|e| e["processes_found"].as_u64())
        .max()
        .unwrap_or(0);
    println!("mass expiry: largest batch ended {most} processes in one pass");
    assert!(
        most > 1,
        "grants ending together must be torn down together (one /proc pass): {done:?}"
    );
    // Every process is gone (the teardown records are written after the processes ended).
    let left: Vec<_> = pids.iter().filter(|p| procs::is_alive(p.pid)).collect();
    assert!(
        left.is_empty(),
        "processes survived the batch teardown: {}",
        procs::describe(&pids)
    );
    for (u, uid) in &uids {
        assert!(
            procs::live_of_uid(*uid).is_empty(),
            "{u} (uid {uid}) still has processes: {}",
            procs::describe(&procs::live_of_uid(*uid))
        );
    }
    sb.assert_local_unaffected();
}

/// Homes big enough that one teardown pass cannot remove them all within its time budget: the
/// processes of every grant go in the first pass, the homes and records over the next passes,
/// and still every grant is torn down exactly once, completely, its home gone.
#[test]
fn teardown_spread_over_several_passes_finishes_each_grant_once() {
    const HOMES: usize = 6;
    const FILES: usize = 20_000;
    let sb = Sandbox::new();
    sb.start_jitd();
    let users: Vec<String> = (0..HOMES).map(|i| format!("bighome{i}")).collect();
    let mut ids = HashMap::new();
    for u in &users {
        ids.insert(sb.grant(&[u, "--account", "--for", "25s"]), u.clone());
    }
    let script: String = users
        .iter()
        .map(|u| {
            format!(
                "mkdir /home/{u}/many && (cd /home/{u}/many && seq 1 {FILES} | xargs touch) || exit 1\n\
                 su {u} -c 'setsid sleep 2412 </dev/null >/dev/null 2>&1 &' || exit 1\n"
            )
        })
        .collect();
    let o = sb.sh(&script);
    assert_eq!(code(&o), 0, "filling the homes: {}", show(&o));
    let mut uids = HashMap::new();
    for u in &users {
        let o = sb.run(&["id", "-u", u]);
        assert_eq!(code(&o), 0, "id -u {u}: {}", show(&o));
        uids.insert(u.clone(), stdout(&o).trim().parse::<u32>().unwrap());
    }
    let done = poll(
        "every grant's teardown audited",
        Duration::from_secs(90),
        || {
            let done: Vec<Value> = sb
                .audit()
                .into_iter()
                .filter(|e| {
                    e["grant"].as_str().is_some_and(|g| ids.contains_key(g))
                        && matches!(
                            e["event"].as_str(),
                            Some("grant.teardown" | "grant.teardown_incomplete")
                        )
                })
                .collect();
            (done.len() >= HOMES).then_some(done)
        },
    );
    // A pass that left work for the next must not record a grant twice.
    std::thread::sleep(Duration::from_secs(2));
    let audit = sb.audit();
    for (id, user) in &ids {
        let t: Vec<&Value> = audit
            .iter()
            .filter(|e| {
                e["grant"] == id.as_str()
                    && matches!(
                        e["event"].as_str(),
                        Some("grant.teardown" | "grant.teardown_incomplete")
                    )
            })
            .collect();
        assert_eq!(
            t.len(),
            1,
            "grant {id} ({user}): one teardown record: {t:?}"
        );
        assert_eq!(t[0]["event"], "grant.teardown", "{}", t[0]);
        assert_eq!(t[0]["home"], "removed", "{}", t[0]);
        let o = sb.sh(&format!("test ! -e /home/{user}"));
        assert_eq!(code(&o), 0, "{user}'s home is still there: {}", show(&o));
    }
    assert!(done.len() >= HOMES);
    for (u, uid) in &uids {
        assert!(
            procs::live_of_uid(*uid).is_empty(),
            "{u} (uid {uid}) still has processes: {}",
            procs::describe(&procs::live_of_uid(*uid))
        );
    }
    sb.assert_local_unaffected();
}
