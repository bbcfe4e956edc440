# Sourced by the benches that build (bench/run, scale, add, expiry, sudo, pam, tokenize): finds
# cargo when `sudo` reset PATH to its secure_path, which drops the ~/.cargo/bin of the user who
# installed the toolchain (and of root), and points rustup at that user's toolchains.
find_cargo() {
    local home d
    home=$(getent passwd "${SUDO_USER:-root}" | cut -d: -f6)
    if ! command -v cargo >/dev/null; then
        for d in ${CARGO_HOME:+"$CARGO_HOME/bin"} ${home:+"$home/.cargo/bin"} /root/.cargo/bin; do
            if [ -x "$d/cargo" ]; then
                PATH=$d:$PATH
                export PATH
                break
            fi
        done
    fi
    if [ -z "${RUSTUP_HOME:-}" ] && [ -n "$home" ] && [ -d "$home/.rustup" ] && [ ! -d "$HOME/.rustup" ]; then
        export RUSTUP_HOME=$home/.rustup
    fi
    command -v cargo >/dev/null || {
        echo "cargo not found (install the Rust toolchain of rust-toolchain.toml)" >&2
        exit 1
    }
}
find_cargo
