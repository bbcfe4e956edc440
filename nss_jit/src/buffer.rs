//! Writer for the caller's buffer of the `_r` entry points.
//!
//! glibc hands every `_r` function a buffer of `buflen` bytes and expects all strings of the
//! answer (and a group's `char **gr_mem` array) to live inside it: the module may not allocate
//! memory that outlives the call. When the buffer is too small the module answers
//! `NSS_STATUS_TRYAGAIN` with `ERANGE`, and glibc retries with a bigger buffer. This writer does
//! the bounds arithmetic once, with checked operations, so that a short buffer is an error value
//! ([`TooSmall`]) and never a write past the end or a panic.

use libc::c_char;
use std::marker::PhantomData;
use std::mem::{align_of, size_of};

/// The caller's buffer cannot hold the answer (the entry point maps this to TRYAGAIN + ERANGE).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooSmall;

/// A bump allocator over the caller's buffer.
///
/// It keeps a raw base pointer rather than a `&mut [u8]`: the buffer may be uninitialised, and
/// the pointers handed back to C must stay valid after later writes into other parts of the
/// buffer, which a chain of `&mut` re-borrows would not guarantee.
pub struct CallerBuf<'a> {
    base: *mut u8,
    len: usize,
    used: usize,
    _buf: PhantomData<&'a mut [u8]>,
}

impl<'a> CallerBuf<'a> {
    /// Wraps the caller's buffer. `None` for a null pointer (the entry point answers EINVAL).
    ///
    /// # Safety
    /// Unless null, `ptr` must be valid for writes of `len` bytes for `'a`, and nothing else may
    /// access that memory while the writer lives. glibc guarantees this for the `buffer` and
    /// `buflen` arguments of the NSS `_r` functions.
    pub unsafe fn from_raw(ptr: *mut c_char, len: usize) -> Option<CallerBuf<'a>> {
        if ptr.is_null() {
            return None;
        }
        Some(CallerBuf {
            base: ptr.cast::<u8>(),
            len,
            used: 0,
            _buf: PhantomData,
        })
    }

    /// Wraps a Rust buffer (tests and any in-process caller).
    pub fn new(buf: &'a mut [u8]) -> CallerBuf<'a> {
        CallerBuf {
            base: buf.as_mut_ptr(),
            len: buf.len(),
            used: 0,
            _buf: PhantomData,
        }
    }

    /// Bytes used so far, alignment padding included.
    pub fn used(&self) -> usize {
        self.used
    }

    /// Reserves `n` bytes whose start address is a multiple of `align` (a power of two) and
    /// returns a pointer to them. Alignment is computed on the real address, because glibc's
    /// buffer has no alignment guarantee.
    fn reserve(&mut self, align: usize, n: usize) -> Result<*mut u8, TooSmall> {
        let addr = (self.base as usize)
            .checked_add(self.used)
            .ok_or(TooSmall)?;
        let pad = addr.wrapping_neg() & (align.max(1) - 1);
        let start = self.used.checked_add(pad).ok_or(TooSmall)?;
        let end = start.checked_add(n).ok_or(TooSmall)?;
        if end > self.len {
            return Err(TooSmall);
        }
        self.used = end;
        // wrapping_add is safe to call; `start + n <= len` was checked just above, so the
        // resulting pointer stays inside the caller's buffer.
        Ok(self.base.wrapping_add(start))
    }

    /// Copies `s` and a terminating NUL into the buffer; returns the C string pointer.
    /// Snapshot strings are validated to hold no NUL, so C sees the whole string.
    pub fn put_str(&mut self, s: &str) -> Result<*mut c_char, TooSmall> {
        self.put_bytes(s.as_bytes())
    }

    /// As [`CallerBuf::put_str`], for bytes checked to be a string without NUL (a record of
    /// the account listing).
    pub fn put_bytes(&mut self, bytes: &[u8]) -> Result<*mut c_char, TooSmall> {
        let n = bytes.len().checked_add(1).ok_or(TooSmall)?;
        let dst = self.reserve(1, n)?;
        // SAFETY: `reserve` checked that `dst .. dst + n` lies inside the caller's buffer, which
        // `from_raw`/`new` made us the only user of; `bytes` is a Rust slice that cannot overlap
        // it (the caller's buffer is not borrowed anywhere else); `n - 1 == bytes.len()`.
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), dst, bytes.len());
            dst.add(bytes.len()).write(0);
        }
        Ok(dst.cast::<c_char>())
    }

    /// Writes a NULL-terminated, pointer-aligned `char *[]` holding copies of `items`, as
    /// `gr_mem` needs. The array comes first and the strings after it. `items` makes the
    /// iterator twice (count, then copy); a second pass that yields fewer items leaves NULLs,
    /// never garbage, and one that yields more is cut at the count.
    pub fn put_str_array<'s, I, F>(&mut self, items: F) -> Result<*mut *mut c_char, TooSmall>
    where
        F: Fn() -> I,
        I: Iterator<Item = &'s str>,
    {
        let n = items().count();
        let slots = n.checked_add(1).ok_or(TooSmall)?;
        let bytes = slots
            .checked_mul(size_of::<*mut c_char>())
            .ok_or(TooSmall)?;
        let arr = self
            .reserve(align_of::<*mut c_char>(), bytes)?
            .cast::<*mut c_char>();
        for i in 0..slots {
            // SAFETY: `reserve` returned `slots` pointer-sized slots inside the buffer, aligned
            // for `*mut c_char`; `i < slots`.
            unsafe { arr.add(i).write(std::ptr::null_mut()) };
        }
        for (i, s) in items().take(n).enumerate() {
            let p = self.put_str(s)?;
            // SAFETY: as above; `i < n < slots`, so the final NULL slot is never overwritten.
            unsafe { arr.add(i).write(p) };
        }
        Ok(arr)
    }
}

/// Bytes `put_str` needs for `s`.
pub fn str_len(s: &str) -> usize {
    s.len().saturating_add(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CStr;

    fn read_array(arr: *mut *mut c_char) -> Vec<String> {
        let mut out = Vec::new();
        let mut i = 0;
        loop {
            // SAFETY: test-only; the array was written NULL-terminated by put_str_array.
            let p = unsafe { *arr.add(i) };
            if p.is_null() {
                return out;
            }
            // SAFETY: each entry points at a NUL-terminated copy inside the test buffer.
            out.push(unsafe { CStr::from_ptr(p) }.to_str().unwrap().to_string());
            i += 1;
        }
    }

    #[test]
    fn strings_at_every_length() {
        let words = ["alice", "*", "", "/home/alice", "/bin/bash"];
        let need: usize = words.iter().map(|w| str_len(w)).sum();
        for len in 0..=need + 3 {
            let mut backing = vec![0xAAu8; len];
            let mut b = CallerBuf::new(&mut backing);
            let res: Result<Vec<_>, _> = words.iter().map(|w| b.put_str(w)).collect();
            if len < need {
                assert_eq!(res.err(), Some(TooSmall), "len {len}");
            } else {
                let ptrs = res.unwrap();
                assert_eq!(b.used(), need);
                for (p, w) in ptrs.iter().zip(words) {
                    // SAFETY: test-only, pointer into `backing`.
                    assert_eq!(unsafe { CStr::from_ptr(*p) }.to_str().unwrap(), w);
                }
            }
        }
    }

    /// The array must be aligned on the real address whatever the buffer's own alignment, and
    /// the exact size needed (padding included) must succeed while one byte less must not.
    #[test]
    fn array_alignment_and_exact_size_at_every_offset() {
        let members = ["alice", "bob", "carol-the-long-name"];
        let strings: usize = members.iter().map(|m| str_len(m)).sum::<usize>() + str_len("sudo");
        let ptr = size_of::<*mut c_char>();
        for offset in 0..ptr {
            // u64 backing gives an 8-aligned start; `offset` then misaligns it on purpose.
            let mut backing = vec![0u64; 64];
            let raw = backing.as_mut_ptr().cast::<u8>().wrapping_add(offset);
            let pad = (raw as usize + str_len("sudo")).wrapping_neg() & (ptr - 1);
            let need = strings + pad + (members.len() + 1) * ptr;
            for len in 0..=need + 1 {
                // SAFETY: test-only; `raw .. raw + len` lies inside `backing` (64 * 8 bytes).
                let mut b = unsafe { CallerBuf::from_raw(raw.cast(), len) }.unwrap();
                let res = b
                    .put_str("sudo")
                    .and_then(|_| b.put_str_array(|| members.iter().copied()));
                if len < need {
                    assert_eq!(res.err(), Some(TooSmall), "offset {offset} len {len}");
                    continue;
                }
                let arr = res.unwrap();
                assert_eq!(arr as usize % align_of::<*mut c_char>(), 0);
                assert_eq!(b.used(), need);
                assert_eq!(read_array(arr), members);
            }
        }
    }

    #[test]
    fn empty_array_is_one_null() {
        let mut backing = [0u64; 1];
        // SAFETY: test-only; 8 bytes of `backing`.
        let mut b = unsafe { CallerBuf::from_raw(backing.as_mut_ptr().cast(), 8) }.unwrap();
        let arr = b.put_str_array(std::iter::empty).unwrap();
        assert!(read_array(arr).is_empty());
        // SAFETY: as above, a fresh writer with no room at all.
        let mut b = unsafe { CallerBuf::from_raw(backing.as_mut_ptr().cast(), 0) }.unwrap();
        assert_eq!(b.put_str_array(std::iter::empty).err(), Some(TooSmall));
    }

    #[test]
    fn null_buffer_is_refused() {
        // SAFETY: a null pointer is the case under test; nothing is written.
        assert!(unsafe { CallerBuf::from_raw(std::ptr::null_mut(), 100) }.is_none());
    }

    #[test]
    fn huge_lengths_do_not_overflow() {
        let mut backing = [0u8; 16];
        // SAFETY: test-only; the writer is told the buffer is huge but every write below is
        // refused before touching memory because the address arithmetic overflows.
        let mut b =
            unsafe { CallerBuf::from_raw(backing.as_mut_ptr().cast(), usize::MAX) }.unwrap();
        b.used = usize::MAX - 2;
        assert_eq!(b.put_str("abcdef").err(), Some(TooSmall));
    }
}
