//! jit-authorized-keys: sshd's AuthorizedKeysCommand. Prints the public keys of USER's live
//! account grant from the snapshot; prints nothing and exits 0 for anyone else, so sshd falls
//! back to its other key sources. Reads only the snapshot: no socket, no network, no NSS.

use std::process::ExitCode;

use jit_core::constants::DEFAULT_SNAPSHOT_DELTA_PATH_C;
use jit_core::constants::{DEFAULT_SNAPSHOT_PATH, DEFAULT_SNAPSHOT_PATH_C};
use jit_core::snapshot::keyed::NamePart;
use jit_core::snapshot::Snapshot;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let user = match args.as_slice() {
        [_, u] if u != "-h" && u != "--help" => u.clone(),
        [_, h] if h == "-h" || h == "--help" => {
            println!("usage: jit-authorized-keys USER\n\nsshd AuthorizedKeysCommand: prints the ssh public keys of USER's live jit\naccount grant (from {DEFAULT_SNAPSHOT_PATH}); nothing for anyone else.");
            return ExitCode::SUCCESS;
        }
        _ => {
            eprintln!("usage: jit-authorized-keys USER");
            return ExitCode::from(2);
        }
    };
    if jit_core::validate::validate_name("user name", &user).is_err() || user == "root" {
        return ExitCode::SUCCESS;
    }
    // Of an indexed snapshot only the header, one index entry and the one shard that holds
    // the name are read (docs/snapshot-format.md §10.3): what every ssh login pays, a local
    // user's too, stays the same at 100 grants as at 50 000. A grant added since the snapshot
    // was written is in its delta, read after it (jitd renames a new base into place before it
    // removes the delta of the old one).
    let part = match NamePart::read(
        DEFAULT_SNAPSHOT_PATH_C,
        DEFAULT_SNAPSHOT_DELTA_PATH_C,
        &user,
    ) {
        Ok(p) => p,
        Err(e) => return refused(&e),
    };
    let keys = match part.answer(|view| view.map_or_else(Vec::new, |s| keys_of(s, &user))) {
        Ok(k) => k,
        Err(e) => return refused(&e),
    };
    for k in keys {
        println!("{k}");
    }
    ExitCode::SUCCESS
}

/// The ssh keys of `user`'s live account grant in `snap`, as the file states them.
fn keys_of(snap: &Snapshot<'_>, user: &str) -> Vec<String> {
    snap.account_by_name(user, jit_core::time::now())
        .map(|a| a.ssh_keys().map(str::to_string).collect())
        .unwrap_or_default()
}

/// No keys from an unusable snapshot: sshd logs our stderr, so say why; exit 0 so sshd falls
/// back to its other key sources.
fn refused(e: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("jit-authorized-keys: snapshot {DEFAULT_SNAPSHOT_PATH}: {e}");
    ExitCode::SUCCESS
}
