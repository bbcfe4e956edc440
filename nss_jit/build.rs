//! Link flags for the cdylib: the SONAME glibc and lintian expect, and a version script that
//! exports only the `_nss_jit_*` entry points (everything else, Rust's and jit_core's symbols
//! included, stays local to the library).

use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libnss_jit.so.2");
    let Some(out) = std::env::var_os("OUT_DIR") else {
        // Cargo always sets OUT_DIR for build scripts; without it only the SONAME is applied.
        return;
    };
    let script = PathBuf::from(out).join("libnss_jit.map");
    let body = "{\n  global: _nss_jit_*;\n  local: *;\n};\n";
    if std::fs::write(&script, body).is_ok() {
        println!(
            "cargo:rustc-cdylib-link-arg=-Wl,--version-script={}",
            script.display()
        );
    }
}
