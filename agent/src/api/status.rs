//! The one mapping of the agent's [`Error`] to gRPC status codes: bad input
//! is `INVALID_ARGUMENT`, an unknown dyno `NOT_FOUND`, no room
//! `RESOURCE_EXHAUSTED`, a request id reused for another request
//! `FAILED_PRECONDITION`, a start a stop cancelled `ABORTED`, never `UNKNOWN`.

use crate::error::Error;

impl From<Error> for tonic::Status {
    fn from(e: Error) -> tonic::Status {
        let msg = e.to_string();
        match e {
            Error::InvalidArgument { .. } => tonic::Status::invalid_argument(msg),
            Error::NotFound(_) => tonic::Status::not_found(msg),
            Error::FailedPrecondition(_) => tonic::Status::failed_precondition(msg),
            Error::ResourceExhausted(_) => tonic::Status::resource_exhausted(msg),
            Error::Aborted(_) => tonic::Status::aborted(msg),
            Error::Unavailable(_) | Error::Upstream(_) => tonic::Status::unavailable(msg),
            Error::Internal(_) => tonic::Status::internal(msg),
        }
    }
}

#[cfg(test)]
#[path = "status_tests.rs"]
mod tests;
