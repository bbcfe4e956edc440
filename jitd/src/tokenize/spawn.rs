//! Starting a tokenized program. jitd forks; the child, before it executes the program:
//!
//! 1. drops from its bounding set every capability the grant does not name (no later exec of
//!    a set-uid or file-capability program can gain more);
//! 2. takes the person's groups, gid and (with PR_SET_KEEPCAPS) uid: real, effective and saved;
//! 3. sets exactly the granted capabilities as permitted, effective and inheritable, and raises
//!    each into the ambient set, which is what survives `execve` for a non-root uid;
//! 4. sets no_new_privs, a new session, default signal handling, the caller's stdio and
//!    working directory, and marks every other descriptor close-on-exec;
//! 5. executes the descriptor the policy check opened (`execveat(fd, "", AT_EMPTY_PATH)`), so
//!    the file checked is the file run, whatever happens to the path meanwhile.
//!
//! libc is used directly rather than the `caps` crate: between `fork` and `execve` in a
//! multi-threaded daemon only async-signal-safe calls are allowed, so everything (argument
//! arrays, the capability structures) is built before the fork and the child makes nothing but
//! system calls; the crate's functions allocate.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// What the child becomes and runs.
pub struct Launch {
    /// The checked program, open for execution.
    pub exe: OwnedFd,
    /// argv (argv[0] is the program's path).
    pub argv: Vec<CString>,
    /// The sanitised environment.
    pub envp: Vec<CString>,
    /// The person.
    pub uid: u32,
    /// Their primary group.
    pub gid: u32,
    /// Their supplementary groups.
    pub groups: Vec<libc::gid_t>,
    /// Capability numbers to hold.
    pub caps: Vec<u8>,
    /// The caller's stdin, stdout, stderr.
    pub stdio: [OwnedFd; 3],
    /// The caller's working directory.
    pub cwd: OwnedFd,
}

/// A started program.
pub struct Child {
    /// Its pid.
    pub pid: i32,
    /// A pidfd for it (readable when it exits).
    pub pidfd: OwnedFd,
}

/// The steps a child may fail at, as reported through the error pipe.
const STEPS: [&str; 12] = [
    "dropping the bounding set",
    "setgroups",
    "setresgid",
    "PR_SET_KEEPCAPS",
    "setresuid",
    "capset",
    "raising ambient capabilities",
    "no_new_privs",
    "passing the caller's descriptors",
    "changing to the caller's directory",
    "setsid",
    "execute",
];

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const CAP_V3: u32 = 0x2008_0522;

/// Starts the program. Returns once the child has executed it (or says why it could not).
///
/// # Errors
/// The failed step and its error, in one line.
pub fn launch(l: &Launch) -> Result<Child, String> {
    let mask = jit_core::caps::mask(&l.caps);
    let data = [
        CapData {
            effective: mask as u32,
            permitted: mask as u32,
            inheritable: mask as u32,
        },
        CapData {
            effective: (mask >> 32) as u32,
            permitted: (mask >> 32) as u32,
            inheritable: (mask >> 32) as u32,
        },
    ];
    let mut argv: Vec<*const libc::c_char> = l.argv.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    let mut envp: Vec<*const libc::c_char> = l.envp.iter().map(|a| a.as_ptr()).collect();
    envp.push(std::ptr::null());
    let empty = c"";
    // The caller's descriptors moved above 2 first, so dup2 onto 0-2 never overwrites one
    // not yet placed.
    let mut high = [0 as RawFd; 4];
    let mut held = Vec::new();
    for (i, fd) in l.stdio.iter().chain(std::iter::once(&l.cwd)).enumerate() {
        // SAFETY: F_DUPFD_CLOEXEC on an open descriptor returns a new one or -1.
        let n = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 10) };
        if n < 0 {
            return Err(format!(
                "duplicating a descriptor: {}",
                std::io::Error::last_os_error()
            ));
        }
        // SAFETY: just returned by the kernel, owned here.
        held.push(unsafe { OwnedFd::from_raw_fd(n) });
        if let Some(h) = high.get_mut(i) {
            *h = n;
        }
    }
    let mut pipe = [0 as RawFd; 2];
    // SAFETY: `pipe` has room for two descriptors.
    if unsafe { libc::pipe2(pipe.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(format!("pipe: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: both ends were just created and are owned here.
    let (rd, wr) = unsafe { (OwnedFd::from_raw_fd(pipe[0]), OwnedFd::from_raw_fd(pipe[1])) };
    let exe = l.exe.as_raw_fd();
    let groups = l.groups.as_ptr();
    let ngroups = l.groups.len();
    // SAFETY: fork(2). The child below only makes async-signal-safe system calls on data
    // prepared above, then executes or _exits.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(format!("fork: {}", std::io::Error::last_os_error()));
    }
    if pid == 0 {
        // SAFETY: in the child; see `child`.
        unsafe {
            child(&ChildArgs {
                exe,
                argv: argv.as_ptr(),
                envp: envp.as_ptr(),
                empty: empty.as_ptr(),
                uid: l.uid,
                gid: l.gid,
                groups,
                ngroups,
                mask,
                data: &data,
                high,
                err: wr.as_raw_fd(),
            })
        }
    }
    drop(wr);
    // SAFETY: pidfd_open(2) on our own unreaped child.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    let mut report = [0u8; 5];
    let n = loop {
        // SAFETY: reading into a 5-byte buffer from the pipe we own.
        let n = unsafe { libc::read(rd.as_raw_fd(), report.as_mut_ptr().cast(), 5) };
        if n < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
            continue;
        }
        break n;
    };
    if n != 0 {
        // The child failed before exec: reap it and say where.
        let mut st = 0;
        // SAFETY: waiting for our own child.
        unsafe { libc::waitpid(pid, &mut st, 0) };
        let step = STEPS
            .get(usize::from(report[0]))
            .copied()
            .unwrap_or("start");
        let errno = i32::from_ne_bytes([report[1], report[2], report[3], report[4]]);
        return Err(format!(
            "could not start the program ({step}: {})",
            std::io::Error::from_raw_os_error(errno)
        ));
    }
    if pidfd < 0 {
        return Err(format!("pidfd_open: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: the kernel returned this descriptor; owned here.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd as RawFd) };
    Ok(Child { pid, pidfd })
}

struct ChildArgs<'a> {
    exe: RawFd,
    argv: *const *const libc::c_char,
    envp: *const *const libc::c_char,
    empty: *const libc::c_char,
    uid: u32,
    gid: u32,
    groups: *const libc::gid_t,
    ngroups: usize,
    mask: u64,
    data: &'a [CapData; 2],
    high: [RawFd; 4],
    err: RawFd,
}

/// Reports step `step` failed with errno and exits 127.
///
/// # Safety
/// In the forked child only.
unsafe fn fail(err: RawFd, step: u8) -> ! {
    // SAFETY: __errno_location is async-signal-safe and returns this thread's errno.
    let errno = unsafe { *libc::__errno_location() };
    let e = errno.to_ne_bytes();
    let buf = [step, e[0], e[1], e[2], e[3]];
    // SAFETY: write(2) and _exit(2) are async-signal-safe.
    unsafe {
        libc::write(err, buf.as_ptr().cast(), buf.len());
        libc::_exit(127)
    }
}

/// The child's side of [`launch`].
///
/// # Safety
/// Only in the child of `fork`, with every pointer in `a` valid (prepared by the parent).
unsafe fn child(a: &ChildArgs<'_>) -> ! {
    // SAFETY: only async-signal-safe system calls on memory the parent prepared (whole body).
    unsafe {
        // 0: the bounding set keeps only the granted capabilities.
        for c in 0..64u64 {
            if a.mask & (1 << c) == 0
                && libc::prctl(libc::PR_CAPBSET_DROP, c as libc::c_ulong, 0, 0, 0) != 0
                && *libc::__errno_location() != libc::EINVAL
            {
                fail(a.err, 0);
            }
        }
        if libc::setgroups(a.ngroups, a.groups) != 0 {
            fail(a.err, 1);
        }
        if libc::setresgid(a.gid, a.gid, a.gid) != 0 {
            fail(a.err, 2);
        }
        if libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) != 0 {
            fail(a.err, 3);
        }
        if libc::setresuid(a.uid, a.uid, a.uid) != 0 {
            fail(a.err, 4);
        }
        let mut hdr = CapHeader {
            version: CAP_V3,
            pid: 0,
        };
        if libc::syscall(
            libc::SYS_capset,
            &mut hdr as *mut CapHeader,
            a.data.as_ptr(),
        ) != 0
        {
            fail(a.err, 5);
        }
        for c in 0..64u64 {
            if a.mask & (1 << c) != 0
                && libc::prctl(
                    libc::PR_CAP_AMBIENT,
                    libc::PR_CAP_AMBIENT_RAISE as libc::c_ulong,
                    c as libc::c_ulong,
                    0,
                    0,
                ) != 0
            {
                fail(a.err, 6);
            }
        }
        if libc::prctl(libc::PR_SET_KEEPCAPS, 0, 0, 0, 0) != 0 {
            fail(a.err, 3);
        }
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
            fail(a.err, 7);
        }
        for (target, &fd) in a.high.iter().take(3).enumerate() {
            if libc::dup2(fd, target as RawFd) < 0 {
                fail(a.err, 8);
            }
        }
        if libc::fchdir(a.high[3]) != 0 {
            fail(a.err, 9);
        }
        if libc::setsid() < 0 {
            fail(a.err, 10);
        }
        // Signals as a fresh process has them (jitd ignores SIGPIPE and blocks some).
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
        for s in 1..32 {
            if s != libc::SIGKILL && s != libc::SIGSTOP {
                libc::signal(s, libc::SIG_DFL);
            }
        }
        // Every descriptor above stderr is closed at exec (the error pipe included, so the
        // parent reads end-of-file when the exec succeeds).
        libc::syscall(
            libc::SYS_close_range,
            3 as libc::c_uint,
            libc::c_uint::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        );
        libc::syscall(
            libc::SYS_execveat,
            a.exe,
            a.empty,
            a.argv,
            a.envp,
            libc::AT_EMPTY_PATH,
        );
        fail(a.err, 11)
    }
}

/// Exit status of a reaped child: (status as a shell shows it, signal if one ended it).
pub fn reap(pid: i32) -> (i32, Option<i32>) {
    let mut st = 0;
    loop {
        // SAFETY: waiting for our own child.
        let r = unsafe { libc::waitpid(pid, &mut st, 0) };
        if r < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
            continue;
        }
        if r < 0 {
            return (255, None);
        }
        break;
    }
    if libc::WIFSIGNALED(st) {
        let s = libc::WTERMSIG(st);
        (128 + s, Some(s))
    } else {
        (libc::WEXITSTATUS(st), None)
    }
}

/// Keeps `CString::new` failures out of the caller: arguments and variables with NUL bytes
/// are refused before they get here, so this only guards the conversion.
///
/// # Errors
/// A NUL byte in `s`.
pub fn cstring(what: &str, s: &str) -> Result<CString, String> {
    CString::new(s).map_err(|_| format!("{what} holds a NUL byte"))
}
