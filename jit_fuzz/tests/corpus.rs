//! Replays the committed corpus (fuzz/corpus/TARGET/*) through the fuzz targets on stable, so
//! every test run exercises it whether or not cargo fuzz and a nightly toolchain are there.
//! Crashes found by fuzzing are kept in the corpus as `regression-*` files.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure is the assertion

use std::path::{Path, PathBuf};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = fuzz_dir().join("corpus").join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let data = std::fs::read(&p).unwrap();
            (p, data)
        })
        .collect()
}

#[test]
fn every_target_replays_its_corpus() {
    for (name, target) in jit_fuzz::TARGETS {
        let files = corpus(name);
        assert!(!files.is_empty(), "no corpus for {name}");
        for (path, data) in &files {
            let r = std::panic::catch_unwind(|| target(data));
            assert!(r.is_ok(), "{name} panicked on {}", path.display());
        }
        println!("{name}: {} inputs", files.len());
    }
}

/// The targets cargo fuzz builds are exactly the ones replayed here.
#[test]
fn fuzz_targets_match_the_list() {
    let mut on_disk: Vec<String> = std::fs::read_dir(fuzz_dir().join("fuzz_targets"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter_map(|p| Some(p.file_stem()?.to_str()?.to_string()))
        .collect();
    on_disk.sort();
    let mut listed: Vec<String> = jit_fuzz::TARGETS
        .iter()
        .map(|(n, _)| (*n).to_string())
        .collect();
    listed.sort();
    assert_eq!(on_disk, listed);
    let manifest = std::fs::read_to_string(fuzz_dir().join("Cargo.toml")).unwrap();
    for n in &listed {
        assert!(
            manifest.contains(&format!("name = \"{n}\"")),
            "{n} not in fuzz/Cargo.toml"
        );
    }
}

/// The valid snapshot seeds still parse (a format change must refresh them, or the fuzzer
/// starts from headers only).
#[test]
fn writer_seeds_parse() {
    let seeds: Vec<_> = corpus("snapshot")
        .into_iter()
        .filter(|(p, _)| p.to_string_lossy().contains("seed-writer-"))
        .collect();
    assert!(!seeds.is_empty());
    for (p, data) in &seeds {
        let s = jit_core::snapshot::Snapshot::parse(data);
        assert!(s.is_ok(), "{}: {:?}", p.display(), s.err());
    }
    // The indexed seed is a public snapshot as jitd writes it: enumeration's base reader takes it.
    let indexed = seeds
        .iter()
        .find(|(p, _)| p.to_string_lossy().ends_with("seed-writer-indexed"))
        .expect("fuzz/corpus/snapshot/seed-writer-indexed");
    let s = jit_core::snapshot::Snapshot::parse_base(&indexed.1);
    assert!(
        s.is_ok(),
        "seed-writer-indexed through parse_base: {:?}",
        s.err()
    );
    // The 1.3 seed states its accounts region: listing accounts reads only that.
    let v13 = seeds
        .iter()
        .find(|(p, _)| p.to_string_lossy().ends_with("seed-writer-indexed-13"))
        .expect("fuzz/corpus/snapshot/seed-writer-indexed-13");
    let s = jit_core::snapshot::Snapshot::parse_accounts_region(&v13.1);
    assert!(
        s.is_ok_and(|s| s.account_count() == 7),
        "seed-writer-indexed-13 through parse_accounts_region"
    );
    // The 1.5 seed holds the account listing: `getpwent` reads that, a chunk at a time.
    let v15 = seeds
        .iter()
        .find(|(p, _)| p.to_string_lossy().ends_with("seed-writer-indexed-15"))
        .expect("fuzz/corpus/snapshot/seed-writer-indexed-15");
    let head = jit_core::snapshot::index::IndexHead::parse(
        &v15.1[..v15.1.len().min(jit_core::snapshot::index::HEAD_PREFIX)],
        v15.1.len() as u64,
    );
    let (at, len, count) = head
        .ok()
        .flatten()
        .and_then(|h| h.listing)
        .expect("seed-writer-indexed-15 states a listing");
    let listed =
        jit_core::snapshot::listing::read_all(&v15.1[at as usize..(at + len) as usize], count);
    assert!(
        listed.is_ok_and(|l| l.len() == 7),
        "seed-writer-indexed-15's listing"
    );
}

/// The hostile requests the corpus must hold are there and are refused or read as they should.
#[test]
fn hostile_requests_in_the_corpus() {
    use jit_proto::message::{decode_request, Request};
    let files = corpus("socket_request");
    let body = |name: &str| {
        let (_, d) = files
            .iter()
            .find(|(p, _)| p.ends_with(format!("seed-{name}")))
            .unwrap_or_else(|| panic!("seed-{name} missing"));
        d.get(4..).unwrap().to_vec()
    };
    // An unknown field next to a request without fields (get_status) was accepted before.
    for name in [
        "unknown-type-1mib",
        "unknown-field-1mib",
        "unknown-field-unit",
    ] {
        let b = body(name);
        assert!(b.len() <= jit_proto::MAX_FRAME, "{name}");
        // Refused as malformed. The message quotes the unknown name whole; bounding error
        // replies to a frame is the reply path's job (jitd's server), not the decoder's.
        let e = decode_request(&b).unwrap_err();
        assert_eq!(e.0, jit_proto::ErrorCode::BadRequest, "{name}");
    }
    for (name, want) in [
        ("read-audit-offset-2p63-1", Some(Some((1u64 << 63) - 1))),
        ("read-audit-offset-2p63", Some(Some(1u64 << 63))),
        ("read-audit-offset-2p64-1", Some(Some(u64::MAX))),
        ("read-audit-offset-2p64", None),
        ("read-audit-offset-neg", None),
    ] {
        let got = decode_request(&body(name)).ok().map(|r| match r {
            Request::ReadAudit { after_offset, .. } => after_offset,
            other => panic!("{name}: {other:?}"),
        });
        assert_eq!(got, want, "{name}");
    }
    let r = decode_request(&body("control-chars-in-names")).unwrap();
    let Request::AddGrant { spec } = r else {
        panic!("{r:?}")
    };
    assert!(
        spec.user.contains('\u{1b}'),
        "read as sent; jitd's validation refuses it"
    );
}

/// The seeds of format 1.4 (a base stating serial 7 and a delta naming it) are the fixtures the
/// fuzz target reads the input against; `JIT_UPDATE_SEEDS=1` writes them.
#[test]
fn layered_seeds_are_current() {
    let (base, delta) = jit_fuzz::layered_fixtures();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/snapshot");
    for (name, bytes) in [
        ("seed-writer-base-14", base),
        ("seed-writer-delta-14", delta),
    ] {
        let p = dir.join(name);
        if std::env::var_os("JIT_UPDATE_SEEDS").is_some() {
            std::fs::write(&p, bytes).unwrap();
        }
        assert_eq!(
            std::fs::read(&p).ok().as_ref(),
            Some(bytes),
            "{name} is stale: JIT_UPDATE_SEEDS=1 cargo test -p jit_fuzz --test corpus"
        );
        let s = jit_core::snapshot::Snapshot::parse(bytes).unwrap();
        assert_eq!(s.is_delta(), name.contains("delta"));
    }
}
