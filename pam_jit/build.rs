//! Lets `-lpam` (from pam-bindings' `#[link(name = "pam")]`) resolve on hosts that have the
//! PAM runtime but not the development package: Debian ships the `libpam.so` link-time name
//! only in `libpam0g-dev`, which a build or CI machine need not carry. If no `libpam.so` is
//! found in the usual directories, a `libpam.so` symlink to the runtime `libpam.so.0` is made
//! in `OUT_DIR` and added to the link search path. The module still records `libpam.so.0`
//! (the library's SONAME) as its dependency, exactly as with the development package.
//!
//! Also links the module's unwinder statically instead of a dependency on libgcc_s.so.1
//! (`jit_build::link_unwinder_statically` says why and how).

use std::path::{Path, PathBuf};

fn lib_dirs() -> Vec<PathBuf> {
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    let abi = if env.is_empty() {
        "gnu".to_string()
    } else {
        env
    };
    let multiarch = format!("{arch}-linux-{abi}");
    [
        format!("/usr/lib/{multiarch}"),
        format!("/lib/{multiarch}"),
        "/usr/lib64".to_string(),
        "/lib64".to_string(),
        "/usr/lib".to_string(),
        "/lib".to_string(),
    ]
    .into_iter()
    .map(PathBuf::from)
    .collect()
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    // Loaded into sshd, su and login, none of which loads libgcc_s otherwise.
    if let Some(out) = std::env::var_os("OUT_DIR") {
        jit_build::link_unwinder_statically(Path::new(&out));
    }
    let dirs = lib_dirs();
    if dirs.iter().any(|d| d.join("libpam.so").exists()) {
        return;
    }
    let Some(runtime) = dirs
        .iter()
        .map(|d| d.join("libpam.so.0"))
        .find(|p| p.exists())
    else {
        // Neither: the linker reports the missing -lpam itself.
        return;
    };
    let Some(out) = std::env::var_os("OUT_DIR").map(PathBuf::from) else {
        return;
    };
    let link_dir = out.join("pam-link");
    let link = link_dir.join("libpam.so");
    if std::fs::create_dir_all(&link_dir).is_err() {
        return;
    }
    if std::fs::symlink_metadata(&link).is_ok() && std::fs::remove_file(&link).is_err() {
        return;
    }
    if std::os::unix::fs::symlink(Path::new(&runtime), &link).is_ok() {
        println!("cargo:rustc-link-search=native={}", link_dir.display());
    }
}
