//! Link flags for the cdylib:
//! * the SONAME glibc and lintian expect;
//! * a version script that exports only the `_nss_jit_*` entry points (everything else, Rust's
//!   and jit_core's symbols and the unwinder's included, stays local to the library);
//! * the unwinder linked in statically instead of a dependency on libgcc_s.so.1
//!   (`jit_build::link_unwinder_statically` says why and how).

use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libnss_jit.so.2");
    let Some(out) = std::env::var_os("OUT_DIR") else {
        // Cargo always sets OUT_DIR for build scripts; without it only the SONAME is applied.
        return;
    };
    let out = PathBuf::from(out);
    let script = out.join("libnss_jit.map");
    let body = "{\n  global: _nss_jit_*;\n  local: *;\n};\n";
    if std::fs::write(&script, body).is_ok() {
        println!(
            "cargo:rustc-cdylib-link-arg=-Wl,--version-script={}",
            script.display()
        );
    }
    jit_build::link_unwinder_statically(&out);
}
