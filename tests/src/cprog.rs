//! Compiles the C load programs in `tests/fixtures/*.c` with the system `cc`, once per test
//! binary, into the cargo target dir. They are plain glibc callers (getpwnam_r, getgrnam_r,
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
    target.join("jit-tests-c")
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
