//! The `run_program` connection. After the request frame the client sends one byte carrying
//! four descriptors (SCM_RIGHTS): its stdin, stdout, stderr and working directory. jitd finds
//! the caller's live grant for the program (peer uid from SO_PEERCRED, never the payload),
//! checks the program again, starts it (see [`super::spawn`]) and answers nothing until it
//! ends: then `exited` with its status. Meanwhile each byte the client sends is a signal to
//! relay (SIGINT, SIGQUIT, SIGTERM, SIGHUP, SIGWINCH); a client that goes away takes the
//! program with it (SIGHUP, then SIGTERM).

use std::collections::HashMap;
use std::ffi::CString;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jit_core::time::UnixTime;
use jit_proto::message::Payload;
use jit_proto::text::one_line;
use jit_proto::{ErrorCode, Request, Response};
use serde_json::json;

use super::spawn::{self, cstring, Launch};
use crate::audit::{Event, Severity};
use crate::daemon::{Daemon, Peer};

/// Programs one uid may have running through jitd at once.
pub const PER_UID: usize = 8;
/// Programs running through jitd at once, in all.
pub const TOTAL: usize = 128;
/// Most arguments, and most bytes of arguments and environment together.
const MAX_ARGS: usize = 1024;
const MAX_BYTES: usize = 128 * 1024;

/// Environment variables taken from the caller (the terminal and the locale); values are
/// checked by [`env_value_ok`]. Everything else (LD_PRELOAD, PATH, IFS, ...) is dropped: jitd
/// sets PATH, HOME, USER, LOGNAME and SHELL itself.
const PASSED_ENV: &[&str] = &["TERM", "COLORTERM", "LANG", "LANGUAGE", "TZ"];

static RUNNING: Mutex<Option<HashMap<u32, usize>>> = Mutex::new(None);

/// A place among the running programs, given back on drop.
struct RunSlot(u32);

impl RunSlot {
    fn take(uid: u32) -> Result<RunSlot, String> {
        let mut g = crate::poison::lock(&RUNNING);
        let m = g.get_or_insert_with(HashMap::new);
        let total: usize = m.values().sum();
        let mine = m.get(&uid).copied().unwrap_or(0);
        if mine >= PER_UID {
            return Err(format!("you already run {PER_UID} programs through jitd"));
        }
        if total >= TOTAL {
            return Err("jitd runs too many programs already; try again".into());
        }
        m.insert(uid, mine + 1);
        Ok(RunSlot(uid))
    }
}

impl Drop for RunSlot {
    fn drop(&mut self) {
        let mut g = crate::poison::lock(&RUNNING);
        if let Some(m) = g.as_mut() {
            if let Some(n) = m.get_mut(&self.0) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    m.remove(&self.0);
                }
            }
        }
    }
}

fn env_value_ok(name: &str, v: &str) -> bool {
    let plain = |extra: &[u8]| {
        !v.is_empty()
            && v.len() <= 128
            && v.bytes()
                .all(|b| b.is_ascii_alphanumeric() || extra.contains(&b))
    };
    match name {
        "TERM" | "COLORTERM" => plain(b"._+-"),
        // No '/': a locale or time zone name must not become a path to a file the caller made.
        "TZ" => plain(b"._+-:,<>") && !v.contains(".."),
        _ => plain(b"._@-:") && !v.contains(".."),
    }
}

/// The environment the program gets.
fn environment(
    caller: &[(String, String)],
    user: &str,
    home: &str,
    shell: &str,
) -> Result<Vec<CString>, String> {
    let mut out = vec![
        cstring("PATH", "PATH=/usr/local/bin:/usr/bin:/bin")?,
        cstring("HOME", &format!("HOME={home}"))?,
        cstring("USER", &format!("USER={user}"))?,
        cstring("LOGNAME", &format!("LOGNAME={user}"))?,
        cstring("SHELL", &format!("SHELL={shell}"))?,
    ];
    for (k, v) in caller.iter().take(64) {
        let passed = PASSED_ENV.contains(&k.as_str())
            || (k.starts_with("LC_")
                && k.len() <= 20
                && k.bytes().all(|b| b.is_ascii_uppercase() || b == b'_'));
        if passed && env_value_ok(k, v) {
            out.push(cstring("a variable", &format!("{k}={v}"))?);
        }
    }
    Ok(out)
}

/// Receives the one byte with the caller's four descriptors, within `until`.
fn recv_fds(stream: &UnixStream, until: Instant) -> Result<[OwnedFd; 4], String> {
    let left = until.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err("the descriptors did not arrive in time".into());
    }
    stream
        .set_read_timeout(Some(left))
        .map_err(|e| e.to_string())?;
    let mut byte = [0u8; 1];
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: 1,
    };
    // Room for more than four, so that a client sending more is seen (and refused) rather
    // than silently cut.
    let space = 8 * std::mem::size_of::<RawFd>();
    // SAFETY: CMSG_SPACE only computes a size.
    let cap = unsafe { libc::CMSG_SPACE(space as u32) } as usize;
    let mut ctl = vec![0u64; cap.div_ceil(8)];
    // SAFETY: all-zero is a valid msghdr; the fields are set below.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = ctl.as_mut_ptr().cast();
    msg.msg_controllen = cap;
    // SAFETY: `msg` points at live buffers of the sizes given.
    let n = unsafe { libc::recvmsg(stream.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
    if n < 0 {
        return Err(format!(
            "the descriptors did not arrive: {}",
            std::io::Error::last_os_error()
        ));
    }
    let mut fds: Vec<OwnedFd> = Vec::new();
    // SAFETY: walking the control buffer the kernel filled, with the libc macros.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(c).cast::<RawFd>();
                let len = (*c).cmsg_len as usize - libc::CMSG_LEN(0) as usize;
                for i in 0..len / std::mem::size_of::<RawFd>() {
                    fds.push(OwnedFd::from_raw_fd(std::ptr::read_unaligned(data.add(i))));
                }
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    if n != 1 || msg.msg_flags & libc::MSG_CTRUNC != 0 || fds.len() != 4 {
        return Err(format!(
            "expected stdin, stdout, stderr and the working directory (4 descriptors), got {}",
            fds.len()
        ));
    }
    let mut it = fds.into_iter();
    match (it.next(), it.next(), it.next(), it.next()) {
        (Some(a), Some(b), Some(c), Some(d)) => Ok([a, b, c, d]),
        _ => Err("expected 4 descriptors".into()),
    }
}

fn is_dir(fd: &OwnedFd) -> bool {
    // SAFETY: all-zero is a valid stat; fstat fills it.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: valid descriptor and buffer.
    unsafe {
        libc::fstat(fd.as_raw_fd(), &mut st) == 0 && st.st_mode & libc::S_IFMT == libc::S_IFDIR
    }
}

/// The person's account as NSS gives it: (gid, home, shell, groups).
fn account(uid: u32, user: &str) -> Result<(u32, String, String, Vec<libc::gid_t>), String> {
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    // SAFETY: all-zero is a valid passwd.
    let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
    let mut res: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: buffers are valid for the sizes given.
    let rc = unsafe { libc::getpwuid_r(uid, &mut pw, buf.as_mut_ptr(), buf.len(), &mut res) };
    if rc != 0 || res.is_null() {
        return Err(format!("uid {uid} has no passwd entry"));
    }
    // SAFETY: getpwuid_r filled `pw` with strings inside `buf`.
    let s = |p: *const libc::c_char| unsafe {
        if p.is_null() {
            String::new()
        } else {
            std::ffi::CStr::from_ptr(p).to_string_lossy().into_owned()
        }
    };
    let (gid, home, shell) = (pw.pw_gid, s(pw.pw_dir), s(pw.pw_shell));
    let name = cstring("user name", user)?;
    let mut n: libc::c_int = 64;
    let mut groups: Vec<libc::gid_t> = vec![0; 64];
    for _ in 0..4 {
        let want = n;
        // SAFETY: `groups` has room for `n` entries.
        let rc = unsafe { libc::getgrouplist(name.as_ptr(), gid, groups.as_mut_ptr(), &mut n) };
        if rc >= 0 {
            groups.truncate(usize::try_from(n).unwrap_or(0));
            return Ok((gid, home, shell, groups));
        }
        if n <= want {
            n = want * 2;
        }
        groups.resize(usize::try_from(n).unwrap_or(64), 0);
    }
    Err(format!("{user}: too many groups"))
}

/// Serves a `run_program` request. `None` when the program was started (its own thread
/// answers when it ends); `Some(error)` for a refusal, answered by the caller like any other.
pub fn start(
    d: &Arc<Daemon>,
    stream: &UnixStream,
    peer: Peer,
    req: Request,
    until: Instant,
    now: UnixTime,
) -> Option<Response> {
    let Request::RunProgram { program, args, env } = req else {
        return Some(Response::error(
            ErrorCode::BadRequest,
            "not a run_program request",
        ));
    };
    match prepare(d, stream, peer, &program, args, &env, until, now) {
        Ok(run) => {
            let d2 = Arc::clone(d);
            match stream.try_clone() {
                Ok(s) => {
                    std::thread::spawn(move || run.wait(&d2, s));
                    None
                }
                Err(e) => Some(Response::error(ErrorCode::Internal, e.to_string())),
            }
        }
        // Denials are audited by the server, rate-limited per uid like every other.
        Err((code, msg)) => Some(Response::error(code, msg)),
    }
}

/// A started program and what its end is reported with.
struct Running {
    grant: String,
    user: String,
    program: String,
    child: spawn::Child,
    started: Instant,
    _slot: RunSlot,
}

#[allow(clippy::too_many_arguments)]
fn prepare(
    d: &Arc<Daemon>,
    stream: &UnixStream,
    peer: Peer,
    program: &str,
    args: Vec<String>,
    env: &[(String, String)],
    until: Instant,
    now: UnixTime,
) -> Result<Running, (ErrorCode, String)> {
    let bad = |m: String| (ErrorCode::BadRequest, m);
    let denied = |m: String| (ErrorCode::PermissionDenied, m);
    let bytes: usize = args.iter().map(String::len).sum::<usize>()
        + env.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>();
    if args.len() > MAX_ARGS || bytes > MAX_BYTES {
        return Err(bad(format!(
            "at most {MAX_ARGS} arguments and {} KiB of arguments and environment",
            MAX_BYTES / 1024
        )));
    }
    // The descriptors come before any decision, so a refusal never leaves them in the socket.
    let [stdin, stdout, stderr, cwd] = recv_fds(stream, until).map_err(bad)?;
    if !is_dir(&cwd) {
        return Err(bad("the fourth descriptor is not a directory".into()));
    }
    let g = d.tokenize_find(peer.uid, program, now)?;
    let mut nums = Vec::new();
    for c in &g.caps {
        // The operator may have narrowed allow_caps since the grant was made.
        super::policy::check_cap_allowed(c, &d.cfg).map_err(denied)?;
        nums.push(jit_core::caps::parse(c).map_err(|e| denied(e.to_string()))?);
    }
    let exe = super::policy::open_trusted(&g.program, &d.cfg).map_err(denied)?;
    let (gid, home, shell, groups) = account(peer.uid, &g.user).map_err(denied)?;
    let mut argv = vec![cstring("the program", &g.program).map_err(bad)?];
    for a in &args {
        argv.push(cstring("an argument", a).map_err(bad)?);
    }
    let envp = environment(env, &g.user, &home, &shell).map_err(bad)?;
    let slot = RunSlot::take(peer.uid).map_err(|m| (ErrorCode::Busy, m))?;
    let launch = Launch {
        exe,
        argv,
        envp,
        uid: peer.uid,
        gid,
        groups,
        caps: nums,
        stdio: [stdin, stdout, stderr],
        cwd,
    };
    let child = spawn::launch(&launch).map_err(|m| (ErrorCode::Internal, m))?;
    drop(launch);
    d.tokenize_started(&g.id, child.pid, now);
    d.audit(
        now,
        Severity::Notice,
        Event::TokenizeRun,
        json!({
            "grant": g.id, "user": g.user, "uid": peer.uid, "caller_pid": peer.pid,
            "program": g.program, "args": args.iter().map(|a| one_line(a, 256)).collect::<Vec<_>>(),
            "caps": g.caps, "pid": child.pid,
        }),
    );
    Ok(Running {
        grant: g.id,
        user: g.user,
        program: g.program,
        child,
        started: Instant::now(),
        _slot: slot,
    })
}

/// Signals a client may ask to relay.
fn relayable(sig: i32) -> bool {
    matches!(
        sig,
        libc::SIGINT | libc::SIGQUIT | libc::SIGTERM | libc::SIGHUP | libc::SIGWINCH
    )
}

impl Running {
    fn signal_group(&self, sig: i32) {
        // The program leads its own session and process group (spawn.rs): signal the group,
        // which holds only what it started and has not moved out.
        // SAFETY: kill(2) with a negative pid addresses that process group.
        unsafe { libc::kill(-self.child.pid, sig) };
    }

    /// Relays signals until the program ends, then reports its status.
    fn wait(self, d: &Daemon, mut stream: UnixStream) {
        let _ = stream.set_read_timeout(None);
        let mut client = true;
        loop {
            let mut p = [
                libc::pollfd {
                    fd: self.child.pidfd.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                },
                libc::pollfd {
                    fd: stream.as_raw_fd(),
                    events: if client { libc::POLLIN } else { 0 },
                    revents: 0,
                },
            ];
            // SAFETY: two valid pollfds.
            let n = unsafe { libc::poll(p.as_mut_ptr(), 2, -1) };
            if n < 0 {
                if std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                    continue;
                }
                break;
            }
            if p[0].revents != 0 {
                break;
            }
            if p[1].revents != 0 {
                let mut buf = [0u8; 16];
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => {
                        // The client is gone: so is the program's terminal.
                        client = false;
                        self.signal_group(libc::SIGHUP);
                        self.signal_group(libc::SIGTERM);
                    }
                    Ok(k) => {
                        for &s in buf.iter().take(k) {
                            if relayable(i32::from(s)) {
                                self.signal_group(i32::from(s));
                            }
                        }
                    }
                }
            }
        }
        let (status, signal) = spawn::reap(self.child.pid);
        let now = jit_core::time::now();
        d.audit(
            now,
            Severity::Info,
            Event::TokenizeExit,
            json!({
                "grant": self.grant, "user": self.user, "program": self.program,
                "pid": self.child.pid, "status": status, "signal": signal,
                "ms": self.started.elapsed().as_millis() as u64,
            }),
        );
        if client {
            let resp = Response::ok(Payload::Exited {
                grant: self.grant.clone(),
                pid: self.child.pid,
                status,
                signal,
            });
            if let Ok(body) = serde_json::to_vec(&resp) {
                let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
                let _ = jit_proto::frame::write_frame(&mut stream, &body);
            }
        }
    }
}
