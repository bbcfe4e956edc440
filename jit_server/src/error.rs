//! One error type: a status for the API edge and a message for people.

use std::fmt;

/// Errors carry the HTTP status they map to, so every layer can refuse precisely.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    /// HTTP status code.
    pub status: u16,
    /// One line for people.
    pub msg: String,
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn bad(msg: impl Into<String>) -> Error {
        Error {
            status: 400,
            msg: msg.into(),
        }
    }
    pub fn unauthorized(msg: impl Into<String>) -> Error {
        Error {
            status: 401,
            msg: msg.into(),
        }
    }
    pub fn forbidden(msg: impl Into<String>) -> Error {
        Error {
            status: 403,
            msg: msg.into(),
        }
    }
    pub fn not_found(msg: impl Into<String>) -> Error {
        Error {
            status: 404,
            msg: msg.into(),
        }
    }
    pub fn conflict(msg: impl Into<String>) -> Error {
        Error {
            status: 409,
            msg: msg.into(),
        }
    }
    /// A limit on what one person may hold (429).
    pub fn too_many(msg: impl Into<String>) -> Error {
        Error {
            status: 429,
            msg: msg.into(),
        }
    }
    pub fn internal(msg: impl Into<String>) -> Error {
        Error {
            status: 500,
            msg: msg.into(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.msg)
    }
}

impl std::error::Error for Error {}

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Error {
        Error::internal(format!("database: {e}"))
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Error {
        Error::internal(format!("i/o: {e}"))
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Error {
        Error::internal(format!("json: {e}"))
    }
}

impl From<jit_proto::state_doc::DocError> for Error {
    fn from(e: jit_proto::state_doc::DocError) -> Error {
        Error::internal(e.to_string())
    }
}
