//! Compiles the C load programs in `tests/fixtures/*.c` with the system `cc`, once per test
//! binary, into the cargo target dir (under /var/cache/jit-tests/c when the target dir sits below a
//! directory others may write, such as /tmp). They are plain glibc callers (getpwnam_r, getgrnam_r,
//! getgrouplist, getpwent, fork), which is exactly what the NSS module must survive.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

use crate::show;

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

fn out_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    // <target>/<profile>/deps/<bin> -> <target>/jit-tests-c
    let target = exe
        .parent()
        .and_then(Path::parent)
        .and_then(Path::parent)
        .expect("test binary under <target>/<profile>/deps");
    if trusted_chain(target) {
        return target.join("jit-tests-c");
    }
    // A checkout under /tmp (or any directory others may write): jitd rightly refuses to give a
    // capability to a program there (tokenize/policy.rs), so the programs go to the tests' cache
    // beside the cached Debian roots, one directory per target dir.
    let key: String = target
        .to_string_lossy()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    PathBuf::from("/var/cache/jit-tests/c").join(key)
}

/// Every directory from `/` to `dir` owned by root and writable by no one else (the rule jitd
/// applies to a program it gives a capability to).
fn trusted_chain(dir: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    dir.ancestors()
        .all(|d| std::fs::metadata(d).is_ok_and(|m| m.uid() == 0 && m.mode() & 0o022 == 0))
}

/// Path of the compiled `tests/fixtures/<name>.c` (compiled on first use).
pub fn program(name: &str) -> PathBuf {
    static BUILT: OnceLock<Mutex<HashMap<String, PathBuf>>> = OnceLock::new();
    let map = BUILT.get_or_init(|| Mutex::new(HashMap::new()));
    let mut m = map.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(p) = m.get(name) {
        return p.clone();
    }
    let src = fixtures_dir().join(format!("{name}.c"));
    let dir = out_dir();
    std::fs::create_dir_all(&dir).expect("mkdir jit-tests-c");
    let out = dir.join(name);
    let tmp = dir.join(format!(".{name}.{}", std::process::id()));
    let o = Command::new("cc")
        .args(["-O2", "-g", "-Wall", "-Wextra", "-Werror", "-pthread", "-o"])
        .arg(&tmp)
        .arg(&src)
        .output()
        .expect("run cc (is a C compiler installed?)");
    assert!(
        o.status.success(),
        "cc {} failed: {}",
        src.display(),
        show(&o)
    );
    std::fs::rename(&tmp, &out).expect("rename compiled program");
    m.insert(name.to_string(), out.clone());
    out
}
