//! What a proc connector or fanotify event means for a grant: membership (fork, exit), a
//! classified exec, a sensitive open or a write to an account, sudo, key or package file.

use super::*;

pub(super) enum ProcEvent {
    Fork { parent: i32, child: i32 },
    Exec { pid: i32 },
    Exit { pid: i32 },
}

pub(super) fn on_proc_event(
    st: &Settings,
    shared: &Shared,
    watched: &WatchSet,
    state: &mut State,
    ev: ProcEvent,
) {
    match ev {
        ProcEvent::Fork { parent, child } => {
            let g = state
                .members
                .get(&parent)
                .map(|m| (m.grant.clone(), m.cmdline.clone(), m.classified));
            if let Some((grant, cmdline, classified)) = g {
                state.members.insert(
                    child,
                    Member {
                        grant,
                        since: Instant::now(),
                        exited: None,
                        cmdline,
                        // Until it execs, the child runs its parent's program.
                        classified,
                    },
                );
            }
        }
        ProcEvent::Exit { pid } => {
            if let Some(m) = state.members.get_mut(&pid) {
                m.exited = Some(Instant::now());
            }
            state.left_reported.remove(&pid);
        }
        ProcEvent::Exec { pid } => {
            // After lost events, a process whose fork was not seen is still found by its
            // cgroup (not otherwise: a /proc read per exec of the whole host would slow the
            // loop enough to miss short-lived members' command lines).
            let lost_lately = state
                .lost_at
                .is_some_and(|t| t.elapsed() < Duration::from_secs(5));
            if !lost_lately && !state.members.contains_key(&pid) {
                return;
            }
            if let std::collections::hash_map::Entry::Vacant(e) = state.members.entry(pid) {
                let Some(grant) = grant_of_cgroup(st, &cgroup_of(pid)) else {
                    return;
                };
                if !watched.contains(&grant) {
                    return;
                }
                e.insert(Member {
                    grant,
                    since: Instant::now(),
                    exited: None,
                    cmdline: String::new(),
                    classified: false,
                });
            }
            classify_member(st, shared, watched, state, pid);
        }
    }
}

/// Classifies what member `pid` runs now (its exec, or a rescan after lost events): a
/// remote-login client is `lateral-movement`; the sudo classifier gives the other classes.
pub(super) fn classify_member(
    st: &Settings,
    shared: &Shared,
    watched: &WatchSet,
    state: &mut State,
    pid: i32,
) {
    let exe = std::fs::read_link(format!("/proc/{pid}/exe"))
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let args = cmdline_args(pid);
    let line: String = args.join(" ").chars().take(4096).collect();
    if let Some(m) = state.members.get_mut(&pid) {
        m.classified = true;
        if !line.is_empty() {
            m.cmdline.clone_from(&line);
        }
    }
    let Some(w) = state.members.get(&pid).and_then(|m| watched.get(&m.grant)) else {
        return;
    };
    let command = if exe.is_empty() {
        args.first().cloned().unwrap_or_default()
    } else {
        exe.clone()
    };
    let mut classes: Vec<&str> = Vec::new();
    if lateral::is_client(&command) {
        classes.push(lateral::CLASS);
    }
    let argv: Vec<&str> = args.iter().skip(1).map(String::as_str).collect();
    let (uid, _) = proc_identity(pid);
    let req = SudoRequest::new(&w.user, uid.unwrap_or(u32::MAX), &command, &argv);
    let extra: Vec<&str> = st.ioc.iter().map(String::as_str).collect();
    let bits = classify::classify(&req, &extra);
    classes.extend(classify::class_names(bits));
    for c in classes {
        push(
            shared,
            w,
            c,
            pid,
            format!("exec {}", jit_core::policy::sudo::shown(&command, 512)),
            &line,
        );
    }
}

/// The class of a file event on `path`, for grant `w`.
pub(super) fn file_class(w: &Watched, mask: u64, path: &Path) -> Option<&'static str> {
    let s = path.to_str()?;
    if mask & libc::FAN_OPEN != 0 {
        return Some("sensitive-read");
    }
    let name = path.file_name()?.to_str()?;
    let parent = path.parent()?.to_str()?;
    const ACCOUNT: &[&str] = &[
        "passwd",
        "shadow",
        "group",
        "gshadow",
        "subuid",
        "subgid",
        "sudoers",
        "npasswd",
        "nshadow",
        "ngroup",
        "ptmp",
        "gtmp",
        ".pwd.lock",
    ];
    if parent == "/etc" && ACCOUNT.iter().any(|a| name.starts_with(a)) {
        return Some("account-change");
    }
    if parent == "/etc/sudoers.d" {
        return Some("account-change");
    }
    if name.starts_with("authorized_keys") && parent.ends_with("/.ssh") {
        let own = w.own_ssh(path);
        return (!own).then_some("account-change");
    }
    if s.starts_with("/var/lib/dpkg/") || s.starts_with("/var/lib/rpm/") {
        return Some("software-install");
    }
    for d in [
        "/usr/bin",
        "/usr/sbin",
        "/bin",
        "/sbin",
        "/usr/local/bin",
        "/usr/local/sbin",
    ] {
        if parent == d {
            return Some("software-install");
        }
    }
    None
}

pub(super) fn on_file_event(
    shared: &Shared,
    watched: &WatchSet,
    state: &State,
    pid: i32,
    mask: u64,
    fd: libc::c_int,
) {
    let Some(m) = state.members.get(&pid) else {
        return;
    };
    let Some(w) = watched.get(&m.grant) else {
        return;
    };
    // Only a member's event costs a readlink (a build outside any grant writes thousands).
    let path = std::fs::read_link(format!("/proc/self/fd/{fd}")).unwrap_or_default();
    let path = path.as_path();
    if let Some(c) = file_class(w, mask, path) {
        let verb = if mask & libc::FAN_OPEN != 0 {
            "open"
        } else {
            "write"
        };
        push(
            shared,
            w,
            c,
            pid,
            format!(
                "{verb} {}",
                jit_core::policy::sudo::shown(&path.display().to_string(), 512)
            ),
            &m.cmdline,
        );
    }
}
