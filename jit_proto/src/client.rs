//! Blocking client: connect, send one request, read one response, close. One total deadline
//! covers connect, write and read. Nothing is cached between calls (no statics, no TLS), so
//! the client is safe inside PAM and sudo plugins.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use crate::frame::{read_frame, write_frame, FrameError};
use crate::message::{encode_request, Request, Response};

/// Why a call failed.
#[derive(Debug)]
pub enum ClientError {
    /// No daemon listens at the path (missing socket, refused).
    Unreachable(io::Error),
    /// The deadline passed.
    Timeout,
    /// The peer is not root: it is not jitd, and nothing is sent to it (SSSD check_server_cred).
    ImpostorPeer(u32),
    /// Framing or I/O failure after connecting.
    Frame(FrameError),
    /// The reply was not a valid response.
    BadResponse(String),
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientError::Unreachable(e) => write!(f, "cannot reach jitd: {e}"),
            ClientError::Timeout => write!(f, "jitd did not answer in time"),
            ClientError::ImpostorPeer(uid) => {
                write!(
                    f,
                    "the socket is served by uid {uid}, not root: refusing to talk to it"
                )
            }
            ClientError::Frame(e) => write!(f, "talking to jitd failed: {e}"),
            ClientError::BadResponse(e) => write!(f, "jitd sent an invalid reply: {e}"),
        }
    }
}

impl std::error::Error for ClientError {}

/// The uid of the process at the other end of a connected Unix socket (SO_PEERCRED).
///
/// # Errors
/// The getsockopt error.
pub fn peer_uid(fd: &impl AsRawFd) -> io::Result<(u32, i32)> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: u32::MAX,
        gid: u32::MAX,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `cred` and `len` are valid for writes and `len` holds the size of `cred`.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((cred.uid, cred.pid))
}

fn remaining(deadline: Instant) -> Result<Duration, ClientError> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        Err(ClientError::Timeout)
    } else {
        Ok(left)
    }
}

/// Connects with a deadline: a non-blocking connect, then poll for writability.
fn connect(path: &str, deadline: Instant) -> Result<UnixStream, ClientError> {
    let mut addr: libc::sockaddr_un = {
        // SAFETY: sockaddr_un is plain old data; all-zero is a valid value.
        unsafe { std::mem::zeroed() }
    };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let bytes = path.as_bytes();
    if bytes.is_empty() || bytes.len() >= addr.sun_path.len() || bytes.contains(&0) {
        return Err(ClientError::Unreachable(io::Error::new(
            io::ErrorKind::InvalidInput,
            "bad socket path",
        )));
    }
    for (dst, src) in addr.sun_path.iter_mut().zip(bytes) {
        *dst = *src as libc::c_char;
    }
    // SAFETY: plain socket(2) call; the result is checked before use.
    let fd = unsafe {
        libc::socket(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
            0,
        )
    };
    if fd < 0 {
        return Err(ClientError::Unreachable(io::Error::last_os_error()));
    }
    // SAFETY: `fd` is a fresh socket we own; OwnedFd closes it on every path.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: `addr` is a valid sockaddr_un and the length is its size.
    let rc = unsafe {
        libc::connect(
            owned.as_raw_fd(),
            (&addr as *const libc::sockaddr_un).cast(),
            std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EINPROGRESS) && err.raw_os_error() != Some(libc::EAGAIN)
        {
            return Err(ClientError::Unreachable(err));
        }
        let left = remaining(deadline)?;
        let mut pfd = libc::pollfd {
            fd: owned.as_raw_fd(),
            events: libc::POLLOUT,
            revents: 0,
        };
        let ms = libc::c_int::try_from(left.as_millis().max(1)).unwrap_or(libc::c_int::MAX);
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(&mut pfd, 1, ms) };
        if n == 0 {
            return Err(ClientError::Timeout);
        }
        if n < 0 || pfd.revents & (libc::POLLERR | libc::POLLHUP) != 0 {
            return Err(ClientError::Unreachable(io::Error::new(
                io::ErrorKind::ConnectionRefused,
                "connect failed",
            )));
        }
    }
    let stream = UnixStream::from(owned);
    stream
        .set_nonblocking(false)
        .map_err(ClientError::Unreachable)?;
    Ok(stream)
}

/// How long a missing or refusing socket is retried: jitd restarting (a package upgrade, a
/// unit restart) has no socket for about 100-150 ms, and a jit user's sudo or login in that
/// window must not be refused. Bounded so that a daemon that is really down is still
/// reported within half a second, and never past the call's own deadline.
const RESTART_GRACE: Duration = Duration::from_millis(500);
const RETRY_PAUSE: Duration = Duration::from_millis(20);

/// [`connect`], retried while the socket is missing (ENOENT) or refuses (ECONNREFUSED: jitd's
/// listener is gone but the path is still there), as long as the socket's directory exists:
/// jitd's run directory outlives a restart (the unit preserves it), so a missing directory
/// means no jitd is installed or set up there, and that is answered at once. Only the connect
/// is retried: nothing has been sent yet, so a retry cannot run a request twice.
fn connect_across_restart(path: &str, deadline: Instant) -> Result<UnixStream, ClientError> {
    let give_up = deadline.min(Instant::now() + RESTART_GRACE);
    let dir_exists = std::path::Path::new(path)
        .parent()
        .is_some_and(|d| d.as_os_str().is_empty() || d.is_dir());
    loop {
        match connect(path, deadline) {
            Err(ClientError::Unreachable(e))
                if dir_exists
                    && matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ECONNREFUSED))
                    && Instant::now() + RETRY_PAUSE < give_up =>
            {
                std::thread::sleep(RETRY_PAUSE);
            }
            other => return other,
        }
    }
}

/// Sends `req` to the daemon at `path` and returns its response, all within `timeout`.
///
/// With `require_root_peer`, the call refuses to send anything to a socket whose server is
/// not uid 0 (an impostor could otherwise collect codes or fake approvals).
///
/// # Errors
/// See [`ClientError`].
pub fn call(
    path: &str,
    req: &Request,
    timeout: Duration,
    require_root_peer: bool,
) -> Result<Response, ClientError> {
    let deadline = Instant::now() + timeout;
    let mut stream = connect_across_restart(path, deadline)?;
    if require_root_peer {
        let (uid, _) = peer_uid(&stream).map_err(ClientError::Unreachable)?;
        if uid != 0 {
            return Err(ClientError::ImpostorPeer(uid));
        }
    }
    let mut body = encode_request(req).map_err(|e| ClientError::BadResponse(e.to_string()))?;
    let sent = remaining(deadline).and_then(|left| {
        stream
            .set_write_timeout(Some(left))
            .map_err(ClientError::Unreachable)?;
        write_frame(&mut stream, &body).map_err(map_frame)
    });
    // The request may carry a TOTP or break-glass code.
    jit_core::host::secret::wipe(&mut body);
    sent?;
    stream
        .set_read_timeout(Some(remaining(deadline)?))
        .map_err(ClientError::Unreachable)?;
    let reply = read_frame(&mut stream).map_err(map_frame)?;
    serde_json::from_slice(&reply).map_err(|e| ClientError::BadResponse(e.to_string()))
}

fn map_frame(e: FrameError) -> ClientError {
    match e {
        FrameError::Io(ref io) if crate::frame::is_timeout(io) => ClientError::Timeout,
        other => ClientError::Frame(other),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

    use super::*;
    use std::os::unix::net::UnixListener;

    fn sock_path(tag: &str) -> std::path::PathBuf {
        let dir =
            std::env::temp_dir().join(format!("jit-proto-client-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("s.sock")
    }

    /// A daemon that appears 300 ms after the call started (jitd restarting) is reached.
    #[test]
    fn a_socket_that_appears_within_the_grace_is_reached() {
        let path = sock_path("late");
        let p = path.clone();
        let server = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            let l = UnixListener::bind(&p).unwrap();
            let (mut s, _) = l.accept().unwrap();
            let _ = read_frame(&mut s).unwrap();
        });
        let r = call(
            path.to_str().unwrap(),
            &Request::GetStatus,
            Duration::from_secs(2),
            false,
        );
        server.join().unwrap();
        // The server hangs up without a reply: the call got through the connect and failed
        // on the reply, not with "cannot reach jitd".
        assert!(!matches!(r, Err(ClientError::Unreachable(_))), "{r:?}");
    }

    /// A run directory without a socket (jitd stopped): the call gives up after the grace, as
    /// "cannot reach jitd"; without the directory at all it gives up at once.
    #[test]
    fn no_daemon_is_reported_unreachable_after_the_grace() {
        let path = sock_path("none");
        let started = Instant::now();
        let r = call(
            path.to_str().unwrap(),
            &Request::GetStatus,
            Duration::from_secs(5),
            false,
        );
        assert!(matches!(r, Err(ClientError::Unreachable(_))), "{r:?}");
        assert!(started.elapsed() < Duration::from_secs(2));
        let started = Instant::now();
        let r = call(
            "/nonexistent-dir/jitd.sock",
            &Request::GetStatus,
            Duration::from_secs(5),
            false,
        );
        assert!(matches!(r, Err(ClientError::Unreachable(_))), "{r:?}");
        assert!(started.elapsed() < Duration::from_millis(500));
    }

    /// The grace never extends a short deadline.
    #[test]
    fn the_call_deadline_bounds_the_retries() {
        let path = sock_path("short");
        let started = Instant::now();
        let r = call(
            path.to_str().unwrap(),
            &Request::GetStatus,
            Duration::from_millis(100),
            false,
        );
        assert!(r.is_err());
        assert!(started.elapsed() < Duration::from_millis(900));
    }
}
