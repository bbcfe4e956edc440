//! The real jitd binary on a private socket: malformed, oversize and truncated frames get an
//! error reply and a closed connection while other clients are still served
//! (docs/threat-model.md#b8); a non-root peer may not change state (X1, X2 there); jitctl
//! refuses to talk to a socket that is not served by root (X3); SIGTERM stops jitd cleanly with its state kept.
//!
//! Ids in comments and test names (X1, X3, …) are rows of docs/threat-model.md.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure is the assertion

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

struct Jitd {
    dir: PathBuf,
    child: Option<Child>,
}

impl Jitd {
    fn start(tag: &str) -> Jitd {
        let dir = std::env::temp_dir().join(format!("jitd-sock-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("home")).unwrap();
        std::fs::write(
            dir.join("passwd"),
            "root:x:0:0::/root:/bin/bash\ncarol:x:1001:1001::/:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(dir.join("group"), "root:x:0:\nadm:x:4:\n").unwrap();
        let d = dir.display();
        std::fs::write(
            dir.join("jitd.toml"),
            format!(
                "uid_range = \"4200000-4200099\"\nnscd = \"off\"\nkill_grace = \"100ms\"\nhome_root = \"{d}/home\"\nstate_dir = \"{d}/state\"\nsnapshot_path = \"{d}/run/snapshot\"\nsocket_path = \"{d}/run/jitd.sock\"\naudit_log = \"{d}/log/audit.jsonl\"\npasswd_file = \"{d}/passwd\"\ngroup_file = \"{d}/group\"\ncgroup_dir = \"off\"\ncertify_suid_roots = [\"{d}\"]\n"
            ),
        )
        .unwrap();
        let mut j = Jitd { dir, child: None };
        j.spawn();
        j
    }

    fn spawn(&mut self) {
        let child = Command::new(env!("CARGO_BIN_EXE_jitd"))
            .arg("--config")
            .arg(self.dir.join("jitd.toml"))
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.jitctl(&["status"]).status.success() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("jitd did not come up");
    }

    fn sock(&self) -> PathBuf {
        self.dir.join("run/jitd.sock")
    }

    fn jitctl(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_jitctl"))
            .arg("--socket")
            .arg(self.sock())
            .args(args)
            .output()
            .unwrap()
    }

    fn raw(&self, bytes: &[u8]) -> Vec<u8> {
        let mut s = UnixStream::connect(self.sock()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let _ = s.write_all(bytes);
        let _ = s.shutdown(std::net::Shutdown::Write);
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        out
    }
}

impl Drop for Jitd {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn frame(body: &[u8]) -> Vec<u8> {
    let mut v = (body.len() as u32).to_le_bytes().to_vec();
    v.extend_from_slice(body);
    v
}

fn reply_json(raw: &[u8]) -> serde_json::Value {
    assert!(raw.len() >= 4, "no reply frame: {raw:?}");
    let n = u32::from_le_bytes(raw[..4].try_into().unwrap()) as usize;
    assert_eq!(raw.len(), 4 + n, "exactly one reply frame, then close");
    serde_json::from_slice(&raw[4..]).unwrap()
}

#[test]
fn bad_frames_get_an_error_and_the_daemon_keeps_serving() {
    let j = Jitd::start("frames");
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("length 0", vec![0, 0, 0, 0], "bad_request"),
        (
            "cap + 1",
            ((1u32 << 20) + 1).to_le_bytes().to_vec(),
            "bad_request",
        ),
        ("2^32-1", vec![0xff; 4], "bad_request"),
        ("not JSON", frame(b"hello"), "bad_request"),
        (
            "no version",
            frame(br#"{"req":{"type":"get_status"}}"#),
            "bad_request",
        ),
        (
            "future version",
            frame(br#"{"v":9,"req":{"type":"get_status"}}"#),
            "bad_version",
        ),
        (
            "unknown type",
            frame(br#"{"v":1,"req":{"type":"format_disk"}}"#),
            "bad_request",
        ),
        (
            "invalid UTF-8",
            frame(b"{\"v\":1,\"req\":{\"type\":\"show_grant\",\"id\":\"\xff\xfe\"}}"),
            "bad_request",
        ),
        (
            "trailing bytes",
            frame(br#"{"v":1,"req":{"type":"get_status"}}xyz"#),
            "bad_request",
        ),
    ];
    for (what, bytes, code) in cases {
        let r = reply_json(&j.raw(&bytes));
        assert_eq!(r["result"], "error", "{what}: {r}");
        assert_eq!(r["code"], code, "{what}: {r}");
    }
    // Truncated header and truncated body: closed without a reply, never a hang.
    assert!(j.raw(&[5, 0]).is_empty());
    let mut trunc = frame(br#"{"v":1,"req":{"type":"get_status"}}"#);
    trunc.truncate(10);
    assert!(j.raw(&trunc).is_empty());
    // 10 000 pipelined frames: one reply, then close (one request per connection).
    let one = frame(br#"{"v":1,"req":{"type":"get_status"}}"#);
    let many: Vec<u8> = one
        .iter()
        .copied()
        .cycle()
        .take(one.len() * 10_000)
        .collect();
    let r = reply_json(&j.raw(&many));
    assert_eq!(r["result"], "ok");
    // A silent client holds one worker only until its deadline; others are served meanwhile.
    let _slow: Vec<UnixStream> = (0..3)
        .map(|_| UnixStream::connect(j.sock()).unwrap())
        .collect();
    let t = Instant::now();
    assert!(j.jitctl(&["status"]).status.success());
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "served while slow clients wait"
    );
}

#[test]
fn non_root_peers_cannot_change_state_and_impostors_are_refused() {
    let j = Jitd::start("peer");
    let as_carol = |args: &[&str]| {
        Command::new("setpriv")
            .args([
                "--reuid=1001",
                "--regid=1001",
                "--clear-groups",
                env!("CARGO_BIN_EXE_jitctl"),
                "--socket",
            ])
            .arg(j.sock())
            .args(args)
            .output()
            .unwrap()
    };
    let add = as_carol(&["grant", "add", "mallory", "--for", "1h", "--account"]);
    assert_eq!(add.status.code(), Some(1), "{add:?}");
    assert!(
        String::from_utf8_lossy(&add.stderr).contains("only root"),
        "{add:?}"
    );
    let id = String::from_utf8(
        j.jitctl(&["grant", "add", "alice", "--for", "1h", "--account"])
            .stdout,
    )
    .unwrap();
    let id = id.trim();
    let rev = as_carol(&["grant", "revoke", id]);
    assert_eq!(rev.status.code(), Some(1), "{rev:?}");
    let list = as_carol(&["--json", "grant", "list", "--all"]);
    assert!(list.status.success(), "{list:?}");
    assert_eq!(
        String::from_utf8_lossy(&list.stdout).trim(),
        "[]",
        "carol sees none of alice's grants"
    );
    let audit = std::fs::read_to_string(j.dir.join("log/audit.jsonl")).unwrap();
    assert!(
        audit.contains("request.denied") && audit.contains("\"peer_uid\":1001"),
        "{audit}"
    );

    // X3: a socket served by uid 1001 is refused before anything is sent.
    let fake = j.dir.join("fake.sock");
    std::fs::set_permissions(&j.dir, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let mut server = Command::new("setpriv")
        .args(["--reuid=1001", "--regid=1001", "--clear-groups", "/usr/bin/python3", "-c"])
        .arg(format!(
            "import socket,os,time\ns=socket.socket(socket.AF_UNIX)\ns.bind({:?})\nos.chmod({:?},0o666)\ns.listen(5)\nc,_=s.accept()\nd=c.recv(65536)\nopen({:?},'wb').write(d)\ntime.sleep(2)",
            fake.display().to_string(),
            fake.display().to_string(),
            j.dir.join("leaked").display().to_string()
        ))
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !fake.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = Command::new(env!("CARGO_BIN_EXE_jitctl"))
        .arg("--socket")
        .arg(&fake)
        .arg("status")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not root"),
        "{out:?}"
    );
    let _ = server.kill();
    let _ = server.wait();
    let leaked = std::fs::read(j.dir.join("leaked")).unwrap_or_default();
    assert!(
        leaked.is_empty(),
        "jitctl sent {} bytes to an impostor",
        leaked.len()
    );
}

#[test]
fn sigterm_stops_cleanly_and_state_survives() {
    let mut j = Jitd::start("term");
    let id = String::from_utf8(
        j.jitctl(&["grant", "add", "alice", "--for", "1h", "--account"])
            .stdout,
    )
    .unwrap();
    let id = id.trim().to_string();
    let mut child = j.child.take().unwrap();
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let st = child.wait().unwrap();
    assert!(st.success(), "clean exit on SIGTERM: {st:?}");
    assert!(!j.sock().exists(), "socket removed on stop");
    assert_eq!(
        j.jitctl(&["status"]).status.code(),
        Some(3),
        "exit 3 when jitd is unreachable"
    );
    j.spawn();
    let show = j.jitctl(&["--json", "grant", "show", &id]);
    let g: serde_json::Value = serde_json::from_slice(&show.stdout).unwrap();
    assert_eq!(g["state"], "live");
    let audit = std::fs::read_to_string(j.dir.join("log/audit.jsonl")).unwrap();
    assert!(audit.contains("daemon.stop"));
}

#[test]
fn jitctl_usage_errors_exit_2() {
    for args in [
        &["grant", "add", "alice"][..],
        &["grant", "add", "alice", "--for", "90"],
        &["nonsense"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_jitctl"))
            .args(args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
    }
}

#[test]
fn a_module_request_abandoned_while_jitd_was_stopped_is_not_acted_on() {
    let mut j = Jitd::start("abandon");
    let pid = j.child.as_ref().unwrap().id() as i32;
    // An approval report for a grant that does not exist would be audited as a denial when
    // handled; abandoned, it must leave no sudo record at all.
    let report = br#"{"v":1,"req":{"type":"report_sudo","report":{"user":"carol","uid":1001,"grant":null,"command":"/usr/bin/id","argv":[],"runas":"root","allowed":true,"reason":"","classes":0}}}"#;
    // SAFETY: signalling our own child.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    {
        // What sudo_jit does at its timeout: it wrote the request, waited, and closed.
        let mut s = UnixStream::connect(j.sock()).unwrap();
        s.write_all(&frame(report)).unwrap();
    }
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGCONT) };
    // A request that is still awaited gets its answer and its record.
    let live = reply_json(&j.raw(&frame(report)));
    assert_eq!(live["result"], "ok", "{live}");
    // The two connections are handled by two threads once jitd runs again: the abandoned one's
    // record may land just after the live one's answer (a loaded CI machine showed it).
    let read = || std::fs::read_to_string(j.dir.join("log/audit.jsonl")).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !read().contains("\"request.abandoned\"") && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let audit = read();
    assert_eq!(audit.matches("\"request.abandoned\"").count(), 1, "{audit}");
    assert_eq!(audit.matches("\"sudo.allowed\"").count(), 1, "{audit}");
    let _ = j.child.take().map(|mut c| {
        let _ = c.kill();
        c.wait()
    });
}

#[test]
fn grant_list_says_what_each_grant_gives_and_when_it_really_ended() {
    let j = Jitd::start("list");
    let o = j.jitctl(&[
        "grant",
        "add",
        "alice",
        "--account",
        "--for",
        "1h",
        "--group",
        "adm",
        "--from",
        "10.0.0.0/8",
        "--end-with-session",
    ]);
    assert!(o.status.success(), "{o:?}");
    let id = String::from_utf8(o.stdout).unwrap().trim().to_string();
    let list = String::from_utf8(j.jitctl(&["grant", "list"]).stdout).unwrap();
    let line = list
        .lines()
        .find(|l| l.starts_with(&id))
        .unwrap_or_default();
    for part in [
        "account(uid 4200000)",
        "group adm",
        "[from 10.0.0.0/8; end-with-session]",
    ] {
        assert!(line.contains(part), "{part:?} in {line:?}");
    }
    // Ends in an hour (or 59m59s if the second turned over since the add).
    assert!(
        line.contains("in 1h") || line.contains("in 59m"),
        "{line:?}"
    );
    assert!(j.jitctl(&["grant", "revoke", &id]).status.success());
    let list = String::from_utf8(j.jitctl(&["grant", "list", "--all"]).stdout).unwrap();
    let line = list
        .lines()
        .find(|l| l.starts_with(&id))
        .unwrap_or_default();
    assert!(
        line.contains("revoked") && line.contains("(early)") && !line.contains(" in "),
        "an ended grant shows when it ended: {line:?}"
    );
}

/// More grants than one reply frame (1 MiB) holds: `jitctl grant list` asks for them a page at
/// a time and shows each once, in order; the one-reply form an older jitctl sends gets a clear
/// error instead of a cut list.
#[test]
fn grant_list_pages_past_the_frame_limit() {
    let j = Jitd::start("pages");
    // Sixteen 16 KiB keys: ~260 KB of JSON a grant, eight of them over 2 MB.
    let keys = j.dir.join("keys");
    let text: String = (0..16)
        .map(|k| format!("ssh-rsa {} key{k}\n", "A".repeat(16 * 1024 - 32)))
        .collect();
    std::fs::write(&keys, text).unwrap();
    let mut ids = Vec::new();
    for i in 0..8 {
        let user = format!("u{i}");
        let o = j.jitctl(&[
            "grant",
            "add",
            &user,
            "--account",
            "--for",
            "1h",
            "--ssh-key-file",
            keys.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{o:?}");
        ids.push(String::from_utf8(o.stdout).unwrap().trim().to_string());
    }
    let o = j.jitctl(&["--json", "grant", "list"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let listed: Vec<serde_json::Value> = serde_json::from_slice(&o.stdout).unwrap();
    let got: Vec<(i64, String)> = listed
        .iter()
        .map(|g| {
            assert_eq!(g["ssh_keys"].as_array().unwrap().len(), 16);
            (
                g["not_before"].as_i64().unwrap(),
                g["id"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let mut want = got.clone();
    want.sort();
    want.dedup();
    assert_eq!(got, want, "in order, each once");
    let mut got_ids: Vec<String> = got.into_iter().map(|(_, id)| id).collect();
    got_ids.sort();
    ids.sort();
    assert_eq!(got_ids, ids);
    let text = String::from_utf8(j.jitctl(&["grant", "list"]).stdout).unwrap();
    assert_eq!(text.lines().filter(|l| l.starts_with("g-")).count(), 8);
    // A page is one frame: the raw paged request's reply fits, and names where to go on.
    let first = reply_json(&j.raw(&frame(
        br#"{"v":1,"req":{"type":"list_grants","all":false,"page":{"after":null}}}"#,
    )));
    let page = first["payload"]["grants"].as_array().unwrap().len();
    assert!((1..8).contains(&page), "{page} grants in the first page");
    assert!(
        first["payload"]["next"]["id"].is_string(),
        "{}",
        first["payload"]["next"]
    );
    // The one-reply form cannot fit them: an error that says so.
    let old = reply_json(&j.raw(&frame(
        br#"{"v":1,"req":{"type":"list_grants","all":false}}"#,
    )));
    assert_eq!(old["result"], "error", "{old}");
    assert!(
        old["message"]
            .as_str()
            .unwrap()
            .contains("exceeds the frame limit"),
        "{old}"
    );
}
