//! Is sudo_jit really guarding sudo on this host? jitd accepts a sudo scope only if it is:
//! the sudoers drop-in gives `jit-sudo` members everything, and only the plugin narrows that to
//! the grant. So `/etc/sudo.conf` must load `sudo_jit`, and the plugin file must be root's and
//! not writable by others (sudo 1.9.13 loads a plugin whatever its owner and mode: DESIGN §5).

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Where sudo looks for plugins named without a path on Debian.
const SUDO_PLUGIN_DIR: &str = "/usr/libexec/sudo";

/// What sudo.conf says about jit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SudoSetup {
    /// The plugin file sudo will load for `sudo_jit`.
    pub plugin: PathBuf,
    /// Whether `Set group_source dynamic` is present.
    pub dynamic_groups: bool,
}

/// Parses sudo.conf text: the `Plugin sudo_jit <path>` line and `Set group_source dynamic`.
pub fn parse(text: &str) -> Option<SudoSetup> {
    let mut plugin = None;
    let mut dynamic_groups = false;
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["Plugin", "sudo_jit", path, ..] => {
                plugin = Some(if path.starts_with('/') {
                    PathBuf::from(path)
                } else {
                    Path::new(SUDO_PLUGIN_DIR).join(path)
                });
            }
            ["Set", "group_source", "dynamic"] => dynamic_groups = true,
            _ => {}
        }
    }
    plugin.map(|plugin| SudoSetup {
        plugin,
        dynamic_groups,
    })
}

/// Checks that sudo loads a trustworthy sudo_jit. `Err` says why not, for the operator.
///
/// # Errors
/// No Plugin line, a missing plugin file, or one that others could replace.
pub fn check(sudo_conf: &Path) -> Result<SudoSetup, String> {
    let text =
        std::fs::read_to_string(sudo_conf).map_err(|e| format!("{}: {e}", sudo_conf.display()))?;
    let setup = parse(&text).ok_or_else(|| {
        format!(
            "{} has no `Plugin sudo_jit sudo_jit.so` line",
            sudo_conf.display()
        )
    })?;
    let m = std::fs::metadata(&setup.plugin)
        .map_err(|e| format!("sudo_jit plugin {}: {e}", setup.plugin.display()))?;
    if m.uid() != 0 || m.mode() & 0o022 != 0 || !m.is_file() {
        return Err(format!(
            "sudo_jit plugin {} must be a root-owned file not writable by group or others (owner {}, mode {:o})",
            setup.plugin.display(),
            m.uid(),
            m.mode() & 0o7777
        ));
    }
    Ok(setup)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_lines() {
        let s = parse("# c\nPlugin sudoers_policy sudoers.so\nPlugin sudo_jit sudo_jit.so timeout=2 # x\nSet group_source dynamic\n").unwrap();
        assert_eq!(s.plugin, PathBuf::from("/usr/libexec/sudo/sudo_jit.so"));
        assert!(s.dynamic_groups);
        let s = parse("Plugin sudo_jit /opt/jit/sudo_jit.so\n").unwrap();
        assert_eq!(s.plugin, PathBuf::from("/opt/jit/sudo_jit.so"));
        assert!(!s.dynamic_groups);
        assert!(parse("#Plugin sudo_jit sudo_jit.so\n").is_none());
        assert!(parse("Plugin sudoers_policy sudoers.so\n").is_none());
    }
}
