//! The fuzz targets: one function per parser that takes hostile input. `fuzz/` (cargo fuzz,
//! nightly) calls them with generated inputs; `tests/corpus.rs` replays the committed corpus
//! through the same functions on stable, so every CI run exercises the corpus.
//!
//! A target returns normally for any input; it panics only when a parser breaks one of its
//! own promises (a crash, a reply that does not round-trip, a lookup that disagrees with the
//! listing). What jitd and the modules do with a parsed value is tested elsewhere.

use std::io::Cursor;

use jit_core::policy::classify::{self, fuzzing};
use jit_core::policy::sudo::SudoRequest;
use jit_core::policy::{net, sudo, window};
use jit_core::snapshot::Snapshot;
use jit_core::time::{format_duration, parse_duration};
use jit_proto::message::{decode_request, encode_request};

/// A fuzz target: takes any bytes, panics only on a broken promise.
pub type Target = fn(&[u8]);

/// Every target by the name of its `fuzz/fuzz_targets/<name>.rs` and `fuzz/corpus/<name>/`.
pub const TARGETS: &[(&str, Target)] = &[
    ("socket_request", socket_request),
    ("snapshot", snapshot),
    ("shell", shell),
    ("glob", glob),
    ("sudo_info", sudo_info),
    ("policy_values", policy_values),
];

/// What jitd's socket reads: frames (a length and a body) and each body as a request; the raw
/// input as a body too, so the JSON parser is reached without a valid length first.
pub fn socket_request(data: &[u8]) {
    let mut r = Cursor::new(data);
    // A connection may send several frames; jitd reads one per request.
    for _ in 0..8 {
        match jit_proto::read_frame(&mut r) {
            Ok(body) => request_body(&body),
            Err(_) => break,
        }
    }
    request_body(data);
}

fn request_body(body: &[u8]) {
    let Ok(req) = decode_request(body) else {
        return;
    };
    // The audit line of a request never fails, and a decoded request encodes and decodes to
    // itself (jitctl and the modules build requests with the same types).
    let _ = req.as_safe_string();
    let enc = encode_request(&req);
    assert!(enc.is_ok(), "a decoded request does not encode: {req:?}");
    if let Ok(enc) = enc {
        assert_eq!(decode_request(&enc).ok(), Some(req), "request round trip");
    }
}

/// The snapshot reader (every module maps the file): a parsed snapshot answers every lookup
/// without panicking, and the lookups agree with the listing.
pub fn snapshot(data: &[u8]) {
    walk_listing(data);
    walk_snapshot(Snapshot::parse(data));
    walk_layered(data);
    walk_snapshot(Snapshot::parse_base(data));
    walk_snapshot(Snapshot::parse_accounts(data));
    walk_snapshot(Snapshot::parse_base_accounts(data));
    walk_snapshot(Snapshot::parse_accounts_region(data));
    // The length and checksum in the header stop nearly every mutation at the door; with both
    // set right, mutations reach the section table and the records behind it.
    let mut fixed = data.to_vec();
    let len = (fixed.len() as u64).to_le_bytes();
    if let Some(f) = fixed.get_mut(16..24) {
        f.copy_from_slice(&len);
        let crc = jit_core::crc32c::crc32c(fixed.get(16..).unwrap_or_default()).to_le_bytes();
        if let Some(c) = fixed.get_mut(12..16) {
            c.copy_from_slice(&crc);
        }
        walk_snapshot(Snapshot::parse(&fixed));
        walk_snapshot(Snapshot::parse_accounts(&fixed));
        // The same for the base reader (enumeration): its checksums are the base region's
        // (`base_crc`, over what `base_at` states) and the header's (`head_crc`, last, as it
        // covers `base_crc`).
        use jit_core::snapshot::format::{BASE_AT_AT, BASE_CRC_AT};
        let at = fixed
            .get(BASE_AT_AT..BASE_AT_AT + 4)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map_or(0, u32::from_le_bytes) as usize;
        if let Some(base) = fixed.get(at..) {
            let crc = jit_core::crc32c::crc32c(base).to_le_bytes();
            if let Some(c) = fixed.get_mut(BASE_CRC_AT..BASE_CRC_AT + 4) {
                c.copy_from_slice(&crc);
            }
        }
        resign_head(&mut fixed);
        walk_snapshot(Snapshot::parse_base(&fixed));
        walk_snapshot(Snapshot::parse_base_accounts(&fixed));
        // And for the accounts region (1.3): `accounts_crc` over what the table states, then
        // `head_crc` again, which covers `accounts_crc`.
        use jit_core::snapshot::format::ACCOUNTS_CRC_AT;
        if let Some((at, end)) = Snapshot::stated_accounts_region(&fixed, fixed.len() as u64) {
            let region = fixed.get(at as usize..end as usize).unwrap_or_default();
            let crc = jit_core::crc32c::crc32c(region).to_le_bytes();
            if let Some(c) = fixed.get_mut(ACCOUNTS_CRC_AT..ACCOUNTS_CRC_AT + 4) {
                c.copy_from_slice(&crc);
            }
            resign_head(&mut fixed);
            walk_snapshot(Snapshot::parse_accounts_region(&fixed));
        }
    }
}

/// Format 1.5: the account listing of the input, as `getpwent` reads it a chunk at a time;
/// and the input as the payload of one listing chunk whose head and checksum are right, so
/// that mutations reach the record checks. Reading never panics, and every record a chunk
/// yields was checked: its strings are the ones a listing may show.
fn walk_listing(data: &[u8]) {
    use jit_core::snapshot::format::{LISTING_CHUNK_HEAD, LISTING_CHUNK_MAX};
    use jit_core::snapshot::index::{IndexHead, HEAD_PREFIX};
    use jit_core::snapshot::listing::read_all;
    let prefix = data.get(..data.len().min(HEAD_PREFIX)).unwrap_or_default();
    if let Ok(Some(head)) = IndexHead::parse(prefix, data.len() as u64) {
        if let Some((at, len, count)) = head.listing {
            let section = data
                .get(at as usize..(at + len) as usize)
                .unwrap_or_default();
            check_listed(read_all(section, count));
        }
    }
    if data.len() <= LISTING_CHUNK_MAX {
        for count in 1..=3u32 {
            let mut chunk = Vec::with_capacity(LISTING_CHUNK_HEAD + data.len());
            chunk.extend_from_slice(&(data.len() as u32).to_le_bytes());
            chunk.extend_from_slice(&count.to_le_bytes());
            chunk.extend_from_slice(&jit_core::crc32c::crc32c(data).to_le_bytes());
            chunk.extend_from_slice(&0u32.to_le_bytes());
            chunk.extend_from_slice(data);
            check_listed(read_all(&chunk, count));
        }
    }
}

fn check_listed(
    r: Result<
        Vec<jit_core::snapshot::listing::ListedAccount<'_>>,
        jit_core::snapshot::SnapshotError,
    >,
) {
    use jit_core::validate::{is_field_safe, is_name_safe};
    for a in r.unwrap_or_default() {
        let text = |b: &[u8]| std::str::from_utf8(b).map(str::to_owned).ok();
        let name = text(a.name);
        assert!(
            name.as_deref().is_some_and(|n| is_name_safe(n, 32)),
            "listed name {:?}",
            a.name
        );
        for f in [a.gecos, a.home, a.shell] {
            assert!(
                text(f).is_some_and(|f| is_field_safe(&f, 16 * 1024)),
                "listed field {f:?}"
            );
        }
    }
}

/// The serial of the fixed base and the base the fixed delta names (the seed corpus has a
/// delta and a base that name it, so mutations reach the layered lookups).
pub const FUZZ_SERIAL: u32 = 7;

/// A small base (serial [`FUZZ_SERIAL`]) and a delta over it, built once.
pub fn layered_fixtures() -> &'static (Vec<u8>, Vec<u8>) {
    use jit_core::snapshot::{build_snapshot_with, BuildOptions};
    use jit_core::types::*;
    static F: std::sync::OnceLock<(Vec<u8>, Vec<u8>)> = std::sync::OnceLock::new();
    F.get_or_init(|| {
        let data = |name: &str, uid: u32| SnapshotData {
            generated_at: 100,
            accounts: vec![Account {
                name: name.into(),
                uid,
                gid: uid,
                grant_id: format!("g-{uid}").into(),
                not_before: 0,
                not_after: 1000,
                home: format!("/home/{name}").into(),
                shell: "/bin/sh".into(),
                gecos: String::new().into(),
                flags: 0,
                ssh_keys: vec![],
            }],
            groups: vec![GroupEntry {
                name: "jit-users".into(),
                gid: 79_999,
                kind: GROUP_KIND_JIT,
                not_before: i64::MIN,
                not_after: i64::MAX,
                members: vec![Member {
                    name: name.into(),
                    grant_id: format!("g-{uid}").into(),
                    not_before: 0,
                    not_after: 1000,
                }],
            }],
            grants: vec![GateGrant {
                id: format!("g-{uid}").into(),
                user: name.into(),
                uid,
                not_before: 0,
                not_after: 1000,
                ..Default::default()
            }],
            ..Default::default()
        };
        let base = build_snapshot_with(
            &data("amy", 70_001),
            &BuildOptions {
                serial: FUZZ_SERIAL,
                ..Default::default()
            },
        )
        .unwrap_or_default();
        let delta = build_snapshot_with(
            &data("bob", 70_002),
            &BuildOptions {
                delta_of: Some([FUZZ_SERIAL, 0, 0, 0]),
                ..Default::default()
            },
        )
        .unwrap_or_default();
        (base, delta)
    })
}

/// Format 1.4: the input read as a delta over a fixed base, and as a base under a fixed delta;
/// every lookup over both answers without panicking.
fn walk_layered(data: &[u8]) {
    let Ok(input) = Snapshot::parse(data) else {
        return;
    };
    let (base, delta) = layered_fixtures();
    if let (Ok(b), Ok(d)) = (Snapshot::parse(base), Snapshot::parse(delta)) {
        if input.is_delta() {
            walk_snapshot(Ok(b.with_delta(&input, b.serial())));
        } else {
            walk_snapshot(Ok(input.with_delta(&d, input.serial())));
        }
    }
}

/// Sets `head_crc` right for the header and table as they are now.
fn resign_head(file: &mut [u8]) {
    use jit_core::snapshot::format::HEAD_CRC_AT;
    if let Some(head) = jit_core::snapshot::index::head_crc(file) {
        if let Some(c) = file.get_mut(HEAD_CRC_AT..HEAD_CRC_AT + 4) {
            c.copy_from_slice(&head.to_le_bytes());
        }
    }
}

fn walk_snapshot(parsed: Result<Snapshot<'_>, jit_core::snapshot::SnapshotError>) {
    let Ok(s) = parsed else {
        return;
    };
    let now = s.generated_at();
    if s.has_delta() && s.account_count() + s.group_count() + s.grant_count() <= 4096 {
        let _ = jit_core::snapshot::build_snapshot(&s.to_data());
    }
    for i in 0..s.account_count().min(4096) {
        let _ = s.account_listed_in_base(i, now);
        let Some(a) = s.account_at(i) else { break };
        let _ = (
            a.uid(),
            a.gid(),
            a.gecos(),
            a.home(),
            a.shell(),
            a.grant_id(),
        );
        let _ = (a.not_before(), a.not_after(), a.flags(), a.is_live(now));
        let _ = a.ssh_keys().take(64).count();
        let _ = s.account_by_name(a.name(), now);
        let _ = s.account_by_uid(a.uid(), now);
        let _ = s.has_account_record(a.name());
        let _ = s.user_gids(a.name(), now).take(4096).count();
        let _ = s.grants_for_user(a.name()).take(4096).count();
    }
    for i in 0..s.group_count().min(4096) {
        let _ = s.group_listed_in_base(i);
        let Some(g) = s.group_at(i) else { break };
        let _ = (g.gid(), g.kind(), g.is_visible(now));
        for m in g.members().take(4096) {
            let _ = (m.name(), m.grant_id(), m.is_live(now));
        }
        let _ = g.live_members(now).take(4096).count();
        let _ = s.group_by_name(g.name(), now);
        let _ = s.group_by_gid(g.gid(), now);
        let _ = s.group_record(g.name());
    }
    for i in 0..s.grant_count().min(4096) {
        let Some(g) = s.grant_at(i) else { break };
        let _ = (
            g.id(),
            g.user(),
            g.uid(),
            g.flags(),
            g.revoke_on(),
            g.is_live(now),
        );
        for list in [g.from(), g.services(), g.windows(), g.sudo(), g.runas()] {
            let _ = list.take(4096).count();
        }
    }
    for name in ["root", "", "nobody"] {
        let _ = s.account_by_name(name, now);
        let _ = s.group_by_name(name, now);
        let _ = s.is_managed(name);
    }
    let _ = s.account_by_uid(0, now);
    let _ = s.group_by_gid(u32::MAX, now);
}

/// The shell lexer, through the classifier as sudo_jit calls it (`sh -c TEXT` and friends)
/// and directly: it returns for any text, and no word it returns is longer than the text.
pub fn shell(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (cmds, targets, subs) = fuzzing::lex(&text);
    for w in cmds.iter().flatten().chain(&targets).chain(&subs) {
        assert!(w.len() <= text.len(), "a word longer than its script");
    }
    for (cmd, flag) in [
        ("/bin/sh", "-c"),
        ("/usr/bin/bash", "-c"),
        ("/usr/bin/find", "-exec"),
    ] {
        let argv = [flag, text.as_ref()];
        let _ = classify::classify(&SudoRequest::new("alice", 70001, cmd, &argv), &[]);
    }
    // The text as an argument vector (words split on NUL, as sudo hands them over).
    let words: Vec<&str> = text.split('\0').take(1024).collect();
    if let Some((cmd, rest)) = words.split_first() {
        let _ = classify::classify(
            &SudoRequest::new("alice", 70001, cmd, rest),
            &["tcpdump", "/usr/bin/curl -T"],
        );
    }
}

/// The glob matcher of the classifier's file sets: `PATTERN\0TEXT`. A pattern without
/// wildcards matches exactly itself; `*` alone matches any one path segment.
pub fn glob(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (pat, path) = text.split_once('\0').unwrap_or((&text, ""));
    let m = fuzzing::glob_match(pat, path);
    if !pat.contains(['*', '?', '[']) {
        assert_eq!(m, pat == path, "literal pattern {pat:?} vs {path:?}");
    }
    if !path.contains('/') {
        assert!(fuzzing::glob_match("*", path), "* vs {path:?}");
    }
    if let Some(n) = fuzzing::normalise(pat) {
        assert!(n.starts_with('/'), "normalised {pat:?} to a relative {n:?}");
        assert!(
            !n.split('/').any(|s| s == ".." || s == "."),
            "{pat:?} -> {n:?}"
        );
    }
}

/// sudo's vectors as sudo_jit reads them: `settings`, `user_info`, `command_info` and
/// `run_argv` separated by 0xff bytes (never in UTF-8), entries by NUL.
pub fn sudo_info(data: &[u8]) {
    let mut parts = data.split(|&b| b == 0xff).map(|p| {
        p.split(|&b| b == 0)
            .take(4096)
            .map(<[u8]>::to_vec)
            .collect::<Vec<_>>()
    });
    let settings = parts.next().unwrap_or_default();
    let user_info = parts.next().unwrap_or_default();
    let command_info = parts.next().unwrap_or_default();
    let run_argv = parts.next().unwrap_or_default();
    let _ = sudo_jit::cinfo::parse_invocation(&settings, &user_info);
    let _ =
        sudo_jit::cinfo::argv_sets_env(&run_argv, i32::from(data.first().copied().unwrap_or(0)));
    let words: Vec<&[u8]> = settings.iter().map(Vec::as_slice).collect();
    let _ = sudo_jit::options::parse(&words);
    if let Ok(c) = sudo_jit::cinfo::parse_command(&command_info, &run_argv) {
        assert!(c.command.starts_with('/'), "command {:?}", c.command);
        let argv: Vec<&str> = c.argv.iter().map(String::as_str).collect();
        let mut req = SudoRequest::new("alice", 70001, &c.command, &argv);
        req.edit = c.edit;
        req.runas_uid = c.runas_uid;
        let _ = classify::classify(&req, &[]);
    }
}

/// The grant condition values (`--for`, `--window`, `--from`, `--revoke-on`, `--sudo`,
/// `--runas`, `ioc_commands`, `PAM_RHOST`): whatever parses displays as text that parses to
/// the same value.
pub fn policy_values(data: &[u8]) {
    let s = String::from_utf8_lossy(data);
    if let Ok(d) = parse_duration(&s) {
        assert_eq!(parse_duration(&format_duration(d)), Ok(d), "duration {s:?}");
    }
    shown_reads_back("window", &s, window::parse_window);
    shown_reads_back("cidr", &s, net::parse_cidr);
    shown_reads_back("sudo scope", &s, sudo::parse_scope_entry);
    shown_reads_back("runas", &s, sudo::parse_runas);
    if let Some(bits) = classify::parse_class(&s) {
        assert_eq!(classify::class_names(bits), vec![s.as_ref()], "class {s:?}");
    }
    let _ = classify::parse_ioc_entry(&s);
    let _ = net::parse_rhost(&s);
}

/// When `parse` takes `s`, its display parses again and displays the same (the canonical form
/// is a fixed point; jitd stores and shows the displayed form).
fn shown_reads_back<T: std::fmt::Display, E>(what: &str, s: &str, parse: fn(&str) -> Result<T, E>) {
    let Ok(v) = parse(s) else { return };
    let shown = v.to_string();
    let again = parse(&shown).map(|v| v.to_string()).ok();
    assert_eq!(again.as_deref(), Some(shown.as_str()), "{what} {s:?}");
}
