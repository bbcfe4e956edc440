//! Property tests: what a writer or formatter produces, its reader parses back to the same
//! value — snapshot writer -> reader, duration / window / CIDR parse -> display -> parse, frame
//! encode -> decode — and the glob matcher agrees with a plain reference matcher.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure is the assertion

use std::collections::BTreeSet;
use std::io::Cursor;

use jit_core::policy::classify::fuzzing;
use jit_core::policy::net::parse_cidr;
use jit_core::policy::window::parse_window;
use jit_core::snapshot::{build_snapshot, Snapshot};
use jit_core::time::{format_duration, parse_duration};
use jit_core::types::{Account, GateGrant, GateLists, GroupEntry, Member, SnapshotData};
use proptest::collection::{btree_set, vec};
use proptest::prelude::*;

/// The longest duration parse_duration takes (jit_core's time ceiling, year 9999).
const MAX_SECS: i64 = 253_402_300_799;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn duration_format_parse(secs in 1..=MAX_SECS) {
        let shown = format_duration(secs);
        prop_assert_eq!(parse_duration(&shown), Ok(secs), "{}", shown);
    }

    #[test]
    fn duration_parse_display_parse(d in 0u32..400, h in 0u32..100, m in 0u32..100, s in 0u32..100,
                                    mask in 1u8..16) {
        let mut text = String::new();
        for (bit, n, unit) in [(8, d, 'd'), (4, h, 'h'), (2, m, 'm'), (1, s, 's')] {
            if mask & bit != 0 {
                text.push_str(&format!("{n}{unit}"));
            }
        }
        if let Ok(v) = parse_duration(&text) {
            prop_assert_eq!(parse_duration(&format_duration(v)), Ok(v));
        }
    }

    #[test]
    fn window_parse_display_parse(days in btree_set(0usize..7, 1..=7), all in any::<bool>(),
                                  start in 0u16..1440, end in 1u16..=1440) {
        prop_assume!(start != end);
        const NAMES: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
        let days = if all {
            "*".to_string()
        } else {
            days.iter().map(|&d| NAMES[d]).collect::<Vec<_>>().join(",")
        };
        let text = format!("{days} {:02}:{:02}-{:02}:{:02}", start / 60, start % 60, end / 60, end % 60);
        let w = parse_window(&text);
        prop_assert!(w.is_ok(), "{} refused: {:?}", text, w);
        let w = w.unwrap();
        let shown = w.to_string();
        prop_assert_eq!(parse_window(&shown), Ok(w), "{} shown as {}", text, shown);
        prop_assert_eq!(parse_window(&shown).unwrap().to_string(), shown);
    }

    #[test]
    fn cidr4_parse_display_parse(a in any::<[u8; 4]>(), prefix in 0u8..=32, with_prefix in any::<bool>()) {
        let addr = std::net::Ipv4Addr::from(a);
        let text = if with_prefix { format!("{addr}/{prefix}") } else { addr.to_string() };
        let c = parse_cidr(&text);
        prop_assert!(c.is_ok(), "{} refused: {:?}", text, c);
        let c = c.unwrap();
        prop_assert!(c.contains(&std::net::IpAddr::V4(addr)), "{} outside its own network", text);
        let shown = c.to_string();
        prop_assert_eq!(parse_cidr(&shown), Ok(c), "{} shown as {}", text, shown);
    }

    #[test]
    fn cidr6_parse_display_parse(a in any::<[u16; 8]>(), prefix in 0u8..=128) {
        let addr = std::net::Ipv6Addr::from(a);
        // IPv4-mapped networks shorter than /96 are refused on purpose.
        prop_assume!(addr.to_ipv4_mapped().is_none());
        let text = format!("{addr}/{prefix}");
        let c = parse_cidr(&text);
        prop_assert!(c.is_ok(), "{} refused: {:?}", text, c);
        let c = c.unwrap();
        prop_assert!(c.contains(&std::net::IpAddr::V6(addr)));
        let shown = c.to_string();
        prop_assert_eq!(parse_cidr(&shown), Ok(c), "{} shown as {}", text, shown);
    }

    #[test]
    fn frame_encode_decode(bodies in vec(vec(any::<u8>(), 1..2048), 1..4)) {
        let mut wire = Vec::new();
        for b in &bodies {
            jit_proto::write_frame(&mut wire, b).unwrap();
        }
        let mut r = Cursor::new(wire);
        for b in &bodies {
            prop_assert_eq!(&jit_proto::read_frame(&mut r).unwrap(), b);
        }
        prop_assert!(jit_proto::read_frame(&mut r).is_err(), "nothing after the last frame");
    }

    #[test]
    fn glob_matches_like_the_reference(pat in "[ab*?/]{0,12}", text in "[ab/]{0,12}") {
        prop_assert_eq!(fuzzing::glob_match(&pat, &text), reference_glob(&pat, &text), "{} vs {}", pat, text);
    }

    #[test]
    fn snapshot_writer_reader(data in snapshot_data()) {
        let image = build_snapshot(&data).unwrap();
        let s = Snapshot::parse(&image).unwrap();
        prop_assert_eq!(s.generated_at(), data.generated_at);
        let mut got = Vec::new();
        for i in 0..s.account_count() {
            let a = s.account_at(i).unwrap();
            got.push(Account {
                name: a.name().into(), uid: a.uid(), gid: a.gid(), gecos: a.gecos().into(),
                home: a.home().into(), shell: a.shell().into(), grant_id: a.grant_id().into(),
                not_before: a.not_before(), not_after: a.not_after(), flags: a.flags(),
                ssh_keys: a.ssh_keys().map(str::to_string).collect(),
            });
        }
        let mut want = data.accounts.clone();
        want.sort_by(|a, b| a.name.cmp(&b.name));
        got.sort_by(|a, b| a.name.cmp(&b.name));
        prop_assert_eq!(got, want);
        let mut groups = Vec::new();
        for i in 0..s.group_count() {
            let g = s.group_at(i).unwrap();
            let members: BTreeSet<String> = g.members().map(|m| m.name().to_string()).collect();
            groups.push((g.name().to_string(), g.gid(), g.kind(), members));
        }
        let mut want: Vec<_> = data.groups.iter().map(|g| {
            (g.name.to_string(), g.gid, g.kind, g.members.iter().map(|m| m.name.to_string()).collect::<BTreeSet<_>>())
        }).collect();
        want.sort();
        groups.sort();
        prop_assert_eq!(groups, want);
        let mut grants = Vec::new();
        for i in 0..s.grant_count() {
            let g = s.grant_at(i).unwrap();
            grants.push(GateGrant {
                id: g.id().into(), user: g.user().into(), uid: g.uid(),
                not_before: g.not_before(), not_after: g.not_after(), flags: g.flags(),
                revoke_on: g.revoke_on(),
                lists: GateLists {
                    from: g.from().map(str::to_string).collect(),
                    services: g.services().map(str::to_string).collect(),
                    windows: g.windows().map(str::to_string).collect(),
                    sudo: g.sudo().map(str::to_string).collect(),
                    runas: g.runas().map(str::to_string).collect(),
                }
                .boxed(),
            });
        }
        let mut want = data.grants.clone();
        want.sort_by(|a, b| a.id.cmp(&b.id));
        grants.sort_by(|a, b| a.id.cmp(&b.id));
        prop_assert_eq!(grants, want);
        for m in &data.managed {
            prop_assert!(s.is_managed(m), "{} not managed", m);
        }
        // And the fuzz target's walk over it holds.
        jit_fuzz::snapshot(&image);
    }
}

/// Byte-wise reference: `*` any run within a segment, `?` one byte, segments split on `/`.
fn reference_glob(pat: &str, text: &str) -> bool {
    fn seg(p: &[u8], t: &[u8]) -> bool {
        match p.split_first() {
            None => t.is_empty(),
            Some((b'*', rest)) => (0..=t.len()).any(|i| seg(rest, &t[i..])),
            Some((b'?', rest)) => !t.is_empty() && seg(rest, &t[1..]),
            Some((c, rest)) => t.first() == Some(c) && seg(rest, &t[1..]),
        }
    }
    let (ps, ts): (Vec<_>, Vec<_>) = (pat.split('/').collect(), text.split('/').collect());
    ps.len() == ts.len()
        && ps
            .iter()
            .zip(&ts)
            .all(|(p, t)| seg(p.as_bytes(), t.as_bytes()))
}

fn name() -> impl Strategy<Value = String> {
    "[a-z_][a-z0-9_-]{0,31}"
}

/// Text a stored field may hold: anything but NUL, `:` and newline (control characters and
/// non-ASCII included).
fn field() -> impl Strategy<Value = String> {
    "[^\u{0}:\n]{0,40}"
}

fn line() -> impl Strategy<Value = String> {
    "[^\u{0}\n]{0,60}"
}

fn times() -> impl Strategy<Value = (i64, i64)> {
    (any::<i64>(), any::<i64>())
}

fn snapshot_data() -> impl Strategy<Value = SnapshotData> {
    let account = (
        name(),
        any::<u32>(),
        any::<u32>(),
        field(),
        field(),
        field(),
        field(),
        times(),
        any::<u32>(),
        vec(line(), 0..3),
    )
        .prop_map(
            |(name, uid, gid, gecos, home, shell, grant_id, (nb, na), flags, ssh_keys)| Account {
                name: name.into(),
                uid,
                gid,
                gecos: gecos.into(),
                home: home.into(),
                shell: shell.into(),
                grant_id: grant_id.into(),
                not_before: nb,
                not_after: na,
                flags,
                ssh_keys,
            },
        );
    let member = (name(), field(), times()).prop_map(|(name, grant_id, (nb, na))| Member {
        name: name.into(),
        grant_id: grant_id.into(),
        not_before: nb,
        not_after: na,
    });
    let group = (name(), any::<u32>(), 1u32..=3, times(), vec(member, 0..4)).prop_map(
        |(name, gid, kind, (nb, na), members)| GroupEntry {
            name: name.into(),
            gid,
            kind,
            not_before: nb,
            not_after: na,
            members,
        },
    );
    let grant = (
        field(),
        name(),
        any::<u32>(),
        times(),
        any::<u32>(),
        any::<u32>(),
        [
            vec(line(), 0..3),
            vec(line(), 0..3),
            vec(line(), 0..3),
            vec(line(), 0..3),
            vec(line(), 0..3),
        ],
    )
        .prop_map(
            |(
                id,
                user,
                uid,
                (nb, na),
                flags,
                revoke_on,
                [from, services, windows, sudo, runas],
            )| GateGrant {
                id: id.into(),
                user: user.into(),
                uid,
                not_before: nb,
                not_after: na,
                flags,
                revoke_on,
                lists: GateLists {
                    from,
                    services,
                    windows,
                    sudo,
                    runas,
                }
                .boxed(),
            },
        );
    (
        any::<i64>(),
        vec(account, 0..6),
        vec(group, 0..5),
        vec(grant, 0..4),
        vec(name(), 0..3),
        proptest::option::of((1u32..=u32::MAX / 2, 0u32..=u32::MAX / 2)),
    )
        .prop_map(|(generated_at, accounts, groups, grants, managed, range)| {
            // The header's uid range is min..=max (the writer states jitd's configured range).
            let uid_range = range.map(|(lo, span)| (lo, lo.saturating_add(span)));
            // Names are unique per kind (the writer refuses a duplicated group; accounts and
            // grants are compared as sets keyed by name and id).
            let mut seen = BTreeSet::new();
            let accounts = accounts
                .into_iter()
                .filter(|a| seen.insert(a.name.clone()))
                .collect();
            let mut seen = BTreeSet::new();
            let groups = groups
                .into_iter()
                .filter(|g| seen.insert(g.name.clone()))
                .collect();
            let mut seen = BTreeSet::new();
            let grants = grants
                .into_iter()
                .filter(|g| seen.insert(g.id.clone()))
                .collect();
            SnapshotData {
                generated_at,
                accounts,
                groups,
                grants,
                managed,
                uid_range,
            }
        })
}
