//! systemd readiness (jitd.service is `Type=notify`): jitd sends `READY=1` to `$NOTIFY_SOCKET`
//! only once it answers on its socket (state loaded, snapshot written, socket open), and
//! `STOPPING=1` on SIGTERM; both for a socket path and for an abstract (`@name`) socket, the
//! form systemd uses. Without `$NOTIFY_SOCKET` it starts as before (the chroot and sandbox case).
//! A restart (stop, then a new jitd) loses no request from a client calling all the while.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure is the assertion

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn setup(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("jitd-notify-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("home")).unwrap();
    std::fs::write(dir.join("passwd"), "root:x:0:0::/root:/bin/bash\n").unwrap();
    std::fs::write(dir.join("group"), "root:x:0:\n").unwrap();
    let d = dir.display();
    std::fs::write(
        dir.join("jitd.toml"),
        format!("uid_range = \"4310000-4310099\"\nnscd = \"off\"\nhome_root = \"{d}/home\"\nstate_dir = \"{d}/state\"\nsnapshot_path = \"{d}/run/snapshot\"\nsocket_path = \"{d}/run/jitd.sock\"\naudit_log = \"{d}/log/audit.jsonl\"\npasswd_file = \"{d}/passwd\"\ngroup_file = \"{d}/group\"\n"),
    )
    .unwrap();
    dir
}

fn status_ok(dir: &Path) -> bool {
    Command::new(env!("CARGO_BIN_EXE_jitctl"))
        .arg("--socket")
        .arg(dir.join("run/jitd.sock"))
        .arg("status")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success()
}

fn spawn(dir: &Path, notify: Option<&str>) -> Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_jitd"));
    cmd.arg("--config")
        .arg(dir.join("jitd.toml"))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    match notify {
        Some(n) => cmd.env("NOTIFY_SOCKET", n),
        None => cmd.env_remove("NOTIFY_SOCKET"),
    };
    cmd.spawn().unwrap()
}

fn recv(sock: &UnixDatagram) -> String {
    let mut buf = [0u8; 512];
    let n = sock
        .recv(&mut buf)
        .expect("a notification within the timeout");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

fn term(child: &mut Child) {
    // SAFETY: signalling the jitd this test started.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
}

/// READY=1 arrives, and when it does jitd already answers; STOPPING=1 on SIGTERM.
fn ready_then_stopping(dir: &Path, sock: &UnixDatagram, notify: &str) {
    sock.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut child = spawn(dir, Some(notify));
    let msg = recv(sock);
    assert_eq!(msg, "READY=1");
    assert!(
        status_ok(dir),
        "READY=1 was sent before jitd answered on its socket"
    );
    term(&mut child);
    assert_eq!(recv(sock), "STOPPING=1");
    let st = child.wait().unwrap();
    assert!(st.success(), "clean stop: {st:?}");
}

#[test]
fn ready_after_the_socket_answers_on_a_path_socket() {
    let dir = setup("path");
    let path = dir.join("notify");
    let sock = UnixDatagram::bind(&path).unwrap();
    ready_then_stopping(&dir, &sock, path.to_str().unwrap());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn ready_on_an_abstract_socket() {
    let dir = setup("abstract");
    let name = format!("jitd-notify-test-{}", std::process::id());
    let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let sock = UnixDatagram::bind_addr(&addr).unwrap();
    ready_then_stopping(&dir, &sock, &format!("@{name}"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn starts_without_notify_socket() {
    let dir = setup("none");
    let mut child = spawn(&dir, None);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !status_ok(&dir) {
        assert!(Instant::now() < deadline, "jitd did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    term(&mut child);
    assert!(child.wait().unwrap().success());
    let _ = std::fs::remove_dir_all(&dir);
}

/// A client calling without pause while jitd is stopped and a new one started (what a package
/// upgrade does under systemd) gets every answer: the old jitd unlinks its socket and serves
/// what was queued before it stops, and the client retries a missing socket until the new one
/// binds. Before, about one call per restart was refused ("cannot reach jitd": no socket, or
/// "Connection reset by peer" for a connection queued when the listener closed).
#[test]
fn a_restart_loses_no_request() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;
    let dir = setup("restart");
    let mut first = spawn(&dir, None);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !status_ok(&dir) {
        assert!(Instant::now() < deadline, "jitd did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let calls = Arc::new(AtomicUsize::new(0));
    let sock = dir.join("run/jitd.sock").to_str().unwrap().to_string();
    let clients: Vec<_> = (0..3)
        .map(|_| {
            let (stop, calls, sock) = (Arc::clone(&stop), Arc::clone(&calls), sock.clone());
            std::thread::spawn(move || {
                let mut failures = Vec::new();
                while !stop.load(Ordering::SeqCst) {
                    match jit_proto::client::call(
                        &sock,
                        &jit_proto::Request::GetStatus,
                        Duration::from_secs(2),
                        true,
                    ) {
                        Ok(_) => {}
                        Err(e) => failures.push(e.to_string()),
                    }
                    calls.fetch_add(1, Ordering::SeqCst);
                }
                failures
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    term(&mut first);
    assert!(first.wait().unwrap().success());
    let mut second = spawn(&dir, None);
    let before = calls.load(Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(10);
    while calls.load(Ordering::SeqCst) < before + 50 {
        assert!(Instant::now() < deadline, "no calls after the restart");
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, Ordering::SeqCst);
    let failures: Vec<String> = clients
        .into_iter()
        .flat_map(|c| c.join().unwrap())
        .collect();
    term(&mut second);
    assert!(second.wait().unwrap().success());
    assert!(
        failures.is_empty(),
        "calls refused across the restart: {failures:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
