//! The plugin is loaded into every `sudo`: its unwinder is linked in statically instead of a
//! dependency on libgcc_s.so.1, which sudo does not otherwise load
//! (`jit_build::link_unwinder_statically` says why and how).

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if let Some(out) = std::env::var_os("OUT_DIR") {
        jit_build::link_unwinder_statically(std::path::Path::new(&out));
    }
}
