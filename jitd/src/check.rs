//! `jitd --check-config`: validates the configuration and the host around it, and lists every
//! problem (not just the first) so config management can fix them in one pass.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

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

fn check_owner_mode(p: &Path, what: &str, forbidden: u32, problems: &mut Vec<String>) {
    if let Ok(m) = std::fs::symlink_metadata(p) {
        if m.uid() != 0 {
            problems.push(format!(
                "{what} {} is owned by uid {}, not root",
                p.display(),
                m.uid()
            ));
        }
        if m.mode() & forbidden != 0 {
            problems.push(format!(
                "{what} {} has mode {:o}; bits {:o} must be clear",
                p.display(),
                m.mode() & 0o7777,
                forbidden
            ));
        }
    }
}

/// Every problem found; empty means the host is ready.
pub fn check_host(cfg: &Config, nsswitch: &Path) -> Vec<String> {
    let mut problems = Vec::new();
    if let Some(src) = &cfg.source {
        check_owner_mode(src, "config", 0o022, &mut problems);
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
    check_owner_mode(&cfg.state_dir, "state_dir", 0o077, &mut problems);
    if let Some(d) = cfg.snapshot_path.parent() {
        check_owner_mode(d, "snapshot directory", 0o022, &mut problems);
    }
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
