//! Build-script helpers shared by the three native modules (`libnss_jit.so.2`, `pam_jit.so`,
//! `sudo_jit.so`) and jitd's executables. Used from their `build.rs` only; nothing here is
//! linked into them.

use std::path::Path;

/// Links the module's unwinder statically (gcc's `libgcc_eh.a`) instead of recording a
/// dependency on `libgcc_s.so.1`.
///
/// Why: the modules are loaded into processes that do not otherwise load libgcc_s (`id`,
/// `getent`, `ls`, `su`, `login`, `sshd`, `sudo`), and loading it was ~150 µs of the ~200 µs
/// `dlopen` of libnss_jit.so.2 on the build machine: the largest part of what a local user pays
/// for jit per process (bench/results.md, "Scale"). The modules still need an unwinder: every
/// entry point catches panics (`jit_core::ffi::guard`). The static copy's symbols are not
/// exported (the modules export only their entry points), and no unwind ever crosses into the
/// host process, so the host's unwinder, if it has one, and this one never meet.
/// nss_jit's `unwind` test (feature `panic-probe`) shows a panic inside a library linked this
/// way is still caught; scripts/test refuses a module that needs libgcc_s.
///
/// How: Rust's std asks the linker for `-lgcc_s`. A linker script named `libgcc_s.so` in a
/// directory searched before the compiler's own turns that request into `libgcc_eh.a`, which
/// gcc installs with libgcc for `-static-libgcc`. Only the cdylib's link sees the directory
/// (`rustc-cdylib-link-arg`); test binaries and the rlib are linked as usual.
///
/// If the directory cannot be made the module links libgcc_s as before: slower to load, not
/// wrong, and scripts/test reports it.
pub fn link_unwinder_statically(out_dir: &Path) {
    unwinder_dir(out_dir, "cdylib-link-arg");
}

/// The same for the crate's executables (jitd's package: `jitctl`, and `jit-authorized-keys`,
/// which sshd starts at every public-key login): each run otherwise maps and relocates
/// libgcc_s.so.1 before `main`, a few page faults and ~0.1 ms on a slow VM, paid by every
/// `jitctl grant add` and every ssh login; the binaries keep their unwinder (jitd's threads
/// catch panics) in a static copy. Test harnesses and the library are linked as usual.
pub fn link_unwinder_statically_in_bins(out_dir: &Path) {
    unwinder_dir(out_dir, "link-arg-bins");
}

/// Makes the directory and hands it to the linker of the artifacts `directive` names.
fn unwinder_dir(out_dir: &Path, directive: &str) {
    let dir = out_dir.join("static-unwind");
    let made = std::fs::create_dir_all(&dir)
        .and_then(|()| std::fs::write(dir.join("libgcc_s.so"), "INPUT ( -lgcc_eh )\n"));
    if made.is_ok() {
        println!("cargo:rustc-{directive}=-L{}", dir.display());
    }
}
