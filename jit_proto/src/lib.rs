//! jit_proto: the local socket protocol between jitd and its clients (jitctl, pam_jit, sudo_jit).
//!
//! One request per connection, in a length-prefixed frame with a hard size cap checked before
//! allocation; the JSON body carries a protocol version. See docs/protocol.md.

pub mod certification;
pub mod client;
pub mod frame;
pub mod grant;
pub mod message;
#[cfg(feature = "state-doc")]
pub mod mfa_seal;
pub mod shared_text;
#[cfg(feature = "state-doc")]
pub mod state_doc;
pub mod text;
#[cfg(feature = "tls-pin")]
pub mod tls_pin;

pub use certification::{Certification, CertificationStatus};
pub use client::{call, ClientError};
pub use frame::{read_frame, write_frame, FrameError, MAX_FRAME};
pub use grant::{Grant, GrantSource, GrantSpec, GrantState, ServerSource};
pub use message::{
    ErrorCode, MfaCaller, MfaPurpose, Request, Response, Session, SessionSpec, PROTOCOL_VERSION,
};
/// The list type of [`Grant`]'s fields: one pointer when empty (most of them, in most grants).
pub use thin_vec::ThinVec;
