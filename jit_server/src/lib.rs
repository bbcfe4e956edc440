//! jit-server: the central service. People file requests for roles on hosts, other people
//! approve them, and every enrolled host long-polls for its whole current grant set as a signed
//! state document (`jit_proto::state_doc`). See docs/server.md.
//!
//! The async stack (tokio, axum, sqlx, rustls with ring) lives only in this crate.

pub mod api;
pub mod audit;
pub mod certification;
pub mod client;
pub mod config;
pub mod db;
pub mod engine;
pub mod error;
pub mod hosts;
pub mod keys;
pub mod mfa;
pub mod pins;
pub mod policy;
pub mod ticket;
pub mod tls;
pub mod util;
