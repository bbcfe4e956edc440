//! Frames: a 4-byte little-endian body length, then the body. The cap is checked before any
//! allocation, and a short read is an error at once (no spinning on EOF: kanidm's lesson).

use jit_core::host::secret::wipe;
use std::io::{Read, Write};

/// Largest body accepted in either direction (1 MiB): far above any request, small enough that
/// a hostile client cannot make the daemon allocate much.
pub const MAX_FRAME: usize = 1 << 20;

/// Why a frame could not be read or written.
#[derive(Debug)]
pub enum FrameError {
    /// The peer closed the connection before a whole frame arrived.
    Truncated,
    /// The announced length is 0 or above [`MAX_FRAME`].
    BadLength(u32),
    /// Socket error or timeout.
    Io(std::io::Error),
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::Truncated => write!(f, "connection closed before a whole frame arrived"),
            FrameError::BadLength(n) => write!(f, "frame length {n} outside 1..={MAX_FRAME}"),
            FrameError::Io(e) if is_timeout(e) => write!(f, "timed out"),
            FrameError::Io(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for FrameError {}

/// Whether an I/O error is a socket timeout.
pub fn is_timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

fn read_exact_or_truncated(r: &mut impl Read, buf: &mut [u8]) -> Result<(), FrameError> {
    r.read_exact(buf).map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            FrameError::Truncated
        } else {
            FrameError::Io(e)
        }
    })
}

/// Reads one frame body.
///
/// # Errors
/// Truncation, a length outside the cap, or an I/O error (including the caller's timeout).
pub fn read_frame(r: &mut impl Read) -> Result<Vec<u8>, FrameError> {
    let mut len = [0u8; 4];
    read_exact_or_truncated(r, &mut len)?;
    let n = u32::from_le_bytes(len);
    if n == 0 || n as usize > MAX_FRAME {
        return Err(FrameError::BadLength(n));
    }
    let mut body = vec![0u8; n as usize];
    read_exact_or_truncated(r, &mut body)?;
    Ok(body)
}

/// Writes one frame.
///
/// # Errors
/// A body outside the cap or an I/O error.
pub fn write_frame(w: &mut impl Write, body: &[u8]) -> Result<(), FrameError> {
    if body.is_empty() || body.len() > MAX_FRAME {
        return Err(FrameError::BadLength(
            u32::try_from(body.len()).unwrap_or(u32::MAX),
        ));
    }
    let len = u32::try_from(body.len()).map_err(|_| FrameError::BadLength(u32::MAX))?;
    let mut out = Vec::with_capacity(body.len() + 4);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(body);
    let r = w.write_all(&out).and_then(|()| w.flush());
    // The frame may carry a TOTP or break-glass code: not left in freed memory.
    wipe(&mut out);
    r.map_err(FrameError::Io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let mut buf = Vec::new();
        write_frame(&mut buf, b"{\"v\":1}").unwrap();
        assert_eq!(read_frame(&mut &buf[..]).unwrap(), b"{\"v\":1}");
    }

    #[test]
    fn bad_frames() {
        assert!(matches!(
            read_frame(&mut &[][..]),
            Err(FrameError::Truncated)
        ));
        assert!(matches!(
            read_frame(&mut &[1, 0][..]),
            Err(FrameError::Truncated)
        ));
        assert!(matches!(
            read_frame(&mut &[0, 0, 0, 0][..]),
            Err(FrameError::BadLength(0))
        ));
        let over = ((MAX_FRAME + 1) as u32).to_le_bytes();
        assert!(matches!(
            read_frame(&mut &over[..]),
            Err(FrameError::BadLength(_))
        ));
        assert!(matches!(
            read_frame(&mut &[0xff, 0xff, 0xff, 0xff][..]),
            Err(FrameError::BadLength(u32::MAX))
        ));
        assert!(matches!(
            read_frame(&mut &[5, 0, 0, 0, b'a', b'b'][..]),
            Err(FrameError::Truncated)
        ));
        assert!(write_frame(&mut Vec::new(), b"").is_err());
        assert!(write_frame(&mut Vec::new(), &vec![b'x'; MAX_FRAME + 1]).is_err());
    }
}
