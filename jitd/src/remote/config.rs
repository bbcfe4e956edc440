//! ~/.config/jit/client.toml: server URL, token and pinned fingerprint, written by
//! `jitctl login` with mode 0600; `JIT_SERVER`, `JIT_TOKEN`, `JIT_FINGERPRINT` override it.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Largest client file read.
const MAX_FILE: u64 = 64 * 1024;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientFile {
    /// `https://HOST:PORT`.
    pub server: String,
    /// The person's API token.
    pub token: String,
    /// `SHA256:…` of the server's TLS certificate.
    pub fingerprint: String,
}

/// `$XDG_CONFIG_HOME/jit/client.toml`, else `$HOME/.config/jit/client.toml`.
pub fn path() -> Result<PathBuf, String> {
    if let Some(x) = std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(x).join("jit").join("client.toml"));
    }
    let home = std::env::var_os("HOME")
        .filter(|v| !v.is_empty())
        .ok_or("HOME is not set: cannot find ~/.config/jit/client.toml")?;
    Ok(PathBuf::from(home)
        .join(".config")
        .join("jit")
        .join("client.toml"))
}

/// The file (if any) with the environment's overrides on top; every field must end up set.
pub fn load() -> Result<ClientFile, String> {
    let p = path()?;
    let mut c = match std::fs::File::open(&p) {
        Ok(f) => {
            let meta = f.metadata().map_err(|e| format!("{}: {e}", p.display()))?;
            if meta.permissions().mode() & 0o077 != 0 {
                return Err(format!(
                    "{} is readable by others (mode {:o}); it holds a token: chmod 600 it",
                    p.display(),
                    meta.permissions().mode() & 0o777
                ));
            }
            let mut text = String::new();
            std::io::Read::read_to_string(&mut std::io::Read::take(f, MAX_FILE), &mut text)
                .map_err(|e| format!("{}: {e}", p.display()))?;
            toml::from_str(&text).map_err(|e| format!("{}: {e}", p.display()))?
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => ClientFile::default(),
        Err(e) => return Err(format!("{}: {e}", p.display())),
    };
    for (var, field) in [
        ("JIT_SERVER", &mut c.server),
        ("JIT_TOKEN", &mut c.token),
        ("JIT_FINGERPRINT", &mut c.fingerprint),
    ] {
        if let Ok(v) = std::env::var(var) {
            if !v.is_empty() {
                *field = v;
            }
        }
    }
    if c.server.is_empty() || c.token.is_empty() || c.fingerprint.is_empty() {
        return Err(format!(
            "not logged in: run jitctl login URL --token T --fingerprint SHA256:… (or set JIT_SERVER, JIT_TOKEN, JIT_FINGERPRINT); {} has none",
            p.display()
        ));
    }
    Ok(c)
}

/// Writes the file with mode 0600 (directory 0700), replacing any previous one atomically.
pub fn save(c: &ClientFile) -> Result<PathBuf, String> {
    let p = path()?;
    let dir = p.parent().ok_or("client file has no directory")?;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    let tmp = dir.join(".client.toml.tmp");
    let _ = std::fs::remove_file(&tmp);
    let text = toml::to_string(c).map_err(|e| e.to_string())?;
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| format!("{}: {e}", tmp.display()))?;
    f.write_all(text.as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(|e| format!("{}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, &p).map_err(|e| format!("{}: {e}", p.display()))?;
    Ok(p)
}
