//! Transitions, table-style: grants at given states and clocks, what `advance`, `revoke` and
//! `apply_journal` make of them.

use super::*;
use serde_json::json;

/// A grant for tests (alice's, an account, 100..10 000), as stored in state.
pub(crate) fn grant(id: &str, created_at: i64, state: &str) -> jit_proto::Grant {
    serde_json::from_value(json!({
        "id": id, "user": "alice", "state": state, "not_before": 100, "not_after": 10_000,
        "created_at": created_at, "created_by": "root", "account": true, "uid": 70_000,
        "groups": [], "ssh_keys": [], "reason": "", "ticket": "", "requested_by": "",
        "sudo": [], "runas": [], "enable": false, "from": [], "services": [], "windows": [],
        "mfa": false, "mfa_sudo": false, "end_with_session": false, "revoke_on": [],
        "activated_at": null, "went_live_at": 100, "ended_at": null, "end_reason": null,
        "torn_down": false,
    }))
    .unwrap()
}

#[test]
fn journal_entries_end_only_their_own_live_grants() {
    let mut st = State::default();
    for (id, created, state) in [
        ("g-000000000001", 100, "live"),
        ("g-000000000002", 100, "live"),
        ("g-000000000003", 100, "live"),
        ("g-000000000004", 100, "revoked"),
    ] {
        st.grants.insert(id.into(), grant(id, created, state));
    }
    let end = |id: &str, kind, created_at| End {
        grant: id.into(),
        kind,
        ended_at: 500,
        created_at,
    };
    let applied = apply_journal(
        &mut st,
        &[
            end("g-000000000001", EndKind::Revoked, 100),
            // A boot-time-cap expiry (not implied by not_after) survives the restart too.
            end("g-000000000002", EndKind::Expired, 100),
            // Same id, another grant: ignored.
            end("g-000000000003", EndKind::Revoked, 99),
            // Already ended: unchanged.
            end("g-000000000004", EndKind::Expired, 100),
            // Gone (pruned): ignored.
            end("g-000000000005", EndKind::Revoked, 100),
        ],
    );
    assert_eq!(applied, ["g-000000000001", "g-000000000002"]);
    let g = |id: &str| st.grants.get(id).unwrap().clone();
    assert_eq!(g("g-000000000001").state, GrantState::Revoked);
    assert_eq!(g("g-000000000001").ended_at, Some(500));
    assert!(!g("g-000000000001").torn_down);
    assert_eq!(g("g-000000000002").state, GrantState::Expired);
    assert_eq!(g("g-000000000003").state, GrantState::Live);
    assert_eq!(g("g-000000000004").state, GrantState::Revoked);
}

fn at(id: &str, state: &str, not_before: i64, not_after: i64) -> Grant {
    let mut g = grant(id, 100, state);
    g.not_before = not_before;
    g.not_after = not_after;
    g.went_live_at = None;
    g
}

#[test]
fn advance_table() {
    // (name, stored state, not_before, not_after, boot cap (b0, left), now, boot, after, live?, expired?, by cap)
    #[allow(clippy::type_complexity)]
    let rows: Vec<(
        &str,
        &str,
        i64,
        i64,
        Option<(i64, i64)>,
        i64,
        i64,
        GrantState,
        bool,
        bool,
        bool,
    )> = vec![
        (
            "pending before start",
            "pending",
            200,
            300,
            None,
            150,
            0,
            GrantState::Pending,
            false,
            false,
            false,
        ),
        (
            "pending at start",
            "pending",
            200,
            300,
            None,
            200,
            0,
            GrantState::Live,
            true,
            false,
            false,
        ),
        (
            "live in window",
            "live",
            100,
            300,
            None,
            250,
            0,
            GrantState::Live,
            false,
            false,
            false,
        ),
        (
            "live at end",
            "live",
            100,
            300,
            None,
            300,
            0,
            GrantState::Expired,
            false,
            true,
            false,
        ),
        (
            "pending past its end (jitd was down)",
            "pending",
            100,
            300,
            None,
            400,
            0,
            GrantState::Expired,
            false,
            true,
            false,
        ),
        (
            "clock set back: boot cap ends it",
            "live",
            100,
            300,
            Some((1000, 200)),
            150,
            1200,
            GrantState::Expired,
            false,
            true,
            true,
        ),
        (
            "boot cap not reached",
            "live",
            100,
            300,
            Some((1000, 200)),
            150,
            1100,
            GrantState::Live,
            false,
            false,
            false,
        ),
        (
            "revoked stays revoked",
            "revoked",
            100,
            300,
            None,
            400,
            0,
            GrantState::Revoked,
            false,
            false,
            false,
        ),
    ];
    for (name, st, nb, na, cap, now, boot, after, live, expired, by_cap) in rows {
        let mut state = State::default();
        state.grants.insert("g-1".into(), at("g-1", st, nb, na));
        let mut caps = BootCaps::new();
        if let Some(c) = cap {
            caps.insert("g-1".into(), c);
        }
        let t = advance(&mut state, &mut caps, now, boot);
        let g = state.grants.get("g-1").unwrap();
        assert_eq!(g.state, after, "{name}");
        assert_eq!(t.went_live == ["g-1"], live, "{name}");
        assert_eq!(t.expired.len() == 1, expired, "{name}");
        if expired {
            assert_eq!(t.expired[0].by_boot_cap, by_cap, "{name}");
            assert_eq!(
                t.expired[0].not_after, na,
                "{name}: the original end is reported"
            );
            assert_eq!(g.ended_at, Some(now), "{name}");
            assert!(!caps.contains_key("g-1"), "{name}: cap dropped");
            assert_eq!(t.ends(), [("g-1".to_string(), EndKind::Expired)], "{name}");
        }
        if after == GrantState::Live {
            assert!(
                caps.contains_key("g-1"),
                "{name}: a live grant has a boot cap"
            );
        }
    }
}

#[test]
fn first_boot_cap_is_the_time_left() {
    let mut state = State::default();
    state
        .grants
        .insert("g-1".into(), at("g-1", "live", 100, 300));
    let mut caps = BootCaps::new();
    advance(&mut state, &mut caps, 250, 5000);
    assert_eq!(caps.get("g-1"), Some(&(5000, 50)));
    // Set once: a later tick does not move it.
    advance(&mut state, &mut caps, 260, 5010);
    assert_eq!(caps.get("g-1"), Some(&(5000, 50)));
}

#[test]
fn revoke_table() {
    let mut state = State::default();
    state
        .grants
        .insert("g-1".into(), at("g-1", "live", 100, 300));
    state
        .grants
        .insert("g-2".into(), at("g-2", "live", 100, 300));
    let g = revoke(&mut state, "g-1", "", "root", 200).unwrap();
    assert_eq!((g.state, g.ended_at), (GrantState::Revoked, Some(200)));
    assert_eq!(g.end_reason.as_deref(), Some("revoked by root"));
    let g = revoke(&mut state, "g-2", "ioc", "policy", 200).unwrap();
    assert_eq!(g.end_reason.as_deref(), Some("revoked by policy: ioc"));
    let e = revoke(&mut state, "g-1", "", "root", 210).unwrap_err();
    assert_eq!(e.0, ErrorCode::Refused);
    assert!(e.1.contains("already ended (revoked"), "{e:?}");
    assert_eq!(
        revoke(&mut state, "g-9", "", "root", 210).unwrap_err().0,
        ErrorCode::NotFound
    );
    // Expired by the clock, not yet by a tick: already ended too.
    state
        .grants
        .insert("g-3".into(), at("g-3", "live", 100, 300));
    assert!(revoke(&mut state, "g-3", "", "root", 300)
        .unwrap_err()
        .1
        .contains("expired"));
}

#[test]
fn deadlines_and_pruning() {
    let mut state = State::default();
    assert_eq!(next_deadline(&state), None);
    state
        .grants
        .insert("g-1".into(), at("g-1", "live", 100, 300));
    state
        .grants
        .insert("g-2".into(), at("g-2", "pending", 250, 900));
    state
        .grants
        .insert("g-3".into(), at("g-3", "revoked", 100, 200));
    assert_eq!(next_deadline(&state), Some(250));
    for i in 0..ENDED_KEEP + 3 {
        let mut g = at(&format!("g-e{i}"), "expired", 0, 10);
        g.torn_down = true;
        g.ended_at = Some(i as i64);
        state.grants.insert(g.id.to_string().into(), g);
    }
    prune(&mut state);
    let ended = state.grants.values().filter(|g| g.state.is_ended()).count();
    // The not-torn-down g-3 is never pruned; the three oldest torn-down ones are.
    assert_eq!(ended, ENDED_KEEP + 1);
    assert!(!state.grants.contains_key("g-e0") && state.grants.contains_key("g-e3"));
    assert!(state.grants.contains_key("g-3"));
}

/// `Due` says "nothing to move" exactly when `advance` would move nothing: checked against
/// `advance` itself at every second around every deadline, with grants added as admission adds
/// them (folded in) and changed otherwise (which makes it stale).
#[test]
fn due_says_nothing_is_due_only_when_advance_would_move_nothing() {
    let mut state = State::default();
    let mut caps = BootCaps::new();
    state
        .grants
        .insert("g-1".into(), at("g-1", "live", 100, 300));
    state
        .grants
        .insert("g-2".into(), at("g-2", "pending", 200, 400));
    caps.insert("g-1".into(), (1_000, 150)); // boot-time cap at boot 1 150
    let mut due = Due::of(&state, &caps);
    // Admission adds a pending grant starting at 250 and a live one capped at boot 1 120.
    let before = state.grants.version();
    let g3 = at("g-3", "pending", 250, 500);
    state.grants.insert("g-3".into(), g3.clone());
    due.added(before, &state, &g3, None);
    let before = state.grants.version();
    let g4 = at("g-4", "live", 100, 900);
    state.grants.insert("g-4".into(), g4.clone());
    due.added(before, &state, &g4, Some((1_100, 20)));
    caps.insert("g-4".into(), (1_100, 20));
    assert_eq!(due.deadline(&state), Some(Some(200)));
    assert!(due.nothing_due(&state, 150, 1_050), "before every deadline");
    assert!(!due.nothing_due(&state, 200, 1_050), "g-2 starts");
    assert!(!due.nothing_due(&state, 150, 1_120), "g-4's boot-time cap");
    for now in 150..=320 {
        for boot in [1_050, 1_119, 1_120, 1_149, 1_150] {
            let mut s2 = State::default();
            for (k, v) in state.grants.iter() {
                s2.grants.insert(k.clone(), v.clone());
            }
            let mut c2 = caps.clone();
            let moved = advance(&mut s2, &mut c2, now, boot);
            if due.nothing_due(&state, now, boot) {
                assert!(
                    !moved.changed(),
                    "now {now}, boot {boot}: said idle, but advance moved {moved:?}"
                );
            }
        }
    }
    // Any other change makes it stale: it says nothing until computed again.
    let _ = state.grants.get_mut("g-2");
    assert!(!due.nothing_due(&state, 150, 1_050));
    assert_eq!(due.deadline(&state), None);
    // A stale one is not updated by an add either.
    let before = state.grants.version();
    let g5 = at("g-5", "live", 100, 120);
    state.grants.insert("g-5".into(), g5.clone());
    due.added(before, &state, &g5, None);
    assert!(!due.nothing_due(&state, 150, 1_050));
}
