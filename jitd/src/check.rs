//! `jitd --check-config`: validates the configuration and the host around it, and lists every
//! problem (not just the first) so config management can fix them in one pass.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use jit_core::host::trust::{self, Access};

use crate::config::Config;
use crate::localdb::LocalDb;

fn nsswitch_line<'a>(text: &'a str, db: &str) -> Option<Vec<&'a str>> {
    text.lines()
        .map(|l| l.split('#').next().unwrap_or(""))
        .find_map(|l| {
            l.trim()
                .strip_prefix(db)
                .and_then(|r| r.trim_start().strip_prefix(':'))
        })
        .map(|r| r.split_whitespace().collect())
}

fn check_nsswitch(text: &str, problems: &mut Vec<String>) {
    match nsswitch_line(text, "passwd") {
        Some(srcs) => {
            let files = srcs.iter().position(|s| *s == "files");
            let jit = srcs.iter().position(|s| *s == "jit");
            match (files, jit) {
                (_, None) => problems.push("nsswitch.conf: `passwd:` does not list jit: ephemeral accounts will not resolve (expected `passwd: files jit`)".into()),
                (None, Some(_)) => problems.push("nsswitch.conf: `passwd:` lists jit without files: local accounts must come first".into()),
                (Some(f), Some(j)) if j < f => problems.push("nsswitch.conf: `passwd:` lists jit before files: local accounts must always win".into()),
                _ => {}
            }
        }
        None => problems.push("nsswitch.conf: no `passwd:` line".into()),
    }
    match nsswitch_line(text, "group") {
        Some(srcs) => {
            let joined = srcs.join(" ");
            if !srcs.contains(&"jit") {
                problems.push("nsswitch.conf: `group:` does not list jit (expected `group: files [SUCCESS=merge] jit`)".into());
            } else if !joined.contains("files [SUCCESS=merge] jit") {
                problems.push("nsswitch.conf: `group:` must read `files [SUCCESS=merge] jit` so grants add members to local groups".into());
            }
        }
        None => problems.push("nsswitch.conf: no `group:` line".into()),
    }
}

/// Every broken owner or mode rule of `p` (jit_core's trust check), one problem each.
fn check_owner_mode(p: &Path, what: &str, access: Access, problems: &mut Vec<String>) {
    if let Ok(m) = std::fs::symlink_metadata(p) {
        for v in trust::violations(m.uid(), m.mode(), access) {
            problems.push(format!("{what} {} is {v}", p.display()));
        }
    }
}

/// Directories Linux-PAM loads a bare module name from (Debian's multiarch path first).
const PAM_MODULE_DIRS: &[&str] = &[
    "/lib/x86_64-linux-gnu/security",
    "/usr/lib/x86_64-linux-gnu/security",
    "/lib/aarch64-linux-gnu/security",
    "/usr/lib/aarch64-linux-gnu/security",
    "/lib/security",
    "/usr/lib/security",
    "/lib64/security",
    "/usr/lib64/security",
];

/// The module paths named by `pam_jit.so` lines of one pam.d file (comments dropped).
fn pam_jit_modules(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| l.split('#').next().unwrap_or(""))
        .filter_map(|l| {
            l.split_whitespace()
                .find(|w| w.rsplit('/').next() == Some("pam_jit.so"))
                .map(str::to_string)
        })
        .collect()
}

/// pam.d: every `pam_jit.so` a service names must exist and be root's (Linux-PAM loads a module
/// whatever its owner, and a missing one fails the stack, docs/threat-model.md#p11); managed accounts are enforced
/// only if some service loads pam_jit.
fn check_pam(cfg: &Config, pam_dir: &Path, problems: &mut Vec<String>) {
    let Ok(rd) = std::fs::read_dir(pam_dir) else {
        if !cfg.managed_accounts.is_empty() {
            problems.push(format!(
                "{} is not readable: cannot check that pam_jit enforces managed_accounts",
                pam_dir.display()
            ));
        }
        return;
    };
    let mut services = Vec::new();
    let mut files: Vec<_> = rd.flatten().map(|e| e.path()).collect();
    files.sort();
    for f in files {
        let Ok(text) = std::fs::read_to_string(&f) else {
            continue;
        };
        for module in pam_jit_modules(&text) {
            let svc = f
                .file_name()
                .map_or(String::new(), |n| n.to_string_lossy().into_owned());
            let path = if module.starts_with('/') {
                Some(std::path::PathBuf::from(&module))
            } else {
                PAM_MODULE_DIRS
                    .iter()
                    .map(|d| Path::new(d).join(&module))
                    .find(|p| p.exists())
            };
            match path {
                Some(p) if p.exists() => {
                    check_owner_mode(&p, &format!("pam module (pam.d/{svc})"), Access::ReadableByAll, problems)
                }
                _ => problems.push(format!(
                    "pam.d/{svc} loads {module}, which does not exist: Linux-PAM fails that stack for every user not bypassed before it"
                )),
            }
            services.push(svc);
        }
    }
    if !cfg.managed_accounts.is_empty() && services.is_empty() {
        problems.push(format!(
            "managed_accounts ({}) are not enforced at login: no service in {} loads pam_jit.so",
            cfg.managed_accounts.join(", "),
            pam_dir.display()
        ));
    }
}

/// Every problem found; empty means the host is ready.
pub fn check_host(cfg: &Config, nsswitch: &Path, pam_dir: &Path) -> Vec<String> {
    let mut problems = Vec::new();
    if let Some(src) = &cfg.source {
        check_owner_mode(src, "config", Access::ReadableByAll, &mut problems);
    }
    match std::fs::read_to_string(nsswitch) {
        Ok(t) => check_nsswitch(&t, &mut problems),
        Err(e) => problems.push(format!("{}: {e}", nsswitch.display())),
    }
    match LocalDb::read(&cfg.passwd_file, &cfg.group_file) {
        Ok(local) => {
            for u in &local.users {
                if (cfg.uid_min..=cfg.uid_max).contains(&u.uid) {
                    problems.push(format!(
                        "local user {} has uid {} inside uid_range {}-{}",
                        u.name, u.uid, cfg.uid_min, cfg.uid_max
                    ));
                }
            }
            for g in &local.groups {
                if (cfg.uid_min..=cfg.uid_max).contains(&g.gid) {
                    problems.push(format!(
                        "local group {} has gid {} inside uid_range {}-{}",
                        g.name, g.gid, cfg.uid_min, cfg.uid_max
                    ));
                }
                for own in [&cfg.group_users, &cfg.group_sudo, &cfg.group_mfa] {
                    if &g.name == own {
                        problems.push(format!(
                            "local group {own} exists, but jit provides that group itself"
                        ));
                    }
                }
            }
            for m in &cfg.managed_accounts {
                if local.user(m).is_none() {
                    problems.push(format!(
                        "managed account {m} does not exist in {}",
                        cfg.passwd_file.display()
                    ));
                }
            }
        }
        Err(e) => problems.push(format!(
            "cannot read {} / {}: {e}",
            cfg.passwd_file.display(),
            cfg.group_file.display()
        )),
    }
    check_owner_mode(&cfg.state_dir, "state_dir", Access::RootOnly, &mut problems);
    if let Some(d) = cfg.snapshot_path.parent() {
        check_owner_mode(
            d,
            "snapshot directory",
            Access::ReadableByAll,
            &mut problems,
        );
    }
    // sudo loads a plugin whatever its owner and mode (1.9.13): if sudo.conf names sudo_jit, the
    // file must be root's and not writable by others, and must exist (a Plugin line naming a
    // missing file breaks sudo for everyone).
    if let Ok(text) = std::fs::read_to_string(&cfg.sudo_conf) {
        if crate::sudoconf::parse(&text).is_some() {
            if let Err(e) = crate::sudoconf::check(&cfg.sudo_conf) {
                problems.push(e);
            }
        }
    }
    // Without sudo's intercept for jit-sudo, a program a grant allows runs what it starts
    // (find -exec, a pager's !sh) as root without sudo_jit seeing it.
    let plugin_loaded =
        std::fs::read_to_string(&cfg.sudo_conf).is_ok_and(|t| crate::sudoconf::parse(&t).is_some());
    if let Err(e) = crate::sudoconf::check_intercept(
        &cfg.sudo_conf,
        plugin_loaded,
        &cfg.group_sudo,
        cfg.gid_sudo(),
    ) {
        problems.push(e);
    }
    check_pam(cfg, pam_dir, &mut problems);
    crate::nscd::check_config(
        Path::new(crate::nscd::NSCD_CONF),
        crate::nscd::present(),
        &mut problems,
    );
    crate::sweep::check_paths(&cfg.sweep_paths, &mut problems);
    if !cfg.skel.is_dir() {
        problems.push(format!(
            "skel {} is not a directory (homes will be created empty)",
            cfg.skel.display()
        ));
    }
    if !Path::new(&cfg.shell).exists() {
        problems.push(format!("shell {} does not exist", cfg.shell));
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sudo_plugin_file_is_checked_when_sudo_conf_names_it() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("jitd-check-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let plugin = dir.join("sudo_jit.so");
        let conf = dir.join("sudo.conf");
        std::fs::write(&conf, format!("Plugin sudo_jit {}\n", plugin.display())).unwrap();
        let cfg = Config::parse(&format!("sudo_conf = \"{}\"", conf.display()), None).unwrap();
        let sudo_problems = |cfg: &Config| {
            check_host(cfg, Path::new("/nonexistent"), Path::new("/nonexistent"))
                .into_iter()
                .filter(|p| p.contains("sudo_jit"))
                .count()
        };
        assert_eq!(sudo_problems(&cfg), 1, "missing plugin file");
        std::fs::write(&plugin, b"x").unwrap();
        std::fs::set_permissions(&plugin, std::fs::Permissions::from_mode(0o666)).unwrap();
        assert_eq!(sudo_problems(&cfg), 1, "plugin writable by others");
        std::fs::set_permissions(&plugin, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(sudo_problems(&cfg), 0);
        std::fs::write(&conf, "Plugin sudoers_policy sudoers.so\n").unwrap();
        assert_eq!(sudo_problems(&cfg), 0, "no sudo_jit line: nothing to check");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn pam_modules_must_exist_and_be_roots_and_managed_accounts_need_pam_jit() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("jitd-check-pam-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let pamd = dir.join("pam.d");
        std::fs::create_dir_all(&pamd).unwrap();
        let module = dir.join("pam_jit.so");
        let cfg = Config::parse(r#"managed_accounts = ["opsadmin"]"#, None).unwrap();
        let pam_problems = |cfg: &Config| -> Vec<String> {
            let mut p = Vec::new();
            check_pam(cfg, &pamd, &mut p);
            p
        };
        std::fs::write(pamd.join("sshd"), "auth required pam_unix.so\n").unwrap();
        let p = pam_problems(&cfg);
        assert!(p.len() == 1 && p[0].contains("not enforced"), "{p:?}");
        std::fs::write(
            pamd.join("sshd"),
            format!(
                "# auth sufficient pam_jit.so in a comment does not count\naccount required {} timeout=2\n",
                module.display()
            ),
        )
        .unwrap();
        let p = pam_problems(&cfg);
        assert!(p.len() == 1 && p[0].contains("does not exist"), "{p:?}");
        std::fs::write(&module, b"x").unwrap();
        std::fs::set_permissions(&module, std::fs::Permissions::from_mode(0o666)).unwrap();
        let p = pam_problems(&cfg);
        assert!(
            p.len() == 1 && p[0].contains("0666: writable by group or others"),
            "{p:?}"
        );
        std::fs::set_permissions(&module, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(pam_problems(&cfg).is_empty());
        assert_eq!(
            pam_jit_modules("session [default=1] pam_jit.so debug\n#account required pam_jit.so\nauth required pam_unix.so\n"),
            ["pam_jit.so"]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn nsswitch_rules() {
        let mut p = Vec::new();
        check_nsswitch(
            "passwd: files jit systemd\ngroup: files [SUCCESS=merge] jit systemd\n",
            &mut p,
        );
        assert!(p.is_empty(), "{p:?}");
        for bad in [
            "passwd: files systemd\ngroup: files [SUCCESS=merge] jit\n",
            "passwd: jit files\ngroup: files [SUCCESS=merge] jit\n",
            "passwd: files jit\ngroup: files jit\n",
            "group: files [SUCCESS=merge] jit\n",
        ] {
            let mut p = Vec::new();
            check_nsswitch(bad, &mut p);
            assert!(!p.is_empty(), "{bad:?}");
        }
    }
}
