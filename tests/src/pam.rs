//! PAM and OpenSSH helpers for the pam_jit tests: `pam_jit.so` installed into a sandbox, pam.d
//! service files written into the sandbox's private /etc, `pamtester` runs, TOTP codes from
//! `oathtool` (an implementation independent of jitd's), local accounts with a known password
//! (managed admins), `su` driven from an unprivileged user, and a real `sshd` on loopback with its
//! own config, port and host key, plus an `ssh` client that answers keyboard-interactive prompts
//! through `SSH_ASKPASS`.
//!
//! Nothing here touches the host: files go into the sandbox's overlays (written through the
//! namespace) or its tmpfs root; sshd, ssh and pamtester run inside the namespace.

use std::fs;
use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use serde_json::Value;

use crate::sandbox::{artifacts, path_str, Sandbox};
use crate::{code, now_f64, poll_opt, show, stderr, stdout};

/// pam_jit's socket timeout the tests configure (`timeout=2`, the module's default).
pub const TIMEOUT: u64 = 2;

/// All four PAM steps, in the order a login runs them.
pub const ALL_OPS: [&str; 4] = ["authenticate", "acct_mgmt", "open_session", "close_session"];

/// The prompt pam_jit shows for a TOTP code (the contract's text).
pub const CODE_PROMPT: &str = "Verification code:";

/// Password of the managed admin the tests create (`opsadmin`).
pub const ADMIN_PASSWORD: &str = "Opsadmin-pw-1";

/// `openssl passwd -6 -salt jitTESTsalt Opsadmin-pw-1`.
pub const ADMIN_HASH: &str = "$6$jitTESTsalt$MLymD.NLDORSkxtBwdzp1y4eygs.e4nPvDOtxMZwW3U5ibsyEkfSliTxWDbjDuggJuorukmWhHEzA8SfkeiSi/";

/// Name of the managed admin account the tests create.
pub const ADMIN: &str = "opsadmin";

/// Panics (fails the test, never skips it) unless every tool is installed. scripts/test
/// installs them (pamtester, oathtool, openssh-server, openssh-client, sudo).
pub fn require_tools(tools: &[&str]) {
    for tool in tools {
        let found = ["/usr/sbin", "/usr/bin", "/sbin", "/bin", "/usr/local/bin"]
            .iter()
            .any(|d| Path::new(d).join(tool).is_file());
        assert!(
            found,
            "`{tool}` is not installed: the PAM/ssh tests need it (scripts/test installs \
             pamtester oathtool openssh-server openssh-client sudo; apt-get install -y {tool})"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Files in the sandbox
// ---------------------------------------------------------------------------------------------

/// Writes `content` to `path` inside the namespace (through its overlay /etc or /var, never the
/// host), root-owned with `mode`, creating the parent directory.
pub fn write_file(sb: &Sandbox, path: &str, content: &str, mode: u32) {
    let m = format!("{mode:o}");
    let o = sb.run_full(
        &[
            "sh",
            "-c",
            "set -e; mkdir -p \"$(dirname \"$1\")\"; umask 077; cat > \"$1\"; \
             chown root:root \"$1\"; chmod \"$2\" \"$1\"",
            "sh",
            path,
            &m,
        ],
        Some(content.as_bytes()),
        Duration::from_secs(20),
    );
    assert_eq!(code(&o), 0, "writing {path} in the sandbox: {}", show(&o));
}

/// Copies the built `pam_jit.so` into the sandbox root (`R/lib/security/pam_jit.so`, visible at
/// the same absolute path inside the namespace) and returns that path for pam.d lines.
pub fn install_pam_jit(sb: &Sandbox) -> String {
    let src = artifacts().pam_module;
    let dir = sb.root().join("lib/security");
    fs::create_dir_all(&dir).expect("mkdir lib/security");
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).expect("chmod");
    let dst = dir.join("pam_jit.so");
    fs::copy(&src, &dst).unwrap_or_else(|e| panic!("copy {}: {e}", src.display()));
    fs::set_permissions(&dst, fs::Permissions::from_mode(0o644)).expect("chmod");
    path_str(&dst).to_string()
}

/// A service file with pam_jit's recommended lines (`opts` e.g. `timeout=2`), each followed by
/// the given module line of the same type (e.g. `pam_permit.so`, `pam_unix.so`).
pub fn jit_service(module: &str, opts: &str, auth: &str, account: &str, session: &str) -> String {
    format!(
        "# jit_tests: pam_jit as recommended, then the host's usual module\n\
         auth    [success=done ignore=ignore default=die] {module} {opts}\n\
         auth    required {auth}\n\
         account required {module} {opts}\n\
         account required {account}\n\
         session required {module} {opts}\n\
         session required {session}\n"
    )
}

/// [`jit_service`] with `pam_permit.so` after pam_jit on every line: whatever pam_jit leaves
/// to the others (PAM_IGNORE) is allowed.
pub fn permit_service(module: &str, opts: &str) -> String {
    jit_service(
        module,
        opts,
        "pam_permit.so",
        "pam_permit.so",
        "pam_permit.so",
    )
}

/// Writes `/etc/pam.d/NAME` in the sandbox.
pub fn pam_service(sb: &Sandbox, name: &str, body: &str) {
    write_file(sb, &format!("/etc/pam.d/{name}"), body, 0o644);
}

/// Adds `managed_accounts = [..]` to the sandbox's jitd.toml (before jitd starts; a later
/// `Sandbox::write_config` would drop it again).
pub fn set_managed_accounts(sb: &Sandbox, names: &[&str]) {
    let p = sb.host_path("/etc/jit/jitd.toml");
    let text = fs::read_to_string(&p).expect("read jitd.toml");
    let list = names
        .iter()
        .map(|n| format!("\"{n}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let line = format!("managed_accounts = [{list}]");
    assert!(
        text.contains("managed_accounts = []"),
        "the sandbox's jitd.toml no longer has `managed_accounts = []`: {text}"
    );
    fs::write(&p, text.replace("managed_accounts = []", &line)).expect("write jitd.toml");
}

/// Adds a local account (passwd, group, shadow with `hash`) and its home, inside the namespace.
pub fn add_local_user(sb: &Sandbox, name: &str, uid: u32, hash: &str) {
    assert!(
        !hash.contains('\'') && !name.contains('\''),
        "quote in a test account"
    );
    sb.sh_ok(&format!(
        "set -e; echo '{name}:x:{uid}:{uid}:Managed Admin:/home/{name}:/bin/bash' >> /etc/passwd; \
         echo '{name}:x:{uid}:' >> /etc/group; \
         printf '%s\\n' '{name}:{hash}:19000:0:99999:7:::' >> /etc/shadow; \
         mkdir -p /home/{name}; chown {uid}:{uid} /home/{name}"
    ));
    let o = sb.run(&["getent", "shadow", name]);
    assert!(
        code(&o) == 0 && stdout(&o).contains(hash),
        "local account {name} not in the sandbox's shadow: {}",
        show(&o)
    );
}

/// The managed admin account of the tests: `opsadmin`, uid in the sandbox's block above the jit
/// range, password [`ADMIN_PASSWORD`]. Returns its uid.
pub fn add_admin(sb: &Sandbox) -> u32 {
    let uid = sb.ids.base + 970;
    add_local_user(sb, ADMIN, uid, ADMIN_HASH);
    uid
}

// ---------------------------------------------------------------------------------------------
// pamtester
// ---------------------------------------------------------------------------------------------

/// One pamtester run.
#[derive(Debug)]
pub struct Pam {
    /// What pamtester printed and returned.
    pub out: Output,
    /// Wall-clock seconds the run took (nsenter + pamtester).
    pub secs: f64,
}

impl Pam {
    /// pamtester exited 0 (every step returned PAM_SUCCESS).
    pub fn ok(&self) -> bool {
        code(&self.out) == 0
    }

    /// stdout and stderr together.
    pub fn text(&self) -> String {
        format!("{}{}", stdout(&self.out), stderr(&self.out))
    }

    /// pamtester's last message (`pam_strerror` of the failing step, e.g. `Authentication
    /// failure`, `Permission denied`, `Cannot make/remove an entry for the specified session`).
    pub fn error(&self) -> String {
        // The message may follow a prompt on the same line (`Password: pamtester: ...`).
        let t = stderr(&self.out);
        let Some(i) = t.rfind("pamtester: ") else {
            return String::new();
        };
        t[i + "pamtester: ".len()..]
            .lines()
            .next()
            .unwrap_or("")
            .trim()
            .to_string()
    }

    /// One line for assertion messages.
    pub fn show(&self) -> String {
        format!("[{:.3} s] {}", self.secs, show(&self.out))
    }
}

/// `pam_strerror(PAM_AUTH_ERR)`.
pub const E_AUTH: &str = "Authentication failure";
/// `pam_strerror(PAM_PERM_DENIED)`.
pub const E_PERM: &str = "Permission denied";
/// `pam_strerror(PAM_SESSION_ERR)`.
pub const E_SESSION: &str = "Cannot make/remove an entry for the specified session";

/// `pamtester -v [-I item=value]... SERVICE USER OPS...` as root in the namespace, `input` on its
/// stdin (pamtester's conversation reads answers from stdin, one line per prompt).
pub fn pamtester(
    sb: &Sandbox,
    service: &str,
    user: &str,
    ops: &[&str],
    items: &[(&str, &str)],
    input: &str,
) -> Pam {
    let mut args: Vec<String> = vec!["pamtester".into(), "-v".into()];
    for (k, v) in items {
        args.push("-I".into());
        args.push(format!("{k}={v}"));
    }
    args.push(service.into());
    args.push(user.into());
    args.extend(ops.iter().map(|s| s.to_string()));
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    let t = now_f64();
    let out = sb.run_full(&a, Some(input.as_bytes()), Duration::from_secs(30));
    Pam {
        out,
        secs: now_f64() - t,
    }
}

// ---------------------------------------------------------------------------------------------
// TOTP and jitctl
// ---------------------------------------------------------------------------------------------

/// The TOTP code of `secret` (base32) at Unix time `t`, computed by `oathtool` (RFC 6238,
/// SHA-1, 6 digits, 30 s): an implementation independent of jitd's.
pub fn oathtool(secret: &str, t: i64) -> String {
    let o = Command::new("oathtool")
        .args(["--totp", "-b", "-N", &format!("@{t}"), secret])
        .output()
        .expect("run oathtool (apt-get install oathtool)");
    assert!(o.status.success(), "oathtool failed: {}", show(&o));
    let c = stdout(&o).trim().to_string();
    assert!(
        c.len() == 6 && c.bytes().all(|b| b.is_ascii_digit()),
        "oathtool printed {c:?}"
    );
    c
}

/// Waits, if needed, until at least `margin` seconds are left in the current 30 s TOTP step, so
/// that a code made now is checked in the same step; returns a time inside that step.
pub fn step_with_margin(margin: f64) -> i64 {
    let t = now_f64();
    let left = 30.0 - t.rem_euclid(30.0);
    if left < margin {
        std::thread::sleep(Duration::from_secs_f64(left + 0.05));
    }
    crate::now()
}

/// `jitctl --json ARGS` that must succeed, parsed.
pub fn jitctl_json(sb: &Sandbox, args: &[&str]) -> Value {
    let mut v = vec!["--json"];
    v.extend_from_slice(args);
    let o = sb.jitctl(&v);
    assert_eq!(
        code(&o),
        0,
        "jitctl {v:?} failed: {}\n{}",
        show(&o),
        sb.jitd_log()
    );
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("jitctl {v:?} printed no JSON ({e}): {}", show(&o)))
}

/// `jitctl mfa enroll USER --json`: returns the base32 secret.
pub fn mfa_enroll(sb: &Sandbox, user: &str) -> String {
    let v = jitctl_json(sb, &["mfa", "enroll", user]);
    assert_eq!(v["user"], user, "enrolment answer: {v}");
    assert!(
        v["uri"]
            .as_str()
            .is_some_and(|u| u.starts_with("otpauth://totp/")),
        "enrolment answer lacks an otpauth URI: {v}"
    );
    v["secret"]
        .as_str()
        .unwrap_or_else(|| panic!("enrolment answer lacks the secret: {v}"))
        .to_string()
}

/// `jitctl --json grant show ID`.
pub fn grant_show(sb: &Sandbox, id: &str) -> Value {
    jitctl_json(sb, &["grant", "show", id])
}

/// The grant's `state` (`live`, `armed`, `expired`, `revoked`, `ended`, ...).
pub fn grant_state(sb: &Sandbox, id: &str) -> String {
    let g = grant_show(sb, id);
    g["state"]
        .as_str()
        .unwrap_or_else(|| panic!("grant without state: {g}"))
        .to_string()
}

/// Whether a state is one of the ended ones.
pub fn is_ended(state: &str) -> bool {
    !matches!(state, "live" | "armed" | "pending")
}

/// `jitctl --json session list` as an array of session objects.
pub fn sessions(sb: &Sandbox) -> Vec<Value> {
    let v = jitctl_json(sb, &["session", "list"]);
    match v {
        Value::Array(a) => a,
        Value::Object(ref m) => m
            .get("sessions")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_else(|| panic!("unexpected session list shape: {v}")),
        other => panic!("unexpected session list shape: {other}"),
    }
}

/// Whether `getent passwd NAME` resolves in the sandbox.
pub fn resolves(sb: &Sandbox, name: &str) -> bool {
    code(&sb.run(&["getent", "passwd", name])) == 0
}

/// Members of `getent group NAME` (empty if the group does not resolve).
pub fn members(sb: &Sandbox, group: &str) -> Vec<String> {
    let o = sb.run(&["getent", "group", group]);
    if code(&o) != 0 {
        return Vec::new();
    }
    crate::sandbox::group_members(&stdout(&o))
}

/// The audit records whose `event` contains `part` and whose JSON mentions `needle`.
pub fn audit_matching(sb: &Sandbox, part: &str, needle: &str) -> Vec<Value> {
    sb.audit()
        .into_iter()
        .filter(|e| e["event"].as_str().is_some_and(|ev| ev.contains(part)))
        .filter(|e| e.to_string().contains(needle))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// su from an unprivileged user
// ---------------------------------------------------------------------------------------------

/// `su TARGET -c CMD` run by the local user with uid `from` (via `setpriv`, so su's pam_rootok
/// does not apply), answers on stdin (util-linux su reads them through PAM's conversation, which
/// reads stdin when it is not a terminal). Returns the output and the seconds it took.
pub fn su_from(sb: &Sandbox, from: u32, target: &str, cmd: &str, input: &str) -> (Output, f64) {
    let t = now_f64();
    let u = from.to_string();
    let o = sb.run_full(
        &[
            "setpriv",
            "--reuid",
            &u,
            "--regid",
            &u,
            "--init-groups",
            "su",
            target,
            "-c",
            cmd,
        ],
        Some(input.as_bytes()),
        Duration::from_secs(30),
    );
    (o, now_f64() - t)
}

// ---------------------------------------------------------------------------------------------
// sshd on loopback
// ---------------------------------------------------------------------------------------------

/// Where the sandbox's sshd finds the keys of local users (root-owned, one file per user).
pub const KEYS_DIR: &str = "/etc/ssh/jit-test-keys";

/// Where the sandbox installs `jit-authorized-keys` (a root-owned path: sshd refuses an
/// AuthorizedKeysCommand under a group/world-writable directory such as /tmp).
pub const AUTH_KEYS_CMD: &str = "/etc/ssh/jit-authorized-keys";

/// A real sshd in the sandbox, listening on 127.0.0.1 on a port of its own.
pub struct Sshd<'a> {
    sb: &'a Sandbox,
    /// The port.
    pub port: u16,
    /// sshd's pid (the listener; killed by the sandbox's drop).
    pub pid: i32,
    /// Its scratch directory (config, host key, client keys, askpass).
    pub dir: PathBuf,
    seq: AtomicU32,
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local_addr").port()
}

fn keygen(path: &Path) {
    let o = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "jit-tests", "-f"])
        .arg(path)
        .output()
        .expect("run ssh-keygen (openssh-client)");
    assert!(o.status.success(), "ssh-keygen: {}", show(&o));
}

/// The sshd_config.d drop-in of docs/design.md#paths, with the helper's sandbox path.
pub fn jit_sshd_conf() -> String {
    format!(
        "# /etc/ssh/sshd_config.d/jit.conf as docs/design.md#paths writes it\n\
         AuthorizedKeysCommand {AUTH_KEYS_CMD} %u\n\
         AuthorizedKeysCommandUser nobody\n\
         Match Group jit-mfa\n    AuthenticationMethods publickey,keyboard-interactive\n"
    )
}

impl<'a> Sshd<'a> {
    /// Starts sshd: own host key, own config (UsePAM, keyboard-interactive, keys of local users
    /// from [`KEYS_DIR`]), checked by `sshd -t`. With `jit`, the config includes docs/design.md#paths'
    /// drop-in (AuthorizedKeysCommand `jit-authorized-keys %u`, `Match Group jit-mfa` →
    /// `publickey,keyboard-interactive`). PAM service `sshd` is whatever the sandbox's
    /// /etc/pam.d/sshd says (write it before logging in).
    pub fn start(sb: &'a Sandbox, jit: bool) -> Sshd<'a> {
        require_tools(&["sshd", "ssh", "ssh-keygen"]);
        let dir = sb.scratch("sshd");
        fs::create_dir_all(&dir).expect("mkdir sshd scratch");
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).expect("chmod");
        let hostkey = dir.join("host_ed25519");
        if !hostkey.exists() {
            keygen(&hostkey);
        }
        let run_sshd = sb.host_path("/run/sshd");
        fs::create_dir_all(&run_sshd).expect("mkdir /run/sshd");
        fs::set_permissions(&run_sshd, fs::Permissions::from_mode(0o755)).expect("chmod");
        sb.sh_ok(&format!("mkdir -p {KEYS_DIR} && chmod 0755 {KEYS_DIR}"));
        let mut include = String::new();
        if jit {
            let helper = artifacts().authorized_keys;
            sb.sh_ok(&format!(
                "install -o root -g root -m 0755 {} {AUTH_KEYS_CMD}",
                path_str(&helper)
            ));
            write_file(
                sb,
                "/etc/ssh/sshd_config.d/jit.conf",
                &jit_sshd_conf(),
                0o644,
            );
            include = "Include /etc/ssh/sshd_config.d/jit.conf\n".into();
        }
        let cfg = dir.join("sshd_config");
        let text = format!(
            "# jit_tests sshd (sandbox {root})\n\
             ListenAddress 127.0.0.1\n\
             HostKey {hostkey}\n\
             PidFile none\n\
             UsePAM yes\n\
             KbdInteractiveAuthentication yes\n\
             PasswordAuthentication no\n\
             PubkeyAuthentication yes\n\
             PermitRootLogin prohibit-password\n\
             AuthorizedKeysFile {KEYS_DIR}/%u\n\
             StrictModes yes\n\
             UseDNS no\n\
             PrintMotd no\n\
             PrintLastLog no\n\
             LoginGraceTime 30\n\
             LogLevel VERBOSE\n\
             {include}",
            root = sb.root().display(),
            hostkey = hostkey.display(),
        );
        fs::write(&cfg, text).expect("write sshd_config");
        let cfgs = path_str(&cfg).to_string();
        let o = sb.run(&["/usr/sbin/sshd", "-t", "-f", &cfgs]);
        assert_eq!(code(&o), 0, "sshd -t refuses the config: {}", show(&o));
        for attempt in 0..5 {
            let port = free_port();
            let p = port.to_string();
            let pid = sb.spawn(
                "sshd",
                &["/usr/sbin/sshd", "-D", "-e", "-f", &cfgs, "-p", &p],
            );
            let ready = poll_opt(Duration::from_secs(10), || {
                if sb.try_wait(pid).is_some() {
                    return Some(false);
                }
                banner(port).then_some(true)
            });
            match ready {
                Some(true) => {
                    return Sshd {
                        sb,
                        port,
                        pid,
                        dir,
                        seq: AtomicU32::new(0),
                    }
                }
                _ => {
                    let log = sb.log_of(pid);
                    if attempt < 4 && log.contains("Address already in use") {
                        continue;
                    }
                    panic!("sshd did not start on 127.0.0.1:{port}:\n{log}");
                }
            }
        }
        unreachable!("the loop returns or panics")
    }

    /// sshd's log (stderr with `-e`, LogLevel VERBOSE).
    pub fn log(&self) -> String {
        self.sb.log_of(self.pid)
    }

    /// A client key pair in the scratch dir: (private key path, public key line).
    pub fn keypair(&self, name: &str) -> (PathBuf, String) {
        let k = self.dir.join(format!("id_{name}"));
        if !k.exists() {
            keygen(&k);
        }
        let public = fs::read_to_string(k.with_extension("pub")).expect("read .pub");
        (k, public.trim().to_string())
    }

    /// Lets `user` (a local account) log in with `public`.
    pub fn authorize(&self, user: &str, public: &str) {
        write_file(
            self.sb,
            &format!("{KEYS_DIR}/{user}"),
            &format!("{public}\n"),
            0o644,
        );
    }

    fn askpass(&self) -> PathBuf {
        let p = self.dir.join("askpass");
        if !p.exists() {
            fs::write(
                &p,
                "#!/bin/sh\n\
                 # ssh runs this for every keyboard-interactive prompt (SSH_ASKPASS_REQUIRE=force),\n\
                 # the prompt in $1. It logs the prompt and answers JIT_TEST_CODE, or refuses.\n\
                 printf '%s\\n' \"$1\" >> \"$JIT_ASKPASS_LOG\"\n\
                 [ -n \"$JIT_TEST_CODE\" ] || exit 1\n\
                 printf '%s\\n' \"$JIT_TEST_CODE\"\n",
            )
            .expect("write askpass");
            fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).expect("chmod");
        }
        p
    }

    /// The command line of an ssh login (`env ... ssh ...`), and the askpass log it writes.
    fn ssh_args(
        &self,
        user: &str,
        key: &Path,
        code: Option<&str>,
        cmd: &str,
    ) -> (Vec<String>, PathBuf) {
        let n = self.seq.fetch_add(1, Ordering::SeqCst);
        let log = self.dir.join(format!("askpass.{n}.log"));
        let home = self.dir.join("client-home");
        fs::create_dir_all(&home).expect("mkdir client home");
        let mut v: Vec<String> = vec![
            "env".into(),
            format!("HOME={}", home.display()),
            format!("SSH_ASKPASS={}", self.askpass().display()),
            "SSH_ASKPASS_REQUIRE=force".into(),
            "DISPLAY=:0".into(),
            format!("JIT_ASKPASS_LOG={}", log.display()),
            format!("JIT_TEST_CODE={}", code.unwrap_or("")),
            "ssh".into(),
        ];
        for o in [
            "StrictHostKeyChecking=no",
            "UserKnownHostsFile=/dev/null",
            "GlobalKnownHostsFile=/dev/null",
            "BatchMode=no",
            "IdentitiesOnly=yes",
            "IdentityAgent=none",
            "PreferredAuthentications=publickey,keyboard-interactive",
            "NumberOfPasswordPrompts=1",
            "ConnectTimeout=10",
            "LogLevel=ERROR",
        ] {
            v.push("-o".into());
            v.push(o.into());
        }
        v.extend([
            "-F".into(),
            "/dev/null".into(),
            "-T".into(),
            "-i".into(),
            path_str(key).into(),
            "-p".into(),
            self.port.to_string(),
            format!("{user}@127.0.0.1"),
            cmd.into(),
        ]);
        (v, log)
    }

    /// `ssh USER@127.0.0.1 CMD` with `key`, answering a keyboard-interactive prompt with `code`
    /// (none: any prompt is refused). Returns the output, the seconds it took and the prompts
    /// ssh was shown.
    pub fn ssh(&self, user: &str, key: &Path, code: Option<&str>, cmd: &str) -> SshRun {
        let (args, log) = self.ssh_args(user, key, code, cmd);
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        let t = now_f64();
        let out = self.sb.run_full(&a, None, Duration::from_secs(60));
        SshRun {
            secs: now_f64() - t,
            prompts: fs::read_to_string(&log).unwrap_or_default(),
            out,
        }
    }

    /// Starts an ssh login running `cmd` in the background; returns the client's pid (the
    /// process the sandbox spawned, `env` exec'ing ssh) and the askpass log.
    pub fn ssh_spawn(
        &self,
        user: &str,
        key: &Path,
        code: Option<&str>,
        cmd: &str,
    ) -> (i32, PathBuf) {
        let (args, log) = self.ssh_args(user, key, code, cmd);
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        (self.sb.spawn(&format!("ssh-{user}"), &a), log)
    }
}

/// Whether 127.0.0.1:port answers with an SSH banner.
fn banner(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let mut buf = [0u8; 64];
    match s.read(&mut buf) {
        Ok(n) => buf[..n].starts_with(b"SSH-2.0-"),
        Err(_) => false,
    }
}

/// One ssh login.
#[derive(Debug)]
pub struct SshRun {
    /// The client's output.
    pub out: Output,
    /// Seconds from start to exit.
    pub secs: f64,
    /// Prompts ssh passed to askpass, one per line.
    pub prompts: String,
}

impl SshRun {
    /// For assertion messages.
    pub fn show(&self) -> String {
        format!(
            "[{:.3} s] prompts={:?} {}",
            self.secs,
            self.prompts,
            show(&self.out)
        )
    }
}
