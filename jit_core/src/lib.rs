//! jit_core: the light shared core of jit.
//!
//! Everything here is std + libc only, because `libnss_jit.so.2` links this crate into every
//! process on the host that resolves a user name. It holds the snapshot-level types, name and
//! value validation, the pure policy decisions, and the snapshot format (writer used by jitd,
//! reader used by the modules), so that jitd and every module share one definition.
#![warn(clippy::indexing_slicing)]

pub mod caps;
pub mod constants;
pub mod crc32c;
pub mod ffi;
pub mod host;
pub mod localfile;
pub mod managed;
pub mod options;
pub mod par;
pub mod policy;
pub mod snapshot;
pub mod time;
pub mod types;
pub mod validate;

pub use time::UnixTime;
