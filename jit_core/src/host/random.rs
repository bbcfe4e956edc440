//! Random bytes from the kernel's getrandom(2), the one source jitd uses for grant ids, TOTP
//! secrets and break-glass codes. Blocks only until the kernel's pool is initialised at boot;
//! never falls back to anything weaker.

/// Fills `buf` from getrandom(2), retrying on EINTR and short reads.
///
/// # Errors
/// getrandom(2) failed (ENOSYS on a very old kernel, EFAULT): nothing weaker is tried.
pub fn fill(buf: &mut [u8]) -> std::io::Result<()> {
    let mut filled = 0usize;
    while let Some(rest) = buf.get_mut(filled..).filter(|r| !r.is_empty()) {
        // SAFETY: getrandom(2) writes at most `rest.len()` bytes into `rest`, which we own.
        let n = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        filled += usize::try_from(n).unwrap_or(0);
    }
    Ok(())
}

/// `n` random bytes.
///
/// # Errors
/// As [`fill`].
pub fn bytes(n: usize) -> std::io::Result<Vec<u8>> {
    let mut b = vec![0u8; n];
    fill(&mut b)?;
    Ok(b)
}

/// `n` random bytes as `2n` lower-case hex digits (grant and session ids).
///
/// # Errors
/// As [`fill`].
pub fn hex(n: usize) -> std::io::Result<String> {
    use std::fmt::Write;
    let b = bytes(n)?;
    let mut s = String::with_capacity(2 * n);
    for x in &b {
        let _ = write!(s, "{x:02x}");
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn fills_and_differs() {
        let (a, b) = (bytes(32).unwrap(), bytes(32).unwrap());
        assert_eq!(a.len(), 32);
        // Two 256-bit draws are equal with probability 2^-256; all-zero likewise.
        assert_ne!(a, b);
        assert!(a.iter().any(|&x| x != 0));
        let h = hex(6).unwrap();
        assert_eq!(h.len(), 12);
        assert!(h
            .bytes()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)));
        assert!(bytes(0).unwrap().is_empty());
        // Larger than one getrandom(2) call may return for the urandom source (33554431).
        let mut big = vec![0u8; 1 << 20];
        fill(&mut big).unwrap();
        assert!(big.iter().filter(|&&x| x == 0).count() < 1 << 14);
    }
}
