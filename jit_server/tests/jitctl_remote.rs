//! jitctl's remote verbs against a real jit-server over pinned TLS: login writes a 0600 client
//! file with the pin, a wrong pin is refused, request/approve/deny/revoke/hosts as people use
//! them, environment overrides.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use common::*;
use serde_json::Value;

/// Builds jitctl once (same target dir and profile as this test) and returns its path.
fn jitctl() -> PathBuf {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| {
        let exe = std::env::current_exe().unwrap();
        let profile_dir = exe.parent().and_then(Path::parent).unwrap().to_path_buf();
        let target = profile_dir.parent().unwrap().to_path_buf();
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap())
            .args(["build", "--quiet", "-p", "jitd", "--bin", "jitctl"])
            .env("CARGO_TARGET_DIR", &target);
        if profile_dir.file_name().and_then(|n| n.to_str()) == Some("release") {
            cmd.arg("--release");
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        profile_dir.join("jitctl")
    })
    .clone()
}

struct Person {
    home: PathBuf,
}

impl Drop for Person {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.home);
    }
}

impl Person {
    fn new(name: &str) -> Person {
        Person {
            home: temp_dir(&format!("home-{name}")),
        }
    }
    fn jitctl(&self, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
        let out = Command::new(jitctl())
            .args(args)
            .env_clear()
            .env("HOME", &self.home)
            .envs(env.iter().copied())
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
    fn ok(&self, args: &[&str]) -> String {
        let (rc, out, err) = self.jitctl(args, &[]);
        assert_eq!(rc, 0, "jitctl {args:?}: {out}{err}");
        out
    }
    fn login(&self, s: &Server, token: &str) {
        let url = format!("https://{}", s.addr);
        self.ok(&[
            "login",
            &url,
            "--token",
            token,
            "--fingerprint",
            &s.fingerprint,
        ]);
    }
}

#[test]
fn login_pins_the_server_and_writes_a_private_client_file() {
    let f = fleet();
    let s = &f.server;
    let alice = Person::new("alice");
    let url = format!("https://{}", s.addr);
    // A wrong pin: the TLS handshake fails, nothing is saved.
    let wrong = "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    let (rc, _, err) = alice.jitctl(
        &["login", &url, "--token", &f.alice, "--fingerprint", wrong],
        &[],
    );
    assert_eq!(rc, 3, "{err}");
    assert!(err.contains("pinned"), "{err}");
    let file = alice.home.join(".config/jit/client.toml");
    assert!(!file.exists());
    // A wrong token: refused, nothing saved.
    let (rc, _, _) = alice.jitctl(
        &[
            "login",
            &url,
            "--token",
            "jitp_nope",
            "--fingerprint",
            &s.fingerprint,
        ],
        &[],
    );
    assert_eq!(rc, 1);
    assert!(!file.exists());
    alice.login(s, &f.alice);
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains(&s.fingerprint));
    // A client file others can read is refused (it holds a token).
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (rc, _, err) = alice.jitctl(&["requests"], &[]);
    assert_eq!(rc, 1);
    assert!(err.contains("chmod 600"), "{err}");
}

#[test]
fn request_review_and_revoke_through_jitctl() {
    let mut f = fleet();
    let s = &f.server;
    let (alice, bob, carol) = (
        Person::new("alice"),
        Person::new("bob"),
        Person::new("carol"),
    );
    alice.login(s, &f.alice);
    bob.login(s, &f.bob);
    carol.login(s, &f.carol);

    let out = alice.ok(&[
        "--json",
        "request",
        "web-admin",
        "--host",
        "web1",
        "--for",
        "1h",
        "--reason",
        "restart nginx after deploy",
        "--ticket",
        "OPS-7",
    ]);
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["state"], "pending");
    let id = v["id"].as_str().unwrap().to_string();

    // Refusals carry the server's message and exit 1 (2 for a bad request).
    let (rc, _, err) = alice.jitctl(&["approve", &id], &[]);
    assert_eq!(rc, 1);
    assert!(err.contains("own request"), "{err}");
    let (rc, _, _) = alice.jitctl(
        &[
            "request",
            "web-admin",
            "--host",
            "web1",
            "--for",
            "1h",
            "--reason",
            ".",
        ],
        &[],
    );
    assert_eq!(rc, 2);
    let (rc, _, _) = alice.jitctl(
        &[
            "request",
            "web-admin",
            "--for",
            "1h",
            "--reason",
            "restart nginx after deploy",
        ],
        &[],
    );
    assert_eq!(rc, 2, "no host and no selector");

    assert!(bob.ok(&["requests", "--pending"]).contains(&id));
    assert!(bob
        .ok(&["approve", &id, "--comment", "looks fine"])
        .contains("pending"));
    assert!(carol.ok(&["approve", &id]).contains("approved"));
    assert_eq!(f.web1.poll(s, 0).unwrap().grants.len(), 1);

    let hosts = bob.ok(&["hosts"]);
    assert!(
        hosts.contains("web1") && hosts.contains("env=prod"),
        "{hosts}"
    );

    assert_eq!(
        alice.ok(&["revoke", &id]).trim(),
        format!("revoked {id} on web1")
    );
    assert!(f.web1.poll(s, 0).unwrap().grants.is_empty());

    // A selector request, denied.
    let out = alice.ok(&[
        "--json",
        "request",
        "web-admin",
        "--select",
        "env=prod",
        "--for",
        "30m",
        "--reason",
        "rotate the nginx logs",
        "--ticket",
        "OPS-8",
    ]);
    let id2 = serde_json::from_str::<Value>(out.trim()).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(bob
        .ok(&["deny", &id2, "--comment", "not now"])
        .contains("denied"));
    let mine = alice.ok(&["--json", "requests", "--mine"]);
    let v: Value = serde_json::from_str(mine.trim()).unwrap();
    assert_eq!(v["requests"].as_array().unwrap().len(), 2, "history kept");
    // A request no host holds a grant of says so, not "on []".
    let id3 = id_of(&file_request(s, &f.alice, web_request()));
    assert_eq!(
        alice.ok(&["revoke", &id3]).trim(),
        format!("revoked {id3} (no host held a live grant of it)")
    );
}

#[test]
fn environment_overrides_the_client_file() {
    let f = fleet();
    let s = &f.server;
    let nobody = Person::new("env");
    let (rc, _, err) = nobody.jitctl(&["requests"], &[]);
    assert_eq!(rc, 1);
    assert!(err.contains("not logged in"), "{err}");
    let url = format!("https://{}", s.addr);
    let env = [
        ("JIT_SERVER", url.as_str()),
        ("JIT_TOKEN", f.bob.as_str()),
        ("JIT_FINGERPRINT", s.fingerprint.as_str()),
    ];
    let (rc, out, err) = nobody.jitctl(&["requests"], &env);
    assert_eq!(rc, 0, "{err}");
    assert!(out.contains("no requests"));
    // The pin from the environment is enforced too.
    let bad = [
        ("JIT_SERVER", url.as_str()),
        ("JIT_TOKEN", f.bob.as_str()),
        ("JIT_FINGERPRINT", "SHA256:xx"),
    ];
    assert_eq!(nobody.jitctl(&["requests"], &bad).0, 3);
}

#[test]
fn request_wait_returns_when_the_request_is_decided() {
    let f = fleet();
    let s = &f.server;
    let (alice, bob, carol) = (
        Person::new("alice"),
        Person::new("bob"),
        Person::new("carol"),
    );
    alice.login(s, &f.alice);
    bob.login(s, &f.bob);
    carol.login(s, &f.carol);
    let child = Command::new(jitctl())
        .args([
            "--json",
            "request",
            "web-admin",
            "--host",
            "web1",
            "--for",
            "1h",
            "--reason",
            "restart nginx after deploy",
            "--ticket",
            "OPS-9",
            "--wait",
        ])
        .env_clear()
        .env("HOME", &alice.home)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Find the pending request, approve it twice.
    let mut id = String::new();
    for _ in 0..100 {
        let out = bob.ok(&["--json", "requests", "--pending"]);
        let v: Value = serde_json::from_str(out.trim()).unwrap();
        if let Some(r) = v["requests"].as_array().and_then(|a| a.first()) {
            id = r["id"].as_str().unwrap().to_string();
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(!id.is_empty(), "the request was filed");
    bob.ok(&["approve", &id]);
    carol.ok(&["approve", &id]);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let v: Value = serde_json::from_str(String::from_utf8_lossy(&out.stdout).trim()).unwrap();
    assert_eq!(v["id"], id.as_str());
    assert_eq!(v["state"], "approved");
}
