//! Shared set-up for the daemon-core tests: private temp files for passwd, group, state,
//! snapshot, audit and homes, and small request helpers.

#![allow(dead_code)] // each test binary uses its own subset

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use jit_proto::message::Payload;
use jit_proto::{ErrorCode, Grant, GrantSpec, Request, Response};
use jitd::config::Config;
use jitd::daemon::Daemon;

pub const T0: i64 = 1_900_000_000;

pub struct Env {
    pub dir: PathBuf,
}

impl Env {
    pub fn new(tag: &str) -> Env {
        let dir = std::env::temp_dir().join(format!("jitd-core-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for d in ["state", "run", "log", "home", "skel"] {
            std::fs::create_dir_all(dir.join(d)).unwrap();
        }
        std::fs::write(
            dir.join("passwd"),
            "root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1::/:/usr/sbin/nologin\ncarol:x:1001:1001::/home/carol:/bin/bash\nDave:x:1002:1002::/home/Dave:/bin/bash\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("group"),
            "root:x:0:\nsudo:x:27:carol\nadm:x:4:\ncarol:x:1001:\nDave:x:1002:\ndevs:x:50:\n",
        )
        .unwrap();
        std::fs::write(dir.join("skel/.profile"), "# profile\n").unwrap();
        Env { dir }
    }

    pub fn config(&self) -> Config {
        self.config_with("")
    }

    /// The test configuration plus extra TOML lines (top-level keys only).
    pub fn config_with(&self, extra: &str) -> Config {
        let d = self.dir.display();
        Config::parse(
            &format!(
                r#"
                uid_range = "4100000-4100099"
                max_grant = "2h"
                kill_grace = "100ms"
                nscd = "off"
                home_root = "{d}/home"
                skel = "{d}/skel"
                state_dir = "{d}/state"
                snapshot_path = "{d}/run/snapshot"
                socket_path = "{d}/run/jitd.sock"
                audit_log = "{d}/log/audit.jsonl"
                passwd_file = "{d}/passwd"
                group_file = "{d}/group"
                sudo_conf = "{d}/sudo.conf"
                cgroup_dir = "off"
                certify_suid_roots = ["{d}"]
                {extra}
                "#
            ),
            None,
        )
        .unwrap()
    }

    pub fn daemon(&self, now: i64) -> Daemon {
        let d = Daemon::open(self.config(), now).unwrap();
        d.tick(now);
        d
    }

    /// A daemon on `config_with(extra)`.
    pub fn daemon_with(&self, now: i64, extra: &str) -> Daemon {
        let d = Daemon::open(self.config_with(extra), now).unwrap();
        d.tick(now);
        d
    }

    /// A sudo.conf that loads a root-owned sudo_jit, so sudo scopes are accepted.
    pub fn install_sudo_conf(&self) {
        let plugin = self.path("sudo_jit.so");
        std::fs::write(&plugin, b"stands in for the plugin file").unwrap();
        std::fs::set_permissions(&plugin, std::os::unix::fs::PermissionsExt::from_mode(0o644))
            .unwrap();
        std::fs::write(
            self.path("sudo.conf"),
            format!("Plugin sudo_jit {}\n", plugin.display()),
        )
        .unwrap();
    }

    /// The whole image the modules decide on: the root-only gates file next to the snapshot,
    /// with the delta of grants added since it was written read over it (as one image).
    pub fn snapshot(&self) -> Vec<u8> {
        self.layered("run/gates")
    }

    /// The world-readable snapshot (NSS and jit-authorized-keys), with its delta, as one image.
    pub fn public_snapshot(&self) -> Vec<u8> {
        self.layered("run/snapshot")
    }

    fn layered(&self, base: &str) -> Vec<u8> {
        let bytes = std::fs::read(self.dir.join(base)).unwrap();
        let delta = std::fs::read(self.dir.join(format!("{base}.delta"))).ok();
        jit_core::snapshot::file::merged_image(&bytes, delta.as_deref()).unwrap_or(bytes)
    }

    pub fn audit(&self) -> String {
        std::fs::read_to_string(self.dir.join("log/audit.jsonl")).unwrap()
    }

    pub fn path(&self, p: &str) -> PathBuf {
        self.dir.join(p)
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs teardown passes at `now` until none waits: a teardown's home and record follow its
/// set-id sweep, which runs on a thread of its own and is waited for at most 0.2 s per pass
/// (on a slow machine the walk over /tmp alone takes longer). Bounded: 60 s.
pub fn settle(d: &Daemon, now: i64) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while d.tick(now) == Some(now) {
        assert!(
            std::time::Instant::now() < deadline,
            "teardowns still waiting after 60 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

pub fn spec(user: &str, secs: i64) -> GrantSpec {
    GrantSpec {
        user: user.into(),
        duration_secs: secs,
        account: true,
        ..Default::default()
    }
}

pub fn add(d: &Daemon, s: GrantSpec, now: i64) -> Result<Grant, (ErrorCode, String)> {
    match d.handle(0, Request::AddGrant { spec: Box::new(s) }, now) {
        Response::Ok {
            payload: Payload::Grant(g),
            ..
        } => Ok(*g),
        Response::Error { code, message, .. } => Err((code, message)),
        other => panic!("unexpected {other:?}"),
    }
}

pub fn exists(p: &Path) -> bool {
    p.exists()
}

pub fn oathtool(secret: &str, t: i64) -> String {
    use std::io::Write;
    let mut child = std::process::Command::new("oathtool")
        .args(["--totp", "-b", "-N", &format!("@{t}"), "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("oathtool (apt-get install oathtool)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{secret}\n").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

pub fn activate(
    d: &Daemon,
    uid: u32,
    code: &str,
    now: i64,
) -> Result<Vec<String>, (ErrorCode, String)> {
    match d.handle(
        uid,
        Request::Activate {
            grant: None,
            code: code.into(),
        },
        now,
    ) {
        Response::Ok {
            payload: Payload::Activated { grants },
            ..
        } => Ok(grants),
        Response::Error { code, message, .. } => Err((code, message)),
        other => panic!("unexpected {other:?}"),
    }
}

pub fn sleeper(uid: Option<u32>) -> Child {
    let mut c = match uid {
        Some(u) => {
            let mut c = Command::new("setpriv");
            c.args([
                &format!("--reuid={u}"),
                &format!("--regid={u}"),
                "--clear-groups",
                "sleep",
                "600",
            ]);
            c
        }
        None => {
            let mut c = Command::new("sleep");
            c.arg("600");
            c
        }
    };
    let child = c.spawn().unwrap();
    // setpriv execs sleep in place: wait until the process runs as the target uid.
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        let st =
            std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap_or_default();
        if uid.is_none_or(|u| st.contains(&format!("Uid:\t{u}\t"))) && st.contains("sleep") {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    child
}

/// Waits up to 5 s for a child to be ended by jitd's teardown: by SIGTERM, or by SIGKILL after
/// `kill_grace` (100 ms here, which a loaded test machine can exceed before the SIGTERM is
/// acted on). Any other end, or none, is `false`.
pub fn ended_by_jitd(child: &mut Child) -> bool {
    use std::os::unix::process::ExitStatusExt;
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Some(st) = child.try_wait().unwrap() {
            return matches!(st.signal(), Some(libc::SIGTERM | libc::SIGKILL));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    false
}
