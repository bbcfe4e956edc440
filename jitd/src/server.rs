//! The local API socket: an accept loop feeding two bounded pools of workers, one for root
//! peers (the modules, root's jitctl) and one for everyone else, so an unprivileged user's
//! connections never stand in front of root's. Each connection carries one request; the peer's
//! uid comes from SO_PEERCRED, never from the payload. The request must arrive whole within
//! [`REQUEST_DEADLINE`] (however it trickles), each uid other than 0 may hold only its share of
//! connections open, and a throttled uid is audited once per episode (see [`crate::throttle`]).
//! Malformed, oversize or unknown frames get an error reply and the connection is closed. The
//! loop also notices a removed or replaced socket and binds it again.

use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jit_proto::client::peer_uid;
use jit_proto::frame::{read_frame, write_frame, FrameError};
use jit_proto::message::decode_request;
use jit_proto::Request;
use jit_proto::{ErrorCode, Response};
use serde_json::json;

use crate::audit::{Event, Severity};
use crate::daemon::{prepare_dir, Daemon};
use crate::throttle::{Record, Slot, Throttle};

/// The whole request (length and body) must arrive within this time from when a worker takes
/// the connection, however slowly it trickles; the whole reply must leave within as long.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(2);

/// Connections waiting for a worker, per pool; beyond that a connection is answered `busy`.
const QUEUE: usize = 64;

/// How often the accept loop checks the socket file and closes quiet throttling episodes.
const HOUSEKEEPING: Duration = Duration::from_secs(1);

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

/// Reads and writes of one connection against one deadline: each system call gets the time
/// left as its timeout, so a peer that sends a byte now and then still runs out of time.
struct Deadlined<'a> {
    stream: &'a UnixStream,
    until: Instant,
}

impl Deadlined<'_> {
    fn left(&self) -> std::io::Result<Duration> {
        let left = self.until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            Err(std::io::Error::new(
                ErrorKind::TimedOut,
                "request deadline passed",
            ))
        } else {
            Ok(left)
        }
    }
}

impl Read for Deadlined<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.stream.set_read_timeout(Some(self.left()?))?;
        let mut s = self.stream;
        s.read(buf)
    }
}

impl Write for Deadlined<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.stream.set_write_timeout(Some(self.left()?))?;
        let mut s = self.stream;
        s.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let mut s = self.stream;
        s.flush()
    }
}

/// Sends `resp` within `within`. A reply too large for a frame (not expected: error messages
/// are cut, audit pages stop at half a frame) becomes an `internal` error rather than silence.
fn reply_within(stream: &UnixStream, resp: &Response, within: Duration) {
    let mut w = Deadlined {
        stream,
        until: Instant::now() + within,
    };
    if let Ok(body) = serde_json::to_vec(resp) {
        if body.len() > jit_proto::MAX_FRAME {
            let too_big = Response::error(
                ErrorCode::Internal,
                format!("the reply ({} bytes) exceeds the frame limit", body.len()),
            );
            if let Ok(b) = serde_json::to_vec(&too_big) {
                let _ = write_frame(&mut w, &b);
            }
            return;
        }
        let _ = write_frame(&mut w, &body);
    }
}

fn reply(stream: &UnixStream, resp: &Response) {
    reply_within(stream, resp, REQUEST_DEADLINE);
}

/// A reply this small fits in the socket's send buffer (208 KiB by default), so writing it
/// never waits for the peer to read.
const SMALL_REPLY: usize = 64 * 1024;

/// Answers and gives the connection's place in its uid's count back. The place goes back
/// before a small reply is written: a client that sends its next request as soon as it has
/// read the answer (a loop of `jitctl` calls) then finds it free, where before, on a loaded
/// machine, the worker still held it and the next connection was refused busy. A large reply
/// (a grant list, an audit page) keeps the place while it is written, so a peer that does not
/// read cannot hold more workers than its share.
fn reply_then_release(stream: &UnixStream, resp: &Response, slot: Slot) {
    let small = serde_json::to_vec(resp).is_ok_and(|b| b.len() <= SMALL_REPLY);
    if small {
        drop(slot);
        reply(stream, resp);
    } else {
        reply(stream, resp);
        drop(slot);
    }
}

fn record(d: &Daemon, now: jit_core::time::UnixTime, events: impl IntoIterator<Item = Record>) {
    for (sev, name, fields) in events {
        d.audit(now, sev, name, fields);
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

/// One accepted connection and its peer.
pub struct Conn {
    stream: UnixStream,
    uid: u32,
    pid: i32,
    /// Its place in the uid's count, given back once its reply no longer needs the peer.
    slot: Slot,
}

/// Serves one connection: reads the request within [`REQUEST_DEADLINE`], answers it within as
/// long.
fn serve_conn(d: &Arc<Daemon>, throttle: &Throttle, conn: Conn) {
    let Conn {
        stream,
        uid,
        pid,
        slot,
    } = conn;
    let _ = stream.set_nonblocking(false);
    let mut r = Deadlined {
        stream: &stream,
        until: Instant::now() + REQUEST_DEADLINE,
    };
    let body = match read_frame(&mut r) {
        Ok(b) => b,
        Err(FrameError::BadLength(n)) => {
            reply(
                &stream,
                &Response::error(
                    ErrorCode::BadRequest,
                    format!("frame length {n} outside 1..={}", jit_proto::MAX_FRAME),
                ),
            );
            return;
        }
        Err(FrameError::Io(e)) if jit_proto::frame::is_timeout(&e) => {
            // Counted per uid and audited once per episode, never per connection.
            let now = jit_core::time::now();
            record(d, now, throttle.missed_deadline(uid, pid, now));
            reply_within(
                &stream,
                &Response::error(
                    ErrorCode::BadRequest,
                    format!(
                        "the request did not arrive whole within {} s",
                        REQUEST_DEADLINE.as_secs()
                    ),
                ),
                Duration::from_millis(100),
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
                Event::RequestAbandoned,
                json!({ "peer_uid": uid, "peer_pid": pid, "request": req.as_safe_string() }),
            );
            return;
        }
        // tokenize: `jitctl run` is answered when its program ends, from the program's own
        // thread (tokenize/serve.rs); a refusal is answered here like any other.
        Ok(req @ Request::RunProgram { .. }) => {
            let what = req.as_safe_string();
            let peer = crate::daemon::Peer { uid, pid };
            match crate::tokenize::serve::start(d, &stream, peer, req, r.until, now) {
                None => return,
                Some(resp) => {
                    if let Response::Error {
                        code: ErrorCode::PermissionDenied,
                        ..
                    } = resp
                    {
                        record(d, now, throttle.denied(uid, pid, "run_program", &what, now));
                    }
                    resp
                }
            }
        }
        Ok(req) => {
            let what = req.as_safe_string();
            let kind = req.kind();
            let r = d.handle_peer(crate::daemon::Peer { uid, pid }, req, now);
            if let Response::Error {
                code: ErrorCode::PermissionDenied,
                ..
            } = r
            {
                // The first denial per uid and window in full, the rest counted (a refused
                // request must not be a way to fill the disk).
                record(d, now, throttle.denied(uid, pid, kind, &what, now));
            }
            r
        }
        Err((code, msg)) => Response::error(code, msg),
    };
    reply_then_release(&stream, &resp, slot);
    // Serializing state and building the snapshot allocate in proportion to the number of
    // grants; hand the freed memory back instead of letting it pile up per thread.
    crate::daemon::release_free_heap();
}

fn worker(d: Arc<Daemon>, throttle: Arc<Throttle>, rx: Arc<Mutex<Receiver<Conn>>>) {
    loop {
        let next = match rx.lock() {
            Ok(r) => r.recv(),
            Err(_) => return,
        };
        match next {
            Ok(c) => {
                // A panic in one request must not take the daemon down.
                let (d2, t2) = (Arc::clone(&d), Arc::clone(&throttle));
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
                    serve_conn(&d2, &t2, c)
                }));
            }
            Err(_) => return,
        }
    }
}

/// One pool of workers behind one queue.
struct Pool {
    tx: SyncSender<Conn>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Pool {
    fn start(d: &Arc<Daemon>, throttle: &Arc<Throttle>, n: usize) -> Pool {
        let (tx, rx) = sync_channel::<Conn>(QUEUE);
        let rx = Arc::new(Mutex::new(rx));
        let threads = (0..n)
            .map(|_| {
                let (d2, t2, rx2) = (Arc::clone(d), Arc::clone(throttle), Arc::clone(&rx));
                std::thread::spawn(move || worker(d2, t2, rx2))
            })
            .collect();
        Pool { tx, threads }
    }

    fn stop(self) {
        drop(self.tx);
        for t in self.threads {
            let _ = t.join();
        }
    }
}

/// Refuses a connection at once with `busy`, without reading its request.
fn refuse_busy(stream: &UnixStream, why: &str) {
    reply_within(
        stream,
        &Response::error(ErrorCode::Busy, why),
        Duration::from_millis(100),
    );
}

/// Takes one accepted connection: the peer's uid, its share, its pool.
fn dispatch(d: &Daemon, throttle: &Arc<Throttle>, root: &Pool, users: &Pool, s: UnixStream) {
    let Ok((uid, pid)) = peer_uid(&s) else {
        return;
    };
    let now = jit_core::time::now();
    let (slot, event) = throttle.admit(uid, pid, now);
    record(d, now, event);
    let Some(slot) = slot else {
        refuse_busy(
            &s,
            &format!(
                "too many connections from uid {uid} (at most {} at once); try again",
                throttle.per_uid()
            ),
        );
        return;
    };
    let pool = if uid == 0 { root } else { users };
    let conn = Conn {
        stream: s,
        uid,
        pid,
        slot,
    };
    match pool.tx.try_send(conn) {
        Ok(()) => {}
        Err(TrySendError::Full(c)) | Err(TrySendError::Disconnected(c)) => {
            refuse_busy(&c.stream, "jitd is busy; try again");
        }
    }
}

/// The identity of the socket file jitd bound (device and inode).
fn socket_id(path: &Path) -> Option<(u64, u64)> {
    std::fs::symlink_metadata(path)
        .ok()
        .filter(|m| m.file_type().is_socket())
        .map(|m| (m.dev(), m.ino()))
}

/// What the accept loop knows of the socket file.
struct SocketWatch {
    /// The socket jitd bound last.
    bound: Option<(u64, u64)>,
    /// A repair failed (audited once until one succeeds).
    failing: bool,
    /// A socket another process serves at the path (not probed again while it stays).
    foreign: Option<(u64, u64)>,
}

/// Binds the socket again if its file is gone or is no longer the one jitd bound (the run
/// directory was removed, someone unlinked it): audited when repaired, and a failure once per
/// episode. Returns the new listener.
fn repair_socket(d: &Daemon, w: &mut SocketWatch) -> Option<UnixListener> {
    let path = &d.cfg.socket_path;
    let now_id = socket_id(path);
    if now_id.is_some() && (now_id == w.bound || now_id == w.foreign) {
        return None;
    }
    let dir_missing = path.parent().is_some_and(|p| !p.exists());
    let problem = match (dir_missing, std::fs::symlink_metadata(path).is_ok()) {
        (true, _) => "run directory missing",
        (false, false) => "socket missing",
        (false, true) => "socket replaced",
    };
    let now = jit_core::time::now();
    let failed = |w: &mut SocketWatch, error: String| {
        if !w.failing {
            d.audit(
                now,
                Severity::Error,
                Event::SocketRepairFailed,
                json!({ "path": path.display().to_string(), "problem": problem, "error": error }),
            );
        }
        w.failing = true;
    };
    if now_id.is_some() && UnixStream::connect(path).is_ok() {
        // Another process (a second jitd started by root) serves the path now: taking it back
        // would make the two fight over it. Said once; nothing is unlinked.
        w.foreign = now_id;
        failed(
            w,
            "another process listens on the socket path; not taking it over".into(),
        );
        return None;
    }
    match bind(path) {
        Ok(l) => {
            w.bound = socket_id(path);
            w.failing = false;
            w.foreign = None;
            d.audit(
                now,
                Severity::Notice,
                Event::SocketRepaired,
                json!({ "path": path.display().to_string(), "problem": problem }),
            );
            Some(l)
        }
        Err(e) => {
            failed(w, e);
            None
        }
    }
}

/// Set by the jitd binary when it stops: the socket's name has been taken away on purpose so
/// clients wait for the next jitd, and must not be bound again by the repair below.
static DRAINING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Marks this process as stopping: the accept loop no longer repairs a missing socket (jitd
/// removes it itself before stopping, and a rebound listener would reset queued clients).
pub fn begin_drain() {
    DRAINING.store(true, Ordering::SeqCst);
}

/// Accepts until `d.stop` is set. Root's connections go to their own pool of `workers`
/// threads, everyone else's to another; a full queue or a uid over its share gets `busy` at
/// once. About once a second the socket file is checked (and bound again if it was removed)
/// and quiet throttling episodes and denial windows are summarized.
pub fn run(d: Arc<Daemon>, listener: UnixListener) {
    let throttle = Throttle::new((d.cfg.workers / 2).max(1));
    let root = Pool::start(&d, &throttle, d.cfg.workers);
    let users = Pool::start(&d, &throttle, d.cfg.workers);
    let mut listener = listener;
    let mut watch = SocketWatch {
        bound: socket_id(&d.cfg.socket_path),
        failing: false,
        foreign: None,
    };
    let mut housekeeping = Instant::now();
    while !d.stop.load(Ordering::SeqCst) {
        if housekeeping.elapsed() >= HOUSEKEEPING {
            housekeeping = Instant::now();
            if !DRAINING.load(Ordering::SeqCst) {
                if let Some(l) = repair_socket(&d, &mut watch) {
                    listener = l;
                }
            }
            let now = jit_core::time::now();
            record(&d, now, throttle.sweep(now));
        }
        match listener.accept() {
            Ok((s, _)) => dispatch(&d, &throttle, &root, &users, s),
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
    root.stop();
    users.stop();
    let now = jit_core::time::now();
    record(&d, now, throttle.sweep(now));
}
