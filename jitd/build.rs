//! Link flags for jitd's executables: the unwinder linked in statically instead of a
//! dependency on libgcc_s.so.1, so `jitctl` and `jit-authorized-keys` start without loading it
//! (`jit_build::link_unwinder_statically_in_bins` says why and how).

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if let Some(out) = std::env::var_os("OUT_DIR") {
        jit_build::link_unwinder_statically_in_bins(std::path::Path::new(&out));
    }
}
