//! The local API socket: an accept loop feeding a bounded pool of workers. Each connection
//! carries one request; the peer's uid comes from SO_PEERCRED, never from the payload.
//! Malformed, oversize or unknown frames get an error reply and the connection is closed.

use std::io::ErrorKind;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{sync_channel, Receiver, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jit_proto::client::peer_uid;
use jit_proto::frame::{read_frame, write_frame, FrameError};
use jit_proto::message::decode_request;
use jit_proto::Request;
use jit_proto::{ErrorCode, Response};
use serde_json::json;

use crate::audit::Severity;
use crate::daemon::{prepare_dir, Daemon};

/// Per-connection read/write deadline: a slow or silent client costs one worker this long.
const CONN_TIMEOUT: Duration = Duration::from_secs(2);

/// Binds the socket: parent directory root-owned and not writable by others (else refuse),
/// stale socket removed, bound under a tight umask, then opened to 0666 (callers are
/// authorized per request by peer uid).
///
/// # Errors
/// Unsafe directory, a non-socket file in the way, or bind failure.
pub fn bind(path: &Path) -> Result<UnixListener, String> {
    let dir = path.parent().ok_or("socket path has no directory")?;
    prepare_dir(dir, 0o755)?;
    if let Ok(m) = std::fs::symlink_metadata(path) {
        if !m.file_type().is_socket() {
            return Err(format!(
                "{} exists and is not a socket: not removing it",
                path.display()
            ));
        }
        std::fs::remove_file(path).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    // SAFETY: umask(2) only swaps the process's file mode mask.
    let old = unsafe { libc::umask(0o177) };
    let l = UnixListener::bind(path);
    // SAFETY: restores the previous mask.
    unsafe { libc::umask(old) };
    let l = l.map_err(|e| format!("bind {}: {e}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    l.set_nonblocking(true).map_err(|e| e.to_string())?;
    Ok(l)
}

fn reply(stream: &mut UnixStream, resp: &Response) {
    if let Ok(body) = serde_json::to_vec(resp) {
        let _ = write_frame(stream, &body);
    }
}

/// Requests a module sends while a login or sudo waits for the answer, whose effect only makes
/// sense if the answer still arrives.
fn acts_for_a_waiting_module(req: &Request) -> bool {
    match req {
        Request::ReportSudo { report } => report.allowed,
        Request::VerifyMfa { .. } | Request::OpenSession { .. } | Request::UseBreakglass { .. } => {
            true
        }
        _ => false,
    }
}

/// Whether the client closed its socket (it stopped waiting for the reply). A client that only
/// shut down its writing half (`shutdown(SHUT_WR)`, as `socat` does) still waits: on AF_UNIX
/// that shows as POLLRDHUP, a full close as POLLHUP.
fn peer_gone(stream: &UnixStream) -> bool {
    use std::os::fd::AsRawFd;
    let mut p = libc::pollfd {
        fd: stream.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd, zero timeout.
    let n = unsafe { libc::poll(&mut p, 1, 0) };
    n > 0 && p.revents & (libc::POLLHUP | libc::POLLERR) != 0
}

/// Serves one connection.
pub fn serve_conn(d: &Daemon, mut stream: UnixStream) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(CONN_TIMEOUT));
    let _ = stream.set_write_timeout(Some(CONN_TIMEOUT));
    let Ok((uid, pid)) = peer_uid(&stream) else {
        return;
    };
    let body = match read_frame(&mut stream) {
        Ok(b) => b,
        Err(FrameError::BadLength(n)) => {
            reply(
                &mut stream,
                &Response::error(
                    ErrorCode::BadRequest,
                    format!("frame length {n} outside 1..={}", jit_proto::MAX_FRAME),
                ),
            );
            return;
        }
        Err(_) => return,
    };
    let now = jit_core::time::now();
    let resp = match decode_request(&body) {
        Ok(req) if acts_for_a_waiting_module(&req) && peer_gone(&stream) => {
            // The module gave up waiting (its timeout passed while this request sat in the
            // queue, e.g. jitd was stopped) and refused the login or sudo: acting now would
            // record an approval, spend a code or open a session nobody got.
            d.audit(
                now,
                Severity::Warning,
                "request.abandoned",
                json!({ "peer_uid": uid, "peer_pid": pid, "request": req.as_safe_string() }),
            );
            return;
        }
        Ok(req) => {
            let what = req.as_safe_string();
            let r = d.handle_peer(crate::daemon::Peer { uid, pid }, req, now);
            if let Response::Error {
                code: ErrorCode::PermissionDenied,
                ..
            } = r
            {
                d.audit(
                    now,
                    Severity::Warning,
                    "request.denied",
                    json!({ "peer_uid": uid, "peer_pid": pid, "request": what }),
                );
            }
            r
        }
        Err((code, msg)) => Response::error(code, msg),
    };
    reply(&mut stream, &resp);
    // Serializing state and building the snapshot allocate in proportion to the number of
    // grants; hand the freed memory back instead of letting it pile up per thread.
    // SAFETY: malloc_trim only releases free heap memory to the kernel.
    unsafe { libc::malloc_trim(0) };
}

fn worker(d: Arc<Daemon>, rx: Arc<Mutex<Receiver<UnixStream>>>) {
    loop {
        let next = match rx.lock() {
            Ok(r) => r.recv(),
            Err(_) => return,
        };
        match next {
            Ok(s) => {
                // A panic in one request must not take the daemon down.
                let d2 = Arc::clone(&d);
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
                    serve_conn(&d2, s)
                }));
            }
            Err(_) => return,
        }
    }
}

/// Accepts until `d.stop` is set. Connections beyond the queue get a `busy` reply at once.
pub fn run(d: Arc<Daemon>, listener: UnixListener) {
    let (tx, rx) = sync_channel::<UnixStream>(64);
    let rx = Arc::new(Mutex::new(rx));
    let mut workers = Vec::new();
    for _ in 0..d.cfg.workers {
        let (d2, rx2) = (Arc::clone(&d), Arc::clone(&rx));
        workers.push(std::thread::spawn(move || worker(d2, rx2)));
    }
    while !d.stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((s, _)) => match tx.try_send(s) {
                Ok(()) => {}
                Err(TrySendError::Full(mut s)) | Err(TrySendError::Disconnected(mut s)) => {
                    let _ = s.set_write_timeout(Some(Duration::from_millis(100)));
                    reply(
                        &mut s,
                        &Response::error(ErrorCode::Busy, "jitd is busy; try again"),
                    );
                }
            },
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                let mut pfd = libc::pollfd {
                    fd: std::os::fd::AsRawFd::as_raw_fd(&listener),
                    events: libc::POLLIN,
                    revents: 0,
                };
                // SAFETY: one valid pollfd; a bounded wait so SIGTERM is noticed within 250 ms.
                unsafe { libc::poll(&mut pfd, 1, 250) };
            }
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
    drop(tx);
    for w in workers {
        let _ = w.join();
    }
}
