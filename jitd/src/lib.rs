//! jitd: the root daemon on every host. It holds the grants, writes the snapshot the modules
//! read, serves the local socket, moves grants through their life and tears privilege down.
//! The binaries in `src/bin` are thin: `jitd`, `jitctl`, `jit-authorized-keys`.

pub mod api;
pub mod audit;
pub mod certify;
pub mod check;
pub mod config;
pub mod daemon;
pub mod durable;
pub mod effects;
pub mod engine;
pub mod escape;
pub mod home;
pub mod journal;
pub mod localdb;
pub mod mfa;
pub mod monitor;
pub mod mountinfo;
pub mod nscd;
pub(crate) mod poison;
pub mod procs;
pub mod remote;
pub mod server;
pub mod snapshot_out;
pub mod state;
pub mod sudoconf;
pub mod sweep;
pub mod sync;
pub mod throttle;
pub mod tokenize;
