//! Tokenization: a named program runs as the person, with the person's uid, carrying only the
//! capabilities a live grant names (`jitctl grant add USER --cap CAP --program PATH`, then
//! `jitctl run PATH`). The person never holds the capabilities themselves and nothing is
//! written to the system (no set-uid helper, no file capabilities).
//!
//! * [`policy`]: what may be granted (capability deny list, trusted program paths).
//! * [`holdable`]: which capabilities jitd itself holds and so can hand on.
//! * [`spawn`]: starting the program (credentials, ambient capabilities, no_new_privs).
//! * [`serve`]: the `run_program` connection (descriptors over the socket, exit status back).
//!
//! The daemon's side (which grant, teardown of processes still holding a granted capability)
//! is in `effects/tokenize.rs`.

pub mod holdable;
pub mod policy;
pub mod serve;
pub mod spawn;
