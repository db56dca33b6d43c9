//! The one mapping of the agent's [`Error`] to gRPC status codes: bad input
//! is `INVALID_ARGUMENT`, an unknown dyno `NOT_FOUND`, no room
//! `RESOURCE_EXHAUSTED`, never `UNKNOWN`.

use crate::error::Error;

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
    use tonic::Code;

    use crate::error::Error;

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
