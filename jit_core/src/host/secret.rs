//! Secrets in memory: a [`Secret`] (a TOTP or break-glass code as typed) is zeroed when
//! dropped, and [`ct_eq`] compares codes and tokens in time that does not depend on where they
//! differ. Behind the `secret` feature (on in pam_jit, sudo_jit, jit_proto and jitd; off in
//! nss_jit, which never holds a secret), because it adds two crates:
//!
//! * `zeroize`: volatile writes plus a compiler fence, the guarantee a hand-written loop with
//!   `black_box` only hopes for; it also wipes a `Vec`'s spare capacity.
//! * `subtle`: the constant-time equality the RustCrypto crates use.

use subtle::ConstantTimeEq;
use zeroize::Zeroize;

/// Bytes zeroed when dropped, never printed (`Debug` shows `Secret(..)`).
pub struct Secret(Vec<u8>);

impl Secret {
    /// Takes ownership of `bytes`.
    pub fn new(bytes: Vec<u8>) -> Self {
        Secret(bytes)
    }

    /// Takes `bytes`, keeping at most `max`; the bytes cut off are wiped first.
    pub fn capped(mut bytes: Vec<u8>, max: usize) -> Self {
        if let Some(tail) = bytes.get_mut(max..) {
            tail.zeroize();
            bytes.truncate(max);
        }
        Secret(bytes)
    }

    /// The bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }

    /// Nothing was typed.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// How many bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// Zeroes `buf` (a frame or reply that carried a code) in a way the optimiser keeps.
pub fn wipe(buf: &mut [u8]) {
    buf.zeroize();
}

/// Zeroes a string's bytes (and spare capacity), then leaves it empty.
pub fn wipe_string(s: &mut String) {
    s.zeroize();
}

/// Equal contents, compared in constant time for equal lengths (a length is not secret: codes
/// have a fixed number of digits and tokens a fixed size).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn secret_caps_and_hides() {
        let s = Secret::capped(vec![b'1'; 1 << 20], 256);
        assert_eq!(s.len(), 256);
        assert_eq!(format!("{s:?}"), "Secret(..)");
        assert_eq!(Secret::capped(b"12".to_vec(), 256).bytes(), b"12");
        assert!(Secret::new(Vec::new()).is_empty());
        let mut v = b"123456".to_vec();
        wipe(&mut v);
        assert_eq!(v, [0; 6]);
        let mut s = String::from("654321");
        wipe_string(&mut s);
        assert!(s.is_empty());
    }

    #[test]
    fn ct_eq_table() {
        for (a, b, want) in [
            (&b"123456"[..], &b"123456"[..], true),
            (b"123456", b"123457", false),
            (b"023456", b"123456", false),
            (b"12345", b"123456", false),
            (b"", b"", true),
            (b"", b"0", false),
        ] {
            assert_eq!(ct_eq(a, b), want, "{a:?} {b:?}");
        }
    }
}
