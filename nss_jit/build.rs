//! Link flags for the cdylib:
//! * the SONAME glibc and lintian expect;
//! * a version script that exports only the `_nss_jit_*` entry points (everything else, Rust's
//!   and jit_core's symbols included, stays local to the library);
//! * the unwinder linked in statically (libgcc_eh) instead of a dependency on libgcc_s.so.1.
//!
//! Why the last one: this library is loaded into every process that resolves a name, and most
//! of them (`id`, `ls -l`, `ps`, `getent`) do not otherwise load libgcc_s. Loading it cost
//! ~150 µs of the ~200 µs dlopen of the module on the build machine (bench/results.md "Scale"):
//! the largest part of what a local user pays for jit in a short-lived process. The module
//! still needs an unwinder: every entry point catches panics (`jit_core::ffi::guard`). The
//! static copy is local to the library (the version script hides its symbols); no unwind ever
//! crosses into the host process, so the host's own unwinder and this one never meet. The
//! `unwind` integration test (feature `panic-probe`) shows a panic inside the built library is
//! still caught, and scripts/test checks that libgcc_s is not a dependency.
//!
//! Rust's std asks the linker for `-lgcc_s`; a linker script named `libgcc_s.so` in a directory
//! searched before the compiler's own turns that request into the static `libgcc_eh.a`, which
//! gcc installs with libgcc for `-static-libgcc`. Only the cdylib's link sees the directory.

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
    let unwind = out.join("static-unwind");
    let redirected = std::fs::create_dir_all(&unwind)
        .and_then(|()| std::fs::write(unwind.join("libgcc_s.so"), "INPUT ( -lgcc_eh )\n"));
    // Without the directory the module links libgcc_s as before (slower to load, not wrong);
    // scripts/test refuses such a build.
    if redirected.is_ok() {
        println!("cargo:rustc-cdylib-link-arg=-L{}", unwind.display());
    }
}
