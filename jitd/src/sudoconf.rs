//! Is sudo_jit really guarding sudo on this host? jitd accepts a sudo scope only if it is:
//! the sudoers drop-in gives `jit-sudo` members everything, and only the plugin narrows that to
//! the grant. So `/etc/sudo.conf` must load `sudo_jit`, and the plugin file must be root's and
//! not writable by others (sudo 1.9.13 loads a plugin whatever its owner and mode: docs/design.md#traps).

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use jit_core::host::trust::{self, Access};

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
    if trust::check_metadata(&m, Access::ReadableByAll).is_err() || !m.is_file() {
        return Err(format!(
            "sudo_jit plugin {} must be a root-owned file not writable by group or others (owner {}, mode {:o})",
            setup.plugin.display(),
            m.uid(),
            m.mode() & 0o7777
        ));
    }
    Ok(setup)
}

/// What the sudoers files say about sudo's `intercept` for the members of jit's sudo group.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Intercept {
    /// Some rule line (not a `Defaults`) names the group: the drop-in is installed.
    pub rule_for_group: bool,
    /// `intercept` is on for the group's members (a global or a group `Defaults` sets it and
    /// nothing more specific turns it off).
    pub on: bool,
    /// `log_subcmds` is on for them (recommended, not required).
    pub log_subcmds: bool,
}

/// Whether a `Defaults:` user list names the group (`%name`, `%#gid`) or `ALL`.
fn list_covers(list: &str, group: &str, gid: u32) -> bool {
    list.split(',')
        .map(str::trim)
        .any(|u| u == "ALL" || u.strip_prefix('%') == Some(group) || u == format!("%#{gid}"))
}

/// The boolean settings a `Defaults` line sets: `("intercept", true)`, `("intercept", false)`
/// for `!intercept`; values (`name=value`) are skipped.
fn flags(settings: &str) -> impl Iterator<Item = (&str, bool)> {
    settings
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty() && !s.contains('='))
        .map(|s| match s.strip_prefix('!') {
            Some(n) => (n.trim(), false),
            None => (s, true),
        })
}

/// Reads sudoers text (files in sudo's order, already concatenated) and says whether the
/// members of `group` (gid `gid`) run under `intercept`. sudoers applies global `Defaults`
/// first and user `Defaults` after, whatever their order in the files, so a group line wins
/// over a global one; a host, run-as or command `Defaults` that turns `intercept` off makes
/// the answer "off" (it may apply here), one that turns it on is not counted on.
pub fn parse_intercept(text: &str, group: &str, gid: u32) -> Intercept {
    let mut global = (None, None);
    let mut user = (None, None);
    let mut negated_elsewhere = false;
    let mut rule_for_group = false;
    // Continuation lines end in a backslash.
    let joined = text.replace("\\\n", " ");
    for line in joined.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with('@') {
            continue;
        }
        let Some(rest) = line.strip_prefix("Defaults") else {
            let first = line.split_whitespace().next().unwrap_or("");
            if list_covers(first, group, gid) && first != "ALL" {
                rule_for_group = true;
            }
            continue;
        };
        let (target, settings) = match rest.chars().next() {
            Some(c @ (':' | '@' | '>' | '!')) => {
                let body = &rest[1..];
                let (list, settings) = body.split_once(char::is_whitespace).unwrap_or((body, ""));
                (Some((c, list)), settings)
            }
            _ => (None, rest),
        };
        for (name, value) in flags(settings) {
            let slot = match name {
                "intercept" => 0,
                "log_subcmds" => 1,
                _ => continue,
            };
            match target {
                None => {
                    if slot == 0 {
                        global.0 = Some(value);
                    } else {
                        global.1 = Some(value);
                    }
                }
                Some((':', list)) if list_covers(list, group, gid) => {
                    if slot == 0 {
                        user.0 = Some(value);
                    } else {
                        user.1 = Some(value);
                    }
                }
                Some((':', _)) => {}
                Some(_) => {
                    if slot == 0 && !value {
                        negated_elsewhere = true;
                    }
                }
            }
        }
    }
    Intercept {
        rule_for_group,
        on: !negated_elsewhere && user.0.or(global.0) == Some(true),
        log_subcmds: user.1.or(global.1) == Some(true),
    }
}

/// The sudoers text sudo reads: `sudoers` next to `sudo_conf`, then the files of
/// `sudoers.d` there in name order (sudo skips names containing `.` or ending in `~`).
fn read_sudoers(sudo_conf: &Path) -> String {
    let dir = sudo_conf.parent().unwrap_or(Path::new("/etc"));
    let mut text = std::fs::read_to_string(dir.join("sudoers")).unwrap_or_default();
    if let Ok(rd) = std::fs::read_dir(dir.join("sudoers.d")) {
        let mut files: Vec<PathBuf> = rd
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| !n.contains('.') && !n.ends_with('~'))
            })
            .collect();
        files.sort();
        for f in files {
            if let Ok(t) = std::fs::read_to_string(&f) {
                text.push('\n');
                text.push_str(&t);
            }
        }
    }
    text
}

/// `jitd --check-config`: with the sudoers rule for `group` installed or sudo_jit loaded, its
/// members must run under sudo's `intercept`, or an allowed program that starts others
/// (`find -exec`, a pager's `!sh`, an editor's shell escape) runs them as root unchecked:
/// intercept hands every command such a program starts to sudo_jit, which refuses what is
/// outside the grant. `Err` says what to add.
///
/// # Errors
/// The sudoers files next to `sudo_conf` do not turn `intercept` on for the group.
pub fn check_intercept(
    sudo_conf: &Path,
    plugin_loaded: bool,
    group: &str,
    gid: u32,
) -> Result<(), String> {
    let i = parse_intercept(&read_sudoers(sudo_conf), group, gid);
    if (i.rule_for_group || plugin_loaded) && !i.on {
        let dir = sudo_conf.parent().unwrap_or(Path::new("/etc"));
        return Err(format!(
            "sudoers ({}/sudoers, {}/sudoers.d): members of {group} do not run under sudo's intercept: \
             add `Defaults:%{group} intercept, log_subcmds` to the jit drop-in, or an allowed \
             program that starts others (find -exec, a pager's !sh) runs them as root unchecked",
            dir.display(),
            dir.display()
        ));
    }
    Ok(())
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

    #[test]
    fn intercept_for_the_jit_sudo_group() {
        let rule = "%jit-sudo ALL=(ALL:ALL) NOPASSWD: ALL\n";
        let on = |t: &str| parse_intercept(t, "jit-sudo", 79998).on;
        let i = parse_intercept(rule, "jit-sudo", 79998);
        assert!(i.rule_for_group && !i.on && !i.log_subcmds);
        let i = parse_intercept(
            &format!("Defaults:%jit-sudo intercept, log_subcmds\n{rule}"),
            "jit-sudo",
            79998,
        );
        assert!(i.rule_for_group && i.on && i.log_subcmds);
        assert!(on("Defaults intercept\n"));
        assert!(on("Defaults:%#79998 intercept\n"));
        assert!(on("Defaults:alice,%jit-sudo\tintercept\n"));
        assert!(on(
            "Defaults:%jit-sudo !intercept\nDefaults:%jit-sudo intercept\n"
        ));
        assert!(on("Defaults\\\n  intercept\n"), "continuation line");
        // A group line wins over a global one whatever the order; other users do not count.
        assert!(!on("Defaults:%jit-sudo !intercept\nDefaults intercept\n"));
        assert!(on("Defaults:%jit-sudo intercept\nDefaults !intercept\n"));
        assert!(!on("Defaults:%sudo intercept\n"));
        assert!(!on("Defaults:%jit-sudoers intercept\n"));
        assert!(!on("# Defaults:%jit-sudo intercept\n"));
        assert!(!on("Defaults:%jit-sudo intercept_type=trace\n"));
        // Turned off for some host, target or command: may apply here.
        assert!(!on("Defaults intercept\nDefaults>root !intercept\n"));
        assert!(!on(
            "Defaults intercept\nDefaults!/usr/bin/find !intercept\n"
        ));
        assert!(!on(
            "Defaults:%jit-sudo intercept\nDefaults@host1 !intercept\n"
        ));
        assert!(!parse_intercept("%sudo ALL=(ALL) ALL\n", "jit-sudo", 1).rule_for_group);
    }

    #[test]
    fn check_intercept_reads_the_files_next_to_sudo_conf() {
        let dir = std::env::temp_dir().join(format!("jitd-sudoers-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("sudoers.d")).unwrap();
        let conf = dir.join("sudo.conf");
        std::fs::write(dir.join("sudoers"), "@includedir sudoers.d\n").unwrap();
        assert!(
            check_intercept(&conf, false, "jit-sudo", 7).is_ok(),
            "nothing for jit"
        );
        let e = check_intercept(&conf, true, "jit-sudo", 7).unwrap_err();
        assert!(e.contains("Defaults:%jit-sudo intercept"), "{e}");
        std::fs::write(
            dir.join("sudoers.d/jit"),
            "%jit-sudo ALL=(ALL:ALL) NOPASSWD: ALL\n",
        )
        .unwrap();
        assert!(check_intercept(&conf, false, "jit-sudo", 7).is_err());
        // sudo skips names with a dot: a line there does not count.
        std::fs::write(
            dir.join("sudoers.d/jit.bak"),
            "Defaults:%jit-sudo intercept\n",
        )
        .unwrap();
        assert!(check_intercept(&conf, false, "jit-sudo", 7).is_err());
        std::fs::write(
            dir.join("sudoers.d/jit"),
            "Defaults:%jit-sudo intercept, log_subcmds\n%jit-sudo ALL=(ALL:ALL) NOPASSWD: ALL\n",
        )
        .unwrap();
        assert!(check_intercept(&conf, true, "jit-sudo", 7).is_ok());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
