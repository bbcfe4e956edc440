//! Self-test of the sandbox: inside it nsswitch.conf, passwd and the module are the sandbox's,
//! outside nothing changes, and after drop no mount, directory or process is left behind.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::time::Duration;

use jit_tests::{code, poll, procs, show, stdout, Sandbox};

fn host_state() -> Vec<(String, Option<Vec<u8>>)> {
    let mut v: Vec<(String, Option<Vec<u8>>)> = [
        "/etc/nsswitch.conf",
        "/etc/passwd",
        "/etc/group",
        "/etc/shadow",
        "/etc/ld.so.cache",
        "/var/cache/ldconfig/aux-cache",
        "/etc/nscd.conf",
    ]
    .iter()
    .map(|p| (p.to_string(), std::fs::read(p).ok()))
    .collect();
    for d in [
        "/run/jitd",
        "/var/lib/jitd",
        "/etc/jit",
        "/var/log/jit",
        "/home/alice",
        "/run/nscd/socket",
    ] {
        v.push((d.to_string(), Path::new(d).exists().then(Vec::new)));
    }
    let mut homes: Vec<String> = std::fs::read_dir("/home")
        .map(|rd| {
            rd.filter_map(|e| Some(e.ok()?.file_name().to_string_lossy().into_owned()))
                .collect()
        })
        .unwrap_or_default();
    homes.sort();
    v.push(("/home listing".into(), Some(homes.join(",").into_bytes())));
    v
}

#[test]
fn sandbox_isolates_and_cleans_up() {
    let before = host_state();
    let sb = Sandbox::new();
    let root = sb.root().to_path_buf();
    let ids = sb.ids;

    // Inside: our nsswitch, our users, our module in the cache, our /run and /home.
    let o = sb.sh_ok("grep -E '^(passwd|group):' /etc/nsswitch.conf");
    assert!(
        o.contains("files jit") && o.contains("[SUCCESS=merge] jit"),
        "{o}"
    );
    let o = sb.run(&["getent", "passwd", "dave"]);
    assert_eq!(code(&o), 0, "{}", show(&o));
    let o = sb.run(&["getent", "group", "sudo"]);
    assert!(stdout(&o).trim().ends_with("dave"), "{}", show(&o));
    let o = sb.sh_ok("ls -ld /run/jitd /var/lib/jitd /etc/jit /var/log/jit /run/nscd; ls -A /run/nscd; ls -A /home");
    assert!(
        o.contains("drwx------") && o.contains("carol") && o.contains("dave"),
        "{o}"
    );
    assert!(
        !o.contains("socket"),
        "a host nscd socket must not be visible: {o}"
    );
    // Writes inside stay inside.
    sb.sh_ok(
        "echo 'zed:x:4242:4242::/:/bin/false' >> /etc/passwd; mkdir /home/alice; \
              touch /etc/jit-selftest /var/lib/jitd/x /run/jitd/y",
    );
    // The syslog sink receives (the namespace's /dev/log leads to it where the host has one).
    let sink = root.join("devlog");
    let o = sb.run(&[
        "logger",
        "-d",
        "-u",
        sink.to_str().unwrap(),
        "jit-selftest-syslog",
    ]);
    assert_eq!(code(&o), 0, "{}", show(&o));
    poll(
        "syslog sink got the message",
        Duration::from_secs(5),
        || {
            sb.syslog()
                .iter()
                .any(|l| l.contains("jit-selftest-syslog"))
                .then_some(())
        },
    );
    let sleeper = sb.spawn("sleeper", &["sleep", "1000"]);
    let o = sb.run(&[
        "setpriv",
        "--reuid",
        &ids.carol.to_string(),
        "--regid",
        &ids.carol.to_string(),
        "--clear-groups",
        "sh",
        "-c",
        "setsid sleep 1001 </dev/null >/dev/null 2>&1 &",
    ]);
    assert_eq!(code(&o), 0, "{}", show(&o));
    let carol_sleep = poll("carol's sleep", Duration::from_secs(5), || {
        procs::live_where(|p| p.uid == ids.carol && p.cmdline.contains("sleep 1001"))
            .first()
            .map(|p| p.pid)
    });
    assert!(procs::is_alive(sleeper));
    let during = host_state();
    assert_eq!(before, during, "the host changed while a sandbox was alive");
    let host_ns = std::fs::read_to_string("/etc/nsswitch.conf").unwrap_or_default();
    assert!(!host_ns.contains(" jit"), "host nsswitch.conf mentions jit");

    drop(sb);
    let after = host_state();
    assert_eq!(
        before, after,
        "the host changed after a sandbox was dropped"
    );
    assert!(
        !root.exists(),
        "sandbox root {} left behind",
        root.display()
    );
    let mi = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mi.contains(&*root.to_string_lossy()),
        "mounts of {} left behind:\n{mi}",
        root.display()
    );
    assert!(
        !procs::is_alive(sleeper),
        "process started in the sandbox survived drop"
    );
    assert!(
        !procs::is_alive(carol_sleep),
        "process in the sandbox's uid block survived drop"
    );
    assert!(!Path::new("/etc/jit-selftest").exists());
}
