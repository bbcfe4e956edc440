//! Load tests of `libnss_jit.so.2` with C callers compiled at test time (tests/fixtures):
//! L1 concurrent lookups and enumeration while the snapshot is replaced 10×/s, B9's "file
//! truncated while mapped" (in-place truncation during lookups, no SIGBUS), L2 fork storm and
//! fd hygiene, L3 10 000 accounts and a 5 000-member group (ERANGE negotiation).
//!
//! Ids in comments and test names (L1, B9, …) are rows of docs/threat-model.md.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use jit_tests::sandbox::{group_members, path_str};
use jit_tests::snap::{jit_users_gid, live_alice_in_sudo, GroupRef, SnapBuilder};
use jit_tests::{code, cprog, now, show, stdout, Sandbox, GETENT_NOT_FOUND};

struct Versions {
    a: Vec<u8>,
    b: Vec<u8>,
    spec: String,
}

/// Two snapshot versions that answer differently for every JIT key, and the spec of allowed
/// answers: version A, version B and (with `broken_ok`) "no JIT answer at all".
fn two_versions(sb: &Sandbox, broken_ok: bool) -> Versions {
    let ids = sb.ids;
    let t = now();
    let (nb, na) = (t - 60, t + 3600);
    let ua = ids.jit_min + 100;
    let ub = ids.jit_min + 101;
    let uc = ids.jit_min + 102;
    let ju = jit_users_gid(&ids);
    let sudo = GroupRef::local("sudo", ids.sudo_gid);
    let sg = ids.sudo_gid;
    let (c, dv) = (ids.carol, ids.devs);

    let mut a = SnapBuilder::new(ids);
    a.account(
        "alice",
        ua,
        std::slice::from_ref(&sudo),
        nb,
        na,
        Some("alice version A"),
    );
    a.account("bob", ub, &[], nb, na, Some("bob A"));
    a.group_grant("carol", std::slice::from_ref(&sudo), nb, na);
    let mut b = SnapBuilder::new(ids);
    b.account("alice", ua, &[], nb, na, Some("alice version B"));
    b.account("carl", uc, &[sudo], nb, na, Some("carl B"));

    let pw = |n: &str, u: u32, g: &str| format!("{n}:*:{u}:{u}:{g}:/home/{n}:/bin/bash");
    let alice_a = pw("alice", ua, "alice version A");
    let alice_b = pw("alice", ua, "alice version B");
    let bob = pw("bob", ub, "bob A");
    let carl = pw("carl", uc, "carl B");
    let root = stdout(&sb.run(&["getent", "passwd", "root"]))
        .trim()
        .to_string();
    let carol = format!("carol:x:{c}:{c}:Carol Local:/home/carol:/bin/bash");
    let x = |v: &[&str]| {
        let mut v: Vec<String> = v.iter().map(|s| s.to_string()).collect();
        if broken_ok {
            v.push("-".into());
        }
        v.join("\t")
    };

    let mut s = String::new();
    writeln!(s, "jitmin\t{}\njitmax\t{}", ids.jit_min, ids.jit_max).unwrap();
    writeln!(s, "snap\t/run/jitd/snapshot").unwrap();
    writeln!(s, "pw\talice\t{}", x(&[&alice_a, &alice_b])).unwrap();
    writeln!(s, "pu\t{ua}\t{}", x(&[&alice_a, &alice_b])).unwrap();
    writeln!(s, "pw\tbob\t{bob}\t-").unwrap();
    writeln!(s, "pu\t{ub}\t{bob}\t-").unwrap();
    writeln!(s, "pw\tcarl\t-\t{carl}").unwrap();
    writeln!(s, "pw\tcarol\t{carol}").unwrap();
    writeln!(s, "pu\t{c}\t{carol}").unwrap();
    writeln!(s, "pw\troot\t{root}").unwrap();
    writeln!(s, "pw\tnosuchuser\t-").unwrap();
    let sudo_a = format!("sudo:{sg}:alice,carol,dave");
    let sudo_b = format!("sudo:{sg}:carl,dave");
    let sudo_local = format!("sudo:{sg}:dave");
    let sudo_allowed = if broken_ok {
        format!("{sudo_a}\t{sudo_b}\t{sudo_local}")
    } else {
        format!("{sudo_a}\t{sudo_b}")
    };
    writeln!(s, "gr\tsudo\t{sudo_allowed}").unwrap();
    writeln!(s, "gg\t{sg}\t{sudo_allowed}").unwrap();
    let ju_a = format!("jit-users:{ju}:alice,bob");
    let ju_b = format!("jit-users:{ju}:alice,carl");
    writeln!(s, "gr\tjit-users\t{}", x(&[&ju_a, &ju_b])).unwrap();
    writeln!(s, "gg\t{ju}\t{}", x(&[&ju_a, &ju_b])).unwrap();
    writeln!(s, "gr\talice\t{}", x(&[&format!("alice:{ua}:")])).unwrap();
    writeln!(s, "gr\tdevs\tdevs:{dv}:carol").unwrap();
    writeln!(s, "gr\tnosuchgroup\t-").unwrap();
    let gl_alice_b = format!("{ju},{ua}");
    let mut gl_alice = vec![format!("{sg},{ju},{ua}"), gl_alice_b];
    if broken_ok {
        gl_alice.push(format!("{ua}"));
    }
    writeln!(s, "gl\talice\t{ua}\t{}", gl_alice.join("\t")).unwrap();
    writeln!(s, "gl\tcarol\t{c}\t{sg},{c},{dv}\t{c},{dv}").unwrap();
    writeln!(s, "gl\tbob\t{ub}\t{ju},{ub}\t{ub}").unwrap();
    for l in [&alice_a, &alice_b, &bob, &carl] {
        writeln!(s, "ent_pw\t{l}").unwrap();
    }
    for l in [
        ju_a.clone(),
        ju_b.clone(),
        format!("alice:{ua}:"),
        format!("bob:{ub}:"),
        format!("carl:{uc}:"),
    ] {
        writeln!(s, "ent_gr\t{l}").unwrap();
    }
    Versions {
        a: a.bytes(),
        b: b.bytes(),
        spec: s,
    }
}

/// Runs nss_stress; returns (stdout, description for messages, exit code).
fn run_stress(sb: &Sandbox, v: &Versions, extra: &str) -> (String, String, i32) {
    let prog = cprog::program("nss_stress");
    let pa = sb.scratch("snapA");
    let pb = sb.scratch("snapB");
    std::fs::write(&pa, &v.a).unwrap();
    std::fs::write(&pb, &v.b).unwrap();
    let spec = format!(
        "{}ver\t{}\nver\t{}\n{extra}",
        v.spec,
        pa.display(),
        pb.display()
    );
    let sp = sb.scratch("spec");
    std::fs::write(&sp, spec).unwrap();
    let o = sb.run_full(
        &[path_str(&prog), path_str(&sp)],
        None,
        Duration::from_secs(120),
    );
    println!("{}", stdout(&o));
    (stdout(&o), show(&o), code(&o))
}

/// L1: 16 threads of mixed lookups plus getpwent/getgrent passes while the snapshot is
/// atomically replaced 10 times a second: no crash, every answer from one of the two versions,
/// no duplicate in an enumeration pass, no fd left behind.
#[test]
fn l1_concurrent_lookups_during_rewrites() {
    let sb = Sandbox::new();
    let v = two_versions(&sb, false);
    sb.write_snapshot_bytes(&v.a);
    let (out, msg, rc) = run_stress(
        &sb,
        &v,
        "seconds\t6\nthreads\t16\nenum\t1\nrewrite\trename\n",
    );
    assert_eq!(rc, 0, "L1 concurrent lookups failed: {msg}");
    // Both versions must have been observed for alice, or the rewrites were never seen.
    let seen_line = out
        .lines()
        .find(|l| l.starts_with("seen\t0\talice\t"))
        .unwrap_or_else(|| panic!("no seen line for alice: {out}"));
    let counts: Vec<u64> = seen_line
        .split('\t')
        .skip(3)
        .map(|n| n.parse().unwrap())
        .collect();
    assert!(
        counts.len() >= 2 && counts[0] > 0 && counts[1] > 0,
        "both snapshot versions must be observed during the rewrites (stale data?): {seen_line}"
    );
    sb.assert_local_unaffected();
}

/// B9 "truncated while mapped": the live snapshot is shrunk in place every few ms (then a good
/// version is renamed back) while 8 threads look up: answers are a version or "no JIT", never a
/// crash (SIGBUS) and never something read past the new end of the file.
#[test]
fn b9_truncate_in_place_during_lookups() {
    let sb = Sandbox::new();
    let v = two_versions(&sb, true);
    sb.write_snapshot_bytes(&v.a);
    let (_, msg, rc) = run_stress(
        &sb,
        &v,
        "seconds\t4\nthreads\t8\nenum\t1\nrewrite\ttruncate\n",
    );
    assert_eq!(
        rc, 0,
        "lookups while the snapshot was truncated in place crashed or answered wrongly: {msg}"
    );
    sb.assert_local_unaffected();
}

/// B9 variant: the snapshot is overwritten in place (what `cp other /run/jitd/snapshot` does)
/// while 8 threads look up: answers are a version or "no JIT"; never a torn record mixing the
/// two files (the checksum exists to catch exactly that), never a crash.
#[test]
fn b9_overwrite_in_place_during_lookups() {
    let sb = Sandbox::new();
    let v = two_versions(&sb, true);
    sb.write_snapshot_bytes(&v.a);
    let (_, msg, rc) = run_stress(
        &sb,
        &v,
        "seconds\t4\nthreads\t8\nenum\t1\nrewrite\tinplace\n",
    );
    assert_eq!(
        rc, 0,
        "lookups while the snapshot was overwritten in place crashed or returned torn records: {msg}"
    );
    sb.assert_local_unaffected();
}

/// L2: 1 000 fork children, each looking up after the parent did (with two threads looking up
/// during the forks), closefrom(3) in some, exec checks for inherited fds in others.
#[test]
fn l2_fork_storm() {
    let sb = Sandbox::new();
    let ids = sb.ids;
    let (b, ua) = live_alice_in_sudo(ids);
    sb.write_snapshot(&b.data());
    let prog = cprog::program("fork_storm");
    let start = Instant::now();
    let o = sb.run_full(
        &[
            path_str(&prog),
            "1000",
            "alice",
            &ua.to_string(),
            "sudo",
            "carol",
        ],
        None,
        Duration::from_secs(120),
    );
    println!(
        "L2: {} in {:.2} s",
        stdout(&o).trim(),
        start.elapsed().as_secs_f64()
    );
    assert_eq!(code(&o), 0, "L2 fork storm failed: {}", show(&o));
    sb.assert_local_unaffected();
}

/// L3: 10 000 accounts and a group with 5 000 members.
#[test]
fn l3_big_snapshot() {
    let sb = Sandbox::new();
    let ids = sb.ids;
    let t = now();
    // A uid region of its own per sandbox, far above every sandbox's 1000-uid block.
    let big_base = 20_000_000 + (ids.base - 200_000) * 10;
    let big = GroupRef::jit("big", ids.jit_min + 2);
    let mut b = SnapBuilder::new(ids);
    for i in 0..10_000u32 {
        let groups = if i < 5000 { vec![big.clone()] } else { vec![] };
        b.account(
            &format!("user{i:05}"),
            big_base + i,
            &groups,
            t - 60,
            t + 3600,
            None,
        );
    }
    let bytes = b.bytes();
    println!("L3: snapshot of 10 000 accounts is {} bytes", bytes.len());
    sb.write_snapshot_bytes(&bytes);

    let start = Instant::now();
    let o = sb.run(&["getent", "group", "big"]);
    let el = start.elapsed();
    let m = group_members(&stdout(&o));
    assert!(
        code(&o) == 0 && m.len() == 5000 && m.iter().any(|x| x == "user04999"),
        "getent group big must return 5000 members (getent grows its buffer on ERANGE): \
         exit {} members {}",
        code(&o),
        m.len()
    );
    println!(
        "L3: getent group big: 5000 members in {:.3} s",
        el.as_secs_f64()
    );
    let o = sb.run(&["getent", "passwd", "user09999"]);
    assert!(
        code(&o) == 0 && stdout(&o).starts_with(&format!("user09999:*:{}:", big_base + 9999)),
        "{}",
        show(&o)
    );
    let o = sb.run(&["getent", "passwd", &(big_base + 4321).to_string()]);
    assert!(
        code(&o) == 0 && stdout(&o).starts_with("user04321:"),
        "{}",
        show(&o)
    );
    let o = sb.run(&["getent", "passwd", "user10000"]);
    assert_eq!(code(&o), GETENT_NOT_FOUND, "{}", show(&o));
    let o = sb.run(&["id", "user04999"]);
    assert!(
        code(&o) == 0 && stdout(&o).contains("(big)"),
        "{}",
        show(&o)
    );
    let o = sb.run(&["id", "user05000"]);
    assert!(
        code(&o) == 0 && !stdout(&o).contains("(big)"),
        "{}",
        show(&o)
    );

    let start = Instant::now();
    let o = sb.run(&["getent", "passwd"]);
    let n = stdout(&o)
        .lines()
        .filter(|l| l.starts_with("user") && l.contains(":*:"))
        .count();
    assert!(
        code(&o) == 0 && n == 10_000,
        "enumeration must list the 10 000 accounts once each, got {n}"
    );
    println!(
        "L3: getent passwd enumeration of 10 000 accounts in {:.3} s",
        start.elapsed().as_secs_f64()
    );

    let prog = cprog::program("erange");
    let o = sb.run_full(
        &[path_str(&prog), "user09999", "big", "5000"],
        None,
        Duration::from_secs(120),
    );
    println!("L3: {}", stdout(&o).trim());
    assert_eq!(code(&o), 0, "ERANGE negotiation: {}", show(&o));
    sb.assert_local_unaffected();
}
