//! The agent's error type and its one mapping to gRPC status codes.

/// What went wrong with a request or inside the agent.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad input; `field` names what was wrong.
    #[error("{field}: {message}")]
    InvalidArgument { field: String, message: String },
    /// An unknown dyno.
    #[error("{0}")]
    NotFound(String),
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

impl From<Error> for tonic::Status {
    fn from(e: Error) -> tonic::Status {
        let msg = e.to_string();
        match e {
            Error::InvalidArgument { .. } => tonic::Status::invalid_argument(msg),
            Error::NotFound(_) => tonic::Status::not_found(msg),
            Error::ResourceExhausted(_) => tonic::Status::resource_exhausted(msg),
            Error::Unavailable(_) | Error::Upstream(_) => tonic::Status::unavailable(msg),
            Error::Internal(_) => tonic::Status::internal(msg),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    #[test]
    fn every_variant_maps_to_a_specific_code() {
        let cases = [
            (Error::invalid("app", "bad"), Code::InvalidArgument),
            (Error::NotFound("x".into()), Code::NotFound),
            (Error::ResourceExhausted("x".into()), Code::ResourceExhausted),
            (Error::Unavailable("x".into()), Code::Unavailable),
            (Error::Upstream("x".into()), Code::Unavailable),
            (Error::Internal("x".into()), Code::Internal),
        ];
        for (e, code) in cases {
            assert_eq!(tonic::Status::from(e).code(), code);
        }
        assert_eq!(
            tonic::Status::from(Error::invalid("env.1X", "bad key")).message(),
            "env.1X: bad key"
        );
    }
}
