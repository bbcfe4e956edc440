//! The sandbox: a temp root plus a persistent private mount namespace in which every test
//! command runs, so that the host's /etc, /usr/lib, /home, /run and /var never change.
//!
//! Layout of a sandbox root `R` (a private tmpfs mounted at /tmp/jit-sb-XXXXXX):
//!
//! | inside the namespace | backed by |
//! |---|---|
//! | `/etc` | overlay: host /etc below, `R/up/etc` above (nsswitch.conf, passwd, group, shadow, ld.so.cache) |
//! | `/var` | overlay: host /var below, `R/up/var` above |
//! | `/etc/jit`, `/var/lib/jitd` (0700), `/var/log/jit`, `/var/cache/nscd` | bind mounts of `R/etcjit`, `R/state`, `R/log`, `R/nscd-cache` |
//! | `/run` (with empty `jitd/`, `nscd/`), `/home` | bind mounts of `R/run`, `R/home` |
//!
//! Overlays rather than single-file binds because /etc/jit, /var/lib/jitd and /run/jitd do not
//! exist on the host and a bind mount needs an existing target; the overlay also means that
//! anything a test (or jitd) writes under /etc or /var lands in `R/up`, never on the host.
//! /etc/ld.so.cache is rebuilt inside the namespace (`ldconfig -i -X`: no aux cache, no
//! symlinks touched) so that glibc, setuid `su` included, finds `libnss_jit.so.2` in `R/lib`
//! exactly as if it were installed. /run/nscd is empty: a host nscd never answers for a sandbox.
//! syslog goes to a datagram socket the test process owns (`R/devlog`, bound over /dev/log or
//! linked in at the /run path /dev/log points to), never to a host syslog daemon.
//!
//! The namespace is pinned by a bind mount of its nsfs file on `R/ns` (`unshare --mount=R/ns`)
//! and entered with `nsenter --mount=R/ns -- CMD`; an IPC namespace pinned on `R/ipc` goes with
//! it, so the change counter jitd keeps in System V shared memory for /run/jitd never reaches
//! the host's. All sandboxes share the PID namespace and
//! jitd kills by uid, so each sandbox owns a block of 1000 uids: jitd's `uid_range` is the first
//! 900 of them and the local test users (`carol`, `dave`, group `devs`) sit above it.
//! Drop kills every process in the namespace or in the uid block, unmounts and removes `R`.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::{code, poll, procs, show, stderr, stdout};

/// Default bound for a command run in the sandbox.
pub const CMD_TIMEOUT: Duration = Duration::from_secs(60);

/// Paths of the built artifacts.
#[derive(Debug, Clone)]
pub struct Artifacts {
    /// `libnss_jit.so` as cargo built it (installed as `libnss_jit.so.2`).
    pub libnss: PathBuf,
    /// `libsudo_jit.so` as cargo built it (the sudo approval plugin `sudo_jit.so`).
    pub sudo_plugin: PathBuf,
    /// The daemon.
    pub jitd: PathBuf,
    /// The control tool.
    pub jitctl: PathBuf,
    /// sshd's AuthorizedKeysCommand helper.
    pub authorized_keys: PathBuf,
    /// `libpam_jit.so` as cargo built it (the PAM module `pam_jit.so`).
    pub pam_module: PathBuf,
    /// The cargo target directory in use.
    pub target_dir: PathBuf,
}

/// Where this test binary lives: `<target>/<profile>/deps/<name>`.
fn target_and_profile() -> (PathBuf, String) {
    let exe = std::env::current_exe().expect("current_exe");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test binary is not under <target>/<profile>/deps");
    let target = profile_dir
        .parent()
        .expect("profile dir has a parent")
        .to_path_buf();
    let profile = profile_dir
        .file_name()
        .and_then(OsStr::to_str)
        .unwrap_or("debug")
        .to_string();
    (target, profile)
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests crate sits in the workspace")
        .to_path_buf()
}

/// Runs `cargo build -p <pkgs>` once, in the same profile and target dir as this test binary.
fn cargo_build(pkgs: &[&str]) -> Result<PathBuf, String> {
    let (target, profile) = target_and_profile();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace_root())
        .arg("build")
        .arg("--quiet");
    for p in pkgs {
        cmd.arg("-p").arg(p);
    }
    match profile.as_str() {
        "debug" => {}
        "release" => {
            cmd.arg("--release");
        }
        other => {
            cmd.arg("--profile").arg(other);
        }
    }
    cmd.env("CARGO_TARGET_DIR", &target);
    let out = cmd.output().map_err(|e| format!("cannot run cargo: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "`cargo build -p {}` failed:\n{}",
            pkgs.join(" -p "),
            stderr(&out)
        ));
    }
    Ok(target.join(profile))
}

/// The built `libnss_jit.so` (builds `nss_jit` once per test binary).
pub fn nss_lib() -> PathBuf {
    static LIB: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let r = LIB.get_or_init(|| {
        let dir = cargo_build(&["nss_jit"])?;
        let lib = dir.join("libnss_jit.so");
        if lib.exists() {
            Ok(lib)
        } else {
            Err(format!("{} was not produced by the build", lib.display()))
        }
    });
    match r {
        Ok(p) => p.clone(),
        Err(e) => panic!("building nss_jit failed: {e}"),
    }
}

/// All artifacts: `cargo build -p nss_jit -p jitd -p sudo_jit -p pam_jit` once per test binary,
/// same profile as the test, honouring `CARGO_TARGET_DIR` (the target dir is the one this binary
/// was built into).
pub fn artifacts() -> Artifacts {
    static ART: OnceLock<Result<Artifacts, String>> = OnceLock::new();
    let r = ART.get_or_init(|| {
        let dir = cargo_build(&["nss_jit", "jitd", "sudo_jit", "pam_jit"])?;
        let a = Artifacts {
            libnss: dir.join("libnss_jit.so"),
            sudo_plugin: dir.join("libsudo_jit.so"),
            jitd: dir.join("jitd"),
            jitctl: dir.join("jitctl"),
            authorized_keys: dir.join("jit-authorized-keys"),
            pam_module: dir.join("libpam_jit.so"),
            target_dir: target_and_profile().0,
        };
        for p in [
            &a.libnss,
            &a.sudo_plugin,
            &a.jitd,
            &a.jitctl,
            &a.authorized_keys,
            &a.pam_module,
        ] {
            if !p.exists() {
                return Err(format!("{} was not produced by the build", p.display()));
            }
        }
        Ok(a)
    });
    match r {
        Ok(a) => a.clone(),
        Err(e) => panic!("building nss_jit, jitd, sudo_jit and pam_jit failed: {e}"),
    }
}

fn require_root_and_tools() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "jit_tests must run as root: they create mount namespaces (unshare -m) and run su/nscd/jitd"
    );
    for tool in [
        "unshare", "nsenter", "mount", "umount", "ldconfig", "getent",
    ] {
        let found = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
            .unwrap_or(false)
            || ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]
                .iter()
                .any(|d| Path::new(d).join(tool).is_file());
        assert!(
            found,
            "jit_tests need `{tool}` (util-linux / libc-bin) to build the sandbox"
        );
    }
}

/// Host command (outside the namespace) that must succeed.
fn host(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {args:?}: {e}"));
    assert!(out.status.success(), "{args:?} failed: {}", show(&out));
}

/// Uid blocks handed out in this process; mixed with the pid so that two test binaries running
/// at the same time (or two people's `cargo test`) do not share a block.
static NEXT_BLOCK: AtomicU32 = AtomicU32::new(0);
/// Blocks of the sandboxes alive in this process (released on drop).
static BLOCKS_IN_USE: Mutex<Vec<u32>> = Mutex::new(Vec::new());

fn pick_block() -> u32 {
    let pid = std::process::id();
    loop {
        let n = NEXT_BLOCK.fetch_add(1, Ordering::SeqCst);
        let k = (pid % 397) * 25 + n % 25;
        let base = 200_000 + k * 1000;
        let mut used = BLOCKS_IN_USE.lock().unwrap_or_else(|e| e.into_inner());
        // Skip a block another live sandbox holds, or in which anything runs (a leaked run).
        if !used.contains(&base)
            && procs::live_where(|p| p.uid >= base && p.uid < base + 1000).is_empty()
        {
            used.push(base);
            return base;
        }
        assert!(
            used.len() < 25,
            "more than 25 sandboxes alive at once in one test binary"
        );
    }
}

fn release_block(base: u32) {
    BLOCKS_IN_USE
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .retain(|&b| b != base);
}

/// Ids a sandbox owns.
#[derive(Debug, Clone, Copy)]
pub struct Ids {
    /// First uid of the block (1000 uids).
    pub base: u32,
    /// jitd's `uid_range` start (inclusive).
    pub jit_min: u32,
    /// jitd's `uid_range` end (inclusive).
    pub jit_max: u32,
    /// Local user `carol` (uid = gid of her private group).
    pub carol: u32,
    /// Local user `dave`, also a local member of `sudo`.
    pub dave: u32,
    /// Local group `devs` (no user of that name; member carol).
    pub devs: u32,
    /// gid of `sudo` in the sandbox's /etc/group.
    pub sudo_gid: u32,
}

impl Ids {
    /// Whether `uid` belongs to this sandbox's block.
    pub fn owns(&self, uid: u32) -> bool {
        uid >= self.base && uid < self.base + 1000
    }
}

/// Knobs for a sandbox's jitd.toml.
#[derive(Debug, Clone)]
pub struct SandboxOptions {
    /// `nscd = "auto" | "off"`.
    pub nscd: String,
    /// `home_policy = "remove" | "archive" | "keep"`.
    pub home_policy: String,
    /// `kill_grace`.
    pub kill_grace: String,
    /// `max_grant`.
    pub max_grant: String,
    /// Extra TOML lines appended verbatim.
    pub extra_config: String,
    /// `cgroup_dir`: `off` by default, so no test makes cgroups on the host; a test that needs
    /// them passes a [`crate::cgroup::TestCgroup`] directory, which it removes.
    pub cgroup_dir: String,
    /// The certification walk's keys (TOML lines): by default only the trees the sandbox makes
    /// private (the host's /usr, /work and /tmp are large and shared with other tests).
    pub certify: String,
}

impl Default for SandboxOptions {
    fn default() -> Self {
        SandboxOptions {
            nscd: "auto".into(),
            home_policy: "remove".into(),
            kill_grace: "1s".into(),
            max_grant: "12h".into(),
            extra_config: String::new(),
            cgroup_dir: "off".into(),
            certify: "certify_suid_roots = [\"/etc\", \"/var\", \"/home\"]\n".into(),
        }
    }
}

struct Spawned {
    child: Child,
    name: String,
    log: PathBuf,
}

/// A private mount namespace with jit installed as a package would install it.
pub struct Sandbox {
    root: PathBuf,
    ns: PathBuf,
    /// The pinned IPC namespace: jitd's change counter (System V shared memory) stays in it.
    ipc: PathBuf,
    ns_inode: u64,
    /// The ids this sandbox owns.
    pub ids: Ids,
    /// The jitd.toml options it was made with.
    pub opts: SandboxOptions,
    children: Mutex<Vec<Spawned>>,
    jitd: Mutex<Option<i32>>,
    spawn_seq: AtomicU32,
    syslog: SyslogSink,
}

/// Receives what the sandbox's processes send to syslog, so that nothing reaches a host syslog
/// daemon (which would write the host's /var/log). Bound at `R/devlog`; the namespace's
/// /dev/log (or the /run path it links to) leads there.
struct SyslogSink {
    lines: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl SyslogSink {
    fn start(path: &Path) -> SyslogSink {
        let sock = UnixDatagram::bind(path)
            .unwrap_or_else(|e| panic!("bind syslog sink {}: {e}", path.display()));
        fs::set_permissions(path, fs::Permissions::from_mode(0o666)).expect("chmod sink");
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .expect("sink timeout");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (l2, s2) = (Arc::clone(&lines), Arc::clone(&stop));
        let thread = std::thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            while !s2.load(Ordering::SeqCst) {
                if let Ok(n) = sock.recv(&mut buf) {
                    let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                    l2.lock().unwrap_or_else(|e| e.into_inner()).push(msg);
                }
            }
        });
        SyslogSink {
            lines,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for SyslogSink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn mkdtemp(prefix: &str) -> PathBuf {
    let mut tmpl = format!("{prefix}XXXXXX\0").into_bytes();
    // SAFETY: `tmpl` is a writable NUL-terminated buffer ending in XXXXXX, as mkdtemp requires.
    let p = unsafe { libc::mkdtemp(tmpl.as_mut_ptr().cast()) };
    assert!(!p.is_null(), "mkdtemp({prefix}) failed");
    tmpl.pop();
    PathBuf::from(String::from_utf8(tmpl).expect("ascii template"))
}

fn mkdir_mode(p: &Path, mode: u32) {
    fs::create_dir_all(p).unwrap_or_else(|e| panic!("mkdir {}: {e}", p.display()));
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).expect("chmod");
}

fn chown(p: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::chown(p, Some(uid), Some(gid))
        .unwrap_or_else(|e| panic!("chown {}: {e}", p.display()));
}

/// Writes `content` to `p` with `mode`, copying owner and group from `like` if given.
fn write_like(p: &Path, content: &[u8], mode: u32, like: Option<&Path>) {
    fs::write(p, content).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).expect("chmod");
    if let Some(l) = like {
        if let Ok(m) = fs::metadata(l) {
            chown(p, m.uid(), m.gid());
            fs::set_permissions(p, fs::Permissions::from_mode(m.mode() & 0o7777)).expect("chmod");
        }
    }
}

/// The host's nscd.conf (or an empty one) with `enable-cache passwd|group` set to `yes` or `no`.
fn nscd_conf(cache_identities: bool) -> String {
    let host = fs::read_to_string("/etc/nscd.conf").unwrap_or_default();
    let mut out = String::from("# jit_tests sandbox\n");
    for l in host.lines() {
        let w: Vec<&str> = l.split_whitespace().collect();
        if w.first() == Some(&"enable-cache") && matches!(w.get(1), Some(&"passwd" | &"group")) {
            continue;
        }
        out.push_str(l);
        out.push('\n');
    }
    let v = if cache_identities { "yes" } else { "no" };
    out.push_str(&format!(
        "enable-cache passwd {v}\nenable-cache group {v}\n"
    ));
    out
}

fn gid_in_group_file(content: &str, name: &str) -> Option<u32> {
    content.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        if f.first() == Some(&name) {
            f.get(2)?.parse().ok()
        } else {
            None
        }
    })
}

impl Sandbox {
    /// A sandbox with default jitd.toml options.
    pub fn new() -> Sandbox {
        Sandbox::with(SandboxOptions::default())
    }

    /// A sandbox with the given jitd.toml options.
    pub fn with(opts: SandboxOptions) -> Sandbox {
        require_root_and_tools();
        let lib = nss_lib();
        let base = pick_block();
        let root = mkdtemp("/tmp/jit-sb-");
        host(&[
            "mount",
            "-t",
            "tmpfs",
            "-o",
            "mode=0755",
            "jit-sb",
            path_str(&root),
        ]);
        host(&["mount", "--make-private", path_str(&root)]);

        let host_group = fs::read_to_string("/etc/group").expect("read /etc/group");
        let sudo_gid = gid_in_group_file(&host_group, "sudo").unwrap_or(27);
        let ids = Ids {
            base,
            jit_min: base,
            jit_max: base + 899,
            carol: base + 950,
            dave: base + 951,
            devs: base + 960,
            sudo_gid,
        };
        let syslog = SyslogSink::start(&root.join("devlog"));
        let mut sb = Sandbox {
            ns: root.join("ns"),
            ipc: root.join("ipc"),
            syslog,
            root,
            ns_inode: 0,
            ids,
            opts,
            children: Mutex::new(Vec::new()),
            jitd: Mutex::new(None),
            spawn_seq: AtomicU32::new(0),
        };
        sb.populate(&lib, &host_group);
        sb.enter_namespace();
        sb.sanity_check();
        sb
    }

    /// The sandbox root on the host (for messages and host-side files).
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn populate(&self, lib: &Path, host_group: &str) {
        let r = &self.root;
        let ids = self.ids;
        for (d, mode) in [
            ("up/etc", 0o755),
            ("work/etc", 0o755),
            ("up/var", 0o755),
            ("work/var", 0o755),
            ("run", 0o755),
            ("run/jitd", 0o755),
            ("run/nscd", 0o755),
            ("run/lock", 0o1777),
            ("run/user", 0o755),
            ("home", 0o755),
            ("state", 0o700),
            ("log", 0o755),
            ("etcjit", 0o755),
            ("nscd-cache", 0o755),
            ("lib", 0o755),
            ("logs", 0o755),
            ("files", 0o755),
        ] {
            mkdir_mode(&r.join(d), mode);
        }

        // nsswitch.conf: the host's, with passwd/group/shadow as the package sets them.
        let host_ns = fs::read_to_string("/etc/nsswitch.conf").unwrap_or_default();
        let mut ns = String::from("# jit_tests sandbox\n");
        let ours = [
            ("passwd:", "passwd:         files jit"),
            ("group:", "group:          files [SUCCESS=merge] jit"),
            ("shadow:", "shadow:         files"),
        ];
        for l in host_ns.lines() {
            let t = l.trim_start();
            if ours.iter().any(|(k, _)| t.starts_with(k)) {
                continue;
            }
            ns.push_str(l);
            ns.push('\n');
        }
        for (_, line) in ours {
            ns.push_str(line);
            ns.push('\n');
        }
        write_like(&r.join("up/etc/nsswitch.conf"), ns.as_bytes(), 0o644, None);
        // nscd.conf as the package sets it: passwd and group never cached.
        write_like(
            &r.join("up/etc/nscd.conf"),
            nscd_conf(false).as_bytes(),
            0o644,
            None,
        );

        // passwd/group/shadow: the host's plus the sandbox's local users.
        let mut passwd = fs::read_to_string("/etc/passwd").expect("read /etc/passwd");
        passwd.push_str(&format!(
            "carol:x:{c}:{c}:Carol Local:/home/carol:/bin/bash\n\
             dave:x:{d}:{d}:Dave Local:/home/dave:/bin/bash\n",
            c = ids.carol,
            d = ids.dave
        ));
        write_like(
            &r.join("up/etc/passwd"),
            passwd.as_bytes(),
            0o644,
            Some(Path::new("/etc/passwd")),
        );
        let mut group = String::new();
        for l in host_group.lines() {
            if l.starts_with("sudo:") {
                let sep = if l.ends_with(':') { "" } else { "," };
                group.push_str(&format!("{l}{sep}dave\n"));
            } else {
                group.push_str(l);
                group.push('\n');
            }
        }
        group.push_str(&format!(
            "carol:x:{c}:\ndave:x:{d}:\ndevs:x:{g}:carol\n",
            c = ids.carol,
            d = ids.dave,
            g = ids.devs
        ));
        write_like(
            &r.join("up/etc/group"),
            group.as_bytes(),
            0o644,
            Some(Path::new("/etc/group")),
        );
        let mut shadow = fs::read_to_string("/etc/shadow").unwrap_or_default();
        shadow.push_str("carol:!:19000:0:99999:7:::\ndave:!:19000:0:99999:7:::\n");
        write_like(
            &r.join("up/etc/shadow"),
            shadow.as_bytes(),
            0o640,
            Some(Path::new("/etc/shadow")),
        );

        // Homes of the local users.
        for (name, id) in [("carol", ids.carol), ("dave", ids.dave)] {
            let h = r.join("home").join(name);
            mkdir_mode(&h, 0o755);
            chown(&h, id, id);
        }

        // The module, installed under its SONAME in a directory only this sandbox's cache lists.
        let so = r.join("lib/libnss_jit.so.2");
        fs::copy(lib, &so).unwrap_or_else(|e| panic!("copy {}: {e}", lib.display()));
        fs::set_permissions(&so, fs::Permissions::from_mode(0o644)).expect("chmod");
        let conf = format!(
            "{}\ninclude /etc/ld.so.conf.d/*.conf\n/usr/local/lib\n/lib/x86_64-linux-gnu\n\
             /usr/lib/x86_64-linux-gnu\n",
            r.join("lib").display()
        );
        fs::write(r.join("ld.so.conf"), conf).expect("write ld.so.conf");

        self.write_config();
    }

    /// (Re)writes /etc/jit/jitd.toml from `self.opts`.
    pub fn write_config(&self) {
        let ids = self.ids;
        let o = &self.opts;
        let toml = format!(
            "# jit_tests sandbox {root}\n\
             uid_range = \"{min}-{max}\"\n\
             home_root = \"/home\"\n\
             home_policy = \"{hp}\"\n\
             shell = \"/bin/bash\"\n\
             skel = \"/etc/skel\"\n\
             managed_accounts = []\n\
             max_grant = \"{mg}\"\n\
             kill_grace = \"{kg}\"\n\
             state_dir = \"/var/lib/jitd\"\n\
             snapshot_path = \"/run/jitd/snapshot\"\n\
             socket_path = \"/run/jitd/jitd.sock\"\n\
             audit_log = \"/var/log/jit/audit.jsonl\"\n\
             passwd_file = \"/etc/passwd\"\n\
             group_file = \"/etc/group\"\n\
             nscd = \"{nscd}\"\n\
             cgroup_dir = \"{cg}\"\n\
             monitor_marks = \"mount\"\n{certify}{extra}",
            root = self.root.display(),
            min = ids.jit_min,
            max = ids.jit_max,
            hp = o.home_policy,
            mg = o.max_grant,
            kg = o.kill_grace,
            nscd = o.nscd,
            cg = o.cgroup_dir,
            certify = o.certify,
            extra = o.extra_config,
        );
        write_like(
            &self.root.join("etcjit/jitd.toml"),
            toml.as_bytes(),
            0o644,
            None,
        );
    }

    fn enter_namespace(&mut self) {
        let r = self.root.display().to_string();
        // syslog: a socket /dev/log gets our sink bound over it; a symlink (to
        // /run/systemd/journal/dev-log) resolves inside our /run, where the sink is linked in.
        let devlog = match fs::symlink_metadata("/dev/log") {
            Ok(m) if m.file_type().is_symlink() => {
                if let Ok(t) = fs::read_link("/dev/log") {
                    if let Ok(rest) = t.strip_prefix("/run") {
                        let inside = self.root.join("run").join(rest);
                        if let Some(parent) = inside.parent() {
                            mkdir_mode(parent, 0o755);
                        }
                        let _ = fs::remove_file(&inside);
                        fs::hard_link(self.root.join("devlog"), &inside).expect("link sink");
                    }
                }
                String::new()
            }
            Ok(_) => format!("mount --bind {r}/devlog /dev/log\n"),
            Err(_) => String::new(),
        };
        fs::write(&self.ns, b"").expect("create ns file");
        fs::write(&self.ipc, b"").expect("create ipc ns file");
        let script = format!(
            "set -e\n\
             mount -t overlay jit-etc -o lowerdir=/etc,upperdir={r}/up/etc,workdir={r}/work/etc /etc\n\
             mount -t overlay jit-var -o lowerdir=/var,upperdir={r}/up/var,workdir={r}/work/var /var\n\
             mount --bind {r}/run /run\n\
             mount --bind {r}/home /home\n\
             mkdir -p /etc/jit /var/lib/jitd /var/log/jit /var/cache/nscd\n\
             mount --bind {r}/etcjit /etc/jit\n\
             mount --bind {r}/state /var/lib/jitd\n\
             mount --bind {r}/log /var/log/jit\n\
             mount --bind {r}/nscd-cache /var/cache/nscd\n\
             ldconfig -i -X -C /etc/ld.so.cache -f {r}/ld.so.conf\n\
             {devlog}"
        );
        let out = Command::new("unshare")
            .arg(format!("--mount={}", self.ns.display()))
            .arg(format!("--ipc={}", self.ipc.display()))
            .arg("--propagation")
            .arg("private")
            .arg("--")
            .arg("sh")
            .arg("-c")
            .arg(&script)
            .output()
            .expect("run unshare");
        assert!(
            out.status.success(),
            "creating the sandbox namespace failed (is this a privileged root with mount \
             namespaces and overlayfs?): {}",
            show(&out)
        );
        self.ns_inode = fs::metadata(&self.ns).expect("stat ns").ino();
    }

    fn sanity_check(&self) {
        let c = self.ids.carol;
        let o = self.run(&["getent", "passwd", "carol"]);
        assert_eq!(
            stdout(&o).trim(),
            format!("carol:x:{c}:{c}:Carol Local:/home/carol:/bin/bash"),
            "sandbox setup: local user carol not visible: {}",
            show(&o)
        );
        let o = self.run(&["ldconfig", "-p"]);
        assert!(
            stdout(&o).contains("libnss_jit.so.2 ") && stdout(&o).contains(&*self.root.to_string_lossy()),
            "sandbox setup: libnss_jit.so.2 is not in the namespace's ld.so.cache (wrong SONAME?): {}",
            show(&o)
        );
    }

    // ----- running commands -----

    fn command(&self, args: &[&OsStr]) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--mount={}", self.ns.display()))
            .arg(format!("--ipc={}", self.ipc.display()))
            .arg("--")
            .args(args)
            .env_clear()
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .env("LC_ALL", "C")
            .env("HOME", "/root")
            .env("USER", "root")
            .env("LOGNAME", "root")
            .env("RUST_BACKTRACE", "1")
            .current_dir("/");
        c
    }

    /// Runs a command in the namespace and returns its output (bounded by [`CMD_TIMEOUT`]).
    pub fn run(&self, args: &[&str]) -> Output {
        self.run_full(args, None, CMD_TIMEOUT)
    }

    /// Runs `sh -c script` in the namespace.
    pub fn sh(&self, script: &str) -> Output {
        self.run(&["sh", "-c", script])
    }

    /// Runs `sh -c script` and asserts it succeeded; returns stdout.
    pub fn sh_ok(&self, script: &str) -> String {
        let o = self.sh(script);
        assert!(o.status.success(), "`{script}` failed: {}", show(&o));
        stdout(&o)
    }

    /// Runs with arbitrary (possibly non-UTF-8) arguments, optional stdin and a time bound.
    /// Background processes the command starts must not keep its stdout/stderr open.
    pub fn run_os(&self, args: &[&OsStr], input: Option<&[u8]>, limit: Duration) -> Output {
        let mut cmd = self.command(args);
        cmd.stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {args:?} in the sandbox: {e}"));
        if let (Some(data), Some(mut w)) = (input, child.stdin.take()) {
            let data = data.to_vec();
            std::thread::spawn(move || {
                let _ = w.write_all(&data);
            });
        }
        let rx_out = reader(child.stdout.take());
        let rx_err = reader(child.stderr.take());
        let start = Instant::now();
        let status = loop {
            if let Some(st) = child.try_wait().expect("try_wait") {
                break Some(st);
            }
            if start.elapsed() > limit {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let Some(status) = status else {
            let out = rx_out
                .recv_timeout(Duration::from_secs(2))
                .unwrap_or_default();
            let err = rx_err
                .recv_timeout(Duration::from_secs(2))
                .unwrap_or_default();
            panic!(
                "{args:?} did not finish within {limit:?} (hang?); stdout={:?} stderr={:?}",
                String::from_utf8_lossy(&out),
                String::from_utf8_lossy(&err)
            );
        };
        let collect = |rx: mpsc::Receiver<Vec<u8>>, which: &str| {
            rx.recv_timeout(Duration::from_secs(10))
                .unwrap_or_else(|_| {
                    panic!(
                        "{args:?}: a background process kept {which} open after the command ended \
                     (redirect background jobs' output to /dev/null)"
                    )
                })
        };
        Output {
            status,
            stdout: collect(rx_out, "stdout"),
            stderr: collect(rx_err, "stderr"),
        }
    }

    /// [`Sandbox::run_os`] for UTF-8 arguments.
    pub fn run_full(&self, args: &[&str], input: Option<&[u8]>, limit: Duration) -> Output {
        let os: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
        self.run_os(&os, input, limit)
    }

    /// Starts a background process in the namespace; output goes to a log file in the sandbox.
    /// Returns its pid (nsenter execs the command, so this is the command's own pid).
    pub fn spawn(&self, name: &str, args: &[&str]) -> i32 {
        let n = self.spawn_seq.fetch_add(1, Ordering::SeqCst);
        let log = self.root.join("logs").join(format!("{name}.{n}.log"));
        let f = fs::File::create(&log).expect("create log");
        let os: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
        let child = self
            .command(&os)
            .stdin(Stdio::null())
            .stdout(f.try_clone().expect("dup"))
            .stderr(f)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn {args:?}: {e}"));
        let pid = child.id() as i32;
        self.children.lock().expect("lock").push(Spawned {
            child,
            name: name.to_string(),
            log,
        });
        pid
    }

    /// Whether a process started by [`Sandbox::spawn`] has exited (reaping it), with its status.
    pub fn try_wait(&self, pid: i32) -> Option<ExitStatus> {
        let mut ch = self.children.lock().expect("lock");
        let s = ch.iter_mut().find(|s| s.child.id() as i32 == pid)?;
        s.child.try_wait().ok().flatten()
    }

    /// Waits up to `limit` for a spawned process to exit.
    pub fn wait_exit(&self, pid: i32, limit: Duration) -> Option<ExitStatus> {
        crate::poll_opt(limit, || self.try_wait(pid))
    }

    /// Everything a spawned process wrote.
    pub fn log_of(&self, pid: i32) -> String {
        let ch = self.children.lock().expect("lock");
        ch.iter()
            .find(|s| s.child.id() as i32 == pid)
            .map(|s| {
                format!(
                    "--- {} log ---\n{}",
                    s.name,
                    fs::read_to_string(&s.log).unwrap_or_default()
                )
            })
            .unwrap_or_default()
    }

    // ----- files -----

    /// Everything the sandbox's processes sent to syslog so far (raw datagrams).
    pub fn syslog(&self) -> Vec<String> {
        self.syslog
            .lines
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The host path backing a path inside the namespace (only for the sandbox's own dirs).
    pub fn host_path(&self, p: &str) -> PathBuf {
        let map = [
            ("/run/", "run/"),
            ("/home/", "home/"),
            ("/var/lib/jitd/", "state/"),
            ("/var/log/jit/", "log/"),
            ("/etc/jit/", "etcjit/"),
        ];
        let with_slash = if p.ends_with('/') {
            p.to_string()
        } else {
            format!("{p}/")
        };
        for (inside, outside) in map {
            if let Some(rest) = with_slash.strip_prefix(inside) {
                return self.root.join(outside).join(rest.trim_end_matches('/'));
            }
        }
        panic!("{p} is not backed by a sandbox directory");
    }

    /// A scratch directory on the host that the namespace sees at the same path.
    pub fn scratch(&self, name: &str) -> PathBuf {
        self.root.join("files").join(name)
    }

    /// Writes a snapshot image atomically as jitd would (root-owned, 0644, temp + rename).
    pub fn write_snapshot_bytes(&self, bytes: &[u8]) {
        let dir = self.host_path("/run/jitd");
        if !dir.exists() {
            mkdir_mode(&dir, 0o755);
        }
        let tmp = dir.join(".snapshot.jit-tests.tmp");
        let _ = fs::remove_file(&tmp);
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .expect("create snapshot temp");
        f.write_all(bytes).expect("write snapshot");
        f.sync_all().expect("fsync snapshot");
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o644)).expect("chmod");
        chown(&tmp, 0, 0);
        fs::rename(&tmp, dir.join("snapshot")).expect("rename snapshot");
    }

    /// Builds and writes a snapshot.
    pub fn write_snapshot(&self, data: &jit_core::types::SnapshotData) {
        let bytes = jit_core::snapshot::build_snapshot(data)
            .unwrap_or_else(|e| panic!("build_snapshot refused the test data: {e}"));
        self.write_snapshot_bytes(&bytes);
    }

    /// The current (world-readable) snapshot bytes, if any, with the delta of grants added
    /// since it was written read over it (one image of what NSS sees).
    pub fn snapshot_bytes(&self) -> Option<Vec<u8>> {
        self.layered("/run/jitd/snapshot")
    }

    /// The current root-only gates file (the whole image pam_jit and sudo_jit read), if any,
    /// with its delta, as one image.
    pub fn gates_bytes(&self) -> Option<Vec<u8>> {
        self.layered("/run/jitd/gates")
    }

    fn layered(&self, base: &str) -> Option<Vec<u8>> {
        let bytes = fs::read(self.host_path(base)).ok()?;
        let delta = fs::read(self.host_path(&format!("{base}.delta"))).ok();
        Some(jit_core::snapshot::file::merged_image(&bytes, delta.as_deref()).unwrap_or(bytes))
    }

    /// A readable summary of the gates file's records (accounts, groups, grants), without
    /// `generated_at`, for "nothing changed" comparisons. `None` if absent or unreadable.
    pub fn snapshot_summary(&self) -> Option<Vec<String>> {
        let bytes = self.gates_bytes()?;
        let s = jit_core::snapshot::Snapshot::parse(&bytes).ok()?;
        let mut v = Vec::new();
        for i in 0..s.account_count() {
            if let Some(a) = s.account_at(i) {
                v.push(format!(
                    "account {} uid {} gid {} home {} grant {} [{}, {})",
                    a.name(),
                    a.uid(),
                    a.gid(),
                    a.home(),
                    a.grant_id(),
                    a.not_before(),
                    a.not_after()
                ));
            }
        }
        for i in 0..s.group_count() {
            if let Some(g) = s.group_at(i) {
                let members: Vec<String> = g
                    .members()
                    .map(|m| format!("{}@{}", m.name(), m.grant_id()))
                    .collect();
                v.push(format!(
                    "group {} gid {} kind {} members {:?}",
                    g.name(),
                    g.gid(),
                    g.kind(),
                    members
                ));
            }
        }
        for i in 0..s.grant_count() {
            if let Some(g) = s.grant_at(i) {
                v.push(format!(
                    "grant {} user {} uid {} flags {} [{}, {})",
                    g.id(),
                    g.user(),
                    g.uid(),
                    g.flags(),
                    g.not_before(),
                    g.not_after()
                ));
            }
        }
        Some(v)
    }

    // ----- assertions shared by every test -----

    /// Root and the local users resolve exactly as on a host without jit.
    pub fn assert_local_unaffected(&self) {
        let ids = self.ids;
        let o = self.run(&["getent", "passwd", "root"]);
        assert!(
            code(&o) == 0 && stdout(&o).starts_with("root:x:0:0:"),
            "getent passwd root broken: {}",
            show(&o)
        );
        let o = self.run(&["getent", "passwd", "carol"]);
        assert_eq!(
            stdout(&o).trim(),
            format!(
                "carol:x:{c}:{c}:Carol Local:/home/carol:/bin/bash",
                c = ids.carol
            ),
            "getent passwd carol broken: {}",
            show(&o)
        );
        let o = self.run(&["id", "carol"]);
        assert!(
            code(&o) == 0
                && stdout(&o).contains(&format!("uid={}(carol)", ids.carol))
                && stdout(&o).contains(&format!("{}(devs)", ids.devs)),
            "id carol broken: {}",
            show(&o)
        );
        let o = self.run(&["id", "root"]);
        assert!(
            code(&o) == 0 && stdout(&o).starts_with("uid=0(root) gid=0(root)"),
            "id root broken: {}",
            show(&o)
        );
        let o = self.run(&["getent", "group", "sudo"]);
        assert!(
            code(&o) == 0 && group_members(&stdout(&o)).contains(&"dave".to_string()),
            "getent group sudo lost its local member dave: {}",
            show(&o)
        );
        for args in [
            ["getent", "-s", "jit", "passwd", "root"],
            ["getent", "-s", "jit", "passwd", "0"],
            ["getent", "-s", "jit", "group", "root"],
            ["getent", "-s", "jit", "group", "0"],
        ] {
            let o = self.run(&args);
            assert_eq!(
                code(&o),
                crate::GETENT_NOT_FOUND,
                "{args:?}: the jit module must never answer root / id 0: {}",
                show(&o)
            );
        }
    }

    // ----- nscd -----

    /// Rewrites the sandbox's /etc/nscd.conf to cache passwd and group (`on`) or not (the
    /// shipped configuration). Takes effect for an nscd started afterwards.
    pub fn set_nscd_identity_cache(&self, on: bool) {
        let o = self.run_full(
            &["sh", "-c", "cat > /etc/nscd.conf"],
            Some(nscd_conf(on).as_bytes()),
            CMD_TIMEOUT,
        );
        assert!(o.status.success(), "write nscd.conf: {}", show(&o));
    }

    /// Starts `nscd -F` in the namespace and waits for its socket; returns its pid.
    pub fn start_nscd(&self) -> i32 {
        let pid = self.spawn("nscd", &["nscd", "-F"]);
        let sock = self.host_path("/run/nscd/socket");
        crate::poll(
            "nscd socket in the sandbox",
            Duration::from_secs(10),
            || {
                if self.try_wait(pid).is_some() {
                    panic!("nscd exited: {}", self.log_of(pid));
                }
                sock.exists().then_some(())
            },
        );
        let o = self.run(&["nscd", "-g"]);
        assert_eq!(crate::code(&o), 0, "nscd -g: {}", show(&o));
        pid
    }

    // ----- jitd -----

    /// Starts jitd in the namespace (`jitd --config /etc/jit/jitd.toml`) and waits until
    /// `jitctl status` exits 0. Returns its pid.
    pub fn start_jitd(&self) -> i32 {
        let a = artifacts();
        let pid = self.spawn(
            "jitd",
            &[path_str(&a.jitd), "--config", "/etc/jit/jitd.toml"],
        );
        *self.jitd.lock().expect("lock") = Some(pid);
        let start = Instant::now();
        loop {
            if let Some(st) = self.try_wait(pid) {
                panic!(
                    "jitd exited during start-up with {st}:\n{}",
                    self.log_of(pid)
                );
            }
            let o = self.jitctl(&["status"]);
            if o.status.success() {
                return pid;
            }
            if start.elapsed() > Duration::from_secs(30) {
                panic!(
                    "jitd did not answer `jitctl status` within 30 s; last: {}\n{}",
                    show(&o),
                    self.log_of(pid)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The pid of the jitd this sandbox started last, if it still runs.
    pub fn jitd_pid(&self) -> Option<i32> {
        let pid = (*self.jitd.lock().expect("lock"))?;
        if self.try_wait(pid).is_some() {
            None
        } else {
            Some(pid)
        }
    }

    /// SIGTERM to jitd and wait (≤ 15 s) for it to exit; returns its exit status.
    pub fn stop_jitd(&self) -> ExitStatus {
        let pid = self.jitd_pid().expect("jitd is not running");
        procs::signal(pid, libc::SIGTERM);
        self.wait_exit(pid, Duration::from_secs(15))
            .unwrap_or_else(|| {
                panic!(
                    "jitd did not stop within 15 s of SIGTERM:\n{}",
                    self.log_of(pid)
                )
            })
    }

    /// SIGKILL to jitd, reaped.
    pub fn kill_jitd(&self) {
        if let Some(pid) = self.jitd_pid() {
            procs::signal(pid, libc::SIGKILL);
            let _ = self.wait_exit(pid, Duration::from_secs(10));
        }
    }

    /// jitd's own output so far (for assertion messages).
    pub fn jitd_log(&self) -> String {
        let ch = self.children.lock().expect("lock");
        ch.iter()
            .filter(|s| s.name == "jitd")
            .map(|s| {
                format!(
                    "--- jitd log {} ---\n{}",
                    s.log.display(),
                    fs::read_to_string(&s.log).unwrap_or_default()
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Runs jitctl in the namespace (bounded by 30 s: jitctl has its own 2 s socket deadline).
    pub fn jitctl(&self, args: &[&str]) -> Output {
        let a = artifacts();
        let mut v = vec![path_str(&a.jitctl)];
        v.extend_from_slice(args);
        self.run_full(&v, None, Duration::from_secs(30))
    }

    /// jitctl with raw (possibly non-UTF-8) arguments.
    pub fn jitctl_os(&self, args: &[&OsStr]) -> Output {
        let a = artifacts();
        let mut v: Vec<&OsStr> = vec![a.jitctl.as_os_str()];
        v.extend_from_slice(args);
        self.run_os(&v, None, Duration::from_secs(30))
    }

    /// `jitctl grant add ARGS` that must succeed; returns the grant id printed on stdout.
    pub fn grant(&self, args: &[&str]) -> String {
        let mut v = vec!["grant", "add"];
        v.extend_from_slice(args);
        let o = self.jitctl(&v);
        assert!(
            code(&o) == 0,
            "jitctl {v:?} failed: {}\n{}",
            show(&o),
            self.jitd_log()
        );
        let id = stdout(&o).trim().to_string();
        assert!(
            jit_core::validate::validate_grant_id(&id).is_ok(),
            "jitctl grant add must print the grant id alone on stdout, got {id:?}"
        );
        id
    }

    /// `jitctl --json grant add ARGS` that must succeed; returns the grant object.
    pub fn grant_json(&self, args: &[&str]) -> Value {
        let mut v = vec!["--json", "grant", "add"];
        v.extend_from_slice(args);
        let o = self.jitctl(&v);
        assert!(
            code(&o) == 0,
            "jitctl {v:?} failed: {}\n{}",
            show(&o),
            self.jitd_log()
        );
        serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
            panic!(
                "jitctl --json grant add printed no JSON object ({e}): {}",
                show(&o)
            )
        })
    }

    /// `jitctl --json grant list --all` as JSON (an array, or an object holding one).
    pub fn grant_list(&self) -> Vec<Value> {
        let o = self.jitctl(&["--json", "grant", "list", "--all"]);
        assert!(
            code(&o) == 0,
            "jitctl grant list --all failed: {}",
            show(&o)
        );
        let v: Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
            panic!(
                "jitctl --json grant list printed no JSON ({e}): {}",
                show(&o)
            )
        });
        match v {
            Value::Array(a) => a,
            Value::Object(ref m) => m
                .get("grants")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_else(|| panic!("unexpected grant list shape: {v}")),
            other => panic!("unexpected grant list shape: {other}"),
        }
    }

    /// The audit trail as JSON objects (unparseable lines are reported as a failure).
    pub fn audit(&self) -> Vec<Value> {
        let text =
            fs::read_to_string(self.host_path("/var/log/jit/audit.jsonl")).unwrap_or_default();
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                serde_json::from_str(l)
                    .unwrap_or_else(|e| panic!("audit line is not one JSON object ({e}): {l:?}"))
            })
            .collect()
    }

    /// Audit events of one grant, in order.
    pub fn audit_events(&self, grant: &str) -> Vec<String> {
        self.audit()
            .iter()
            .filter(|e| e.get("grant").and_then(Value::as_str) == Some(grant))
            .filter_map(|e| e.get("event").and_then(Value::as_str).map(str::to_string))
            .collect()
    }

    /// Polls until the audit trail holds `event` for `grant`.
    pub fn wait_audit(&self, grant: &str, event: &str, limit: Duration) -> Value {
        poll(&format!("audit event {event} for {grant}"), limit, || {
            self.audit().into_iter().find(|e| {
                e.get("grant").and_then(Value::as_str) == Some(grant)
                    && e.get("event").and_then(Value::as_str) == Some(event)
            })
        })
    }

    // ----- teardown -----

    fn kill_everything(&self) {
        {
            let mut ch = self.children.lock().unwrap_or_else(|e| e.into_inner());
            for s in ch.iter_mut() {
                let _ = s.child.kill();
            }
            for s in ch.iter_mut() {
                let _ = s.child.wait();
            }
        }
        let me = std::process::id() as i32;
        for _ in 0..100 {
            let victims: Vec<i32> = procs::all_pids()
                .into_iter()
                .filter(|&p| p != me)
                .filter(|&p| {
                    procs::mnt_ns(p) == Some(self.ns_inode)
                        || procs::info(p).is_some_and(|i| {
                            i.alive() && (self.ids.owns(i.uid) || self.ids.owns(i.euid))
                        })
                })
                .collect();
            if victims.is_empty() {
                return;
            }
            for p in victims {
                procs::signal(p, libc::SIGKILL);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Default for Sandbox {
    fn default() -> Self {
        Sandbox::new()
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.kill_everything();
        let r = path_str(&self.root).to_string();
        let ns = path_str(&self.ns).to_string();
        let _ = Command::new("umount").arg(&ns).output();
        let _ = Command::new("umount").arg(path_str(&self.ipc)).output();
        let ok = Command::new("umount")
            .arg(&r)
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if !ok {
            let _ = Command::new("umount").arg("-l").arg(&r).output();
        }
        let _ = fs::remove_dir(&self.root);
        release_block(self.ids.base);
    }
}

fn reader<R: Read + Send + 'static>(r: Option<R>) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut r) = r {
            let _ = r.read_to_end(&mut buf);
        }
        let _ = tx.send(buf);
    });
    rx
}

/// A path as &str (the sandbox only makes ASCII paths).
pub fn path_str(p: &Path) -> &str {
    p.to_str().expect("non-UTF-8 path")
}

/// Members of a `getent group` line (`name:pw:gid:a,b,c`).
pub fn group_members(line: &str) -> Vec<String> {
    line.trim()
        .rsplit(':')
        .next()
        .map(|m| {
            m.split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// Parses `id` output into name → id for uid, gid and groups.
pub fn parse_id(out: &str) -> HashMap<String, u32> {
    let mut m = HashMap::new();
    for part in out.split(|c: char| c.is_whitespace() || c == ',' || c == '=') {
        if let Some((num, rest)) = part.split_once('(') {
            if let (Ok(n), Some(name)) = (num.parse::<u32>(), rest.strip_suffix(')')) {
                m.insert(name.to_string(), n);
            }
        }
    }
    m
}

/// Converts a list of strings into OsStrings (for raw-argument helpers).
pub fn os_args(v: &[&str]) -> Vec<OsString> {
    v.iter().map(OsString::from).collect()
}
