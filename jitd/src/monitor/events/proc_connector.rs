//! The netlink proc connector: fork, exec and exit events of every process on the host.

use super::*;

const CN_IDX_PROC: u32 = 1;
const CN_VAL_PROC: u32 = 1;
const PROC_CN_MCAST_LISTEN: u32 = 1;
const PROC_EVENT_FORK: u32 = 1;
const PROC_EVENT_EXEC: u32 = 2;
const PROC_EVENT_EXIT: u32 = 0x8000_0000;
const NLMSG_HDRLEN: usize = 16;
const CN_MSG_LEN: usize = 20;

pub(super) struct ProcConnector {
    pub(super) fd: libc::c_int,
}

impl ProcConnector {
    pub(super) fn open() -> Result<ProcConnector, String> {
        // SAFETY: plain socket(2) call.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_DGRAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
                libc::NETLINK_CONNECTOR,
            )
        };
        if fd < 0 {
            return Err(std::io::Error::last_os_error().to_string());
        }
        let pc = ProcConnector { fd };
        // A big receive buffer: a build forks thousands of processes a second.
        let size: libc::c_int = 8 << 20;
        // SAFETY: `size` outlives the call; the length matches its type.
        unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVBUFFORCE,
                (&size as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        // SAFETY: an all-zero sockaddr_nl is valid; the fields are then set.
        let mut sa: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        sa.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        sa.nl_groups = CN_IDX_PROC;
        // SAFETY: `sa` is a valid sockaddr_nl of the given size.
        let r = unsafe {
            libc::bind(
                fd,
                (&sa as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if r < 0 {
            return Err(format!("bind: {}", std::io::Error::last_os_error()));
        }
        let mut msg = [0u8; NLMSG_HDRLEN + CN_MSG_LEN + 4];
        let len = msg.len() as u32;
        msg[0..4].copy_from_slice(&len.to_ne_bytes());
        msg[4..6].copy_from_slice(&(libc::NLMSG_DONE as u16).to_ne_bytes());
        msg[12..16].copy_from_slice(&std::process::id().to_ne_bytes());
        let cn = NLMSG_HDRLEN;
        msg[cn..cn + 4].copy_from_slice(&CN_IDX_PROC.to_ne_bytes());
        msg[cn + 4..cn + 8].copy_from_slice(&CN_VAL_PROC.to_ne_bytes());
        msg[cn + 16..cn + 18].copy_from_slice(&4u16.to_ne_bytes());
        msg[cn + CN_MSG_LEN..].copy_from_slice(&PROC_CN_MCAST_LISTEN.to_ne_bytes());
        // SAFETY: `msg` is valid for its length.
        let n = unsafe { libc::send(fd, msg.as_ptr().cast(), msg.len(), 0) };
        if n < 0 {
            return Err(format!("listen: {}", std::io::Error::last_os_error()));
        }
        Ok(pc)
    }

    /// Sets the socket's receive buffer (tests provoke an overflow with a small one).
    #[cfg(test)]
    pub(super) fn set_rcvbuf(&self, bytes: libc::c_int) {
        // SAFETY: `bytes` outlives the call; the length matches its type.
        unsafe {
            libc::setsockopt(
                self.fd,
                libc::SOL_SOCKET,
                libc::SO_RCVBUFFORCE,
                (&bytes as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
    }

    /// Hands every queued event to `f`; the number of times the socket reported lost events
    /// (`ENOBUFS`: its receive buffer overflowed and the kernel dropped messages) since the
    /// last call. At most 64 such reports are read per call, so a host that overflows the
    /// buffer without pause cannot keep the monitor's loop here.
    pub(super) fn drain(&self, buf: &mut [u8], mut f: impl FnMut(ProcEvent)) -> u64 {
        let mut lost = 0;
        loop {
            // SAFETY: `buf` is writable for its length.
            let n = unsafe { libc::recv(self.fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n <= 0 {
                // EAGAIN: drained. ENOBUFS: events were lost (the caller rescans the grants'
                // cgroups); the next recv continues with what is still queued.
                if n < 0
                    && std::io::Error::last_os_error().raw_os_error() == Some(libc::ENOBUFS)
                    && lost < 64
                {
                    lost += 1;
                    continue;
                }
                return lost;
            }
            let data = &buf[..n as usize];
            let mut off = 0;
            while off + NLMSG_HDRLEN <= data.len() {
                let len = u32_at(data, off) as usize;
                if len < NLMSG_HDRLEN || off + len > data.len() {
                    break;
                }
                let ev = off + NLMSG_HDRLEN + CN_MSG_LEN;
                if ev + 32 <= off + len {
                    let what = u32_at(data, ev);
                    let a = u32_at(data, ev + 16) as i32;
                    let b = u32_at(data, ev + 20) as i32;
                    match what {
                        PROC_EVENT_FORK => {
                            let child_pid = u32_at(data, ev + 24) as i32;
                            let child_tgid = u32_at(data, ev + 28) as i32;
                            // Threads share their process's membership.
                            if child_pid == child_tgid {
                                f(ProcEvent::Fork {
                                    parent: b,
                                    child: child_tgid,
                                });
                            }
                        }
                        PROC_EVENT_EXEC => f(ProcEvent::Exec { pid: b }),
                        PROC_EVENT_EXIT if a == b => f(ProcEvent::Exit { pid: b }),
                        _ => {}
                    }
                }
                off += (len + 3) & !3;
            }
        }
    }
}

fn u32_at(d: &[u8], off: usize) -> u32 {
    d.get(off..off + 4)
        .and_then(|s| <[u8; 4]>::try_from(s).ok())
        .map_or(0, u32::from_ne_bytes)
}

impl Drop for ProcConnector {
    fn drop(&mut self) {
        // SAFETY: closing our own fd.
        unsafe { libc::close(self.fd) };
    }
}
