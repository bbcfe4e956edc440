//! A real `jit-server` for the host-link tests: `init` on a SQLite data directory, `apply` a
//! policy, `serve` on 127.0.0.1 with its own TLS certificate, people's calls made with jitctl's
//! remote verbs (JIT_SERVER / JIT_TOKEN / JIT_FINGERPRINT). Processes are killed on drop.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;

use serde_json::Value;

use crate::sandbox::artifacts;
use crate::{show, stdout};

/// `jit-server`, built once per test binary in the same target dir and profile.
pub fn server_bin() -> PathBuf {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| {
        let a = artifacts();
        let exe = std::env::current_exe().expect("current_exe");
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("test binary under <target>/<profile>/deps")
            .to_path_buf();
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.current_dir(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .parent()
                .expect("workspace"),
        )
        .args(["build", "--quiet", "-p", "jit_server"])
        .env("CARGO_TARGET_DIR", &a.target_dir);
        if profile_dir.file_name().and_then(|n| n.to_str()) == Some("release") {
            cmd.arg("--release");
        }
        let out = cmd.output().expect("run cargo");
        assert!(out.status.success(), "building jit_server: {}", show(&out));
        profile_dir.join("jit-server")
    })
    .clone()
}

/// A data directory and, while serving, the server process.
pub struct Fleet {
    /// The data directory (removed on drop).
    pub data: PathBuf,
    /// `IP:PORT` it listens on (kept across restarts).
    pub addr: String,
    /// The TLS fingerprint to pin.
    pub fingerprint: String,
    child: Option<Child>,
    home: PathBuf,
}

impl Drop for Fleet {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.data);
        let _ = std::fs::remove_dir_all(&self.home);
    }
}

/// Runs `jit-server ARGS` and returns stdout, asserting success.
pub fn server_ok(args: &[&str]) -> String {
    let out = Command::new(server_bin())
        .args(args)
        .output()
        .expect("run jit-server");
    assert!(out.status.success(), "jit-server {args:?}: {}", show(&out));
    stdout(&out)
}

impl Fleet {
    /// `init` a fresh data directory with `server_toml` and `policy` applied; not serving yet.
    pub fn init(tag: &str, server_toml: &str, policy: &str) -> Fleet {
        let data = std::env::temp_dir().join(format!("jit-fleet-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&data);
        std::fs::create_dir_all(&data).expect("data dir");
        let home = data.with_extension("home");
        std::fs::create_dir_all(&home).expect("home dir");
        let d = data.to_str().expect("utf-8 path");
        server_ok(&["init", "--data", d, "--json"]);
        std::fs::write(data.join("server.toml"), server_toml).expect("server.toml");
        let p = data.join("policy.toml");
        std::fs::write(&p, policy).expect("policy");
        server_ok(&["apply", p.to_str().expect("utf-8"), "--data", d]);
        Fleet {
            data,
            addr: "127.0.0.1:0".into(),
            fingerprint: String::new(),
            child: None,
            home,
        }
    }

    fn d(&self) -> &str {
        self.data.to_str().expect("utf-8 path")
    }

    /// An API token for `person`.
    pub fn token(&self, person: &str) -> String {
        let out = server_ok(&["token", "issue", person, "--data", self.d(), "--json"]);
        let v: Value = serde_json::from_str(out.trim()).expect("token json");
        v["token"].as_str().expect("token").to_string()
    }

    /// `host add NAME --label env=prod`: the one-time join token.
    pub fn join_token(&self, host: &str) -> String {
        let out = server_ok(&[
            "host",
            "add",
            host,
            "--label",
            "env=prod",
            "--data",
            self.d(),
            "--json",
        ]);
        let v: Value = serde_json::from_str(out.trim()).expect("join json");
        v["token"].as_str().expect("token").to_string()
    }

    /// Starts `serve` (on the same address as before after a restart).
    pub fn serve(&mut self) {
        let mut child = Command::new(server_bin())
            .args(["serve", "--data", self.d(), "--listen", &self.addr])
            .stdout(Stdio::piped())
            .stderr(self.log_file())
            .spawn()
            .expect("spawn jit-server");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read");
        let words: Vec<&str> = line.split_whitespace().collect();
        assert!(words.len() >= 6, "jit-server serve said {line:?}");
        self.addr = words[3].to_string();
        self.fingerprint = words[5].to_string();
        self.child = Some(child);
    }

    /// The server's stderr (its internal errors), kept across restarts in `serve.log`.
    fn log_file(&self) -> Stdio {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.data.join("serve.log"))
            .map_or_else(|_| Stdio::null(), Stdio::from)
    }

    /// What the server wrote to stderr so far (for a failing test's message).
    pub fn server_log(&self) -> String {
        std::fs::read_to_string(self.data.join("serve.log")).unwrap_or_default()
    }

    /// `jit-server ARGS --data DATA` (must succeed): stdout.
    pub fn cmd(&self, args: &[&str]) -> String {
        let mut a = args.to_vec();
        a.extend_from_slice(&["--data", self.d()]);
        server_ok(&a)
    }

    /// SIGHUP to the serving process (it reloads its key files).
    pub fn sighup(&self) {
        let c = self.child.as_ref().expect("serving");
        let pid = i32::try_from(c.id()).expect("pid");
        // SAFETY: kill(2) on our own child's pid.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGHUP) }, 0, "SIGHUP");
    }

    /// SIGKILL to the server.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// `https://ADDR`.
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// A person's jitctl remote verb with `token`.
    pub fn jitctl(&self, token: &str, args: &[&str]) -> Output {
        Command::new(artifacts().jitctl)
            .args(args)
            .env_clear()
            .env("HOME", &self.home)
            .env("JIT_SERVER", self.url())
            .env("JIT_TOKEN", token)
            .env("JIT_FINGERPRINT", &self.fingerprint)
            .output()
            .expect("run jitctl")
    }

    /// `jitctl --json request ROLE --host HOST --for DUR …` as the token's person; the id.
    pub fn request(&self, token: &str, role: &str, host: &str, dur: &str) -> String {
        let o = self.jitctl(
            token,
            &[
                "--json",
                "request",
                role,
                "--host",
                host,
                "--for",
                dur,
                "--reason",
                "fleet sync test",
                "--ticket",
                "OPS-1",
            ],
        );
        assert!(o.status.success(), "request: {}", show(&o));
        let v: Value = serde_json::from_str(stdout(&o).trim()).expect("request json");
        v["id"].as_str().expect("id").to_string()
    }

    /// `jitctl approve ID` as the token's person (must succeed).
    pub fn approve(&self, token: &str, id: &str) {
        let o = self.jitctl(token, &["approve", id]);
        assert!(o.status.success(), "approve: {}", show(&o));
    }

    /// `jitctl revoke ID` (must succeed).
    pub fn revoke(&self, token: &str, id: &str) {
        let o = self.jitctl(token, &["revoke", id]);
        assert!(o.status.success(), "revoke: {}", show(&o));
    }
}
