use super::*;

fn dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("jitd-state-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn grant(id: &str) -> Grant {
    crate::engine::tick::tests::grant(id, 100, "live")
}

/// Flips a byte near the end of `path` (inside the JSON body: its checksum then fails).
fn damage(path: &Path) {
    let mut b = std::fs::read(path).unwrap();
    let n = b.len();
    b[n - 2] ^= 1;
    std::fs::write(path, &b).unwrap();
}

fn loaded(d: &Path) -> Loaded {
    StateStore::new(d).load().unwrap()
}

#[test]
fn round_trip_and_fallback() {
    let dir = dir("fallback");
    let store = StateStore::new(&dir);
    assert!(store.load().unwrap().fresh);
    let mut s = State::default();
    s.uid_ledger.insert("alice".into(), 70_000u32);
    store.save(&mut s).unwrap();
    s.uid_ledger.insert("bob".into(), 70_001u32);
    // A fresh store writes whole at its first save, like jitd after a start.
    let store = StateStore::new(&dir);
    store.load().unwrap();
    store.save(&mut s).unwrap();
    assert_eq!(store.load().unwrap().state, s);
    // Corrupt the current generation: the previous one is used and reported.
    let mut b = std::fs::read(store.path()).unwrap();
    let n = b.len();
    b[n - 3] ^= 1;
    std::fs::write(store.path(), &b).unwrap();
    let l = store.load().unwrap();
    assert!(l.recovered_from_prev.is_some());
    assert_eq!(l.state.uid_ledger.len(), 1);
    // Truncated current with a damaged previous generation: refuse.
    std::fs::write(store.path(), &b[..n / 2]).unwrap();
    std::fs::write(
        changes::prev_path(store.path()),
        b"jitd-state 1 00000000 2\n{}",
    )
    .unwrap();
    assert!(matches!(store.load(), Err(StateError::Corrupt(_))));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn small_changes_are_appended_and_state_json_is_not_rewritten() {
    let dir = dir("append");
    let store = StateStore::new(&dir);
    store.load().unwrap();
    let mut s = State::default();
    for i in 0..20 {
        s.grants
            .insert(format!("g{i}").into(), grant(&format!("g{i}")));
    }
    store.save(&mut s).unwrap(); // the first save after a load: whole
    let whole = std::fs::read(store.path()).unwrap();
    s.grants.insert("new".into(), grant("new"));
    s.uid_ledger.insert("unew".into(), 70_100u32);
    store.save(&mut s).unwrap();
    s.grants.remove("g3");
    if let Some(g) = s.grants.get_mut("g4") {
        g.state = jit_proto::GrantState::Revoked;
        g.ended_at = Some(150);
    }
    store.save(&mut s).unwrap();
    store.save(&mut s).unwrap(); // nothing changed: nothing written
    assert_eq!(
        std::fs::read(store.path()).unwrap(),
        whole,
        "state.json untouched"
    );
    let j = changes::read(store.journal_path()).unwrap();
    assert_eq!(j.records.len(), 2);
    assert_eq!(j.records[1].change.grants.len(), 2);
    assert_eq!(j.records[1].change.grants["g3"], None);
    let l = loaded(&dir);
    assert_eq!(l.journal_records, 2);
    assert_eq!(l.state, s);
    assert_eq!(l.state.grants["g4"].state, jit_proto::GrantState::Revoked);
    assert!(!l.state.grants.contains_key("g3"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_whole_write_folds_the_journal_in_and_the_previous_generation_still_loads_completely() {
    let dir = dir("rotate");
    let store = StateStore::new(&dir);
    store.load().unwrap();
    let mut s = State::default();
    s.grants.insert("a".into(), grant("a"));
    store.save(&mut s).unwrap(); // whole, journal_seq 1
    s.grants.insert("b".into(), grant("b"));
    store.save(&mut s).unwrap(); // record 2
                                 // A restart: the first save writes whole (journal_seq 3) and rotates the journal.
    let store = StateStore::new(&dir);
    assert_eq!(store.load().unwrap().state, s);
    s.grants.insert("c".into(), grant("c"));
    store.save(&mut s).unwrap(); // whole
    s.grants.insert("d".into(), grant("d"));
    store.save(&mut s).unwrap(); // record 4, in the new journal
    assert_eq!(
        changes::read(store.journal_path()).unwrap().records[0].seq,
        4
    );
    assert_eq!(loaded(&dir).state, s);
    // state.json damaged: the previous generation (a) plus record 2 (.prev journal); c was
    // only ever in the damaged state.json (3): reported as lost, record 4 not applied.
    damage(store.path());
    let l = loaded(&dir);
    let why = l.recovered_from_prev.unwrap();
    assert!(l.state.grants.contains_key("a") && l.state.grants.contains_key("b"));
    assert!(!l.state.grants.contains_key("c"));
    assert!(!l.state.grants.contains_key("d"));
    assert!(
        why.contains("journal records 3 to 3 are missing") && why.contains("after record 2"),
        "{why}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn an_unacknowledged_tail_is_dropped_and_reported_and_damage_before_it_refuses_to_load() {
    let dir = dir("torn");
    let store = StateStore::new(&dir);
    store.load().unwrap();
    let mut s = State::default();
    store.save(&mut s).unwrap();
    s.grants.insert("a".into(), grant("a"));
    store.save(&mut s).unwrap();
    s.grants.insert("b".into(), grant("b"));
    store.save(&mut s).unwrap();
    let jp = store.journal_path().to_path_buf();
    let full = std::fs::read(&jp).unwrap();
    std::fs::write(&jp, &full[..full.len() - 5]).unwrap();
    let l = loaded(&dir);
    assert!(l.state.grants.contains_key("a"));
    assert!(!l.state.grants.contains_key("b"));
    assert!(l.journal_torn.is_some());
    // A flipped byte in the first record, with the second after it: refuse.
    let mut b = full.clone();
    b[changes::tests_first_body_offset() + 2] ^= 1;
    std::fs::write(&jp, &b).unwrap();
    let e = StateStore::new(&dir).load().unwrap_err();
    assert!(matches!(e, StateError::Corrupt(_)), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_change_touching_most_of_a_large_state_is_written_whole() {
    let dir = dir("big");
    let store = StateStore::new(&dir);
    store.load().unwrap();
    let mut s = State::default();
    for i in 0..400 {
        s.uid_ledger.insert(format!("u{i}").into(), 70_000u32 + i);
    }
    store.save(&mut s).unwrap();
    let before = std::fs::metadata(store.journal_path()).unwrap().len();
    for i in 0..400 {
        s.uid_ledger.insert(format!("v{i}").into(), 80_000u32 + i);
    }
    store.save(&mut s).unwrap();
    // Whole: a fresh (empty) journal, everything in state.json.
    assert_eq!(
        std::fs::metadata(store.journal_path()).unwrap().len(),
        before
    );
    assert!(changes::read(store.journal_path())
        .unwrap()
        .records
        .is_empty());
    assert_eq!(loaded(&dir).state, s);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn folding_the_journal_in_keeps_the_previous_generation_complete() {
    let dir = dir("fold");
    let store = StateStore::new(&dir);
    store.load().unwrap();
    let mut s = State::default();
    s.grants.insert("a".into(), grant("a"));
    store.save(&mut s).unwrap(); // whole (changes made before it): its own number, 1
    s.grants.insert("b".into(), grant("b"));
    store.save(&mut s).unwrap(); // record 2
    store.save_whole_now(&mut s).unwrap(); // folds record 2 in: no number of its own
    s.grants.insert("c".into(), grant("c"));
    store.save(&mut s).unwrap(); // record 3, in the new journal
    assert_eq!(
        changes::read(store.journal_path()).unwrap().records[0].seq,
        3
    );
    // state.json damaged: the previous generation (a) + record 2 (.prev) + record 3 is all.
    damage(store.path());
    let l = loaded(&dir);
    assert_eq!(l.state, s);
    let why = l.recovered_from_prev.unwrap();
    assert!(!why.contains("lost"), "{why}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The cached uid ceiling is kept by `record_uid` without a walk, and taken again after any
/// other change of the ledger (a rollback, a journal record applied).
#[test]
fn the_uid_ceiling_follows_every_change_of_the_ledger() {
    let mut s = State::default();
    assert_eq!(s.uid_ceiling(), None);
    s.record_uid("a".into(), 70_005);
    assert_eq!(s.uid_ceiling(), Some(70_005));
    s.record_uid("b".into(), 70_002);
    s.record_uid("c".into(), 70_009);
    assert_eq!(
        s.uid_ceiling.0,
        Some((s.uid_ledger.version(), 70_009)),
        "kept by record_uid, valid at the ledger's current version"
    );
    assert_eq!(s.uid_ceiling(), Some(70_009));
    s.uid_ledger.remove("c");
    assert_eq!(s.uid_ceiling(), Some(70_005));
    s.uid_ledger.insert("d".into(), 70_100u32);
    assert_eq!(s.uid_ceiling(), Some(70_100));
    // A copy compares equal whatever its cache holds.
    let mut t = s.clone();
    t.uid_ceiling = UidCeiling::default();
    assert_eq!(s, t);
}

/// A loaded state holds each grant's id and each identity's name once: the grants map's key is
/// the grant's own id, and a ledger key the user name its grant holds (from state.json and
/// from the journal alike); the content is what was saved.
#[test]
fn a_loaded_state_shares_its_ids_and_names() {
    let dir = dir("share");
    let store = StateStore::new(&dir);
    store.load().unwrap();
    let mut s = State::default();
    for (id, user) in [("g-000000000001", "jb1"), ("g-000000000002", "jb2")] {
        let mut g = grant(id);
        g.user = user.into();
        s.grants.insert(g.id.clone(), g);
        s.uid_ledger.insert(user.into(), 70_000u32);
    }
    s.uid_ledger.insert("gone".into(), 70_005u32);
    store.save(&mut s).unwrap();
    // One more through the journal.
    let mut g = grant("g-000000000003");
    g.user = "jb3".into();
    s.grants.insert(g.id.clone(), g);
    s.uid_ledger.insert("jb3".into(), 70_003u32);
    store.save(&mut s).unwrap();
    let l = loaded(&dir);
    assert!(
        l.journal_records > 0,
        "the last grant came from the journal"
    );
    assert_eq!(l.state, s);
    for (k, g) in l.state.grants.iter() {
        assert!(std::ptr::eq(k.as_str(), g.id.as_str()), "{k}");
        let (name, _) = l.state.uid_ledger.get_key_value(g.user.as_str()).unwrap();
        assert!(std::ptr::eq(name.as_str(), g.user.as_str()), "{name}");
    }
    assert_eq!(l.state.uid_ledger.get("gone"), Some(&70_005));
    // Nothing counts as changed: the next save appends nothing.
    assert_eq!(l.state.changed_len(), 0);
}
