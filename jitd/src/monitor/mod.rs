//! Watching what a grant's processes do: each grant gets its own cgroup (v2), which its login
//! sessions and sudo commands join and which teardown kills as a whole.

pub mod cgroup;
pub mod events;
pub mod lateral;

/// Local users' homes (name -> home) from the account file.
pub fn homes(passwd: &std::path::Path) -> std::collections::HashMap<String, std::path::PathBuf> {
    std::fs::read_to_string(passwd)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            let (name, home) = (f.first()?, f.get(5)?);
            home.starts_with('/')
                .then(|| (name.to_string(), std::path::PathBuf::from(home)))
        })
        .collect()
}

/// The class name `--revoke-on` accepts for remote logins from a grant's processes.
pub use events::WatchSet;
pub use lateral::CLASS as LATERAL_MOVEMENT;

/// Starts live monitoring when grants have cgroups (membership is what it watches); audits why
/// not otherwise.
pub fn start(
    cfg: &crate::config::Config,
    cgroups: &cgroup::Cgroups,
    now: jit_core::time::UnixTime,
    audit: &crate::audit::Audit,
    wake: &std::sync::Arc<std::sync::Condvar>,
) -> Option<std::sync::Arc<events::Shared>> {
    use crate::audit::{Event, Severity};
    let Some((dir, rel)) = cgroups.dir() else {
        audit.record(
            now,
            Severity::Notice,
            Event::MonitorUnavailable,
            serde_json::json!({ "why": "no per-grant cgroups", "cgroups": cgroups.describe() }),
        );
        return None;
    };
    let mut sensitive: Vec<std::path::PathBuf> = events::DEFAULT_SENSITIVE
        .iter()
        .map(std::path::PathBuf::from)
        .collect();
    sensitive.extend(cfg.sensitive_paths.iter().cloned());
    let settings = events::Settings {
        cgroup_dir: dir,
        cgroup_rel: rel,
        sensitive,
        lateral_ports: cfg.lateral_ports.clone(),
        ioc: cfg.ioc_commands.clone(),
        passwd_file: cfg.passwd_file.clone(),
        marks: cfg.monitor_marks,
    };
    match events::start(settings, std::sync::Arc::clone(wake)) {
        Ok(s) => {
            let problems: Vec<String> = crate::poison::lock(&s.problems)
                .iter()
                .map(|(src, e)| format!("{}: {e}", src.as_str()))
                .collect();
            if !problems.is_empty() {
                // Partly blind: which classes it cannot see is in `jitctl status`, and
                // admission refuses them (effects/watch.rs).
                audit.record(
                    now,
                    Severity::Error,
                    Event::MonitorUnavailable,
                    serde_json::json!({ "why": problems.join("; "), "cgroups": cgroups.describe() }),
                );
            }
            Some(s)
        }
        Err(e) => {
            audit.record(
                now,
                Severity::Error,
                Event::MonitorUnavailable,
                serde_json::json!({ "why": e }),
            );
            None
        }
    }
}
