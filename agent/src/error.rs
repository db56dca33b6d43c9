//! The agent's error type. Its one mapping to gRPC status codes is in
//! `api/status.rs`.

/// What went wrong with a request or inside the agent.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad input; `field` names what was wrong.
    #[error("{field}: {message}")]
    InvalidArgument { field: String, message: String },
    /// An unknown dyno.
    #[error("{0}")]
    NotFound(String),
    /// The request contradicts what the agent already holds (a request id
    /// reused for another request).
    #[error("{0}")]
    FailedPrecondition(String),
    /// A concurrent request undid this one (a stop cancelled a start in
    /// flight).
    #[error("{0}")]
    Aborted(String),
    /// No room on the host.
    #[error("{0}")]
    ResourceExhausted(String),
    /// The agent is shutting down.
    #[error("agent unavailable: {0}")]
    Unavailable(String),
    /// Something the agent depends on (a slug's server) failed in a way that
    /// may pass: worth retrying later.
    #[error("{0}")]
    Upstream(String),
    /// Anything else: I/O on the state directory, a spawn failure.
    #[error("{0}")]
    Internal(String),
}

impl Error {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Error {
        Error::InvalidArgument {
            field: field.into(),
            message: message.into(),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
