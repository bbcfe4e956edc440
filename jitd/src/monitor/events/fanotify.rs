//! fanotify marks on the sensitive files and the filesystems (or mounts: [`Marks`]) holding
//! account, sudo, key and package files; each event comes with the opener's pid.

use super::*;

pub(super) struct Fanotify {
    pub(super) fd: libc::c_int,
}

impl Fanotify {
    pub(super) fn open() -> Result<Fanotify, String> {
        // SAFETY: plain fanotify_init(2) call.
        let fd = unsafe {
            libc::fanotify_init(
                libc::FAN_CLASS_NOTIF | libc::FAN_CLOEXEC | libc::FAN_NONBLOCK,
                (libc::O_RDONLY | libc::O_LARGEFILE | libc::O_CLOEXEC) as libc::c_uint,
            )
        };
        if fd < 0 {
            return Err(std::io::Error::last_os_error().to_string());
        }
        Ok(Fanotify { fd })
    }

    pub(super) fn mark(&self, flags: libc::c_uint, mask: u64, p: &Path) {
        let Ok(c) = std::ffi::CString::new(p.as_os_str().as_bytes()) else {
            return;
        };
        // SAFETY: `c` is a valid NUL-terminated path; marking a missing path just fails.
        unsafe {
            libc::fanotify_mark(
                self.fd,
                libc::FAN_MARK_ADD | flags,
                mask,
                libc::AT_FDCWD,
                c.as_ptr(),
            )
        };
    }

    /// (Re)marks everything: replaced files (a rewritten /etc/shadow is a new inode) and new
    /// homes are picked up every two seconds.
    pub(super) fn mark_all(&self, st: &Settings) {
        for p in &st.sensitive {
            self.mark(0, libc::FAN_OPEN, p);
        }
        // Writes: the mounts holding account, sudo, key and package files.
        let mut mounts: Vec<PathBuf> = [
            "/",
            "/etc",
            "/etc/sudoers.d",
            "/var",
            "/var/lib/dpkg",
            "/usr",
            "/usr/local",
            "/root",
            "/home",
        ]
        .iter()
        .map(PathBuf::from)
        .collect();
        if let Ok(t) = std::fs::read_to_string(&st.passwd_file) {
            for l in t.lines() {
                if let Some(h) = l.split(':').nth(5) {
                    if h.starts_with('/') && h != "/" {
                        mounts.push(PathBuf::from(h));
                    }
                }
            }
        }
        mounts.sort();
        mounts.dedup();
        let how = match st.marks {
            Marks::Filesystem => libc::FAN_MARK_FILESYSTEM,
            Marks::Mount => libc::FAN_MARK_MOUNT,
        };
        for m in &mounts {
            self.mark(how, libc::FAN_CLOSE_WRITE, m);
        }
    }

    /// Hands every queued event to `f`; the number of queue overflows read (the kernel drops
    /// events once its queue is full and queues one `FAN_Q_OVERFLOW` in their place).
    pub(super) fn drain(&self, buf: &mut [u8], mut f: impl FnMut(i32, u64, libc::c_int)) -> u64 {
        let mut overflows = 0;
        loop {
            // SAFETY: `buf` is writable for its length.
            let n = unsafe { libc::read(self.fd, buf.as_mut_ptr().cast(), buf.len()) };
            if n <= 0 {
                return overflows;
            }
            overflows += decode(&buf[..n as usize], &mut f);
        }
    }
}

/// Decodes one read of fanotify events: each event with a file descriptor goes to `f`, which
/// must not keep the descriptor (it is closed here); returns the number of `FAN_Q_OVERFLOW`
/// events (they carry no descriptor). A record shorter than its header ends the read.
pub(super) fn decode(data: &[u8], f: &mut impl FnMut(i32, u64, libc::c_int)) -> u64 {
    let meta = std::mem::size_of::<libc::fanotify_event_metadata>();
    let mut overflows = 0;
    let mut off = 0;
    while off + meta <= data.len() {
        // SAFETY: at least `meta` bytes remain at `off`; read_unaligned copes with any
        // alignment of the buffer.
        let m: libc::fanotify_event_metadata =
            unsafe { std::ptr::read_unaligned(data[off..].as_ptr().cast()) };
        let len = m.event_len as usize;
        if len < meta {
            break;
        }
        if m.mask & libc::FAN_Q_OVERFLOW != 0 {
            overflows += 1;
        }
        if m.fd >= 0 {
            f(m.pid, m.mask, m.fd);
            // SAFETY: the event's fd is ours to close.
            unsafe { libc::close(m.fd) };
        }
        off += len;
    }
    overflows
}

impl Drop for Fanotify {
    fn drop(&mut self) {
        // SAFETY: closing our own fd.
        unsafe { libc::close(self.fd) };
    }
}
