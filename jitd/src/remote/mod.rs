//! The remote side of jitctl: people talk to the central service (jit-server) over HTTPS with
//! the server's certificate pinned by fingerprint. Synchronous (ureq + rustls with ring); the
//! async stack stays in jit_server. See docs/server.md.

pub mod cli;
pub mod client;
pub mod config;
