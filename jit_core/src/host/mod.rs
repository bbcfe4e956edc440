//! Host primitives shared by jitd and every module, one copy each: reading the host's account
//! files, the "only root can change this" trust check, random bytes from the kernel, and (with
//! the `secret` feature, off for nss_jit) wiped secrets and constant-time comparison.
//!
//! Each is small, std + libc only (the `secret` feature adds `zeroize` and `subtle`, two
//! dependency-free crates), and each encodes a rule that used to be written by hand in several
//! places with drifting details; docs/threat-model.md says which threat each rule answers.

pub mod accounts;
pub mod random;
#[cfg(feature = "secret")]
pub mod secret;
pub mod trust;
