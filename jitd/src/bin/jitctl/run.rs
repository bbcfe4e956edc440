//! `jitctl run PROGRAM [ARGS…]`: jitd starts PROGRAM as you, with the capabilities a live
//! grant gives it (`grant add --cap … --program …`), on your terminal and in your directory.
//! jitctl passes its stdin, stdout, stderr and working directory over the socket (SCM_RIGHTS),
//! relays SIGINT, SIGQUIT, SIGTERM, SIGHUP and SIGWINCH, and exits with the program's status.
//! Only the terminal and locale variables travel; jitd sets PATH and the rest itself.

use std::ffi::OsString;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicI32, Ordering};

use clap::Args;
use jit_proto::frame::{read_frame, write_frame};
use jit_proto::message::{encode_request, Payload};
use jit_proto::{ErrorCode, Request, Response};

use crate::client::{Ctx, Fail, EXIT_REFUSED, EXIT_UNREACHABLE};

#[derive(Args)]
pub struct RunArgs {
    /// The program: its absolute path, or its bare name as a grant of yours lists it (never
    /// looked up in your PATH).
    pub program: String,
    /// Its arguments.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
}

/// The socket, for the signal handler (write(2) is async-signal-safe).
static SOCK: AtomicI32 = AtomicI32::new(-1);

extern "C" fn relay(sig: libc::c_int) {
    let fd = SOCK.load(Ordering::Relaxed);
    if fd >= 0 {
        let b = [sig as u8];
        // SAFETY: write(2) of one byte from a live buffer; async-signal-safe.
        unsafe { libc::write(fd, b.as_ptr().cast(), 1) };
    }
}

fn caller_env() -> Vec<(String, String)> {
    std::env::vars_os()
        .filter_map(|(k, v): (OsString, OsString)| {
            Some((k.into_string().ok()?, v.into_string().ok()?))
        })
        .filter(|(k, _)| {
            matches!(
                k.as_str(),
                "TERM" | "COLORTERM" | "LANG" | "LANGUAGE" | "TZ"
            ) || k.starts_with("LC_")
        })
        .collect()
}

/// Descriptor `fd` if it is open, else a new one on /dev/null (kept open by the caller).
fn open_or_null(fd: RawFd, keep: &mut Vec<std::fs::File>) -> Result<RawFd, Fail> {
    // SAFETY: F_GETFD only queries the descriptor.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } >= 0 {
        return Ok(fd);
    }
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
        .map_err(|e| Fail::refused(format!("/dev/null: {e}")))?;
    let raw = f.as_raw_fd();
    keep.push(f);
    Ok(raw)
}

/// Sends one byte carrying `fds` (SCM_RIGHTS).
fn send_fds(sock: &UnixStream, fds: &[RawFd; 4]) -> std::io::Result<()> {
    let byte = [0u8; 1];
    let mut iov = libc::iovec {
        iov_base: byte.as_ptr() as *mut libc::c_void,
        iov_len: 1,
    };
    let len = std::mem::size_of_val(fds);
    // SAFETY: CMSG_SPACE only computes a size.
    let space = unsafe { libc::CMSG_SPACE(len as u32) } as usize;
    let mut ctl = vec![0u64; space.div_ceil(8)];
    // SAFETY: all-zero is a valid msghdr; fields set below.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = ctl.as_mut_ptr().cast();
    msg.msg_controllen = space;
    // SAFETY: the control buffer has room for one header and `len` bytes of data.
    unsafe {
        let c = libc::CMSG_FIRSTHDR(&msg);
        (*c).cmsg_level = libc::SOL_SOCKET;
        (*c).cmsg_type = libc::SCM_RIGHTS;
        (*c).cmsg_len = libc::CMSG_LEN(len as u32) as usize;
        std::ptr::copy_nonoverlapping(fds.as_ptr().cast::<u8>(), libc::CMSG_DATA(c), len);
    }
    // SAFETY: `msg` points at live buffers.
    let n = unsafe { libc::sendmsg(sock.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) };
    if n == 1 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Runs `jitctl run`. Exits with the program's status (128 + signal when a signal ended it).
pub fn run(ctx: &Ctx, a: &RunArgs) -> Result<u8, Fail> {
    let unreachable = |e: String| {
        Fail(
            EXIT_UNREACHABLE,
            format!("cannot reach jitd ({}): {e}", ctx.socket),
        )
    };
    let sock = UnixStream::connect(&ctx.socket).map_err(|e| unreachable(e.to_string()))?;
    // Nothing (not even the descriptors) goes to a socket that is not served by root.
    let (uid, _) = jit_proto::client::peer_uid(&sock).map_err(|e| unreachable(e.to_string()))?;
    if uid != 0 {
        return Err(unreachable(format!(
            "the socket is served by uid {uid}, not root"
        )));
    }
    let req = Request::RunProgram {
        program: a.program.clone(),
        args: a.args.clone(),
        env: caller_env(),
    };
    let body = encode_request(&req).map_err(|e| Fail::refused(e.to_string()))?;
    let mut w = &sock;
    write_frame(&mut w, &body).map_err(|e| unreachable(e.to_string()))?;
    let mut keep = Vec::new();
    let cwd = std::fs::File::open(".")
        .map_err(|e| Fail::refused(format!("cannot open the working directory: {e}")))?;
    let fds = [
        open_or_null(0, &mut keep)?,
        open_or_null(1, &mut keep)?,
        open_or_null(2, &mut keep)?,
        cwd.as_raw_fd(),
    ];
    send_fds(&sock, &fds).map_err(|e| unreachable(e.to_string()))?;
    drop(keep);
    drop(cwd);
    SOCK.store(sock.as_raw_fd(), Ordering::Relaxed);
    for s in [
        libc::SIGINT,
        libc::SIGQUIT,
        libc::SIGTERM,
        libc::SIGHUP,
        libc::SIGWINCH,
    ] {
        // SAFETY: sigaction with a handler that only calls write(2); SA_RESTART so reads resume.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = relay as extern "C" fn(libc::c_int) as usize;
            sa.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(s, &sa, std::ptr::null_mut());
        }
    }
    let mut r = &sock;
    let reply = read_frame(&mut r);
    SOCK.store(-1, Ordering::Relaxed);
    let reply = reply.map_err(|e| unreachable(format!("jitd closed the connection: {e}")))?;
    let resp: Response = serde_json::from_slice(&reply)
        .map_err(|e| unreachable(format!("jitd sent an invalid reply: {e}")))?;
    match resp {
        Response::Ok {
            payload: Payload::Exited { status, .. },
            ..
        } => Ok(u8::try_from(status.clamp(0, 255)).unwrap_or(255)),
        Response::Ok { .. } => Err(Fail::unexpected()),
        Response::Error {
            code: ErrorCode::Busy,
            message,
            ..
        } => Err(Fail(EXIT_UNREACHABLE, message)),
        Response::Error { message, .. } => Err(Fail(EXIT_REFUSED, message)),
    }
}
