//! jit-authorized-keys: sshd's AuthorizedKeysCommand. Prints the public keys of USER's live
//! account grant from the snapshot; prints nothing and exits 0 for anyone else, so sshd falls
//! back to its other key sources. Reads only the snapshot: no socket, no network, no NSS.

use std::process::ExitCode;

use jit_core::constants::DEFAULT_SNAPSHOT_DELTA_PATH_C;
use jit_core::constants::{DEFAULT_SNAPSHOT_PATH, DEFAULT_SNAPSHOT_PATH_C};
use jit_core::snapshot::file::read_trusted_base_layers;

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
    // The base region is enough for an account's keys: at 50 000 grants a third of the file,
    // read at every ssh login.
    // A grant added since the snapshot was written is in its delta (read over it).
    let layers =
        match read_trusted_base_layers(DEFAULT_SNAPSHOT_PATH_C, DEFAULT_SNAPSHOT_DELTA_PATH_C) {
            Ok(b) => b,
            Err(e) => {
                // sshd logs our stderr; say why there are no keys.
                eprintln!("jit-authorized-keys: snapshot {DEFAULT_SNAPSHOT_PATH}: {e}");
                return ExitCode::SUCCESS;
            }
        };
    let delta = layers.parse_delta();
    let snap = match layers.base.parse() {
        Ok(s) => s.over(delta.as_ref()),
        Err(e) => {
            eprintln!("jit-authorized-keys: snapshot {DEFAULT_SNAPSHOT_PATH}: {e}");
            return ExitCode::SUCCESS;
        }
    };
    if let Some(a) = snap.account_by_name(&user, jit_core::time::now()) {
        for k in a.ssh_keys() {
            println!("{k}");
        }
    }
    ExitCode::SUCCESS
}
