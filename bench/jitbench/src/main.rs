//! jitbench: the Rust half of `bench/run` (not part of the product).
//!
//! One population model, written out in every form a benchmark scenario needs, so that the
//! `files`, `files jit` and `sss` scenarios answer for exactly the same users and groups:
//!
//! ```text
//! jitbench gen N OUTDIR [JIT_USERS_GID]
//!     N live grants, each an ephemeral account jbNNNNN (uid 70000+i, private group gid = uid,
//!     member of jit-users 89999; every 4th one also of the local group jb-ops). The "probe"
//!     user jb at index N/2 is also in jb-db and jb-web, so getgrouplist returns 6 gids for it.
//!     Writes OUTDIR/passwd and OUTDIR/group (the same data as passwd(5)/group(5) lines, for
//!     `files` and for sssd's files provider), OUTDIR/local-groups (jb-ops, jb-db, jb-web with no
//!     members: what /etc/group holds when jit or sss adds the members), OUTDIR/group-sss (the
//!     group file for sssd's files provider: OUTDIR/group without the private groups, which
//!     sssd synthesizes itself with auto_private_groups; listed explicitly, each one collides
//!     with its same-named user in sssd's cache and 10 000 of them never finish loading) and
//!     OUTDIR/snapshot (the jit snapshot, built by jit_core and written by jitd's own durable
//!     writer, root 0644).
//!     Prints `hit=NAME hit_uid=UID`.
//! jitbench seed-state N STATE_DIR
//!     jitd's state.json holding the same N grants as live (went live already, so a starting jitd
//!     creates no homes), plus the uid ledger; written through jitd's StateStore.
//! jitbench rewrite N ROUNDS CONFIG SCRATCH_DIR
//!     Times, in-process, each step of what jitd does on every change at N grants: persist the
//!     state (StateStore::save), project it (snapshot_out::project), build the image
//!     (build_snapshot), build+write it atomically (snapshot_out::write: the root-only gates
//!     file and the public snapshot, two builds and two writes, next to the configured snapshot
//!     path with a `.bench` suffix), and what each reader pays once per new snapshot (Snapshot::parse: CRC and
//!     full validation). Prints `step_ms=median/max` pairs.
//! jitbench seed-expiry N STATE_DIR AT [HOME_ROOT]
//!     jitd's state.json holding N live account grants jx00000.. (uids 70000..) that all end at
//!     AT, and one more (uid 70000+N) that ends at AT+1 (bench/expiry); with HOME_ROOT, each
//!     account's home made from /etc/skel.
//! jitbench storm N AT
//!     One `sleep` under each uid of seed-expiry, as children; prints when the storm's first and
//!     last died after AT and when the late one died after AT+1 (killing and counting any left
//!     30 s later).
//! jitbench fsync-probe COUNT DIR
//!     COUNT appends of a 200-byte line to a fresh file in DIR, each followed by fdatasync
//!     (the durable append under every grant add, bench/add); prints `fdatasync_us=p50/p95/max`.
//! ```
//! Output is `key=value` lines for bench/run to parse.

mod expiry;
mod fsync;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use jit_core::snapshot::{build_snapshot, Snapshot};
use jit_core::types::{
    Account, GateGrant, GroupEntry, Member, SnapshotData, GATE_ACCOUNT, GROUP_KIND_JIT,
    GROUP_KIND_LOCAL, GROUP_KIND_PRIVATE,
};
use jit_core::UnixTime;
use jitd::config::Config;
use jitd::localdb::LocalDb;
use jitd::state::{State, StateStore};

/// First uid of the bench accounts; the range is 70000-89999 so 10 000 accounts fit below the
/// jit groups at its top (the default 70000-79999 holds only 9 997 accounts).
const UID_BASE: u32 = 70_000;
/// gid of jit-users: the top of the bench uid range (jitd puts its own groups there).
const GID_JIT_USERS: u32 = 89_999;
/// Local groups (they exist in /etc/group in every scenario) that grants add members to.
const LOCAL_GROUPS: [(&str, u32); 3] = [("jb-ops", 60_001), ("jb-db", 60_002), ("jb-web", 60_003)];

/// One grant of the model.
struct G {
    id: String,
    name: String,
    uid: u32,
    /// Local groups joined while live.
    groups: Vec<&'static str>,
    /// A sudo scope (the probe's only: bench/scale times a jit user's sudo decision).
    sudo: &'static [&'static str],
}

fn model(n: usize) -> Vec<G> {
    let probe = n / 2;
    (0..n)
        .map(|i| {
            let mut groups = Vec::new();
            if i % 4 == 0 || i == probe {
                groups.push(LOCAL_GROUPS[0].0);
            }
            if i == probe {
                groups.push(LOCAL_GROUPS[1].0);
                groups.push(LOCAL_GROUPS[2].0);
            }
            G {
                id: format!("g-be{i:010x}"),
                name: format!("jb{i:05}"),
                uid: UID_BASE + i as u32,
                groups,
                sudo: if i == probe { &["/usr/bin/id"] } else { &[] },
            }
        })
        .collect()
}

/// A live window wide enough for any run: started an hour ago, ends in a day.
fn window(now: UnixTime) -> (UnixTime, UnixTime) {
    (now - 3600, now + 86_400)
}

fn snapshot_data(gs: &[G], now: UnixTime, gid_jit_users: u32) -> SnapshotData {
    let (nb, na) = window(now);
    let member = |g: &G| Member {
        name: g.name.clone().into(),
        grant_id: g.id.clone().into(),
        not_before: nb,
        not_after: na,
    };
    let mut d = SnapshotData {
        generated_at: now,
        ..Default::default()
    };
    let mut jit_users = GroupEntry {
        name: "jit-users".into(),
        gid: gid_jit_users,
        kind: GROUP_KIND_JIT,
        not_before: i64::MIN,
        not_after: i64::MAX,
        members: vec![],
    };
    let mut locals: Vec<GroupEntry> = LOCAL_GROUPS
        .iter()
        .map(|(name, gid)| GroupEntry {
            name: (*name).into(),
            gid: *gid,
            kind: GROUP_KIND_LOCAL,
            not_before: i64::MIN,
            not_after: i64::MAX,
            members: vec![],
        })
        .collect();
    for g in gs {
        // Same shape as jitd's projection (jitd/src/snapshot_out.rs).
        d.accounts.push(Account {
            name: g.name.clone().into(),
            uid: g.uid,
            gid: g.uid,
            gecos: format!("jit grant {} (bench)", g.id).into(),
            home: format!("/var/lib/jitbench/home/{}", g.name).into(),
            shell: "/bin/bash".into(),
            grant_id: g.id.clone().into(),
            not_before: nb,
            not_after: na,
            flags: 0,
            ssh_keys: vec![],
        });
        d.groups.push(GroupEntry {
            name: g.name.clone().into(),
            gid: g.uid,
            kind: GROUP_KIND_PRIVATE,
            not_before: nb,
            not_after: na,
            members: vec![],
        });
        jit_users.members.push(member(g));
        for lg in &g.groups {
            if let Some(e) = locals.iter_mut().find(|e| e.name == *lg) {
                e.members.push(member(g));
            }
        }
        d.grants.push(GateGrant {
            id: g.id.clone().into(),
            user: g.name.clone().into(),
            uid: g.uid,
            not_before: nb,
            not_after: na,
            flags: GATE_ACCOUNT,
            ..Default::default()
        });
    }
    d.groups
        .extend(locals.into_iter().filter(|e| !e.members.is_empty()));
    if !jit_users.members.is_empty() {
        d.groups.push(jit_users);
    }
    d
}

/// The same data as passwd(5)/group(5) text. Private groups list no members (as in
/// /etc/group); membership of jit-users and the local groups is explicit. The third string is
/// the group file without the private groups (for sssd, see the module comment).
fn files_form(d: &SnapshotData) -> (String, String, String) {
    let mut passwd = String::new();
    for a in &d.accounts {
        passwd.push_str(&format!(
            "{}:x:{}:{}:{}:{}:{}\n",
            a.name, a.uid, a.gid, a.gecos, a.home, a.shell
        ));
    }
    let (mut group, mut group_sss) = (String::new(), String::new());
    for g in &d.groups {
        let members: Vec<&str> = g.members.iter().map(|m| m.name.as_str()).collect();
        let line = format!("{}:x:{}:{}\n", g.name, g.gid, members.join(","));
        group.push_str(&line);
        if g.kind != GROUP_KIND_PRIVATE {
            group_sss.push_str(&line);
        }
    }
    (passwd, group, group_sss)
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
}

fn gen(n: usize, out: &Path, gid_jit_users: u32) -> Result<(), String> {
    std::fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;
    let now = jit_core::time::now();
    let gs = model(n);
    let d = snapshot_data(&gs, now, gid_jit_users);
    let (passwd, group, group_sss) = files_form(&d);
    write(&out.join("passwd"), &passwd)?;
    write(&out.join("group"), &group)?;
    write(&out.join("group-sss"), &group_sss)?;
    let locals: String = LOCAL_GROUPS
        .iter()
        .map(|(name, gid)| format!("{name}:x:{gid}:\n"))
        .collect();
    write(&out.join("local-groups"), &locals)?;
    // jitd's own writer: temp file, root 0644, fsync, verify, rename, fsync dir.
    jitd::snapshot_out::write(&out.join("snapshot"), &out.join("gates"), d, 1)?;
    let probe = gs.get(n / 2).ok_or("N must be at least 1")?;
    println!("hit={} hit_uid={}", probe.name, probe.uid);
    Ok(())
}

fn state_for(gs: &[G], now: UnixTime) -> Result<State, String> {
    let (nb, na) = window(now);
    let mut st = State::default();
    for g in gs {
        // Built from JSON (not a struct literal) so fields jitd adds later with a serde default
        // do not break this tool; a field it cannot default fails loudly here.
        let grant: jit_proto::Grant = serde_json::from_value(serde_json::json!({
            "id": g.id, "user": g.name, "state": "live",
            "not_before": nb, "not_after": na, "created_at": nb, "created_by": "root",
            "account": true, "uid": g.uid, "groups": g.groups, "sudo": g.sudo,
            "ssh_keys": [], "reason": "bench", "ticket": "", "requested_by": "",
            "went_live_at": nb,
        }))
        .map_err(|e| format!("grant JSON no longer matches jit_proto::Grant: {e}"))?;
        st.grants.insert(g.id.clone().into(), grant);
        st.uid_ledger.insert(g.name.clone().into(), g.uid);
    }
    Ok(st)
}

fn seed_state(n: usize, dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut st = state_for(&model(n), jit_core::time::now())?;
    StateStore::new(dir)
        .save(&mut st)
        .map_err(|e| e.to_string())?;
    println!("seeded={n}");
    Ok(())
}

/// Median and maximum, in milliseconds.
fn stats(mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(|a, b| a.total_cmp(b));
    let med = v.get(v.len() / 2).copied().unwrap_or(f64::NAN);
    let max = v.last().copied().unwrap_or(f64::NAN);
    (med, max)
}

fn timed<T>(f: impl FnOnce() -> T) -> (T, f64) {
    let t = Instant::now();
    let r = f();
    (r, t.elapsed().as_secs_f64() * 1e3)
}

fn rewrite(n: usize, rounds: usize, config: &Path, scratch: &Path) -> Result<(), String> {
    let cfg = Config::load(config, true).map_err(|e| e.to_string())?;
    let local = LocalDb::read(&cfg.passwd_file, &cfg.group_file).map_err(|e| e.to_string())?;
    std::fs::create_dir_all(scratch).map_err(|e| format!("{}: {e}", scratch.display()))?;
    let mut snap_path = cfg.snapshot_path.clone().into_os_string();
    snap_path.push(".bench");
    let snap_path = PathBuf::from(snap_path);
    // jitd writes two files per rewrite: the gates file (whole image) and the public snapshot.
    let mut gates_path = jitd::snapshot_out::gates_path(&cfg.snapshot_path).into_os_string();
    gates_path.push(".bench");
    let gates_path = PathBuf::from(gates_path);
    let now = jit_core::time::now();
    let mut state = state_for(&model(n), now)?;

    let (mut save, mut project, mut build, mut build_public, mut write, mut parse) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    let mut tick = vec![];
    let mut bytes = 0;
    let mut accounts = 0;
    let mut caps = jitd::engine::tick::BootCaps::new();
    for _ in 0..rounds {
        // The timer's scans of every grant, under the state lock, once a second and after every
        // change: advance (the first round also records every grant's boot-time cap), the
        // teardown check and the next deadline.
        let (_, ms) = timed(|| {
            let moved = jitd::engine::tick::advance(&mut state, &mut caps, now, 1);
            let pending = jitd::engine::teardown::pending(&state);
            let next = jitd::engine::tick::next_deadline(&state);
            (moved, pending, next)
        });
        tick.push(ms);
        // A store that has not saved yet writes state.json whole: the cost measured here.
        let (r, ms) = timed(|| StateStore::new(scratch).save(&mut state));
        r.map_err(|e| e.to_string())?;
        save.push(ms);
        let ((data, collisions), ms) =
            timed(|| jitd::snapshot_out::project(&cfg, &state, &local, now));
        project.push(ms);
        if !collisions.is_empty() {
            return Err(format!(
                "{} accounts collide with local ones",
                collisions.len()
            ));
        }
        accounts = data.accounts.len();
        let (img, ms) = timed(|| build_snapshot(&data));
        let img = img.map_err(|e| e.to_string())?;
        build.push(ms);
        bytes = img.len();
        let (r, ms) = timed(|| {
            jit_core::snapshot::build_snapshot_with(
                &data,
                &jit_core::snapshot::BuildOptions {
                    index: true,
                    without_gates: true,
                    ..Default::default()
                },
            )
        });
        r.map_err(|e| e.to_string())?;
        build_public.push(ms);
        let copy = data.clone();
        let (r, ms) = timed(|| jitd::snapshot_out::write(&snap_path, &gates_path, copy, 1));
        r?;
        write.push(ms);
        let (r, ms) = timed(|| Snapshot::parse(&img).map(|s| s.account_count()));
        let count = r.map_err(|e| format!("snapshot does not parse: {e:?}"))?;
        if count != n {
            return Err(format!("snapshot holds {count} accounts, expected {n}"));
        }
        parse.push(ms);
    }
    let _ = std::fs::remove_file(&snap_path);
    let _ = std::fs::remove_file(&gates_path);
    let state_bytes = std::fs::metadata(scratch.join("state.json"))
        .map(|m| m.len())
        .unwrap_or(0);
    println!("grants={n} accounts={accounts} snapshot_bytes={bytes} state_bytes={state_bytes}");
    for (k, v) in [
        ("state_save_ms", save),
        ("project_ms", project),
        ("build_ms", build),
        ("build_public_indexed_ms", build_public),
        ("build_write_ms", write),
        ("parse_ms", parse),
        ("tick_scans_ms", tick),
    ] {
        let (med, max) = stats(v);
        println!("{k}={med:.3}/{max:.3}");
    }
    Ok(())
}

fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let num = |i: usize| -> Result<usize, String> {
        args.get(i)
            .ok_or("missing argument")?
            .parse()
            .map_err(|e| format!("bad number: {e}"))
    };
    let time = |i: usize| -> Result<UnixTime, String> {
        args.get(i)
            .ok_or("missing argument")?
            .parse()
            .map_err(|e| format!("bad time: {e}"))
    };
    let path = |i: usize| -> Result<PathBuf, String> {
        Ok(PathBuf::from(args.get(i).ok_or("missing argument")?))
    };
    match args.first().map(String::as_str) {
        Some("gen") => {
            let gid = match args.get(3) {
                Some(g) => g.parse().map_err(|e| format!("bad gid: {e}"))?,
                None => GID_JIT_USERS,
            };
            gen(num(1)?, &path(2)?, gid)
        }
        Some("seed-state") => seed_state(num(1)?, &path(2)?),
        Some("seed-expiry") => {
            let homes = args.get(4).map(PathBuf::from);
            expiry::seed(num(1)?, &path(2)?, time(3)?, homes.as_deref())
        }
        Some("storm") => expiry::storm(num(1)?, time(2)?),
        Some("rewrite") => rewrite(num(1)?, num(2)?, &path(3)?, &path(4)?),
        Some("counter") => counter(args.get(1).map(String::as_str)),
        Some("fsync-probe") => fsync::probe(num(1)?, &path(2)?),
        _ => Err(
            "usage: jitbench gen N OUTDIR [JIT_USERS_GID] | seed-state N STATE_DIR | \
                  rewrite N ROUNDS CONFIG SCRATCH_DIR | seed-expiry N STATE_DIR AT [HOME_ROOT] | storm N AT | \
                  counter open|close | fsync-probe COUNT DIR"
                .into(),
        ),
    }
}

/// `counter open`: sets up jitd's change counter for /run/jitd as jitd does at its first
/// publication and leaves it set up (as a killed jitd would), so the NSS rows over a snapshot
/// written by `gen` measure the module as it runs beside jitd. `counter close`: takes it over
/// and closes it as jitd's clean stop does. Run only in the benches' private IPC namespace.
fn counter(what: Option<&str>) -> Result<(), String> {
    use jit_core::snapshot::generation::Counter;
    let dir = jit_core::constants::DEFAULT_SNAPSHOT_DIR_C;
    let c = Counter::open(dir).map_err(|e| format!("change counter: {e}"))?;
    match what {
        Some("open") => {
            c.bump();
            std::mem::forget(c);
            Ok(())
        }
        Some("close") => {
            drop(c);
            Ok(())
        }
        _ => Err("usage: jitbench counter open|close".into()),
    }
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("jitbench: {e}");
            ExitCode::FAILURE
        }
    }
}
